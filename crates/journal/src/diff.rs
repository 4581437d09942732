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
                let content_changed = old.digest != new.digest || old.target != new.target;
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
    // A path that could not be read on one side: nothing is known of a change to it.
    let unknown_before: HashSet<&str> = before.unknown.iter().map(String::as_str).collect();
    let unknown_after: HashSet<&str> = after.unknown.iter().map(String::as_str).collect();
    created.retain(|path, _| !within(&unknown_before, path));
    deleted.retain(|path, _| !within(&unknown_after, path));
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
    let mut at = path;
    loop {
        if paths.contains(at) {
            return true;
        }
        match at.rsplit_once('/') {
            Some((parent, _)) => at = parent,
            None => return false,
        }
    }
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
    fn a_path_unread_on_one_side_is_never_created_or_deleted() {
        let mut before = Manifest::default();
        before.unknown.push("busy.db".into());
        before.entries.insert("gone.txt".into(), file("a"));
        let mut after = Manifest::default();
        after.entries.insert("busy.db".into(), file("b"));
        after.unknown.push("gone.txt".into());
        assert_eq!(diff(&before, &after), []);
    }

    #[test]
    fn nothing_below_an_unread_directory_is_deleted() {
        let mut before = Manifest::default();
        before.entries.insert("locked/a.txt".into(), file("a"));
        before.entries.insert("lockedness.txt".into(), file("b"));
        let mut after = Manifest::default();
        after.unknown.push("locked".into());
        let changes = diff(&before, &after);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["lockedness.txt"]);
    }
}
