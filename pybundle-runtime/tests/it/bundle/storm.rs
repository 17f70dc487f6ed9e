//! Kill at any point, and many processes at once: first runs SIGKILLed at random moments
//! (every next run succeeds with a whole tree), 32 processes on an empty cache ten times over
//! (one extraction each time), repairs SIGKILLed at random moments, and many verifying
//! processes on a damaged bundle (one repair).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pybundle_runtime::Bundle;

use super::damage::snapshot;
use super::*;

const ROLE_ENV: &str = "PYBUNDLE_IT_STORM";

/// Not a test on its own: the body of the child processes below (this test binary run
/// again). Without the variable it does nothing.
#[test]
fn storm_child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let archive = PathBuf::from(std::env::var("PYBUNDLE_IT_ARCHIVE").unwrap());
    let bundle = Bundle::from_file(&archive)
        .unwrap()
        .verify(role == "verify");
    // The barrier: say "ready" with a file, then block on stdin (a pipe the parent holds
    // open) until the parent closes it, which releases every child at the same moment.
    if let Some(ready) = std::env::var_os("PYBUNDLE_IT_READY").map(PathBuf::from) {
        std::fs::write(ready.join(std::process::id().to_string()), "").unwrap();
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest).unwrap();
    }
    let env = bundle.ready().unwrap_or_else(|e| panic!("ready: {e}"));
    assert!(env.interpreter().exists());
    println!("CHILD-OK {}", env.root().display());
}

fn child(role: &str, archive: &Path, cache: &Path, log: &Path, ready: Option<&Path>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "bundle::storm::storm_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, role)
    .env("PYBUNDLE_IT_ARCHIVE", archive)
    .env("PYBUNDLE_CACHE_DIR", cache)
    .env("PYBUNDLE_TEST_EXTRACT_LOG", log)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    match ready {
        Some(ready) => cmd.env("PYBUNDLE_IT_READY", ready),
        None => cmd.env_remove("PYBUNDLE_IT_READY"),
    };
    cmd
}

/// The path a child printed after `CHILD-OK`; panics with its output if it failed.
fn wait_ok(c: Child) -> String {
    let out = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-OK ").map(|(_, root)| root))
        .unwrap_or_else(|| panic!("the child did not run: {stdout}"))
        .to_owned()
}

/// xorshift64: enough randomness to place kills; the seed is printed and can be replayed
/// with `PYBUNDLE_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        Rng::seeded(std::env::var("PYBUNDLE_TEST_SEED").ok())
    }

    /// From the variable's value when it is a number, else from the clock; printed.
    fn seeded(value: Option<String>) -> Rng {
        let seed = value
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            .max(1);
        eprintln!("PYBUNDLE_TEST_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, max]`.
    fn duration(&mut self, max: Duration) -> Duration {
        let micros = max.as_micros() as u64;
        Duration::from_micros(self.next() % (micros + 1))
    }
}

/// What `PYBUNDLE_TEST_SEED` gives back: the same delays, drawn within the same bound (the
/// bound is how long an uninterrupted run took, so on another run the moments move with it).
#[test]
fn a_seed_repeats_the_delays_drawn_within_the_same_bound() {
    let draw = |value: &str| {
        let mut rng = Rng::seeded(Some(value.to_owned()));
        (0..20)
            .map(|_| rng.duration(Duration::from_millis(700)))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw("12345"), draw("12345"));
    assert_ne!(draw("12345"), draw("12346"));
}

/// A bundle with many small files, relocated text files (so kills land in relocation too)
/// and some bigger blobs.
fn archive(name: &str, small: usize, relocated: usize, blobs: usize) -> Vec<u8> {
    let mut spec = sample(name, "storm");
    let ph = placeholder();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut noise = |len: usize| -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    };
    for i in 0..small {
        if i % 100 == 0 {
            spec.entries
                .push(E::Dir(format!("env/lib/pkg{}/", i / 100)));
        }
        let len = 512 + (i * 37) % 4096;
        spec.entries.push(E::File(
            format!("env/lib/pkg{}/mod{i}.py", i / 100),
            noise(len),
            0o644,
        ));
    }
    for i in 0..relocated {
        let path = format!("env/share/text{i}.txt");
        let line = format!("prefix={ph}/lib\n");
        spec.entries
            .push(E::File(path.clone(), line.repeat(200).into_bytes(), 0o644));
        spec.relocations.push(Relocation {
            path,
            placeholder: ph.clone(),
            mode: FileMode::Text,
        });
    }
    for i in 0..blobs {
        spec.entries.push(E::File(
            format!("env/data/blob{i}.bin"),
            noise(1 << 20),
            0o644,
        ));
    }
    spec.relocations.sort();
    build(&spec)
}

