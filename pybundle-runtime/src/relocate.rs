//! Rewrites the build-time prefix inside extracted files so the conda prefix works where it
//! landed (text: replace every occurrence; binary: replace inside each C string, NUL-padded).
//!
//! Relocation runs on the private temporary directory before it is renamed into place, so a
//! file is rewritten in place: nobody else can see it half-written, and a crash leaves a
//! temporary directory that is never trusted.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memchr::memmem;

use crate::extract::limits::{max_relocated_text, MAX_TEXT_RELOCATION};
use crate::format::{FileMode, Relocation};
use crate::{Error, Result};

pub(crate) mod window;

use window::{relocate_binary_windows, window_for, WindowError};

/// Linux reads at most this many bytes of a `#!` line (`BINPRM_BUF_SIZE` was 128 with the
/// terminating NUL before 5.1; older kernels and other systems still truncate there).
const MAX_SHEBANG: usize = 127;

/// Applies every relocation under `root`, replacing placeholders with `prefix`.
///
/// `files` holds the regular files the extraction wrote: a relocation naming anything else
/// (a symlink, a directory, a path not in the archive) is refused rather than followed.
pub(crate) fn apply(
    root: &Path,
    prefix: &Path,
    relocations: &[Relocation],
    files: &HashSet<PathBuf>,
) -> Result<()> {
    let new = path_bytes(prefix)?;
    for reloc in relocations {
        let rel = crate::extract::safe_relative(reloc.path.as_bytes());
        let path = root.join(rel.as_deref().unwrap_or(Path::new(&reloc.path)));
        let fail = |reason: String| Error::Relocate {
            path: path.clone(),
            reason,
        };
        let rel = match rel {
            Some(rel) if files.contains(&rel) => rel,
            _ => return Err(fail("not a regular file extracted from the bundle".into())),
        };
        let path = root.join(rel);
        let placeholder = reloc.placeholder.as_bytes();
        match reloc.mode {
            FileMode::Text => relocate_text_file(&path, &reloc.path, placeholder, new)?,
            FileMode::Binary => relocate_binary_file(&path, placeholder, new)?,
        }
    }
    Ok(())
}

/// Rewrites a text file in place (its permissions and inode are kept, so hard links share
/// the result). Read whole, so its size is limited first.
fn relocate_text_file(path: &Path, entry: &str, placeholder: &[u8], new: &[u8]) -> Result<()> {
    let file = open_nofollow(path, false)?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("cannot read metadata of", path, e))?
        .len();
    check_text_size(entry, size)?;
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(size)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("cannot read", path, e))?;
    let changed =
        relocate_bytes(&mut data, placeholder, new, FileMode::Text).map_err(|reason| {
            Error::Relocate {
                path: path.to_path_buf(),
                reason,
            }
        })?;
    if changed {
        write_in_place(path, &data)?;
    }
    Ok(())
}

/// Refuses a text relocation of more than [`MAX_TEXT_RELOCATION`] bytes.
pub(crate) fn check_text_size(entry: &str, size: u64) -> Result<()> {
    if size > MAX_TEXT_RELOCATION {
        return Err(Error::ArchiveLimit {
            entry: entry.to_owned(),
            limit: format!(
                "it is listed for text relocation and is {size} bytes long (limit {} for text \
                 relocation)",
                MAX_TEXT_RELOCATION
            ),
        });
    }
    Ok(())
}

/// Rewrites a binary file in place, window by window (see [`window`]): only the regions
/// that change are written back, and memory stays at one window whatever the file's size.
fn relocate_binary_file(path: &Path, placeholder: &[u8], new: &[u8]) -> Result<()> {
    with_writable(path, |file| {
        let file: &File = file;
        let len = file
            .metadata()
            .map_err(|e| Error::io("cannot read metadata of", path, e))?
            .len();
        let window = window_for(len, placeholder);
        let mut offset = 0u64;
        let result = relocate_binary_windows(file, placeholder, new, window, |region, changed| {
            if changed {
                write_at(file, region, offset)?;
            }
            offset += region.len() as u64;
            Ok(())
        });
        match result {
            Ok(_) => Ok(()),
            Err(WindowError::Io(e)) => Err(Error::io("cannot relocate", path, e)),
            Err(WindowError::Refused(reason)) => Err(Error::Relocate {
                path: path.to_path_buf(),
                reason,
            }),
        }
    })
}

