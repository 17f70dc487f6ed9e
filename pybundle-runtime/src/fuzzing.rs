//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not a public API).
//!
//! Thin wrappers over the crate's own code, so the fuzzers exercise exactly what runs in a
//! program: the frame decoder the worker and script readers use ([`protocol::Decoder`], the
//! [`protocol::Message`] parse and the error descriptions), the manifest reader
//! ([`crate::manifest_of`]: first zstd frame, tar entries with their long-name and PAX
//! records, JSON, validation), relocation ([`relocate::relocate_bytes`], the one definition
//! extraction and `verify` use, and its windowed binary form), and a whole first run
//! ([`crate::Bundle::ready`]: the archive limits, extraction, relocation). No logic lives
//! here beyond looping and collecting results for the targets to check.

use crate::format::{FileMode, Manifest};
use crate::protocol::{self, Decoder, Limits, Message};
use crate::relocate;

/// One frame as the decoder delivered it, with how its message parse went.
#[derive(Debug)]
pub struct Frame {
    /// The payload.
    pub payload: Vec<u8>,
    /// Whether the payload was expected to be a JSON message (not a binary buffer).
    pub message: bool,
    /// For a message: the number of binary frames it announced, or the violation text when it
    /// does not parse.
    pub parsed: Option<Result<usize, String>>,
}

/// What decoding a byte stream as frames gave.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Frames read, in order.
    pub frames: Vec<Frame>,
    /// Bytes consumed by the frames read (headers included).
    pub consumed: usize,
    /// Why decoding stopped early: the violation the runtime would report.
    pub error: Option<String>,
}

/// Decodes `stream` as the runtime reads a child's output: a message frame, then as many
/// binary frames as it announces, repeated until the input ends or breaks the protocol.
pub fn decode_frames(stream: &[u8], max: usize) -> Decoded {
    let max = protocol::clamp_max(max);
    let mut decoder = Decoder::new(Limits {
        max_frame: max,
        max_message: protocol::message_cap(protocol::DEFAULT_MAX_MESSAGE, max),
    });
    let mut rest = stream;
    let mut out = Decoded::default();
    loop {
        let frame = match decoder.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) if rest.is_empty() => {
                out.error = decoder.at_end().map(|v| v.to_string());
                break;
            }
            Ok(None) => {
                rest = decoder.feed(rest);
                continue;
            }
            Err(violation) => {
                out.error = Some(violation.to_string());
                break;
            }
        };
        out.consumed = decoder.consumed();
        let parsed = frame.message.then(|| {
            Message::parse(frame.payload.clone())
                .and_then(|(_, n)| decoder.expect_binary(n).map(|()| n))
                .map_err(|v| v.to_string())
        });
        let stop = matches!(parsed, Some(Err(_)));
        out.frames.push(Frame {
            payload: frame.payload,
            message: frame.message,
            parsed,
        });
        if stop {
            break;
        }
    }
    out
}

/// The start message the runtime sends a one-shot script, with `input` as its JSON input.
pub fn script_start(input: &[u8]) -> Vec<u8> {
    protocol::Outgoing::Start {
        log_level: None,
        init: None,
        input: Some(input),
        buffers: 0,
    }
    .encode()
}

/// The arguments after `python -I` that start the one-shot script runner: `-c`, the bootstrap
/// code, the package directory `lib`, the frame cap and the script.
pub fn script_command(
    lib: &std::path::Path,
    max_frame: usize,
    script: &std::path::Path,
) -> Vec<std::ffi::OsString> {
    let layout = protocol::table::SCRIPT_ARGV;
    let mut args = vec!["-c".into(), protocol::bootstrap(&layout).into()];
    args.extend(protocol::argv(&layout, |name| match name {
        "lib" => vec![lib.into()],
        "max_frame" => vec![max_frame.to_string().into()],
        "script" => vec![script.into()],
        _ => Vec::new(),
    }));
    args
}

/// Encodes one frame as the runtime writes it.
pub fn encode_frame(payload: &[u8], max: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    protocol::write_frame(&mut out, payload, protocol::clamp_max(max))?;
    Ok(out)
}

/// Reads and validates an archive's manifest, as `Bundle` does before extracting.
pub fn manifest(archive: &[u8]) -> crate::Result<Manifest> {
    crate::manifest_of(archive)
}

/// Relocates a binary file's content in place, as extraction does; `Ok(true)` when it
/// changed. The error text is what the runtime reports for the file.
pub fn relocate_binary(data: &mut Vec<u8>, placeholder: &[u8], new: &[u8]) -> Result<bool, String> {
    relocate::relocate_bytes(data, placeholder, new, FileMode::Binary)
}

