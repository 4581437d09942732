//! Appending, reading, and the store's refusals.

use std::sync::Arc;
use std::time::Duration;

use cordon_audit::{Filter, Reader, Store, StoreError, StoreOptions, REDACTED};
use pretty_assertions::assert_eq;

use super::common::{event, filled, sql};

#[test]
fn appends_from_many_threads_in_order_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let store = Arc::new(Store::open(&db, StoreOptions::default()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| store.append(&event(t * 1000 + i)).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    drop(store);
    let reader = Reader::open(&db).unwrap();
    let report = reader.verify(None).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.records, 1000);
    assert!(report.checkpoints >= 1);
    assert!(report.key.unwrap().1.starts_with("device key"));
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path(), 5, StoreOptions::default());
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    assert_eq!(store.append(&event(6)).unwrap(), 6);
    drop(store);
    let report = Reader::open(&db).unwrap().verify(None).unwrap();
    assert_eq!((report.records, report.problem), (6, None));
}

#[test]
fn queries_filter_and_secrets_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path(), 12, StoreOptions::default());
    let reader = Reader::open(&db).unwrap();
    let mut denied_files = Vec::new();
    reader
        .scan(
            &Filter {
                capability: Some("file".into()),
                allow: Some(false),
                ..Filter::default()
            },
            |r| {
                denied_files.push(r.seq);
                true
            },
        )
        .unwrap();
    assert_eq!(denied_files, vec![6, 12]);
    let tail = reader.tail(3).unwrap();
    assert_eq!(
        tail.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert_eq!(tail[0].input["context"]["token"], REDACTED);
    let stats = reader.stats().unwrap();
    assert_eq!((stats.records, stats.allowed, stats.denied), (12, 8, 4));
    assert_eq!(stats.by_capability["file"], (4, 2));
}

#[test]
fn a_database_from_a_newer_cordon_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path(), 1, StoreOptions::default());
    sql(&db, "PRAGMA user_version = 99;");
    let err = Store::open(&db, StoreOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .ends_with("has schema version 99; this cordon reads version 1 and older"));
    assert!(Reader::open(&db).is_err());
}

#[test]
fn a_locked_database_refuses_the_event_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled(dir.path(), 1, StoreOptions::default());
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let store = Store::open(&db, options).unwrap();
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let err = store.append(&event(2)).unwrap_err();
    assert!(matches!(err, StoreError::Commit(_)), "{err:?}");
    assert!(err.to_string().contains("database is locked"), "{err}");
    locker.execute_batch("ROLLBACK;").unwrap();
    // Once the lock is gone the store works again, with no gap in the chain.
    assert_eq!(store.append(&event(3)).unwrap(), 2);
    drop(store);
    assert_eq!(
        Reader::open(&db).unwrap().verify(None).unwrap().problem,
        None
    );
}

#[test]
fn a_missing_database_is_named() {
    let err = Reader::open(std::path::Path::new("/nonexistent/audit.db")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot open audit database `/nonexistent/audit.db`"
    );
}

#[test]
fn the_database_and_its_journal_are_for_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    super::common::filled(
        &dir.path().join("new"),
        3,
        cordon_audit::StoreOptions::default(),
    );
    for entry in fs_err::read_dir(dir.path().join("new")).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
    }
    let mode = fs_err::metadata(dir.path().join("new"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn two_stores_on_one_database_interleave_into_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let first = cordon_audit::Store::open(&db, cordon_audit::StoreOptions::default()).unwrap();
    let second = cordon_audit::Store::open(&db, cordon_audit::StoreOptions::default()).unwrap();
    let event = super::common::event;
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(first.append(&event(i)).unwrap());
        seqs.push(second.append(&event(100 + i)).unwrap());
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    drop(first);
    drop(second);
    let report = cordon_audit::Reader::open(&db)
        .unwrap()
        .verify(None)
        .unwrap();
    assert_eq!((report.records, report.problem), (20, None));
}

#[test]
fn deferred_events_share_the_next_commit_or_are_written_alone_soon_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    let count = || Reader::open(&db).unwrap().verify(None).unwrap().records;
    // Nobody waits for a deferred event; the durable one after it is in order behind it.
    store.append_deferred(&event(1)).unwrap();
    assert_eq!(store.append(&event(2)).unwrap(), 2);
    assert_eq!(count(), 2);
    // Alone, it is written a little later (bounded wait: ten seconds at most).
    store.append_deferred(&event(3)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "a deferred event was never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Closing the store writes what is queued.
    store.append_deferred(&event(4)).unwrap();
    drop(store);
    let report = Reader::open(&db).unwrap().verify(None).unwrap();
    assert_eq!((report.records, report.problem), (4, None));
}
