//! Content inspection on the decision path: a file's sensitivity and findings in the input,
//! and the `redact` obligation's detectors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cordon_inspect::file::{Classification, Classifier, PathRule};
use cordon_inspect::{Detector, Kind};
use cordon_types::Sensitivity;
use serde_json::{json, Value};

/// How much of a file is searched by default when a decision classifies it.
const MAX_BYTES: u64 = 8 << 20;

/// Classifies files for file decisions, as `data.cordon.settings.inspect` says: read when
/// the first file decision needs it, so a launch that decides no file pays nothing.
#[derive(Debug)]
pub struct Inspection {
    policy: Arc<cordon_policy::Policy>,
    home: Option<PathBuf>,
    classifier: OnceLock<Result<Classifier, String>>,
}

impl Inspection {
    /// Inspection under `policy`'s settings, `~/` in path rules meaning `home`.
    pub fn new(policy: Arc<cordon_policy::Policy>, home: Option<PathBuf>) -> Self {
        Self {
            policy,
            home,
            classifier: OnceLock::new(),
        }
    }

    fn classifier(&self) -> Result<&Classifier, String> {
        self.classifier
            .get_or_init(|| {
                let settings = self
                    .policy
                    .data_at(&["cordon", "settings", "inspect"])
                    .unwrap_or(Value::Null);
                classifier_from(&settings, self.home.as_deref())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Classifies the file at `path` (absolute, links resolved).
    ///
    /// # Errors
    ///
    /// The settings' fault, naming the setting.
    pub fn classify(&self, path: &Path) -> Result<Classification, String> {
        let classifier = self.classifier()?;
        let detector = Detector::standard().map_err(|e| e.to_string())?;
        Ok(classifier.classify(detector, path))
    }

    /// Fills `resource.sensitivity` (and its level, its source), `resource.findings` (kinds
    /// and counts, never values) and `resource.inspection` of a file decision's `input`.
    ///
    /// # Errors
    ///
    /// As [`Inspection::classify`]: the decision must then be a denial.
    pub fn enrich(&self, input: &mut Value, path: &Path) -> Result<(), String> {
        let c = self.classify(path)?;
        let Some(resource) = input.get_mut("resource").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        resource.insert("sensitivity".into(), json!(c.sensitivity.as_str()));
        resource.insert("sensitivity_level".into(), json!(c.sensitivity.level()));
        resource.insert("sensitivity_source".into(), json!(c.source.as_str()));
        let findings: serde_json::Map<String, Value> = c
            .findings
            .iter()
            .map(|(kind, n)| (kind.as_str().to_owned(), json!(n)))
            .collect();
        resource.insert("findings".into(), Value::Object(findings));
        let mut inspection =
            json!({"bytes": c.bytes, "binary": c.binary, "truncated": c.truncated});
        if let Some(error) = c.error {
            inspection["error"] = json!(error);
        }
        resource.insert("inspection".into(), inspection);
        Ok(())
    }
}

/// How [`redact_json`] reads the strings it walks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonStrings<'a> {
    /// Strings below this key are URLs: searched percent-decoded, replaced percent-encoded.
    pub percent_under: Option<&'a str>,
    /// Strings under a `blob` key are base64 (an MCP resource's): their bytes are searched,
    /// and encoded again once redacted.
    pub blobs: bool,
}

/// Carries out `redaction` on every string and object key in `value`: what it finds is
/// replaced by `[REDACTED:kind]`, a string holding a kind a `block_if` names by
/// `(withheld)`. Returns how many findings were replaced, or the first refusal.
///
/// # Errors
///
/// The kinds a `block_if` names that were found: what holds them must not leave.
pub(crate) fn redact_json(
    value: &mut Value,
    redaction: &cordon_inspect::redact::Redaction,
    strings: JsonStrings<'_>,
) -> Result<usize, cordon_inspect::redact::Blocked> {
    use cordon_inspect::redact::Encoding;
    struct Walk<'a> {
        redaction: &'a cordon_inspect::redact::Redaction,
        strings: JsonStrings<'a>,
        found: usize,
        blocked: Option<cordon_inspect::redact::Blocked>,
    }
    impl Walk<'_> {
        fn text(&mut self, text: &mut String, encoding: Encoding) {
            match self.redaction.apply(text.as_bytes(), encoding) {
                Ok(r) if !r.findings.is_empty() => {
                    self.found += r.findings.len();
                    *text = String::from_utf8_lossy(&r.data).into_owned();
                }
                Ok(_) => {}
                Err(b) => {
                    *text = "(withheld)".to_owned();
                    self.blocked.get_or_insert(b);
                }
            }
        }

        /// A base64 blob's bytes; `false` when it is not base64 (then searched as text).
        fn blob(&mut self, value: &mut Value) -> bool {
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            let Some(bytes) = value.as_str().and_then(|text| engine.decode(text).ok()) else {
                return false;
            };
            match self.redaction.apply(&bytes, Encoding::Plain) {
                Ok(r) if !r.findings.is_empty() => {
                    self.found += r.findings.len();
                    *value = Value::String(engine.encode(&r.data));
                }
                Ok(_) => {}
                Err(b) => {
                    *value = json!("(withheld)");
                    self.blocked.get_or_insert(b);
                }
            }
            true
        }

        fn value(&mut self, value: &mut Value, encoding: Encoding) {
            match value {
                Value::String(text) => self.text(text, encoding),
                Value::Array(items) => {
                    for item in items {
                        self.value(item, encoding);
                    }
                }
                Value::Object(map) => {
                    // A key can hold what is redacted as well as a value can (`{"AKIA…": 1}`).
                    for (mut key, mut item) in std::mem::take(map) {
                        let below = if self.strings.percent_under == Some(key.as_str()) {
                            Encoding::Percent
                        } else {
                            encoding
                        };
                        if !(self.strings.blobs && key == "blob" && self.blob(&mut item)) {
                            self.value(&mut item, below);
                        }
                        self.text(&mut key, Encoding::Plain);
                        map.insert(key, item);
                    }
                }
                _ => {}
            }
        }
    }
    let mut walk = Walk {
        redaction,
        strings,
        found: 0,
        blocked: None,
    };
    walk.value(value, Encoding::Plain);
    walk.blocked.map_or(Ok(walk.found), Err)
}

