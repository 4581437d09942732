//! The bundles a desktop has activated: the active one, the one before it (last known good),
//! and what was decided about each offer, kept under one directory.
//!
//! Bundles are kept by the SHA-256 of their bytes (`<sha256>.tar.gz`, written once, never
//! changed) and `state.json` names the active and previous one: replacing `state.json` (by
//! rename) is the one step that commits a change, so a crash at any point leaves the old
//! state or the new one, both whole. Every change happens under an exclusive lock on `lock`;
//! readers take no lock and never write. Nothing read back is trusted: the active bundle is
//! verified again each time it is loaded and must have the digest and revision recorded, so a
//! bundle swapped on disk is never run.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2_11::{Digest, Sha256};

use crate::error::{BundleError, Problem, Result};
use crate::manifest::compare_revisions;
use crate::signature::{Signer, Verifier};
use crate::{read_bounded, Bundle, Limits};

const STATE: &str = "state.json";
/// How many activated (revision, digest) pairs are remembered.
const SEEN: usize = 32;
const LOCK: &str = "lock";

/// A bundle that was activated: what it is, where it came from, and why it is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The manifest's revision.
    pub revision: String,
    /// [`Bundle::digest`].
    pub digest: String,
    /// The file in the store holding its bytes (`<sha256 of the bytes>.tar.gz`).
    #[serde(default)]
    pub file: String,
    /// Where it came from: a path or a URL.
    pub source: String,
    /// When it was activated, RFC 3339.
    pub activated_at: String,
    /// Who signed it, if it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// Why it became active: `newer revision`, `canary: joined`, `rollback`, `downgrade
    /// allowed`, `pinned`.
    pub reason: String,
}

/// The last rollout decision for a revision that carried a percentage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// The revision offered.
    pub revision: String,
    /// Its rollout percentage.
    pub percent: f64,
    /// This device's place, from 0 to 100 (a stable hash of its id).
    pub bucket: f64,
    /// Whether the device took it (`bucket < percent`).
    pub joined: bool,
}

/// What the store records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The active bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<Installed>,
    /// The bundle active before it: the last known good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Installed>,
    /// The highest revision ever activated: no revision below it is activated again unless
    /// a downgrade is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest: Option<String>,
    /// Whether the active revision is pinned: newer ones are not taken until unpinned.
    #[serde(default)]
    pub pinned: bool,
    /// The last rollout decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// The (revision, digest) pairs activated lately: the same revision with one of these
    /// digests may be activated again (after a rollback, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<(String, String)>,
    /// The server's ETag for the bundle last fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// When the source was last checked, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// Why the last check or offer failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Checks failed in a row (the poller backs off by it).
    #[serde(default)]
    pub failures: u32,
}

/// What a store accepts: the keys, whether a downgrade is allowed, the device's id (for
/// rollouts) and the size limits.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The keys; any key makes a signature mandatory.
    pub verifier: Verifier,
    /// Whether a revision older than the highest activated may be activated.
    pub allow_downgrade: bool,
    /// This device's id; its hash places it in a rollout.
    pub device: String,
    /// How large a bundle may be.
    pub limits: Limits,
}

/// What became of an offered bundle.
#[derive(Debug, Clone)]
#[must_use]
pub enum Verdict {
    /// It is now active; `from` was active before.
    Activated {
        /// The bundle active before, if any.
        from: Option<Installed>,
        /// The bundle now active.
        to: Installed,
    },
    /// It is the active bundle already.
    Unchanged(Installed),
    /// It is the active bundle with a signature that lasts longer (a later `exp`), which
    /// now replaces the one kept.
    Refreshed(Installed),
    /// It is valid and not taken (yet): a rollout this device is outside of, or a pin.
    Deferred {
        /// Its revision.
        revision: String,
        /// The active bundle.
        active: Option<Installed>,
        /// Why.
        reason: String,
    },
    /// It was refused; the active bundle stays.
    Refused {
        /// Its revision, when it could be read.
        revision: Option<String>,
        /// The active bundle.
        active: Option<Installed>,
        /// Why.
        error: BundleError,
    },
}

