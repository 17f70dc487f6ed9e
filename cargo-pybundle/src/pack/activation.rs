//! Activation variables: what `pixi run` sets in the environment (`CONDA_PREFIX`, the
//! `PIXI_*` names, `PATH`, the exports of `etc/conda/activate.d/*.sh` and of the manifest's
//! `[activation]` scripts), recorded at build time so the runtime can set them without pixi
//! or a shell.
//!
//! Capture: the environment's interpreter runs through `pixi run --frozen` (every pixi
//! version has it; 0.15's `shell-hook` has no `--json`) and prints `os.environ`; only the
//! variables that differ from cargo-pybundle's own environment are kept. Rewriting, so nothing
//! names the build machine: the build prefix becomes `${PREFIX}`, the pixi project root (our
//! shadow directory) `${BUNDLE}`; a variable whose new value is the old one with entries put
//! in front or behind (`PATH`) keeps only those entries around `${NAME}`, which the runtime
//! fills with the target machine's value. Dropped as build-machine or shell state: see
//! [`DROPPED`] (`PIXI_PROJECT_MANIFEST` names a pixi.toml the bundle does not have;
//! `PIXI_PROJECT_ROOT` stays, as `${BUNDLE}`, for scripts that look for project files).
//!
//! Without pixi (tools and tests packing a bare prefix) the activate.d scripts are sourced
//! with `sh` instead ([`from_scripts`]).

use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Variables never recorded: shell bookkeeping and names of build-machine files.
pub const DROPPED: &[&str] = &[
    "_",
    "SHLVL",
    "PWD",
    "OLDPWD",
    "PS1",
    "PIXI_PROMPT",
    "PIXI_PROJECT_MANIFEST",
    "CONDA_SHLVL",
    "PIXI_LOCKED",
    "PIXI_FROZEN",
];

const MARK: &str = "@@pybundle-activation@@";
const SEPARATOR: &str = "\0--pybundle-activation--\0";

/// How to run the environment through pixi.
#[derive(Clone, Debug)]
pub struct PixiRun {
    /// The pixi binary.
    pub pixi: PathBuf,
    /// The manifest pixi installed from (our shadow copy).
    pub manifest: PathBuf,
    /// pixi environment name.
    pub environment: String,
}

/// Runs `python` through `pixi run` and returns the rewritten variables activation sets.
pub fn capture(run: &PixiRun, prefix: &Path) -> Result<BTreeMap<String, String>> {
    let mut cmd = Command::new(&run.pixi);
    cmd.env_remove("PIXI_LOCKED").env_remove("PIXI_FROZEN");
    cmd.args(["run", "--frozen", "--manifest-path"])
        .arg(&run.manifest);
    if run.environment != "default" {
        cmd.args(["--environment", &run.environment]);
    }
    let code = format!("import json,os;print('{MARK}'+json.dumps(dict(os.environ)))");
    cmd.args(["python", "-c", &code])
        .stdin(Stdio::null())
        .current_dir(run.manifest.parent().unwrap_or(Path::new(".")));
    let out = cmd
        .output()
        .with_context(|| format!("running {} run", run.pixi.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`pixi run --manifest-path {} python` failed ({}): {}",
            run.manifest.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json = stdout
        .split_once(MARK)
        .map(|(_, j)| j.lines().next().unwrap_or(""))
        .with_context(|| format!("`pixi run python` printed no environment: {stdout}"))?;
    let after: BTreeMap<String, String> =
        serde_json::from_str(json).context("reading the environment printed by python")?;
    let before: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k != "PIXI_LOCKED" && k != "PIXI_FROZEN")
        .collect();
    let root = run.manifest.parent().unwrap_or(Path::new("/"));
    Ok(diff(&before, &after, prefix, root))
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
        if DROPPED.contains(&k.as_str()) || old == Some(v) {
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

/// The prefix first: it usually lies inside the project root.
fn abstract_paths(value: &str, prefix: &str, root: &str) -> String {
    let v = value.replace(prefix, "${PREFIX}");
    if root.len() > 1 {
        v.replace(root, "${BUNDLE}")
    } else {
        v
    }
}

/// The files named by `scripts` in the manifest's `[activation]` tables (top level,
/// `[target.*.activation]`, `[feature.*.activation]`, `[feature.*.target.*.activation]`),
/// relative to the manifest's folder as written. Unreadable manifests give none.
pub fn script_files(manifest: &Path) -> Vec<String> {
    let Ok(text) = fs_err::read_to_string(manifest) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let root = doc.as_table();
    let mut tables: Vec<&toml_edit::Table> = vec![root];
    if let Some(features) = root.get("feature").and_then(|f| f.as_table()) {
        tables.extend(features.iter().filter_map(|(_, f)| f.as_table()));
    }
    for t in tables {
        let mut scopes = vec![t];
        if let Some(targets) = t.get("target").and_then(|x| x.as_table()) {
            scopes.extend(targets.iter().filter_map(|(_, x)| x.as_table()));
        }
        for s in scopes {
            let scripts = s
                .get("activation")
                .and_then(|a| a.get("scripts"))
                .and_then(|x| x.as_array());
            for v in scripts.into_iter().flatten() {
                if let Some(p) = v.as_str() {
                    out.push(p.to_owned());
                }
            }
        }
    }
    out
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
                && !DROPPED.contains(&k.as_str())
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
    fn activation_scripts_are_found_in_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("pixi.toml");
        std::fs::write(
            &m,
            "[project]\nname='x'\n[activation]\nscripts=['a.sh']\n\
             [target.linux-64.activation]\nscripts=['b.sh']\n\
             [feature.f.activation]\nscripts=['c.sh']\n",
        )
        .unwrap();
        assert_eq!(script_files(&m), ["a.sh", "b.sh", "c.sh"]);
        assert!(script_files(&dir.path().join("none.toml")).is_empty());
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
