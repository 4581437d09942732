//! cordon's wiring: configuration and the request pipeline.
//!
//! [`CordonConfig`] reads `~/.config/cordon/config.toml`; [`Supervisor::start`] turns it into
//! a loaded policy, an audit sink and a [`Pipeline`] that decides requests. This is the only
//! crate that knows all the others; they meet through the traits of `cordon-types`.
//!
//! Trust boundary: everything an agent sends arrives here as a [`cordon_types::Request`] and
//! leaves as a recorded [`cordon_types::Decision`]. Errors at any step deny.
//!
//! ```no_run
//! use cordon_supervisor::{CordonConfig, Supervisor};
//! use cordon_types::Request;
//!
//! let (config, _) = CordonConfig::load(None).unwrap();
//! let supervisor = Supervisor::start(&config).unwrap();
//! let request: Request = serde_json::from_str(
//!     r#"{"capability": "file", "action": "read", "resource": {"path": "README.md"}}"#,
//! ).unwrap();
//! println!("{:?}", supervisor.pipeline().decide(&request).decision);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundles;
mod config;
#[cfg(target_os = "linux")]
pub mod consent;
mod error;
mod gate;
pub mod inspect;
#[cfg(target_os = "linux")]
pub mod mcp;
mod pipeline;
pub mod replay;
#[cfg(target_os = "linux")]
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{
    expand_home, AuditConfig, AuditFormat, ConsentConfig, CordonConfig, JournalConfig,
    PolicyConfig, SubjectConfig, WorkspaceConfig, DEFAULT_MAX_INPUT_BYTES,
};
use cordon_audit::{JsonlSink, Store, StoreOptions};
use cordon_policy::{CacheUse, Policy, PolicySource};
use cordon_types::{AuditSink, InputBuilder, InputEnv};
pub use error::{Result, SetupError};
pub use gate::{PipelineGate, WriteJournal};
pub use pipeline::{real_path, Decided, Generation, Pipeline, PolicyCell, Unrecorded};

/// A started cordon: the loaded policy and the pipeline that uses it.
#[derive(Debug)]
pub struct Supervisor {
    /// The policy deciding now (replaced when a new bundle is activated).
    policy: Arc<std::sync::RwLock<Arc<Policy>>>,
    pipeline: Pipeline,
    audit_path: Option<std::path::PathBuf>,
}

impl Supervisor {
    /// Loads the policy, opens the audit log and resolves the workspace, as `config` says.
    ///
    /// # Errors
    ///
    /// A [`SetupError`] naming the file or value that is wrong.
    pub fn start(config: &CordonConfig) -> Result<Self> {
        Self::start_with(config, None, None)
    }

    /// As [`Supervisor::start`], for a command that decides only `capabilities`: only their
    /// decisions are compiled, and the policy's tests are not loaded.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start`].
    pub fn start_for(config: &CordonConfig, capabilities: &'static [&'static str]) -> Result<Self> {
        Self::start_with(config, Some(capabilities), None)
    }

    /// As [`Supervisor::start_for`], deciding for the session `id` whose working directory
    /// is `cwd` (the workspace, unless the configuration names roots): every decision's input
    /// and every record carries `context.session`.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start`].
    pub fn start_session(
        config: &CordonConfig,
        capabilities: &'static [&'static str],
        id: &str,
        cwd: &std::path::Path,
    ) -> Result<Self> {
        Self::start_with(config, Some(capabilities), Some((id, cwd)))
    }

    fn start_with(
        config: &CordonConfig,
        only: Option<&'static [&'static str]>,
        session: Option<(&str, &std::path::Path)>,
    ) -> Result<Self> {
        let (source, from_bundle) = load_source_with(config)?;
        let source = with_remembered(source, config);
        let mut options = config.policy_options()?;
        options.only = only;
        let audit_target = config.audit_target();
        let (policy, sink) = if session.is_some() {
            // A session decides before it records: the audit log opens while the policy
            // loads, the launch is decided and the sandbox planned, and the first record waits
            // for it. A log that cannot be opened makes that record, and so the launch, fail.
            let sink = audit_target.clone().map(|target| {
                let sink: Arc<dyn AuditSink> = Arc::new(DeferredSink::open(target));
                sink
            });
            (load_policy(config, &source, options), Ok(sink))
        } else {
            // The audit log opens (and syncs) while the policy compiles.
            std::thread::scope(|scope| {
                let sink = scope.spawn(|| open_sink(audit_target.as_ref()));
                let policy = load_policy(config, &source, options);
                let sink = sink.join().unwrap_or_else(|_| {
                    Err(SetupError::Audit(cordon_types::AuditError::Write {
                        target: "the audit log".into(),
                        source: std::io::Error::other("its opener panicked"),
                    }))
                });
                (policy, sink)
            })
        };
        let policy = policy?;
        let sink = sink?;
        for warning in policy.warnings() {
            tracing::warn!("{warning}");
        }
        let policy = Arc::new(policy);
        let audit_path = audit_target.map(|(path, _)| path);
        let cwd = match session {
            Some((_, cwd)) => Some(cwd.to_path_buf()),
            None => std::env::current_dir().ok(),
        };
        let builder = InputBuilder::new(input_env(config, cwd));
        let home = builder.env().home.clone();
        let inspection = Arc::new(inspect::Inspection::new(Arc::clone(&policy), home.clone()));
        let mut pipeline = Pipeline::new(policy.clone(), builder, sink).with_inspection(inspection);
        if let Some((id, _)) = session {
            pipeline = pipeline.with_session(id);
        }
        let policy = Arc::new(std::sync::RwLock::new(policy));
        if from_bundle {
            bundles::follow(
                config.clone(),
                options,
                source.revision().to_owned(),
                Arc::downgrade(pipeline.policy_cell()),
                Arc::downgrade(&policy),
                home,
            );
        }
        Ok(Self {
            policy,
            pipeline,
            audit_path,
        })
    }

    /// The same supervisor, its pipeline setting `context.<key>` of every input and record
    /// to `value` ([`Pipeline::with_context`]).
    #[must_use]
    pub fn with_context(self, key: &str, value: serde_json::Value) -> Self {
        let Self {
            policy,
            pipeline,
            audit_path,
        } = self;
        Self {
            policy,
            pipeline: pipeline.with_context(key, value),
            audit_path,
        }
    }

    /// A supervisor sharing this one's policy and audit log whose pipeline resolves
    /// requests against the workspace `roots` ([`Pipeline::with_workspace`]).
    #[must_use]
    pub fn with_workspace(&self, roots: Vec<std::path::PathBuf>) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            pipeline: self.pipeline.clone().with_workspace(roots),
            audit_path: self.audit_path.clone(),
        }
    }

    /// The policy deciding now.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(
            &self
                .policy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The pipeline deciding requests.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Where decisions are recorded, if anywhere.
    pub fn audit_path(&self) -> Option<&std::path::Path> {
        self.audit_path.as_deref()
    }
}

