//! Hostile archives against the runtime's limits, as a table: each case is run in a child
//! process (this test binary again), whose peak RSS `wait4` reports. Every case must end in
//! the error it names (or, for modes, a sanitised tree), under 256 MB, with the child exiting
//! normally (no abort, no stack overflow), and leave nothing trusted in the cache.
//!
//! The archives are written streaming (a gigabyte of long name or of zeros costs the parent
//! no memory either), in the real format: frame 1 the manifest, frame 2 the body.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pybundle_runtime::format::{FileMode, Manifest, PythonInfo, Relocation};
use pybundle_runtime::{Bundle, Error};
use sha2::{Digest, Sha256};
use tar::EntryType as T;

use crate::bundle::{build, header, hex, placeholder, sample};

const CHILD: &str = "PYBUNDLE_LIMITS_CHILD";
/// Peak RSS allowed to any case, in KiB.
const MAX_RSS_KB: u64 = 256 * 1024;
const GB: u64 = 1 << 30;

/// Not a test on its own: what the child processes of the table run.
#[test]
fn limits_child() {
    let Ok(op) = std::env::var(CHILD) else {
        return;
    };
    let archive = PathBuf::from(std::env::var("PYBUNDLE_LIMITS_ARCHIVE").unwrap());
    let cache = PathBuf::from(std::env::var("PYBUNDLE_LIMITS_CACHE").unwrap());
    let result = match op.as_str() {
        "manifest" => std::fs::read(&archive)
            .map_err(|e| Error::Io {
                action: "cannot read",
                path: archive.clone(),
                source: e,
            })
            .and_then(|bytes| pybundle_runtime::manifest_of(&bytes))
            .map(|m| m.name),
        "ready" => Bundle::from_file(&archive)
            .and_then(|b| b.cache_dir(&cache).ready())
            .map(|env| env.root().display().to_string()),
        // Another process keeps the bundle in use, so a verified start reports the damage
        // it finds instead of repairing it.
        "verify" => Bundle::from_file(&archive).and_then(|b| {
            let b = b.cache_dir(&cache);
            let _user = b.ready()?;
            b.verify(true)
                .repair_wait(Duration::ZERO)
                .ready()
                .map(|env| env.root().display().to_string())
        }),
        other => panic!("unknown op {other}"),
    };
    match result {
        Ok(what) => println!("LIMITS-OK {what}"),
        Err(e) => println!(
            "LIMITS-ERR {} {}",
            variant(&e),
            e.to_string().replace('\n', " ")
        ),
    }
}

fn variant(e: &Error) -> &'static str {
    match e {
        Error::ArchiveLimit { .. } => "ArchiveLimit",
        Error::Archive { .. } => "Archive",
        Error::Manifest(_) => "Manifest",
        Error::Relocate { .. } => "Relocate",
        Error::Damaged { .. } => "Damaged",
        Error::UnsafeEntry { .. } => "UnsafeEntry",
        _ => "Other",
    }
}

/// What a child reported, its peak RSS and how it ended.
struct Outcome {
    line: String,
    rss_kb: u64,
}

