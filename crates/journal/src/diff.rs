//! What changed between two manifests of one tree.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::snapshot::{Entry, EntryKind, Manifest};

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The path did not exist.
    Create,
    /// The content (or a link's target, or what the path is) changed.
    Modify,
    /// The path no longer exists.
    Delete,
    /// A file moved to another path, its content unchanged.
    Rename,
    /// Only the permission bits changed.
    Mode,
}

impl ChangeKind {
    /// Its name, as the journal stores it and `cordon journal` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Modify => "modify",
            ChangeKind::Delete => "delete",
            ChangeKind::Rename => "rename",
            ChangeKind::Mode => "mode",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            ChangeKind::Create,
            ChangeKind::Modify,
            ChangeKind::Delete,
            ChangeKind::Rename,
            ChangeKind::Mode,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// One change: the path, and what it was and is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The path (for a rename, where it was).
    pub path: String,
    /// For a rename, where it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// What it was; `None` for a creation.
    pub before: Option<Entry>,
    /// What it is; `None` for a deletion.
    pub after: Option<Entry>,
}

/// The changes from `before` to `after`, by path. A file deleted at one path and created at
/// another with the same content is a rename; directories that appear or go are changes too
/// (so that undoing recreates or removes them), files first when a tree goes.
pub fn diff(before: &Manifest, after: &Manifest) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut created: BTreeMap<&str, &Entry> = BTreeMap::new();
    let mut deleted: BTreeMap<&str, &Entry> = BTreeMap::new();
    for (path, old) in &before.entries {
        match after.entries.get(path) {
            None => {
                deleted.insert(path, old);
            }
            Some(new) if old.kind != new.kind => {
                changes.push(Change {
                    kind: ChangeKind::Modify,
                    path: path.clone(),
                    to: None,
                    before: Some(old.clone()),
                    after: Some(new.clone()),
                });
            }
            Some(new) => {
                // A file whose content was not kept changed if its metadata did.
                let unknown_changed = old.kind == EntryKind::Unknown
                    && (old.size, old.mtime_ns, old.ino, old.dev)
                        != (new.size, new.mtime_ns, new.ino, new.dev);
                let content_changed =
                    old.digest != new.digest || old.target != new.target || unknown_changed;
                let kind = if content_changed {
                    Some(ChangeKind::Modify)
                } else if old.mode != new.mode {
                    Some(ChangeKind::Mode)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    changes.push(Change {
                        kind,
                        path: path.clone(),
                        to: None,
                        before: Some(old.clone()),
                        after: Some(new.clone()),
                    });
                }
            }
        }
    }
    for (path, new) in &after.entries {
        if !before.entries.contains_key(path) {
            created.insert(path, new);
        }
    }
    // Below a directory that could not be walked before, nothing is known to be new. A
    // path below one that cannot be walked now is taken as gone: its undo puts back what is
    // missing and finds what is still there as it was (so nothing is hidden by making a
    // directory unreadable).
    let unknown_before: HashSet<&str> = before.unknown.iter().map(String::as_str).collect();
    created.retain(|path, _| !within(&unknown_before, path));
    // Something that could not be walked before, found under another name (a directory
    // whose name is not UTF-8, renamed): not new, and neither is anything below it.
    let moved: HashSet<&str> = created
        .iter()
        .filter(|(_, e)| before.unknown_ids.contains(&(e.dev, e.ino)))
        .map(|(path, _)| *path)
        .collect();
    created.retain(|path, _| !within(&moved, path));
    // Renames: a deleted file and a created file with the same content and mode (else the
    // same content), paired in path order.
    let mut by_content: HashMap<(&str, u32), Vec<&str>> = HashMap::new();
    let mut by_digest: HashMap<&str, Vec<&str>> = HashMap::new();
    for (to, new) in created.iter().rev() {
        if let (EntryKind::File, Some(digest)) = (new.kind, new.digest.as_deref()) {
            by_content.entry((digest, new.mode)).or_default().push(to);
            by_digest.entry(digest).or_default().push(to);
        }
    }
    let mut paired: HashSet<&str> = HashSet::new();
    let mut renames: Vec<(String, String)> = Vec::new();
    for (from, old) in &deleted {
        let (EntryKind::File, Some(digest)) = (old.kind, old.digest.as_deref()) else {
            continue;
        };
        let to = take_unpaired(by_content.get_mut(&(digest, old.mode)), &mut paired)
            .or_else(|| take_unpaired(by_digest.get_mut(digest), &mut paired));
        if let Some(to) = to {
            renames.push(((*from).to_owned(), to.to_owned()));
        }
    }
    for (from, to) in renames {
        let old = deleted.remove(from.as_str());
        let new = created.remove(to.as_str());
        changes.push(Change {
            kind: ChangeKind::Rename,
            path: from,
            to: Some(to),
            before: old.cloned(),
            after: new.cloned(),
        });
    }
    // Parents are created before their children, and children deleted before their parents.
    for (path, new) in created {
        changes.push(Change {
            kind: ChangeKind::Create,
            path: path.to_owned(),
            to: None,
            before: None,
            after: Some(new.clone()),
        });
    }
    for (path, old) in deleted.into_iter().rev() {
        changes.push(Change {
            kind: ChangeKind::Delete,
            path: path.to_owned(),
            to: None,
            before: Some(old.clone()),
            after: None,
        });
    }
    changes
}

