//! The relocation table: which files of the prefix name an absolute path that must be
//! rewritten at first run, and with which placeholder.
//!
//! Two sources, following conda-pack:
//! 1. Files a conda package declares with a `prefix_placeholder` (`info/paths.json`, or
//!    `info/has_prefix` in old packages, read from the package cache dir that
//!    `conda-meta/<pkg>.json` names in `extracted_package_dir`). For these the ORIGINAL file
//!    from the package cache is packed, still holding the long (usually 255-character)
//!    placeholder, so binary files always have room for the shorter runtime path.
//! 2. Any other regular file holding the build prefix (entry points written at install time,
//!    PyPI packages): found by scanning its bytes. Text files get a relocation with the build
//!    prefix as placeholder; binary hits cannot be padded safely and are reported.

use anyhow::{Context as _, Result};
use pybundle_runtime::format::FileMode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One installed conda package, from `conda-meta/<name>-<version>-<build>.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct CondaRecord {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Build string.
    #[serde(default)]
    pub build: String,
    /// Files the package installed, relative to the prefix.
    #[serde(default)]
    pub files: Vec<String>,
    /// The platform the package was built for (`linux-64`, `noarch`).
    #[serde(default)]
    pub subdir: Option<String>,
    /// The package cache copy (pixi ≥0.15 and conda write it).
    #[serde(default)]
    pub extracted_package_dir: Option<PathBuf>,
}

/// A file to pack from the package cache instead of the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The original file in the package cache.
    pub source: PathBuf,
    /// The placeholder the original holds.
    pub placeholder: String,
    /// How to rewrite it.
    pub mode: FileMode,
}

/// Reads every `conda-meta/*.json` of a prefix, sorted by file name.
pub fn conda_records(prefix: &Path) -> Result<Vec<CondaRecord>> {
    let dir = prefix.join("conda-meta");
    let mut names: Vec<PathBuf> = fs_err::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| {
            let text = fs_err::read(path)?;
            serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
        })
        .collect()
}

#[derive(Deserialize)]
struct PathsJson {
    paths: Vec<PathEntry>,
}

#[derive(Deserialize)]
struct PathEntry {
    #[serde(rename = "_path")]
    path: String,
    #[serde(default)]
    prefix_placeholder: Option<String>,
    #[serde(default)]
    file_mode: Option<FileMode>,
}

/// Files with a declared placeholder, keyed by path relative to the prefix. Packages whose
/// cache copy is gone are returned in the second list (their files fall back to the scan).
pub fn placeholders(
    records: &[CondaRecord],
    pkgs_cache: Option<&Path>,
) -> Result<(BTreeMap<String, Placed>, Vec<String>)> {
    let mut table = BTreeMap::new();
    let mut missing = Vec::new();
    for record in records {
        let dir = record.extracted_package_dir.clone().or_else(|| {
            // Older writers leave the field out; rattler's cache layout is `pkgs/<n>-<v>-<b>`.
            let name = format!("{}-{}-{}", record.name, record.version, record.build);
            pkgs_cache.map(|c| c.join("pkgs").join(name))
        });
        let Some(dir) = dir.filter(|d| d.join("info").is_dir()) else {
            missing.push(format!(
                "{}-{}-{}",
                record.name, record.version, record.build
            ));
            continue;
        };
        for (path, placeholder, mode) in declared(&dir)? {
            let Some(installed) = installed_path(record, &path) else {
                continue;
            };
            let source = dir.join(&path);
            if source.is_file() {
                table.insert(
                    installed,
                    Placed {
                        source,
                        placeholder,
                        mode,
                    },
                );
            }
        }
    }
    Ok((table, missing))
}

/// `(path in package, placeholder, mode)` from `info/paths.json`, else `info/has_prefix`.
fn declared(pkg_dir: &Path) -> Result<Vec<(String, String, FileMode)>> {
    let paths_json = pkg_dir.join("info/paths.json");
    if paths_json.is_file() {
        let parsed: PathsJson = serde_json::from_slice(&fs_err::read(&paths_json)?)
            .with_context(|| format!("reading {}", paths_json.display()))?;
        return Ok(parsed
            .paths
            .into_iter()
            .filter_map(|p| {
                let placeholder = p.prefix_placeholder?;
                Some((p.path, placeholder, p.file_mode.unwrap_or(FileMode::Text)))
            })
            .collect());
    }
    let has_prefix = pkg_dir.join("info/has_prefix");
    if !has_prefix.is_file() {
        return Ok(Vec::new());
    }
    Ok(parse_has_prefix(&fs_err::read_to_string(&has_prefix)?))
}

/// `info/has_prefix`: `<placeholder> <text|binary> <path>` per line, or a bare path meaning
/// conda's historical default placeholder in text mode.
pub fn parse_has_prefix(text: &str) -> Vec<(String, String, FileMode)> {
    const DEFAULT: &str = "/opt/anaconda1anaconda2anaconda3";
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                [path] => Some((unquote(path), DEFAULT.to_owned(), FileMode::Text)),
                [placeholder, mode, path @ ..] if !path.is_empty() => {
                    let mode = if *mode == "binary" {
                        FileMode::Binary
                    } else {
                        FileMode::Text
                    };
                    Some((unquote(&path.join(" ")), unquote(placeholder), mode))
                }
                _ => None,
            }
        })
        .collect()
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_owned()
}

/// Where a package path was installed: the same path, or for noarch python packages
/// (`site-packages/x` → `lib/python3.X/site-packages/x`) the installed file ending in it.
fn installed_path(record: &CondaRecord, path: &str) -> Option<String> {
    if record.files.iter().any(|f| f == path) {
        return Some(path.to_owned());
    }
    let suffix = format!("/{path}");
    record.files.iter().find(|f| f.ends_with(&suffix)).cloned()
}

/// A package pip (or pixi's PyPI installer) put into `site-packages`, from its
/// `*.dist-info/RECORD`: `(name, version, files relative to the prefix)`.
pub fn pypi_packages(prefix: &Path) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for lib in ["lib", "Lib"] {
        let Ok(entries) = fs_err::read_dir(prefix.join(lib)) else {
            continue;
        };
        let mut site_dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                if name.starts_with("python") {
                    Some(p.join("site-packages"))
                } else {
                    (name == "site-packages").then_some(p)
                }
            })
            .filter(|p| p.is_dir())
            .collect();
        site_dirs.sort();
        for site in site_dirs {
            let Ok(entries) = fs_err::read_dir(&site) else {
                continue;
            };
            let mut infos: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "dist-info"))
                .collect();
            infos.sort();
            for info in infos {
                if let Some(pkg) = dist_info(prefix, &site, &info) {
                    out.push(pkg);
                }
            }
        }
    }
    out
}

fn dist_info(prefix: &Path, site: &Path, info: &Path) -> Option<(String, String, Vec<String>)> {
    let stem = info.file_stem()?.to_str()?;
    let (name, version) = stem.split_once('-')?;
    let record = fs_err::read_to_string(info.join("RECORD")).ok()?;
    let site_rel = site.strip_prefix(prefix).ok()?;
    let files = record
        .lines()
        .filter_map(|line| line.split(',').next())
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            // Normalise `../../../bin/tool` against site-packages.
            let mut parts: Vec<String> = site_rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            for piece in p.trim_matches('"').split('/') {
                match piece {
                    ".." => {
                        parts.pop()?;
                    }
                    "." | "" => {}
                    other => parts.push(other.to_owned()),
                }
            }
            Some(parts.join("/"))
        })
        .collect();
    Some((name.to_owned(), version.to_owned(), files))
}

/// What the scan found in a file that has no declared placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// No mention of the build prefix.
    None,
    /// A text file naming the prefix: relocate it.
    Text,
    /// A binary file naming the prefix: cannot be relocated safely.
    Binary,
}

/// Looks for `prefix` in `content`. Any NUL byte makes a file binary.
pub fn scan(content: &[u8], prefix: &[u8]) -> Hit {
    if prefix.is_empty() || memchr::memmem::find(content, prefix).is_none() {
        Hit::None
    } else if memchr::memchr(0, content).is_some() {
        Hit::Binary
    } else {
        Hit::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_tells_text_from_binary() {
        assert_eq!(scan(b"#!/p/env/bin/python\n", b"/p/env"), Hit::Text);
        assert_eq!(scan(b"\x7fELF\0/p/env/lib\0", b"/p/env"), Hit::Binary);
        assert_eq!(scan(b"nothing here", b"/p/env"), Hit::None);
    }

    #[test]
    fn pypi_records_resolve_paths_against_site_packages() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir
            .path()
            .join("lib/python3.11/site-packages/numpy-1.26.4.dist-info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(
            info.join("RECORD"),
            "numpy/__init__.py,sha256=x,10\n../../../bin/f2py,sha256=y,20\nnumpy-1.26.4.dist-info/RECORD,,\n",
        )
        .unwrap();
        let pkgs = pypi_packages(dir.path());
        assert_eq!(pkgs.len(), 1);
        let (name, version, files) = &pkgs[0];
        assert_eq!((name.as_str(), version.as_str()), ("numpy", "1.26.4"));
        assert_eq!(
            files,
            &[
                "lib/python3.11/site-packages/numpy/__init__.py",
                "bin/f2py",
                "lib/python3.11/site-packages/numpy-1.26.4.dist-info/RECORD"
            ]
        );
    }

    #[test]
    fn has_prefix_lines() {
        let parsed =
            parse_has_prefix("/opt/ph text bin/x\n/opt/ph binary \"lib/a b.so\"\nshare/y\n");
        assert_eq!(
            parsed[0],
            ("bin/x".into(), "/opt/ph".into(), FileMode::Text)
        );
        assert_eq!(
            parsed[1],
            ("lib/a b.so".into(), "/opt/ph".into(), FileMode::Binary)
        );
        assert_eq!(parsed[2].1, "/opt/anaconda1anaconda2anaconda3");
    }

    #[test]
    fn noarch_paths_map_to_site_packages() {
        let record = CondaRecord {
            name: "x".into(),
            version: "1".into(),
            build: "0".into(),
            files: vec!["lib/python3.11/site-packages/x/a.py".into()],
            subdir: None,
            extracted_package_dir: None,
        };
        assert_eq!(
            installed_path(&record, "site-packages/x/a.py").as_deref(),
            Some("lib/python3.11/site-packages/x/a.py")
        );
        assert_eq!(installed_path(&record, "other"), None);
    }
}
