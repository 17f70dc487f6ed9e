//! Reading a bundle's manifest: only the archive's first zstd frame is decompressed, and what
//! the runtime relies on (format version, id, name, paths) is validated before anything else.

use crate::extract;
use crate::format::{self, Manifest};
use crate::{Error, Result};

/// Largest manifest accepted (the relocation table of a big environment is a few MB).
const MAX_MANIFEST: u64 = 256 << 20;

/// The first bytes of every zstd frame.
pub(super) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Reads the manifest of an archive (only its first zstd frame is decompressed), for tools
/// such as `cargo pybundle inspect`.
pub fn manifest_of(archive: &[u8]) -> Result<Manifest> {
    read_manifest(archive).map(|(m, _, _)| m)
}

/// Decodes frame 1 (the manifest's tar entry) and validates what the runtime relies on.
pub(super) fn read_manifest(archive: &[u8]) -> Result<(Manifest, Vec<u8>, usize)> {
    let not_bundle = |detail: &str, source: Option<std::io::Error>| Error::Archive {
        detail: detail.to_owned(),
        source,
    };
    if !archive.starts_with(&ZSTD_MAGIC) {
        return Err(not_bundle("it does not start with a zstd frame", None));
    }
    let frame_len = zstd::zstd_safe::find_frame_compressed_size(archive)
        .map_err(|_| not_bundle("its first zstd frame is truncated or corrupt", None))?;
    let decoder = zstd::stream::read::Decoder::with_buffer(&archive[..frame_len])
        .map_err(|e| not_bundle("cannot start decompressing", Some(e)))?
        .single_frame();
    let mut tar = tar::Archive::new(decoder);
    let mut entries = tar
        .entries()
        .map_err(|e| not_bundle("cannot read its tar stream", Some(e)))?;
    let mut entry = match entries.next() {
        Some(Ok(entry)) => entry,
        Some(Err(e)) => return Err(not_bundle("cannot read its first tar entry", Some(e))),
        None => return Err(Error::Manifest("the archive is empty".into())),
    };
    let path = entry.path_bytes().into_owned();
    if path != format::MANIFEST_PATH.as_bytes() {
        return Err(Error::Manifest(format!(
            "the first entry is `{}`, not `{}`",
            String::from_utf8_lossy(&path),
            format::MANIFEST_PATH
        )));
    }
    if entry.size() > MAX_MANIFEST {
        return Err(Error::Manifest(format!(
            "it is {} bytes, too large",
            entry.size()
        )));
    }
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut json)
        .map_err(|e| not_bundle("cannot decompress the manifest", Some(e)))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| Error::Manifest(e.to_string()))?;
    validate(&manifest)?;
    Ok((manifest, json, frame_len))
}

fn validate(m: &Manifest) -> Result<()> {
    let bad = |what: String| Err(Error::Manifest(what));
    if m.format_version > format::FORMAT_VERSION {
        return bad(format!(
            "format version {} is newer than this runtime understands ({}); rebuild with a \
             matching pybundle-runtime",
            m.format_version,
            format::FORMAT_VERSION
        ));
    }
    if m.id.len() != 64 || !m.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return bad(format!("id `{}` is not a lower-case hex sha256", m.id));
    }
    if !valid_name(&m.name) {
        return bad(format!(
            "application name `{}` cannot name a directory",
            m.name
        ));
    }
    for (what, p) in [
        ("python.path", &m.python.path),
        ("scripts_dir", &m.scripts_dir),
    ] {
        if extract::safe_relative(p.as_bytes()).is_none_or(|r| r.as_os_str().is_empty()) {
            return bad(format!(
                "{what} `{p}` is not a relative path inside the bundle"
            ));
        }
    }
    Ok(())
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
