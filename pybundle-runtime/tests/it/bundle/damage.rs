//! Broken caches: an extracted tree damaged after the fact (found by `verify` and repaired), a
//! temporary directory left by a killed run, a read-only cache and a full filesystem (both in
//! a private mount namespace).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pybundle_runtime::{Bundle, Environment, Error};
use sha2::{Digest as _, Sha256};

use super::*;

/// One way to damage the sample bundle, and the entry `verify` must then name.
struct Damage {
    what: &'static str,
    apply: fn(&Path),
    /// The first damaged entry reported, as `<path> (<reason>)` (a prefix of it).
    reported: &'static str,
}

fn damages() -> Vec<Damage> {
    vec![
        Damage {
            what: "a deleted file",
            apply: |d| std::fs::remove_file(d.join("scripts/hello.py")).unwrap(),
            reported: "scripts/hello.py (missing)",
        },
        Damage {
            what: "a truncated relocated binary",
            apply: |d| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("env/lib/libthing.so"))
                    .unwrap();
                f.set_len(20).unwrap();
            },
            reported: "env/lib/libthing.so (20 bytes, not ",
        },
        Damage {
            what: "changed bytes of the same size",
            apply: |d| std::fs::write(d.join("scripts/hello.py"), "print('HELLO')\n").unwrap(),
            reported: "scripts/hello.py (content differs)",
        },
        Damage {
            what: "changed bytes of the same size in a relocated text file",
            apply: |d| {
                let p = d.join("env/etc/conf.txt");
                let mut data = std::fs::read(&p).unwrap();
                let last = data.len() - 2;
                data[last] ^= 0x20;
                std::fs::write(p, data).unwrap();
            },
            reported: "env/etc/conf.txt (content differs)",
        },
        Damage {
            what: "a symlink pointing elsewhere",
            apply: |d| {
                let p = d.join("env/bin/python3");
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink("/usr/bin/python3", &p).unwrap();
            },
            reported: "env/bin/python3 (points to `/usr/bin/python3`, not `python3.11`)",
        },
        Damage {
            what: "a symlink replaced by a file",
            apply: |d| {
                let p = d.join("env/bin/python3");
                std::fs::remove_file(&p).unwrap();
                std::fs::write(&p, "#!/bin/sh\n").unwrap();
            },
            reported: "env/bin/python3 (a file, not a symlink)",
        },
        Damage {
            what: "a file turned into a directory",
            apply: |d| {
                let p = d.join("env/etc/conf.txt");
                std::fs::remove_file(&p).unwrap();
                std::fs::create_dir(&p).unwrap();
            },
            reported: "env/etc/conf.txt (a directory, not a file)",
        },
        Damage {
            what: "a directory turned into a file",
            apply: |d| {
                let p = d.join("env/bin");
                std::fs::remove_dir_all(&p).unwrap();
                std::fs::write(&p, "").unwrap();
            },
            reported: "env/bin (a file, not a directory)",
        },
        Damage {
            what: "an executable made non-executable",
            apply: |d| {
                let p = d.join("env/bin/tool");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            },
            reported: "env/bin/tool (mode 644, not 755)",
        },
        Damage {
            what: "a hard link replaced by a copy",
            apply: |d| {
                let p = d.join("env/lib/libthing-link.so");
                let data = std::fs::read(&p).unwrap();
                std::fs::remove_file(&p).unwrap();
                std::fs::write(&p, data).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            },
            reported: "env/lib/libthing-link.so (no longer the same file as `env/lib/libthing.so`)",
        },
        Damage {
            what: "a file replaced by a fifo",
            apply: |d| {
                let p = d.join("scripts/hello.py");
                std::fs::remove_file(&p).unwrap();
                let status = Command::new("mkfifo").arg(&p).status().unwrap();
                assert!(status.success());
            },
            reported: "scripts/hello.py (a special file, not a file)",
        },
    ]
}

