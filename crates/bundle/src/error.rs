//! What can be wrong with a bundle.

use std::fmt;

/// What kind of problem a bundle has: the same kinds are audited and tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The file could not be read (missing, unreadable, a network error).
    Unreadable,
    /// Not a gzip-compressed tar archive, or a broken one.
    NotABundle,
    /// A path in the archive that cordon does not read: `..`, an absolute or odd name, a
    /// duplicate.
    UnsafePath,
    /// An entry that is not a regular file: a link, a device, a FIFO.
    NotARegularFile,
    /// Larger than the limits (a file, the whole, the number of entries).
    TooLarge,
    /// A file whose content cannot be read as its kind (data that is not JSON, a manifest
    /// with bad roots, a Rego module outside the roots).
    Malformed,
    /// A feature of OPA's format cordon does not take: delta bundles, Wasm, plugins.
    Unsupported,
    /// A signature is required and the bundle has none.
    Unsigned,
    /// The signature file or its token cannot be read.
    BadSignature,
    /// The signature was made by another key, or does not verify.
    WrongKey,
    /// The token's `exp` has passed or its `nbf` has not come.
    Expired,
    /// A file's content differs from its signed digest.
    Tampered,
    /// A file in the archive that the signature does not list.
    NotListed,
    /// A file the signature lists that the archive does not hold.
    Missing,
    /// A revision older than one already activated (or the same revision with other
    /// content): a replayed bundle.
    Rollback,
    /// The policy the bundle holds does not load.
    Policy,
}

impl Problem {
    /// A stable name for records and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::NotABundle => "not_a_bundle",
            Self::UnsafePath => "unsafe_path",
            Self::NotARegularFile => "not_a_regular_file",
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Unsupported => "unsupported",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::WrongKey => "wrong_key",
            Self::Expired => "expired",
            Self::Tampered => "tampered",
            Self::NotListed => "not_listed",
            Self::Missing => "missing",
            Self::Rollback => "rollback",
            Self::Policy => "policy",
        }
    }
}

/// A bundle refused: the kind of problem, the file in the bundle it concerns, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    /// The kind of problem.
    pub problem: Problem,
    /// The file inside the bundle, when the problem is one file's.
    pub file: Option<String>,
    /// What is wrong, for a person.
    pub reason: String,
}

impl BundleError {
    /// A problem of the bundle as a whole. The reason quotes what the bundle holds: control
    /// characters in it are shown as `?`, so that a name or a claim cannot rewrite a
    /// terminal.
    pub fn new(problem: Problem, reason: impl Into<String>) -> Self {
        Self {
            problem,
            file: None,
            reason: cordon_types::printable(&reason.into()),
        }
    }

    /// A problem of one file in the bundle (named printably, as the reason is).
    pub fn file(problem: Problem, file: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            problem,
            file: Some(cordon_types::printable(&file.into())),
            reason: cordon_types::printable(&reason.into()),
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "`{file}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for BundleError {}

/// A result whose error is a [`BundleError`].
pub type Result<T, E = BundleError> = std::result::Result<T, E>;
