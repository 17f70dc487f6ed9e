//! Run Python that `cargo pybundle build` embedded into this executable.
//!
//! `cargo pybundle build` packs a conda environment (interpreter, native libraries,
//! packages) and the application's scripts into a zstd-compressed tar archive and embeds it
//! into the program. This crate turns that archive into a ready [`Environment`] on the
//! machine the program runs on, and runs the bundled Python.
//!
//! ```no_run
//! # fn main() -> Result<(), pybundle_runtime::Error> {
//! use pybundle_runtime::Bundle;
//!
//! // The appended bundle; in a plain debug build the pixi environment in place (development
//! // mode, see `dev`); a plain release build fails with Error::NotBundled.
//! let env = Bundle::embedded()?.ready()?;
//! let status = env.command("hello")?.status().expect("the bundled python starts");
//! assert!(status.success());
//! # Ok(()) }
//! ```
//!
//! # First run
//!
//! [`Bundle::ready`] makes the prefix ready. The first run of a given bundle on a machine
//! extracts it; every later run only reads a small marker file.
//!
//! 1. **Cache root**: `PYBUNDLE_CACHE_DIR`, else the application's choice
//!    ([`Bundle::cache_dir`]), else the platform cache directory + `pybundle`
//!    (`~/.cache/pybundle` on Linux). It and every directory above it must be owned by root or
//!    the current user and not writable by other users (sticky directories such as `/tmp`
//!    excepted when the next directory is ours), else [`Error::Cache`] names the directory.
//!    Directories we create are `0700`; the root is opened once and everything below is done
//!    relative to it, never through a symlink.
//! 2. **Fast path**: take a *shared* lock on `<root>/<name>-<id16>.lock` (a `0600` file of
//!    ours; waits are bounded by [`Bundle::lock_timeout`]) and read
//!    `<root>/<name>-<id16>/.pybundle/complete`; if it holds the bundle's id (the sha256 of the
//!    archive's content) and the hash of its manifest, the bundle is ready.
//! 3. **Slow path**: take the lock *exclusively* (so of many processes starting together
//!    exactly one extracts and the others wait), check the marker again, remove temporary
//!    directories left by killed extractions, then stream zstd → tar straight from the
//!    embedded bytes into a fresh private `.tmp-*` directory beside the target. Every entry
//!    is written by this crate: absolute paths, `..`, writes through symlinks, symlinks or
//!    hard links leading outside, and devices or fifos are refused ([`Error::UnsafeEntry`]);
//!    path lengths and depth, entry count, sizes and the zstd window are limited
//!    ([`Error::ArchiveLimit`]); no mode keeps group or other write; the content must hash to
//!    the id.
//! 4. **Relocate**: the conda prefix holds its build-time path inside files; each file the
//!    manifest lists is rewritten for the new prefix (text: every occurrence, shebangs that
//!    grow past the kernel limit become a `/bin/sh` trampoline; binary: inside each C string,
//!    NUL-padded so the length never changes).
//! 5. **Commit**: write the manifest and the marker (flushed to disk), rename the temporary
//!    directory into place, downgrade to a shared lock. A process killed at any point leaves
//!    only a `.tmp-*` directory, which is never trusted and is removed by the next extraction.
//! 6. **Clean up**: other versions of the same application that no running process uses (no
//!    shared lock held) and that the same program extracted are removed — renamed to a trash
//!    name first, so a half-deleted directory never looks complete. Turn this off with
//!    [`Bundle::remove_old_versions`].
//!
//! With [`Bundle::verify`] every start also compares the extracted files with the archive
//! (decompressed again; relocated files compared after relocating them the same way), looks
//! for added files that change what Python runs, and repairs what differs: the marker is removed first, then the bundle is extracted again once no other
//! process uses it (waiting at most [`Bundle::repair_wait`], else [`Error::Damaged`]).
//!
//! The returned [`Environment`] holds the shared lock for its lifetime, so another version's
//! cleanup never removes a bundle that is in use; [`Environment::check_location`] checks,
//! right before a process starts, that the bundle is still where it was made ready. Progress of the first run is reported
//! through [`Bundle::on_progress`]; the library itself never prints.
//!
//! Environment variables read by the first run:
//! - `PYBUNDLE_CACHE_DIR`: the cache root, overriding every other choice.
//! - `PYBUNDLE_TEST_EXTRACT_LOG` (test hook): when set to a file, every extraction appends one
//!   line to it, so tests count extractions across processes instead of assuming them.

#![deny(missing_docs)]
// Library functions past 80 lines (clippy.toml) are split along their steps (issue 19);
// inline tests are out of its scope.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod format;

mod array;
mod blocking;
mod buffer;
mod bundle;
mod cache;
mod child;
pub mod dev;
mod embed;
mod environment;
mod error;
mod extract;
mod logs;
// Entry points for `fuzz/`; compiled in tests too so its unit test keeps them honest.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod protocol;
mod relocate;
mod script;
mod sys;
mod verify;
mod worker;

#[cfg(test)]
mod readme;

pub use array::{Element, NdArray};
pub use buffer::{Buffer, BufferRef};
pub use bundle::{manifest_of, Bundle};
pub use embed::{find_in_executable, trailer, TRAILER_LEN};
pub use environment::Environment;
pub use error::{Error, Report, Result};
pub use extract::Progress;
pub use protocol::PythonError;
pub use script::{Script, ScriptOutput};
pub use worker::{
    CallHandle, Kwargs, OnTimeout, Request, Starting, Worker, WorkerBuilder, WorkerEvent,
    WorkerPool,
};

/// The `pybundle` Python package (the Python half of the protocol), shipped in every bundle
/// under [`format::PYTHON_PKG_DIR`].
pub static PYTHON_PACKAGE: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/python");
