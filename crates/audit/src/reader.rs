//! Reading the store: queries, statistics and verification.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use rusqlite::{params_from_iter, Connection};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::keys::key_path_for;
use crate::record::{hex, Record, GENESIS};
use crate::store::{checkpoint_message, open_reader};
use crate::{Result, StoreError};

/// The two fields of a record the chain check needs; decoded without copying the rest.
#[derive(serde::Deserialize)]
struct ChainFields<'a> {
    seq: u64,
    #[serde(borrow)]
    prev_hash: &'a str,
    #[serde(borrow)]
    time: &'a str,
    #[serde(borrow)]
    capability: &'a str,
    allow: bool,
}

/// Which records a query returns; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Records at or after this time (RFC 3339, compared as cordon writes it: UTC, `Z`).
    pub since: Option<String>,
    /// Records of this capability.
    pub capability: Option<String>,
    /// Allowed (`true`) or denied (`false`) records.
    pub allow: Option<bool>,
    /// Records after this sequence number.
    pub after_seq: Option<u64>,
    /// Records of this session (`input.context.session`).
    pub session: Option<String>,
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first sequence number that is wrong.
    pub seq: u64,
    /// `missing`, `edited`, `reordered`, `chain`, `truncated`, `signature` or `checkpoint`.
    pub kind: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// Checkpoints whose signature was checked.
    pub checkpoints: u64,
    /// The last record's sequence number and hash.
    pub head: Option<(u64, String)>,
    /// The hex public key signatures were checked against, and where it came from.
    pub key: Option<(String, String)>,
    /// The first problem; `None` when the log is intact.
    pub problem: Option<Problem>,
}

/// Counts over the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Records in all.
    pub records: u64,
    /// Records allowed.
    pub allowed: u64,
    /// Records denied.
    pub denied: u64,
    /// `capability → (allowed, denied)`.
    pub by_capability: BTreeMap<String, (u64, u64)>,
    /// Time of the first record.
    pub first: Option<String>,
    /// Time of the last record.
    pub last: Option<String>,
    /// Signed checkpoints.
    pub checkpoints: u64,
}

