//! What can go wrong setting up a detector.

/// A detector could not be built as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A selection named neither a kind nor a rule.
    #[error("`{name}` is neither a kind nor a rule of cordon's detectors (`cordon scan --list-rules` lists them); a regular expression is written `regex:PATTERN`")]
    UnknownName {
        /// The name as given.
        name: String,
    },
    /// A standard rule did not compile (a defect of this build of cordon).
    #[error("cordon's own detectors did not compile: {reason}")]
    Builtin {
        /// What the compiler said.
        reason: String,
    },
    /// A custom pattern did not compile.
    #[error("pattern `{pattern}` does not compile")]
    BuildPattern {
        /// The pattern as given.
        pattern: String,
        /// Why.
        #[source]
        source: Box<regex_automata::meta::BuildError>,
    },
}

/// The result of building a detector.
pub type Result<T> = std::result::Result<T, Error>;
