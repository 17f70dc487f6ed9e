//! First run of a bundle: archives built here in the real format (tar + two zstd frames,
//! manifest first), extracted and relocated by `Bundle::ready`, checked on disk.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pybundle_runtime::format::{FileMode, Manifest, PythonInfo, Relocation};
use pybundle_runtime::{Bundle, Error};
use sha2::{Digest, Sha256};

/// A conda-build style placeholder: long, so any cache path fits in binary files.
pub fn placeholder() -> String {
    let mut p = String::from("/opt/build/_h_env");
    while p.len() < 255 {
        p.push_str("_placehold");
    }
    p.truncate(255);
    p
}

/// One archive entry, written with raw header fields so hostile names survive.
pub enum E {
    Dir(String),
    File(String, Vec<u8>, u32),
    Symlink(String, String),
    Hardlink(String, String),
    Special(String, tar::EntryType),
}

/// What goes into a test archive.
pub struct Spec {
    pub name: String,
    pub entries: Vec<E>,
    pub relocations: Vec<Relocation>,
    /// Replaces the computed id (to test verification).
    pub id: Option<String>,
}

impl Spec {
    pub fn new(name: &str, entries: Vec<E>) -> Spec {
        Spec {
            name: name.into(),
            entries,
            relocations: Vec::new(),
            id: None,
        }
    }
}

fn header(path: &[u8], kind: tar::EntryType, size: u64, mode: u32, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().expect("gnu header");
        let (p, l) = (&path[..path.len().min(100)], &link[..link.len().min(100)]);
        g.name[..p.len()].copy_from_slice(p);
        g.linkname[..l.len()].copy_from_slice(l);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    *h.as_bytes()
}

/// Appends one entry; names and link targets over 100 bytes go in GNU long-name records.
fn push(out: &mut Vec<u8>, path: &[u8], kind: tar::EntryType, mode: u32, link: &[u8], data: &[u8]) {
    for (long, long_kind) in [
        (link, tar::EntryType::GNULongLink),
        (path, tar::EntryType::GNULongName),
    ] {
        if long.len() > 100 {
            let name = [long, b"\0"].concat();
            let h = header(b"././@LongLink", long_kind, name.len() as u64, 0o644, b"");
            push_entry(out, h, &name);
        }
    }
    push_entry(out, header(path, kind, data.len() as u64, mode, link), data);
}

