//! Packing: the conda prefix, the application's scripts and the `pybundle` Python package into
//! one deterministic zstd tar (the archive contract is in `pybundle_runtime::format`).
//!
//! The same inputs always give the same bytes: entries come from a sorted walk, every header
//! has the fixed mtime, uid/gid 0 and no user names, modes are kept, symlinks stay symlinks.

pub mod activation;
pub mod key;
pub mod scan;
pub mod tarball;

use anyhow::{bail, Context as _, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use pybundle_runtime::format::{
    self, FileMode, Manifest, PackageInfo, PythonInfo, Relocation, ENV_DIR, PYTHON_PKG_DIR,
    SCRIPTS_DIR,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tar::EntryType;
use walkdir::WalkDir;

use crate::ui::Ui;

/// Everything packing needs.
#[derive(Clone, Debug)]
pub struct Input {
    /// Application (Cargo package) name.
    pub name: String,
    /// The installed conda prefix.
    pub prefix: PathBuf,
    /// Conda platform, e.g. `linux-64`.
    pub platform: String,
    /// The application's scripts folder.
    pub scripts: PathBuf,
    /// Globs relative to the prefix and to the scripts folder.
    pub exclude: Vec<String>,
    /// zstd level.
    pub level: i32,
    /// pixi's package cache (`pixi info`'s `cache_dir`), for packages that do not record
    /// `extracted_package_dir`.
    pub pkgs_cache: Option<PathBuf>,
}

/// What packing produced.
#[derive(Clone, Debug)]
pub struct Packed {
    /// The manifest written as the first entry.
    pub manifest: Manifest,
    /// Binary files holding the build prefix that could not be relocated.
    pub unrelocatable: Vec<String>,
    /// Size of the archive in bytes.
    pub archive_size: u64,
}

/// What one tar entry is made from.
enum Source {
    Dir,
    File(PathBuf),
    Symlink(PathBuf),
    Embedded(&'static [u8]),
}

struct Entry {
    path: String,
    mode: u32,
    source: Source,
    /// Owning package (index into the package list) for per-package sizes.
    owner: Option<usize>,
}

/// Packs `input` into `dest`.
pub fn pack(input: &Input, dest: &Path, ui: &Ui) -> Result<Packed> {
    if !input.scripts.is_dir() {
        bail!(
            "the scripts folder {} does not exist; create it with your .py files or set `scripts` \
             in [package.metadata.pybundle]",
            input.scripts.display()
        );
    }
    let exclude = globs(&input.exclude)?;
    let prefix = &input.prefix;
    let build_prefix = prefix
        .to_str()
        .context("the environment prefix is not valid UTF-8")?;

    let records = scan::conda_records(prefix)?;
    let (placed, missing) = scan::placeholders(&records, input.pkgs_cache.as_deref())?;
    for pkg in &missing {
        ui.warn(format!(
            "package cache copy of {pkg} not found; its files are relocated by scanning only"
        ));
    }
    let python = python_info(&records)?;
    let mut packages: Vec<PackageInfo> = records
        .iter()
        .map(|r| PackageInfo {
            name: r.name.clone(),
            version: r.version.clone(),
            build: r.build.clone(),
            size: 0,
            files: 0,
        })
        .collect();
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        for f in &r.files {
            owners.insert(f.as_str(), i);
        }
    }
    // PyPI packages (not owned by a conda package: conda's python packages have dist-info
    // directories too, listed in their conda-meta files).
    let pypi: Vec<_> = scan::pypi_packages(prefix)
        .into_iter()
        .filter(|(_, _, files)| files.iter().all(|f| !owners.contains_key(f.as_str())))
        .collect();
    for (name, version, files) in &pypi {
        packages.push(PackageInfo {
            name: name.clone(),
            version: version.clone(),
            build: String::new(),
            size: 0,
            files: 0,
        });
        for f in files {
            owners.insert(f.as_str(), packages.len() - 1);
        }
    }

    let mut entries = vec![dir_entry(ENV_DIR)];
    walk(prefix, ENV_DIR, &exclude, &mut entries)?;
    for e in &mut entries {
        let rel = e.path.strip_prefix("env/").unwrap_or("");
        e.owner = owners.get(rel).copied();
    }
    entries.push(dir_entry(SCRIPTS_DIR));
    walk(&input.scripts, SCRIPTS_DIR, &exclude, &mut entries)?;
    entries.push(dir_entry(PYTHON_PKG_DIR));
    embedded(&pybundle_runtime::PYTHON_PACKAGE, &mut entries);

    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut body_file = tempfile::tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut builder = tarball::body(&mut body_file, input.level)?;
    let mut relocations = Vec::new();
    let mut unrelocatable = Vec::new();
    let mut unpacked_size = 0u64;
    let total: u64 = entries.iter().filter_map(|e| e.size()).sum();
    let bar = ui.bytes_bar(Some(total), "Packing");

    for entry in &entries {
        let rel = entry.path.strip_prefix("env/");
        let size = match &entry.source {
            Source::Dir => {
                let mut h = tarball::header(EntryType::Directory, entry.mode, 0);
                builder.append_data(&mut h, &entry.path, std::io::empty())?;
                continue;
            }
            Source::Symlink(target) => {
                if target.starts_with(prefix) {
                    ui.warn(format!(
                        "{} is an absolute symlink into the build prefix",
                        entry.path
                    ));
                }
                let mut h = tarball::header(EntryType::Symlink, entry.mode, 0);
                builder.append_link(&mut h, &entry.path, target)?;
                continue;
            }
            Source::Embedded(bytes) => {
                let mut h = tarball::header(EntryType::Regular, entry.mode, bytes.len() as u64);
                builder.append_data(&mut h, &entry.path, *bytes)?;
                bytes.len() as u64
            }
            Source::File(path) => {
                let placed_here = rel.and_then(|r| placed.get(r));
                let source = placed_here.map_or(path.as_path(), |p| p.source.as_path());
                let content = fs_err::read(source)?;
                if let Some(p) = placed_here {
                    relocations.push(Relocation {
                        path: entry.path.clone(),
                        placeholder: p.placeholder.clone(),
                        mode: p.mode,
                    });
                } else if rel.is_some() {
                    match scan::scan(&content, build_prefix.as_bytes()) {
                        scan::Hit::None => {}
                        scan::Hit::Text => relocations.push(Relocation {
                            path: entry.path.clone(),
                            placeholder: build_prefix.to_owned(),
                            mode: FileMode::Text,
                        }),
                        scan::Hit::Binary => unrelocatable.push(entry.path.clone()),
                    }
                }
                let mut h = tarball::header(EntryType::Regular, entry.mode, content.len() as u64);
                builder.append_data(&mut h, &entry.path, &content[..])?;
                content.len() as u64
            }
        };
        unpacked_size += size;
        bar.inc(size);
        if let Some(i) = entry.owner {
            packages[i].size += size;
            packages[i].files += 1;
        }
    }
    let id = tarball::finish_body(builder)?;
    bar.finish_and_clear();
    for path in &unrelocatable {
        tracing::warn!("{path}: binary file holds the build prefix; not relocatable");
    }

    let activation = activation::variables(prefix).unwrap_or_else(|err| {
        ui.warn(format!("{err:#}; the bundle sets no activation variables"));
        BTreeMap::new()
    });
    relocations.sort();
    packages.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let manifest = Manifest {
        format_version: format::FORMAT_VERSION,
        id,
        name: input.name.clone(),
        creator: format!("cargo-pybundle {}", env!("CARGO_PKG_VERSION")),
        platform: input.platform.clone(),
        python,
        build_prefix: build_prefix.to_owned(),
        relocations,
        activation,
        scripts_dir: SCRIPTS_DIR.to_owned(),
        unpacked_size,
        file_count: entries.len() as u64,
        packages,
    };
    let json = serde_json::to_vec_pretty(&manifest).context("serializing the manifest")?;
    let frame1 = tarball::manifest_frame(&json, input.level)?;
    let archive_size = tarball::assemble(&frame1, &mut body_file, dest)?;
    Ok(Packed {
        manifest,
        unrelocatable,
        archive_size,
    })
}

impl Entry {
    fn size(&self) -> Option<u64> {
        match &self.source {
            Source::File(p) => fs_err::metadata(p).ok().map(|m| m.len()),
            Source::Embedded(b) => Some(b.len() as u64),
            _ => None,
        }
    }
}

fn dir_entry(path: &str) -> Entry {
    Entry {
        path: path.to_owned(),
        mode: 0o755,
        source: Source::Dir,
        owner: None,
    }
}

fn globs(patterns: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).with_context(|| {
            format!("`exclude` pattern `{p}` in [package.metadata.pybundle] is not a valid glob")
        })?;
        set.add(glob);
    }
    Ok(set.build()?)
}

