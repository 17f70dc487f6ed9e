//! Resolving the environment: `pixi install`, then `pixi info --json` for where it landed.
//!
//! The prefix always comes from `environments_info[].prefix` (pixi ≥0.15.1): detached
//! environments do not live in `.pixi/envs/<name>`. pixi's own output reaches the user.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::metadata::Lock;
use crate::pixi::Pixi;
use crate::ui::Ui;

/// An installed environment.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The conda prefix.
    pub prefix: PathBuf,
    /// Conda platform, e.g. `linux-64`.
    pub platform: String,
    /// pixi's package cache (holds the extracted packages with their placeholders).
    pub cache_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
struct InfoJson {
    platform: String,
    #[serde(default)]
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    environments_info: Vec<EnvInfo>,
}

#[derive(Deserialize)]
struct EnvInfo {
    name: String,
    #[serde(default)]
    prefix: Option<PathBuf>,
}

/// What `pixi info --json` says about a manifest, before anything is installed.
pub struct Info {
    platform: String,
    cache_dir: Option<PathBuf>,
    environments: Vec<(String, Option<PathBuf>)>,
}

/// Runs `pixi info --json` on `manifest`.
pub fn info(pixi: &Pixi, manifest: &Path) -> Result<Info> {
    let raw = info_json(pixi, manifest)?;
    Ok(Info {
        platform: raw.platform,
        cache_dir: raw.cache_dir,
        environments: raw
            .environments_info
            .into_iter()
            .map(|e| (e.name, e.prefix))
            .collect(),
    })
}

impl Info {
    /// The prefix of `environment`; an unknown name is an error listing the known ones and
    /// naming `user_manifest` (the file the user edits, not our shadow copy).
    pub fn prefix_of(
        &self,
        pixi: &Pixi,
        environment: &str,
        user_manifest: &Path,
    ) -> Result<PathBuf> {
        let names: Vec<&str> = self.environments.iter().map(|(n, _)| n.as_str()).collect();
        let Some((_, prefix)) = self.environments.iter().find(|(n, _)| n == environment) else {
            bail!(
                "pixi environment `{environment}` is not defined in {} (it has: {}); fix \
                 `environment` in [package.metadata.pybundle] or add it to the pixi manifest",
                user_manifest.display(),
                names.join(", ")
            );
        };
        prefix.clone().with_context(|| {
            format!(
                "`{} info --json` reports no prefix for environment `{environment}`; this pixi \
                 is too old (0.15.1 or newer is needed)",
                pixi.path.display()
            )
        })
    }
}

/// What to install.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The manifest pixi runs on (our shadow copy).
    pub manifest: &'a Path,
    /// The user's manifest, named in messages.
    pub user_manifest: &'a Path,
    /// pixi environment name.
    pub environment: &'a str,
    /// Lock file policy.
    pub lock: Lock,
}

/// Installs the requested environment at `prefix` (from [`Info::prefix_of`]).
pub fn install(
    pixi: &Pixi,
    info: &Info,
    prefix: PathBuf,
    request: Request<'_>,
    ui: &Ui,
) -> Result<Resolved> {
    let Request {
        manifest,
        user_manifest,
        environment,
        lock,
    } = request;
    if let Some(recorded) = discard_moved_env(&prefix, manifest.parent().unwrap_or(manifest))? {
        ui.status(
            "Reinstalling",
            format!(
                "the environment was installed at {} (the build directory moved)",
                recorded.display()
            ),
        );
    }
    let mut cmd = pixi.command();
    cmd.arg("install").arg("--manifest-path").arg(manifest);
    if environment != "default" {
        if !pixi.install_knows_environment()? {
            bail!("this pixi cannot install a named environment (`-e`); use pixi 0.13 or newer");
        }
        cmd.args(["--environment", environment]);
    }
    let lock_file = manifest.with_file_name("pixi.lock");
    match lock {
        Lock::Locked if lock_file.is_file() => {
            cmd.arg("--locked");
        }
        Lock::Locked => ui.status(
            "Locking",
            format!(
                "no pixi.lock yet: solving the environment (writes {})",
                lock_file.display()
            ),
        ),
        Lock::Frozen if lock_file.is_file() => {
            cmd.arg("--frozen");
        }
        Lock::Frozen => bail!(
            "lock = \"frozen\" needs a pixi.lock beside {} (with channel mirrors, one solved \
             against the mirror in {}); create it with `cargo pybundle pixi install`, or use \
             lock = \"locked\"",
            user_manifest.display(),
            manifest.parent().unwrap_or(manifest).display()
        ),
        Lock::Update => {}
    }
    if ui.quiet {
        cmd.arg("--quiet");
    }
    // pixi 0.15 was seen to crash (SIGBUS) when two installs share its package cache, which
    // happens when several packages are bundled at once (CI matrices, parallel tests). Taking
    // turns costs little: a second install of an already-cached package takes about a second.
    let _turn = match &info.cache_dir {
        Some(cache) => Some(crate::lock::exclusive(
            &cache.join(".cargo-pybundle-install.lock"),
            "another pixi install using the same package cache",
            ui,
        )?),
        None => None,
    };
    ui.status(
        "Resolving",
        format!("pixi environment `{environment}` ({})", manifest.display()),
    );
    // pixi prints progress on stderr and a summary on stdout; both belong to the user, but our
    // stdout is reserved for the paths of built binaries, so pixi's stdout goes to stderr.
    cmd.stdin(Stdio::null());
    let status = if ui.quiet {
        // Quiet: pixi's chatter is shown only if it fails.
        let out = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", pixi.path.display()))?;
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        out.status
    } else {
        cmd.stdout(stdout_to_stderr())
            .status()
            .with_context(|| format!("running {}", pixi.path.display()))?
    };
    if !status.success() {
        bail!(
            "`pixi install` failed ({status}) for {}; pixi's message is above (it ran on {}, \
             a copy with channel mirrors applied)",
            user_manifest.display(),
            manifest.display()
        );
    }
    if !prefix.join("conda-meta").is_dir() {
        bail!(
            "pixi reported success but {} holds no conda-meta folder",
            prefix.display()
        );
    }
    Ok(Resolved {
        prefix,
        platform: info.platform.clone(),
        cache_dir: info.cache_dir.clone(),
    })
}