#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot do
fn run_child(op: &str, archive: &Path, cache: &Path) -> Outcome {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "limits::limits_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, op)
        .env("PYBUNDLE_LIMITS_ARCHIVE", archive)
        .env("PYBUNDLE_LIMITS_CACHE", cache)
        .env_remove("PYBUNDLE_CACHE_DIR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: wait4 on our own child with valid out-pointers; the Child handle was consumed
    // above and is never waited on again.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut ru), pid);
        ru
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{op} on {}: the child did not exit normally (status {status:#x}):\n{out}",
        archive.display()
    );
    // With --nocapture the line may follow the harness's "test … " on the same line.
    let line = out
        .lines()
        .find_map(|l| l.find("LIMITS-").map(|at| l[at..].to_owned()))
        .unwrap_or_else(|| panic!("no result line in:\n{out}"));
    Outcome {
        line,
        rss_kb: ru.ru_maxrss as u64,
    }
}

// --- streaming archive writer -----------------------------------------------------------------

/// Counts and hashes the tar bytes on their way into zstd (what the packer does).
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A tar record: header, `size` bytes from `data`, padding.
fn record(
    w: &mut dyn Write,
    path: &[u8],
    kind: T,
    mode: u32,
    link: &[u8],
    size: u64,
    data: &mut dyn Read,
) {
    w.write_all(&header(path, kind, size, mode, link)).unwrap();
    let copied = io::copy(&mut data.take(size), w).unwrap();
    assert_eq!(copied, size);
    let pad = (512 - size % 512) % 512;
    w.write_all(&vec![0; pad as usize]).unwrap();
}

/// A GNU long-name record of `len` bytes repeating `pattern` (NUL-terminated), for the next
/// entry.
fn long_name(w: &mut dyn Write, len: u64, pattern: &[u8]) {
    let mut source = Repeat(pattern.to_vec(), 0).take(len).chain(&[0u8][..]);
    record(
        w,
        b"././@LongLink",
        T::GNULongName,
        0o644,
        b"",
        len + 1,
        &mut source,
    );
}

/// An endless repetition of a byte pattern.
struct Repeat(Vec<u8>, usize);

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for b in buf.iter_mut() {
            *b = self.0[self.1];
            self.1 = (self.1 + 1) % self.0.len();
        }
        Ok(buf.len())
    }
}

/// The sample's records, then what `extra` writes.
fn then<'a>(
    tar: &'a [u8],
    extra: impl FnOnce(&mut dyn Write) + 'a,
) -> impl FnOnce(&mut dyn Write) + 'a {
    move |w: &mut dyn Write| {
        w.write_all(tar).unwrap();
        extra(w);
    }
}

fn manifest(
    name: &str,
    unpacked_size: u64,
    file_count: u64,
    relocations: Vec<Relocation>,
) -> Manifest {
    Manifest {
        format_version: 1,
        id: "0".repeat(64),
        name: name.into(),
        creator: "pybundle-runtime limit tests".into(),
        platform: "linux-64".into(),
        python: PythonInfo {
            path: "env/bin/python3".into(),
            version: "3.11.0".into(),
        },
        build_prefix: placeholder(),
        relocations,
        activation: Default::default(),
        scripts_dir: "scripts".into(),
        unpacked_size,
        file_count,
        packages: Vec::new(),
    }
}

/// Writes an archive to `out`: the body streamed through zstd (level 1) and sha256, then
/// the manifest (its id the body's hash unless `id` is given) in front. `frame1_prefix`
/// writes records before the manifest entry in frame 1.
fn write_archive(
    out: &Path,
    mut m: Manifest,
    id: Option<String>,
    frame1_prefix: impl FnOnce(&mut dyn Write),
    body: impl FnOnce(&mut dyn Write),
) {
    let body_path = out.with_extension("body");
    let file = std::fs::File::create(&body_path).unwrap();
    let mut w = Hashing {
        inner: zstd::Encoder::new(file, 1).unwrap(),
        hash: Sha256::new(),
    };
    body(&mut w);
    w.write_all(&[0; 1024]).unwrap();
    let digest = hex(&w.hash.finalize_reset());
    w.inner.finish().unwrap();
    m.id = id.unwrap_or(digest);
    let json = serde_json::to_vec(&m).unwrap();
    let mut frame1 = zstd::Encoder::new(std::fs::File::create(out).unwrap(), 1).unwrap();
    frame1_prefix(&mut frame1);
    record(
        &mut frame1,
        b".pybundle/manifest.json",
        T::Regular,
        0o644,
        b"",
        json.len() as u64,
        &mut &json[..],
    );
    let mut file = frame1.finish().unwrap();
    io::copy(&mut std::fs::File::open(&body_path).unwrap(), &mut file).unwrap();
    std::fs::remove_file(body_path).unwrap();
}

