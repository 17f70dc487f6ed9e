//! The user's pixi project, as far as cargo-pybundle reads it itself (pixi reads the rest):
//! where the manifest and the lock file are, the lock file's format version, `requires-pixi`,
//! and the activation scripts the manifest names. Works for `pixi.toml` and for
//! `pyproject.toml` (whose pixi tables live under `[tool.pixi]`).

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table};

use crate::pixi::{Pixi, Spec};

/// A pixi manifest and what cargo-pybundle needs from it.
#[derive(Clone, Debug)]
pub struct Project {
    /// The manifest (`pixi.toml` or `pyproject.toml`).
    pub manifest: PathBuf,
    /// The project root: the manifest's folder, where pixi keeps `pixi.lock` and `.pixi/`.
    pub root: PathBuf,
    doc: DocumentMut,
}

impl Project {
    /// Reads `manifest`; a missing or unparsable file is an error naming it.
    pub fn read(manifest: &Path) -> Result<Project> {
        let text = fs_err::read_to_string(manifest).with_context(|| {
            format!(
                "the pixi manifest {} cannot be read; create it (`cargo pybundle pixi init`) or \
                 set `manifest` in [package.metadata.pybundle]",
                manifest.display()
            )
        })?;
        let doc: DocumentMut = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let root = manifest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Ok(Project {
            manifest: manifest.to_path_buf(),
            root,
            doc,
        })
    }