/// What a tree holds: path → kind, mode and content hash (symlinks: their target).
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    list(root)
        .into_iter()
        .map(|rel| {
            let p = root.join(&rel);
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let what = if meta.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                "dir".to_owned()
            } else if !meta.is_file() {
                format!("special {:o}", meta.mode())
            } else {
                format!(
                    "file {:o} {} {}",
                    meta.mode() & 0o777,
                    meta.nlink(),
                    hex(&Sha256::digest(std::fs::read(&p).unwrap()))
                )
            };
            (rel, what)
        })
        .collect()
}

fn ready(bundle: &Bundle) -> (Result<Environment, Error>, u64) {
    let (calls, progress) = counter();
    let res = bundle.clone().on_progress(progress).ready();
    (res, calls.load(Ordering::Relaxed))
}

/// The `tracing` events of one thread: each one's message and other fields, as text.
#[derive(Clone, Default)]
struct Events(Arc<std::sync::Mutex<Vec<BTreeMap<String, String>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[test]
fn damage_found_by_verify_is_logged_with_the_paths() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::from_bytes(build(&sample("logged", "x")))
        .unwrap()
        .cache_dir(tmp.path());
    let dir = bundle.clone().ready().unwrap().root().to_path_buf();
    std::fs::write(dir.join("scripts/hello.py"), "print('changed')\n").unwrap();
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    tracing::subscriber::with_default(subscriber, || bundle.verify(true).ready().unwrap());
    let seen = events.0.lock().unwrap();
    let logged = seen
        .iter()
        .find(|e| {
            e.get("message")
                .is_some_and(|m| m.contains("no longer matches its archive"))
        })
        .unwrap_or_else(|| panic!("no damage event in {seen:#?}"));
    assert_eq!(logged["dir"], dir.display().to_string());
    assert!(logged["damaged"].contains("scripts/hello.py"), "{logged:?}");
}

#[test]
fn verify_finds_each_kind_of_damage_and_repairs_it() {
    let archive: Arc<[u8]> = build(&sample("damage", "x")).into();
    for damage in damages() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = Bundle::from_bytes(archive.clone())
            .unwrap()
            .cache_dir(tmp.path());
        let verified = plain.clone().verify(true);
        let (env, extractions) = ready(&plain);
        let dir = env.unwrap().root().to_path_buf();
        assert!(extractions > 0);
        let good = snapshot(&dir);

        // An intact tree passes (relocated files compared after relocation in memory), and
        // files the archive does not name are allowed.
        std::fs::create_dir(dir.join("scripts/__pycache__")).unwrap();
        std::fs::write(dir.join("scripts/__pycache__/hello.pyc"), "x").unwrap();
        let (env, extractions) = ready(&verified);
        env.unwrap();
        assert_eq!(extractions, 0, "an intact tree is not extracted again");
        std::fs::remove_dir_all(dir.join("scripts/__pycache__")).unwrap();

        (damage.apply)(&dir);
        let damaged = snapshot(&dir);
        assert_ne!(damaged, good, "{}: the damage changed nothing", damage.what);
        let marker_ino = std::fs::metadata(dir.join(".pybundle/complete"))
            .unwrap()
            .ino();

        // Without verify the marker is trusted: nothing is read or rewritten.
        let (env, extractions) = ready(&plain);
        drop(env.unwrap());
        assert_eq!(extractions, 0, "{}", damage.what);
        assert_eq!(snapshot(&dir), damaged, "{}", damage.what);

        // With verify, while another user holds the bundle: a bounded wait, then an error
        // naming the directory, the damage and what to do; the tree is left as it was.
        let user = plain.ready().unwrap();
        let (err, extractions) = ready(&verified.clone().repair_wait(Duration::from_millis(300)));
        let err = err.expect_err(damage.what);
        assert_eq!(extractions, 0);
        match &err {
            Error::Damaged {
                dir: d, damaged, ..
            } => {
                assert_eq!(d, &dir);
                assert!(
                    damaged[0].starts_with(damage.reported),
                    "{}: {damaged:?}",
                    damage.what
                );
            }
            other => panic!("{}: expected Damaged, got {other:?}", damage.what),
        }
        let msg = err.to_string();
        for part in [
            dir.display().to_string(),
            damage.reported.to_owned(),
            "stop them".into(),
            "delete the directory".into(),
        ] {
            assert!(
                msg.contains(&part),
                "{}: `{part}` not in: {msg}",
                damage.what
            );
        }
        assert_eq!(
            std::fs::metadata(dir.join(".pybundle/complete"))
                .unwrap()
                .ino(),
            marker_ino
        );
        drop(user);

        // Unused: repaired by a fresh extraction, and the next verified start finds it whole.
        let (env, extractions) = ready(&verified);
        let env = env.unwrap_or_else(|e| panic!("{}: {e}", damage.what));
        assert!(extractions > 0, "{}: not extracted again", damage.what);
        assert_eq!(env.root(), dir);
        assert_eq!(snapshot(&dir), good, "{}: not repaired", damage.what);
        drop(env);
        let (env, extractions) = ready(&verified);
        env.unwrap();
        assert_eq!(extractions, 0, "{}", damage.what);
        let top: Vec<_> = list(tmp.path())
            .into_iter()
            .filter(|p| !p.contains('/'))
            .collect();
        assert_eq!(top.len(), 2, "{}: {top:?}", damage.what);
    }
}

