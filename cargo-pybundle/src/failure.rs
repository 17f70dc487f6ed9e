//! Which step failed, as an exit code (see `cli::EXIT_CODES`).
//!
//! Each step wraps its error in a [`Step`] context; `main` finds the innermost one with
//! `anyhow::Error::downcast_ref` (which looks through every context layer) and exits with its
//! code. The message of a `Step` is the first line the user reads, so it says what failed.

use std::fmt;

/// A step of the build flow, attached to errors as context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `[package.metadata.pybundle]`, pixi.toml, scripts folder, mirrors.
    Config,
    /// Finding or downloading pixi.
    Pixi,
    /// `pixi install` / `pixi info`.
    Resolve,
    /// Writing the archive.
    Pack,
    /// `cargo build`.
    Cargo,
}

impl Step {
    /// The process exit code for a failure in this step.
    pub fn exit_code(self) -> u8 {
        match self {
            Step::Config => 3,
            Step::Pixi => 4,
            Step::Resolve => 5,
            Step::Pack => 6,
            Step::Cargo => 7,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Config => "invalid configuration",
            Step::Pixi => "pixi is not available",
            Step::Resolve => "the pixi environment could not be installed",
            Step::Pack => "the bundle archive could not be written",
            Step::Cargo => "cargo build failed",
        })
    }
}

/// A child program (the application or pixi) exited with this status; passed on unchanged.
#[derive(Debug)]
pub struct ChildExit(pub u8);

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the program exited with status {}", self.0)
    }
}

impl std::error::Error for ChildExit {}

/// The exit code for an error: a child's own status, the failing step's code, or 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(ChildExit(code)) = err.downcast_ref::<ChildExit>() {
        return *code;
    }
    err.downcast_ref::<Step>().map_or(1, |s| s.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn step_is_found_under_other_context() {
        let err = Err::<(), _>(std::io::Error::other("disk full"))
            .context("writing x")
            .context(Step::Pack)
            .context("while building")
            .unwrap_err();
        assert_eq!(exit_code(&err), 6);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), 1);
    }
}
