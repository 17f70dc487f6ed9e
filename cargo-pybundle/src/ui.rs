//! Output to the user: status lines on stderr (cargo style), warnings, progress bars.
//!
//! Only the binary prints (house style); every module takes a `&Ui` instead of printing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;

/// How chatty to be, from `-v` / `-q`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ui {
    /// `-q`: no status lines and no progress bars.
    pub quiet: bool,
    /// Number of `-v`.
    pub verbose: u8,
}

impl Ui {
    /// A cargo-style status line: `    Packing hello (312 files)`.
    pub fn status(&self, verb: &str, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{verb:>12} {message}");
        }
    }

    /// A warning; shown even with `-q`.
    pub fn warn(&self, message: impl std::fmt::Display) {
        eprintln!("warning: {message}");
    }

    /// A byte-count progress bar, hidden when quiet or when stderr is not a terminal.
    pub fn bytes_bar(&self, total: Option<u64>, message: &str) -> ProgressBar {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        if self.quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let template = "{msg:>12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_owned());
        bar
    }

    /// Whether children we run (pixi, cargo) should be quiet too.
    pub fn child_quiet(&self) -> bool {
        self.quiet
    }
}
