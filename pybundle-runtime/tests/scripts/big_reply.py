"""Replies with a string as long as its input says."""
import pybundle

pybundle.reply("x" * pybundle.input())
