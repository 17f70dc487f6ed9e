//! Whether a cache root can be trusted, decided the way OpenSSH's `StrictModes` decides about
//! `~/.ssh`, and the root opened once for all later work.
//!
//! The runtime later runs programs from below the root *by path*: the interpreter, the
//! libraries its RUNPATH names, the standard library, the scripts. A path is only as safe as
//! every directory on it, so each one is checked, from `/` down, through every symlink:
//! - it is owned by root or by us;
//! - it is not writable by others or by a group with anyone but us in it, unless it is sticky
//!   (`/tmp`) and the next component is owned by root or by us (then nobody else may rename
//!   or delete it);
//! - a symlink followed on the way is owned by root or by us.
//!
//! The root itself must be owned by us. If others may write to it, it is made private
//! (`chmod go-w`) before anything in it is used, unless it is sticky (a shared directory by
//! design, such as `/tmp` itself): then others may add entries but not rename or delete
//! ours, and each entry the cache uses is checked to be ours. A group whose only member is us counts as
//! nobody (Debian and Ubuntu give every user such a group, and `umask 002` makes directories
//! group writable). Missing directories are created `0700` as the walk reaches them, so
//! nothing is ever created inside a directory that failed the check.
//!
//! Each directory is opened relative to the one before (`openat` with `O_NOFOLLOW`) and
//! checked by `fstat` of what was opened, so a rename during the walk cannot slip another
//! directory in between the check and the use.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

use super::dir::{is_symlink_error, Dir, Kind, Meta};
use crate::{Error, Result};

/// Symlinks followed before the path is refused (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Opens the cache root at the absolute path `root` after checking every directory on the
/// way; with `create`, missing directories are made `0700`.
pub(crate) fn open_root(root: &Path, create: bool) -> Result<Dir> {
    let me = super::current_uid();
    let refuse = |reason| refused(root, reason);
    let top = Dir::open_path(Path::new("/")).map_err(|e| Error::io("cannot open", "/", e))?;
    let top_meta = top
        .meta()
        .map_err(|e| Error::io("cannot read metadata of", "/", e))?;
    let mut stack: Vec<(Dir, Meta)> = vec![(top, top_meta)];
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, root);
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let Some((parent, parent_meta)) = stack.last() else {
            unreachable!("`/` is never popped")
        };
        // Refused before anything in it is looked at: what is in it can change meanwhile.
        check_parent(parent.path(), parent_meta, &name, me).map_err(refuse)?;
        let child = match parent.open_dir(&name) {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                make_dir(parent, parent_meta, &name, me).map_err(refuse)?
            }
            Err(e) if is_symlink_error(&e) => {
                let target = follow_link(root, parent, parent_meta, &name, me, &mut links)?;
                if target.is_absolute() {
                    stack.truncate(1);
                }
                push_components(&mut todo, &target);
                continue;
            }
            Err(e) => return Err(Error::io("cannot open", parent.join(&name), e)),
        };
        let meta = child
            .meta()
            .map_err(|e| Error::io("cannot read metadata of", child.path(), e))?;
        check_step(parent.path(), parent_meta, &name, &meta, me).map_err(refuse)?;
        stack.push((child, meta));
    }
    let Some((dir, meta)) = stack.pop() else {
        unreachable!("`/` is never popped")
    };
    check_root(&meta, me).map_err(refuse)?;
    make_private(root, &dir, &meta, me)?;
    // Known by the path asked for (what relocated files name), not the one symlinks led to.
    Ok(dir.known_as(root.to_path_buf()))
}

/// The error that refuses the cache root `root` for `reason`.
fn refused(root: &Path, reason: String) -> Error {
    Error::Cache {
        path: root.to_path_buf(),
        reason,
    }
}

