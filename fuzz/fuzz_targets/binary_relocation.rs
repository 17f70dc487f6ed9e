//! Binary relocation: rewriting a prefix inside NUL-terminated strings of a file, as the first
//! run does for every binary file the manifest lists. Input: placeholder length, new-prefix
//! length, the placeholder, the new prefix, then the file.
//!
//! Checked beyond "no panic", twice per input:
//! 1. With the new prefix taken from the input: the file keeps its length; it is refused
//!    exactly when the placeholder is empty or holds a NUL, or occurs and the new prefix is
//!    longer, and then left as it was; a file reported unchanged is byte for byte unchanged; bytes before the first
//!    occurrence never change.
//! 2. With a shorter (or equal) new prefix made of a byte the placeholder does not contain:
//!    it always succeeds and afterwards the placeholder no longer occurs (for a placeholder
//!    without NUL bytes, which a path never holds). The byte condition rules out the one way
//!    a correct relocation can leave the placeholder behind: the new prefix and the bytes that
//!    follow it spelling the placeholder again.
//!
//! And both times, relocation in windows (how extraction and `verify` relocate files of any
//! size, here with windows of a few dozen bytes so that the cuts fall everywhere) gives the
//! same bytes as relocating the whole file, or is refused only because a string around the
//! placeholder is longer than a window.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memchr::memmem;
use pybundle_runtime::fuzzing;

fn check(original: &[u8], placeholder: &[u8], new: &[u8]) -> (Vec<u8>, Result<bool, String>) {
    let mut data = original.to_vec();
    let result = fuzzing::relocate_binary(&mut data, placeholder, new);
    let window = placeholder.len() + 1 + original.len() % 61;
    match (
        fuzzing::relocate_binary_windowed(original, placeholder, new, window),
        &result,
    ) {
        (Ok(windowed), Ok(_)) => assert_eq!(windowed, data, "windowed relocation differs"),
        (Err(e), Ok(_)) => assert!(
            e.contains("without a NUL byte"),
            "windowed relocation refused what the whole file allows: {e}"
        ),
        (Ok(_), Err(e)) => panic!("windowed relocation allowed what the whole file refuses: {e}"),
        (Err(_), Err(_)) => {}
    }
    assert_eq!(data.len(), original.len(), "the length changed");
    let first = memmem::find(original, placeholder);
    match &result {
        Err(_) => {
            assert!(
                placeholder.is_empty()
                    || placeholder.contains(&0)
                    || (first.is_some() && new.len() > placeholder.len()),
                "refused a relocation that fits: {result:?}"
            );
            assert_eq!(data, original, "a refused relocation changed the file");
        }
        Ok(changed) => {
            assert!(!placeholder.contains(&0));
            assert!(!(first.is_some() && new.len() > placeholder.len()));
            if !changed {
                assert_eq!(data, original, "reported unchanged but changed");
            }
            if let Some(at) = first {
                assert_eq!(
                    data[..at],
                    original[..at],
                    "bytes before the placeholder changed"
                );
            } else {
                assert!(!changed && data == original);
            }
        }
    }
    (data, result)
}

fuzz_target!(|input: &[u8]| {
    let [plen, nlen, rest @ ..] = input else {
        return;
    };
    let (plen, nlen) = (usize::from(*plen), usize::from(*nlen));
    if rest.len() < plen + nlen {
        return;
    }
    let (placeholder, rest) = rest.split_at(plen);
    let (new, file) = rest.split_at(nlen);
    let _ = check(file, placeholder, new);

    if placeholder.is_empty() || placeholder.contains(&0) {
        return;
    }
    let Some(byte) = (1..=255u8).find(|b| !placeholder.contains(b)) else {
        return;
    };
    let shorter = vec![byte; nlen % placeholder.len() + 1];
    let (data, result) = check(file, placeholder, &shorter);
    assert!(result.is_ok(), "a shorter prefix was refused: {result:?}");
    assert!(
        memmem::find(&data, placeholder).is_none(),
        "the placeholder is still there after relocation"
    );
    assert_eq!(result, Ok(memmem::find(file, placeholder).is_some()));
});
