//! Frames: a 4-byte big-endian length, then the payload. The writer side is a header function;
//! the reader side is [`Decoder`], an incremental decoder fed by one `read(2)` at a time, so
//! the same code serves a blocking reader (scripts) and a non-blocking one (workers), and a
//! message that stops arriving halfway can be timed out by its caller.

use std::io;
use std::time::Instant;

/// Bytes a binary frame costs beyond its payload when a message's size is counted against
/// [`Limits::max_message`] (so a flood of empty frames is bounded too).
pub(crate) const FRAME_OVERHEAD: usize = 64;

/// What a reader accepts from a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The largest single frame.
    pub max_frame: usize,
    /// The largest message: its JSON frame plus every binary frame it announces (each counted
    /// with [`FRAME_OVERHEAD`]).
    pub max_message: usize,
}

/// How a child broke the protocol, for the error its callers get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A frame header announced more than the frame cap.
    TooLarge { len: usize, max: usize },
    /// A message with its binary frames would exceed the message cap.
    MessageTooLarge { len: usize, max: usize },
    /// Anything else: bytes that are not a frame, malformed JSON, an unexpected message, a
    /// message that stopped arriving halfway.
    Malformed(String),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::TooLarge { len, max } => {
                write!(f, "a frame of {len} bytes exceeds the limit of {max} bytes")
            }
            Violation::MessageTooLarge { len, max } => write!(
                f,
                "a message of at least {len} bytes (with its binary frames) exceeds the limit \
                 of {max} bytes"
            ),
            Violation::Malformed(detail) => f.write_str(detail),
        }
    }
}

impl Violation {
    /// The error a caller gets for it.
    pub(crate) fn into_error(self, what: String) -> crate::Error {
        match self {
            Violation::TooLarge { len, max } => crate::Error::FrameTooLarge { what, len, max },
            Violation::MessageTooLarge { len, max } => {
                crate::Error::MessageTooLarge { what, len, max }
            }
            Violation::Malformed(detail) => crate::Error::Protocol { what, detail },
        }
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

/// The header for a payload of `len` bytes.
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
pub(crate) fn write_frame(w: &mut impl io::Write, payload: &[u8], max: usize) -> io::Result<()> {
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

enum State {
    /// Collecting a header (`got` of 4 bytes).
    Header { bytes: [u8; 4], got: usize },
    /// Collecting a payload of `len` bytes into `data`.
    Payload { data: Vec<u8>, len: usize },
}

/// One frame as delivered: its payload and whether a JSON message was expected there (else it
/// is a binary frame of the message before it).
pub(crate) struct RawFrame {
    pub payload: Vec<u8>,
    pub message: bool,
}

/// Decodes frames from bytes read one `read(2)` at a time (see the module docs).
pub(crate) struct Decoder {
    limits: Limits,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    state: State,
    /// Binary frames still to come for the message being read.
    binary_left: usize,
    /// What the message being read may still take of [`Limits::max_message`].
    budget: usize,
    /// When the first byte of the message being read arrived.
    started: Option<Instant>,
    consumed: usize,
}

const READ_BUFFER: usize = 64 * 1024;

impl Decoder {
    pub(crate) fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            state: State::Header {
                bytes: [0; 4],
                got: 0,
            },
            binary_left: 0,
            budget: limits.max_message,
            started: None,
            consumed: 0,
        }
    }

    /// When the first byte of a message that has not fully arrived was read; `None` between
    /// messages.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Bytes of complete frames handed out so far (headers included).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn consumed(&self) -> usize {
        self.consumed
    }

    /// Says how many binary frames the message just delivered announced (after
    /// [`next_frame`](Self::next_frame) gave its JSON frame); they count against the message
    /// cap.
    pub(crate) fn expect_binary(&mut self, n: usize) -> Result<(), Violation> {
        let cost = n.saturating_mul(FRAME_OVERHEAD);
        if cost > self.budget {
            return Err(Violation::MessageTooLarge {
                len: self.limits.max_message - self.budget + cost,
                max: self.limits.max_message,
            });
        }
        self.budget -= cost;
        self.binary_left = n;
        if n == 0 {
            self.end_message();
        }
        Ok(())
    }

    fn end_message(&mut self) {
        self.started = None;
        self.budget = self.limits.max_message;
    }

