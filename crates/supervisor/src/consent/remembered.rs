//! The person's remembered answers ("always"): a JSON file the policy reads as data, at
//! `data.cordon.remembered`.
//!
//! ```json
//! {"net": {"example.com:443": {"at": "2026-11-29T10:00:00Z", "by": "terminal", "session": "0123456789ab"}}}
//! ```
//!
//! The file lives in cordon's configuration directory (`~/.config/cordon/remembered.json`),
//! which every sandbox hides and no grant may make writable. It is read only as a regular
//! file, never through a link, and replaced whole (a new file renamed over it) under a lock.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// The largest remembered file read.
const MAX_BYTES: u64 = 1 << 20;

/// One remembered answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remembered {
    /// What it allows: `CAPABILITY:ENTRY`, e.g. `net:example.com:443`.
    pub key: String,
    /// When, who and in which session, as recorded.
    pub details: Value,
}

/// The remembered answers file.
#[derive(Debug, Clone)]
pub struct RememberedFile {
    path: PathBuf,
}

impl RememberedFile {
    /// The file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `$XDG_CONFIG_HOME/cordon/remembered.json`.
    pub fn default_location() -> Option<Self> {
        dirs::config_dir().map(|dir| Self::at(dir.join("cordon").join("remembered.json")))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text when it holds a well-formed document, for the policy's data; `None`
    /// when it does not exist. A file that cannot be read or is malformed is left out with a
    /// warning: it only ever allows more, so leaving it out fails closed.
    pub fn policy_data(&self) -> Option<String> {
        match self.read() {
            Ok(Some(document)) => serde_json::to_string(&Value::Object(document)).ok(),
            Ok(None) => None,
            Err(why) => {
                tracing::warn!("remembered answers not used: {why}");
                None
            }
        }
    }

    /// Every remembered answer, sorted by key.
    ///
    /// # Errors
    ///
    /// Why the file cannot be read.
    pub fn list(&self) -> Result<Vec<Remembered>, String> {
        let document = self.read()?.unwrap_or_default();
        let mut listed = Vec::new();
        for (capability, entries) in &document {
            if let Value::Object(entries) = entries {
                for (entry, details) in entries {
                    listed.push(Remembered {
                        key: format!("{capability}:{entry}"),
                        details: details.clone(),
                    });
                }
            }
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// Adds `key` (`CAPABILITY:ENTRY`) with `details`.
    ///
    /// # Errors
    ///
    /// A malformed key, or why the file cannot be read or written (a file that cannot be
    /// read is never overwritten).
    pub fn remember(&self, key: &str, details: Value) -> Result<(), String> {
        let (capability, entry) = split_key(key)?;
        self.update(|document| {
            let entries = document
                .entry(capability.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entries.is_object() {
                *entries = Value::Object(Map::new());
            }
            if let Value::Object(entries) = entries {
                entries.insert(entry.to_owned(), details);
            }
            true
        })
        .map(|_| ())
    }

    /// Removes `key`; whether it was there.
    ///
    /// # Errors
    ///
    /// As [`RememberedFile::remember`].
    pub fn forget(&self, key: &str) -> Result<bool, String> {
        let (capability, entry) = split_key(key)?;
        self.update(|document| {
            let removed = document
                .get_mut(capability)
                .and_then(Value::as_object_mut)
                .and_then(|entries| entries.remove(entry))
                .is_some();
            if document
                .get(capability)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                document.remove(capability);
            }
            removed
        })
    }

    /// Reads the document: `None` when there is no file.
    fn read(&self) -> Result<Option<Map<String, Value>>, String> {
        let Some(text) = super::private::read(&self.path, MAX_BYTES, false)? else {
            return Ok(None);
        };
        let shown = self.path.display();
        match serde_json::from_slice::<Value>(&text) {
            Ok(Value::Object(document)) if document.values().all(|entries| entries.is_object()) => {
                Ok(Some(document))
            }
            Ok(_) => Err(format!(
                "`{shown}` is not an object of capabilities, each an object of entries"
            )),
            Err(err) => Err(format!("`{shown}` is not JSON: {err}")),
        }
    }

    /// Reads, changes and replaces the document under a lock; returns what `change` did.
    fn update(&self, change: impl FnOnce(&mut Map<String, Value>) -> bool) -> Result<bool, String> {
        let _lock = super::private::lock(&self.path)?;
        let mut document = self.read()?.unwrap_or_default();
        let changed = change(&mut document);
        let mut text = serde_json::to_vec_pretty(&Value::Object(document))
            .map_err(|e| format!("cannot write `{}`: {e}", self.path.display()))?;
        text.push(b'\n');
        super::private::replace(&self.path, &text)?;
        Ok(changed)
    }
}

/// `CAPABILITY:ENTRY` split at the first colon.
fn split_key(key: &str) -> Result<(&str, &str), String> {
    match key.split_once(':') {
        Some((capability, entry))
            if cordon_types::Capability::new(capability).is_ok() && !entry.is_empty() =>
        {
            Ok((capability, entry))
        }
        _ => Err(format!(
            "`{key}` is not a remembered key: CAPABILITY:ENTRY, e.g. `net:example.com:443`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_lists_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let file = RememberedFile::at(dir.path().join("cordon").join("remembered.json"));
        assert_eq!(file.list().unwrap(), vec![]);
        assert_eq!(file.policy_data(), None);
        file.remember("net:example.com:443", serde_json::json!({"by": "test"}))
            .unwrap();
        file.remember("net:[::1]:8080", serde_json::json!({"by": "test"}))
            .unwrap();
        let keys: Vec<String> = file.list().unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["net:[::1]:8080", "net:example.com:443"]);
        let data: Value = serde_json::from_str(&file.policy_data().unwrap()).unwrap();
        assert_eq!(data["net"]["example.com:443"]["by"], "test");
        assert!(file.forget("net:example.com:443").unwrap());
        assert!(!file.forget("net:example.com:443").unwrap());
        assert!(file.forget("nonsense").is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs_err::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_malformed_or_linked_file_is_not_used_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("remembered.json");
        fs_err::write(&path, "[1, 2]").unwrap();
        let file = RememberedFile::at(&path);
        assert_eq!(file.policy_data(), None);
        assert!(file.remember("net:a.example:443", Value::Null).is_err());
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "[1, 2]");
        let target = dir.path().join("elsewhere.json");
        fs_err::write(&target, r#"{"net": {"evil.example:443": {}}}"#).unwrap();
        fs_err::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert_eq!(file.policy_data(), None);
        assert!(file.list().is_err());
    }
}
