//! `cargo pybundle`: bundle a pixi environment and Python scripts into a Rust executable.
//!
//! The flow, one module per step: [`metadata`] (the `[package.metadata.pybundle]` table) →
//! [`runtime`] (the program's pybundle-runtime: the bundle format it reads, its Python half) →
//! [`project`] (what we read of the pixi manifest and lock file ourselves) → [`pixi`] /
//! [`download`] (find or fetch pixi) → [`mirror`] (channel mirrors as a pixi configuration
//! layer) → [`resolve`] (`pixi install` on the user's project) → [`pack`] (the archive and its
//! relocation table) → [`cargo_build`] (`cargo build`, then the archive appended to a copy of
//! each executable).
//! [`commands`] strings them together; [`cli`] holds the clap types. The binary's `main.rs`
//! only calls [`main`].
//!
//! # Configuration
//!
//! ```toml
//! [package.metadata.pybundle]
//! manifest = "pixi.toml"        # relative to the package (pixi.toml or pyproject.toml)
//! environment = "default"       # pixi environment to bundle
//! scripts = "python"            # folder packed as the bundle's scripts (must exist)
//! pixi-version = "0.77.0"       # pixi to download when none is given (0.70.0 or newer)
//! pixi-sha256 = "<64 hex>"      # pin the download
//! lock = "locked"               # locked | frozen | update
//! exclude = ["**/__pycache__/**", "**/*.pyc"]   # globs relative to the prefix and scripts folder
//! compression-level = 19        # default: 19 with --release, 3 otherwise
//! strip = "debuginfo"           # none | debuginfo; default: debuginfo with --release, none otherwise
//! channel-mirrors = { conda-forge = "file:///srv/conda-forge" }
//! ```
//!
//! # Environment variables
//!
//! `PYBUNDLE_PIXI` (a pixi binary, same as `--pixi`), `PYBUNDLE_PIXI_MIRROR` (replaces
//! `https://github.com/prefix-dev/pixi/releases/download`), `PYBUNDLE_CHANNEL_MIRRORS`
//! (`name=url,name=url`, wins over `channel-mirrors`), `PYBUNDLE_LOG` (tracing filter),
//! `STRIP` (the binutils `strip` that `strip = "debuginfo"` runs).
//! The bundled programs are written to `target/<profile>/bundled/` (see [`cargo_build`]).
//!
//! # Where things go
//!
//! pixi runs on the user's project as `pixi install -e <env>` would: the environment is where
//! pixi puts it (`<project>/.pixi/envs/<env>`, or a detached-environments folder), and pixi
//! writes `pixi.lock` when it solves (no lock yet, or `lock = "update"`). cargo-pybundle itself
//! writes under `<target dir>/pybundle/<package>/`: `debug/` and `release/` (`bundle.tar.zst`
//! and its reuse key), `pixi-config.toml` (the configuration layer, when mirrors apply) and
//! `.lock` (held while preparing, so two builds of one package take turns); plus one stamp
//! file in the environment's `conda-meta` folder (where it was installed) and a lock file per
//! environment under `~/.cache/cargo-pybundle/locks/`.
//!
//! # Known limitations
//!
//! - The environment is installed for the build machine's platform; `--target` does not
//!   change it. Downloading pixi is supported on Linux and macOS (x86_64, aarch64).
//! - A binary file that holds the build prefix without a placeholder cannot be relocated; it
//!   is listed as a warning and keeps the build machine's path.

// Library functions past 80 lines (clippy.toml) are split along their steps (issue 19);
// inline tests are out of its scope.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

// The steps `main` strings together; only the command line sees them whole.
mod cargo_build;
mod cli;
mod commands;
mod failure;
mod init;
mod inspect;
mod lock;
mod project;
mod resolve;

// Also used by `cargo xtask`, the benches and the integration tests.
pub mod download;
pub mod metadata;
pub mod mirror;
pub mod pack;
pub mod pixi;
pub mod runtime;
pub mod ui;

use clap::Parser as _;
use std::process::ExitCode;

pub use init::RUNTIME_REQUIREMENT;
pub use pixi::DEFAULT_PIXI_VERSION;

/// Parses the command line, runs the command and turns an error into a message and an exit
/// code (see `cli::EXIT_CODES`).
pub fn main() -> ExitCode {
    let cli::Cargo::Pybundle(args) = cli::Cargo::parse();
    init_tracing(args.verbose, args.quiet);
    let ui = ui::Ui {
        quiet: args.quiet,
        verbose: args.verbose,
    };
    match commands::run(args, &ui) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A child's own exit status needs no words of ours, unless we added some.
            if err.downcast_ref::<failure::ChildExit>().is_none() || err.chain().count() > 1 {
                ui.error(&err);
            }
            ExitCode::from(failure::exit_code(&err))
        }
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PYBUNDLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}
