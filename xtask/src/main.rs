//! `cargo xtask`: the project's development tasks (test toolchain, test suite, demo).

mod airgap;
mod bench;
mod channel;
mod demo;
mod deps;
mod pixi;
mod release;
mod stress;
mod test;
mod tools;

use clap::{Parser, Subcommand};

/// Development tasks for cargo-pybundle.
#[derive(Parser)]
#[command(name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Get the test pixi through cargo-pybundle's download path and print its path.
    Pixi,
    /// Ensure the local conda test channel exists and print its file:// URL.
    Channel,
    /// Prepare the toolchain, then run `cargo fmt --check` and the whole test suite.
    Test {
        /// Extra arguments passed to `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build examples/hello with the real `cargo pybundle build` and run it.
    Demo,
    /// Check that every dependency each package declares is used by it.
    Deps,
    /// Run the example binaries on a bare Debian root with no network and no Python (root).
    Airgap,
    /// Package both crates, install the CLI from its .crate and build, run and check an `init`
    /// project against the packaged runtime, outside the workspace.
    ReleaseCheck {
        /// Install the CLI in release mode, as `cargo install` does (slower; default: debug,
        /// which reuses cargo package's verification build).
        #[arg(long)]
        release: bool,
    },
    /// Benchmarks side by side with peers on examples/outliers; writes BENCHMARKS.md.
    Bench {
        /// Each row once, no peers (fast, offline).
        #[arg(long)]
        quick: bool,
    },
    /// Fuzz each cargo-fuzz target in fuzz/, then run the worker soak test; prints a table.
    Stress {
        /// Seconds per fuzz target.
        #[arg(long, default_value_t = 300)]
        fuzz_secs: u64,
        /// Calls the soak test makes (PYBUNDLE_SOAK_CALLS; default: the test's own).
        #[arg(long)]
        soak_calls: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    pixi::use_local_mirror();
    match Cli::parse().task {
        Task::Pixi => println!("{}", pixi::ensure()?.display()),
        Task::Channel => println!("{}", channel::ensure()?),
        Task::Test { args } => test::run(&args)?,
        Task::Demo => demo::run()?,
        Task::Deps => deps::run()?,
        Task::Airgap => {
            let tally = airgap::run(true)?;
            if !tally.failed.is_empty() {
                anyhow::bail!("air-gap cases failed: {}", tally.failed.join("; "));
            }
        }
        Task::ReleaseCheck { release } => release::run(release)?,
        Task::Bench { quick } => bench::run(quick)?,
        Task::Stress {
            fuzz_secs,
            soak_calls,
        } => stress::run(fuzz_secs, soak_calls)?,
    }
    Ok(())
}
