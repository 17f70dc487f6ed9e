//! Decompression on a thread of its own, so that inflating the archive overlaps with writing
//! files (what `tar --zstd` gets from running `zstd` as a second process).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use sha2::{Digest, Sha256};

use super::limits::MAX_WINDOW_LOG;

/// Size of the decompressed chunks handed over.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the threads (bounds memory at about `DEPTH` MiB).
const DEPTH: usize = 4;

/// Calls `consume` with a reader of the decompressed `body` while a scoped thread
/// decompresses ahead. Returns what `consume` returned and, if `hash` was asked and the whole
/// stream was decompressed, its sha256.
pub(crate) fn decoded<T>(
    body: &[u8],
    hash: bool,
    release_read_pages: bool,
    consume: impl FnOnce(&mut ChunkReader) -> T,
) -> (T, Option<[u8; 32]>) {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(DEPTH);
        let (recycle_tx, recycle_rx) = sync_channel(DEPTH + 2);
        let producer = scope.spawn(move || {
            let input = Input {
                body,
                pos: 0,
                released: 0,
                release: release_read_pages && file_backed(body),
            };
            produce(input, hash, &tx, &recycle_rx)
        });
        let mut reader = ChunkReader {
            rx,
            recycle: recycle_tx,
            cur: Vec::new(),
            pos: 0,
        };
        let out = consume(&mut reader);
        // Hang up first: a producer still decompressing (the consumer stopped early on an
        // error) sees its next send fail and returns.
        drop(reader);
        // If the decoder panicked, the consumer already saw the stream end early (the entry
        // count or the error it got says so); no hash is trusted then.
        let digest = producer.join().unwrap_or_default();
        (out, digest)
    })
}

/// The compressed body as the decoder reads it. With `release`, every [`RELEASE_STEP`] bytes
/// consumed are handed back to the kernel (`MADV_DONTNEED`): for the embedded archive, a
/// private read-only file mapping, that drops the pages (they would be read from the file
/// again if touched), so extraction's resident memory stays flat whatever the archive's size.
struct Input<'a> {
    body: &'a [u8],
    pos: usize,
    released: usize,
    release: bool,
}

/// Whether `body` lies in a mapping of a file (so released pages read back from the file).
/// A packed executable (UPX and the like) unpacks itself into anonymous memory, where a
/// released page would read back as zeros: then nothing is released.
fn file_backed(body: &[u8]) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let at = body.as_ptr() as usize;
    maps.lines().any(|line| {
        // `start-end perms offset dev inode path`
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap_or_default();
        let inode = fields.nth(3).unwrap_or("0");
        let Some((start, end)) = range.split_once('-') else {
            return false;
        };
        let parse = |h: &str| usize::from_str_radix(h, 16).unwrap_or(0);
        (parse(start)..parse(end)).contains(&at) && inode != "0"
    })
}

/// How much of the consumed input accumulates before it is released.
const RELEASE_STEP: usize = 8 << 20;

impl Input<'_> {
    fn release_consumed(&mut self) {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .unwrap_or(4096)
                .max(1);
            let start = (self.body.as_ptr() as usize + self.released).next_multiple_of(page);
            let end = (self.body.as_ptr() as usize + self.pos) / page * page;
            if end > start {
                // SAFETY: [start, end) lies inside `body`, which is only ever read, and only
                // `Input` reads it, never behind `pos` again; for a file-backed private mapping
                // the pages are re-read from the file if anything touches them. Failure is
                // harmless (the pages stay resident).
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                }
            }
        }
        self.released = self.pos;
    }
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&self.body[self.pos..]).read(buf)?;
        io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl io::BufRead for Input<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(&self.body[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.body.len());
        if self.release && self.pos - self.released >= RELEASE_STEP {
            self.release_consumed();
        }
    }
}

fn produce(
    body: Input<'_>,
    hash: bool,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    recycled: &Receiver<Vec<u8>>,
) -> Option<[u8; 32]> {
    let decoder = zstd::stream::read::Decoder::with_buffer(body).and_then(|mut d| {
        d.window_log_max(MAX_WINDOW_LOG)?;
        Ok(d)
    });
    let mut decoder = match decoder {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.send(Err(e));
            return None;
        }
    };
    let mut hasher = hash.then(Sha256::new);
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let n = match fill(&mut decoder, &mut chunk) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(name_window_error(e)));
                return None;
            }
        };
        if n == 0 {
            return hasher.map(|h| h.finalize().into());
        }
        chunk.truncate(n);
        if let Some(h) = &mut hasher {
            h.update(&chunk);
        }
        if tx.send(Ok(chunk)).is_err() {
            return None;
        }
    }
}