/// Reads `data.cordon.settings.inspect`: `max_bytes`, `binary`, `levels` (kind → level)
/// and `paths` (`[{"glob", "level"}]`, first match wins).
fn classifier_from(settings: &Value, home: Option<&Path>) -> Result<Classifier, String> {
    let bad = |what: &str| format!("`data.cordon.settings.inspect.{what}`");
    let level = |value: &Value, what: &str| -> Result<Sensitivity, String> {
        value
            .as_str()
            .ok_or_else(|| format!("{} is not a sensitivity name", bad(what)))?
            .parse()
            .map_err(|e: String| format!("{}: {e}", bad(what)))
    };
    let max_bytes = match settings.get("max_bytes") {
        None | Some(Value::Null) => MAX_BYTES,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("{} is not a number of bytes", bad("max_bytes")))?,
    };
    let binary = match settings.get("binary") {
        None | Some(Value::Null) => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("{} is not true or false", bad("binary")))?,
    };
    let mut levels = BTreeMap::new();
    if let Some(map) = settings.get("levels").and_then(Value::as_object) {
        for (kind, value) in map {
            let parsed: Kind = kind
                .parse()
                .map_err(|e: cordon_inspect::Error| format!("{}: {e}", bad("levels")))?;
            levels.insert(parsed, level(value, &format!("levels.{kind}"))?);
        }
    }
    let mut rules = Vec::new();
    if let Some(list) = settings.get("paths").and_then(Value::as_array) {
        for (i, rule) in list.iter().enumerate() {
            let glob = rule
                .get("glob")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{} has no `glob`", bad(&format!("paths[{i}]"))))?;
            let level = level(
                rule.get("level").unwrap_or(&Value::Null),
                &format!("paths[{i}].level"),
            )?;
            rules.push(PathRule::new(glob, level, home)?);
        }
    }
    Ok(Classifier::new(rules, levels, max_bytes, binary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_setting() {
        let err = classifier_from(&json!({"levels": {"email": "secret"}}), None).unwrap_err();
        assert!(err.contains("levels.email"), "{err}");
        let err = classifier_from(&json!({"levels": {"nope": "public"}}), None).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        let err = classifier_from(&json!({"paths": [{"level": "public"}]}), None).unwrap_err();
        assert!(err.contains("paths[0]"), "{err}");
        let err = classifier_from(&json!({"max_bytes": "big"}), None).unwrap_err();
        assert!(err.contains("max_bytes"), "{err}");
        assert!(classifier_from(&Value::Null, None).is_ok());
    }
}
