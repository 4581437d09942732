//! Consent round trip: from a request that needs a person's answer to its decision, with an
//! automatic answerer standing in for the person (a prompter that answers as soon as it is
//! shown the question, as the terminal and notification backends are).
//!
//! ```sh
//! cargo bench -p cordon-supervisor --bench consent
//! ```
//!
//! Layers, each timed call by call:
//! - **broker, asked**: `Broker::ask` with a new key each time: the question is made, shown
//!   to the prompter, answered once, and the asking thread woken. Nothing recorded.
//! - **broker, earlier answer**: the same key again after an answer for the session.
//! - **gate, asked, audited**: the egress proxy's `PipelineGate::decide` on a policy that
//!   asks: the policy decision, the question and the answer recorded in the durable audit
//!   log (each an fsync), and the decision recorded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark fails by panicking"
)]

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cordon_egress::Gate;
use cordon_supervisor::consent::{
    Ask, Backends, Broker, PendingRequest, Prompter, Recorder, Scope,
};
use cordon_supervisor::{CordonConfig, PipelineGate, Supervisor};
use serde_json::json;

/// Answers every question as soon as it is shown.
struct Answerer(Scope);

impl Prompter for Answerer {
    fn prompt(&self, request: &PendingRequest, broker: Weak<Broker>) {
        let (id, scope) = (request.id.clone(), self.0);
        // A prompter must not block the asking thread: answer from another, as a person's
        // terminal or notification does.
        std::thread::spawn(move || {
            if let Some(broker) = broker.upgrade() {
                broker.answer(&id, true, scope, "bench", None).unwrap();
            }
        });
    }

    fn withdraw(&self, _id: &str) {}
}

fn ask(key: String) -> Ask {
    Ask {
        capability: "net".into(),
        action: "connect".into(),
        what: format!("connect to {key}"),
        key,
        why: vec!["bench".into()],
        message: None,
        scopes: Vec::new(),
        timeout: Some(Duration::from_secs(10)),
        mfa: None,
        person: false,
    }
}

fn broker(scope: Scope, recorder: Option<Recorder>) -> Arc<Broker> {
    let broker = Broker::new(
        "0123456789ab",
        Backends::parse("socket", false).unwrap(),
        Duration::from_secs(10),
        None,
        recorder,
    );
    broker.add_prompter(Arc::new(Answerer(scope)));
    broker
}

fn percentiles(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        times.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}

fn time(n: usize, mut call: impl FnMut(usize)) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let started = Instant::now();
            call(i);
            started.elapsed()
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::var("CORDON_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    println!("| layer | calls | p50 (µs) | p90 (µs) | p99 (µs) |");
    println!("| --- | ---: | ---: | ---: | ---: |");

    let asked = broker(Scope::Once, None);
    let times = time(rounds, |i| {
        assert!(asked.ask(&ask(format!("net:h{i}.example:443"))).allow);
    });
    percentiles("broker, asked", times);

    let granted = broker(Scope::Session, None);
    assert!(granted.ask(&ask("net:a.example:443".into())).allow);
    let times = time(rounds, |_| {
        assert!(granted.ask(&ask("net:a.example:443".into())).allow);
    });
    percentiles("broker, earlier answer", times);

    // The proxy's gate on a policy that asks, with the durable audit log.
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("net.rego"),
        r#"package cordon.net
import rego.v1
decision := {"allow": true, "reasons": ["ask"], "obligations": [{"type": "consent"}]}
"#,
    )
    .unwrap();
    let mut config = CordonConfig::default();
    config.policy.path = Some(dir.path().to_path_buf());
    config.policy.cache = Some(false);
    config.audit.path = Some(dir.path().join("audit.db"));
    let supervisor = Arc::new(
        Supervisor::start_for(&config, &["net"])
            .unwrap()
            .with_context("consent", json!({"interactive": true})),
    );
    let recording = Arc::clone(&supervisor);
    let capability = cordon_types::Capability::new("consent").unwrap();
    let recorder: Recorder = Box::new(move |_, input, decision, outcome| {
        recording
            .pipeline()
            .record_outcome(&capability, input, decision, outcome, false)
            .map_err(|e| e.to_string())
    });
    let gate = PipelineGate::new(Arc::clone(&supervisor))
        .with_consent(broker(Scope::Once, Some(recorder)));
    let audited_rounds = (rounds / 10).max(50);
    let times = time(audited_rounds, |i| {
        let decision = gate.decide(
            "connect",
            json!({"host": format!("h{i}.example"), "port": 443}),
            json!({}),
        );
        assert!(decision.allow, "{decision:?}");
    });
    percentiles("gate, asked, audited (3 durable records)", times);
}
