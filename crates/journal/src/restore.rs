//! Undoing changes: each path put back exactly as it was (content, mode, link target,
//! existence), only where it is still as the change left it.
//!
//! Every write goes through a descriptor of the path's parent reached from the root one
//! component at a time with no link followed ([`crate::tree`]): a directory of the tree
//! replaced by a link to elsewhere makes that path's undo fail, never write outside the tree. Contents are written to a new file beside the path and renamed over it.

use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use serde::Serialize;

use crate::blobs::Blobs;
use crate::diff::{Change, ChangeKind};
use crate::snapshot::{Entry, EntryKind};

/// A path not undone because it is no longer as the change left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The path.
    pub path: String,
    /// What was expected and what is there.
    pub reason: String,
}

/// What an undo did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Undone {
    /// The changes the undo made, as changes (undoing them redoes what was undone).
    pub changes: Vec<Change>,
    /// For each of [`Undone::changes`], the index of the change it undid in the list given.
    pub undid: Vec<usize>,
    /// Paths left as they are: changed since, or not undoable.
    pub conflicts: Vec<Conflict>,
}

use crate::tree::{parent, Root};

/// The largest file whose content an undo or a path-by-path journal reads.
const MAX_READ: u64 = 1 << 30;

/// Which files' contents are read (hashed or kept): others are described by their metadata.
#[derive(Clone, Copy)]
pub(crate) enum Read<'a> {
    /// Only files of these sizes (what they are compared with).
    Sizes(&'a [u64]),
    /// Every file, hashed, nothing kept.
    Any,
    /// Every file up to this size that is not sparse, kept in the store.
    Keep(&'a Blobs, u64),
}

/// What is at `rel` below `root` now, every file's content up to a size kept in `blobs`
/// (larger ones are [`EntryKind::Unknown`]).
pub(crate) fn read_entry(
    root: &Root,
    rel: &str,
    blobs: &Blobs,
    max: u64,
) -> io::Result<Option<Entry>> {
    current_with(root.fd(), rel, Read::Keep(blobs, max.min(MAX_READ)))
}

/// What is at `rel` now, compared as the snapshot compares: kind, content (read only for
/// a file of one of the sizes `sizes`: nothing else can match), target, mode.
fn current(root: &OwnedFd, rel: &str, sizes: &[u64]) -> io::Result<Option<Entry>> {
    current_with(root, rel, Read::Sizes(sizes))
}

fn current_with(root: &OwnedFd, rel: &str, read: Read<'_>) -> io::Result<Option<Entry>> {
    // A parent that is gone, or is no directory now: nothing is at `rel`.
    let (dir, name) = match parent(root, rel) {
        Ok(found) => found,
        Err(err)
            if err.kind() == io::ErrorKind::NotFound
                || err.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            return Ok(None)
        }
        Err(err) => return Err(err),
    };
    entry_at(&dir, name, read)
}

/// What `name` of the directory `dir` is now, its content read as `read` says (no link
/// followed, no wait on a FIFO, no more read than its size).
pub(crate) fn entry_at(dir: &OwnedFd, name: &str, read: Read<'_>) -> io::Result<Option<Entry>> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let mut entry = crate::snapshot::entry_from_stat(&stat);
    match entry.kind {
        EntryKind::File => {
            let wanted = match read {
                Read::Sizes(sizes) => sizes.contains(&entry.size),
                Read::Any => true,
                Read::Keep(_, max) => entry.size <= max && !crate::snapshot::is_sparse(&stat),
            };
            if !wanted {
                if let Read::Keep(..) = read {
                    entry.kind = EntryKind::Unknown;
                }
                return Ok(Some(entry));
            }
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let limit = entry.size;
            let reader = std::io::Read::take(std::fs::File::from(fd), limit + 1);
            let (digest, _) = match read {
                Read::Keep(blobs, _) => blobs.put_reader(reader)?,
                Read::Sizes(_) | Read::Any => Blobs::hash_reader(reader)?,
            };
            entry.digest = Some(digest);
        }
        EntryKind::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
            entry.target = Some(target.to_string_lossy().into_owned());
        }
        EntryKind::Dir | EntryKind::Other | EntryKind::Unknown => {}
    }
    Ok(Some(entry))
}

