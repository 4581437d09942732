//! cordon's Linux sandbox for native agents.
//!
//! This crate turns a grant set ([`grants`], from the policy's launch decision) into kernel
//! restrictions: a planned file-system view ([`plan`]) built in new namespaces by a helper
//! process ([`launch`] is its side of the protocol, [`helper`] the parent's), Landlock rules ([`landlock`]), the seccomp profile ([`seccomp`]) and
//! cgroup caps ([`cgroup`]). It contains no `unsafe`: raw system calls live in `cordon-sys`.
//!
//! Trust boundary: everything this crate sets up binds the agent process and all its
//! descendants; the agent is assumed hostile.
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! let filters = cordon_sandbox::seccomp::compile().unwrap();
//! assert!(filters.len() >= 3);
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(target_os = "linux")]
pub mod cgroup;
pub mod grants;
#[cfg(target_os = "linux")]
pub mod guard;
#[cfg(target_os = "linux")]
pub mod helper;
#[cfg(target_os = "linux")]
pub mod ids;
#[cfg(target_os = "linux")]
pub mod kernel;
#[cfg(target_os = "linux")]
pub mod landlock;
#[cfg(target_os = "linux")]
pub mod launch;
#[cfg(target_os = "linux")]
pub mod plan;
#[cfg(target_os = "linux")]
pub mod seccomp;
#[cfg(target_os = "linux")]
pub mod systemd;
#[cfg(target_os = "linux")]
mod tree;
#[cfg(target_os = "linux")]
mod view;

/// Why a sandbox could not be set up. Setting up is all or nothing: on any error the agent
/// does not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The seccomp filter could not be compiled.
    #[error("cannot compile the seccomp filter")]
    CompileSeccomp(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The kernel refused the seccomp filter.
    #[error("cannot apply the seccomp filter")]
    ApplySeccomp(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A granted path cannot be opened; grants must exist.
    #[error("cannot grant `{}`: it cannot be opened", path.display())]
    GrantPath {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The kernel refused the Landlock rules.
    #[error("cannot apply the Landlock rules")]
    Landlock(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The kernel enforces no Landlock rule.
    #[error("this kernel does not enforce Landlock, so file access cannot be confined")]
    LandlockUnavailable,
    /// The cgroups for the process and memory caps cannot be set up.
    #[error("cannot set up the cgroups that cap processes and memory: {0}")]
    Cgroup(String),
    /// The sandbox helper failed or said something unexpected.
    #[error("the sandbox helper failed: {0}")]
    Helper(String),
    /// This platform has no sandbox.
    #[error("cordon's native sandbox needs Linux")]
    Unsupported,
}
