//! Errors of configuration and start-up.

use std::path::PathBuf;

/// Why cordon could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The configuration file could not be read.
    #[error("cannot read configuration `{}`", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid.
    #[error("invalid configuration `{}`", path.display())]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A configuration value is out of range or unusable.
    #[error("invalid configuration value `{key}`: {message}")]
    ConfigValue {
        /// The key, e.g. `policy.engine`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The policy could not be loaded.
    #[error("cannot load policy from {origin}")]
    Policy {
        /// Where the policy was read from.
        origin: String,
        /// What is wrong with it.
        #[source]
        source: cordon_policy::PolicyError,
    },
    /// The audit log could not be opened.
    #[error("cannot open the audit log")]
    Audit(#[source] cordon_types::AuditError),
    /// The audit store could not be opened.
    #[error("cannot open the audit log")]
    AuditStore(#[source] cordon_audit::StoreError),
    /// A policy bundle could not be read, verified or activated.
    #[error("policy bundle: {origin}")]
    Bundle {
        /// The bundle, its source or the store.
        origin: String,
        /// What is wrong, naming the file in the bundle.
        #[source]
        source: cordon_bundle::BundleError,
    },
}

/// Result of the supervisor's fallible operations.
pub type Result<T, E = SetupError> = std::result::Result<T, E>;
