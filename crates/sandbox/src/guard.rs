//! Protected paths, checked after the run.
//!
//! Inside the sandbox each protected path that exists is a read-only mount, and each of its
//! ancestors inside the writable tree is a mount point, which the kernel refuses to rename
//! (`mv .git .git.orig` fails): the path cannot be changed or swapped. This module is the
//! second line: it records every protected path before the program runs, including those
//! that do not exist yet, and after the run compares. What was created, changed, or
//! swapped for a link (in the path or in any directory above it) is renamed aside so the
//! next program that reads it (git, the shell, cordon) does not act on it, and reported.
//!
//! The walk never follows a link: each name is opened on its own under the directory opened
//! before it (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and renames are made
//! relative to that directory. A link the program planted (`.git -> ~/.ssh`) is itself moved
//! aside; nothing it points to is touched.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use cordon_sys::process::{open_beneath, rename_in};
use fs_err::os::unix::fs::OpenOptionsExt;
use serde::{Deserialize, Serialize};

/// A protected path and the writable tree it lies in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guarded {
    /// The writable root (a granted path; the walk starts there).
    pub root: PathBuf,
    /// The protected path, below `root`.
    pub path: PathBuf,
}

/// What an entry is, as far as a change would show: its identity, type, size and change
/// time, and for a directory the same of each entry in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
    entries: Vec<(OsString, u64, (i64, i64))>,
}

/// How a protected path was found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Absent,
    Present(Fingerprint),
    /// A directory above the path is a link or not a directory: the path leads elsewhere.
    Diverted {
        at: PathBuf,
        what: Fingerprint,
    },
}

/// What became of a protected path during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// It did not exist at launch and does now.
    Created,
    /// It existed and is now another file, or the same with other contents or metadata.
    Changed,
    /// It existed and is gone.
    Removed,
    /// A directory above it became a link or a file.
    Diverted,
}

/// One protected path that did not survive the run as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The protected path.
    pub path: PathBuf,
    /// What happened.
    pub change: Change,
    /// Where what the program left was moved, if it was.
    pub moved_to: Option<PathBuf>,
    /// Why it could not be moved, if it could not.
    pub error: Option<String>,
}

/// The protected paths as they were before the run.
#[derive(Debug, Default)]
pub struct Guard {
    entries: Vec<(Guarded, Result<State, String>)>,
}

/// The most entries of a directory compared; a larger protected directory is compared by its
/// own identity and times only.
const MAX_ENTRIES: usize = 10_000;

fn fingerprint(fd: &OwnedFd) -> std::io::Result<Fingerprint> {
    let file = std::fs::File::from(fd.try_clone()?);
    let meta = file.metadata()?;
    let mut entries = Vec::new();
    if meta.is_dir() {
        // The descriptor is this process's own: its /proc link names exactly that directory.
        let listing = fs_err::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        for entry in listing.take(MAX_ENTRIES + 1) {
            let entry = entry?;
            let meta = entry.metadata()?;
            entries.push((
                entry.file_name(),
                meta.ino(),
                (meta.ctime(), meta.ctime_nsec()),
            ));
        }
        if entries.len() > MAX_ENTRIES {
            entries.clear();
        }
        entries.sort();
    }
    Ok(Fingerprint {
        dev: meta.dev(),
        ino: meta.ino(),
        mode: meta.mode(),
        size: meta.size(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        entries,
    })
}

/// Where a walk ended.
enum Lookup {
    /// The path, and the directory holding it.
    Found {
        parent: OwnedFd,
        name: OsString,
        fd: OwnedFd,
    },
    Absent,
    /// `name` in `parent` is a link or a file where a directory was expected.
    Diverted {
        parent: OwnedFd,
        name: OsString,
        at: PathBuf,
    },
}

fn names(guarded: &Guarded) -> Result<Vec<&OsStr>, String> {
    let relative = guarded.path.strip_prefix(&guarded.root).map_err(|_| {
        format!(
            "`{}` is not below `{}`",
            guarded.path.display(),
            guarded.root.display()
        )
    })?;
    let names: Vec<&OsStr> = relative
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(format!("`{}` is not a plain path", guarded.path.display())),
        })
        .collect::<Result<_, _>>()?;
    if names.is_empty() {
        return Err(format!("`{}` is its writable root", guarded.path.display()));
    }
    Ok(names)
}

fn lookup(guarded: &Guarded) -> Result<Lookup, String> {
    let names = names(guarded)?;
    let root = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&guarded.root)
        .map_err(|e| e.to_string())?;
    let mut dir: OwnedFd = root.into_parts().0.into();
    let mut at = guarded.root.clone();
    for (i, name) in names.iter().enumerate() {
        at.push(name);
        let last = i + 1 == names.len();
        let flags = if last {
            libc::O_PATH
        } else {
            libc::O_PATH | libc::O_DIRECTORY
        };
        match open_beneath(dir.as_fd(), name, flags) {
            Ok(fd) if last => {
                return Ok(Lookup::Found {
                    parent: dir,
                    name: name.to_os_string(),
                    fd,
                })
            }
            Ok(fd) => dir = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Lookup::Absent),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Ok(Lookup::Diverted {
                    parent: dir,
                    name: name.to_os_string(),
                    at,
                })
            }
            Err(e) => return Err(format!("cannot open `{}`: {e}", at.display())),
        }
    }
    Ok(Lookup::Absent)
}