/// The active bundle as loaded: the bundle, what the store says of it, and, when the active
/// one could not be used and the previous one was, why.
#[derive(Debug)]
pub struct Loaded {
    /// The bundle, verified.
    pub bundle: Bundle,
    /// What the store says of it.
    pub installed: Installed,
    /// When this is the previous bundle: the active one and why it was refused.
    pub fallback_from: Option<(Installed, BundleError)>,
}

impl Loaded {
    /// The policy the bundle holds. Its modules are not parsed again for the manifest's
    /// roots: the bundle is the one checked when it was activated (same digest, verified).
    ///
    /// # Errors
    ///
    /// As [`Bundle::policy_source`], but for the roots.
    pub fn policy_source(&self, origin: &str) -> Result<cordon_policy::PolicySource> {
        self.bundle.source(origin, false)
    }
}

/// The place of `device` in a rollout, from 0 (inclusive) to 100 (exclusive), with two
/// decimals: the same device always gets the same place.
pub fn bucket(device: &str) -> f64 {
    let digest = Sha256::digest(format!("cordon-rollout\0{device}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 10_000) as f64 / 100.0
}

/// Where activated bundles are kept.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io_error(path: &Path, err: &std::io::Error) -> BundleError {
    BundleError::new(Problem::Unreadable, format!("`{}`: {err}", path.display()))
}

/// Writes `bytes` to `path` through a synced temporary file beside it (`.NAME.tmp.PID`,
/// created exclusively with `mode`, never opened through a link planted at its name) and a
/// rename: a reader sees the old file or the new one, never half of one. A temporary file
/// left by a crash is replaced; one left by a failure is removed.
///
/// # Errors
///
/// The I/O error of writing, syncing or renaming.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let _ = fs_err::remove_file(&temp);
    let written = (|| {
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs_err::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs_err::remove_file(&temp);
    }
    written
}

fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o644).map_err(|err| io_error(path, &err))
}

