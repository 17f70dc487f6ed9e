//! Activation variables: what `pixi run` sets in the environment (`CONDA_PREFIX`, the
//! `PIXI_*` names, `PATH`, `[activation.env]`, the exports of `etc/conda/activate.d/*.sh` and
//! of the manifest's `[activation]` scripts), recorded at build time so the runtime can set
//! them without pixi or a shell.
//!
//! Capture: `pixi shell-hook --json --frozen --no-install -e <env>` (pixi ≥ 0.70 has it), run
//! in a fixed minimal environment ([`minimal_env`]), not the developer's shell: the developer's
//! `PIXI_IN_SHELL`/`PIXI_ENVIRONMENT_NAME`, an outer `CONDA_PREFIX` or a variable that
//! happens to hold the same value as an `[activation.env]` entry cannot change what is
//! recorded, and `--frozen --no-install` means capturing can neither solve nor touch the
//! prefix. pixi prints only the variables activation sets. Rewriting, so nothing names the
//! build machine: the build prefix becomes `${PREFIX}`, the pixi project root `${BUNDLE}`; a
//! variable whose new value is the minimal environment's with entries put in front or behind
//! (`PATH`) keeps only those entries around `${NAME}`, which the runtime fills with the target
//! machine's value. Dropped as build-machine or shell state: see [`DROPPED`]
//! (`PIXI_PROJECT_ROOT` stays, as `${BUNDLE}`, for scripts that look for project files). A
//! recorded value that still names the build machine's home folder is reported.
//!
//! Without pixi (tools and tests packing a bare prefix) the activate.d scripts are sourced
//! with `sh` instead ([`from_scripts`]).

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::mirror::ConfigLayer;
use crate::pixi::Pixi;
use crate::ui::Ui;

/// Variables never recorded: shell bookkeeping and names of build-machine files or programs.
pub const DROPPED: &[&str] = &[
    "_",
    "SHLVL",
    "PWD",
    "OLDPWD",
    "PS1",
    "INIT_CWD",
    "PIXI_EXE",
    "PIXI_IN_SHELL",
    "PIXI_PROMPT",
    "PIXI_PROJECT_MANIFEST",
    "CONDA_SHLVL",
    "PIXI_LOCKED",
    "PIXI_FROZEN",
];

/// Prefixes of variable names never recorded: pixi ≥ 0.50 backs up an outer environment's
/// conda/pixi variables as `CONDA_ENV_SHLVL_<n>_<NAME>`.
pub const DROPPED_PREFIXES: &[&str] = &["CONDA_ENV_SHLVL_"];

const SEPARATOR: &str = "\0--pybundle-activation--\0";

/// The `PATH` of [`minimal_env`].
const MINIMAL_PATH: &str = "/usr/bin:/bin";

/// Variables passed from our environment to pixi when capturing: where pixi keeps its
/// configuration and caches (so it finds the installed environment's cache and the user's
/// settings); nothing about the developer's shell.
const PASSED: &[&str] = &[
    "HOME",
    "TMPDIR",
    "PIXI_HOME",
    "PIXI_CACHE_DIR",
    "RATTLER_CACHE_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "PIXI_CONFIG_FILE",
    "PIXI_NO_CONFIG",
];

/// What `pixi shell-hook --json` prints.
#[derive(Clone, Debug, Deserialize)]
pub struct Hook {
    /// The variables activation sets.
    pub environment_variables: BTreeMap<String, String>,
    /// The `[activation]` scripts that ran (absolute paths).
    #[serde(default)]
    pub activation_scripts: Vec<PathBuf>,
}

impl Hook {
    /// A variable activation sets.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.environment_variables.get(name).map(String::as_str)
    }
}

/// How to run `pixi shell-hook` for one environment.
#[derive(Clone, Debug)]
pub struct PixiRun {
    /// The pixi binary.
    pub pixi: Pixi,
    /// The manifest.
    pub manifest: PathBuf,
    /// pixi environment name.
    pub environment: String,
    /// `PIXI_CONFIG_FILE` of the build (channel mirrors), if any.
    pub config_file: Option<PathBuf>,
}

/// The environment pixi runs in when capturing: [`MINIMAL_PATH`] and the [`PASSED`] variables.
pub fn minimal_env() -> Vec<(OsString, OsString)> {
    let mut env = vec![(OsString::from("PATH"), OsString::from(MINIMAL_PATH))];
    for name in PASSED {
        if let Some(value) = std::env::var_os(name) {
            env.push((OsString::from(name), value));
        }
    }
    env
}

