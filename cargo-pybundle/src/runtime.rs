//! The application's `pybundle-runtime`: which release it builds with, which bundle formats
//! that release reads, and its Python half.
//!
//! The program reads its bundle with the runtime *it* resolves, not with the copy of the
//! runtime this CLI was built with, and the two can be different releases (`cargo install`
//! updates the CLI, `cargo update` the application). So both halves of what a bundle must
//! agree with come from the application's runtime:
//!
//! - the **format**: the runtime declares the bundle formats it reads in its Cargo.toml,
//!   `[package.metadata.pybundle-runtime] bundle-formats = [1]`, read here with
//!   `cargo metadata`; a runtime that does not read the format this CLI writes
//!   ([`FORMAT_VERSION`]) is refused before anything is installed or packed, with both versions
//!   named and what to change, instead of a program that refuses its bundle at run time;
//! - the **Python half** of the protocol (`import pybundle`), packed under `lib/`, is taken
//!   from that runtime's own `python/` folder, so it always matches the Rust half compiled into
//!   the program, whatever this CLI's version.

use anyhow::{bail, Context as _, Result};
use cargo_metadata::{DependencyKind, Metadata, Package, PackageId};
use pybundle_runtime::format::{FORMAT_VERSION, PYTHON_PKG_DIR};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::metadata::Target;
use crate::pack::key::Key;
use crate::pack::walk::{self, Entry, Source};
use crate::ui::Ui;

/// The runtime crate's name.
pub const CRATE: &str = "pybundle-runtime";
/// The table of the runtime's `[package.metadata]` that this module reads.
pub const METADATA_TABLE: &str = "pybundle-runtime";
/// The runtime's feature that gives a program its bundle (`Bundle::embedded`).
pub const EMBED_FEATURE: &str = "embed";
/// Left out of the Python half: bytecode a run from a checkout leaves behind.
const BYTECODE: &[&str] = &["**/__pycache__/**", "**/*.pyc"];

/// The `pybundle-runtime` in the application's dependency graph.
#[derive(Clone, Debug)]
pub struct AppRuntime {
    /// Its version, e.g. `0.1.0`.
    pub version: String,
    /// Its Cargo.toml (in cargo's registry cache, or a path dependency).
    pub manifest_path: PathBuf,
    /// `bundle-formats` from its metadata table; `None` when it declares none.
    pub formats: Option<Vec<u32>>,
    /// Whether the `embed` feature is on in the resolve.
    pub embed: bool,
}

impl AppRuntime {
    /// The crate's folder.
    pub fn dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }

    /// The folder packed under `lib/`: the crate's `python/`.
    pub fn python_dir(&self) -> PathBuf {
        self.dir().join("python")
    }
}

/// Finds the `pybundle-runtime` that `package` builds with: the one among its normal
/// dependencies, direct or not. Several different ones (two releases in one graph) are an
/// error: which of them reads the bundle is up to the code, not to the graph.
pub fn find(metadata: &Metadata, package: &PackageId) -> Result<Option<AppRuntime>> {
    let Some(resolve) = &metadata.resolve else {
        bail!("`cargo metadata` gave no dependency graph (was it run with --no-deps?)");
    };
    let nodes: HashMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let packages: HashMap<&PackageId, &Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let mut seen = BTreeSet::new();
    let mut found = BTreeSet::new();
    let mut stack = vec![package];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        for dep in &node.deps {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == DependencyKind::Normal);
            if !normal {
                continue;
            }
            match packages.get(&dep.pkg) {
                Some(p) if p.name.as_str() == CRATE => {
                    found.insert(&dep.pkg);
                }
                _ => stack.push(&dep.pkg),
            }
        }
    }
    let mut found = found.into_iter().filter_map(|id| packages.get(id).copied());
    let Some(runtime) = found.next() else {
        return Ok(None);
    };
    let others: Vec<String> = found
        .map(|p| format!("{} ({})", p.version, p.manifest_path))
        .collect();
    if !others.is_empty() {
        bail!(
            "the package builds with more than one {CRATE}: {} ({}), {}; keep one \
             (`cargo tree -i {CRATE}` shows who asks for each)",
            runtime.version,
            runtime.manifest_path,
            others.join(", ")
        );
    }
    let embed = nodes
        .get(&runtime.id)
        .is_some_and(|n| n.features.iter().any(|f| f.as_str() == EMBED_FEATURE));
    Ok(Some(AppRuntime {
        version: runtime.version.to_string(),
        manifest_path: runtime.manifest_path.clone().into_std_path_buf(),
        formats: formats(runtime)?,
        embed,
    }))
}