#[test]
fn a_deleted_marker_or_prefix_means_a_new_extraction() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::from_bytes(build(&sample("nomarker", "x")))
        .unwrap()
        .cache_dir(tmp.path());
    let dir = bundle.ready().unwrap().root().to_path_buf();
    let good = snapshot(&dir);
    std::fs::remove_file(dir.join(".pybundle/complete")).unwrap();
    std::fs::remove_file(dir.join("scripts/hello.py")).unwrap();
    let (env, extractions) = ready(&bundle);
    env.unwrap();
    assert!(
        extractions > 0,
        "no marker: never trusted, even without verify"
    );
    assert_eq!(snapshot(&dir), good);

    // Everything gone but the marker: verify lists every entry.
    std::fs::remove_dir_all(dir.join("env")).unwrap();
    let user = bundle.ready().unwrap();
    let err = bundle
        .clone()
        .verify(true)
        .repair_wait(Duration::ZERO)
        .ready()
        .unwrap_err();
    let Error::Damaged { damaged, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(damaged[0], "env (missing)");
    assert_eq!(damaged.len(), 9, "every entry under env/: {damaged:?}");
    drop(user);
    bundle.clone().verify(true).ready().unwrap();
    assert_eq!(snapshot(&dir), good);
}

#[test]
fn a_stale_temporary_directory_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::from_bytes(build(&sample("stale", "x")))
        .unwrap()
        .cache_dir(tmp.path());
    let dir_name = bundle
        .target_dir()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // What a killed extraction leaves: a private temp dir with a read-only directory inside
    // and a marker (written just before the rename that never came).
    let stale = tmp.path().join(format!(".tmp-{dir_name}-Ab3dEf"));
    std::fs::create_dir_all(stale.join("env/ro")).unwrap();
    std::fs::create_dir_all(stale.join(".pybundle")).unwrap();
    std::fs::write(stale.join("env/ro/file"), "half").unwrap();
    std::fs::write(stale.join(".pybundle/complete"), &bundle.manifest().id[..]).unwrap();
    std::fs::set_permissions(stale.join("env/ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let env = bundle.ready().unwrap();
    assert_eq!(env.root().file_name().unwrap().to_str().unwrap(), dir_name);
    let top: BTreeSet<_> = list(tmp.path())
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(
        top,
        [dir_name.clone(), format!("{dir_name}.lock")].into(),
        "the stale temp is gone"
    );
}

// --- read-only and full filesystems, in a private mount namespace --------------------------

const NS_ENV: &str = "PYBUNDLE_IT_MOUNT_NS";

/// In the parent: runs `test` again inside `unshare --mount` (its mounts vanish with it) and
/// checks it passed; returns `None`. In that child: returns the scratch directory to use.
/// Without mount namespaces (not root, no `unshare`) the test is skipped with a printed line,
/// or fails when `CI` is set.
fn in_mount_namespace(test: &str) -> Option<PathBuf> {
    if let Ok(dir) = std::env::var(NS_ENV) {
        return Some(PathBuf::from(dir));
    }
    let scratch = tempfile::tempdir().unwrap();
    let probe = Command::new("unshare")
        .args(["--mount", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(scratch.path())
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let msg = format!("{test}: needs `unshare --mount` and `mount` (root): {probe:?}");
        assert!(
            !testkit::in_ci(),
            "{msg} (CI is set, so this fails instead of skipping)"
        );
        println!("SKIPPED {msg}");
        return None;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(NS_ENV, scratch.path())
        .env_remove("PYBUNDLE_CACHE_DIR")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a mount namespace: {}\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
    None
}

fn mount(args: &[&str], on: &Path) {
    let out = Command::new("mount").args(args).arg(on).output().unwrap();
    assert!(
        out.status.success(),
        "mount {args:?} {}: {}",
        on.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Only lock files at the top of the cache: nothing half-extracted, nothing temporary.
fn only_locks(root: &Path) {
    let left = list(root);
    assert!(
        left.iter().all(|p| p.ends_with(".lock")),
        "left behind: {left:?}"
    );
}

/// A bundle of about `mb` MB that does not compress.
fn incompressible(name: &str, mb: usize) -> Vec<u8> {
    let mut spec = sample(name, "big");
    let mut x: u64 = 0x2545f4914f6cdd1d;
    for i in 0..mb {
        let data: Vec<u8> = (0..(1 << 17))
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        spec.entries
            .push(E::File(format!("env/data/blob{i}.bin"), data, 0o644));
    }
    build(&spec)
}

#[test]
fn a_read_only_cache_says_where_and_what_to_do() {
    let Some(scratch) =
        in_mount_namespace("bundle::damage::a_read_only_cache_says_where_and_what_to_do")
    else {
        return;
    };
    let cache = scratch.join("cache");
    std::fs::create_dir(&cache).unwrap();
    mount(&["--bind", cache.to_str().unwrap()], &cache);
    mount(&["-o", "remount,bind,ro"], &cache);
    let bundle = Bundle::from_bytes(build(&sample("ro", "x")))
        .unwrap()
        .cache_dir(&cache);
    let err = bundle.ready().unwrap_err();
    assert!(
        matches!(&err, Error::CacheWrite { root, .. } if root == &cache),
        "{err:?}"
    );
    let msg = err.to_string();
    // What was being written, and where, open the message.
    let Error::CacheWrite { action, path, .. } = &err else {
        unreachable!()
    };
    assert!(path.starts_with(&cache), "{err:?}");
    assert!(
        msg.starts_with(&format!("{action} `{}`", path.display())),
        "{msg}"
    );
    for part in [
        &cache.display().to_string(),
        "read-only",
        "PYBUNDLE_CACHE_DIR",
    ] {
        assert!(msg.contains(part), "`{part}` not in: {msg}");
    }
    assert!(list(&cache).is_empty());
    println!("read-only cache: {msg}");

    // The problem removed: the next run succeeds.
    mount(&["-o", "remount,bind,rw"], &cache);
    let env = bundle.clone().verify(true).ready().unwrap();
    let good = snapshot(env.root());
    drop(env);

    // Extracted, then made read-only (a cache prepared ahead): used as it is, verified too.
    mount(&["-o", "remount,bind,ro"], &cache);
    let (env, extractions) = ready(&bundle);
    assert_eq!(snapshot(env.unwrap().root()), good);
    assert_eq!(extractions, 0);
    let (env, extractions) = ready(&bundle.clone().verify(true));
    env.unwrap();
    assert_eq!(extractions, 0);

    // Damaged while writable, then read-only: found, named, and what to do is said.
    mount(&["-o", "remount,bind,rw"], &cache);
    let dir = bundle.target_dir().unwrap();
    std::fs::write(dir.join("scripts/hello.py"), "print('damaged')\n").unwrap();
    mount(&["-o", "remount,bind,ro"], &cache);
    let err = bundle.clone().verify(true).ready().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, Error::Damaged { .. }), "{err:?}");
    for part in [
        &dir.display().to_string(),
        "scripts/hello.py (",
        "cannot be repaired here",
        "Read-only file system",
        "make the cache writable",
        "PYBUNDLE_CACHE_DIR",
    ] {
        assert!(msg.contains(part), "`{part}` not in: {msg}");
    }
    println!("damaged read-only cache: {msg}");
    mount(&["-o", "remount,bind,rw"], &cache);
    let (env, extractions) = ready(&bundle.clone().verify(true));
    assert_eq!(snapshot(env.unwrap().root()), good);
    assert!(extractions > 0);
}

#[test]
fn a_full_filesystem_says_so_and_leaves_nothing_half_extracted() {
    let Some(scratch) = in_mount_namespace(
        "bundle::damage::a_full_filesystem_says_so_and_leaves_nothing_half_extracted",
    ) else {
        return;
    };
    let cache = scratch.join("cache");
    std::fs::create_dir(&cache).unwrap();
    mount(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"], &cache);
    let bundle = Bundle::from_bytes(incompressible("full", 8))
        .unwrap()
        .cache_dir(&cache);
    for attempt in 0..2 {
        let err = bundle.ready().unwrap_err();
        assert!(
            matches!(&err, Error::CacheWrite { root, .. } if root == &cache),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            &cache.display().to_string(),
            "no space left",
            "needs about 9 MiB",
            "PYBUNDLE_CACHE_DIR",
        ] {
            assert!(msg.contains(part), "`{part}` not in: {msg}");
        }
        only_locks(&cache);
        println!("full filesystem (attempt {attempt}): {msg}");
    }

    mount(&["-o", "remount,size=64m"], &cache);
    let env = bundle.clone().verify(true).ready().unwrap();
    assert_eq!(
        std::fs::read_dir(env.prefix().join("data"))
            .unwrap()
            .count(),
        8
    );
    drop(env);
    let (env, extractions) = ready(&bundle.clone().verify(true));
    env.unwrap();
    assert_eq!(extractions, 0, "the tree verifies");
}

// --- a real conda python ----------------------------------------------------------------------

/// The test channel's conda-build style python as a bundle (its placeholders listed from
/// `info/paths.json`, as the packer does). `None` when the channel is not prepared.
fn real_python_spec(scratch: &Path) -> Option<Spec> {
    let toolchain = testkit::toolchain("a damaged real python is repaired")?;
    let python =
        super::real::RealPython::unpack(&toolchain.channel_dir().join("linux-64"), scratch);
    Some(python.spec(python.relocations.clone()))
}

/// A real relocated python verifies clean (its binary and text relocations recomputed in
/// memory match the files), and when its interpreter and libpython are damaged, a verified
/// start repairs them and python runs from the new prefix again.
#[test]
fn a_damaged_real_python_is_found_and_repaired() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(spec) = real_python_spec(scratch.path()) else {
        return;
    };
    assert!(spec
        .relocations
        .iter()
        .any(|r| r.mode == FileMode::Binary && r.path == "env/bin/python3.11"));
    let bundle = Bundle::from_bytes(build(&spec))
        .unwrap()
        .cache_dir(scratch.path().join("cache"))
        .verify(true);
    let runs = |env: &Environment| {
        let out = env
            .python()
            .args([
                "-c",
                "import sys, sysconfig; print(sysconfig.get_config_var('prefix'))",
            ])
            .output()
            .unwrap();
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).trim() == env.prefix().to_str().unwrap()
    };
    let (env, _) = ready(&bundle);
    let env = env.unwrap();
    assert!(runs(&env));
    let dir = env.root().to_path_buf();
    let good = snapshot(&dir);
    drop(env);
    // Python may have written bytecode into the tree: new files, allowed.
    let started = std::time::Instant::now();
    let (env, extractions) = ready(&bundle);
    eprintln!(
        "verified start of the real python (debug build): {:?}",
        started.elapsed()
    );
    assert_eq!(extractions, 0, "an intact real python verifies clean");
    drop(env);

    // Flip one byte in the interpreter (same size) and truncate libpython.
    let python = dir.join("env/bin/python3.11");
    let mut data = std::fs::read(&python).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&python, data).unwrap();
    let lib = dir.join("env/lib/libpython3.11.so.1.0");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&lib)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let user = bundle.clone().verify(false).ready().unwrap();
    let err = bundle
        .clone()
        .repair_wait(Duration::ZERO)
        .ready()
        .unwrap_err();
    let Error::Damaged { damaged, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        damaged,
        &[
            "env/bin/python3.11 (content differs)".to_owned(),
            format!(
                "env/lib/libpython3.11.so.1.0 (4096 bytes, not {})",
                std::fs::metadata(scratch.path().join("pkg/lib/libpython3.11.so.1.0"))
                    .unwrap()
                    .len()
            ),
        ]
    );
    drop(user);
    let (env, extractions) = ready(&bundle);
    let env = env.unwrap();
    assert!(extractions > 0);
    assert!(runs(&env), "python runs again after the repair");
    let repaired: BTreeMap<_, _> = snapshot(&dir)
        .into_iter()
        .filter(|(p, _)| !p.contains("__pycache__"))
        .collect();
    let good: BTreeMap<_, _> = good
        .into_iter()
        .filter(|(p, _)| !p.contains("__pycache__"))
        .collect();
    assert_eq!(repaired, good);
}

