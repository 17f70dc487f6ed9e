//! Hostile archives written streaming, in the real format (frame 1 the manifest, frame 2
//! the body, through `format::write::Body`): a gigabyte of long name or of zeros costs the
//! writer no memory.

use std::io::{self, Read, Write};
use std::path::Path;

use pybundle_runtime::format::write::Body;
use pybundle_runtime::format::{Manifest, PythonInfo, Relocation};
use tar::EntryType as T;

use crate::bundle::{build, header, placeholder, sample};

/// A tar record: header, `size` bytes from `data`, padding.
pub fn record(
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
pub fn long_name(w: &mut dyn Write, len: u64, pattern: &[u8]) {
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
pub struct Repeat(pub Vec<u8>, pub usize);

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
pub fn then<'a>(
    tar: &'a [u8],
    extra: impl FnOnce(&mut dyn Write) + 'a,
) -> impl FnOnce(&mut dyn Write) + 'a {
    move |w: &mut dyn Write| {
        w.write_all(tar).unwrap();
        extra(w);
    }
}

pub fn manifest(
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

/// Writes an archive to `out`: the body streamed through the format's writer (zstd level 1),
/// then the manifest (its id the body's hash unless `id` is given) in front. Frame 1 is made
/// here, not by `format::write::manifest_frame`, because `frame1_prefix` writes records before
/// the manifest entry: archives the format's writer never makes, which the reader must refuse.
pub fn write_archive(
    out: &Path,
    mut m: Manifest,
    id: Option<String>,
    frame1_prefix: impl FnOnce(&mut dyn Write),
    body: impl FnOnce(&mut dyn Write),
) {
    let body_path = out.with_extension("body");
    let file = std::fs::File::create(&body_path).unwrap();
    let mut w = Body::with_workers(file, 1, 1).unwrap();
    body(w.raw_stream());
    let (_, digest) = w.finish().unwrap();
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
pub fn sample_body(name: &str) -> (Vec<u8>, Manifest) {
    let archive = build(&sample(name, "x"));
    let m = pybundle_runtime::manifest_of(&archive).unwrap();
    let frame1 = zstd::zstd_safe::find_frame_compressed_size(&archive).unwrap();
    let mut tar = zstd::decode_all(&archive[frame1..]).unwrap();
    tar.truncate(tar.len() - 1024); // the end blocks; write_archive adds its own
    (tar, m)
}
