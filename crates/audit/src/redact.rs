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
        Value::String(s) => Value::String(redact_inside(s)),
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

/// Words after which the next word is a credential (`Authorization: Bearer TOKEN`).
const CREDENTIAL_SCHEMES: [&str; 3] = ["bearer", "basic", "token"];

/// `s` with credentials inside it replaced (a command line, a header line, a URL): the word
/// after `Bearer`/`Basic`/`token`, the user information of a URL with a password (or of any
/// HTTP URL, where a token often stands as the user name), and words that start like a known
/// credential format.
fn redact_inside(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_scheme = false;
    for (i, word) in s.split_inclusive(|c: char| c.is_whitespace()).enumerate() {
        let trimmed = word.trim_end();
        let tail = &word[trimmed.len()..];
        let (prefix, value) = match trimmed.split_once('=') {
            // `--token=VALUE`, `KEY=VALUE`: judge the value.
            Some((key, value)) if i > 0 || !key.contains("://") => (&trimmed[..=key.len()], value),
            _ => ("", trimmed),
        };
        let known_format = SECRET_PREFIXES
            .iter()
            .any(|p| value.starts_with(p) && value.len() >= p.len() + 16);
        let replaced = if (after_scheme && !value.is_empty()) || known_format {
            Some(REDACTED.to_owned())
        } else {
            redact_url_userinfo(value)
        };
        after_scheme = CREDENTIAL_SCHEMES
            .iter()
            .any(|scheme| value.eq_ignore_ascii_case(scheme));
        match replaced {
            Some(value) => {
                out.push_str(prefix);
                out.push_str(&value);
            }
            None => out.push_str(trimmed),
        }
        out.push_str(tail);
    }
    out
}

/// Where the user information of each URL in `text` that carries credentials lies (byte
/// ranges): user information with a password (`scheme://user:password@host`,
/// `scheme://:password@host`), or, for HTTP, any user information at all (a token is often
/// sent as the user name: `https://ghp_x@github.com`).
pub fn url_credentials(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    text.match_indices("://").filter_map(|(at, _)| {
        let scheme = text[..at]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let start = at + 3;
        let rest = &text[start..];
        let authority_end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        let (userinfo, _) = rest[..authority_end].rsplit_once('@')?;
        let http = scheme.ends_with("http") || scheme.ends_with("https");
        (!userinfo.is_empty() && (userinfo.contains(':') || http))
            .then(|| start..start + userinfo.len())
    })
}

/// `value` with the user information of the first URL in it that carries credentials
/// replaced ([`url_credentials`]).
fn redact_url_userinfo(value: &str) -> Option<String> {
    let userinfo = url_credentials(value).next()?;
    Some(format!(
        "{}{REDACTED}{}",
        &value[..userinfo.start],
        &value[userinfo.end..]
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn url_credentials_are_found_in_values() {
        for value in [
            "redis://:pw@h:6379",
            "https://u:tok@pypi.example/simple",
            "postgres://app:s3cret@db/app?sslmode=require",
            "x git+https://me:ghp_x@github.com/o/r.git",
            "https://ghp_x@github.com",
        ] {
            assert!(url_credentials(value).next().is_some(), "{value}");
        }
        for value in [
            "https://pypi.org/simple",
            "ssh://git@github.com/o/r",
            "/usr/bin:/bin",
            "mailto:me@example.org",
            "https://example.org/a:b@c",
        ] {
            assert!(url_credentials(value).next().is_none(), "{value}");
        }
    }

    #[test]
    fn credentials_inside_strings_are_replaced() {
        let command = json!([
            "curl",
            "-H",
            "Authorization: Bearer abc.def.ghi",
            "https://u:tok@example.org/x",
            "--token=ghp_0123456789abcdefghijkl",
            "git",
            "clone",
            "https://ghp_x@github.com/o/r",
            "ssh://git@github.com/o/r",
            "plain"
        ]);
        assert_eq!(
            redact(&command),
            json!([
                "curl",
                "-H",
                "Authorization: Bearer [redacted]",
                "https://[redacted]@example.org/x",
                "--token=[redacted]",
                "git",
                "clone",
                "https://[redacted]@github.com/o/r",
                "ssh://git@github.com/o/r",
                "plain"
            ])
        );
        assert_eq!(
            redact(&json!(
                "sh -c 'curl -u x https://a:b@h/ -H \"Authorization: Basic QUJD\"'"
            )),
            json!("sh -c 'curl -u x https://[redacted]@h/ -H \"Authorization: Basic [redacted]")
        );
    }

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
