//! An append-only JSON Lines file.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cordon_types::{AuditError, AuditEvent, AuditSink};

/// Appends one JSON object per event to a file, one line each.
///
/// The file is opened in append mode and created with mode `0600` (decisions name the
/// user's files). Each event is written with a single `write` of the whole line, so
/// concurrent cordon processes appending to the same file do not interleave lines.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: Mutex<fs_err::File>,
}

impl JsonlSink {
    /// Opens (creating it and its directory if needed) the file at `path` for appending.
    ///
    /// # Errors
    ///
    /// [`AuditError::Write`] when the directory or the file cannot be created or opened.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let fail = |source| AuditError::Write {
            target: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir).map_err(fail)?;
        }
        let mut options = fs_err::OpenOptions::new();
        options.create(true).append(true).mode(0o600);
        let file = options.open(path).map_err(fail)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// The file events are appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for JsonlSink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(event).map_err(AuditError::Encode)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)
            .and_then(|()| file.flush())
            .map_err(|source| AuditError::Write {
                target: self.path.display().to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use cordon_types::Decision;
    use pretty_assertions::assert_eq;

    use super::*;

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            time: "2026-01-01T00:00:00Z".into(),
            capability: "file".into(),
            action: format!("read-{n}"),
            input: serde_json::json!({"n": n}),
            decision: Decision::deny("no"),
            outcome: cordon_types::Outcome::Refused,
            policy_revision: "rev".into(),
            cordon_version: "0".into(),
        }
    }

    #[test]
    fn appends_one_line_per_event_from_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/audit.jsonl");
        let sink = std::sync::Arc::new(JsonlSink::open(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        sink.record(&event(t * 100 + i)).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let text = fs_err::read_to_string(&path).unwrap();
        let events: Vec<AuditEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 200);
        assert_eq!(
            fs_err::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Reopening appends rather than truncating.
        JsonlSink::open(&path).unwrap().record(&event(999)).unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap().lines().count(), 201);
    }

    #[test]
    fn unwritable_target_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let err = JsonlSink::open(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot write audit event to `{}`", dir.path().display())
        );
    }

    #[test]
    fn a_full_disk_is_reported_not_swallowed() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let sink = JsonlSink::open(Path::new("/dev/full")).unwrap();
        let err = sink.record(&event(1)).unwrap_err();
        let AuditError::Write { source, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{source}");
    }
}
