//! The bundle format: archive layout, manifest types and constants shared by the packer
//! (`cargo-pybundle`) and the runtime. There is exactly one definition of each.
//!
//! An archive is a zstd-compressed tar stream. Its first entry is [`MANIFEST_PATH`]; then come
//! the conda prefix under [`ENV_DIR`], the application's scripts under [`SCRIPTS_DIR`] and the
//! Python half of the protocol under [`PYTHON_PKG_DIR`]. This crate reads it (`Bundle`: the
//! manifest first, then the entries as they stream); its one writer is `format::write`
//! (feature `write`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(feature = "write")]
pub mod write;

/// The format version written by this crate. A reader refuses a newer major format.
pub const FORMAT_VERSION: u32 = 1;
/// Path of the manifest inside the archive (always the first entry).
pub const MANIFEST_PATH: &str = ".pybundle/manifest.json";
/// Directory holding the conda prefix inside the archive and the extracted bundle.
pub const ENV_DIR: &str = "env";
/// Directory holding the application's Python scripts.
pub const SCRIPTS_DIR: &str = "scripts";
/// Directory holding the `pybundle` Python package (put on `sys.path` by the runtime).
pub const PYTHON_PKG_DIR: &str = "lib";
/// Completion marker inside an extracted bundle; holds the full bundle id.
pub const MARKER_PATH: &str = ".pybundle/complete";
/// The first bytes of a zstd frame: an archive starts with them (a program holding a bundle
/// does not).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Fixed modification time written into every tar header (deterministic archives).
pub const ARCHIVE_MTIME: u64 = 1;
/// Magic bytes written before the embedded archive in a binary, followed by the archive's
/// length as a little-endian `u64`. `cargo pybundle inspect` finds a bundle in a binary by it.
pub const EMBED_MAGIC: [u8; 16] = *b"\x00PYBUNDLE-ARCH\x01\x00";

/// How a file's placeholder is rewritten at first run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum FileMode {
    /// Replace every occurrence; the file may change length. Shebangs longer than the kernel
    /// limit are rewritten to a `/bin/sh` trampoline.
    Text,
    /// Replace inside each NUL-terminated C string and pad with NULs: the length never changes.
    Binary,
}

/// One file whose content names the build-time prefix and must be rewritten at first run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Relocation {
    /// Path inside the archive, `/`-separated, e.g. `env/bin/python3.11`.
    pub path: String,
    /// The exact string the file holds in place of the prefix (conda's 255-character
    /// placeholder, or the build prefix for files found by the pack-time scan).
    pub placeholder: String,
    /// How to rewrite it.
    pub mode: FileMode,
}

/// The interpreter inside the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonInfo {
    /// Path of the interpreter inside the archive, e.g. `env/bin/python3.11`.
    pub path: String,
    /// `major.minor.micro`, e.g. `3.11.7`.
    pub version: String,
}

/// One installed conda (or PyPI) package, for `inspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    /// Package name.
    pub name: String,
    /// Version string.
    pub version: String,
    /// Build string (empty for PyPI packages).
    #[serde(default)]
    pub build: String,
    /// Bytes of the package's files inside the archive (unpacked).
    pub size: u64,
    /// Number of the package's files inside the archive.
    pub files: u64,
}

/// `.pybundle/manifest.json`: everything the runtime needs to know before touching the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Content hash (lower-case hex sha256) of everything after the manifest. Names the cache
    /// directory together with [`Manifest::name`].
    pub id: String,
    /// Application name (the Cargo package name); first part of the cache directory name.
    pub name: String,
    /// Writer, e.g. `cargo-pybundle 0.1.0`.
    pub creator: String,
    /// Conda platform of the environment, e.g. `linux-64`.
    pub platform: String,
    /// The bundled interpreter.
    pub python: PythonInfo,
    /// Absolute prefix the environment was installed at on the build machine (informational;
    /// every file naming it is listed in [`Manifest::relocations`]).
    pub build_prefix: String,
    /// Files to rewrite at first run, sorted by path.
    pub relocations: Vec<Relocation>,
    /// Environment variables set by activation (as `pixi run` sets them), applied to every
    /// process the runtime starts. Placeholders: `${PREFIX}` is the extracted prefix,
    /// `${BUNDLE}` the extracted bundle root (it stands for the pixi project root), and
    /// `${NAME}` inside the value of variable `NAME` is the target machine's value of it when
    /// the process starts (`PATH = "${PREFIX}/bin:${PATH}"`); unset, it is dropped with one
    /// adjacent separator.
    #[serde(default)]
    pub activation: BTreeMap<String, String>,
    /// Directory of the scripts inside the archive (normally [`SCRIPTS_DIR`]).
    pub scripts_dir: String,
    /// Sum of the sizes of all regular files after extraction.
    pub unpacked_size: u64,
    /// Number of entries (files, directories, links) after the manifest.
    pub file_count: u64,
    /// Installed packages, largest first.
    #[serde(default)]
    pub packages: Vec<PackageInfo>,
}

impl Manifest {
    /// The first 16 hex digits of the id, used in directory names.
    pub fn short_id(&self) -> &str {
        self.id.get(..16).unwrap_or(&self.id)
    }

    /// Name of the cache directory for this bundle: `<name>-<id16>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.short_id())
    }
}
