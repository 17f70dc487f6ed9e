//! After extraction: what `verify` now finds, modes, two applications with one name, a
//! forged manifest, and planted code beside a real Python.

use std::io::Write;
use std::path::Path;

use pybundle_runtime::Bundle;
use tar::EntryType as T;

use super::writer::{manifest, record, sample_body, write_archive};
use super::{case, check, GB};
use crate::bundle::{build, placeholder, sample};

/// (6) What `verify(true)` missed before: files added beside the archive's, and a relocated
/// file swapped for a huge sparse one (read whole, it cost 4 GB and 19 s). Each is reported
/// as damage naming the file; the sparse file is never read past its expected size.
#[test]
fn verify_flags_added_files_and_reads_no_more_than_expected() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("v.tar.zst");
    std::fs::write(&archive, build(&sample("verify", "x"))).unwrap();
    let pyc = |flags: u32| [&[0xa7, 0x0d, 0x0d, 0x0a][..], &flags.to_le_bytes(), &[0; 8]].concat();
    // Grown in place: the same inode, mode and links, 4 GB of holes.
    let sparse = |p: &Path| {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(4 * GB).unwrap();
    };
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a .pth file added",
            Box::new(|d: &Path| std::fs::write(d.join("env/lib/evil.pth"), "import os").unwrap()),
            "env/lib/evil.pth (not in the archive; Python runs .pth files at every start)",
        ),
        (
            "sitecustomize.py added",
            Box::new(|d: &Path| std::fs::write(d.join("env/lib/sitecustomize.py"), "").unwrap()),
            "env/lib/sitecustomize.py (not in the archive; Python imports it at every start)",
        ),
        (
            "unchecked-hash bytecode for a shipped source",
            Box::new(move |d: &Path| {
                std::fs::create_dir_all(d.join("scripts/__pycache__")).unwrap();
                std::fs::write(d.join("scripts/__pycache__/hello.cpython-311.pyc"), pyc(1))
                    .unwrap();
            }),
            "scripts/__pycache__/hello.cpython-311.pyc (bytecode Python runs without checking it",
        ),
        (
            "a module shadowing another, added to the scripts",
            Box::new(|d: &Path| std::fs::write(d.join("scripts/json.py"), "").unwrap()),
            "scripts/json.py (not in the archive; a module or library",
        ),
        (
            "a relocated text file replaced by a 4 GB sparse file",
            Box::new(move |d: &Path| sparse(&d.join("env/etc/conf.txt"))),
            "env/etc/conf.txt (4294967296 bytes, not",
        ),
        (
            "a relocated binary replaced by a 4 GB sparse file",
            Box::new(move |d: &Path| sparse(&d.join("env/lib/libthing.so"))),
            "env/lib/libthing.so (4294967296 bytes, not",
        ),
    ];
    for (i, (what, damage, says)) in cases.into_iter().enumerate() {
        let cache = scratch.path().join(format!("cache-{i}"));
        let dir = Bundle::from_file(&archive)
            .unwrap()
            .cache_dir(&cache)
            .ready()
            .unwrap()
            .root()
            .to_path_buf();
        damage(&dir);
        check(&case(what, "verify", "Damaged", &[says]), &archive, &cache);
        // And unused, the verified start repairs it.
        Bundle::from_file(&archive)
            .unwrap()
            .cache_dir(&cache)
            .verify(true)
            .ready()
            .unwrap();
        let fresh = Bundle::from_file(&archive)
            .unwrap()
            .cache_dir(scratch.path().join(format!("ref-{i}")))
            .ready()
            .unwrap();
        assert_eq!(
            crate::bundle::list(&dir),
            crate::bundle::list(fresh.root()),
            "{what}: the added or damaged file is gone after the repair"
        );
    }
}

/// (9) Group- and world-writable modes (and setuid, setgid, sticky) in the archive are not
/// kept: nothing extracted is writable by anyone but the owner.
#[test]
fn modes_lose_group_and_other_write() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("modes.tar.zst");
    let (sample_tar, m) = sample_body("modes");
    let extra: [(&[u8], T, u32, u64); 5] = [
        (b"env/open/", T::Directory, 0o1777, 0),
        (b"env/open/all", T::Regular, 0o777, 3),
        (b"env/open/rw", T::Regular, 0o666, 3),
        (b"env/open/suid", T::Regular, 0o6755, 3),
        (b"env/open/group", T::Regular, 0o664, 3),
    ];
    write_archive(
        &archive,
        manifest(
            "modes",
            m.unpacked_size + 12,
            m.file_count + 5,
            m.relocations.clone(),
        ),
        None,
        |_| {},
        |w: &mut dyn Write| {
            w.write_all(&sample_tar).unwrap();
            for (p, kind, mode, size) in extra {
                record(w, p, kind, mode, b"", size, &mut &b"abc"[..]);
            }
        },
    );
    let cache = scratch.path().join("cache");
    check(
        &case("world-writable modes", "ready", "Ok", &[]),
        &archive,
        &cache,
    );
    let env = Bundle::from_file(&archive)
        .unwrap()
        .cache_dir(&cache)
        .ready()
        .unwrap();
    let mode = |p: &str| crate::bundle::mode(&env.prefix().join(p));
    assert_eq!(mode("open"), 0o755);
    assert_eq!(mode("open/all"), 0o755);
    assert_eq!(mode("open/rw"), 0o644);
    assert_eq!(mode("open/suid"), 0o755);
    assert_eq!(mode("open/group"), 0o644);
    for p in crate::bundle::list(env.root()) {
        let m = crate::bundle::mode(&env.root().join(&p));
        let is_link = std::fs::symlink_metadata(env.root().join(&p))
            .unwrap()
            .is_symlink();
        assert!(is_link || m & 0o7022 == 0, "{p}: {m:o}");
    }
    // Verify expects the sanitised modes: the tree is intact.
    drop(env);
    Bundle::from_file(&archive)
        .unwrap()
        .cache_dir(&cache)
        .verify(true)
        .ready()
        .unwrap();
}