/// The sample bundle's body records (everything but the manifest), from the in-memory
/// builder: frame 2 of its archive, decompressed.
fn sample_body(name: &str) -> (Vec<u8>, Manifest) {
    let archive = build(&sample(name, "x"));
    let m = pybundle_runtime::manifest_of(&archive).unwrap();
    let frame1 = zstd::zstd_safe::find_frame_compressed_size(&archive).unwrap();
    let mut tar = zstd::decode_all(&archive[frame1..]).unwrap();
    tar.truncate(tar.len() - 1024); // the end blocks; write_archive adds its own
    (tar, m)
}

// --- the table --------------------------------------------------------------------------------

struct Case {
    what: &'static str,
    /// `manifest` (manifest_of, what `cargo pybundle inspect` calls), `ready`, `verify`.
    op: &'static str,
    /// The error variant and parts of its message.
    want: &'static str,
    says: Vec<String>,
}

fn case(what: &'static str, op: &'static str, want: &'static str, says: &[&str]) -> Case {
    Case {
        what,
        op,
        want,
        says: says.iter().map(|s| s.to_string()).collect(),
    }
}

/// Runs one case on `archive` with `cache` and checks it.
fn check(c: &Case, archive: &Path, cache: &Path) {
    let started = std::time::Instant::now();
    let out = run_child(c.op, archive, cache);
    println!(
        "| {} | {} | {} MB | {:.1?} | {} |",
        c.what,
        c.op,
        out.rss_kb / 1024,
        started.elapsed(),
        out.line
    );
    assert!(
        out.rss_kb <= MAX_RSS_KB,
        "{}: peak RSS {} KiB over {MAX_RSS_KB}",
        c.what,
        out.rss_kb
    );
    let prefix = if c.want == "Ok" {
        "LIMITS-OK".to_owned()
    } else {
        format!("LIMITS-ERR {} ", c.want)
    };
    assert!(out.line.starts_with(&prefix), "{}: {}", c.what, out.line);
    for part in &c.says {
        assert!(
            out.line.contains(part.as_str()),
            "{}: `{part}` not in {}",
            c.what,
            out.line
        );
    }
}

