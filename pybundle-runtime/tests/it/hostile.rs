//! Hostile and broken archives: every one is refused with an error naming the entry, and
//! nothing is written outside the scratch directory (listed after each attempt).

use std::collections::BTreeSet;

use pybundle_runtime::{Bundle, Error};

use crate::bundle::{build, list, sample, Spec, E};

/// Runs `ready()` on an archive made of a normal bundle plus `extra` entries, in a fresh
/// scratch directory whose cache is `scratch/cache`. Returns the error and what the scratch
/// directory holds afterwards.
fn attempt(extra: Vec<E>) -> (Error, BTreeSet<String>, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let mut spec = sample("evil", "x");
    spec.entries.extend(extra);
    let archive = build(&spec);
    let err = Bundle::from_bytes(archive)
        .unwrap()
        .cache_dir(scratch.path().join("cache"))
        .ready()
        .expect_err("a hostile archive must be refused");
    let left = list(scratch.path());
    (err, left, scratch)
}

/// Only the cache root and its lock file may remain: no bundle, no temp dir, nothing beside.
fn assert_clean(left: &BTreeSet<String>) {
    let allowed =
        |p: &String| p == "cache" || (p.starts_with("cache/evil-") && p.ends_with(".lock"));
    let extra: Vec<_> = left.iter().filter(|p| !allowed(p)).collect();
    assert!(extra.is_empty(), "left behind: {extra:?}");
}

fn assert_refused(err: &Error, entry: &str) {
    match err {
        Error::UnsafeEntry { entry: e, .. } => assert_eq!(e, entry, "{err}"),
        other => panic!("expected UnsafeEntry for {entry}, got {other:?}"),
    }
    assert!(err.to_string().contains(entry), "{err}");
}

fn file(p: &str) -> E {
    E::File(p.into(), b"owned\n".to_vec(), 0o644)
}

#[test]
fn parent_dir_components() {
    for p in ["../x", "../../x", "env/../../../x", "scripts/../../x"] {
        let (err, left, _s) = attempt(vec![file(p)]);
        assert_refused(&err, p);
        assert_clean(&left);
    }
}

#[test]
fn absolute_paths() {
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("abs");
    let p = target.display().to_string();
    let (err, left, _s) = attempt(vec![file(&p)]);
    assert_refused(&err, &p);
    assert_clean(&left);
    assert!(!target.exists());
}

#[test]
fn symlinks_out_of_the_bundle() {
    for (link, target) in [
        ("env/out", "../../x"),
        ("env/abs", "/etc"),
        ("env/bin/sneaky", "../lib/../../.."),
        ("top", ".."),
    ] {
        let (err, left, _s) = attempt(vec![E::Symlink(link.into(), target.into())]);
        assert_refused(&err, link);
        assert_clean(&left);
    }
}

#[test]
fn files_through_a_symlink() {
    // The link itself points inside (allowed), but nothing is ever written through a link:
    // a later change of the link could otherwise redirect the write.
    let (err, left, _s) = attempt(vec![
        E::Symlink("env/d".into(), "../scripts".into()),
        file("env/d/x.py"),
    ]);
    assert_refused(&err, "env/d/x.py");
    assert_clean(&left);
    // The same through a symlink to a directory that leads out, had it been allowed.
    let (err, left, _s) = attempt(vec![
        file("env/lib/deep/f"),
        E::Symlink("env/lib/deep/f/g".into(), "x".into()),
    ]);
    assert_refused(&err, "env/lib/deep/f/g");
    assert_clean(&left);
}

#[test]
fn hard_links_out_of_the_bundle() {
    for (link, target) in [
        ("env/h1", "../../outside"),
        ("env/h2", "/etc/passwd"),
        ("env/h3", "env/not-yet-written"),
        ("env/h4", "env/bin"),
    ] {
        let (err, left, _s) = attempt(vec![E::Hardlink(link.into(), target.into())]);
        assert_refused(&err, link);
        assert_clean(&left);
    }
}

