//! Reading a bundle's manifest: only the archive's first zstd frame is decompressed, and what
//! the runtime relies on (format version, id, name, paths) is validated before anything else.

use crate::extract::{self, entries, limits};
use crate::format::{self, Manifest};
use crate::{Error, Result};

pub(super) use crate::format::ZSTD_MAGIC;

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
    let mut decoder = zstd::stream::read::Decoder::with_buffer(&archive[..frame_len])
        .map_err(|e| not_bundle("cannot start decompressing", Some(e)))?
        .single_frame();
    decoder
        .window_log_max(limits::MAX_WINDOW_LOG)
        .map_err(|e| not_bundle("cannot start decompressing", Some(e)))?;
    let mut tar = tar::Archive::new(Named(decoder));
    let mut entries = entries::Entries::new(&mut tar)?;
    let Some(mut item) = entries.next_item()? else {
        return Err(Error::Manifest("the archive is empty".into()));
    };
    if item.path != format::MANIFEST_PATH.as_bytes() {
        return Err(Error::Manifest(format!(
            "the first entry is `{}`, not `{}`",
            entries::shown(&item.path),
            format::MANIFEST_PATH
        )));
    }
    let size = item.entry.size();
    if size > limits::MAX_MANIFEST {
        return Err(Error::ArchiveLimit {
            entry: format::MANIFEST_PATH.into(),
            limit: format!("it is {size} bytes long (limit {})", limits::MAX_MANIFEST),
        });
    }
    let mut json = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    std::io::Read::read_to_end(&mut item.entry, &mut json).map_err(extract::archive_err)?;
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
        entries::check_path(p.as_bytes())?;
    }
    let over = |limit: String| {
        Err(Error::ArchiveLimit {
            entry: format::MANIFEST_PATH.into(),
            limit,
        })
    };
    if m.file_count > limits::MAX_ENTRIES {
        return over(format!(
            "it lists {} entries (limit {})",
            m.file_count,
            limits::MAX_ENTRIES
        ));
    }
    let mut relocated = std::collections::HashSet::with_capacity(m.relocations.len());
    for r in &m.relocations {
        entries::check_path(r.path.as_bytes())?;
        if !relocated.insert(r.path.as_str()) {
            // Each relocation rewrites the file the previous one wrote: a prefix holding the
            // placeholder would grow it exponentially.
            return bad(format!("it lists `{}` for relocation twice", r.path));
        }
        if r.placeholder.len() > limits::MAX_PLACEHOLDER {
            return over(format!(
                "the placeholder for `{}` is {} bytes long (limit {})",
                r.path,
                r.placeholder.len(),
                limits::MAX_PLACEHOLDER
            ));
        }
    }
    if m.relocations.len() as u64 > m.file_count {
        return over(format!(
            "it lists {} relocations for {} entries",
            m.relocations.len(),
            m.file_count
        ));
    }
    let activation: usize = m.activation.iter().map(|(k, v)| k.len() + v.len()).sum();
    if activation > limits::MAX_ACTIVATION {
        return over(format!(
            "its activation variables take {activation} bytes (limit {})",
            limits::MAX_ACTIVATION
        ));
    }
    Ok(())
}

/// The decoder, with zstd's "window too large" named as the limit it is.
struct Named<R>(R);

impl<R: std::io::Read> std::io::Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(extract::stream::name_window_error)
    }
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
