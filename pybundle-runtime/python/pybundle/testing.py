"""Run a one-shot script in this process, as the runtime would, to test its logic without Rust.

    from pybundle.testing import run_script

    result = run_script("python/report.py", input={"text": "a b"})
    assert result.reply == {"words": 2}
    assert result.messages == []          # what pybundle.send() sent, in order

Inside the script ``pybundle.input()`` returns ``input``; ``reply()`` and ``send()`` are
recorded instead of written to the runtime, after the same encoding check the runtime's channel
makes (a value JSON cannot carry raises ``TypeError``/``ValueError`` in the script, as in a
bundle). The script runs as ``__main__`` with ``sys.argv = [path, *args]`` and its folder first
on ``sys.path``. An exception the script raises reaches the caller; so does ``SystemExit``
with a non-zero code.

Use the environment's interpreter with ``pybundle`` importable: ``cargo pybundle python -m
pytest`` (or ``-m unittest``) does both.
"""

from __future__ import annotations

import os
import runpy
import sys

import pybundle

from . import _protocol
from ._channel import encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Sequence

__all__ = ["ScriptResult", "run_script"]


class ScriptResult:
    """What a script sent: its reply (``replied`` tells whether it replied at all, since
    ``None`` is a valid reply) and its progress messages."""

    def __init__(self) -> None:
        self.reply: Any = None
        self.replied = False
        self.messages: List[Any] = []

    def __repr__(self) -> str:
        return "ScriptResult(reply=%r, replied=%r, messages=%r)" % (
            self.reply,
            self.replied,
            self.messages,
        )


class _Recorder:
    """Stands in for the runtime's channel: checks each value as the channel encodes it and
    records it."""

    def __init__(self, result: ScriptResult) -> None:
        self.result = result

    def send(self, head: dict, data: Any = None, has_data: bool = False) -> None:
        encode(head, [], data, has_data)
        if head.get("type") == _protocol.REPLY:
            self.result.reply = data
            self.result.replied = True
        elif head.get("type") == _protocol.MESSAGE:
            self.result.messages.append(data)


def run_script(
    path: "str | os.PathLike[str]",
    input: Any = None,  # noqa: A002 - the protocol's name for it
    args: Sequence[str] = (),
) -> ScriptResult:
    """Runs the script at ``path`` with ``input`` and returns what it sent."""
    script = os.fspath(path)
    result = ScriptResult()
    saved = (pybundle._active, pybundle._input, pybundle._replied, pybundle._in_worker)
    saved_argv, saved_path = sys.argv, list(sys.path)
    pybundle._install(_Recorder(result), input)  # type: ignore[arg-type]
    pybundle._replied = False
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (None, 0):
            raise
    finally:
        pybundle._active, pybundle._input, pybundle._replied, pybundle._in_worker = saved
        sys.argv, sys.path[:] = saved_argv, saved_path
    return result


def _main(argv: Optional[List[str]] = None) -> int:
    """``python -m pybundle run SCRIPT [--input JSON] [-- ARGS...]``: runs the script as
    ``run_script`` does and prints its reply as JSON on stdout, its messages on stderr."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m pybundle",
        description="Run a pybundle one-shot script without the Rust side.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a script with an input and print its reply")
    run.add_argument("script", help="the script's path")
    run.add_argument("--input", default="null", help="the JSON input (default: null)")
    run.add_argument(
        "args", nargs="*", help="the script's arguments (after -- when they start with -)"
    )
    ns = parser.parse_args(argv)
    try:
        value = json.loads(ns.input)
    except ValueError as e:
        parser.error("--input is not JSON: %s" % e)
    result = run_script(ns.script, input=value, args=ns.args)
    for message in result.messages:
        sys.stderr.write("message: %s\n" % json.dumps(message, ensure_ascii=False))
    if not result.replied:
        sys.stderr.write("pybundle: %s ended without replying\n" % ns.script)
        return 1
    sys.stdout.write(json.dumps(result.reply, ensure_ascii=False) + "\n")
    return 0