/// Whether `path` is one of `paths` or below one of them.
fn within(paths: &HashSet<&str>, path: &str) -> bool {
    crate::tree::self_and_ancestors(path).any(|at| paths.contains(at))
}

/// The first path of `list` not paired yet, now paired.
fn take_unpaired<'a>(
    list: Option<&mut Vec<&'a str>>,
    paired: &mut HashSet<&'a str>,
) -> Option<&'a str> {
    let list = list?;
    while let Some(candidate) = list.pop() {
        if paired.insert(candidate) {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(digest: &str) -> Entry {
        Entry {
            kind: EntryKind::File,
            size: 1,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 1,
            dev: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            digest: Some(digest.into()),
            target: None,
        }
    }

    #[test]
    fn nothing_below_a_path_unread_before_is_new_and_below_one_unread_now_all_is_gone() {
        let mut before = Manifest::default();
        before.unknown.push("busy".into());
        before.entries.insert("locked/a.txt".into(), file("a"));
        before.entries.insert("lockedness.txt".into(), file("b"));
        let mut after = Manifest::default();
        after.entries.insert("busy/db".into(), file("c"));
        after.unknown.push("locked".into());
        let changes = diff(&before, &after);
        let shown: Vec<(ChangeKind, &str)> =
            changes.iter().map(|c| (c.kind, c.path.as_str())).collect();
        // `busy/db` may have been there: never removed by an undo. What a directory made
        // unreadable held is recorded as gone, so its undo puts back what is missing.
        assert_eq!(
            shown,
            [
                (ChangeKind::Delete, "lockedness.txt"),
                (ChangeKind::Delete, "locked/a.txt")
            ]
        );
    }

    #[test]
    fn a_tree_not_walked_before_and_renamed_is_not_new() {
        let mut before = Manifest::default();
        before.unknown.push("\u{fffd}636166e9".into());
        before.unknown_ids.push((1, 42));
        let mut after = Manifest::default();
        let mut dir = file("x");
        dir.kind = EntryKind::Dir;
        dir.ino = 42;
        after.entries.insert("cafe".into(), dir);
        after.entries.insert("cafe/thesis.txt".into(), file("t"));
        after.entries.insert("new.txt".into(), file("n"));
        let paths: Vec<String> = diff(&before, &after).into_iter().map(|c| c.path).collect();
        assert_eq!(paths, ["new.txt"]);
    }

    #[test]
    fn a_file_not_kept_changes_when_its_metadata_does() {
        let mut old = file("x");
        old.kind = EntryKind::Unknown;
        old.digest = None;
        let mut new = old.clone();
        new.size = 1 << 40;
        let mut before = Manifest::default();
        before.entries.insert("huge".into(), old);
        let mut after = Manifest::default();
        after.entries.insert("huge".into(), new);
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Modify);
    }
}