/// Adds `root`'s contents under `into/`, sorted, skipping excluded paths (an excluded folder
/// is skipped whole).
fn walk(root: &Path, into: &str, exclude: &GlobSet, out: &mut Vec<Entry>) -> Result<()> {
    let excluded = |rel: &str, is_dir: bool| {
        exclude.is_match(rel) || (is_dir && exclude.is_match(format!("{rel}/x")))
    };
    let walker = WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .follow_links(false);
    let mut it = walker.into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        let rel_path = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let rel = rel_path
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", entry.path().display()))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        let ft = entry.file_type();
        if excluded(&rel, ft.is_dir()) {
            if ft.is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let meta = entry.path().symlink_metadata()?;
        let source = if ft.is_symlink() {
            Source::Symlink(fs_err::read_link(entry.path())?)
        } else if ft.is_dir() {
            Source::Dir
        } else if ft.is_file() {
            Source::File(entry.path().to_path_buf())
        } else {
            tracing::warn!(
                "{}: not a file, folder or symlink; left out",
                entry.path().display()
            );
            continue;
        };
        out.push(Entry {
            path: format!("{into}/{rel}"),
            mode: mode(&meta),
            source,
            owner: None,
        });
    }
    Ok(())
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
}

#[cfg(not(unix))]
fn mode(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() {
        0o755
    } else {
        0o644
    }
}

