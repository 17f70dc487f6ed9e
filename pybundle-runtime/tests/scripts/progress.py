"""Sends 20 progress messages, then pauses before replying."""
import time

import pybundle

for i in range(20):
    pybundle.send({"step": i, "of": 20})
time.sleep(pybundle.input())
pybundle.reply({"sent": 20})
