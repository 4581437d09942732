//! Staged writes: what a session wrote into an overlay's upper directory, listed, and applied
//! to the tree beneath it.
//!
//! The upper directory is overlayfs's (mounted with `userxattr`): a file or link there
//! replaces the tree's, a character device 0/0 (a whiteout) deletes the tree's path, and a
//! directory marked `user.overlay.opaque` hides everything the tree had in it. The program
//! that wrote it is untrusted: it is walked by descriptors without following links, and every
//! write to the tree goes through a parent opened beneath the tree's root.

use std::collections::BTreeSet;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::Serialize;

use crate::restore::{entry_at, Conflict, Read};
use crate::snapshot::{Entry, EntryKind, Manifest};
use crate::tree::{join, open_dir_at, parent, Root};

/// What a staged path does to the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StagedKind {
    /// A file, link or directory written (created or replaced).
    Write,
    /// The path deleted.
    Delete,
    /// A directory whose earlier content is hidden (deleted) but for what the stage holds.
    Replace,
}

/// One staged path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Staged {
    /// The path, relative to the tree.
    pub path: String,
    /// What it does.
    pub kind: StagedKind,
}

/// What an application did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The paths applied.
    pub applied: Vec<Staged>,
    /// The paths not applied, and why.
    pub conflicts: Vec<Conflict>,
}

/// At most this many directories deep.
const MAX_DEPTH: usize = 256;

fn is_whiteout(stat: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode as _) == FileType::CharacterDevice && stat.st_rdev == 0
}

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut value = [0u8; 4];
    matches!(
        rustix::fs::fgetxattr(dir, "user.overlay.opaque", &mut value),
        Ok(n) if value.get(..n) == Some(b"y")
    )
}

fn names(dir: &OwnedFd) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for item in rustix::fs::Dir::read_from(dir)? {
        let item = item?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        // A name that is not UTF-8 is shown replaced; applying it is refused.
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    out.sort();
    Ok(out)
}

/// Every path the stage at `upper` changes, parents before children.
///
/// # Errors
///
/// When `upper` cannot be read.
pub fn staged(upper: &Path) -> io::Result<Vec<Staged>> {
    let root = rustix::fs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    list(&root, "", 0, &mut out)?;
    Ok(out)
}

fn list(dir: &OwnedFd, rel: &str, depth: usize, out: &mut Vec<Staged>) -> io::Result<()> {
    for name in names(dir)? {
        let path = join(rel, &name);
        let Ok(stat) = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            // A name that is not UTF-8 (shown replaced): listed, and refused when applied.
            out.push(Staged {
                path,
                kind: StagedKind::Write,
            });
            continue;
        };
        if is_whiteout(&stat) {
            out.push(Staged {
                path,
                kind: StagedKind::Delete,
            });
            continue;
        }
        if FileType::from_raw_mode(stat.st_mode as _) == FileType::Directory {
            let sub = open_dir_at(dir, &name)?;
            let kind = if is_opaque(&sub) {
                StagedKind::Replace
            } else {
                StagedKind::Write
            };
            out.push(Staged {
                path: path.clone(),
                kind,
            });
            if depth < MAX_DEPTH {
                list(&sub, &path, depth + 1, out)?;
            }
            continue;
        }
        out.push(Staged {
            path,
            kind: StagedKind::Write,
        });
    }
    Ok(())
}

