//! The messages, both ways: encoders for what the runtime sends and the decoder for what the
//! Python side sends, each checked against the [table](super::table) (the decoder at run
//! time: a message missing a required field is a protocol violation).

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::frame::{malformed, Violation};
use super::table::{self, Sender};

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

/// The worker's init call, carried by `start`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Init<'a> {
    pub func: &'a str,
    /// A JSON array.
    pub args: &'a [u8],
    /// A JSON object, if any.
    pub kwargs: Option<&'a [u8]>,
}

/// A message the runtime sends. Every JSON value inside is already encoded (its byte buffers
/// moved to binary frames, counted by `buffers`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outgoing<'a> {
    Start {
        input: Option<&'a [u8]>,
        init: Option<Init<'a>>,
        log_level: Option<u32>,
        buffers: usize,
    },
    Call {
        id: u64,
        func: &'a str,
        args: &'a [u8],
        kwargs: Option<&'a [u8]>,
        buffers: usize,
    },
    Cancel {
        id: u64,
    },
    Ping {
        id: u64,
    },
    Shutdown,
}

/// Appends `,"key":` to `out`.
fn key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

impl Outgoing<'_> {
    /// The `"type"` value.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Outgoing::Start { .. } => "start",
            Outgoing::Call { .. } => "call",
            Outgoing::Cancel { .. } => "cancel",
            Outgoing::Ping { .. } => "ping",
            Outgoing::Shutdown => "shutdown",
        }
    }

    /// The JSON frame's payload.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let extra = match self {
            Outgoing::Start { input, init, .. } => {
                input.map_or(0, <[u8]>::len) + init.map_or(0, |i| i.args.len())
            }
            Outgoing::Call { args, kwargs, .. } => args.len() + kwargs.map_or(0, <[u8]>::len),
            _ => 0,
        };
        let mut out = Vec::with_capacity(64 + extra);
        out.extend_from_slice(b"{\"type\":");
        string(&mut out, self.name());
        let buffers = |out: &mut Vec<u8>, n: usize| {
            if n > 0 {
                key(out, "buffers");
                out.extend_from_slice(n.to_string().as_bytes());
            }
        };
        match *self {
            Outgoing::Start {
                input,
                init,
                log_level,
                buffers: n,
            } => {
                if let Some(input) = input {
                    key(&mut out, "input");
                    out.extend_from_slice(input);
                }
                if let Some(init) = init {
                    key(&mut out, "init");
                    out.extend_from_slice(b"{\"func\":");
                    string(&mut out, init.func);
                    key(&mut out, "args");
                    out.extend_from_slice(init.args);
                    if let Some(kwargs) = init.kwargs {
                        key(&mut out, "kwargs");
                        out.extend_from_slice(kwargs);
                    }
                    out.push(b'}');
                }
                if let Some(level) = log_level {
                    key(&mut out, "log_level");
                    out.extend_from_slice(level.to_string().as_bytes());
                }
                buffers(&mut out, n);
            }
            Outgoing::Call {
                id,
                func,
                args,
                kwargs,
                buffers: n,
            } => {
                key(&mut out, "id");
                out.extend_from_slice(id.to_string().as_bytes());
                key(&mut out, "func");
                string(&mut out, func);
                key(&mut out, "args");
                out.extend_from_slice(args);
                if let Some(kwargs) = kwargs {
                    key(&mut out, "kwargs");
                    out.extend_from_slice(kwargs);
                }
                buffers(&mut out, n);
            }
            Outgoing::Cancel { id } | Outgoing::Ping { id } => {
                key(&mut out, "id");
                out.extend_from_slice(id.to_string().as_bytes());
            }
            Outgoing::Shutdown => {}
        }
        out.push(b'}');
        out
    }
}

/// The type of a message the Python side sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Ready,
    Fatal,
    Result,
    Error,
    Finished,
    Pong,
    Message,
    Reply,
    Log,
}

impl Kind {
    #[cfg(test)]
    pub(crate) const ALL: [Kind; 9] = [
        Kind::Ready,
        Kind::Fatal,
        Kind::Result,
        Kind::Error,
        Kind::Finished,
        Kind::Pong,
        Kind::Message,
        Kind::Reply,
        Kind::Log,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Ready => "ready",
            Kind::Fatal => "fatal",
            Kind::Result => "result",
            Kind::Error => "error",
            Kind::Finished => "finished",
            Kind::Pong => "pong",
            Kind::Message => "message",
            Kind::Reply => "reply",
            Kind::Log => "log",
        }
    }
}

