"""Exits with status 3 without replying."""
import sys

print("exiting with 3")
sys.exit(3)