/// Removes `name` of `dir`, a whole tree if it is a directory, never following a link.
fn remove_tree(dir: &OwnedFd, name: &str, depth: usize) -> io::Result<()> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    if FileType::from_raw_mode(stat.st_mode as _) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    if depth >= MAX_DEPTH {
        return Err(io::Error::other("too deep to remove"));
    }
    let sub = open_dir_at(dir, name)?;
    for child in names(&sub)? {
        remove_tree(&sub, &child, depth + 1)?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Whether the tree's path is still as the session found it (so that applying the stage
/// replaces nothing someone else wrote during the run).
fn unchanged(now: Option<&Entry>, baseline: Option<&Entry>) -> bool {
    match (now, baseline) {
        (None, None) => true,
        // A file whose content was not kept: the same as far as its metadata tells.
        (Some(n), Some(b)) if b.kind == EntryKind::Unknown => {
            matches!(n.kind, EntryKind::File | EntryKind::Unknown)
                && (n.size, n.mtime_ns, n.ino) == (b.size, b.mtime_ns, b.ino)
        }
        (Some(n), Some(b)) => {
            n.kind == b.kind
                && (n.kind == EntryKind::Dir || (n.digest == b.digest && n.target == b.target))
        }
        _ => false,
    }
}

/// Applies the stage at `upper` to the tree at `root`. `baseline` is the tree as the
/// session found it: a path changed there since is a conflict and left as it is, unless
/// `force`. Paths in `skip` (and below them) are never applied (protected paths).
///
/// # Errors
///
/// When `upper` or `root` cannot be opened. A single path that cannot be applied is a
/// conflict.
pub fn apply(
    upper: &Path,
    root: &Root,
    baseline: &Manifest,
    rules: &ApplyRules<'_>,
    force: bool,
) -> io::Result<Applied> {
    let upper_fd = rustix::fs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut walk = ApplyWalk {
        root,
        upper,
        baseline,
        rules,
        force,
        out: Applied::default(),
    };
    walk.dir(&upper_fd, "", 0);
    Ok(walk.out)
}

/// Whether `rel` is one of `paths` or below one.
fn under(paths: &[String], rel: &str) -> bool {
    crate::tree::self_and_ancestors(rel).any(|at| paths.iter().any(|p| p == at))
}

/// What a stage may not bring into a tree, whatever `force` says.
pub struct ApplyRules<'a> {
    /// Paths never applied (protected paths), relative to the tree.
    pub skip: &'a [String],
    /// Files larger than this are not applied (nor sparse ones: copied, they would grow to
    /// their full size).
    pub max_file: u64,
    /// Asked about each path the tree did not have (with the stage's copy): a refusal
    /// keeps it out (a repository whose configuration runs commands, say).
    pub vet: &'a dyn Fn(&Path) -> Result<(), String>,
}

impl std::fmt::Debug for ApplyRules<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyRules")
            .field("skip", &self.skip)
            .field("max_file", &self.max_file)
            .finish_non_exhaustive()
    }
}

/// At most this many paths below a directory the stage removes are compared first.
const MAX_REMOVED: usize = 100_000;

struct ApplyWalk<'a> {
    root: &'a Root,
    upper: &'a Path,
    baseline: &'a Manifest,
    rules: &'a ApplyRules<'a>,
    force: bool,
    out: Applied,
}

