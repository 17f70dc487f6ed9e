//! Development mode: a debug build with no bundle runs against the pixi environment in place
//! and the live scripts folder of the source tree.
//!
//! Every `cargo pybundle` command that installs the environment (`build`, `run`, `pack`,
//! `test`) writes a [`Record`] to `<target dir>/pybundle/<package>/dev.json`: where the
//! environment and the scripts are, the interpreter, the activation variables. A program built
//! by a plain `cargo build` in the debug profile finds it from its own path (the target
//! directory is one to three folders above `target/debug/<bin>`, `…/deps/<test>-<hash>` or
//! `…/examples/<name>`) and the package from `CARGO_PKG_NAME`, which `cargo run` and `cargo test`
//! set; run directly, it matches its own file name against the package's recorded binaries.
//! Never the working directory: a program started anywhere finds the same record.
//!
//! The `pybundle` Python package comes from this crate (the same Python half as the Rust half
//! it talks to), written once under `<target dir>/pybundle/<package>/dev-lib/<hash>/`.
//!
//! What is live: every one-shot script run reads the script file then, so an edit shows on the
//! next call; a worker imports its modules when it starts, so a running worker keeps the code
//! it loaded until it is restarted (`Worker::restart`, or the next run of the program). The
//! environment is what pixi installed: after changing the pixi manifest, run `cargo pybundle
//! build` (or `pixi install`) again. Release builds never use development mode (see
//! [`crate::Bundle::embedded`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::environment::Environment;
use crate::format::{Manifest, PythonInfo};
use crate::{Error, Result};

/// Environment variable: an archive for a program that has none appended (`cargo pybundle
/// test` sets it for the test binaries it runs).
pub const ARCHIVE_VAR: &str = "PYBUNDLE_ARCHIVE";

/// The version of [`Record`]'s layout; a record of another version is not used.
pub const RECORD_VERSION: u32 = 1;

/// File name of the record inside `<target dir>/pybundle/<package>/`.
pub const RECORD_FILE: &str = "dev.json";

/// What `cargo pybundle` records for development mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The Cargo package.
    pub package: String,
    /// Names of the package's executable targets (bins, examples, tests, benches).
    pub binaries: Vec<String>,
    /// The package's Cargo.toml.
    pub manifest_path: PathBuf,
    /// The pixi environment's prefix.
    pub prefix: PathBuf,
    /// The interpreter inside it.
    pub interpreter: PathBuf,
    /// The live scripts folder.
    pub scripts: PathBuf,
    /// The pixi project root, which `${BUNDLE}` stands for in activation values.
    pub project_root: PathBuf,
    /// Activation variables as the bundle records them (`${PREFIX}`, `${BUNDLE}`, `${NAME}`).
    pub activation: BTreeMap<String, String>,
}

impl Record {
    /// `<target dir>/pybundle/<package>/dev.json`.
    pub fn path(target_dir: &Path, package: &str) -> PathBuf {
        target_dir.join("pybundle").join(package).join(RECORD_FILE)
    }

    /// The activation variables with `${PREFIX}` and `${BUNDLE}` filled in for the
    /// environment in place.
    pub fn variables(&self) -> BTreeMap<String, String> {
        let prefix = self.prefix.to_string_lossy();
        let root = self.project_root.to_string_lossy();
        self.activation
            .iter()
            .map(|(k, v)| {
                let v = v.replace("${PREFIX}", &prefix).replace("${BUNDLE}", &root);
                (k.clone(), v)
            })
            .collect()
    }
}

/// A recorded activation value for this machine: `${NAME}` inside the value of `NAME` becomes
/// its `current` value (how `PATH` additions join this machine's `PATH`).
pub fn compose(name: &str, value: &str, current: Option<&str>) -> String {
    crate::environment::compose(name, value, current)
}

