//! The runtime's one error type. Every variant names the file, entry or script involved; the
//! message never repeats its source (the error chain prints it).
//!
//! Shared by every module: add variants with small edits, keep them grouped by module.

use std::path::PathBuf;

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- bundle / cache / extract / relocate ---
    /// The binary was built without an archive (plain `cargo build`) and no development
    /// environment was found.
    #[error(
        "this program was built without a Python bundle; build it with `cargo pybundle build` \
         (or run it in development mode from its project directory)"
    )]
    NotBundled,

    /// An I/O operation on a path failed.
    #[error("{action} `{}`", path.display())]
    Io {
        /// What was being done, e.g. "cannot create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The archive could not be read (corrupt, truncated, not a bundle).
    #[error("the bundle archive is unreadable: {detail}")]
    Archive {
        /// What was wrong.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<std::io::Error>,
    },

    /// The archive's manifest is missing, malformed or of an unsupported format version.
    #[error("the bundle manifest is invalid: {0}")]
    Manifest(String),

    /// An archive entry would be written outside the target directory, or is of a kind that
    /// is never extracted (device, fifo).
    #[error("refusing archive entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The cache directory is unusable (owned by another user, not a directory, ...).
    #[error("cache directory `{}` cannot be used: {reason}; set PYBUNDLE_CACHE_DIR to a directory you own", path.display())]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A relocation could not be applied.
    #[error("cannot relocate `{}`: {reason}", path.display())]
    Relocate {
        /// The file being relocated.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Builds [`Error::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
}