/// Bytecode is a cache Python rewrites by itself (the sources' extraction times never match
/// the times recorded in packed `.pyc` files): a bundle that ships some is not "damaged" when
/// Python replaces them, or every verified start would extract again.
#[test]
fn rewritten_bytecode_is_not_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = sample("pyc", "x");
    spec.entries.push(E::File(
        "scripts/__pycache__/hello.cpython-311.pyc".into(),
        b"packed bytecode".to_vec(),
        0o644,
    ));
    let bundle = Bundle::from_bytes(build(&spec))
        .unwrap()
        .cache_dir(tmp.path())
        .verify(true);
    let dir = bundle.ready().unwrap().root().to_path_buf();
    std::fs::write(
        dir.join("scripts/__pycache__/hello.cpython-311.pyc"),
        b"bytecode python wrote itself",
    )
    .unwrap();
    let (env, extractions) = ready(&bundle);
    env.unwrap();
    assert_eq!(extractions, 0);
    // Its source is still compared.
    std::fs::write(dir.join("scripts/hello.py"), "print('x')\n").unwrap();
    let (env, extractions) = ready(&bundle);
    env.unwrap();
    assert!(extractions > 0);
}

/// A file relocated only through a hard link to it (the manifest names the link): extraction
/// rewrote the shared inode, so verify must expect the relocated content at the target too.
#[test]
fn a_file_relocated_through_its_hard_link_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = placeholder();
    let mut spec = sample("linked", "x");
    spec.entries.push(E::File(
        "env/share/shared.txt".into(),
        format!("home={ph}\n").into_bytes(),
        0o644,
    ));
    spec.entries.push(E::Hardlink(
        "env/share/zz-link.txt".into(),
        "env/share/shared.txt".into(),
    ));
    spec.relocations.push(Relocation {
        path: "env/share/zz-link.txt".into(),
        placeholder: ph,
        mode: FileMode::Text,
    });
    spec.relocations.sort();
    let bundle = Bundle::from_bytes(build(&spec))
        .unwrap()
        .cache_dir(tmp.path())
        .verify(true);
    let env = bundle.ready().unwrap();
    let shared = env.prefix().join("share/shared.txt");
    assert_eq!(
        std::fs::read_to_string(&shared).unwrap(),
        format!("home={}\n", env.prefix().display())
    );
    drop(env);
    let (env, extractions) = ready(&bundle);
    env.unwrap();
    assert_eq!(
        extractions, 0,
        "the relocated shared content is what verify expects"
    );

    std::fs::write(&shared, "home=elsewhere\n").unwrap();
    let user = bundle.clone().verify(false).ready().unwrap();
    let err = bundle
        .clone()
        .repair_wait(Duration::ZERO)
        .ready()
        .unwrap_err();
    let Error::Damaged { damaged, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(
        damaged[0].starts_with("env/share/shared.txt ("),
        "{damaged:?}"
    );
    drop(user);
    let (env, extractions) = ready(&bundle);
    env.unwrap();
    assert!(extractions > 0);
}
