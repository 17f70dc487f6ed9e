"""Replies with the statistics of the input text, computed by the project's own package, and
checks that its console script runs from the bundle too."""

import os
import subprocess
import sys

import click
import pybundle
import pyreport

text = pybundle.input()["text"]
stats = pyreport.report(text)
script = os.path.join(sys.prefix, "bin", "pyreport")
version = subprocess.run(
    [script, "--version"], capture_output=True, text=True, check=True
).stdout.strip()
stats["console_script"] = version
stats["package_file"] = pyreport.__file__
stats["click"] = click.__version__
pybundle.reply(stats)
