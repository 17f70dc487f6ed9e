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

    /// A result line on stdout (a path, JSON): what scripts read, shown even with `-q`. A
    /// reader that went away (`| head`) ends the output quietly instead of a panic.
    pub fn result(&self, line: impl std::fmt::Display) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            tracing::warn!("cannot write to stdout: {e}");
        }
    }

    /// A line another program (cargo) meant for the user, on stderr as it is.
    pub fn relay(&self, line: &str) {
        eprintln!("{line}");
    }

    /// An error and its causes, one a line: `error: …` then `  caused by: …`.
    pub fn error(&self, err: &anyhow::Error) {
        let mut chain = err.chain();
        if let Some(top) = chain.next() {
            eprintln!("error: {top}");
        }
        for cause in chain {
            eprintln!("  caused by: {cause}");
        }
    }
}
