//! A skill's file and identity: its bytes, its SHA-256, whether it is a component at all.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Error;

/// The largest skill file cordon reads (a component of a few megabytes is large).
pub const MAX_SKILL_BYTES: u64 = 256 * 1024 * 1024;

/// A skill as read from disk: the bytes and what identifies them.
#[derive(Clone)]
pub struct SkillFile {
    path: PathBuf,
    name: String,
    sha256: String,
    bytes: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for SkillFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkillFile")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl SkillFile {
    /// Reads `path` whole and checks that it is a WebAssembly component.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] (missing, unreadable, larger than [`MAX_SKILL_BYTES`]),
    /// [`Error::NotWasm`], [`Error::CoreModule`].
    pub fn read(path: &Path) -> Result<Self, Error> {
        let read = |source| Error::Read {
            path: path.to_path_buf(),
            source,
        };
        // Never blocking on a FIFO or a device: only a regular file is a skill.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(read)?
        };
        let meta = file.metadata().map_err(read)?;
        if !meta.is_file() {
            return Err(read(std::io::Error::other("not a regular file")));
        }
        let size = meta.len();
        if size > MAX_SKILL_BYTES {
            return Err(read(std::io::Error::other(format!(
                "{size} bytes, more than the {MAX_SKILL_BYTES} a skill may have"
            ))));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_SKILL_BYTES), &mut bytes)
            .map_err(read)?;
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "skill".to_owned());
        Self::from_bytes(path, name, bytes)
    }

    /// A skill from bytes already in memory, `path` naming it in messages.
    ///
    /// # Errors
    ///
    /// [`Error::NotWasm`], [`Error::CoreModule`].
    pub fn from_bytes(path: &Path, name: String, bytes: Vec<u8>) -> Result<Self, Error> {
        // The preamble: `\0asm`, then a version and a layer (core modules: 1, 0;
        // components: 0x0d, 1).
        if bytes.get(..4) != Some(b"\0asm".as_slice()) {
            return Err(Error::NotWasm {
                path: path.to_path_buf(),
            });
        }
        if bytes.get(6..8) != Some([1, 0].as_slice()) {
            return Err(Error::CoreModule {
                path: path.to_path_buf(),
            });
        }
        let sha256 = cordon_types::hex(&Sha256::digest(&bytes));
        Ok(Self {
            path: path.to_path_buf(),
            name,
            sha256,
            bytes: bytes.into(),
        })
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its name: the file name without `.wasm`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The component's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