fn top(root: &Path) -> Vec<String> {
    list(root)
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect()
}

#[test]
fn sigkill_at_twenty_random_moments() {
    let tmp = tempfile::tempdir().unwrap();
    let archive_path = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive_path, archive("storm", 600, 30, 3)).unwrap();
    let (cache, log) = (tmp.path().join("cache"), tmp.path().join("log"));
    let bundle = Bundle::from_file(&archive_path)
        .unwrap()
        .cache_dir(&cache)
        .verify(true);
    let dir = bundle.target_dir().unwrap();

    // One uninterrupted first run in a child sizes the kill delays; its tree is the reference.
    let started = Instant::now();
    let c = child("ready", &archive_path, &cache, &log, None)
        .spawn()
        .unwrap();
    wait_ok(c);
    let whole = started.elapsed();
    let reference = snapshot(&dir);
    assert!(reference.len() > 400);
    std::fs::remove_dir_all(&cache).unwrap();
    eprintln!("an uninterrupted first run (child process) took {whole:?}");

    let mut rng = Rng::from_env();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    // Twenty rounds, and more (up to 80) until ten kills landed mid-extraction: random moments
    // on a loaded machine may fall mostly into process start-up.
    const MID: &str = "killed while extracting or relocating";
    for round in 0..80 {
        if round >= 20 && seen.get(MID).copied().unwrap_or(0) >= 10 {
            break;
        }
        let delay = rng.duration(whole);
        let mut c = child("ready", &archive_path, &cache, &log, None)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        c.kill().unwrap(); // SIGKILL; harmless if it already exited
        let status = c.wait().unwrap();
        let names = top(&cache);
        let complete = dir.join(".pybundle/complete").exists();
        let state = if status.success() {
            "finished before the kill"
        } else if complete {
            "killed after the rename into place"
        } else if names.iter().any(|n| n.starts_with(".tmp-")) {
            MID
        } else {
            "killed before extracting (start-up, lock)"
        };
        *seen.entry(state).or_default() += 1;

        let (calls, progress) = counter();
        let env = bundle
            .clone()
            .on_progress(progress)
            .ready()
            .unwrap_or_else(|e| panic!("round {round} ({state}, {delay:?}): {e}"));
        if complete {
            assert_eq!(
                calls.load(Ordering::Relaxed),
                0,
                "round {round}: a complete bundle left by the killed run is used, not redone"
            );
        }
        assert_eq!(
            snapshot(env.root()),
            reference,
            "round {round} ({state}, {delay:?})"
        );
        let left: Vec<_> = top(&cache)
            .into_iter()
            .filter(|n| n.starts_with(".tmp") || n.starts_with(".trash"))
            .collect();
        assert!(left.is_empty(), "round {round}: {left:?}");
        drop(env);
        std::fs::remove_dir_all(&cache).unwrap();
    }
    eprintln!("kills: {seen:?}");
    assert!(
        seen.get(MID).copied().unwrap_or(0) >= 10,
        "fewer than ten kills landed mid-extraction: {seen:?}"
    );
}

