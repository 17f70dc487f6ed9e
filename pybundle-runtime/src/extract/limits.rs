//! The limits that bound what an archive can cost to read, extract or verify. Each is far
//! above what a real conda environment needs (the numbers beside them say how far), and each
//! is checked while streaming, before the memory or disk it guards is spent; going past one
//! is [`Error::ArchiveLimit`](crate::Error::ArchiveLimit), naming the limit and the entry.

/// Bytes of an entry's path or link target (Linux's `PATH_MAX`; conda paths stay under 300).
pub(crate) const MAX_PATH: usize = 4096;

/// Components of an entry's path (the deepest conda and `node_modules` trees stay under 40).
pub(crate) const MAX_DEPTH: usize = 128;

/// Bytes of one component of a path (`NAME_MAX` on Linux and macOS).
pub(crate) const MAX_COMPONENT: usize = 255;

/// Bytes of one PAX record (cargo-pybundle writes none; GNU tar's are under 1 KiB).
pub(crate) const MAX_EXTENSION: u64 = 64 << 10;

/// Entries after the manifest (a CUDA + PyTorch environment has about 60,000). The
/// extraction keeps a set of the paths it wrote, so this also bounds its memory.
pub(crate) const MAX_ENTRIES: u64 = 1_000_000;

/// Bytes of the manifest (a big environment's relocation table is a few MB).
pub(crate) const MAX_MANIFEST: u64 = 32 << 20;

/// Bytes of all activation variables together, names and values (a few KB in practice).
pub(crate) const MAX_ACTIVATION: usize = 1 << 20;

/// Bytes of a placeholder (conda pads them to 255).
pub(crate) const MAX_PLACEHOLDER: usize = 4096;

/// Largest zstd window the decoder accepts, as a power of two: 128 MiB, the most any
/// compression level cargo-pybundle offers uses (level 22). A larger window is memory the
/// decoder would allocate on every extraction and every verified start.
pub(crate) const MAX_WINDOW_LOG: u32 = 27;

/// Bytes of a text file relocation reads into memory (conda's text files with a prefix are
/// scripts and configuration, kilobytes to a few MB). Binary files are relocated in windows
/// and have no such limit.
pub(crate) const MAX_TEXT_RELOCATION: u64 = 64 << 20;

/// A relocated text file may grow to at most twice its size plus this many bytes (a new
/// prefix longer than the placeholder grows each occurrence; a one-character placeholder
/// could otherwise multiply a file by the length of the prefix).
pub(crate) const TEXT_GROWTH_SLACK: u64 = 1 << 20;

/// Largest size a relocated text file of `len` bytes may reach.
pub(crate) fn max_relocated_text(len: u64) -> u64 {
    len.saturating_mul(2).saturating_add(TEXT_GROWTH_SLACK)
}
