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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// The record for the program at `exe`, looked up as the module docs say; `package` is
/// `CARGO_PKG_NAME` when cargo started the program.
pub fn find(exe: &Path, package: Option<&str>) -> Option<(PathBuf, Record)> {
    let stem = exe_stem(exe)?;
    for dir in exe.ancestors().skip(1).take(4) {
        let records = dir.join("pybundle");
        if !records.is_dir() {
            continue;
        }
        let candidates: Vec<PathBuf> = match package {
            Some(package) => vec![records.join(package).join(RECORD_FILE)],
            None => std::fs::read_dir(&records)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path().join(RECORD_FILE)))
                .collect(),
        };
        let mut found = candidates.into_iter().filter_map(|path| {
            let record: Record = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            let ours = record.version == RECORD_VERSION
                && (package.is_some() || record.binaries.contains(&stem));
            ours.then_some((path, record))
        });
        if let Some(hit) = found.next() {
            return Some(hit);
        }
    }
    None
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
        // cargo names the package: that record, whatever the binary is called.
        let by_package = find(&target.join("debug/examples/demo"), Some("other"));
        assert_eq!(by_package.map(|(_, r)| r.package).as_deref(), Some("other"));
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
    fn placeholders_are_filled_for_the_environment_in_place() {
        let vars = record("app", &["app"]).variables();
        assert_eq!(vars["PATH"], "/src/app/.pixi/envs/default/bin:${PATH}");
        assert_eq!(vars["ROOT"], "/src/app/data");
    }
}
