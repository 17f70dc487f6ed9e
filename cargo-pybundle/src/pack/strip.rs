//! Debug info left out of the archive (`strip` in `[package.metadata.pybundle]`).
//!
//! A shared library or program of the prefix that carries DWARF sections (`.debug_*`) is packed
//! as `strip --strip-debug` leaves it: only what a debugger reads goes; code, data, symbol
//! tables and everything the dynamic loader reads stay. That is what Cargo's release profile
//! does to the Rust program (`strip = "debuginfo"`), applied to the bundled environment.
//! Every other file is packed unchanged, and so is an ELF file that carries anything but zero
//! bytes past its last section, segment and table (a payload appended to a program, which
//! `strip` would drop).
//!
//! The work is done by binutils' `strip` (the `STRIP` environment variable names another,
//! e.g. a cross toolchain's): it is there wherever Rust links Linux programs, and its output
//! for the same input is always the same bytes, so the archive stays deterministic. Its output
//! is not taken on trust: unless the loader is given the same header fields, program headers
//! and allocated sections, byte for byte (with the two allowances [`maps_the_same`] names), the
//! original is packed and the build warns.

use anyhow::{bail, Context as _, Result};
use object::elf;
use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader as _, SectionHeader as _};
use object::Endianness;
use std::ffi::OsString;
use std::process::Command;

/// What to leave out of the prefix's libraries and programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strip {
    /// Pack every file as installed.
    None,
    /// Leave out the DWARF debug info of ELF libraries and programs.
    DebugInfo,
}

impl Strip {
    /// The name `strip` takes in `[package.metadata.pybundle]`.
    pub fn name(self) -> &'static str {
        match self {
            Strip::None => "none",
            Strip::DebugInfo => "debuginfo",
        }
    }
}

/// Runs `strip` on files that need it, counting what it saved.
#[derive(Debug)]
pub struct Stripper {
    /// `$STRIP`, else `strip` (looked up on PATH when run).
    tool: OsString,
    /// Where each file is written for `strip` to read, and where its output goes.
    dir: Option<tempfile::TempDir>,
    /// Files stripped.
    pub files: u64,
    /// Bytes left out.
    pub saved: u64,
    /// Files `strip` failed on (packed unchanged), each with what it said.
    pub failed: Vec<String>,
}

impl Stripper {
    /// A stripper using `$STRIP` or `strip`.
    pub fn from_env() -> Stripper {
        Stripper {
            tool: std::env::var_os("STRIP")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "strip".into()),
            dir: None,
            files: 0,
            saved: 0,
            failed: Vec::new(),
        }
    }

    /// `content` (the file packed as `path`) without its debug info; or `content` as it is when
    /// it has none, is no ELF library or program, carries non-zero bytes past its ELF
    /// structures, or `strip` failed on it or changed what the loader is given (those two are
    /// recorded in [`Stripper::failed`]).
    pub fn debug_info(&mut self, path: &str, content: Vec<u8>) -> Result<Vec<u8>> {
        if !strippable(&content) {
            return Ok(content);
        }
        let dir = match &self.dir {
            Some(dir) => dir,
            None => self.dir.insert(
                tempfile::Builder::new()
                    .prefix("pybundle-strip")
                    .tempdir()
                    .context("creating a temp folder for strip")?,
            ),
        };
        let input = dir.path().join("in");
        let output = dir.path().join("out");
        fs_err::write(&input, &content)?;
        let _ = std::fs::remove_file(&output);
        let result = Command::new(&self.tool)
            .arg("--strip-debug")
            .arg("-o")
            .arg(&output)
            .arg(&input)
            .output();
        let what = self.tool.to_string_lossy();
        let out = match result {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "`{what}` was not found (binutils' strip; the STRIP environment variable names \
                 another): it removes the debug info of {path} and the other libraries that \
                 carry some, as `strip` in [package.metadata.pybundle] asks (\"debuginfo\" is the \
                 default with --release). Install binutils, or set strip = \"none\" to pack them \
                 as they are"
            ),
            Err(e) => return Err(e).with_context(|| format!("running `{what}` on {path}")),
        };
        if !out.status.success() {
            // This file only: it is packed as it is, and the build says so.
            self.failed.push(format!(
                "{path}: `{what} --strip-debug` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return Ok(content);
        }
        let stripped = fs_err::read(&output)?;
        if stripped.len() >= content.len() {
            return Ok(content);
        }
        if !maps_the_same(&content, &stripped) {
            // Not trusted: `strip` changed what the loader maps, not only what it leaves alone.
            self.failed.push(format!(
                "{path}: `{what} --strip-debug` changed the program headers or the bytes they map"
            ));
            return Ok(content);
        }
        self.files += 1;
        self.saved += (content.len() - stripped.len()) as u64;
        Ok(stripped)
    }

    /// Says what was left out, and which files kept their debug info and why.
    pub fn report(&self, ui: &crate::ui::Ui) {
        const SHOWN: usize = 5;
        for failed in self.failed.iter().take(SHOWN) {
            ui.warn(format!("debug info kept: {failed}"));
        }
        if self.failed.len() > SHOWN {
            ui.warn(format!(
                "debug info kept in {} more files as well",
                self.failed.len() - SHOWN
            ));
        }
        if self.files > 0 {
            ui.status(
                "Stripped",
                format!(
                    "debug info from {} files ({:.1} MB; `strip` in [package.metadata.pybundle])",
                    self.files,
                    self.saved as f64 / 1e6
                ),
            );
        }
    }
}

