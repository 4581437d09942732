//! Policy bundles on a desktop: which one is active, offering a new one (a file, or what a
//! URL serves), rolling back, and the audit record of every activation, refusal, deferral
//! and rollback with both revisions.
//!
//! The store (`$XDG_DATA_HOME/cordon/bundles`) keeps the active bundle and the one before it;
//! a bundle is verified with the configured key and its policy loaded before it becomes
//! active, and verified again every time it is loaded. When the active bundle no longer
//! verifies, the previous one (the last known good) takes over, and that is recorded.

use std::path::PathBuf;
use std::sync::Arc;

use cordon_bundle::fetch::{self, Fetched, Timeouts};
use cordon_bundle::store::{Installed, Store, Trust, Verdict};
use cordon_bundle::{Bundle, BundleError, Limits, Problem, PublicKey, Verifier};
use cordon_policy::{Policy, PolicyOptions, PolicySource};
use cordon_types::{AuditEvent, AuditSink, Decision, Outcome};
use serde_json::{json, Value};

use crate::{CordonConfig, Result, SetupError};

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The desktop's bundles as the configuration describes them.
#[derive(Debug)]
pub struct Bundles {
    store: Store,
    trust: Trust,
    source: Option<String>,
    options: PolicyOptions,
}

fn setup(origin: impl Into<String>, source: BundleError) -> SetupError {
    SetupError::Bundle {
        origin: origin.into(),
        source,
    }
}

/// This device's id for rollouts: `subject.device`, else `/etc/machine-id`, else the host
/// name.
pub fn device_id(config: &CordonConfig) -> String {
    if let Some(device) = &config.subject.device {
        return device.clone();
    }
    for path in [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/proc/sys/kernel/hostname",
    ] {
        if let Ok(text) = fs_err::read_to_string(path) {
            let id = text.trim();
            if !id.is_empty() {
                return id.to_owned();
            }
        }
    }
    "unknown".into()
}

/// Where the desktop's bundles are kept: `$XDG_DATA_HOME/cordon/bundles`.
fn store() -> Option<Store> {
    dirs::data_dir().map(|dir| Store::new(dir.join("cordon").join("bundles")))
}

