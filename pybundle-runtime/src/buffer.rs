//! Raw byte buffers in worker arguments and results, carried as binary frames after the JSON
//! message (never as base64 or a list of numbers).
//!
//! While a call's arguments are serialized, each [`Buffer`] moves its bytes to a per-thread
//! collector and serializes as `{"$buffer": i}`; while a result is deserialized, the binary
//! frames that came with it are handed out the same way. Python sees `bytes`.

use std::cell::RefCell;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    static OUTGOING: RefCell<Option<Vec<Vec<u8>>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// Bytes that travel as a binary frame to and from a worker (Python `bytes`).
///
/// Outside worker calls (e.g. with `serde_json::to_string`) it serializes as a list of numbers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Buffer(pub Vec<u8>);

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(bytes: Vec<u8>) -> Self {
        Buffer(bytes)
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

#[derive(Serialize, Deserialize)]
struct Ref {
    #[serde(rename = "$buffer")]
    index: usize,
}

impl Serialize for Buffer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = OUTGOING.with(|out| {
            out.borrow_mut().as_mut().map(|frames| {
                frames.push(self.0.clone());
                frames.len() - 1
            })
        });
        match index {
            Some(index) => Ref { index }.serialize(serializer),
            None => serializer.serialize_bytes(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Buffer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Ref { index } = Ref::deserialize(deserializer)?;
        INCOMING.with(|incoming| {
            let mut incoming = incoming.borrow_mut();
            let frames = incoming
                .as_mut()
                .ok_or_else(|| D::Error::custom("a Buffer is only decoded from a worker result"))?;
            frames
                .get_mut(index)
                .and_then(Option::take)
                .map(Buffer)
                .ok_or_else(|| D::Error::custom(format!("no binary frame {index} (or used twice)")))
        })
    }
}

/// A binary frame to send.
pub(crate) type Frame = Vec<u8>;

/// Serializes `value` to JSON; its [`Buffer`]s are appended to `frames` and referred to by
/// their index there, so several values can share one message's frames.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    frames: &mut Vec<Frame>,
) -> serde_json::Result<Vec<u8>> {
    OUTGOING.with(|out| *out.borrow_mut() = Some(std::mem::take(frames)));
    let json = serde_json::to_vec(value);
    *frames = OUTGOING
        .with(|out| out.borrow_mut().take())
        .unwrap_or_default();
    json
}

/// Decodes a message's value into `T`, its [`Buffer`]s taken from the binary frames.
pub(crate) fn from_payload<T: serde::de::DeserializeOwned>(
    mut payload: crate::protocol::Payload,
) -> serde_json::Result<T> {
    let frames = std::mem::take(&mut payload.frames);
    from_json_with_buffers(payload.json(), frames)
}

/// Serializes `value` to JSON, collecting its [`Buffer`]s as separate frames.
pub(crate) fn to_json_with_buffers<T: Serialize + ?Sized>(
    value: &T,
) -> serde_json::Result<(Vec<u8>, Vec<Vec<u8>>)> {
    OUTGOING.with(|out| *out.borrow_mut() = Some(Vec::new()));
    let json = serde_json::to_vec(value);
    let frames = OUTGOING
        .with(|out| out.borrow_mut().take())
        .unwrap_or_default();
    Ok((json?, frames))
}

/// Deserializes JSON whose [`Buffer`]s refer to `frames`.
pub(crate) fn from_json_with_buffers<T: serde::de::DeserializeOwned>(
    json: &[u8],
    frames: Vec<Vec<u8>>,
) -> serde_json::Result<T> {
    if frames.is_empty() {
        return serde_json::from_slice(json);
    }
    INCOMING.with(|incoming| *incoming.borrow_mut() = Some(frames.into_iter().map(Some).collect()));
    let value = serde_json::from_slice(json);
    INCOMING.with(|incoming| *incoming.borrow_mut() = None);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_leave_the_json_and_come_back() {
        let value = (Buffer(vec![1, 2, 3]), "x", vec![Buffer(vec![9; 5])]);
        let (json, frames) = to_json_with_buffers(&value).unwrap();
        assert_eq!(json, br#"[{"$buffer":0},"x",[{"$buffer":1}]]"#);
        assert_eq!(frames, vec![vec![1, 2, 3], vec![9; 5]]);
        let back: (Buffer, String, Vec<Buffer>) = from_json_with_buffers(&json, frames).unwrap();
        assert_eq!(back, value_owned());
        // Outside a call a Buffer is plain JSON.
        assert_eq!(serde_json::to_string(&Buffer(vec![7])).unwrap(), "[7]");
    }

    fn value_owned() -> (Buffer, String, Vec<Buffer>) {
        (Buffer(vec![1, 2, 3]), "x".into(), vec![Buffer(vec![9; 5])])
    }
}