#[cfg(unix)]
fn write_at(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let pos = file.stream_position()?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(data)?;
    file.seek(SeekFrom::Start(pos)).map(drop)
}

/// Rewrites `data` (a file's content) for the new prefix; `false` when nothing changes. The
/// one definition of a relocation's effect: extraction writes its result, verification
/// ([`crate::verify`]) compares the file on disk with it.
pub(crate) fn relocate_bytes(
    data: &mut Vec<u8>,
    placeholder: &[u8],
    new: &[u8],
    mode: FileMode,
) -> std::result::Result<bool, String> {
    if placeholder.is_empty() {
        return Err("the manifest gives an empty placeholder".into());
    }
    // Found by fuzzing: a placeholder starting with NUL made `relocate_binary` loop forever
    // (its C string is empty, so the search never moves on). No path holds a NUL.
    if placeholder.contains(&0) {
        return Err("the manifest gives a placeholder holding a NUL byte".into());
    }
    match mode {
        FileMode::Text => Ok(match relocate_text(data, placeholder, new)? {
            Some(out) => {
                *data = out;
                true
            }
            None => false,
        }),
        FileMode::Binary => Ok(relocate_binary(data, placeholder, new)? > 0),
    }
}

/// Replaces every occurrence of `placeholder` in a text file. A `#!` line that names the
/// placeholder and becomes too long for the kernel (or holds whitespace in the interpreter
/// path) is turned into a `/bin/sh` trampoline that Python reads as a string literal.
/// Returns `None` when nothing changes.
pub(crate) fn relocate_text(
    data: &[u8],
    placeholder: &[u8],
    new: &[u8],
) -> std::result::Result<Option<Vec<u8>>, String> {
    let finder = memmem::Finder::new(placeholder);
    if finder.find(data).is_none() {
        return Ok(None);
    }
    if new.len() > placeholder.len() {
        // Counted before anything is allocated: a short placeholder in a long file (`/`, say)
        // would otherwise multiply the file by the length of the new prefix.
        let count = finder.find_iter(data).count() as u64;
        let grown = (data.len() as u64)
            .saturating_add(count.saturating_mul((new.len() - placeholder.len()) as u64));
        let limit = max_relocated_text(data.len() as u64);
        if grown > limit {
            return Err(format!(
                "relocating its {count} occurrences of the placeholder `{}` would grow it from \
                 {} to {grown} bytes (limit {limit}: twice its size plus 1 MiB)",
                String::from_utf8_lossy(&placeholder[..placeholder.len().min(80)]),
                data.len()
            ));
        }
    }
    if data.starts_with(b"#!") {
        let line_end = memchr::memchr(b'\n', data).unwrap_or(data.len());
        let first = &data[..line_end];
        if finder.find(first).is_some() {
            let new_first = replace_all(&finder, first, new);
            let body = &first[2..];
            let body = trim_start(body);
            let split = body
                .iter()
                .position(|b| *b == b' ' || *b == b'\t')
                .unwrap_or(body.len());
            let interp = replace_all(&finder, &body[..split], new);
            // Found by fuzzing: the arguments may name the prefix too, and the trampoline
            // used to keep them as they were.
            let args = replace_all(&finder, trim_end(trim_start(&body[split..])), new);
            let mut out = Vec::with_capacity(data.len());
            if new_first.len() > MAX_SHEBANG || interp.iter().any(u8::is_ascii_whitespace) {
                out.extend_from_slice(&trampoline(&interp, &args)?);
            } else {
                out.extend_from_slice(&new_first);
            }
            out.extend_from_slice(&replace_all(&finder, &data[line_end..], new));
            return Ok(Some(out));
        }
    }
    Ok(Some(replace_all(&finder, data, new)))
}

