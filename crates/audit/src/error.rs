//! Errors of the audit store.

use std::path::PathBuf;

/// Why the audit store failed. An event that is not stored is an action refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open audit database `{}`", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer cordon.
    #[error("audit database `{}` has schema version {found}; this cordon reads version {supported} and older", path.display())]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// A query or a write failed.
    #[error("audit database `{}`: {operation} failed", path.display())]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The device signing key could not be read or created.
    #[error("cannot use the audit signing key `{}`", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The device signing key file is malformed.
    #[error("audit signing key `{}` is not a 32-byte ed25519 key", path.display())]
    KeyFormat {
        /// The key file.
        path: PathBuf,
    },
    /// The writer thread is gone (it failed or the store was closed).
    #[error("the audit writer has stopped")]
    WriterGone,
    /// The queue of events waiting to be written is full.
    #[error("the audit queue is full ({capacity} events waiting)")]
    QueueFull {
        /// How many events it holds.
        capacity: usize,
    },
    /// The writer did not confirm the event in time.
    #[error("the audit writer did not confirm the event within {0:?}")]
    Timeout(std::time::Duration),
    /// The writer could not commit the batch holding the event.
    #[error("the audit batch could not be committed: {0}")]
    Commit(String),
    /// A stored record could not be decoded.
    #[error("audit record {seq} cannot be decoded")]
    Decode {
        /// The record's sequence number.
        seq: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Result of the audit store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
