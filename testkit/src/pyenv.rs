//! Python interpreters for protocol tests: the host's CPython (fast) and the real bundled
//! interpreter, installed by pixi from the local test channel once for all test processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// An installed interpreter and the prefix it belongs to.
#[derive(Clone, Debug)]
pub struct Python {
    /// Short label for test output ("host", "channel").
    pub label: &'static str,
    /// The conda (or other) prefix.
    pub prefix: PathBuf,
    /// The interpreter binary (symlinks resolved).
    pub interpreter: PathBuf,
}

/// The host's `python3` with symlinks and shims (pyenv) resolved to the real binary.
///
/// # Panics
/// When there is no working `python3` on `PATH` (the protocol tests need one).
pub fn host_python() -> Python {
    static HOST: OnceLock<Python> = OnceLock::new();
    HOST.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable); print(sys.prefix)"])
            .output()
            .expect("python3 must be on PATH for the protocol tests");
        assert!(
            out.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 paths");
        let mut lines = text.lines();
        let exe = PathBuf::from(lines.next().unwrap_or_default());
        let prefix = PathBuf::from(lines.next().unwrap_or_default());
        let interpreter = std::fs::canonicalize(&exe).unwrap_or(exe);
        Python {
            label: "host",
            prefix,
            interpreter,
        }
    })
    .clone()
}

/// The test channel's Python 3.11, installed with the real pixi into a folder of the system's
/// temporary directory that every test process (and run) of this user shares: one per pixi and
/// channel, made once under a lock. `None` (after printing why) when the toolchain is not
/// prepared and this is not CI.
///
/// # Panics
/// When pixi fails, or when the toolchain is missing in CI.
pub fn channel_python(test: &str) -> Option<Python> {
    static CHANNEL: OnceLock<Python> = OnceLock::new();
    let toolchain = crate::toolchain(test)?;
    Some(
        CHANNEL
            .get_or_init(|| shared_install(&toolchain.pixi, &toolchain.channel))
            .clone(),
    )
}

/// `install` into `<tmp>/pybundle-pyenv-<uid>-<key>`, where the key digests the pixi path and the
/// channel URL, unless a complete one is there: the folder counts once its `installed` marker
/// is written, and one process at a time makes it (an exclusive lock on `<folder>.lock`), so a
/// half-made folder (a killed run) is made again, never used. Before, each test process made
/// its own temporary copy (~100 MB) and left it behind.
fn shared_install(pixi: &Path, channel: &str) -> Python {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;

    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let digest = Sha256::digest(format!("{}\n{channel}", pixi.display()).as_bytes());
    let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("pybundle-pyenv-{uid}-{key}"));
    let lock_path = dir.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    let marker = dir.join("installed");
    if !marker.is_file() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot remove the half-made {}: {e}", dir.display()));
        }
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        install(pixi, channel, &dir);
        std::fs::write(&marker, "")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", marker.display()));
    }
    python_in(&dir)
}

/// Installs Python 3.11 from `channel` with `pixi` into a pixi project made in `dir`.
fn install(pixi: &Path, channel: &str, dir: &Path) {
    let manifest = dir.join("pixi.toml");
    std::fs::write(
        &manifest,
        format!(
            "[workspace]\nname = \"protocol-tests\"\nchannels = [\"{channel}\"]\n\
             platforms = [\"linux-64\"]\n\n[dependencies]\npython = \"3.11.*\"\n"
        ),
    )
    .expect("cannot write pixi.toml");
    let out = Command::new(pixi)
        .arg("install")
        .arg("--manifest-path")
        .arg(&manifest)
        .env("RATTLER_CACHE_DIR", dir.join("rattler-cache"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run pixi");
    assert!(
        out.status.success(),
        "pixi install failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The packages pixi downloaded (hard-linked or copied into the environment): not needed
    // once installed.
    let _ = std::fs::remove_dir_all(dir.join("rattler-cache"));
}

/// The interpreter of the pixi project in `dir`.
fn python_in(dir: &Path) -> Python {
    let prefix = dir.join(".pixi/envs/default");
    let interpreter = prefix.join("bin/python3");
    assert!(
        interpreter.is_file(),
        "pixi installed no {}",
        interpreter.display()
    );
    Python {
        label: "channel",
        prefix,
        interpreter,
    }
}

/// The interpreters a protocol test runs against: the host's, the channel's when the
/// toolchain is prepared, and any listed in `PYBUNDLE_EXTRA_PYTHONS` (colon-separated
/// interpreter paths, e.g. a 3.8 and a 3.13 to check the Python half on both ends).
pub fn pythons(test: &str) -> Vec<Python> {
    let mut all = vec![host_python()];
    all.extend(channel_python(test));
    if let Some(extra) = std::env::var_os("PYBUNDLE_EXTRA_PYTHONS") {
        for path in std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()) {
            let interpreter = std::fs::canonicalize(&path).unwrap_or(path);
            let prefix = interpreter
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf);
            let prefix = prefix.unwrap_or_else(|| interpreter.clone());
            all.push(Python {
                label: "extra",
                prefix,
                interpreter,
            });
        }
    }
    all
}