/// The `#!/bin/sh` line pair that re-executes the script with `interp`: the shell runs the
/// `exec`, Python sees a triple-quoted string. Shebang arguments are passed as one word, as
/// the Linux kernel does.
fn trampoline(interp: &[u8], args: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if let Some(c) = interp
        .iter()
        .find(|c| matches!(c, b'"' | b'$' | b'`' | b'\\' | b'\''))
    {
        return Err(format!(
            "the interpreter path `{}` holds `{}`, which a /bin/sh shebang trampoline cannot quote",
            String::from_utf8_lossy(interp),
            *c as char
        ));
    }
    if args.contains(&b'\'') {
        return Err(format!(
            "the shebang arguments `{}` hold a single quote, which the trampoline cannot quote",
            String::from_utf8_lossy(args)
        ));
    }
    let mut out = b"#!/bin/sh\n'''exec' \"".to_vec();
    out.extend_from_slice(interp);
    out.push(b'"');
    if !args.is_empty() {
        out.extend_from_slice(b" '");
        out.extend_from_slice(args);
        out.push(b'\'');
    }
    out.extend_from_slice(b" \"$0\" \"$@\" #'''");
    Ok(out)
}

/// Replaces each occurrence of `placeholder` inside its NUL-terminated C string and pads the
/// string with NULs, so the file keeps its length and every other offset. Returns the number
/// of occurrences replaced.
pub(crate) fn relocate_binary(
    data: &mut [u8],
    placeholder: &[u8],
    new: &[u8],
) -> std::result::Result<usize, String> {
    let finder = memmem::Finder::new(placeholder);
    let mut pos = 0;
    let mut count = 0;
    while let Some(found) = finder.find(&data[pos..]) {
        if new.len() > placeholder.len() {
            return Err(format!(
                "the new prefix ({} bytes) is longer than the placeholder ({} bytes) in a binary \
                 file; use a shorter cache directory (PYBUNDLE_CACHE_DIR)",
                new.len(),
                placeholder.len()
            ));
        }
        let start = pos + found;
        let end = memchr::memchr(0, &data[start..]).map_or(data.len(), |n| start + n);
        count += finder.find_iter(&data[start..end]).count();
        let replaced = replace_all(&finder, &data[start..end], new);
        data[start..start + replaced.len()].copy_from_slice(&replaced);
        data[start + replaced.len()..end].fill(0);
        pos = end;
    }
    Ok(count)
}

fn replace_all(finder: &memmem::Finder<'_>, data: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut last = 0;
    for at in finder.find_iter(data) {
        out.extend_from_slice(&data[last..at]);
        out.extend_from_slice(new);
        last = at + finder.needle().len();
    }
    out.extend_from_slice(&data[last..]);
    out
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    &s[..s.len() - n]
}

/// Writes `data` over the file (see [`with_writable`]).
fn write_in_place(path: &Path, data: &[u8]) -> Result<()> {
    with_writable(path, |file| {
        let mut write = || -> std::io::Result<()> {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(data)?;
            file.set_len(data.len() as u64)
        };
        write().map_err(|e| Error::io("cannot write", path, e))
    })
}

/// Runs `f` on the file opened for reading and writing, making it writable for the duration
/// if its mode is read-only (conda ships some 0444 files).
fn with_writable<T>(path: &Path, f: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    match open_nofollow(path, true) {
        Ok(mut file) => f(&mut file),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            let perms = std::fs::symlink_metadata(path)
                .map_err(|e| Error::io("cannot read metadata of", path, e))?
                .permissions();
            let mut writable = perms.clone();
            #[allow(clippy::permissions_set_readonly_false)]
            writable.set_readonly(false);
            std::fs::set_permissions(path, writable)
                .map_err(|e| Error::io("cannot make writable", path, e))?;
            let mut file = open_nofollow(path, true)?;
            let out = f(&mut file)?;
            std::fs::set_permissions(path, perms)
                .map_err(|e| Error::io("cannot restore permissions of", path, e))?;
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

fn open_nofollow(path: &Path, write: bool) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(write);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW);
    }
    opts.open(path)
        .map_err(|e| Error::io("cannot open", path, e))
}