/// A 64-bit ELF shared library or program with `.debug_*` sections, whose headers point inside
/// the file, and with nothing but zero bytes past the end of its ELF structures (patchelf,
/// which conda-build runs on every library, may leave a few).
fn strippable(data: &[u8]) -> bool {
    let Ok(file) = ElfFile64::<Endianness>::parse(data) else {
        return false;
    };
    let endian = file.endian();
    let header = file.elf_header();
    if !matches!(header.e_type(endian), elf::ET_DYN | elf::ET_EXEC) {
        return false;
    }
    let sections = file.elf_section_table();
    // Where each structure ends; `None` for one whose end does not fit in a u64.
    let mut ends = vec![
        Some(u64::from(header.e_ehsize(endian))),
        header.e_shoff(endian).checked_add(table_size(
            header.e_shnum(endian),
            header.e_shentsize(endian),
        )),
        header.e_phoff(endian).checked_add(table_size(
            header.e_phnum(endian),
            header.e_phentsize(endian),
        )),
    ];
    let mut debug = false;
    for section in sections.iter() {
        if section.sh_type(endian) != elf::SHT_NOBITS {
            ends.push(
                section
                    .sh_offset(endian)
                    .checked_add(section.sh_size(endian)),
            );
        }
        let name = sections.section_name(endian, section).unwrap_or_default();
        debug |= name.starts_with(b".debug_") || name.starts_with(b".zdebug_");
    }
    for segment in file.elf_program_headers() {
        ends.push(
            segment
                .p_offset(endian)
                .checked_add(segment.p_filesz(endian)),
        );
    }
    let Some(end) = ends.into_iter().try_fold(0, |end, e| Some(end.max(e?))) else {
        return false;
    };
    match usize::try_from(end).ok().and_then(|end| data.get(end..)) {
        Some(past_end) => debug && past_end.iter().all(|&b| b == 0),
        // A header pointing past the end of the file: not ours to rewrite.
        None => false,
    }
}

fn table_size(count: u16, entry: u16) -> u64 {
    u64::from(count) * u64::from(entry)
}

