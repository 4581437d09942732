//! One loaded policy decides from many threads at once.

use std::sync::Arc;

use cordon_policy::{EngineKind, Policy, PolicyOptions, PolicySource};
use cordon_types::Capability;
use serde_json::json;

#[test]
fn concurrent_decisions_agree() {
    for engine in [EngineKind::Rvm, EngineKind::Interpreter] {
        let policy = Arc::new(
            Policy::load(
                &PolicySource::embedded_default(),
                PolicyOptions {
                    engine,
                    ..PolicyOptions::default()
                },
            )
            .unwrap(),
        );
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let policy = Arc::clone(&policy);
                std::thread::spawn(move || {
                    let net = Capability::new("net").unwrap();
                    for i in 0..200 {
                        let allowed = (t + i) % 2 == 0;
                        let host = if allowed { "api.github.com" } else { "evil.example" };
                        let input = json!({"resource": {"host": host, "port": 443, "sensitivity_level": 1}});
                        assert_eq!(policy.evaluate(&net, &input).allow, allowed);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }
}
