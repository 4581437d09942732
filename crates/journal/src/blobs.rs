//! The content-addressed store.

use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt as _;

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A content's SHA-256, lowercase hex.
pub type Digest = String;

/// An error of the store itself (it cannot be written), as opposed to one of what is read.
#[derive(Debug)]
struct StoreFailure(io::Error);

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the store cannot be written: {}", self.0)
    }
}

impl std::error::Error for StoreFailure {}

fn store_failure(err: io::Error) -> io::Error {
    io::Error::new(err.kind(), StoreFailure(err))
}

/// Reads `reader` to its end, hashing it and writing it to `sink` if given (a write error
/// is the store's).
fn hash_copy(
    reader: &mut impl Read,
    mut sink: Option<&mut std::fs::File>,
) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..n]);
        if let Some(sink) = sink.as_mut() {
            sink.write_all(&buffer[..n]).map_err(store_failure)?;
        }
        size += n as u64;
    }
    Ok((cordon_types::hex(&hasher.finalize()), size))
}

/// Whether `err` came from writing the store (a full disk, a read-only or broken store)
/// rather than from reading the content.
pub fn is_store_failure(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<StoreFailure>())
}

/// Contents kept by their SHA-256 under `dir/ab/cdef…`.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
    /// What was written since the last [`Blobs::sync`].
    unsynced: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

/// Up to this many new contents are synced one by one; more, by syncing the file system.
const SYNC_ONE_BY_ONE: usize = 64;

