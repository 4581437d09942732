//! Undo: an agent's edits, creations, deletions, renames and mode changes undone byte for
//! byte; the undo undone; a path changed since refused unless forced; nothing written outside
//! the tree through a link planted in it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use cordon_journal::{diff, snapshot, undo, Blobs, Change, ChangeKind, Manifest, Options};
use pretty_assertions::assert_eq;

/// What an undo must restore: each path's kind, content, target and mode.
fn shape(manifest: &Manifest) -> BTreeMap<String, String> {
    manifest
        .entries
        .iter()
        .map(|(path, e)| {
            (
                path.clone(),
                format!("{:?} {:?} {:?} {:o}", e.kind, e.digest, e.target, e.mode),
            )
        })
        .collect()
}

fn take(root: &Path, blobs: &Blobs) -> Manifest {
    snapshot(root, blobs, None, &Options::default()).unwrap().0
}

fn workspace(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("work");
    fs_err::create_dir_all(root.join("src/deep")).unwrap();
    fs_err::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs_err::write(root.join("src/deep/lib.rs"), "pub fn f() {}\n").unwrap();
    fs_err::write(root.join("README.md"), "# project\n").unwrap();
    fs_err::write(root.join("old.txt"), "moves\n").unwrap();
    fs_err::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs_err::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("README.md", root.join("readme-link")).unwrap();
    root
}

/// What a prompt-injected agent does: edits, creates, deletes a tree, renames, changes modes
/// and links.
fn vandalise(root: &Path) {
    fs_err::write(root.join("src/main.rs"), "fn main() { exfiltrate() }\n").unwrap();
    fs_err::create_dir_all(root.join("new/nested")).unwrap();
    fs_err::write(root.join("new/nested/payload.bin"), vec![7u8; 10_000]).unwrap();
    fs_err::remove_dir_all(root.join("src/deep")).unwrap();
    fs_err::rename(root.join("old.txt"), root.join("new/moved.txt")).unwrap();
    fs_err::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o777)).unwrap();
    fs_err::remove_file(root.join("readme-link")).unwrap();
    symlink("/etc/passwd", root.join("readme-link")).unwrap();
    fs_err::remove_file(root.join("README.md")).unwrap();
}

#[test]
fn a_run_is_undone_byte_for_byte_and_the_undo_can_be_undone() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = workspace(dir.path());
    let before = take(&root, &blobs);
    vandalise(&root);
    let after = take(&root, &blobs);
    let changes = diff(&before, &after);
    assert!(changes.len() >= 8, "{changes:#?}");

    let undone = undo(&root, &blobs, &changes, false).unwrap();
    assert_eq!(undone.conflicts, []);
    assert_eq!(shape(&take(&root, &blobs)), shape(&before));
    assert_eq!(
        fs_err::read_to_string(root.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );

    // Undoing the undo brings the agent's state back, byte for byte.
    let redone = undo(&root, &blobs, &undone.changes, false).unwrap();
    assert_eq!(redone.conflicts, []);
    assert_eq!(shape(&take(&root, &blobs)), shape(&after));
}

#[test]
fn one_file_can_be_undone_alone() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = workspace(dir.path());
    let before = take(&root, &blobs);
    vandalise(&root);
    let after = take(&root, &blobs);
    let only: Vec<Change> = diff(&before, &after)
        .into_iter()
        .filter(|c| c.path == "src/main.rs")
        .collect();
    let undone = undo(&root, &blobs, &only, false).unwrap();
    assert_eq!((undone.changes.len(), undone.conflicts.len()), (1, 0));
    assert_eq!(
        fs_err::read_to_string(root.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    // The rest stays as the agent left it.
    assert!(root.join("new/nested/payload.bin").exists());
}

#[test]
fn a_file_changed_since_is_not_overwritten_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = workspace(dir.path());
    let before = take(&root, &blobs);
    vandalise(&root);
    let after = take(&root, &blobs);
    let changes = diff(&before, &after);
    // The person fixes main.rs by hand after the run.
    fs_err::write(
        root.join("src/main.rs"),
        "fn main() { println!(\"mine\") }\n",
    )
    .unwrap();
    let undone = undo(&root, &blobs, &changes, false).unwrap();
    assert_eq!(undone.conflicts.len(), 1, "{:?}", undone.conflicts);
    assert_eq!(undone.conflicts[0].path, "src/main.rs");
    assert!(
        undone.conflicts[0].reason.contains("changed since"),
        "{:?}",
        undone.conflicts
    );
    assert!(fs_err::read_to_string(root.join("src/main.rs"))
        .unwrap()
        .contains("mine"));
    // Everything else was undone.
    assert!(root.join("src/deep/lib.rs").exists() && root.join("old.txt").exists());
    // Forced, it is put back too.
    let main: Vec<Change> = changes
        .into_iter()
        .filter(|c| c.path == "src/main.rs")
        .collect();
    let forced = undo(&root, &blobs, &main, true).unwrap();
    assert_eq!(forced.conflicts, []);
    assert_eq!(
        fs_err::read_to_string(root.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
}

#[test]
fn a_directory_replaced_by_a_link_never_leads_an_undo_outside_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = workspace(dir.path());
    let outside = dir.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::write(outside.join("main.rs"), "fn main() { exfiltrate() }\n").unwrap();
    let before = take(&root, &blobs);
    fs_err::write(root.join("src/main.rs"), "fn main() { exfiltrate() }\n").unwrap();
    fs_err::write(root.join("src/deep/lib.rs"), "changed\n").unwrap();
    let after = take(&root, &blobs);
    let changes = diff(&before, &after);
    // After the run, `src` becomes a link to a directory outside whose file matches what
    // the undo expects to find.
    fs_err::rename(root.join("src"), dir.path().join("src-moved")).unwrap();
    symlink(&outside, root.join("src")).unwrap();
    let undone = undo(&root, &blobs, &changes, true).unwrap();
    assert_eq!(undone.changes, []);
    assert_eq!(undone.conflicts.len(), 2, "{:?}", undone.conflicts);
    // The file outside is untouched, forced or not.
    assert_eq!(
        fs_err::read_to_string(outside.join("main.rs")).unwrap(),
        "fn main() { exfiltrate() }\n"
    );
    assert!(!outside.join("deep").exists());
}

#[test]
fn renamed_twins_get_their_own_modes_back_and_a_rename_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = dir.path().join("work");
    fs_err::create_dir_all(&root).unwrap();
    for (name, mode) in [("a", 0o644), ("b", 0o755)] {
        fs_err::write(root.join(name), "same\n").unwrap();
        fs_err::set_permissions(root.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = take(&root, &blobs);
    fs_err::rename(root.join("b"), root.join("c")).unwrap();
    fs_err::rename(root.join("a"), root.join("d")).unwrap();
    let after = take(&root, &blobs);
    let changes = diff(&before, &after);
    let undone = undo(&root, &blobs, &changes, false).unwrap();
    assert_eq!(undone.conflicts, []);
    assert_eq!(shape(&take(&root, &blobs)), shape(&before));

    // Renamed again; then the person puts a file where one came from: not overwritten.
    fs_err::rename(root.join("a"), root.join("e")).unwrap();
    let after = take(&root, &blobs);
    let changes = diff(&take(&root, &blobs), &after);
    assert!(changes.is_empty());
    let changes = diff(&before, &after);
    fs_err::write(root.join("a"), "the person's\n").unwrap();
    let undone = undo(&root, &blobs, &changes, false).unwrap();
    assert_eq!(undone.conflicts.len(), 1, "{:?}", undone.conflicts);
    assert_eq!(
        fs_err::read_to_string(root.join("a")).unwrap(),
        "the person's\n"
    );
}

#[test]
fn the_store_is_its_owners_alone() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let digest = blobs.put(b"a private file").unwrap();
    let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(blobs.dir()), 0o700);
    assert_eq!(mode(blobs.path(&digest).unwrap().parent().unwrap()), 0o700);
    assert_eq!(mode(&blobs.path(&digest).unwrap()), 0o600);
}

