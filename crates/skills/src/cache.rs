//! Compiled skills kept on disk, by the component's SHA-256 and the engine's configuration.
//!
//! Loading a compiled artifact runs its code as it is, so an entry is trusted only from a
//! directory that this user owns and that no one else may write (created 0700), only when
//! it reads back whole with the SHA-256 written at its head, and only for the digest and
//! engine configuration in its name. Anything else is reported and recompiled (the entry
//! rewritten), never loaded and never a crash.
//!
//! ```text
//! "CORDON-WASM-ART1" | sha256(artifact) | artifact (Component::serialize)
//! ```

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 16] = b"CORDON-WASM-ART1";
/// The largest entry read back.
const MAX_ENTRY: u64 = 1 << 30;

/// Where a compiled skill came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// From the cache.
    Hit,
    /// Compiled and stored.
    Stored,
    /// An entry was there and could not be used (the reason); compiled and rewritten.
    Recompiled(String),
    /// Compiled and not stored (the reason: no cache, or it cannot be written).
    NotStored(String),
}

/// The cache directory of one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
    engine_key: String,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Whether an entry for `sha256` is there (whether it can be used is another matter).
    pub(crate) fn has(&self, sha256: &str) -> bool {
        self.path(sha256).exists()
    }

    /// The component compiled from `bytes` (whose digest is `sha256`): from the cache when
    /// an entry can be trusted, else compiled (and stored).
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheUse)> {
        let path = self.path(sha256);
        let why = match self.read(&path) {
            Ok(None) => None,
            Ok(Some(artifact)) => match load(engine, &artifact) {
                Ok(component) => return Ok((component, CacheUse::Hit)),
                Err(err) => Some(format!("Wasmtime refused it: {err}")),
            },
            Err(why) => Some(why),
        };
        if let Some(why) = &why {
            tracing::warn!("compiled skill `{}` not used: {why}", path.display());
        }
        let component = Component::new(engine, bytes)?;
        let stored = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|artifact| self.write(&path, &artifact));
        let used = match (stored, why) {
            (Err(err), _) => CacheUse::NotStored(err),
            (Ok(()), None) => CacheUse::Stored,
            (Ok(()), Some(why)) => CacheUse::Recompiled(why),
        };
        Ok((component, used))
    }

    /// The directory, once checked: ours, and no one else may write it.
    fn checked_dir(&self, create: bool) -> Result<bool, String> {
        let shown = self.dir.display();
        if create {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(|e| format!("cannot create `{shown}`: {e}"))?;
        }
        let meta = match std::fs::symlink_metadata(&self.dir) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(format!("`{shown}`: {err}")),
        };
        if !meta.is_dir() {
            return Err(format!("`{shown}` is not a directory"));
        }
        if meta.uid() != uid() || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "`{shown}` belongs to another user or others may write it: compiled code \
                 from it would not be ours"
            ));
        }
        Ok(true)
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
        if !self.checked_dir(false)? {
            return Ok(None);
        }
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(path);
        let file = match opened {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.to_string()),
        };
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() || meta.uid() != uid() {
            return Err("not a regular file of this user".into());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(MAX_ENTRY + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a cordon compiled-skill entry".into());
        }
        let artifact = bytes.split_off(MAGIC.len() + 32);
        if Sha256::digest(&artifact).as_slice() != &bytes[MAGIC.len()..] {
            return Err("its checksum does not match its content (a damaged file)".into());
        }
        Ok(Some(artifact))
    }

    fn write(&self, path: &Path, artifact: &[u8]) -> Result<(), String> {
        self.checked_dir(true)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let temporary = self.dir.join(format!(
            ".{}.{}.tmp",
            name.unwrap_or_default(),
            std::process::id()
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(MAGIC)?;
                file.write_all(&Sha256::digest(artifact))?;
                file.write_all(artifact)
            });
        let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
        if let Err(err) = renamed {
            let _ = std::fs::remove_file(&temporary);
            return Err(format!("cannot write `{}`: {err}", path.display()));
        }
        Ok(())
    }
}

fn uid() -> u32 {
    cordon_sys::process::real_ids().0
}

fn load(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    cordon_sys::wasm::load_own_component(engine, artifact)
}
