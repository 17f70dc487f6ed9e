//! `cargo xtask`: the project's development tasks (test toolchain, test suite, demo).

mod airgap;
mod bench;
mod channel;
mod demo;
mod pixi;
mod pixi_fix;
mod pypi_mapping;
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
    /// Ensure the test pixi (0.15.2) exists and print its path.
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
    /// Run the example binaries on a bare Debian root with no network and no Python (root).
    Airgap,
    /// Benchmarks side by side with peers on examples/outliers; writes BENCHMARKS.md.
    Bench {
        /// Each row once, no peers (fast, offline).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Pixi => println!("{}", pixi::ensure()?.display()),
        Task::Channel => println!("{}", channel::ensure()?),
        Task::Test { args } => test::run(&args)?,
        Task::Demo => demo::run()?,
        Task::Airgap => airgap::run(true)?,
        Task::Bench { quick } => bench::run(quick)?,
    }
    Ok(())
}