#[test]
fn an_undo_interrupted_midway_finishes_without_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = workspace(dir.path());
    let before = take(&root, &blobs);
    vandalise(&root);
    let after = take(&root, &blobs);
    let changes = diff(&before, &after);
    // An undo goes through deleted trees, renames, contents and modes before it removes
    // what was created: it dies after those, before anything is recorded; the whole undo
    // is tried again.
    let first: Vec<_> = changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Create)
        .cloned()
        .collect();
    assert!(first.len() < changes.len());
    assert_eq!(undo(&root, &blobs, &first, false).unwrap().conflicts, []);
    let again = undo(&root, &blobs, &changes, false).unwrap();
    assert_eq!(again.conflicts, []);
    assert_eq!(again.undid.len(), changes.len());
    assert_eq!(shape(&take(&root, &blobs)), shape(&before));
}

#[test]
fn an_undo_never_makes_a_set_id_program() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = dir.path().join("work");
    fs_err::create_dir_all(&root).unwrap();
    // Left by a program in an earlier session, then deleted.
    fs_err::write(root.join("tool"), "#!/bin/sh\n").unwrap();
    fs_err::set_permissions(root.join("tool"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    let before = take(&root, &blobs);
    assert_eq!(before.entries["tool"].mode, 0o6755);
    fs_err::remove_file(root.join("tool")).unwrap();
    let after = take(&root, &blobs);
    let undone = undo(&root, &blobs, &diff(&before, &after), false).unwrap();
    assert_eq!(undone.conflicts, []);
    let mode = fs_err::metadata(root.join("tool"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755);
}

#[test]
fn paths_longer_than_the_kernel_takes_at_once_are_undone() {
    use rustix::fs::{Mode, OFlags};
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = dir.path().join("work");
    fs_err::create_dir_all(&root).unwrap();
    fs_err::write(root.join("main.rs"), "fn main() {}\n").unwrap();
    let before = take(&root, &blobs);
    // Twenty levels of 250-character names: 5,000 bytes, past PATH_MAX.
    let name = "d".repeat(250);
    let mut fd =
        rustix::fs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    for _ in 0..20 {
        rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(
            &fd,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
    }
    let root_fd =
        rustix::fs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    rustix::fs::renameat(&root_fd, "main.rs", &fd, "main.rs").unwrap();
    let after = take(&root, &blobs);
    let changes = diff(&before, &after);
    assert!(changes.iter().any(|c| c.kind == ChangeKind::Rename));
    let undone = undo(&root, &blobs, &changes, false).unwrap();
    assert_eq!(undone.conflicts, []);
    assert_eq!(shape(&take(&root, &blobs)), shape(&before));
}

#[test]
fn a_file_replaced_by_a_directory_with_files_is_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::new(dir.path().join("blobs"));
    let root = dir.path().join("work");
    fs_err::create_dir_all(&root).unwrap();
    fs_err::write(root.join("f"), "a file\n").unwrap();
    let before = take(&root, &blobs);
    fs_err::remove_file(root.join("f")).unwrap();
    fs_err::create_dir_all(root.join("f/deeper")).unwrap();
    fs_err::write(root.join("f/deeper/inner"), "x").unwrap();
    let after = take(&root, &blobs);
    let undone = undo(&root, &blobs, &diff(&before, &after), false).unwrap();
    assert_eq!(undone.conflicts, []);
    assert_eq!(shape(&take(&root, &blobs)), shape(&before));
}