/// `bundle-formats` of the runtime's metadata table, checked for shape.
fn formats(runtime: &Package) -> Result<Option<Vec<u32>>> {
    let Some(table) = runtime.metadata.get(METADATA_TABLE) else {
        return Ok(None);
    };
    let Some(list) = table.get("bundle-formats") else {
        return Ok(None);
    };
    let formats: Option<Vec<u32>> = list.as_array().and_then(|items| {
        items
            .iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect()
    });
    match formats {
        Some(formats) if !formats.is_empty() => Ok(Some(formats)),
        _ => bail!(
            "{CRATE} {} ({}): `[package.metadata.{METADATA_TABLE}] bundle-formats` must be a \
             non-empty array of format numbers, not `{list}`",
            runtime.version,
            runtime.manifest_path
        ),
    }
}

/// Checks that `runtime` reads the bundle format this CLI writes; the error names both
/// versions, the formats and what to change.
pub fn check_format(runtime: &AppRuntime, app_manifest: &Path) -> Result<()> {
    let cli = env!("CARGO_PKG_VERSION");
    let rv = &runtime.version;
    let Some(formats) = &runtime.formats else {
        bail!(
            "{CRATE} {rv} ({}) does not declare which bundle formats it reads \
             (`[package.metadata.{METADATA_TABLE}] bundle-formats`), so cargo-pybundle {cli} \
             cannot tell whether it reads the format {FORMAT_VERSION} bundles it writes; \
             depend on a released {CRATE} (`{CRATE} = \"{}\"` in {})",
            runtime.manifest_path.display(),
            requirement(cli),
            app_manifest.display()
        );
    };
    if formats.contains(&FORMAT_VERSION) {
        return Ok(());
    }
    let list = formats
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let reads = format!(
        "cargo-pybundle {cli} writes bundle format {FORMAT_VERSION}, but this program's \
         {CRATE} {rv} ({}) reads format {list} only: the program would refuse its bundle",
        runtime.manifest_path.display()
    );
    if formats.iter().all(|&f| f < FORMAT_VERSION) {
        // The CLI is newer than the runtime.
        bail!(
            "{reads}. Update the program's runtime: `{CRATE} = \"{}\"` in {} (then \
             `cargo update -p {CRATE}`); or build with the cargo-pybundle of its release: \
             `cargo install cargo-pybundle --version {rv} --locked`",
            requirement(cli),
            app_manifest.display()
        );
    }
    // The runtime is newer than the CLI (or reads only other formats).
    bail!(
        "{reads}. Install the cargo-pybundle of the runtime's release: \
         `cargo install cargo-pybundle --version {rv} --locked`; or keep the program on a \
         runtime that reads format {FORMAT_VERSION}: `{CRATE} = \"{}\"` in {}",
        requirement(cli),
        app_manifest.display()
    )
}

/// The Python half to pack for `target`: its pybundle-runtime's, after [`PythonHalf::of`]'s
/// checks. A package that does not link the runtime cannot run a bundle: an error when a
/// program is to be built (`for_build`), this CLI's own copy (said in a status line) for `pack`.
pub fn python_half(target: &Target, for_build: bool, ui: &Ui) -> Result<PythonHalf> {
    if let Some(found) = &target.runtime {
        return PythonHalf::of(found, &target.manifest_path);
    }
    if for_build {
        bail!(
            "package `{}` does not depend on {CRATE}, so the program can neither contain nor run \
             a bundle; add `{CRATE} = \"{}\"` to [dependencies] in {}",
            target.name,
            crate::init::RUNTIME_REQUIREMENT,
            target.manifest_path.display()
        );
    }
    // Not a warning: packing alone (inspection, fixtures) needs no program.
    ui.status(
        "Including",
        format!(
            "cargo-pybundle {}'s own copy of the Python half: package `{}` does not depend on \
             {CRATE}",
            env!("CARGO_PKG_VERSION"),
            target.name
        ),
    );
    Ok(PythonHalf::Own)
}