/// Whether what is there is what `expected` describes (as far as an undo cares).
fn matches(found: Option<&Entry>, expected: Option<&Entry>) -> bool {
    match (found, expected) {
        (None, None) => true,
        // A file whose content was not kept: the same file as far as its metadata tells.
        (Some(f), Some(e)) if e.kind == EntryKind::Unknown => {
            matches!(f.kind, EntryKind::File | EntryKind::Unknown)
                && (f.size, f.mtime_ns, f.ino, f.dev, f.mode)
                    == (e.size, e.mtime_ns, e.ino, e.dev, e.mode)
        }
        (Some(f), Some(e)) => {
            f.kind == e.kind && f.digest == e.digest && f.target == e.target && f.mode == e.mode
        }
        _ => false,
    }
}

/// The sizes of files an undo compares what it finds with.
fn sizes(entries: &[Option<&Entry>]) -> Vec<u64> {
    entries
        .iter()
        .flatten()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.size)
        .collect()
}

fn describe(entry: Option<&Entry>) -> String {
    match entry {
        None => "nothing".into(),
        Some(e) => match e.kind {
            EntryKind::File => format!(
                "a file {} (mode {:o})",
                e.digest.as_deref().map_or("?", |d| &d[..12.min(d.len())]),
                e.mode
            ),
            EntryKind::Dir => format!("a directory (mode {:o})", e.mode),
            EntryKind::Symlink => format!("a link to `{}`", e.target.as_deref().unwrap_or("?")),
            EntryKind::Other => "a special file".into(),
            EntryKind::Unknown => format!("a file of {} bytes whose content was not kept", e.size),
        },
    }
}

/// Removes what is at `rel`.
fn remove(root: &OwnedFd, rel: &str, kind: EntryKind) -> io::Result<()> {
    let (dir, name) = parent(root, rel)?;
    let flags = if kind == EntryKind::Dir {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    Ok(rustix::fs::unlinkat(&dir, name, flags)?)
}

/// Puts `entry` at `rel`, replacing what is there (a file by rename, so a reader sees the
/// old content or the new).
fn put(root: &OwnedFd, rel: &str, entry: &Entry, blobs: &Blobs) -> io::Result<()> {
    let (dir, name) = parent(root, rel)?;
    let mode = Mode::from_raw_mode(safe_mode(entry.mode));
    match entry.kind {
        EntryKind::File => {
            let digest = entry
                .digest
                .as_deref()
                .ok_or_else(|| io::Error::other("no content was kept for this file"))?;
            let bytes = blobs.get(digest)?;
            // One name, not one a process: an undo killed between writing it and renaming it
            // leaves it behind, and the next undo (holding the journal's lock, so alone)
            // removes it before writing its own.
            let temp = format!(".{name}.cordon-undo");
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            let fd = rustix::fs::openat(
                &dir,
                temp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut file = std::fs::File::from(fd);
            let written = file
                .write_all(&bytes)
                .and_then(|()| owner(&file, entry))
                .and_then(|()| rustix::fs::fchmod(&file, mode).map_err(io::Error::from))
                .and_then(|()| file.sync_all())
                .and_then(|()| {
                    rustix::fs::renameat(&dir, temp.as_str(), &dir, name).map_err(io::Error::from)
                });
            if written.is_err() {
                let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            }
            written
        }
        EntryKind::Dir => {
            match rustix::fs::mkdirat(&dir, name, mode) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(err) => return Err(err.into()),
            }
            // The mode exactly (mkdir's is masked by the umask), on the directory made.
            let fd = rustix::fs::openat(
                &dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            owner(&fd, entry)?;
            Ok(rustix::fs::fchmod(&fd, mode)?)
        }
        EntryKind::Symlink => {
            let target = entry.target.as_deref().unwrap_or_default();
            match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(err) => return Err(err.into()),
            }
            Ok(rustix::fs::symlinkat(target, &dir, name)?)
        }
        EntryKind::Other => Err(io::Error::other("a FIFO, socket or device is not put back")),
        EntryKind::Unknown => Err(io::Error::other(
            "its content was not kept (too large, sparse or unreadable when it was taken)",
        )),
    }
}

/// Gives what `fd` opened back to `entry`'s owner and group, when cordon may (as root);
/// otherwise what is put back is the person's own, as everything they make.
fn owner(fd: &impl std::os::fd::AsFd, entry: &Entry) -> io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    // The ids come from a stat of the same tree; `fchown` follows nothing.
    let uid = rustix::fs::Uid::from_raw(entry.uid);
    let gid = rustix::fs::Gid::from_raw(entry.gid);
    Ok(rustix::fs::fchown(fd, Some(uid), Some(gid))?)
}

