//! Events and stores for the tests.

use std::path::{Path, PathBuf};

use cordon_audit::{Store, StoreOptions};
use cordon_types::{AuditEvent, Decision, Outcome};
use serde_json::json;

pub fn event(n: u64) -> AuditEvent {
    AuditEvent {
        time: format!("2026-11-26T12:00:{:02}.000000Z", n % 60),
        capability: if n.is_multiple_of(2) {
            "file".into()
        } else {
            "net".into()
        },
        action: "read".into(),
        input: json!({"subject": {"user": "alice"}, "resource": {"path": format!("/w/{n}")}, "context": {"token": "t0p"}}),
        decision: if n.is_multiple_of(3) {
            Decision::deny("no")
        } else {
            Decision {
                allow: true,
                reasons: vec!["ok".into()],
                obligations: vec![],
                grants: None,
            }
        },
        outcome: Outcome::Evaluated,
        policy_revision: "rev".into(),
        cordon_version: "test".into(),
    }
}

/// A database with `n` events, closed (so its final checkpoint is written).
pub fn filled(dir: &Path, n: u64, options: StoreOptions) -> PathBuf {
    let db = dir.join("audit.db");
    let store = Store::open(&db, options).unwrap();
    for i in 1..=n {
        assert_eq!(store.append(&event(i)).unwrap(), i);
    }
    drop(store);
    db
}

pub fn sql(db: &Path, statement: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(statement).unwrap();
}