/// Nothing trusted in the cache: no bundle directory, no temporary or trash directory.
fn nothing_kept(cache: &Path) {
    let left: Vec<String> = std::fs::read_dir(cache)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

#[test]
fn hostile_archives_end_in_a_clear_error_within_256_mb() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (sample_tar, sample_m) = sample_body("evil");
    let n = sample_m.file_count;
    let size = sample_m.unpacked_size;
    let rel = sample_m.relocations.clone();
    println!("| case | op | peak RSS | time | result |");
    println!("|---|---|---|---|---|");
    let mut count = 0;
    let mut run = |c: Case, write: &dyn Fn(&Path)| {
        count += 1;
        let archive = dir.join(format!("case-{count}.tar.zst"));
        write(&archive);
        let cache = dir.join(format!("cache-{count}"));
        check(&c, &archive, &cache);
        if c.op != "manifest" {
            nothing_kept(&cache);
        }
    };
    // (4) a 1 GB long name: in frame 1 (what `manifest_of` reads) and in the body.
    for op in ["manifest", "ready"] {
        run(
            case(
                "1 GB long name in the manifest frame",
                op,
                "ArchiveLimit",
                &[
                    "long name is 1073741825 bytes long (limit 4097)",
                    "the first entry",
                ],
            ),
            &|a| {
                write_archive(
                    a,
                    manifest("evil", size, n, rel.clone()),
                    None,
                    |w| long_name(w, GB, b"a"),
                    then(&sample_tar, |_: &mut dyn Write| {}),
                )
            },
        );
    }
    run(
        case(
            "1 GB long name in the body",
            "ready",
            "ArchiveLimit",
            &[
                "long name is 1073741825 bytes long (limit 4097)",
                "the entry after lib/pybundle/__init__.py",
            ],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", size, n + 1, rel.clone()),
                None,
                |_| {},
                then(&sample_tar, |w: &mut dyn Write| {
                    long_name(w, GB, b"a");
                    record(w, b"x", T::Regular, 0o644, b"", 0, &mut io::empty());
                }),
            )
        },
    );
    // (4) a path of 100,000 components (what overflowed the stack), as a GNU long name and
    // as a PAX record; and a deep path that fits the length limit.
    run(
        case(
            "path of 100,000 components",
            "ready",
            "ArchiveLimit",
            &["long name is 200000 bytes long"],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", size, n + 1, rel.clone()),
                None,
                |_| {},
                then(&sample_tar, |w: &mut dyn Write| {
                    long_name(w, 200_000 - 1, b"a/");
                    record(w, b"x", T::Regular, 0o644, b"", 0, &mut io::empty());
                }),
            )
        },
    );
    run(
        case(
            "PAX path of 100,000 components",
            "ready",
            "ArchiveLimit",
            &["PAX record is"],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", size, n + 1, rel.clone()),
                None,
                |_| {},
                then(&sample_tar, |w: &mut dyn Write| {
                    let path = "a/".repeat(100_000);
                    let rec = format!("{} path={path}\n", path.len() + 6 + 7);
                    record(
                        w,
                        b"pax",
                        T::XHeader,
                        0o644,
                        b"",
                        rec.len() as u64,
                        &mut rec.as_bytes(),
                    );
                    record(w, b"x", T::Regular, 0o644, b"", 0, &mut io::empty());
                }),
            )
        },
    );
    run(
        case(
            "path 200 directories deep",
            "ready",
            "ArchiveLimit",
            &["over 128 directories deep"],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", size, n + 1, rel.clone()),
                None,
                |_| {},
                then(&sample_tar, |w: &mut dyn Write| {
                    let path = format!("env/{}", "d/".repeat(200));
                    long_name(w, path.len() as u64, path.as_bytes());
                    record(w, b"x", T::Directory, 0o755, b"", 0, &mut io::empty());
                }),
            )
        },
    );
    // (4) one file listed for relocation 12 times (each pass would grow it exponentially).
    run(
        case(
            "12 duplicate text relocations",
            "ready",
            "Manifest",
            &["for relocation twice"],
        ),
        &|a| {
            let dup = vec![
                Relocation {
                    path: "env/etc/conf.txt".into(),
                    placeholder: "e".into(),
                    mode: FileMode::Text,
                };
                12
            ];
            write_archive(
                a,
                manifest("evil", size, n, dup),
                None,
                |_| {},
                then(&sample_tar, |_: &mut dyn Write| {}),
            )
        },
    );
    // (4) a placeholder of `/` in 8 MB of slashes: 8 MB × the prefix length if allowed.
    run(
        case(
            "placeholder `/`",
            "ready",
            "Relocate",
            &["would grow it from 8388608", "twice its size plus 1 MiB"],
        ),
        &|a| {
            let slash = vec![Relocation {
                path: "env/share/slashes".into(),
                placeholder: "/".into(),
                mode: FileMode::Text,
            }];
            write_archive(
                a,
                manifest("evil", size + (8 << 20), n + 1, slash),
                None,
                |_| {},
                then(&sample_tar, |w: &mut dyn Write| {
                    record(
                        w,
                        b"env/share/slashes",
                        T::Regular,
                        0o644,
                        b"",
                        8 << 20,
                        &mut Repeat(b"/".to_vec(), 0),
                    )
                }),
            )
        },
    );
    // (4) a body frame that declares a 2 GB window (every verified start would allocate it).
    run(
        case(
            "2 GB zstd window",
            "ready",
            "ArchiveLimit",
            &["zstd window over 128 MiB", "the compressed body"],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", size, n, rel.clone()),
                None,
                |_| {},
                then(&sample_tar, |_: &mut dyn Write| {}),
            );
            let mut bytes = std::fs::read(a).unwrap();
            let at = zstd::zstd_safe::find_frame_compressed_size(&bytes).unwrap();
            let fhd = bytes[at + 4];
            assert_eq!(fhd & 0x20, 0, "a streamed frame has a window descriptor");
            bytes[at + 5] = (31 - 10) << 3;
            std::fs::write(a, bytes).unwrap();
        },
    );
    // (4) a 4 GB entry in a manifest that declares 100 bytes of files.
    run(
        case(
            "4 GB entry, 100 bytes declared",
            "ready",
            "ArchiveLimit",
            &["env/big", "past the 100 bytes the manifest declares"],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", 100, 2, vec![]),
                None,
                |_| {},
                |w: &mut dyn Write| {
                    record(w, b"env/", T::Directory, 0o755, b"", 0, &mut io::empty());
                    record(
                        w,
                        b"env/big",
                        T::Regular,
                        0o644,
                        b"",
                        4 * GB,
                        &mut io::repeat(0),
                    );
                },
            )
        },
    );
    // (4) 200,000 empty files where the manifest lists 11 entries.
    run(
        case(
            "200,000 empty files, 11 declared",
            "ready",
            "ArchiveLimit",
            &["the manifest lists 11 entries (file_count) and this is one more"],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", size, n, rel.clone()),
                None,
                |_| {},
                then(&sample_tar, |w: &mut dyn Write| {
                    for i in 0..200_000 {
                        let p = format!("env/f/{i}");
                        record(w, p.as_bytes(), T::Regular, 0o644, b"", 0, &mut io::empty());
                    }
                }),
            )
        },
    );
    // (5) another body under a real app's id.
    let real = build(&sample("evil", "x"));
    let real_id = pybundle_runtime::manifest_of(&real).unwrap().id;
    run(
        case(
            "a forged body under a real id",
            "ready",
            "Archive",
            &["does not match the manifest id"],
        ),
        &|a| {
            write_archive(
                a,
                manifest("evil", size, n, rel.clone()),
                Some(real_id.clone()),
                |_| {},
                |w: &mut dyn Write| {
                    let mut forged = sample_tar.clone();
                    let at = forged
                        .windows(14)
                        .position(|w| w == b"print('hello')")
                        .unwrap();
                    forged[at..at + 14].copy_from_slice(b"print('pwned')");
                    w.write_all(&forged).unwrap();
                },
            )
        },
    );
    assert!(
        archive_size(dir) < 64 << 20,
        "the archives themselves stay small"
    );
}

