//! `cargo pybundle init`: writes a small working project from the repository's `templates/`
//! (reached through the `templates` symlink in this crate, which `cargo package` follows).
//!
//! The templates are embedded (include_dir) so the installed binary needs no data files. Each
//! holds `{{name}}`-style placeholders filled in here; nothing else is generated, so what the
//! user gets is exactly what the template files show.

use anyhow::{bail, Context as _, Result};
use include_dir::{include_dir, Dir};
use std::path::{Path, PathBuf};

/// The project templates: `templates/` at the top of the repository, through this crate's
/// `templates` symlink (so `cargo package` includes them as files).
static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The version requirement written for `pybundle-runtime` when `--runtime-path` is not given.
pub const RUNTIME_REQUIREMENT: &str = "0.1";

/// What a template becomes: (file in `templates/`, path in the new project).
fn layout(module: &str) -> [(&'static str, String); 5] {
    [
        ("Cargo.toml.tmpl", "Cargo.toml".to_owned()),
        ("pixi.toml", "pixi.toml".to_owned()),
        ("python/script.py", format!("python/{module}.py")),
        ("src/main.rs", "src/main.rs".to_owned()),
        ("gitignore", ".gitignore".to_owned()),
    ]
}

/// What `init` writes, and where.
#[derive(Clone, Debug)]
pub struct Options {
    /// Folder of the new project (created if missing).
    pub dir: PathBuf,
    /// Package name (default: the folder's name).
    pub name: Option<String>,
    /// Depend on pybundle-runtime at this path instead of the crates.io release.
    pub runtime_path: Option<PathBuf>,
    /// Replace files that already exist.
    pub force: bool,
}

/// Writes the project into `args.dir` (created if missing) and returns the files written.
pub fn init(args: &Options) -> Result<Vec<PathBuf>> {
    let dir = absolute(&args.dir)?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "cannot take a package name from {}; pass --name",
                    dir.display()
                )
            })?,
    };
    check_name(&name)?;
    let module = name.replace('-', "_");
    let runtime_dependency = match &args.runtime_path {
        Some(path) => {
            let path = absolute(path)?;
            if !path.join("Cargo.toml").is_file() {
                bail!(
                    "--runtime-path {} holds no Cargo.toml; point it at the pybundle-runtime \
                     crate's folder",
                    path.display()
                );
            }
            let path = path
                .to_str()
                .with_context(|| format!("--runtime-path {} is not valid UTF-8", path.display()))?;
            format!(
                "pybundle-runtime = {{ path = {} }}",
                toml_edit::Value::from(path).to_string().trim()
            )
        }
        None => format!("pybundle-runtime = \"{RUNTIME_REQUIREMENT}\""),
    };
    let platform = crate::pixi::host_platform().with_context(|| {
        format!(
            "no conda platform is known for this machine ({} {}); write pixi.toml's \
             `platforms` yourself",
            std::env::consts::OS,
            std::env::consts::ARCH
        )
    })?;

    let files = layout(&module);
    let existing: Vec<String> = files
        .iter()
        .map(|(_, to)| dir.join(to))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "refusing to overwrite existing files (pass --force to replace them):\n  {}",
            existing.join("\n  ")
        );
    }

    let mut written = Vec::new();
    for (template, to) in files {
        let text = TEMPLATES
            .get_file(template)
            .and_then(|f| f.contents_utf8())
            .with_context(|| format!("template {template} is missing from this build"))?;
        let text = text
            .replace("{{name}}", &name)
            .replace("{{module}}", &module)
            .replace("{{platform}}", platform)
            .replace("{{runtime_dependency}}", &runtime_dependency);
        let path = dir.join(&to);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Cargo's rules for a package name, checked here so the error names the fix.
fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        bail!(
            "`{name}` is not a valid package name (letters, digits, `-` and `_`, not starting \
             with a digit); pass --name"
        );
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    let cwd = std::env::current_dir().context("the current directory is not readable")?;
    Ok(cwd.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_exists_and_placeholders_are_known() {
        for (template, _) in layout("m") {
            let text = TEMPLATES
                .get_file(template)
                .unwrap()
                .contents_utf8()
                .unwrap();
            let filled = text
                .replace("{{name}}", "n")
                .replace("{{module}}", "m")
                .replace("{{platform}}", "p")
                .replace("{{runtime_dependency}}", "d");
            assert!(
                !filled.contains("{{"),
                "{template} has an unknown placeholder"
            );
        }
    }

    #[test]
    fn package_names() {
        assert!(check_name("my-app_2").is_ok());
        for bad in ["", "2app", "my app", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