/// `mode` without its set-user-id and set-group-id bits: an undo never makes a program that
/// runs with its owner's rights (a before-image is what a program in an earlier session may
/// have left).
fn safe_mode(mode: u32) -> u32 {
    mode & 0o1777
}

/// Sets the mode of what is at `rel`, a file or a directory, without following a link and
/// without opening it for reading (a file made unreadable still gets its mode back).
fn chmod(root: &OwnedFd, rel: &str, mode: u32) -> io::Result<()> {
    let (dir, name) = parent(root, rel)?;
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    if crate::snapshot::entry_from_stat(&stat).kind == EntryKind::Symlink {
        return Err(io::Error::other("a link has no mode of its own"));
    }
    // The descriptor's own entry in /proc names exactly the inode opened.
    let by_fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    Ok(rustix::fs::chmod(
        by_fd.as_str(),
        Mode::from_raw_mode(safe_mode(mode)),
    )?)
}

/// Undoes `changes` in the tree at `root`, in an order that lets each find its place. A path that is no longer as its change
/// left it is a conflict and stays as it is, unless `force`; nothing is ever written outside
/// the tree.
///
/// # Errors
///
/// When the root cannot be opened, or the store cannot be read or written; the changes
/// undone before then are in place (and in no returned list).
pub fn undo(root: &Path, blobs: &Blobs, changes: &[Change], force: bool) -> io::Result<Undone> {
    undo_in(&Root::open(root)?, blobs, changes, force)
}

