//! `cargo pybundle inspect`: what is inside a bundle (an archive, or a binary embedding one).

use anyhow::{bail, Context as _, Result};
use pybundle_runtime::format::{Manifest, ZSTD_MAGIC};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Sizes of the archive's contents by top-level folder (two levels deep: `env/lib`).
pub struct Report {
    /// The manifest.
    pub manifest: Manifest,
    /// Size of the compressed archive.
    pub archive_size: u64,
    /// `(folder, bytes, entries)`, largest first.
    pub folders: Vec<(String, u64, u64)>,
}

/// Reads the bundle in `path` (an archive, or an executable built by `cargo pybundle build`).
pub fn inspect(path: &Path) -> Result<Report> {
    let bytes = fs_err::read(path)?;
    let archive = if bytes.starts_with(&ZSTD_MAGIC) {
        &bytes[..]
    } else {
        match pybundle_runtime::find_in_executable(&bytes) {
            Some(a) => a,
            None => bail!(
                "{} is neither a bundle archive nor a program with one embedded (build it with \
                 `cargo pybundle build`)",
                path.display()
            ),
        }
    };
    let manifest = pybundle_runtime::manifest_of(archive)
        .with_context(|| format!("reading the bundle manifest in {}", path.display()))?;
    let mut folders: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let decoder = zstd::stream::read::Decoder::new(archive).context("starting zstd")?;
    let mut tar = tar::Archive::new(decoder);
    for entry in tar.entries().context("reading the archive")? {
        let entry = entry.context("reading the archive")?;
        let path = entry.path().context("reading the archive")?;
        let key: Vec<String> = path
            .components()
            .take(2)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let slot = folders.entry(key.join("/")).or_default();
        slot.0 += entry.header().size().unwrap_or(0);
        slot.1 += 1;
    }
    let mut folders: Vec<(String, u64, u64)> = folders
        .into_iter()
        .map(|(k, (size, n))| (k, size, n))
        .collect();
    folders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Report {
        manifest,
        archive_size: archive.len() as u64,
        folders,
    })
}

/// The report for people, `top` folders and packages each.
pub fn render(report: &Report, top: usize) -> String {
    let m = &report.manifest;
    let mut out = String::new();
    let mb = |b: u64| b as f64 / 1e6;
    let _ = writeln!(out, "bundle      {} ({})", m.name, m.id);
    let _ = writeln!(
        out,
        "creator     {} (format {})",
        m.creator, m.format_version
    );
    let _ = writeln!(out, "platform    {}", m.platform);
    let _ = writeln!(out, "python      {} ({})", m.python.version, m.python.path);
    let _ = writeln!(
        out,
        "size        {:.1} MB compressed, {:.1} MB unpacked, {} entries",
        mb(report.archive_size),
        mb(m.unpacked_size),
        m.file_count
    );
    let binary = m
        .relocations
        .iter()
        .filter(|r| r.mode == pybundle_runtime::format::FileMode::Binary)
        .count();
    let _ = writeln!(
        out,
        "relocations {} ({} text, {} binary); built at {}",
        m.relocations.len(),
        m.relocations.len() - binary,
        binary,
        m.build_prefix
    );
    for (k, v) in &m.activation {
        let _ = writeln!(out, "activation  {k}={v}");
    }
    let _ = writeln!(out, "\nlargest folders:");
    for (folder, size, n) in report.folders.iter().take(top) {
        let _ = writeln!(out, "  {:>9.1} MB {:>7} entries  {folder}", mb(*size), n);
    }
    let _ = writeln!(out, "\nlargest packages:");
    for p in m.packages.iter().take(top) {
        let build = if p.build.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.build)
        };
        let _ = writeln!(
            out,
            "  {:>9.1} MB {:>7} files    {} {}{build}",
            mb(p.size),
            p.files,
            p.name,
            p.version
        );
    }
    out
}