#[test]
fn special_files() {
    for kind in [
        tar::EntryType::Fifo,
        tar::EntryType::Char,
        tar::EntryType::Block,
    ] {
        let (err, left, _s) = attempt(vec![E::Special("env/dev".into(), kind)]);
        assert_refused(&err, "env/dev");
        assert_clean(&left);
    }
}

#[test]
fn the_runtime_directory_is_reserved() {
    let (err, left, _s) = attempt(vec![file(".pybundle/complete")]);
    assert_refused(&err, ".pybundle/complete");
    assert_clean(&left);
}

#[test]
fn a_truncated_stream_is_a_clean_error() {
    let archive = build(&sample("evil", "x"));
    let frame1 = zstd::zstd_safe::find_frame_compressed_size(&archive).unwrap();
    for cut in [archive.len() - 1, archive.len() - 40, frame1 + 20] {
        let scratch = tempfile::tempdir().unwrap();
        let err = Bundle::from_bytes(archive[..cut].to_vec())
            .unwrap()
            .cache_dir(scratch.path().join("cache"))
            .ready()
            .expect_err("a truncated archive must fail");
        assert!(
            matches!(err, Error::Archive { .. }),
            "cut at {cut}: {err:?}"
        );
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
        assert_clean(&list(scratch.path()));
    }
    // Cut inside the manifest frame: refused before anything touches the disk.
    let err = Bundle::from_bytes(archive[..frame1 - 5].to_vec()).unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err:?}");
}

#[test]
fn a_body_missing_entries_is_refused() {
    // A well-formed stream that ends early (as if entries were dropped): the manifest's entry
    // count catches it.
    let mut spec = sample("evil", "x");
    let full = build(&spec);
    spec.entries.truncate(4);
    let short = build(&spec);
    let frame1 = |a: &[u8]| zstd::zstd_safe::find_frame_compressed_size(a).unwrap();
    let mut spliced = full[..frame1(&full)].to_vec();
    spliced.extend_from_slice(&short[frame1(&short)..]);
    let scratch = tempfile::tempdir().unwrap();
    let err = Bundle::from_bytes(spliced)
        .unwrap()
        .cache_dir(scratch.path().join("cache"))
        .ready()
        .unwrap_err();
    assert!(err.to_string().contains("entries"), "{err}");
    assert_clean(&list(scratch.path()));
}

#[test]
fn a_hostile_manifest_is_refused() {
    let mut spec: Spec = sample("../../escape", "x");
    let err = Bundle::from_bytes(build(&spec)).unwrap_err();
    assert!(matches!(err, Error::Manifest(_)), "{err:?}");
    spec.name = "ok".into();
    spec.id = Some("../".repeat(22));
    let err = Bundle::from_bytes(build(&spec)).unwrap_err();
    assert!(matches!(err, Error::Manifest(_)), "{err:?}");
    // A relocation naming a path outside, or a symlink, is refused before it is opened.
    let mut spec = sample("evil", "x");
    spec.relocations[0].path = "env/bin/python3".into();
    let scratch = tempfile::tempdir().unwrap();
    let err = Bundle::from_bytes(build(&spec))
        .unwrap()
        .cache_dir(scratch.path().join("cache"))
        .ready()
        .unwrap_err();
    assert!(matches!(err, Error::Relocate { .. }), "{err:?}");
    assert_clean(&list(scratch.path()));
}

#[test]
fn duplicate_entries() {
    // A second entry at a path already written could replace a checked file or link.
    let (err, left, _s) = attempt(vec![file("scripts/hello.py")]);
    assert_refused(&err, "scripts/hello.py");
    assert_clean(&left);
    let (err, left, _s) = attempt(vec![E::Symlink(
        "env/bin/python3".into(),
        "python3.11".into(),
    )]);
    assert_refused(&err, "env/bin/python3");
    assert_clean(&left);
}