/// The bytes of a path as written into relocated files.
pub(crate) fn path_bytes(path: &Path) -> Result<&[u8]> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(path.as_os_str().as_bytes())
    }
    #[cfg(not(unix))]
    {
        path.to_str()
            .map(str::as_bytes)
            .ok_or_else(|| Error::Relocate {
                path: path.to_path_buf(),
                reason: "the prefix path is not valid Unicode".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PH: &[u8] = b"/opt/placeholder_placeholder_placeholder";

    #[test]
    fn binary_shorter_is_padded() {
        let mut data = b"\x7fELF\0/opt/placeholder_placeholder_placeholder/lib\0tail".to_vec();
        let len = data.len();
        assert_eq!(relocate_binary(&mut data, PH, b"/c/env").unwrap(), 1);
        assert_eq!(data.len(), len);
        let mut want = b"\x7fELF\0/c/env/lib".to_vec();
        want.resize(want.len() + PH.len() - 6, 0);
        want.extend_from_slice(b"\0tail");
        assert_eq!(data, want);
    }

    #[test]
    fn binary_equal_length() {
        let new = b"/x".repeat(PH.len() / 2);
        let mut data = [b"a".as_slice(), PH, b"/bin\0z"].concat();
        relocate_binary(&mut data, PH, &new).unwrap();
        assert_eq!(data, [b"a".as_slice(), &new, b"/bin\0z"].concat());
    }

    #[test]
    fn binary_longer_is_an_error() {
        let new = vec![b'x'; PH.len() + 1];
        let mut data = [b"a\0".as_slice(), PH, b"\0"].concat();
        let orig = data.clone();
        let err = relocate_binary(&mut data, PH, &new).unwrap_err();
        assert!(err.contains("longer than the placeholder"), "{err}");
        assert_eq!(data, orig);
    }

    #[test]
    fn binary_several_in_one_string() {
        let mut data = [b"P=".as_slice(), PH, b"/lib:", PH, b"/lib64\0after"].concat();
        let len = data.len();
        assert_eq!(relocate_binary(&mut data, PH, b"/n").unwrap(), 2);
        assert_eq!(data.len(), len);
        let s = b"P=/n/lib:/n/lib64";
        assert_eq!(&data[..s.len()], s);
        let nul_end = len - b"after".len();
        assert!(data[s.len()..nul_end].iter().all(|b| *b == 0));
        assert_eq!(&data[nul_end..], b"after");
    }

    #[test]
    fn binary_several_strings() {
        let mut data = [PH, b"/a\0mid\0", PH, b"/b\0"].concat();
        let len = data.len();
        assert_eq!(relocate_binary(&mut data, PH, b"/n").unwrap(), 2);
        assert_eq!(data.len(), len);
        assert!(data.starts_with(b"/n/a\0"));
        let second = PH.len() + 3 + 4;
        assert_eq!(&data[..3 + 4][..], b"/n/a\0\0\0");
        assert_eq!(&data[second..second + 5], b"/n/b\0");
        assert!(data.windows(4).any(|w| w == b"mid\0"));
    }

    #[test]
    fn binary_at_end_without_nul() {
        let mut data = [b"x\0".as_slice(), PH].concat();
        let len = data.len();
        assert_eq!(relocate_binary(&mut data, PH, b"/n").unwrap(), 1);
        assert_eq!(data.len(), len);
        assert!(data.starts_with(b"x\0/n\0"));
        assert!(data[5..].iter().all(|b| *b == 0));
    }

    #[test]
    fn binary_without_placeholder_is_untouched() {
        let mut data = b"nothing here\0".to_vec();
        assert_eq!(relocate_binary(&mut data, PH, b"/n").unwrap(), 0);
        assert_eq!(data, b"nothing here\0");
    }

    #[test]
    fn text_relocation_is_refused_past_its_size_or_its_growth_limit() {
        use crate::extract::limits::TEXT_GROWTH_SLACK;
        check_text_size("e", MAX_TEXT_RELOCATION).unwrap();
        let err = check_text_size("e", MAX_TEXT_RELOCATION + 1).unwrap_err();
        assert!(matches!(err, Error::ArchiveLimit { .. }), "{err}");
        // 1024 two-byte placeholders: the file may grow to 2 × 2048 bytes + 1 MiB.
        let data = b"/p".repeat(1024);
        let limit = 2 * data.len() as u64 + TEXT_GROWTH_SLACK;
        let at_limit = vec![b'n'; 2 + ((limit - data.len() as u64) / 1024) as usize];
        let out = relocate_text(&data, b"/p", &at_limit).unwrap().unwrap();
        assert_eq!(out.len() as u64, limit);
        let past = vec![b'n'; at_limit.len() + 1];
        let err = relocate_text(&data, b"/p", &past).unwrap_err();
        assert!(err.contains("twice its size plus 1 MiB"), "{err}");
    }

    #[test]
    fn text_replaces_all() {
        let data = [b"a=".as_slice(), PH, b"\nb=", PH, b"/lib ", PH].concat();
        let out = relocate_text(
            &data,
            PH,
            b"/new/prefix/longer/than/nothing/at/all/really/yes",
        )
        .unwrap()
        .unwrap();
        let p = "/new/prefix/longer/than/nothing/at/all/really/yes";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("a={p}\nb={p}/lib {p}")
        );
        assert_eq!(relocate_text(b"plain", PH, b"/n").unwrap(), None);
    }

    #[test]
    fn long_shebang_becomes_trampoline() {
        let data = [
            b"#!".as_slice(),
            PH,
            b"/bin/python3.11\n# -*- coding: utf-8 -*-\nimport x\n",
        ]
        .concat();
        let new = format!(
            "/home/user/.cache/pybundle/app-0123456789abcdef/{}",
            "d".repeat(80)
        );
        let out = relocate_text(&data, PH, new.as_bytes()).unwrap().unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            format!(
                "#!/bin/sh\n'''exec' \"{new}/bin/python3.11\" \"$0\" \"$@\" #'''\n\
                 # -*- coding: utf-8 -*-\nimport x\n"
            )
        );
    }

    #[test]
    fn long_shebang_with_argument() {
        let data = [b"#!".as_slice(), PH, b"/bin/python3.11 -E \nprint(1)\n"].concat();
        let new = "/n".repeat(70);
        let out =
            String::from_utf8(relocate_text(&data, PH, new.as_bytes()).unwrap().unwrap()).unwrap();
        assert!(out.starts_with(&format!(
            "#!/bin/sh\n'''exec' \"{new}/bin/python3.11\" '-E' \"$0\" \"$@\" #'''\nprint(1)"
        )));
    }

    #[test]
    fn long_shebang_arguments_are_relocated_too() {
        let data = [
            b"#!".as_slice(),
            PH,
            b"/bin/python3.11 -X pycache_prefix=",
            PH,
            b"/c\n",
        ]
        .concat();
        let new = "/n".repeat(70);
        let out =
            String::from_utf8(relocate_text(&data, PH, new.as_bytes()).unwrap().unwrap()).unwrap();
        assert_eq!(
            out,
            format!(
                "#!/bin/sh\n'''exec' \"{new}/bin/python3.11\" '-X pycache_prefix={new}/c' \
                 \"$0\" \"$@\" #'''\n"
            )
        );
    }

    #[test]
    fn short_shebang_is_only_replaced() {
        let data = [b"#!".as_slice(), PH, b"/bin/python3.11\nprint(1)\n"].concat();
        let out = relocate_text(&data, PH, b"/c/env").unwrap().unwrap();
        assert_eq!(out, b"#!/c/env/bin/python3.11\nprint(1)\n");
    }

    #[test]
    fn shebang_with_space_in_prefix_uses_trampoline() {
        let data = [b"#!".as_slice(), PH, b"/bin/python\n"].concat();
        let out = relocate_text(&data, PH, b"/home/J D/env").unwrap().unwrap();
        assert_eq!(
            out,
            b"#!/bin/sh\n'''exec' \"/home/J D/env/bin/python\" \"$0\" \"$@\" #'''\n"
        );
    }

    #[test]
    fn unquotable_prefix_is_an_error() {
        let data = [b"#!".as_slice(), PH, b"/bin/python\n"].concat();
        let new = format!("/a$b{}", "x".repeat(130));
        assert!(relocate_text(&data, PH, new.as_bytes())
            .unwrap_err()
            .contains('$'));
    }
}
