//! The wire protocol between the runtime and its Python children (the Python half is
//! `python/pybundle/_channel.py`).
//!
//! # Frames
//! Both directions carry frames on the child's stdin (runtime → Python) and stdout
//! (Python → runtime): a 4-byte big-endian payload length, then the payload. A payload is a
//! UTF-8 JSON object (a *message*), unless a message announced binary frames: a message with
//! `"buffers": n` is followed by `n` raw frames, which the JSON refers to as `{"$buffer": i}`.
//! Both sides refuse a frame longer than the configured cap ([`DEFAULT_MAX_FRAME`] unless
//! set otherwise); the runtime kills a child that sends one.
//!
//! Before any user code runs the Python side moves the channel to private descriptors and
//! points fd 1 at stderr, so `print()` and C extensions cannot corrupt the frame stream.
//!
//! # Messages
//! Every message is an object with a `"type"`.
//!
//! | direction | type | fields | meaning |
//! |---|---|---|---|
//! | → script | `start` | `input` | the script's input (`null` if none); sent once, first |
//! | → worker | `call` | `id`, `func`, `args` | call `module.func(*args)` (`args` an array) or `(**args)` (an object) |
//! | → worker | `cancel` | `id` | mark the call cancelled; its result is discarded |
//! | → worker | `ping` | `id` | answered by `pong` |
//! | → worker | `shutdown` | | finish and exit |
//! | ← both | `message` | `data`, `id` (worker) | a progress message (`pybundle.send`) |
//! | ← script | `reply` | `data` | the script's result (`pybundle.reply`) |
//! | ← both | `error` | `error`, `id` (worker) | an uncaught exception: [`PythonError`] |
//! | ← worker | `ready` | `pid` | the modules are imported; calls may come |
//! | ← worker | `fatal` | `error` | startup failed (an import raised) |
//! | ← worker | `result` | `id`, `data` | the return value of a call |
//! | ← worker | `pong` | `id` | answer to `ping` |

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The default cap on one frame, in each direction: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// A Python exception, as reported by the child: its type, message and formatted traceback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonError {
    /// The exception's type (`ValueError`, or `module.Class` for non-builtin types).
    #[serde(rename = "type")]
    pub type_name: String,
    /// `str(exception)`.
    pub message: String,
    /// The traceback as Python prints it (`Traceback (most recent call last): ...`).
    pub traceback: String,
}

/// The kind of a message sent by the Python side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Message,
    Reply,
    Error,
    Ready,
    Fatal,
    Result,
    Pong,
}

/// A message from the Python side; `data` is left as raw JSON so it is parsed once, straight
/// into the caller's type.
#[derive(Debug, Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    #[serde(default)]
    pub error: Option<PythonError>,
    #[serde(default)]
    pub buffers: usize,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// Reading failed (other than a clean end of input between frames).
    Io(io::Error),
    /// The announced length is over the cap.
    TooLarge { len: usize, max: usize },
    /// The input ended inside a frame.
    Truncated,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "reading a frame failed: {e}"),
            FrameError::TooLarge { len, max } => {
                write!(f, "a frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Truncated => f.write_str("the output ended inside a frame"),
        }
    }
}

/// How a child broke the protocol, for the error its callers get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A frame header announced more than the cap.
    TooLarge { len: usize, max: usize },
    /// Anything else: bytes that are not a frame, malformed JSON, an unexpected message.
    Malformed(String),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::TooLarge { len, max } => {
                write!(f, "a frame of {len} bytes exceeds the limit of {max} bytes")
            }
            Violation::Malformed(detail) => f.write_str(detail),
        }
    }
}

/// Names a failed frame read. `after` is what the reader had already buffered past the
/// header (never waited for); `message` says whether a JSON message was expected there (a
/// binary frame may hold anything). A header over the cap followed by something that cannot
/// start a message is reported as foreign bytes on the channel, not as an oversized frame: a
/// peer writing to the protocol's descriptor directly (a C extension, `os.write`) looks so.
pub(crate) fn violation(err: FrameError, after: &[u8], message: bool) -> Violation {
    match err {
        FrameError::TooLarge { len, max }
            if message && after.first().is_some_and(|b| *b != b'{') =>
        {
            let shown = &after[..after.len().min(40)];
            Violation::Malformed(format!(
                "the output is not a frame stream: a header announcing {len} bytes (over the \
                 limit of {max}) followed by {:?}; something wrote to the protocol's descriptor \
                 directly",
                String::from_utf8_lossy(shown)
            ))
        }
        FrameError::TooLarge { len, max } => Violation::TooLarge { len, max },
        other => Violation::Malformed(other.to_string()),
    }
}

