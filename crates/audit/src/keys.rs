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
/// [`StoreError::Key`] when the file cannot be read or created, [`StoreError::KeyFormat`]
/// when it is not 32 bytes.
pub fn load_or_create(path: &Path) -> Result<SigningKey> {
    let key_err = |source| StoreError::Key {
        path: path.to_path_buf(),
        source,
    };
    match fs_err::read(path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| StoreError::KeyFormat {
                path: path.to_path_buf(),
            })?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .map_err(|e| key_err(std::io::Error::other(e.to_string())))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs_err::create_dir_all(dir).map_err(key_err)?;
            }
            let mut options = fs_err::OpenOptions::new();
            options.write(true).create_new(true).mode(0o600);
            let mut file = options.open(path).map_err(key_err)?;
            file.write_all(&secret)
                .and_then(|()| file.sync_all())
                .map_err(key_err)?;
            Ok(SigningKey::from_bytes(&secret))
        }
        Err(e) => Err(key_err(e)),
    }
}

/// The key file that belongs to the database at `db`: `<db>.key` beside it.
pub fn key_path_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".key");
    db.with_file_name(name)
}
