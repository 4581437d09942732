//! Content inspection: local detectors of secrets and personal data.
//!
//! One [`Detector`] holds a set of rules (gitleaks-style: each with an id, a kind and, where
//! the format allows, a validation such as a checksum) compiled into one multi-pattern
//! automaton, so a haystack is searched once whatever the number of rules. A [`Scanner`]
//! feeds it a stream in blocks with bounded memory; [`Detector::redact`] replaces what it
//! finds. Findings carry where and what, never the value: callers that show a finding use
//! [`excerpt`], which masks it.
//!
//! ```
//! let detector = cordon_inspect::Detector::standard().unwrap();
//! let findings = detector.find(b"key = AKIAQYLPMN5HHHFPZAM2");
//! assert_eq!(findings[0].rule, "aws-access-key-id");
//! let redacted = detector.redact(b"key = AKIAQYLPMN5HHHFPZAM2");
//! assert_eq!(redacted.data, b"key = [REDACTED:cloud_key]");
//! ```

mod check;
mod detector;
mod error;
pub mod file;
mod mask;
pub mod redact;
mod rules;
mod scan;

pub use detector::{counts, Detector, Redacted, Selection};
pub use error::{Error, Result};
pub use mask::excerpt;
pub use scan::{
    looks_binary, scan_reader, scan_reader_masking, Found, Scanner, Summary, BINARY_PROBE, OVERLAP,
};

use serde::Serialize;

/// What a finding is. Secrets first, then personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// A private key block (PEM, OpenSSH, PGP).
    PrivateKey,
    /// A cloud provider's credential: AWS access keys and secrets, a GCP service account,
    /// Azure storage and service-bus keys.
    CloudKey,
    /// An API token of a known service (GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic,
    /// Google).
    Token,
    /// A JSON Web Token.
    Jwt,
    /// A user name and password in a URL.
    UrlCredentials,
    /// A high-entropy value assigned to a name that says it is secret.
    GenericSecret,
    /// An e-mail address.
    Email,
    /// A telephone number.
    Phone,
    /// A payment card number (Luhn-valid, with a known issuer prefix).
    PaymentCard,
    /// An international bank account number (mod 97).
    Iban,
    /// A national identity number that carries a check digit.
    NationalId,
    /// A match of a pattern a policy gave.
    Custom,
}

impl Kind {
    /// Every kind, secrets first.
    pub const ALL: [Kind; 12] = [
        Kind::PrivateKey,
        Kind::CloudKey,
        Kind::Token,
        Kind::Jwt,
        Kind::UrlCredentials,
        Kind::GenericSecret,
        Kind::Email,
        Kind::Phone,
        Kind::PaymentCard,
        Kind::Iban,
        Kind::NationalId,
        Kind::Custom,
    ];

    /// The name policies and reports use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::PrivateKey => "private_key",
            Kind::CloudKey => "cloud_key",
            Kind::Token => "token",
            Kind::Jwt => "jwt",
            Kind::UrlCredentials => "url_credentials",
            Kind::GenericSecret => "generic_secret",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::PaymentCard => "payment_card",
            Kind::Iban => "iban",
            Kind::NationalId => "national_id",
            Kind::Custom => "custom",
        }
    }

    /// Whether this is a secret (as opposed to personal data).
    pub const fn is_secret(self) -> bool {
        matches!(
            self,
            Kind::PrivateKey
                | Kind::CloudKey
                | Kind::Token
                | Kind::Jwt
                | Kind::UrlCredentials
                | Kind::GenericSecret
        )
    }

    /// The sensitivity a file holding this kind has when the policy sets none: secrets are
    /// restricted; cards, bank accounts, national ids and custom patterns confidential;
    /// addresses and telephone numbers, common in ordinary files, leave it as it is.
    pub const fn default_sensitivity(self) -> cordon_types::Sensitivity {
        use cordon_types::Sensitivity;
        match self {
            Kind::Email | Kind::Phone => Sensitivity::Internal,
            Kind::PaymentCard | Kind::Iban | Kind::NationalId | Kind::Custom => {
                Sensitivity::Confidential
            }
            _ => Sensitivity::Restricted,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::UnknownName { name: s.to_owned() })
    }
}

/// How sure a rule is that a match is what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// The shape fits but nothing confirms it (a telephone number, a generic assignment).
    Low,
    /// The shape and its surroundings fit.
    Medium,
    /// A distinctive prefix or a check digit confirms it.
    High,
}

/// One thing found: where and what, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was found.
    pub kind: Kind,
    /// The rule that found it.
    pub rule: &'static str,
    /// Byte offset of its first byte in the stream.
    pub start: u64,
    /// Byte offset just past its last byte.
    pub end: u64,
    /// The line its first byte is on, from 1.
    pub line: u64,
    /// How sure the rule is.
    pub confidence: Confidence,
}

/// The rule ids of the standard detector, in the order they are tried.
pub fn rule_ids() -> impl Iterator<Item = (&'static str, Kind)> {
    rules::RULES.iter().map(|r| (r.id, r.kind))
}