fn archive_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "zst"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// (6) What `verify(true)` missed before: files added beside the archive's, and a relocated
/// file swapped for a huge sparse one (read whole, it cost 4 GB and 19 s). Each is reported
/// as damage naming the file; the sparse file is never read past its expected size.
#[test]
fn verify_flags_added_files_and_reads_no_more_than_expected() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("v.tar.zst");
    std::fs::write(&archive, build(&sample("verify", "x"))).unwrap();
    let pyc = |flags: u32| [&[0xa7, 0x0d, 0x0d, 0x0a][..], &flags.to_le_bytes(), &[0; 8]].concat();
    // Grown in place: the same inode, mode and links, 4 GB of holes.
    let sparse = |p: &Path| {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(4 * GB).unwrap();
    };
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a .pth file added",
            Box::new(|d: &Path| std::fs::write(d.join("env/lib/evil.pth"), "import os").unwrap()),
            "env/lib/evil.pth (not in the archive; Python runs .pth files at every start)",
        ),
        (
            "sitecustomize.py added",
            Box::new(|d: &Path| std::fs::write(d.join("env/lib/sitecustomize.py"), "").unwrap()),
            "env/lib/sitecustomize.py (not in the archive; Python imports it at every start)",
        ),
        (
            "unchecked-hash bytecode for a shipped source",
            Box::new(move |d: &Path| {
                std::fs::create_dir_all(d.join("scripts/__pycache__")).unwrap();
                std::fs::write(d.join("scripts/__pycache__/hello.cpython-311.pyc"), pyc(1))
                    .unwrap();
            }),
            "scripts/__pycache__/hello.cpython-311.pyc (bytecode Python runs without checking it",
        ),
        (
            "a module shadowing another, added to the scripts",
            Box::new(|d: &Path| std::fs::write(d.join("scripts/json.py"), "").unwrap()),
            "scripts/json.py (not in the archive; a module or library",
        ),
        (
            "a relocated text file replaced by a 4 GB sparse file",
            Box::new(move |d: &Path| sparse(&d.join("env/etc/conf.txt"))),
            "env/etc/conf.txt (4294967296 bytes, not",
        ),
        (
            "a relocated binary replaced by a 4 GB sparse file",
            Box::new(move |d: &Path| sparse(&d.join("env/lib/libthing.so"))),
            "env/lib/libthing.so (4294967296 bytes, not",
        ),
    ];
    for (i, (what, damage, says)) in cases.into_iter().enumerate() {
        let cache = scratch.path().join(format!("cache-{i}"));
        let dir = Bundle::from_file(&archive)
            .unwrap()
            .cache_dir(&cache)
            .ready()
            .unwrap()
            .root()
            .to_path_buf();
        damage(&dir);
        check(&case(what, "verify", "Damaged", &[says]), &archive, &cache);
        // And unused, the verified start repairs it.
        Bundle::from_file(&archive)
            .unwrap()
            .cache_dir(&cache)
            .verify(true)
            .ready()
            .unwrap();
        let fresh = Bundle::from_file(&archive)
            .unwrap()
            .cache_dir(scratch.path().join(format!("ref-{i}")))
            .ready()
            .unwrap();
        assert_eq!(
            crate::bundle::list(&dir),
            crate::bundle::list(fresh.root()),
            "{what}: the added or damaged file is gone after the repair"
        );
    }
}