/// What the JSON of an incoming message may hold; `data` stays raw so it is parsed once,
/// straight into the caller's type.
#[derive(Debug, Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default)]
    id: Option<u64>,
    // `"data": null` is a value (a function returning None), not a missing field.
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<PythonError>,
    #[serde(default)]
    buffers: usize,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    functions: Option<Vec<String>>,
    #[serde(default)]
    level: Option<u32>,
    #[serde(default)]
    logger: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

impl Incoming<'_> {
    /// Whether the field named `name` (of the table) is present.
    fn has(&self, name: &str) -> bool {
        match name {
            "id" => self.id.is_some(),
            "data" => self.data.is_some(),
            "error" => self.error.is_some(),
            "buffers" => self.buffers > 0,
            "pid" => self.pid.is_some(),
            "functions" => self.functions.is_some(),
            "level" => self.level.is_some(),
            "logger" => self.logger.is_some(),
            "message" => self.message.is_some(),
            _ => false,
        }
    }
}

/// A Python `logging` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub level: u32,
    pub logger: String,
    pub message: String,
}

/// A message from the Python side with its binary frames, owned.
#[derive(Debug)]
pub(crate) struct Message {
    pub kind: Kind,
    pub id: Option<u64>,
    pub error: Option<PythonError>,
    pub pid: Option<u32>,
    pub functions: Vec<String>,
    pub log: Option<LogRecord>,
    /// The JSON frame; `data` is a range of it.
    frame: Vec<u8>,
    data: Option<Range<usize>>,
    pub frames: Vec<Vec<u8>>,
}

impl Message {
    /// Parses a JSON frame; the number of binary frames it announces comes with it.
    pub(crate) fn parse(frame: Vec<u8>) -> Result<(Message, usize), Violation> {
        let msg: Incoming<'_> =
            serde_json::from_slice(&frame).map_err(|e| malformed(&frame, &e))?;
        let spec = table::message(msg.kind.name())
            .filter(|m| m.sender == Sender::Python)
            .ok_or_else(|| {
                Violation::Malformed(format!("unexpected message `{}`", msg.kind.name()))
            })?;
        if let Some(field) = spec.fields.iter().find(|f| f.required && !msg.has(f.name)) {
            return Err(Violation::Malformed(format!(
                "a `{}` message without `{}`",
                spec.name, field.name
            )));
        }
        let log = match (msg.level, msg.logger, msg.message) {
            (Some(level), Some(logger), Some(message)) => Some(LogRecord {
                level,
                logger,
                message,
            }),
            _ => None,
        };
        let data = msg.data.map(|raw| {
            let start = raw.get().as_ptr() as usize - frame.as_ptr() as usize;
            start..start + raw.get().len()
        });
        let parsed = Message {
            kind: msg.kind,
            id: msg.id,
            error: msg.error,
            pid: msg.pid,
            functions: msg.functions.unwrap_or_default(),
            log,
            data,
            frames: Vec::new(),
            frame: Vec::new(),
        };
        let buffers = msg.buffers;
        Ok((Message { frame, ..parsed }, buffers))
    }

    /// The raw JSON of `data` (`null` when absent).
    #[cfg(test)]
    pub(crate) fn data(&self) -> &[u8] {
        self.data
            .clone()
            .map_or(&b"null"[..], |range| &self.frame[range])
    }

    /// The raw JSON and the binary frames, for decoding.
    pub(crate) fn into_payload(self) -> Payload {
        Payload {
            data: self.data.unwrap_or(0..0),
            json: self.frame,
            frames: self.frames,
        }
    }
}

/// The value part of a message, ready to decode into the caller's type.
#[derive(Debug, Default)]
pub(crate) struct Payload {
    json: Vec<u8>,
    data: Range<usize>,
    pub frames: Vec<Vec<u8>>,
}

impl Payload {
    /// The memory it holds.
    pub(crate) fn size(&self) -> usize {
        self.json.len() + self.frames.iter().map(Vec::len).sum::<usize>()
    }