impl Bundles {
    /// The store and what it trusts, from `config`.
    ///
    /// # Errors
    ///
    /// [`SetupError::ConfigValue`] when the public key cannot be read or the data directory
    /// is unknown.
    pub fn new(config: &CordonConfig) -> Result<Self> {
        let store = store().ok_or_else(|| SetupError::ConfigValue {
            key: "policy.bundle",
            message: "no data directory ($XDG_DATA_HOME or $HOME) to keep bundles in".into(),
        })?;
        let mut verifier = Verifier::new();
        if let Some(path) = &config.policy.public_key {
            let path = crate::expand_home(path);
            let key = fs_err::read_to_string(&path)
                .map_err(|err| err.to_string())
                .and_then(|text| PublicKey::from_pem(&text))
                .map_err(|why| SetupError::ConfigValue {
                    key: "policy.public_key",
                    message: format!("`{}`: {why}", path.display()),
                })?;
            let id = config
                .policy
                .key_id
                .clone()
                .unwrap_or_else(|| cordon_bundle::DEFAULT_KEY_ID.to_owned());
            verifier = verifier.with_key(id, key);
            if let Some(id) = &config.policy.key_id {
                verifier = verifier.with_key_id(id);
            }
        }
        if let Some(scope) = &config.policy.scope {
            verifier = verifier.with_scope(scope);
        }
        let trust = Trust {
            verifier,
            allow_downgrade: config.policy.allow_downgrade.unwrap_or(false),
            device: device_id(config),
            limits: Limits::default(),
        };
        Ok(Self {
            store,
            trust,
            source: config.policy.bundle.clone(),
            options: config.policy_options()?,
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What is trusted.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Lets an older revision replace the active one this once.
    pub fn allow_downgrade(&mut self) {
        self.trust.allow_downgrade = true;
    }

    /// Where bundles come from, as configured.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    fn check(&self) -> impl Fn(&Bundle) -> std::result::Result<(), BundleError> + '_ {
        move |bundle: &Bundle| {
            let source = bundle.policy_source("the offered bundle")?;
            Policy::load(&source, self.options)
                .map(drop)
                .map_err(|err| {
                    BundleError::new(Problem::Policy, format!("its policy does not load: {err}"))
                })
        }
    }

    /// Offers the bundle `bytes` from `source` and records the verdict in `sink`.
    ///
    /// # Errors
    ///
    /// When the store cannot be written, or the verdict not recorded.
    pub fn offer(
        &self,
        bytes: &[u8],
        source: &str,
        pin: bool,
        sink: Option<&dyn AuditSink>,
    ) -> Result<Verdict> {
        let verdict = self
            .store
            .offer(bytes, source, &self.trust, &self.check(), pin, now())
            .map_err(|err| {
                setup(
                    format!("the bundle store `{}`", self.store.dir().display()),
                    err,
                )
            })?;
        record(sink, &verdict, source)?;
        Ok(verdict)
    }

    /// Checks the configured source once: a file is read, a URL fetched with the ETag of the
    /// last answer; a new bundle is offered. `None` when the server says nothing changed.
    ///
    /// # Errors
    ///
    /// [`SetupError::ConfigValue`] when no source is configured or a plain `http://` URL
    /// is configured without a key; a fetch that fails is recorded in the store and
    /// returned as [`SetupError::Bundle`].
    pub fn pull(
        &self,
        sink: Option<&dyn AuditSink>,
        timeouts: Timeouts,
    ) -> Result<Option<Verdict>> {
        let Some(source) = self.source.as_deref() else {
            return Err(SetupError::ConfigValue {
                key: "policy.bundle",
                message: "no bundle source is configured (a file or an https:// URL)".into(),
            });
        };
        let fetched = if source.starts_with("https://") || source.starts_with("http://") {
            if source.starts_with("http://") && !self.trust.verifier.requires_signature() {
                return Err(SetupError::ConfigValue {
                    key: "policy.bundle",
                    message: format!(
                        "`{source}` is plain HTTP and no `policy.public_key` is configured: \
                         anyone on the path could replace the policy; use https:// or sign bundles"
                    ),
                });
            }
            // The ETag is sent only while the active bundle is whole: a damaged one is
            // repaired by fetching it again.
            let intact = self
                .store
                .load(&self.trust, now())
                .is_ok_and(|loaded| loaded.is_some_and(|l| l.fallback_from.is_none()));
            let etag = intact
                .then(|| self.store.state().ok().and_then(|s| s.etag))
                .flatten();
            fetch::fetch(
                source,
                etag.as_deref(),
                self.trust.limits.compressed,
                timeouts,
            )
        } else {
            let path = crate::expand_home(std::path::Path::new(source));
            cordon_bundle::read_bounded(&path, self.trust.limits.compressed)
                .map(|bytes| Fetched::Body { bytes, etag: None })
        };
        let store_err = |err| {
            setup(
                format!("the bundle store `{}`", self.store.dir().display()),
                err,
            )
        };
        match fetched {
            Ok(Fetched::NotModified) => {
                self.store
                    .record_check(None, None, now())
                    .map_err(store_err)?;
                Ok(None)
            }
            Ok(Fetched::Body { bytes, etag }) => {
                let verdict = self.offer(&bytes, source, false, sink)?;
                // The ETag is kept only for a bundle that was read: one refused is fetched
                // again (and refused again) rather than hidden behind a 304.
                let (etag, error) = match &verdict {
                    Verdict::Refused { error, .. } => (None, Some(error.to_string())),
                    Verdict::Deferred { .. } => (None, None),
                    Verdict::Activated { .. } | Verdict::Unchanged(_) | Verdict::Refreshed(_) => {
                        (etag, None)
                    }
                };
                if etag.is_none() {
                    // A bundle not taken is read whole again next time (after an unpin, a
                    // wider rollout), never hidden behind a 304.
                    self.store.forget_etag().map_err(store_err)?;
                }
                self.store
                    .record_check(etag, error, now())
                    .map_err(store_err)?;
                Ok(Some(verdict))
            }
            Err(err) => {
                self.store
                    .record_check(None, Some(err.to_string()), now())
                    .map_err(store_err)?;
                Err(setup(source, err))
            }
        }
    }

    /// Makes the previous bundle active again, and records it.
    ///
    /// # Errors
    ///
    /// When there is none, it no longer verifies, or the store cannot be written.
    pub fn rollback(&self, sink: Option<&dyn AuditSink>) -> Result<Verdict> {
        let verdict = self
            .store
            .rollback(&self.trust, &self.check(), now())
            .map_err(|err| {
                setup(
                    format!("the bundle store `{}`", self.store.dir().display()),
                    err,
                )
            })?;
        record_as(sink, &verdict, "rollback", "rollback")?;
        Ok(verdict)
    }

    /// The active bundle's policy, verified; `None` when no bundle was ever activated and
    /// none is configured. When nothing is active and a source is configured, it is pulled
    /// once. When the active bundle no longer verifies and the previous one does, the
    /// previous one becomes active, recorded in `sink`.
    ///
    /// # Errors
    ///
    /// [`SetupError::Bundle`] when a source is configured and no bundle can be activated,
    /// or when neither the active bundle nor the previous one verifies.
    pub fn active(
        &self,
        sink: &dyn Fn() -> Option<Arc<dyn AuditSink>>,
    ) -> Result<Option<(PolicySource, Installed)>> {
        let origin = || format!("the bundle store `{}`", self.store.dir().display());
        let mut loaded = self
            .store
            .load(&self.trust, now())
            .map_err(|err| setup(origin(), err))?;
        if loaded.is_none() && self.source.is_some() {
            let sink = sink();
            match self.pull(sink.as_deref(), Timeouts::default()) {
                Ok(Some(Verdict::Refused { error, .. })) => {
                    return Err(setup(self.source.clone().unwrap_or_default(), error))
                }
                Ok(_) => {}
                Err(err) => return Err(err),
            }
            loaded = self
                .store
                .load(&self.trust, now())
                .map_err(|err| setup(origin(), err))?;
        }
        let Some(loaded) = loaded else {
            return match &self.source {
                // A source is configured and nothing could be activated from it: nothing
                // decides (never the built-in default in its place).
                Some(source) => Err(setup(
                    source.clone(),
                    BundleError::new(
                        Problem::Missing,
                        "no bundle is active and none could be activated from it \
                         (`cordon policy status` says why)",
                    ),
                )),
                None => Ok(None),
            };
        };
        let installed = loaded.installed.clone();
        if let Some((failed, why)) = &loaded.fallback_from {
            // Used in place of the damaged one by this process only, and recorded each time:
            // the store changes only by an explicit command.
            tracing::warn!(
                "the active policy bundle (revision {}) cannot be used ({why}); deciding with the previous one, revision {}",
                failed.revision,
                installed.revision
            );
            let sink = sink();
            record_fallback(sink.as_deref(), &installed, failed, why)?;
        }
        let origin = format!(
            "bundle revision {} from {}",
            installed.revision, installed.source
        );
        let source = loaded
            .policy_source(&origin)
            .map_err(|err| setup(origin.clone(), err))?;
        Ok(Some((source, installed)))
    }
}

fn installed_json(installed: Option<&Installed>) -> Value {
    installed.map_or(Value::Null, |i| {
        json!({"revision": i.revision, "digest": i.digest, "source": i.source, "signer": i.signer})
    })
}

fn event(
    action: &str,
    input: Value,
    decision: Decision,
    outcome: Outcome,
    revision: &str,
) -> AuditEvent {
    let input = json!({"capability": "policy", "action": action, "resource": input});
    crate::pipeline::audit_event("policy", action, input, decision, outcome, revision)
}

fn allowed(reason: String) -> Decision {
    Decision {
        allow: true,
        reasons: vec![reason],
        obligations: Vec::new(),
        grants: None,
    }
}

fn write(sink: Option<&dyn AuditSink>, event: &AuditEvent) -> Result<()> {
    match sink {
        Some(sink) => sink.record(event).map_err(SetupError::Audit),
        None => Ok(()),
    }
}

/// Records what became of a bundle offered from `source`: activations, refusals and
/// deferrals, each with the candidate's and the active revision. An unchanged bundle is not
/// recorded (a poller would fill the log with them).
fn record(sink: Option<&dyn AuditSink>, verdict: &Verdict, source: &str) -> Result<()> {
    record_as(sink, verdict, "activate", source)
}

fn record_as(
    sink: Option<&dyn AuditSink>,
    verdict: &Verdict,
    action: &str,
    source: &str,
) -> Result<()> {
    let event = match verdict {
        Verdict::Unchanged(_) => return Ok(()),
        Verdict::Refreshed(active) => event(
            "refresh",
            json!({"source": source, "bundle": installed_json(Some(active))}),
            allowed(format!(
                "revision {} stays active; its signature is replaced by one that lasts longer \
                 (or its damaged file repaired)",
                active.revision
            )),
            Outcome::Performed,
            &active.revision,
        ),
        Verdict::Activated { from, to } => event(
            action,
            json!({"source": source, "bundle": installed_json(Some(to)), "previous": installed_json(from.as_ref())}),
            allowed(format!(
                "revision {} active ({}), replacing {}",
                to.revision,
                to.reason,
                from.as_ref()
                    .map_or("none".to_owned(), |f| format!("revision {}", f.revision))
            )),
            Outcome::Performed,
            &to.revision,
        ),
        Verdict::Deferred {
            revision,
            active,
            reason,
        } => event(
            "defer",
            json!({"source": source, "bundle": {"revision": revision}, "active": installed_json(active.as_ref())}),
            Decision::deny(format!("revision {revision} not taken: {reason}")),
            Outcome::Refused,
            active.as_ref().map_or("", |a| a.revision.as_str()),
        ),
        Verdict::Refused {
            revision,
            active,
            error,
        } => event(
            "refuse",
            json!({
                "source": source,
                "bundle": {"revision": revision},
                "active": installed_json(active.as_ref()),
                "problem": error.problem.as_str(),
                "file": error.file,
            }),
            Decision::deny(format!("bundle refused: {error}")),
            Outcome::Refused,
            active.as_ref().map_or("", |a| a.revision.as_str()),
        ),
    };
    write(sink, &event)
}

fn record_fallback(
    sink: Option<&dyn AuditSink>,
    used: &Installed,
    failed: &Installed,
    why: &BundleError,
) -> Result<()> {
    let event = event(
        "fallback",
        json!({
            "bundle": installed_json(Some(used)),
            "failed": installed_json(Some(failed)),
            "problem": why.problem.as_str(),
            "file": why.file,
        }),
        allowed(format!(
            "revision {} cannot be used ({why}); the previous one, revision {}, decides",
            failed.revision, used.revision
        )),
        Outcome::Performed,
        &used.revision,
    );
    write(sink, &event)
}

/// The active bundle's policy when bundles are in use (`policy.bundle` set, or a bundle
/// activated before); `None` otherwise.
///
/// # Errors
///
/// As [`Bundles::active`].
pub fn active_source(config: &CordonConfig) -> Result<Option<PolicySource>> {
    if config.policy.bundle.is_none() {
        // The common case costs one failed stat: no bundle was ever activated.
        let activated = store().is_some_and(|store| store.state_path().exists());
        if !activated {
            return Ok(None);
        }
    }
    let bundles = Bundles::new(config)?;
    let target = config.audit_target();
    let opener = move || crate::open_sink(target.as_ref()).ok().flatten();
    Ok(bundles.active(&opener)?.map(|(source, _)| source))
}

/// How often a running session looks for a newly activated bundle.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// What identifies a version of a file: change time, size, inode.
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs_err::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Follows the bundle store for a running supervisor: when another bundle becomes active
/// (`cordon policy activate`, `pull`, `rollback`), its policy is verified, loaded with
/// `options` and swapped into `cell` (and `policy`) for the next decisions. A bundle that
/// fails leaves the running policy in place. Stops when the pipeline is dropped.
pub(crate) fn follow(
    config: CordonConfig,
    options: PolicyOptions,
    revision: String,
    cell: std::sync::Weak<crate::PolicyCell>,
    policy: std::sync::Weak<std::sync::RwLock<Arc<Policy>>>,
    home: Option<PathBuf>,
) {
    let Some(state) = store().map(|store| store.state_path()) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("cordon-bundle-follow".into())
        .spawn(move || {
            let mut seen = stamp(&state);
            let mut revision = revision;
            loop {
                std::thread::sleep(FOLLOW_INTERVAL);
                let (Some(cell), Some(policy)) = (cell.upgrade(), policy.upgrade()) else {
                    return;
                };
                let now_stamp = stamp(&state);
                if now_stamp == seen {
                    continue;
                }
                seen = now_stamp;
                let target = config.audit_target();
                let opener = move || crate::open_sink(target.as_ref()).ok().flatten();
                // The keys are read again: a session started before a key rotation verifies
                // with the keys configured now.
                let bundles = match Bundles::new(&config) {
                    Ok(bundles) => bundles,
                    Err(err) => {
                        tracing::warn!("the policy bundle store cannot be followed: {}", cordon_types::error_chain(&err));
                        continue;
                    }
                };
                let source = match bundles.active(&opener) {
                    Ok(Some((source, _))) => crate::with_remembered(source, &config),
                    Ok(None) => continue,
                    Err(err) => {
                        tracing::warn!("the newly activated policy bundle is not used: {}", cordon_types::error_chain(&err));
                        continue;
                    }
                };
                if source.revision() == revision {
                    continue;
                }
                match crate::load_policy(&config, &source, options) {
                    Ok(loaded) => {
                        let loaded = Arc::new(loaded);
                        let inspection = Arc::new(crate::inspect::Inspection::new(
                            Arc::clone(&loaded),
                            home.clone(),
                        ));
                        *policy
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&loaded);
                        cell.replace(crate::Generation::new(loaded, Some(inspection)));
                        tracing::info!("policy now {}", source.origin());
                        revision = source.revision().to_owned();
                    }
                    Err(err) => tracing::warn!(
                        "the newly activated policy bundle does not load; the running policy stays: {}",
                        cordon_types::error_chain(&err)
                    ),
                }
            }
        });
    if let Err(err) = spawned {
        tracing::warn!("cannot follow the policy bundle store: {err}");
    }
}
