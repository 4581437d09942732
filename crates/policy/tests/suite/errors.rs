//! Bad policies and bad answers: clear errors at load time, denials at evaluation time.

use std::path::Path;

use cordon_policy::{EngineKind, Policy, PolicyError, PolicyOptions, PolicySource};
use cordon_types::{Capability, Decision};
use pretty_assertions::assert_eq;
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

fn load(dir: &Path, engine: EngineKind) -> Result<Policy, PolicyError> {
    let source = PolicySource::from_path(dir)?;
    Policy::load(
        &source,
        PolicyOptions {
            engine,
            ..PolicyOptions::default()
        },
    )
}

const ENGINES: [EngineKind; 2] = [EngineKind::Rvm, EngineKind::Interpreter];

#[test]
fn syntax_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ok.rego",
        "package cordon.file\nimport rego.v1\ndefault decision := {\"allow\": false}\n",
    );
    write(dir.path(), "bad.rego", "package cordon.net\nimport rego.v1\n\ndecision := {\"allow\": true} if {\n    input.x ==\n}\n");
    let err = load(dir.path(), EngineKind::Rvm).unwrap_err();
    let file = dir.path().join("bad.rego");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:6:1: ", file.display())),
        "{text}"
    );
}

#[test]
fn semantic_error_is_reported_at_load_time() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", "package cordon.file\nimport rego.v1\n\ndecision := {\"allow\": no_such_function(input.x)}\n");
    for engine in ENGINES {
        let err = load(dir.path(), engine).unwrap_err();
        assert!(matches!(err, PolicyError::Syntax { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("p.rego:4:39: Unknown function: 'no_such_function'"),
            "{text}"
        );
    }
}

#[test]
fn bad_data_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", "package cordon.file\n");
    write(dir.path(), "sub/data.json", "{\"a\": [1,}");
    let err = load(dir.path(), EngineKind::Rvm).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Data { file, .. } if file.ends_with("sub/data.json")),
        "{err:?}"
    );
    write(dir.path(), "sub/data.json", "[1, 2]");
    let err = load(dir.path(), EngineKind::Rvm).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("data.json: a data document must be an object at the top level"),
        "{err}"
    );
}

#[test]
fn nested_data_is_mounted_at_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", "package cordon.net\nimport rego.v1\n\ndecision := {\"allow\": input.resource.host in data.team.hosts}\n");
    write(
        dir.path(),
        "team/data.yaml",
        "hosts: [a.example, b.example]\n",
    );
    for engine in ENGINES {
        let policy = load(dir.path(), engine).unwrap();
        let net = Capability::new("net").unwrap();
        assert!(
            policy
                .evaluate(&net, &json!({"resource": {"host": "b.example"}}))
                .allow
        );
        assert!(
            !policy
                .evaluate(&net, &json!({"resource": {"host": "c.example"}}))
                .allow
        );
    }
}

#[test]
fn malformed_and_missing_decisions_deny() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        r#"package cordon.file
import rego.v1

decision := "allow" if input.kind == "string"
decision := {"allow": 1} if input.kind == "number"
decision := {"allow": true, "obligations": [{"type": "notify"}]} if input.kind == "unknown_obligation"
"#,
    );
    let file = Capability::new("file").unwrap();
    for engine in ENGINES {
        let policy = load(dir.path(), engine).unwrap();
        let decide = |kind: &str| policy.evaluate(&file, &json!({"kind": kind}));
        assert_eq!(
            decide("string"),
            Decision::deny("malformed decision: expected an object with `allow`, got a string"),
            "{engine}"
        );
        assert_eq!(
            decide("number"),
            Decision::deny("malformed decision: `allow` must be a boolean, got a number")
        );
        assert_eq!(
            decide("none"),
            Decision::deny(
                "the policy defines no decision for this request (undefined); denying by default"
            )
        );
        let unknown = decide("unknown_obligation");
        assert!(!unknown.allow);
        assert_eq!(
            unknown.reasons,
            vec!["denied: this cordon cannot carry out obligation `notify`"]
        );
        assert_eq!(
            policy.evaluate(&Capability::new("net").unwrap(), &json!({})),
            Decision::deny("the policy has no `data.cordon.net.decision` rule; denying by default")
        );
    }
}