/// pixi records where it installed an environment (`<prefix>/prefix`) and refuses to touch it
/// from anywhere else ("the project location seems to be changed"). When our build directory
/// was moved or copied (a renamed target dir, a CI cache restored elsewhere), the environment in
/// our shadow directory is ours to rebuild: it is removed and the recorded path returned. An
/// environment outside `shadow` (pixi's detached environments) is never touched.
fn discard_moved_env(prefix: &Path, shadow: &Path) -> Result<Option<PathBuf>> {
    let Ok(recorded) = fs_err::read_to_string(prefix.join("prefix")) else {
        return Ok(None);
    };
    let recorded = PathBuf::from(recorded.trim());
    // The same place spelled differently (a symlink in the path) is the same place.
    let same = recorded == prefix
        || matches!(
            (recorded.canonicalize(), prefix.canonicalize()),
            (Ok(a), Ok(b)) if a == b
        );
    if same || !prefix.starts_with(shadow) {
        return Ok(None);
    }
    fs_err::remove_dir_all(prefix).with_context(|| {
        format!(
            "the pixi environment at {} was installed at {}; remove it by hand and build again",
            prefix.display(),
            recorded.display()
        )
    })?;
    Ok(Some(recorded))
}

fn info_json(pixi: &Pixi, manifest: &Path) -> Result<InfoJson> {
    let out = pixi
        .command()
        .args(["info", "--json", "--manifest-path"])
        .arg(manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", pixi.path.display()))?;
    if !out.status.success() {
        bail!(
            "`pixi info --manifest-path {}` failed: {}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading the JSON of `{} info --json`", pixi.path.display()))
}

/// A `Stdio` writing to our stderr.
fn stdout_to_stderr() -> Stdio {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            return Stdio::from(fd);
        }
    }
    Stdio::inherit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_recording(shadow: &Path, recorded: &Path) -> PathBuf {
        let prefix = shadow.join(".pixi/envs/default");
        std::fs::create_dir_all(prefix.join("conda-meta")).unwrap();
        std::fs::write(prefix.join("prefix"), recorded.to_str().unwrap()).unwrap();
        prefix
    }

    #[test]
    fn an_environment_installed_elsewhere_is_removed_from_the_shadow_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let shadow = tmp.path().join("target/pybundle/app/pixi");
        let old = Path::new("/old/target/pybundle/app/pixi/.pixi/envs/default");
        let prefix = env_recording(&shadow, old);
        assert_eq!(
            discard_moved_env(&prefix, &shadow).unwrap().as_deref(),
            Some(old)
        );
        assert!(!prefix.exists());
        // Nothing recorded any more: nothing to do.
        assert_eq!(discard_moved_env(&prefix, &shadow).unwrap(), None);
    }

    #[test]
    fn an_environment_in_place_or_outside_the_shadow_dir_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let shadow = tmp.path().join("shadow");
        let prefix = shadow.join(".pixi/envs/default");
        let prefix = env_recording(&shadow, &prefix);
        assert_eq!(discard_moved_env(&prefix, &shadow).unwrap(), None);
        assert!(prefix.join("conda-meta").is_dir());
        // Reached through a symlink while pixi recorded the real path: the same place.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&shadow, &link).unwrap();
        let via_link = link.join(".pixi/envs/default");
        assert_eq!(discard_moved_env(&via_link, &link).unwrap(), None);
        assert!(prefix.join("conda-meta").is_dir());
        // A detached environment (outside the shadow dir) is pixi's business, not ours.
        let detached = env_recording(&tmp.path().join("detached"), Path::new("/elsewhere"));
        assert_eq!(discard_moved_env(&detached, &shadow).unwrap(), None);
        assert!(detached.join("conda-meta").is_dir());
    }
}
