//! The application's configuration: `[package.metadata.pybundle]` read with `cargo_metadata`.
//!
//! Keys are checked one by one (not with a derived deserializer) so that an error names the
//! key, the expected type and the valid keys: serde's messages lose the key on a wrong type.

use anyhow::{anyhow, bail, Context as _, Result};
use cargo_metadata::{Metadata, MetadataCommand, Package};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::pack::strip::Strip;

/// Valid keys of `[package.metadata.pybundle]`, listed in error messages.
pub const KEYS: &[&str] = &[
    "manifest",
    "environment",
    "scripts",
    "pixi-version",
    "pixi-sha256",
    "lock",
    "exclude",
    "compression-level",
    "strip",
    "channel-mirrors",
];

/// Files left out of the archive unless `exclude` says otherwise. Bytecode only: a `.pyc`
/// is keyed to its source's mtime, which the archive's fixed mtime changes, so Python would
/// ignore it anyway. Test folders stay: some packages import from theirs (e.g. `numpy.testing`
/// helpers live beside test suites) — add `"**/tests/**"` yourself to drop them.
pub const DEFAULT_EXCLUDE: &[&str] = &["**/__pycache__/**", "**/*.pyc"];

/// zstd level for `--release` builds unless `compression-level` is set. Measured with
/// `benches/pack.rs` on python 3.11 + numpy 1.26.4 (132.6 MB unpacked; shared 2-core machine)
/// against `tar czf` of the same files (43.2 MB, 5.3 s): level 3 → 0.88× in 0.8 s,
/// 9 → 0.78× in 2.4 s, 16 → 0.735× in 16 s, 19 → 0.69× in 49 s. Only 16 and up meet the
/// ≤0.75× goal; 19 gives the smallest bundle and is paid once per change of environment or
/// scripts (unchanged inputs reuse the archive). Set `compression-level = 16` to trade 7% of
/// size for a third of the time.
pub const RELEASE_COMPRESSION_LEVEL: i32 = 19;

/// zstd level for dev builds unless `compression-level` is set: editing a script repacks, and
/// level 3 keeps that under a second (the size hardly matters on the build machine).
pub const DEV_COMPRESSION_LEVEL: i32 = 3;

/// Snippet shown when a package has no configuration table.
const SNIPPET: &str = "[package.metadata.pybundle]\nmanifest = \"pixi.toml\"\nscripts = \"python\"";

/// How pixi may treat the lock file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// `--locked`: the lock file must match the manifest (default).
    Locked,
    /// `--frozen`: install exactly what the lock file says, without checking.
    Frozen,
    /// Solve again when needed (in the build directory; your own pixi.lock is left as is).
    Update,
}

/// `[package.metadata.pybundle]`, with defaults applied and paths made absolute.
#[derive(Clone, Debug)]
pub struct Config {
    /// pixi manifest (pixi.toml).
    pub manifest: PathBuf,
    /// pixi environment to bundle.
    pub environment: String,
    /// Folder of the application's Python scripts.
    pub scripts: PathBuf,
    /// pixi version to download when no pixi is given.
    pub pixi_version: Option<String>,
    /// Expected sha256 of the pixi download.
    pub pixi_sha256: Option<String>,
    /// Lock file policy.
    pub lock: Lock,
    /// Globs (relative to the prefix and to the scripts folder) left out of the archive.
    pub exclude: Vec<String>,
    /// zstd level, 1..=22; `None` picks by profile (see [`Config::level`]).
    pub compression_level: Option<i32>,
    /// Debug info left out; `None` picks by profile (see [`Config::strip`]).
    pub strip: Option<Strip>,
    /// Channel name or URL → replacement URL.
    pub channel_mirrors: BTreeMap<String, String>,
}

impl Config {
    /// The defaults, for the package in `dir`: what an empty table means.
    fn defaults(dir: &Path) -> Config {
        Config {
            manifest: dir.join("pixi.toml"),
            environment: "default".into(),
            scripts: dir.join("python"),
            pixi_version: None,
            pixi_sha256: None,
            lock: Lock::Locked,
            exclude: DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect(),
            compression_level: None,
            strip: None,
            channel_mirrors: BTreeMap::new(),
        }
    }

