//! The protocol's one definition: every message type with its fields, and the argv layout of
//! each runner. The Rust encoders and decoder are checked against it by unit tests, and the
//! Python half's `pybundle/_protocol.py` is generated from it (a test fails when that file is
//! out of date; `PYBUNDLE_BLESS=1 cargo test -p pybundle-runtime protocol` rewrites it).

/// Which side sends a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The Rust runtime (the message goes to the child's stdin).
    Runtime,
    /// The Python child (the message comes from its private copy of stdout).
    Python,
}

/// Which runner uses a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// One-shot scripts only.
    Script,
    /// Long-lived workers only.
    Worker,
    /// Both.
    Both,
}

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A non-negative integer.
    Int,
    /// A string.
    Str,
    /// A list of strings.
    StrList,
    /// Any JSON value, whose byte buffers and arrays travel as binary frames (see the module
    /// docs of [`protocol`](crate::protocol)).
    Value,
    /// An object (keyword arguments, the worker's init call).
    Object,
    /// A Python exception: `{"type", "message", "traceback"}`.
    Error,
}

/// One field of a message.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The JSON key.
    pub name: &'static str,
    /// What it holds.
    pub kind: FieldKind,
    /// Whether every message of the type carries it.
    pub required: bool,
    /// What it means.
    pub doc: &'static str,
}

/// One message type.
#[derive(Clone, Copy, Debug)]
pub struct Message {
    /// The `"type"` value.
    pub name: &'static str,
    /// Who sends it.
    pub sender: Sender,
    /// Which runner uses it.
    pub runner: Runner,
    /// Its fields besides `"type"`.
    pub fields: &'static [Field],
    /// What it means.
    pub doc: &'static str,
}

impl Message {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const fn req(name: &'static str, kind: FieldKind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        required: true,
        doc,
    }
}

const fn opt(name: &'static str, kind: FieldKind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        doc,
    }
}

use FieldKind::{Error, Int, Object, Str, StrList, Value};

const BUFFERS: Field = opt(
    "buffers",
    Int,
    "how many binary frames follow this message (0 when absent)",
);
const ID: Field = req("id", Int, "the call (or ping) this message belongs to");

