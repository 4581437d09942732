//! Durable audit throughput and verification speed.
//!
//! - `store`: `Store::append` from 1, 4 and 16 threads; each call returns after its event is
//!   committed with fsync (group commit).
//! - `one-transaction-per-event`: the same records inserted by a plain SQLite connection in
//!   WAL mode with `synchronous = FULL`, one transaction (one fsync) per event: what a
//!   store without group commit gets.
//! - `jsonl`: the JSON Lines sink (written to the kernel, no fsync): an upper bound.
//! - `verify`: `Reader::verify` over a log of 1,000,000 records.
//!
//! Run: `cargo bench -p cordon-audit --bench append` (add `-- --quick` for 100,000 records
//! in the verify step).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails by panicking"
)]

use std::sync::Arc;
use std::time::Instant;

use cordon_audit::{JsonlSink, Reader, Record, Store, StoreOptions};
use cordon_types::{AuditEvent, AuditSink, Decision, Outcome};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        time: "2026-11-26T12:00:00.000000Z".into(),
        capability: "file".into(),
        action: "read".into(),
        input: serde_json::json!({
            "subject": {"user": "alice", "agent": "coder"},
            "resource": {"path": format!("/home/alice/work/src/file{i}.rs"), "sensitivity": "internal", "sensitivity_level": 1},
            "context": {"workspace": ["/home/alice/work"], "home": "/home/alice"}
        }),
        decision: Decision {
            allow: true,
            reasons: vec!["inside the workspace".into()],
            obligations: vec![],
            grants: None,
        },
        outcome: Outcome::Evaluated,
        policy_revision: "5ef5f132f33683281db01e78f7a7dc80a7275ca646c842647befdd3b97640dbb".into(),
        cordon_version: "0.1.0".into(),
    }
}

fn threaded(
    threads: u64,
    per_thread: u64,
    append: impl Fn(&AuditEvent) + Send + Sync + 'static,
) -> f64 {
    let append = Arc::new(append);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let append = append.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    append(&event(t * per_thread + i));
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir =
        tempfile::tempdir_in(std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    println!("| writer | threads | durable | events/s |\n| --- | ---: | --- | ---: |");
    for threads in [1u64, 4, 16, 64] {
        let per_thread = 20_000 / threads;
        let db = dir.path().join(format!("store-{threads}.db"));
        let store = Arc::new(Store::open(&db, StoreOptions::default()).unwrap());
        let s = store.clone();
        let rate = threaded(threads, per_thread, move |e| {
            s.append(e).unwrap();
        });
        println!("| store (group commit) | {threads} | yes | {rate:.0} |");

        let db = dir.path().join(format!("naive-{threads}.db"));
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE events (seq INTEGER PRIMARY KEY, record TEXT NOT NULL, hash TEXT NOT NULL)").unwrap();
        let conn = Arc::new(std::sync::Mutex::new((
            conn,
            0u64,
            cordon_audit::GENESIS.to_owned(),
        )));
        let rate = threaded(threads, per_thread.min(2_000 / threads), move |e| {
            let mut guard = conn.lock().unwrap();
            let (conn, seq, prev) = &mut *guard;
            *seq += 1;
            let record = Record::new(e, *seq, String::new(), prev.clone());
            *prev = record.hash();
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO events VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    *seq as i64,
                    String::from_utf8(record.canonical()).unwrap(),
                    prev.as_str()
                ],
            )
            .unwrap();
            tx.commit().unwrap();
        });
        println!("| one transaction per event | {threads} | yes | {rate:.0} |");

        let sink =
            Arc::new(JsonlSink::open(&dir.path().join(format!("log-{threads}.jsonl"))).unwrap());
        let rate = threaded(threads, per_thread, move |e| sink.record(e).unwrap());
        println!("| jsonl (no fsync) | {threads} | no | {rate:.0} |");
    }

    let records: u64 = if quick { 100_000 } else { 1_000_000 };
    let db = dir.path().join("verify.db");
    {
        let store = Arc::new(Store::open(&db, StoreOptions::default()).unwrap());
        let started = Instant::now();
        let s = store.clone();
        let rate = threaded(64, records / 64, move |e| {
            s.append(e).unwrap();
        });
        eprintln!(
            "filled {records} records in {:.1?} ({rate:.0}/s)",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let report = Reader::open(&db).unwrap().verify(None).unwrap();
    let elapsed = started.elapsed();
    assert!(report.problem.is_none());
    println!(
        "\nverify: {} records, {} checkpoints in {:.2?} ({:.2} s per million records)",
        report.records,
        report.checkpoints,
        elapsed,
        elapsed.as_secs_f64() * 1_000_000.0 / report.records as f64
    );
}