/// Relocates a text file's content as extraction does: `Ok(None)` when nothing changes. The
/// error text is what the runtime reports for the file.
pub fn relocate_text(
    data: &[u8],
    placeholder: &[u8],
    new: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let mut out = data.to_vec();
    relocate::relocate_bytes(&mut out, placeholder, new, FileMode::Text)
        .map(|changed| changed.then_some(out))
}

/// The largest size the runtime lets a relocated text file of `len` bytes reach (before a
/// shebang trampoline, which adds a few dozen bytes).
pub fn max_relocated_text(len: u64) -> u64 {
    crate::extract::limits::max_relocated_text(len)
}

/// Relocates binary content window by window, as extraction does for files of any size,
/// with a window of `window` bytes (the runtime uses 8 MiB).
pub fn relocate_binary_windowed(
    data: &[u8],
    placeholder: &[u8],
    new: &[u8],
    window: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len());
    relocate::window::relocate_binary_windows(data, placeholder, new, window, |region, _| {
        out.extend_from_slice(region);
        Ok(())
    })
    .map_err(|e| match e {
        relocate::window::WindowError::Refused(reason) => reason,
        relocate::window::WindowError::Io(e) => e.to_string(),
    })?;
    Ok(out)
}

/// A first run of `archive` with `cache` as the cache root: the bundle directory on success,
/// the error message otherwise.
pub fn ready(archive: &[u8], cache: &std::path::Path) -> Result<std::path::PathBuf, String> {
    crate::Bundle::from_bytes(archive.to_vec())
        .and_then(|b| b.cache_dir(cache).remove_old_versions(false).ready())
        .map(|env| env.root().to_path_buf())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few inputs of each kind through the wrappers, so the fuzz targets' entry points keep
    /// compiling and meaning what the targets assume, inside the normal test suite.
    #[test]
    fn wrappers_run_over_small_inputs() {
        let mut stream = encode_frame(
            br#"{"type":"result","id":1,"data":{"$buffer":0},"buffers":1}"#,
            1 << 20,
        )
        .unwrap();
        stream.extend(encode_frame(b"\x00\x01binary", 1 << 20).unwrap());
        stream.extend(encode_frame(br#"{"type":"pong","id":2}"#, 1 << 20).unwrap());
        let decoded = decode_frames(&stream, 1 << 20);
        assert_eq!(decoded.error, None);
        assert_eq!(decoded.consumed, stream.len());
        assert_eq!(decoded.frames.len(), 3);
        assert!(!decoded.frames[1].message);

        let decoded = decode_frames(&stream[..stream.len() - 1], 1 << 20);
        assert_eq!(decoded.frames.len(), 2);
        assert!(decoded.error.unwrap().contains("ended inside a frame"));
        let decoded = decode_frames(b"hello world", 16);
        assert!(decoded.error.unwrap().contains("not a frame stream"));
        let decoded = decode_frames(&encode_frame(b"{nope", 16).unwrap(), 16);
        assert!(matches!(&decoded.frames[0].parsed, Some(Err(e)) if e.contains("malformed")));

        assert!(manifest(b"").is_err());
        assert!(manifest(b"\x28\xb5\x2f\xfd garbage").is_err());

        let placeholder = b"/opt/_placehold_placehold_placehold";
        let mut data = [&b"\x7fELF\0"[..], placeholder, b"/lib\0tail"].concat();
        let len = data.len();
        assert_eq!(relocate_binary(&mut data, placeholder, b"/c/env"), Ok(true));
        assert_eq!(data.len(), len);
        assert!(memchr::memmem::find(&data, placeholder).is_none());
        assert!(memchr::memmem::find(&data, b"/c/env/lib\0").is_some());
        // Found by the fuzzer: a placeholder starting with NUL used to loop forever.
        assert!(relocate_binary(&mut vec![0, 0], b"\0", b"").is_err());
        let mut long = placeholder.to_vec();
        assert!(relocate_binary(&mut long, placeholder, &[b'x'; 64]).is_err());

        let text = b"#!/opt/p/bin/python\nprint('/opt/p')\n";
        let out = relocate_text(text, b"/opt/p", b"/c/env").unwrap().unwrap();
        assert_eq!(out, b"#!/c/env/bin/python\nprint('/c/env')\n");
        assert!(relocate_text(&[b'/'; 4096], b"/", &[b'x'; 600]).is_err());
        assert_eq!(max_relocated_text(10), 20 + (1 << 20));
        let bin = [&b"a\0"[..], placeholder, b"/lib\0tail"].concat();
        let whole = {
            let mut d = bin.clone();
            relocate_binary(&mut d, placeholder, b"/n").unwrap();
            d
        };
        assert_eq!(
            relocate_binary_windowed(&bin, placeholder, b"/n", 48).unwrap(),
            whole
        );

        let tmp = tempfile::tempdir().unwrap();
        let err = ready(b"not an archive", &tmp.path().join("cache")).unwrap_err();
        assert!(err.contains("zstd"), "{err}");
    }
}
