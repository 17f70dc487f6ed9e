//! [`Bundle`]: an archive (embedded or given) and the options for making it a ready
//! [`Environment`] on this machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{self, LockKind};
use crate::environment::Environment;
use crate::extract::{self, Progress};
use crate::format::{self, Manifest};
use crate::{Error, Result};

mod manifest;
mod reporter;

pub use manifest::manifest_of;
use manifest::{read_manifest, valid_name, ZSTD_MAGIC};
use reporter::StderrReporter;

/// How long a repair waits for other users of a damaged bundle by default.
const DEFAULT_REPAIR_WAIT: Duration = Duration::from_secs(10);

/// A bundle archive and how to make it ready.
///
/// ```no_run
/// # fn main() -> Result<(), pybundle_runtime::Error> {
/// let env = pybundle_runtime::Bundle::embedded()?
///     .on_progress(|p| eprint!("\rfirst run: {}/{} files", p.entries_done, p.entries_total))
///     .ready()?;
/// let status = env.command("hello").status().expect("python runs");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bundle {
    archive: Archive,
    manifest: Manifest,
    manifest_json: Arc<[u8]>,
    /// Compressed length of the manifest frame; the body frame(s) follow.
    body_offset: usize,
    cache_dir: Option<PathBuf>,
    app_name: Option<String>,
    remove_old_versions: bool,
    verify: bool,
    repair_wait: Duration,
    progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
}

#[derive(Clone)]
enum Archive {
    /// The archive `cargo pybundle build` put into this executable: a read-only, file-backed
    /// mapping whose pages extraction may hand back to the kernel once read.
    Embedded(&'static [u8]),
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
}

impl Archive {
    fn bytes(&self) -> &[u8] {
        match self {
            Archive::Embedded(b) | Archive::Static(b) => b,
            Archive::Shared(b) => b,
        }
    }
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("name", &self.manifest.name)
            .field("id", &self.manifest.id)
            .field("archive_len", &self.archive.bytes().len())
            .field("cache_dir", &self.cache_dir)
            .field("app_name", &self.app_name)
            .field("remove_old_versions", &self.remove_old_versions)
            .field("verify", &self.verify)
            .field("repair_wait", &self.repair_wait)
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// The archive `cargo pybundle build` embedded into this executable.
    ///
    /// Built without one (plain `cargo build`), this returns [`Error::NotBundled`], whose
    /// message says to build with `cargo pybundle build`.
    pub fn embedded() -> Result<Bundle> {
        match crate::embed::embedded_archive() {
            Some(archive) => Bundle::new(Archive::Embedded(archive)),
            None => Err(Error::NotBundled),
        }
    }

    /// A bundle from an archive in static memory (no copy is made).
    pub fn from_static(archive: &'static [u8]) -> Result<Bundle> {
        Bundle::new(Archive::Static(archive))
    }

    /// A bundle from archive bytes.
    pub fn from_bytes(archive: impl Into<Arc<[u8]>>) -> Result<Bundle> {
        Bundle::new(Archive::Shared(archive.into()))
    }

    /// A bundle from a file: an archive (`cargo pybundle pack`) or an executable that embeds
    /// one.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Bundle> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
        if bytes.starts_with(&ZSTD_MAGIC) {
            return Bundle::from_bytes(bytes);
        }
        match crate::embed::find_in_executable(&bytes) {
            Some(archive) => Bundle::from_bytes(archive.to_vec()),
            None => Err(Error::Archive {
                detail: format!(
                    "`{}` is neither a bundle archive nor a program with one embedded",
                    path.display()
                ),
                source: None,
            }),
        }
    }

