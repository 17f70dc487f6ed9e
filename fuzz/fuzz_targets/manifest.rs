//! The manifest reader: what `Bundle` reads from an archive before it extracts anything.
//! Input: one mode byte, then either a whole archive (even mode byte) or manifest JSON that
//! the target wraps as the archive's first entry and zstd frame (odd), so the fuzzer reaches
//! the JSON parser and validation without having to invent zstd and tar.
//!
//! Checked beyond "no panic": an accepted manifest has a valid id and name, and written back
//! as JSON and read again it is accepted as the same manifest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pybundle_runtime::{format, fuzzing};

/// `json` as the first tar entry (`.pybundle/manifest.json`) in one zstd frame, the layout
/// cargo-pybundle writes.
fn archive_of(json: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format::MANIFEST_PATH, json)
        .expect("writing to memory");
    let bytes = tar.into_inner().expect("writing to memory");
    zstd::encode_all(&bytes[..], 1).expect("compressing in memory")
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let archive = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        archive_of(rest)
    };
    let Ok(manifest) = fuzzing::manifest(&archive) else {
        return;
    };
    assert_eq!(manifest.id.len(), 64);
    assert!(manifest
        .id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(!manifest.name.is_empty() && !manifest.name.contains('/'));
    assert!(manifest.format_version <= format::FORMAT_VERSION);
    let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let again = fuzzing::manifest(&archive_of(&json)).expect("a written manifest reads back");
    assert_eq!(again, manifest);
});
