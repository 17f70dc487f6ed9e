//! Script edit → next reply: development mode (`cargo run`, the scripts in place) against the
//! repack path (`cargo pybundle build` writing a new bundle, whose first run extracts it).

use super::measure::row;
use super::{timed, Setup, Topic};
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// A new content for the script: its original plus a distinct comment.
fn edit(script: &Path, original: &[u8], n: usize) -> Result<()> {
    let mut text = original.to_vec();
    text.extend_from_slice(format!("# bench edit {n}\n").as_bytes());
    fs_err::write(script, text)?;
    Ok(())
}

/// `cargo-pybundle pybundle <cmd> -q -p hello` in the dev profile, with the test toolchain.
fn cli_dev(s: &Setup, cmd: &str) -> Command {
    let mut c = Command::new(&s.cli);
    c.args(["pybundle", cmd, "-q", "-p", "hello", "--manifest-path"])
        .arg(s.examples.join("hello/Cargo.toml"))
        .arg("--target-dir")
        .arg(&s.target)
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
    let script = s.examples.join("hello/python/hello.py");
    let original = fs_err::read(&script)?;
    let cargo_run = || {
        let mut c = Command::new(crate::tools::cargo());
        c.args(["run", "-q", "--manifest-path"])
            .arg(s.examples.join("hello/Cargo.toml"))
            .arg("--target-dir")
            .arg(&s.target)
            .args(["--", "bench"])
            .current_dir(&s.root)
            .env_remove("PYBUNDLE_ARCHIVE");
        c
    };
    let (mut dev, mut repack) = (Vec::new(), Vec::new());
    for i in 0..s.slow_runs {
        edit(&script, &original, 2 * i)?;
        dev.push(timed(&mut cargo_run(), "cargo run after a script edit")?.0);
        edit(&script, &original, 2 * i + 1)?;
        let (build, _) = timed(
            &mut cli_dev(s, "build"),
            "cargo pybundle build after a script edit",
        )?;
        let mut run = Command::new(&bundled);
        run.arg("bench").env("PYBUNDLE_CACHE_DIR", &cache);
        let (first, _) = timed(&mut run, "the bundled program's first run")?;
        repack.push(build + first);
    }
    fs_err::write(&script, &original)?;
    remove_cache(&cache);
    Ok(Topic {
        title: "Script edit → next reply".into(),
        compare: true,
        about: "A copy of examples/hello (under the bench's target dir) in the dev profile, a \
                comment appended to python/hello.py before each run. Development mode: `cargo run -p \
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
