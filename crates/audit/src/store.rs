//! The SQLite store: a writer thread that commits events in groups, and readers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cordon_types::{error_chain, AuditError, AuditEvent, AuditSink};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use ed25519_dalek::{Signer, SigningKey};
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::keys::{key_path_for, load_or_create};
use crate::record::{random_prefix, Record, GENESIS};
use crate::{Result, StoreError};

/// The newest schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    time       TEXT    NOT NULL,
    capability TEXT    NOT NULL,
    allow      INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_capability ON events (capability, allow);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq        INTEGER PRIMARY KEY,
    head_hash  TEXT    NOT NULL,
    signature  BLOB    NOT NULL,
    public_key BLOB    NOT NULL,
    time       TEXT    NOT NULL
);
";

/// How the store batches and bounds its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Events that may wait for the writer; beyond that `append` refuses.
    pub queue_capacity: usize,
    /// Most events committed in one transaction (one fsync).
    pub max_batch: usize,
    /// How long `append` waits for the commit before refusing.
    pub confirm_timeout: Duration,
    /// A signed checkpoint is written at the first commit this long after the previous one.
    pub checkpoint_interval: Duration,
    /// ... or after this many events, whichever comes first.
    pub checkpoint_events: u64,
    /// How long a write waits for another process's lock on the database.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 16_384,
            max_batch: 4_096,
            confirm_timeout: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_events: 10_000,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The message signed by a checkpoint.
pub fn checkpoint_message(seq: u64, head_hash: &str) -> Vec<u8> {
    format!("cordon-audit-checkpoint\n{seq}\n{head_hash}\n").into_bytes()
}

struct Job {
    event: AuditEvent,
    /// Write a checkpoint with this event (the last of a command).
    checkpoint: bool,
    /// Who waits for the commit; `None` for a deferred event, which nobody waits for.
    ack: Option<Sender<Result<u64, String>>>,
}

/// How long a deferred event waits for a durable one to share its commit.
const DEFERRED_WAIT: Duration = Duration::from_millis(50);

/// The tamper-evident audit log.
///
/// `append` hands the event to a writer thread and waits until the transaction holding it
/// is committed with `synchronous = FULL` (fsync in WAL mode): an acknowledged event
/// survives a crash. Events arriving while a commit is in progress are committed together
/// in the next one (group commit), so throughput grows with concurrency while each caller
/// still waits for its own durability. Every record is hash-chained to the one before;
/// checkpoints sign `(seq, head hash)` with the device key.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    options: StoreOptions,
    jobs: Option<Sender<Job>>,
    /// Jobs sent and not yet taken by the writer (at most `queue_capacity`).
    queued: Arc<AtomicUsize>,
    writer: Option<JoinHandle<()>>,
}

fn sql<'a>(path: &'a Path, operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sql {
        path: path.to_path_buf(),
        operation,
        source,
    }
}

/// Opens `path` for writing, creating the database and its schema when needed.
fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The log holds what agents asked for and the commands people ran: for its owner
        // only (the write-ahead log and shared-memory files take the database's mode).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Key {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StoreError::Key {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(busy_timeout)
        .map_err(sql(path, "set busy timeout"))?;
    let version = check_schema(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql(path, "enable WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql(path, "set synchronous"))?;
    // Each cordon command opens the log; copying the WAL back into the database at every
    // close would cost several syncs per command. The WAL is checkpointed once it passes
    // 128 pages instead: small enough that the next opener reads it back quickly.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(sql(path, "keep the WAL at close"))?;
    conn.pragma_update(None, "wal_autocheckpoint", 128)
        .map_err(sql(path, "set the WAL size"))?;
    // A log that cannot take a write (read-only, immutable, locked) is refused now, not at
    // the first decision. An empty write transaction writes nothing and syncs nothing.
    // (SQLite opens a file it may not write read-only without saying so.)
    let read_only = conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(sql(path, "check that the database is writable"))?;
    if read_only {
        return Err(sql(path, "check that the database is writable")(
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                Some("attempt to write a readonly database".into()),
            ),
        ));
    }
    conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
        .map_err(sql(path, "check that the database is writable"))?;
    if version < SCHEMA_VERSION {
        conn.execute_batch(SCHEMA)
            .map_err(sql(path, "create schema"))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql(path, "set schema version"))?;
    }
    Ok(conn)
}

