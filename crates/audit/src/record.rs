//! The stored record and its place in the hash chain.

use cordon_types::{AuditEvent, Decision, Obligation, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::redact::redact;

/// What happened to one obligation of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationRecord {
    /// The obligation as the policy gave it.
    pub obligation: Obligation,
    /// Whether it was carried out; `false` for a decision that was only evaluated or refused.
    pub carried_out: bool,
}

/// One audit record, as stored. Its canonical bytes ([`Record::canonical`]) are hashed into
/// the chain: `hash = SHA-256(canonical bytes)`, and `prev_hash` is the previous record's
/// hash, so any edit, deletion or reordering breaks the chain from that record on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// Unique identifier: 64 random bits drawn when the writer starts, then the sequence
    /// number (`3f9a...c2-1041`).
    pub id: String,
    /// When the decision was made, RFC 3339.
    pub time: String,
    /// The capability decided.
    pub capability: String,
    /// The action decided.
    pub action: String,
    /// Who asked (the input's `subject`).
    pub subject: Value,
    /// What was asked for (the input's `resource`), including `sha256` of data read or
    /// written when the surface knows it.
    pub resource: Value,
    /// The whole input document, secret-looking values replaced by `[redacted]`.
    pub input: Value,
    /// Whether the policy allowed the action.
    pub allow: bool,
    /// The policy's reasons.
    pub reasons: Vec<String>,
    /// Each obligation and whether it was carried out.
    pub obligations: Vec<ObligationRecord>,
    /// What a launch decision granted (paths, hosts, variables, limits); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Value>,
    /// What happened to the action.
    pub outcome: Outcome,
    /// The content digest of the policy that decided.
    pub policy_revision: String,
    /// The digest of the signed bundle the policy came from, when it came from one.
    pub bundle_digest: Option<String>,
    /// The cordon version that decided.
    pub cordon_version: String,
    /// The previous record's hash, lowercase hex; 64 zeros for the first record.
    pub prev_hash: String,
}

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Record {
    /// Builds the record for `event` at `seq`, chained to `prev_hash`.
    pub fn new(event: &AuditEvent, seq: u64, id: String, prev_hash: String) -> Self {
        let carried_out = event.outcome == Outcome::Performed;
        Self {
            seq,
            id,
            time: event.time.clone(),
            capability: event.capability.clone(),
            action: event.action.clone(),
            subject: redact(&event.input["subject"]),
            resource: redact(&event.input["resource"]),
            input: redact(&event.input),
            allow: event.decision.allow,
            reasons: event.decision.reasons.clone(),
            obligations: event
                .decision
                .obligations
                .iter()
                .map(|o| ObligationRecord {
                    obligation: o.clone(),
                    carried_out,
                })
                .collect(),
            grants: event.decision.grants.clone(),
            outcome: event.outcome,
            policy_revision: event.policy_revision.clone(),
            bundle_digest: None,
            cordon_version: event.cordon_version.clone(),
            prev_hash,
        }
    }

    /// The bytes that are hashed: compact JSON, fields in declaration order, object keys
    /// sorted (serde_json's map is ordered), so the same record always gives the same bytes.
    pub fn canonical(&self) -> Vec<u8> {
        // A record is plain data; serialising it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of the canonical bytes, lowercase hex.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.canonical()))
    }

    /// The decision as recorded.
    pub fn decision(&self) -> Decision {
        Decision {
            allow: self.allow,
            reasons: self.reasons.clone(),
            obligations: self
                .obligations
                .iter()
                .map(|o| o.obligation.clone())
                .collect(),
            grants: self.grants.clone(),
        }
    }
}

pub(crate) use cordon_types::hex;

/// 64 random bits in hex: the part of record ids that differs between writer sessions.
pub fn random_prefix() -> String {
    let mut bytes = [0u8; 8];
    // Ids only need to be unique; if the system's source fails, the time will do.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes.copy_from_slice(&nanos.to_le_bytes());
    }
    hex(&bytes)
}
