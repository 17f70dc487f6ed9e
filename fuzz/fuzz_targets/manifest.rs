//! The manifest reader: what `Bundle` reads from an archive before it extracts anything (and
//! what `cargo pybundle inspect` runs on files users hand it). Input: one mode byte, then
//!   - mode % 3 == 0: a whole archive;
//!   - mode % 3 == 1: manifest JSON that the target wraps as the archive's first entry and
//!     zstd frame, so the fuzzer reaches the JSON parser and validation without having to
//!     invent zstd and tar;
//!   - mode % 3 == 2: raw tar bytes that the target compresses as the first frame, so the
//!     fuzzer reaches the tar records before the manifest (GNU long names, PAX records, deep
//!     and long paths) without inventing zstd.
//!
//! Checked beyond "no panic": an accepted manifest has a valid id and name, and written back
//! as JSON and read again it is accepted as the same manifest. Memory is bounded by
//! libFuzzer's `-malloc_limit_mb` (set by `cargo xtask stress`): a record that claims a
//! gigabyte must be refused, not allocated.

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
    let archive = match mode % 3 {
        0 => rest.to_vec(),
        1 => archive_of(rest),
        _ => zstd::encode_all(rest, 1).expect("compressing in memory"),
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