/// (9) Group- and world-writable modes (and setuid, setgid, sticky) in the archive are not
/// kept: nothing extracted is writable by anyone but the owner.
#[test]
fn modes_lose_group_and_other_write() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("modes.tar.zst");
    let (sample_tar, m) = sample_body("modes");
    let extra: [(&[u8], T, u32, u64); 5] = [
        (b"env/open/", T::Directory, 0o1777, 0),
        (b"env/open/all", T::Regular, 0o777, 3),
        (b"env/open/rw", T::Regular, 0o666, 3),
        (b"env/open/suid", T::Regular, 0o6755, 3),
        (b"env/open/group", T::Regular, 0o664, 3),
    ];
    write_archive(
        &archive,
        manifest(
            "modes",
            m.unpacked_size + 12,
            m.file_count + 5,
            m.relocations.clone(),
        ),
        None,
        |_| {},
        |w: &mut dyn Write| {
            w.write_all(&sample_tar).unwrap();
            for (p, kind, mode, size) in extra {
                record(w, p, kind, mode, b"", size, &mut &b"abc"[..]);
            }
        },
    );
    let cache = scratch.path().join("cache");
    check(
        &case("world-writable modes", "ready", "Ok", &[]),
        &archive,
        &cache,
    );
    let env = Bundle::from_file(&archive)
        .unwrap()
        .cache_dir(&cache)
        .ready()
        .unwrap();
    let mode = |p: &str| crate::bundle::mode(&env.prefix().join(p));
    assert_eq!(mode("open"), 0o755);
    assert_eq!(mode("open/all"), 0o755);
    assert_eq!(mode("open/rw"), 0o644);
    assert_eq!(mode("open/suid"), 0o755);
    assert_eq!(mode("open/group"), 0o644);
    for p in crate::bundle::list(env.root()) {
        let m = crate::bundle::mode(&env.root().join(&p));
        let is_link = std::fs::symlink_metadata(env.root().join(&p))
            .unwrap()
            .is_symlink();
        assert!(is_link || m & 0o7022 == 0, "{p}: {m:o}");
    }
    // Verify expects the sanitised modes: the tree is intact.
    drop(env);
    Bundle::from_file(&archive)
        .unwrap()
        .cache_dir(&cache)
        .verify(true)
        .ready()
        .unwrap();
}

