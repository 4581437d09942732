//! Plain data shared by every cordon crate.
//!
//! cordon turns every risky action of an agent into a [`Request`], builds the policy input
//! document from it with an [`InputBuilder`], asks a [`Decider`] for a [`Decision`] and
//! records the outcome through an [`AuditSink`]. This crate holds those shapes and nothing
//! else: no Rego, no file system, no clock. That keeps the trust-relevant parsing (what a
//! policy's answer means, see [`Decision::from_policy_value`]) in one small place that every
//! enforcement surface shares.
//!
//! Parsing a decision fails closed: a missing, malformed or partly understood answer is a
//! denial whose reason names what was wrong.
//!
//! ```
//! use cordon_types::{Decision, Request, InputBuilder, InputEnv};
//! use serde_json::json;
//!
//! let request: Request = serde_json::from_value(json!({
//!     "capability": "file", "action": "read",
//!     "resource": {"path": "~/work/notes.md", "sensitivity": "confidential"}
//! })).unwrap();
//! let env = InputEnv { home: Some("/home/alice".into()), ..InputEnv::default() };
//! let input = InputBuilder::new(env).build(&request).unwrap();
//! assert_eq!(input["resource"]["path"], "/home/alice/work/notes.md");
//! assert_eq!(input["resource"]["sensitivity_level"], 2);
//!
//! let decision = Decision::from_policy_value(Some(&json!({"allow": "yes"})));
//! assert!(!decision.allow);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod capability;
mod decider;
mod decision;
mod error;
mod hex;
mod input;
mod request;
mod sensitivity;
mod text;

pub use audit::{AuditEvent, AuditSink, Outcome};
pub use capability::Capability;
pub use decider::Decider;
pub use decision::{json_type, Decision, Obligation};
pub use error::{error_chain, AuditError, InputError};
pub use hex::{hex, unhex};
pub use input::{normalize_path, InputBuilder, InputEnv};
pub use request::{Context, Request, Resource, Skill, Subject};
pub use sensitivity::Sensitivity;
pub use text::printable;