    /// One `read(2)` from `fd` into the decoder: straight into a large payload's memory when
    /// nothing else is buffered. `Ok(0)` at the end of input; a non-blocking descriptor with
    /// nothing to read gives `ErrorKind::WouldBlock`.
    pub(crate) fn read_from(&mut self, fd: &impl std::os::fd::AsRawFd) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if let State::Payload { data, len } = &mut self.state {
                let want = *len - data.len();
                if want >= self.buf.len() {
                    let spare = data.spare_capacity_mut();
                    let n = read_fd(fd, spare.as_mut_ptr().cast(), want)?;
                    // SAFETY: read(2) initialised the first `n` bytes of the spare capacity,
                    // which holds at least `want >= n` bytes (reserved at the header).
                    unsafe { data.set_len(data.len() + n) };
                    return Ok(n);
                }
            }
        } else if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let free = &mut self.buf[self.end..];
        let n = read_fd(fd, free.as_mut_ptr(), free.len())?;
        self.end += n;
        Ok(n)
    }

    /// Feeds bytes from memory (tests and fuzzing).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn feed<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = input.len().min(self.buf.len() - self.end);
        self.buf[self.end..self.end + n].copy_from_slice(&input[..n]);
        self.end += n;
        &input[n..]
    }

    /// The next complete frame from what was read, or `None` until more arrives.
    pub(crate) fn next_frame(&mut self) -> Result<Option<RawFrame>, Violation> {
        loop {
            match &mut self.state {
                State::Header { bytes, got } => {
                    if self.start == self.end {
                        return Ok(None);
                    }
                    if *got == 0 && self.binary_left == 0 && self.started.is_none() {
                        self.started = Some(Instant::now());
                    }
                    let take = (4 - *got).min(self.end - self.start);
                    bytes[*got..*got + take]
                        .copy_from_slice(&self.buf[self.start..self.start + take]);
                    *got += take;
                    self.start += take;
                    if *got < 4 {
                        return Ok(None);
                    }
                    let len = u32::from_be_bytes(*bytes) as usize;
                    let message = self.binary_left == 0;
                    self.check_len(len, message)?;
                    // A large binary frame goes into the memory of one dropped since, when
                    // there is one of its size.
                    let mut data = if message {
                        Vec::new()
                    } else {
                        crate::buffer::receive_memory(len).unwrap_or_default()
                    };
                    data.try_reserve_exact(len)
                        .map_err(|_| Violation::TooLarge {
                            len,
                            max: self.limits.max_frame,
                        })?;
                    self.state = State::Payload { data, len };
                }
                State::Payload { data, len } => {
                    let take = (*len - data.len()).min(self.end - self.start);
                    data.extend_from_slice(&self.buf[self.start..self.start + take]);
                    self.start += take;
                    if data.len() < *len {
                        return Ok(None);
                    }
                    let payload = std::mem::take(data);
                    self.consumed += 4 + payload.len();
                    self.state = State::Header {
                        bytes: [0; 4],
                        got: 0,
                    };
                    let message = self.binary_left == 0;
                    if !message {
                        self.binary_left -= 1;
                        if self.binary_left == 0 {
                            self.end_message();
                        }
                    }
                    return Ok(Some(RawFrame { payload, message }));
                }
            }
        }
    }

    /// Checks a frame's announced length against both caps before anything is allocated.
    fn check_len(&mut self, len: usize, message: bool) -> Result<(), Violation> {
        let max = self.limits.max_frame;
        if len > max {
            let after = &self.buf[self.start..self.end];
            // A header over the cap followed by something that cannot start a message is
            // foreign bytes on the channel, not an oversized frame: a peer writing to the
            // protocol's descriptor directly (a C extension, `os.write`) looks so.
            if message && after.first().is_some_and(|b| *b != b'{') {
                let shown = &after[..after.len().min(40)];
                return Err(Violation::Malformed(format!(
                    "the output is not a frame stream: a header announcing {len} bytes (over \
                     the limit of {max}) followed by {:?}; something wrote to the protocol's \
                     descriptor directly",
                    String::from_utf8_lossy(shown)
                )));
            }
            return Err(Violation::TooLarge { len, max });
        }
        // A binary frame's overhead was charged when its message announced it.
        if len > self.budget {
            return Err(Violation::MessageTooLarge {
                len: self.limits.max_message - self.budget + len,
                max: self.limits.max_message,
            });
        }
        self.budget -= len;
        Ok(())
    }

    /// The violation when the input ended: `None` at a clean end between messages.
    pub(crate) fn at_end(&self) -> Option<Violation> {
        let inside = match &self.state {
            State::Header { got, .. } => *got > 0,
            State::Payload { .. } => true,
        };
        if inside || self.start < self.end {
            Some(Violation::Malformed(
                "the output ended inside a frame".into(),
            ))
        } else if self.binary_left > 0 {
            Some(Violation::Malformed(
                "the output ended before all binary frames of a message".into(),
            ))
        } else {
            None
        }
    }

    /// What a message that stopped arriving looks like, for a timeout.
    pub(crate) fn stalled(&self, after: std::time::Duration) -> Violation {
        let detail = match &self.state {
            State::Payload { data, len } => format!("{} of {len} bytes of a frame", data.len()),
            State::Header { got, .. } if *got > 0 => format!("{got} of 4 bytes of a frame header"),
            State::Header { .. } => format!("{} binary frames still missing", self.binary_left),
        };
        Violation::Malformed(format!(
            "a message stopped arriving halfway ({detail} after {after:?}); the child is stuck \
             inside a write"
        ))
    }
}