/// Every message of the protocol.
pub const MESSAGES: &[Message] = &[
    Message {
        name: "start",
        sender: Sender::Runtime,
        runner: Runner::Both,
        fields: &[
            opt(
                "input",
                Value,
                "a script's input (`pybundle.input()`); null when none",
            ),
            opt(
                "init",
                Object,
                "a worker's init call {func, args, kwargs}, run after the imports and before \
                 `ready`; null when none",
            ),
            opt(
                "log_level",
                Int,
                "forward Python `logging` records at this level and above as `log` messages; \
                 null: do not forward",
            ),
            BUFFERS,
        ],
        doc: "the first message to every child, read before any user code runs",
    },
    Message {
        name: "call",
        sender: Sender::Runtime,
        runner: Runner::Worker,
        fields: &[
            ID,
            req("func", Str, "`module.function`"),
            req("args", Value, "the positional arguments (an array)"),
            opt("kwargs", Object, "the keyword arguments (an object)"),
            BUFFERS,
        ],
        doc: "call `func(*args, **kwargs)` on a worker thread",
    },
    Message {
        name: "cancel",
        sender: Sender::Runtime,
        runner: Runner::Worker,
        fields: &[ID],
        doc: "the caller gave up on a call: skip it if still queued, else let \
              `pybundle.cancelled()` turn true; answered by `finished` instead of a result",
    },
    Message {
        name: "ping",
        sender: Sender::Runtime,
        runner: Runner::Worker,
        fields: &[ID],
        doc: "answered by `pong` from the reading thread, even when every call thread is busy",
    },
    Message {
        name: "shutdown",
        sender: Sender::Runtime,
        runner: Runner::Worker,
        fields: &[],
        doc: "stop reading and exit",
    },
    Message {
        name: "ready",
        sender: Sender::Python,
        runner: Runner::Worker,
        fields: &[
            req("pid", Int, "the worker's process id"),
            req(
                "functions",
                StrList,
                "the functions it serves, as `module.function`",
            ),
        ],
        doc: "the modules are imported and the init call returned: calls may come",
    },
    Message {
        name: "fatal",
        sender: Sender::Python,
        runner: Runner::Worker,
        fields: &[req("error", Error, "why the worker could not start")],
        doc: "an import or the init call raised; the worker exits",
    },
    Message {
        name: "result",
        sender: Sender::Python,
        runner: Runner::Worker,
        fields: &[ID, req("data", Value, "the return value"), BUFFERS],
        doc: "a call returned",
    },
    Message {
        name: "error",
        sender: Sender::Python,
        runner: Runner::Both,
        fields: &[
            opt("id", Int, "the call that raised (workers)"),
            req("error", Error, "the exception"),
        ],
        doc: "a call (worker) or the script raised an exception nothing caught",
    },
    Message {
        name: "finished",
        sender: Sender::Python,
        runner: Runner::Worker,
        fields: &[ID],
        doc: "a cancelled call returned or was skipped; its result is not sent",
    },
    Message {
        name: "pong",
        sender: Sender::Python,
        runner: Runner::Worker,
        fields: &[ID],
        doc: "the answer to `ping`",
    },
    Message {
        name: "message",
        sender: Sender::Python,
        runner: Runner::Both,
        fields: &[
            opt("id", Int, "the call that sent it (workers)"),
            req("data", Value, "the value given to `pybundle.send`"),
            BUFFERS,
        ],
        doc: "a progress message, delivered while the code still runs",
    },
    Message {
        name: "reply",
        sender: Sender::Python,
        runner: Runner::Script,
        fields: &[
            req("data", Value, "the value given to `pybundle.reply`"),
            BUFFERS,
        ],
        doc: "the script's result (once)",
    },
    Message {
        name: "log",
        sender: Sender::Python,
        runner: Runner::Both,
        fields: &[
            opt(
                "id",
                Int,
                "the call whose thread (or task) logged it (workers)",
            ),
            req(
                "level",
                Int,
                "the record's numeric level (logging.INFO = 20)",
            ),
            req("logger", Str, "the logger's name"),
            req(
                "message",
                Str,
                "the formatted message, with the traceback if it has one",
            ),
        ],
        doc: "a Python `logging` record (only when `start` asked for them)",
    },
];

/// The command-line layout of a runner: `python -I -c <bootstrap> <argv...>`.
#[derive(Clone, Copy, Debug)]
pub struct Argv {
    /// The runner module (`pybundle.<runner>`).
    pub runner: &'static str,
    /// The arguments after the bootstrap code, in order; a name ending in `...` takes the
    /// rest.
    pub args: &'static [&'static str],
}

/// How the one-shot script runner is started.
pub const SCRIPT_ARGV: Argv = Argv {
    runner: "_script",
    args: &["lib", "max_frame", "script", "script_args..."],
};

/// How the worker runner is started.
pub const WORKER_ARGV: Argv = Argv {
    runner: "_worker",
    args: &["lib", "max_frame", "threads", "scripts", "modules..."],
};

/// The message type named `name`.
pub fn message(name: &str) -> Option<&'static Message> {
    MESSAGES.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fields_sane() {
        for (i, m) in MESSAGES.iter().enumerate() {
            assert!(
                MESSAGES[..i].iter().all(|o| o.name != m.name),
                "{} twice",
                m.name
            );
            for (j, f) in m.fields.iter().enumerate() {
                assert_ne!(f.name, "type", "{}", m.name);
                assert!(m.fields[..j].iter().all(|o| o.name != f.name));
            }
            // Binary frames belong to a value: a message with `buffers` carries one.
            if m.field("buffers").is_some() {
                assert!(m.fields.iter().any(|f| f.kind == Value), "{}", m.name);
            }
        }
        for argv in [SCRIPT_ARGV, WORKER_ARGV] {
            assert_eq!(argv.args[0], "lib", "the bootstrap reads argv[1]");
            assert_eq!(argv.args[1], "max_frame");
            let rest = argv.args.iter().filter(|a| a.ends_with("...")).count();
            assert!(rest <= 1 && (rest == 0 || argv.args.last().unwrap().ends_with("...")));
        }
    }
}
