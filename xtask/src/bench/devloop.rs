//! Script edit → next reply: development mode (`cargo run`, the scripts in place) against the
//! repack path (`cargo pybundle build` writing a new bundle, whose first run extracts it).

use super::measure::row;
use super::{timed, Setup, Topic};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Appends a comment line to a script and puts the original back when dropped, so the bench
/// leaves the examples as it found them.
struct Edit {
    path: PathBuf,
    original: Vec<u8>,
    n: usize,
}

impl Edit {
    fn new(path: PathBuf) -> Result<Edit> {
        let original = fs_err::read(&path)?;
        Ok(Edit {
            path,
            original,
            n: 0,
        })
    }

    /// A new content: the original plus a distinct comment.
    fn next(&mut self) -> Result<()> {
        self.n += 1;
        let mut text = self.original.clone();
        text.extend_from_slice(format!("# bench edit {}\n", self.n).as_bytes());
        fs_err::write(&self.path, text)?;
        Ok(())
    }
}

impl Drop for Edit {
    fn drop(&mut self) {
        if let Err(e) = fs_err::write(&self.path, &self.original) {
            eprintln!("bench: cannot restore {}: {e}", self.path.display());
        }
    }
}

/// `cargo-pybundle pybundle <cmd> -q -p hello` in the dev profile, with the test toolchain.
fn cli_dev(s: &Setup, cmd: &str) -> Command {
    let mut c = Command::new(&s.cli);
    c.args(["pybundle", cmd, "-q", "-p", "hello", "--manifest-path"])
        .arg(s.root.join("examples/hello/Cargo.toml"))
        .current_dir(&s.root)
        .env("PYBUNDLE_PIXI", &s.pixi)
        .env(
            "PYBUNDLE_CHANNEL_MIRRORS",
            format!("conda-forge={}", s.channel),
        );
    c
}

pub fn script_edit(s: &Setup) -> Result<Topic> {
    let cache = s.work.join("edit-cache");
    let bundled = s.target.join("debug/bundled/hello");
    // Once, untimed: the debug build and its development record.
    timed(
        &mut cli_dev(s, "build"),
        "cargo pybundle build -p hello (dev)",
    )?;
    let mut edit = Edit::new(s.root.join("examples/hello/python/hello.py"))?;
    let cargo_run = || {
        let mut c = Command::new(crate::tools::cargo());
        c.args(["run", "-q", "-p", "hello", "--", "bench"])
            .current_dir(&s.root)
            .env_remove("PYBUNDLE_ARCHIVE");
        c
    };
    let (mut dev, mut repack) = (Vec::new(), Vec::new());
    for _ in 0..s.slow_runs {
        edit.next()?;
        dev.push(timed(&mut cargo_run(), "cargo run after a script edit")?.0);
        edit.next()?;
        let (build, _) = timed(
            &mut cli_dev(s, "build"),
            "cargo pybundle build after a script edit",
        )?;
        let mut run = Command::new(&bundled);
        run.arg("bench").env("PYBUNDLE_CACHE_DIR", &cache);
        let (first, _) = timed(&mut run, "the bundled program's first run")?;
        repack.push(build + first);
    }
    drop(edit);
    remove_cache(&cache);
    Ok(Topic {
        title: "Script edit → next reply".into(),
        compare: true,
        about: "examples/hello in the dev profile, a comment appended to python/hello.py before \
                each run (the file is restored afterwards). Development mode: `cargo run -p \
                hello` (the plain program runs the pixi environment and the scripts in place: \
                nothing packed, compiled or extracted). Repack path: `cargo pybundle build -p \
                hello` (re-pack, write the bundled copy) plus the bundled program's first run \
                (extracting the new bundle)."
            .into(),
        rows: vec![
            row(
                "development mode: `cargo run`",
                Some("script_edit_dev_s"),
                "s",
                &dev,
            ),
            row(
                "repack: `cargo pybundle build` + first run",
                Some("script_edit_repack_s"),
                "s",
                &repack,
            ),
        ],
    })
}

fn remove_cache(cache: &Path) {
    if cache.exists() {
        // Extracted files are read-only; a failure only leaves scratch space behind.
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(cache)
            .status();
        let _ = fs_err::remove_dir_all(cache);
    }
}