/// A symlink met on the walk to `root`: checked (its owner, then the step like a directory),
/// counted against [`MAX_LINKS`], and its target returned for the walk to follow.
fn follow_link(
    root: &Path,
    parent: &Dir,
    parent_meta: &Meta,
    name: &OsStr,
    me: u32,
    links: &mut usize,
) -> Result<PathBuf> {
    let refuse = |reason| refused(root, reason);
    let link = parent.join(name);
    let meta = parent
        .stat(name)
        .map_err(|e| Error::io("cannot read metadata of", &link, e))?;
    if meta.kind != Kind::Symlink {
        return Err(refuse(format!("`{}` is not a directory", link.display())));
    }
    if meta.uid != 0 && meta.uid != me {
        return Err(refuse(format!(
            "the symlink `{}` is owned by uid {}, neither you (uid {me}) nor root",
            link.display(),
            meta.uid
        )));
    }
    check_step(parent.path(), parent_meta, name, &meta, me).map_err(refuse)?;
    *links += 1;
    if *links > MAX_LINKS {
        return Err(refuse(format!("more than {MAX_LINKS} symlinks on the way")));
    }
    parent
        .read_link(name)
        .map_err(|e| Error::io("cannot read symlink", &link, e))
}

/// The opened root `dir` made private (`chmod go-w`) when others may write to it, unless it
/// is sticky.
fn make_private(root: &Path, dir: &Dir, meta: &Meta, me: u32) -> Result<()> {
    match writers(meta, me) {
        // A shared directory by design (`/tmp` itself as the root): left as it is. Others can
        // add entries but not rename or delete ours, and every entry used must be ours.
        Some(_) if meta.mode & 0o1000 != 0 => {}
        Some(who) => {
            // Ours, so ours to fix: from now on nobody else can add to it. Anything planted
            // before is met by the checks on each entry (lock files and bundle directories
            // must be ours; nothing is followed through a symlink).
            let private = meta.mode & !0o022;
            tracing::warn!(
                root = %root.display(),
                "the cache root was writable by {who} (mode {:o}); made it {private:o}",
                meta.mode
            );
            dir.set_mode(private).map_err(|e| {
                refused(
                    root,
                    format!(
                        "it is writable by {who} (mode {:o}) and cannot be made private: {e}",
                        meta.mode
                    ),
                )
            })?;
        }
        None => {}
    }
    Ok(())
}

