//! Errors of loading and checking policies.

use std::io;
use std::path::PathBuf;

/// Why a policy could not be loaded. Evaluation never returns an error: it denies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy directory or file could not be read.
    #[error("cannot read policy at `{}`", path.display())]
    Read {
        /// What was being read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The policy directory holds no `.rego` file.
    #[error("no `.rego` files found in `{}`", path.display())]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// A `.rego` file does not parse, or the policy does not compile.
    #[error("{location}: {message}")]
    Syntax {
        /// `file:line:col`, or the file name when regorus gave no position.
        location: String,
        /// What is wrong there.
        message: String,
    },
    /// A data file is not valid JSON or YAML, or conflicts with another.
    #[error("{file}: {message}")]
    Data {
        /// The data file.
        file: String,
        /// What is wrong with it.
        message: String,
    },
    /// A test selection pattern is not a valid regular expression.
    #[error("invalid test pattern `{pattern}`")]
    Pattern {
        /// The pattern given.
        pattern: String,
        /// Why it is invalid.
        #[source]
        source: regex::Error,
    },
}

/// Result of the policy crate's fallible operations.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

/// Turns a regorus diagnostic into `file:line:col: message`.
///
/// regorus reports a parse error as a small rendering:
///
/// ```text
/// --> bad.rego:4:5
///   |
/// 4 |   1 =
///   |     ^
/// error: expecting `}` while parsing set
/// ```
///
/// from which the position and the last `error:` line are kept.
pub(crate) fn syntax_error(fallback_file: &str, err: &dyn std::fmt::Display) -> PolicyError {
    let text = err.to_string();
    let location = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("--> "))
        .map(|loc| loc.trim().to_owned())
        .unwrap_or_else(|| fallback_file.to_owned());
    let message = crate::engine::first_line(&text);
    PolicyError::Syntax { location, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regorus_rendering_becomes_one_line() {
        let rendered = "\n--> bad.rego:4:5\n  |\n4 |   1 = \n  |     ^\nerror: expecting `}` while parsing set";
        let err = syntax_error("x.rego", &rendered);
        assert_eq!(
            err.to_string(),
            "bad.rego:4:5: expecting `}` while parsing set"
        );
        let err = syntax_error("x.rego", &"something odd");
        assert_eq!(err.to_string(), "x.rego: something odd");
    }
}
