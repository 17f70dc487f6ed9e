//! Text relocation: replacing a prefix everywhere in a text file, shebang trampolines
//! included, as the first run does for every text file the manifest lists. Input: placeholder
//! length, new-prefix length (in units of 4 bytes, so prefixes longer than placeholders come
//! up), the placeholder, the new prefix, then the file.
//!
//! Checked beyond "no panic", for the new prefix from the input and again for one made of a
//! byte the placeholder does not hold:
//! - the result never grows past the runtime's limit (twice the size plus 1 MiB, plus a few
//!   dozen bytes for a trampoline): a short placeholder in a long file (`/`) is refused before
//!   anything is allocated, not multiplied by the prefix length;
//! - it is refused only for an empty placeholder or one holding a NUL, for growth past the
//!   limit, or for a shebang the `/bin/sh` trampoline cannot quote; "unchanged" only when the
//!   placeholder does not occur;
//! - with the second prefix, no occurrence is left after the shebang (the byte condition
//!   rules out the replacement spelling the placeholder again; a shebang may become a
//!   two-line trampoline whose fixed text, quotes and spaces included, could).

#![no_main]

use libfuzzer_sys::fuzz_target;
use memchr::memmem;
use pybundle_runtime::fuzzing;

/// What a trampoline may add beyond the counted growth (`#!/bin/sh`, `'''exec'`, quotes,
/// `"$0" "$@" #'''`).
const TRAMPOLINE: u64 = 64;

fn check(file: &[u8], placeholder: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    match fuzzing::relocate_text(file, placeholder, new) {
        Ok(Some(out)) => {
            let limit = fuzzing::max_relocated_text(file.len() as u64) + TRAMPOLINE;
            assert!(
                out.len() as u64 <= limit,
                "grew from {} to {} bytes (limit {limit})",
                file.len(),
                out.len()
            );
            assert!(memmem::find(file, placeholder).is_some());
            Some(out)
        }
        Ok(None) => {
            assert!(memmem::find(file, placeholder).is_none());
            None
        }
        Err(e) => {
            assert!(
                placeholder.is_empty()
                    || placeholder.contains(&0)
                    || e.contains("would grow it")
                    || e.contains("trampoline"),
                "refused for another reason: {e}"
            );
            None
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [plen, nlen, rest @ ..] = input else {
        return;
    };
    let (plen, nlen) = (usize::from(*plen), usize::from(*nlen) * 4);
    if rest.len() < plen + nlen {
        return;
    }
    let (placeholder, rest) = rest.split_at(plen);
    let (new, file) = rest.split_at(nlen);
    check(file, placeholder, new);

    if placeholder.is_empty() || placeholder.contains(&0) {
        return;
    }
    let Some(byte) = (1..=255u8).find(|b| !placeholder.contains(b) && *b != b'\n') else {
        return;
    };
    let other = vec![byte; nlen.max(1)];
    if let Some(out) = check(file, placeholder, &other) {
        let shebang_lines = if out.starts_with(b"#!/bin/sh\n'''exec'") { 2 } else { 1 };
        let mut rest = &out[..];
        for _ in 0..shebang_lines {
            rest = memchr::memchr(b'\n', rest).map_or(&rest[..0], |n| &rest[n + 1..]);
        }
        assert!(
            memmem::find(rest, placeholder).is_none(),
            "the placeholder is still there after the shebang"
        );
        if !file.starts_with(b"#!") {
            assert!(memmem::find(&out, placeholder).is_none());
        }
    }
});
