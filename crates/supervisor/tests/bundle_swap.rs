//! A running supervisor follows the bundle store: a bundle activated by another process is
//! verified and swapped in for the next decisions, while decisions run on other threads, and
//! no decision is made by one policy and recorded under another.
//!
//! One test in this file: it sets the process's XDG directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon_bundle::store::Verdict;
use cordon_bundle::{Algorithm, Bundle, KeyKind, PrivateKey};
use cordon_supervisor::bundles::Bundles;
use cordon_supervisor::{CordonConfig, Supervisor};
use cordon_types::Request;

fn signed_bundle(dir: &std::path::Path, key: &PrivateKey, revision: &str, reason: &str) -> Vec<u8> {
    let policy = dir.join(format!("policy-{revision}"));
    fs_err::create_dir_all(policy.join("cordon")).unwrap();
    fs_err::write(
        policy.join("cordon/file.rego"),
        format!(
            "package cordon.file\n\ndecision := {{\"allow\": true, \"reasons\": [\"{reason}\"]}}\n"
        ),
    )
    .unwrap();
    Bundle::build(&policy, revision, None)
        .unwrap()
        .sign(key, Algorithm::Es256, "default", 0)
        .unwrap()
        .to_bytes()
        .unwrap()
}

#[test]
fn a_newly_activated_bundle_is_swapped_in_under_running_decisions() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("HOME", home.path());
    std::env::set_var("XDG_DATA_HOME", home.path().join("data"));
    std::env::set_var("XDG_CONFIG_HOME", home.path().join("config"));
    std::env::set_var("XDG_CACHE_HOME", home.path().join("cache"));

    let key = PrivateKey::generate(KeyKind::P256).unwrap();
    let public = home.path().join("team.pub");
    fs_err::write(&public, key.public().to_pem().unwrap()).unwrap();
    let mut config = CordonConfig::default();
    config.policy.public_key = Some(public);

    let bundles = Bundles::new(&config).unwrap();
    let first = signed_bundle(home.path(), &key, "1", "first");
    let verdict = bundles.offer(&first, "first.tar.gz", false, None).unwrap();
    assert!(matches!(verdict, Verdict::Activated { .. }), "{verdict:?}");

    let supervisor = Arc::new(Supervisor::start(&config).unwrap());
    let request: Request = serde_json::from_str(
        r#"{"capability": "file", "action": "read", "resource": {"path": "x"}}"#,
    )
    .unwrap();
    assert_eq!(
        supervisor.pipeline().decide(&request).decision.reasons,
        ["first"]
    );

    // Decide on four threads while the bundle changes under them.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let deciders: Vec<_> = (0..4)
        .map(|_| {
            let (supervisor, stop, seen, request) = (
                Arc::clone(&supervisor),
                Arc::clone(&stop),
                Arc::clone(&seen),
                request.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let decided = supervisor.pipeline().decide(&request);
                    let reason = decided.decision.reasons.join(",");
                    let revision = decided.revision().to_owned();
                    seen.lock()
                        .unwrap()
                        .entry(reason)
                        .or_default()
                        .insert(revision);
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(200));
    let second = signed_bundle(home.path(), &key, "2", "second");
    let verdict = bundles
        .offer(&second, "second.tar.gz", false, None)
        .unwrap();
    assert!(matches!(verdict, Verdict::Activated { .. }), "{verdict:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.lock().unwrap().contains_key("second") {
        assert!(
            Instant::now() < deadline,
            "the new bundle was not picked up in 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for decider in deciders {
        decider.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    // Every decision came from one policy or the other, and was recorded under the revision
    // of the policy that made it: one revision per reason, two different revisions.
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["first", "second"],
        "{seen:?}"
    );
    assert_eq!(seen["first"].len(), 1, "{seen:?}");
    assert_eq!(seen["second"].len(), 1, "{seen:?}");
    assert_ne!(seen["first"], seen["second"]);
    assert_eq!(
        supervisor.pipeline().revision(),
        *seen["second"].iter().next().unwrap()
    );
}
