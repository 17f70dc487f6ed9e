//! One process: extraction, relocation, marker, fast path, old versions, ownership.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Instant;

use pybundle_runtime::{Bundle, Error};

use super::*;

#[test]
fn first_run_extracts_relocates_and_marks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b/cache");
    let archive = build(&sample("demo", "v1"));
    let (calls, progress) = counter();
    let bundle = Bundle::from_bytes(archive)
        .unwrap()
        .cache_dir(&root)
        .on_progress(progress);
    let m = bundle.manifest().clone();
    let env = bundle.ready().unwrap();

    let dir = root.join(format!("demo-{}", &m.id[..16]));
    assert_eq!(env.root(), dir);
    assert_eq!(env.prefix(), dir.join("env"));
    assert_eq!(env.interpreter(), dir.join("env/bin/python3"));
    assert_eq!(env.scripts_dir(), dir.join("scripts"));
    assert_eq!(env.lib_dir(), dir.join("lib"));
    assert_eq!(
        env.vars()["DATA_DIR"],
        format!("{}/env/share/data", dir.display())
    );
    assert!(
        calls.load(Ordering::Relaxed) >= 11,
        "progress reported per entry"
    );

    let prefix = dir.join("env").display().to_string();
    let ph = placeholder();
    // Text: every occurrence replaced.
    let conf = std::fs::read_to_string(dir.join("env/etc/conf.txt")).unwrap();
    assert_eq!(conf, format!("prefix={prefix}\nlib={prefix}/lib\nv1\n"));
    // Binary: same length, replaced inside each C string, NUL-padded.
    let bin = std::fs::read(dir.join("env/lib/libthing.so")).unwrap();
    let orig_len =
        b"\x7fELF\0\0RUNPATH=".len() + format!("{ph}/lib:{ph}/lib64\0").len() + 6 + ph.len();
    assert_eq!(bin.len(), orig_len);
    let runpath = format!("RUNPATH={prefix}/lib:{prefix}/lib64\0");
    assert!(bin.windows(runpath.len()).any(|w| w == runpath.as_bytes()));
    assert!(!bin.windows(20).any(|w| w == &ph.as_bytes()[..20]));
    // The hard link shares the relocated content.
    assert_eq!(
        std::fs::read(dir.join("env/lib/libthing-link.so")).unwrap(),
        bin
    );
    // A short enough shebang stays a shebang.
    let tool = std::fs::read_to_string(dir.join("env/bin/tool")).unwrap();
    assert_eq!(tool, format!("#!{prefix}/bin/python3\nimport tool\n"));
    // Modes kept, symlink kept.
    assert_eq!(mode(&dir.join("env/bin/tool")), 0o755);
    assert_eq!(mode(&dir.join("env/share/readonly.txt")), 0o444);
    assert_eq!(
        std::fs::read_link(dir.join("env/bin/python3")).unwrap(),
        Path::new("python3.11")
    );
    // The entry point runs through the relocated shebang and the symlinked "interpreter".
    let out = Command::new(dir.join("env/bin/tool"))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("interp-ran {}/bin/tool x\n", prefix)
    );
    // Marker (the id, then the manifest frame's hash) and manifest.
    let marker = std::fs::read_to_string(dir.join(".pybundle/complete")).unwrap();
    let lines: Vec<&str> = marker.lines().collect();
    assert_eq!(lines[0], m.id);
    assert!(lines[1].len() == 64 && lines[1].bytes().all(|b| b.is_ascii_hexdigit()));
    let written: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join(".pybundle/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(written, m);
    // Private: every directory we created is 0700, and nothing temporary is left.
    for d in [
        tmp.path().join("a"),
        tmp.path().join("a/b"),
        root.clone(),
        dir.clone(),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let left: Vec<_> = list(&root)
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(
        left,
        vec![
            format!("demo-{}", &m.id[..16]),
            format!("demo-{}.lock", &m.id[..16])
        ]
    );
}

#[test]
fn second_run_takes_the_fast_path() {
    let tmp = tempfile::tempdir().unwrap();
    let archive: Arc<[u8]> = build(&sample("fast", "x")).into();
    let (calls, progress) = counter();
    let env = Bundle::from_bytes(archive.clone())
        .unwrap()
        .cache_dir(tmp.path())
        .ready()
        .unwrap();
    let marker = env.root().join(".pybundle/complete");
    let ino = std::fs::metadata(&marker).unwrap().ino();
    drop(env);
    let bundle = Bundle::from_bytes(archive)
        .unwrap()
        .cache_dir(tmp.path())
        .on_progress(progress);
    let started = Instant::now();
    let env = bundle.ready().unwrap();
    let warm = started.elapsed();
    assert_eq!(
        calls.load(Ordering::Relaxed),
        0,
        "no extraction on the second run"
    );
    assert_eq!(
        std::fs::metadata(&marker).unwrap().ino(),
        ino,
        "the bundle was not replaced"
    );
    assert!(env.interpreter().exists());
    eprintln!("warm ready(): {warm:?}");
}

#[test]
fn app_name_names_the_cache_directory_instead_of_the_manifest_name() {
    let tmp = tempfile::tempdir().unwrap();
    let archive: Arc<[u8]> = build(&sample("demo", "named")).into();
    let bundle = Bundle::from_bytes(archive.clone())
        .unwrap()
        .cache_dir(tmp.path())
        .app_name("x");
    let id = bundle.manifest().id.clone();
    let env = bundle.ready().unwrap();
    let dir = tmp.path().join(format!("x-{}", &id[..16]));
    assert_eq!(env.root(), dir);
    assert!(env.interpreter().exists());
    assert!(
        !list(tmp.path()).iter().any(|p| p.starts_with("demo")),
        "{:?}",
        list(tmp.path())
    );

    // A name that cannot be one directory is refused by `ready`, before anything is written.
    let empty = tempfile::tempdir().unwrap();
    for bad in ["../x", "a/b", ".hidden", "", "naïve"] {
        let err = Bundle::from_bytes(archive.clone())
            .unwrap()
            .cache_dir(empty.path())
            .app_name(bad)
            .ready()
            .err()
            .unwrap_or_else(|| panic!("`{bad}` accepted"));
        assert!(
            matches!(&err, Error::Manifest(m) if m.contains("cannot name a directory")),
            "{bad}: {err}"
        );
    }
    assert_eq!(list(empty.path()), BTreeSet::new());
}

#[test]
fn an_incomplete_directory_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::from_bytes(build(&sample("half", "x")))
        .unwrap()
        .cache_dir(tmp.path());
    let dir = bundle.target_dir().unwrap();
    // A directory with the right name but no marker (e.g. copied by hand) is never trusted.
    std::fs::create_dir_all(dir.join("env/bin")).unwrap();
    std::fs::write(dir.join("env/bin/python3"), "garbage").unwrap();
    let env = bundle.ready().unwrap();
    assert_eq!(
        std::fs::read_link(env.interpreter()).unwrap(),
        Path::new("python3.11")
    );
    assert!(list(tmp.path())
        .iter()
        .all(|p| !p.starts_with(".trash") && !p.starts_with(".tmp")));
}