fn push_entry(out: &mut Vec<u8>, h: [u8; 512], data: &[u8]) {
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// Builds an archive: frame 1 = the manifest entry, frame 2 = the body with end blocks.
pub fn build(spec: &Spec) -> Vec<u8> {
    use tar::EntryType as T;
    let mut body = Vec::new();
    let mut size = 0;
    for e in &spec.entries {
        match e {
            E::Dir(p) => push(&mut body, p.as_bytes(), T::Directory, 0o755, b"", b""),
            E::File(p, data, mode) => {
                size += data.len() as u64;
                push(&mut body, p.as_bytes(), T::Regular, *mode, b"", data)
            }
            E::Symlink(p, t) => push(
                &mut body,
                p.as_bytes(),
                T::Symlink,
                0o777,
                t.as_bytes(),
                b"",
            ),
            E::Hardlink(p, t) => push(&mut body, p.as_bytes(), T::Link, 0o644, t.as_bytes(), b""),
            E::Special(p, kind) => push(&mut body, p.as_bytes(), *kind, 0o644, b"", b""),
        }
    }
    body.extend_from_slice(&[0; 1024]);
    let id = spec
        .id
        .clone()
        .unwrap_or_else(|| hex(&Sha256::digest(&body)));
    let manifest = Manifest {
        format_version: 1,
        id,
        name: spec.name.clone(),
        creator: "pybundle-runtime tests".into(),
        platform: "linux-64".into(),
        python: PythonInfo {
            path: "env/bin/python3".into(),
            version: "3.11.0".into(),
        },
        build_prefix: placeholder(),
        relocations: spec.relocations.clone(),
        activation: [("DATA_DIR".to_owned(), "${PREFIX}/share/data".to_owned())].into(),
        scripts_dir: "scripts".into(),
        unpacked_size: size,
        file_count: spec.entries.len() as u64,
        packages: Vec::new(),
    };
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut first = Vec::new();
    let h = header(
        b".pybundle/manifest.json",
        tar::EntryType::Regular,
        json.len() as u64,
        0o644,
        b"",
    );
    push_entry(&mut first, h, &json);
    let mut out = zstd::bulk::compress(&first, 3).unwrap();
    out.extend(zstd::bulk::compress(&body, 3).unwrap());
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small but complete bundle: an "interpreter" (a shell script), a text file and a binary
/// file holding the placeholder, a relative symlink, an executable entry-point script, a hard
/// link and a user script. `salt` changes the content (and so the id).
pub fn sample(name: &str, salt: &str) -> Spec {
    let ph = placeholder();
    let mut binary = b"\x7fELF\0\0RUNPATH=".to_vec();
    binary.extend_from_slice(format!("{ph}/lib:{ph}/lib64\0").as_bytes());
    binary.extend_from_slice(b"other\0");
    binary.extend_from_slice(ph.as_bytes());
    let files = vec![
        E::Dir("env/".into()),
        E::Dir("env/bin/".into()),
        E::File(
            "env/bin/python3.11".into(),
            b"#!/bin/sh\necho \"interp-ran $*\"\n".to_vec(),
            0o755,
        ),
        E::Symlink("env/bin/python3".into(), "python3.11".into()),
        E::File(
            "env/bin/tool".into(),
            format!("#!{ph}/bin/python3\nimport tool\n").into_bytes(),
            0o755,
        ),
        E::File(
            "env/etc/conf.txt".into(),
            format!("prefix={ph}\nlib={ph}/lib\n{salt}\n").into_bytes(),
            0o644,
        ),
        E::File("env/lib/libthing.so".into(), binary, 0o755),
        E::Hardlink(
            "env/lib/libthing-link.so".into(),
            "env/lib/libthing.so".into(),
        ),
        E::File(
            "env/share/readonly.txt".into(),
            b"read only\n".to_vec(),
            0o444,
        ),
        E::File(
            "scripts/hello.py".into(),
            b"print('hello')\n".to_vec(),
            0o644,
        ),
        E::File("lib/pybundle/__init__.py".into(), b"".to_vec(), 0o644),
    ];
    let mut spec = Spec::new(name, files);
    spec.relocations = vec![
        Relocation {
            path: "env/bin/tool".into(),
            placeholder: ph.clone(),
            mode: FileMode::Text,
        },
        Relocation {
            path: "env/etc/conf.txt".into(),
            placeholder: ph.clone(),
            mode: FileMode::Text,
        },
        Relocation {
            path: "env/lib/libthing.so".into(),
            placeholder: ph,
            mode: FileMode::Binary,
        },
    ];
    spec
}

/// Every path under `root`, relative.
pub fn list(root: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

/// A progress callback counting its calls (called only when this process extracts).
fn counter() -> (
    Arc<AtomicU64>,
    impl Fn(pybundle_runtime::Progress) + Send + Sync + 'static,
) {
    let n = Arc::new(AtomicU64::new(0));
    let m = n.clone();
    (n, move |_| {
        m.fetch_add(1, Ordering::Relaxed);
    })
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn first_run_extracts_relocates_and_marks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b/cache");
    let archive = build(&sample("demo", "v1"));
    let (calls, progress) = counter();
    let bundle = Bundle::from_bytes(archive)
        .unwrap()
        .cache_dir(&root)
        .on_progress(progress);
    let m = bundle.manifest().clone();
    let env = bundle.ready().unwrap();

    let dir = root.join(format!("demo-{}", &m.id[..16]));
    assert_eq!(env.root(), dir);
    assert_eq!(env.prefix(), dir.join("env"));
    assert_eq!(env.interpreter(), dir.join("env/bin/python3"));
    assert_eq!(env.scripts_dir(), dir.join("scripts"));
    assert_eq!(env.lib_dir(), dir.join("lib"));
    assert_eq!(
        env.vars()["DATA_DIR"],
        format!("{}/env/share/data", dir.display())
    );
    assert!(
        calls.load(Ordering::Relaxed) >= 11,
        "progress reported per entry"
    );

    let prefix = dir.join("env").display().to_string();
    let ph = placeholder();
    // Text: every occurrence replaced.
    let conf = std::fs::read_to_string(dir.join("env/etc/conf.txt")).unwrap();
    assert_eq!(conf, format!("prefix={prefix}\nlib={prefix}/lib\nv1\n"));
    // Binary: same length, replaced inside each C string, NUL-padded.
    let bin = std::fs::read(dir.join("env/lib/libthing.so")).unwrap();
    let orig_len =
        b"\x7fELF\0\0RUNPATH=".len() + format!("{ph}/lib:{ph}/lib64\0").len() + 6 + ph.len();
    assert_eq!(bin.len(), orig_len);
    let runpath = format!("RUNPATH={prefix}/lib:{prefix}/lib64\0");
    assert!(bin.windows(runpath.len()).any(|w| w == runpath.as_bytes()));
    assert!(!bin.windows(20).any(|w| w == &ph.as_bytes()[..20]));
    // The hard link shares the relocated content.
    assert_eq!(
        std::fs::read(dir.join("env/lib/libthing-link.so")).unwrap(),
        bin
    );
    // A short enough shebang stays a shebang.
    let tool = std::fs::read_to_string(dir.join("env/bin/tool")).unwrap();
    assert_eq!(tool, format!("#!{prefix}/bin/python3\nimport tool\n"));
    // Modes kept, symlink kept.
    assert_eq!(mode(&dir.join("env/bin/tool")), 0o755);
    assert_eq!(mode(&dir.join("env/share/readonly.txt")), 0o444);
    assert_eq!(
        std::fs::read_link(dir.join("env/bin/python3")).unwrap(),
        Path::new("python3.11")
    );
    // The entry point runs through the relocated shebang and the symlinked "interpreter".
    let out = Command::new(dir.join("env/bin/tool"))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("interp-ran {}/bin/tool x\n", prefix)
    );
    // Marker and manifest.
    assert_eq!(
        std::fs::read_to_string(dir.join(".pybundle/complete")).unwrap(),
        m.id
    );
    let written: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join(".pybundle/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(written, m);
    // Private: every directory we created is 0700, and nothing temporary is left.
    for d in [
        tmp.path().join("a"),
        tmp.path().join("a/b"),
        root.clone(),
        dir.clone(),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let left: Vec<_> = list(&root)
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(
        left,
        vec![
            format!("demo-{}", &m.id[..16]),
            format!("demo-{}.lock", &m.id[..16])
        ]
    );
}

#[test]
fn second_run_takes_the_fast_path() {
    let tmp = tempfile::tempdir().unwrap();
    let archive: Arc<[u8]> = build(&sample("fast", "x")).into();
    let (calls, progress) = counter();
    let env = Bundle::from_bytes(archive.clone())
        .unwrap()
        .cache_dir(tmp.path())
        .ready()
        .unwrap();
    let marker = env.root().join(".pybundle/complete");
    let ino = std::fs::metadata(&marker).unwrap().ino();
    drop(env);
    let bundle = Bundle::from_bytes(archive)
        .unwrap()
        .cache_dir(tmp.path())
        .on_progress(progress);
    let started = Instant::now();
    let env = bundle.ready().unwrap();
    let warm = started.elapsed();
    assert_eq!(
        calls.load(Ordering::Relaxed),
        0,
        "no extraction on the second run"
    );
    assert_eq!(
        std::fs::metadata(&marker).unwrap().ino(),
        ino,
        "the bundle was not replaced"
    );
    assert!(env.interpreter().exists());
    eprintln!("warm ready(): {warm:?}");
}

#[test]
fn an_incomplete_directory_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::from_bytes(build(&sample("half", "x")))
        .unwrap()
        .cache_dir(tmp.path());
    let dir = bundle.target_dir().unwrap();
    // A directory with the right name but no marker (e.g. copied by hand) is never trusted.
    std::fs::create_dir_all(dir.join("env/bin")).unwrap();
    std::fs::write(dir.join("env/bin/python3"), "garbage").unwrap();
    let env = bundle.ready().unwrap();
    assert_eq!(
        std::fs::read_link(env.interpreter()).unwrap(),
        Path::new("python3.11")
    );
    assert!(list(tmp.path())
        .iter()
        .all(|p| !p.starts_with(".trash") && !p.starts_with(".tmp")));
}

#[test]
fn older_versions_are_removed_unless_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let open = |salt: &str| {
        Bundle::from_bytes(build(&sample("app", salt)))
            .unwrap()
            .cache_dir(tmp.path())
            .ready()
            .unwrap()
    };
    // Another application whose name extends ours is never touched.
    let other = Bundle::from_bytes(build(&sample("app-tool", "o")))
        .unwrap()
        .cache_dir(tmp.path());
    let other_dir = other.ready().unwrap().root().to_path_buf();

    let v1 = open("1");
    let v1_dir = v1.root().to_path_buf();
    let v2 = open("2");
    assert!(
        v1_dir.exists(),
        "v1 is in use (its Environment holds the lock)"
    );
    let v2_dir = v2.root().to_path_buf();
    drop(v1);
    drop(v2);
    let v3 = open("3");
    assert!(
        !v1_dir.exists() && !v2_dir.exists(),
        "unused versions are removed"
    );
    assert!(other_dir.exists());
    let names = list(tmp.path());
    let v3_name = v3.root().file_name().unwrap().to_str().unwrap().to_owned();
    let top: BTreeSet<_> = names.iter().filter(|p| !p.contains('/')).cloned().collect();
    let other_name = other_dir.file_name().unwrap().to_str().unwrap().to_owned();
    let want: BTreeSet<_> = [&v3_name, &other_name]
        .iter()
        .flat_map(|n| [n.to_string(), format!("{n}.lock")])
        .collect();
    assert_eq!(
        top, want,
        "old lock files go too, nothing half-deleted stays"
    );

    // Turned off: nothing is removed.
    drop(v3);
    let keep = Bundle::from_bytes(build(&sample("app", "4")))
        .unwrap()
        .cache_dir(tmp.path())
        .remove_old_versions(false)
        .ready()
        .unwrap();
    assert!(tmp.path().join(&v3_name).exists());
    drop(keep);
}

#[test]
fn a_cache_owned_by_another_user_is_refused() {
    if my_uid() != 0 {
        println!("skipped: needs root to chown a directory to another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("theirs");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let bundle = Bundle::from_bytes(build(&sample("own", "x")))
        .unwrap()
        .cache_dir(&root);
    let err = bundle.ready().unwrap_err();
    assert!(
        matches!(err, Error::Cache { ref path, .. } if path == &root),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("PYBUNDLE_CACHE_DIR") && msg.contains("65534"),
        "{msg}"
    );
    assert!(list(&root).is_empty());

    // The bundle directory itself owned by someone else.
    let root = tmp.path().join("mine");
    let bundle = bundle.cache_dir(&root);
    let dir = bundle.target_dir().unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let err = bundle.ready().unwrap_err();
    assert!(
        matches!(err, Error::Cache { ref path, .. } if path == &dir),
        "{err:?}"
    );
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

#[test]
fn long_prefix_turns_the_shebang_into_a_trampoline() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("c".repeat(120));
    let env = Bundle::from_bytes(build(&sample("long", "x")))
        .unwrap()
        .cache_dir(&root)
        .ready()
        .unwrap();
    let prefix = env.prefix().display().to_string();
    let tool = std::fs::read_to_string(env.prefix().join("bin/tool")).unwrap();
    assert!(tool.starts_with(&format!(
        "#!/bin/sh\n'''exec' \"{prefix}/bin/python3\" \"$0\" \"$@\" #'''\n"
    )));
    let out = Command::new(env.prefix().join("bin/tool"))
        .args(["a b", "c"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("interp-ran {prefix}/bin/tool a b c\n")
    );
}

#[test]
fn a_prefix_longer_than_the_binary_placeholder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("d".repeat(250));
    let err = Bundle::from_bytes(build(&sample("toolong", "x")))
        .unwrap()
        .cache_dir(&root)
        .ready();
    let err = err.unwrap_err();
    assert!(
        matches!(&err, Error::Relocate { path, .. } if path.ends_with("env/lib/libthing.so")),
        "{err:?}"
    );
    let top: Vec<_> = list(&root)
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert!(
        top.iter().all(|p| p.ends_with(".lock")),
        "nothing trusted or temporary is left: {top:?}"
    );
}

#[test]
fn verification_catches_a_wrong_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = sample("verify", "x");
    spec.id = Some("ab".repeat(32));
    let bytes: Arc<[u8]> = build(&spec).into();
    let err = Bundle::from_bytes(bytes.clone())
        .unwrap()
        .cache_dir(tmp.path())
        .verify(true)
        .ready()
        .unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err:?}");
    assert!(err.to_string().contains("does not match"), "{err}");
    let good = Bundle::from_bytes(build(&sample("verify", "y"))).unwrap();
    good.cache_dir(tmp.path()).verify(true).ready().unwrap();
}

#[test]
fn the_manifest_is_read_from_the_first_frame_alone() {
    let archive = build(&sample("peek", "x"));
    let frame = zstd::zstd_safe::find_frame_compressed_size(&archive).unwrap();
    let m = pybundle_runtime::manifest_of(&archive[..frame]).unwrap();
    assert_eq!(m.name, "peek");
    assert_eq!(m.relocations.len(), 3);
    let err = pybundle_runtime::manifest_of(b"PK\x03\x04 not zstd").unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err:?}");
}

#[test]
fn from_file_reads_archives_and_programs() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = build(&sample("file", "x"));
    let path = tmp.path().join("bundle.tar.zst");
    std::fs::write(&path, &archive).unwrap();
    assert_eq!(Bundle::from_file(&path).unwrap().manifest().name, "file");
    // A fake program: some bytes, the embed header, the archive.
    let mut exe = b"\x7fELF some code".to_vec();
    exe.extend_from_slice(&pybundle_runtime::format::EMBED_MAGIC);
    exe.extend_from_slice(&(archive.len() as u64).to_le_bytes());
    exe.extend_from_slice(&archive);
    let exe_path = tmp.path().join("prog");
    std::fs::write(&exe_path, &exe).unwrap();
    assert_eq!(
        Bundle::from_file(&exe_path).unwrap().manifest().name,
        "file"
    );
    std::fs::write(&exe_path, b"neither").unwrap();
    let err = Bundle::from_file(&exe_path).unwrap_err();
    assert!(err.to_string().contains("prog"), "{err}");
}