#[test]
fn a_rule_that_errors_at_evaluation_denies() {
    let dir = tempfile::tempdir().unwrap();
    // Two complete definitions that disagree are a conflict: an evaluation error in Rego.
    write(
        dir.path(),
        "p.rego",
        r#"package cordon.file
import rego.v1

decision := {"allow": true} if input.a
decision := {"allow": false} if input.b
"#,
    );
    let file = Capability::new("file").unwrap();
    for engine in ENGINES {
        let policy = load(dir.path(), engine).unwrap();
        assert!(
            policy.evaluate(&file, &json!({"a": true})).allow,
            "{engine}"
        );
        let both = policy.evaluate(&file, &json!({"a": true, "b": true}));
        assert!(!both.allow, "{engine}");
        // The interpreter reports the conflict; regorus's VM leaves the rule undefined.
        // Both deny, which is what matters; the reasons differ.
        let expected = match engine {
            EngineKind::Interpreter => "policy evaluation failed: ",
            EngineKind::Rvm => "the policy defines no decision",
        };
        assert!(
            both.reasons[0].starts_with(expected),
            "{engine}: {:?}",
            both.reasons
        );
    }
}

/// regorus 0.14.1's VM skips an `else` when the first body failed inside an iteration
/// (`x[_] == y`); the interpreter takes it. The default policy is written with `in` instead,
/// and the request grid in `cases.rs` compares both evaluators on it. This test records the
/// difference so that a regorus upgrade that changes it is noticed.
#[test]
fn known_rvm_divergence_else_after_failed_iteration() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        r#"package cordon.net
import rego.v1

decision := {"allow": true, "reasons": ["first"]} if {
    [1, 2][_] == input.n
} else := {"allow": true, "reasons": ["else"]}
"#,
    );
    let net = Capability::new("net").unwrap();
    let interpreter = load(dir.path(), EngineKind::Interpreter).unwrap();
    let rvm = load(dir.path(), EngineKind::Rvm).unwrap();
    assert_eq!(
        interpreter.evaluate(&net, &json!({"n": 3})).reasons,
        vec!["else"]
    );
    let by_rvm = rvm.evaluate(&net, &json!({"n": 3}));
    // Fail closed either way: the VM's undefined result is a denial.
    assert!(!by_rvm.allow, "{by_rvm:?}");
    assert_eq!(rvm.evaluate(&net, &json!({"n": 2})).reasons, vec!["first"]);
}

#[test]
fn a_load_for_some_capabilities_compiles_only_those_and_skips_tests() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "file.rego",
        "package cordon.file\nimport rego.v1\ndecision := {\"allow\": true}\n",
    );
    write(
        dir.path(),
        "net.rego",
        "package cordon.net\nimport rego.v1\ndecision := {\"allow\": true}\n",
    );
    write(
        dir.path(),
        "file_test.rego",
        "package cordon.file_test\nthis is not rego\n",
    );
    let source = PolicySource::from_path(dir.path()).unwrap();
    assert!(Policy::load(&source, PolicyOptions::default()).is_err());
    let only = PolicyOptions {
        only: Some(&["file"]),
        ..PolicyOptions::default()
    };
    let policy = Policy::load(&source, only).unwrap();
    assert_eq!(policy.capabilities().collect::<Vec<_>>(), vec!["file"]);
    let file = Capability::new("file").unwrap();
    assert!(policy.evaluate(&file, &json!({})).allow);
    // Modules of other capabilities are still checked.
    write(dir.path(), "net.rego", "package cordon.net\nbroken(\n");
    let source = PolicySource::from_path(dir.path()).unwrap();
    assert!(Policy::load(&source, only).is_err());
}
