//! The bare target machine: a Debian bookworm `minbase` root made by debootstrap, cached in the
//! dev cache, plus only the system libraries the test channel's CPython links — never Python.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::tools;

/// The Debian release of the target root.
const SUITE: &str = "bookworm";

/// Where debootstrap fetches from (Debian's mirrors are reachable from these machines).
const MIRROR: &str = "http://deb.debian.org/debian";

/// The system libraries the bundled CPython needs from the target machine, as Debian packages,
/// with the extension modules that load them. The test channel's python is this machine's own
/// CPython, linked against the system's libraries; a conda-forge python brings these as conda
/// packages inside the bundle instead. `_tkinter` (libtk8.6, libtcl8.6 and X11) is left out on
/// purpose: a GUI toolkit has no place on an air-gapped server, and its absence is checked.
pub const SYSTEM_LIBRARIES: &[(&str, &str)] = &[
    ("libssl3", "_ssl, _hashlib (libssl.so.3, libcrypto.so.3)"),
    ("libsqlite3-0", "_sqlite3 (libsqlite3.so.0)"),
    ("libffi8", "_ctypes (libffi.so.8)"),
    ("libbz2-1.0", "_bz2 (libbz2.so.1.0)"),
    ("liblzma5", "_lzma (liblzma.so.5)"),
    ("zlib1g", "zlib, binascii (libz.so.1)"),
    (
        "libncursesw6",
        "_curses, _curses_panel (libncursesw.so.6, libpanelw.so.6)",
    ),
    ("libtinfo6", "_curses (libtinfo.so.6)"),
    ("libreadline8", "readline (libreadline.so.8)"),
    ("libuuid1", "_uuid (libuuid.so.1)"),
    ("libcrypt1", "_crypt (libcrypt.so.1)"),
    ("libnsl2", "nis (libnsl.so.2)"),
    ("libtirpc3", "nis (libtirpc.so.3)"),
];

/// Written at the top of a finished root: what it was built with. A root whose stamp differs
/// (another package list) is rebuilt.
const STAMP: &str = ".pybundle-airgap-root";

/// Programs that must not exist in the root: the point is a machine without them.
pub const FORBIDDEN: &[&str] = &["python", "python3", "pixi", "conda", "mamba", "micromamba"];

fn stamp() -> String {
    stamp_of(SYSTEM_LIBRARIES)
}

fn stamp_of(libraries: &[(&str, &str)]) -> String {
    let packages: Vec<&str> = libraries.iter().map(|(p, _)| *p).collect();
    format!(
        "debootstrap --variant=minbase {SUITE}\ninclude={}\n",
        packages.join(",")
    )
}

