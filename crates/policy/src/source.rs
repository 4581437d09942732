//! Where policies come from: a directory, files, or the default policy built into cordon.

use std::path::{Path, PathBuf};

use cordon_types::hex;
use sha2::{Digest, Sha256};

use crate::{PolicyError, Result};

/// One file of a policy: a `.rego` module or a `data.json`/`data.yaml` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// The path relative to the policy root, with `/` separators (`net/data.json`).
    pub relative: String,
    /// The name used in messages: the path as the user gave it, or `<default>/file.rego`.
    pub display: String,
    /// The file's text.
    pub text: String,
}

impl PolicyFile {
    /// Whether this is a Rego module.
    pub fn is_rego(&self) -> bool {
        self.relative.ends_with(".rego")
    }

    /// Whether this is a Rego test module (`*_test.rego`).
    pub fn is_test(&self) -> bool {
        self.relative.ends_with("_test.rego")
    }

    /// For a data document, the path under `data` it is mounted at: the directories that hold
    /// it, as `opa` does (`a/b/data.json` is mounted at `data.a.b`).
    pub fn data_prefix(&self) -> Vec<&str> {
        let mut parts: Vec<&str> = self.relative.split('/').collect();
        parts.pop();
        parts
    }
}

/// The files of a policy, read and ordered, with a digest of their content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    origin: String,
    files: Vec<PolicyFile>,
    revision: String,
}

const DATA_NAMES: [&str; 3] = ["data.json", "data.yaml", "data.yml"];

fn is_policy_file(name: &str) -> bool {
    name.ends_with(".rego") || DATA_NAMES.contains(&name)
}

impl PolicySource {
    /// The default policy built into cordon (`policies/default` in the source tree).
    pub fn embedded_default() -> Self {
        let files = crate::default::FILES
            .iter()
            .map(|(name, text)| PolicyFile {
                relative: (*name).to_owned(),
                display: format!("<default>/{name}"),
                text: (*text).to_owned(),
            })
            .collect();
        Self::from_files("the default policy".to_owned(), files)
    }

    /// Reads a policy from paths: each a directory (read recursively: every `.rego` file and
    /// every `data.json`, `data.yaml` or `data.yml`; hidden entries are skipped) or a single
    /// `.rego` or data file.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Read`] when a path cannot be read and [`PolicyError::Empty`] when no
    /// `.rego` file was found.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        for path in paths {
            let meta = fs_err::metadata(path).map_err(|source| PolicyError::Read {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                walk(path, path, &mut files)?;
            } else {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push(read_file(path, name)?);
            }
        }
        if !files.iter().any(PolicyFile::is_rego) {
            let path = paths.first().cloned().unwrap_or_default();
            return Err(PolicyError::Empty { path });
        }
        let origin = paths
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self::from_files(origin, files))
    }

    /// Reads a policy from one path; see [`PolicySource::from_paths`].
    ///
    /// # Errors
    ///
    /// As [`PolicySource::from_paths`].
    pub fn from_path(path: &Path) -> Result<Self> {
        Self::from_paths(&[path.to_path_buf()])
    }

    /// The same policy with one more file: a data document is mounted by its relative path
    /// (`cordon/remembered/data.json` at `data.cordon.remembered`). The revision covers it.
    #[must_use]
    pub fn with_file(self, file: PolicyFile) -> Self {
        let mut files = self.files;
        files.push(file);
        Self::from_files(self.origin, files)
    }

    /// A policy of `files` already read (from a bundle, say); `origin` names where they came
    /// from in messages.
    pub fn from_files(origin: String, mut files: Vec<PolicyFile>) -> Self {
        files.sort_by(|a, b| a.display.cmp(&b.display));
        let mut hasher = Sha256::new();
        for file in &files {
            // Length-prefixed so that no two different file sets hash alike.
            for part in [file.relative.as_bytes(), file.text.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        let revision = hex(&hasher.finalize());
        Self {
            origin,
            files,
            revision,
        }
    }

    /// Where the policy came from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The files, sorted by name.
    pub fn files(&self) -> &[PolicyFile] {
        &self.files
    }

    /// SHA-256 over every file's relative path and content, lowercase hex: two sources with
    /// the same revision decide identically.
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<PolicyFile>) -> Result<()> {
    let read_err = |source| PolicyError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = fs_err::read_dir(dir)
        .map_err(read_err)?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(read_err)?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            walk(root, &path, files)?;
        } else if is_policy_file(&name) {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push(read_file(&path, relative)?);
        }
    }
    Ok(())
}

fn read_file(path: &Path, relative: String) -> Result<PolicyFile> {
    let text = fs_err::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(PolicyFile {
        relative,
        display: path.display().to_string(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn reads_a_tree_like_opa() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("net/.git")).unwrap();
        fs_err::write(root.join("a.rego"), "package a").unwrap();
        fs_err::write(root.join("net/data.yaml"), "x: 1").unwrap();
        fs_err::write(root.join("net/.git/hidden.rego"), "package hidden").unwrap();
        fs_err::write(root.join("README.md"), "not policy").unwrap();
        let source = PolicySource::from_path(root).unwrap();
        let names: Vec<&str> = source.files().iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(names, vec!["a.rego", "net/data.yaml"]);
        assert_eq!(source.files()[1].data_prefix(), vec!["net"]);
        assert_eq!(source.revision().len(), 64);
    }

    #[test]
    fn revision_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("a.rego"), "package a").unwrap();
        let first = PolicySource::from_path(dir.path()).unwrap();
        fs_err::write(dir.path().join("a.rego"), "package b").unwrap();
        let second = PolicySource::from_path(dir.path()).unwrap();
        assert_ne!(first.revision(), second.revision());
    }

    #[test]
    fn empty_and_missing_directories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = PolicySource::from_path(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no `.rego` files found in `{}`", dir.path().display())
        );
        let missing = dir.path().join("nope");
        let err = PolicySource::from_path(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read policy at `{}`", missing.display())
        );
    }
}
