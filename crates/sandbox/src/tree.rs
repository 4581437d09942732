//! Walking a granted tree: depth first, never following links, bounded, and failing on a
//! directory that can be entered but not listed (it could hide what the walk looks for).

use std::fs::FileType;

use fs_err::DirEntry;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The most entries a walk looks at.
pub(crate) const MAX_ENTRIES: usize = 1_000_000;

/// Why a walk stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalkError {
    /// The tree holds more than this many entries.
    TooMany(usize),
    /// This directory could not be listed (permission denied).
    Unreadable(PathBuf),
}

/// Walks below `root`, calling `visit` with each entry and its type (not following links);
/// a directory is entered when `visit` returns true and, with `one_device`, it lies on
/// `root`'s file system. Directories that vanish meanwhile are passed over.
pub(crate) fn walk(
    root: &Path,
    most: usize,
    one_device: bool,
    mut visit: impl FnMut(&DirEntry, FileType) -> bool,
) -> Result<(), WalkError> {
    let device = fs_err::metadata(root).map(|m| m.dev()).ok();
    let mut seen = 0usize;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match fs_err::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(WalkError::Unreadable(dir))
            }
            Err(_) => continue,
        };
        for entry in entries.filter_map(Result::ok) {
            seen += 1;
            if seen > most {
                return Err(WalkError::TooMany(most));
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let enter = visit(&entry, kind);
            if kind.is_dir()
                && enter
                && (!one_device || entry.metadata().is_ok_and(|m| Some(m.dev()) == device))
            {
                dirs.push(entry.path());
            }
        }
    }
    Ok(())
}
