//! The local conda test channel: CPython from this machine plus two small packages of our own,
//! built conda-build style into `<dev cache>/channel/<inputs hash>/` and served as `file://`.
//!
//! The directory is keyed by a hash of everything that shapes it (this module's sources and the
//! host CPython), so a change rebuilds it and an unchanged one is reused. It is written to a temp
//! directory and renamed into place: a directory under that name is always complete.

mod extras;
mod index;
mod package;
mod python;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fs_err as fs;
use sha2::{Digest, Sha256};

use crate::tools::{self, HostPython};

/// The sources that decide the channel's contents: editing any of them rebuilds it.
const SOURCES: [&str; 5] = [
    include_str!("mod.rs"),
    include_str!("package.rs"),
    include_str!("python.rs"),
    include_str!("extras.rs"),
    include_str!("index.rs"),
];

/// The build prefix every package records, padded to 255 characters like conda-build's
/// `_h_env_placehold_placehold…`, so any install prefix shorter than it fits in binary files.
pub fn placeholder() -> String {
    let mut p = String::from("/tmp/pybundle_build/_h_env");
    while p.len() < 255 {
        p.push_str("_placehold");
    }
    p.truncate(255);
    p
}

/// Make sure the channel exists; return its `file://` URL.
pub fn ensure() -> Result<String> {
    let cache = tools::dev_cache()?;
    let host = tools::host_python()?;
    let root = cache.join("channel");
    fs::create_dir_all(&root)?;
    let dir = root.join(inputs_key(&host)?);
    if !dir.is_dir() {
        // Several test runs may start at once: one builds, the others wait and reuse.
        let lock = fs::File::create(root.join(".lock"))?;
        fs4::FileExt::lock(lock.file())
            .with_context(|| format!("locking {}", root.join(".lock").display()))?;
        if !dir.is_dir() {
            remove_leftovers(&root)?;
            build(&host, &cache, &root, &dir)?;
        }
    }
    let dir = dir.canonicalize()?;
    Ok(format!("file://{}", dir.display()))
}

/// sha256 of the channel sources and the host CPython's identity, 16 hex digits.
fn inputs_key(host: &HostPython) -> Result<String> {
    let mut hash = Sha256::new();
    for source in SOURCES {
        hash.update(source.as_bytes());
    }
    let interpreter = host
        .prefix
        .join("bin")
        .join(format!("python{}", host.short));
    let meta = fs::metadata(&interpreter)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let identity = format!(
        "{}\0{}\0{}\0{}",
        host.prefix.display(),
        host.version,
        meta.len(),
        mtime.as_secs()
    );
    hash.update(identity.as_bytes());
    Ok(hex::encode(hash.finalize())[..16].to_string())
}

/// Temp directories of a build that was killed. Called under the lock, so no build owns them.
fn remove_leftovers(root: &Path) -> Result<()> {
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if (name.starts_with(".tmp-") || name.starts_with(".work-")) && path.is_dir() {
            fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

fn build(host: &HostPython, cache: &Path, root: &Path, dir: &Path) -> Result<()> {
    eprintln!(
        "xtask: building the test channel from CPython {} at {}",
        host.version,
        host.prefix.display()
    );
    let started = std::time::Instant::now();
    // Find every tool first, so a missing one fails before minutes of work.
    let patchelf = tools::patchelf(cache)?;
    let cc = tools::c_compiler()?;
    let key = dir.file_name().and_then(|n| n.to_str()).unwrap_or("0");
    let build_string = format!("h{}_pybundle", &key[..8.min(key.len())]);

    let work = tempfile::Builder::new().prefix(".work-").tempdir_in(root)?;
    let out = tempfile::Builder::new().prefix(".tmp-").tempdir_in(root)?;
    let records = vec![
        python::build(host, &patchelf, work.path(), out.path(), &build_string)
            .context("building the python package")?,
        extras::hello_entry(work.path(), out.path(), &build_string)
            .context("building the pybundle-hello-entry package")?,
        extras::reloc_test(&cc, work.path(), out.path(), &build_string)
            .context("building the pybundle-reloc-test package")?,
    ];
    index::write(out.path(), &records)?;
    let out: PathBuf = out.keep();
    fs::rename(&out, dir)?;
    eprintln!(
        "xtask: test channel ready in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholder_is_255_characters_like_conda_build() {
        let p = super::placeholder();
        assert_eq!(p.len(), 255);
        assert!(p.starts_with("/tmp/pybundle_build/_h_env_placehold_placehold"));
    }
}
