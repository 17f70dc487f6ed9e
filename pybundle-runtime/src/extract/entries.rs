//! The archive's tar entries, read with limits. The manifest reader, extraction and
//! verification all take their entries from here, so a hostile archive meets the same bounds
//! wherever it is read.
//!
//! The `tar` crate reads GNU long-name and PAX records into memory whole, whatever size their
//! header claims (a 33 KiB archive can announce a 1 GiB name). Entries are therefore read raw and
//! those records handled here, each refused past its limit before anything is read. Every
//! entry's final path is checked for length, depth and component length; link targets for
//! length.

use std::io::Read;

use tar::EntryType;

use super::archive_err;
use super::limits::{MAX_COMPONENT, MAX_DEPTH, MAX_EXTENSION, MAX_PATH};
use crate::{Error, Result};

/// One archive entry with its long name and link target applied.
pub(crate) struct Item<'a, R: Read> {
    /// The entry; reading it yields its data (at most its header's size).
    pub entry: tar::Entry<'a, R>,
    /// The path as written (long-name or PAX record applied), checked against the limits.
    pub path: Vec<u8>,
    /// The link target, for links.
    pub link: Option<Vec<u8>>,
    /// The entry's type.
    pub kind: EntryType,
}

impl<R: Read> Item<'_, R> {
    /// The path for messages (lossy UTF-8).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// The entries of a tar stream, extension records handled with limits.
pub(crate) struct Entries<'a, R: Read> {
    raw: tar::Entries<'a, R>,
    /// The last entry returned, to say where a problem starts when the entry has no name yet.
    last: Option<String>,
}

impl<'a, R: Read> Entries<'a, R> {
    pub fn new(archive: &'a mut tar::Archive<R>) -> Result<Self> {
        Ok(Entries {
            raw: archive.entries().map_err(archive_err)?.raw(true),
            last: None,
        })
    }

    /// Where the next entry starts, for errors raised before its name is known.
    fn here(&self) -> String {
        match &self.last {
            Some(last) => format!("the entry after {last}"),
            None => "the first entry".to_owned(),
        }
    }

