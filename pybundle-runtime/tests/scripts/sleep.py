"""Sleeps for as many seconds as its input says, then replies."""
import time

import pybundle

time.sleep(pybundle.input())
pybundle.reply("woke up")
