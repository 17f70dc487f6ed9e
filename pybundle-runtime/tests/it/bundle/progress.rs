//! What a first run prints: nothing, unless the application asks with `progress_to_stderr`,
//! which says so in one line when a first run takes more than half a second and in one more
//! when it is done. Each run is a child process (this test binary again) whose stdout and
//! stderr are read around its `ready()`. A slow first run is made by holding the bundle's
//! lock for 700 ms while the child waits for it.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use pybundle_runtime::Bundle;

use super::*;

const CHILD: &str = "PYBUNDLE_PROGRESS_CHILD";
const ARCHIVE: &str = "PYBUNDLE_PROGRESS_ARCHIVE";
const BEGIN: &str = "PROGRESS-BEGIN";
const END: &str = "PROGRESS-END";

/// Not a test on its own: the child's body. Marks where `ready()` starts and ends on both
/// streams, so the harness's own output is left out.
#[test]
fn progress_child() {
    let Ok(role) = std::env::var(CHILD) else {
        return;
    };
    let bundle = Bundle::from_file(std::env::var_os(ARCHIVE).unwrap()).unwrap();
    let bundle = match role.as_str() {
        "silent" => bundle,
        "reporter" => bundle.progress_to_stderr(),
        // Asked for long before the first run starts.
        "reporter-set-early" => {
            let bundle = bundle.progress_to_stderr();
            std::thread::sleep(Duration::from_millis(700));
            bundle
        }
        other => panic!("unknown role {other}"),
    };
    println!("{BEGIN}");
    eprintln!("{BEGIN}");
    let env = bundle.ready();
    println!("{END}");
    eprintln!("{END}");
    assert!(env.unwrap().interpreter().exists());
}

/// A 3 MiB bundle, written to `dir`.
fn archive(dir: &Path) -> PathBuf {
    let mut spec = sample("progress", "x");
    spec.entries
        .push(E::File("env/data.bin".into(), vec![7; 3 << 20], 0o644));
    let path = dir.join("progress.tar.zst");
    std::fs::write(&path, build(&spec)).unwrap();
    path
}

/// What a child in `role` wrote to stdout and to stderr during its `ready()` (a first run
/// into `cache`), holding the bundle's lock for 700 ms first when `slow`.
fn first_run(role: &str, archive: &Path, cache: &Path, slow: bool) -> (String, String) {
    let lock = slow.then(|| {
        let dir = Bundle::from_file(archive)
            .unwrap()
            .cache_dir(cache)
            .target_dir()
            .unwrap();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(cache)
            .unwrap();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(format!("{}.lock", dir.display()))
            .unwrap();
        fs4::FileExt::lock(&file).unwrap();
        file
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bundle::progress::progress_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, role)
        .env(ARCHIVE, archive)
        .env("PYBUNDLE_CACHE_DIR", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    while !out.contains(BEGIN) {
        let n = stdout.read_line(&mut out).unwrap();
        assert!(n > 0, "the child ended before its ready(): {out}");
    }
    if let Some(lock) = lock {
        // The child is in ready(), waiting for this lock.
        std::thread::sleep(Duration::from_millis(700));
        drop(lock);
    }
    stdout.read_to_string(&mut out).unwrap();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(done.status.success(), "{role}: {out}\n{err}");
    let dir = Bundle::from_file(archive)
        .unwrap()
        .cache_dir(cache)
        .target_dir()
        .unwrap();
    assert!(dir.join("env/data.bin").is_file(), "{role}: no first run");
    (between(&out), between(&err))
}

/// The text from the line after [`BEGIN`] up to [`END`].
fn between(text: &str) -> String {
    let start = text.find(BEGIN).expect("begin marker") + BEGIN.len() + 1;
    let end = text.find(END).expect("end marker");
    text[start..end].to_owned()
}

#[test]
fn a_first_run_prints_nothing_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = archive(tmp.path());
    let (out, err) = first_run("silent", &archive, &tmp.path().join("cache"), true);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
}

#[test]
fn progress_to_stderr_says_when_a_slow_first_run_starts_and_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = archive(tmp.path());
    let (out, err) = first_run("reporter", &archive, &tmp.path().join("cache"), true);
    assert_eq!(out, "", "nothing on stdout");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(
        lines[0],
        "progress: first run, unpacking its Python environment (3 MiB)..."
    );
    let secs: f64 = lines[1]
        .strip_prefix("progress: ready after ")
        .and_then(|l| l.strip_suffix(" s"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", lines[1]));
    assert!((0.5..60.0).contains(&secs), "{}", lines[1]);
}

/// Quick first runs print nothing, also when the reporter was set up long before.
#[test]
fn progress_to_stderr_is_silent_for_a_quick_first_run() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = archive(tmp.path());
    for role in ["reporter", "reporter-set-early"] {
        let cache = tmp.path().join(format!("cache-{role}"));
        let (out, err) = first_run(role, &archive, &cache, false);
        assert_eq!((out.as_str(), err.as_str()), ("", ""), "{role}");
    }
}