/// The record for the program at `exe`, looked up as the module docs say: in the target
/// directory (the nearest of the four directories above the program that cargo marked as one),
/// a record of the package `package` names (`CARGO_PKG_NAME`, which `cargo run` and `cargo
/// test` set for the package's programs, including a test added since the record was written)
/// or one that lists the program's name among the package's executables (a program started
/// directly); when several qualify, the one of `package`, else none.
pub fn find(exe: &Path, package: Option<&str>) -> Option<(PathBuf, Record)> {
    let stem = exe_stem(exe)?;
    // The target directory: the nearest of those folders that cargo marks as one (it writes
    // `.rustc_info.json`, and `CACHEDIR.TAG` in most) or that holds records. Only there: a
    // target directory nested in another (a test's) never borrows the outer one's records.
    let target = exe.ancestors().skip(1).take(4).find(|dir| {
        dir.join(".rustc_info.json").is_file()
            || dir.join("CACHEDIR.TAG").is_file()
            || dir.join("pybundle").is_dir()
    });
    if let Some(dir) = target {
        let records = dir.join("pybundle");
        let Ok(entries) = std::fs::read_dir(&records) else {
            return None;
        };
        let mut found: Vec<(PathBuf, Record)> = entries
            .filter_map(|e| {
                let path = e.ok()?.path().join(RECORD_FILE);
                let record: Record = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
                let named = Some(record.package.as_str()) == package;
                let ours =
                    record.version == RECORD_VERSION && (named || record.binaries.contains(&stem));
                ours.then_some((path, record))
            })
            .collect();
        if found.len() > 1 {
            found.retain(|(_, r)| Some(r.package.as_str()) == package);
        }
        if found.len() == 1 {
            return found.pop();
        }
    }
    None
}

/// Whether the interpreter and the scripts folder the record at `record_path` names still
/// exist; [`Error::NotBundled`] naming the first that does not, and the command to run.
fn still_there(record_path: &Path, record: &Record) -> Result<()> {
    let project = record.manifest_path.parent().unwrap_or(Path::new("."));
    for (what, path) in [
        ("interpreter", &record.interpreter),
        ("scripts folder", &record.scripts),
    ] {
        if !path.exists() {
            return Err(Error::NotBundled {
                hint: format!(
                    "the development environment recorded in {} names the {what} {}, which \
                     does not exist any more; run `cargo pybundle build` again in {}",
                    record_path.display(),
                    path.display(),
                    project.display()
                ),
            });
        }
    }
    Ok(())
}

/// The environment in place that development mode runs against.
#[derive(Debug)]
pub(crate) struct InPlace {
    record_path: PathBuf,
    record: Record,
}

impl InPlace {
    /// The record for this program (see [`find`]), its paths checked; [`Error::NotBundled`]
    /// with the command to run when there is none or what it names is gone.
    pub(crate) fn lookup() -> Result<InPlace> {
        let exe = std::env::current_exe().map_err(|e| Error::NotBundled {
            hint: format!(
                "cannot find this program's own path to look for a development environment \
                 ({e}); build it with `cargo pybundle build`"
            ),
        })?;
        let package = std::env::var("CARGO_PKG_NAME").ok();
        let Some((record_path, record)) = find(&exe, package.as_deref()) else {
            return Err(Error::NotBundled {
                hint: format!(
                    "no development environment is recorded for {} (looked for \
                     `pybundle/<package>/{RECORD_FILE}` in the target directory above it); run \
                     `cargo pybundle build` once in the package's directory: it installs the \
                     pixi environment, and then `cargo run` and `cargo test` use it and the \
                     scripts folder in place",
                    exe.display()
                ),
            });
        };
        still_there(&record_path, &record)?;
        Ok(InPlace {
            record_path,
            record,
        })
    }

    /// What [`crate::Bundle::manifest`] shows in development mode: the package's name, the id
    /// [`DEV_ID`], the environment's prefix as the build prefix, the activation as recorded,
    /// no files, relocations or packages.
    pub(crate) fn manifest(&self) -> Manifest {
        let r = &self.record;
        Manifest {
            format_version: crate::format::FORMAT_VERSION,
            id: DEV_ID.to_owned(),
            name: r.package.clone(),
            creator: format!("development mode ({})", self.record_path.display()),
            platform: String::new(),
            python: PythonInfo {
                path: r.interpreter.to_string_lossy().into_owned(),
                version: String::new(),
            },
            build_prefix: r.prefix.to_string_lossy().into_owned(),
            relocations: Vec::new(),
            activation: r.activation.clone(),
            scripts_dir: r.scripts.to_string_lossy().into_owned(),
            unpacked_size: 0,
            file_count: 0,
            packages: Vec::new(),
        }
    }

