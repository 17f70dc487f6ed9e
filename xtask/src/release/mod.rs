//! `cargo xtask release-check`: both crates work *as packaged*, the way a user gets them.
//!
//! 1. `cargo package` pybundle-runtime and cargo-pybundle (cargo's own verification build of
//!    each from its unpacked `.crate`), then list each package with sizes and check it holds
//!    the licenses, README, the runtime's Python half / the CLI's templates byte for byte, and
//!    no tests, fixtures or large files ([`contents`]).
//! 2. In a scratch directory outside the workspace: unpack both `.crate`s, `cargo install` the
//!    CLI from its unpacked crate (`--locked`, into a scratch root), `cargo pybundle init` a
//!    project — which depends on `pybundle-runtime = "0.1"`, exactly as for a user — and
//!    build it with the installed CLI against the test channel, run it and check its reply and
//!    the bundle's `creator`.
//!
//! crates.io does not have these crates, so `pybundle-runtime = "0.1"` is resolved through a
//! `[patch.crates-io]` entry in the scratch directory's `.cargo/config.toml` that points at
//! the unpacked runtime `.crate`. That keeps the project's Cargo.toml exactly as `init` writes
//! it for a user (a registry requirement, not a path), and a runtime whose version does not
//! meet `init`'s requirement is not used by cargo, so this check fails as a user's build would.
//! (A local registry would also give the package a registry source, but needs an index for
//! every dependency, or replacing crates.io as a whole.)
//!
//! Nothing in the scratch directory points into the workspace: the check reads the app's and
//! the CLI's dependency graphs and fails if any path package lies outside the scratch
//! directory, and fails if either binary names a source file of the workspace's crates.
//! Builds share `<target>/release-check` as `CARGO_TARGET_DIR` (a cache of compiled registry
//! crates: cargo's verification build, the CLI install and the app build reuse one another's
//! dependencies, and later runs only recompile the two packaged crates and the app). The CLI
//! is installed with `--debug` for that reuse; `--release` installs it as `cargo install`
//! does by default.

mod contents;
mod graph;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{channel, pixi, tools};

const RUNTIME: &str = "pybundle-runtime";
const CLI: &str = "cargo-pybundle";
/// The project `init` writes, named as in README's example.
const APP: &str = "word-count";

