//! Rego policy evaluation for cordon, on the [`regorus`] engine.
//!
//! A [`PolicySource`] is read from a directory (every `.rego` file plus `data.json` /
//! `data.yaml` documents, mounted at their directory's path as `opa` does) or taken from the
//! default policy built into cordon. [`Policy::load`] parses and checks it and compiles every
//! `data.cordon.<capability>.decision` rule; [`Policy::evaluate`] then answers requests from
//! any number of threads.
//!
//! Trust boundary: the input document is attacker-influenced (an agent chooses paths and
//! hosts), the policy is not. Evaluation therefore never fails: malformed or missing
//! decisions, evaluation errors and exceeded [`Limits`] all become denials whose reason says
//! what happened. Loading, on the other hand, reports errors as `file:line:col: message` so
//! a policy author can fix them.
//!
//! Not here: signed bundles, the request pipeline and auditing (see `cordon-supervisor`).
//!
//! ```
//! use cordon_policy::{Policy, PolicyOptions, PolicySource};
//! use cordon_types::Capability;
//! use serde_json::json;
//!
//! let policy = Policy::load(&PolicySource::embedded_default(), PolicyOptions::default()).unwrap();
//! let input = json!({
//!     "capability": "file", "action": "read",
//!     "resource": {"path": "/home/alice/.ssh/id_ed25519", "sensitivity": "internal", "sensitivity_level": 1},
//!     "context": {"home": "/home/alice", "workspace": ["/home/alice"]}
//! });
//! let decision = policy.evaluate(&Capability::new("file").unwrap(), &input);
//! assert!(!decision.allow);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cache;
mod default;
mod engine;
mod error;
mod explain;
mod modules;
mod source;
mod testing;

pub use cache::CacheUse;
pub use engine::{unwound, EngineKind, Limits, Policy, PolicyOptions};
pub use error::{PolicyError, Result};
pub use explain::{EvaluatedLine, Explanation};
pub use source::{PolicyFile, PolicySource};
pub use testing::{run_tests, Outcome, TestOptions, TestReport, TestResult};