/// The Cargo requirement that selects releases compatible with `version`
/// (`0.1.4` → `0.1`, `1.2.0` → `1`).
fn requirement(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_owned(),
        _ => version.to_owned(),
    }
}

/// Where the `pybundle` Python package packed under `lib/` comes from.
#[derive(Clone, Debug)]
pub enum PythonHalf {
    /// The application's runtime crate's `python/` folder (every build of a program).
    Dir {
        /// The folder.
        path: PathBuf,
        /// The runtime's version, for messages.
        version: String,
    },
    /// This cargo-pybundle's own copy: `pack` of a package that does not depend on the runtime.
    Own,
}

impl PythonHalf {
    /// The Python half to pack for `runtime`, after checking it: the format agrees (see
    /// [`check_format`]), the archive will be embedded, and the folder holds the package.
    pub fn of(runtime: &AppRuntime, app_manifest: &Path) -> Result<PythonHalf> {
        check_format(runtime, app_manifest)?;
        if !runtime.embed {
            bail!(
                "{CRATE} {} is built without its `{EMBED_FEATURE}` feature, so the program \
                 would not find its bundle; remove `default-features = false` from the \
                 {CRATE} dependency in {} (or add `features = [\"{EMBED_FEATURE}\"]`)",
                runtime.version,
                app_manifest.display()
            );
        }
        let path = runtime.python_dir();
        let init = path.join("pybundle").join("__init__.py");
        if !init.is_file() {
            bail!(
                "{CRATE} {} at {} has no {} (the Python half of the protocol that every bundle \
                 carries); the crate is incomplete: use a released {CRATE} or a full checkout",
                runtime.version,
                runtime.dir().display(),
                init.display()
            );
        }
        Ok(PythonHalf::Dir {
            path,
            version: runtime.version.clone(),
        })
    }

    /// Adds the package's entries under `lib/`, sorted, bytecode left out, with the fixed
    /// modes of the embedded copy (0755 folders, 0644 files) so the bytes do not depend on
    /// how the crate was unpacked.
    pub fn entries(&self, out: &mut Vec<Entry>) -> Result<()> {
        match self {
            PythonHalf::Own => {
                walk::embedded(&pybundle_runtime::PYTHON_PACKAGE, out);
                Ok(())
            }
            PythonHalf::Dir { path, .. } => {
                let exclude =
                    walk::globs(&BYTECODE.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
                let start = out.len();
                let special = walk::walk(path, PYTHON_PKG_DIR, &exclude, out)?;
                if let Some(odd) = special.first() {
                    bail!(
                        "{} is not a file, folder or symlink, inside the Python half of {CRATE}; \
                         remove it (or use a released {CRATE})",
                        odd.display()
                    );
                }
                for entry in &mut out[start..] {
                    entry.mode = match &entry.source {
                        Source::Dir => 0o755,
                        Source::File(_) => 0o644,
                        _ => bail!(
                            "{}: the Python half of {CRATE} must hold only files and folders",
                            path.join(
                                entry
                                    .path
                                    .trim_start_matches(PYTHON_PKG_DIR)
                                    .trim_start_matches('/')
                            )
                            .display()
                        ),
                    };
                }
                Ok(())
            }
        }
    }

    /// Adds what is packed to the reuse key.
    pub fn key(&self, key: &mut Key) -> Result<()> {
        let mut entries = Vec::new();
        self.entries(&mut entries)?;
        key.entries(&entries)
    }
}

impl PythonHalf {
    /// Writes the `pybundle` package into `dir` (`dir/pybundle/…`), rewriting only files that
    /// differ, for running scripts outside a bundle (`cargo pybundle python`). Bytecode is
    /// left out.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        match self {
            PythonHalf::Dir { path, .. } => read_tree(path, Path::new(""), &mut files)?,
            PythonHalf::Own => files.extend(
                pybundle_runtime::dev::python_package_files()
                    .into_iter()
                    .map(|(path, contents)| (path.to_path_buf(), contents.to_vec())),
            ),
        }
        for (rel, contents) in files {
            let dest = dir.join(rel);
            if fs_err::read(&dest).ok().as_deref() == Some(&contents[..]) {
                continue;
            }
            if let Some(parent) = dest.parent() {
                fs_err::create_dir_all(parent)?;
            }
            let mut tmp = tempfile::NamedTempFile::new_in(dest.parent().unwrap_or(dir))?;
            std::io::Write::write_all(&mut tmp, &contents)?;
            tmp.persist(&dest)
                .map_err(|e| e.error)
                .with_context(|| format!("writing {}", dest.display()))?;
        }
        Ok(())
    }
}

