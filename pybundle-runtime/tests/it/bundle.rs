//! First run of a bundle: archives written here with the format's writer
//! (`pybundle_runtime::format::write`; entries as raw records, so hostile names survive),
//! extracted and relocated by `Bundle::ready`, checked on disk.
//!
//! This module builds the archives; the tests live in its submodules.

mod cache_root;
mod damage;
mod first_run;
mod processes;
mod progress;
pub mod real;
mod storm;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pybundle_runtime::format::write::{self, Body};
use pybundle_runtime::format::{FileMode, Manifest, PythonInfo, Relocation};

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

pub fn header(path: &[u8], kind: tar::EntryType, size: u64, mode: u32, link: &[u8]) -> [u8; 512] {
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

/// Appends one entry as raw records; names and link targets over 100 bytes go in GNU
/// long-name records made here, so names a correct packer refuses still get written.
fn push(
    body: &mut Body<Vec<u8>>,
    path: &[u8],
    kind: tar::EntryType,
    mode: u32,
    link: &[u8],
    data: &[u8],
) {
    for (long, long_kind) in [
        (link, tar::EntryType::GNULongLink),
        (path, tar::EntryType::GNULongName),
    ] {
        if long.len() > 100 {
            let name = [long, b"\0"].concat();
            let h = header(b"././@LongLink", long_kind, name.len() as u64, 0o644, b"");
            raw(body, &h, &name);
        }
    }
    raw(
        body,
        &header(path, kind, data.len() as u64, mode, link),
        data,
    );
}

fn raw(body: &mut Body<Vec<u8>>, h: &[u8; 512], data: &[u8]) {
    let h = tar::Header::from_byte_slice(h);
    body.append_raw(h, data).expect("writing to memory");
}

/// Builds an archive with the format's writer: the body (frame 2, end blocks included) first,
/// then the manifest naming its id (or `spec.id`) as frame 1 in front.
pub fn build(spec: &Spec) -> Vec<u8> {
    use tar::EntryType as T;
    let mut body = Body::with_workers(Vec::new(), 3, 1).expect("zstd");
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
    let (frame2, id) = body.finish().expect("finishing the body");
    let manifest = Manifest {
        format_version: 1,
        id: spec.id.clone().unwrap_or(id),
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
    let mut out = write::manifest_frame(&json, 3).expect("zstd");
    out.extend(frame2);
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

pub fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}