/// (5) Two unrelated applications with the same name keep each other's cache (each bundle
/// directory records who extracted it), while a new version of one still replaces its old
/// one; and a manifest forged over a real body (same id, other relocations) is not taken
/// for the real one.
#[test]
fn same_name_apps_and_forged_manifests_do_not_collide() {
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let (a, b) = (
        scratch.path().join("a/app.tar.zst"),
        scratch.path().join("b/app.tar.zst"),
    );
    for p in [&a, &b] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    }
    std::fs::write(&a, build(&sample("app", "first app"))).unwrap();
    std::fs::write(&b, build(&sample("app", "second app"))).unwrap();
    let ready = |p: &Path| {
        Bundle::from_file(p)
            .unwrap()
            .cache_dir(&cache)
            .ready()
            .unwrap()
            .root()
            .to_path_buf()
    };
    let a1 = ready(&a);
    let b1 = ready(&b);
    assert_ne!(a1, b1);
    assert!(a1.exists(), "the other application's cache stays");
    let a1_again = ready(&a);
    assert_eq!(a1_again, a1);
    assert!(b1.exists());
    std::fs::write(&a, build(&sample("app", "first app, v2"))).unwrap();
    let a2 = ready(&a);
    assert!(!a1.exists(), "the old version of the same application goes");
    assert!(a2.exists() && b1.exists());

    // The real bundle's body under a manifest that relocates nothing (the id is right).
    let real = build(&sample("forge", "x"));
    let mut spec = sample("forge", "x");
    spec.relocations.clear();
    let forged_manifest = build(&spec);
    let frame = |x: &[u8]| zstd::zstd_safe::find_frame_compressed_size(x).unwrap();
    let mut forged = forged_manifest[..frame(&forged_manifest)].to_vec();
    forged.extend_from_slice(&real[frame(&real)..]);
    let forged_env = Bundle::from_bytes(forged)
        .unwrap()
        .cache_dir(&cache)
        .ready()
        .unwrap();
    let conf = forged_env.prefix().join("etc/conf.txt");
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains(&placeholder()));
    let root = forged_env.root().to_path_buf();
    drop(forged_env);
    let env = Bundle::from_bytes(real)
        .unwrap()
        .cache_dir(&cache)
        .ready()
        .unwrap();
    assert_eq!(env.root(), root, "same name and id: the same directory");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains(&env.prefix().display().to_string()) && !text.contains(&placeholder()),
        "the real manifest's relocations were applied: {text}"
    );
}

/// (6) The verify bypass with a real Python: a `.pth` line and a `sitecustomize` module
/// planted in site-packages run at every start of a plain bundle (the attack, shown here so
/// the test can fail), and never with `verify(true)`, which finds and removes them first.
#[test]
fn verify_keeps_code_planted_beside_a_real_python_from_running() {
    let Some(toolchain) = testkit::toolchain("verify keeps planted code from running") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let python = crate::bundle::real::RealPython::unpack(
        &toolchain.channel_dir().join("linux-64"),
        scratch.path(),
    );
    let bundle = Bundle::from_bytes(build(&python.spec(python.relocations.clone())))
        .unwrap()
        .cache_dir(scratch.path().join("cache"));
    let evidence = scratch.path().join("evidence");
    std::fs::create_dir(&evidence).unwrap();
    let ran = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&evidence)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let start = |env: &pybundle_runtime::Environment| {
        let out = env
            .python()
            .args(["-c", "print('started')"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "started");
    };
    let env = bundle.ready().unwrap();
    let site = env.prefix().join("lib/python3.11/site-packages");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("evil.pth"),
        format!("import os; open(r'{}/pth', 'w')\n", evidence.display()),
    )
    .unwrap();
    std::fs::write(
        site.join("sitecustomize.py"),
        format!("open(r'{}/sitecustomize', 'w')\n", evidence.display()),
    )
    .unwrap();
    start(&env);
    assert_eq!(
        ran(),
        ["pth", "sitecustomize"],
        "the planted code runs without verify"
    );
    for f in ran() {
        std::fs::remove_file(evidence.join(f)).unwrap();
    }
    drop(env);
    let env = bundle.clone().verify(true).ready().unwrap();
    start(&env);
    assert!(
        ran().is_empty(),
        "planted code ran under verify: {:?}",
        ran()
    );
    assert!(!site.join("evil.pth").exists() && !site.join("sitecustomize.py").exists());
}
