//! Raw bytes and arrays in call arguments and results, carried as binary frames after the JSON
//! message (never as base64 or a list of numbers).
//!
//! While a value is serialized for a message, each [`Buffer`], [`BufferRef`] and
//! [`NdArray`](crate::NdArray) hands its bytes to a per-thread collector and serializes as a
//! reference (`{"$buffer": i}`, `{"$ndarray": i, ...}`); while a value is decoded, the binary
//! frames that came with it are handed out the same way, and `Vec<u8>` (or any type that asks
//! for bytes) is filled from a frame too (see [`de`]). Python sees `bytes` and numpy arrays.

pub(crate) mod de;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) use self::de::from_payload;

thread_local! {
    static OUTGOING: RefCell<Option<Vec<Frame>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// Where the bytes of a [`Buffer`] live: bytes given to it, bytes received (a binary frame),
/// or a typed vector (an array's elements) viewed as bytes.
pub(crate) enum Storage {
    Bytes(Vec<u8>),
    /// A binary frame's memory: when nothing holds it any more, the next frame of its size may
    /// be read into it ([`receive_memory`]).
    Received(Vec<u8>),
    Typed(Box<dyn AsBytes>),
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::Received(bytes) = self {
            if bytes.capacity() >= REUSE_MIN {
                let kept = std::mem::take(bytes);
                let before = SPARE
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .replace(kept);
                // Freed after the lock is let go.
                drop(before);
            }
        }
    }
}

/// A received binary frame this big or bigger leaves its memory for the next frame of the same
/// size once dropped (see [`receive_memory`]).
pub(crate) const REUSE_MIN: usize = 1 << 20;

/// The memory of the last large received frame that was dropped, one at most per process.
static SPARE: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Memory for a binary frame of `len` bytes that arrives: the last large received frame that
/// was dropped, when it had that size (empty, with that capacity). Copying a frame into memory
/// already touched runs at the speed of memory; fresh memory costs a page fault and a zeroing
/// per page first, which halves a large transfer. A large binary frame of another size lets the
/// kept memory go, so at most one frame's memory waits, until the next large binary frame.
pub(crate) fn receive_memory(len: usize) -> Option<Vec<u8>> {
    if len < REUSE_MIN {
        return None;
    }
    let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner).take();
    // Dropped (when of another size) outside the lock.
    let mut bytes = spare.filter(|bytes| bytes.capacity() == len)?;
    bytes.clear();
    Some(bytes)
}

/// A vector of plain numbers viewed as its bytes.
pub(crate) trait AsBytes: Send + Sync + 'static {
    fn as_bytes(&self) -> &[u8];
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Bytes(v) | Storage::Received(v) => v,
            Storage::Typed(t) => t.as_bytes(),
        }
    }
}

/// Bytes that travel as a binary frame to and from Python (`bytes` there). Cloning shares
/// them, and sending one never copies its bytes.
///
/// Outside worker calls and scripts (e.g. with `serde_json::to_string`) it serializes as a
/// list of numbers.
#[derive(Clone)]
pub struct Buffer(Arc<Storage>);

impl Buffer {
    /// The bytes, shared.
    pub fn new(bytes: Vec<u8>) -> Self {
        Buffer(Arc::new(Storage::Bytes(bytes)))
    }

    pub(crate) fn from_storage(storage: Storage) -> Self {
        Buffer(Arc::new(storage))
    }

    /// A received binary frame's bytes (see [`Storage::Received`]).
    pub(crate) fn received(bytes: Vec<u8>) -> Self {
        Buffer(Arc::new(Storage::Received(bytes)))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.0.bytes()
    }

    /// The bytes as a vector: without a copy when this is the only handle on bytes that were
    /// received or made from a `Vec<u8>`.
    pub fn into_vec(self) -> Vec<u8> {
        match Arc::try_unwrap(self.0) {
            Ok(mut storage) => match &mut storage {
                // Taken out: the vector is the caller's now, never reused by the runtime.
                Storage::Bytes(v) | Storage::Received(v) => std::mem::take(v),
                Storage::Typed(t) => t.as_bytes().to_vec(),
            },
            Err(shared) => shared.bytes().to_vec(),
        }
    }
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::new(Vec::new())
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.len())
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(bytes: Vec<u8>) -> Self {
        Buffer::new(bytes)
    }
}

impl From<&[u8]> for Buffer {
    fn from(bytes: &[u8]) -> Self {
        Buffer::new(bytes.to_vec())
    }
}

