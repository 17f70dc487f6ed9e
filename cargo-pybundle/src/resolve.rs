//! Resolving the environment: pixi runs on the user's project exactly as `pixi install -e <env>`
//! would (the environment lives where pixi puts it: `.pixi/envs/<env>`, or a detached folder),
//! with channel mirrors given as a pixi configuration layer (see `mirror`).
//!
//! Steps: the lock file's format is checked against the pixi in use; `pixi shell-hook --json
//! --frozen --no-install` reports the prefix and the environment's platforms without touching
//! anything (and shows pixi's own message for a manifest it cannot load); the host platform
//! must be among them; `pixi install`; then our stamp. A prefix whose stamp (or, before we
//! stamped it, pixi's `conda-meta/pixi_env_prefix`) names another folder was moved or copied —
//! its files still name the old path, which pixi ≥ 0.41 no longer notices — and a package
//! whose package-cache copy is gone cannot be packed with its placeholders: both make
//! `pixi reinstall` run before anything is packed.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::metadata::Lock;
use crate::mirror::ConfigLayer;
use crate::pack::activation::{self, PixiRun};
use crate::pack::scan;
use crate::pixi::{host_platform, Pixi};
use crate::project::Project;
use crate::ui::Ui;

/// Our record of where an environment was when we last installed or checked it, in its
/// `conda-meta` folder (pixi and rattler read only `*.json` files there).
pub const STAMP: &str = ".cargo-pybundle-prefix";

/// An installed environment.
#[derive(Debug)]
pub struct Resolved {
    /// The conda prefix.
    pub prefix: PathBuf,
    /// Conda platform of the installed packages, e.g. `linux-64`.
    pub platform: String,
    /// Held while the prefix is used (installing and packing), so two builds that share one
    /// environment (different target dirs, one project) take turns.
    pub _lock: Option<std::fs::File>,
}

/// What to install.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The user's pixi project.
    pub project: &'a Project,
    /// pixi environment name.
    pub environment: &'a str,
    /// Lock file policy.
    pub lock: Lock,
    /// Channel mirrors as a pixi configuration layer.
    pub config: &'a ConfigLayer,
}

impl Request<'_> {
    /// How to run `pixi shell-hook` for this environment.
    pub fn pixi_run(&self, pixi: &Pixi) -> PixiRun {
        PixiRun {
            pixi: pixi.clone(),
            manifest: self.project.manifest.clone(),
            environment: self.environment.to_owned(),
            config_file: self.config.file().map(Path::to_path_buf),
        }
    }
}

/// What pixi says about the environment before anything is installed.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Where pixi installs (or installed) the environment.
    pub prefix: PathBuf,
}

/// Asks pixi where the environment goes and checks it is solved for this machine; pixi's own
/// message explains a manifest it cannot load or an environment it does not know.
pub fn probe(pixi: &Pixi, request: Request<'_>, ui: &Ui) -> Result<Probe> {
    let Request {
        project,
        environment,
        ..
    } = request;
    let hook = activation::hook(&request.pixi_run(pixi))?;
    let prefix = hook
        .var("CONDA_PREFIX")
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "`{} shell-hook --json` reports no CONDA_PREFIX for environment `{environment}` \
                 of {}",
                pixi.path.display(),
                project.manifest.display()
            )
        })?;
    let platforms: Vec<&str> = hook
        .var("PIXI_ENVIRONMENT_PLATFORMS")
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.is_empty())
        .collect();
    check_platform(&platforms, environment, &project.manifest, ui)?;
    Ok(Probe { prefix })
}

