//! Snapshots and diffs of a tree an agent edits: each kind of change found, unchanged files
//! not read again, ignored trees left out and named, links never followed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::os::unix::fs::{symlink, PermissionsExt};

use cordon_journal::{diff, snapshot, Blobs, ChangeKind, EntryKind, Options};
use pretty_assertions::assert_eq;

#[test]
fn every_kind_of_change_is_found_and_every_before_image_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    let blobs = Blobs::new(dir.path().join("blobs"));
    fs_err::create_dir_all(root.join("src")).unwrap();
    fs_err::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs_err::write(root.join("notes.md"), "notes\n").unwrap();
    fs_err::write(root.join("old-name.txt"), "moving\n").unwrap();
    fs_err::write(root.join("run.sh"), "echo hi\n").unwrap();
    fs_err::write(root.join("doomed.txt"), "bye\n").unwrap();
    let (before, summary) = snapshot(&root, &blobs, None, &Options::default()).unwrap();
    assert_eq!((summary.files, summary.read, summary.reused), (5, 5, 0));

    fs_err::write(root.join("src/main.rs"), "fn main() { evil() }\n").unwrap();
    fs_err::write(root.join("created.txt"), "new\n").unwrap();
    fs_err::rename(root.join("old-name.txt"), root.join("src/new-name.txt")).unwrap();
    fs_err::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    fs_err::remove_file(root.join("doomed.txt")).unwrap();
    let (after, summary) = snapshot(&root, &blobs, Some(&before), &Options::default()).unwrap();
    // The untouched file was not read again; the modified, created, moved and chmodded
    // ones were (a rename and a chmod change the status-change time).
    assert_eq!((summary.read, summary.reused), (4, 1), "{summary:?}");

    let changes = diff(&before, &after);
    let shown: Vec<(ChangeKind, &str, Option<&str>)> = changes
        .iter()
        .map(|c| (c.kind, c.path.as_str(), c.to.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            (ChangeKind::Mode, "run.sh", None),
            (ChangeKind::Modify, "src/main.rs", None),
            (ChangeKind::Rename, "old-name.txt", Some("src/new-name.txt")),
            (ChangeKind::Create, "created.txt", None),
            (ChangeKind::Delete, "doomed.txt", None),
        ]
    );
    // Every before-image can be had back.
    for change in &changes {
        if let Some(digest) = change.before.as_ref().and_then(|b| b.digest.as_deref()) {
            assert!(!blobs.get(digest).unwrap().is_empty());
        }
    }
    let modified = &changes[1];
    let old = blobs
        .get(modified.before.as_ref().unwrap().digest.as_ref().unwrap())
        .unwrap();
    assert_eq!(old, b"fn main() {}\n");
}

#[test]
fn ignored_trees_are_left_out_and_named_and_links_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    let outside = dir.path().join("secrets");
    let blobs = Blobs::new(dir.path().join("blobs"));
    fs_err::create_dir_all(root.join("target/debug")).unwrap();
    fs_err::create_dir_all(root.join("node_modules/x")).unwrap();
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::write(outside.join("key"), "SECRET").unwrap();
    fs_err::write(root.join(".gitignore"), "target/\nnode_modules/\n").unwrap();
    fs_err::write(root.join("target/debug/big"), vec![0u8; 4096]).unwrap();
    fs_err::write(root.join("node_modules/x/index.js"), "x").unwrap();
    symlink(&outside, root.join("link")).unwrap();
    let (manifest, summary) = snapshot(&root, &blobs, None, &Options::default()).unwrap();
    let paths: Vec<&str> = manifest.entries.keys().map(String::as_str).collect();
    assert_eq!(paths, [".gitignore", "link"]);
    assert_eq!(manifest.left_out, ["node_modules", "target"]);
    assert_eq!(manifest.entries["link"].kind, EntryKind::Symlink);
    assert_eq!(manifest.entries["link"].target.as_deref(), outside.to_str());
    assert_eq!(summary.files, 1);
    // Nothing outside the root was kept.
    let secret = cordon_types::hex(&<sha2::Sha256 as sha2::Digest>::digest(b"SECRET"));
    assert!(!blobs.contains(&secret));
    // Without the .gitignore rules, everything is taken.
    let (all, _) = snapshot(
        &root,
        &blobs,
        None,
        &Options {
            gitignore: false,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(all.entries.contains_key("target/debug/big"));
    assert!(all.left_out.is_empty());
}

#[test]
fn a_fifo_is_recorded_not_read_and_a_full_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    fs_err::create_dir_all(&root).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap()
        .success());
    fs_err::write(root.join("a.txt"), "a").unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let (manifest, _) = snapshot(&root, &blobs, None, &Options::default()).unwrap();
    assert_eq!(manifest.entries["pipe"].kind, EntryKind::Other);
    // A store that cannot be written: the snapshot fails rather than record a file whose
    // content is not kept.
    let blocked = Blobs::new(root.join("a.txt").join("blobs"));
    assert!(snapshot(&root, &blocked, None, &Options::default()).is_err());
}

