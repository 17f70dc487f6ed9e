//! Access to the archive embedded by the build script (see `build.rs`).

#[cfg(all(pybundle_embedded, pybundle_embed_asm))]
mod imp {
    include!(concat!(env!("OUT_DIR"), "/pybundle_embed.rs"));

    extern "C" {
        static pybundle_payload_start_v1: u8;
        static pybundle_payload_end_v1: u8;
    }

    pub(crate) fn payload() -> Option<&'static [u8]> {
        // SAFETY: both symbols are defined by the `global_asm!` block above, in one section,
        // start before end, and the bytes between them are immutable for the program's life.
        unsafe {
            let start = core::ptr::addr_of!(pybundle_payload_start_v1);
            let end = core::ptr::addr_of!(pybundle_payload_end_v1);
            let len = (end as usize).checked_sub(start as usize)?;
            Some(core::slice::from_raw_parts(start, len))
        }
    }
}

#[cfg(all(pybundle_embedded, not(pybundle_embed_asm)))]
mod imp {
    include!(concat!(env!("OUT_DIR"), "/pybundle_embed.rs"));

    pub(crate) fn payload() -> Option<&'static [u8]> {
        Some(&PYBUNDLE_PAYLOAD)
    }
}

#[cfg(not(pybundle_embedded))]
mod imp {
    pub(crate) fn payload() -> Option<&'static [u8]> {
        None
    }
}

/// The embedded archive (without the header), or `None` when built without a bundle.
pub(crate) fn embedded_archive() -> Option<&'static [u8]> {
    split_payload(imp::payload()?)
}

/// Checks the magic/length header in front of an embedded archive and returns the archive.
pub fn split_payload(payload: &[u8]) -> Option<&[u8]> {
    let magic = crate::format::EMBED_MAGIC;
    let rest = payload.strip_prefix(&magic[..])?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    rest.get(..len)
}

/// Finds an archive embedded in the bytes of a built executable (for `cargo pybundle inspect`).
///
/// Every occurrence of the magic is tried; the one followed by a length that fits and a zstd
/// frame header wins (the magic constant itself also appears in the program's data).
pub fn find_in_executable(bytes: &[u8]) -> Option<&[u8]> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    memchr::memmem::find_iter(bytes, &crate::format::EMBED_MAGIC)
        .filter_map(|at| split_payload(&bytes[at..]))
        .find(|archive| archive.starts_with(&ZSTD_MAGIC))
}