/// Installs the environment (reinstalling it when it moved or lost its package-cache copies)
/// and returns where it is.
pub fn install(pixi: &Pixi, request: Request<'_>, probe: Probe, ui: &Ui) -> Result<Resolved> {
    let prefix = probe.prefix;
    let _lock = lock_prefix(&prefix, ui)?;
    run_install(pixi, request, "install", ui)?;
    if !prefix.join("conda-meta").is_dir() {
        bail!(
            "`pixi install` reported success but {} holds no conda-meta folder",
            prefix.display()
        );
    }
    if let Some(reason) = reinstall_reason(&prefix)? {
        ui.status("Reinstalling", format!("{} ({reason})", prefix.display()));
        run_install(pixi, request, "reinstall", ui)?;
        let missing = missing_cache_copies(&prefix)?;
        if !missing.is_empty() {
            bail!(
                "after `pixi reinstall`, the package cache still has no copy of {}; the bundle \
                 cannot be relocated without them. Check pixi's cache settings (PIXI_CACHE_DIR, \
                 [cache] in the pixi configuration)",
                missing.join(", ")
            );
        }
    }
    fs_err::write(
        prefix.join("conda-meta").join(STAMP),
        prefix.as_os_str().as_encoded_bytes(),
    )?;
    let platform = installed_platform(&prefix)?
        .or_else(|| host_platform().map(str::to_owned))
        .unwrap_or_default();
    Ok(Resolved {
        prefix,
        platform,
        _lock,
    })
}

/// The host platform must be one the environment is solved for. pixi itself falls back from
/// osx-arm64 to osx-64 (Rosetta) and win-arm64 to win-64; that is allowed with a warning, and
/// the bundle is labelled with what was installed.
fn check_platform(platforms: &[&str], environment: &str, manifest: &Path, ui: &Ui) -> Result<()> {
    let Some(host) = host_platform() else {
        bail!(
            "no conda platform is known for this machine ({} {})",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    };
    if platforms.is_empty() || platforms.contains(&host) {
        return Ok(());
    }
    let fallback = match host {
        "osx-arm64" => Some("osx-64"),
        "win-arm64" => Some("win-64"),
        _ => None,
    };
    if let Some(fallback) = fallback.filter(|f| platforms.contains(f)) {
        ui.warn(format!(
            "{} lists {fallback} but not this machine's {host}; pixi installs the {fallback} \
             packages, and the bundle is {fallback}. Add \"{host}\" to `platforms` for native ones",
            manifest.display()
        ));
        return Ok(());
    }
    bail!(
        "pixi environment `{environment}` of {} is not solved for this machine's platform \
         `{host}` (its platforms: {}); add \"{host}\" to `platforms` in the manifest, e.g. with \
         `cargo pybundle pixi workspace platform add {host}`",
        manifest.display(),
        platforms.join(", ")
    )
}

/// Runs `pixi install` or `pixi reinstall` for the environment.
fn run_install(pixi: &Pixi, request: Request<'_>, verb: &str, ui: &Ui) -> Result<()> {
    let Request {
        project,
        environment,
        lock,
        config,
    } = request;
    let mut cmd = pixi.command();
    config.apply(&mut cmd);
    cmd.arg(verb)
        .arg("--manifest-path")
        .arg(&project.manifest)
        .args(["--environment", environment]);
    let lock_file = project.lock_file();
    match lock {
        Lock::Locked if lock_file.is_file() => {
            cmd.arg("--locked");
        }
        Lock::Locked => ui.status(
            "Locking",
            format!(
                "no pixi.lock yet: pixi solves the environment and writes {}",
                lock_file.display()
            ),
        ),
        Lock::Frozen if lock_file.is_file() => {
            cmd.arg("--frozen");
        }
        Lock::Frozen => bail!(
            "lock = \"frozen\" needs {}; create it with `cargo pybundle pixi lock`, or use \
             lock = \"locked\"",
            lock_file.display()
        ),
        Lock::Update => {}
    }
    if ui.quiet {
        cmd.arg("--quiet");
    }
    ui.status(
        "Resolving",
        format!(
            "pixi {verb} of environment `{environment}` ({})",
            project.manifest.display()
        ),
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
            "`pixi {verb}` failed ({status}) for environment `{environment}` of {}; pixi's \
             message is above",
            project.manifest.display()
        );
    }
    Ok(())
}

