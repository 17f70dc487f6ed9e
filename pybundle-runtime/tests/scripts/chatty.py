"""Writes to stdout in every way before and after replying."""
import os
import sys

import pybundle

print("print before reply")
sys.stdout.write("sys.stdout.write before reply\n")
os.write(1, b"os.write fd 1 before reply\n")
sys.stderr.write("stderr before reply\n")
pybundle.reply({"ok": True, "text": "héllo ✓"})
print("print after reply")
os.write(1, b"os.write fd 1 after reply\n")