fn read_fd(fd: &impl std::os::fd::AsRawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: `ptr` points at `len` writable bytes owned by the caller for this call.
        let n = unsafe { libc::read(fd.as_raw_fd(), ptr.cast(), len.min(isize::MAX as usize)) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_frame: usize) -> Limits {
        Limits {
            max_frame,
            max_message: max_frame * 4,
        }
    }

    fn frames(decoder: &mut Decoder, mut input: &[u8]) -> Result<Vec<RawFrame>, Violation> {
        let mut out = Vec::new();
        loop {
            while let Some(frame) = decoder.next_frame()? {
                if frame.message {
                    let n = serde_json::from_slice::<serde_json::Value>(&frame.payload)
                        .ok()
                        .and_then(|v| v["buffers"].as_u64())
                        .unwrap_or(0);
                    decoder.expect_binary(n as usize)?;
                }
                out.push(frame);
            }
            if input.is_empty() {
                return Ok(out);
            }
            input = decoder.feed(input);
        }
    }

    #[test]
    fn frames_round_trip_across_any_split() {
        let mut wire = Vec::new();
        write_frame(&mut wire, br#"{"type":"result","buffers":1}"#, 100_000).unwrap();
        write_frame(&mut wire, &vec![b'x'; 70_000], 100_000).unwrap();
        write_frame(&mut wire, br#"{"type":"pong"}"#, 100_000).unwrap();
        assert!(write_frame(&mut wire.clone(), b"too long", 3).is_err());
        for split in [1, 3, 4, 5, 7000, wire.len()] {
            let mut d = Decoder::new(limits(100_000));
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                got.extend(frames(&mut d, chunk).unwrap());
            }
            assert_eq!(got.len(), 3, "split {split}");
            assert!(got[0].message && !got[1].message && got[2].message);
            assert_eq!(got[1].payload.len(), 70_000);
            assert_eq!(d.consumed(), wire.len());
            assert_eq!(d.at_end(), None);
            assert_eq!(d.started(), None);
        }
    }

    #[test]
    fn oversized_truncated_and_foreign_input_are_violations() {
        let mut d = Decoder::new(limits(10));
        assert_eq!(
            frames(&mut d, &[0, 0, 1, 0, b'{']).err(),
            Some(Violation::TooLarge { len: 256, max: 10 })
        );
        let mut d = Decoder::new(limits(10));
        let Err(Violation::Malformed(text)) = frames(&mut d, b"hello world") else {
            panic!("text is not a frame stream")
        };
        assert!(
            text.contains("not a frame stream") && text.contains("o world"),
            "{text}"
        );
        let mut d = Decoder::new(limits(10));
        frames(&mut d, &[0, 0, 0, 5, b'a']).unwrap();
        assert!(d.started().is_some());
        assert!(d.at_end().unwrap().to_string().contains("inside a frame"));
        assert!(d
            .stalled(std::time::Duration::from_secs(1))
            .to_string()
            .contains("1 of 5"));
    }

    #[test]
    fn a_message_and_its_binary_frames_share_one_cap() {
        // 2^25 empty frames used to cost 783 MB in the parent: now the announcement alone is
        // over the cap.
        let mut d = Decoder::new(Limits {
            max_frame: 100,
            max_message: 1000,
        });
        let mut wire = Vec::new();
        write_frame(&mut wire, br#"{"buffers":33554432}"#, 100).unwrap();
        assert!(matches!(
            frames(&mut d, &wire),
            Err(Violation::MessageTooLarge { .. })
        ));
        // Frames each under the frame cap, together over the message cap.
        let mut d = Decoder::new(Limits {
            max_frame: 100,
            max_message: 300,
        });
        let mut wire = Vec::new();
        write_frame(&mut wire, br#"{"buffers":3}"#, 100).unwrap();
        for _ in 0..3 {
            write_frame(&mut wire, &[7; 90], 100).unwrap();
        }
        assert!(matches!(
            frames(&mut d, &wire),
            Err(Violation::MessageTooLarge { max: 300, .. })
        ));
        // The budget is per message.
        let mut d = Decoder::new(Limits {
            max_frame: 100,
            max_message: 300,
        });
        let mut wire = Vec::new();
        for _ in 0..10 {
            write_frame(&mut wire, br#"{"buffers":1}"#, 100).unwrap();
            write_frame(&mut wire, &[7; 90], 100).unwrap();
        }
        assert_eq!(frames(&mut d, &wire).unwrap().len(), 20);
    }
}
