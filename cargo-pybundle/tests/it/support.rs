//! Shared helpers: running the real binary, copying fixtures, checking for leftovers.

use std::path::{Path, PathBuf};

/// The real `cargo-pybundle` binary, with the variables that steer it cleared so a test only
/// sees what it sets itself.
pub fn cargo_pybundle() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_cargo-pybundle"));
    for var in [
        "PYBUNDLE_PIXI",
        "PYBUNDLE_PIXI_MIRROR",
        "PYBUNDLE_CHANNEL_MIRRORS",
        "PYBUNDLE_LOG",
        "PYBUNDLE_HTTP_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("pybundle");
    cmd
}

/// A `std::process::Command` with the program, arguments, variables and folder of `cmd`, for
/// what `assert_cmd` does not offer (another stdout).
pub fn std_command(cmd: &assert_cmd::Command) -> std::process::Command {
    let mut out = std::process::Command::new(cmd.get_program());
    out.args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => out.env(key, value),
            None => out.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    out
}

/// Copies `cargo-pybundle/tests/fixtures/<name>` into a fresh temp dir (tests never write
/// into the source tree) and returns the dir and the package path inside it.
pub fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    copy_tree(&src, &dst);
    (tmp, dst)
}

/// Copies `examples/<name>` into a fresh temp dir, as a package of its own (the workspace's
/// Cargo.lock beside it, pybundle-runtime by absolute path), so building it never writes into
/// the source tree (pixi puts `.pixi/` and `pixi.lock` beside the manifest). Returns the dir
/// and the copy's Cargo.toml.
///
/// The copy holds a lock on the example's name until it is dropped: copies of one example built
/// into [`shared_target`] share its `pybundle/<package>/` folder, its development record and
/// its `bundled/<name>` program, so tests of the same example take turns.
pub fn example(name: &str) -> (ExampleCopy, PathBuf) {
    let guard = example_lock(name);
    let root = testkit::workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(root.join("examples").join(name)).unwrap() {
        let entry = entry.unwrap();
        let file_name = entry.file_name();
        // What a build there may have left: pixi's environment and lock, cargo's target.
        if [".pixi", "target", "pixi.lock"]
            .iter()
            .any(|g| file_name == *g)
        {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dst.join(&file_name));
        } else {
            std::fs::copy(entry.path(), dst.join(&file_name)).unwrap();
        }
    }
    let manifest = dst.join("Cargo.toml");
    let runtime = root.join("pybundle-runtime");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let patched = text.replace(
        "\"../../pybundle-runtime\"",
        &format!("{:?}", runtime.to_str().unwrap()),
    );
    assert_ne!(
        text,
        patched,
        "{} does not depend on ../../pybundle-runtime",
        manifest.display()
    );
    std::fs::write(&manifest, format!("{patched}\n[workspace]\n")).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dst.join("Cargo.lock")).unwrap();
    (
        ExampleCopy {
            dir: tmp,
            _turn: guard,
        },
        manifest,
    )
}

/// A copy of an example (see [`example`]): its temp dir, and the example's turn.
pub struct ExampleCopy {
    dir: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl ExampleCopy {
    /// The temp dir holding the copy.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The lock of one example's name, for this test binary.
fn example_lock(name: &str) -> std::sync::MutexGuard<'static, ()> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<String, &'static Mutex<()>>>> = OnceLock::new();
    let lock = *LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_owned())
        .or_insert_with(|| Box::leak(Box::new(Mutex::new(()))));
    // A test that failed while holding it poisons it; the next one may still run.
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// A minimal Cargo package (no dependencies) with the given `[package.metadata.pybundle]`
/// body; `None` leaves the table out.
pub fn package(dir: &Path, name: &str, metadata: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let mut toml = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"
    );
    if let Some(body) = metadata {
        toml.push_str(&format!("\n[package.metadata.pybundle]\n{body}\n"));
    }
    let manifest = dir.join("Cargo.toml");
    std::fs::write(&manifest, toml).unwrap();
    manifest
}

/// Every file under `dir` (recursively), as paths relative to it, and every empty folder as
/// its path with a trailing `/` (so "nothing left" also sees an empty folder left behind).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if dir.exists() {
        for entry in walkdir(dir) {
            let rel = entry.strip_prefix(dir).unwrap().display().to_string();
            let slash = if entry.as_os_str().as_encoded_bytes().ends_with(b"/") {
                "/"
            } else {
                ""
            };
            out.push(format!("{rel}{slash}"));
        }
    }
    out.sort();
    out
}

/// The files of the package at `package` with their sha256, as [`files_under`] lists them,
/// except what pixi writes (`.pixi/`, and `pixi.lock` when it solves) and what cargo writes
/// (`Cargo.lock`): what a build must leave as it found it.
pub fn package_files(package: &Path) -> Vec<(String, String)> {
    use sha2::Digest as _;
    files_under(package)
        .into_iter()
        .filter(|f| !f.starts_with(".pixi/") && f != "pixi.lock" && f != "Cargo.lock")
        .map(|f| {
            // An empty folder (`name/`) hashes as empty.
            let bytes = std::fs::read(package.join(&f)).unwrap_or_default();
            (f, hex::encode(sha2::Sha256::digest(bytes)))
        })
        .collect()
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            let inside = walkdir(&path);
            if inside.is_empty() {
                let mut empty = path.into_os_string();
                empty.push("/");
                out.push(PathBuf::from(empty));
            }
            out.extend(inside);
        } else {
            out.push(path);
        }
    }
    out
}

/// Text of a finished command's stderr.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The CLI with the real test toolchain: pixi and `conda-forge` mapped to the test channel.
pub fn with_toolchain(tc: &testkit::Toolchain) -> assert_cmd::Command {
    let mut cmd = cargo_pybundle();
    cmd.env("PYBUNDLE_PIXI", &tc.pixi)
        .env("PYBUNDLE_CHANNEL_MIRRORS", tc.mirrors());
    cmd
}

/// One target dir for the whole test binary (and kept between runs), so pybundle-runtime and
/// the examples' dependencies compile once.
pub fn shared_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-target")
}

/// `cargo pybundle build -q` of the package at `manifest` into [`shared_target`]; the path of
/// the binary it printed.
pub fn build_binary(tc: &testkit::Toolchain, manifest: &Path) -> PathBuf {
    let built = with_toolchain(tc)
        .args(["build", "-q", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(shared_target())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let stdout = String::from_utf8(built.stdout).unwrap();
    PathBuf::from(stdout.lines().last().expect("the binary's path on stdout"))
}

/// A bundled program whose interpreter is gone from its extracted bundle in `cache` (a warm
/// `ready()` reads only the marker) fails to start its script, and prints `report()` — the
/// error and its cause — after `<program>: `, as `init`'s template and the examples do.
pub fn a_failure_prints_the_report(binary: &Path, cache: &Path, program: &str) {
    let dirs: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let [dir] = &dirs[..] else {
        panic!("one bundle directory expected: {dirs:?}")
    };
    std::fs::remove_file(dir.join("env/bin/python3.11")).unwrap();
    let broken = std::process::Command::new(binary)
        .env("PYBUNDLE_CACHE_DIR", cache)
        .output()
        .unwrap();
    let err = stderr(&broken);
    assert_eq!(broken.status.code(), Some(1), "{err}");
    let start = format!("{program}: cannot start the Python interpreter");
    assert!(
        err.lines()
            .any(|l| l.starts_with(&start)
                && l.ends_with(": No such file or directory (os error 2)")),
        "{err}"
    );
}