/// What the dynamic loader is given by a 64-bit ELF file (see [`maps_the_same`]): the header
/// fields it reads, each program header (type, flags, addresses, alignment, the zero-filled
/// size past the file bytes, and the file size), and each allocated section (name, type, flags,
/// address and bytes). `None` if `data` is no such file.
fn loaded(data: &[u8]) -> Option<Loaded> {
    let file = ElfFile64::<Endianness>::parse(data).ok()?;
    let endian = file.endian();
    let header = file.elf_header();
    let head = [
        u64::from(header.e_type(endian)),
        u64::from(header.e_machine(endian)),
        u64::from(header.e_flags(endian)),
        header.e_entry(endian),
    ];
    let mut segments = Vec::new();
    for segment in file.elf_program_headers() {
        let kind = [
            u64::from(segment.p_type(endian)),
            u64::from(segment.p_flags(endian)),
            segment.p_vaddr(endian),
            segment.p_paddr(endian),
            segment.p_align(endian),
            segment
                .p_memsz(endian)
                .checked_sub(segment.p_filesz(endian))?,
        ];
        segments.push((kind, segment.p_filesz(endian)));
    }
    let table = file.elf_section_table();
    let mut sections = Vec::new();
    for section in table.iter() {
        if section.sh_flags(endian) & u64::from(elf::SHF_ALLOC) == 0 {
            continue;
        }
        let name = table.section_name(endian, section).ok()?.to_vec();
        let bytes = match section.sh_type(endian) {
            elf::SHT_NOBITS => Vec::new(),
            _ => section.data(endian, data).ok()?.to_vec(),
        };
        let kind = [
            u64::from(section.sh_type(endian)),
            section.sh_flags(endian),
            section.sh_addr(endian),
            section.sh_size(endian),
        ];
        sections.push((name, kind, bytes));
    }
    // `strip` may list them in another order (by file offset).
    sections.sort_by(|a, b| (a.1[2], &a.0).cmp(&(b.1[2], &b.0)));
    Some(Loaded {
        head,
        segments,
        sections,
    })
}

/// See [`loaded`].
struct Loaded {
    head: [u64; 4],
    segments: Vec<([u64; 6], u64)>,
    sections: Vec<(Vec<u8>, [u64; 4], Vec<u8>)>,
}

