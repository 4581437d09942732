//! What a policy answered, and how that answer is read.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// The answer to one request: allow or deny, why, and what must happen first.
///
/// `allow` is only ever true when the policy said so in a well-formed decision whose every
/// obligation cordon understands; see [`Decision::from_policy_value`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the action may proceed, once the obligations are carried out.
    pub allow: bool,
    /// Human-readable reasons, in the policy's order.
    pub reasons: Vec<String>,
    /// What must be carried out before the action proceeds.
    pub obligations: Vec<Obligation>,
    /// What a launch decision grants (`data.cordon.sandbox.decision.grants`): the paths,
    /// hosts, variables and limits of a native sandbox. Read by the sandbox, which refuses
    /// a grant set it cannot read; absent for every other capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Value>,
}

/// Something that must happen before an allowed action proceeds. An obligation that cannot be
/// carried out turns the decision into a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Obligation {
    /// Ask the person at the keyboard.
    Consent {
        /// What to ask; cordon writes its own question when absent.
        message: Option<String>,
        /// The scopes the person may answer for (`once`, `session`, `minutes`, `always`);
        /// all of them when empty.
        scopes: Vec<String>,
        /// How long to wait for an answer, in seconds; no answer is a denial.
        timeout_s: Option<u64>,
        /// What the answer covers, `CAPABILITY:ENTRY` (an answer for the session covers
        /// every request with the same key; one for always is remembered under it, at
        /// `data.cordon.remembered.CAPABILITY["ENTRY"]`). cordon makes one when absent.
        key: Option<String>,
    },
    /// Require a fresh multi-factor authentication.
    Mfa {
        /// How old the last authentication may be, in seconds.
        max_age_s: Option<u64>,
    },
    /// Remove matching content before it leaves.
    Redact {
        /// Kinds (`token`), rule ids (`github-token`) or `regex:PATTERN`s whose matches are
        /// replaced by `[REDACTED:kind]`; every standard rule when empty.
        patterns: Vec<String>,
        /// Kinds, rules or patterns whose presence refuses the action instead.
        block_if: Vec<String>,
    },
    /// Journal the write so it can be undone.
    Journal,
    /// Cap the rate or volume of the action.
    Limit {
        /// Connections or calls per minute.
        per_minute: Option<u64>,
        /// Bytes per session.
        bytes: Option<u64>,
    },
    /// An obligation this version of cordon does not know. It cannot be carried out, so a
    /// decision that carries one is a denial.
    Unknown {
        /// The `type` the policy gave.
        kind: String,
        /// The obligation as the policy wrote it.
        raw: Value,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentFields {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    scopes: Vec<ConsentScope>,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default)]
    key: Option<String>,
}

/// A scope a consent may be given for, as policies name them.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ConsentScope {
    Once,
    Session,
    Minutes,
    Always,
}

impl ConsentScope {
    fn name(&self) -> &'static str {
        match self {
            ConsentScope::Once => "once",
            ConsentScope::Session => "session",
            ConsentScope::Minutes => "minutes",
            ConsentScope::Always => "always",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MfaFields {
    #[serde(default)]
    max_age_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactFields {
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    block_if: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalFields {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitFields {
    #[serde(default)]
    per_minute: Option<u64>,
    #[serde(default)]
    bytes: Option<u64>,
}

impl Obligation {
    /// The obligation's `type` as written in policies.
    pub fn kind(&self) -> &str {
        match self {
            Obligation::Consent { .. } => "consent",
            Obligation::Mfa { .. } => "mfa",
            Obligation::Redact { .. } => "redact",
            Obligation::Journal => "journal",
            Obligation::Limit { .. } => "limit",
            Obligation::Unknown { kind, .. } => kind,
        }
    }

    /// Reads one obligation object.
    ///
    /// A known `type` with a missing, mistyped or unknown field is an error, because carrying
    /// out part of an obligation would be weaker than the policy asked. An unknown `type` is
    /// not an error here: it becomes [`Obligation::Unknown`], which denies.
    ///
    /// # Errors
    ///
    /// A message naming the field that is wrong.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err(format!(
                "obligation is not an object (got {})",
                json_type(value)
            ));
        };
        let kind = match map.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(other) => {
                return Err(format!(
                    "obligation `type` is not a string (got {})",
                    json_type(other)
                ))
            }
            None => return Err("obligation has no `type`".to_owned()),
        };
        let mut fields = map.clone();
        fields.remove("type");
        let fields = Value::Object(fields);
        let parsed = match kind.as_str() {
            "consent" => fields_of::<ConsentFields>(&kind, fields).map(|f| Obligation::Consent {
                message: f.message,
                scopes: f.scopes.iter().map(|s| s.name().to_owned()).collect(),
                timeout_s: f.timeout_s,
                key: f.key,
            }),
            "mfa" => fields_of::<MfaFields>(&kind, fields).map(|f| Obligation::Mfa {
                max_age_s: f.max_age_s,
            }),
            "redact" => fields_of::<RedactFields>(&kind, fields).map(|f| Obligation::Redact {
                patterns: f.patterns,
                block_if: f.block_if,
            }),
            "journal" => fields_of::<JournalFields>(&kind, fields).map(|_| Obligation::Journal),
            "limit" => fields_of::<LimitFields>(&kind, fields).and_then(|f| {
                if f.per_minute.is_none() && f.bytes.is_none() {
                    Err("obligation `limit` sets neither `per_minute` nor `bytes`".to_owned())
                } else {
                    Ok(Obligation::Limit {
                        per_minute: f.per_minute,
                        bytes: f.bytes,
                    })
                }
            }),
            _ => Ok(Obligation::Unknown {
                kind,
                raw: value.clone(),
            }),
        }?;
        Ok(parsed)
    }

