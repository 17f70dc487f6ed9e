//! The real things: a program built by cargo with the archive embedded, and a conda-build
//! style python from the test channel.

use std::path::PathBuf;
use std::process::Command;

use pybundle_runtime::Bundle;

use super::*;

// --- a real build with the archive embedded ------------------------------------------------

/// Builds a small program against this crate, appends an archive and its trailer to a copy
/// (what `cargo pybundle build` does) and runs the copy: the archive must come back byte-exact
/// through `Bundle::embedded()`, mapped from the program's own file. The program without an
/// archive must fail with the "use cargo pybundle build" message, not a panic.
#[test]
fn an_embedded_archive_works_in_a_real_build() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embed-app");
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(
        work.join("Cargo.toml"),
        format!(
            "[package]\nname = \"embed-app\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             [dependencies]\npybundle-runtime = {{ path = {:?} }}\n[workspace]\n",
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("src/main.rs"),
        r#"fn main() {
    let bundle = match pybundle_runtime::Bundle::embedded() {
        Ok(b) => b,
        Err(e) => { println!("ERR {e}"); std::process::exit(3) }
    };
    let env = bundle.ready().unwrap();
    println!("OK {} {}", bundle.manifest().id, env.interpreter().display());
}
"#,
    )
    .unwrap();
    let _ = std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"),
        work.join("Cargo.lock"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive_path = tmp.path().join("bundle.tar.zst");
    let archive = build(&sample("embedded", "x"));
    std::fs::write(&archive_path, &archive).unwrap();
    let id = pybundle_runtime::manifest_of(&archive).unwrap().id;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let plain = work.join("target/debug/embed-app");
    let out = Command::new(&cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(work.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", work.join("target"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = tmp.path().join("embed-app-bundled");
    let mut bytes = std::fs::read(&plain).unwrap();
    bytes.extend_from_slice(&archive);
    bytes.extend_from_slice(&pybundle_runtime::trailer(archive.len() as u64));
    std::fs::write(&exe, &bytes).unwrap();
    std::fs::set_permissions(&exe, std::fs::metadata(&plain).unwrap().permissions()).unwrap();
    let out = output_retrying_busy(
        Command::new(&exe).env("PYBUNDLE_CACHE_DIR", tmp.path().join("cache")),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = tmp
        .path()
        .join("cache")
        .join(format!("embedded-{}", &id[..16]));
    assert_eq!(
        stdout.trim(),
        format!("OK {id} {}", dir.join("env/bin/python3").display()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Findable by `cargo pybundle inspect`.
    assert_eq!(
        pybundle_runtime::find_in_executable(&bytes),
        Some(&archive[..])
    );

    let out = Command::new(&plain).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ERR ") && stdout.contains("cargo pybundle build"),
        "{stdout}"
    );
}

// --- a real conda python --------------------------------------------------------------------

/// The test channel's conda-build style python (255-character placeholder in text files and
/// in the RUNPATH of the interpreter), bundled the way the packer does it (original files,
/// placeholders listed from `info/paths.json`), must start from the cache and report the new
/// prefix. Without the relocations the same bundle must not start: the test can fail.
#[test]
fn a_real_conda_python_starts_after_relocation() {
    let Some(channel) = std::env::var("PYBUNDLE_TEST_CHANNEL")
        .ok()
        .filter(|c| !c.is_empty())
    else {
        let msg = "a_real_conda_python_starts_after_relocation: needs PYBUNDLE_TEST_CHANNEL \
                   (run `cargo xtask test`, or set it to the URL `cargo xtask channel` prints)";
        assert!(
            !testkit::in_ci(),
            "{msg} (CI is set, so this fails instead of skipping)"
        );
        eprintln!("SKIPPED {msg}");
        return;
    };
    let linux = Path::new(channel.trim_start_matches("file://")).join("linux-64");
    let tmp = tempfile::tempdir().unwrap();
    let python = RealPython::unpack(&linux, tmp.path());
    let relocations = python.relocations.clone();
    assert!(relocations
        .iter()
        .any(|r| r.mode == FileMode::Binary && r.path == "env/bin/python3.11"));
    let placeholder = relocations[0].placeholder.clone();
    let spec = |relocations: Vec<Relocation>| python.spec(relocations);

    let env = Bundle::from_bytes(build(&spec(relocations.clone())))
        .unwrap()
        .cache_dir(tmp.path().join("cache"))
        .ready()
        .unwrap();
    // The prefix as Python sees it, from sysconfig (a relocated text file), and the libpython
    // the loader mapped (found through the relocated RUNPATH of a binary file).
    let probe =
        "import sys, sysconfig\nprint(sys.prefix)\nprint(sysconfig.get_config_var('prefix'))\n\
                 print(next(l.split()[-1] for l in open('/proc/self/maps') if 'libpython3' in l))";
    let out = env.python().args(["-c", probe]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = env.prefix().display().to_string();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{prefix}\n{prefix}\n{prefix}/lib/libpython3.11.so.1.0\n")
    );
    for r in &relocations {
        let data = std::fs::read(env.root().join(&r.path)).unwrap();
        assert!(
            !data
                .windows(placeholder.len())
                .any(|w| w == placeholder.as_bytes()),
            "{} still holds the placeholder",
            r.path
        );
    }

    // The control: without relocations the same bundle keeps the placeholder and loads some
    // other libpython (or none), so the checks above can fail.
    let env = Bundle::from_bytes(build(&spec(Vec::new())))
        .unwrap()
        .cache_dir(tmp.path().join("cache-unrelocated"))
        .ready()
        .unwrap();
    let out = env.python().args(["-c", probe]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = env.prefix().display().to_string();
    assert!(
        !out.status.success()
            || !stdout.ends_with(&format!(
                "{prefix}\n{prefix}\n{prefix}/lib/libpython3.11.so.1.0\n"
            )),
        "an unrelocated bundle looked relocated: {stdout}"
    );
    eprintln!("unrelocated control: {:?} {stdout:?}", out.status);
}

/// The test channel's conda-build style python package, unpacked: its files (as `env/...`
/// entries) and its placeholders listed from `info/paths.json`, as the packer lists them.
pub struct RealPython {
    unpacked: PathBuf,
    files: Vec<(String, Kind)>,
    /// Sorted.
    pub relocations: Vec<Relocation>,
}

impl RealPython {
    /// Unpacks the `python-*` package of the channel's `linux` folder under `scratch`.
    pub fn unpack(linux: &Path, scratch: &Path) -> RealPython {
        let pkg = std::fs::read_dir(linux)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("python-")
            })
            .unwrap_or_else(|| panic!("no python package in {}", linux.display()));
        let unpacked = scratch.join("pkg");
        std::fs::create_dir(&unpacked).unwrap();
        let status = Command::new("tar")
            .arg("-xjf")
            .arg(&pkg)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(status.success(), "cannot unpack {}", pkg.display());
        let paths: serde_json::Value =
            serde_json::from_slice(&std::fs::read(unpacked.join("info/paths.json")).unwrap())
                .unwrap();
        let mut relocations: Vec<Relocation> = paths["paths"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                let placeholder = p.get("prefix_placeholder")?.as_str()?.to_owned();
                let mode = match p.get("file_mode").and_then(|m| m.as_str()) {
                    Some("binary") => FileMode::Binary,
                    _ => FileMode::Text,
                };
                Some(Relocation {
                    path: format!("env/{}", p["_path"].as_str()?),
                    placeholder,
                    mode,
                })
            })
            .collect();
        relocations.sort();
        let mut files = Vec::new();
        collect(&unpacked, &unpacked, &mut files);
        RealPython {
            unpacked,
            files,
            relocations,
        }
    }

    /// The package as a bundle named `realpy` with these relocations.
    pub fn spec(&self, relocations: Vec<Relocation>) -> Spec {
        Spec {
            name: "realpy".into(),
            entries: self
                .files
                .iter()
                .map(|(rel, kind)| match kind {
                    Kind::Dir => E::Dir(format!("env/{rel}/")),
                    Kind::Link(t) => E::Symlink(format!("env/{rel}"), t.clone()),
                    Kind::File(mode) => E::File(
                        format!("env/{rel}"),
                        std::fs::read(self.unpacked.join(rel)).unwrap(),
                        *mode,
                    ),
                })
                .collect(),
            relocations,
            id: None,
        }
    }
}

enum Kind {
    Dir,
    Link(String),
    File(u32),
}

/// The package's files (without `info/`), sorted, parents first.
fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, Kind)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_owned();
        if rel == "info" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap().to_str().unwrap().to_owned();
            out.push((rel, Kind::Link(target)));
        } else if meta.is_dir() {
            out.push((rel, Kind::Dir));
            collect(base, &p, out);
        } else {
            out.push((rel, Kind::File(meta.permissions().mode() & 0o777)));
        }
    }
}

/// `cmd.output()`, retried while exec fails with ETXTBSY: a child another test thread forks
/// while the program is still open for writing holds that descriptor until its own exec, and
/// Linux refuses to run a file open for writing. The window is short; the retries are bounded.
fn output_retrying_busy(cmd: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("the program stayed busy (ETXTBSY) for 2 s: {cmd:?}");
}
