//! cordon's WebAssembly skill runtime.
//!
//! A skill is a WASI 0.2 command component (`wasm32-wasip2`). It runs under Wasmtime with no
//! ambient authority: it sees the directories and environment the launch decision gave it,
//! and nothing more. Beyond that, each call that opens or changes a path, each outgoing
//! HTTP request and each host-name lookup is decided when it happens, through a [`Gate`]
//! (cordon's pipeline: `data.cordon.file` and `data.cordon.net`, recorded in the audit log).
//! So is each raw socket's address (`wasi:sockets`).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(gate: Arc<dyn cordon_skills::Gate>) -> Result<(), cordon_skills::Error> {
//! use cordon_skills::{Limits, Run, Runtime, RuntimeOptions, Sink, SkillFile};
//!
//! let runtime = Runtime::new(&RuntimeOptions::default())?;
//! let skill = runtime.prepare(SkillFile::read("hello.wasm".as_ref())?)?;
//! let exit = runtime.run(&skill, Run {
//!     args: vec!["hello".into()],
//!     env: Vec::new(),
//!     preopens: Vec::new(),
//!     gate,
//!     limits: Limits::default(),
//!     stdin: false,
//!     stdout: Sink::Stdout,
//!     stderr: Sink::Stderr,
//!     stop: Default::default(),
//! })?;
//! assert_eq!(exit.code, 0);
//! # Ok(()) }
//! ```

pub mod agent;
mod cache;
mod error;
mod fs;
mod http;
pub mod identity;
mod limits;
mod runtime;
mod skill;
mod sockets;
mod tools;
mod wait;

pub use cache::CacheUse;
pub use cordon_types::Decision;
pub use error::Error;
pub use limits::{Limits, Sink, Stopped};
pub use runtime::{Called, Exit, Preopen, Prepared, Run, Runtime, RuntimeOptions};
pub use skill::{SkillFile, MAX_SKILL_BYTES};
pub use tools::{Function, Returned};

/// Decides a skill's calls as they happen, and records each decision.
///
/// `capability` is `file` or `net`. For `file`, `action` is `read`, `list`, `write`,
/// `create`, `delete` or `rename`, and `resource` has the host `path` (canonical), the open
/// `mode`, whether it `exists`, its `size` and `links`. For `net`, `action` is `resolve`
/// (may the host name be looked up: `host`, `port`) or `http` (`host`, `port`, the
/// `addresses` it resolved to, and `http`: `method`, `scheme`, `path`, `url`,
/// `body_bytes`). An allowance whose obligations the gate cannot carry out must be a
/// denial.
///
/// A `redact` obligation on an `http` request is carried out by the runtime (URL, header
/// values and body leave redacted); what it refuses is reported through [`Gate::cut`].
pub trait Gate: Send + Sync + 'static {
    /// Decides one call.
    fn decide(&self, capability: &str, action: &str, resource: serde_json::Value) -> Decision;

    /// Records that a call `decision` allowed was refused by the runtime for `reason` (a
    /// `redact` obligation's `block_if`).
    fn cut(
        &self,
        _capability: &str,
        _action: &str,
        _resource: serde_json::Value,
        _decision: &Decision,
        _reason: &str,
    ) {
    }
}