/// Runs the whole check; `release` installs the CLI in release mode.
pub fn run(release: bool) -> Result<()> {
    let started = Instant::now();
    let root = tools::workspace_root();
    let cache = tools::target_dir(&root)?.join("release-check");
    let versions = versions(&root)?;
    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;

    forget_earlier_packages(&cache)?;
    let step = Instant::now();
    let crates = package(&root, &cache, &versions)?;
    let cli_version = version_of(&versions, CLI)?;
    done("cargo package (with verification builds)", step);

    let scratch = tempfile::Builder::new()
        .prefix("pybundle-release-check-")
        .tempdir_in(std::env::temp_dir())
        .context("creating the scratch directory")?;
    let scratch = scratch.path().canonicalize()?;
    if scratch.starts_with(&root) {
        bail!(
            "the temp directory {} lies inside the workspace; set TMPDIR to a directory outside \
             it",
            scratch.display()
        );
    }
    let result = in_scratch(&Scratch {
        dir: &scratch,
        root: &root,
        cache: &cache,
        crates: &crates,
        pixi: &pixi,
        channel: &channel,
        cli_version: &cli_version,
        release,
    });
    match &result {
        // Kept on failure, to look at.
        Err(_) => eprintln!(
            "xtask: release-check: the scratch directory is kept: {}",
            scratch.display()
        ),
        Ok(()) => fs_err::remove_dir_all(&scratch)?,
    }
    result?;
    eprintln!(
        "xtask: release-check: ok ({:.0} s in all)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Removes what an earlier run left that cargo would take for this run's packages: both
/// crates keep version 0.1.0 between commits, and cargo treats a registry package of a given
/// version as immutable — it reuses an unpacked copy under `$CARGO_HOME/registry/src/` and the
/// compiled artifacts in the target dir without looking at the new `.crate`. (Neither crate is on
/// crates.io, so every such copy came from a release check.)
fn forget_earlier_packages(cache: &Path) -> Result<()> {
    let ours = |name: &std::ffi::OsStr| {
        let name = name.to_string_lossy();
        [RUNTIME, CLI].iter().any(|c| {
            name.starts_with(&format!("{c}-"))
                || name.starts_with(&format!("{}-", c.replace('-', "_")))
        })
    };
    let mut dirs = Vec::new();
    if cache.is_dir() {
        for profile in fs_err::read_dir(cache)? {
            let fingerprints = profile?.path().join(".fingerprint");
            if fingerprints.is_dir() {
                dirs.push(fingerprints);
            }
        }
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(src) = cargo_home
        .map(|h| h.join("registry/src"))
        .filter(|p| p.is_dir())
    {
        for registry in fs_err::read_dir(src)? {
            dirs.push(registry?.path());
        }
    }
    for dir in dirs {
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            if ours(&entry.file_name()) && entry.file_type()?.is_dir() {
                fs_err::remove_dir_all(entry.path())?;
            }
        }
    }
    Ok(())
}

/// The `.crate` file of each package.
struct Crates {
    runtime: PathBuf,
    cli: PathBuf,
}

/// `cargo package` of both crates into `<cache>/package`, then their lists and checks.
fn package(root: &Path, cache: &Path, versions: &[(String, String)]) -> Result<Crates> {
    // --allow-dirty: a check run on a working copy packs what is there (a clean clone packs
    // the commit); cargo records which in .cargo_vcs_info.json.
    tools::run(
        cargo(cache)
            .args(["package", "--allow-dirty", "-p", RUNTIME, "-p", CLI])
            .current_dir(root),
        "packaging the crates",
    )?;
    let path = |name: &str| -> Result<PathBuf> {
        let version = version_of(versions, name)?;
        Ok(cache
            .join("package")
            .join(format!("{name}-{version}.crate")))
    };
    let crates = Crates {
        runtime: path(RUNTIME)?,
        cli: path(CLI)?,
    };
    // The CLI's templates live at the top of the repository; `cargo-pybundle/templates` is a
    // symlink to them that `cargo package` follows, so the .crate must hold them as files.
    for (name, krate, carried, source) in [
        (
            RUNTIME,
            &crates.runtime,
            "python",
            root.join(RUNTIME).join("python"),
        ),
        (CLI, &crates.cli, "templates", root.join("templates")),
    ] {
        let entries = contents::read(krate)?;
        contents::print(name, krate, &entries)?;
        contents::check(name, &entries, root, (carried, &source))?;
    }
    Ok(crates)
}

struct Scratch<'a> {
    dir: &'a Path,
    root: &'a Path,
    cache: &'a Path,
    crates: &'a Crates,
    pixi: &'a Path,
    channel: &'a str,
    /// The workspace's cargo-pybundle version: the installed CLI and the bundle must say it.
    cli_version: &'a str,
    release: bool,
}

fn in_scratch(s: &Scratch<'_>) -> Result<()> {
    let step = Instant::now();
    let unpacked = s.dir.join("crates");
    let runtime = unpack(&s.crates.runtime, &unpacked)?;
    let cli_src = unpack(&s.crates.cli, &unpacked)?;
    let config = s.dir.join(".cargo").join("config.toml");
    fs_err::create_dir_all(config.parent().unwrap_or(s.dir))?;
    let runtime_str = runtime.to_str().context("the scratch path is not UTF-8")?;
    fs_err::write(
        &config,
        format!(
            "# pybundle-runtime = \"0.1\" from the unpacked .crate (it is not on crates.io yet)\n\
             [patch.crates-io]\n{RUNTIME} = {{ path = {runtime_str:?} }}\n"
        ),
    )?;

    let install = s.dir.join("install");
    let mut cmd = cargo(s.cache);
    cmd.args(["install", "--locked", "--path"])
        .arg(&cli_src)
        .arg("--root")
        .arg(&install)
        .arg("--config")
        .arg(&config)
        .current_dir(s.dir);
    if !s.release {
        cmd.arg("--debug");
    }
    tools::run(&mut cmd, "installing cargo-pybundle from its .crate")?;
    let cli = install.join("bin").join(CLI);
    done("cargo install from the .crate", step);

    let step = Instant::now();
    // The installed binary as cargo runs a subcommand: `cargo-pybundle pybundle …` with $CARGO
    // set (called directly so that no other cargo-pybundle on PATH or in ~/.cargo/bin is taken).
    let pybundle = |dir: &Path| {
        let mut cmd = Command::new(&cli);
        clean_env(&mut cmd);
        for var in ["PYBUNDLE_PIXI_MIRROR", "PYBUNDLE_LOG", "PYBUNDLE_CACHE_DIR"] {
            cmd.env_remove(var);
        }
        cmd.env("CARGO", tools::cargo())
            .env("CARGO_TARGET_DIR", s.cache)
            .current_dir(dir)
            .arg("pybundle");
        cmd
    };
    tools::run(pybundle(s.dir).args(["init", APP]), "cargo pybundle init")?;
    let app = s.dir.join(APP);
    let manifest = fs_err::read_to_string(app.join("Cargo.toml"))?;
    let requirement = format!("{RUNTIME} = \"{}\"", cargo_pybundle::RUNTIME_REQUIREMENT);
    if !manifest.lines().any(|l| l.trim() == requirement) {
        bail!("`cargo pybundle init` did not write `{requirement}` into {APP}/Cargo.toml:\n{manifest}");
    }
    let built = tools::output(
        pybundle(&app)
            .arg("build")
            .env("PYBUNDLE_PIXI", s.pixi)
            .env(
                "PYBUNDLE_CHANNEL_MIRRORS",
                format!("conda-forge={}", s.channel),
            ),
        "cargo pybundle build of the init project",
    )?;
    let binary = PathBuf::from(built.lines().last().unwrap_or_default());
    done("cargo pybundle init + build", step);

    let step = Instant::now();
    let reply = tools::output(
        Command::new(&binary)
            .args(["three", "little", "words"])
            .env("PYBUNDLE_CACHE_DIR", s.dir.join("cache")),
        "running the built program",
    )?;
    if !reply.starts_with("3 words, counted by Python 3.") {
        bail!(
            "{} replied {reply:?}, not \"3 words, counted by Python 3.x.y\"",
            binary.display()
        );
    }
    let manifest: Value = serde_json::from_str(&tools::output(
        pybundle(&app).args(["inspect", "--json"]).arg(&binary),
        "cargo pybundle inspect",
    )?)?;
    let installed = installed_version(&cli)?;
    if installed != s.cli_version {
        bail!(
            "the installed {CLI} says it is {installed}, the workspace's is {}",
            s.cli_version
        );
    }
    let creator = format!("{CLI} {}", s.cli_version);
    if manifest["creator"] != creator.as_str() {
        bail!(
            "the bundle's creator is {}, not `{creator}`",
            manifest["creator"]
        );
    }
    eprintln!("xtask: release-check: {APP} says {reply:?}; bundle creator `{creator}`");

    // Nothing came from the workspace: every path package of both graphs is in the scratch
    // directory, and neither binary names a workspace crate's source file.
    graph::paths_inside(s.dir, &app.join("Cargo.toml"), &config)?;
    graph::paths_inside(s.dir, &cli_src.join("Cargo.toml"), &config)?;
    for bin in [&cli, &binary] {
        let bytes = fs_err::read(bin)?;
        for krate in [RUNTIME, CLI] {
            let source = format!("{}/", s.root.join(krate).display());
            if memchr::memmem::find(&bytes, source.as_bytes()).is_some() {
                bail!(
                    "{} names {source}: it was built from the workspace",
                    bin.display()
                );
            }
        }
    }
    graph::msrv(&cli_src, Some(&config))?;
    graph::msrv(&runtime, None)?;
    done("run, inspect and isolation checks", step);
    Ok(())
}

/// Unpacks a `.crate` into `into`; returns the package folder (`<name>-<version>`).
fn unpack(krate: &Path, into: &Path) -> Result<PathBuf> {
    let file = fs_err::File::open(krate)?;
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(into)
        .with_context(|| format!("unpacking {}", krate.display()))?;
    let stem = krate
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".crate"))
        .context("a .crate file name")?;
    Ok(into.join(stem))
}