impl ApplyWalk<'_> {
    fn conflict(&mut self, path: &str, reason: impl Into<String>) {
        self.out.conflicts.push(Conflict {
            path: path.to_owned(),
            reason: reason.into(),
        });
    }

    fn skipped(&self, rel: &str) -> bool {
        under(self.rules.skip, rel)
    }

    /// Whether everything below the tree's directory `rel` is as the session found it:
    /// removing it then removes nothing anyone wrote since.
    fn subtree_unchanged(&mut self, rel: &str) -> bool {
        let below = match crate::tree::descendants(self.root, rel, MAX_REMOVED) {
            Ok(below) => below,
            Err(err) => {
                self.conflict(rel, format!("what is in it cannot be compared: {err}"));
                return false;
            }
        };
        for path in below {
            let found = crate::tree::parent(self.root.fd(), &path).and_then(|(dir, name)| {
                Ok(rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
            });
            // What could not be kept is never removed, forced or not: nothing could put it
            // back.
            if let Ok(stat) = &found {
                if self.unkeepable(stat) {
                    self.conflict(
                        rel,
                        format!("`{path}` in it is too large (or sparse) to keep: the directory is not removed"),
                    );
                    return false;
                }
            }
            if self.force {
                continue;
            }
            let same = match (found, self.baseline.entries.get(&path)) {
                (Ok(stat), Some(old)) => {
                    let now = crate::snapshot::entry_from_stat(&stat);
                    let kind_same = now.kind == old.kind
                        || (now.kind == EntryKind::File && old.kind == EntryKind::Unknown);
                    kind_same
                        && (now.kind == EntryKind::Dir
                            || (now.size, now.mtime_ns, now.ino)
                                == (old.size, old.mtime_ns, old.ino))
                }
                _ => false,
            };
            if !same {
                self.conflict(
                    rel,
                    format!("`{path}` in it changed in the tree during the run: the directory is not removed"),
                );
                return false;
            }
        }
        true
    }

    /// Whether the tree's file `stat` describes is one whose content the journal would not
    /// keep (so what replaced or removed it could not be undone).
    fn unkeepable(&self, stat: &rustix::fs::Stat) -> bool {
        FileType::from_raw_mode(stat.st_mode as _) == FileType::RegularFile
            && (u64::try_from(stat.st_size).unwrap_or(u64::MAX) > self.rules.max_file
                || crate::snapshot::is_sparse(stat))
    }

    /// Whether the stage's `rel`, which the tree did not have, may come in.
    fn vetted(&mut self, rel: &str, kind: EntryKind) -> bool {
        let known = self
            .baseline
            .entries
            .get(rel)
            .is_some_and(|old| old.kind == kind);
        if known {
            return true;
        }
        match (self.rules.vet)(&self.upper.join(rel)) {
            Ok(()) => true,
            Err(why) => {
                self.conflict(rel, why);
                false
            }
        }
    }

    /// Whether `rel` may be replaced: as the session found it, or forced. `wanted` is what
    /// the stage puts there: a path already so (an application interrupted after it) is
    /// replaced again, which changes nothing.
    fn may_replace(
        &mut self,
        dir: &OwnedFd,
        name: &str,
        rel: &str,
        wanted: Option<&Entry>,
    ) -> bool {
        // What is there and could not be kept is never replaced, forced or not.
        if let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if self.unkeepable(&stat) {
                self.conflict(
                    rel,
                    "too large (or sparse) to keep a before-image of: not replaced",
                );
                return false;
            }
        }
        if self.force {
            return true;
        }
        if under(&self.baseline.unknown, rel) {
            self.conflict(
                rel,
                "what the tree held there could not be read at the start",
            );
            return false;
        }
        // An ignored tree (`target/`) is written as a live session writes it: not journaled.
        if under(&self.baseline.left_out, rel) {
            return true;
        }
        let sizes: Vec<u64> = [self.baseline.entries.get(rel), wanted]
            .into_iter()
            .flatten()
            .map(|e| e.size)
            .collect();
        let now = match entry_at(dir, name, Read::Sizes(&sizes)) {
            Ok(now) => now,
            Err(err) => {
                self.conflict(rel, format!("cannot be read: {err}"));
                return false;
            }
        };
        if unchanged(now.as_ref(), self.baseline.entries.get(rel))
            || unchanged(now.as_ref(), wanted)
        {
            return true;
        }
        self.conflict(rel, "changed in the tree during the run");
        false
    }

    fn dir(&mut self, upper: &OwnedFd, rel: &str, depth: usize) {
        let names = match names(upper) {
            Ok(names) => names,
            Err(err) => {
                self.conflict(rel, format!("the stage cannot be read: {err}"));
                return;
            }
        };
        for name in names {
            let path = join(rel, &name);
            if self.skipped(&path) {
                self.conflict(&path, "a protected path: not applied");
                continue;
            }
            if let Err(err) = self.one(upper, &name, &path, depth) {
                self.conflict(&path, format!("cannot be applied: {err}"));
            }
        }
    }

    fn one(&mut self, upper: &OwnedFd, name: &str, rel: &str, depth: usize) -> io::Result<()> {
        let stat = rustix::fs::statat(upper, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let (dir, last) = parent(self.root.fd(), rel)?;
        if is_whiteout(&stat) {
            if !self.may_replace(&dir, last, rel, None) || !self.clear_dir(&dir, last, rel)? {
                return Ok(());
            }
            remove_tree(&dir, last, 0)?;
            self.out.applied.push(Staged {
                path: rel.to_owned(),
                kind: StagedKind::Delete,
            });
            return Ok(());
        }
        let mode = Mode::from_raw_mode((stat.st_mode as u32) & 0o1777);
        match FileType::from_raw_mode(stat.st_mode as _) {
            FileType::Directory => {
                if !self.vetted(rel, EntryKind::Dir) {
                    return Ok(());
                }
                let sub = open_dir_at(upper, name)?;
                let opaque = is_opaque(&sub);
                let now = entry_at(&dir, last, Read::Sizes(&[]))?;
                if now.as_ref().is_some_and(|n| n.kind != EntryKind::Dir) {
                    if !self.may_replace(&dir, last, rel, None) {
                        return Ok(());
                    }
                    rustix::fs::unlinkat(&dir, last, AtFlags::empty())?;
                }
                if opaque && now.as_ref().is_some_and(|n| n.kind == EntryKind::Dir) {
                    // Everything the tree had there is gone but what the stage holds.
                    if !self.may_replace(&dir, last, rel, None) || !self.subtree_unchanged(rel) {
                        return Ok(());
                    }
                    let target = open_dir_at(&dir, last)?;
                    let keep: BTreeSet<String> = names(&sub)?.into_iter().collect();
                    for child in names(&target)? {
                        if !keep.contains(&child) {
                            remove_tree(&target, &child, 0)?;
                        }
                    }
                }
                match rustix::fs::mkdirat(&dir, last, mode) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(err) => return Err(err.into()),
                }
                let target = open_dir_at(&dir, last)?;
                rustix::fs::fchmod(&target, mode)?;
                self.out.applied.push(Staged {
                    path: rel.to_owned(),
                    kind: if opaque {
                        StagedKind::Replace
                    } else {
                        StagedKind::Write
                    },
                });
                if depth < MAX_DEPTH {
                    self.dir(&sub, rel, depth + 1);
                } else {
                    self.conflict(rel, "too deep");
                }
                Ok(())
            }
            FileType::RegularFile => {
                if !self.vetted(rel, EntryKind::File) {
                    return Ok(());
                }
                let size = u64::try_from(stat.st_size).unwrap_or(0);
                if size > self.rules.max_file || crate::snapshot::is_sparse(&stat) {
                    self.conflict(
                        rel,
                        format!("{size} bytes, too large (or sparse) to apply: not applied"),
                    );
                    return Ok(());
                }
                let wanted = entry_at(upper, name, Read::Any)?;
                if !self.may_replace(&dir, last, rel, wanted.as_ref())
                    || !self.clear_dir(&dir, last, rel)?
                {
                    return Ok(());
                }
                let source = rustix::fs::openat(
                    upper,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let temp = format!(".{last}.cordon-apply.{}", std::process::id());
                let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
                let fd = rustix::fs::openat(
                    &dir,
                    temp.as_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut file = std::fs::File::from(fd);
                let written = io::copy(
                    &mut std::io::Read::take(std::fs::File::from(source), size),
                    &mut file,
                )
                .and_then(|_| file.flush())
                .and_then(|()| rustix::fs::fchmod(&file, mode).map_err(io::Error::from))
                .and_then(|()| file.sync_all())
                .and_then(|()| {
                    rustix::fs::renameat(&dir, temp.as_str(), &dir, last).map_err(io::Error::from)
                });
                if written.is_err() {
                    let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
                }
                written?;
                self.out.applied.push(Staged {
                    path: rel.to_owned(),
                    kind: StagedKind::Write,
                });
                Ok(())
            }
            FileType::Symlink => {
                if !self.vetted(rel, EntryKind::Symlink) {
                    return Ok(());
                }
                let wanted = entry_at(upper, name, Read::Any)?;
                if !self.may_replace(&dir, last, rel, wanted.as_ref())
                    || !self.clear_dir(&dir, last, rel)?
                {
                    return Ok(());
                }
                let target = rustix::fs::readlinkat(upper, name, Vec::new())?;
                match rustix::fs::unlinkat(&dir, last, AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(err) => return Err(err.into()),
                }
                rustix::fs::symlinkat(target.as_c_str(), &dir, last)?;
                self.out.applied.push(Staged {
                    path: rel.to_owned(),
                    kind: StagedKind::Write,
                });
                Ok(())
            }
            _ => {
                self.conflict(rel, "a FIFO, socket or device is not applied");
                Ok(())
            }
        }
    }

    /// A directory in the tree where the stage has something else: removed, when nothing
    /// in it changed since the session found it (else a conflict, and `false`).
    fn clear_dir(&mut self, dir: &OwnedFd, name: &str, rel: &str) -> io::Result<bool> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode as _) == FileType::Directory => {
                if !self.subtree_unchanged(rel) {
                    return Ok(false);
                }
                remove_tree(dir, name, 0)?;
                Ok(true)
            }
            _ => Ok(true),
        }
    }
}