/// Runs `pixi shell-hook --json --frozen --no-install` for the environment: its variables, and
/// pixi's own message (a manifest it cannot load, an unknown environment) as the error.
pub fn hook(run: &PixiRun) -> Result<Hook> {
    let mut cmd = Command::new(&run.pixi.path);
    cmd.env_clear().envs(minimal_env());
    if let Some(file) = &run.config_file {
        ConfigLayer::apply_file(&mut cmd, file);
    }
    cmd.args([
        "shell-hook",
        "--json",
        "--frozen",
        "--no-install",
        "--environment",
    ])
    .arg(&run.environment)
    .arg("--manifest-path")
    .arg(&run.manifest)
    .stdin(Stdio::null())
    .current_dir(run.manifest.parent().unwrap_or(Path::new("/")));
    let out = cmd
        .output()
        .with_context(|| format!("running {}", run.pixi.path.display()))?;
    if !out.status.success() {
        bail!(
            "pixi cannot activate environment `{}` of {} (`environment` in \
             [package.metadata.pybundle] chooses it; default: `default`); pixi says ({}):\n{}",
            run.environment,
            run.manifest.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "reading the JSON of `{} shell-hook --json`: {}",
            run.pixi.path.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        )
    })
}

/// The rewritten variables activation sets for the environment installed at `prefix`; warns
/// (through `ui`) of variables naming the build machine's home folder.
pub fn capture(run: &PixiRun, prefix: &Path, ui: &Ui) -> Result<BTreeMap<String, String>> {
    let hook = hook(run)?;
    let before: BTreeMap<String, String> = minimal_env()
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let root = run.manifest.parent().unwrap_or(Path::new("/"));
    let root = hook
        .var("PIXI_PROJECT_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.to_path_buf());
    let vars = diff(&before, &hook.environment_variables, prefix, &root);
    let home = before.get("HOME").filter(|h| h.len() > 1);
    let naming: Vec<&str> = vars
        .iter()
        .filter(|(_, v)| home.is_some_and(|h| v.contains(h.as_str())))
        .map(|(k, _)| k.as_str())
        .collect();
    if !naming.is_empty() {
        ui.warn(format!(
            "activation variables {} name the build machine's home folder; they are recorded as \
             they are",
            naming.join(", ")
        ));
    }
    Ok(vars)
}

/// The variables `after` adds or changes relative to `before`, rewritten (module docs).
pub fn diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    prefix: &Path,
    root: &Path,
) -> BTreeMap<String, String> {
    let prefix = prefix.to_string_lossy();
    let root = root.to_string_lossy();
    let sep = if cfg!(windows) { ";" } else { ":" };
    let mut out = BTreeMap::new();
    for (k, v) in after {
        let old = before.get(k);
        if is_dropped(k) || old == Some(v) {
            continue;
        }
        let composed = old.filter(|o| !o.is_empty()).and_then(|o| {
            let self_ref = format!("${{{k}}}");
            if let Some(added) = v.strip_suffix(&format!("{sep}{o}")) {
                Some(format!(
                    "{}{sep}{self_ref}",
                    abstract_paths(added, &prefix, &root)
                ))
            } else {
                v.strip_prefix(&format!("{o}{sep}")).map(|added| {
                    format!("{self_ref}{sep}{}", abstract_paths(added, &prefix, &root))
                })
            }
        });
        let value = composed.unwrap_or_else(|| abstract_paths(v, &prefix, &root));
        out.insert(k.clone(), value);
    }
    out
}