#[test]
fn built_without_a_bundle_says_how_to_build_one() {
    // This test binary is built without PYBUNDLE_ARCHIVE.
    let err = Bundle::embedded().unwrap_err();
    assert!(matches!(err, Error::NotBundled));
    assert!(err.to_string().contains("cargo pybundle build"), "{err}");
}

// --- several processes ---------------------------------------------------------------------

const CHILD_ENV: &str = "PYBUNDLE_IT_CHILD";

/// Not a test on its own: the body run by child processes of the tests below (re-executing
/// this test binary). Without the variable it does nothing.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let archive = PathBuf::from(std::env::var("PYBUNDLE_IT_ARCHIVE").unwrap());
    let go = std::env::var_os("PYBUNDLE_IT_GO").map(PathBuf::from);
    let bundle = Bundle::from_file(&archive).unwrap();
    let bundle = match role.as_str() {
        "ready" => bundle,
        "pause-halfway" => {
            let signal = go.clone().unwrap();
            bundle.on_progress(move |p| {
                if p.entries_done == p.entries_total / 2 {
                    std::fs::write(&signal, "halfway").unwrap();
                    std::thread::sleep(Duration::from_secs(60));
                }
            })
        }
        other => panic!("unknown role {other}"),
    };
    if role == "ready" {
        // Start together: wait for the go file.
        let go = go.unwrap();
        while !go.exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let env = bundle.ready().unwrap();
    assert!(env.interpreter().exists());
    println!("CHILD-OK {}", env.root().display());
}