/// Opens `path` read-only.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql(path, "set busy timeout"))?;
    check_schema(&conn, path)?;
    Ok(conn)
}

fn check_schema(conn: &Connection, path: &Path) -> Result<i64> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql(path, "read schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

struct Head {
    seq: u64,
    hash: String,
}

fn read_head(conn: &Connection, path: &Path) -> Result<Head> {
    let head = conn
        .query_row(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |row| {
                Ok(Head {
                    seq: row.get::<_, i64>(0)? as u64,
                    hash: row.get(1)?,
                })
            },
        )
        .optional()
        .map_err(sql(path, "read the last record"))?;
    Ok(head.unwrap_or(Head {
        seq: 0,
        hash: GENESIS.to_owned(),
    }))
}

impl Store {
    /// Opens (or creates) the store at `path`, with its signing key at `<path>.key`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] naming the database or key file: unreadable, read-only, locked, or
    /// written by a newer cordon.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self> {
        let conn = open_writer(path, options.busy_timeout)?;
        let key = load_or_create(&key_path_for(path))?;
        let head = read_head(&conn, path)?;
        // Unbounded, with the bound kept by a count: a bounded channel of this capacity
        // allocates and initialises every slot up front (megabytes, at every start).
        let (jobs, queue) = unbounded::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer_queued = Arc::clone(&queued);
        let writer_path = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("cordon-audit".into())
            .spawn(move || {
                Writer {
                    conn,
                    key,
                    head,
                    path: writer_path,
                    options,
                    last_checkpoint: (Instant::now(), 0),
                    id_prefix: random_prefix(),
                }
                .run(queue, &writer_queued)
            })
            .map_err(|source| StoreError::Key {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            options,
            jobs: Some(jobs),
            queued,
            writer: Some(writer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` and returns its sequence number once it is durably committed.
    ///
    /// # Errors
    ///
    /// [`StoreError::QueueFull`], [`StoreError::Timeout`], [`StoreError::Commit`] or
    /// [`StoreError::WriterGone`]: the event is not stored and the action must be refused.
    pub fn append(&self, event: &AuditEvent) -> Result<u64> {
        self.submit(event, false)
    }

    /// As [`Store::append`], with a signed checkpoint in the same commit: for the last event
    /// a command writes, so that closing the store has nothing left to sign.
    ///
    /// # Errors
    ///
    /// As [`Store::append`].
    pub fn append_with_checkpoint(&self, event: &AuditEvent) -> Result<u64> {
        self.submit(event, true)
    }

    /// Appends `event` without waiting for it to be durable: it is committed with the next
    /// event that is waited for, or alone 50 ms later. For a record of what was
    /// already done (a result delivered), never for a decision: a crash in that time loses it.
    ///
    /// # Errors
    ///
    /// [`StoreError::QueueFull`] or [`StoreError::WriterGone`]: the event is not queued.
    pub fn append_deferred(&self, event: &AuditEvent) -> Result<()> {
        self.enqueue(event, false, None)
    }

    fn enqueue(
        &self,
        event: &AuditEvent,
        checkpoint: bool,
        ack: Option<Sender<Result<u64, String>>>,
    ) -> Result<()> {
        let jobs = self.jobs.as_ref().ok_or(StoreError::WriterGone)?;
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.options.queue_capacity {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::QueueFull {
                capacity: self.options.queue_capacity,
            });
        }
        match jobs.try_send(Job {
            event: event.clone(),
            checkpoint,
            ack,
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(StoreError::WriterGone)
            }
        }
    }

    fn submit(&self, event: &AuditEvent, checkpoint: bool) -> Result<u64> {
        let (ack, confirmed) = bounded(1);
        self.enqueue(event, checkpoint, Some(ack))?;
        match confirmed.recv_timeout(self.options.confirm_timeout) {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(why)) => Err(StoreError::Commit(why)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(StoreError::Timeout(self.options.confirm_timeout))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(StoreError::WriterGone),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued, write a last checkpoint
        // and stop.
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl AuditSink for Store {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.sink_result(self.append(event))
    }

    fn record_last(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.sink_result(self.append_with_checkpoint(event))
    }

    fn record_deferred(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.sink_result(self.append_deferred(event).map(|()| 0))
    }
}

impl Store {
    fn sink_result(&self, appended: Result<u64>) -> Result<(), AuditError> {
        appended.map(|_| ()).map_err(|err| AuditError::Write {
            target: self.path.display().to_string(),
            source: std::io::Error::other(error_chain(&err)),
        })
    }
}

struct Writer {
    conn: Connection,
    key: SigningKey,
    head: Head,
    path: PathBuf,
    options: StoreOptions,
    /// When the last checkpoint was written, and the sequence it covered.
    last_checkpoint: (Instant, u64),
    /// The random part of this session's record ids.
    id_prefix: String,
}

impl Writer {
    fn run(mut self, queue: Receiver<Job>, queued: &AtomicUsize) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            // Deferred events alone: they wait a little for one that is waited for.
            if batch[0].ack.is_none() {
                let until = Instant::now() + DEFERRED_WAIT;
                while batch.len() < self.options.max_batch {
                    match queue.recv_deadline(until) {
                        Ok(job) => {
                            let durable = job.ack.is_some();
                            batch.push(job);
                            if durable {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            while batch.len() < self.options.max_batch {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            queued.fetch_sub(batch.len(), Ordering::SeqCst);
            let events: Vec<&AuditEvent> = batch.iter().map(|j| &j.event).collect();
            let checkpoint = batch.iter().any(|j| j.checkpoint);
            match self.commit(&events, checkpoint) {
                Ok(first_seq) => {
                    for (i, job) in batch.iter().enumerate() {
                        if let Some(ack) = &job.ack {
                            let _ = ack.send(Ok(first_seq + i as u64));
                        }
                    }
                }
                Err(err) => {
                    let why = error_chain(&err);
                    tracing::error!("audit commit failed: {why}");
                    for job in &batch {
                        if let Some(ack) = &job.ack {
                            let _ = ack.send(Err(why.clone()));
                        }
                    }
                }
            }
        }
        if self.head.seq > self.last_checkpoint.1 {
            if let Err(err) = self.commit(&[], true) {
                tracing::error!("final audit checkpoint failed: {}", error_chain(&err));
            }
        }
    }

    /// Writes `events` (and a checkpoint when due or `force_checkpoint`) in one transaction;
    /// returns the sequence number of the first event. The in-memory head moves only when
    /// the commit succeeded.
    fn commit(&mut self, events: &[&AuditEvent], force_checkpoint: bool) -> Result<u64> {
        let path = self.path.clone();
        // Other cordon processes (a proxy, another sandbox) append to the same log: the write
        // lock is taken first, and the chain continues from the head as it is now.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin transaction"))?;
        self.head = read_head(&tx, &path)?;
        let first = self.head.seq + 1;
        let mut seq = self.head.seq;
        let mut hash = self.head.hash.clone();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events (seq, time, capability, allow, record, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .map_err(sql(&path, "prepare insert"))?;
            for event in events {
                seq += 1;
                let record = Record::new(event, seq, format!("{}-{seq}", self.id_prefix), hash);
                let bytes = record.canonical();
                hash = crate::record::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                let text = String::from_utf8(bytes).unwrap_or_default();
                insert
                    .execute(params![
                        seq as i64,
                        record.time,
                        record.capability,
                        record.allow,
                        text,
                        hash
                    ])
                    .map_err(sql(&path, "insert record"))?;
            }
        }
        let due = force_checkpoint
            || seq - self.last_checkpoint.1 >= self.options.checkpoint_events
            || self.last_checkpoint.0.elapsed() >= self.options.checkpoint_interval;
        let checkpointed = due && seq > 0 && seq > self.last_checkpoint.1;
        if checkpointed {
            let signature = self.key.sign(&checkpoint_message(seq, &hash));
            tx.execute(
                "INSERT OR REPLACE INTO checkpoints (seq, head_hash, signature, public_key, time) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    seq as i64,
                    hash,
                    signature.to_bytes().to_vec(),
                    self.key.verifying_key().to_bytes().to_vec(),
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ],
            )
            .map_err(sql(&path, "insert checkpoint"))?;
        }
        tx.commit().map_err(sql(&path, "commit"))?;
        self.head = Head { seq, hash };
        if checkpointed {
            self.last_checkpoint = (Instant::now(), seq);
        }
        Ok(first)
    }
}
