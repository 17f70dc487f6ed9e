"""The protocol's message types and argv layouts, shared by the runners.

Generated from pybundle-runtime/src/protocol/table.rs: do not edit. A Rust test keeps this file
equal to the table; `PYBUNDLE_BLESS=1 cargo test -p pybundle-runtime protocol` rewrites it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

# Messages the runtime sends.
START = "start"
CALL = "call"
CANCEL = "cancel"
PING = "ping"
SHUTDOWN = "shutdown"

# Messages the Python side sends.
READY = "ready"
FATAL = "fatal"
RESULT = "result"
ERROR = "error"
FINISHED = "finished"
PONG = "pong"
MESSAGE = "message"
REPLY = "reply"
LOG = "log"

# Every message type: (sender, runner, required fields, optional fields).
MESSAGES: Dict[str, Tuple[str, str, Tuple[str, ...], Tuple[str, ...]]] = {
    START: ("runtime", "both", (), ("input", "init", "log_level", "buffers")),
    CALL: ("runtime", "worker", ("id", "func", "args"), ("kwargs", "buffers")),
    CANCEL: ("runtime", "worker", ("id",), ()),
    PING: ("runtime", "worker", ("id",), ()),
    SHUTDOWN: ("runtime", "worker", (), ()),
    READY: ("python", "worker", ("pid", "functions"), ()),
    FATAL: ("python", "worker", ("error",), ()),
    RESULT: ("python", "worker", ("id", "data"), ("buffers",)),
    ERROR: ("python", "both", ("error",), ("id",)),
    FINISHED: ("python", "worker", ("id",), ()),
    PONG: ("python", "worker", ("id",), ()),
    MESSAGE: ("python", "both", ("data",), ("id", "buffers")),
    REPLY: ("python", "script", ("data",), ("buffers",)),
    LOG: ("python", "both", ("level", "logger", "message"), ("id",)),
}

# python -I -c <bootstrap> ARGV..., run by pybundle._script
SCRIPT_ARGV: Tuple[str, ...] = ("lib", "max_frame", "script", "script_args...")

# python -I -c <bootstrap> ARGV..., run by pybundle._worker
WORKER_ARGV: Tuple[str, ...] = ("lib", "max_frame", "threads", "scripts", "modules...")


def parse_argv(layout: Tuple[str, ...], argv: List[str]) -> Dict[str, Any]:
    """Names a runner's arguments (`sys.argv[1:]`) by `layout`; `name...` takes the rest."""
    named: Dict[str, Any] = {}
    for i, name in enumerate(layout):
        if name.endswith("..."):
            named[name[:-3]] = argv[i:]
        elif i < len(argv):
            named[name] = argv[i]
        else:
            raise ValueError("pybundle: argument %r missing; run this through the runtime" % name)
    return named


def ready(pid: int, functions: List[str]) -> dict:
    """The `ready` message: the modules are imported and the init call returned: calls may come."""
    return {"type": READY, "pid": pid, "functions": functions}


def fatal(error: dict) -> dict:
    """The `fatal` message: an import or the init call raised; the worker exits."""
    return {"type": FATAL, "error": error}


def result(id: int) -> dict:
    """The `result` message: a call returned. The channel adds `data` and `buffers`."""
    return {"type": RESULT, "id": id}


def error(error: dict, id: Optional[int] = None) -> dict:
    """The `error` message: a call (worker) or the script raised an exception nothing caught."""
    head: dict = {"type": ERROR, "error": error}
    if id is not None:
        head["id"] = id
    return head


def finished(id: int) -> dict:
    """The `finished` message: a cancelled call returned or was skipped; its result is not sent."""
    return {"type": FINISHED, "id": id}


def pong(id: int) -> dict:
    """The `pong` message: the answer to `ping`."""
    return {"type": PONG, "id": id}


def message(id: Optional[int] = None) -> dict:
    """The `message` message: a progress message, delivered while the code still runs. The channel
    adds `data` and `buffers`."""
    head: dict = {"type": MESSAGE}
    if id is not None:
        head["id"] = id
    return head


def reply() -> dict:
    """The `reply` message: the script's result (once). The channel adds `data` and `buffers`."""
    return {"type": REPLY}


def log(level: int, logger: str, message: str, id: Optional[int] = None) -> dict:
    """The `log` message: a Python `logging` record (only when `start` asked for them)."""
    head: dict = {"type": LOG, "level": level, "logger": logger, "message": message}
    if id is not None:
        head["id"] = id
    return head