impl From<Buffer> for Vec<u8> {
    fn from(buffer: Buffer) -> Self {
        buffer.into_vec()
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Borrowed bytes sent as a binary frame: [`Request::call`](crate::Request::call) (and
/// [`Worker::call`](crate::Worker::call)) write them from where they are, without a copy, while
/// the call waits; a call that is submitted or awaited instead copies them once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferRef<'a>(pub &'a [u8]);

/// A binary frame to send.
pub(crate) enum Frame {
    Owned(Vec<u8>),
    Shared(Buffer),
    /// Bytes borrowed from a value the caller keeps alive until they are written (see
    /// [`Frame::own`]).
    Borrowed(*const u8, usize),
}

// SAFETY: a borrowed frame points into a `&[u8]` (which is `Send + Sync`) whose owner keeps it
// alive and unchanged until the frame is written or made owned (see `BufferRef`).
unsafe impl Send for Frame {}
// SAFETY: as above; the bytes are only read.
unsafe impl Sync for Frame {}

impl Frame {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Frame::Owned(v) => v,
            Frame::Shared(b) => b.as_slice(),
            // SAFETY: see `Frame::Borrowed`: the bytes are alive while the frame exists.
            Frame::Borrowed(ptr, len) => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    pub(crate) fn is_borrowed(&self) -> bool {
        matches!(self, Frame::Borrowed(..))
    }

    /// The same bytes for one more message: a shared [`Buffer`] is shared again, not copied;
    /// other bytes are copied.
    pub(crate) fn again(&self) -> Frame {
        match self {
            Frame::Shared(b) => Frame::Shared(b.clone()),
            other => Frame::Owned(other.bytes().to_vec()),
        }
    }

    /// The frame with its bytes owned (a borrowed one is copied).
    pub(crate) fn own(self) -> Frame {
        match self {
            Frame::Borrowed(..) => Frame::Owned(self.bytes().to_vec()),
            other => other,
        }
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Hands a frame to the collector of the message being serialized; its index there, or
/// `None` outside one.
pub(crate) fn collect(frame: impl FnOnce() -> Frame) -> Option<usize> {
    OUTGOING.with(|out| {
        out.borrow_mut().as_mut().map(|frames| {
            frames.push(frame());
            frames.len() - 1
        })
    })
}

/// Takes binary frame `index` of the message being decoded.
pub(crate) fn take<E: serde::de::Error>(index: usize) -> Result<Vec<u8>, E> {
    INCOMING.with(|incoming| {
        let mut incoming = incoming.borrow_mut();
        let frames = incoming.as_mut().ok_or_else(|| {
            E::custom("binary data is only decoded from a worker or script message")
        })?;
        frames
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| E::custom(format!("no binary frame {index} (or used twice)")))
    })
}

#[derive(Serialize, Deserialize)]
struct Ref {
    #[serde(rename = "$buffer")]
    index: usize,
}

impl Serialize for Buffer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match collect(|| Frame::Shared(self.clone())) {
            Some(index) => Ref { index }.serialize(serializer),
            None => serializer.serialize_bytes(self),
        }
    }
}

impl Serialize for BufferRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match collect(|| Frame::Borrowed(self.0.as_ptr(), self.0.len())) {
            Some(index) => Ref { index }.serialize(serializer),
            None => serializer.serialize_bytes(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Buffer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Ref { index } = Ref::deserialize(deserializer)
            .map_err(|e| D::Error::custom(format!("a Buffer takes a binary frame: {e}")))?;
        take(index).map(Buffer::received)
    }
}

/// Serializes `value` to JSON; its buffers are appended to `frames` and referred to by their
/// index there, so several values can share one message's frames.
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

/// Serializes `value` to JSON, collecting its buffers as separate frames.
pub(crate) fn to_json_with_buffers<T: Serialize + ?Sized>(
    value: &T,
) -> serde_json::Result<(Vec<u8>, Vec<Frame>)> {
    let mut frames = Vec::new();
    let json = encode_into(value, &mut frames)?;
    Ok((json, frames))
}

/// Runs `decode` with `frames` as the incoming binary frames.
fn with_incoming<T>(frames: Vec<Vec<u8>>, decode: impl FnOnce() -> T) -> T {
    INCOMING.with(|incoming| *incoming.borrow_mut() = Some(frames.into_iter().map(Some).collect()));
    let value = decode();
    INCOMING.with(|incoming| *incoming.borrow_mut() = None);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one test of this crate's unit tests that drops large received frames: the slot is
    /// the process's, so a second such test running beside it could take its memory.
    #[test]
    fn a_dropped_large_received_frame_is_the_next_same_size_frames_memory() {
        let len = REUSE_MIN + 4321;
        let received = Buffer::received(vec![5; len]);
        let at = received.as_ptr();
        let shared = received.clone();
        drop(received);
        // Still held by a clone: nothing was kept.
        assert!(receive_memory(len).is_none());
        drop(shared);
        let memory = receive_memory(len).expect("the dropped frame's memory");
        assert_eq!(
            (memory.as_ptr(), memory.len(), memory.capacity()),
            (at, 0, len)
        );
        // Taken once: the next frame gets fresh memory.
        assert!(receive_memory(len).is_none());

        // A large frame of another size lets it go.
        drop(Buffer::received(memory));
        assert!(receive_memory(len + 1).is_none());
        assert!(receive_memory(len).is_none());
        // Small frames, bytes given by the program, and bytes taken out are never kept.
        drop(Buffer::received(vec![1; REUSE_MIN - 1]));
        assert!(receive_memory(REUSE_MIN - 1).is_none());
        drop(Buffer::new(vec![1; len]));
        assert!(receive_memory(len).is_none());
        let taken = Buffer::received(vec![2; len]).into_vec();
        assert!(receive_memory(len).is_none());
        assert_eq!(taken, vec![2; len]);
        // An array's bytes are a received frame too.
        let array: crate::NdArray = de::decode(
            br#"{"$ndarray":0,"dtype":"|u1","shape":[1052897]}"#,
            vec![vec![3; len]],
        )
        .unwrap();
        let at = array.bytes().as_ptr();
        drop(array);
        assert_eq!(receive_memory(len).map(|m| m.as_ptr()), Some(at));
    }

    #[test]
    fn buffers_leave_the_json_and_come_back() {
        let value = (Buffer::new(vec![1, 2, 3]), "x", vec![BufferRef(&[9; 5])]);
        let (json, frames) = to_json_with_buffers(&value).unwrap();
        assert_eq!(json, br#"[{"$buffer":0},"x",[{"$buffer":1}]]"#);
        assert!(matches!(frames[0], Frame::Shared(_)) && frames[1].is_borrowed());
        let frames: Vec<Vec<u8>> = frames.into_iter().map(|f| f.bytes().to_vec()).collect();
        assert_eq!(frames, vec![vec![1, 2, 3], vec![9; 5]]);
        let back: (Buffer, String, Vec<Buffer>) = de::decode(&json, frames).unwrap();
        assert_eq!(back.0.into_vec(), [1, 2, 3]);
        assert_eq!((back.1.as_str(), &back.2[0][..]), ("x", &[9u8; 5][..]));
        // Outside a message a Buffer is plain JSON.
        assert_eq!(serde_json::to_string(&Buffer::new(vec![7])).unwrap(), "[7]");
    }

    #[test]
    fn a_sent_buffer_is_shared_into_its_frame_not_copied() {
        let buffer = Buffer::new(vec![3u8; 100_000]);
        let (_, frames) = to_json_with_buffers(&(&buffer, [&buffer])).unwrap();
        // Both frames are the caller's bytes, where they are: what the writer hands the pipe.
        for frame in &frames {
            assert!(matches!(frame, Frame::Shared(_)));
            assert_eq!(frame.bytes().as_ptr(), buffer.as_slice().as_ptr());
        }
        assert_eq!(Arc::strong_count(&buffer.0), 3);
        // Again, for a worker's next start (its init call is kept): shared once more.
        let again = frames[0].again();
        assert_eq!(again.bytes().as_ptr(), buffer.as_slice().as_ptr());
        drop((again, frames));
        assert_eq!(Arc::strong_count(&buffer.0), 1);
    }

    #[test]
    fn an_unshared_received_buffer_becomes_a_vec_without_a_copy() {
        let bytes = vec![5u8; 1000];
        let ptr = bytes.as_ptr();
        let buffer = Buffer::new(bytes);
        let copy = buffer.clone();
        let copied = copy.clone().into_vec();
        assert_ne!(copied.as_ptr(), ptr, "shared: copied");
        drop(copy);
        let moved = buffer.into_vec();
        assert_eq!(moved.as_ptr(), ptr);
    }
}
