//! What the dependency graphs of the scratch packages say: every path package lies in the
//! scratch directory, and each crate's `rust-version` covers its locked dependencies.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::clean_env;
use crate::tools;

/// Fails unless every package without a registry source in `manifest`'s dependency graph lies
/// inside `dir`.
pub fn paths_inside(dir: &Path, manifest: &Path, config: &Path) -> Result<()> {
    let meta = metadata(manifest, Some(config))?;
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata packages")?;
    for p in packages.iter().filter(|p| p["source"].is_null()) {
        let path = Path::new(p["manifest_path"].as_str().unwrap_or_default());
        if !path.starts_with(dir) {
            bail!(
                "{} depends on {} at {}, outside the scratch directory",
                manifest.display(),
                p["name"],
                path.display()
            );
        }
    }
    Ok(())
}

/// `rust-version` of the package at `dir` is true for its packaged Cargo.lock: no dependency
/// (normal or build, on this platform) declares a newer one.
pub fn msrv(dir: &Path, config: Option<&Path>) -> Result<()> {
    let manifest = dir.join("Cargo.toml");
    let meta = metadata(&manifest, config)?;
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata packages")?;
    let by_id = |id: &Value| packages.iter().find(|p| p["id"] == *id);
    let root = &meta["resolve"]["root"];
    let ours = by_id(root).context("the package itself")?;
    let declared = parse_version(ours["rust_version"].as_str().unwrap_or_default());
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .context("resolve nodes")?;
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![root.clone()];
    let mut highest: Option<((u64, u64, u64), String)> = None;
    while let Some(id) = stack.pop() {
        if !seen.insert(id.to_string()) {
            continue;
        }
        let Some(node) = nodes.iter().find(|n| n["id"] == id) else {
            continue;
        };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let kinds = dep["dep_kinds"].as_array().into_iter().flatten();
            if kinds
                .clone()
                .any(|k| k["kind"].is_null() || k["kind"] == "build")
            {
                stack.push(dep["pkg"].clone());
            }
        }
        if id == *root {
            continue;
        }
        if let Some(p) = by_id(&id) {
            if let Some(v) = p["rust_version"].as_str() {
                let v = parse_version(v);
                if highest.as_ref().is_none_or(|(h, _)| v > *h) {
                    let (name, version) = (p["name"].as_str(), p["version"].as_str());
                    highest = Some((
                        v,
                        format!("{} {}", name.unwrap_or("?"), version.unwrap_or("?")),
                    ));
                }
            }
        }
    }
    let name = ours["name"].as_str().unwrap_or_default();
    let declared_text = ours["rust_version"].as_str().unwrap_or("(none)");
    match highest {
        Some((v, who)) if v > declared => bail!(
            "{name} declares rust-version {}, but its locked dependency {who} needs {}.{}.{}: \
             raise rust-version or hold that dependency back (`cargo update -p … --precise …`)",
            declared_text,
            v.0,
            v.1,
            v.2
        ),
        Some((v, who)) => eprintln!(
            "xtask: release-check: {name} rust-version {}: the highest of its locked dependencies \
             is {who} ({}.{}.{})",
            declared_text, v.0, v.1, v.2
        ),
        None => {}
    }
    Ok(())
}

fn parse_version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// `cargo metadata` of `manifest` for this platform. With the scratch configuration, its patch
/// moves pybundle-runtime's source, so the lock file takes that one change; without, the lock
/// file is used as it is (`--locked`).
fn metadata(manifest: &Path, config: Option<&Path>) -> Result<Value> {
    let mut cmd = Command::new(tools::cargo());
    clean_env(&mut cmd);
    match config {
        Some(config) => cmd.arg("--config").arg(config),
        None => cmd.arg("--locked"),
    };
    cmd.args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(host_triple()?)
        .arg("--manifest-path")
        .arg(manifest)
        .current_dir(manifest.parent().unwrap_or(Path::new("/")));
    Ok(serde_json::from_str(&tools::output(
        &mut cmd,
        "cargo metadata",
    )?)?)
}

fn host_triple() -> Result<String> {
    let out = tools::output(Command::new("rustc").arg("-vV"), "rustc -vV")?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}
