//! Reaching a tree and the paths below it without being led elsewhere.
//!
//! A tree's root is opened by its canonical path with no link followed anywhere on the way
//! (`openat2` with `RESOLVE_NO_SYMLINKS`) and, where the journal recorded it, must still be
//! the same directory (device and inode): a root renamed away and replaced by a link, or by
//! another directory, is refused. Below the root, a path is reached one component at a time
//! (`openat` with `O_NOFOLLOW` on each), so no link is followed, no `..` leaves, and no path
//! is too long to reach.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// A tree's root, open.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
    identity: (u64, u64),
}

#[allow(
    clippy::unnecessary_cast,
    reason = "the types of `stat`'s fields differ between architectures"
)]
fn identity_of(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let stat = rustix::fs::fstat(fd)?;
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

impl Root {
    /// Opens the directory at `path` (absolute, canonical): no link followed on the way.
    ///
    /// # Errors
    ///
    /// When it cannot be opened, is not a directory, or a link is on its way.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::openat2(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| {
            let err = io::Error::from(e);
            if err.raw_os_error() == Some(libc_eloop()) {
                io::Error::other(format!(
                    "`{}` leads through a link: the tree is not where it was",
                    path.display()
                ))
            } else {
                err
            }
        })?;
        let identity = identity_of(&fd)?;
        Ok(Self {
            path: path.to_path_buf(),
            fd,
            identity,
        })
    }

    /// Opens the directory at `path`, which must be the one recorded as `identity`.
    ///
    /// # Errors
    ///
    /// As [`Root::open`], and when another directory is there now.
    pub fn open_expecting(path: &Path, identity: (u64, u64)) -> io::Result<Self> {
        let root = Self::open(path)?;
        if root.identity != identity {
            return Err(io::Error::other(format!(
                "`{}` is no longer the directory the session wrote (it was moved or replaced); nothing is done there",
                path.display()
            )));
        }
        Ok(root)
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its device and inode.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Its descriptor.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

/// The components of a path below a root: none empty, `.` or `..`.
fn components(rel: &str) -> io::Result<Vec<&str>> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{rel}` is not a path of the tree"),
        ));
    }
    Ok(parts)
}

/// Opens `name` of `dir` as a directory, not following a link.
pub(crate) fn open_dir_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `rel` below `root` (`""` is the root itself), one component at a time.
pub(crate) fn open_dir(root: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    let mut dir = rustix::io::dup(root)?;
    if rel.is_empty() {
        return Ok(dir);
    }
    for part in components(rel)? {
        dir = open_dir_at(&dir, part)?;
    }
    Ok(dir)
}

/// The parent directory of `rel` below `root`, open, and the last component.
pub(crate) fn parent<'a>(root: &OwnedFd, rel: &'a str) -> io::Result<(OwnedFd, &'a str)> {
    components(rel)?;
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    Ok((open_dir(root, dir)?, name))
}

/// The content of the regular file `rel` below `root`, up to `limit` bytes (for showing):
/// no link followed, no wait on a FIFO. `None` when it is not a regular file.
///
/// # Errors
///
/// When it cannot be reached or read.
pub fn read_file(root: &Root, rel: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let (dir, name) = parent(root.fd(), rel)?;
    let fd = match rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let stat = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::from(fd), limit),
        &mut bytes,
    )?;
    Ok(Some(bytes))
}

/// The paths below the directory `rel` of `root`, parents before children, at most `most`
/// (an error beyond, or for a name that is not UTF-8: the journal could not name it).
pub(crate) fn descendants(root: &Root, rel: &str, most: usize) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(open_dir(root.fd(), rel)?, rel.to_owned())];
    while let Some((dir, at)) = stack.pop() {
        let mut names = Vec::new();
        for item in rustix::fs::Dir::read_from(&dir)? {
            let item = item?;
            let name = item.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = std::str::from_utf8(name)
                .map_err(|_| io::Error::other("a name below it is not UTF-8"))?
                .to_owned();
            names.push(name);
        }
        names.sort();
        for name in names {
            let path = format!("{at}/{name}");
            if out.len() >= most {
                return Err(io::Error::other(format!(
                    "more than {most} paths below `{rel}`"
                )));
            }
            out.push(path.clone());
            if let Ok(sub) = open_dir_at(&dir, &name) {
                stack.push((sub, path));
            }
        }
    }
    Ok(out)
}

/// `rel` joined under `dir` (`""` is the root).
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// `rel`, then each directory above it: `a/b/c`, `a/b`, `a`.
pub(crate) fn self_and_ancestors(rel: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(rel), |at| {
        at.rsplit_once('/').map(|(parent, _)| parent)
    })
}