fn valid(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Blobs {
    /// The store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            unsynced: std::sync::Arc::default(),
        }
    }

    /// Where `digest`'s content is kept.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `digest` is not 64 lowercase hex digits.
    pub fn path(&self, digest: &str) -> io::Result<PathBuf> {
        if !valid(digest) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{digest}` is not a SHA-256 digest"),
            ));
        }
        Ok(self.dir.join(&digest[..2]).join(&digest[2..]))
    }

    /// Whether `digest`'s content is kept.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Keeps what `reader` yields and returns its digest and size. The content is written to
    /// a temporary file and renamed to its digest's place; it is durable once
    /// [`Blobs::sync`] returned (one sync for a whole snapshot, not one per file). A content
    /// already kept is not written again.
    ///
    /// # Errors
    ///
    /// The I/O error of reading or writing (a full disk, say); nothing partial is kept.
    pub fn put_reader(&self, mut reader: impl Read) -> io::Result<(Digest, u64)> {
        // The store holds copies of private files: only its owner reads it.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(store_failure)?;
        let temp = self.dir.join(format!(
            ".incoming.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let result = (|| {
            let _ = fs_err::remove_file(&temp);
            let mut file = fs_err::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&temp)
                .map_err(store_failure)?;
            let (digest, size) = hash_copy(&mut reader, Some(file.file_mut()))?;
            let path = self.path(&digest)?;
            // Kept already, whole (a crash before the store was synced can leave a file of
            // another length, which is replaced).
            if fs_err::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == size) {
                return Ok((digest, size));
            }
            if let Some(parent) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(store_failure)?;
            }
            fs_err::rename(&temp, &path).map_err(store_failure)?;
            if let Ok(mut unsynced) = self.unsynced.lock() {
                unsynced.push(path);
            }
            Ok((digest, size))
        })();
        let _ = fs_err::remove_file(&temp);
        result
    }

    /// The digest and size of what `reader` yields, nothing kept.
    ///
    /// # Errors
    ///
    /// The I/O error of reading.
    pub fn hash_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
        hash_copy(&mut reader, None)
    }

    /// Keeps `bytes`.
    ///
    /// # Errors
    ///
    /// As [`Blobs::put_reader`].
    pub fn put(&self, bytes: &[u8]) -> io::Result<Digest> {
        // What is in memory is hashed first: a content kept already (an unchanged tree's
        // manifest) costs no temporary file.
        let digest = cordon_types::hex(&Sha256::digest(bytes));
        let kept = self.path(&digest).is_ok_and(|path| {
            fs_err::symlink_metadata(path)
                .is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64)
        });
        if kept {
            return Ok(digest);
        }
        self.put_reader(bytes).map(|(digest, _)| digest)
    }

    /// The content of `digest`, checked against it.
    ///
    /// # Errors
    ///
    /// `NotFound` when it is not kept, `InvalidData` when the kept content no longer has
    /// that digest (the store was damaged).
    pub fn get(&self, digest: &str) -> io::Result<Vec<u8>> {
        let bytes = fs_err::read(self.path(digest)?)?;
        let actual = cordon_types::hex(&Sha256::digest(&bytes));
        if actual != digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kept content of {digest} is damaged (it hashes to {actual})"),
            ));
        }
        Ok(bytes)
    }

    /// Makes everything kept so far durable: call it before recording anything that refers
    /// to what was kept. A few new contents are synced each with its directory; many (a
    /// first snapshot), with one `syncfs` of the store's file system.
    ///
    /// # Errors
    ///
    /// The I/O error of the sync, as a store failure.
    pub fn sync(&self) -> io::Result<()> {
        let written = match self.unsynced.lock() {
            Ok(mut unsynced) => std::mem::take(&mut *unsynced),
            Err(_) => {
                return Err(store_failure(io::Error::other(
                    "the store's state was lost",
                )))
            }
        };
        if written.is_empty() {
            return Ok(());
        }
        let synced = if written.len() > SYNC_ONE_BY_ONE {
            fs_err::File::open(&self.dir)
                .and_then(|dir| rustix::fs::syncfs(&dir).map_err(io::Error::from))
        } else {
            let mut dirs: Vec<&Path> = written.iter().filter_map(|p| p.parent()).collect();
            dirs.sort();
            dirs.dedup();
            dirs.push(&self.dir);
            written
                .iter()
                .map(PathBuf::as_path)
                .chain(dirs)
                .try_for_each(|path| fs_err::File::open(path)?.sync_all())
        };
        if synced.is_err() {
            // Synced again next time.
            if let Ok(mut unsynced) = self.unsynced.lock() {
                unsynced.extend(written);
            }
        }
        synced.map_err(store_failure)
    }

    /// Every digest kept.
    ///
    /// # Errors
    ///
    /// When the store's directory cannot be read.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        let top = match fs_err::read_dir(&self.dir) {
            Ok(top) => top,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(err) => return Err(err),
        };
        for shard in top {
            let shard = shard?;
            let prefix = shard.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !shard.file_type()?.is_dir() {
                continue;
            }
            for item in fs_err::read_dir(shard.path())? {
                let name = item?.file_name().to_string_lossy().into_owned();
                let digest = format!("{prefix}{name}");
                if valid(&digest) {
                    out.push(digest);
                }
            }
        }
        Ok(out)
    }

    /// The size of `digest`'s content, if kept.
    pub fn size(&self, digest: &str) -> Option<u64> {
        let path = self.path(digest).ok()?;
        fs_err::symlink_metadata(path).ok().map(|m| m.len())
    }

    /// Removes `digest`'s content.
    ///
    /// # Errors
    ///
    /// The I/O error of the removal (none when it is not kept).
    pub fn remove(&self, digest: &str) -> io::Result<()> {
        match fs_err::remove_file(self.path(digest)?) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_kept_once_by_digest_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path());
        let a = blobs.put(b"hello").unwrap();
        assert_eq!(
            a,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blobs.put(b"hello").unwrap(), a);
        assert_eq!(blobs.get(&a).unwrap(), b"hello");
        fs_err::write(blobs.path(&a).unwrap(), b"changed").unwrap();
        assert_eq!(
            blobs.get(&a).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(blobs.path("../../etc/passwd").is_err());
    }
}
