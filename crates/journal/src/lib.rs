//! Reversible writes: what an agent changed in a tree, with every version it replaced kept.
//!
//! - [`Blobs`]: a content-addressed store: each content once, under its SHA-256, written
//!   atomically (a reader finds the whole content or nothing) and checked when read back.
//! - [`Manifest`] and [`snapshot`]: a tree as it is (paths with size, time, inode, mode, and
//!   the digest of each file's content, kept in the store), `.gitignore`d trees left out and
//!   named; a later snapshot reuses the digests of files whose metadata did not change.
//! - [`diff`]: what changed from one manifest to the next: created, modified, deleted,
//!   renamed files, mode changes, links.
//! - [`Journal`]: which session changed what and when (SQLite), its trees taken at its
//!   start and at each checkpoint, every change since recorded with its before-image, and
//!   undos recorded as changes of their own.
//! - [`undo`]: each change reversed exactly (content, mode, target, existence), only where
//!   the path is still as the change left it, never outside the tree; what the undo did is
//!   returned as changes, so an undo can itself be undone.
//!
//! Trust boundary: the tree is written by an untrusted program while it is read. Files are
//! opened without following links and without blocking; a file replaced between `lstat` and
//! `open` is read again or reported, never mistaken for another.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blobs;
mod diff;
mod journal;
mod restore;
mod snapshot;
mod stage;
mod tree;

pub use blobs::is_store_failure;
pub use blobs::{Blobs, Digest};
pub use diff::{diff, Change, ChangeKind};
pub use journal::{
    ApplyReport, Checkpoint, Collected, Filter, Journal, Lock, Recorded, SessionMark,
    SessionRecord, StageRecord, Stats, Taken, UndoReport,
};
pub use restore::{undo, undo_in, Conflict, Undone};
pub use snapshot::{snapshot, snapshot_in, Entry, EntryKind, Manifest, Options, Summary};
pub use stage::{apply as apply_stage, staged, Applied, ApplyRules, Staged, StagedKind};
pub use tree::{read_file, Root};
