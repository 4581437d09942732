//! Secret values are not copied into the audit log.

use serde_json::Value;

/// Key names whose values are replaced, compared case-insensitively after removing `-` and
/// `_`: `api_key`, `X-Api-Key` and `apikey` are the same key.
const SECRET_KEYS: [&str; 12] = [
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "authorization",
    "cookie",
    "credentials",
    "sessionid",
];

/// Prefixes of well-known credential formats found inside string values.
const SECRET_PREFIXES: [&str; 8] = [
    "-----BEGIN",
    "AKIA",
    "ASIA",
    "ghp_",
    "gho_",
    "github_pat_",
    "xoxb-",
    "sk-",
];

/// The replacement.
pub const REDACTED: &str = "[redacted]";

/// A copy of `value` with secret-looking values replaced by `[redacted]`: the values of keys
/// named like secrets, and strings that start like a known credential format.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) if looks_like_secret(s) => Value::String(REDACTED.into()),
        other => other.clone(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.iter().any(|s| folded.ends_with(s))
}

fn looks_like_secret(s: &str) -> bool {
    SECRET_PREFIXES
        .iter()
        .any(|p| s.starts_with(p) && s.len() >= p.len() + 16)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn replaces_secret_keys_and_values_only() {
        let input = json!({
            "resource": {"path": "/home/a/x", "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k"}},
            "context": {"db_password": "hunter2", "note": "AKIAABCDEFGHIJKLMNOP", "short": "sk-1"},
            "list": ["ghp_0123456789abcdefghijkl", "plain"],
            "token": null
        });
        assert_eq!(
            redact(&input),
            json!({
                "resource": {"path": "/home/a/x", "headers": {"Authorization": REDACTED, "X-Api-Key": REDACTED}},
                "context": {"db_password": REDACTED, "note": REDACTED, "short": "sk-1"},
                "list": [REDACTED, "plain"],
                "token": null
            })
        );
    }
}