    /// The zstd level: `compression-level`, else by profile.
    pub fn level(&self, release: bool) -> i32 {
        self.compression_level.unwrap_or(if release {
            RELEASE_COMPRESSION_LEVEL
        } else {
            DEV_COMPRESSION_LEVEL
        })
    }

    /// `strip`, else by profile as Cargo's own: debug info left out with `--release` (a
    /// release build packs once and ships; what a debugger reads is most of some libraries),
    /// kept in dev builds.
    pub fn strip(&self, release: bool) -> Strip {
        self.strip.unwrap_or(if release {
            Strip::DebugInfo
        } else {
            Strip::None
        })
    }
}

/// The Cargo package being bundled and where its build output goes.
#[derive(Clone, Debug)]
pub struct Target {
    /// Package name.
    pub name: String,
    /// The package's Cargo.toml.
    pub manifest_path: PathBuf,
    /// Cargo's target directory (`--target-dir`, `CARGO_TARGET_DIR`, or the workspace's).
    pub target_dir: PathBuf,
    /// The parsed configuration.
    pub config: Config,
    /// File names (without cargo's hash) of the programs cargo builds for the package: bins,
    /// examples, tests, benches and the library's unit tests.
    pub executables: Vec<String>,
    /// The `pybundle-runtime` the package links, if any.
    pub runtime: Option<crate::runtime::AppRuntime>,
}

impl Target {
    /// `<target dir>/pybundle/<package>`: everything cargo-pybundle writes for this package.
    pub fn work_dir(&self) -> PathBuf {
        self.target_dir.join("pybundle").join(&self.name)
    }
}

/// Which Cargo package, and where its build output goes (from the command line).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `-p`: a workspace member by name.
    pub package: Option<String>,
    /// `--manifest-path`: the package's (or workspace's) Cargo.toml.
    pub manifest_path: Option<PathBuf>,
    /// `--target-dir`.
    pub target_dir: Option<PathBuf>,
}

/// Runs `cargo metadata` for the selected package and reads its configuration. With `deps`
/// (the arguments given for `cargo build`, of which `--locked`, `--frozen` and `--offline`
/// are passed on) the dependency graph is read too, and the `pybundle-runtime` the package
/// builds with is found; without, [`Target::runtime`] is `None`.
pub fn load(args: &Selection, deps: Option<&[String]>) -> Result<Target> {
    let metadata = cargo_metadata(args.manifest_path.as_deref(), deps)?;
    let package = select(
        &metadata,
        args.package.as_deref(),
        args.manifest_path.as_deref(),
    )?;
    let manifest_path = PathBuf::from(package.manifest_path.as_std_path());
    let Some(table) = package.metadata.get("pybundle").filter(|v| !v.is_null()) else {
        bail!(
            "package `{}` ({}) has no [package.metadata.pybundle] table; add one, e.g.\n\n{SNIPPET}",
            package.name,
            manifest_path.display()
        );
    };
    let dir = manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let config = parse(table, &dir).with_context(|| {
        format!(
            "in [package.metadata.pybundle] of {}",
            manifest_path.display()
        )
    })?;
    let target_dir = match &args.target_dir {
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("resolving --target-dir {}", dir.display()))?,
        None => metadata.target_directory.clone().into_std_path_buf(),
    };
    let executables = package
        .targets
        .iter()
        // Every target cargo can run: bins, examples, tests, benches, and the unit tests of
        // the library (named after it); not the build script.
        .filter(|t| {
            t.kind
                .iter()
                .any(|k| !matches!(k, cargo_metadata::TargetKind::CustomBuild))
        })
        .map(|t| t.name.replace('-', "_").to_string())
        .chain(
            package
                .targets
                .iter()
                .filter(|t| t.is_bin())
                .map(|t| t.name.clone()),
        )
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let runtime = match deps {
        Some(_) => crate::runtime::find(&metadata, &package.id)?,
        None => None,
    };
    Ok(Target {
        name: package.name.to_string(),
        manifest_path,
        target_dir,
        config,
        executables,
        runtime,
    })
}