/// Why the installed environment must be reinstalled before packing, if it must.
fn reinstall_reason(prefix: &Path) -> Result<Option<String>> {
    if let Some(recorded) = recorded_prefix(prefix) {
        let same = recorded == prefix
            || matches!(
                (recorded.canonicalize(), prefix.canonicalize()),
                (Ok(a), Ok(b)) if a == b
            );
        if !same {
            return Ok(Some(format!(
                "it was installed at {}: moved or copied, its files name the old path",
                recorded.display()
            )));
        }
    }
    let missing = missing_cache_copies(prefix)?;
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(3).map(String::as_str).collect();
        let more = missing.len().saturating_sub(shown.len());
        return Ok(Some(format!(
            "the package cache no longer holds {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )));
    }
    Ok(None)
}

/// Where the environment was installed: our stamp, else pixi's own marker (pixi ≥ 0.17:
/// `conda-meta/pixi_env_prefix` holding `<prefix>/conda-meta`; older: `<prefix>/prefix`).
fn recorded_prefix(prefix: &Path) -> Option<PathBuf> {
    let meta = prefix.join("conda-meta");
    if let Ok(stamp) = fs_err::read_to_string(meta.join(STAMP)) {
        return Some(PathBuf::from(stamp.trim_end_matches('\n')));
    }
    if let Ok(marker) = fs_err::read_to_string(meta.join("pixi_env_prefix")) {
        let marker = PathBuf::from(marker.trim_end_matches('\n'));
        return Some(match marker.parent() {
            Some(parent) if marker.ends_with("conda-meta") => parent.to_path_buf(),
            _ => marker,
        });
    }
    fs_err::read_to_string(prefix.join("prefix"))
        .ok()
        .map(|p| PathBuf::from(p.trim_end_matches('\n')))
}

/// Installed conda packages whose package-cache copy (`extracted_package_dir`, holding the
/// original files with their placeholders) is gone.
fn missing_cache_copies(prefix: &Path) -> Result<Vec<String>> {
    Ok(scan::conda_records(prefix)?
        .iter()
        .filter(|r| {
            !r.extracted_package_dir
                .as_ref()
                .is_some_and(|d| d.join("info").is_dir())
        })
        .map(|r| format!("{}-{}-{}", r.name, r.version, r.build))
        .collect())
}

/// The platform of the installed packages (the `subdir` of the first non-noarch record).
fn installed_platform(prefix: &Path) -> Result<Option<String>> {
    Ok(scan::conda_records(prefix)?
        .into_iter()
        .filter_map(|r| r.subdir)
        .find(|s| s != "noarch"))
}

/// Takes the user-wide lock of one prefix (`<cache>/cargo-pybundle/locks/<hash>.lock`).
fn lock_prefix(prefix: &Path, ui: &Ui) -> Result<Option<std::fs::File>> {
    let Some(cache) = dirs::cache_dir() else {
        return Ok(None);
    };
    let path = prefix_lock_path(&cache, prefix);
    let waiting = format!("another build using {}", prefix.display());
    crate::lock::exclusive(&path, &waiting, ui).map(Some)
}

/// `<cache>/cargo-pybundle/locks/<hash of prefix>.lock`.
fn prefix_lock_path(cache: &Path, prefix: &Path) -> PathBuf {
    let hash = crate::pack::key::short_hash(prefix.as_os_str().as_encoded_bytes());
    cache
        .join("cargo-pybundle")
        .join("locks")
        .join(format!("{hash}.lock"))
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

    fn env_at(dir: &Path) -> PathBuf {
        let prefix = dir.join(".pixi/envs/default");
        std::fs::create_dir_all(prefix.join("conda-meta")).unwrap();
        prefix
    }

    #[test]
    fn a_prefix_recorded_elsewhere_is_reinstalled() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = env_at(tmp.path());
        assert_eq!(reinstall_reason(&prefix).unwrap(), None);
        // pixi's marker, from a copy of the project.
        std::fs::write(
            prefix.join("conda-meta/pixi_env_prefix"),
            "/old/proj/.pixi/envs/default/conda-meta",
        )
        .unwrap();
        let why = reinstall_reason(&prefix).unwrap().unwrap();
        assert!(why.contains("/old/proj/.pixi/envs/default:"), "{why}");
        // Our stamp wins over pixi's marker.
        std::fs::write(
            prefix.join("conda-meta").join(STAMP),
            prefix.to_str().unwrap(),
        )
        .unwrap();
        assert_eq!(reinstall_reason(&prefix).unwrap(), None);
        std::fs::write(prefix.join("conda-meta").join(STAMP), "/elsewhere").unwrap();
        assert!(reinstall_reason(&prefix).unwrap().is_some());
        // The same place through a symlink is the same place.
        std::fs::write(
            prefix.join("conda-meta").join(STAMP),
            prefix.to_str().unwrap(),
        )
        .unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert_eq!(
            reinstall_reason(&link.join(".pixi/envs/default")).unwrap(),
            None
        );
    }

    #[test]
    fn a_package_without_its_cache_copy_is_reinstalled() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = env_at(tmp.path());
        let cached = tmp.path().join("pkgs/python-3.11.7-h0");
        std::fs::create_dir_all(cached.join("info")).unwrap();
        let record = |name: &str, dir: &Path| {
            serde_json::json!({"name": name, "version": "1", "build": "h0",
                "subdir": "linux-64", "extracted_package_dir": dir})
            .to_string()
        };
        std::fs::write(
            prefix.join("conda-meta/python-1-h0.json"),
            record("python", &cached),
        )
        .unwrap();
        assert_eq!(reinstall_reason(&prefix).unwrap(), None);
        assert_eq!(
            installed_platform(&prefix).unwrap().as_deref(),
            Some("linux-64")
        );
        std::fs::write(
            prefix.join("conda-meta/zlib-1-h0.json"),
            record("zlib", &tmp.path().join("pkgs/gone")),
        )
        .unwrap();
        let why = reinstall_reason(&prefix).unwrap().unwrap();
        assert!(why.contains("zlib-1-h0"), "{why}");
    }

    #[test]
    fn a_missing_host_platform_is_named() {
        let ui = Ui {
            quiet: true,
            verbose: 0,
        };
        let host = host_platform().unwrap();
        check_platform(&[host], "default", Path::new("/p/pixi.toml"), &ui).unwrap();
        check_platform(&[], "default", Path::new("/p/pixi.toml"), &ui).unwrap();
        let err = check_platform(&["win-32"], "dev", Path::new("/p/pixi.toml"), &ui)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("\"{host}\"")), "{err}");
        assert!(err.contains("/p/pixi.toml") && err.contains("win-32") && err.contains("`dev`"));
    }

    /// Set in the child of the test below: the prefix whose lock it takes.
    const LOCK_CHILD: &str = "RESOLVE_TEST_LOCK_CHILD";

    /// Not a test on its own: the child's body, a second build taking the prefix's lock.
    #[test]
    fn lock_prefix_child() {
        let Some(prefix) = std::env::var_os(LOCK_CHILD) else {
            return;
        };
        let _lock = lock_prefix(Path::new(&prefix), &Ui::default()).unwrap();
        println!("LOCKED");
    }

    #[test]
    fn a_second_build_of_one_prefix_waits_for_the_first_and_says_so() {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        use std::time::Duration;
        let tmp = tempfile::tempdir().unwrap();
        let prefix = tmp.path().join("proj/.pixi/envs/default");
        let cache = tmp.path().join("cache");
        let path = prefix_lock_path(&cache, &prefix);
        let quiet = Ui {
            quiet: true,
            verbose: 0,
        };
        let first = crate::lock::exclusive(&path, "the test", &quiet).unwrap();

        // The child's `dirs::cache_dir()` is `cache`, so it takes the lock at `path`.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "resolve::tests::lock_prefix_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LOCK_CHILD, &prefix)
            .env("XDG_CACHE_HOME", &cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let _ = tx.send(line.unwrap());
            }
        });
        let said = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the child never said it was waiting");
            if line.contains("Blocking") {
                break line;
            }
        };
        assert_eq!(
            said.trim_start(),
            format!(
                "Blocking waiting for another build using {} ({})",
                prefix.display(),
                path.display()
            )
        );
        // It waits as long as the first holds the lock…
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child did not wait"
        );
        // …and goes on by itself once it is released.
        drop(first);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("LOCKED"));
    }
}