#[test]
fn a_fifo_in_place_of_a_gitignore_is_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    fs_err::create_dir_all(root.join("sub")).unwrap();
    for fifo in [".gitignore", "sub/.gitignore"] {
        assert!(std::process::Command::new("mkfifo")
            .arg(root.join(fifo))
            .status()
            .unwrap()
            .success());
    }
    fs_err::write(root.join("sub/a.txt"), "a").unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    // Without the non-blocking read, this waits for a writer that never comes.
    let (manifest, _) = snapshot(&root, &blobs, None, &Options::default()).unwrap();
    assert!(manifest.entries.contains_key("sub/a.txt"));
    assert!(manifest.rules.is_empty());
}

#[test]
fn rules_written_during_a_run_hide_no_change_to_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    let blobs = Blobs::new(dir.path().join("blobs"));
    fs_err::create_dir_all(root.join("src")).unwrap();
    fs_err::create_dir_all(root.join("target")).unwrap();
    fs_err::write(root.join(".gitignore"), "target/\n").unwrap();
    fs_err::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs_err::write(root.join("target/out"), "built").unwrap();
    let (before, _) = snapshot(&root, &blobs, None, &Options::default()).unwrap();

    // The program edits a tracked file, then ignores it; and un-ignores the build tree.
    fs_err::write(root.join("src/main.rs"), "fn main() { evil() }\n").unwrap();
    fs_err::write(root.join(".gitignore"), "src/\n*.secret\n").unwrap();
    fs_err::write(root.join("new.secret"), "x").unwrap();
    let baseline = Options {
        baseline: true,
        ..Options::default()
    };
    let (after, _) = snapshot(&root, &blobs, Some(&before), &baseline).unwrap();
    let changes = diff(&before, &after);
    let shown: Vec<(ChangeKind, &str)> =
        changes.iter().map(|c| (c.kind, c.path.as_str())).collect();
    // The edit is found; the build tree is not "created"; a new file the new rules ignore
    // is left out (it is new: removing it undoes nothing of the person's).
    assert_eq!(
        shown,
        [
            (ChangeKind::Modify, ".gitignore"),
            (ChangeKind::Modify, "src/main.rs"),
        ]
    );
    assert!(after.left_out.iter().any(|p| p == "target"));
    assert!(after.left_out.iter().any(|p| p == "new.secret"));

    // The next session's start: a path taken before stays taken whatever the rules now say
    // (a program's `.gitignore` cannot hide the next session's deletion of it); what the
    // rules no longer ignore is taken.
    let (next, _) = snapshot(&root, &blobs, Some(&before), &Options::default()).unwrap();
    assert!(next.entries.contains_key("src/main.rs"));
    assert!(next.entries.contains_key("target/out"));
    assert!(!next.entries.contains_key("new.secret"));
    // Without a previous tree, today's rules alone.
    let (fresh, _) = snapshot(&root, &blobs, None, &Options::default()).unwrap();
    assert!(!fresh.entries.contains_key("src/main.rs"));
}

#[test]
fn the_store_in_the_tree_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    let store = root.join(".local/cordon-journal");
    fs_err::create_dir_all(&store).unwrap();
    fs_err::write(root.join("a.txt"), "a").unwrap();
    let blobs = Blobs::new(store.join("blobs"));
    let options = Options {
        exclude: vec![store.clone()],
        ..Options::default()
    };
    let (first, _) = snapshot(&root, &blobs, None, &options).unwrap();
    let (second, _) = snapshot(&root, &blobs, Some(&first), &options).unwrap();
    assert!(second.entries.contains_key("a.txt"));
    assert!(!second.entries.keys().any(|p| p.contains("cordon-journal/")));
    assert_eq!(diff(&first, &second), []);
}

#[test]
fn ignore_rules_beyond_the_budget_are_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    fs_err::create_dir_all(root.join("zzz")).unwrap();
    fs_err::write(root.join("zzz/f"), "kept").unwrap();
    // A rules file a program made to stall every later snapshot: its rules past the budget
    // are dropped, and what they would leave out is taken.
    let mut rules: String = (0..10_000)
        .map(|i| format!("**/x{i}*y?z[ab]*/**/q{i}\n"))
        .collect();
    rules.push_str("zzz/\n");
    fs_err::write(root.join(".gitignore"), rules).unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let (manifest, _) = snapshot(&root, &blobs, None, &Options::default()).unwrap();
    assert!(manifest.entries.contains_key("zzz/f"));
}

#[test]
fn a_file_rewritten_while_it_is_taken_is_recorded_whole_or_as_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    fs_err::create_dir_all(&root).unwrap();
    let versions: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 256 * 1024]).collect();
    fs_err::write(root.join("busy.log"), &versions[0]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path, versions) = (stop.clone(), root.join("busy.log"), versions.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // In place, as a log or a database writes: the reader may see a mix.
                let _ = fs_err::write(&path, &versions[i % versions.len()]);
                i += 1;
            }
        })
    };
    let blobs = Blobs::new(dir.path().join("blobs"));
    for _ in 0..20 {
        let (manifest, _) = snapshot(&root, &blobs, None, &Options::default()).unwrap();
        let entry = &manifest.entries["busy.log"];
        match entry.kind {
            // Kept: exactly what was read, which the store gives back under its digest.
            EntryKind::File => {
                let digest = entry.digest.as_deref().unwrap();
                assert_eq!(blobs.get(digest).unwrap().len() as u64, entry.size);
            }
            EntryKind::Unknown => assert!(entry.digest.is_none()),
            other => panic!("{other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}
