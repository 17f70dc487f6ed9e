//! End to end with the real test toolchain (pixi and the local conda channel, mapped
//! from `conda-forge` with `PYBUNDLE_CHANNEL_MIRRORS`): real pixi installs, real packing,
//! real cargo builds, and the built application run.

use crate::support::{
    cargo_pybundle, files_under, fixture, package_files, shared_target, stderr, with_toolchain,
};
use pybundle_runtime::format::{FileMode, Manifest, Relocation, MANIFEST_PATH};
use sha2::{Digest as _, Sha256};
use std::io::Read as _;
use std::path::{Path, PathBuf};

fn relocation<'m>(m: &'m Manifest, path: &str) -> &'m Relocation {
    m.relocations
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no relocation for {path}; have {:#?}", m.relocations))
}

/// The uncompressed tar stream and the content of one entry.
fn entry(archive: &[u8], wanted: &str) -> Vec<u8> {
    let tar = zstd::decode_all(archive).unwrap();
    let mut ar = tar::Archive::new(&tar[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(wanted) {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("{wanted} not in the archive");
}

#[test]
fn hello_builds_runs_and_reuses_the_archive() {
    let Some(tc) = testkit::toolchain("hello_builds_runs_and_reuses_the_archive") else {
        return;
    };
    let (_copy, manifest) = crate::support::example("hello");
    let build = || {
        with_toolchain(&tc)
            .args(["build", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(shared_target())
            .output()
            .unwrap()
    };
    let first = build();
    assert!(first.status.success(), "{}", stderr(&first));
    let stdout = String::from_utf8(first.stdout).unwrap();
    let binary = PathBuf::from(stdout.lines().last().expect("the binary's path on stdout"));
    assert!(
        binary.ends_with("debug/bundled/hello") && binary.is_file(),
        "{stdout}"
    );

    let cache = tempfile::tempdir().unwrap();
    let said = greet_tester(&binary, cache.path());
    assert!(said.contains("3.11"), "{said}");

    // `inspect` finds the archive inside the program.
    let shown = cargo_pybundle()
        .arg("inspect")
        .arg(&binary)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(
        text.contains("bundle      hello (") && text.contains("python      3.11"),
        "{text}"
    );
    assert!(
        text.contains("env/lib") && text.contains("largest packages"),
        "{text}"
    );
    // The size a first run unpacks, as inspect shows it and as README states it for hello.
    let program = std::fs::read(&binary).unwrap();
    let archive = pybundle_runtime::find_in_executable(&program).unwrap();
    let unpacked = pybundle_runtime::manifest_of(archive)
        .unwrap()
        .unpacked_size as f64
        / 1e6;
    assert!(
        text.contains(&format!(" {unpacked:.1} MB unpacked,")),
        "{text}"
    );
    let readme = std::fs::read_to_string(testkit::workspace_root().join("README.md")).unwrap();
    let said = format!("({unpacked:.0} MB for `examples/hello` built against the test channel");
    assert!(
        readme
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&said),
        "README.md should say `{said}` (the test channel is built from this machine's CPython)"
    );
    let not_bundle = cargo_pybundle()
        .arg("inspect")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(not_bundle.status.code(), Some(1));
    assert!(stderr(&not_bundle).contains("neither a bundle archive nor a program"));

    // `run` builds and runs, passing arguments; stdout is the program's alone.
    let ran = with_toolchain(&tc)
        .args(["run", "-q", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(shared_target())
        .args(["--", "runner"])
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(said.starts_with("hello, runner\n"), "{said}");

    // `run` exits with the program's status: with stdout on a full disk, the program's
    // `println!` panics, and a panic exits with 101.
    let mut full = crate::support::std_command(
        with_toolchain(&tc)
            .args(["run", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(shared_target())
            .args(["--", "runner"])
            .env("PYBUNDLE_CACHE_DIR", cache.path()),
    );
    let failed = full
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = stderr(&failed);
    assert_eq!(failed.status.code(), Some(101), "{err}");
    assert!(err.contains("failed printing to stdout"), "{err}");
    assert!(!err.contains("error:"), "{err}");

    // Bytecode beside the scripts (a run in development mode writes `__pycache__` there) is
    // excluded from the archive, so it does not make the next build pack again.
    let scripts = manifest.parent().unwrap().join("python");
    std::fs::create_dir_all(scripts.join("__pycache__")).unwrap();
    std::fs::write(
        scripts.join("__pycache__/hello.cpython-311.pyc"),
        b"bytecode",
    )
    .unwrap();
    std::fs::write(scripts.join("stray.pyc"), b"bytecode").unwrap();
    let second = build();
    assert!(second.status.success(), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains("bundle unchanged, reusing"), "{err}");
    assert!(!err.contains("Packing"), "{err}");
    crate::support::a_failure_prints_the_report(&binary, cache.path(), "hello");

    // A file that is packed does (after the check above: it rebuilds the program).
    std::fs::write(scripts.join("extra.txt"), b"packed").unwrap();
    let third = build();
    let err = stderr(&third);
    assert!(third.status.success(), "{err}");
    assert!(err.contains("Packing"), "{err}");
}

#[test]
fn relocation_table_and_deterministic_archive() {
    let Some(tc) = testkit::toolchain("relocation_table_and_deterministic_archive") else {
        return;
    };
    let (tmp, pkg) = fixture("relocs");
    // Bytecode is excluded by default.
    std::fs::create_dir_all(pkg.join("python/__pycache__")).unwrap();
    std::fs::write(pkg.join("python/__pycache__/hello.cpython-311.pyc"), "x").unwrap();
    let target = tmp.path().join("target");
    // The package's own files and their sha256, to compare after packing: none is edited.
    let own_files = || package_files(&pkg);
    let before = own_files();
    // `pack` with `extra` arguments: the archive's path and what the run printed to stderr.
    let pack_said = |extra: &[&str]| {
        let out = with_toolchain(&tc)
            .args(["pack", "--manifest-path"])
            .arg(pkg.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let said = stderr(&out);
        (
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()),
            said,
        )
    };
    let pack = |extra: &[&str]| pack_said(extra).0;
    let archive_path = pack(&[]);
    assert_eq!(
        archive_path,
        target.join("pybundle/relocs/debug/bundle.tar.zst")
    );
    assert_eq!(own_files(), before, "the package's files were edited");
    let archive = std::fs::read(&archive_path).unwrap();
    let m = pybundle_runtime::manifest_of(&archive).unwrap();

    assert_eq!(
        (m.name.as_str(), m.platform.as_str()),
        ("relocs", "linux-64")
    );
    assert_eq!(m.python.path, "env/bin/python3.11");
    assert!(
        m.python.version.starts_with("3.11."),
        "{}",
        m.python.version
    );
    let placeholder_len = |r: &Relocation| r.placeholder.len();
    // The interpreter: a binary placeholder (its RUNPATH), packed from the package cache.
    let python = relocation(&m, "env/bin/python3.11");
    assert_eq!(
        (python.mode, placeholder_len(python)),
        (FileMode::Binary, 255)
    );
    let packed_python = entry(&archive, "env/bin/python3.11");
    assert!(memchr::memmem::find(&packed_python, python.placeholder.as_bytes()).is_some());
    // Text files of the python package with the placeholder.
    assert!(m
        .relocations
        .iter()
        .any(|r| r.mode == FileMode::Text && r.placeholder == python.placeholder));
    // The compiled test program and its text file.
    let program = relocation(&m, "env/bin/pybundle-reloc-test");
    assert_eq!(
        (program.mode, placeholder_len(program)),
        (FileMode::Binary, 255)
    );
    assert_eq!(
        relocation(&m, "env/share/pybundle-reloc-test/prefix.txt").mode,
        FileMode::Text
    );
    // The entry point pixi wrote at install time: found only by the scan for the build prefix.
    let entry_point = relocation(&m, "env/bin/pybundle-hello");
    assert_eq!(
        (entry_point.mode, entry_point.placeholder.as_str()),
        (FileMode::Text, m.build_prefix.as_str())
    );
    assert!(
        m.relocations.windows(2).all(|w| w[0].path < w[1].path),
        "relocations sorted"
    );

    // Scripts, the Python half of the protocol, exclusions, the id.
    assert!(entry(&archive, "scripts/hello.py").starts_with(b"\"\"\"Fixture"));
    assert!(!entry(&archive, "lib/pybundle/__init__.py").is_empty());
    let tar = zstd::decode_all(&archive[..]).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names[0], MANIFEST_PATH);
    assert!(
        !names.iter().any(|n| n.contains("__pycache__")),
        "excluded files packed"
    );
    let manifest_len = entry(&archive, MANIFEST_PATH).len();
    let body_start = 512 + manifest_len.div_ceil(512) * 512;
    assert_eq!(m.id, hex::encode(Sha256::digest(&tar[body_start..])));
    assert_eq!(m.file_count as usize, names.len() - 1);

    // Our one file in the environment: a stamp in `conda-meta` naming where it was installed,
    // the one file there that is not packed (everything else in conda-meta is pixi's).
    let prefix = pkg.join(".pixi/envs/default");
    let meta = prefix.join("conda-meta");
    let stamp = std::fs::read_to_string(meta.join(".cargo-pybundle-prefix")).unwrap();
    assert_eq!(
        Path::new(&stamp).canonicalize().unwrap(),
        prefix.canonicalize().unwrap()
    );
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let pixis = [
        "history",
        "pixi",
        "pixi_env_prefix",
        ".pixi-environment-fingerprint",
    ];
    let not_pixis: Vec<&String> = on_disk
        .iter()
        .filter(|f| !f.ends_with(".json") && !pixis.contains(&f.as_str()))
        .collect();
    assert_eq!(not_pixis, [".cargo-pybundle-prefix"]);
    let packed: std::collections::BTreeSet<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("env/conda-meta/"))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let left_out: Vec<&String> = on_disk.difference(&packed).collect();
    assert_eq!(left_out, [".cargo-pybundle-prefix"]);

    // `inspect --json` of the archive gives the manifest back as written: compared with the
    // entry's own JSON, read with the tar crate (not through `manifest_of`, which inspect uses).
    let shown = cargo_pybundle()
        .args(["inspect", "--json"])
        .arg(&archive_path)
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap(),
        serde_json::from_slice::<serde_json::Value>(&entry(&archive, MANIFEST_PATH)).unwrap()
    );
    // The manifest names the CLI that wrote it, and plain `inspect` shows it.
    let shown = cargo_pybundle()
        .arg("inspect")
        .arg(&archive_path)
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    let creator = format!(
        "\ncreator     cargo-pybundle {} (format {})\n",
        env!("CARGO_PKG_VERSION"),
        pybundle_runtime::format::FORMAT_VERSION
    );
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&creator),
        "no `{}` line in:\n{}",
        creator.trim(),
        String::from_utf8_lossy(&shown.stdout)
    );

    // Packing the same inputs again gives the same bytes.
    std::fs::remove_file(target.join("pybundle/relocs/debug/bundle.tar.zst.key")).unwrap();
    let copy = tmp.path().join("again.tar.zst");
    pack(&["--output", copy.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        archive,
        "packing is not deterministic"
    );

    // `compression-level` is the level the archive is written at: the same inputs at level 1
    // repack (the level is part of the reuse key) into a larger archive, and back at the
    // fixture's level 3 give the first archive's bytes again.
    let cargo_toml = pkg.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_toml).unwrap();
    let at = |level: i32| {
        let set = text.replace(
            "compression-level = 3",
            &format!("compression-level = {level}"),
        );
        assert!(level == 3 || set != text, "the fixture sets no level 3");
        std::fs::write(&cargo_toml, set).unwrap();
        std::fs::read(pack(&[])).unwrap()
    };
    let fast = at(1);
    assert!(
        fast.len() > archive.len() + archive.len() / 50,
        "level 1: {} bytes, level 3: {} bytes",
        fast.len(),
        archive.len()
    );
    assert_eq!(
        pybundle_runtime::manifest_of(&fast).unwrap().id,
        m.id,
        "the same files"
    );
    assert_eq!(at(3), archive, "level 3 again gave other bytes");

    // `--release` leaves the debug info out of the environment (`strip`'s default there): the
    // test channel's libpython carries DWARF sections, the debug archive keeps them.
    let debug_sections = |data: &[u8]| -> usize {
        use object::{Object as _, ObjectSection as _};
        let file = object::File::parse(data).unwrap();
        file.sections()
            .filter(|s| s.name().unwrap().starts_with(".debug_"))
            .count()
    };
    let libpython = "env/lib/libpython3.11.so.1.0";
    let release_pack = || {
        let (path, said) = pack_said(&["--release"]);
        (std::fs::read(path).unwrap(), said)
    };
    let kept = entry(&archive, libpython);
    assert!(
        debug_sections(&kept) > 0,
        "the fixture's libpython has no debug info"
    );
    let (release, said) = release_pack();
    assert!(said.contains("Stripped debug info from"), "{said}");
    let stripped = entry(&release, libpython);
    assert_eq!(debug_sections(&stripped), 0);
    assert!(
        stripped.len() < kept.len() / 2,
        "{} vs {}",
        stripped.len(),
        kept.len()
    );
    // The interpreter is still the placeholder copy, relocated at first run.
    let released = pybundle_runtime::manifest_of(&release).unwrap();
    let python = relocation(&released, "env/bin/python3.11");
    assert_eq!(python.mode, FileMode::Binary);
    let packed_python = entry(&release, "env/bin/python3.11");
    assert!(memchr::memmem::find(&packed_python, python.placeholder.as_bytes()).is_some());
    // `strip = "none"` (part of the reuse key: it repacks) packs the files as installed.
    std::fs::write(
        &cargo_toml,
        text.replace(
            "[package.metadata.pybundle]\n",
            "[package.metadata.pybundle]\nstrip = \"none\"\n",
        ),
    )
    .unwrap();
    let (unstripped, said) = release_pack();
    assert!(!said.contains("Stripped"), "{said}");
    assert_eq!(entry(&unstripped, libpython), kept);
    std::fs::write(&cargo_toml, &text).unwrap();
}

/// Runs `pack` on a broken copy of the fixture; checks the exit code, the message, and that
/// nothing was left where a later run would take it for an archive.
fn pack_fails(test: &str, breakage: impl FnOnce(&Path), extra: &[&str], code: i32, says: &[&str]) {
    pack_fails_with(test, breakage, extra, &[], code, says);
}

/// [`pack_fails`] with environment variables set for the run.
fn pack_fails_with(
    test: &str,
    breakage: impl FnOnce(&Path),
    extra: &[&str],
    vars: &[(&str, &std::ffi::OsStr)],
    code: i32,
    says: &[&str],
) {
    let Some(tc) = testkit::toolchain(test) else {
        return;
    };
    let (tmp, pkg) = fixture("relocs");
    breakage(&pkg);
    let target = tmp.path().join("target");
    let out = with_toolchain(&tc)
        .envs(vars.iter().copied())
        .args(["pack", "--manifest-path"])
        .arg(pkg.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .args(extra)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    for s in says {
        assert!(err.contains(s), "expected `{s}` in:\n{err}");
    }
    let work = target.join("pybundle/relocs");
    // Empty folders (`release/` once packing started) hold nothing a later run could trust.
    let left: Vec<String> = files_under(&work)
        .into_iter()
        .filter(|f| f != "pixi-config.toml" && f != ".lock")
        .filter(|f| !(f.ends_with('/') && is_empty_dir(&work.join(f))))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

#[test]
fn a_release_pack_that_cannot_run_strip_names_it_and_the_ways_out() {
    let missing = std::env::temp_dir().join("pybundle-no-such-strip");
    pack_fails_with(
        "a_release_pack_that_cannot_run_strip_names_it_and_the_ways_out",
        |_| {},
        &["--release"],
        &[("STRIP", missing.as_os_str())],
        6,
        &[
            "pybundle-no-such-strip` was not found",
            "the STRIP environment variable",
            "env/",
            "Install binutils, or set strip = \"none\"",
        ],
    );
}

#[test]
fn missing_pixi_manifest() {
    pack_fails(
        "missing_pixi_manifest",
        |p| std::fs::remove_file(p.join("pixi.toml")).unwrap(),
        &[],
        3,
        &["pixi.toml", "cannot be read", "`manifest`"],
    );
}

#[test]
fn unresolvable_pixi_manifest() {
    pack_fails(
        "unresolvable_pixi_manifest",
        |p| {
            let path = p.join("pixi.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(path, format!("{text}no-such-package-pybundle = \"*\"\n")).unwrap();
        },
        &[],
        5,
        &[
            "could not be installed",
            "`pixi install` failed",
            "relocs/pixi.toml;",
        ],
    );
}

#[test]
fn unknown_environment() {
    pack_fails(
        "unknown_environment",
        |p| {
            let path = p.join("Cargo.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(path, format!("{text}environment = \"gpu\"\n")).unwrap();
        },
        &[],
        3,
        &[
            "unknown environment 'gpu'",
            "environment `gpu` of ",
            "relocs/pixi.toml",
            "`environment` in [package.metadata.pybundle]",
        ],
    );
}

#[test]
fn missing_scripts_folder() {
    pack_fails(
        "missing_scripts_folder",
        |p| std::fs::remove_dir_all(p.join("python")).unwrap(),
        &[],
        3,
        &["scripts folder", "does not exist"],
    );
}

#[test]
fn unwritable_output() {
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let out = blocker.path().join("bundle.tar.zst");
    pack_fails(
        "unwritable_output",
        |_| {},
        &["--output", out.to_str().unwrap()],
        6,
        &[
            "cannot write the archive to",
            "choose a writable --output path",
        ],
    );
}

#[test]
fn named_environment_and_frozen_lock() {
    let Some(tc) = testkit::toolchain("named_environment_and_frozen_lock") else {
        return;
    };
    let (tmp, pkg) = fixture("relocs");
    // The compiled test package only in a second environment, `extra`.
    let pixi_toml = std::fs::read_to_string(pkg.join("pixi.toml"))
        .unwrap()
        .replace("pybundle-reloc-test = \"*\"\n", "");
    std::fs::write(
        pkg.join("pixi.toml"),
        format!(
            "{pixi_toml}\n[feature.extra.dependencies]\npybundle-reloc-test = \"*\"\n\n\
             [environments]\nextra = [\"extra\"]\n"
        ),
    )
    .unwrap();
    let cargo_toml = std::fs::read_to_string(pkg.join("Cargo.toml")).unwrap();
    std::fs::write(
        pkg.join("Cargo.toml"),
        format!("{cargo_toml}environment = \"extra\"\n"),
    )
    .unwrap();
    let target = tmp.path().join("target");
    let pack = |tc: &testkit::Toolchain| {
        with_toolchain(tc)
            .args(["pack", "--manifest-path"])
            .arg(pkg.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .output()
            .unwrap()
    };
    let out = pack(&tc);
    assert!(out.status.success(), "{}", stderr(&out));
    let archive = std::fs::read(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let m = pybundle_runtime::manifest_of(&archive).unwrap();
    assert!(
        m.build_prefix.ends_with("/envs/extra"),
        "{}",
        m.build_prefix
    );
    relocation(&m, "env/bin/pybundle-reloc-test");

    // lock = "frozen" with no pixi.lock: a clear error before anything is installed.
    std::fs::remove_file(pkg.join("pixi.lock")).unwrap();
    let frozen = std::fs::read_to_string(pkg.join("Cargo.toml")).unwrap();
    std::fs::write(
        pkg.join("Cargo.toml"),
        format!("{frozen}lock = \"frozen\"\n"),
    )
    .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let out = with_toolchain(&tc)
        .args(["pack", "--manifest-path"])
        .arg(pkg.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(fresh.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "lock = \"frozen\" needs {}",
            pkg.join("pixi.lock").display()
        )),
        "{}",
        stderr(&out)
    );
}

/// The `channel-mirrors` key of the package's table reaches pixi on its own (no variable set:
/// the fixture's test packages exist only in the test channel), and `PYBUNDLE_CHANNEL_MIRRORS`
/// wins over it for the same channel.
#[test]
fn the_channel_mirrors_key_reaches_pixi_and_the_variable_wins_over_it() {
    let Some(tc) =
        testkit::toolchain("the_channel_mirrors_key_reaches_pixi_and_the_variable_wins_over_it")
    else {
        return;
    };
    let (tmp, pkg) = fixture("relocs");
    let manifest = pkg.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!(
            "{text}channel-mirrors = {{ conda-forge = \"{}\" }}\n",
            tc.channel
        ),
    )
    .unwrap();
    // `cargo_pybundle()` clears the variable; only pixi is given.
    let pack = || {
        let mut cmd = cargo_pybundle();
        cmd.env("PYBUNDLE_PIXI", &tc.pixi)
            .args(["pack", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(tmp.path().join("target"));
        cmd
    };
    let out = pack().output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let missing = tmp.path().join("no-such-mirror");
    let out = pack()
        .env(
            "PYBUNDLE_CHANNEL_MIRRORS",
            format!("conda-forge=file://{}", missing.display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{} is not a folder", missing.display())),
        "{}",
        stderr(&out)
    );
}

/// A `cargo build` that fails after the bundle is ready (here on a feature the package does not
/// have) exits with 7, saying so.
#[test]
fn a_failing_cargo_build_exits_7() {
    let Some(tc) = testkit::toolchain("a_failing_cargo_build_exits_7") else {
        return;
    };
    let (copy, manifest) = crate::support::example("hello");
    let out = with_toolchain(&tc)
        .args(["build", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(copy.path().join("target"))
        .args(["--features", "no-such-feature"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("error: cargo build failed"), "{err}");
    assert!(
        err.contains("no-such-feature"),
        "cargo's own message: {err}"
    );
}

/// This machine's target triple (`rustc -vV`'s `host:` line).
fn host_triple() -> String {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("a host line from rustc -vV")
        .to_owned()
}

/// README, Limits: "the environment is installed for the build machine's platform; `--target`
/// changes only the Rust side". With `--target` (this machine's triple) the program is built
/// under `<target>/<triple>/debug/` and its bundled copy beside it carries the build machine's
/// environment; with a foreign triple the same environment is installed and packed, whatever
/// becomes of the Rust build (here the triple's standard library is not installed: exit 7).
#[test]
fn target_changes_only_the_rust_side() {
    let Some(tc) = testkit::toolchain("target_changes_only_the_rust_side") else {
        return;
    };
    let (_copy, manifest) = crate::support::example("hello");
    let build = |triple: &str| {
        with_toolchain(&tc)
            .args(["build", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(shared_target())
            .args(["--target", triple])
            .output()
            .unwrap()
    };
    let archive = shared_target().join("pybundle/hello/debug/bundle.tar.zst");
    let packed = || pybundle_runtime::manifest_of(&std::fs::read(&archive).unwrap()).unwrap();
    let host = host_triple();
    let native = build(&host);
    assert!(native.status.success(), "{}", stderr(&native));
    let stdout = String::from_utf8(native.stdout).unwrap();
    let binary = PathBuf::from(stdout.lines().last().expect("the binary's path on stdout"));
    assert_eq!(
        binary,
        shared_target().join(&host).join("debug/bundled/hello"),
        "{stdout}"
    );
    let cache = tempfile::tempdir().unwrap();
    greet_tester(&binary, cache.path());
    let shipped = cargo_pybundle()
        .args(["inspect", "--json"])
        .arg(&binary)
        .output()
        .unwrap();
    let shipped: Manifest = serde_json::from_slice(&shipped.stdout).unwrap();
    assert_eq!(shipped.platform, "linux-64");

    let foreign = if host.starts_with("aarch64-") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    std::fs::remove_file(&archive).unwrap();
    let out = build(foreign);
    let err = stderr(&out);
    assert!(
        err.contains("Packing") && archive.is_file(),
        "packed before cargo built: {err}"
    );
    let m = packed();
    assert_eq!(
        (m.platform.as_str(), m.build_prefix.as_str()),
        ("linux-64", shipped.build_prefix.as_str()),
        "the build machine's environment: {err}"
    );
    if out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("{foreign}/debug/bundled/hello")),
            "{stdout}"
        );
    } else {
        assert_eq!(out.status.code(), Some(7), "only cargo failed: {err}");
    }
}

/// `lock = "update"`: a pixi.lock that no longer matches the manifest is updated by pixi and
/// the build goes on (with the default, `locked`, the same lock stops it).
#[test]
fn lock_update_lets_pixi_update_a_stale_lock() {
    let Some(tc) = testkit::toolchain("lock_update_lets_pixi_update_a_stale_lock") else {
        return;
    };
    let (tmp, pkg) = fixture("relocs");
    let pack = || {
        with_toolchain(&tc)
            .args(["pack", "--manifest-path"])
            .arg(pkg.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(tmp.path().join("target"))
            .output()
            .unwrap()
    };
    let first = pack();
    assert!(first.status.success(), "{}", stderr(&first));
    let lock = || std::fs::read_to_string(pkg.join("pixi.lock")).unwrap();
    assert!(lock().contains("pybundle-hello-entry"));
    // The manifest drops a package the lock still holds.
    let manifest = pkg.join("pixi.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("pybundle-hello-entry = \"*\"\n", ""),
    )
    .unwrap();
    let stale = pack();
    assert_eq!(stale.status.code(), Some(5), "{}", stderr(&stale));
    let cargo_toml = pkg.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_toml).unwrap();
    std::fs::write(&cargo_toml, format!("{text}lock = \"update\"\n")).unwrap();
    let updated = pack();
    assert!(updated.status.success(), "{}", stderr(&updated));
    assert!(!lock().contains("pybundle-hello-entry"), "{}", lock());
}

/// Runs a bundled hello with `tester` as its argument and `cache` as its cache directory;
/// what it printed, once checked that it succeeded and greeted the tester.
fn greet_tester(binary: &Path, cache: &Path) -> String {
    let run = std::process::Command::new(binary)
        .arg("tester")
        .env("PYBUNDLE_CACHE_DIR", cache)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{said}\n{}", stderr(&run));
    assert!(said.contains("hello, tester"), "{said}");
    said
}
