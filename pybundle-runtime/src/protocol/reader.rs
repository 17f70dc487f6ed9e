//! Messages from a child: the frame [`Decoder`] plus the assembly of a JSON message with the
//! binary frames it announces.

use std::io;

use super::frame::{Decoder, Limits, Violation};
use super::message::Message;

/// Reads whole messages (see the module docs).
pub(crate) struct Reader {
    decoder: Decoder,
    /// A message whose binary frames are still arriving, and how many are missing.
    pending: Option<(Message, usize)>,
}

impl Reader {
    pub(crate) fn new(limits: Limits) -> Self {
        Reader {
            decoder: Decoder::new(limits),
            pending: None,
        }
    }

    /// One `read(2)` from `fd` (see [`Decoder::read_from`]).
    pub(crate) fn read_from(&mut self, fd: &impl std::os::fd::AsRawFd) -> io::Result<usize> {
        self.decoder.read_from(fd)
    }

    /// The next complete message from what was read, or `None` until more arrives.
    pub(crate) fn next(&mut self) -> Result<Option<Message>, Violation> {
        while let Some(frame) = self.decoder.next_frame()? {
            if frame.message {
                let (message, buffers) = Message::parse(frame.payload)?;
                self.decoder.expect_binary(buffers)?;
                if buffers == 0 {
                    return Ok(Some(message));
                }
                self.pending = Some((message, buffers));
                continue;
            }
            let Some((message, left)) = self.pending.as_mut() else {
                return Err(Violation::Malformed(
                    "a binary frame without a message".into(),
                ));
            };
            message.frames.push(frame.payload);
            *left -= 1;
            if *left == 0 {
                return Ok(self.pending.take().map(|(m, _)| m));
            }
        }
        Ok(None)
    }

    /// When the message being read started to arrive (`None` between messages).
    pub(crate) fn started(&self) -> Option<std::time::Instant> {
        self.decoder.started()
    }

    /// The violation for a message that has not completed within `after`.
    pub(crate) fn stalled(&self, after: std::time::Duration) -> Violation {
        self.decoder.stalled(after)
    }

    /// The violation at the end of input (`None` at a clean end between messages).
    pub(crate) fn at_end(&self) -> Option<Violation> {
        self.decoder.at_end()
    }
}
