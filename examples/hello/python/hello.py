"""Greets whoever the Rust side names; standard library only."""
from __future__ import annotations

import platform
import sys

import pybundle

request = pybundle.input() or {}
name = request.get("name", "world")
pybundle.reply(
    {
        "greeting": f"hello, {name}",
        "python": platform.python_version(),
        "prefix": sys.prefix,
    }
)