/// [`undo`] in a root already open (and checked to be the tree the changes were made in).
///
/// # Errors
///
/// As [`undo`].
pub fn undo_in(root: &Root, blobs: &Blobs, changes: &[Change], force: bool) -> io::Result<Undone> {
    let root_fd = root.fd();
    let mut done = Undone::default();
    for (index, change) in order(changes) {
        let conflict = |done: &mut Undone, path: &str, reason: String| {
            done.conflicts.push(Conflict {
                path: path.to_owned(),
                reason,
            });
        };
        // Where the change left things, and what must be put back.
        let (at, left, back) = match change.kind {
            ChangeKind::Rename => (
                change.to.clone().unwrap_or_default(),
                change.after.as_ref(),
                change.before.as_ref(),
            ),
            _ => (
                change.path.clone(),
                change.after.as_ref(),
                change.before.as_ref(),
            ),
        };
        let sizes = sizes(&[left, back]);
        let found = match current(root_fd, &at, &sizes) {
            Ok(found) => found,
            Err(err) if crate::blobs::is_store_failure(&err) => return Err(err),
            Err(err) => {
                conflict(&mut done, &at, format!("cannot be read: {err}"));
                continue;
            }
        };
        // Already as it was (an undo interrupted after this path was put back): done.
        let already = match change.kind {
            ChangeKind::Rename => {
                found.is_none()
                    && current(root_fd, &change.path, &sizes)
                        .is_ok_and(|f| matches(f.as_ref(), back))
            }
            _ => matches(found.as_ref(), back),
        };
        if already {
            done.changes.push(inverse(change));
            done.undid.push(index);
            continue;
        }
        // What cannot be put back is never taken away first: a before-image whose content
        // was not kept (too large, sparse, unreadable) or a FIFO, socket or device.
        let unrestorable = matches!(change.kind, ChangeKind::Delete | ChangeKind::Modify)
            && back.is_some_and(|b| matches!(b.kind, EntryKind::Unknown | EntryKind::Other));
        if unrestorable {
            conflict(
                &mut done,
                &at,
                format!(
                    "cannot be put back: {} was there, and its content was not kept",
                    describe(back)
                ),
            );
            continue;
        }
        if !force && !matches(found.as_ref(), left) {
            conflict(
                &mut done,
                &at,
                format!(
                    "changed since: {} expected, {} found",
                    describe(left),
                    describe(found.as_ref())
                ),
            );
            continue;
        }
        let result = match change.kind {
            ChangeKind::Create => found
                .as_ref()
                .map_or(Ok(()), |f| remove(root_fd, &at, f.kind)),
            ChangeKind::Delete | ChangeKind::Modify => {
                let removed_other_kind = match (&found, back) {
                    (Some(f), Some(b)) if f.kind != b.kind => remove(root_fd, &at, f.kind),
                    _ => Ok(()),
                };
                removed_other_kind.and_then(|()| match back {
                    Some(back) => put(root_fd, &at, back, blobs),
                    None => Ok(()),
                })
            }
            ChangeKind::Mode => match back {
                Some(back) => chmod(root_fd, &at, back.mode),
                None => Ok(()),
            },
            ChangeKind::Rename => {
                match current(root_fd, &change.path, &[]) {
                    Ok(None) => {}
                    Ok(Some(_)) if force => {}
                    Ok(Some(_)) => {
                        conflict(&mut done, &change.path, "something is there now".into());
                        continue;
                    }
                    Err(err) => {
                        conflict(&mut done, &change.path, format!("cannot be read: {err}"));
                        continue;
                    }
                }
                // Never over something that appeared meanwhile, unless forced.
                let flags = if force {
                    rustix::fs::RenameFlags::empty()
                } else {
                    rustix::fs::RenameFlags::NOREPLACE
                };
                parent(root_fd, &at).and_then(|(from_dir, from_name)| {
                    let (to_dir, to_name) = parent(root_fd, &change.path)?;
                    Ok(rustix::fs::renameat_with(
                        &from_dir, from_name, &to_dir, to_name, flags,
                    )?)
                })
            }
        };
        match result {
            Ok(()) => {
                done.changes.push(inverse(change));
                done.undid.push(index);
            }
            Err(err) if crate::blobs::is_store_failure(&err) => return Err(err),
            Err(err) => conflict(&mut done, &at, format!("cannot be put back: {err}")),
        }
    }
    Ok(done)
}

/// The order that lets every undo find its place: deleted directories made again (parents
/// first), renames moved back, contents and modes put back, deleted files made again, then
/// created files removed and created directories removed (children first).
fn order(changes: &[Change]) -> Vec<(usize, &Change)> {
    let is_dir = |e: Option<&Entry>| e.is_some_and(|e| e.kind == EntryKind::Dir);
    let phase = |c: &Change| match c.kind {
        // Directories put back before what goes in them.
        ChangeKind::Delete | ChangeKind::Modify if is_dir(c.before.as_ref()) => 0,
        ChangeKind::Rename => 1,
        // A directory that replaced a file goes once what was made in it is gone.
        ChangeKind::Modify if is_dir(c.after.as_ref()) => 6,
        ChangeKind::Modify | ChangeKind::Mode => 2,
        ChangeKind::Delete => 3,
        ChangeKind::Create if !is_dir(c.after.as_ref()) => 4,
        ChangeKind::Create => 5,
    };
    let mut ordered: Vec<(usize, &Change)> = changes.iter().enumerate().collect();
    ordered.sort_by(|(_, a), (_, b)| {
        phase(a).cmp(&phase(b)).then_with(|| {
            if phase(a) >= 5 {
                b.path.cmp(&a.path)
            } else {
                a.path.cmp(&b.path)
            }
        })
    });
    ordered
}

/// The change that undoing `change` makes.
fn inverse(change: &Change) -> Change {
    let kind = match change.kind {
        ChangeKind::Create => ChangeKind::Delete,
        ChangeKind::Delete => ChangeKind::Create,
        other => other,
    };
    let (path, to) = match change.kind {
        ChangeKind::Rename => (
            change.to.clone().unwrap_or_default(),
            Some(change.path.clone()),
        ),
        _ => (change.path.clone(), None),
    };
    Change {
        kind,
        path,
        to,
        before: change.after.clone(),
        after: change.before.clone(),
    }
}