    /// The lock file pixi reads and writes for this manifest.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("pixi.lock")
    }

    /// The project-local pixi configuration (`<root>/.pixi/config.toml`), which pixi merges
    /// over every other configuration layer.
    pub fn local_config(&self) -> PathBuf {
        self.root.join(".pixi").join("config.toml")
    }

    /// The tables pixi reads: the document itself, or `[tool.pixi]` of a pyproject.toml.
    fn pixi_tables(&self) -> Option<&Table> {
        let root = self.doc.as_table();
        if self
            .manifest
            .file_name()
            .is_some_and(|n| n == "pyproject.toml")
        {
            root.get("tool")?.get("pixi")?.as_table()
        } else {
            Some(root)
        }
    }

    /// `requires-pixi` of `[workspace]` (or the older `[project]`), parsed.
    pub fn requires_pixi(&self) -> Result<Option<Spec>> {
        let Some(tables) = self.pixi_tables() else {
            return Ok(None);
        };
        let value = ["workspace", "project"]
            .iter()
            .find_map(|t| tables.get(t)?.get("requires-pixi")?.as_str());
        let Some(text) = value else {
            return Ok(None);
        };
        Spec::parse(text).map(Some).map_err(|why| {
            anyhow::anyhow!(
                "`requires-pixi = \"{text}\"` in {} cannot be read: {why}",
                self.manifest.display()
            )
        })
    }

    /// The files named by `scripts` in the manifest's `[activation]` tables (top level,
    /// `[target.*.activation]`, `[feature.*.activation]`, `[feature.*.target.*.activation]`),
    /// relative to the project root as written.
    pub fn activation_scripts(&self) -> Vec<String> {
        let Some(root) = self.pixi_tables() else {
            return Vec::new();
        };
        let mut tables: Vec<&Table> = vec![root];
        if let Some(features) = root.get("feature").and_then(Item::as_table) {
            tables.extend(features.iter().filter_map(|(_, f)| f.as_table()));
        }
        let mut out = Vec::new();
        for t in tables {
            let mut scopes = vec![t];
            if let Some(targets) = t.get("target").and_then(Item::as_table) {
                scopes.extend(targets.iter().filter_map(|(_, x)| x.as_table()));
            }
            for s in scopes {
                let scripts = s
                    .get("activation")
                    .and_then(|a| a.get("scripts"))
                    .and_then(Item::as_array);
                out.extend(
                    scripts
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                        .map(str::to_owned),
                );
            }
        }
        out
    }

    /// The `version:` of `pixi.lock`, when there is one.
    pub fn lock_version(&self) -> Result<Option<u32>> {
        let path = self.lock_file();
        let text = match fs_err::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let version = text
            .lines()
            .find_map(|line| line.strip_prefix("version:"))
            .and_then(|v| v.trim().parse().ok());
        match version {
            Some(v) => Ok(Some(v)),
            None => bail!(
                "{} has no `version:` line, so it is not a pixi lock file; remove it and let pixi \
                 write a new one",
                path.display()
            ),
        }
    }

    /// Fails early, before pixi runs, when `pixi.lock` is newer than `pixi` can read.
    pub fn check_lock_readable(&self, pixi: &Pixi) -> Result<()> {
        let (Some(found), Some(max)) = (
            self.lock_version()?,
            crate::pixi::max_lock_version(&pixi.version),
        ) else {
            return Ok(());
        };
        if found > max {
            bail!(
                "{} is lock format version {found}, which pixi {} ({}) cannot read (it reads up \
                 to version {max}); it was written by a newer pixi than cargo-pybundle knows \
                 ({}). Give that pixi with --pixi / PYBUNDLE_PIXI, or set `pixi-version` in \
                 [package.metadata.pybundle] to it",
                self.lock_file().display(),
                pixi.version,
                pixi.path.display(),
                crate::pixi::DEFAULT_PIXI_VERSION,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(name: &str, text: &str) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join(name);
        std::fs::write(&m, text).unwrap();
        let p = Project::read(&m).unwrap();
        (dir, p)
    }

    #[test]
    fn activation_scripts_are_found_in_every_table() {
        let (_d, p) = project(
            "pixi.toml",
            "[workspace]\nname='x'\n[activation]\nscripts=['a.sh']\n\
             [target.linux-64.activation]\nscripts=['b.sh']\n\
             [feature.f.activation]\nscripts=['c.sh']\n",
        );
        assert_eq!(p.activation_scripts(), ["a.sh", "b.sh", "c.sh"]);
        let (_d, p) = project(
            "pyproject.toml",
            "[project]\nname='x'\n[tool.pixi.workspace]\nrequires-pixi='>=0.70'\n\
             [tool.pixi.activation]\nscripts=['py.sh']\n[activation]\nscripts=['not-pixi.sh']\n",
        );
        assert_eq!(p.activation_scripts(), ["py.sh"]);
        assert_eq!(p.requires_pixi().unwrap().unwrap().to_string(), ">=0.70");
    }

    #[test]
    fn requires_pixi_from_workspace_or_project() {
        let (_d, p) = project("pixi.toml", "[project]\nrequires-pixi = \">=0.80\"\n");
        let spec = p.requires_pixi().unwrap().unwrap();
        assert!(!spec.matches(&crate::pixi::Version::parse("0.77.0").unwrap()));
        let (_d, p) = project("pixi.toml", "[workspace]\nname = 'x'\n");
        assert!(p.requires_pixi().unwrap().is_none());
        let (_d, p) = project("pixi.toml", "[workspace]\nrequires-pixi = '>=x'\n");
        let err = p.requires_pixi().unwrap_err().to_string();
        assert!(err.contains("pixi.toml") && err.contains(">=x"), "{err}");
    }

    #[test]
    fn lock_version_is_read_from_the_lock_file() {
        let (dir, p) = project("pixi.toml", "[workspace]\n");
        assert_eq!(p.lock_version().unwrap(), None);
        std::fs::write(
            dir.path().join("pixi.lock"),
            "version: 8\nenvironments: {}\n",
        )
        .unwrap();
        assert_eq!(p.lock_version().unwrap(), Some(8));
        std::fs::write(dir.path().join("pixi.lock"), "hello\n").unwrap();
        assert!(p
            .lock_version()
            .unwrap_err()
            .to_string()
            .contains("pixi.lock"));
    }
}