/// Pushes the components of `path` so that popping yields them in order.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let start = todo.len();
    for c in path.components() {
        match c {
            Component::Normal(n) => todo.push(n.to_os_string()),
            Component::ParentDir => todo.push(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    todo[start..].reverse();
}

/// Creates `name` (`0700`) in `parent` and opens it; one made by someone else meanwhile is
/// opened and checked like any existing directory.
fn make_dir(
    parent: &Dir,
    parent_meta: &Meta,
    name: &OsStr,
    me: u32,
) -> std::result::Result<Dir, String> {
    let path = parent.join(name);
    // Checked before anything is created: as if the new directory were already ours, which
    // it will be (and it is checked again, as it is, by the caller).
    let ours = Meta {
        uid: me,
        ..*parent_meta
    };
    check_step(parent.path(), parent_meta, name, &ours, me)?;
    let made = match parent.mkdir(name, 0o700) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(format!("cannot create `{}`: {e}", path.display())),
    };
    let dir = parent
        .open_dir(name)
        .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    if made {
        // The umask may have taken bits away; private is exactly 0700.
        dir.set_mode(0o700)
            .map_err(|e| format!("cannot set permissions of `{}`: {e}", path.display()))?;
    }
    Ok(dir)
}

/// Whether stepping from directory `dir` (with `meta`) into `child` is safe.
fn check_step(
    dir: &Path,
    meta: &Meta,
    child: &OsStr,
    child_meta: &Meta,
    me: u32,
) -> std::result::Result<(), String> {
    check_parent(dir, meta, child, me)?;
    let Some(who) = writers(meta, me) else {
        return Ok(());
    };
    // Sticky (`check_parent` refused the rest): the entry must be root's or ours.
    if child_meta.uid == 0 || child_meta.uid == me {
        return Ok(());
    }
    Err(format!(
        "`{}` is writable by {who} (mode {:o}), and `{}` in it is not yours: another user could \
         replace `{}` in it",
        dir.display(),
        meta.mode,
        child.to_string_lossy(),
        Path::new(dir).join(child).display()
    ))
}

/// What the directory `dir` must be before its entry `child` is even looked at: root's or
/// ours, and writable by nobody else unless it is sticky (then [`check_step`] checks the
/// entry's owner once it is opened). Checked first, a refusal does not depend on what another
/// user is doing to the entry at that moment.
fn check_parent(
    dir: &Path,
    meta: &Meta,
    child: &OsStr,
    me: u32,
) -> std::result::Result<(), String> {
    if meta.uid != 0 && meta.uid != me {
        return Err(format!(
            "`{}` is owned by uid {}, neither you (uid {me}) nor root: its owner could replace \
             what lies below it",
            dir.display(),
            meta.uid
        ));
    }
    match writers(meta, me) {
        Some(who) if meta.mode & 0o1000 == 0 => Err(format!(
            "`{}` is writable by {who} (mode {:o}): another user could replace `{}` in it",
            dir.display(),
            meta.mode,
            Path::new(dir).join(child).display()
        )),
        _ => Ok(()),
    }
}

/// The root itself must be ours (and is then made private if it is not).
fn check_root(meta: &Meta, me: u32) -> std::result::Result<(), String> {
    if meta.uid != me {
        return Err(format!(
            "it is owned by uid {}, not by you (uid {me})",
            meta.uid
        ));
    }
    Ok(())
}

/// Who besides the owner may write to a directory: `None`, "all users" or "group <gid>".
/// A group whose only member is us counts as nobody.
fn writers(meta: &Meta, me: u32) -> Option<String> {
    if meta.mode & 0o002 != 0 {
        return Some("all users".into());
    }
    if meta.mode & 0o020 != 0 && !group_is_only(meta.gid, me) {
        return Some(format!("group {}", meta.gid));
    }
    None
}

/// Whether `uid` is the one and only member of group `gid`: its primary group or a listed
/// member, no other listed member, and no other user in `/etc/passwd` with it as primary
/// group. (Users known only to a network directory are not enumerated, as `pam_umask`'s
/// user-private-group convention assumes too.)
#[cfg(unix)]
fn group_is_only(gid: u32, uid: u32) -> bool {
    // Asked at every start for each group-writable directory on the way (a `umask 002` home):
    // the answer is kept for the life of the process.
    static KNOWN: std::sync::Mutex<Vec<((u32, u32), bool)>> = std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, answer)) = known.iter().find(|(key, _)| *key == (gid, uid)) {
        return *answer;
    }
    let answer = ask_group_is_only(gid, uid);
    known.push(((gid, uid), answer));
    answer
}

#[cfg(unix)]
fn ask_group_is_only(gid: u32, uid: u32) -> bool {
    let Some((name, primary)) = users::user(uid) else {
        return false;
    };
    let Some(members) = users::members(gid) else {
        return false;
    };
    if members.iter().any(|m| *m != name) {
        return false;
    }
    if primary != gid && members.is_empty() {
        return false;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    !passwd.lines().any(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        fields.len() > 3
            && fields[3].parse::<u32>() == Ok(gid)
            && fields[2].parse::<u32>() != Ok(uid)
    })
}

#[cfg(not(unix))]
fn group_is_only(_gid: u32, _uid: u32) -> bool {
    false
}

/// The user and group database through libc (so NSS sources answer too).
#[cfg(unix)]
mod users {
    use std::ffi::CStr;

    /// Calls a `get*_r` function with a growing buffer.
    fn with_buffer<T>(
        mut call: impl FnMut(&mut [libc::c_char]) -> Result<Option<T>, i32>,
    ) -> Option<T> {
        let mut size = 1024;
        loop {
            let mut buf = vec![0 as libc::c_char; size];
            match call(&mut buf) {
                Ok(found) => return found,
                Err(libc::ERANGE) if size < (1 << 20) => size *= 4,
                Err(_) => return None,
            }
        }
    }

