//! Finding pixi and running it.
//!
//! Order: `--pixi PATH` / `PYBUNDLE_PIXI` → the cached `<cache>/cargo-pybundle/pixi/<version>/pixi`
//! → a download (see `download`). Whichever it is, its version is known before it runs on a
//! project: older than [`MIN_PIXI_VERSION`] is refused, and a version that the manifest's
//! `requires-pixi` excludes is not downloaded.

pub mod version;

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::download;
use crate::ui::Ui;
pub use version::{Spec, Version};

/// pixi version downloaded unless `pixi-version` says otherwise (the one the test suite runs).
pub const DEFAULT_PIXI_VERSION: &str = "0.77.0";

/// The oldest pixi cargo-pybundle runs: 0.70.0 added `--config-file` (`PIXI_CONFIG_FILE`), which
/// carries channel mirrors to pixi without rewriting the user's manifest.
pub const MIN_PIXI_VERSION: &str = "0.70.0";

/// The newest pixi whose lock-file version cargo-pybundle knows ([`max_lock_version`]).
const NEWEST_KNOWN_PIXI: &str = DEFAULT_PIXI_VERSION;

/// Environment variables that describe the developer's shell rather than the build: pixi
/// reads several of them (`pixi run` without `-e` follows `PIXI_ENVIRONMENT_NAME` when
/// `PIXI_IN_SHELL` is set), so they are removed from every pixi cargo-pybundle runs.
pub const SHELL_STATE: &[&str] = &[
    "PIXI_LOCKED",
    "PIXI_FROZEN",
    "PIXI_IN_SHELL",
    "PIXI_ENVIRONMENT_NAME",
    "PIXI_ENVIRONMENT_PLATFORMS",
    "PIXI_PROJECT_ROOT",
    "PIXI_PROJECT_NAME",
    "PIXI_PROJECT_MANIFEST",
    "PIXI_PROJECT_VERSION",
    "PIXI_PROMPT",
    "PIXI_EXE",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "CONDA_SHLVL",
];

/// Settings that decide which pixi to use.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    /// `--pixi` / `PYBUNDLE_PIXI`.
    pub explicit: Option<PathBuf>,
    /// `pixi-version` from configuration.
    pub version: Option<String>,
    /// `pixi-sha256` from configuration.
    pub sha256: Option<String>,
    /// The pixi manifest's `requires-pixi`, with the manifest it came from.
    pub requires: Option<(Spec, PathBuf)>,
}

/// A pixi binary we can run, and its version.
#[derive(Clone, Debug)]
pub struct Pixi {
    /// Path of the binary.
    pub path: PathBuf,
    /// What `pixi --version` says.
    pub version: Version,
}

/// Where downloaded pixi binaries are cached: `<cache dir>/cargo-pybundle/pixi`.
pub fn cache_root() -> Result<PathBuf> {
    let base = dirs::cache_dir().context(
        "this system has no cache directory (set XDG_CACHE_HOME or HOME), so pixi cannot be \
         cached; supply it with --pixi PATH or PYBUNDLE_PIXI=PATH",
    )?;
    Ok(base.join("cargo-pybundle").join("pixi"))
}

