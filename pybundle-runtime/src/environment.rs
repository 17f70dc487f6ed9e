//! A ready Python environment: the interpreter, the prefix, the scripts and the `pybundle`
//! package, plus the variables every child process gets.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// A Python environment ready to run: an extracted bundle or, in development builds, the pixi
/// environment in place.
///
/// Every process the runtime starts is built from [`Environment::python`]: the bundled
/// interpreter in isolated mode (`-I`), the prefix's `bin` first on `PATH`, `CONDA_PREFIX` set,
/// and the activation variables recorded at build time.
#[derive(Clone, Debug)]
pub struct Environment {
    pub(crate) root: PathBuf,
    pub(crate) prefix: PathBuf,
    pub(crate) interpreter: PathBuf,
    pub(crate) scripts: PathBuf,
    pub(crate) lib: PathBuf,
    pub(crate) vars: BTreeMap<String, String>,
    /// The shared lock on an extracted bundle, held while any clone lives so that another
    /// version's cleanup never removes a bundle in use (`None` for [`Environment::from_parts`]).
    #[allow(dead_code)] // held, never read: dropping the last clone releases the lock
    pub(crate) lock: Option<std::sync::Arc<std::fs::File>>,
    /// Where [`Bundle::ready`](crate::Bundle::ready) found the bundle directory, for
    /// [`Environment::check_location`] (`None` for [`Environment::from_parts`]).
    pub(crate) location: Option<Location>,
}

/// The bundle directory as `ready()` checked it: its cache root, its name there, and the
/// identity (device, inode) of the directory it opened.
#[derive(Clone, Debug)]
pub(crate) struct Location {
    pub root: PathBuf,
    pub dir_name: String,
    pub dev: u64,
    pub ino: u64,
}

impl Environment {
    /// Describes an environment from its parts, for tests and tools that manage the prefix
    /// themselves. `lib` is the directory that holds the `pybundle` Python package.
    pub fn from_parts(
        prefix: impl Into<PathBuf>,
        interpreter: impl Into<PathBuf>,
        scripts: impl Into<PathBuf>,
        lib: impl Into<PathBuf>,
    ) -> Self {
        let prefix = prefix.into();
        Self {
            root: prefix
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| prefix.clone()),
            prefix,
            interpreter: interpreter.into(),
            scripts: scripts.into(),
            lib: lib.into(),
            vars: BTreeMap::new(),
            lock: None,
            location: None,
        }
    }

    /// Checks that the bundle directory is still the one [`Bundle::ready`](crate::Bundle::ready)
    /// made ready, on a path that still passes its trust checks (no directory on the way
    /// owned or writable by another user); [`Error::Moved`] otherwise. [`Environment::command`],
    /// [`Environment::script`] and workers call it before each process they start; call it
    /// right before starting a process of your own (from [`Environment::python`]): the process
    /// is started by path, and this makes sure the path still leads where it did. It costs
    /// less than one warm `ready()` (tens of µs; BENCHMARKS.md's "Runtime start costs" rows),
    /// nothing next to starting an interpreter. An environment from
    /// [`Environment::from_parts`] has nothing to check.
    pub fn check_location(&self) -> Result<()> {
        match &self.location {
            None => Ok(()),
            Some(l) => crate::cache::check_location(&l.root, &l.dir_name, l.dev, l.ino),
        }
    }

    /// Adds (or replaces) a variable given to every process started from this environment.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The directory the bundle was extracted to (holds `env/`, `scripts/`, `lib/`); in
    /// development mode the pixi project's root, which `${BUNDLE}` stands for.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The conda prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The interpreter.
    pub fn interpreter(&self) -> &Path {
        &self.interpreter
    }

    /// The directory of the application's scripts.
    pub fn scripts_dir(&self) -> &Path {
        &self.scripts
    }

    /// The directory holding the `pybundle` Python package.
    pub fn lib_dir(&self) -> &Path {
        &self.lib
    }

    /// The variables given to every child process (activation plus application additions).
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The path of `scripts/<name>.py`. `name` must be one relative path inside the scripts
    /// folder (`report`, `tools/report.py`): an absolute path, a `..` or `.` component, an
    /// empty component or a NUL byte is [`Error::ScriptName`].
    pub fn script_path(&self, name: &str) -> Result<PathBuf> {
        check_script_name(name)?;
        let file = if name.ends_with(".py") {
            name.to_owned()
        } else {
            format!("{name}.py")
        };
        Ok(self.scripts.join(file))
    }

    /// A [`Command`] for the bundled interpreter, isolated (`-I`), with `PATH`,
    /// `CONDA_PREFIX` and the activation variables set. No shell is involved: add arguments
    /// with [`Command::arg`].
    pub fn python(&self) -> Command {
        let mut cmd = Command::new(&self.interpreter);
        cmd.arg("-I");
        cmd.env("PATH", self.search_path());
        cmd.env("CONDA_PREFIX", &self.prefix);
        for (k, v) in &self.vars {
            cmd.env(k, compose(k, v, std::env::var(k).ok().as_deref()));
        }
        cmd
    }

    /// A [`Command`] that runs `scripts/<name>.py` directly (no protocol), for callers who
    /// want raw control over the child; `name` as for [`Environment::script_path`]. The
    /// bundle's location is checked first ([`Environment::check_location`]).
    pub fn command(&self, script: &str) -> Result<Command> {
        let path = self.script_path(script)?;
        self.check_location()?;
        let mut cmd = self.python();
        cmd.arg(path);
        Ok(cmd)
    }

    fn search_path(&self) -> OsString {
        let bin = if cfg!(windows) {
            self.prefix.clone()
        } else {
            self.prefix.join("bin")
        };
        let mut paths = vec![bin];
        if cfg!(windows) {
            paths.push(self.prefix.join("Scripts"));
            paths.push(self.prefix.join("Library").join("bin"));
        }
        if let Some(existing) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&existing));
        }
        std::env::join_paths(paths).unwrap_or_default()
    }
}

