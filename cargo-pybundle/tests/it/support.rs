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
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("pybundle");
    cmd
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

/// Every file under `dir` (recursively), as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if dir.exists() {
        for entry in walkdir(dir) {
            out.push(entry.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walkdir(&path));
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
