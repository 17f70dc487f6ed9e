"""A module whose import never finishes: the worker must time out starting."""
import sys
import time

sys.stderr.write("hang_import: importing forever\n")
sys.stderr.flush()
time.sleep(3600)
