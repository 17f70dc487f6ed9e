"""Greets whoever the Rust side names; standard library only."""
from __future__ import annotations

import sys

import pybundle

request = pybundle.input() or {}
name = request.get("name", "world")
pybundle.reply(
    {
        "greeting": f"hello, {name}",
        "python": "%d.%d.%d" % sys.version_info[:3],
        "prefix": sys.prefix,
    }
)