/// The version `cargo-pybundle --version` reports (`cargo-pybundle 0.1.0`).
fn installed_version(cli: &Path) -> Result<String> {
    let out = tools::output(
        Command::new(cli).args(["pybundle", "--version"]),
        "cargo-pybundle --version",
    )?;
    out.split_whitespace()
        .last()
        .map(str::to_owned)
        .with_context(|| format!("`{} pybundle --version` said {out:?}", cli.display()))
}

fn version_of(versions: &[(String, String)], name: &str) -> Result<String> {
    versions
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .with_context(|| format!("no {name} in the workspace"))
}

/// Versions of the workspace's packages, by name.
fn versions(root: &Path) -> Result<Vec<(String, String)>> {
    let json = tools::output(
        Command::new(tools::cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(root),
        "cargo metadata of the workspace",
    )?;
    let meta: Value = serde_json::from_str(&json)?;
    Ok(meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                p["version"].as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// cargo with `CARGO_TARGET_DIR` at the shared cache.
fn cargo(cache: &Path) -> Command {
    let mut cmd = Command::new(tools::cargo());
    clean_env(&mut cmd);
    cmd.env("CARGO_TARGET_DIR", cache);
    cmd
}

/// Drops what `cargo run` (which runs xtask) set about the xtask package, so nothing
/// downstream reads the workspace's manifest path or package name.
pub(super) fn clean_env(cmd: &mut Command) {
    let ours: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            let k = k.to_string_lossy();
            k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || matches!(
                    k.as_ref(),
                    "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_DIR"
                )
        })
        .collect();
    for k in ours {
        cmd.env_remove(k);
    }
}

fn done(what: &str, since: Instant) {
    eprintln!(
        "xtask: release-check: {what}: {:.0} s",
        since.elapsed().as_secs_f64()
    );
}