#[test]
fn sigkill_during_a_repair_at_twenty_random_moments() {
    let tmp = tempfile::tempdir().unwrap();
    let archive_path = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive_path, archive("mend", 400, 20, 2)).unwrap();
    let (cache, log) = (tmp.path().join("cache"), tmp.path().join("log"));
    let bundle = Bundle::from_file(&archive_path)
        .unwrap()
        .cache_dir(&cache)
        .verify(true);
    let dir = bundle.ready().unwrap().root().to_path_buf();
    let reference = snapshot(&dir);
    let damage = || std::fs::write(dir.join("env/data/blob0.bin"), b"damaged").unwrap();

    // One uninterrupted repair (verify, find, remove the marker, extract) sizes the delays.
    damage();
    let started = Instant::now();
    wait_ok(
        child("verify", &archive_path, &cache, &log, None)
            .spawn()
            .unwrap(),
    );
    let whole = started.elapsed();
    assert_eq!(snapshot(&dir), reference);
    eprintln!("an uninterrupted repair (child process) took {whole:?}");

    let mut rng = Rng::from_env();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..20 {
        damage();
        let delay = rng.duration(whole);
        let mut c = child("verify", &archive_path, &cache, &log, None)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        c.kill().unwrap();
        let status = c.wait().unwrap();
        let state = if status.success() {
            "finished before the kill"
        } else if dir.join(".pybundle/complete").exists() {
            "killed with the marker still there (verifying, or repaired)"
        } else {
            "killed after removing the marker"
        };
        *seen.entry(state).or_default() += 1;
        let env = bundle
            .ready()
            .unwrap_or_else(|e| panic!("round {round} ({state}, {delay:?}): {e}"));
        assert_eq!(snapshot(env.root()), reference, "round {round} ({state})");
        let left: Vec<_> = top(&cache)
            .into_iter()
            .filter(|n| n.starts_with(".tmp") || n.starts_with(".trash"))
            .collect();
        assert!(left.is_empty(), "round {round}: {left:?}");
    }
    eprintln!("kills during repairs: {seen:?}");
}

/// A pipe (read end, write end), both close-on-exec: the children get the read end as stdin,
/// and only this process ever holds the write end.
fn gate() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which has room for two.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and nothing else owns them.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// Starts `n` children at once (a barrier: each says it is ready, then all are released
/// together by closing the pipe on their stdin) and checks that all succeed in one directory;
/// returns the number of extractions logged.
fn at_once(n: usize, roles: &[&str], archive: &Path, cache: &Path, scratch: &Path) -> usize {
    let (ready, log) = (scratch.join("ready"), scratch.join("log"));
    let _ = std::fs::remove_dir_all(&ready);
    std::fs::create_dir_all(&ready).unwrap();
    let _ = std::fs::remove_file(&log);
    let (gate, gate_writer) = gate();
    let children: Vec<_> = (0..n)
        .map(|i| {
            child(roles[i % roles.len()], archive, cache, &log, Some(&ready))
                .stdin(gate.try_clone().unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(gate);
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&ready).unwrap().count() < n {
        assert!(
            Instant::now() < deadline,
            "not all {n} children reached the barrier"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(gate_writer);
    let roots: BTreeSet<String> = children.into_iter().map(wait_ok).collect();
    assert_eq!(roots.len(), 1, "all used one directory: {roots:?}");
    let left: Vec<_> = top(cache)
        .into_iter()
        .filter(|n| n.starts_with(".tmp") || n.starts_with(".trash"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn thirty_two_processes_ten_times_extract_once_each_time() {
    let tmp = tempfile::tempdir().unwrap();
    let archive_path = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive_path, archive("crowd", 400, 10, 3)).unwrap();
    let bundle = Bundle::from_file(&archive_path).unwrap();
    for round in 0..10 {
        let cache = tmp.path().join(format!("cache{round}"));
        // Half of them verify: they check the tree the other process just extracted.
        let n = at_once(32, &["ready", "verify"], &archive_path, &cache, tmp.path());
        assert_eq!(n, 1, "round {round}: exactly one extraction");
        let (calls, progress) = counter();
        bundle
            .clone()
            .cache_dir(&cache)
            .verify(true)
            .on_progress(progress)
            .ready()
            .unwrap();
        assert_eq!(
            calls.load(Ordering::Relaxed),
            0,
            "round {round}: the tree verifies"
        );
        std::fs::remove_dir_all(&cache).unwrap();
    }
}

#[test]
fn many_verifiers_repair_a_damaged_bundle_once() {
    let tmp = tempfile::tempdir().unwrap();
    let archive_path = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive_path, archive("repair", 400, 10, 3)).unwrap();
    let cache = tmp.path().join("cache");
    let bundle = Bundle::from_file(&archive_path).unwrap().cache_dir(&cache);
    let dir = bundle.ready().unwrap().root().to_path_buf();
    let good = snapshot(&dir);
    for round in 0..3 {
        std::fs::write(dir.join("env/data/blob1.bin"), b"damaged").unwrap();
        let n = at_once(12, &["verify"], &archive_path, &cache, tmp.path());
        assert_eq!(n, 1, "round {round}: one repair, the others waited for it");
        assert_eq!(snapshot(&dir), good, "round {round}");
    }
}
