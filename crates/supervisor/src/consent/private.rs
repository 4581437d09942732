//! The person's small private files (remembered answers, the enrolled authenticator): read
//! only as regular files and never through a link, bounded in size, and replaced whole (a
//! new file, mode 0600, synced and renamed over the old one) under a lock.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The file's bytes, `None` when it does not exist.
///
/// # Errors
///
/// A link, a FIFO or anything but a regular file, a file larger than `max` bytes, or one
/// open to other users when `private`; each naming the file.
pub(super) fn read(path: &Path, max: u64, private: bool) -> Result<Option<Vec<u8>>, String> {
    let shown = path.display();
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read `{shown}`: {err}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    if private && std::os::unix::fs::MetadataExt::mode(&meta) & 0o077 != 0 {
        return Err(format!("`{shown}` is open to other users"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("`{shown}` is larger than {max} bytes"));
    }
    Ok(Some(bytes))
}

/// Holds the lock of `path` (`.NAME.lock` beside it) until dropped, creating its directory
/// (mode 0700) if needed.
///
/// # Errors
///
/// Why the directory or the lock cannot be made.
pub(super) fn lock(path: &Path) -> Result<std::fs::File, String> {
    let (dir, name) = place(path)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| format!("cannot lock `{}`: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock `{}`: {e}", lock_path.display()))?;
    Ok(lock)
}

/// Replaces `path` with `bytes`: a new file (mode 0600) beside it, synced, renamed over it.
/// Call with its [`lock`] held.
///
/// # Errors
///
/// Why it cannot be written; the old file is then left as it was.
pub(super) fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let (dir, name) = place(path)?;
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs_err::remove_file(&temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|err| {
        let _ = fs_err::remove_file(&temporary);
        format!("cannot write `{}`: {err}", path.display())
    })
}

fn place(path: &Path) -> Result<(&Path, String), String> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name.to_string_lossy().into_owned())),
        _ => Err(format!("`{}` is not a file's path", path.display())),
    }
}