/// Loads the policy, through the compiled-policy cache unless the configuration turns it off.
pub(crate) fn load_policy(
    config: &CordonConfig,
    source: &PolicySource,
    options: cordon_policy::PolicyOptions,
) -> Result<Policy> {
    let error = |source_err| SetupError::Policy {
        origin: source.origin().to_owned(),
        source: source_err,
    };
    let cache = config
        .policy
        .cache
        .unwrap_or(true)
        .then(dirs::cache_dir)
        .flatten()
        .map(|dir| dir.join("cordon").join("policy"));
    let Some(cache) = cache else {
        return Policy::load(source, options).map_err(error);
    };
    let (policy, used) = Policy::load_cached(source, options, &cache).map_err(error)?;
    match used {
        CacheUse::Hit => tracing::debug!(
            "compiled policy read from the cache in `{}`",
            cache.display()
        ),
        CacheUse::Stored => tracing::debug!(
            "compiled policy stored in the cache in `{}`",
            cache.display()
        ),
        CacheUse::Recompiled(why) => tracing::warn!(
            "the compiled-policy cache entry in `{}` was not used ({why}); compiled again",
            cache.display()
        ),
        CacheUse::NotStored(why) => tracing::debug!("compiled policy not cached: {why}"),
    }
    Ok(policy)
}

/// The thread opening an audit sink.
type Opening = std::thread::JoinHandle<Result<Option<Arc<dyn AuditSink>>>>;

/// An audit sink opened on a thread of its own, waited for by its first record.
struct DeferredSink {
    target: String,
    opening: std::sync::Mutex<Option<Opening>>,
    sink: std::sync::OnceLock<std::result::Result<Arc<dyn AuditSink>, String>>,
}

impl DeferredSink {
    fn open(target: (PathBuf, AuditFormat)) -> Self {
        let name = target.0.display().to_string();
        let opening = std::thread::Builder::new()
            .name("cordon-audit-open".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let sink = open_sink(Some(&target));
                tracing::debug!("audit log opened in {:?}", started.elapsed());
                sink
            })
            .ok();
        Self {
            target: name,
            opening: std::sync::Mutex::new(opening),
            sink: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> std::result::Result<&Arc<dyn AuditSink>, cordon_types::AuditError> {
        let opened = self.sink.get_or_init(|| {
            let handle = self
                .opening
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            match handle.map(std::thread::JoinHandle::join) {
                Some(Ok(Ok(Some(sink)))) => Ok(sink),
                Some(Ok(Ok(None))) => Err("no audit log is configured".into()),
                Some(Ok(Err(err))) => Err(cordon_types::error_chain(&err)),
                Some(Err(_)) => Err("its opener panicked".into()),
                None => Err("its opener could not be started".into()),
            }
        });
        opened
            .as_ref()
            .map_err(|why| cordon_types::AuditError::Write {
                target: self.target.clone(),
                source: std::io::Error::other(why.clone()),
            })
    }
}

impl AuditSink for DeferredSink {
    fn record(
        &self,
        event: &cordon_types::AuditEvent,
    ) -> std::result::Result<(), cordon_types::AuditError> {
        self.get()?.record(event)
    }

