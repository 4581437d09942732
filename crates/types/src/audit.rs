//! The seam through which every decision is recorded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AuditError, Decision};

/// What happened to the action after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action was carried out.
    Performed,
    /// The action was not carried out: denied, or an obligation could not be met.
    Refused,
    /// The action was allowed but failed while being carried out.
    Failed,
    /// Only decided, nothing to carry out (`cordon eval`).
    Evaluated,
}

impl Outcome {
    /// The name stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Performed => "performed",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Evaluated => "evaluated",
        }
    }
}

/// One decision, as it is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the decision was made, RFC 3339.
    pub time: String,
    /// The capability decided.
    pub capability: String,
    /// The action decided.
    pub action: String,
    /// The input document the policy saw.
    pub input: Value,
    /// What the policy answered, after cordon's own checks.
    pub decision: Decision,
    /// What happened to the action.
    pub outcome: Outcome,
    /// The revision (content digest) of the policy that decided.
    pub policy_revision: String,
    /// The cordon version that decided.
    pub cordon_version: String,
}

/// Where decisions are recorded. Implementations must be durable enough for their purpose and
/// must report failure: an action whose decision could not be recorded is refused.
pub trait AuditSink: Send + Sync {
    /// Records one event.
    ///
    /// # Errors
    ///
    /// An [`AuditError`] when the event was not recorded; the caller then refuses the action.
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError>;

    /// Records the last event of a command. A log that seals itself when it is closed (a
    /// signed checkpoint) may do it in the same write; by default, the same as
    /// [`AuditSink::record`].
    ///
    /// # Errors
    ///
    /// As [`AuditSink::record`].
    fn record_last(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.record(event)
    }

    /// Records an event about something already done (a result delivered), without waiting
    /// for it to be durable: a log that commits in groups may keep it for the next durable
    /// write, or write it alone shortly after. By default, the same as
    /// [`AuditSink::record`]. Never for a decision an action waits on.
    ///
    /// # Errors
    ///
    /// An [`AuditError`] when the event could not even be queued.
    fn record_deferred(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.record(event)
    }
}
