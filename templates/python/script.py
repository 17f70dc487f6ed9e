"""Called by src/main.rs: reads the request Rust sends and replies with JSON."""
from __future__ import annotations

import sys

import pybundle

request = pybundle.input() or {}
words = str(request.get("text", "")).split()
pybundle.reply(
    {
        # sys.version_info, not the platform module: that import alone costs ~7 ms a start.
        "message": "%d words, counted by Python %d.%d.%d" % (len(words), *sys.version_info[:3]),
        "words": len(words),
    }
)
