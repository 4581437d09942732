//! The journal: which session changed what, when, with every before-image kept; and what
//! undid it.
//!
//! A directory holds `journal.db` (SQLite in WAL mode, every commit synced), the store
//! (`blobs/`) and the lock files. A session's trees are taken at its start; each checkpoint
//! (and its end) takes them again, records every change since the last one, and makes that
//! snapshot the next one's baseline. The commit point of a checkpoint is one transaction,
//! made after the store was synced: a crash before it leaves the previous baseline in force,
//! and the next checkpoint finds the same changes again.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension as _};
use serde::Serialize;

use crate::blobs::Blobs;
use crate::diff::{diff, Change, ChangeKind};
use crate::restore::{undo_in, Conflict};
use crate::snapshot::{snapshot_in, Entry, EntryKind, Manifest, Options, Summary};
use crate::stage::{apply as apply_stage, staged, Applied, Staged};
use crate::tree::Root;

/// Indexes on columns a journal made by an earlier version may lack until [`migrate`] adds
/// them.
const LATER_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS changes_rules ON changes(id) WHERE rules = 1;
";

/// Brings a journal made by an earlier version up to this one's tables.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_rules: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('changes') WHERE name = 'rules'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_rules {
        conn.execute_batch(
            "ALTER TABLE changes ADD COLUMN rules INTEGER NOT NULL DEFAULT 0;
             UPDATE changes SET rules = 1
               WHERE path = '.gitignore' OR path LIKE '%/.gitignore' OR path = '.git/info/exclude'
                  OR to_path = '.gitignore' OR to_path LIKE '%/.gitignore';",
        )?;
    }
    conn.execute_batch(LATER_INDEXES)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY,
    program TEXT NOT NULL,
    roots TEXT NOT NULL,
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_open ON sessions(session) WHERE ended_ns IS NULL;
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    root TEXT NOT NULL,
    taken_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    manifest TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_root ON snapshots(root, id);
CREATE INDEX IF NOT EXISTS snapshots_session ON snapshots(session, root, id);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    root TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    to_path TEXT,
    before TEXT,
    after TEXT,
    undoes INTEGER,
    undone_by INTEGER,
    rules INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS changes_session ON changes(session, id);
CREATE TABLE IF NOT EXISTS roots (
    session TEXT NOT NULL,
    root TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    PRIMARY KEY (session, root)
);
CREATE TABLE IF NOT EXISTS touched (
    session TEXT NOT NULL,
    root TEXT NOT NULL,
    path TEXT NOT NULL,
    before TEXT,
    PRIMARY KEY (session, root, path)
);
CREATE TABLE IF NOT EXISTS stages (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    root TEXT NOT NULL,
    dir TEXT NOT NULL,
    skip TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_time ON changes(time_ns);
";

/// A journal error: what failed, and where.
fn error(what: impl std::fmt::Display, path: &Path, err: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what} ({}): {err}", path.display()))
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Its number in the journal.
    pub id: i64,
    /// The session that made it (for an undo, the session whose change it undid).
    pub session: String,
    /// The tree it was found in.
    pub root: PathBuf,
    /// When it was recorded, nanoseconds since the epoch.
    pub time_ns: i64,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
    /// The change this one undid, when it is an undo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undoes: Option<i64>,
    /// The change that undid this one, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undone_by: Option<i64>,
}

/// One session as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    /// The session's id.
    pub session: String,
    /// What it ran.
    pub program: String,
    /// The trees it could write.
    pub roots: Vec<PathBuf>,
    /// When its trees were first taken.
    pub started_ns: i64,
    /// When it ended; `None` while it runs (or when its cordon was killed, until recovered).
    pub ended_ns: Option<i64>,
}

/// One tree taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taken {
    /// The tree.
    pub root: PathBuf,
    /// What the walk found and did.
    pub summary: Summary,
    /// The ignored trees left out.
    pub left_out: Vec<String>,
}

/// What a checkpoint found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The changes recorded.
    pub changes: Vec<Recorded>,
    /// The trees taken.
    pub taken: Vec<Taken>,
}

/// Which changes to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Of this session.
    pub session: Option<String>,
    /// Recorded at or after this time (nanoseconds since the epoch).
    pub since_ns: Option<i64>,
    /// These ids only.
    pub ids: Vec<i64>,
    /// Only changes not undone, and not undos themselves.
    pub pending: bool,
    /// At most this many, newest first (all, oldest first, when `None`).
    pub last: Option<u64>,
}

/// What an undo did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UndoReport {
    /// The changes the undo made, recorded (each can be undone in turn).
    pub undone: Vec<Recorded>,
    /// The paths left as they are, with the tree they are in.
    pub conflicts: Vec<(PathBuf, Conflict)>,
}

/// A session's staged writes for one tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRecord {
    /// Its number.
    pub id: i64,
    /// The session.
    pub session: String,
    /// The tree its writes are for.
    pub root: PathBuf,
    /// Where the stage is: `upper/` (the writes) and `work/` (overlayfs's own).
    pub dir: PathBuf,
    /// Paths never applied (protected paths), relative to the tree.
    pub skip: Vec<String>,
    /// `pending`, `applied` or `discarded`.
    pub state: String,
}

impl StageRecord {
    /// Where the session's writes are.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// overlayfs's work directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// What the stage changes.
    ///
    /// # Errors
    ///
    /// When the stage cannot be read.
    pub fn staged(&self) -> io::Result<Vec<Staged>> {
        staged(&self.upper())
    }
}

/// What applying a session's stages did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Per tree, what was applied and what was not.
    pub applied: Vec<(PathBuf, Applied)>,
    /// The changes journaled.
    pub journaled: Checkpoint,
}

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Collected {
    /// Changes forgotten.
    pub changes: u64,
    /// Snapshots forgotten.
    pub snapshots: u64,
    /// Sessions forgotten.
    pub sessions: u64,
    /// Contents removed from the store.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The journal's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Sessions recorded.
    pub sessions: u64,
    /// Changes recorded.
    pub changes: u64,
    /// Snapshots recorded.
    pub snapshots: u64,
    /// Contents in the store.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Bytes of the database (with its write-ahead log).
    pub db_bytes: u64,
    /// When the oldest change was recorded.
    pub oldest_ns: Option<i64>,
}

