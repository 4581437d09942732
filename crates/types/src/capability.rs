//! The capabilities a policy decides on.

use std::fmt;

use crate::InputError;

/// A capability is the policy package an action is decided in: `data.cordon.<capability>`.
///
/// The well-known names are listed in the design (`file`, `net`, `exec`, `clipboard`, `env`,
/// `tool`, `infer`, `sandbox`); organisations may add their own, so any Rego identifier is
/// accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(String);

impl Capability {
    /// Capabilities with a package in the default policy or a documented meaning.
    pub const KNOWN: [&'static str; 8] = [
        "file",
        "net",
        "exec",
        "clipboard",
        "env",
        "tool",
        "infer",
        "sandbox",
    ];

    /// Validates a capability name.
    ///
    /// # Errors
    ///
    /// [`InputError::Capability`] when `name` is not a lowercase Rego identifier.
    pub fn new(name: &str) -> Result<Self, InputError> {
        let mut chars = name.chars();
        let valid_start = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid_start && valid_rest {
            Ok(Self(name.to_owned()))
        } else {
            Err(InputError::Capability(name.to_owned()))
        }
    }

    /// `net`: connections and requests that leave the device.
    pub fn net() -> Self {
        Self("net".to_owned())
    }

    /// `sandbox`: the launch of a confined program, and what it is granted.
    pub fn sandbox() -> Self {
        Self("sandbox".to_owned())
    }

    /// The tool calls of an MCP server, as cordon's gateway decides them.
    pub fn tool() -> Self {
        Self("tool".to_owned())
    }

    /// The capability name, e.g. `file`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Rego path of the capability's decision, e.g. `data.cordon.file.decision`.
    pub fn decision_path(&self) -> String {
        format!("data.cordon.{}.decision", self.0)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers_and_rejects_paths() {
        assert_eq!(
            Capability::new("file").unwrap().decision_path(),
            "data.cordon.file.decision"
        );
        assert!(Capability::new("my_cap2").is_ok());
        for bad in ["", "File", "2net", "file.decision", "a-b", "x[1]", "é"] {
            assert!(Capability::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