/// The embedded `pybundle` Python package, under `lib/`, sorted.
fn embedded(dir: &'static include_dir::Dir<'static>, out: &mut Vec<Entry>) {
    let mut children: Vec<&'static include_dir::DirEntry<'static>> = dir.entries().iter().collect();
    children.sort_by_key(|e| e.path());
    for child in children {
        let path = format!(
            "{PYTHON_PKG_DIR}/{}",
            child.path().to_string_lossy().replace('\\', "/")
        );
        match child {
            include_dir::DirEntry::Dir(d) => {
                out.push(Entry {
                    path,
                    mode: 0o755,
                    source: Source::Dir,
                    owner: None,
                });
                embedded(d, out);
            }
            include_dir::DirEntry::File(f) => {
                if f.path().extension().is_some_and(|e| e == "pyc") {
                    continue;
                }
                out.push(Entry {
                    path,
                    mode: 0o644,
                    source: Source::Embedded(f.contents()),
                    owner: None,
                })
            }
        }
    }
}

/// The interpreter from the `python` conda package.
fn python_info(records: &[scan::CondaRecord]) -> Result<PythonInfo> {
    let Some(python) = records.iter().find(|r| r.name == "python") else {
        bail!("the environment has no `python` package; add `python = \"3.11.*\"` to [dependencies] in pixi.toml");
    };
    let mut parts = python.version.split('.');
    let (major, minor) = (parts.next().unwrap_or("3"), parts.next().unwrap_or(""));
    let path = if cfg!(windows) {
        format!("{ENV_DIR}/python.exe")
    } else {
        format!("{ENV_DIR}/bin/python{major}.{minor}")
    };
    Ok(PythonInfo {
        path,
        version: python.version.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_folders_are_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/__pycache__")).unwrap();
        std::fs::write(root.join("a/__pycache__/m.cpython-311.pyc"), "x").unwrap();
        std::fs::write(root.join("a/m.py"), "x").unwrap();
        std::fs::write(root.join("b.pyc"), "x").unwrap();
        let set = globs(
            &crate::metadata::DEFAULT_EXCLUDE
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let mut out = Vec::new();
        walk(root, "env", &set, &mut out).unwrap();
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["env/a", "env/a/m.py"]);
    }

    #[test]
    fn bad_glob_names_the_pattern() {
        let e = globs(&["a/[".to_owned()]).unwrap_err().to_string();
        assert!(e.contains("`a/[`"), "{e}");
    }
}