/// A frame asks for a larger window than [`MAX_WINDOW_LOG`] allows (carried inside an
/// [`io::Error`] through the tar reader, then turned into [`crate::Error::ArchiveLimit`]).
#[derive(Debug)]
pub(crate) struct WindowTooLarge;

impl std::fmt::Display for WindowTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it needs a zstd window over {} MiB (limit: window log {MAX_WINDOW_LOG}, what the \
             highest compression level uses)",
            1u64 << (MAX_WINDOW_LOG - 20)
        )
    }
}

impl std::error::Error for WindowTooLarge {}

/// zstd reports a window over the limit as a plain message; say which limit it was.
pub(crate) fn name_window_error(e: io::Error) -> io::Error {
    let code = zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge;
    let too_large = zstd::zstd_safe::get_error_name(0usize.wrapping_sub(code as usize));
    if e.get_ref()
        .is_some_and(|inner| inner.to_string() == too_large)
    {
        io::Error::other(WindowTooLarge)
    } else {
        e
    }
}

/// Reads until `buf` is full or the stream ends.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The consumer's end: a [`Read`] over the chunks the decoder thread sends.
pub(crate) struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let done = std::mem::replace(&mut self.cur, chunk);
                    self.pos = 0;
                    // Full (enough spare buffers) or gone: then this one is simply freed.
                    let _ = self.recycle.try_send(done);
                }
                Ok(Err(e)) => return Err(e),
                // The decoder finished (or died; the caller's checks catch a short stream).
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hash() {
        let data: Vec<u8> = (0..5_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let compressed = zstd::bulk::compress(&data, 1).unwrap();
        let (out, digest) = decoded(&compressed, true, false, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        assert_eq!(out, data);
        assert_eq!(digest, Some(<[u8; 32]>::from(Sha256::digest(&data))));
    }

    /// Frame 2 as the archive writer makes it: streamed, its size not announced, so the frame
    /// asks for the whole window of its level.
    fn streamed(data: &[u8], level: i32, window_log: Option<u32>) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
        if let Some(log) = window_log {
            encoder.window_log(log).unwrap();
        }
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn the_highest_level_needs_the_whole_window_limit_and_one_more_is_refused() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 997).to_le_bytes())
            .collect();
        let highest = *zstd::compression_level_range().end();
        let frame = streamed(&data, highest, None);
        let (out, _) = decoded(&frame, false, false, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        });
        assert_eq!(out.unwrap(), data, "level {highest} within the limit");
        // It needs all of it: a decoder allowing one window log less refuses the frame.
        let mut smaller = zstd::stream::read::Decoder::new(&frame[..]).unwrap();
        smaller.window_log_max(MAX_WINDOW_LOG - 1).unwrap();
        assert!(smaller.read_to_end(&mut Vec::new()).is_err());
        // One window log over the limit is refused, and the error says which limit.
        let over = streamed(&data, 3, Some(MAX_WINDOW_LOG + 1));
        let (res, digest) = decoded(&over, true, false, |r| io::copy(r, &mut io::sink()));
        let err = res.unwrap_err();
        assert!(
            err.get_ref().is_some_and(|e| e.is::<WindowTooLarge>()),
            "{err}"
        );
        assert_eq!(digest, None);
    }

    #[test]
    fn truncated_input_is_an_error_and_no_hash() {
        let data = vec![7u8; 3_000_000];
        let compressed = zstd::bulk::compress(&data, 1).unwrap();
        let (res, digest) = decoded(&compressed[..compressed.len() - 3], true, false, |r| {
            io::copy(r, &mut io::sink())
        });
        assert!(res.is_err());
        assert_eq!(digest, None);
    }

    #[test]
    fn an_early_stop_does_not_hang() {
        let data = vec![1u8; 50 * CHUNK];
        let compressed = zstd::bulk::compress(&data, 1).unwrap();
        let (first, digest) = decoded(&compressed, true, false, |r| {
            let mut b = [0u8; 10];
            r.read_exact(&mut b).map(|()| b[0])
        });
        assert_eq!(first.unwrap(), 1);
        assert_eq!(
            digest, None,
            "a stream not read to the end has no trusted hash"
        );
    }
}
