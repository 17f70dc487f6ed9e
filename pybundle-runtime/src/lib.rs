//! Run Python that `cargo pybundle build` embedded into this executable.
//!
//! (Crate documentation with a runnable example is written as the API settles.)

#![deny(missing_docs)]

pub mod format;

mod bundle;
mod cache;
mod child;
mod embed;
mod environment;
mod error;
mod extract;
pub mod protocol;
mod relocate;
mod script;

pub use bundle::{manifest_of, Bundle};
pub use embed::{find_in_executable, split_payload};
pub use environment::Environment;
pub use error::{Error, Result};
pub use extract::Progress;
pub use protocol::PythonError;
pub use script::{Script, ScriptOutput};

/// The `pybundle` Python package (the Python half of the protocol), shipped in every bundle
/// under [`format::PYTHON_PKG_DIR`].
pub static PYTHON_PACKAGE: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/python");