/// `cargo metadata`, with the dependency graph when `deps` gives the flags to pass (of them,
/// `--locked`, `--frozen` and `--offline`), without it (`--no-deps`) otherwise.
fn cargo_metadata(manifest_path: Option<&Path>, deps: Option<&[String]>) -> Result<Metadata> {
    let mut cmd = MetadataCommand::new();
    match deps {
        None => {
            cmd.no_deps();
        }
        Some(flags) => {
            let wanted = ["--locked", "--frozen", "--offline"];
            let passed = flags.iter().filter(|f| wanted.contains(&f.as_str()));
            cmd.other_options(passed.cloned().collect::<Vec<_>>());
        }
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        cmd.cargo_path(cargo);
    }
    if let Some(path) = manifest_path {
        cmd.manifest_path(path);
    }
    cmd.exec().map_err(|err| match err {
        cargo_metadata::Error::CargoMetadata { stderr } => anyhow!("{}", stderr.trim_end()),
        other => anyhow!(other),
    })
    .context("reading the Cargo package with `cargo metadata`; run it in a Cargo package or pass --manifest-path")
}

/// The package named by `-p`, else the one `--manifest-path`/the current directory names, else
/// the only workspace member with a pybundle table.
fn select<'m>(
    metadata: &'m Metadata,
    name: Option<&str>,
    manifest_path: Option<&Path>,
) -> Result<&'m Package> {
    let members = metadata.workspace_packages();
    if let Some(name) = name {
        return members
            .iter()
            .copied()
            .find(|p| p.name.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = members.iter().map(|p| p.name.as_str()).collect();
                anyhow!(
                    "no package `{name}` in the workspace; members: {}",
                    names.join(", ")
                )
            });
    }
    // Match the manifest in question (given, or the nearest one up from the current directory,
    // as cargo picks it) against the members.
    if let Some(wanted) = manifest_in_question(manifest_path) {
        let same = |p: &&Package| {
            p.manifest_path
                .as_std_path()
                .canonicalize()
                .is_ok_and(|m| m == wanted)
        };
        if let Some(package) = members.iter().copied().find(same) {
            return Ok(package);
        }
    }
    let bundled: Vec<&Package> = members
        .iter()
        .copied()
        .filter(|p| p.metadata.get("pybundle").is_some())
        .collect();
    match bundled.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "no package in the workspace {} has [package.metadata.pybundle]; add one, e.g.\n\n{SNIPPET}",
            manifest_path.map_or_else(|| metadata.workspace_root.to_string(), |p| p.display().to_string())
        ),
        many => {
            let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
            bail!("several packages can be bundled ({}); choose one with -p", names.join(", "))
        }
    }
}

/// The canonical path of `--manifest-path`, or of the nearest `Cargo.toml` above the current
/// directory.
fn manifest_in_question(manifest_path: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = manifest_path {
        return path.canonicalize().ok();
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join("Cargo.toml"))
        .find(|m| m.is_file())
        .and_then(|m| m.canonicalize().ok())
}

/// Parses and checks the table; relative paths are taken from `dir` (the package directory).
pub fn parse(table: &Value, dir: &Path) -> Result<Config> {
    let Value::Object(map) = table else {
        bail!(
            "[package.metadata.pybundle] must be a table, not {}",
            kind(table)
        );
    };
    let mut config = Config::defaults(dir);
    for (key, value) in map {
        let bad =
            |expected: &str| anyhow!("`{key}` must be {expected}, not {} `{value}`", kind(value));
        match key.as_str() {
            "manifest" => {
                config.manifest = dir.join(string(value).ok_or_else(|| bad("a path string"))?)
            }
            "scripts" => {
                config.scripts = dir.join(string(value).ok_or_else(|| bad("a path string"))?)
            }
            "environment" => {
                config.environment = string(value).ok_or_else(|| bad("a string"))?.to_owned()
            }
            "pixi-version" => {
                let v = string(value).ok_or_else(|| bad("a version string like \"0.77.0\""))?;
                config.pixi_version = Some(v.trim_start_matches('v').to_owned());
            }
            "pixi-sha256" => {
                let v = string(value).filter(|s| is_sha256(s));
                config.pixi_sha256 = Some(
                    v.ok_or_else(|| bad("64 hexadecimal digits"))?
                        .to_ascii_lowercase(),
                );
            }
            "lock" => {
                config.lock = match string(value) {
                    Some("locked") => Lock::Locked,
                    Some("frozen") => Lock::Frozen,
                    Some("update") => Lock::Update,
                    _ => return Err(bad("one of \"locked\", \"frozen\", \"update\"")),
                }
            }
            "exclude" => {
                let globs = value
                    .as_array()
                    .ok_or_else(|| bad("an array of glob strings"))?;
                config.exclude = globs
                    .iter()
                    .map(|g| string(g).map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("an array of glob strings"))?;
            }
            "compression-level" => {
                let level = value
                    .as_i64()
                    .filter(|l| (1..=22).contains(l))
                    .and_then(|l| i32::try_from(l).ok());
                config.compression_level =
                    Some(level.ok_or_else(|| bad("an integer from 1 to 22"))?);
            }
            "strip" => {
                config.strip = Some(match string(value) {
                    Some("none") => Strip::None,
                    Some("debuginfo") => Strip::DebugInfo,
                    _ => return Err(bad("one of \"none\", \"debuginfo\"")),
                })
            }
            "channel-mirrors" => {
                let table = value
                    .as_object()
                    .ok_or_else(|| bad("a table of channel = \"url\""))?;
                add_mirrors(&mut config.channel_mirrors, table)?;
            }
            _ => bail!("unknown key `{key}`; valid keys: {}", KEYS.join(", ")),
        }
    }
    Ok(config)
}

