//! `cordon eval --explain`: which rules and which data decided.

use std::collections::BTreeMap;

use cordon_types::{Capability, Decision};
use regorus::Value;
use serde::Serialize;

use crate::engine::{decision_from, interpreter_failure};
use crate::Policy;

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The decision, evaluated by the interpreter with coverage on.
    pub decision: Decision,
    /// The value of every defined rule of the capability's package (except `decision`
    /// itself): the facts the decision was built from.
    pub rules: BTreeMap<String, serde_json::Value>,
    /// The `data` documents referred to on evaluated lines, with their values.
    pub data: BTreeMap<String, serde_json::Value>,
    /// The policy lines evaluated for this decision, in file order.
    pub evaluated: Vec<EvaluatedLine>,
}

/// One policy line that was evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluatedLine {
    /// The policy file.
    pub file: String,
    /// The 1-based line number.
    pub line: u32,
    /// The line's text, trimmed.
    pub text: String,
}

impl Policy {
    /// Evaluates `input` under `capability` with the interpreter and reports which rules,
    /// data and lines decided. Slower than [`Policy::evaluate`]; meant for people.
    pub fn explain(&self, capability: &Capability, input: &serde_json::Value) -> Explanation {
        let mut engine = match self.engine() {
            Ok(engine) => engine,
            Err(failure) => {
                return Explanation {
                    decision: decision_from(Err(failure)),
                    rules: BTreeMap::new(),
                    data: BTreeMap::new(),
                    evaluated: Vec::new(),
                }
            }
        };
        engine.set_input(Value::from(input.clone()));
        engine.set_enable_coverage(true);
        let decision = decision_from(
            crate::engine::eval_rule(&mut engine, capability.decision_path())
                .map_err(|e| interpreter_failure(&*e)),
        );
        let mut evaluated = Vec::new();
        if let Ok(report) = engine.get_coverage_report() {
            for file in report.files {
                let lines: Vec<&str> = file.code.split('\n').collect();
                for line in file.covered {
                    let text = lines
                        .get(line.saturating_sub(1) as usize)
                        .map(|l| l.trim())
                        .unwrap_or_default();
                    evaluated.push(EvaluatedLine {
                        file: file.path.clone(),
                        line,
                        text: text.to_owned(),
                    });
                }
            }
        }
        engine.set_enable_coverage(false);

        let mut rules = BTreeMap::new();
        let package = format!("data.cordon.{}", capability.as_str());
        let package_value = engine
            .eval_query(package, false)
            .ok()
            .and_then(|results| results.result.into_iter().next())
            .and_then(|result| result.expressions.into_iter().next())
            .map(|expr| expr.value);
        if let Some(Value::Object(values)) = package_value {
            for (name, value) in values.iter() {
                let defined = !matches!(value, Value::Undefined) && !is_empty_set(value);
                let name = name
                    .as_string()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|_| name.to_string());
                if defined && name != "decision" {
                    rules.insert(name, serde_json::to_value(value).unwrap_or_default());
                }
            }
        }

        let mut data = BTreeMap::new();
        let all_data = engine.get_data();
        for line in &evaluated {
            for reference in data_references(&line.text) {
                if data.contains_key(&reference) {
                    continue;
                }
                let mut value = &all_data;
                for key in reference.split('.').skip(1) {
                    value = &value[key];
                }
                if !matches!(value, Value::Undefined) {
                    data.insert(reference, serde_json::to_value(value).unwrap_or_default());
                }
            }
        }
        Explanation {
            decision,
            rules,
            data,
            evaluated,
        }
    }
}

fn is_empty_set(value: &Value) -> bool {
    matches!(value, Value::Set(set) if set.is_empty())
}

/// `data.a.b.c` references on a line of Rego.
fn data_references(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut start = 0;
    while let Some(found) = line[start..].find("data.") {
        let at = start + found;
        let boundary = at == 0
            || !(bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b'.');
        let end = line[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .map_or(line.len(), |len| at + len);
        if boundary {
            out.push(line[at..end].trim_end_matches('.').to_owned());
        }
        start = end.max(at + 5);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_data_references() {
        assert_eq!(
            data_references("some e in data.cordon.settings.net.allow; x := mydata.y"),
            vec!["data.cordon.settings.net.allow"]
        );
        assert!(data_references("input.data.x").is_empty());
    }
}