fn child(role: &str, archive: &Path, cache: &Path, go: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "bundle::child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, role)
    .env("PYBUNDLE_IT_ARCHIVE", archive)
    .env("PYBUNDLE_IT_GO", go)
    .env("PYBUNDLE_CACHE_DIR", cache)
    .env("PYBUNDLE_TEST_EXTRACT_LOG", log);
    cmd
}

/// A bundle with `files` files of `size` pseudo-random (incompressible) bytes each.
fn big(name: &str, files: usize, size: usize) -> Vec<u8> {
    let mut spec = sample(name, "big");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..files {
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        spec.entries
            .push(E::File(format!("env/data/blob{i:04}.bin"), data, 0o644));
    }
    build(&spec)
}

#[test]
fn sixteen_processes_extract_once() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive, big("race", 40, 256 * 1024)).unwrap();
    let (cache, go, log) = (
        tmp.path().join("cache"),
        tmp.path().join("go"),
        tmp.path().join("log"),
    );
    let children: Vec<_> = (0..16)
        .map(|_| {
            child("ready", &archive, &cache, &go, &log)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, "").unwrap();
    let mut roots = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("CHILD-OK ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("child ran: {stdout}"));
        roots.insert(line.to_owned());
    }
    assert_eq!(roots.len(), 1, "all used one directory: {roots:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.lines().count(), 1, "exactly one extraction:\n{log}");
    assert!(list(&cache)
        .iter()
        .all(|p| !p.starts_with(".tmp") && !p.starts_with(".trash")));
}

#[test]
fn a_killed_extraction_leaves_nothing_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bundle.tar.zst");
    std::fs::write(&archive, big("killed", 200, 1024 * 1024)).unwrap();
    let (cache, signal, log) = (
        tmp.path().join("cache"),
        tmp.path().join("halfway"),
        tmp.path().join("log"),
    );
    let mut c = child("pause-halfway", &archive, &cache, &signal, &log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !signal.exists() {
        assert!(Instant::now() < deadline, "the child never got halfway");
        assert!(c.try_wait().unwrap().is_none(), "the child exited early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = list(&cache);
    assert!(
        before.iter().any(|p| p.starts_with(".tmp-killed-")),
        "mid-extraction: {before:?}"
    );
    assert!(
        before.iter().filter(|p| p.ends_with(".bin")).count() >= 90,
        "{}",
        before.len()
    );
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();

    let bundle = Bundle::from_file(&archive).unwrap().cache_dir(&cache);
    let started = Instant::now();
    let env = bundle.ready().unwrap();
    eprintln!("200 MB first run after a kill: {:?}", started.elapsed());
    assert_eq!(
        std::fs::read_dir(env.prefix().join("data"))
            .unwrap()
            .count(),
        200
    );
    let after = list(&cache);
    assert!(
        after
            .iter()
            .all(|p| !p.starts_with(".tmp") && !p.starts_with(".trash")),
        "{after:?}"
    );
}

// --- a real build with the archive embedded ------------------------------------------------

/// Builds a small program against this crate with `PYBUNDLE_ARCHIVE` set (what `cargo
/// pybundle build` does) and runs it: the `.incbin` payload must come back byte-exact
/// through `Bundle::embedded()`. Then the same program built without an archive must fail
/// with the "use cargo pybundle build" message, not a panic.
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
    let exe = work.join("target/debug/embed-app");
    let run_build = |archive: Option<&Path>| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--quiet", "--manifest-path"])
            .arg(work.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", work.join("target"))
            .env_remove("PYBUNDLE_ARCHIVE");
        if let Some(a) = archive {
            cmd.env("PYBUNDLE_ARCHIVE", a);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run_build(Some(&archive_path));
    let out = Command::new(&exe)
        .env("PYBUNDLE_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
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
    // The payload sits in the binary once, findable by `cargo pybundle inspect`.
    let bytes = std::fs::read(&exe).unwrap();
    assert_eq!(
        pybundle_runtime::find_in_executable(&bytes),
        Some(&archive[..])
    );

    run_build(None);
    let out = Command::new(&exe).output().unwrap();
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
    let pkg = std::fs::read_dir(&linux)
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
    let tmp = tempfile::tempdir().unwrap();
    let unpacked = tmp.path().join("pkg");
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
        serde_json::from_slice(&std::fs::read(unpacked.join("info/paths.json")).unwrap()).unwrap();
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
    assert!(relocations
        .iter()
        .any(|r| r.mode == FileMode::Binary && r.path == "env/bin/python3.11"));
    let placeholder = relocations[0].placeholder.clone();

    let mut files = Vec::new();
    collect(&unpacked, &unpacked, &mut files);
    let spec = |relocations: Vec<Relocation>| Spec {
        name: "realpy".into(),
        entries: files
            .iter()
            .map(|(rel, kind)| match kind {
                Kind::Dir => E::Dir(format!("env/{rel}/")),
                Kind::Link(t) => E::Symlink(format!("env/{rel}"), t.clone()),
                Kind::File(mode) => E::File(
                    format!("env/{rel}"),
                    std::fs::read(unpacked.join(rel)).unwrap(),
                    *mode,
                ),
            })
            .collect(),
        relocations,
        id: None,
    };

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