    /// The environment in place: the recorded prefix and interpreter, the live scripts folder,
    /// the activation with `${PREFIX}`/`${BUNDLE}` filled in, and this crate's `pybundle`
    /// package (written once next to the record).
    pub(crate) fn environment(&self) -> Result<Environment> {
        let dir = self.record_path.parent().unwrap_or(Path::new("."));
        let lib = python_lib(dir)?;
        let r = &self.record;
        Ok(Environment {
            root: r.project_root.clone(),
            prefix: r.prefix.clone(),
            interpreter: r.interpreter.clone(),
            scripts: r.scripts.clone(),
            lib,
            vars: r.variables(),
            lock: None,
            location: None,
        })
    }
}

/// The id [`crate::Bundle::manifest`] shows in development mode (16 characters, like the
/// short id of a real bundle).
pub const DEV_ID: &str = "development-mode";

/// This crate's `pybundle` package written under `<dir>/dev-lib/<hash>/` (once per content:
/// written into a temporary folder and renamed, so a concurrent start never sees half of it);
/// returns that folder, which goes on a Python path beside the scripts (development mode; the
/// runtime's own tests).
///
/// # Errors
/// [`Error::Io`] naming the folder that could not be created, written or moved into place.
pub fn python_lib(dir: &Path) -> Result<PathBuf> {
    static WRITTEN: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    // The package's hash names its folder; the package is part of this program, so once.
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mut written = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    let files = python_package_files();
    let hex = HASH.get_or_init(|| {
        let mut hash = Sha256::new();
        for (path, contents) in &files {
            hash.update(path.as_os_str().as_encoded_bytes());
            hash.update([0]);
            hash.update((contents.len() as u64).to_le_bytes());
            hash.update(contents);
        }
        crate::extract::hex_lower(&hash.finalize())
    });
    let lib = dir.join("dev-lib").join(&hex[..16]);
    if written.as_deref() == Some(lib.as_path()) || lib.join("pybundle").is_dir() {
        *written = Some(lib.clone());
        return Ok(lib);
    }
    let parent = dir.join("dev-lib");
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("cannot create", &parent, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = parent.join(format!(".tmp-{}-{nanos}", std::process::id()));
    let written_ok = (|| {
        for (path, contents) in &files {
            let dest = tmp.join(path);
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p).map_err(|e| Error::io("cannot create", p, e))?;
            }
            std::fs::write(&dest, contents).map_err(|e| Error::io("cannot write", &dest, e))?;
        }
        match std::fs::rename(&tmp, &lib) {
            Ok(()) => Ok(()),
            // Another process wrote the same content first.
            Err(_) if lib.join("pybundle").is_dir() => Ok(()),
            Err(e) => Err(Error::io("cannot move the Python package to", &lib, e)),
        }
    })();
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written_ok?;
    *written = Some(lib.clone());
    Ok(lib)
}

/// The files of this crate's `pybundle` Python package ([`crate::PYTHON_PACKAGE`]), paths
/// relative to it, sorted; bytecode (`__pycache__`, `.pyc`) a developer's run may have left in
/// the source tree is left out.
pub fn python_package_files() -> Vec<(&'static Path, &'static [u8])> {
    fn bytecode(path: &Path) -> bool {
        path.ends_with("__pycache__") || path.extension().is_some_and(|e| e == "pyc")
    }
    fn collect(
        dir: &'static include_dir::Dir<'static>,
        out: &mut Vec<(&'static Path, &'static [u8])>,
    ) {
        for entry in dir.entries() {
            match entry {
                include_dir::DirEntry::Dir(d) if bytecode(d.path()) => {}
                include_dir::DirEntry::Dir(d) => collect(d, out),
                include_dir::DirEntry::File(f) if bytecode(f.path()) => {}
                include_dir::DirEntry::File(f) => out.push((f.path(), f.contents())),
            }
        }
    }
    let mut files = Vec::new();
    collect(&crate::PYTHON_PACKAGE, &mut files);
    files.sort_by(|a, b| a.0.cmp(b.0));
    files
}