fn state(guarded: &Guarded) -> Result<State, String> {
    let fingerprint_of = |fd: &OwnedFd, path: &Path| {
        fingerprint(fd).map_err(|e| format!("cannot inspect `{}`: {e}", path.display()))
    };
    Ok(match lookup(guarded)? {
        Lookup::Absent => State::Absent,
        Lookup::Found { fd, .. } => State::Present(fingerprint_of(&fd, &guarded.path)?),
        Lookup::Diverted { parent, name, at } => {
            let fd = open_beneath(parent.as_fd(), &name, libc::O_PATH)
                .map_err(|e| format!("cannot open `{}`: {e}", at.display()))?;
            State::Diverted {
                what: fingerprint_of(&fd, &at)?,
                at,
            }
        }
    })
}

impl Guard {
    /// Records the state of each of `guarded` (call before the program runs).
    pub fn record(guarded: &[Guarded]) -> Guard {
        Guard {
            entries: guarded.iter().map(|g| (g.clone(), state(g))).collect(),
        }
    }

    /// Compares each protected path with its state at launch; moves aside what the program
    /// created or changed, each at most once, and returns what was found.
    pub fn check(&self) -> Vec<Finding> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let mut findings: Vec<Finding> = Vec::new();
        for (guarded, before) in &self.entries {
            let Ok(before) = before else {
                continue;
            };
            let now = match state(guarded) {
                Ok(now) => now,
                Err(e) => {
                    findings.push(Finding {
                        path: guarded.path.clone(),
                        change: Change::Changed,
                        moved_to: None,
                        error: Some(e),
                    });
                    continue;
                }
            };
            if &now == before {
                continue;
            }
            let change = match (before, &now) {
                (_, State::Diverted { .. }) => Change::Diverted,
                (State::Absent, _) => Change::Created,
                (_, State::Absent) => Change::Removed,
                _ => Change::Changed,
            };
            // Whatever stands at the path (or diverts it) now is the program's: move it.
            let moved = match lookup(guarded) {
                Ok(Lookup::Found { parent, name, .. }) => {
                    Some(move_aside(&parent, &name, &guarded.path, &stamp))
                }
                Ok(Lookup::Diverted { parent, name, at }) => {
                    if findings
                        .iter()
                        .any(|f| f.moved_to.is_some() && f.path == at)
                    {
                        None
                    } else {
                        Some(move_aside(&parent, &name, &at, &stamp))
                    }
                }
                Ok(Lookup::Absent) => None,
                Err(e) => Some(Err(e)),
            };
            let (moved_to, error) = match moved {
                Some(Ok(to)) => (Some(to), None),
                Some(Err(e)) => (None, Some(e)),
                None => (None, None),
            };
            let path = match &now {
                State::Diverted { at, .. } => at.clone(),
                _ => guarded.path.clone(),
            };
            findings.push(Finding {
                path,
                change,
                moved_to,
                error,
            });
        }
        findings
    }
}

fn move_aside(parent: &OwnedFd, name: &OsStr, path: &Path, stamp: &str) -> Result<PathBuf, String> {
    let mut aside = name.to_os_string();
    aside.push(format!(".cordon-quarantine-{stamp}"));
    rename_in(parent.as_fd(), name, &aside)
        .map(|()| path.with_file_name(&aside))
        .map_err(|e| format!("cannot move `{}` aside: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(root: &Path, relative: &str) -> Guarded {
        Guarded {
            root: root.to_path_buf(),
            path: root.join(relative),
        }
    }

    #[test]
    fn untouched_paths_raise_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join(".git/hooks")).unwrap();
        fs_err::write(root.join(".git/config"), "[core]").unwrap();
        let all = [
            guarded(root, ".git/config"),
            guarded(root, ".git/hooks"),
            guarded(root, ".git/commondir"),
        ];
        let guard = Guard::record(&all);
        assert_eq!(guard.check(), Vec::new());
    }

    #[test]
    fn created_changed_and_swapped_paths_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join(".git/hooks")).unwrap();
        fs_err::write(root.join(".git/config"), "[core]").unwrap();
        let all = [
            guarded(root, ".git/config"),
            guarded(root, ".git/commondir"),
        ];
        let guard = Guard::record(&all);
        // The parent renamed and a copy put in its place, with a new config.
        fs_err::rename(root.join(".git"), root.join(".git.orig")).unwrap();
        fs_err::create_dir_all(root.join(".git")).unwrap();
        fs_err::write(root.join(".git/config"), "[core]\n\tfsmonitor = evil").unwrap();
        fs_err::write(root.join(".git/commondir"), "../.evil").unwrap();
        let findings = guard.check();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[0].change, Change::Changed);
        assert_eq!(findings[1].change, Change::Created);
        assert!(!root.join(".git/config").exists());
        assert!(!root.join(".git/commondir").exists());
        assert!(findings.iter().all(|f| f
            .moved_to
            .as_ref()
            .is_some_and(|to| to.exists() && to.parent() == Some(&root.join(".git")))));
    }

    #[test]
    fn a_planted_link_is_moved_and_what_it_points_to_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proj");
        let outside = dir.path().join("ssh");
        fs_err::create_dir_all(&root).unwrap();
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::write(outside.join("config"), "Host *").unwrap();
        let guard = Guard::record(&[guarded(&root, ".git/config")]);
        std::os::unix::fs::symlink(&outside, root.join(".git")).unwrap();
        let findings = guard.check();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].change, Change::Diverted);
        assert_eq!(findings[0].path, root.join(".git"));
        assert!(
            outside.join("config").exists(),
            "the link's target was touched"
        );
        assert!(fs_err::symlink_metadata(root.join(".git")).is_err());
        let moved = findings[0].moved_to.as_ref().unwrap();
        assert!(fs_err::symlink_metadata(moved)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
