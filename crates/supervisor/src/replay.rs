//! Replaying recorded decisions under a candidate policy: which would change, and why.
//!
//! A record's input document is decided again by the candidate and the answer compared with
//! the recorded one: allowed → denied, denied → allowed, and obligations added or removed.
//! Only decision records are replayed (an outcome record repeats its decision), and only for
//! capabilities the candidate decides. Inputs were recorded with secret-looking values
//! replaced by `[redacted]`; a rule that reads such a value sees the placeholder.

use std::collections::{BTreeMap, BTreeSet};

use cordon_policy::Policy;
use cordon_types::{Capability, Decision};
use serde::Serialize;
use serde_json::Value;

/// One recorded decision, whatever log it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// When it was decided.
    pub time: String,
    /// The capability.
    pub capability: String,
    /// The action.
    pub action: String,
    /// The input document.
    pub input: Value,
    /// Whether it was allowed.
    pub allow: bool,
    /// The reasons given.
    pub reasons: Vec<String>,
    /// The kinds of the obligations it carried.
    pub obligations: BTreeSet<String>,
    /// `evaluated`, `refused`, `performed` or `failed`.
    pub outcome: String,
}

impl Recorded {
    /// Reads a record as `cordon audit export` writes it (the store's form) or as the JSON
    /// Lines sink writes it (an event with its `decision`).
    pub fn from_json(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key)?.as_str().map(str::to_owned);
        let decision = value.get("decision");
        let (allow, reasons, obligations) = match decision {
            Some(decision) => {
                let decision: Decision = serde_json::from_value(decision.clone()).ok()?;
                let kinds = decision
                    .obligations
                    .iter()
                    .map(|o| o.kind().to_owned())
                    .collect();
                (decision.allow, decision.reasons, kinds)
            }
            None => {
                let kinds = value
                    .get("obligations")?
                    .as_array()?
                    .iter()
                    .filter_map(|o| {
                        o.get("obligation")?
                            .get("type")?
                            .as_str()
                            .map(str::to_owned)
                    })
                    .collect();
                let reasons = value
                    .get("reasons")?
                    .as_array()?
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect();
                (value.get("allow")?.as_bool()?, reasons, kinds)
            }
        };
        Some(Self {
            time: text("time")?,
            capability: text("capability")?,
            action: text("action").unwrap_or_default(),
            input: value.get("input")?.clone(),
            allow,
            reasons,
            obligations,
            outcome: text("outcome").unwrap_or_default(),
        })
    }
}

/// One side of a changed decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// Allowed or not.
    pub allow: bool,
    /// The obligations' kinds.
    pub obligations: BTreeSet<String>,
    /// The first reason, if any.
    pub reason: Option<String>,
}

/// A decision the candidate would make differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// When it was first decided.
    pub time: String,
    /// The capability.
    pub capability: String,
    /// The action.
    pub action: String,
    /// What it was about: the input's `resource`.
    pub resource: Value,
    /// `allow_to_deny`, `deny_to_allow` or `obligations`.
    pub change: &'static str,
    /// As recorded.
    pub before: Side,
    /// Under the candidate.
    pub after: Side,
    /// Obligations the candidate adds.
    pub added: BTreeSet<String>,
    /// Obligations the candidate drops.
    pub removed: BTreeSet<String>,
    /// What the change is counted under: the reason of the side that denies, or the
    /// obligations that differ.
    pub rule: String,
}

/// How many changes of each kind one rule accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Allowed before, denied now.
    pub allow_to_deny: u64,
    /// Denied before, allowed now.
    pub deny_to_allow: u64,
    /// Obligations added or removed.
    pub obligations: u64,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records read.
    pub records: u64,
    /// Decisions replayed.
    pub replayed: u64,
    /// Replayed and the same.
    pub unchanged: u64,
    /// Records not replayed, by why.
    pub skipped: BTreeMap<String, u64>,
    /// Every change, in log order.
    pub changes: Vec<Change>,
    /// Changes counted by the rule (reason) they come from, per capability.
    pub by_rule: BTreeMap<String, Counts>,
}

/// A reason with the values it quotes elided (`` `…` ``, `"…"`, `[…]`), so that the reasons
/// one rule gives for different requests count as one.
pub fn template(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut closing: Option<char> = None;
    for c in reason.chars() {
        match closing {
            Some(end) if c == end => {
                out.push('…');
                out.push(c);
                closing = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                closing = match c {
                    '`' => Some('`'),
                    '"' => Some('"'),
                    '[' => Some(']'),
                    _ => None,
                };
            }
        }
    }
    if closing.is_some() {
        out.push('…');
    }
    out
}

fn side(allow: bool, obligations: BTreeSet<String>, reasons: &[String]) -> Side {
    Side {
        allow,
        obligations,
        reason: reasons.first().cloned(),
    }
}

impl Report {
    /// Replays `record` under `candidate`.
    pub fn replay(&mut self, candidate: &Policy, record: &Recorded) {
        self.records += 1;
        let skip = |report: &mut Self, why: &str| {
            *report.skipped.entry(why.to_owned()).or_default() += 1;
        };
        if !matches!(record.outcome.as_str(), "evaluated" | "refused" | "") {
            return skip(self, "outcome record (its decision is replayed)");
        }
        let Ok(capability) = Capability::new(&record.capability) else {
            return skip(self, "no capability (an invalid request)");
        };
        if !candidate.capabilities().any(|c| c == capability.as_str()) {
            return skip(self, "capability the candidate does not decide");
        }
        self.replayed += 1;
        let decision = candidate.evaluate(&capability, &record.input);
        let now: BTreeSet<String> = decision
            .obligations
            .iter()
            .map(|o| o.kind().to_owned())
            .collect();
        let (change, rule) = match (record.allow, decision.allow) {
            (true, false) => (
                "allow_to_deny",
                decision.reasons.first().cloned().unwrap_or_default(),
            ),
            (false, true) => (
                "deny_to_allow",
                record.reasons.first().cloned().unwrap_or_default(),
            ),
            _ if record.obligations != now => {
                let mut parts: Vec<String> = now
                    .difference(&record.obligations)
                    .map(|k| format!("+{k}"))
                    .collect();
                parts.extend(record.obligations.difference(&now).map(|k| format!("-{k}")));
                ("obligations", parts.join(" "))
            }
            _ => {
                self.unchanged += 1;
                return;
            }
        };
        let rule = format!("{}: {}", record.capability, template(&rule));
        let counts = self.by_rule.entry(rule.clone()).or_default();
        match change {
            "allow_to_deny" => counts.allow_to_deny += 1,
            "deny_to_allow" => counts.deny_to_allow += 1,
            _ => counts.obligations += 1,
        }
        self.changes.push(Change {
            time: record.time.clone(),
            capability: record.capability.clone(),
            action: record.action.clone(),
            resource: record.input.get("resource").cloned().unwrap_or(Value::Null),
            change,
            added: now.difference(&record.obligations).cloned().collect(),
            removed: record.obligations.difference(&now).cloned().collect(),
            before: side(record.allow, record.obligations.clone(), &record.reasons),
            after: side(decision.allow, now, &decision.reasons),
            rule,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn templates_elide_quoted_values() {
        assert_eq!(
            template("`/etc/hostname` is outside the workspace [\"/tmp\"]"),
            "`…` is outside the workspace […]"
        );
        assert_eq!(template("host \"a.example\" denied"), "host \"…\" denied");
        assert_eq!(template("unterminated `x"), "unterminated `…");
        assert_eq!(template("plain"), "plain");
    }
}
