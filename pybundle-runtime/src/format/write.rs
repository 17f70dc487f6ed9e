//! Writing archives (feature `write`; `cargo-pybundle` turns it on, applications do not need
//! it). The one writer of the format: the packer, this crate's tests and its `first_run`
//! example all write through it.
//!
//! An archive is two zstd frames that decompress into one tar stream:
//!
//! 1. [`manifest_frame`]: the [`MANIFEST_PATH`] entry alone, no end
//!    blocks, so a reader gets the manifest by decoding one small frame;
//! 2. the body, written by [`Body`]: every other entry and the two end blocks. Its
//!    uncompressed bytes are hashed on their way to the compressor; that sha256 is the bundle
//!    id the manifest must carry, so the body is written first and the manifest last.
//!
//! The archive is frame 1 followed by frame 2. Headers fix every field that could differ
//! between machines ([`header`]), and zstd's output does not depend on its worker count, so
//! the same inputs give the same bytes anywhere (pinned by the golden test below).

use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use super::{ARCHIVE_MTIME, MANIFEST_PATH};

/// A header with every field that could vary between machines fixed: GNU format, the
/// [`ARCHIVE_MTIME`], owner 0:0, no user or group names.
pub fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(ARCHIVE_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Frame 1: the manifest (the JSON of a [`Manifest`](super::Manifest)) as one tar entry,
/// without end blocks (frame 2 continues the stream).
pub fn manifest_frame(json: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut h = header(EntryType::Regular, 0o644, json.len() as u64);
    h.set_path(MANIFEST_PATH)?;
    h.set_cksum();
    let mut tar = Vec::with_capacity(512 + json.len() + 512);
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(json);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    zstd::bulk::compress(&tar, level)
}

/// Counts and hashes the uncompressed tar bytes on their way to the compressor.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Frame 2 under construction: entries go in through the methods, [`Body::finish`] ends the
/// stream and returns the bundle id.
pub struct Body<W: Write> {
    tar: tar::Builder<Hashing<zstd::Encoder<'static, W>>>,
}

impl<W: Write> Body<W> {
    /// Starts frame 2 into `out` at zstd `level`, with one compression worker per core.
    pub fn new(out: W, level: i32) -> io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_workers(out, level, u32::try_from(cores).unwrap_or(1))
    }

    /// Starts frame 2 with `workers` compression threads. zstd's output is the same for any
    /// count ≥ 1 (it differs only from single-threaded mode, which is never used), so archives
    /// do not depend on the machine that packed them.
    pub fn with_workers(out: W, level: i32, workers: u32) -> io::Result<Self> {
        let mut encoder = zstd::Encoder::new(out, level)?;
        encoder.multithread(workers.max(1))?;
        // A corrupted archive then fails extraction instead of yielding wrong files.
        encoder.include_checksum(true)?;
        let mut tar = tar::Builder::new(Hashing {
            inner: encoder,
            hasher: Sha256::new(),
        });
        tar.follow_symlinks(false);
        Ok(Body { tar })
    }

    /// A regular file (`kind` [`EntryType::Regular`]) or a directory
    /// ([`EntryType::Directory`], empty `data`) at `path` (`/`-separated, relative; long names
    /// get GNU long-name records).
    pub fn append(
        &mut self,
        kind: EntryType,
        path: &str,
        mode: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let mut h = header(kind, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data)
    }

    /// A symbolic link at `path` pointing at `target` (kept as written, relative or absolute).
    pub fn symlink(&mut self, path: &str, mode: u32, target: &Path) -> io::Result<()> {
        let mut h = header(EntryType::Symlink, mode, 0);
        self.tar.append_link(&mut h, path, target)
    }

    /// An entry written exactly as given, header bytes unchecked: for tests that need an
    /// archive a correct packer never writes (hostile names, special files, GNU records made
    /// by hand). The header's checksum must already be set.
    pub fn append_raw(&mut self, header: &Header, data: &[u8]) -> io::Result<()> {
        self.tar.append(header, data)
    }

    /// The body's tar stream itself, for tests that write records byte by byte (a name a
    /// gigabyte long, records a packer never writes): what goes in is hashed and compressed
    /// like any entry, and [`Body::finish`] still adds the end blocks.
    pub fn raw_stream(&mut self) -> &mut impl Write {
        self.tar.get_mut()
    }

    /// Ends the tar stream (end blocks included) and the zstd frame; returns the output and
    /// the bundle id, the lower-case hex sha256 of the body's tar bytes.
    pub fn finish(self) -> io::Result<(W, String)> {
        let hashing = self.tar.into_inner()?;
        let id = crate::extract::hex_lower(&hashing.hasher.finalize());
        let mut out = hashing.inner.finish()?;
        out.flush()?;
        Ok((out, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Manifest, PythonInfo};

    /// An archive from fixed inputs, the way the packer builds one: body first, then the
    /// manifest naming its id, then frame 1 + frame 2.
    fn golden() -> (Vec<u8>, String) {
        let mut body = Body::with_workers(Vec::new(), 3, 1).unwrap();
        body.append(EntryType::Directory, "env", 0o755, b"")
            .unwrap();
        body.append(EntryType::Directory, "env/bin", 0o755, b"")
            .unwrap();
        body.append(EntryType::Regular, "env/bin/python3", 0o755, b"#!/bin/sh\n")
            .unwrap();
        body.symlink("env/bin/python", 0o777, Path::new("python3"))
            .unwrap();
        let long = format!("env/lib/{}/x.py", "d".repeat(120));
        body.append(EntryType::Regular, &long, 0o644, b"print('x')\n")
            .unwrap();
        body.append(
            EntryType::Regular,
            "scripts/hello.py",
            0o644,
            b"import pybundle\n",
        )
        .unwrap();
        let (frame2, id) = body.finish().unwrap();
        let manifest = Manifest {
            format_version: crate::format::FORMAT_VERSION,
            id: id.clone(),
            name: "golden".into(),
            creator: "golden test".into(),
            platform: "linux-64".into(),
            python: PythonInfo {
                path: "env/bin/python3".into(),
                version: "3.11.0".into(),
            },
            build_prefix: "/build/env".into(),
            relocations: Vec::new(),
            activation: [("PATH".to_owned(), "${PREFIX}/bin:${PATH}".to_owned())].into(),
            scripts_dir: crate::format::SCRIPTS_DIR.into(),
            unpacked_size: 10 + 11 + 16,
            file_count: 6,
            packages: Vec::new(),
        };
        let json = serde_json::to_vec_pretty(&manifest).unwrap();
        let mut archive = manifest_frame(&json, 3).unwrap();
        archive.extend_from_slice(&frame2);
        (archive, id)
    }

    fn sha256(bytes: &[u8]) -> String {
        crate::extract::hex_lower(&Sha256::digest(bytes))
    }

    /// The format's bytes, pinned. A change here changes every bundle: if it is meant (a new
    /// header field, another layout), raise `FORMAT_VERSION` where readers must tell, and
    /// update the constants. The compressed hash also moves with the locked zstd library.
    #[test]
    fn an_archive_from_fixed_inputs_has_the_pinned_bytes() {
        let (archive, id) = golden();
        let tar = zstd::decode_all(&archive[..]).unwrap();
        assert_eq!(
            (
                sha256(&tar).as_str(),
                id.as_str(),
                sha256(&archive).as_str()
            ),
            (
                "19eb5f207a31ab8d205a89e46e37ee549afae558e9326a29575e1242fd601f4c",
                "73dc8bfff6db4f1277302a7ee7d9ec389570bc37dc6df8a088e39438ee3c5b09",
                "f7ae87b7cb805538ddfe2feffd07004d7cec49cccd8098dcd60855d61e5caa28",
            ),
            "the archive bytes changed (tar stream, bundle id, compressed file)"
        );
    }

    #[test]
    fn the_id_is_the_hash_of_everything_after_the_manifest_and_frame_one_stands_alone() {
        let (archive, id) = golden();
        let tar = zstd::decode_all(&archive[..]).unwrap();
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names[0], MANIFEST_PATH);
        assert_eq!(names.len(), 7, "{names:?}");
        let manifest = crate::manifest_of(&archive).unwrap();
        assert_eq!(manifest.id, id);
        // Frame 1 is the manifest entry alone: header + data padded to 512.
        let mut first = zstd::stream::Decoder::new(&archive[..])
            .unwrap()
            .single_frame();
        let mut frame1 = Vec::new();
        io::Read::read_to_end(&mut first, &mut frame1).unwrap();
        assert_eq!(frame1.len() % 512, 0);
        assert_eq!(id, sha256(&tar[frame1.len()..]));
    }

    #[test]
    fn output_does_not_depend_on_the_worker_count() {
        // 24 MB of compressible pseudo-random text: several zstd jobs at level 1.
        let mut x = 12345u64;
        let data: Vec<u8> = (0..24 << 20)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"abcdefgh \n"[(x >> 60) as usize % 10]
            })
            .collect();
        let pack = |workers| {
            let mut body = Body::with_workers(Vec::new(), 1, workers).unwrap();
            body.append(EntryType::Regular, "env/big", 0o644, &data)
                .unwrap();
            body.finish().unwrap()
        };
        assert_eq!(pack(1), pack(3));
    }
}
