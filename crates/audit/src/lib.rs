//! Where cordon records its decisions.
//!
//! Every decision passes through an [`AuditSink`](cordon_types::AuditSink); an action whose
//! decision could not be recorded is refused. Two sinks live here:
//!
//! - [`Store`]: the tamper-evident log in SQLite. Records are hash-chained (each carries the
//!   SHA-256 of the previous record's canonical bytes) and checkpoints sign
//!   `(sequence, head hash)` with a per-device ed25519 key. A writer thread commits events
//!   in groups with one fsync per group; `append` returns only once its event is durable.
//!   [`Reader::verify`] names the first sequence number where the log was edited, had a
//!   record deleted, was reordered or was truncated behind a checkpoint.
//! - [`JsonlSink`]: one JSON object per line in a file; simple, not tamper-evident.
//!
//! Trust boundary: the log is written by cordon and read by people and SIEMs. Whoever can
//! write the database can delete its tail together with the last checkpoint; forwarding to
//! a collector off the device is what closes that gap.
//!
//! ```
//! use cordon_audit::{Reader, Store, StoreOptions};
//! use cordon_types::{AuditEvent, Decision, Outcome};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = dir.path().join("audit.db");
//! let store = Store::open(&db, StoreOptions::default()).unwrap();
//! let seq = store.append(&AuditEvent {
//!     time: "2026-01-01T00:00:00Z".into(),
//!     capability: "file".into(),
//!     action: "read".into(),
//!     input: serde_json::json!({}),
//!     decision: Decision::deny("no"),
//!     outcome: Outcome::Refused,
//!     policy_revision: "abc".into(),
//!     cordon_version: "0.1.0".into(),
//! }).unwrap();
//! assert_eq!(seq, 1);
//! drop(store);
//! assert!(Reader::open(&db).unwrap().verify(None).unwrap().problem.is_none());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod forward;
mod jsonl;
mod keys;
mod ocsf;
mod reader;
mod record;
mod redact;
mod store;

pub use error::{Result, StoreError};
pub use forward::{http_body, syslog_line, DeliveryError, Forwarder, HttpFormat, Target};
pub use jsonl::JsonlSink;
pub use keys::key_path_for;
pub use ocsf::to_ocsf;
pub use reader::{Filter, Problem, Reader, Stats, VerifyReport};
pub use record::{ObligationRecord, Record, GENESIS};
pub use redact::{redact, url_credentials, REDACTED};
pub use store::{checkpoint_message, Store, StoreOptions, SCHEMA_VERSION};
