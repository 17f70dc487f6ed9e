//! The wire protocol between the runtime and its Python children, defined once: the message
//! types, their fields and the runners' argv layouts are the [`table`]; the Rust encoders and
//! decoder here are checked against it, and the Python half's `pybundle/_protocol.py` is
//! generated from it.
//!
//! # Frames
//! Both directions carry frames on the child's stdin (runtime → Python) and a private copy of
//! its stdout (Python → runtime): a 4-byte big-endian payload length, then the payload. A
//! payload is a UTF-8 JSON object (a *message*) with a `"type"`, unless a message announced
//! binary frames: a message with `"buffers": n` is followed by `n` raw frames.
//!
//! # Values
//! A message's value (`data`, `input`, `args`, `kwargs`) is JSON in which byte buffers and
//! numpy arrays are replaced by references to the binary frames that follow, in order:
//! `{"$buffer": i}` is the bytes of frame `i` (Python `bytes`, Rust [`Buffer`](crate::Buffer)
//! or `Vec<u8>`), `{"$ndarray": i, "dtype": "<f4", "shape": [2, 3]}` a C-ordered array whose
//! data is frame `i` (numpy on the Python side, [`NdArray`](crate::NdArray) in Rust). This holds
//! for every message in both directions, scripts and workers alike: a script may reply with
//! bytes exactly as a worker function may return them.
//!
//! # Limits
//! Every reader refuses a frame longer than the frame cap ([`DEFAULT_MAX_FRAME`] unless set
//! otherwise) and a message whose frames together exceed the message cap
//! ([`DEFAULT_MAX_MESSAGE`]); the runtime kills a child that sends either, and one that stops
//! halfway through a message for longer than the frame timeout.
//!
//! Before any user code runs the Python side moves the channel to private descriptors and
//! points fd 1 at stderr, so `print()` and C extensions cannot corrupt the frame stream.

#[cfg(test)]
mod conformance;
mod frame;
#[cfg(test)]
mod generate;
mod message;
mod reader;
pub mod table;

use std::ffi::OsString;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use self::frame::Decoder;
pub(crate) use self::frame::{clamp_max, header, write_frame, Limits, Violation};
pub use self::message::PythonError;
pub(crate) use self::message::{Init, Kind, LogRecord, Message, Outgoing, Payload};
pub(crate) use self::reader::Reader;

/// The default cap on one frame, in each direction: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// The default cap on one message with its binary frames, from the Python side: 256 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

/// The message cap actually applied: never less than one frame at the frame cap beside a
/// small message (1 MiB), so raising the frame cap alone is enough for one big buffer.
pub(crate) fn message_cap(max_message: usize, max_frame: usize) -> usize {
    max_message.max(max_frame.saturating_add(1 << 20))
}

/// The `-c` code every child runs: it puts the `pybundle` package (whose directory is the
/// first argument, never spliced into code) on `sys.path` and hands over to the runner.
pub(crate) fn bootstrap(layout: &table::Argv) -> String {
    format!(
        "import sys;sys.path.insert(0,sys.argv[1]);from pybundle.{} import main;main()",
        layout.runner
    )
}

/// The runner's arguments in the order `layout` names them; `value` gives each name's
/// arguments (exactly one, except for the trailing `name...`).
pub(crate) fn argv(
    layout: &table::Argv,
    mut value: impl FnMut(&str) -> Vec<OsString>,
) -> Vec<OsString> {
    let mut out = Vec::new();
    for name in layout.args {
        let values = value(name);
        debug_assert!(name.ends_with("...") || values.len() == 1, "{name}");
        out.extend(values);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_follows_the_layout() {
        let args = argv(&table::WORKER_ARGV, |name| match name {
            "modules..." => vec!["a".into(), "b".into()],
            other => vec![other.to_uppercase().into()],
        });
        assert_eq!(args, ["LIB", "MAX_FRAME", "THREADS", "SCRIPTS", "a", "b"]);
        assert!(bootstrap(&table::SCRIPT_ARGV).contains("pybundle._script"));
        assert_eq!(message_cap(10, 64 << 20), (64 << 20) + (1 << 20));
        assert_eq!(
            message_cap(DEFAULT_MAX_MESSAGE, DEFAULT_MAX_FRAME),
            DEFAULT_MAX_MESSAGE
        );
    }
}