/// A read-only view of an audit database.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    /// Opens the database at `path` read-only.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] when it does not exist or cannot be opened,
    /// [`StoreError::NewerSchema`] when a newer cordon wrote it.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some("no such file".into()),
                ),
            });
        }
        Ok(Self {
            conn: open_reader(path)?,
            path: path.to_path_buf(),
        })
    }

    fn sql(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    /// Calls `visit` with every record matching `filter`, in sequence order; stops early
    /// when `visit` returns `false`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the query fails or a record cannot be decoded.
    pub fn scan(&self, filter: &Filter, mut visit: impl FnMut(Record) -> bool) -> Result<()> {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(since) = &filter.since {
            clauses.push("time >= ?");
            args.push(since.clone().into());
        }
        if let Some(capability) = &filter.capability {
            clauses.push("capability = ?");
            args.push(capability.clone().into());
        }
        if let Some(allow) = filter.allow {
            clauses.push("allow = ?");
            args.push(i64::from(allow).into());
        }
        if let Some(after) = filter.after_seq {
            clauses.push("seq > ?");
            args.push((after as i64).into());
        }
        if let Some(session) = &filter.session {
            clauses.push("json_extract(record, '$.input.context.session') = ?");
            args.push(session.clone().into());
        }
        let condition = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT seq, record FROM events{condition} ORDER BY seq"
            ))
            .map_err(self.sql("query records"))?;
        let mut rows = stmt
            .query(params_from_iter(args))
            .map_err(self.sql("query records"))?;
        while let Some(row) = rows.next().map_err(self.sql("read records"))? {
            let seq: i64 = row.get(0).map_err(self.sql("read records"))?;
            let text: String = row.get(1).map_err(self.sql("read records"))?;
            let record: Record =
                serde_json::from_str(&text).map_err(|source| StoreError::Decode {
                    seq: seq as u64,
                    source,
                })?;
            if !visit(record) {
                break;
            }
        }
        Ok(())
    }

    /// The last `n` records, oldest first.
    ///
    /// # Errors
    ///
    /// As [`Reader::scan`].
    pub fn tail(&self, n: u64) -> Result<Vec<Record>> {
        let last: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get(0)
            })
            .map_err(self.sql("read the last record"))?;
        let mut out = Vec::new();
        let after = (last as u64).saturating_sub(n);
        self.scan(
            &Filter {
                after_seq: Some(after),
                ..Filter::default()
            },
            |r| {
                out.push(r);
                true
            },
        )?;
        Ok(out)
    }

    /// Counts records by capability and decision.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when a query fails.
    pub fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        let mut stmt = self
            .conn
            .prepare("SELECT capability, allow, COUNT(*) FROM events GROUP BY capability, allow")
            .map_err(self.sql("count records"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.sql("count records"))?;
        for row in rows {
            let (capability, allow, count) = row.map_err(self.sql("count records"))?;
            let entry = stats.by_capability.entry(capability).or_default();
            if allow {
                entry.0 += count as u64;
                stats.allowed += count as u64;
            } else {
                entry.1 += count as u64;
                stats.denied += count as u64;
            }
        }
        stats.records = stats.allowed + stats.denied;
        let (first, last) = self
            .conn
            .query_row("SELECT MIN(time), MAX(time) FROM events", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(self.sql("read times"))?;
        stats.first = first;
        stats.last = last;
        stats.checkpoints = self
            .conn
            .query_row("SELECT COUNT(*) FROM checkpoints", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(self.sql("count checkpoints"))? as u64;
        Ok(stats)
    }

    /// Checks the hash chain and every checkpoint signature; reports the first problem.
    ///
    /// Signatures are checked against `trusted_key` (32 bytes) when given, else against the
    /// device key beside the database (`<db>.key`), else against the key stored in the
    /// checkpoints themselves, which only shows the log is self-consistent.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot be read at all; a damaged log is not an
    /// error but a report with a [`Problem`].
    pub fn verify(&self, trusted_key: Option<[u8; 32]>) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            records: 0,
            checkpoints: 0,
            head: None,
            key: None,
            problem: None,
        };
        let mut hashes: Vec<String> = Vec::new();
        let mut expected_prev = GENESIS.to_owned();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT seq, record, hash, time, capability, allow FROM events ORDER BY seq",
                )
                .map_err(self.sql("read records"))?;
            let mut rows = stmt.query([]).map_err(self.sql("read records"))?;
            while let Some(row) = rows.next().map_err(self.sql("read records"))? {
                let seq = row.get::<_, i64>(0).map_err(self.sql("read records"))? as u64;
                let text: String = row.get(1).map_err(self.sql("read records"))?;
                let stored_hash: String = row.get(2).map_err(self.sql("read records"))?;
                // The columns queries filter on are copies: each must say what the hashed
                // record says, or a flipped `allow` would hide a denial from `query`.
                let columns: (String, String, bool) = (
                    row.get(3).map_err(self.sql("read records"))?,
                    row.get(4).map_err(self.sql("read records"))?,
                    row.get(5).map_err(self.sql("read records"))?,
                );
                let expected_seq = report.records + 1;
                let problem = |kind, message: String| {
                    Some(Problem {
                        seq: expected_seq,
                        kind,
                        message,
                    })
                };
                report.problem = if seq != expected_seq {
                    problem(
                        "missing",
                        format!("record {expected_seq} is missing (the next record is {seq})"),
                    )
                } else {
                    match serde_json::from_str::<ChainFields<'_>>(&text) {
                        Err(e) => problem("edited", format!("record {seq} cannot be decoded ({e}): it was edited")),
                        Ok(record) if record.seq != seq => problem(
                            "reordered",
                            format!("record {seq} holds the content of record {}: records were reordered", record.seq),
                        ),
                        Ok(record) if record.prev_hash != expected_prev => problem(
                            "chain",
                            format!("record {seq} does not chain to record {}: a record was removed, reordered or rewritten", seq - 1),
                        ),
                        Ok(record) => {
                            let hash = hex(&Sha256::digest(text.as_bytes()));
                            if hash != stored_hash {
                                problem("edited", format!("record {seq} does not match its hash: it was edited"))
                            } else if (record.time, record.capability, record.allow)
                                != (columns.0.as_str(), columns.1.as_str(), columns.2)
                            {
                                problem(
                                    "index",
                                    format!("record {seq}'s time, capability or allow column disagrees with the record: the column was edited"),
                                )
                            } else {
                                expected_prev = hash;
                                None
                            }
                        }
                    }
                };
                if report.problem.is_some() {
                    break;
                }
                hashes.push(stored_hash);
                report.records += 1;
            }
        }
        report.head = hashes.last().map(|h| (report.records, h.clone()));
        // Records before the first broken one are trusted as far as the chain goes; a
        // checkpoint among them that disagrees shows an earlier, cleverer edit.
        let chain_problem = report.problem.take();
        let intact = hashes.len() as u64;

        let device_key = key_path_for(&self.path);
        let mut key: Option<VerifyingKey> = match trusted_key {
            Some(bytes) => {
                report.key = Some((hex(&bytes), "given".into()));
                VerifyingKey::from_bytes(&bytes).ok()
            }
            None => match fs_err::read(&device_key)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            {
                Some(secret) => {
                    let verifying = ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key();
                    report.key = Some((
                        hex(verifying.as_bytes()),
                        format!("device key `{}`", device_key.display()),
                    ));
                    Some(verifying)
                }
                None => None,
            },
        };
        let mut stmt = self
            .conn
            .prepare("SELECT seq, head_hash, signature, public_key FROM checkpoints ORDER BY seq")
            .map_err(self.sql("read checkpoints"))?;
        let mut rows = stmt.query([]).map_err(self.sql("read checkpoints"))?;
        while let Some(row) = rows.next().map_err(self.sql("read checkpoints"))? {
            let seq = row.get::<_, i64>(0).map_err(self.sql("read checkpoints"))? as u64;
            let head_hash: String = row.get(1).map_err(self.sql("read checkpoints"))?;
            let signature: Vec<u8> = row.get(2).map_err(self.sql("read checkpoints"))?;
            let public_key: Vec<u8> = row.get(3).map_err(self.sql("read checkpoints"))?;
            if key.is_none() {
                key = <[u8; 32]>::try_from(public_key.as_slice())
                    .ok()
                    .and_then(|b| VerifyingKey::from_bytes(&b).ok());
                report.key = key.map(|k| {
                    (
                        hex(k.as_bytes()),
                        "the log's own checkpoints (no trusted key)".into(),
                    )
                });
            }
            let valid = match (&key, <[u8; 64]>::try_from(signature.as_slice())) {
                (Some(key), Ok(bytes)) => key
                    .verify_strict(
                        &checkpoint_message(seq, &head_hash),
                        &Signature::from_bytes(&bytes),
                    )
                    .is_ok(),
                _ => false,
            };
            if chain_problem.as_ref().is_some_and(|p| seq >= p.seq) {
                break;
            }
            let problem = |kind, message| Some(Problem { seq, kind, message });
            report.problem = if !valid {
                problem(
                    "signature",
                    format!("checkpoint at record {seq} has a bad signature"),
                )
            } else if seq > intact {
                problem(
                    "truncated",
                    format!("checkpoint at record {seq} covers records that are gone: the log ends at record {intact}"),
                )
            } else if hashes.get(seq as usize - 1) != Some(&head_hash) {
                problem("checkpoint", format!("record {seq} differs from what its checkpoint signed: the log was rewritten up to here"))
            } else {
                None
            };
            if report.problem.is_some() {
                return Ok(report);
            }
            report.checkpoints += 1;
        }
        report.problem = chain_problem;
        Ok(report)
    }
}
