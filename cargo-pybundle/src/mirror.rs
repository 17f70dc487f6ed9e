//! Channel mirrors: map a channel named in pixi.toml to another URL (`file://` included), for
//! air-gapped builds and tests, without touching the user's files.
//!
//! The manifest is always copied into a shadow directory (`<target>/pybundle/<package>/pixi/`)
//! with its channels rewritten; pixi runs there, so its `.pixi/` folder and any lock update
//! stay out of the user's project. Known limitation: relative paths inside pixi.toml (path
//! dependencies, `-r requirements.txt`) are not rewritten and resolve against the shadow dir.

use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Value};

/// Name of the environment variable holding `name=url,name=url` mirrors.
pub const ENV_VAR: &str = "PYBUNDLE_CHANNEL_MIRRORS";

/// Merges configured mirrors with `PYBUNDLE_CHANNEL_MIRRORS` (the variable wins per channel).
pub fn effective(configured: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut mirrors = configured.clone();
    if let Ok(value) = std::env::var(ENV_VAR) {
        mirrors.extend(parse_env(&value)?);
    }
    Ok(mirrors)
}

/// Parses `conda-forge=file:///x,bioconda=https://…`.
pub fn parse_env(value: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((name, url)) if !name.trim().is_empty() && !url.trim().is_empty() => {
                out.insert(name.trim().to_owned(), url.trim().to_owned());
            }
            _ => bail!("{ENV_VAR} entry `{pair}` is not `channel=url` (e.g. conda-forge=file:///srv/conda-forge)"),
        }
    }
    Ok(out)
}

/// The mirror for `channel`: by exact name or URL, or by the last path segment of a URL
/// (`https://conda.anaconda.org/conda-forge` matches `conda-forge`).
fn mirror_for<'m>(channel: &str, mirrors: &'m BTreeMap<String, String>) -> Option<&'m String> {
    let trimmed = channel.trim_end_matches('/');
    mirrors.get(trimmed).or_else(|| {
        let last = trimmed.rsplit('/').next()?;
        trimmed.contains("://").then(|| mirrors.get(last)).flatten()
    })
}

/// Rewrites channels in a pixi manifest; returns the new text and how many channels changed.
pub fn rewrite(text: &str, mirrors: &BTreeMap<String, String>) -> Result<(String, usize)> {
    let mut doc: DocumentMut = text.parse().context("parsing the pixi manifest as TOML")?;
    let mut changed = 0;
    let mut tables: Vec<&mut Item> = Vec::new();
    // Both pixi <0.43 (`[project]`) and newer (`[workspace]`), plus `[feature.*]` tables.
    let (mut top, mut rest) = (Vec::new(), Vec::new());
    for (key, item) in doc.iter_mut() {
        match key.get() {
            "project" | "workspace" => top.push(item),
            "feature" => rest.push(item),
            _ => {}
        }
    }
    tables.extend(top);
    for feature in rest {
        if let Some(features) = feature.as_table_like_mut() {
            for (_, f) in features.iter_mut() {
                tables.push(f);
            }
        }
    }
    for table in tables {
        let Some(channels) = table.get_mut("channels").and_then(Item::as_array_mut) else {
            continue;
        };
        for value in channels.iter_mut() {
            let slot = match value {
                Value::String(_) => Some(value),
                Value::InlineTable(t) => t.get_mut("channel"),
                _ => None,
            };
            let Some(slot) = slot else { continue };
            let Some(name) = slot.as_str() else { continue };
            if let Some(url) = mirror_for(name, mirrors) {
                let decor = slot.decor().clone();
                *slot = Value::from(url.as_str());
                *slot.decor_mut() = decor;
                changed += 1;
            }
        }
    }
    Ok((doc.to_string(), changed))
}

/// What the shadow directory holds.
#[derive(Clone, Debug)]
pub struct Shadow {
    /// The manifest pixi runs with.
    pub manifest: PathBuf,
    /// Whether a mirror rewrote a channel (the user's lock then names other URLs).
    pub mirrored: bool,
}