    fn new(archive: Archive) -> Result<Bundle> {
        let (manifest, manifest_json, body_offset) = read_manifest(archive.bytes())?;
        if body_offset == archive.bytes().len() && manifest.file_count > 0 {
            return Err(Error::Archive {
                detail: "it ends after the manifest's zstd frame; the files must follow in a \
                         second frame (repack with `cargo pybundle pack`)"
                    .into(),
                source: None,
            });
        }
        Ok(Bundle {
            archive,
            manifest,
            manifest_json: manifest_json.into(),
            body_offset,
            cache_dir: None,
            app_name: None,
            remove_old_versions: true,
            verify: false,
            repair_wait: DEFAULT_REPAIR_WAIT,
            progress: None,
        })
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Sets the cache root used when `PYBUNDLE_CACHE_DIR` is not set (default: the platform
    /// cache directory + `pybundle`, e.g. `~/.cache/pybundle`).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Names the cache directory `<name>-<id16>` with `name` instead of the manifest's name.
    /// Only ASCII letters, digits, `_`, `.` and `-` are accepted (checked by [`Bundle::ready`]).
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = Some(name.into());
        self
    }

    /// Whether a first run removes the other, unused versions of this application from the
    /// cache (default `true`). A version in use by a running process is never removed.
    pub fn remove_old_versions(mut self, yes: bool) -> Self {
        self.remove_old_versions = yes;
        self
    }

    /// Whether every start checks the extracted files against the archive, and the first run
    /// the archive against its id (default `false`: the archive is part of this program and
    /// the marker alone is trusted).
    ///
    /// With `true`, [`Bundle::ready`] decompresses the archive again on every start and compares
    /// each entry with the file on disk: a file deleted, truncated, changed (even at the same
    /// size) or given another mode, a symlink replaced, a file turned into a directory. Files
    /// the archive does not name (such as `__pycache__`) are allowed. Damage is logged
    /// (`tracing`, naming the paths) and repaired: the completion marker is removed and the
    /// bundle extracted again. Repair needs the bundle to be unused: if other processes hold it
    /// for longer than [`Bundle::repair_wait`], `ready` fails with [`Error::Damaged`] naming the
    /// directory and the damaged files. The cost is about one decompression of the archive
    /// plus one read of every file (see the README for numbers).
    pub fn verify(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }

    /// How long a repair found necessary by [`Bundle::verify`] waits for other processes
    /// that use the bundle to end (default 10 s) before giving up with [`Error::Damaged`].
    pub fn repair_wait(mut self, wait: Duration) -> Self {
        self.repair_wait = wait;
        self
    }

    /// Calls `f` as the first-run extraction progresses. It is only called when this process
    /// extracts; the library itself never prints.
    pub fn on_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Opts into a ready-made reporter: when a first-run extraction takes longer than a
    /// moment, one line on stderr says so and another when it is done. The library prints
    /// nothing unless the application asks for this.
    pub fn progress_to_stderr(self) -> Self {
        let name = self.manifest.name.clone();
        let reporter = StderrReporter::new(name);
        self.on_progress(move |p| reporter.report(p))
    }

    /// The directory this bundle is (or would be) extracted to.
    pub fn target_dir(&self) -> Result<PathBuf> {
        let root = cache::resolve_root(self.cache_dir.as_deref())?;
        Ok(root.join(self.dir_name()?))
    }

    fn dir_name(&self) -> Result<String> {
        let name = self.app_name.as_deref().unwrap_or(&self.manifest.name);
        if !valid_name(name) {
            return Err(Error::Manifest(format!(
                "application name `{name}` cannot name a directory: use ASCII letters, digits, \
                 `_`, `.` and `-` (not starting with `.`)"
            )));
        }
        Ok(format!("{name}-{}", self.manifest.short_id()))
    }

    /// Makes the bundle ready: on the first run extracts and relocates it into the cache (once,
    /// even when many processes start together), afterwards only checks a marker.
    ///
    /// The returned [`Environment`] keeps a shared lock on the bundle directory for as long
    /// as it (or a clone) lives, so another version's cleanup never removes it while in use.
    pub fn ready(&self) -> Result<Environment> {
        let root = cache::resolve_root(self.cache_dir.as_deref())?;
        self.ready_in(&root)
            .map_err(|e| cache::explain(e, &root, self.manifest.unpacked_size))
    }

    fn ready_in(&self, root: &Path) -> Result<Environment> {
        let dir_name = self.dir_name()?;
        let dir = root.join(&dir_name);
        cache::prepare_root(root)?;
        let id = &self.manifest.id;
        loop {
            let Some(lock) = cache::lock(root, &dir_name, LockKind::Shared)? else {
                unreachable!("a blocking lock always returns a file")
            };
            let mut damaged = None;
            if cache::is_complete(&dir, id) {
                cache::check_owned(&dir, true)?;
                if !self.verify {
                    return self.environment(dir, lock);
                }
                let seen = cache::identity(&dir);
                let damage = self.damaged(&dir)?;
                if damage.is_empty() {
                    return self.environment(dir, lock);
                }
                tracing::warn!(
                    dir = %dir.display(),
                    damaged = %crate::verify::summary(&damage),
                    "the extracted bundle no longer matches its archive; extracting it again"
                );
                damaged = Some((damage, seen));
            }
            drop(lock);
            let lock = match &damaged {
                None => cache::lock(root, &dir_name, LockKind::Exclusive)?,
                // Users of the damaged bundle hold shared locks for as long as they run: wait
                // for them a bounded time only. Once the marker is gone or the directory was
                // replaced, another process is repairing it: then wait like any first run.
                Some((damage, seen)) => Some(
                    cache::lock_exclusive_within(root, &dir_name, self.repair_wait, || {
                        cache::is_complete(&dir, id) && cache::identity(&dir) == *seen
                    })?
                    .ok_or_else(|| Error::Damaged {
                        dir: dir.clone(),
                        damaged: damage.clone(),
                        reason: format!(
                        "it was not repaired because other processes are using it (waited {:?} \
                         for them): stop them and run again, or delete the directory",
                        self.repair_wait
                    ),
                    })?,
                ),
            };
            let Some(lock) = lock else {
                unreachable!("a blocking lock always returns a file")
            };
            let extracted = match &damaged {
                None => !cache::is_complete(&dir, id),
                // Repaired by another process meanwhile: check that one again.
                Some((_, seen)) if cache::identity(&dir) != *seen => continue,
                Some((damage, _)) => {
                    // A read-only cache, typically: say what is damaged, not only what failed.
                    cache::remove_marker(&dir).map_err(|e| Error::Damaged {
                        dir: dir.clone(),
                        damaged: damage.clone(),
                        reason: format!(
                            "it cannot be repaired here ({}): make the cache writable and run \
                             again, or set PYBUNDLE_CACHE_DIR to another directory",
                            error_chain(&e)
                        ),
                    })?;
                    true
                }
            };
            if extracted {
                self.extract_into(root, &dir_name)?;
            }
            cache::downgrade(&lock, root, &dir_name)?;
            // flock downgrades are not atomic: another version's cleanup may have taken the
            // lock in between and removed the directory. Holding the shared lock now, check.
            if !cache::is_complete(&dir, id) {
                continue;
            }
            if extracted && self.remove_old_versions {
                let name = self.app_name.as_deref().unwrap_or(&self.manifest.name);
                for old in cache::remove_other_versions(root, name, &dir_name) {
                    tracing::debug!(dir = %old.display(), "removed an unused older version");
                }
            }
            return self.environment(dir, lock);
        }
    }

    /// The entries of the extracted bundle in `dir` that no longer match the archive.
    fn damaged(&self, dir: &Path) -> Result<Vec<String>> {
        let started = std::time::Instant::now();
        let damaged = crate::verify::damaged(&crate::verify::Check {
            body: &self.archive.bytes()[self.body_offset..],
            dir,
            prefix: &dir.join(format::ENV_DIR),
            relocations: &self.manifest.relocations,
            release_read_pages: matches!(self.archive, Archive::Embedded(_)),
        })?;
        tracing::debug!(
            dir = %dir.display(),
            damaged = damaged.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "verified the extracted bundle"
        );
        Ok(damaged)
    }

    /// The slow path, under the exclusive lock: extract into a temporary directory beside the
    /// target, relocate, mark complete, rename into place.
    fn extract_into(&self, root: &Path, dir_name: &str) -> Result<()> {
        let dir = root.join(dir_name);
        let started = std::time::Instant::now();
        cache::remove_stale_temps(root, dir_name);
        if std::fs::symlink_metadata(&dir).is_ok() {
            // Incomplete (a marker would have been seen under this lock), so never trusted:
            // removed first, which also frees its space for the new copy.
            cache::check_owned(&dir, true)?;
            cache::discard(root, dir_name);
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".tmp-{dir_name}-"))
            .tempdir_in(root)
            .map_err(|e| Error::io("cannot create a temporary directory in", root, e))?;
        // Becomes the bundle directory by a rename: private like everything we create.
        cache::set_private(tmp.path())?;
        let prefix = dir.join(format::ENV_DIR);
        let extracted = extract::extract(
            &self.archive.bytes()[self.body_offset..],
            tmp.path(),
            &extract::Options {
                bytes_total: self.manifest.unpacked_size,
                entries_total: self.manifest.file_count,
                id: &self.manifest.id,
                progress: self.progress.as_deref(),
                release_read_pages: matches!(self.archive, Archive::Embedded(_)),
            },
        )?;
        crate::relocate::apply(
            tmp.path(),
            &prefix,
            &self.manifest.relocations,
            &extracted.files,
        )?;
        let meta_dir = tmp.path().join(".pybundle");
        std::fs::create_dir(&meta_dir)
            .map_err(|e| Error::io("cannot create directory", &meta_dir, e))?;
        let manifest_path = tmp.path().join(format::MANIFEST_PATH);
        std::fs::write(&manifest_path, &self.manifest_json)
            .map_err(|e| Error::io("cannot write", &manifest_path, e))?;
        cache::write_marker(tmp.path(), &self.manifest.id)?;
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &dir) {
            cache::discard(
                root,
                &tmp_path.file_name().unwrap_or_default().to_string_lossy(),
            );
            return Err(Error::io("cannot move the extracted bundle to", &dir, e));
        }
        cache::sync_dir(root);
        cache::log_extraction(dir_name);
        tracing::info!(
            dir = %dir.display(),
            entries = extracted.entries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "extracted the Python bundle"
        );
        Ok(())
    }

    fn environment(&self, root: PathBuf, lock: std::fs::File) -> Result<Environment> {
        let m = &self.manifest;
        let prefix = root.join(format::ENV_DIR);
        let prefix_str = prefix.to_str().ok_or_else(|| Error::Cache {
            path: root.clone(),
            reason: "the path is not valid Unicode".into(),
        })?;
        // The prefix is inside the root, so the root is valid Unicode too.
        let root_str = prefix_str
            .strip_suffix(format::ENV_DIR)
            .map_or(prefix_str, |r| {
                r.trim_end_matches(std::path::MAIN_SEPARATOR)
            });
        let vars = m
            .activation
            .iter()
            .map(|(k, v)| {
                let v = v.replace("${PREFIX}", prefix_str);
                (k.clone(), v.replace("${BUNDLE}", root_str))
            })
            .collect();
        Ok(Environment {
            interpreter: root.join(&m.python.path),
            scripts: root.join(&m.scripts_dir),
            lib: root.join(format::PYTHON_PKG_DIR),
            prefix,
            root,
            vars,
            lock: Some(Arc::new(lock)),
        })
    }
}

/// An error and its sources on one line, for embedding in another error's reason.
fn error_chain(e: &Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