    fn record_last(
        &self,
        event: &cordon_types::AuditEvent,
    ) -> std::result::Result<(), cordon_types::AuditError> {
        self.get()?.record_last(event)
    }

    fn record_deferred(
        &self,
        event: &cordon_types::AuditEvent,
    ) -> std::result::Result<(), cordon_types::AuditError> {
        self.get()?.record_deferred(event)
    }
}

impl Drop for DeferredSink {
    /// A log opened and never written is still closed properly.
    fn drop(&mut self) {
        let _ = self.get();
    }
}

pub(crate) fn open_sink(
    target: Option<&(PathBuf, AuditFormat)>,
) -> Result<Option<Arc<dyn AuditSink>>> {
    Ok(match target {
        Some((path, AuditFormat::Jsonl)) => {
            Some(Arc::new(JsonlSink::open(path).map_err(SetupError::Audit)?))
        }
        Some((path, AuditFormat::Sqlite)) => Some(Arc::new(
            Store::open(path, StoreOptions::default()).map_err(SetupError::AuditStore)?,
        )),
        None => None,
    })
}

/// The audit log the configuration names, opened (`None` when auditing is off).
///
/// # Errors
///
/// [`SetupError::Audit`] or [`SetupError::AuditStore`] when it cannot be opened.
pub fn open_audit(config: &CordonConfig) -> Result<Option<Arc<dyn AuditSink>>> {
    open_sink(config.audit_target().as_ref())
}

/// The policy the configuration names: a directory or file (`policy.path`), else the
/// active policy bundle (when `policy.bundle` is set or a bundle was activated), else the
/// built-in default.
///
/// # Errors
///
/// [`SetupError::Policy`] when the path cannot be read, [`SetupError::Bundle`] when a
/// bundle is in use and none can be verified.
pub fn load_source(config: &CordonConfig) -> Result<PolicySource> {
    load_source_with(config).map(|(source, _)| source)
}

/// As [`load_source`], and whether the policy is the active bundle's.
fn load_source_with(config: &CordonConfig) -> Result<(PolicySource, bool)> {
    match (&config.policy.path, &config.policy.bundle) {
        (Some(_), Some(_)) => Err(SetupError::ConfigValue {
            key: "policy.bundle",
            message: "`policy.path` and `policy.bundle` are both set; choose one".into(),
        }),
        (Some(path), None) => {
            let path = expand_home(path);
            PolicySource::from_path(&path)
                .map(|source| (source, false))
                .map_err(|source| SetupError::Policy {
                    origin: format!("`{}`", path.display()),
                    source,
                })
        }
        (None, _) => match bundles::active_source(config)? {
            Some(source) => Ok((source, true)),
            None => Ok((PolicySource::embedded_default(), false)),
        },
    }
}

/// The policy with the person's remembered answers mounted at `data.cordon.remembered`.
pub(crate) fn with_remembered(source: PolicySource, config: &CordonConfig) -> PolicySource {
    #[cfg(target_os = "linux")]
    if let Some(path) = config.remembered_path() {
        let file = consent::RememberedFile::at(&path);
        if let Some(text) = file.policy_data() {
            return source.with_file(cordon_policy::PolicyFile {
                relative: "cordon/remembered/data.json".into(),
                display: path.display().to_string(),
                text,
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = config;
    source
}

/// What requests are resolved against: the person, their home, the working directory and the
/// workspace roots (symbolic links resolved, so that policies compare real paths).
fn input_env(config: &CordonConfig, cwd: Option<PathBuf>) -> InputEnv {
    let roots: Vec<std::path::PathBuf> = if config.workspace.roots.is_empty() {
        cwd.iter().cloned().collect()
    } else {
        config
            .workspace
            .roots
            .iter()
            .map(|root| {
                let root = expand_home(root);
                match (&cwd, root.is_absolute()) {
                    (Some(cwd), false) => cwd.join(root),
                    _ => root,
                }
            })
            .collect()
    };
    InputEnv {
        user: config
            .subject
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok()),
        device: config.subject.device.clone(),
        agent: config.subject.agent.clone(),
        // Resolved like every path the policy compares with it (a home reached through a
        // link, `/home -> var/home`, would otherwise match no secret location).
        home: dirs::home_dir().map(|home| real_path(&home)),
        cwd,
        workspace: roots.iter().map(|root| real_path(root)).collect(),
        time: None,
    }
}