/// An exclusive hold on the journal (released when dropped).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// A running session's mark: while it is held, the session is not taken as ended.
#[derive(Debug)]
pub struct SessionMark {
    _file: File,
    path: PathBuf,
}

impl Drop for SessionMark {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.path);
    }
}

/// The journal in a directory.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    conn: Connection,
    blobs: Blobs,
}

/// At most this many paths below a directory a skill renames, removes or makes are kept.
const MAX_TOUCHED_BELOW: usize = 10_000;

/// How long a writer waits for another to finish.
const BUSY: Duration = Duration::from_secs(30);

fn valid_session(session: &str) -> bool {
    !session.is_empty()
        && session.len() <= 64
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, readable by its owner alone.
    ///
    /// # Errors
    ///
    /// When the directory cannot be made or the database opened.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| error("cannot make the journal's directory", dir, e))?;
        let meta = fs_err::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Err(error(
                "the journal's directory is not a directory",
                dir,
                "a link or a file is in its place",
            ));
        }
        let path = dir.join("journal.db");
        // Made readable by its owner alone before SQLite opens it: its log and shared-memory
        // files take the same mode.
        Self::open_private(&path)?;
        let conn = Connection::open(&path).map_err(|e| error("cannot open", &path, e))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(BUSY)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            // As the audit log: each session opens the journal, and copying the WAL back at
            // every close would cost a session's end two syncs and its next start two more
            // (the WAL made again). It is copied back once it passes 128 pages instead.
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )?;
            conn.pragma_update(None, "wal_autocheckpoint", 128)?;
            conn.execute_batch(SCHEMA)?;
            migrate(&conn)
        };
        setup().map_err(|e| error("cannot set up", &path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            conn,
            blobs: Blobs::new(dir.join("blobs")),
        })
    }

    /// The store of contents.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn open_private(path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(path)
            .map_err(|e| error("cannot open", path, e))
    }

    /// Holds the journal alone (a checkpoint, an undo, a collection), waiting up to 30 s
    /// for another holder.
    ///
    /// # Errors
    ///
    /// When the lock file cannot be opened, or another cordon holds it longer.
    pub fn lock(&self) -> io::Result<Lock> {
        let path = self.dir.join("lock");
        let file = Self::open_private(&path)?;
        let deadline = std::time::Instant::now() + BUSY;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => {
                    return Err(error(
                        "the journal is busy (another cordon holds it)",
                        &path,
                        err,
                    ))
                }
            }
        }
    }

    fn mark_path(&self, session: &str) -> PathBuf {
        self.dir.join("running").join(format!("{session}.lock"))
    }

    /// Marks `session` as running for as long as the mark is held.
    ///
    /// # Errors
    ///
    /// When the mark cannot be made.
    pub fn mark_running(&self, session: &str) -> io::Result<SessionMark> {
        if !valid_session(session) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{session}` is not a session id"),
            ));
        }
        let dir = self.dir.join("running");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| error("cannot make", &dir, e))?;
        let path = self.mark_path(session);
        let file = Self::open_private(&path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared)
            .map_err(|e| error("cannot mark the session as running", &path, e))?;
        Ok(SessionMark { _file: file, path })
    }

    /// Whether `session`'s cordon still runs (holds its mark).
    pub fn is_running(&self, session: &str) -> bool {
        let path = self.mark_path(session);
        let Ok(file) = fs_err::File::open(&path) else {
            return false;
        };
        rustix::fs::flock(
            file.file(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .is_err()
    }

    fn latest_manifest(&self, session: Option<&str>, root: &Path) -> io::Result<Option<Manifest>> {
        let root_text = root.to_string_lossy();
        let digest: Option<String> = match session {
            Some(session) => self.conn.query_row(
                "SELECT manifest FROM snapshots WHERE session = ?1 AND root = ?2 ORDER BY id DESC LIMIT 1",
                params![session, root_text],
                |row| row.get(0),
            ),
            None => self.conn.query_row(
                "SELECT manifest FROM snapshots WHERE root = ?1 ORDER BY id DESC LIMIT 1",
                params![root_text],
                |row| row.get(0),
            ),
        }
        .optional()
        .map_err(|e| error("cannot read the journal", &self.dir, e))?;
        self.load_manifest(digest)
    }

    /// The manifest kept as `digest`, if any.
    fn load_manifest(&self, digest: Option<String>) -> io::Result<Option<Manifest>> {
        let Some(digest) = digest else {
            return Ok(None);
        };
        let bytes = self.blobs.get(&digest)?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            error(
                "a kept snapshot cannot be read",
                &self.blobs.path(&digest).unwrap_or_default(),
                e,
            )
        })
    }

    /// The contents (digests) of ignore-rules files as sessions left them, not undone.
    fn rules_sessions_wrote(&self) -> io::Result<BTreeSet<String>> {
        let read = || -> rusqlite::Result<Vec<Option<String>>> {
            let mut stmt = self.conn.prepare(
                "SELECT after FROM changes WHERE rules = 1 AND undone_by IS NULL
                 AND (undoes IS NULL OR undoes IN (SELECT id FROM changes WHERE rules = 1 AND undoes IS NOT NULL))",
            )?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            rows.collect()
        };
        let rows = read().map_err(|e| error("cannot read the journal", &self.dir, e))?;
        Ok(rows
            .into_iter()
            .flatten()
            .filter_map(|a| serde_json::from_str::<Entry>(&a).ok())
            .filter_map(|e| e.digest)
            .collect())
    }

    /// The first snapshot of `session`'s tree `root`: the tree as the session found it.
    fn first_manifest(&self, session: &str, root: &Path) -> io::Result<Option<Manifest>> {
        let digest: Option<String> = self
            .conn
            .query_row(
                "SELECT manifest FROM snapshots WHERE session = ?1 AND root = ?2 ORDER BY id ASC LIMIT 1",
                params![session, root.to_string_lossy()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| error("cannot read the journal", &self.dir, e))?;
        self.load_manifest(digest)
    }

    /// Takes `root` and keeps its manifest; nothing recorded yet.
    fn take(
        &self,
        root: &Root,
        previous: Option<&Manifest>,
        options: &Options,
    ) -> io::Result<(Manifest, Summary, String)> {
        let mut options = options.clone();
        options.exclude.push(self.dir.clone());
        let (manifest, summary) = snapshot_in(root, &self.blobs, previous, &options)?;
        let bytes = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
        let digest = self.blobs.put(&bytes)?;
        Ok((manifest, summary, digest))
    }

    /// Records which directory `root` is for `session` (every later use checks it).
    fn record_root(conn: &Connection, session: &str, root: &Root) -> rusqlite::Result<()> {
        let (dev, ino) = root.identity();
        conn.execute(
            "INSERT OR IGNORE INTO roots (session, root, dev, ino) VALUES (?1, ?2, ?3, ?4)",
            params![
                session,
                root.path().to_string_lossy(),
                i64::from_ne_bytes(dev.to_ne_bytes()),
                i64::from_ne_bytes(ino.to_ne_bytes())
            ],
        )?;
        Ok(())
    }

    /// The identity recorded for `session`'s tree `root`.
    fn root_identity(&self, session: &str, root: &Path) -> io::Result<(u64, u64)> {
        let found: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT dev, ino FROM roots WHERE session = ?1 AND root = ?2",
                params![session, root.to_string_lossy()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| error("cannot read the journal", &self.dir, e))?;
        let (dev, ino) = found.ok_or_else(|| {
            error(
                "the journal does not know which directory the session wrote",
                root,
                format!("session {session}"),
            )
        })?;
        Ok((
            u64::from_ne_bytes(dev.to_ne_bytes()),
            u64::from_ne_bytes(ino.to_ne_bytes()),
        ))
    }

    /// `session`'s tree `root`, open, and still the directory the session wrote.
    fn open_root(&self, session: &str, root: &Path) -> io::Result<Root> {
        Root::open_expecting(root, self.root_identity(session, root)?)
    }

    fn insert_snapshot(
        tx: &rusqlite::Transaction<'_>,
        session: &str,
        root: &Path,
        reason: &str,
        digest: &str,
        summary: &Summary,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO snapshots (session, root, taken_ns, reason, manifest, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session,
                root.to_string_lossy(),
                now_ns(),
                reason,
                digest,
                serde_json::to_string(summary).unwrap_or_default()
            ],
        )?;
        Ok(())
    }

    /// Takes `session`'s trees before its program runs. A tree taken before (by any
    /// session) is read again only where its files' metadata changed.
    ///
    /// # Errors
    ///
    /// When a tree cannot be opened or the store written: the session must not run then,
    /// for what it changed could not be undone.
    pub fn start(
        &mut self,
        session: &str,
        program: &str,
        roots: &[PathBuf],
        options: &Options,
    ) -> io::Result<Vec<Taken>> {
        if !valid_session(session) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{session}` is not a session id"),
            ));
        }
        let _lock = self.lock()?;
        let mut options = options.clone();
        options.untrusted_rules = self.rules_sessions_wrote()?;
        let options = &options;
        let mut taken = Vec::new();
        let mut digests = Vec::new();
        let mut opened = Vec::new();
        for root in roots {
            // A damaged earlier snapshot only costs reading everything again.
            let previous = self.latest_manifest(None, root).unwrap_or(None);
            let tree = Root::open(root).map_err(|e| error("cannot take", root, e))?;
            let (manifest, summary, digest) = self
                .take(
                    &tree,
                    previous.as_ref(),
                    &Options {
                        baseline: false,
                        ..options.clone()
                    },
                )
                .map_err(|e| error("cannot take", root, e))?;
            digests.push(digest);
            opened.push(tree);
            taken.push(Taken {
                root: root.clone(),
                left_out: manifest.left_out,
                summary,
            });
        }
        self.blobs.sync()?;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        let write = || -> rusqlite::Result<()> {
            tx.execute(
                "INSERT INTO sessions (session, program, roots, started_ns) VALUES (?1, ?2, ?3, ?4)",
                params![
                    session,
                    program,
                    serde_json::to_string(roots).unwrap_or_default(),
                    now_ns()
                ],
            )?;
            for ((t, digest), tree) in taken.iter().zip(&digests).zip(&opened) {
                Self::record_root(&tx, session, tree)?;
                Self::insert_snapshot(&tx, session, &t.root, "start", digest, &t.summary)?;
            }
            Ok(())
        };
        write().map_err(|e| error("cannot write the journal", &self.dir, e))?;
        tx.commit()
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        Ok(taken)
    }

    /// Forgets `session`, whose trees were taken but whose program never ran (its launch
    /// was refused or failed after [`Journal::start`]): nothing of it is left to be
    /// recovered, listed or undone, and its stages (empty) are removed. Had it stayed, the
    /// next launch would have recorded as its changes whatever others changed in its trees
    /// meanwhile. A session with recorded changes is not forgotten.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written, or `session` has recorded changes.
    pub fn forget(&mut self, session: &str) -> io::Result<()> {
        let _lock = self.lock()?;
        let changes: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM changes WHERE session = ?1",
                params![session],
                |row| row.get(0),
            )
            .map_err(|e| error("cannot read the journal", &self.dir, e))?;
        if changes > 0 {
            return Err(io::Error::other(format!(
                "session `{session}` has {changes} recorded changes: it is not forgotten"
            )));
        }
        for stage in self.stages(Some(session))? {
            self.close_stage(&stage, "discarded")?;
        }
        if valid_session(session) {
            let _ = std::fs::remove_dir(self.dir.join("stages").join(session));
        }
        let tx = self
            .conn
            .transaction()
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        for table in ["stages", "touched", "roots", "snapshots", "sessions"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE session = ?1"),
                params![session],
            )
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        }
        tx.commit()
            .map_err(|e| error("cannot write the journal", &self.dir, e))
    }

    /// Records `session` as writing in `roots` path by path ([`Journal::touch`] before each
    /// first write of a path), not by snapshots: a skill's session.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn open_session(
        &mut self,
        session: &str,
        program: &str,
        roots: &[PathBuf],
    ) -> io::Result<()> {
        if !valid_session(session) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{session}` is not a session id"),
            ));
        }
        self.conn
            .execute(
                "INSERT INTO sessions (session, program, roots, started_ns) VALUES (?1, ?2, ?3, ?4)",
                params![
                    session,
                    program,
                    serde_json::to_string(roots).unwrap_or_default(),
                    now_ns()
                ],
            )
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        for root in roots {
            let tree = Root::open(root).map_err(|e| error("cannot open", root, e))?;
            Self::record_root(&self.conn, session, &tree)
                .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        }
        Ok(())
    }

    /// Keeps what `rel` (below `root`) is before `session` first writes it: its content in
    /// the store, synced, and its entry recorded, before this returns. Later writes of the
    /// same path in the session keep nothing more; the session's end (or a checkpoint)
    /// records what became of each path touched.
    ///
    /// # Errors
    ///
    /// When the path cannot be read or the store or journal written: the write must not
    /// happen then.
    pub fn touch(
        &mut self,
        session: &str,
        root: &Path,
        rel: &str,
        options: &Options,
    ) -> io::Result<()> {
        let tree = self.open_root(session, root)?;
        let is_dir = self.touch_one(session, &tree, rel, options)?;
        // A directory renamed or removed takes what is in it along: each is kept too.
        if is_dir {
            for below in crate::tree::descendants(&tree, rel, MAX_TOUCHED_BELOW)? {
                self.touch_one(session, &tree, &below, options)?;
            }
        }
        self.blobs.sync()
    }

    /// Keeps one path (see [`Journal::touch`]); whether it is a directory. The store is
    /// synced by the caller.
    fn touch_one(
        &mut self,
        session: &str,
        tree: &Root,
        rel: &str,
        options: &Options,
    ) -> io::Result<bool> {
        let root_text = tree.path().to_string_lossy();
        let known: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT before FROM touched WHERE session = ?1 AND root = ?2 AND path = ?3",
                params![session, root_text, rel],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| error("cannot read the journal", &self.dir, e))?;
        if let Some(before) = known {
            let entry: Option<Entry> = before.and_then(|b| serde_json::from_str(&b).ok());
            return Ok(entry.is_some_and(|e| e.kind == EntryKind::Dir));
        }
        let before = crate::restore::read_entry(tree, rel, &self.blobs, options.max_file)?;
        // A write whose before-image cannot be kept could not be undone: it does not happen.
        if let Some(entry) = before.as_ref().filter(|e| e.kind == EntryKind::Unknown) {
            return Err(io::Error::other(format!(
                "`{rel}`: its content ({} bytes) cannot be kept",
                entry.size
            )));
        }
        if before.as_ref().is_some_and(|e| e.kind == EntryKind::Other) {
            return Err(io::Error::other(format!(
                "`{rel}` is a FIFO, socket or device, which an undo cannot put back"
            )));
        }
        self.conn
            .execute(
                "INSERT INTO touched (session, root, path, before) VALUES (?1, ?2, ?3, ?4)",
                params![
                    session,
                    root_text,
                    rel,
                    before.as_ref().and_then(|e| serde_json::to_string(e).ok())
                ],
            )
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        Ok(before.is_some_and(|e| e.kind == EntryKind::Dir))
    }

    /// The changes of the paths `session` touched: what each was, what it is now.
    fn settle(&self, session: &str, options: &Options) -> io::Result<Vec<(PathBuf, Change)>> {
        let read = || -> rusqlite::Result<Vec<(String, String, Option<String>)>> {
            let mut stmt = self.conn.prepare(
                "SELECT root, path, before FROM touched WHERE session = ?1 ORDER BY root, path",
            )?;
            let rows = stmt.query_map(params![session], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            rows.collect()
        };
        let rows = read().map_err(|e| error("cannot read the journal", &self.dir, e))?;
        let known: BTreeSet<(String, String)> = rows
            .iter()
            .map(|(root, path, _)| (root.clone(), path.clone()))
            .collect();
        let mut out = Vec::new();
        for (root, path, before) in rows {
            let root = PathBuf::from(root);
            let before: Option<Entry> = before.and_then(|b| serde_json::from_str(&b).ok());
            let tree = self.open_root(session, &root)?;
            // A path that cannot be reached now (a link in its way) is taken as gone: its
            // undo puts the before-image back, over whatever is there only when forced.
            let after =
                match crate::restore::read_entry(&tree, &path, &self.blobs, options.max_file) {
                    Ok(after) => after,
                    Err(err) if crate::blobs::is_store_failure(&err) => return Err(err),
                    Err(_) => None,
                };
            let kind = match (&before, &after) {
                (None, None) => continue,
                (None, Some(_)) => ChangeKind::Create,
                (Some(_), None) => ChangeKind::Delete,
                (Some(b), Some(a))
                    if b.kind != a.kind || b.digest != a.digest || b.target != a.target =>
                {
                    ChangeKind::Modify
                }
                (Some(b), Some(a)) if b.mode != a.mode => ChangeKind::Mode,
                _ => continue,
            };
            // What is in a directory the skill made (or renamed here) is the skill's too.
            let made_dir =
                before.is_none() && after.as_ref().is_some_and(|a| a.kind == EntryKind::Dir);
            let below = if made_dir {
                crate::tree::descendants(&tree, &path, MAX_TOUCHED_BELOW).unwrap_or_default()
            } else {
                Vec::new()
            };
            let root_text = root.to_string_lossy().into_owned();
            out.push((
                root.clone(),
                Change {
                    kind,
                    path,
                    to: None,
                    before,
                    after,
                },
            ));
            for child in below {
                if known.contains(&(root_text.clone(), child.clone())) {
                    continue;
                }
                if let Some(after) =
                    crate::restore::read_entry(&tree, &child, &self.blobs, options.max_file)?
                {
                    out.push((
                        root.clone(),
                        Change {
                            kind: ChangeKind::Create,
                            path: child,
                            to: None,
                            before: None,
                            after: Some(after),
                        },
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Makes a stage for each of `roots` of `session` (`<journal>/stages/<session>/<n>/`,
    /// with empty `upper/` and `work/`, readable by their owner alone) and records it;
    /// `skip` is per tree the protected paths never applied.
    ///
    /// # Errors
    ///
    /// When a directory cannot be made or the journal written.
    pub fn make_stages(
        &mut self,
        session: &str,
        roots: &[(PathBuf, Vec<String>)],
    ) -> io::Result<Vec<StageRecord>> {
        if !valid_session(session) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{session}` is not a session id"),
            ));
        }
        let mut out = Vec::new();
        for (n, (root, skip)) in roots.iter().enumerate() {
            let dir = self.dir.join("stages").join(session).join(n.to_string());
            for sub in ["upper", "work"] {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir.join(sub))
                    .map_err(|e| error("cannot make the stage", &dir, e))?;
            }
            self.conn
                .execute(
                    "INSERT INTO stages (session, root, dir, skip, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
                    params![
                        session,
                        root.to_string_lossy(),
                        dir.to_string_lossy(),
                        serde_json::to_string(skip).unwrap_or_default()
                    ],
                )
                .map_err(|e| error("cannot write the journal", &self.dir, e))?;
            let id = self.conn.last_insert_rowid();
            let tree = Root::open(root).map_err(|e| error("cannot open", root, e))?;
            Self::record_root(&self.conn, session, &tree)
                .map_err(|e| error("cannot write the journal", &self.dir, e))?;
            out.push(StageRecord {
                id,
                session: session.to_owned(),
                root: root.clone(),
                dir,
                skip: skip.clone(),
                state: "pending".into(),
            });
        }
        Ok(out)
    }

    /// The stages still pending (of `session`, or of every session).
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn stages(&self, session: Option<&str>) -> io::Result<Vec<StageRecord>> {
        let read = || -> rusqlite::Result<Vec<StageRecord>> {
            let mut stmt = self.conn.prepare(
                "SELECT id, session, root, dir, skip, state FROM stages
                 WHERE state IN ('pending', 'applying') AND (?1 IS NULL OR session = ?1) ORDER BY id",
            )?;
            let rows = stmt.query_map(params![session], |row| {
                let root: String = row.get(2)?;
                let dir: String = row.get(3)?;
                let skip: String = row.get(4)?;
                Ok(StageRecord {
                    id: row.get(0)?,
                    session: row.get(1)?,
                    root: PathBuf::from(root),
                    dir: PathBuf::from(dir),
                    skip: serde_json::from_str(&skip).unwrap_or_default(),
                    state: row.get(5)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| error("cannot read the journal", &self.dir, e))
    }

    fn refuse_running(&self, session: &str) -> io::Result<()> {
        if self.is_running(session) {
            return Err(io::Error::other(format!(
                "session {session} is still running; its stage can be applied or discarded once it ends"
            )));
        }
        Ok(())
    }

    /// Applies `session`'s pending stages to their trees and journals what changed (each
    /// change then undoable like a live session's). A path changed in the tree during the
    /// run is left as it is unless `force`; protected paths are never applied; `vet` is
    /// asked about each path the tree did not have, and `after` runs once everything is in,
    /// before it is journaled.
    ///
    /// # Errors
    ///
    /// When the session still runs, has nothing staged, or a stage cannot be read.
    pub fn apply_stages(
        &mut self,
        session: &str,
        force: bool,
        options: &Options,
        vet: &dyn Fn(&Path) -> Result<(), String>,
        after: &mut dyn FnMut(),
    ) -> io::Result<ApplyReport> {
        self.refuse_running(session)?;
        let stages = self.stages(Some(session))?;
        if stages.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("session {session} has nothing staged"),
            ));
        }
        let mut report = ApplyReport::default();
        // The trees as they are now become the session's baseline, attributing nothing to
        // it: what is journaled next is exactly what the stage brings, and whatever it
        // replaces or removes keeps its before-image.
        // Once per application: one cut short and finished later keeps this baseline, so
        // what the first attempt overwrote keeps its before-image.
        if stages.iter().all(|s| s.state == "pending") {
            self.take_session(session, "before-apply", false, options, false)?;
            for stage in &stages {
                self.conn
                    .execute(
                        "UPDATE stages SET state = 'applying' WHERE id = ?1",
                        params![stage.id],
                    )
                    .map_err(|e| error("cannot write the journal", &self.dir, e))?;
            }
        }
        {
            let _lock = self.lock()?;
            for stage in &stages {
                // Conflicts are judged against the tree as the session found it.
                let found = self
                    .first_manifest(session, &stage.root)?
                    .unwrap_or_default();
                let tree = self.open_root(session, &stage.root)?;
                let rules = crate::stage::ApplyRules {
                    skip: &stage.skip,
                    max_file: options.max_file,
                    vet,
                };
                let applied = apply_stage(&stage.upper(), &tree, &found, &rules, force)
                    .map_err(|e| error("cannot apply the stage", &stage.dir, e))?;
                report.applied.push((stage.root.clone(), applied));
            }
        }
        // What the caller checks once the stage is in (repositories that appeared, say),
        // before the result is journaled.
        after();
        // What the trees are now, against the session's last snapshot: the stage's changes.
        report.journaled = self.checkpoint(session, "apply", true, options)?;
        // A stage with paths left as they are stays, to be applied again (with `force`).
        for (stage, (_, applied)) in stages.iter().zip(&report.applied) {
            if applied.conflicts.is_empty() {
                self.close_stage(stage, "applied")?;
            }
        }
        Ok(report)
    }

    /// Drops `session`'s pending stages: nothing it wrote reaches its trees.
    ///
    /// # Errors
    ///
    /// When the session still runs, has nothing staged, or a stage cannot be removed.
    pub fn discard_stages(&mut self, session: &str) -> io::Result<Vec<StageRecord>> {
        self.refuse_running(session)?;
        let stages = self.stages(Some(session))?;
        if stages.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("session {session} has nothing staged"),
            ));
        }
        for stage in &stages {
            self.close_stage(stage, "discarded")?;
        }
        Ok(stages)
    }

    fn close_stage(&self, stage: &StageRecord, state: &str) -> io::Result<()> {
        self.conn
            .execute(
                "UPDATE stages SET state = ?1 WHERE id = ?2",
                params![state, stage.id],
            )
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        // What the program wrote is removed without following any link in it.
        match fs_err::remove_dir_all(&stage.dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// The session `session`, if recorded.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn session(&self, session: &str) -> io::Result<Option<SessionRecord>> {
        Ok(self
            .sessions_where("WHERE session = ?1", params![session])?
            .into_iter()
            .next())
    }

    /// Every session recorded, oldest first.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn sessions(&self) -> io::Result<Vec<SessionRecord>> {
        self.sessions_where("", params![])
    }

    fn sessions_where(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> io::Result<Vec<SessionRecord>> {
        let sql = format!(
            "SELECT session, program, roots, started_ns, ended_ns FROM sessions {clause} ORDER BY started_ns"
        );
        let read = || -> rusqlite::Result<Vec<SessionRecord>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(args, |row| {
                let roots: String = row.get(2)?;
                Ok(SessionRecord {
                    session: row.get(0)?,
                    program: row.get(1)?,
                    roots: serde_json::from_str(&roots).unwrap_or_default(),
                    started_ns: row.get(3)?,
                    ended_ns: row.get(4)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| error("cannot read the journal", &self.dir, e))
    }

    /// Takes `session`'s trees again and records every change since its last snapshot;
    /// with `ended`, the session is recorded as ended.
    ///
    /// # Errors
    ///
    /// When the session is unknown, a tree cannot be taken, or the journal written; nothing
    /// is recorded then, and the next checkpoint finds the same changes.
    pub fn checkpoint(
        &mut self,
        session: &str,
        reason: &str,
        ended: bool,
        options: &Options,
    ) -> io::Result<Checkpoint> {
        self.take_session(session, reason, ended, options, true)
    }

    /// Takes `session`'s trees again, recording them (and, with `record`, every change
    /// since its last snapshot and every path it touched). Without `record`, the trees as
    /// they are become the session's baseline and nothing is attributed to it.
    fn take_session(
        &mut self,
        session: &str,
        reason: &str,
        ended: bool,
        options: &Options,
        record: bool,
    ) -> io::Result<Checkpoint> {
        let record_changes = record;
        let record = self.session(session)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no session `{session}` in the journal"),
            )
        })?;
        let _lock = self.lock()?;
        let mut found = Vec::new();
        for root in &record.roots {
            let baseline = self.latest_manifest(Some(session), root)?;
            // A tree never taken (a session journaled path by path) is not taken now.
            if baseline.is_none() {
                continue;
            }
            let options = Options {
                baseline: true,
                ..options.clone()
            };
            let tree = self.open_root(session, root)?;
            let (manifest, summary, digest) = self
                .take(&tree, baseline.as_ref(), &options)
                .map_err(|e| error("cannot take", root, e))?;
            let changes = match (&baseline, record_changes) {
                (Some(b), true) => diff(b, &manifest),
                _ => Vec::new(),
            };
            found.push((root.clone(), manifest.left_out, summary, digest, changes));
        }
        let touched = if record_changes {
            self.settle(session, options)?
        } else {
            Vec::new()
        };
        self.blobs.sync()?;
        let time = now_ns();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        let mut out = Checkpoint::default();
        let write = |out: &mut Checkpoint| -> rusqlite::Result<()> {
            for (root, change) in touched {
                let id = insert_change(&tx, session, &root, time, &change, None)?;
                out.changes.push(Recorded {
                    id,
                    session: session.to_owned(),
                    root,
                    time_ns: time,
                    change,
                    undoes: None,
                    undone_by: None,
                });
            }
            if record_changes {
                tx.execute("DELETE FROM touched WHERE session = ?1", params![session])?;
            }
            for (root, left_out, summary, digest, changes) in found {
                for change in changes {
                    let id = insert_change(&tx, session, &root, time, &change, None)?;
                    out.changes.push(Recorded {
                        id,
                        session: session.to_owned(),
                        root: root.clone(),
                        time_ns: time,
                        change,
                        undoes: None,
                        undone_by: None,
                    });
                }
                Self::insert_snapshot(&tx, session, &root, reason, &digest, &summary)?;
                out.taken.push(Taken {
                    root,
                    summary,
                    left_out,
                });
            }
            if ended {
                tx.execute(
                    "UPDATE sessions SET ended_ns = ?1 WHERE session = ?2",
                    params![time, session],
                )?;
            }
            Ok(())
        };
        write(&mut out).map_err(|e| error("cannot write the journal", &self.dir, e))?;
        tx.commit()
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        Ok(out)
    }

    /// Ends the sessions whose cordon was killed before their end: their changes are
    /// recorded now. Returns what was recorded, by session.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read; a session that cannot be taken is left for later.
    pub fn recover(&mut self, options: &Options) -> io::Result<Vec<(String, Checkpoint)>> {
        let open = self.sessions_where("WHERE ended_ns IS NULL", params![])?;
        let mut out = Vec::new();
        for record in open {
            if self.is_running(&record.session) {
                continue;
            }
            if let Some(why) = self.tree_gone(&record)? {
                // Nothing of it can be recorded or undone, now or later: it is ended, so
                // that no later launch tries again.
                self.conn
                    .execute(
                        "UPDATE sessions SET ended_ns = ?1 WHERE session = ?2",
                        params![now_ns(), record.session],
                    )
                    .map_err(|e| error("cannot write the journal", &self.dir, e))?;
                let _ = fs_err::remove_file(self.mark_path(&record.session));
                tracing::warn!(
                    "session {} ended without its cordon and {why}: what it changed there cannot be recorded",
                    record.session
                );
                continue;
            }
            match self.checkpoint(&record.session, "recovered", true, options) {
                Ok(found) => {
                    let _ = fs_err::remove_file(self.mark_path(&record.session));
                    out.push((record.session, found));
                }
                Err(err) => tracing::warn!(
                    "the changes of session {} are not recorded yet: {err}",
                    record.session
                ),
            }
        }
        Ok(out)
    }

    /// Why `session`'s trees can never be taken again, if they cannot: a tree that no
    /// longer exists, or one whose identity the journal never recorded (an earlier
    /// version's). A tree that exists but is another directory (a file system not
    /// mounted, say) may come back, and is not given up.
    fn tree_gone(&self, session: &SessionRecord) -> io::Result<Option<String>> {
        for root in &session.roots {
            if self
                .latest_manifest(Some(&session.session), root)?
                .is_none()
            {
                continue;
            }
            if let Err(err) = fs_err::symlink_metadata(root) {
                if err.kind() == io::ErrorKind::NotFound {
                    return Ok(Some(format!("`{}` no longer exists", root.display())));
                }
            }
            if self.root_identity(&session.session, root).is_err() {
                return Ok(Some(format!(
                    "the journal does not know which directory `{}` was",
                    root.display()
                )));
            }
        }
        Ok(None)
    }

    /// The changes `filter` selects, oldest first (newest first with `last`).
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn changes(&self, filter: &Filter) -> io::Result<Vec<Recorded>> {
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(session) = &filter.session {
            clauses.push(format!("session = ?{}", args.len() + 1));
            args.push(session.clone().into());
        }
        if let Some(since) = filter.since_ns {
            clauses.push(format!("time_ns >= ?{}", args.len() + 1));
            args.push(since.into());
        }
        if !filter.ids.is_empty() {
            let marks: Vec<String> = filter
                .ids
                .iter()
                .map(|id| {
                    args.push((*id).into());
                    format!("?{}", args.len())
                })
                .collect();
            clauses.push(format!("id IN ({})", marks.join(", ")));
        }
        if filter.pending {
            clauses.push("undone_by IS NULL AND undoes IS NULL".into());
        }
        let mut sql = String::from(
            "SELECT id, session, root, time_ns, kind, path, to_path, before, after, undoes, undone_by FROM changes",
        );
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        match filter.last {
            Some(n) => sql.push_str(&format!(" ORDER BY id DESC LIMIT {n}")),
            None => sql.push_str(" ORDER BY id"),
        }
        let read = || -> rusqlite::Result<Vec<Recorded>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |row| {
                let kind: String = row.get(4)?;
                let entry = |i: usize| -> rusqlite::Result<Option<Entry>> {
                    let text: Option<String> = row.get(i)?;
                    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
                };
                let root: String = row.get(2)?;
                Ok(Recorded {
                    id: row.get(0)?,
                    session: row.get(1)?,
                    root: PathBuf::from(root),
                    time_ns: row.get(3)?,
                    change: Change {
                        kind: ChangeKind::from_name(&kind).unwrap_or(ChangeKind::Modify),
                        path: row.get(5)?,
                        to: row.get(6)?,
                        before: entry(7)?,
                        after: entry(8)?,
                    },
                    undoes: row.get(9)?,
                    undone_by: row.get(10)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| error("cannot read the journal", &self.dir, e))
    }

    /// Undoes `selected` (as [`Journal::changes`] returned them), newest session's changes
    /// first, and records each undo as a change of its own (so it can be undone in turn).
    /// A change already undone is skipped; a path changed since is a conflict unless
    /// `force`.
    ///
    /// # Errors
    ///
    /// When the store cannot be read or the journal written. What was undone before then
    /// stays undone and is recorded.
    pub fn undo(&mut self, selected: &[Recorded], force: bool) -> io::Result<UndoReport> {
        let _lock = self.lock()?;
        // Read again under the lock: an undo made meanwhile is not made twice.
        let ids: Vec<i64> = selected.iter().map(|r| r.id).collect();
        let current = self.changes(&Filter {
            ids,
            ..Filter::default()
        })?;
        let mut by_root: BTreeMap<PathBuf, Vec<Recorded>> = BTreeMap::new();
        for recorded in current.into_iter().filter(|r| r.undone_by.is_none()) {
            by_root
                .entry(recorded.root.clone())
                .or_default()
                .push(recorded);
        }
        let mut report = UndoReport::default();
        for (root, mut list) in by_root {
            // The latest change of a path is undone first.
            list.sort_by_key(|r| std::cmp::Reverse(r.id));
            let mut seen: BTreeSet<String> = BTreeSet::new();
            let mut batch: Vec<Vec<Recorded>> = vec![Vec::new()];
            for recorded in list {
                let paths = [Some(&recorded.change.path), recorded.change.to.as_ref()];
                if paths.iter().flatten().any(|p| seen.contains(p.as_str())) {
                    batch.push(Vec::new());
                    seen.clear();
                }
                seen.extend(paths.into_iter().flatten().cloned());
                if let Some(last) = batch.last_mut() {
                    last.push(recorded);
                }
            }
            for group in batch.into_iter().filter(|g| !g.is_empty()) {
                // Only where the tree is still the directory each session wrote.
                let mut usable = Vec::new();
                let mut tree: Option<Root> = None;
                for recorded in group {
                    let opened =
                        self.root_identity(&recorded.session, &root)
                            .and_then(|id| match &tree {
                                Some(t) if t.identity() == id => Ok(()),
                                Some(_) => Err(io::Error::other(
                                    "the tree was replaced between the sessions selected",
                                )),
                                None => Root::open_expecting(&root, id).map(|t| tree = Some(t)),
                            });
                    match opened {
                        Ok(()) => usable.push(recorded),
                        Err(err) => report.conflicts.push((
                            root.clone(),
                            Conflict {
                                path: recorded.change.path.clone(),
                                reason: err.to_string(),
                            },
                        )),
                    }
                }
                let (Some(tree), false) = (tree, usable.is_empty()) else {
                    continue;
                };
                let group = usable;
                let changes: Vec<Change> = group.iter().map(|r| r.change.clone()).collect();
                let undone = undo_in(&tree, &self.blobs, &changes, force)?;
                let time = now_ns();
                let tx = self
                    .conn
                    .transaction()
                    .map_err(|e| error("cannot write the journal", &self.dir, e))?;
                let mut made = Vec::new();
                let write = |made: &mut Vec<Recorded>| -> rusqlite::Result<()> {
                    for (change, index) in undone.changes.iter().zip(&undone.undid) {
                        let Some(original) = group.get(*index) else {
                            continue;
                        };
                        let id = insert_change(
                            &tx,
                            &original.session,
                            &root,
                            time,
                            change,
                            Some(original.id),
                        )?;
                        tx.execute(
                            "UPDATE changes SET undone_by = ?1 WHERE id = ?2",
                            params![id, original.id],
                        )?;
                        made.push(Recorded {
                            id,
                            session: original.session.clone(),
                            root: root.clone(),
                            time_ns: time,
                            change: change.clone(),
                            undoes: Some(original.id),
                            undone_by: None,
                        });
                    }
                    Ok(())
                };
                write(&mut made).map_err(|e| error("cannot write the journal", &self.dir, e))?;
                tx.commit()
                    .map_err(|e| error("cannot write the journal", &self.dir, e))?;
                report.undone.extend(made);
                report
                    .conflicts
                    .extend(undone.conflicts.into_iter().map(|c| (root.clone(), c)));
            }
        }
        Ok(report)
    }

    /// Forgets what was recorded before `before_ns`: its changes, snapshots and ended
    /// sessions, and the contents nothing kept refers to any more. The latest snapshot of
    /// each tree, and every snapshot of a session still open, are kept.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read or written.
    pub fn collect(&mut self, before_ns: i64) -> io::Result<Collected> {
        let _lock = self.lock()?;
        let mut out = Collected::default();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        let forget = || -> rusqlite::Result<(usize, usize, usize)> {
            let changes =
                tx.execute("DELETE FROM changes WHERE time_ns < ?1", params![before_ns])?;
            let snapshots = tx.execute(
                "DELETE FROM snapshots WHERE taken_ns < ?1
                   AND id NOT IN (SELECT MAX(id) FROM snapshots GROUP BY root)
                   AND session NOT IN (SELECT session FROM sessions WHERE ended_ns IS NULL)
                   AND session NOT IN (SELECT session FROM stages WHERE state IN ('pending', 'applying'))",
                params![before_ns],
            )?;
            let sessions = tx.execute(
                "DELETE FROM sessions WHERE ended_ns IS NOT NULL AND ended_ns < ?1
                   AND session NOT IN (SELECT session FROM changes)
                   AND session NOT IN (SELECT session FROM snapshots)
                   AND session NOT IN (SELECT session FROM stages WHERE state IN ('pending', 'applying'))",
                params![before_ns],
            )?;
            Ok((changes, snapshots, sessions))
        };
        let (changes, snapshots, sessions) =
            forget().map_err(|e| error("cannot write the journal", &self.dir, e))?;
        tx.commit()
            .map_err(|e| error("cannot write the journal", &self.dir, e))?;
        out.changes = changes as u64;
        out.snapshots = snapshots as u64;
        out.sessions = sessions as u64;
        // What is still referred to: every content of a change, every kept manifest and
        // every content it names.
        let mut live: BTreeSet<String> = BTreeSet::new();
        for recorded in self.changes(&Filter::default())? {
            for entry in [&recorded.change.before, &recorded.change.after]
                .into_iter()
                .flatten()
            {
                live.extend(entry.digest.clone());
            }
        }
        // What a skill session kept before its writes, not settled yet (it runs, or its
        // cordon was killed and the next launch settles it).
        let touched: Vec<Option<String>> = {
            let read = || -> rusqlite::Result<Vec<Option<String>>> {
                let mut stmt = self.conn.prepare("SELECT before FROM touched")?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                rows.collect()
            };
            read().map_err(|e| error("cannot read the journal", &self.dir, e))?
        };
        for before in touched.into_iter().flatten() {
            if let Ok(entry) = serde_json::from_str::<Entry>(&before) {
                live.extend(entry.digest);
            }
        }
        let manifests: Vec<String> = {
            let read = || -> rusqlite::Result<Vec<String>> {
                let mut stmt = self
                    .conn
                    .prepare("SELECT DISTINCT manifest FROM snapshots")?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                rows.collect()
            };
            read().map_err(|e| error("cannot read the journal", &self.dir, e))?
        };
        for digest in manifests {
            // A manifest that cannot be read keeps the whole store: nothing is removed
            // that it might name.
            let bytes = self.blobs.get(&digest)?;
            let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                error(
                    "a kept snapshot cannot be read; nothing was removed from the store",
                    &self.blobs.path(&digest).unwrap_or_default(),
                    e,
                )
            })?;
            live.extend(manifest.entries.into_values().filter_map(|e| e.digest));
            live.insert(digest);
        }
        for digest in self.blobs.list()? {
            if !live.contains(&digest) {
                let size = self.blobs.size(&digest).unwrap_or(0);
                self.blobs.remove(&digest)?;
                out.blobs += 1;
                out.bytes += size;
            }
        }
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        Ok(out)
    }

    /// How much the journal holds.
    ///
    /// # Errors
    ///
    /// When the journal or its store cannot be read.
    pub fn stats(&self) -> io::Result<Stats> {
        let count = |table: &str| -> io::Result<u64> {
            self.conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| error("cannot read the journal", &self.dir, e))
        };
        let mut stats = Stats {
            sessions: count("sessions")?,
            changes: count("changes")?,
            snapshots: count("snapshots")?,
            oldest_ns: self
                .conn
                .query_row("SELECT MIN(time_ns) FROM changes", [], |row| row.get(0))
                .map_err(|e| error("cannot read the journal", &self.dir, e))?,
            ..Stats::default()
        };
        for digest in self.blobs.list()? {
            stats.blobs += 1;
            stats.blob_bytes += self.blobs.size(&digest).unwrap_or(0);
        }
        for name in ["journal.db", "journal.db-wal"] {
            stats.db_bytes += fs_err::metadata(self.dir.join(name)).map_or(0, |m| m.len());
        }
        Ok(stats)
    }
}

fn insert_change(
    tx: &rusqlite::Transaction<'_>,
    session: &str,
    root: &Path,
    time: i64,
    change: &Change,
    undoes: Option<i64>,
) -> rusqlite::Result<i64> {
    let entry = |e: &Option<Entry>| e.as_ref().and_then(|e| serde_json::to_string(e).ok());
    tx.execute(
        "INSERT INTO changes (session, root, time_ns, kind, path, to_path, before, after, undoes, rules)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            session,
            root.to_string_lossy(),
            time,
            change.kind.as_str(),
            change.path,
            change.to,
            entry(&change.before),
            entry(&change.after),
            undoes,
            i64::from(is_rules_file(change.to.as_deref().unwrap_or(&change.path)))
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Whether `path` (in a tree) is an ignore-rules file: found at each start without reading
/// every change ([`Journal::start`]).
fn is_rules_file(path: &str) -> bool {
    path == ".gitignore" || path.ends_with("/.gitignore") || path == ".git/info/exclude"
}

fn libc_nofollow() -> i32 {
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0)
}
