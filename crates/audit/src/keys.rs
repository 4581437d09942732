//! The per-device signing key of checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use fs_err::os::unix::fs::OpenOptionsExt;

use crate::{Result, StoreError};

/// Reads the ed25519 key at `path` (32 raw bytes), creating it with mode `0600` on first use.
///
/// # Errors
///
/// [`StoreError::Key`] when the file cannot be read or created (or is no regular file: a
/// link to nothing, a directory, a pipe), [`StoreError::KeyFormat`] when it is not 32 bytes.
pub fn load_or_create(path: &Path) -> Result<SigningKey> {
    let key_err = |source| StoreError::Key {
        path: path.to_path_buf(),
        source,
    };
    // Twice at most: a key found, or made here, or made by another process between this
    // one's look and its link.
    for _ in 0..2 {
        if let Some(bytes) = read_key(path).map_err(key_err)? {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| StoreError::KeyFormat {
                path: path.to_path_buf(),
            })?;
            return Ok(SigningKey::from_bytes(&bytes));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| key_err(std::io::Error::other(e.to_string())))?;
        match create_whole(path, &secret) {
            Ok(()) => return Ok(SigningKey::from_bytes(&secret)),
            // Something is there that reads as nothing: a link to a file that does not exist.
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    && fs_err::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                return Err(key_err(std::io::Error::other(
                    "it is a link to a file that does not exist; remove it, or make it point to the key",
                )));
            }
            // Another process made it first: its key is the one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(key_err(e)),
        }
    }
    Err(key_err(std::io::Error::other(
        "it keeps appearing and disappearing; is another program changing cordon's state directory?",
    )))
}

/// The key file's bytes; `None` when there is none yet, or only an empty one (a key whose
/// creation never finished, written in place before keys were linked whole: nothing was
/// ever signed with it), which is removed. Never waits: a pipe or a device at `path` is an
/// error.
fn read_key(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut file = match fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    let mut bytes = Vec::new();
    Read::take(&mut file, 1024).read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        fs_err::remove_file(path)?;
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// Creates the file at `path` holding `bytes`, mode `0600`, never seen with less: written and
/// synced under a temporary name, then linked into place (which fails with `AlreadyExists`
/// when the file is there already). A process killed while it writes the key leaves a
/// temporary file, never a short key that every later start would refuse.
fn create_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    let mut unique = [0u8; 8];
    getrandom::fill(&mut unique).map_err(|e| std::io::Error::other(e.to_string()))?;
    name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        u64::from_ne_bytes(unique)
    ));
    let temporary = dir.join(name);
    let written = (|| {
        let mut options = fs_err::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs_err::hard_link(&temporary, path)?;
        fs_err::File::open(dir)?.sync_all()
    })();
    let _ = fs_err::remove_file(&temporary);
    written
}

/// The key file that belongs to the database at `db`: `<db>.key` beside it.
pub fn key_path_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".key");
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_whole_even_by_racing_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("audit.db.key");
        let keys: Vec<[u8; 32]> = std::thread::scope(|scope| {
            let makers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_create(&path).unwrap().to_bytes()))
                .collect();
            makers.into_iter().map(|m| m.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(fs_err::read(&path).unwrap(), keys[0]);
        let left: Vec<_> = fs_err::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["audit.db.key"]);
    }

    #[test]
    fn an_unfinished_key_is_made_again_and_a_wrong_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db.key");
        fs_err::write(&path, b"").unwrap();
        let key = load_or_create(&path).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), key.to_bytes());
        fs_err::write(&path, [7u8; 31]).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(StoreError::KeyFormat { .. })
        ));
    }

    #[test]
    fn a_link_to_nothing_or_a_pipe_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db.key");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &path).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("audit.db.key"), "{err}");
        assert!(!dir.path().join("nothing").exists());
        fs_err::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("audit.db.key"), "{err}");
    }
}
