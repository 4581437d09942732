//! The archive itself: a gzip-compressed tar of regular files, read with limits.
//!
//! OPA loads every regular entry and silently skips links and devices; it does not reject
//! `..` or duplicate names. cordon refuses all of these, by name, so that what is verified is
//! exactly what is loaded and nothing in a bundle can point outside it.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{BundleError, Problem, Result};

/// How much a bundle may hold. A bundle over any limit is refused before more of it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The compressed archive, in bytes.
    pub compressed: u64,
    /// Everything it holds once decompressed (headers included), in bytes.
    pub total: u64,
    /// One file, in bytes.
    pub file: u64,
    /// Entries (files and directories).
    pub entries: usize,
    /// One data document (`data.json`, `data.yaml`), in bytes: it is parsed whole, before
    /// its digest can be compared.
    pub document: u64,
}

/// The largest `.manifest` read, in bytes.
pub const MAX_MANIFEST: u64 = 64 << 10;

impl Default for Limits {
    /// 64 MiB compressed, 256 MiB decompressed, 64 MiB per file, 16 MiB per data document,
    /// 20,000 entries: far above any policy, far below what a desktop can hold.
    fn default() -> Self {
        Self {
            compressed: 64 << 20,
            total: 256 << 20,
            file: 64 << 20,
            entries: 20_000,
            document: 16 << 20,
        }
    }
}

/// One regular file of a bundle: its name (relative, `/`-separated, no leading `/`) and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name, as a signature lists it.
    pub name: String,
    /// The content.
    pub bytes: Vec<u8>,
}

/// A reader that fails once more than `limit` bytes have come through it.
struct Bounded<R> {
    inner: R,
    read: u64,
    limit: u64,
    what: &'static str,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{} is larger than {} bytes", self.what, self.limit),
            ));
        }
        Ok(n)
    }
}

fn too_large_or(err: &io::Error, problem: Problem, context: &str) -> BundleError {
    if err.kind() == io::ErrorKind::FileTooLarge {
        BundleError::new(Problem::TooLarge, format!("the bundle {err}"))
    } else {
        BundleError::new(problem, format!("{context}: {err}"))
    }
}

/// The name an archive entry is read under: one leading `/` or `./` is taken as the root (OPA
/// writes `/data.json`); anything else odd is refused.
pub fn entry_name(raw: &[u8]) -> Result<String> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let unsafe_path = |why: &str| BundleError::file(Problem::UnsafePath, &shown, why);
    let name = std::str::from_utf8(raw).map_err(|_| unsafe_path("the name is not UTF-8"))?;
    if name.contains('\0') || name.contains('\\') {
        return Err(unsafe_path("the name holds a NUL or a backslash"));
    }
    if cordon_types::printable(name) != name {
        return Err(unsafe_path(
            "the name holds a control or invisible character",
        ));
    }
    let name = name
        .strip_prefix("./")
        .or_else(|| name.strip_prefix('/'))
        .unwrap_or(name);
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.is_empty() {
        return Err(unsafe_path("the name is empty"));
    }
    for part in name.split('/') {
        match part {
            "" => return Err(unsafe_path("the name has an empty component (`//`)")),
            "." | ".." => return Err(unsafe_path("the name has a `.` or `..` component")),
            _ => {}
        }
    }
    if name.starts_with('/') || name.as_bytes().get(1) == Some(&b':') {
        return Err(unsafe_path("the name is absolute"));
    }
    Ok(name.to_owned())
}

