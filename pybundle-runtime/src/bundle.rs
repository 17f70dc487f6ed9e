//! [`Bundle`]: an archive (embedded or given) and the options for making it a ready
//! [`Environment`] on this machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{self, Dir, LockKind};
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
pub(crate) const DEFAULT_REPAIR_WAIT: Duration = Duration::from_secs(10);

/// How long a start waits for a lock by default (another process's first-run extraction of
/// a large environment on a slow disk takes minutes at most).
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// A bundle archive and how to make it ready.
///
/// ```no_run
/// # fn main() -> Result<(), pybundle_runtime::Error> {
/// let env = pybundle_runtime::Bundle::embedded()?
///     .on_progress(|p| eprint!("\rfirst run: {}/{} files", p.entries_done, p.entries_total))
///     .ready()?;
/// let status = env.command("hello")?.status().expect("python runs");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bundle {
    archive: Archive,
    manifest: Manifest,
    manifest_json: Arc<[u8]>,
    /// Compressed length of the manifest frame; the body frame(s) follow.
    body_offset: usize,
    /// The file the archive was read from ([`Bundle::from_file`]): it, rather than this
    /// program, identifies the application whose old versions a first run may remove.
    origin: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    app_name: Option<String>,
    remove_old_versions: bool,
    verify: bool,
    repair_wait: Duration,
    lock_timeout: Duration,
    progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
    /// The reporter of [`Bundle::progress_to_stderr`], whose clock each `ready()` starts.
    stderr_reporter: Option<Arc<StderrReporter>>,
    /// Development mode: the environment in place instead of the (empty) archive.
    dev: Option<Arc<crate::dev::InPlace>>,
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
            .field("lock_timeout", &self.lock_timeout)
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// The Python environment of this program, in this order:
    ///
    /// 1. the archive `cargo pybundle build` appended to this executable;
    /// 2. else the archive file named by `PYBUNDLE_ARCHIVE` (what `cargo pybundle test` sets
    ///    for the test programs it runs; see [`Bundle::from_file`]);
    /// 3. else, in a debug build (`debug_assertions`, the dev profile), **development mode**:
    ///    the pixi environment that `cargo pybundle` installed for this package and the live
    ///    scripts folder of the source tree, found from what the last `cargo pybundle`
    ///    command recorded in the target directory (see [`crate::dev`]) — never from the
    ///    working directory. Nothing is extracted; a script edit is seen by the next script
    ///    run or worker start, without a rebuild.
    ///
    /// A release build never falls back to development mode: without (1) or (2) this is
    /// [`Error::NotBundled`], saying to build with `cargo pybundle build --release`; so is a
    /// debug build with no recorded environment, saying to run `cargo pybundle build` once.
    pub fn embedded() -> Result<Bundle> {
        if let Some(archive) = crate::embed::embedded_archive() {
            return Bundle::new(Archive::Embedded(archive));
        }
        if let Some(path) = std::env::var_os(crate::dev::ARCHIVE_VAR) {
            tracing::debug!(path = ?path, "bundle from {}", crate::dev::ARCHIVE_VAR);
            return Bundle::from_file(&path).map_err(|e| Error::ArchiveVar {
                path: path.into(),
                source: Box::new(e),
            });
        }
        if cfg!(debug_assertions) {
            return Bundle::development();
        }
        Err(Error::NotBundled {
            hint: "this release build was made without one (a plain `cargo build --release`); \
                   build it with `cargo pybundle build --release`, which writes the program \
                   with its bundle to `target/release/bundled/` (development mode, which runs \
                   the pixi environment in place, is for debug builds only)"
                .into(),
        })
    }

    /// Development mode explicitly (what [`Bundle::embedded`] falls back to in a debug build
    /// without a bundle): the pixi environment in place and the live scripts folder, as
    /// recorded for this program by the last `cargo pybundle` command. [`Bundle::ready`] only
    /// writes the `pybundle` Python package next to the record (once); the cache options have
    /// no effect. [`Bundle::manifest`] describes the environment in place (id
    /// [`crate::dev::DEV_ID`], no files).
    pub fn development() -> Result<Bundle> {
        let in_place = crate::dev::InPlace::lookup()?;
        tracing::debug!("development mode: {in_place:?}");
        let manifest = in_place.manifest();
        Ok(Bundle {
            dev: Some(Arc::new(in_place)),
            ..Bundle::with_manifest(Archive::Static(&[]), manifest, Arc::from(&[][..]), 0)
        })
    }

    /// Whether this bundle is development mode's environment in place.
    pub fn is_development(&self) -> bool {
        self.dev.is_some()
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
        let origin = std::fs::canonicalize(path).ok();
        if bytes.starts_with(&ZSTD_MAGIC) {
            return Ok(Bundle {
                origin,
                ..Bundle::from_bytes(bytes)?
            });
        }
        match crate::embed::find_in_executable(&bytes) {
            Some(archive) => Ok(Bundle {
                origin,
                ..Bundle::from_bytes(archive.to_vec())?
            }),
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
        Ok(Bundle::with_manifest(
            archive,
            manifest,
            manifest_json.into(),
            body_offset,
        ))
    }

    fn with_manifest(
        archive: Archive,
        manifest: Manifest,
        manifest_json: Arc<[u8]>,
        body_offset: usize,
    ) -> Bundle {
        Bundle {
            archive,
            manifest,
            manifest_json,
            body_offset,
            dev: None,
            origin: None,
            cache_dir: None,
            app_name: None,
            remove_old_versions: true,
            verify: false,
            repair_wait: DEFAULT_REPAIR_WAIT,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            progress: None,
            stderr_reporter: None,
        }
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
    /// cache (default `true`). A version in use by a running process is never removed, nor
    /// one extracted by another program that happens to share the name (each bundle
    /// directory records the program that extracted it: this executable's path, or for
    /// [`Bundle::from_file`] the archive's).
    pub fn remove_old_versions(mut self, yes: bool) -> Self {
        self.remove_old_versions = yes;
        self
    }

    /// Whether every start checks the extracted files against the archive (default `false`:
    /// the archive is part of this program and the completion marker alone is trusted; the
    /// first run always checks the archive against its id).
    ///
    /// With `true`, [`Bundle::ready`] decompresses the archive again on every start and compares
    /// each entry with the file on disk: a file deleted, truncated, changed (even at the same
    /// size) or given another mode, a symlink replaced, a file turned into a directory. Then
    /// it looks for files the archive does not name that change what Python runs: `.pth`
    /// files, `sitecustomize`/`usercustomize`, Python modules, extension modules and shared
    /// libraries, and bytecode Python would run without checking it against its source
    /// (other files, such as the bytecode Python writes into `__pycache__` itself, are
    /// allowed). Reads are bounded by what the archive says a file must be. Damage is logged
    /// (`tracing`, naming the paths) and repaired: the completion marker is removed and the
    /// bundle extracted again. Repair needs the bundle to be unused: if other processes hold it
    /// for longer than [`Bundle::repair_wait`], `ready` fails with [`Error::Damaged`] naming the
    /// directory and the damaged files. The cost is about one decompression of the archive
    /// plus one read of every file (see the README for numbers, and for what this does not
    /// protect against).
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

    /// How long [`Bundle::ready`] waits for a lock held by another process (default 10
    /// minutes: the longest another process's first-run extraction should take) before it
    /// fails with [`Error::LockTimeout`], naming the lock file and the process holding it.
    pub fn lock_timeout(mut self, wait: Duration) -> Self {
        self.lock_timeout = wait;
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
        let reporter = Arc::new(StderrReporter::new(self.manifest.name.clone()));
        let reports = reporter.clone();
        Bundle {
            stderr_reporter: Some(reporter),
            ..self.on_progress(move |p| reports.report(p))
        }
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
    /// The cache root and every directory above it are checked first: owned by you or root,
    /// not writable by other users (a sticky directory such as `/tmp` is fine when the next
    /// directory is yours); the root itself yours and private. Otherwise [`Error::Cache`]
    /// says which directory and why: another user could swap what the program runs.
    ///
    /// The returned [`Environment`] keeps a shared lock on the bundle directory for as long
    /// as it (or a clone) lives, so another version's cleanup never removes it while in use.
    ///
    /// In development mode ([`Bundle::development`]) nothing is extracted or locked: the
    /// environment in place is returned.
    pub fn ready(&self) -> Result<Environment> {
        if let Some(dev) = &self.dev {
            return dev.environment();
        }
        if let Some(reporter) = &self.stderr_reporter {
            reporter.start();
        }
        let root = cache::resolve_root(self.cache_dir.as_deref())?;
        self.ready_in(&root)
            .map_err(|e| cache::explain(e, &root, self.manifest.unpacked_size))
    }

    /// What the completion marker of this bundle holds: the id (the body's sha256) and the
    /// sha256 of the manifest's frame, so that an extraction made from another manifest with
    /// the same body (the relocations are the manifest's) is never taken for this one.
    fn marker(&self) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let frame = Sha256::digest(&self.archive.bytes()[..self.body_offset]);
        format!(
            "{}\n{}\n",
            self.manifest.id,
            crate::extract::hex_lower(&frame)
        )
        .into_bytes()
    }

    /// Who extracts: the archive file for [`Bundle::from_file`], else this program.
    fn app_identity(&self) -> Vec<u8> {
        let path = self
            .origin
            .clone()
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_default();
        crate::relocate::path_bytes(&path)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|_| path.to_string_lossy().into_owned().into_bytes())
    }

    fn ready_in(&self, root_path: &Path) -> Result<Environment> {
        let dir_name = self.dir_name()?;
        let root = cache::open_root(root_path, true)?;
        let dir = root.join(&dir_name);
        let marker = self.marker();
        let timeout = self.lock_timeout;
        let complete = || cache::complete(&root, &dir_name, &marker);
        loop {
            let Some(lock) = cache::lock(&root, &dir_name, LockKind::Shared, timeout)? else {
                unreachable!("a waiting lock returns a file or an error")
            };
            let damaged = match self.look(&root, &dir_name, &marker, lock)? {
                Look::Ready(environment) => return Ok(environment),
                Look::Missing => None,
                Look::Damaged(damage, seen) => Some((damage, seen)),
            };
            let lock = self.lock_to_extract(&root, &dir_name, &marker, damaged.as_ref())?;
            let extracted = match &damaged {
                None => complete()?.is_none(),
                // Repaired by another process meanwhile: check that one again.
                Some((_, seen)) if cache::identity(&root, &dir_name) != *seen => continue,
                Some((damage, _)) => {
                    // A read-only cache, typically: say what is damaged, not only what failed.
                    cache::remove_marker(&root, &dir_name).map_err(|e| Error::Damaged {
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
                self.extract_into(&root, &dir_name, &marker)?;
            }
            cache::downgrade(&lock, &root, &dir_name, timeout)?;
            // flock downgrades are not atomic: another version's cleanup may have taken the
            // lock in between and removed the directory. Holding the shared lock now, check.
            let Some((_, meta)) = complete()? else {
                continue;
            };
            if extracted && self.remove_old_versions {
                self.remove_older_versions(&root, &dir_name);
            }
            return self.environment(&root, &dir_name, &meta, lock);
        }
    }

    /// The look under the shared `lock`: a complete bundle (verified when asked) is used and
    /// keeps the lock; otherwise the lock is released and what was found is returned.
    fn look(&self, root: &Dir, dir_name: &str, marker: &[u8], lock: std::fs::File) -> Result<Look> {
        let Some((_, meta)) = cache::complete(root, dir_name, marker)? else {
            return Ok(Look::Missing);
        };
        if !self.verify {
            return self
                .environment(root, dir_name, &meta, lock)
                .map(Look::Ready);
        }
        let dir = root.join(dir_name);
        let seen = cache::identity(root, dir_name);
        let damage = self.damaged(&dir)?;
        if damage.is_empty() {
            return self
                .environment(root, dir_name, &meta, lock)
                .map(Look::Ready);
        }
        tracing::warn!(
            dir = %dir.display(),
            damaged = %crate::verify::summary(&damage),
            "the extracted bundle no longer matches its archive; extracting it again"
        );
        Ok(Look::Damaged(damage, seen))
    }

    /// The exclusive lock to extract (or repair, when `damaged`) the bundle under.
    fn lock_to_extract(
        &self,
        root: &Dir,
        dir_name: &str,
        marker: &[u8],
        damaged: Option<&(Vec<String>, Identity)>,
    ) -> Result<std::fs::File> {
        let timeout = self.lock_timeout;
        let Some((damage, seen)) = damaged else {
            let Some(lock) = cache::lock(root, dir_name, LockKind::Exclusive, timeout)? else {
                unreachable!("a waiting lock returns a file or an error")
            };
            return Ok(lock);
        };
        // Users of the damaged bundle hold shared locks for as long as they run: wait for
        // them a bounded time only. Once the marker is gone or the directory was replaced,
        // another process is repairing it: then wait like any first run.
        cache::lock_exclusive_within(root, dir_name, self.repair_wait, timeout, || {
            cache::complete(root, dir_name, marker).is_ok_and(|c| c.is_some())
                && cache::identity(root, dir_name) == *seen
        })?
        .ok_or_else(|| Error::Damaged {
            dir: root.join(dir_name),
            damaged: damage.clone(),
            reason: format!(
                "it was not repaired because other processes are using it (waited {:?} for \
                 them): stop them and run again, or delete the directory",
                self.repair_wait
            ),
        })
    }

    /// After a fresh extraction: the application's other versions that no process uses are
    /// removed.
    fn remove_older_versions(&self, root: &Dir, dir_name: &str) {
        let name = self.app_name.as_deref().unwrap_or(&self.manifest.name);
        let app = self.app_identity();
        for old in cache::remove_other_versions(root, name, dir_name, &app) {
            tracing::debug!(dir = %old.display(), "removed an unused older version");
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
    /// target, relocate, mark complete, rename into place (all renames and deletes relative to
    /// the open root).
    fn extract_into(&self, root: &Dir, dir_name: &str, marker: &[u8]) -> Result<()> {
        let dir = root.join(dir_name);
        let started = std::time::Instant::now();
        cache::remove_stale_temps(root, dir_name);
        match root.stat(std::ffi::OsStr::new(dir_name)) {
            Ok(meta) => {
                // Incomplete (a marker would have been seen under this lock), so never
                // trusted: removed first, which also frees its space for the new copy. One
                // owned by another user is refused, not touched.
                if cfg!(unix) && meta.uid != cache::current_uid() {
                    return Err(Error::Cache {
                        path: dir,
                        reason: format!(
                            "it is owned by uid {}, not by you (uid {})",
                            meta.uid,
                            cache::current_uid()
                        ),
                    });
                }
                cache::discard(root, dir_name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot read metadata of", &dir, e)),
        }
        let tmp = Temp {
            root,
            name: Some(cache::make_temp(root, dir_name)?),
        };
        let tmp_name = tmp.name.clone().unwrap_or_default();
        let tmp_path = root.join(&tmp_name);
        let prefix = dir.join(format::ENV_DIR);
        let extracted = extract::extract(
            &self.archive.bytes()[self.body_offset..],
            &tmp_path,
            &extract::Options {
                bytes_total: self.manifest.unpacked_size,
                entries_total: self.manifest.file_count,
                id: &self.manifest.id,
                progress: self.progress.as_deref(),
                release_read_pages: matches!(self.archive, Archive::Embedded(_)),
            },
        )?;
        crate::relocate::apply(
            &tmp_path,
            &prefix,
            &self.manifest.relocations,
            &extracted.files,
        )?;
        let tmp_dir = root
            .open_dir(std::ffi::OsStr::new(&tmp_name))
            .map_err(|e| Error::io("cannot open", &tmp_path, e))?;
        cache::write_meta(&tmp_dir, &self.manifest_json, &self.app_identity(), marker)?;
        root.rename(
            std::ffi::OsStr::new(&tmp_name),
            std::ffi::OsStr::new(dir_name),
        )
        .map_err(|e| Error::io("cannot move the extracted bundle to", &dir, e))?;
        tmp.keep();
        root.sync();
        cache::log_extraction(dir_name);
        tracing::info!(
            dir = %dir.display(),
            entries = extracted.entries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "extracted the Python bundle"
        );
        Ok(())
    }

    fn environment(
        &self,
        root: &Dir,
        dir_name: &str,
        meta: &cache::dir::Meta,
        lock: std::fs::File,
    ) -> Result<Environment> {
        let m = &self.manifest;
        let dir = root.join(dir_name);
        let prefix = dir.join(format::ENV_DIR);
        let prefix_str = prefix.to_str().ok_or_else(|| Error::Cache {
            path: dir.clone(),
            reason: "the path is not valid Unicode".into(),
        })?;
        // The prefix is inside the bundle directory, so that is valid Unicode too.
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
            interpreter: dir.join(&m.python.path),
            scripts: dir.join(&m.scripts_dir),
            lib: dir.join(format::PYTHON_PKG_DIR),
            prefix,
            root: dir,
            vars,
            lock: Some(Arc::new(lock)),
            location: Some(crate::environment::Location {
                root: root.path().to_path_buf(),
                dir_name: dir_name.to_owned(),
                dev: meta.dev,
                ino: meta.ino,
            }),
        })
    }
}

/// A temporary directory in the root, discarded (renamed to trash, deleted) on drop unless
/// kept: an error anywhere in the slow path leaves nothing that looks like a bundle.
struct Temp<'a> {
    root: &'a Dir,
    name: Option<String>,
}

impl Temp<'_> {
    fn keep(mut self) {
        self.name = None;
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            cache::discard(self.root, &name);
        }
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

/// The identity of an extracted bundle's directory when it was looked at.
type Identity = Option<(u64, u64, i64, i64)>;

/// What a look at the cache under the shared lock found.
enum Look {
    /// A complete bundle, verified when asked, now in use.
    Ready(Environment),
    /// No complete bundle: it is extracted.
    Missing,
    /// A complete bundle whose files no longer match the archive, and its directory's identity.
    Damaged(Vec<String>, Identity),
}