/// Writes the (rewritten) manifest into `dir`, plus the user's `pixi.lock` when no mirror
/// applied. Files are only replaced when their content changes, so pixi sees no change.
pub fn prepare(
    user_manifest: &Path,
    dir: &Path,
    mirrors: &BTreeMap<String, String>,
) -> Result<Shadow> {
    let text = fs_err::read_to_string(user_manifest).with_context(|| {
        format!(
            "the pixi manifest {} cannot be read; create it (`cargo pybundle pixi init`) or set \
             `manifest` in [package.metadata.pybundle]",
            user_manifest.display()
        )
    })?;
    let (rewritten, changed) = rewrite(&text, mirrors)
        .with_context(|| format!("reading channels of {}", user_manifest.display()))?;
    fs_err::create_dir_all(dir)?;
    let name = user_manifest
        .file_name()
        .context("the pixi manifest path has no file name")?;
    let manifest = dir.join(name);
    write_if_changed(&manifest, rewritten.as_bytes())?;
    copy_activation_scripts(user_manifest, dir)?;
    let lock_src = user_manifest.with_file_name("pixi.lock");
    let lock_dst = dir.join("pixi.lock");
    if changed == 0 && lock_src.is_file() {
        write_if_changed(&lock_dst, &fs_err::read(&lock_src)?)?;
    } else if changed == 0 && lock_dst.is_file() {
        // The user removed their lock: do not keep installing from a stale copy.
        fs_err::remove_file(&lock_dst)?;
    }
    Ok(Shadow {
        manifest,
        mirrored: changed > 0,
    })
}

/// The `[activation] scripts` are relative to the manifest: pixi, running in the shadow
/// directory, finds them only if they are copied beside it. Absolute paths need no copy; paths
/// leaving the folder (`..`) are not copied (they would land outside the shadow directory).
fn copy_activation_scripts(user_manifest: &Path, dir: &Path) -> Result<()> {
    let user_dir = user_manifest.parent().unwrap_or(Path::new("."));
    for script in crate::pack::activation::script_files(user_manifest) {
        let rel = Path::new(&script);
        let inside = rel.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        let src = user_dir.join(rel);
        if !inside || !src.is_file() {
            continue;
        }
        let dst = dir.join(rel);
        if let Some(parent) = dst.parent() {
            fs_err::create_dir_all(parent)?;
        }
        write_if_changed(&dst, &fs_err::read(&src)?)?;
    }
    Ok(())
}

fn write_if_changed(path: &Path, content: &[u8]) -> Result<()> {
    if fs_err::read(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    let dir = path.parent().context("no parent directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, content)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors() -> BTreeMap<String, String> {
        parse_env("conda-forge=file:///srv/cf, bioconda=https://m/bio").unwrap()
    }

    #[test]
    fn rewrites_project_workspace_and_feature_channels() {
        let text = r#"# my app
[project]
name = "x"
channels = ["conda-forge", {channel = "https://conda.anaconda.org/bioconda", priority = 2}, "other"] # keep

[feature.gpu]
channels = ["conda-forge"]

[dependencies]
python = "3.11.*"
"#;
        let (out, n) = rewrite(text, &mirrors()).unwrap();
        assert_eq!(n, 3);
        assert!(out.contains(r#"channels = ["file:///srv/cf", {channel = "https://m/bio", priority = 2}, "other"] # keep"#), "{out}");
        assert!(
            out.contains("[feature.gpu]\nchannels = [\"file:///srv/cf\"]"),
            "{out}"
        );
        assert!(out.starts_with("# my app\n"));
        let ws = text.replace("[project]", "[workspace]");
        assert_eq!(rewrite(&ws, &mirrors()).unwrap().1, 3);
    }

    #[test]
    fn env_syntax_errors_are_named() {
        let e = parse_env("conda-forge").unwrap_err().to_string();
        assert!(e.contains(ENV_VAR) && e.contains("channel=url"), "{e}");
        assert!(parse_env("").unwrap().is_empty());
    }
}
