//! Where cordon records its decisions.
//!
//! Every decision passes through an [`AuditSink`]; an action whose decision could not be
//! recorded is refused. This crate provides the sinks. [`JsonlSink`] appends one JSON object
//! per line to a file and is enough for a single user; it is not tamper-evident.
//!
//! ```
//! use cordon_audit::JsonlSink;
//! use cordon_types::{AuditEvent, AuditSink, Decision};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let sink = JsonlSink::open(&dir.path().join("audit.jsonl")).unwrap();
//! sink.record(&AuditEvent {
//!     time: "2026-01-01T00:00:00Z".into(),
//!     capability: "file".into(),
//!     action: "read".into(),
//!     input: serde_json::json!({}),
//!     decision: Decision::deny("no"),
//!     policy_revision: "abc".into(),
//!     cordon_version: "0.1.0".into(),
//! }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod jsonl;

pub use jsonl::JsonlSink;
