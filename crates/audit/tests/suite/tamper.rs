//! Each way of tampering with the log is detected, at the right sequence number.

use cordon_audit::{Reader, Record, StoreOptions};
use cordon_types::hex;
use pretty_assertions::assert_eq;
use sha2::{Digest, Sha256};

use super::common::{filled, sql};

/// A log of 20 records with a checkpoint after every commit.
fn log(dir: &std::path::Path) -> std::path::PathBuf {
    let options = StoreOptions {
        checkpoint_events: 1,
        ..StoreOptions::default()
    };
    filled(dir, 20, options)
}

fn problem(db: &std::path::Path) -> (u64, &'static str) {
    let report = Reader::open(db).unwrap().verify(None).unwrap();
    let problem = report.problem.expect("tampering went unnoticed");
    (problem.seq, problem.kind)
}

fn record(db: &std::path::Path, seq: u64) -> Record {
    let conn = rusqlite::Connection::open(db).unwrap();
    let text: String = conn
        .query_row(
            "SELECT record FROM events WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn an_intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    let report = Reader::open(&db).unwrap().verify(None).unwrap();
    assert_eq!(
        (report.records, report.checkpoints, report.problem),
        (20, 20, None)
    );
}

#[test]
fn an_edited_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    sql(&db, "UPDATE events SET record = replace(record, '\"allow\":false', '\"allow\":true') WHERE seq = 9;");
    assert_eq!(problem(&db), (9, "edited"));
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    let mut edited = record(&db, 9);
    edited.allow = true;
    let text = String::from_utf8(edited.canonical()).unwrap();
    let hash = hex(&Sha256::digest(text.as_bytes()));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE events SET record = ?1, hash = ?2, allow = 1 WHERE seq = 9",
        [&text, &hash],
    )
    .unwrap();
    // Record 9 is self-consistent now, but its checkpoint signed the old hash.
    assert_eq!(problem(&db), (9, "checkpoint"));
    // Without checkpoints the chain still gives it away at record 10.
    sql(&db, "DELETE FROM checkpoints;");
    assert_eq!(problem(&db), (10, "chain"));
}

#[test]
fn rewriting_the_whole_chain_is_caught_by_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    // Rewrite record 5 and every record after it, hashes and chain included.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut prev = record(&db, 4);
    let mut prev_hash = hex(&Sha256::digest(prev.canonical()));
    for seq in 5..=20 {
        let mut r = record(&db, seq);
        if seq == 5 {
            r.reasons = vec!["nothing to see".into()];
        }
        r.prev_hash = prev_hash.clone();
        let text = String::from_utf8(r.canonical()).unwrap();
        prev_hash = hex(&Sha256::digest(text.as_bytes()));
        conn.execute(
            "UPDATE events SET record = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![text, prev_hash, seq as i64],
        )
        .unwrap();
        prev = r;
    }
    let _ = prev;
    assert_eq!(problem(&db), (5, "checkpoint"));
}

#[test]
fn a_deleted_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    sql(&db, "DELETE FROM events WHERE seq = 7;");
    assert_eq!(problem(&db), (7, "missing"));
}

#[test]
fn reordered_records_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    sql(
        &db,
        "UPDATE events SET seq = -1 WHERE seq = 12;
         UPDATE events SET seq = 12 WHERE seq = 13;
         UPDATE events SET seq = 13 WHERE seq = -1;",
    );
    assert_eq!(problem(&db), (12, "reordered"));
}

#[test]
fn a_truncated_tail_after_a_checkpoint_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    sql(&db, "DELETE FROM events WHERE seq > 15;");
    assert_eq!(problem(&db), (16, "truncated"));
}

#[test]
fn a_forged_checkpoint_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    sql(&db, "UPDATE checkpoints SET head_hash = replace(head_hash, substr(head_hash, 1, 1), 'x') WHERE seq = 3;");
    assert_eq!(problem(&db), (3, "signature"));
}

#[test]
fn checkpoints_signed_by_another_key_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = log(dir.path());
    let stranger = [7u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&stranger)
        .verifying_key()
        .to_bytes();
    let report = Reader::open(&db).unwrap().verify(Some(public)).unwrap();
    assert_eq!(
        report.problem.map(|p| (p.seq, p.kind)),
        Some((1, "signature"))
    );
}

#[test]
fn an_edited_index_column_is_found() {
    for (column, edit) in [
        (
            "allow",
            "UPDATE events SET allow = 1 - allow WHERE seq = 7;",
        ),
        (
            "capability",
            "UPDATE events SET capability = 'other' WHERE seq = 7;",
        ),
        (
            "time",
            "UPDATE events SET time = '1999-01-01T00:00:00Z' WHERE seq = 7;",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = log(dir.path());
        sql(&db, edit);
        assert_eq!(problem(&db), (7, "index"), "{column}");
    }
}
