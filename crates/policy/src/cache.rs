//! The compiled-policy cache: the bytecode programs of a policy's decisions, and its data, kept
//! on disk so that the next start skips parsing, checking and compiling.
//!
//! An entry is named by a key over everything that shapes the programs: the policy's revision
//! (a digest of every file's path and content), cordon's and regorus's versions, and which
//! decisions were compiled. Only a policy whose every decision compiled to bytecode is
//! stored. An entry is used only when its magic, format version, SHA-256 of the body, key and
//! revision all match and every program deserialises completely; anything else is reported
//! and recompiled (and the entry rewritten), never trusted and never a crash.
//!
//! ```text
//! "CORDON-RVM-CACHE" | u32 format | sha256(body) | body
//! body: str key | str revision | str data (JSON) | u32 n | n × (str capability | bytes program)
//! ```
//! (`str` and `bytes` are a little-endian u32 length then the bytes.)

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use regorus::rvm::program::DeserializationResult;
use regorus::rvm::Program;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 16] = b"CORDON-RVM-CACHE";
const FORMAT: u32 = 1;
/// The largest entry read back.
const MAX_ENTRY: u64 = 256 << 20;
/// The regorus version the programs are compiled with (pinned exactly in the workspace).
const REGORUS: &str = "0.14.1";

/// What became of the cache at a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// The programs came from the cache.
    Hit,
    /// There was no entry; the policy was compiled and stored.
    Stored,
    /// An entry was there and could not be used (the reason); the policy was compiled and the
    /// entry rewritten.
    Recompiled(String),
    /// The policy was compiled and not stored (the reason: it uses the interpreter, or the
    /// cache cannot be written).
    NotStored(String),
}

/// What a cache entry holds.
pub(crate) struct Entry {
    /// The data document, as JSON.
    pub data: String,
    /// Each decision's program, by capability.
    pub programs: Vec<(String, Program)>,
}

/// The cache directory and the key of one policy's entry.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    path: PathBuf,
    key: String,
    revision: String,
}

impl Slot {
    /// The slot of the policy `revision` compiled for `only` (every decision when `None`),
    /// in `dir`.
    pub(crate) fn new(dir: &Path, revision: &str, only: Option<&[&str]>) -> Self {
        let mut hasher = Sha256::new();
        for part in [
            "cordon-policy",
            env!("CARGO_PKG_VERSION"),
            "regorus",
            REGORUS,
            revision,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        match only {
            Some(only) => {
                let mut only = only.to_vec();
                only.sort_unstable();
                hasher.update(only.join(",").as_bytes());
            }
            None => hasher.update(b"*"),
        }
        let key = cordon_types::hex(&hasher.finalize());
        Self {
            path: dir.join(format!("{key}.rvm")),
            key,
            revision: revision.to_owned(),
        }
    }

    /// The entry's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the entry: `Ok(None)` when there is none, `Err` with why it cannot be used.
    pub(crate) fn read(&self) -> Result<Option<Entry>, String> {
        // Not followed if a link, and never blocking on a FIFO or a device: only a regular
        // file is read.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&self.path);
        let file = match opened {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.to_string()),
        };
        if !file.metadata().map_err(|e| e.to_string())?.is_file() {
            return Err("not a regular file".into());
        }
        let mut bytes = Vec::new();
        file.take(MAX_ENTRY + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_ENTRY {
            return Err("the entry is larger than 256 MiB".into());
        }
        let mut reader = Reader(&bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return Err("not a cordon policy cache entry".into());
        }
        let format = reader.u32()?;
        if format != FORMAT {
            return Err(format!("format {format}, expected {FORMAT}"));
        }
        let digest = reader.take(32)?;
        let body = reader.0;
        if Sha256::digest(body).as_slice() != digest {
            return Err("its checksum does not match its content (a damaged file)".into());
        }
        let mut body = Reader(body);
        if body.str()? != self.key || body.str()? != self.revision {
            return Err("it was made for another policy or version".into());
        }
        let data = body.str()?.to_owned();
        let count = body.u32()?;
        let mut programs = Vec::new();
        for _ in 0..count {
            let capability = body.str()?.to_owned();
            let bytes = body.bytes()?;
            let program = match Program::deserialize_binary(bytes) {
                Ok(DeserializationResult::Complete(program)) => program,
                Ok(DeserializationResult::Partial(_)) => {
                    return Err(format!("the program of `{capability}` needs recompiling"))
                }
                Err(err) => return Err(format!("the program of `{capability}`: {err}")),
            };
            let entry = format!("data.cordon.{capability}.decision");
            if !program.entry_points.contains_key(&entry) {
                return Err(format!("the program of `{capability}` lacks `{entry}`"));
            }
            programs.push((capability, program));
        }
        if !body.0.is_empty() {
            return Err("trailing bytes after the last program".into());
        }
        Ok(Some(Entry { data, programs }))
    }

    /// Writes the entry (atomically: a private temporary file renamed into place).
    pub(crate) fn write(&self, data: &str, programs: &[(&str, &Program)]) -> Result<(), String> {
        let mut body = Vec::new();
        put(&mut body, self.key.as_bytes());
        put(&mut body, self.revision.as_bytes());
        put(&mut body, data.as_bytes());
        body.extend_from_slice(&u32::try_from(programs.len()).unwrap_or(0).to_le_bytes());
        for (capability, program) in programs {
            put(&mut body, capability.as_bytes());
            put(&mut body, &program.serialize_binary()?);
        }
        let mut file = Vec::with_capacity(body.len() + 52);
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&FORMAT.to_le_bytes());
        file.extend_from_slice(&Sha256::digest(&body));
        file.extend_from_slice(&body);

        // Not private: an entry holds nothing the policy's own files do not, and a directory
        // only its owner may enter could not be shown read-only to a sandbox run by root (its
        // program is another user). Only the owner may write, as the umask has it.
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let temporary = dir.join(format!(".{}.{}.tmp", self.key, std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temporary)
            .and_then(|mut f| f.write_all(&file));
        let renamed = written.and_then(|()| fs_err::rename(&temporary, &self.path));
        if let Err(err) = renamed {
            let _ = fs_err::remove_file(&temporary);
            return Err(err.to_string());
        }
        Ok(())
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Bounds-checked reads from a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the entry is truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        let bytes: [u8; 4] = bytes
            .try_into()
            .map_err(|_| "the entry is truncated".to_owned())?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a name is not UTF-8".to_owned())
    }
}
