//! Lets the test pixi (0.15.2) install `[pypi-dependencies]` offline from GitHub.
//!
//! pixi 0.15.2 downloads conda-forge's conda-to-PyPI name mapping from raw.githubusercontent.com
//! before it solves any PyPI dependency, and fails ("failed to download pypi name mapping") when
//! that host is unreachable — as it is on these machines. It fetches it through a caching HTTP
//! client, so we place a fresh cached copy of an empty mapping in pixi's cache (see
//! `assets/pixi-mapping-seed/main.rs` for why empty is right). The seeding tool is built once,
//! against pixi's own Cargo.lock so its cache format is exactly pixi's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use fs_err as fs;

use crate::{pixi, tools};

const SEED_CARGO_TOML: &str = include_str!("../assets/pixi-mapping-seed/Cargo.toml.in");
const SEED_MAIN: &str = include_str!("../assets/pixi-mapping-seed/main.rs");

/// Seed the cache that `pixi` will use (PIXI_CACHE_DIR, else RATTLER_CACHE_DIR, else the
/// rattler default), building the seeding tool into `dir` first when it is missing.
pub fn seed(dir: &Path) -> Result<()> {
    let tool = dir.join("pixi-mapping-seed");
    if !tool.is_file() {
        build(dir, &tool).with_context(|| {
            format!(
                "building the pixi PyPI-mapping seeder into {} (needed for [pypi-dependencies] \
                 without GitHub access)",
                dir.display()
            )
        })?;
    }
    let http_cache = pixi_cache_dir()?.join("http-cache");
    tools::run(
        Command::new(&tool).arg(&http_cache),
        &format!("seeding pixi's HTTP cache at {}", http_cache.display()),
    )
}

/// The cache directory pixi 0.15.2 uses, resolved the way it does.
fn pixi_cache_dir() -> Result<PathBuf> {
    for var in ["PIXI_CACHE_DIR", "RATTLER_CACHE_DIR"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
    }
    dirs::cache_dir()
        .map(|c| c.join("rattler").join("cache"))
        .context("cannot find the user cache directory; set PIXI_CACHE_DIR")
}

fn build(dir: &Path, tool: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let work = tempfile::Builder::new()
        .prefix(".seed-build-")
        .tempdir_in(dir)?;
    eprintln!("xtask: building the pixi PyPI-mapping seeder (about a minute, once)");
    let src = work.path().join("seed");
    fs::create_dir_all(src.join("src"))?;
    fs::write(
        src.join("Cargo.toml"),
        format!("{SEED_CARGO_TOML}\n[workspace]\n"),
    )?;
    fs::write(src.join("src").join("main.rs"), SEED_MAIN)?;
    // pixi's own lock: same http-cache, cacache and serialisation crates as the pixi binary.
    let crate_file = pixi::crate_file(work.path())?;
    let archive = fs::File::open(&crate_file)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let lock_name = format!("pixi-{}/Cargo.lock", pixi::VERSION);
    let mut found = false;
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy() == lock_name {
            entry.unpack(src.join("Cargo.lock"))?;
            found = true;
            break;
        }
    }
    anyhow::ensure!(found, "{} holds no {lock_name}", crate_file.display());
    let target = work.path().join("target");
    // The same bump pixi itself needs: its lock pins a `time` that no longer compiles.
    tools::run(
        Command::new(tools::cargo())
            .args(["update", "-p", "time", "--precise", "0.3.36"])
            .current_dir(&src),
        "bumping the seeder's `time` dependency to 0.3.36",
    )?;
    tools::run(
        Command::new(tools::cargo())
            .args(["build", "--release"])
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", &target),
        "cargo build of the PyPI-mapping seeder",
    )?;
    let partial = dir.join(format!(".pixi-mapping-seed.partial-{}", std::process::id()));
    fs::copy(target.join("release").join("pixi-mapping-seed"), &partial)?;
    fs::rename(&partial, tool)?;
    Ok(())
}
