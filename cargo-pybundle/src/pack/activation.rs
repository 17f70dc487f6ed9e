//! Activation variables: what the environment's `etc/conda/activate.d/*.sh` scripts export
//! (e.g. `GDAL_DATA`, `SSL_CERT_FILE`), recorded at build time with the prefix written as
//! `${PREFIX}`, so the runtime can set them without a shell.
//!
//! The scripts run once here, in `sh` with a minimal environment; the variables they add or
//! change are the result. `PATH` and `CONDA_PREFIX` are left to the runtime, which sets them
//! for the extracted prefix itself.

use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const SEPARATOR: &str = "\0--pybundle-activation--\0";
const IGNORED: &[&str] = &["PATH", "CONDA_PREFIX", "_", "SHLVL", "PWD", "OLDPWD"];

/// Runs the prefix's activation scripts and returns the variables they set.
pub fn variables(prefix: &Path) -> Result<BTreeMap<String, String>> {
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
        .filter(|(k, v)| !IGNORED.contains(&k.as_str()) && before.get(k) != Some(v))
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
        let vars = variables(prefix).unwrap();
        let expected: BTreeMap<String, String> =
            [("DATA", "${PREFIX}/share/x"), ("ONE", "1"), ("TWO", "1-2")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn no_scripts_no_variables_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(variables(dir.path()).unwrap().is_empty());
        let d = dir.path().join("etc/conda/activate.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("bad.sh"), "false\n").unwrap();
        let err = variables(dir.path()).unwrap_err().to_string();
        assert!(err.contains("activation scripts in"), "{err}");
    }
}
