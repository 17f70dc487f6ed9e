//! Benchmark of the first run: extraction + relocation by `Bundle::ready` against
//! `tar --zstd -xf` of the same archive, the warm (cached) `ready()`, the pre-start
//! `Environment::check_location()`, and peak RSS.
//!
//! ```text
//! cargo run --release -p pybundle-runtime --example first_run -- <prefix dir | archive> [runs] [level]
//! ```
//!
//! Given a directory (e.g. a conda or pyenv prefix) it first packs it in the bundle format
//! under `env/`, recording every text file that names the directory as a relocation (as the
//! pack-time scan does). Runs alternate between the two extractors so machine noise hits
//! both alike; each run gets a fresh directory. Peak RSS comes from `wait4` on the child.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pybundle_runtime::format::{write, FileMode, Manifest, PythonInfo, Relocation};
use pybundle_runtime::Bundle;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], Path::new(&args[3]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--pack") {
        let (input, out) = (Path::new(&args[2]), Path::new(&args[3]));
        let level = args[4].parse().expect("level");
        let started = Instant::now();
        let stats = pack(input, out, level);
        println!(
            "packed {} ({} entries, {:.1} MB unpacked, {} relocations) at level {level} in {:.1?}",
            input.display(),
            stats.file_count,
            stats.unpacked_size as f64 / 1e6,
            stats.relocations.len(),
            started.elapsed()
        );
        return;
    }
    let Some(input) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: first_run <prefix dir | archive> [runs] [zstd level]");
        std::process::exit(2);
    };
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let level: i32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(9);
    let scratch = tempfile::Builder::new()
        .prefix("pybundle-bench-")
        .tempdir_in(std::env::temp_dir())
        .expect("scratch dir");
    let exe = std::env::current_exe().expect("own path");
    let archive = if input.is_dir() {
        // Packed by a child: a child's peak RSS starts from its parent's at fork, so the
        // measuring process must stay small.
        let out = scratch.path().join("bench.tar.zst");
        let status = Command::new(&exe)
            .arg("--pack")
            .arg(&input)
            .arg(&out)
            .arg(level.to_string())
            .status()
            .expect("spawn packer");
        assert!(status.success(), "packing failed");
        out
    } else {
        input
    };
    let size = std::fs::metadata(&archive).expect("archive").len();
    println!(
        "archive: {} ({:.1} MB)",
        archive.display(),
        size as f64 / 1e6
    );

    let mut ours = Vec::new();
    let mut tar = Vec::new();
    for run in 0..runs {
        let dir = scratch.path().join(format!("ours-{run}"));
        settle();
        ours.push(measure(
            Command::new(&exe).arg("--child").arg(&archive).arg(&dir),
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let dir = scratch.path().join(format!("tar-{run}"));
        std::fs::create_dir(&dir).expect("tar dir");
        settle();
        tar.push(measure(
            Command::new("tar")
                .arg("--zstd")
                .arg("-xf")
                .arg(&archive)
                .arg("-C")
                .arg(&dir),
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Warm: the bundle is ready; ready() only takes the lock and reads the marker.
    let cache = scratch.path().join("warm");
    let bundle = Bundle::from_file(&archive)
        .expect("bundle")
        .cache_dir(&cache);
    drop(bundle.ready().expect("first ready"));
    let mut warm: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            drop(bundle.ready().expect("warm ready"));
            t.elapsed()
        })
        .collect();
    warm.sort();
    // What a spawn site pays before each start: the trust walk again and the directory's
    // identity compared with the one ready() opened.
    let env = bundle.ready().expect("warm ready");
    let mut check: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            env.check_location().expect("the bundle is where it was");
            t.elapsed()
        })
        .collect();
    check.sort();
    drop(env);
    let warm_proc = median(
        (0..20).map(|_| measure(Command::new(&exe).arg("--child").arg(&archive).arg(&cache)).0),
    );
    let true_proc = median((0..20).map(|_| measure(&mut Command::new("true")).0));

    let med = |v: &[(Duration, u64)]| median(v.iter().map(|r| r.0));
    let rss = |v: &[(Duration, u64)]| v.iter().map(|r| r.1).max().unwrap_or(0);
    let (o, t) = (med(&ours), med(&tar));
    println!();
    println!("| what (median of {runs}) | time | peak RSS |");
    println!("|---|---|---|");
    println!(
        "| first run: Bundle::ready (extract + relocate), own process | {o:.2?} | {} MB |",
        rss(&ours) / 1024
    );
    println!(
        "| `tar --zstd -xf` of the same archive | {t:.2?} | {} MB |",
        rss(&tar) / 1024
    );
    println!(
        "| ratio ours / tar | {:.2} | |",
        o.as_secs_f64() / t.as_secs_f64()
    );
    println!(
        "| warm ready(), in process (p50 / p99 of 2000) | {:.1?} / {:.1?} | |",
        warm[1000], warm[1980]
    );
    println!(
        "| Environment::check_location(), before each start (p50 / p99 of 2000) | {:.1?} / {:.1?} | |",
        check[1000], check[1980]
    );
    println!("| warm start: process + mmap + ready() (p50 of 20) | {warm_proc:.2?} | |");
    println!("| bare `true` process (p50 of 20) | {true_proc:.2?} | |");
}