    fn to_value(&self) -> Value {
        let mut map = Map::new();
        match self {
            Obligation::Unknown { raw, .. } => return raw.clone(),
            Obligation::Consent {
                message,
                scopes,
                timeout_s,
                key,
            } => {
                insert_some(&mut map, "message", message.clone());
                insert_some(&mut map, "key", key.clone());
                if !scopes.is_empty() {
                    map.insert("scopes".into(), Value::from(scopes.clone()));
                }
                insert_some(&mut map, "timeout_s", *timeout_s);
            }
            Obligation::Mfa { max_age_s } => insert_some(&mut map, "max_age_s", *max_age_s),
            Obligation::Redact { patterns, block_if } => {
                map.insert("patterns".into(), Value::from(patterns.clone()));
                if !block_if.is_empty() {
                    map.insert("block_if".into(), Value::from(block_if.clone()));
                }
            }
            Obligation::Journal => {}
            Obligation::Limit { per_minute, bytes } => {
                insert_some(&mut map, "per_minute", *per_minute);
                insert_some(&mut map, "bytes", *bytes);
            }
        }
        map.insert("type".into(), Value::String(self.kind().to_owned()));
        Value::Object(map)
    }
}

fn insert_some<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

fn fields_of<T: serde::de::DeserializeOwned>(kind: &str, fields: Value) -> Result<T, String> {
    serde_json::from_value(fields).map_err(|e| format!("obligation `{kind}`: {e}"))
}

impl Serialize for Obligation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Obligation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Obligation::from_value(&value).map_err(serde::de::Error::custom)
    }
}

impl Decision {
    /// A denial with one reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allow: false,
            reasons: vec![reason.into()],
            obligations: Vec::new(),
            grants: None,
        }
    }

    /// Reads the value a policy gave for `data.cordon.<capability>.decision`; `None` when the
    /// rule is undefined.
    ///
    /// This never fails: anything other than a well-formed decision is a denial whose reason
    /// names what was wrong, and a decision that carries an obligation cordon does not know
    /// is a denial too.
    pub fn from_policy_value(value: Option<&Value>) -> Self {
        let Some(value) = value else {
            return Decision::deny(
                "the policy defines no decision for this request (undefined); denying by default",
            );
        };
        let Value::Object(map) = value else {
            return Decision::deny(format!(
                "malformed decision: expected an object with `allow`, got {}",
                json_type(value)
            ));
        };
        let allow = match map.get("allow") {
            Some(Value::Bool(allow)) => *allow,
            Some(other) => {
                return Decision::deny(format!(
                    "malformed decision: `allow` must be a boolean, got {}",
                    json_type(other)
                ))
            }
            None => return Decision::deny("malformed decision: `allow` is missing"),
        };
        let reasons = match map.get("reasons") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut reasons = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(reason) => reasons.push(reason.clone()),
                        other => {
                            return Decision::deny(format!(
                                "malformed decision: `reasons` must hold strings, found {}",
                                json_type(other)
                            ))
                        }
                    }
                }
                reasons
            }
            Some(other) => {
                return Decision::deny(format!(
                    "malformed decision: `reasons` must be an array, got {}",
                    json_type(other)
                ))
            }
        };
        let obligations = match map.get("obligations") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut obligations = Vec::with_capacity(items.len());
                for item in items {
                    match Obligation::from_value(item) {
                        Ok(obligation) => obligations.push(obligation),
                        Err(why) => return Decision::deny(format!("malformed decision: {why}")),
                    }
                }
                obligations
            }
            Some(other) => {
                return Decision::deny(format!(
                    "malformed decision: `obligations` must be an array, got {}",
                    json_type(other)
                ))
            }
        };
        if let Some(key) = map
            .keys()
            .find(|k| !["allow", "reasons", "obligations", "grants"].contains(&k.as_str()))
        {
            return Decision::deny(format!(
                "malformed decision: unknown field `{key}` (expected `allow`, `reasons`, `obligations`, `grants`)"
            ));
        }
        let mut decision = Decision {
            allow,
            reasons,
            obligations,
            grants: map.get("grants").cloned(),
        };
        let unknown: Vec<String> = decision
            .obligations
            .iter()
            .filter(|o| matches!(o, Obligation::Unknown { .. }))
            .map(|o| format!("`{}`", o.kind()))
            .collect();
        if decision.allow && !unknown.is_empty() {
            decision.allow = false;
            decision.reasons.push(format!(
                "denied: this cordon cannot carry out obligation {}",
                unknown.join(", ")
            ));
        }
        decision
    }
}

