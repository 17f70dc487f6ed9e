//! The archive `cargo pybundle build` appends to the application's executable.
//!
//! `cargo pybundle build` runs a plain `cargo build` and then writes a bundled copy of each
//! executable: the program's bytes, the archive, and a 24-byte trailer ([`EMBED_MAGIC`], then
//! the archive's length as a little-endian `u64`). The compiled program is the same with and
//! without a bundle, so alternating `cargo build` and `cargo pybundle build` never recompiles
//! anything, and no stale archive can hide in an incremental build's objects.
//!
//! At run time the executable (`/proc/self/exe` on Linux) is opened and its last 24 bytes read;
//! the archive is then mapped read-only from the file, never copied, and the mapping lives as
//! long as the process.
//!
//! [`EMBED_MAGIC`]: crate::format::EMBED_MAGIC

use crate::format::EMBED_MAGIC;

/// Length of the trailer after the archive: the magic and a `u64` length.
pub const TRAILER_LEN: usize = EMBED_MAGIC.len() + 8;

/// The trailer that follows an appended archive of `len` bytes.
pub fn trailer(len: u64) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..EMBED_MAGIC.len()].copy_from_slice(&EMBED_MAGIC);
    out[EMBED_MAGIC.len()..].copy_from_slice(&len.to_le_bytes());
    out
}

/// Where the archive lies in a file of `file_len` bytes ending with `tail` (its last
/// [`TRAILER_LEN`] bytes): `(offset, length)`, or `None` without a trailer or when the length
/// does not fit.
fn locate(tail: &[u8], file_len: u64) -> Option<(u64, u64)> {
    let rest = tail.strip_prefix(&EMBED_MAGIC[..])?;
    let len = u64::from_le_bytes(rest.try_into().ok()?);
    let offset = file_len.checked_sub(TRAILER_LEN as u64)?.checked_sub(len)?;
    Some((offset, len))
}

/// The archive appended to the bytes of an executable (for `cargo pybundle inspect` and
/// [`crate::Bundle::from_file`]), or `None` when there is none.
pub fn find_in_executable(bytes: &[u8]) -> Option<&[u8]> {
    let start = bytes.len().checked_sub(TRAILER_LEN)?;
    let (offset, len) = locate(&bytes[start..], bytes.len() as u64)?;
    let offset = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(offset..offset + len)
}

/// The archive appended to this program, mapped once per process; `None` when the program
/// has none (a plain `cargo build`) or cannot read itself.
pub(crate) fn embedded_archive() -> Option<&'static [u8]> {
    static MAPPED: std::sync::OnceLock<Option<&'static [u8]>> = std::sync::OnceLock::new();
    *MAPPED.get_or_init(|| match map_own_archive() {
        Ok(found) => found,
        Err(err) => {
            tracing::debug!("this program's appended bundle cannot be read: {err}");
            None
        }
    })
}

#[cfg(all(feature = "embed", unix))]
fn map_own_archive() -> std::io::Result<Option<&'static [u8]>> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::FileExt as _;

    // `/proc/self/exe` is the file this process runs, even if it was renamed since.
    let exe = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let file = std::fs::File::open(exe)?;
    let file_len = file.metadata()?.len();
    let Some(tail_at) = file_len.checked_sub(TRAILER_LEN as u64) else {
        return Ok(None);
    };
    let mut tail = [0u8; TRAILER_LEN];
    file.read_exact_at(&mut tail, tail_at)?;
    let Some((offset, len)) = locate(&tail, file_len) else {
        return Ok(None);
    };
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    let aligned = offset & !(page - 1);
    let delta = usize::try_from(offset - aligned).map_err(std::io::Error::other)?;
    let map_len = len + delta;
    let map_offset = libc::off_t::try_from(aligned).map_err(std::io::Error::other)?;
    // SAFETY: a fresh private read-only mapping of a file we opened; its arguments are checked
    // above (the range lies inside the file). It is never unmapped, so the slice built from it
    // below stays valid for the process's life; the file's pages cannot change under it
    // (Linux refuses writes to a running executable with ETXTBSY).
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            map_offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `ptr` maps `map_len` readable bytes (see above); the archive starts `delta` in.
    let archive = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(delta), len) };
    Ok(Some(archive))
}

#[cfg(all(feature = "embed", not(unix)))]
fn map_own_archive() -> std::io::Result<Option<&'static [u8]>> {
    let bytes = std::fs::read(std::env::current_exe()?)?;
    Ok(find_in_executable(&bytes).map(|a| &*Box::leak(a.to_vec().into_boxed_slice())))
}

#[cfg(not(feature = "embed"))]
fn map_own_archive() -> std::io::Result<Option<&'static [u8]>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appended_archive_is_found_by_its_trailer() {
        let mut exe = b"\x7fELF program bytes".to_vec();
        let archive = b"\x28\xb5\x2f\xfd archive";
        exe.extend_from_slice(archive);
        exe.extend_from_slice(&trailer(archive.len() as u64));
        assert_eq!(find_in_executable(&exe), Some(&archive[..]));
        // No trailer, a trailer claiming more than the file holds, a file shorter than one.
        assert_eq!(find_in_executable(b"\x7fELF plain program"), None);
        let mut lying = b"short".to_vec();
        lying.extend_from_slice(&trailer(1 << 40));
        assert_eq!(find_in_executable(&lying), None);
        assert_eq!(find_in_executable(&EMBED_MAGIC), None);
    }

    #[test]
    fn a_test_binary_has_no_bundle() {
        assert_eq!(embedded_archive(), None);
    }
}
