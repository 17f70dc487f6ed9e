"""A script that takes a numpy array in its input and replies with one."""
import sys

import pybundle

data = pybundle.input()
a = data["a"]
pybundle.reply([a[:2, :2] * data["k"], {"k": data["k"], "argv": sys.argv[1:], "dtype": str(a.dtype)}])
