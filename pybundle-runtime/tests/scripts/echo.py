"""Replies with its input and its arguments."""
import sys

import pybundle

pybundle.reply({"input": pybundle.input(), "argv": sys.argv[1:], "name": __name__})