/// Whether a variable is never recorded ([`DROPPED`], [`DROPPED_PREFIXES`]).
pub fn is_dropped(name: &str) -> bool {
    DROPPED.contains(&name) || DROPPED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The prefix first: it usually lies inside the project root.
fn abstract_paths(value: &str, prefix: &str, root: &str) -> String {
    let v = value.replace(prefix, "${PREFIX}");
    if root.len() > 1 {
        v.replace(root, "${BUNDLE}")
    } else {
        v
    }
}

/// Without pixi: sources the prefix's `etc/conda/activate.d/*.sh` in `sh` with a minimal
/// environment and returns the variables they add or change (`PATH` and `CONDA_PREFIX` are
/// left to the runtime).
pub fn from_scripts(prefix: &Path) -> Result<BTreeMap<String, String>> {
    let dir = prefix.join("etc/conda/activate.d");
    let mut scripts: Vec<_> = match fs_err::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sh"))
            .collect(),
        Err(_) => return Ok(BTreeMap::new()),
    };
    if scripts.is_empty() {
        return Ok(BTreeMap::new());
    }
    scripts.sort();
    let prefix_str = prefix.to_str().context("the prefix is not valid UTF-8")?;
    // `env -0` before and after sourcing every script, in one shell.
    let script = format!(
        "env -0; printf '{}'; for f in \"$@\"; do . \"$f\" || exit 1; done; env -0",
        SEPARATOR.replace('\0', "\\0")
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(&scripts)
        .env_clear()
        .env("PATH", format!("{prefix_str}/bin:/usr/bin:/bin"))
        .env("CONDA_PREFIX", prefix)
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .current_dir(prefix)
        .output()
        .context("running the activation scripts with sh")?;
    if !out.status.success() {
        bail!(
            "activation scripts in {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8(out.stdout).context("activation output is not UTF-8")?;
    let (before, after) = text
        .split_once(SEPARATOR)
        .context("activation output is malformed")?;
    let before = parse(before);
    Ok(parse(after)
        .into_iter()
        .filter(|(k, v)| {
            !["PATH", "CONDA_PREFIX"].contains(&k.as_str())
                && !is_dropped(k)
                && before.get(k) != Some(v)
        })
        .map(|(k, v)| (k, v.replace(prefix_str, "${PREFIX}")))
        .collect())
}

fn parse(env0: &str) -> BTreeMap<String, String> {
    env0.split('\0')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn diff_keeps_changes_abstracts_paths_and_composes_path() {
        let before = map(&[("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("X", "a")]);
        let after = map(&[
            ("PATH", "/p/.pixi/envs/default/bin:/usr/bin:/bin"),
            ("HOME", "/root"),
            ("X", "a:/p/extra"),
            ("CONDA_PREFIX", "/p/.pixi/envs/default"),
            ("PIXI_PROJECT_ROOT", "/p"),
            ("PIXI_PROJECT_MANIFEST", "/p/pixi.toml"),
            ("PIXI_PROMPT", "(x) "),
            ("DATA", "/p/.pixi/envs/default/share/d"),
            ("_", "/usr/bin/env"),
            ("PIXI_EXE", "/home/dev/.pixi/bin/pixi"),
            ("PIXI_IN_SHELL", "1"),
            ("INIT_CWD", "/home/dev/src"),
            ("CONDA_ENV_SHLVL_1_CONDA_PREFIX", "/home/dev/other"),
        ]);
        let got = diff(
            &before,
            &after,
            Path::new("/p/.pixi/envs/default"),
            Path::new("/p"),
        );
        let want = map(&[
            ("PATH", "${PREFIX}/bin:${PATH}"),
            ("X", "${X}:${BUNDLE}/extra"),
            ("CONDA_PREFIX", "${PREFIX}"),
            ("PIXI_PROJECT_ROOT", "${BUNDLE}"),
            ("DATA", "${PREFIX}/share/d"),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn records_what_scripts_export_with_the_prefix_abstracted() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path();
        let d = prefix.join("etc/conda/activate.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("a.sh"),
            "export DATA=\"$CONDA_PREFIX/share/x\"\nexport PATH=\"/x:$PATH\"\n",
        )
        .unwrap();
        std::fs::write(d.join("b.sh"), "export ONE=1\nexport TWO=\"$ONE-2\"\n").unwrap();
        std::fs::write(d.join("ignored.csh"), "setenv NO 1\n").unwrap();
        let vars = from_scripts(prefix).unwrap();
        let expected = map(&[("DATA", "${PREFIX}/share/x"), ("ONE", "1"), ("TWO", "1-2")]);
        assert_eq!(vars, expected);
    }

    #[test]
    fn no_scripts_no_variables_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(from_scripts(dir.path()).unwrap().is_empty());
        let d = dir.path().join("etc/conda/activate.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("bad.sh"), "false\n").unwrap();
        let err = from_scripts(dir.path()).unwrap_err().to_string();
        assert!(err.contains("activation scripts in"), "{err}");
    }
}
