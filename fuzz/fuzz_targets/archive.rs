//! A whole first run on a hostile archive: the limits on entries and records, extraction,
//! relocation. Input: `file_count` (2 bytes), `unpacked_size` (4 bytes), one relocation
//! (mode byte: 0 none, 1 text, 2 binary; placeholder length and bytes; path length and
//! bytes), then raw tar bytes that become the body. The target writes the archive the way
//! cargo-pybundle does (manifest frame, body frame, the id the body's sha256, so that runs
//! can succeed) and makes it ready in a fresh cache on tmpfs when there is one.
//!
//! Checked beyond "no panic" (memory is bounded by libFuzzer's `-malloc_limit_mb`):
//! - nothing is written beside the cache root: a sibling directory stays empty, and every
//!   symlink extracted resolves inside the bundle;
//! - a failed run leaves no bundle directory, temporary or trash directory in the cache;
//! - a successful run leaves no file or directory writable by group or others, and no
//!   relocated text file grown past the limit.

#![no_main]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pybundle_runtime::format::{FileMode, Manifest, PythonInfo, Relocation, MANIFEST_PATH};
use pybundle_runtime::fuzzing;
use sha2::{Digest, Sha256};

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn archive(input: &[u8]) -> Option<(Vec<u8>, Vec<Relocation>, &[u8])> {
    let mut input = input;
    let count = take(&mut input, 2)?;
    let size = take(&mut input, 4)?;
    let mode = take(&mut input, 1)?[0] % 3;
    let plen = usize::from(take(&mut input, 1)?[0]);
    let placeholder = take(&mut input, plen)?;
    let path_len = usize::from(take(&mut input, 1)?[0]);
    let path = take(&mut input, path_len)?;
    let relocations = match (
        mode,
        std::str::from_utf8(placeholder),
        std::str::from_utf8(path),
    ) {
        (1 | 2, Ok(ph), Ok(p)) => vec![Relocation {
            path: p.to_owned(),
            placeholder: ph.to_owned(),
            mode: if mode == 1 {
                FileMode::Text
            } else {
                FileMode::Binary
            },
        }],
        _ => Vec::new(),
    };
    let body = input;
    let manifest = Manifest {
        format_version: 1,
        id: hex(&Sha256::digest(body)),
        name: "fuzz".into(),
        creator: "fuzz".into(),
        platform: "linux-64".into(),
        python: PythonInfo {
            path: "env/bin/python3".into(),
            version: "3.11.0".into(),
        },
        build_prefix: "/opt/build".into(),
        relocations: relocations.clone(),
        activation: Default::default(),
        scripts_dir: "scripts".into(),
        unpacked_size: u64::from(u32::from_le_bytes(size.try_into().ok()?)),
        file_count: u64::from(u16::from_le_bytes(count.try_into().ok()?)),
        packages: Vec::new(),
    };
    let json = serde_json::to_vec(&manifest).ok()?;
    let mut first = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    first
        .append_data(&mut header, MANIFEST_PATH, &json[..])
        .ok()?;
    let first = first.into_inner().ok()?;
    // Frame 1 is the manifest entry alone: the tar end blocks belong to the body.
    let first = &first[..first.len() - 1024];
    let mut out = zstd::encode_all(first, 1).ok()?;
    out.extend(zstd::encode_all(body, 1).ok()?);
    Some((out, relocations, body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every path under `dir` (not following symlinks), relative.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((archive, relocations, body)) = archive(input) else {
        return;
    };
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let scratch = tempfile::Builder::new()
        .prefix("pybundle-fuzz-")
        .tempdir_in(base)
        .expect("a scratch directory");
    let cache = scratch.path().join("cache");
    let beside = scratch.path().join("beside");
    std::fs::create_dir(&beside).expect("a sibling directory");
    let result = fuzzing::ready(&archive, &cache);
    assert_eq!(
        std::fs::read_dir(&beside).map(|d| d.count()).unwrap_or(0),
        0,
        "something was written beside the cache"
    );
    let mut paths = Vec::new();
    walk(&cache, &mut paths);
    match result {
        Err(_) => {
            for p in &paths {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                assert!(name.ends_with(".lock"), "a failed run left {}", p.display());
            }
        }
        Ok(bundle) => {
            let root = bundle.canonicalize().expect("the bundle exists");
            for p in &paths {
                let meta = std::fs::symlink_metadata(p).expect("listed");
                if meta.file_type().is_symlink() {
                    if let Ok(target) = p.canonicalize() {
                        assert!(target.starts_with(&root), "{} leads out", p.display());
                    }
                } else {
                    let mode = meta.permissions().mode();
                    assert_eq!(mode & 0o7022, 0, "{} has mode {mode:o}", p.display());
                }
            }
            // The run accepted the archive, so its records are within the limits and the
            // plain tar reader can read it here.
            for r in relocations.iter().filter(|r| r.mode == FileMode::Text) {
                let mut tar = tar::Archive::new(body);
                let original = tar
                    .entries()
                    .into_iter()
                    .flatten()
                    .flatten()
                    .find(|e| e.path_bytes().as_ref() == r.path.as_bytes())
                    .map(|e| e.size());
                let len = std::fs::metadata(bundle.join(&r.path)).map_or(0, |m| m.len());
                if let Some(original) = original {
                    assert!(
                        len <= fuzzing::max_relocated_text(original) + 64,
                        "{} grew from {original} to {len} bytes",
                        r.path
                    );
                }
            }
        }
    }
});
