"""Called by src/main.rs: reads the request Rust sends and replies with JSON."""
from __future__ import annotations

import platform

import pybundle

request = pybundle.input() or {}
words = str(request.get("text", "")).split()
pybundle.reply(
    {
        "message": f"{len(words)} words, counted by Python {platform.python_version()}",
        "words": len(words),
    }
)