/// Finds (or downloads) pixi.
pub fn locate(choice: &Choice, ui: &Ui) -> Result<Pixi> {
    if let Some(path) = &choice.explicit {
        if !path.is_file() {
            bail!(
                "the pixi given with --pixi or PYBUNDLE_PIXI ({}) is not a file; fix the path or \
                 unset it to let cargo pybundle download pixi",
                path.display()
            );
        }
        let version = download::run_version(path, download::timeout_from_env()?)
            .with_context(|| format!("asking {} for its version", path.display()))?;
        let version = Version::parse(&version).with_context(|| {
            format!(
                "{} reports version `{version}`, not a pixi release",
                path.display()
            )
        })?;
        check_supported(
            &version,
            &format!("{} (--pixi or PYBUNDLE_PIXI)", path.display()),
        )?;
        return Ok(Pixi {
            path: path.clone(),
            version,
        });
    }
    let wanted = choice.version.as_deref().unwrap_or(DEFAULT_PIXI_VERSION);
    let version = Version::parse(wanted).with_context(|| {
        format!("`pixi-version = \"{wanted}\"` is not a version like \"{DEFAULT_PIXI_VERSION}\"")
    })?;
    let source = match &choice.version {
        Some(_) => "`pixi-version` in [package.metadata.pybundle]".to_owned(),
        None => "cargo-pybundle's default".to_owned(),
    };
    check_supported(&version, &format!("the pixi chosen by {source}"))?;
    if let Some((spec, manifest)) = &choice.requires {
        if !spec.matches(&version) {
            bail!(
                "{} says `requires-pixi = \"{spec}\"`, which pixi {version} ({source}) does not \
                 satisfy; set `pixi-version` in [package.metadata.pybundle] to a version that does, \
                 or give a pixi with --pixi / PYBUNDLE_PIXI",
                manifest.display()
            );
        }
    }
    let dest = cache_root()?.join(wanted).join(exe_name());
    if dest.is_file() {
        tracing::debug!("using cached pixi {}", dest.display());
        return Ok(Pixi {
            path: dest,
            version,
        });
    }
    let base_url = std::env::var("PYBUNDLE_PIXI_MIRROR")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| download::DEFAULT_BASE_URL.to_owned());
    let request = download::Request {
        base_url,
        version: wanted.to_owned(),
        sha256: choice.sha256.clone(),
    };
    let path = download::fetch(&request, &dest, ui)?;
    Ok(Pixi { path, version })
}

/// The conda platform of this machine, as pixi names it.
pub fn host_platform() -> Option<&'static str> {
    Some(match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-64",
        ("linux", "aarch64") => "linux-aarch64",
        ("linux", "powerpc64") => "linux-ppc64le",
        ("macos", "x86_64") => "osx-64",
        ("macos", "aarch64") => "osx-arm64",
        ("windows", "x86_64") => "win-64",
        ("windows", "aarch64") => "win-arm64",
        _ => return None,
    })
}

/// Refuses a pixi older than [`MIN_PIXI_VERSION`]; `what` names it in the message.
fn check_supported(version: &Version, what: &str) -> Result<()> {
    let min = Version::parse(MIN_PIXI_VERSION).context("MIN_PIXI_VERSION is a version")?;
    if *version < min {
        bail!(
            "{what} is pixi {version}; cargo pybundle needs pixi {MIN_PIXI_VERSION} or newer \
             (the first with --config-file). Set `pixi-version = \"{DEFAULT_PIXI_VERSION}\"` in \
             [package.metadata.pybundle], or give a newer pixi with --pixi / PYBUNDLE_PIXI"
        );
    }
    Ok(())
}

/// The newest `pixi.lock` format this pixi reads, or `None` when it is newer than every pixi
/// cargo-pybundle knows (then pixi itself judges the lock file).
pub fn max_lock_version(version: &Version) -> Option<u32> {
    let newest = Version::parse(NEWEST_KNOWN_PIXI)?;
    // Lock format 7 arrived with pixi 0.68.0; every supported pixi (≥ 0.70.0) reads up to 7.
    (*version <= newest).then_some(7)
}

fn exe_name() -> &'static str {
    if cfg!(windows) {
        "pixi.exe"
    } else {
        "pixi"
    }
}

impl Pixi {
    /// A command running this pixi without the developer's shell state ([`SHELL_STATE`]).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        for var in SHELL_STATE {
            cmd.env_remove(var);
        }
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("CONDA_ENV_SHLVL_"))
            {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// The file this pixi is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_pixi_is_refused_by_name() {
        let err = check_supported(&Version::parse("0.59.0").unwrap(), "pixi at /x/pixi")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/x/pixi") && err.contains("0.59.0"), "{err}");
        assert!(err.contains(MIN_PIXI_VERSION), "{err}");
        check_supported(&Version::parse(MIN_PIXI_VERSION).unwrap(), "x").unwrap();
    }

    #[test]
    fn lock_versions_are_known_up_to_the_newest_known_pixi() {
        assert_eq!(
            max_lock_version(&Version::parse("0.77.0").unwrap()),
            Some(7)
        );
        assert_eq!(
            max_lock_version(&Version::parse("0.70.0").unwrap()),
            Some(7)
        );
        assert_eq!(max_lock_version(&Version::parse("0.90.0").unwrap()), None);
    }
}