    /// The raw JSON of the value (`null` when absent).
    pub(crate) fn json(&self) -> &[u8] {
        if self.data.is_empty() {
            b"null"
        } else {
            &self.json[self.data.clone()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use table::{Runner, MESSAGES};

    /// One of each message the runtime sends, with every optional field set.
    fn examples() -> Vec<Outgoing<'static>> {
        vec![
            Outgoing::Start {
                input: Some(b"{\"x\":[1,2]}"),
                init: Some(Init {
                    func: "m.setup",
                    args: b"[1]",
                    kwargs: Some(b"{\"k\":2}"),
                }),
                log_level: Some(20),
                buffers: 2,
            },
            Outgoing::Call {
                id: 7,
                func: "m.f\"\u{e9}",
                args: b"[1,{\"$buffer\":0}]",
                kwargs: Some(b"{\"scale\":2}"),
                buffers: 1,
            },
            Outgoing::Cancel { id: 7 },
            Outgoing::Ping { id: 8 },
            Outgoing::Shutdown,
        ]
    }

    #[test]
    fn every_runtime_message_encodes_as_the_table_says() {
        let sent: Vec<&str> = examples().iter().map(Outgoing::name).collect();
        let table: Vec<&str> = MESSAGES
            .iter()
            .filter(|m| m.sender == Sender::Runtime)
            .map(|m| m.name)
            .collect();
        assert_eq!(
            sent, table,
            "an encoder per runtime message, in table order"
        );
        for msg in examples() {
            let json: serde_json::Value = serde_json::from_slice(&msg.encode()).unwrap();
            let obj = json.as_object().unwrap();
            assert_eq!(obj["type"], msg.name());
            let spec = table::message(msg.name()).unwrap();
            for key in obj.keys().filter(|k| *k != "type") {
                assert!(
                    spec.field(key).is_some(),
                    "{}: `{key}` is not in the table",
                    msg.name()
                );
            }
            for field in spec.fields {
                // The examples set every field (so the table has no field the encoder lacks).
                assert!(
                    obj.contains_key(field.name),
                    "{}: `{}` missing",
                    msg.name(),
                    field.name
                );
            }
        }
    }

    #[test]
    fn every_python_message_is_a_kind_and_required_fields_are_enforced() {
        let python: Vec<&str> = MESSAGES
            .iter()
            .filter(|m| m.sender == Sender::Python)
            .map(|m| m.name)
            .collect();
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(kinds, python);
        for kind in Kind::ALL {
            let parsed: Kind = serde_json::from_str(&format!("\"{}\"", kind.name())).unwrap();
            assert_eq!(parsed, kind);
        }
        let spec = table::message("result").unwrap();
        assert_eq!(spec.runner, Runner::Worker);
        let err = Message::parse(br#"{"type":"result","id":1}"#.to_vec()).unwrap_err();
        assert!(err.to_string().contains("without `data`"), "{err}");
        let (msg, _) = Message::parse(br#"{"type":"result","id":1,"data":null}"#.to_vec()).unwrap();
        assert_eq!(msg.data(), b"null");
        let err = Message::parse(br#"{"type":"start"}"#.to_vec()).unwrap_err();
        assert!(err.to_string().contains("unknown variant `start`"), "{err}");
    }

    #[test]
    fn incoming_data_stays_raw() {
        let text = r#"{"type":"reply","buffers":0,"data":{"a":[1,"é"]}}"#;
        let (msg, buffers) = Message::parse(text.as_bytes().to_vec()).unwrap();
        assert_eq!((msg.kind, buffers), (Kind::Reply, 0));
        assert_eq!(msg.data(), r#"{"a":[1,"é"]}"#.as_bytes());
        let text =
            r#"{"type":"error","error":{"type":"ValueError","message":"m","traceback":"t"}}"#;
        let (msg, _) = Message::parse(text.as_bytes().to_vec()).unwrap();
        assert_eq!(msg.error.unwrap().type_name, "ValueError");
        let text = r#"{"type":"log","level":20,"logger":"a.b","message":"hi"}"#;
        let (msg, _) = Message::parse(text.as_bytes().to_vec()).unwrap();
        assert_eq!(msg.log.unwrap().logger, "a.b");
    }
}
