//! Errors of the shared types.

use std::io;

/// Why a [`crate::Request`] could not be turned into a policy input document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The capability name is not a Rego identifier.
    #[error("capability `{0}` is not valid: use lowercase letters, digits and `_`, starting with a letter")]
    Capability(String),
    /// The action is empty.
    #[error("the request has no `action`")]
    MissingAction,
    /// A relative path was given but no working directory is known to resolve it.
    #[error("path `{0}` is relative and no working directory is known to resolve it")]
    RelativePath(String),
    /// `~` was used but the home directory is unknown.
    #[error("path `{0}` starts with `~` but the home directory is unknown")]
    UnknownHome(String),
}

/// Why an audit event could not be recorded. The action it describes must then be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink could not write or flush the event.
    #[error("cannot write audit event to `{target}`")]
    Write {
        /// Where the sink writes (a path, an address).
        target: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The event could not be serialised.
    #[error("cannot serialise audit event")]
    Encode(#[source] serde_json::Error),
}

/// `err` and each of its sources, joined by `: `, as one line for a message.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
