//! A tree as it is: every path with its metadata, every file's content kept by digest.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::blobs::{Blobs, Digest};

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file: its content is kept.
    File,
    /// A directory.
    Dir,
    /// A symbolic link: its target is kept (never followed).
    Symlink,
    /// A FIFO, socket or device: its kind and mode only.
    Other,
}

/// One path of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode and device.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// Permission bits (with set-id and sticky bits).
    pub mode: u32,
    /// A file's content digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// A link's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Entry {
    /// Whether `other` is the same file as far as metadata tells (then its content is the
    /// same unless someone set the times back, which needs the file's owner).
    fn same_file(&self, other: &Entry) -> bool {
        self.kind == EntryKind::File
            && other.kind == EntryKind::File
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.ino == other.ino
            && self.dev == other.dev
    }
}

/// A tree at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The tree's root.
    pub root: PathBuf,
    /// Every path under it, relative, `/`-separated.
    pub entries: BTreeMap<String, Entry>,
    /// Paths left out because `.gitignore` (or `.git/info/exclude`) ignores them: the
    /// topmost of each ignored tree.
    pub left_out: Vec<String>,
    /// Paths that exist and could not be read: what they held is unknown, so no change is
    /// ever inferred for them (neither created nor deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

/// How a tree is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Leave out what `.gitignore` ignores (`target/`, `node_modules/`).
    pub gitignore: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { gitignore: true }
    }
}

/// What a snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Files in the tree.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Files whose content was read (new or changed).
    pub read: u64,
    /// Files whose digest was reused from the previous manifest (unchanged metadata).
    pub reused: u64,
    /// Paths that could not be read (a permission, a name that is not UTF-8, a path that
    /// stopped being what it was while it was read).
    pub skipped: Vec<String>,
}

fn nanos(secs: i64, nsec: u64) -> i64 {
    secs.saturating_mul(1_000_000_000)
        .saturating_add(i64::try_from(nsec).unwrap_or(0))
}

#[allow(
    clippy::unnecessary_cast,
    reason = "the types of `stat`'s fields differ between architectures"
)]
fn entry_of(stat: &rustix::fs::Stat, kind: EntryKind) -> Entry {
    Entry {
        kind,
        size: u64::try_from(stat.st_size).unwrap_or(0),
        mtime_ns: nanos(stat.st_mtime as i64, stat.st_mtime_nsec as u64),
        ctime_ns: nanos(stat.st_ctime as i64, stat.st_ctime_nsec as u64),
        ino: stat.st_ino as u64,
        dev: stat.st_dev as u64,
        mode: (stat.st_mode as u32) & 0o7777,
        digest: None,
        target: None,
    }
}

/// The entry `stat` describes (no digest, no target).
pub(crate) fn entry_from_stat(stat: &rustix::fs::Stat) -> Entry {
    entry_of(stat, kind_of(stat))
}

