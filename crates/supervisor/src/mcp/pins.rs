//! Tool definitions pinned by digest when first seen.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::Digest as _;

/// The digests of the tool definitions (name, description, input schema) first seen, by
/// `SERVER/TOOL`, kept in a file: a definition that changes later (a "rug pull", a
/// description rewritten to instruct the model) is told apart from the one first trusted.
#[derive(Debug)]
pub struct Pins {
    path: std::path::PathBuf,
    pinned: Mutex<BTreeMap<String, String>>,
}

/// How a tool's definition stands against its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// First seen now, and pinned.
    New,
    /// As pinned.
    Same,
    /// Not as pinned: the pinned digest.
    Changed(String),
}

impl Pins {
    /// The pins kept in `path` (none yet when it does not exist).
    ///
    /// # Errors
    ///
    /// A file that cannot be read or is not a JSON object of digests: refused, never
    /// taken for "nothing pinned", which would trust every changed definition.
    pub fn open(path: &std::path::Path) -> Result<Self, String> {
        let pinned = Self::read(path)?.unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            pinned: Mutex::new(pinned),
        })
    }

    /// Where they are kept.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads the file as it is now: `None` when it does not exist.
    fn read(path: &std::path::Path) -> Result<Option<BTreeMap<String, String>>, String> {
        match fs_err::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("the tool pins `{}` are damaged: {e}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(format!("cannot read the tool pins: {err}")),
        }
    }

    /// Checks each `(key, digest, accept)`: its digest against the pin of `key`
    /// (`SERVER/TOOL`), pinning it when none is; with `accept`, a changed definition is
    /// pinned anew. The file is written once for all of them (a listing).
    ///
    /// A pin is written under a lock on `PINS.lock` (never followed if it is a link), after
    /// the file is read again: another gateway's pins written meanwhile are kept, and a pin
    /// it made for the same tool first is the one compared with.
    ///
    /// # Errors
    ///
    /// A pin that cannot be kept.
    pub fn check_all(&self, tools: &[(&str, &str, bool)]) -> Result<Vec<Pinned>, String> {
        let mut pinned = self
            .pinned
            .lock()
            .map_err(|_| "the tool pins were lost".to_owned())?;
        let known = |pinned: &BTreeMap<String, String>,
                     (key, digest, accept): (&str, &str, bool)| {
            match pinned.get(key) {
                Some(old) if old == digest => Some(Pinned::Same),
                Some(old) if !accept => Some(Pinned::Changed(old.clone())),
                _ => None,
            }
        };
        if tools.iter().all(|t| known(&pinned, *t).is_some()) {
            return Ok(tools.iter().filter_map(|t| known(&pinned, *t)).collect());
        }
        if let Some(dir) = self.path.parent() {
            fs_err::create_dir_all(dir).map_err(|e| format!("cannot keep the tool pins: {e}"))?;
        }
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| format!("cannot lock the tool pins: {e}"))?;
        lock.lock()
            .map_err(|e| format!("cannot lock the tool pins: {e}"))?;
        if let Some(now) = Self::read(&self.path)? {
            for (other, value) in now {
                pinned.entry(other).or_insert(value);
            }
        }
        let mut statuses = Vec::with_capacity(tools.len());
        let mut changed = false;
        for &(key, digest, accept) in tools {
            let status = match pinned.get(key) {
                Some(old) if old == digest => Pinned::Same,
                Some(old) if !accept => Pinned::Changed(old.clone()),
                Some(old) => Pinned::Changed(old.clone()),
                None => Pinned::New,
            };
            if !matches!(status, Pinned::Same) && (accept || status == Pinned::New) {
                pinned.insert(key.to_owned(), digest.to_owned());
                changed = true;
            }
            statuses.push(status);
        }
        if changed {
            let text = serde_json::to_vec_pretty(&*pinned).map_err(|e| e.to_string())?;
            cordon_bundle::write_atomic(&self.path, &text, 0o600)
                .map_err(|e| format!("cannot keep the tool pins: {e}"))?;
        }
        Ok(statuses)
    }
}

/// The digest of a tool's definition as canonical JSON: what the model reads of it (name,
/// title, description, input and output schemas) and what a client may act on without
/// asking (its annotations: a tool that turns `readOnlyHint` on may be run unasked).
pub fn definition_digest(tool: &Value) -> String {
    let definition = json!({
        "name": tool.get("name"),
        "title": tool.get("title"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
        "outputSchema": tool.get("outputSchema"),
        "annotations": tool.get("annotations"),
    });
    let bytes = cordon_bundle::canonical::canonical_json(definition.to_string().as_bytes())
        .unwrap_or_else(|_| definition.to_string().into_bytes());
    cordon_types::hex(&sha2::Sha256::digest(&bytes))
}
