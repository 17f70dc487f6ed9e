//! Writing one conda package (`.tar.bz2`) from a staged directory, conda-build style: every file
//! that holds the build placeholder is recorded in `info/paths.json` as a text or binary prefix
//! file, so the installer (pixi/rattler) rewrites it to the real prefix.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use md5::Md5;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::placeholder;

/// mtime of every archive entry, so identical inputs give identical packages.
const MTIME: u64 = 1_700_000_000;

/// What a package is, beyond its files.
pub struct Package<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub build: &'a str,
    /// `linux-64` or `noarch`.
    pub subdir: &'static str,
    pub depends: Vec<String>,
    /// `noarch: python` entry points (`name = module:func`); `None` for an arch package.
    pub noarch_python: Option<Vec<String>>,
}

/// A written package: where it went and its repodata record.
pub struct Record {
    pub subdir: &'static str,
    pub filename: String,
    pub repodata: Value,
}

/// One file of the package, as `info/paths.json` describes it.
struct Entry {
    path: String,
    /// Symlink target, for softlinks.
    link: Option<PathBuf>,
    sha256: String,
    size: u64,
    /// `text` or `binary` when the file holds the placeholder.
    file_mode: Option<&'static str>,
}

/// Package everything under `stage` (which must not hold `info/` yet) into
/// `<channel>/<subdir>/<name>-<version>-<build>.tar.bz2`.
pub fn write(pkg: &Package<'_>, stage: &Path, channel: &Path) -> Result<Record> {
    if stage.join("info").exists() {
        bail!(
            "{} already holds info/; stage only the package's files",
            stage.display()
        );
    }
    let entries = scan(stage)?;
    let index = index_json(pkg);
    write_info(pkg, stage, &entries, &index)?;

    let filename = format!("{}-{}-{}.tar.bz2", pkg.name, pkg.version, pkg.build);
    let out_dir = channel.join(pkg.subdir);
    fs::create_dir_all(&out_dir)?;
    let archive = out_dir.join(&filename);
    write_archive(stage, &entries, &archive)
        .with_context(|| format!("writing package {}", archive.display()))?;

    let bytes = fs::read(&archive)?;
    let mut repodata = index;
    repodata["md5"] = hex::encode(Md5::digest(&bytes)).into();
    repodata["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
    repodata["size"] = bytes.len().into();
    eprintln!(
        "xtask:   {filename} ({} files, {} KiB)",
        entries.len(),
        bytes.len() / 1024
    );
    Ok(Record {
        subdir: pkg.subdir,
        filename,
        repodata,
    })
}

/// Every file and symlink under `stage`, sorted, with hashes and placeholder modes.
fn scan(stage: &Path) -> Result<Vec<Entry>> {
    let needle = placeholder();
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut entries = Vec::new();
    for item in walkdir::WalkDir::new(stage).sort_by_file_name() {
        let item = item?;
        if item.file_type().is_dir() {
            continue;
        }
        let rel = relative(stage, item.path())?;
        let (link, bytes) = if item.path_is_symlink() {
            // pixi 0.15.2 refuses to link a softlink entry without sha256/size, so hash the target.
            let target = fs::read_link(item.path())?;
            let bytes = fs::read(item.path()).with_context(|| {
                format!(
                    "{rel} is a symlink to {} which is not in the package",
                    target.display()
                )
            })?;
            (Some(target), bytes)
        } else {
            (None, fs::read(item.path())?)
        };
        let file_mode = match (&link, finder.find(&bytes)) {
            (None, Some(_)) if memchr::memchr(0, &bytes).is_some() => Some("binary"),
            (None, Some(_)) => Some("text"),
            _ => None,
        };
        entries.push(Entry {
            path: rel,
            link,
            sha256: hex::encode(Sha256::digest(&bytes)),
            size: bytes.len() as u64,
            file_mode,
        });
    }
    Ok(entries)
}

fn relative(stage: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(stage)?;
    rel.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

fn index_json(pkg: &Package<'_>) -> Value {
    let mut index = json!({
        "name": pkg.name,
        "version": pkg.version,
        "build": pkg.build,
        "build_number": 0,
        "depends": pkg.depends,
        "license": "PSF-2.0 AND MIT",
        "subdir": pkg.subdir,
    });
    if pkg.noarch_python.is_some() {
        index["noarch"] = "python".into();
    } else {
        index["arch"] = "x86_64".into();
        index["platform"] = "linux".into();
    }
    index
}

fn write_info(pkg: &Package<'_>, stage: &Path, entries: &[Entry], index: &Value) -> Result<()> {
    let info = stage.join("info");
    fs::create_dir_all(&info)?;
    let paths: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut p = json!({
                "_path": e.path,
                "path_type": if e.link.is_some() { "softlink" } else { "hardlink" },
                "sha256": e.sha256,
                "size_in_bytes": e.size,
            });
            if let Some(mode) = e.file_mode {
                p["prefix_placeholder"] = placeholder().into();
                p["file_mode"] = mode.into();
            }
            p
        })
        .collect();
    let paths_json = json!({ "paths": paths, "paths_version": 1 });
    fs::write(
        info.join("paths.json"),
        serde_json::to_vec_pretty(&paths_json)?,
    )?;
    fs::write(info.join("index.json"), serde_json::to_vec_pretty(index)?)?;
    let files: String = entries.iter().map(|e| format!("{}\n", e.path)).collect();
    fs::write(info.join("files"), files)?;
    if let Some(entry_points) = &pkg.noarch_python {
        let link = json!({
            "noarch": { "type": "python", "entry_points": entry_points },
            "package_metadata_version": 1,
        });
        fs::write(info.join("link.json"), serde_json::to_vec_pretty(&link)?)?;
    }
    Ok(())
}

/// tar + bzip2 of `info/` then the files, with fixed mtimes and owners.
fn write_archive(stage: &Path, entries: &[Entry], archive: &Path) -> Result<()> {
    let mut info: Vec<String> = fs::read_dir(stage.join("info"))?
        .map(|e| Ok(format!("info/{}", e?.file_name().to_string_lossy())))
        .collect::<Result<_>>()?;
    info.sort();

    let file = fs::File::create(archive)?;
    let encoder = bzip2::write::BzEncoder::new(file, bzip2::Compression::default());
    let mut tar = tar::Builder::new(encoder);
    let links = entries.iter().map(|e| (e.path.as_str(), e.link.as_deref()));
    for (path, link) in info.iter().map(|p| (p.as_str(), None)).chain(links) {
        let full = stage.join(path);
        let mut header = tar::Header::new_gnu();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        if let Some(target) = link {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, path, target)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(&full)?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(meta.permissions().mode() & 0o7777);
            header.set_size(meta.len());
            tar.append_data(&mut header, path, fs::File::open(&full)?)?;
        }
    }
    let mut encoder = tar.into_inner()?;
    encoder.flush()?;
    encoder.finish()?.sync_all()?;
    Ok(())
}
