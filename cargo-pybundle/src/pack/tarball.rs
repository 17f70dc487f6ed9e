//! The archive bytes: deterministic tar headers, two zstd frames, and the bundle id.
//!
//! Frame 2 (everything after the manifest, end blocks included) is written first, to a temp
//! file, through sha256: its hash is the bundle id that the manifest in frame 1 must carry.
//! The final file is frame 1 followed by frame 2, written to a temp file beside the
//! destination and renamed, so a half-written archive never sits at the destination.

use anyhow::{Context as _, Result};
use pybundle_runtime::format::{ARCHIVE_MTIME, MANIFEST_PATH};
use sha2::{Digest as _, Sha256};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use tar::{EntryType, Header};

/// A header with every field that could vary between machines fixed.
pub fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(ARCHIVE_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    // new_gnu leaves user and group names empty; nothing else to clear.
    h
}

/// Counts and hashes the uncompressed tar bytes on their way to the compressor.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The tar stream of frame 2 under construction.
pub type Body<'f> = tar::Builder<Hashing<zstd::Encoder<'static, BufWriter<&'f mut std::fs::File>>>>;

/// Worker threads for zstd. zstd's output is the same for any worker count ≥ 1 (it differs
/// only from the single-threaded mode, 0), so archives stay identical across machines.
fn workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// Starts frame 2 into `file`.
pub fn body(file: &mut std::fs::File, level: i32) -> Result<Body<'_>> {
    body_with_workers(file, level, workers())
}

fn body_with_workers(file: &mut std::fs::File, level: i32, workers: u32) -> Result<Body<'_>> {
    let mut encoder = zstd::Encoder::new(BufWriter::new(file), level).context("starting zstd")?;
    encoder
        .multithread(workers.max(1))
        .context("starting zstd worker threads")?;
    // A corrupted archive then fails extraction instead of yielding wrong files.
    encoder.include_checksum(true).context("configuring zstd")?;
    let mut builder = tar::Builder::new(Hashing::new(encoder));
    builder.follow_symlinks(false);
    Ok(builder)
}

/// Ends frame 2 (tar end blocks included); returns the id (hex sha256 of its tar bytes).
pub fn finish_body(builder: Body<'_>) -> Result<String> {
    let hashing = builder.into_inner().context("finishing the tar stream")?;
    let id = hex::encode(hashing.hasher.finalize());
    let mut out = hashing.inner.finish().context("finishing zstd")?;
    out.flush().context("writing the archive body")?;
    Ok(id)
}

/// Frame 1: the manifest as one tar entry (no end blocks: frame 2 continues the stream).
pub fn manifest_frame(json: &[u8], level: i32) -> Result<Vec<u8>> {
    let mut h = header(EntryType::Regular, 0o644, json.len() as u64);
    h.set_path(MANIFEST_PATH).context("manifest path")?;
    h.set_cksum();
    let mut tar = Vec::with_capacity(512 + json.len() + 512);
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(json);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    zstd::bulk::compress(&tar, level).context("compressing the manifest")
}

/// Writes frame 1 + frame 2 to `dest` via a temp file in its directory, then renames.
pub fn assemble(frame1: &[u8], body: &mut std::fs::File, dest: &Path) -> Result<u64> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut out = readable_temp(".pybundle-archive-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    out.write_all(frame1)?;
    io::Seek::seek(body, io::SeekFrom::Start(0))?;
    let copied = io::copy(&mut io::BufReader::new(Read::by_ref(body)), &mut out)?;
    out.as_file().sync_all()?;
    let size = frame1.len() as u64 + copied;
    // Same bytes as the archive already there: keep that file (and its mtime), so the
    // runtime crate, which rebuilds when the archive changes, is not rebuilt for nothing.
    if same_content(out.path(), dest, size)? {
        return Ok(size);
    }
    out.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(size)
}

fn same_content(a: &Path, b: &Path, size: u64) -> Result<bool> {
    match fs_err::metadata(b) {
        Ok(meta) if meta.is_file() && meta.len() == size => {}
        _ => return Ok(false),
    }
    let (mut a, mut b) = (
        io::BufReader::new(fs_err::File::open(a)?),
        io::BufReader::new(fs_err::File::open(b)?),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// A temp file builder whose file ends up readable by all (tempfile's default is 0600; the
/// archive and its key are build products like any other).
pub fn readable_temp(prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut file = tempfile::tempfile().unwrap();
            let mut b = body_with_workers(&mut file, 1, workers).unwrap();
            let mut h = header(EntryType::Regular, 0o644, data.len() as u64);
            b.append_data(&mut h, "env/big", &data[..]).unwrap();
            finish_body(b).unwrap();
            io::Seek::seek(&mut file, io::SeekFrom::Start(0)).unwrap();
            let mut out = Vec::new();
            file.read_to_end(&mut out).unwrap();
            out
        };
        assert_eq!(pack(1), pack(3));
    }

    #[test]
    fn frames_concatenate_into_one_tar_stream_and_id_is_body_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut body_file = tempfile::tempfile().unwrap();
        let mut b = body(&mut body_file, 3).unwrap();
        let mut h = header(EntryType::Regular, 0o644, 5);
        b.append_data(&mut h, "env/a.txt", &b"hello"[..]).unwrap();
        let id = finish_body(b).unwrap();
        let frame1 = manifest_frame(br#"{"x":1}"#, 3).unwrap();
        let dest = dir.path().join("a.tar.zst");
        assemble(&frame1, &mut body_file, &dest).unwrap();

        let bytes = std::fs::read(&dest).unwrap();
        let tar_bytes = zstd::decode_all(&bytes[..]).unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, [MANIFEST_PATH, "env/a.txt"]);
        // The id is the hash of everything after the manifest entry (512 header + 512 data).
        assert_eq!(id, hex::encode(Sha256::digest(&tar_bytes[1024..])));
        // Frame 1 decodes alone to exactly the manifest entry.
        let first = zstd::stream::Decoder::new(&frame1[..])
            .unwrap()
            .single_frame();
        let mut out = Vec::new();
        io::copy(&mut io::BufReader::new(first), &mut out).unwrap();
        assert_eq!(out.len(), 1024);
    }
}