fn skipped(name: &std::ffi::OsStr) -> bool {
    name == "__pycache__" || Path::new(name).extension().is_some_and(|e| e == "pyc")
}

fn read_tree(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    for entry in fs_err::read_dir(root.join(rel))? {
        let entry = entry?;
        if skipped(&entry.file_name()) {
            continue;
        }
        let rel = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            read_tree(root, &rel, out)?;
        } else {
            out.push((rel.clone(), fs_err::read(root.join(&rel))?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(version: &str, formats: Option<Vec<u32>>) -> AppRuntime {
        AppRuntime {
            version: version.into(),
            manifest_path: PathBuf::from("/reg/pybundle-runtime-x/Cargo.toml"),
            formats,
            embed: true,
        }
    }

    fn err(rt: &AppRuntime) -> String {
        format!(
            "{:#}",
            check_format(rt, Path::new("/app/Cargo.toml")).unwrap_err()
        )
    }

    #[test]
    fn the_format_written_is_accepted() {
        let rt = runtime("0.1.0", Some(vec![FORMAT_VERSION]));
        check_format(&rt, Path::new("/app/Cargo.toml")).unwrap();
        let rt = runtime("0.3.0", Some(vec![FORMAT_VERSION, FORMAT_VERSION + 1]));
        check_format(&rt, Path::new("/app/Cargo.toml")).unwrap();
    }

    #[test]
    fn an_older_runtime_names_both_versions_and_both_ways_out() {
        let e = err(&runtime("0.0.9", Some(vec![FORMAT_VERSION - 1])));
        let cli = env!("CARGO_PKG_VERSION");
        assert!(
            e.contains(&format!(
                "cargo-pybundle {cli} writes bundle format {FORMAT_VERSION}"
            )),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "pybundle-runtime 0.0.9 (/reg/pybundle-runtime-x/Cargo.toml) reads format {}",
                FORMAT_VERSION - 1
            )),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "`pybundle-runtime = \"{}\"` in /app/Cargo.toml",
                requirement(cli)
            )),
            "{e}"
        );
        assert!(
            e.contains("cargo install cargo-pybundle --version 0.0.9 --locked"),
            "{e}"
        );
    }

    #[test]
    fn a_newer_runtime_says_to_install_its_cli() {
        let e = err(&runtime("0.9.0", Some(vec![FORMAT_VERSION + 1])));
        assert!(
            e.contains(&format!("reads format {} only", FORMAT_VERSION + 1)),
            "{e}"
        );
        assert!(
            e.starts_with(&format!(
                "cargo-pybundle {} writes",
                env!("CARGO_PKG_VERSION")
            )),
            "{e}"
        );
        assert!(e.contains("Install the cargo-pybundle of the runtime's release: `cargo install cargo-pybundle --version 0.9.0 --locked`"), "{e}");
    }

    #[test]
    fn an_undeclared_format_is_refused() {
        let e = err(&runtime("0.1.0", None));
        assert!(
            e.contains("does not declare which bundle formats it reads"),
            "{e}"
        );
    }

    #[test]
    fn requirements() {
        assert_eq!(requirement("0.1.4"), "0.1");
        assert_eq!(requirement("1.2.0"), "1");
        assert_eq!(requirement("0.10.0-rc.1"), "0.10");
    }
}