/// One relative path inside the scripts folder, or why not.
fn check_script_name(name: &str) -> Result<()> {
    let bad = |reason: &'static str| {
        Err(Error::ScriptName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.contains('\0') {
        return bad("it holds a NUL byte");
    }
    if name.starts_with('/') || name.starts_with('\\') || Path::new(name).is_absolute() {
        return bad("it is an absolute path");
    }
    // Both separators: on Windows either one separates, and `a\..` must not slip through.
    for part in name.split(['/', '\\']) {
        match part {
            "" => return bad("it has an empty path component"),
            "." | ".." => return bad("it has a `.` or `..` component"),
            p if p.contains(':') && cfg!(windows) => return bad("it names a drive or stream"),
            _ => {}
        }
    }
    Ok(())
}

/// Fills `${NAME}` in the value of variable `NAME` with this machine's `current` value (how
/// activation's `PATH` additions join the target's `PATH`); unset or empty, the reference goes
/// with one adjacent separator.
pub(crate) fn compose(name: &str, value: &str, current: Option<&str>) -> String {
    let self_ref = format!("${{{name}}}");
    if !value.contains(&self_ref) {
        return value.to_owned();
    }
    match current.filter(|c| !c.is_empty()) {
        Some(c) => value.replace(&self_ref, c),
        None => {
            let sep = if cfg!(windows) { ";" } else { ":" };
            value
                .replace(&format!("{sep}{self_ref}"), "")
                .replace(&format!("{self_ref}{sep}"), "")
                .replace(&self_ref, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_script_name, compose};

    #[test]
    fn script_names_stay_inside_the_scripts_folder() {
        for ok in ["hello", "hello.py", "tools/report", "a/b/c.py", "x..y"] {
            assert!(check_script_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../../x",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            "..",
            "a\\..\\b",
            "a\0b",
        ] {
            let err = check_script_name(bad).unwrap_err();
            assert!(err.to_string().contains("not allowed"), "{bad}: {err}");
        }
    }

    #[test]
    fn self_references_take_this_machines_value() {
        assert_eq!(
            compose("PATH", "/b/bin:${PATH}", Some("/usr/bin")),
            "/b/bin:/usr/bin"
        );
        assert_eq!(compose("PATH", "/b/bin:${PATH}", None), "/b/bin");
        assert_eq!(compose("X", "${X}:/b/x", Some("")), "/b/x");
        assert_eq!(compose("X", "${PATH}/y", Some("/z")), "${PATH}/y");
    }
}