#[test]
fn older_versions_are_removed_unless_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let open = |salt: &str| {
        Bundle::from_bytes(build(&sample("app", salt)))
            .unwrap()
            .cache_dir(tmp.path())
            .ready()
            .unwrap()
    };
    // Another application whose name extends ours is never touched.
    let other = Bundle::from_bytes(build(&sample("app-tool", "o")))
        .unwrap()
        .cache_dir(tmp.path());
    let other_dir = other.ready().unwrap().root().to_path_buf();

    let v1 = open("1");
    let v1_dir = v1.root().to_path_buf();
    let v2 = open("2");
    assert!(
        v1_dir.exists(),
        "v1 is in use (its Environment holds the lock)"
    );
    let v2_dir = v2.root().to_path_buf();
    drop(v1);
    drop(v2);
    let v3 = open("3");
    assert!(
        !v1_dir.exists() && !v2_dir.exists(),
        "unused versions are removed"
    );
    assert!(other_dir.exists());
    let names = list(tmp.path());
    let v3_name = v3.root().file_name().unwrap().to_str().unwrap().to_owned();
    let top: BTreeSet<_> = names.iter().filter(|p| !p.contains('/')).cloned().collect();
    let other_name = other_dir.file_name().unwrap().to_str().unwrap().to_owned();
    let want: BTreeSet<_> = [&v3_name, &other_name]
        .iter()
        .flat_map(|n| [n.to_string(), format!("{n}.lock")])
        .collect();
    assert_eq!(
        top, want,
        "old lock files go too, nothing half-deleted stays"
    );

    // Turned off: nothing is removed.
    drop(v3);
    let keep = Bundle::from_bytes(build(&sample("app", "4")))
        .unwrap()
        .cache_dir(tmp.path())
        .remove_old_versions(false)
        .ready()
        .unwrap();
    assert!(tmp.path().join(&v3_name).exists());
    drop(keep);
}