/// Whether `stripped` gives the loader what `original` gives it: the same header fields,
/// program headers and allocated sections, byte for byte. Two differences are allowed, as
/// nothing can point at what they drop: a segment's file size may shrink past its last section
/// (patchelf, which conda-build runs on every library, pads the segment it adds), and bytes no
/// section holds (the filler patchelf leaves where it moved a section from) are not compared.
fn maps_the_same(original: &[u8], stripped: &[u8]) -> bool {
    let (Some(before), Some(after)) = (loaded(original), loaded(stripped)) else {
        return false;
    };
    before.head == after.head
        && before.sections == after.sections
        && before.segments.len() == after.segments.len()
        && before.segments.iter().zip(&after.segments).all(
            |((kind, size), (kind_after, size_after))| kind == kind_after && size_after <= size,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A shared library built by `cc` with (`-g`) or without debug info.
    fn library(dir: &Path, debug: bool) -> Vec<u8> {
        let src = dir.join("lib.c");
        fs_err::write(
            &src,
            "int answer(void) { return 42; }\nconst char *who = \"where-am-i\";\n",
        )
        .unwrap();
        let out = dir.join(if debug { "libg.so" } else { "lib.so" });
        let mut cc = Command::new("cc");
        cc.args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(&src);
        if debug {
            cc.arg("-g");
        }
        let status = cc.status().expect("cc runs");
        assert!(status.success());
        fs_err::read(out).unwrap()
    }

    fn has_debug(data: &[u8]) -> bool {
        use object::{Object as _, ObjectSection as _};
        let file = object::File::parse(data).unwrap();
        let names: Vec<String> = file
            .sections()
            .map(|s| s.name().unwrap_or_default().to_owned())
            .collect();
        names.iter().any(|n| n.starts_with(".debug_"))
    }

    #[test]
    fn debug_info_goes_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let with = library(dir.path(), true);
        let without = library(dir.path(), false);
        assert!(has_debug(&with) && !has_debug(&without));

        let mut s = Stripper::from_env();
        let stripped = s.debug_info("env/lib/libg.so", with.clone()).unwrap();
        assert!(
            stripped.len() < with.len(),
            "{} !< {}",
            stripped.len(),
            with.len()
        );
        assert!(!has_debug(&stripped));
        // The symbol table stays (backtraces still name functions).
        let symbols = |data: &[u8]| {
            use object::Object as _;
            object::File::parse(data)
                .unwrap()
                .section_by_name(".symtab")
                .is_some()
        };
        assert!(symbols(&with) && symbols(&stripped));
        assert_eq!(
            (s.files, s.saved),
            (1, (with.len() - stripped.len()) as u64)
        );
        // The same input gives the same bytes (the archive stays deterministic).
        assert_eq!(s.debug_info("again", with.clone()).unwrap(), stripped);

        // Without debug info, not ELF, or with a payload past the ELF end: packed as is.
        assert_eq!(s.debug_info("lib.so", without.clone()).unwrap(), without);
        let text = b"#!/bin/sh\necho hi\n".to_vec();
        assert_eq!(s.debug_info("bin/x", text.clone()).unwrap(), text);
        let mut payload = with.clone();
        payload.extend_from_slice(b"PK\x05\x06 appended archive");
        assert_eq!(s.debug_info("bin/sfx", payload.clone()).unwrap(), payload);
        assert_eq!(s.files, 2);
        // Zero bytes past the end (patchelf leaves some) are padding, not a payload.
        let mut padded = with.clone();
        padded.extend_from_slice(&[0; 3]);
        let out = s.debug_info("padded", padded.clone()).unwrap();
        assert!(out.len() < with.len() && maps_the_same(&padded, &out));
        assert!(s.failed.is_empty(), "{:?}", s.failed);
        // Headers that point past the end of the file: left alone, no panic.
        let mut broken = with.clone();
        let phoff =
            usize::try_from(u64::from_le_bytes(broken[32..40].try_into().unwrap())).unwrap();
        broken[phoff + 8..phoff + 16].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        assert_eq!(s.debug_info("broken", broken.clone()).unwrap(), broken);
        let mut truncated = with.clone();
        truncated.truncate(with.len() - 100);
        assert_eq!(
            s.debug_info("truncated", truncated.clone()).unwrap(),
            truncated
        );
        assert_eq!(s.files, 3);
    }

    #[test]
    fn a_strip_that_changes_what_is_loaded_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let with = library(dir.path(), true);
        // A "strip" that strips, then changes the library's string constant.
        let tool = dir.path().join("bad-strip");
        fs_err::write(
            &tool,
            "#!/bin/sh\nstrip \"$@\" && perl -pi -e 's/where-am-i/WHERE-AM-I/' \"$3\"\n",
        )
        .unwrap();
        let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        fs_err::set_permissions(&tool, exec).unwrap();
        let mut s = Stripper::from_env();
        s.tool = tool.into();
        assert_eq!(s.debug_info("env/lib/libg.so", with.clone()).unwrap(), with);
        assert_eq!(s.files, 0);
        assert_eq!(s.failed.len(), 1, "{:?}", s.failed);
        assert!(s.failed[0].contains("changed the program headers or the bytes they map"));
        // The real strip on the same file is trusted.
        let mut real = Stripper::from_env();
        assert!(
            real.debug_info("env/lib/libg.so", with.clone())
                .unwrap()
                .len()
                < with.len()
        );
    }

    #[test]
    fn a_missing_tool_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let with = library(dir.path(), true);
        let mut s = Stripper::from_env();
        s.tool = dir.path().join("no-such-strip").into();
        let err = format!("{:#}", s.debug_info("env/lib/libg.so", with).unwrap_err());
        assert!(err.contains("no-such-strip` was not found"), "{err}");
        assert!(err.contains("env/lib/libg.so"), "{err}");
        assert!(err.contains("set strip = \"none\""), "{err}");
        // A file that needs no stripping does not need the tool.
        let text = b"plain".to_vec();
        assert_eq!(s.debug_info("x", text.clone()).unwrap(), text);
    }

    #[test]
    fn a_file_strip_fails_on_is_packed_as_it_is_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let with = library(dir.path(), true);
        let mut s = Stripper::from_env();
        s.tool = "false".into();
        assert_eq!(s.debug_info("env/lib/libg.so", with.clone()).unwrap(), with);
        assert_eq!(s.files, 0);
        assert_eq!(s.failed.len(), 1);
        assert!(
            s.failed[0].starts_with("env/lib/libg.so: `false --strip-debug` failed"),
            "{:?}",
            s.failed
        );
    }
}
