//! Command-line types (clap derive). Nothing here does any work; `commands` acts on them.
//!
//! The `bin_name = "cargo"` + one-variant enum idiom lets both `cargo pybundle build` (cargo
//! runs `cargo-pybundle pybundle build`) and a direct `cargo-pybundle pybundle build` parse.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit codes, documented in `--help` so scripts can tell the failing step apart.
pub const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  unexpected error
  2  invalid command line
  3  configuration error ([package.metadata.pybundle], pixi.toml, scripts folder, mirrors,
     the program's pybundle-runtime)
  4  pixi could not be found or downloaded
  5  pixi could not resolve or install the environment
  6  the archive could not be written
  7  cargo build failed
`run` and `pixi` exit with the status of the program they ran.";

/// Top level: `cargo pybundle …`.
#[derive(Debug, Parser)]
#[command(bin_name = "cargo", version, styles = clap::builder::Styles::plain())]
pub enum Cargo {
    /// Bundle a pixi environment and Python scripts into a Rust executable.
    #[command(after_help = EXIT_CODES, version)]
    Pybundle(Pybundle),
}

/// `cargo pybundle`: global options and the command.
#[derive(Debug, Args)]
pub struct Pybundle {
    /// Command to run.
    #[command(subcommand)]
    pub command: Command,
    /// More output (repeat for debug logs: -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less output: only errors and warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The commands of `cargo pybundle`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve the pixi environment, pack it with the scripts, and `cargo build` the
    /// application with the archive embedded. Prints the path of each binary built.
    #[command(after_help = EXIT_CODES)]
    Build(BuildArgs),
    /// Build, then run the application's binary (like `cargo run`).
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Build the package's tests and run them with the bundle (`cargo test`, the program
    /// reading the archive from PYBUNDLE_ARCHIVE).
    #[command(after_help = EXIT_CODES)]
    Test(TestArgs),
    /// Run the development environment's Python (the pixi environment in place, with the
    /// activation variables) with `pybundle` and the scripts folder importable, e.g.
    /// `cargo pybundle python -m unittest discover -s tests`.
    #[command(after_help = EXIT_CODES)]
    Python(PythonArgs),
    /// Resolve and pack only: write the archive (for inspection or CI caching).
    #[command(after_help = EXIT_CODES)]
    Pack(PackArgs),
    /// Show what a bundle holds: manifest, sizes by folder and package, relocations.
    #[command(after_help = EXIT_CODES)]
    Inspect(InspectArgs),
    /// Run the pixi that cargo pybundle uses (downloaded and cached on first use).
    #[command(after_help = EXIT_CODES)]
    Pixi(PixiArgs),
    /// Create a new project: Cargo.toml, pixi.toml, a Python script and the Rust code calling it.
    #[command(after_help = EXIT_CODES)]
    Init(InitArgs),
}

/// Selects the Cargo package and where things go; shared by every command that packs.
#[derive(Debug, Args, Clone, Default)]
pub struct PackageArgs {
    /// Package to bundle (a workspace member with `[package.metadata.pybundle]`).
    #[arg(short, long, value_name = "SPEC")]
    pub package: Option<String>,
    /// Path to the package's (or workspace's) Cargo.toml.
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// Directory for all generated artifacts (the archive lands in `<DIR>/pybundle/<package>/`).
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// pixi binary to use instead of the cached or downloaded one.
    #[arg(long, value_name = "PATH", env = "PYBUNDLE_PIXI")]
    pub pixi: Option<PathBuf>,
}

/// Options passed through to `cargo build`.
#[derive(Debug, Args, Clone, Default)]
pub struct CargoArgs {
    /// Build in release mode, with optimizations.
    #[arg(short, long)]
    pub release: bool,
    /// Build for the target triple.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// Space or comma separated list of features to activate.
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Activate all available features.
    #[arg(long)]
    pub all_features: bool,
    /// Do not activate the `default` feature.
    #[arg(long)]
    pub no_default_features: bool,
    /// Build only the named binary.
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,
}

/// `cargo pybundle build`.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    #[command(flatten)]
    pub package: PackageArgs,
    #[command(flatten)]
    pub cargo: CargoArgs,
    /// Further arguments for `cargo build` (after `--`).
    #[arg(last = true, value_name = "CARGO_ARGS")]
    pub cargo_args: Vec<String>,
}

/// `cargo pybundle run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub package: PackageArgs,
    #[command(flatten)]
    pub cargo: CargoArgs,
    /// Arguments for the application (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `cargo pybundle test`.
#[derive(Debug, Args, Clone)]
pub struct TestArgs {
    #[command(flatten)]
    pub package: PackageArgs,
    #[command(flatten)]
    pub cargo: CargoArgs,
    /// Further arguments for `cargo test` (after `--`), e.g. a test name and `-- --nocapture`.
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    pub cargo_args: Vec<String>,
}

/// `cargo pybundle python`.
#[derive(Debug, Args, Clone)]
pub struct PythonArgs {
    #[command(flatten)]
    pub package: PackageArgs,
    /// Arguments for the interpreter; options for cargo pybundle go before them.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// `cargo pybundle pack`.
#[derive(Debug, Args, Clone)]
pub struct PackArgs {
    #[command(flatten)]
    pub package: PackageArgs,
    /// Pack as for a release build (default compression level 19 instead of 3).
    #[arg(short, long)]
    pub release: bool,
    /// Also copy the archive to this file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `cargo pybundle inspect`.
#[derive(Debug, Args, Clone)]
pub struct InspectArgs {
    /// A bundle archive, or a program built by `cargo pybundle build`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the manifest as JSON instead.
    #[arg(long)]
    pub json: bool,
    /// How many folders and packages to list.
    #[arg(long, default_value_t = 15, value_name = "N")]
    pub top: usize,
}

/// `cargo pybundle init`.
#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    /// Folder of the new project (created if missing).
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Package name (default: the folder's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Depend on pybundle-runtime at this path instead of the crates.io release.
    #[arg(long, value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
    /// Replace files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `cargo pybundle pixi`.
#[derive(Debug, Args, Clone)]
pub struct PixiArgs {
    /// The package whose pixi settings apply (as for `build`); options go before pixi's arguments.
    #[command(flatten)]
    pub package: PackageArgs,
    /// Arguments for pixi, e.g. `cargo pybundle pixi add numpy`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Pybundle, clap::Error> {
        Cargo::try_parse_from(args).map(|Cargo::Pybundle(p)| p)
    }

    #[test]
    fn build_flags_and_passthrough() {
        let p = parse(&[
            "cargo",
            "pybundle",
            "build",
            "--release",
            "-p",
            "app",
            "--features",
            "a,b",
            "--",
            "--locked",
        ])
        .unwrap();
        let Command::Build(b) = p.command else {
            panic!("not build")
        };
        assert!(b.cargo.release);
        assert_eq!(b.package.package.as_deref(), Some("app"));
        assert_eq!(b.cargo.features, ["a,b"]);
        assert_eq!(b.cargo_args, ["--locked"]);
    }

    #[test]
    fn pixi_takes_everything_after_it() {
        let p = parse(&["cargo", "pybundle", "-q", "pixi", "--version", "-v"]).unwrap();
        assert!(p.quiet);
        let Command::Pixi(a) = p.command else {
            panic!("not pixi")
        };
        assert_eq!(a.args, ["--version", "-v"]);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cargo::command().debug_assert();
    }
}