/// The executable's name without cargo's `-<16 hex digits>` suffix of test binaries.
fn exe_stem(exe: &Path) -> Option<String> {
    let name = exe.file_stem()?.to_str()?;
    let base = match name.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            base
        }
        _ => name,
    };
    Some(base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(package: &str, binaries: &[&str]) -> Record {
        Record {
            version: RECORD_VERSION,
            package: package.into(),
            binaries: binaries.iter().map(|b| b.to_string()).collect(),
            manifest_path: "/src/app/Cargo.toml".into(),
            prefix: "/src/app/.pixi/envs/default".into(),
            interpreter: "/src/app/.pixi/envs/default/bin/python3.11".into(),
            scripts: "/src/app/python".into(),
            project_root: "/src/app".into(),
            activation: BTreeMap::from([
                ("PATH".into(), "${PREFIX}/bin:${PATH}".into()),
                ("ROOT".into(), "${BUNDLE}/data".into()),
            ]),
        }
    }

    fn write(target: &Path, r: &Record) {
        let path = Record::path(target, &r.package);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_vec(r).unwrap()).unwrap();
    }

    #[test]
    fn a_record_is_found_from_the_program_path() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let app = record("app", &["app", "it"]);
        write(&target, &app);
        write(&target, &record("other", &["other"]));
        for exe in [
            "debug/app",
            "debug/deps/it-0123456789abcdef",
            "x86_64-unknown-linux-gnu/debug/app",
        ] {
            let found = find(&target.join(exe), None).map(|(_, r)| r);
            assert_eq!(found.as_ref(), Some(&app), "{exe}");
        }
        // Two packages list the name: the one cargo names (CARGO_PKG_NAME), else neither.
        write(&target, &record("other", &["other", "it"]));
        let by_package = find(
            &target.join("debug/deps/it-0123456789abcdef"),
            Some("other"),
        );
        assert_eq!(by_package.map(|(_, r)| r.package).as_deref(), Some("other"));
        assert_eq!(
            find(&target.join("debug/deps/it-0123456789abcdef"), None),
            None
        );
        // cargo names the package: its record, for a program added since it was written.
        let by_package = find(&target.join("debug/examples/demo"), Some("other"));
        assert_eq!(by_package.map(|(_, r)| r.package).as_deref(), Some("other"));
        // A target directory nested in this one (a test's) never borrows its records.
        let nested = target.join("tmp/e2e-target");
        std::fs::create_dir_all(nested.join("debug")).unwrap();
        std::fs::write(nested.join(".rustc_info.json"), "{}").unwrap();
        assert_eq!(find(&nested.join("debug/app"), Some("app")), None);
        // Neither a known binary nor a package: nothing, not a guess.
        assert_eq!(find(&target.join("debug/stranger"), None), None);
        assert_eq!(find(&tmp.path().join("elsewhere/app"), None), None);
        // A record of another layout version is not used.
        let mut old = app.clone();
        old.version = RECORD_VERSION + 1;
        write(&target, &old);
        assert_eq!(find(&target.join("debug/app"), None), None);
    }

    #[test]
    fn a_record_naming_what_is_gone_says_so_and_what_to_run() {
        let err = still_there(
            Path::new("/t/pybundle/app/dev.json"),
            &record("app", &["app"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "the development environment recorded in /t/pybundle/app/dev.json names the \
                 interpreter /src/app/.pixi/envs/default/bin/python3.11, which does not exist any \
                 more; run `cargo pybundle build` again in /src/app"
            ),
            "{err}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let mut there = record("app", &["app"]);
        there.interpreter = tmp.path().to_path_buf();
        let err = still_there(Path::new("dev.json"), &there)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("names the scripts folder /src/app/python,"),
            "{err}"
        );
        there.scripts = tmp.path().to_path_buf();
        still_there(Path::new("dev.json"), &there).unwrap();
    }

    #[test]
    fn placeholders_are_filled_for_the_environment_in_place() {
        let vars = record("app", &["app"]).variables();
        assert_eq!(vars["PATH"], "/src/app/.pixi/envs/default/bin:${PATH}");
        assert_eq!(vars["ROOT"], "/src/app/data");
    }
}
