//! `cargo pybundle`: bundle a pixi environment and Python scripts into a Rust executable.
//!
//! The flow, one module per step: [`metadata`] (the `[package.metadata.pybundle]` table) →
//! [`pixi`] / [`download`] (find or fetch pixi) → [`mirror`] (channel mirrors, shadow
//! manifest) → [`resolve`] (`pixi install`, `pixi info`) → [`pack`] (the archive and its
//! relocation table) → [`cargo_build`] (`cargo build` with the archive embedded).
//! [`commands`] strings them together; [`cli`] holds the clap types. The binary's `main.rs`
//! only calls [`main`].

pub mod cargo_build;
pub mod cli;
pub mod commands;
pub mod download;
pub mod failure;
pub mod inspect;
pub mod metadata;
pub mod mirror;
pub mod pack;
pub mod pixi;
pub mod resolve;
pub mod ui;

use clap::Parser as _;
use std::process::ExitCode;

pub use pixi::DEFAULT_PIXI_VERSION;

/// Parses the command line, runs the command and turns an error into a message and an exit
/// code (see `cli::EXIT_CODES`).
pub fn main() -> ExitCode {
    let cli::Cargo::Pybundle(args) = cli::Cargo::parse();
    init_tracing(args.verbose, args.quiet);
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if err.downcast_ref::<failure::ChildExit>().is_none() || err.chain().count() > 1 {
                let mut chain = err.chain();
                if let Some(top) = chain.next() {
                    eprintln!("error: {top}");
                }
                for cause in chain {
                    eprintln!("  caused by: {cause}");
                }
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