/// (5) Two unrelated applications with the same name keep each other's cache (each bundle
/// directory records who extracted it), while a new version of one still replaces its old
/// one; and a manifest forged over a real body (same id, other relocations) is not taken
/// for the real one.
#[test]
fn same_name_apps_and_forged_manifests_do_not_collide() {
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let (a, b) = (
        scratch.path().join("a/app.tar.zst"),
        scratch.path().join("b/app.tar.zst"),
    );
    for p in [&a, &b] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    }
    std::fs::write(&a, build(&sample("app", "first app"))).unwrap();
    std::fs::write(&b, build(&sample("app", "second app"))).unwrap();
    let ready = |p: &Path| {
        Bundle::from_file(p)
            .unwrap()
            .cache_dir(&cache)
            .ready()
            .unwrap()
            .root()
            .to_path_buf()
    };
    let a1 = ready(&a);
    let b1 = ready(&b);
    assert_ne!(a1, b1);
    assert!(a1.exists(), "the other application's cache stays");
    let a1_again = ready(&a);
    assert_eq!(a1_again, a1);
    assert!(b1.exists());
    std::fs::write(&a, build(&sample("app", "first app, v2"))).unwrap();
    let a2 = ready(&a);
    assert!(!a1.exists(), "the old version of the same application goes");
    assert!(a2.exists() && b1.exists());

    // The real bundle's body under a manifest that relocates nothing (the id is right).
    let real = build(&sample("forge", "x"));
    let mut spec = sample("forge", "x");
    spec.relocations.clear();
    let forged_manifest = build(&spec);
    let frame = |x: &[u8]| zstd::zstd_safe::find_frame_compressed_size(x).unwrap();
    let mut forged = forged_manifest[..frame(&forged_manifest)].to_vec();
    forged.extend_from_slice(&real[frame(&real)..]);
    let forged_env = Bundle::from_bytes(forged)
        .unwrap()
        .cache_dir(&cache)
        .ready()
        .unwrap();
    let conf = forged_env.prefix().join("etc/conf.txt");
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains(&placeholder()));
    let root = forged_env.root().to_path_buf();
    drop(forged_env);
    let env = Bundle::from_bytes(real)
        .unwrap()
        .cache_dir(&cache)
        .ready()
        .unwrap();
    assert_eq!(env.root(), root, "same name and id: the same directory");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains(&env.prefix().display().to_string()) && !text.contains(&placeholder()),
        "the real manifest's relocations were applied: {text}"
    );
}

/// (6) The verify bypass with a real Python: a `.pth` line and a `sitecustomize` module
/// planted in site-packages run at every start of a plain bundle (the attack, shown here so
/// the test can fail), and never with `verify(true)`, which finds and removes them first.
#[test]
fn verify_keeps_code_planted_beside_a_real_python_from_running() {
    let Some(toolchain) = testkit::toolchain("verify keeps planted code from running") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let python = crate::bundle::real::RealPython::unpack(
        &toolchain.channel_dir().join("linux-64"),
        scratch.path(),
    );
    let bundle = Bundle::from_bytes(build(&python.spec(python.relocations.clone())))
        .unwrap()
        .cache_dir(scratch.path().join("cache"));
    let evidence = scratch.path().join("evidence");
    std::fs::create_dir(&evidence).unwrap();
    let ran = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&evidence)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let start = |env: &pybundle_runtime::Environment| {
        let out = env
            .python()
            .args(["-c", "print('started')"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "started");
    };
    let env = bundle.ready().unwrap();
    let site = env.prefix().join("lib/python3.11/site-packages");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("evil.pth"),
        format!("import os; open(r'{}/pth', 'w')\n", evidence.display()),
    )
    .unwrap();
    std::fs::write(
        site.join("sitecustomize.py"),
        format!("open(r'{}/sitecustomize', 'w')\n", evidence.display()),
    )
    .unwrap();
    start(&env);
    assert_eq!(
        ran(),
        ["pth", "sitecustomize"],
        "the planted code runs without verify"
    );
    for f in ran() {
        std::fs::remove_file(evidence.join(f)).unwrap();
    }
    drop(env);
    let env = bundle.clone().verify(true).ready().unwrap();
    start(&env);
    assert!(
        ran().is_empty(),
        "planted code ran under verify: {:?}",
        ran()
    );
    assert!(!site.join("evil.pth").exists() && !site.join("sitecustomize.py").exists());
}