#[test]
fn a_cache_owned_by_another_user_is_refused() {
    if my_uid() != 0 {
        println!("skipped: needs root to chown a directory to another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("theirs");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let bundle = Bundle::from_bytes(build(&sample("own", "x")))
        .unwrap()
        .cache_dir(&root);
    let err = bundle.ready().unwrap_err();
    assert!(
        matches!(err, Error::Cache { ref path, .. } if path == &root),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("PYBUNDLE_CACHE_DIR") && msg.contains("65534"),
        "{msg}"
    );
    assert!(list(&root).is_empty());

    // The bundle directory itself owned by someone else.
    let root = tmp.path().join("mine");
    let bundle = bundle.cache_dir(&root);
    let dir = bundle.target_dir().unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let err = bundle.ready().unwrap_err();
    assert!(
        matches!(err, Error::Cache { ref path, .. } if path == &dir),
        "{err:?}"
    );
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

#[test]
fn long_prefix_turns_the_shebang_into_a_trampoline() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("c".repeat(120));
    let env = Bundle::from_bytes(build(&sample("long", "x")))
        .unwrap()
        .cache_dir(&root)
        .ready()
        .unwrap();
    let prefix = env.prefix().display().to_string();
    let tool = std::fs::read_to_string(env.prefix().join("bin/tool")).unwrap();
    assert!(tool.starts_with(&format!(
        "#!/bin/sh\n'''exec' \"{prefix}/bin/python3\" \"$0\" \"$@\" #'''\n"
    )));
    let out = Command::new(env.prefix().join("bin/tool"))
        .args(["a b", "c"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("interp-ran {prefix}/bin/tool a b c\n")
    );
}

#[test]
fn a_prefix_longer_than_the_binary_placeholder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("d".repeat(250));
    let err = Bundle::from_bytes(build(&sample("toolong", "x")))
        .unwrap()
        .cache_dir(&root)
        .ready();
    let err = err.unwrap_err();
    assert!(
        matches!(&err, Error::Relocate { path, .. } if path.ends_with("env/lib/libthing.so")),
        "{err:?}"
    );
    let top: Vec<_> = list(&root)
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert!(
        top.iter().all(|p| p.ends_with(".lock")),
        "nothing trusted or temporary is left: {top:?}"
    );
}

#[test]
fn verification_catches_a_wrong_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = sample("verify", "x");
    spec.id = Some("ab".repeat(32));
    let bytes: Arc<[u8]> = build(&spec).into();
    let err = Bundle::from_bytes(bytes.clone())
        .unwrap()
        .cache_dir(tmp.path())
        .verify(true)
        .ready()
        .unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err:?}");
    assert!(err.to_string().contains("does not match"), "{err}");
    let good = Bundle::from_bytes(build(&sample("verify", "y"))).unwrap();
    good.cache_dir(tmp.path()).verify(true).ready().unwrap();
}

#[test]
fn the_manifest_is_read_from_the_first_frame_alone() {
    let archive = build(&sample("peek", "x"));
    let frame = zstd::zstd_safe::find_frame_compressed_size(&archive).unwrap();
    let m = pybundle_runtime::manifest_of(&archive[..frame]).unwrap();
    assert_eq!(m.name, "peek");
    assert_eq!(m.relocations.len(), 3);
    let err = pybundle_runtime::manifest_of(b"PK\x03\x04 not zstd").unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err:?}");
}