/// A frame that should have held a JSON message but does not parse as one: names the error
/// and shows how the frame starts.
pub(crate) fn malformed(frame: &[u8], err: &serde_json::Error) -> Violation {
    let shown = &frame[..frame.len().min(40)];
    Violation::Malformed(format!(
        "malformed message ({} bytes starting {:?}): {err}",
        frame.len(),
        String::from_utf8_lossy(shown)
    ))
}

/// Reads one frame into `buf` (replacing its contents). `Ok(false)` at a clean end of input.
pub(crate) fn read_frame(
    r: &mut impl Read,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    buf.clear();
    buf.try_reserve_exact(len)
        .map_err(|_| FrameError::TooLarge { len, max })?;
    let read = r
        .take(len as u64)
        .read_to_end(buf)
        .map_err(FrameError::Io)?;
    if read < len {
        return Err(FrameError::Truncated);
    }
    Ok(true)
}

/// Appends a frame header for a payload of `len` bytes.
pub(crate) fn header(len: usize, max: usize) -> io::Result<[u8; 4]> {
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    // `max` never exceeds u32::MAX (see `clamp_max`), so this fits.
    Ok((len as u32).to_be_bytes())
}

/// Writes one frame: the header and payload in one write when small, else two.
pub(crate) fn write_frame(w: &mut impl Write, payload: &[u8], max: usize) -> io::Result<()> {
    let head = header(payload.len(), max)?;
    if payload.len() <= 64 * 1024 {
        let mut joined = Vec::with_capacity(4 + payload.len());
        joined.extend_from_slice(&head);
        joined.extend_from_slice(payload);
        w.write_all(&joined)
    } else {
        w.write_all(&head)?;
        w.write_all(payload)
    }
}

/// A frame cap usable with a 4-byte length.
pub(crate) fn clamp_max(max: usize) -> usize {
    max.min(u32::MAX as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_respect_the_cap() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"{\"type\":\"reply\"}", 100).unwrap();
        write_frame(&mut wire, &vec![b'x'; 70_000], 100_000).unwrap();
        assert!(write_frame(&mut wire, b"too long", 3).is_err());
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, 100_000, &mut buf).unwrap());
        assert_eq!(buf, b"{\"type\":\"reply\"}");
        assert!(read_frame(&mut r, 100_000, &mut buf).unwrap());
        assert_eq!(buf.len(), 70_000);
        assert!(!read_frame(&mut r, 100_000, &mut buf).unwrap());
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut r = &[0u8, 0, 1, 0][..];
        assert!(matches!(
            read_frame(&mut r, 10, &mut Vec::new()),
            Err(FrameError::TooLarge { len: 256, max: 10 })
        ));
        let mut r = &[0u8, 0, 0, 5, b'a'][..];
        assert!(matches!(
            read_frame(&mut r, 10, &mut Vec::new()),
            Err(FrameError::Truncated)
        ));
        let mut r = &[0u8, 0][..];
        assert!(matches!(
            read_frame(&mut r, 10, &mut Vec::new()),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn foreign_bytes_are_told_apart_from_an_oversized_frame() {
        let too_large = || FrameError::TooLarge {
            len: 1 << 30,
            max: 10,
        };
        assert_eq!(
            violation(too_large(), b"{\"type\"", true),
            Violation::TooLarge {
                len: 1 << 30,
                max: 10
            }
        );
        assert_eq!(
            violation(too_large(), b"", true),
            Violation::TooLarge {
                len: 1 << 30,
                max: 10
            }
        );
        assert_eq!(
            violation(too_large(), b"\x00\x01", false),
            Violation::TooLarge {
                len: 1 << 30,
                max: 10
            }
        );
        let Violation::Malformed(text) = violation(too_large(), b"lo world", true) else {
            panic!("text after a header over the cap is foreign bytes")
        };
        assert!(
            text.contains("not a frame stream") && text.contains("lo world"),
            "{text}"
        );
        assert_eq!(
            violation(FrameError::Truncated, b"", true),
            Violation::Malformed("the output ended inside a frame".into())
        );
    }

    #[test]
    fn incoming_messages_keep_data_raw() {
        let text = r#"{"type":"reply","buffers":0,"data":{"a":[1,"é"]}}"#;
        let msg: Incoming<'_> = serde_json::from_str(text).unwrap();
        assert_eq!(msg.kind, Kind::Reply);
        assert_eq!(msg.data.unwrap().get(), r#"{"a":[1,"é"]}"#);
        let text =
            r#"{"type":"error","error":{"type":"ValueError","message":"m","traceback":"t"}}"#;
        let msg: Incoming<'_> = serde_json::from_str(text).unwrap();
        assert_eq!(msg.error.unwrap().type_name, "ValueError");
    }
}