/// Reads the regular files of a gzip-compressed tar, in archive order, within `limits`.
///
/// # Errors
///
/// A [`BundleError`] naming the entry and the reason: not gzip or not tar, an unsafe or
/// duplicate name, an entry that is not a regular file or a directory, or a limit exceeded.
pub fn read(compressed: &[u8], limits: &Limits) -> Result<Vec<Entry>> {
    if compressed.len() as u64 > limits.compressed {
        return Err(BundleError::new(
            Problem::TooLarge,
            format!(
                "the bundle is {} bytes compressed, more than the limit of {}",
                compressed.len(),
                limits.compressed
            ),
        ));
    }
    if !compressed.starts_with(&[0x1f, 0x8b]) {
        return Err(BundleError::new(
            Problem::NotABundle,
            "not a gzip-compressed tar archive (a bundle is a .tar.gz)",
        ));
    }
    let decompressed = Bounded {
        inner: GzDecoder::new(compressed),
        read: 0,
        limit: limits.total,
        what: "decompressed",
    };
    let mut archive = tar::Archive::new(decompressed);
    let entries = archive
        .entries()
        .map_err(|err| too_large_or(&err, Problem::NotABundle, "not a tar archive"))?;
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for (index, entry) in entries.enumerate() {
        if index >= limits.entries {
            return Err(BundleError::new(
                Problem::TooLarge,
                format!("the bundle has more than {} entries", limits.entries),
            ));
        }
        let mut entry =
            entry.map_err(|err| too_large_or(&err, Problem::NotABundle, "a broken tar entry"))?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let name = entry_name(&entry.path_bytes())?;
        if kind.is_dir() {
            continue;
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_hard_link() {
                "a hard link"
            } else if kind.is_character_special() || kind.is_block_special() {
                "a device"
            } else if kind.is_fifo() {
                "a FIFO"
            } else {
                "not a regular file"
            };
            return Err(BundleError::file(
                Problem::NotARegularFile,
                name,
                format!("{what}; a bundle holds only regular files"),
            ));
        }
        // The size the reader will deliver: a PAX `size` record overrides the header's.
        let size = entry.size();
        if size > limits.file {
            return Err(BundleError::file(
                Problem::TooLarge,
                name,
                format!(
                    "{size} bytes, more than the limit of {} per file",
                    limits.file
                ),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(BundleError::file(
                Problem::UnsafePath,
                name,
                "appears twice in the archive",
            ));
        }
        // Memory grows with what is read, never with what a header claims; a file is read
        // to one byte past the limit at most.
        let mut bytes = Vec::new();
        (&mut entry)
            .take(limits.file + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| too_large_or(&err, Problem::NotABundle, "a broken tar entry"))?;
        if bytes.len() as u64 > limits.file {
            return Err(BundleError::file(
                Problem::TooLarge,
                name,
                format!("more than the limit of {} bytes per file", limits.file),
            ));
        }
        files.push(Entry { name, bytes });
    }
    Ok(files)
}

/// Writes `entries` as a gzip-compressed tar, deterministically: the same entries give the
/// same bytes (mode 0644, owner 0, time 0, names without a leading `/`).
///
/// # Errors
///
/// An I/O error from compression (in memory, so only for names tar cannot hold).
pub fn write(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let encoder = GzEncoder::new(Vec::new(), Compression::default());
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(entry.bytes.len() as u64);
        builder.append_data(&mut header, &entry.name, entry.bytes.as_slice())?;
    }
    let mut encoder = builder.into_inner()?;
    encoder.flush()?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_and_plain() {
        assert_eq!(entry_name(b"/data.json").unwrap(), "data.json");
        assert_eq!(entry_name(b"./a/b.rego").unwrap(), "a/b.rego");
        assert_eq!(entry_name(b"a/").unwrap(), "a");
        for bad in [
            &b"../x.rego"[..],
            b"a/../../x",
            b"//etc/passwd",
            b"a//b",
            b"a\\b",
            b"C:/x",
            b"",
            b"\xff",
        ] {
            let err = entry_name(bad).unwrap_err();
            assert_eq!(err.problem, Problem::UnsafePath, "{bad:?}");
        }
    }

    #[test]
    fn written_archives_read_back_and_are_deterministic() {
        let long = format!("{}/policy.rego", "d".repeat(150));
        let entries = vec![
            Entry {
                name: ".manifest".into(),
                bytes: b"{}".to_vec(),
            },
            Entry {
                name: long,
                bytes: b"package d".to_vec(),
            },
        ];
        let bytes = write(&entries).unwrap();
        assert_eq!(bytes, write(&entries).unwrap());
        assert_eq!(read(&bytes, &Limits::default()).unwrap(), entries);
    }
}
