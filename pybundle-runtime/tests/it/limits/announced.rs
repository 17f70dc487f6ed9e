//! README: "GNU long-name records larger than a path and PAX records over 64 KiB refused
//! before they are read". A record is refused by what its header announces: a gigabyte
//! announced is enough, with nothing of it written. (What refusing a real 1 GB name costs, and
//! the size of its archive, are measured in the hostile table: `costs_nothing`.)

use std::io::Write;
use std::path::Path;

use pybundle_runtime::{Bundle, Error};
use tar::EntryType as T;

use super::writer::{manifest, sample_body, then, write_archive};
use super::GB;
use crate::bundle::header;

/// A record's header alone, claiming `size` bytes that never follow: what comes after it is
/// the rest of the archive, far less than that, and then the stream ends.
fn announce(w: &mut dyn Write, kind: T, size: u64) {
    w.write_all(&header(b"././@LongLink", kind, size, 0o644, b""))
        .unwrap();
}

/// Each kind of extension record announcing a gigabyte, in frame 1 and in the body: each is
/// refused with the limit it broke, named by its header's size.
#[test]
fn records_announcing_a_gigabyte_are_refused_by_their_header() {
    let scratch = tempfile::tempdir().unwrap();
    let (sample_tar, m) = sample_body("evil");
    let write = |name: &str, frame1: &dyn Fn(&mut dyn Write), body: &dyn Fn(&mut dyn Write)| {
        let path = scratch.path().join(name);
        let (n, size) = (m.file_count + 1, m.unpacked_size);
        write_archive(
            &path,
            manifest("evil", size, n, m.relocations.clone()),
            None,
            frame1,
            then(&sample_tar, body),
        );
        std::fs::read(path).unwrap()
    };
    let refused = |what: &str, result: Result<String, Error>, says: &str| match result {
        Err(e @ Error::ArchiveLimit { .. }) => {
            assert!(e.to_string().contains(says), "{what}: {e}");
        }
        Err(e) => panic!("{what}: not refused by its size: {e}"),
        Ok(_) => panic!("{what}: accepted"),
    };
    let ready = |bytes: Vec<u8>, cache: &Path| {
        Bundle::from_bytes(bytes)
            .and_then(|b| b.cache_dir(cache).ready())
            .map(|env| env.root().display().to_string())
    };

    let in_frame1 = write(
        "frame1.tar.zst",
        &|w| announce(w, T::GNULongName, GB),
        &|_| {},
    );
    refused(
        "a long name in the manifest frame",
        pybundle_runtime::manifest_of(&in_frame1).map(|m| m.name),
        "long name is 1073741824 bytes long (limit 4097)",
    );
    let cases = [
        (
            T::GNULongName,
            "long name is 1073741824 bytes long (limit 4097)",
        ),
        (
            T::GNULongLink,
            "long name is 1073741824 bytes long (limit 4097)",
        ),
        (
            T::XHeader,
            "PAX record is 1073741824 bytes long (limit 65536)",
        ),
        (
            T::XGlobalHeader,
            "PAX global record is 1073741824 bytes long",
        ),
    ];
    for (i, (kind, says)) in cases.into_iter().enumerate() {
        let bytes = write(&format!("body-{i}.tar.zst"), &|_| {}, &|w| {
            announce(w, kind, GB)
        });
        let cache = scratch.path().join(format!("cache-{i}"));
        refused(&format!("{kind:?} in the body"), ready(bytes, &cache), says);
    }
}
