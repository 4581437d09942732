//! A tree as it is: every path with its metadata, every file's content kept by digest.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::blobs::{Blobs, Digest};
use crate::tree::{join, Root};

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
    /// A file whose content was not kept (larger than the limit, sparse, unreadable, or
    /// changing while it was read): its metadata only. A change to or from it is recorded,
    /// and cannot be undone.
    Unknown,
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
    /// Owner.
    #[serde(default)]
    pub uid: u32,
    /// Group.
    #[serde(default)]
    pub gid: u32,
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
    /// Paths that exist and could not be walked (a directory that cannot be opened or is
    /// too deep, a name that is not UTF-8): nothing is inferred to be created below them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// The device and inode of each of [`Manifest::unknown`]: found again under another
    /// name, it is not something new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_ids: Vec<(u64, u64)>,
    /// The ignore rules in force, by the file that holds them (`.gitignore` of each
    /// directory, `.git/info/exclude`), as they were read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, String>,
}

/// How a tree is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Leave out what `.gitignore` ignores (`target/`, `node_modules/`).
    pub gitignore: bool,
    /// The previous manifest is the same session's earlier snapshot of the tree (see
    /// [`snapshot`]); otherwise it serves only to skip reading unchanged files.
    pub baseline: bool,
    /// Files larger than this are not kept (they are unknown).
    pub max_file: u64,
    /// Paths never taken: cordon's own store when it lies in the tree, and the secrets the
    /// sandbox hides (the program cannot change them; their contents are never copied).
    pub exclude: Vec<PathBuf>,
    /// Digests of ignore-rules files that sessions wrote: such rules are not applied.
    pub untrusted_rules: BTreeSet<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gitignore: true,
            baseline: false,
            max_file: 1 << 30,
            exclude: Vec::new(),
            untrusted_rules: BTreeSet::new(),
        }
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
        uid: stat.st_uid as u32,
        gid: stat.st_gid as u32,
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

/// Whether the file `stat` describes is large and mostly holes.
#[allow(
    clippy::unnecessary_cast,
    reason = "the types of `stat`'s fields differ between architectures"
)]
pub(crate) fn is_sparse(stat: &rustix::fs::Stat) -> bool {
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    let on_disk = (stat.st_blocks as u64).saturating_mul(512);
    size > SPARSE_FROM && on_disk < size / 2
}

/// Opens `rel` under `root` (a directory) for reading: no link followed anywhere on the way, nothing
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