fn timestamp(now: i64) -> String {
    chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    /// The store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that changes whenever the store does: watchers compare its metadata.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    /// What the store records (empty when nothing was ever activated).
    ///
    /// # Errors
    ///
    /// [`Problem::Unreadable`] when the state file exists and cannot be read or parsed.
    pub fn state(&self) -> Result<State> {
        let path = self.state_path();
        if fs_err::symlink_metadata(&path).is_err() {
            return Ok(State::default());
        }
        // Read without blocking and bounded: a FIFO or a huge file here is an error.
        match read_bounded(&path, 1 << 20).map_err(|err| std::io::Error::other(err.reason)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                BundleError::new(
                    Problem::Unreadable,
                    format!("`{}` is damaged: {err}", path.display()),
                )
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(err) => Err(io_error(&path, &err)),
        }
    }

    fn save(&self, state: &State) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|err| BundleError::new(Problem::Unreadable, err.to_string()))?;
        replace(&self.state_path(), &bytes)
    }

    /// Runs `change` on the state under the store's lock and saves what it returns.
    fn locked<T>(&self, change: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        fs_err::create_dir_all(&self.dir).map_err(|err| io_error(&self.dir, &err))?;
        let lock_path = self.dir.join(LOCK);
        let lock = {
            use fs_err::os::unix::fs::OpenOptionsExt as _;
            fs_err::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&lock_path)
                .map_err(|err| io_error(&lock_path, &err))?
        };
        if !lock.metadata().is_ok_and(|m| m.is_file()) {
            return Err(BundleError::new(
                Problem::Unreadable,
                format!("`{}` is not a regular file", lock_path.display()),
            ));
        }
        lock.file()
            .lock()
            .map_err(|err| io_error(&lock_path, &err))?;
        let mut state = self.state()?;
        let result = change(&mut state)?;
        // The commit; then the bundles the state no longer names go, still under the lock
        // (a writer keeps its new file before it commits).
        self.save(&state)?;
        self.collect(&state);
        Ok(result)
    }

    /// Records a check of the source: its ETag when it answered, the error when it did not.
    ///
    /// # Errors
    ///
    /// When the state cannot be written.
    pub fn record_check(
        &self,
        etag: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> Result<u32> {
        self.locked(|state| {
            state.last_check = Some(timestamp(now));
            if let Some(etag) = etag {
                state.etag = Some(etag);
            }
            if error.is_some() {
                state.failures = state.failures.saturating_add(1);
            } else {
                state.failures = 0;
            }
            state.last_error = error;
            Ok(state.failures)
        })
    }

    /// Keeps `bytes` in the store under the SHA-256 of the bytes and returns the file's name.
    fn keep(&self, bytes: &[u8]) -> Result<String> {
        let name = format!("{}.tar.gz", cordon_types::hex(&Sha256::digest(bytes)));
        let path = self.dir.join(&name);
        // Only a regular file is compared (never a FIFO or a link planted at the name);
        // anything else at the name is replaced.
        let present = fs_err::symlink_metadata(&path).is_ok_and(|meta| meta.is_file())
            && read_bounded(&path, bytes.len() as u64).is_ok_and(|existing| existing == bytes);
        if !present {
            if fs_err::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
                let _ = fs_err::remove_dir_all(&path);
            } else {
                let _ = fs_err::remove_file(&path);
            }
            replace(&path, bytes)?;
        }
        Ok(name)
    }

    /// Removes every kept bundle that `state` no longer names.
    fn collect(&self, state: &State) {
        let keep: Vec<&str> = [&state.active, &state.previous]
            .into_iter()
            .flatten()
            .map(|i| i.file.as_str())
            .collect();
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Bundles no longer named, and temporary files a writer that died left (every
            // writer works under the lock held now).
            let stale = (name.ends_with(".tar.gz") && !keep.contains(&name.as_str()))
                || name.contains(".tmp.");
            if stale {
                let _ = fs_err::remove_file(entry.path());
            }
        }
    }

    /// Offers the bundle `bytes` from `source`: read, verified, checked by `check` (that its
    /// policy loads), ordered against what was activated before, placed in its rollout, and
    /// activated when all agree. `pin` activates it pinned (and lets it replace a pinned one).
    ///
    /// # Errors
    ///
    /// Only when the store itself cannot be read or written; a refused bundle is a
    /// [`Verdict::Refused`].
    pub fn offer(
        &self,
        bytes: &[u8],
        source: &str,
        trust: &Trust,
        check: &dyn Fn(&Bundle) -> Result<()>,
        pin: bool,
        now: i64,
    ) -> Result<Verdict> {
        self.locked(|state| self.decide_offer(state, bytes, source, trust, check, pin, now))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the steps of one offer, in one place"
    )]
    fn decide_offer(
        &self,
        state: &mut State,
        bytes: &[u8],
        source: &str,
        trust: &Trust,
        check: &dyn Fn(&Bundle) -> Result<()>,
        pin: bool,
        now: i64,
    ) -> Result<Verdict> {
        let active = state.active.clone();
        let refused = |state: &mut State, revision: Option<String>, error: BundleError| {
            state.last_error = Some(error.to_string());
            Ok(Verdict::Refused {
                revision,
                active: active.clone(),
                error,
            })
        };
        let bundle = match Bundle::from_bytes(bytes, &trust.limits) {
            Ok(bundle) => bundle,
            Err(err) => return refused(state, None, err),
        };
        let revision = bundle.revision().to_owned();
        let signer = match bundle.verify(&trust.verifier, now).and_then(|signer| {
            check(&bundle)?;
            Ok(signer)
        }) {
            Ok(signer) => signer,
            Err(err) => return refused(state, Some(revision), err),
        };
        let digest = bundle.digest();
        if let Some(current) = state.active.clone().filter(|a| a.digest == digest) {
            if pin {
                state.pinned = true;
            }
            state.last_error = None;
            // The same policy. Its kept signature is replaced only by one that lasts longer
            // (a replayed older copy must not shorten it), or when the kept file is damaged.
            // The kept signature is the one its file verifies with now, not what the
            // state file says.
            let kept = self
                .read_checked(&current, trust, now)
                .map(|(_, kept)| kept);
            let fresher = match (&signer, &kept) {
                (Some(new), Ok(Some(kept))) => new.fresher_than(kept),
                _ => false,
            };
            if kept.is_ok() && !fresher {
                return Ok(Verdict::Unchanged(current));
            }
            let refreshed = Installed {
                file: self.keep(bytes)?,
                signer,
                ..current
            };
            state.active = Some(refreshed.clone());
            return Ok(Verdict::Refreshed(refreshed));
        }
        let known = state
            .seen
            .iter()
            .any(|(r, d)| *r == revision && *d == digest);
        let mut reason = "newer revision".to_owned();
        if let Some(highest) = state.highest.clone() {
            match compare_revisions(&revision, &highest) {
                std::cmp::Ordering::Less if !trust.allow_downgrade => {
                    let err = BundleError::new(
                        Problem::Rollback,
                        format!(
                            "revision `{revision}` is older than `{highest}`, already \
                             activated; a bundle never goes back unless a downgrade is allowed \
                             (`--allow-downgrade`)"
                        ),
                    );
                    return refused(state, Some(revision), err);
                }
                std::cmp::Ordering::Less => reason = "downgrade allowed".into(),
                std::cmp::Ordering::Equal if known => reason = "activated again".into(),
                std::cmp::Ordering::Equal if !trust.allow_downgrade => {
                    let err = BundleError::new(
                        Problem::Rollback,
                        format!(
                            "revision `{revision}` was already activated with other content; \
                             a changed policy needs a new revision"
                        ),
                    );
                    return refused(state, Some(revision), err);
                }
                std::cmp::Ordering::Equal => reason = "downgrade allowed".into(),
                std::cmp::Ordering::Greater => {}
            }
        }
        if state.pinned && !pin {
            state.last_error = None;
            return Ok(Verdict::Deferred {
                revision,
                active,
                reason: "the active revision is pinned (`cordon policy unpin`)".into(),
            });
        }
        if let Some(percent) = bundle.manifest().rollout().ok().flatten() {
            let place = bucket(&trust.device);
            let joined = place < percent;
            state.canary = Some(Canary {
                revision: revision.clone(),
                percent,
                bucket: place,
                joined,
            });
            if state.active.is_none() {
                // A rollout paces updates; a device with no policy at all takes it.
                reason = format!("first bundle ({percent}% rollout, this device at {place:.2})");
            } else if !joined && !pin {
                state.last_error = None;
                return Ok(Verdict::Deferred {
                    revision,
                    active,
                    reason: format!(
                        "rolled out to {percent}% of devices; this one is at {place:.2}"
                    ),
                });
            } else {
                reason = format!("canary: joined ({percent}% rollout, this device at {place:.2})");
            }
        }
        if pin {
            reason = format!("pinned ({reason})");
        }
        let file = self.keep(bytes)?;
        let to = Installed {
            revision: revision.clone(),
            digest: digest.clone(),
            file,
            source: source.to_owned(),
            activated_at: timestamp(now),
            signer,
            reason,
        };
        // The active bundle becomes the previous one, unless its file is damaged: then the
        // previous one stays the last known good.
        let active_intact = state
            .active
            .as_ref()
            .is_some_and(|a| self.read_checked(a, trust, now).is_ok());
        let replaced = state.active.take();
        if active_intact || state.previous.is_none() {
            state.previous = replaced.clone();
        }
        state.active = Some(to.clone());
        state.pinned = pin;
        state.last_error = None;
        // One content per revision is known: the one activated last.
        state.seen.retain(|(r, _)| *r != revision);
        state.seen.push((revision.clone(), digest));
        if state.seen.len() > SEEN {
            state.seen.remove(0);
        }
        if state
            .highest
            .as_ref()
            .is_none_or(|h| compare_revisions(&revision, h).is_gt())
        {
            state.highest = Some(revision);
        }
        Ok(Verdict::Activated { from: replaced, to })
    }

    /// Makes the previous bundle active again (it must still verify and load), keeping the
    /// highest revision seen: a newer bundle is taken again when it is offered. Only the
    /// state changes; both bundles stay kept.
    ///
    /// # Errors
    ///
    /// [`Problem::Missing`] when there is no previous bundle, else as loading it.
    pub fn rollback(
        &self,
        trust: &Trust,
        check: &dyn Fn(&Bundle) -> Result<()>,
        now: i64,
    ) -> Result<Verdict> {
        self.locked(|state| {
            let Some(previous) = state.previous.clone() else {
                return Err(BundleError::new(
                    Problem::Missing,
                    "there is no previous bundle to roll back to",
                ));
            };
            let (bundle, _) = self.read_checked(&previous, trust, now)?;
            check(&bundle)?;
            let from = state.active.take();
            let mut to = previous;
            to.activated_at = timestamp(now);
            to.reason = "rollback".into();
            state.active = Some(to.clone());
            state.previous = from.clone();
            // One content per revision is known: the one active now.
            state.seen.retain(|(r, _)| *r != to.revision);
            state.seen.push((to.revision.clone(), to.digest.clone()));
            // The next check fetches whatever the source serves, even unchanged.
            state.etag = None;
            Ok(Verdict::Activated { from, to })
        })
    }

    /// Clears the pin (and the ETag, so that the next check reads the source whole).
    ///
    /// # Errors
    ///
    /// When the state cannot be written.
    pub fn unpin(&self) -> Result<bool> {
        self.locked(|state| {
            state.etag = None;
            Ok(std::mem::replace(&mut state.pinned, false))
        })
    }

    /// Forgets the ETag: a bundle that was fetched and not taken (deferred) is read again.
    ///
    /// # Errors
    ///
    /// When the state cannot be written.
    pub fn forget_etag(&self) -> Result<()> {
        self.locked(|state| {
            state.etag = None;
            Ok(())
        })
    }

    /// The kept bundle `installed` names, verified: the bundle and who signed it.
    fn read_checked(
        &self,
        installed: &Installed,
        trust: &Trust,
        now: i64,
    ) -> Result<(Bundle, Option<Signer>)> {
        // The state names a file of the store, by its digest: nothing else.
        let named = installed.file.strip_suffix(".tar.gz").is_some_and(|stem| {
            stem.len() == 64 && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !named {
            return Err(BundleError::new(
                Problem::Tampered,
                format!(
                    "the store's state names `{}` for revision {}, not a bundle of the store",
                    installed.file, installed.revision
                ),
            ));
        }
        let path = self.dir.join(&installed.file);
        if fs_err::symlink_metadata(&path).is_ok_and(|meta| !meta.is_file()) {
            return Err(BundleError::new(
                Problem::Tampered,
                format!("`{}` is not a regular file", path.display()),
            ));
        }
        let bundle = Bundle::read(&path, &trust.limits)?;
        if bundle.digest() != installed.digest || bundle.revision() != installed.revision {
            return Err(BundleError::new(
                Problem::Tampered,
                format!(
                    "`{}` is not the bundle that was activated (revision {}): it changed on disk",
                    path.display(),
                    installed.revision
                ),
            ));
        }
        let signer = bundle.verify(&trust.verifier, now)?;
        Ok((bundle, signer))
    }

    /// The active bundle, verified again with `trust`; `None` when nothing was activated.
    /// When the active bundle's file is damaged or missing (not when its signature fails,
    /// which a stale key or an expired token would cause), the previous one is used in its
    /// place, for this reader only: readers never write.
    ///
    /// # Errors
    ///
    /// When neither can be used: the active bundle's error.
    pub fn load(&self, trust: &Trust, now: i64) -> Result<Option<Loaded>> {
        // A writer may commit between reading the state and reading the file it names, and
        // collect that file: read the state again then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let state = self.state()?;
            let Some(active) = state.active.clone() else {
                return Ok(None);
            };
            let err = match self.read_checked(&active, trust, now) {
                Ok((bundle, _)) => {
                    return Ok(Some(Loaded {
                        bundle,
                        installed: active,
                        fallback_from: None,
                    }))
                }
                Err(err) => err,
            };
            if attempt < 3 && self.state().is_ok_and(|again| again != state) {
                continue;
            }
            let damaged = matches!(
                err.problem,
                Problem::Unreadable | Problem::NotABundle | Problem::Tampered | Problem::TooLarge
            );
            if damaged {
                if let Some(previous) = state.previous {
                    if let Ok((bundle, _)) = self.read_checked(&previous, trust, now) {
                        return Ok(Some(Loaded {
                            bundle,
                            installed: previous,
                            fallback_from: Some((active, err)),
                        }));
                    }
                }
            }
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("laptop-42"), bucket("laptop-42"));
        let joined = (0..1000)
            .filter(|i| bucket(&format!("device-{i}")) < 25.0)
            .count();
        assert!((200..300).contains(&joined), "{joined}");
    }
}
