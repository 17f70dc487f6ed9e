//! `cargo-pybundle`: the cargo subcommand. Everything lives in the library half of this
//! package (`lib.rs`), so benches and tests can reach the packer; this file only hands over.

use std::process::ExitCode;

fn main() -> ExitCode {
    cargo_pybundle::main()
}
