//! Binary relocation in bounded windows, so that a file of any size is relocated (and
//! verified) with a few MiB of memory.
//!
//! Binary relocation only ever changes bytes from a placeholder to the next NUL, and a
//! placeholder holds no NUL: cutting the file right after a NUL byte never splits what one
//! replacement touches. Each window is therefore processed up to its last NUL with
//! [`relocate_binary`], exactly as the whole file would be. A window without any NUL is
//! passed on untouched when the placeholder does not occur in it; when it does, the string
//! to rewrite is longer than a window and the file is refused (no real binary has a string
//! of megabytes around its install prefix).

use std::io::{self, Read};

use memchr::memmem;

use super::relocate_binary;

/// Window size used by extraction and verification.
pub(crate) const WINDOW: usize = 8 << 20;

/// The window for a file of `len` bytes: [`WINDOW`], or less for a smaller file (one window
/// then holds it whole, and no more memory is set aside than the file needs).
pub(crate) fn window_for(len: u64, placeholder: &[u8]) -> usize {
    let whole = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(1);
    whole.min(WINDOW).max(placeholder.len() + 1)
}

/// Why windowed relocation stopped.
#[derive(Debug)]
pub(crate) enum WindowError {
    /// Reading the input or the sink failed.
    Io(io::Error),
    /// The relocation cannot be done (the reason, for [`crate::Error::Relocate`]).
    Refused(String),
}

impl From<io::Error> for WindowError {
    fn from(e: io::Error) -> Self {
        WindowError::Io(e)
    }
}

/// Relocates the binary content read from `input`, handing each processed region to `sink`
/// in order with whether it changed. Returns the number of occurrences replaced. `window`
/// must be larger than the placeholder (the runtime uses [`WINDOW`]; the fuzzer smaller ones).
pub(crate) fn relocate_binary_windows(
    mut input: impl Read,
    placeholder: &[u8],
    new: &[u8],
    window: usize,
    mut sink: impl FnMut(&[u8], bool) -> io::Result<()>,
) -> Result<usize, WindowError> {
    if placeholder.is_empty() || placeholder.contains(&0) {
        return Err(WindowError::Refused(
            "the manifest gives an empty placeholder or one holding a NUL byte".into(),
        ));
    }
    if window <= placeholder.len() {
        return Err(WindowError::Refused(format!(
            "the placeholder is {} bytes long, more than a relocation window",
            placeholder.len()
        )));
    }
    let finder = memmem::Finder::new(placeholder);
    let mut buf = vec![0u8; window];
    let mut filled = 0;
    let mut eof = false;
    let mut count = 0;
    loop {
        while filled < window && !eof {
            match input.read(&mut buf[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            return Ok(count);
        }
        let cut = if eof {
            filled
        } else if let Some(nul) = memchr::memrchr(0, &buf[..filled]) {
            nul + 1
        } else if finder.find(&buf[..filled]).is_some() {
            return Err(WindowError::Refused(format!(
                "the placeholder lies in a string of over {} bytes without a NUL byte",
                window
            )));
        } else {
            // Keep what could be the start of an occurrence for the next window.
            filled - (placeholder.len() - 1)
        };
        let replaced =
            relocate_binary(&mut buf[..cut], placeholder, new).map_err(WindowError::Refused)?;
        count += replaced;
        sink(&buf[..cut], replaced > 0)?;
        buf.copy_within(cut..filled, 0);
        filled -= cut;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windowed(data: &[u8], ph: &[u8], new: &[u8], window: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        relocate_binary_windows(data, ph, new, window, |region, _| {
            out.extend_from_slice(region);
            Ok(())
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok(out)
    }

    #[test]
    fn same_as_the_whole_file_at_any_window() {
        let ph = b"/opt/placeholder_placeholder";
        let mut data = Vec::new();
        for i in 0..200u32 {
            data.extend_from_slice(format!("x{i}\0").as_bytes());
            if i % 7 == 0 {
                data.extend_from_slice(ph);
                data.extend_from_slice(format!("/lib{i}:").as_bytes());
                data.extend_from_slice(ph);
                data.push(0);
            }
        }
        data.extend_from_slice(ph);
        let mut whole = data.clone();
        relocate_binary(&mut whole, ph, b"/new").unwrap();
        // Each rewritten string is 65 bytes long: any window from there on works.
        for window in [66, 67, 100, 1000, 1 << 20] {
            assert_eq!(
                windowed(&data, ph, b"/new", window).unwrap(),
                whole,
                "window {window}"
            );
        }
    }

    #[test]
    fn a_long_string_around_the_placeholder_is_refused() {
        let ph = b"/opt/ph";
        let data = [vec![b'a'; 100], ph.to_vec(), vec![b'b'; 100], vec![0]].concat();
        let err = windowed(&data, ph, b"/n", 64).unwrap_err();
        assert!(err.contains("without a NUL byte"), "{err}");
        // Without the placeholder a long string passes unchanged.
        let data = [vec![b'a'; 1000], vec![0]].concat();
        assert_eq!(windowed(&data, ph, b"/n", 64).unwrap(), data);
    }
}
