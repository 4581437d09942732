//! A pathological policy or input is stopped and denied, never hangs a request.

use cordon_policy::{EngineKind, Limits, Policy, PolicyOptions, PolicySource};
use cordon_types::Capability;
use serde_json::json;

fn policy(engine: EngineKind) -> Policy {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("p.rego"),
        r#"package cordon.file
import rego.v1

# Quadratic in an input-chosen size: 4000 x 4000 iterations.
decision := {"allow": count(pairs) > 0} if input.spin
pairs := [1 | some x in numbers.range(1, input.n); some y in numbers.range(1, input.n); x == y + input.n]

# A large allocation, chunk by chunk.
decision := {"allow": count(blob) > 0} if input.grow
blob := concat("", [s | some i in numbers.range(1, input.n); s := sprintf("%0100d", [i])])
"#,
    )
    .unwrap();
    let source = PolicySource::from_path(dir.path()).unwrap();
    let limits = Limits {
        time: std::time::Duration::from_millis(50),
        ..Limits::default()
    };
    Policy::load(
        &source,
        PolicyOptions {
            engine,
            limits,
            only: None,
        },
    )
    .unwrap()
}

#[test]
fn runaway_evaluation_is_stopped_and_denied() {
    let file = Capability::new("file").unwrap();
    for engine in [EngineKind::Rvm, EngineKind::Interpreter] {
        let policy = policy(engine);
        // Small inputs decide normally, so the limits are not what denies them.
        assert!(!policy.evaluate(&file, &json!({"spin": true, "n": 3})).allow);
        let decision = policy.evaluate(&file, &json!({"spin": true, "n": 4000}));
        assert!(!decision.allow, "{engine}");
        assert!(
            decision.reasons[0].starts_with("policy evaluation stopped: exceeded its"),
            "{engine}: {:?}",
            decision.reasons
        );
    }
}

#[test]
fn memory_budget_stops_a_growing_value() {
    let file = Capability::new("file").unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("p.rego"),
        "package cordon.file\nimport rego.v1\n\ndecision := {\"allow\": count(blob) > 0}\nblob := [sprintf(\"%0100d\", [i]) | some i in numbers.range(1, input.n)]\n",
    )
    .unwrap();
    let source = PolicySource::from_path(dir.path()).unwrap();
    let limits = Limits {
        memory_bytes: std::num::NonZeroU64::new(4 << 20).unwrap(),
        time: std::time::Duration::from_secs(30),
        ..Limits::default()
    };
    let policy = Policy::load(
        &source,
        PolicyOptions {
            engine: EngineKind::Rvm,
            limits,
            only: None,
        },
    )
    .unwrap();
    assert!(policy.evaluate(&file, &json!({"n": 10})).allow);
    let decision = policy.evaluate(&file, &json!({"n": 400000}));
    assert!(!decision.allow);
    assert!(
        decision.reasons[0].contains("memory"),
        "{:?}",
        decision.reasons
    );
}
