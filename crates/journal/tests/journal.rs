//! The journal as a skill's session uses it: each path kept before its first write, what
//! became of it recorded at the end, undone exactly; nothing kept is collected while it is
//! still needed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cordon_journal::{Filter, Journal, Options};
use pretty_assertions::assert_eq;

fn files(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                stack.push(path);
                out.insert(rel, "dir".into());
            } else {
                out.insert(rel, fs_err::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

fn setup() -> (tempfile::TempDir, PathBuf, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let root = fs_err::canonicalize(dir.path()).unwrap().join("work");
    fs_err::create_dir_all(root.join("d/inner")).unwrap();
    fs_err::write(root.join("d/a.txt"), "a\n").unwrap();
    fs_err::write(root.join("d/inner/b.txt"), "b\n").unwrap();
    fs_err::write(root.join("v"), "original\n").unwrap();
    let journal = Journal::open(&dir.path().join("journal")).unwrap();
    (dir, root, journal)
}

#[test]
fn a_directory_a_skill_renamed_is_put_back_whole() {
    let (_dir, root, mut journal) = setup();
    let before = files(&root);
    let options = Options::default();
    journal
        .open_session("s1", "skill", std::slice::from_ref(&root))
        .unwrap();
    // As the gate does: the source of the rename, then its destination, each before it
    // is written.
    journal.touch("s1", &root, "d", &options).unwrap();
    journal.touch("s1", &root, "e", &options).unwrap();
    fs_err::rename(root.join("d"), root.join("e")).unwrap();
    fs_err::write(root.join("e/a.txt"), "changed\n").unwrap();
    let found = journal.checkpoint("s1", "end", true, &options).unwrap();
    assert!(found.changes.len() >= 6, "{:#?}", found.changes);
    let selected = journal
        .changes(&Filter {
            session: Some("s1".into()),
            pending: true,
            ..Filter::default()
        })
        .unwrap();
    let report = journal.undo(&selected, false).unwrap();
    assert_eq!(report.conflicts, []);
    assert_eq!(files(&root), before);
}

#[test]
fn what_a_running_skill_kept_is_not_collected() {
    let (_dir, root, mut journal) = setup();
    let options = Options::default();
    journal
        .open_session("s2", "skill", std::slice::from_ref(&root))
        .unwrap();
    let _mark = journal.mark_running("s2").unwrap();
    journal.touch("s2", &root, "v", &options).unwrap();
    fs_err::write(root.join("v"), "clobbered\n").unwrap();
    // A collection while the skill runs keeps the before-image.
    let collected = journal.collect(i64::MAX).unwrap();
    assert_eq!(collected.blobs, 0, "{collected:?}");
    journal.checkpoint("s2", "end", true, &options).unwrap();
    let selected = journal
        .changes(&Filter {
            session: Some("s2".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(journal.undo(&selected, false).unwrap().conflicts, []);
    assert_eq!(
        fs_err::read_to_string(root.join("v")).unwrap(),
        "original\n"
    );
}

#[test]
fn a_write_whose_before_image_cannot_be_kept_is_refused() {
    let (_dir, root, mut journal) = setup();
    let options = Options {
        max_file: 4,
        ..Options::default()
    };
    journal
        .open_session("s3", "skill", std::slice::from_ref(&root))
        .unwrap();
    let refused = journal.touch("s3", &root, "v", &options).unwrap_err();
    assert!(refused.to_string().contains("cannot be kept"), "{refused}");
}

#[test]
fn a_fifo_a_skill_would_remove_is_refused() {
    let (_dir, root, mut journal) = setup();
    assert!(std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap()
        .success());
    journal
        .open_session("s4", "skill", std::slice::from_ref(&root))
        .unwrap();
    let refused = journal
        .touch("s4", &root, "pipe", &Options::default())
        .unwrap_err();
    assert!(refused.to_string().contains("FIFO"), "{refused}");
}

#[test]
fn a_journal_made_by_an_earlier_version_is_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");
    fs_err::create_dir_all(&journal_dir).unwrap();
    // The changes table as the first version made it, with a rules file recorded.
    let old = rusqlite::Connection::open(journal_dir.join("journal.db")).unwrap();
    old.execute_batch(
        "CREATE TABLE changes (id INTEGER PRIMARY KEY, session TEXT NOT NULL, root TEXT NOT NULL,
           time_ns INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, to_path TEXT,
           before TEXT, after TEXT, undoes INTEGER, undone_by INTEGER);
         INSERT INTO changes (session, root, time_ns, kind, path) VALUES ('s', '/w', 1, 'create', 'a/.gitignore');",
    )
    .unwrap();
    drop(old);
    let journal = Journal::open(&journal_dir).unwrap();
    let listed = journal.changes(&Filter::default()).unwrap();
    assert_eq!(listed.len(), 1);
    drop(journal);
    let check = rusqlite::Connection::open(journal_dir.join("journal.db")).unwrap();
    let rules: i64 = check
        .query_row("SELECT rules FROM changes", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rules, 1);
}

#[test]
fn a_killed_session_whose_tree_is_gone_is_ended_not_retried_at_every_launch() {
    let (dir, root, mut journal) = setup();
    let options = Options::default();
    journal
        .start("s1", "agent", std::slice::from_ref(&root), &options)
        .unwrap();
    // Another session, killed too, whose tree is still there.
    let kept = dir.path().join("kept");
    fs_err::create_dir(&kept).unwrap();
    journal
        .start("s2", "agent", std::slice::from_ref(&kept), &options)
        .unwrap();
    fs_err::write(kept.join("new.txt"), "new\n").unwrap();
    drop(journal);
    fs_err::remove_dir_all(&root).unwrap();

    let mut journal = Journal::open(&dir.path().join("journal")).unwrap();
    let found = journal.recover(&options).unwrap();
    let recovered: Vec<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(recovered, ["s2"]);
    assert_eq!(found[0].1.changes.len(), 1);
    let s1 = journal.session("s1").unwrap().unwrap();
    assert!(
        s1.ended_ns.is_some(),
        "a session whose tree is gone stays open"
    );
    assert!(journal.recover(&options).unwrap().is_empty());
}

#[test]
fn a_session_that_never_ran_is_forgotten_and_never_recovered() {
    let (_dir, root, mut journal) = setup();
    let options = Options::default();
    journal
        .start("s1", "agent", std::slice::from_ref(&root), &options)
        .unwrap();
    let stages = journal
        .make_stages("s1", &[(root.clone(), Vec::new())])
        .unwrap();
    assert!(stages[0].dir.is_dir());
    // Its launch failed before the program ran; the person goes on editing.
    journal.forget("s1").unwrap();
    assert!(!stages[0].dir.exists(), "its stage is left behind");
    assert!(journal.stages(Some("s1")).unwrap().is_empty());
    assert!(!stages[0].dir.parent().unwrap().exists());
    fs_err::write(root.join("v"), "the person's edit\n").unwrap();
    assert!(journal.session("s1").unwrap().is_none());
    assert!(
        journal.recover(&options).unwrap().is_empty(),
        "the person's edit was credited to a session that never ran"
    );
    assert_eq!(
        fs_err::read_to_string(root.join("v")).unwrap(),
        "the person's edit\n"
    );
}

#[test]
fn a_session_with_recorded_changes_is_not_forgotten() {
    let (_dir, root, mut journal) = setup();
    let options = Options::default();
    journal
        .start("s1", "agent", std::slice::from_ref(&root), &options)
        .unwrap();
    fs_err::write(root.join("v"), "changed\n").unwrap();
    let found = journal.checkpoint("s1", "end", true, &options).unwrap();
    assert_eq!(found.changes.len(), 1);
    assert!(journal.forget("s1").is_err());
    assert!(journal.session("s1").unwrap().is_some());
}
