"""Ends successfully without replying."""
print("done, but no reply")