    /// The next entry, `Ok(None)` at the end of the archive.
    pub fn next_item(&mut self) -> Result<Option<Item<'a, R>>> {
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut extensions = false;
        loop {
            let mut entry = match self.raw.next() {
                None if extensions => {
                    return Err(Error::Archive {
                        detail: format!(
                            "it ends after a long-name or PAX record, at {}",
                            self.here()
                        ),
                        source: None,
                    })
                }
                None => return Ok(None),
                Some(entry) => entry.map_err(archive_err)?,
            };
            let kind = entry.header().entry_type();
            match kind {
                EntryType::GNULongName | EntryType::GNULongLink => {
                    let slot = if kind == EntryType::GNULongName {
                        &mut long_name
                    } else {
                        &mut long_link
                    };
                    if slot.is_some() {
                        return Err(self.unsafe_here("two long-name records for one entry"));
                    }
                    let bytes = self.read_record(&mut entry, MAX_PATH as u64 + 1, "long name")?;
                    *slot = Some(trim_nul(bytes));
                    extensions = true;
                }
                EntryType::XHeader => {
                    self.read_pax(&mut entry, &mut long_name, &mut long_link)?;
                    extensions = true;
                }
                EntryType::XGlobalHeader => {
                    self.read_record(&mut entry, MAX_EXTENSION, "PAX global record")?;
                }
                _ => {
                    let path = match long_name {
                        Some(p) => p,
                        None => entry.path_bytes().into_owned(),
                    };
                    let link = match long_link {
                        Some(l) => Some(l),
                        None => entry.link_name_bytes().map(|l| l.into_owned()),
                    };
                    check_path(&path)?;
                    if let Some(link) = &link {
                        if link.len() > MAX_PATH {
                            return Err(Error::ArchiveLimit {
                                entry: shown(&path),
                                limit: format!(
                                    "its link target is {} bytes long (limit {MAX_PATH})",
                                    link.len()
                                ),
                            });
                        }
                    }
                    let item = Item {
                        entry,
                        path,
                        link,
                        kind,
                    };
                    self.last = Some(shown(&item.path));
                    return Ok(Some(item));
                }
            }
        }
    }

    /// A PAX record: its `path` and `linkpath` apply to the next entry; a `size` is refused.
    fn read_pax(
        &self,
        entry: &mut tar::Entry<'a, R>,
        long_name: &mut Option<Vec<u8>>,
        long_link: &mut Option<Vec<u8>>,
    ) -> Result<()> {
        let bytes = self.read_record(entry, MAX_EXTENSION, "PAX record")?;
        for ext in tar::PaxExtensions::new(&bytes) {
            let ext = ext.map_err(|_| self.unsafe_here("a malformed PAX record"))?;
            match ext.key_bytes() {
                b"path" => *long_name = Some(ext.value_bytes().to_vec()),
                b"linkpath" => *long_link = Some(ext.value_bytes().to_vec()),
                // The raw reader keeps the header's size; honouring another here would let
                // two readers see different archives.
                b"size" => return Err(self.unsafe_here("a PAX size record (not supported)")),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads an extension record's data, refusing it unread when its header claims more
    /// than `limit` bytes.
    fn read_record(
        &self,
        entry: &mut tar::Entry<'a, R>,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let size = entry.size();
        if size > limit {
            return Err(Error::ArchiveLimit {
                entry: self.here(),
                limit: format!("its {what} is {size} bytes long (limit {limit})"),
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry.read_to_end(&mut bytes).map_err(archive_err)?;
        Ok(bytes)
    }

    fn unsafe_here(&self, reason: &'static str) -> Error {
        Error::UnsafeEntry {
            entry: self.here(),
            reason,
        }
    }
}

/// A GNU long name is the name plus one terminating NUL.
fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// Length, depth and component limits on an entry's path (and no NUL byte, which no file
/// name can hold).
pub(crate) fn check_path(path: &[u8]) -> Result<()> {
    let over = |limit: String| {
        Err(Error::ArchiveLimit {
            entry: shown(path),
            limit,
        })
    };
    if path.len() > MAX_PATH {
        return over(format!(
            "its path is {} bytes long (limit {MAX_PATH})",
            path.len()
        ));
    }
    if path.contains(&0) {
        return Err(Error::UnsafeEntry {
            entry: shown(path),
            reason: "its path holds a NUL byte",
        });
    }
    let mut depth = 0;
    for component in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
        depth += 1;
        if depth > MAX_DEPTH {
            return over(format!("its path is over {MAX_DEPTH} directories deep"));
        }
        if component.len() > MAX_COMPONENT {
            return over(format!(
                "a component of its path is {} bytes long (limit {MAX_COMPONENT})",
                component.len()
            ));
        }
    }
    Ok(())
}

/// A path for messages: lossy UTF-8, cut after 160 bytes with the full length said.
pub(crate) fn shown(path: &[u8]) -> String {
    const SHOWN: usize = 160;
    if path.len() <= SHOWN {
        return String::from_utf8_lossy(path).into_owned();
    }
    format!(
        "{}… ({} bytes)",
        String::from_utf8_lossy(&path[..SHOWN]),
        path.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_limits() {
        assert!(check_path(b"env/lib/python3.11/os.py").is_ok());
        let deep = "a/".repeat(MAX_DEPTH + 1);
        let err = check_path(deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("directories deep"), "{err}");
        let long = vec![b'x'; MAX_PATH + 1];
        let err = check_path(&long).unwrap_err();
        assert!(err.to_string().contains("4097 bytes"), "{err}");
        assert!(err.to_string().contains("… (4097 bytes)"), "{err}");
        let wide = format!("a/{}", "b".repeat(MAX_COMPONENT + 1));
        assert!(check_path(wide.as_bytes()).is_err());
        assert!(matches!(
            check_path(b"a\0b"),
            Err(Error::UnsafeEntry { .. })
        ));
    }
}
