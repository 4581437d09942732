//! The seam between enforcement surfaces and the policy engine.

use serde_json::Value;

use crate::{Capability, Decision};

/// Answers requests. Implementations never fail: any error becomes a denial with a reason.
pub trait Decider: Send + Sync {
    /// Decides `input` under `capability` (the `data.cordon.<capability>.decision` rule).
    fn decide(&self, capability: &Capability, input: &Value) -> Decision;

    /// A digest of everything that decides: policy files and data.
    fn revision(&self) -> &str;
}