/// The cached root, built when missing or stale. Returns its path.
pub fn ensure() -> Result<PathBuf> {
    let dir = tools::dev_cache()?.join("airgap");
    let root = dir.join(format!("{SUITE}-minbase"));
    let current = fs::read_to_string(root.join(STAMP)).ok();
    if current.as_deref() == Some(stamp().as_str()) {
        check_bare(&root)?;
        return Ok(root);
    }
    if root.exists() {
        eprintln!(
            "xtask: airgap: {} was built with another package list; rebuilding it",
            root.display()
        );
        let old = dir.join(format!(".old-{SUITE}-minbase-{}", std::process::id()));
        fs::rename(&root, &old)?;
        fs::remove_dir_all(&old)?;
    }
    fs::create_dir_all(&dir)?;
    let debootstrap = debootstrap()?;
    let work = tempfile::Builder::new()
        .prefix(&format!(".build-{SUITE}-"))
        .tempdir_in(&dir)?;
    let include: Vec<&str> = SYSTEM_LIBRARIES.iter().map(|(p, _)| *p).collect();
    eprintln!(
        "xtask: airgap: debootstrap --variant=minbase {SUITE} into {} (about 30 s, once) with \
         --include={}",
        work.path().display(),
        include.join(",")
    );
    let started = std::time::Instant::now();
    let out = Command::new(&debootstrap)
        .arg("--variant=minbase")
        .arg(format!("--include={}", include.join(",")))
        .arg(SUITE)
        .arg(work.path())
        .arg(MIRROR)
        .output()
        .with_context(|| format!("starting {}", debootstrap.display()))?;
    if !out.status.success() {
        let log = work.path().join("debootstrap").join("debootstrap.log");
        let tail = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        bail!(
            "debootstrap --variant=minbase {SUITE} failed ({}):\n{}{}\nlast lines of its log:\n{}\n\
             it needs {MIRROR} reachable",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    eprintln!(
        "xtask: airgap: debootstrap took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    fs::write(work.path().join(STAMP), stamp())?;
    check_bare(work.path())?;
    // Rename into place: a killed debootstrap leaves only a `.build-*` temp, never a root that
    // looks finished.
    let built = work.keep();
    fs::rename(&built, &root)?;
    Ok(root)
}

/// Fails when the root holds Python or a conda/pixi, anywhere a shell would look for one.
pub fn check_bare(root: &Path) -> Result<()> {
    let mut found = Vec::new();
    for bin in ["usr/bin", "usr/local/bin", "bin", "usr/sbin", "sbin"] {
        let Ok(entries) = std::fs::read_dir(root.join(bin)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
            if FORBIDDEN.contains(&stem) || FORBIDDEN.contains(&name.as_str()) {
                found.push(format!("/{bin}/{name}"));
            }
        }
    }
    for dir in ["opt/conda", "usr/lib/python3", "usr/local/lib/python3"] {
        if root.join(dir).exists() {
            found.push(format!("/{dir}"));
        }
    }
    if !found.is_empty() {
        bail!(
            "the target root {} is not bare: it holds {}; delete it so it is rebuilt",
            root.display(),
            found.join(", ")
        );
    }
    Ok(())
}

/// debootstrap from PATH, else installed with apt-get (we run as root here anyway).
fn debootstrap() -> Result<PathBuf> {
    let find = || tools::find_on_path("debootstrap").or_else(|| sbin("debootstrap"));
    if let Some(found) = find() {
        return Ok(found);
    }
    eprintln!("xtask: airgap: debootstrap is missing; installing it with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "debootstrap"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let ok = install().is_ok_and(|s| s.success()) || {
        eprintln!("xtask: airgap: apt-get install failed; running apt-get update first");
        tools::run(Command::new("apt-get").arg("update"), "apt-get update")?;
        install().is_ok_and(|s| s.success())
    };
    match find() {
        Some(found) if ok => Ok(found),
        _ => bail!(
            "debootstrap is not installed and `apt-get install debootstrap` did not install it; \
             install debootstrap (Debian/Ubuntu: `apt-get install debootstrap`)"
        ),
    }
}

/// `/usr/sbin/<name>` or `/sbin/<name>`: root's tools are often missing from a user's PATH.
pub fn sbin(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_anywhere_on_the_path_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/ls"), "").unwrap();
        check_bare(root.path()).unwrap();
        std::fs::write(root.path().join("usr/bin/python3.11"), "").unwrap();
        let err = check_bare(root.path()).unwrap_err().to_string();
        assert!(err.contains("/usr/bin/python3.11"), "{err}");
    }

    #[test]
    fn another_package_list_makes_a_root_stale() {
        // The stamp is what `ensure` compares: any change to the list must change it, so a
        // root built with the old list is rebuilt.
        let stamp = stamp();
        let fewer = &SYSTEM_LIBRARIES[..SYSTEM_LIBRARIES.len() - 1];
        let mut more = SYSTEM_LIBRARIES.to_vec();
        more.push(("libfoo1", "foo"));
        assert_ne!(stamp_of(fewer), stamp);
        assert_ne!(stamp_of(&more), stamp);
        // And the list itself never brings in an interpreter.
        for (package, _) in SYSTEM_LIBRARIES {
            assert!(!package.contains("python"), "{package}");
        }
    }
}