/// The child: maps the archive (like an embedded one, nothing copied) and makes it ready.
fn child(archive: &str, cache: &Path) {
    let bytes = map(Path::new(archive));
    let env = Bundle::from_static(bytes)
        .expect("bundle")
        .cache_dir(cache)
        .ready()
        .expect("ready");
    assert!(env.prefix().exists());
}

fn map(path: &Path) -> &'static [u8] {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).expect("archive");
    let len = file.metadata().expect("metadata").len() as usize;
    // SAFETY: a private read-only mapping of a file nobody modifies while we run; it is
    // never unmapped, so the slice is valid for 'static.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        assert!(ptr != libc::MAP_FAILED, "mmap failed");
        std::slice::from_raw_parts(ptr.cast::<u8>(), len)
    }
}

/// Wall time and peak RSS (KiB) of a child process.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot do
fn measure(cmd: &mut Command) -> (Duration, u64) {
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, with valid out-pointers; std's Child is dropped
    // afterwards without waiting (the pid is already reaped).
    let rusage = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru);
        assert!(pid > 0, "wait4 failed");
        ru
    };
    let elapsed = started.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {status}"
    );
    (elapsed, rusage.ru_maxrss as u64)
}

fn median(it: impl Iterator<Item = Duration>) -> Duration {
    let mut v: Vec<_> = it.collect();
    v.sort();
    v[v.len() / 2]
}

/// Packs `dir` as `env/` with the format's writer (`format::write`): frame 1 the manifest,
/// frame 2 the rest.
fn pack(dir: &Path, out: &Path, level: i32) -> Manifest {
    use std::os::unix::fs::PermissionsExt as _;
    use tar::EntryType;
    let prefix = dir.to_str().expect("UTF-8 path").to_owned();
    let mut paths = Vec::new();
    walk(dir, &mut paths);
    let mut body = write::Body::new(Vec::new(), level).expect("zstd");
    let mut relocations = Vec::new();
    let (mut size, mut count) = (0u64, 0u64);
    for path in &paths {
        let rel = path.strip_prefix(dir).expect("inside");
        let name = Path::new("env").join(rel);
        let name = name.to_str().expect("UTF-8 path");
        let meta = std::fs::symlink_metadata(path).expect("metadata");
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path).expect("link");
            body.symlink(name, mode, &target).expect("append");
        } else if meta.is_dir() {
            body.append(EntryType::Directory, name, mode, b"")
                .expect("append");
        } else if meta.is_file() {
            let data = std::fs::read(path).expect("read");
            if !data.contains(&0) && memchr::memmem::find(&data, prefix.as_bytes()).is_some() {
                relocations.push(Relocation {
                    path: name.to_owned(),
                    placeholder: prefix.clone(),
                    mode: FileMode::Text,
                });
            }
            size += data.len() as u64;
            body.append(EntryType::Regular, name, mode, &data)
                .expect("append");
        } else {
            continue;
        }
        count += 1;
    }
    let (frame2, id) = body.finish().expect("zstd");
    let manifest = Manifest {
        format_version: pybundle_runtime::format::FORMAT_VERSION,
        id,
        name: "bench".into(),
        creator: "first_run example".into(),
        platform: "linux-64".into(),
        python: PythonInfo {
            path: "env/bin/python3".into(),
            version: String::new(),
        },
        build_prefix: prefix,
        relocations,
        activation: Default::default(),
        scripts_dir: pybundle_runtime::format::SCRIPTS_DIR.into(),
        unpacked_size: size,
        file_count: count,
        packages: Vec::new(),
    };
    let json = serde_json::to_vec(&manifest).expect("json");
    let mut archive = write::manifest_frame(&json, level).expect("zstd");
    archive.extend(frame2);
    std::fs::write(out, archive).expect("write archive");
    manifest
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let is_dir = std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        out.push(p.clone());
        if is_dir {
            walk(&p, out);
        }
    }
}

/// Writes back what earlier runs left dirty, so a run does not pay for the one before it.
fn settle() {
    let _ = Command::new("sync").status();
}