/// The `channel-mirrors` table's entries, each URL checked to be a string, added to `mirrors`.
fn add_mirrors(
    mirrors: &mut BTreeMap<String, String>,
    table: &serde_json::Map<String, Value>,
) -> Result<()> {
    for (channel, url) in table {
        let url = string(url).ok_or_else(|| {
            anyhow!(
                "`channel-mirrors.{channel}` must be a URL string, not {}",
                kind(url)
            )
        })?;
        mirrors.insert(channel.clone(), url.to_owned());
    }
    Ok(())
}

fn string(value: &Value) -> Option<&str> {
    value.as_str()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(table: Value) -> String {
        format!("{:#}", parse(&table, Path::new("/app")).unwrap_err())
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(
            &json!({"scripts": "py", "compression-level": 3}),
            Path::new("/app"),
        )
        .unwrap();
        assert_eq!(c.manifest, Path::new("/app/pixi.toml"));
        assert_eq!(c.scripts, Path::new("/app/py"));
        assert_eq!(c.compression_level, Some(3));
        assert_eq!(c.level(true), 3);
        assert_eq!(c.lock, Lock::Locked);
        assert_eq!(c.exclude, DEFAULT_EXCLUDE);
        assert_eq!(
            (c.strip(true), c.strip(false)),
            (Strip::DebugInfo, Strip::None)
        );
        for (name, strip) in [("none", Strip::None), ("debuginfo", Strip::DebugInfo)] {
            let c = parse(&json!({ "strip": name }), Path::new("/app")).unwrap();
            assert_eq!((c.strip(true), c.strip(false)), (strip, strip));
            assert_eq!(strip.name(), name);
        }
    }

    #[test]
    fn a_users_exclude_replaces_the_default() {
        let c = parse(
            &json!({"scripts": "py", "exclude": ["data/**"]}),
            Path::new("/app"),
        )
        .unwrap();
        assert_eq!(c.exclude, ["data/**"]);
        let none = parse(&json!({"scripts": "py", "exclude": []}), Path::new("/app")).unwrap();
        assert!(none.exclude.is_empty(), "{:?}", none.exclude);
    }

    #[test]
    fn unknown_key_lists_valid_keys() {
        let e = err(json!({"scripts-dir": "py"}));
        assert!(e.contains("unknown key `scripts-dir`"), "{e}");
        assert!(e.contains("channel-mirrors"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        assert!(err(json!({"compression-level": "high"}))
            .contains("`compression-level` must be an integer"));
        assert!(err(json!({"compression-level": 30})).contains("from 1 to 22"));
        assert!(err(json!({"lock": "yes"})).contains("\"locked\""));
        let e = err(json!({"strip": true}));
        assert!(
            e.contains("`strip` must be one of \"none\", \"debuginfo\""),
            "{e}"
        );
        assert!(err(json!({"exclude": "*.pyc"})).contains("array of glob"));
        assert!(err(json!({"pixi-sha256": "abc"})).contains("64 hexadecimal"));
        assert!(err(json!({"channel-mirrors": {"conda-forge": 1}}))
            .contains("channel-mirrors.conda-forge"));
        assert!(err(json!(["x"])).contains("must be a table"));
    }
}
