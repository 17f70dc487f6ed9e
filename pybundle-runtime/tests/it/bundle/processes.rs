//! Several processes: sixteen first runs at once, and a first run killed halfway.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pybundle_runtime::Bundle;

use super::*;

const CHILD_ENV: &str = "PYBUNDLE_IT_CHILD";

/// Not a test on its own: the body run by child processes of the tests below (re-executing
/// this test binary). Without the variable it does nothing.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let archive = PathBuf::from(std::env::var("PYBUNDLE_IT_ARCHIVE").unwrap());
    let go = std::env::var_os("PYBUNDLE_IT_GO").map(PathBuf::from);
    let bundle = Bundle::from_file(&archive).unwrap();
    let bundle = match role.as_str() {
        "ready" => bundle,
        "pause-halfway" => {
            let signal = go.clone().unwrap();
            bundle.on_progress(move |p| {
                if p.entries_done == p.entries_total / 2 {
                    std::fs::write(&signal, "halfway").unwrap();
                    std::thread::sleep(Duration::from_secs(60));
                }
            })
        }
        other => panic!("unknown role {other}"),
    };
    if role == "ready" {
        // Start together: wait for the go file.
        let go = go.unwrap();
        while !go.exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let env = bundle.ready().unwrap();
    assert!(env.interpreter().exists());
    println!("CHILD-OK {}", env.root().display());
}

fn child(role: &str, archive: &Path, cache: &Path, go: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "bundle::processes::child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, role)
    .env("PYBUNDLE_IT_ARCHIVE", archive)
    .env("PYBUNDLE_IT_GO", go)
    .env("PYBUNDLE_CACHE_DIR", cache)
    .env("PYBUNDLE_TEST_EXTRACT_LOG", log);
    cmd
}

/// A bundle with `files` files of `size` pseudo-random (incompressible) bytes each.
fn big(name: &str, files: usize, size: usize) -> Vec<u8> {
    let mut spec = sample(name, "big");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..files {
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        spec.entries
            .push(E::File(format!("env/data/blob{i:04}.bin"), data, 0o644));
    }
    build(&spec)
}

#[test]
fn sixteen_processes_extract_once() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive, big("race", 40, 256 * 1024)).unwrap();
    let (cache, go, log) = (
        tmp.path().join("cache"),
        tmp.path().join("go"),
        tmp.path().join("log"),
    );
    let children: Vec<_> = (0..16)
        .map(|_| {
            child("ready", &archive, &cache, &go, &log)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, "").unwrap();
    let mut roots = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("CHILD-OK ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("child ran: {stdout}"));
        roots.insert(line.to_owned());
    }
    assert_eq!(roots.len(), 1, "all used one directory: {roots:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.lines().count(), 1, "exactly one extraction:\n{log}");
    assert!(list(&cache)
        .iter()
        .all(|p| !p.starts_with(".tmp") && !p.starts_with(".trash")));
}

#[test]
fn a_killed_extraction_leaves_nothing_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive, big("killed", 200, 1024 * 1024)).unwrap();
    let (cache, signal, log) = (
        tmp.path().join("cache"),
        tmp.path().join("halfway"),
        tmp.path().join("log"),
    );
    let mut c = child("pause-halfway", &archive, &cache, &signal, &log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !signal.exists() {
        assert!(Instant::now() < deadline, "the child never got halfway");
        assert!(c.try_wait().unwrap().is_none(), "the child exited early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = list(&cache);
    assert!(
        before.iter().any(|p| p.starts_with(".tmp-killed-")),
        "mid-extraction: {before:?}"
    );
    assert!(
        before.iter().filter(|p| p.ends_with(".bin")).count() >= 90,
        "{}",
        before.len()
    );
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();

    let bundle = Bundle::from_file(&archive).unwrap().cache_dir(&cache);
    let started = Instant::now();
    let env = bundle.ready().unwrap();
    eprintln!("200 MB first run after a kill: {:?}", started.elapsed());
    assert_eq!(
        std::fs::read_dir(env.prefix().join("data"))
            .unwrap()
            .count(),
        200
    );
    let after = list(&cache);
    assert!(
        after
            .iter()
            .all(|p| !p.starts_with(".tmp") && !p.starts_with(".trash")),
        "{after:?}"
    );
}