/// How a JSON value's type reads in a message: `a string`, `an object`, `null`.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Decision {
        Decision::from_policy_value(Some(&value))
    }

    #[test]
    fn reads_a_well_formed_decision() {
        let decision = parse(json!({
            "allow": true,
            "reasons": ["in workspace"],
            "obligations": [{"type": "consent", "message": "read plan?"}, {"type": "journal"},
                            {"type": "limit", "bytes": 1024}]
        }));
        assert_eq!(
            decision,
            Decision {
                allow: true,
                reasons: vec!["in workspace".into()],
                obligations: vec![
                    Obligation::Consent {
                        message: Some("read plan?".into()),
                        scopes: vec![],
                        timeout_s: None,
                        key: None,
                    },
                    Obligation::Journal,
                    Obligation::Limit {
                        per_minute: None,
                        bytes: Some(1024)
                    },
                ],
                grants: None,
            }
        );
        assert_eq!(
            serde_json::to_value(&decision).unwrap()["obligations"][2],
            json!({"type": "limit", "bytes": 1024})
        );
    }

    #[test]
    fn malformed_decisions_deny_with_the_reason() {
        let cases = [
            (json!("allow"), "malformed decision: expected an object with `allow`, got a string"),
            (json!({}), "malformed decision: `allow` is missing"),
            (json!({"allow": "true"}), "malformed decision: `allow` must be a boolean, got a string"),
            (json!({"allow": true, "reasons": "ok"}), "malformed decision: `reasons` must be an array, got a string"),
            (json!({"allow": true, "reasons": [1]}), "malformed decision: `reasons` must hold strings, found a number"),
            (json!({"allow": true, "obligations": {}}), "malformed decision: `obligations` must be an array, got an object"),
            (json!({"allow": true, "obligations": [{"type": "mfa", "max_age": 5}]}),
             "malformed decision: obligation `mfa`: unknown field `max_age`, expected `max_age_s`"),
            (json!({"allow": true, "obligations": [{"type": "limit"}]}),
             "malformed decision: obligation `limit` sets neither `per_minute` nor `bytes`"),
            (json!({"allow": true, "obligations": [{"kind": "mfa"}]}), "malformed decision: obligation has no `type`"),
            (json!({"allow": true, "alow": false}),
             "malformed decision: unknown field `alow` (expected `allow`, `reasons`, `obligations`, `grants`)"),
        ];
        for (value, reason) in cases {
            assert_eq!(parse(value.clone()), Decision::deny(reason), "for {value}");
        }
        assert!(!Decision::from_policy_value(None).allow);
    }

    #[test]
    fn unknown_obligations_fail_closed() {
        let decision =
            parse(json!({"allow": true, "obligations": [{"type": "notify", "to": "soc"}]}));
        assert!(!decision.allow);
        assert_eq!(
            decision.reasons,
            vec!["denied: this cordon cannot carry out obligation `notify`"]
        );
        assert_eq!(
            decision.obligations,
            vec![Obligation::Unknown {
                kind: "notify".into(),
                raw: json!({"type": "notify", "to": "soc"})
            }]
        );
        // A denial with an unknown obligation stays a plain denial.
        let decision =
            parse(json!({"allow": false, "reasons": ["no"], "obligations": [{"type": "notify"}]}));
        assert_eq!(decision.reasons, vec!["no"]);
    }
}
