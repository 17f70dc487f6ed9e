//! Seeds for the targets of the archive limits: the `archive` target (a whole first run) and
//! `text_relocation`, from a real archive, plus the hostile shapes issue 20 reproduced, so
//! the fuzzer starts at each limit: long-name and PAX records claiming more than they carry,
//! paths too deep or too long, more entries than declared, a placeholder of `/`.

use std::io::Read as _;
use std::path::Path;

use pybundle_runtime::format::{FileMode, Manifest};

use super::{write, NEW_PREFIX};

/// One tar record: a GNU header, the data, padding to 512 bytes.
fn record(out: &mut Vec<u8>, path: &[u8], kind: tar::EntryType, size: u64, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let name = &mut h.as_gnu_mut().expect("a GNU header").name;
        let n = path.len().min(name.len());
        name[..n].copy_from_slice(&path[..n]);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// An `archive` target input: counts, one relocation, then the tar body.
fn archive_input(
    count: u16,
    size: u32,
    reloc: Option<(FileMode, &[u8], &[u8])>,
    body: &[u8],
) -> Vec<u8> {
    let mut out = count.to_le_bytes().to_vec();
    out.extend_from_slice(&size.to_le_bytes());
    match reloc {
        None => out.extend_from_slice(&[0, 0, 0]),
        Some((mode, placeholder, path)) => {
            out.push(if mode == FileMode::Text { 1 } else { 2 });
            out.push(placeholder.len() as u8);
            out.extend_from_slice(placeholder);
            out.push(path.len() as u8);
            out.extend_from_slice(path);
        }
    }
    out.extend_from_slice(body);
    out
}

/// Writes the seeds; returns how many.
pub fn write_seeds(
    archive: &[u8],
    manifest: &Manifest,
    corpus: &Path,
) -> Result<usize, Box<dyn std::error::Error>> {
    let dir = corpus.join("archive");
    let text = corpus.join("text_relocation");
    let raw_manifest = corpus.join("manifest");
    let mut count = 0;

    // A small real body: the archive's first entries of at most 4 KiB (directories,
    // symlinks, small files), with a text file it relocates, as a complete tar stream.
    let frame1 = zstd::zstd_safe::find_frame_compressed_size(archive)
        .map_err(|code| format!("no zstd frame at the start of the archive ({code})"))?;
    let first = zstd::decode_all(&archive[..frame1])?;
    write(
        &raw_manifest,
        "raw-first-frame",
        &[&[2u8][..], &first].concat(),
    )?;
    let mut long = Vec::new();
    record(
        &mut long,
        b"././@LongLink",
        tar::EntryType::GNULongName,
        1 << 30,
        b"a",
    );
    long.extend_from_slice(&first);
    write(
        &raw_manifest,
        "raw-long-name-claiming-1-gb",
        &[&[2u8][..], &long].concat(),
    )?;
    count += 2;

    let texts: Vec<_> = manifest
        .relocations
        .iter()
        .filter(|r| r.mode == FileMode::Text && r.placeholder.len() <= 255)
        .collect();
    let mut body = Vec::new();
    let (mut entries, mut bytes) = (0u16, 0u32);
    let mut text_reloc = None;
    let mut tar = tar::Archive::new(zstd::stream::read::Decoder::new(&archive[frame1..])?);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes().into_owned();
        let size = entry.size();
        let relocated = texts.iter().find(|r| r.path.as_bytes() == path);
        if size > 4096 || path.len() > 100 || (entries > 40 && relocated.is_none()) {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        if let Some(r) = relocated {
            if text_reloc.is_none() {
                text_reloc = Some((r.placeholder.clone(), r.path.clone()));
            }
            if let Some(at) = memchr::memmem::find(&data, r.placeholder.as_bytes()) {
                let window = &data[at.saturating_sub(512)..(at + 1536).min(data.len())];
                let seed = [
                    &[r.placeholder.len() as u8, (NEW_PREFIX.len() / 4) as u8][..],
                    r.placeholder.as_bytes(),
                    &NEW_PREFIX.as_bytes()[..NEW_PREFIX.len() / 4 * 4],
                    window,
                ]
                .concat();
                write(&text, &format!("real-{count}"), &seed)?;
                count += 1;
            }
        }
        let kind = entry.header().entry_type();
        let mut h = entry.header().clone();
        h.set_cksum();
        body.extend_from_slice(h.as_bytes());
        body.extend_from_slice(&data);
        body.resize(body.len().next_multiple_of(512), 0);
        entries += 1;
        if kind == tar::EntryType::Regular {
            bytes += data.len() as u32;
        }
        if entries > 60 {
            break;
        }
    }
    let real = body.clone();
    let mut finished = real.clone();
    finished.extend_from_slice(&[0; 1024]);
    let reloc = text_reloc
        .as_ref()
        .map(|(ph, p)| (FileMode::Text, ph.as_bytes(), p.as_bytes()));
    write(
        &dir,
        "real",
        &archive_input(entries, bytes, reloc, &finished),
    )?;
    count += 1;

    // The hostile shapes, each after the real entries.
    let hostile: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "long-name-claiming-1-gb",
            {
                let mut b = Vec::new();
                record(
                    &mut b,
                    b"././@LongLink",
                    tar::EntryType::GNULongName,
                    1 << 30,
                    b"a/a/a/",
                );
                b
            },
            1,
        ),
        (
            "pax-path-too-long",
            {
                let path = "a/".repeat(3000);
                let rec = format!("{} path={path}\n", path.len() + 12);
                let mut b = Vec::new();
                record(
                    &mut b,
                    b"pax",
                    tar::EntryType::XHeader,
                    rec.len() as u64,
                    rec.as_bytes(),
                );
                record(&mut b, b"x", tar::EntryType::Regular, 0, b"");
                b
            },
            1,
        ),
        (
            "deep-path",
            {
                let path = format!("env/{}", "d/".repeat(140));
                let mut b = Vec::new();
                record(
                    &mut b,
                    b"././@LongLink",
                    tar::EntryType::GNULongName,
                    path.len() as u64 + 1,
                    &[path.as_bytes(), b"\0"].concat(),
                );
                record(&mut b, b"x", tar::EntryType::Directory, 0, b"");
                b
            },
            1,
        ),
        (
            "more-entries-than-declared",
            {
                let mut b = Vec::new();
                for i in 0..64 {
                    record(
                        &mut b,
                        format!("env/f/{i}").as_bytes(),
                        tar::EntryType::Regular,
                        0,
                        b"",
                    );
                }
                b
            },
            0,
        ),
        (
            "entry-larger-than-declared",
            {
                let mut b = Vec::new();
                record(
                    &mut b,
                    b"env/big",
                    tar::EntryType::Regular,
                    1 << 32,
                    &[0; 512],
                );
                b
            },
            1,
        ),
    ];
    for (name, extra, more) in hostile {
        let body = [&real[..], &extra, &[0; 1024]].concat();
        write(
            &dir,
            name,
            &archive_input(entries + more, bytes, reloc, &body),
        )?;
        count += 1;
    }
    // A placeholder of `/` over a file of slashes.
    let mut b = real.clone();
    record(
        &mut b,
        b"env/slashes",
        tar::EntryType::Regular,
        2048,
        &[b'/'; 2048],
    );
    b.extend_from_slice(&[0; 1024]);
    let slash = Some((FileMode::Text, &b"/"[..], &b"env/slashes"[..]));
    write(
        &dir,
        "placeholder-slash",
        &archive_input(entries + 1, bytes + 2048, slash, &b),
    )?;
    let prefix: Vec<u8> = NEW_PREFIX
        .bytes()
        .chain(std::iter::repeat(b'x'))
        .take(64)
        .collect();
    write(
        &text,
        "placeholder-slash",
        &[&[1u8, 16][..], b"/", &prefix, &[b'/'; 2048]].concat(),
    )?;
    count += 2;
    Ok(count)
}