/// Reads the file `name` of `dir` into `blobs`: its entry, from the descriptor read, with the digest
/// of exactly what was read; `None` when the path is no longer a regular file, or changed
/// while it was read twice in a row.
fn read_file(dir: &OwnedFd, name: &str, blobs: &Blobs) -> io::Result<Option<Entry>> {
    for _ in 0..2 {
        let fd = open_beneath(dir, name)?;
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
///
/// `previous` is the tree as taken before. A file whose metadata is what it recorded keeps
/// its digest without being read. With [`Options::baseline`], `previous` is the same
/// session's earlier snapshot: every path it holds is taken again whatever the ignore
/// rules say now, and what its rules ignored stays ignored, so a program that edits a
/// `.gitignore` cannot hide a change to a file that was there, nor make an ignored tree
/// look created.
///
/// # Errors
///
/// When the root cannot be opened, or the store cannot be written (a full disk): no
/// manifest is returned then. A single path that cannot be read is skipped, named in the
/// summary and in [`Manifest::unknown`].
pub fn snapshot(
    root: &Path,
    blobs: &Blobs,
    previous: Option<&Manifest>,
    options: &Options,
) -> io::Result<(Manifest, Summary)> {
    snapshot_in(&Root::open(root)?, blobs, previous, options)
}

/// [`snapshot`] of a root already open (and checked to be the tree meant).
///
/// # Errors
///
/// As [`snapshot`].
pub fn snapshot_in(
    root: &Root,
    blobs: &Blobs,
    previous: Option<&Manifest>,
    options: &Options,
) -> io::Result<(Manifest, Summary)> {
    let root_fd = rustix::io::dup(root.fd())?;
    let root = root.path();
    let excluded = options
        .exclude
        .iter()
        .filter_map(|p| rustix::fs::stat(p).ok())
        .map(|s| {
            let e = entry_from_stat(&s);
            (e.dev, e.ino)
        })
        .collect();
    let baseline = previous.filter(|_| options.baseline);
    let mut budget = MAX_RULE_LINES;
    let mut walk = Walk {
        blobs,
        options,
        previous,
        baseline,
        baseline_rules: baseline
            .map(|b| {
                b.rules
                    .iter()
                    .filter_map(|(file, text)| {
                        Some((dir_of(file).to_owned(), matcher(file, text, &mut budget)?))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        rules: Vec::new(),
        rule_lines: MAX_RULE_LINES,
        excluded,
        manifest: Manifest {
            root: root.to_path_buf(),
            ..Manifest::default()
        },
        summary: Summary::default(),
    };
    if options.gitignore {
        // The repository's own exclusions, read as the `.gitignore` of the root.
        if let Some(text) = read_rules(&root_fd, ".git/info/exclude", &options.untrusted_rules) {
            if let Some(m) = matcher(".git/info/exclude", &text, &mut walk.rule_lines) {
                walk.rules.push((String::new(), m));
            }
            walk.manifest.rules.insert(".git/info/exclude".into(), text);
        }
    }
    walk.dir(&root_fd, "", 0)?;
    Ok((walk.manifest, walk.summary))
}

/// At most this many directories deep; deeper trees are unknown.
const MAX_DEPTH: usize = 256;
/// At most this many ignored trees are named.
const MAX_LEFT_OUT: usize = 100;
/// A rules file larger than this is not read (and nothing is left out for it).
const MAX_RULES: u64 = 1 << 20;
/// At most this many ignore rules in a walk (and as many from a baseline): rules beyond
/// are not applied, and what they would leave out is taken.
const MAX_RULE_LINES: usize = 4_000;
/// A file larger than this that takes less than half its size on disk is sparse: its
/// content is not copied (it would grow to its full size in the store).
const SPARSE_FROM: u64 = 64 << 20;

/// One walk of a tree.
struct Walk<'a> {
    blobs: &'a Blobs,
    options: &'a Options,
    previous: Option<&'a Manifest>,
    baseline: Option<&'a Manifest>,
    /// The baseline's rules by the directory they apply to.
    baseline_rules: BTreeMap<String, ignore::gitignore::Gitignore>,
    /// The rules in force: (directory, matcher), outermost first.
    rules: Vec<(String, ignore::gitignore::Gitignore)>,
    /// How many more rule lines may be compiled.
    rule_lines: usize,
    /// Directories never entered (cordon's own), by device and inode.
    excluded: BTreeSet<(u64, u64)>,
    manifest: Manifest,
    summary: Summary,
}

/// The directory of a rules file (`a/b/.gitignore` → `a/b`; the repository's exclusions
/// apply to the root).
fn dir_of(file: &str) -> &str {
    if file == ".git/info/exclude" {
        return "";
    }
    file.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The path `rel` as a matcher of rules in `dir` sees it.
fn virtual_path(rel: &str) -> PathBuf {
    Path::new("/").join(rel)
}

/// The matcher of the rules file `file` holding `text`; `None` when it holds no rule.
fn matcher(file: &str, text: &str, budget: &mut usize) -> Option<ignore::gitignore::Gitignore> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(virtual_path(dir_of(file)));
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        // A malformed line is skipped, as git does.
        let _ = builder.add_line(None, line);
    }
    builder.build().ok().filter(|m| !m.is_empty())
}

/// Whether the rules, innermost first, ignore `rel`.
fn ignored_by<'r>(
    rules: impl Iterator<Item = &'r ignore::gitignore::Gitignore>,
    rel: &str,
    is_dir: bool,
) -> bool {
    let path = virtual_path(rel);
    for m in rules {
        let found = m.matched(&path, is_dir);
        if found.is_ignore() {
            return true;
        }
        if found.is_whitelist() {
            return false;
        }
    }
    false
}

/// Reads a rules file beneath `dir`: a small regular file, no link followed, no wait; `None`
/// too when a session wrote what it holds (`untrusted`: rules a program wrote are not
/// applied, so they hide nothing of what the person makes later).
fn read_rules(dir: &OwnedFd, rel: &str, untrusted: &BTreeSet<String>) -> Option<String> {
    let fd = open_beneath(dir, rel).ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    if kind_of(&stat) != EntryKind::File || u64::try_from(stat.st_size).ok()? > MAX_RULES {
        return None;
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::from(fd), MAX_RULES),
        &mut bytes,
    )
    .ok()?;
    if !untrusted.is_empty() {
        let digest = cordon_types::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if untrusted.contains(&digest) {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

impl Walk<'_> {
    /// A path that cannot be walked: nothing below it is inferred created.
    fn unknown(&mut self, rel: String, id: Option<(u64, u64)>) {
        self.manifest.unknown.push(rel.clone());
        self.manifest.unknown_ids.extend(id);
        self.summary.skipped.push(rel);
    }

    /// A file whose content is not kept: recorded by its metadata.
    fn not_kept(&mut self, rel: String, mut entry: Entry) {
        entry.kind = EntryKind::Unknown;
        entry.digest = None;
        self.summary.skipped.push(rel.clone());
        self.summary.files += 1;
        self.manifest.entries.insert(rel, entry);
    }

    /// Whether `rel` is left out.
    fn ignored(&self, rel: &str, is_dir: bool) -> bool {
        if !self.options.gitignore {
            return false;
        }
        // A path taken before stays taken: rules written since (by a program, say) never
        // hide a change to what was there.
        if self.previous.is_some_and(|p| p.entries.contains_key(rel)) {
            return false;
        }
        if self.baseline.is_some() {
            // The baseline's rules, from the innermost directory out.
            let mut dirs = vec![""];
            dirs.extend(rel.match_indices('/').map(|(i, _)| &rel[..i]));
            let before = dirs
                .iter()
                .rev()
                .filter_map(|d| self.baseline_rules.get(*d));
            if ignored_by(before, rel, is_dir) {
                return true;
            }
        }
        ignored_by(self.rules.iter().rev().map(|(_, m)| m), rel, is_dir)
    }

    /// Takes the directory `dir` (open) at `rel`, and everything below it.
    fn dir(&mut self, dir: &OwnedFd, rel: &str, depth: usize) -> io::Result<()> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for item in rustix::fs::Dir::read_from(dir)? {
            let item = item?;
            let name = item.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort();
        let rules_before = self.rules.len();
        if self.options.gitignore && names.iter().any(|n| n == b".gitignore") {
            let file = join(rel, ".gitignore");
            if let Some(text) = read_rules(dir, ".gitignore", &self.options.untrusted_rules) {
                if let Some(m) = matcher(&file, &text, &mut self.rule_lines) {
                    self.rules.push((rel.to_owned(), m));
                }
                self.manifest.rules.insert(file, text);
            }
        }
        for name in names {
            let name = match String::from_utf8(name) {
                Ok(name) => name,
                Err(err) => {
                    let bytes = err.into_bytes();
                    let id = rustix::fs::statat(
                        dir,
                        std::ffi::OsStr::from_bytes(&bytes),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .ok()
                    .map(|s| {
                        let e = entry_from_stat(&s);
                        (e.dev, e.ino)
                    });
                    let shown = format!("\u{fffd}{}", cordon_types::hex(&bytes));
                    self.unknown(join(rel, &shown), id);
                    continue;
                }
            };
            let child = join(rel, &name);
            self.child(dir, &name, child, depth)?;
        }
        self.rules.truncate(rules_before);
        Ok(())
    }

    /// Takes one name of an open directory.
    fn child(&mut self, dir: &OwnedFd, name: &str, rel: String, depth: usize) -> io::Result<()> {
        let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            // Gone since it was listed.
            return Ok(());
        };
        let kind = kind_of(&stat);
        let mut entry = entry_of(&stat, kind);
        if self.excluded.contains(&(entry.dev, entry.ino)) {
            return Ok(());
        }
        // A rules file is always taken: one that ignores itself would be written unseen.
        let rules_file = name == ".gitignore";
        if !rules_file && self.ignored(&rel, kind == EntryKind::Dir) {
            if self.manifest.left_out.len() < MAX_LEFT_OUT {
                self.manifest.left_out.push(rel);
            }
            return Ok(());
        }
        match kind {
            EntryKind::File => {
                let cached = self
                    .previous
                    .and_then(|p| p.entries.get(&rel))
                    .filter(|old| old.same_file(&entry))
                    .and_then(|old| old.digest.clone())
                    .filter(|digest| self.blobs.contains(digest));
                if let Some(digest) = cached {
                    entry.digest = Some(digest);
                    self.summary.reused += 1;
                } else if entry.size > self.options.max_file || is_sparse(&stat) {
                    self.not_kept(rel, entry);
                    return Ok(());
                } else {
                    match read_file(dir, name, self.blobs) {
                        Ok(Some(read)) => {
                            entry = read;
                            self.summary.read += 1;
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                        Err(err) if crate::blobs::is_store_failure(&err) => return Err(err),
                        Ok(None) | Err(_) => {
                            self.not_kept(rel, entry);
                            return Ok(());
                        }
                    }
                }
                self.summary.files += 1;
                self.summary.bytes += entry.size;
            }
            EntryKind::Dir => {
                let opened = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                );
                // The directory listed is the one opened (not one put in its place since).
                let sub = opened.ok().filter(|fd| {
                    rustix::fs::fstat(fd).is_ok_and(|s| {
                        let opened = entry_from_stat(&s);
                        (opened.dev, opened.ino) == (entry.dev, entry.ino)
                    })
                });
                let Some(sub) = sub.filter(|_| depth < MAX_DEPTH) else {
                    let id = (entry.dev, entry.ino);
                    self.unknown(rel, Some(id));
                    return Ok(());
                };
                self.summary.dirs += 1;
                self.manifest.entries.insert(rel.clone(), entry);
                return self.dir(&sub, &rel, depth + 1);
            }
            EntryKind::Symlink => match rustix::fs::readlinkat(dir, name, Vec::new()) {
                Ok(target) => entry.target = Some(target.to_string_lossy().into_owned()),
                Err(_) => {
                    let id = (entry.dev, entry.ino);
                    self.unknown(rel, Some(id));
                    return Ok(());
                }
            },
            EntryKind::Other | EntryKind::Unknown => {}
        }
        self.manifest.entries.insert(rel, entry);
        Ok(())
    }
}