fn kind_of(stat: &rustix::fs::Stat) -> EntryKind {
    match FileType::from_raw_mode(stat.st_mode as _) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// Opens `rel` under `root` for reading: no link followed anywhere on the way, nothing
/// outside the root reached, no wait on a FIFO.
fn open_beneath(root: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Reads the file `rel` into `blobs`: its entry, from the descriptor read, with the digest
/// of exactly what was read; `None` when the path is no longer a regular file, or changed
/// while it was read twice in a row.
fn read_file(root: &OwnedFd, rel: &str, blobs: &Blobs) -> io::Result<Option<Entry>> {
    for _ in 0..2 {
        let fd = open_beneath(root, rel)?;
        let before = rustix::fs::fstat(&fd)?;
        if kind_of(&before) != EntryKind::File {
            return Ok(None);
        }
        let file = std::fs::File::from(fd);
        // No more than the size it had when opened: a file that keeps growing (or a sparse
        // one that reads as terabytes) is not copied without end.
        let limit = u64::try_from(before.st_size).unwrap_or(0);
        let (digest, size) = blobs.put_reader(std::io::Read::take(&file, limit + 1))?;
        let after = rustix::fs::fstat(&file)?;
        let mut entry = entry_of(&after, EntryKind::File);
        let stable = entry_of(&before, EntryKind::File) == entry && entry.size == size;
        if stable {
            entry.digest = Some(digest);
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Takes the tree at `root`: every path's metadata, every file's content kept in `blobs`.
/// A file whose metadata is what `previous` recorded keeps its digest without being read.
///
/// # Errors
///
/// When the root cannot be opened, or the store cannot be written (a full disk): no
/// manifest is returned then. A single path that cannot be read is skipped and named in the
/// summary.
pub fn snapshot(
    root: &Path,
    blobs: &Blobs,
    previous: Option<&Manifest>,
    options: &Options,
) -> io::Result<(Manifest, Summary)> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut manifest = Manifest {
        root: root.to_path_buf(),
        ..Manifest::default()
    };
    let mut summary = Summary::default();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_ignore(options.gitignore)
        .git_exclude(options.gitignore)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(std::ffi::OsStr::cmp)
        .build();
    for item in walker {
        let Ok(item) = item else { continue };
        let Ok(rel) = item.path().strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let Some(rel) = rel.to_str().map(str::to_owned) else {
            let shown = rel.to_string_lossy().into_owned();
            manifest.unknown.push(shown.clone());
            summary.skipped.push(shown);
            continue;
        };
        let Ok(stat) = rustix::fs::statat(&root_fd, rel.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            // Gone since it was listed.
            continue;
        };
        let kind = kind_of(&stat);
        let mut entry = entry_of(&stat, kind);
        match kind {
            EntryKind::File => {
                let cached = previous
                    .and_then(|p| p.entries.get(&rel))
                    .filter(|old| old.same_file(&entry))
                    .and_then(|old| old.digest.clone())
                    .filter(|digest| blobs.contains(digest));
                if let Some(digest) = cached {
                    entry.digest = Some(digest);
                    summary.reused += 1;
                } else {
                    match read_file(&root_fd, &rel, blobs) {
                        Ok(Some(read)) => {
                            entry = read;
                            summary.read += 1;
                        }
                        Ok(None) => {
                            manifest.unknown.push(rel.clone());
                            summary.skipped.push(rel);
                            continue;
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) if crate::blobs::is_store_failure(&err) => return Err(err),
                        Err(_) => {
                            manifest.unknown.push(rel.clone());
                            summary.skipped.push(rel);
                            continue;
                        }
                    }
                }
                summary.files += 1;
                summary.bytes += entry.size;
            }
            EntryKind::Dir => summary.dirs += 1,
            EntryKind::Symlink => {
                match rustix::fs::readlinkat(&root_fd, rel.as_str(), Vec::new()) {
                    Ok(target) => entry.target = Some(target.to_string_lossy().into_owned()),
                    Err(_) => {
                        manifest.unknown.push(rel.clone());
                        summary.skipped.push(rel);
                        continue;
                    }
                }
            }
            EntryKind::Other => {}
        }
        manifest.entries.insert(rel, entry);
    }
    if options.gitignore {
        manifest.left_out = left_out(root, &manifest);
    }
    Ok((manifest, summary))
}

/// The topmost paths (four levels deep at most) that a walk without `.gitignore` finds and
/// the manifest does not hold.
fn left_out(root: &Path, manifest: &Manifest) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .max_depth(Some(4))
        .build();
    for item in walker.flatten() {
        let Some(rel) = item
            .path()
            .strip_prefix(root)
            .ok()
            .and_then(Path::to_str)
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        if manifest.entries.contains_key(rel) {
            continue;
        }
        let under_another = out.iter().any(|o| {
            rel.strip_prefix(o.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if !under_another {
            out.insert(rel.to_owned());
        }
        if out.len() >= 100 {
            break;
        }
    }
    out.into_iter().collect()
}