#[test]
fn from_file_reads_archives_and_programs() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = build(&sample("file", "x"));
    let path = tmp.path().join("bundle.tar.zst");
    std::fs::write(&path, &archive).unwrap();
    assert_eq!(Bundle::from_file(&path).unwrap().manifest().name, "file");
    // A fake program: some bytes, the archive, the trailer.
    let mut exe = b"\x7fELF some code".to_vec();
    exe.extend_from_slice(&archive);
    exe.extend_from_slice(&pybundle_runtime::trailer(archive.len() as u64));
    let exe_path = tmp.path().join("prog");
    std::fs::write(&exe_path, &exe).unwrap();
    assert_eq!(
        Bundle::from_file(&exe_path).unwrap().manifest().name,
        "file"
    );
    std::fs::write(&exe_path, b"neither").unwrap();
    let err = Bundle::from_file(&exe_path).unwrap_err();
    assert!(err.to_string().contains("prog"), "{err}");
}

#[test]
fn built_without_a_bundle_says_how_to_build_one() {
    // This test binary has no archive appended.
    let err = Bundle::embedded().unwrap_err();
    assert!(matches!(err, Error::NotBundled { .. }));
    assert!(err.to_string().contains("cargo pybundle build"), "{err}");
}

#[test]
fn long_names_and_link_targets_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = sample("long-names", "x");
    let deep = format!("env/lib/{}/{}.py", "d".repeat(80), "f".repeat(90));
    let target = format!("{}/{}.py", "d".repeat(80), "f".repeat(90));
    spec.entries
        .push(E::File(deep.clone(), b"deep\n".to_vec(), 0o644));
    spec.entries
        .push(E::Symlink("env/lib/link.py".into(), target.clone()));
    let env = Bundle::from_bytes(build(&spec))
        .unwrap()
        .cache_dir(tmp.path())
        .ready()
        .unwrap();
    assert_eq!(std::fs::read(env.root().join(&deep)).unwrap(), b"deep\n");
    assert_eq!(
        std::fs::read_link(env.prefix().join("lib/link.py")).unwrap(),
        Path::new(&target)
    );
    assert_eq!(
        std::fs::read(env.prefix().join("lib/link.py")).unwrap(),
        b"deep\n"
    );
}

#[test]
fn a_single_frame_archive_is_refused_with_the_reason() {
    // Everything in one zstd frame: the manifest reads, but the body is not where it must be.
    let archive = build(&sample("oneframe", "x"));
    let whole = zstd::stream::decode_all(&archive[..]).unwrap();
    let one = zstd::bulk::compress(&whole, 3).unwrap();
    let err = Bundle::from_bytes(one).unwrap_err();
    assert!(err.to_string().contains("second frame"), "{err}");
}

/// After a `ready()` that succeeded: `check_location()` holds while nothing changes, and gives
/// `Error::Moved` once another directory has the bundle directory's name, once it is gone, or
/// once a directory on the way is writable by others; `command()`, scripts and workers check it
/// too and start nothing.
#[test]
fn a_bundle_directory_changed_after_ready_is_moved_and_nothing_starts() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    let env = Bundle::from_bytes(build(&sample("moved", "x")))
        .unwrap()
        .cache_dir(&root)
        .ready()
        .unwrap();
    env.check_location().unwrap();
    env.command("hello").unwrap();
    let moved = |result: Result<(), Error>, why: &str| match result {
        Err(Error::Moved { path, reason }) if path == env.root() && reason.contains(why) => {}
        other => panic!("expected Error::Moved ({why}), got {other:?}"),
    };

    // The same name, another directory (an empty one: nothing of it may be run).
    let aside = root.join("aside");
    std::fs::rename(env.root(), &aside).unwrap();
    std::fs::create_dir(env.root()).unwrap();
    let swapped = "another directory is there now";
    moved(env.check_location(), swapped);
    moved(env.command("hello").map(drop), swapped);
    moved(env.script("hello").run::<()>().map(drop), swapped);
    match env.worker(["hello"]).start() {
        Err(Error::WorkerStart { detail, .. }) if detail.contains(swapped) => {}
        other => panic!("expected the worker not to start: {:?}", other.err()),
    }

    std::fs::remove_dir(env.root()).unwrap();
    moved(env.check_location(), "it cannot be found");

    // Back in place: the same directory again, so nothing is wrong any more.
    std::fs::rename(&aside, env.root()).unwrap();
    env.check_location().unwrap();

    // The trust checks are repeated too: a directory on the way that others may write to (and
    // not sticky) could have the root renamed away.
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(tmp.path(), mode(0o777)).unwrap();
    moved(env.check_location(), "writable");
    std::fs::set_permissions(tmp.path(), mode(0o700)).unwrap();
}
