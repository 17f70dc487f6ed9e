//! Smoke test of the test toolchain: the real pixi installs the local channel's packages, and
//! every kind of relocation the channel exercises (text, binary RUNPATH, compiled C string,
//! noarch entry point) comes out pointing at the real prefix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The channel's build placeholder, as `cargo xtask channel` makes it (checked against the
/// packages' own `info/paths.json` below, so a drift fails here).
fn placeholder() -> String {
    let mut p = String::from("/tmp/pybundle_build/_h_env");
    while p.len() < 255 {
        p.push_str("_placehold");
    }
    p.truncate(255);
    p
}

/// Progress lines that cargo test does not capture, so CI logs show what was checked.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "  smoke: {line}");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    checked(cmd, out)
}

/// `pixi <args>`, which must succeed.
fn pixi(pixi: &Path, args: &[&std::ffi::OsStr]) -> String {
    run(Command::new(pixi).args(args))
}

fn checked(cmd: &Command, out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn pixi_installs_the_test_channel_and_relocates_everything() {
    let Some(tc) = testkit::toolchain("xtask smoke test") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("pixi.toml");
    std::fs::write(
        &manifest,
        format!(
            "[workspace]\nname = \"smoke\"\nchannels = [\"{}\"]\nplatforms = [\"linux-64\"]\n\n\
             [dependencies]\npython = \"*\"\npybundle-hello-entry = \"*\"\npybundle-reloc-test = \"*\"\n",
            tc.channel
        ),
    )
    .expect("write pixi.toml");
    say(&format!("pixi install from {}", tc.channel));
    let m = manifest.as_os_str();
    pixi(
        &tc.pixi,
        &["install".as_ref(), "--manifest-path".as_ref(), m],
    );

    // Where pixi put the environment: ask it, as the packer does.
    let info: serde_json::Value = serde_json::from_str(&pixi(
        &tc.pixi,
        &[
            "info".as_ref(),
            "--json".as_ref(),
            "--manifest-path".as_ref(),
            m,
        ],
    ))
    .expect("pixi info --json is JSON");
    let prefix = info["environments_info"][0]["prefix"]
        .as_str()
        .expect("environments_info[0].prefix");
    let prefix = PathBuf::from(prefix);
    assert_eq!(
        prefix,
        dir.path()
            .canonicalize()
            .unwrap()
            .join(".pixi/envs/default")
    );
    say(&format!(
        "pixi info: prefix {}, cache_dir {}",
        prefix.display(),
        info["cache_dir"]
    ));
    let p = prefix.to_str().expect("utf-8 prefix");

    say("python3 imports json, ssl, sqlite3, ctypes and reports its prefix");
    let out = run(Command::new(prefix.join("bin/python3")).args([
        "-c",
        "import json, ssl, sqlite3, ctypes, sys; print(sys.prefix)",
    ]));
    assert_eq!(out.trim(), p);

    say("bin/pybundle-hello runs by its own shebang");
    let hello = prefix.join("bin/pybundle-hello");
    let script = std::fs::read_to_string(&hello).expect("entry point script");
    assert!(
        script.starts_with(&format!("#!{p}/bin/python3.")),
        "shebang: {script}"
    );
    assert_eq!(
        run(&mut Command::new(&hello)).trim(),
        format!("pybundle-hello from {p}")
    );

    say("bin/pybundle-reloc-test prints the real prefix (binary placeholder, NUL-padded)");
    assert_eq!(
        run(&mut Command::new(prefix.join("bin/pybundle-reloc-test"))).trim(),
        format!("PREFIX={p}")
    );
    let text =
        std::fs::read_to_string(prefix.join("share/pybundle-reloc-test/prefix.txt")).unwrap();
    assert_eq!(text, format!("{p}\n"));

    say("pixi run sources etc/conda/activate.d: PYBUNDLE_TEST_DATA is set");
    let args = ["run", "--manifest-path"].map(std::ffi::OsStr::new);
    let data = pixi(
        &tc.pixi,
        &[
            args[0],
            args[1],
            m,
            "printenv".as_ref(),
            "PYBUNDLE_TEST_DATA".as_ref(),
        ],
    );
    assert_eq!(data.trim(), format!("{p}/share/pybundle-reloc-test"));

    say("the interpreter's RUNPATH is <prefix>/lib");
    let interpreter = std::fs::read(prefix.join("bin/python3.11")).expect("bin/python3.11");
    let runpath = format!("{p}/lib\0");
    assert!(
        memchr::memmem::find(&interpreter, runpath.as_bytes()).is_some(),
        "no {runpath:?}"
    );

    let placeholder = placeholder();
    let mut files = 0;
    for entry in walkdir::WalkDir::new(&prefix) {
        let entry = entry.unwrap();
        // pixi records each file's `prefix_placeholder` in conda-meta: metadata, not a path.
        let metadata = entry
            .path()
            .parent()
            .is_some_and(|d| d.ends_with("conda-meta"));
        if entry.file_type().is_file() && !metadata {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                memchr::memmem::find(&bytes, placeholder.as_bytes()).is_none(),
                "{} still holds the placeholder",
                entry.path().display()
            );
            files += 1;
        }
    }
    say(&format!(
        "no placeholder left in any of the {files} installed files (conda-meta aside)"
    ));

    // The packer reads the original files from the package cache: check what it relies on.
    let meta = prefix.join("conda-meta");
    let python_meta = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("python-3.")
        })
        .expect("conda-meta/python-*.json");
    let record = read_json(&python_meta);
    let extracted = PathBuf::from(
        record["extracted_package_dir"]
            .as_str()
            .expect("extracted_package_dir"),
    );
    let paths = read_json(&extracted.join("info/paths.json"));
    let interp = paths["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["_path"] == "bin/python3.11")
        .expect("bin/python3.11 in paths.json");
    assert_eq!(interp["file_mode"], "binary");
    assert_eq!(interp["prefix_placeholder"], placeholder.as_str());
    say(&format!(
        "extracted_package_dir {} holds paths.json with the placeholder",
        extracted.display()
    ));
}
