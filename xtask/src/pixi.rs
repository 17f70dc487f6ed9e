//! The test pixi: `PYBUNDLE_PIXI` when set, else pixi 0.15.2 cached in the dev cache, built once
//! from its crates.io sources when missing (the only pixi these machines can get; GitHub release
//! binaries are unreachable).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::{pixi_fix, tools};

/// The pixi version the tests are written against.
pub(crate) const VERSION: &str = "0.15.2";

/// What to do when the build fails, appended to every build error.
const HINT: &str = "or set PYBUNDLE_PIXI to an existing pixi 0.15.2 binary";

/// Make sure a test pixi exists and can install `[pypi-dependencies]` here; return its path.
pub fn ensure() -> Result<PathBuf> {
    let pixi = ensure_binary()?;
    crate::pypi_mapping::seed(&tools::dev_cache()?.join("pixi").join(VERSION))?;
    Ok(pixi)
}

/// `pixi-<VERSION>.crate` (its packaged sources), fetched into cargo's cache when missing.
pub(crate) fn crate_file(work: &Path) -> Result<PathBuf> {
    fetch_crate(work)
}

fn ensure_binary() -> Result<PathBuf> {
    if let Some(pixi) = std::env::var_os("PYBUNDLE_PIXI").filter(|p| !p.is_empty()) {
        let pixi = PathBuf::from(pixi);
        if !pixi.is_file() {
            bail!(
                "PYBUNDLE_PIXI={} is not a file; point it at a pixi binary or unset it",
                pixi.display()
            );
        }
        return Ok(pixi);
    }
    let dir = tools::dev_cache()?.join("pixi").join(VERSION);
    let pixi = dir.join("pixi");
    if pixi.is_file() {
        match version_of(&pixi) {
            Ok(v) if v == format!("pixi {VERSION}") && pixi_fix::is_current(&dir) => {
                return Ok(pixi)
            }
            found => eprintln!(
                "xtask: {} is not pixi {VERSION} with our fixes ({found:?}); rebuilding it",
                pixi.display()
            ),
        }
    }
    build(&dir)
        .with_context(|| format!("building pixi {VERSION} into {}; {HINT}", dir.display()))?;
    Ok(pixi)
}

/// The rustup toolchain in use here (None without rustup).
fn active_toolchain() -> Option<String> {
    if let Some(name) = std::env::var("RUSTUP_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Some(name);
    }
    let out = Command::new("rustup")
        .args(["show", "active-toolchain"])
        .current_dir(tools::workspace_root())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

fn version_of(pixi: &Path) -> Result<String> {
    tools::output(
        Command::new(pixi).arg("--version"),
        "asking pixi for its version",
    )
}

/// Build pixi from its packaged sources (see DESIGN.md §4): its Cargo.lock pins a `time` that no
/// longer compiles, so bump that one crate and build `--locked` so nothing else drifts.
fn build(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let work = tempfile::Builder::new().prefix(".build-").tempdir_in(dir)?;
    eprintln!("xtask: building pixi {VERSION} from crates.io sources (about 6 minutes on 2 cores)");
    let crate_file = fetch_crate(work.path())?;

    let sources = work.path().join("src");
    let archive = fs::File::open(&crate_file)?;
    tar::Archive::new(flate2::read::GzDecoder::new(archive))
        .unpack(&sources)
        .with_context(|| format!("unpacking {}", crate_file.display()))?;
    let root = sources.join(format!("pixi-{VERSION}"));
    // Its rust-toolchain file pins a 2024 compiler that rustup would try to download.
    for name in ["rust-toolchain", "rust-toolchain.toml"] {
        if root.join(name).exists() {
            fs::remove_file(root.join(name))?;
        }
    }
    pixi_fix::apply(&root)?;
    let target = work.path().join("target");
    let toolchain = active_toolchain();
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(tools::cargo());
        cmd.args(args)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target);
        // Dependencies ship rust-toolchain files too (resolvo 0.4.0 pins 1.75.0), and rustc runs
        // in each crate's directory: pin our toolchain so rustup ignores them.
        if let Some(toolchain) = &toolchain {
            cmd.env("RUSTUP_TOOLCHAIN", toolchain);
        }
        cmd
    };
    tools::run(
        &mut cargo(&["update", "-p", "time", "--precise", "0.3.36"]),
        "bumping pixi's `time` dependency to 0.3.36",
    )?;
    tools::run(
        &mut cargo(&["build", "--release", "--locked", "--bin", "pixi"]),
        "cargo build of pixi",
    )?;

    let built = target.join("release").join("pixi");
    // Copy beside the final name, then rename: a later run never finds half a binary.
    let partial = dir.join(format!(".pixi.partial-{}", std::process::id()));
    fs::copy(&built, &partial)?;
    fs::rename(&partial, dir.join("pixi"))?;
    pixi_fix::write_stamp(dir)?;
    let version = version_of(&dir.join("pixi"))?;
    eprintln!("xtask: built {version} at {}", dir.join("pixi").display());
    Ok(())
}

/// `pixi-<VERSION>.crate` from cargo's registry cache, fetched through a throwaway crate that
/// depends on it when it is not there yet.
fn fetch_crate(work: &Path) -> Result<PathBuf> {
    if let Some(found) = cached_crate()? {
        return Ok(found);
    }
    let fetcher = work.join("fetch");
    fs::create_dir_all(fetcher.join("src"))?;
    fs::write(
        fetcher.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch-pixi\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\npixi = \"={VERSION}\"\n\n[workspace]\n"
        ),
    )?;
    fs::write(fetcher.join("src").join("lib.rs"), "")?;
    tools::run(
        Command::new(tools::cargo())
            .arg("fetch")
            .current_dir(&fetcher),
        &format!("fetching the pixi {VERSION} crate from crates.io"),
    )?;
    cached_crate()?.with_context(|| {
        format!(
            "cargo fetch succeeded but pixi-{VERSION}.crate is not in {}",
            registry_cache().display()
        )
    })
}

fn registry_cache() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"));
    home.join("registry").join("cache")
}

fn cached_crate() -> Result<Option<PathBuf>> {
    let cache = registry_cache();
    if !cache.is_dir() {
        return Ok(None);
    }
    for registry in fs::read_dir(&cache)? {
        let candidate = registry?.path().join(format!("pixi-{VERSION}.crate"));
        if candidate.is_file() {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}
