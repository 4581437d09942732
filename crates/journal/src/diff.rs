//! What changed between two manifests of one tree.

use std::collections::BTreeMap;

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
    // Renames: a deleted file and a created file with the same content, paired in path order.
    let mut renamed_to: Vec<&str> = Vec::new();
    for (from, old) in deleted.clone() {
        if old.kind != EntryKind::File {
            continue;
        }
        let target = created
            .iter()
            .find(|(to, new)| {
                new.kind == EntryKind::File && new.digest == old.digest && !renamed_to.contains(to)
            })
            .map(|(to, new)| (*to, *new));
        if let Some((to, new)) = target {
            renamed_to.push(to);
            deleted.remove(from);
            changes.push(Change {
                kind: ChangeKind::Rename,
                path: from.to_owned(),
                to: Some(to.to_owned()),
                before: Some(old.clone()),
                after: Some(new.clone()),
            });
        }
    }
    for to in renamed_to {
        created.remove(to);
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