    /// A user's name and primary group.
    pub(super) fn user(uid: u32) -> Option<(Vec<u8>, u32)> {
        with_buffer(|buf| {
            // SAFETY: passwd is plain data; getpwuid_r writes into it and `buf` only, and
            // `result` points at `pw` or is null when there is no such user.
            let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc =
                unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
            if rc != 0 {
                return Err(rc);
            }
            if result.is_null() || pw.pw_name.is_null() {
                return Ok(None);
            }
            // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
            let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_bytes().to_vec();
            Ok(Some((name, pw.pw_gid)))
        })
    }

    /// The listed (supplementary) members of a group.
    pub(super) fn members(gid: u32) -> Option<Vec<Vec<u8>>> {
        with_buffer(|buf| {
            // SAFETY: as in `user`; gr_mem is a null-terminated array of pointers into `buf`.
            let mut gr: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc =
                unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut result) };
            if rc != 0 {
                return Err(rc);
            }
            if result.is_null() {
                return Ok(None);
            }
            let mut out = Vec::new();
            let mut at = gr.gr_mem;
            // SAFETY: gr_mem ends with a null pointer; each entry is a C string in `buf`.
            unsafe {
                while !at.is_null() && !(*at).is_null() {
                    out.push(CStr::from_ptr(*at).to_bytes().to_vec());
                    at = at.add(1);
                }
            }
            Ok(Some(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, mode: u32) -> Meta {
        Meta {
            kind: Kind::Dir,
            uid,
            gid: 4242,
            mode,
            dev: 0,
            ino: 0,
            nlink: 1,
            len: 0,
            ctime: (0, 0),
        }
    }

    #[test]
    fn steps() {
        let me = 1000;
        let p = Path::new("/x");
        let c = OsStr::new("c");
        assert!(check_step(p, &meta(0, 0o755), c, &meta(me, 0o700), me).is_ok());
        assert!(check_step(p, &meta(me, 0o700), c, &meta(me, 0o700), me).is_ok());
        let err = check_step(p, &meta(1001, 0o755), c, &meta(me, 0o700), me).unwrap_err();
        assert!(err.contains("owned by uid 1001"), "{err}");
        // /tmp: sticky, world-writable; only our (or root's) entries are safe in it.
        assert!(check_step(p, &meta(0, 0o1777), c, &meta(me, 0o700), me).is_ok());
        let err = check_step(p, &meta(0, 0o1777), c, &meta(1001, 0o700), me).unwrap_err();
        assert!(err.contains("not yours"), "{err}");
        let err = check_step(p, &meta(me, 0o777), c, &meta(me, 0o700), me).unwrap_err();
        assert!(err.contains("all users"), "{err}");
        assert!(check_root(&meta(me, 0o700), me).is_ok());
        assert!(check_root(&meta(0, 0o700), me).is_err());
    }

    #[test]
    fn walks_symlinks_and_dot_dot() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        let dir = open_root(&tmp.path().join("link/../link/new/cache"), true).unwrap();
        assert_eq!(dir.meta().unwrap().ino, {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(real.join("new/cache")).unwrap().ino()
        });
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(real.join("new"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // Without `create`, a missing root is an error, and nothing is made.
        assert!(open_root(&tmp.path().join("real/other"), false).is_err());
        assert!(!real.join("other").exists());
    }

    #[test]
    fn a_root_others_may_write_to_is_made_private_unless_it_is_sticky() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for (name, given, kept) in [("open", 0o777, 0o755), ("sticky", 0o1777, 0o1777)] {
            let root = tmp.path().join(name);
            std::fs::create_dir(&root).unwrap();
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(given)).unwrap();
            open_root(&root, false).unwrap();
            assert_eq!(mode_of(&root), kept, "{name}: {:o}", mode_of(&root));
        }
    }
}
