//! Sessions: a confined program with an id, its decision and grants, its egress proxy, its
//! audit records, its terminal and its outcome.
//!
//! Every front-end that runs a program (`cordon exec`, and the skill runner, consent broker
//! and MCP gateway after it) launches it here, so each is started, confined, served and
//! audited the same way:
//!
//! ```text
//! Session::launch(LaunchRequest)
//!   start the sandbox helper ───────────── namespaces, seccomp, cgroup join (in parallel)
//!   load the policy, decide `sandbox` ──── the decision is Unrecorded (must be recorded)
//!   plan the view, check the kernel ────── a feature the policy requires, missing: refused
//!   send the spec; record the decision ─── the view is built while the record is made durable
//!   serve the egress proxy and the control socket
//!   go ─────────────────────────────────── Running (the program was executed)
//! Running::wait()
//!   the program's exit; protected paths checked; the outcome recorded ─── Ended
//! ```
//!
//! ```no_run
//! use cordon_supervisor::session::{LaunchRequest, Session};
//! use cordon_supervisor::CordonConfig;
//!
//! let request = LaunchRequest::new(
//!     CordonConfig::default(),
//!     vec!["make".into(), "test".into()],
//!     std::env::current_dir().unwrap(),
//! );
//! let running = Session::launch(request).unwrap();
//! println!("session {}", running.id());
//! let ended = running.wait().unwrap();
//! std::process::exit(ended.exit_code);
//! ```

mod control;
mod journaling;
mod protect;
pub mod remote;
pub mod skill;
mod terminal;
mod terminal_filter;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use cordon_sandbox::grants::{Feature, Grants};
use cordon_sandbox::guard::{Action, Finding, Guard};
use cordon_sandbox::helper::{Helper, HelperOptions};
use cordon_sandbox::kernel::Kernel;
use cordon_sandbox::launch::{LaunchSpec, Status, CANNOT_EXECUTE, NOT_FOUND};
use cordon_sandbox::plan::Plan;
use cordon_sys::process as sys;
use cordon_types::{error_chain, Capability, Decision, Outcome, Request};
use serde::Serialize;
use serde_json::{json, Value};

pub use control::{list, request as control_request, sessions_dir, SessionInfo, PROTOCOL};
pub use protect::recover_pending;

use crate::consent::{Backends, Broker, RememberedFile};
use crate::{real_path, CordonConfig, PipelineGate, Supervisor, Unrecorded};

/// The port of the egress proxy on 127.0.0.1 inside every sandbox.
pub const PROXY_PORT: u16 = 3128;

/// What to launch, and what the person asks for it. Paths and hosts are requests: the policy
/// (`data.cordon.sandbox`) decides what is granted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LaunchRequest {
    /// cordon's configuration (policy, audit log, subject).
    pub config: CordonConfig,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The working directory: the workspace.
    pub cwd: PathBuf,
    /// Paths to make readable (relative to `cwd`, `~` expanded; each must exist).
    pub read: Vec<PathBuf>,
    /// Paths to make readable and writable (as `read`).
    pub write: Vec<PathBuf>,
    /// Hosts to let the program reach through the proxy: `HOST` or `HOST:PORT`.
    pub net: Vec<String>,
    /// Environment variables to keep beyond the allowlist.
    pub keep_env: Vec<String>,
    /// Allow a workspace or write grant that is the home, an ancestor of it, /tmp, /run...
    pub broad_write: bool,
    /// Run even when a kernel feature the policy requires is missing (recorded).
    pub allow_degraded: bool,
    /// The environment the program's is taken from (only what the policy keeps passes).
    pub env: Vec<(String, String)>,
    /// Pass this process's termination signals to the program (a command-line front-end);
    /// the third termination kills the sandbox.
    pub forward_signals: bool,
    /// The sandbox helper executable (see [`HelperOptions::program`]).
    pub helper: Option<PathBuf>,
    /// The front-end's name, shown by `cordon ps`.
    pub front_end: String,
    /// Stage the program's writes instead of letting them reach the writable trees.
    pub stage: Option<StageMode>,
    /// The program's standard input and output are pipes to the front-end
    /// ([`Running::take_stdio`]) instead of cordon's own (an MCP gateway relays them).
    pub piped: bool,
    /// The capabilities the session's policy decides: `sandbox` and `net` (the launch and
    /// its egress), and what the front-end decides through [`Running::supervisor`] (`tool`
    /// for an MCP gateway).
    pub decides: &'static [&'static str],
}

pub use journaling::{apply_guarded, StageMode, StagedOutcome};

impl LaunchRequest {
    /// A request to run `command` in `cwd` with nothing more asked for, taking the
    /// environment of this process.
    pub fn new(config: CordonConfig, command: Vec<String>, cwd: PathBuf) -> Self {
        Self {
            config,
            command,
            cwd,
            read: Vec::new(),
            write: Vec::new(),
            net: Vec::new(),
            keep_env: Vec::new(),
            broad_write: false,
            allow_degraded: false,
            env: process_env(),
            forward_signals: false,
            helper: None,
            front_end: "library".into(),
            stage: None,
            piped: false,
            decides: &["sandbox", "net"],
        }
    }
}

/// This process's environment, the variables whose name and value are UTF-8.
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(n, v)| Some((n.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Why a launch did not run, or did not end well.
#[derive(Debug, Clone, PartialEq, Eq, Copy)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The policy refused, or the request is malformed (a path that does not exist, a
    /// malformed host).
    Refused,
    /// A kernel feature the policy requires is missing (`allow_degraded` runs anyway).
    KernelFeatureMissing,
    /// The sandbox could not be set up, or the decision not recorded.
    SetupFailed,
    /// The program exists but cannot be executed.
    CannotExecute,
    /// The program was not found.
    NotFound,
    /// The program ran, and left changes on protected paths that could not be moved aside.
    ProtectedPathsUnresolved,
}

/// A launch that did not happen, or did not end well: what kind, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
    /// What to do about it, when there is something.
    pub hint: Option<&'static str>,
}

impl LaunchError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// The exit status a shell-like front-end reports: 127 not found, 126 cannot execute,
    /// 125 for everything cordon refused or could not do.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::NotFound => NOT_FOUND as u8,
            ErrorKind::CannotExecute => CANNOT_EXECUTE as u8,
            _ => cordon_sandbox::launch::SETUP_FAILED as u8,
        }
    }
}

fn refused(message: impl Into<String>) -> LaunchError {
    LaunchError::new(ErrorKind::Refused, message)
}

fn setup(message: impl Into<String>) -> LaunchError {
    LaunchError::new(ErrorKind::SetupFailed, message)
}

/// The launch decision and its record: the decision is [`Unrecorded`] until
/// [`LaunchAudit::commit`], and the program runs only once it is recorded.
#[derive(Debug)]
struct LaunchAudit {
    supervisor: Arc<Supervisor>,
    input: Value,
    decision: Decision,
    pending: Option<Unrecorded>,
    /// The record being made on a thread of its own ([`LaunchAudit::start_commit`]).
    committing: Option<std::thread::JoinHandle<Decision>>,
}

impl LaunchAudit {
    /// Starts recording the decision on a thread of its own, so that the durable write
    /// overlaps the planning; [`LaunchAudit::commit`] waits for it.
    fn start_commit(&mut self) {
        let Some(unrecorded) = self.pending.take() else {
            return;
        };
        let supervisor = Arc::clone(&self.supervisor);
        let spawned = std::thread::Builder::new()
            .name("cordon-record".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let decision = supervisor
                    .pipeline()
                    .record_decided(&Capability::sandbox(), unrecorded)
                    .decision;
                tracing::debug!("decision record made in {:?}", started.elapsed());
                decision
            });
        match spawned {
            Ok(handle) => self.committing = Some(handle),
            Err(err) => {
                self.decision = Decision::deny(format!(
                    "denied because the decision could not be recorded (cannot start its writer: {err})"
                ));
            }
        }
    }

    /// Records the decision if it is not yet (or waits for the record started before);
    /// returns whether the launch is still allowed (a decision that cannot be recorded is a
    /// denial).
    fn commit(&mut self) -> bool {
        if let Some(handle) = self.committing.take() {
            self.decision = handle.join().unwrap_or_else(|_| {
                Decision::deny("denied because the decision's record failed (its writer panicked)")
            });
        }
        if let Some(unrecorded) = self.pending.take() {
            let recorded = self
                .supervisor
                .pipeline()
                .record_decided(&Capability::sandbox(), unrecorded);
            self.decision = recorded.decision;
        }
        self.decision.allow
    }

    /// Records what became of the launch (after the decision); a failure to record is
    /// reported, not hidden.
    fn record(&mut self, outcome: Outcome, result: Value) {
        self.commit();
        let mut input = self.input.clone();
        input["result"] = result;
        if let Err(err) = self.supervisor.pipeline().record_outcome(
            &Capability::sandbox(),
            input,
            self.decision.clone(),
            outcome,
            true,
        ) {
            tracing::error!("cannot record the outcome of the launch: {err}");
        }
    }

    /// Records a refusal by cordon itself (after the policy allowed) and returns it.
    fn refuse(&mut self, outcome: Outcome, error: LaunchError) -> LaunchError {
        self.record(outcome, json!({ "refused": error.message }));
        error
    }
}

/// What a dry run decided and planned.
#[derive(Debug, Serialize)]
pub struct DryRun {
    /// The launch decision (recorded).
    pub decision: Decision,
    /// The planned view and its Landlock rules.
    pub plan: Plan,
    /// The kernel features that are missing, by name.
    pub degraded: Vec<&'static str>,
}

/// Everything decided and planned, before anything runs.
struct Prepared {
    id: String,
    request: LaunchRequest,
    supervisor: Arc<Supervisor>,
    consent: Arc<Broker>,
    prompter: Option<Arc<terminal::TerminalPrompter>>,
    control: Option<control::Control>,
    /// What the session says about itself, from its start (with a helper only).
    info: Option<SessionInfo>,
    audit: LaunchAudit,
    grants: Grants,
    plan: Plan,
    kernel: Kernel,
    helper: Option<Helper>,
    /// The thread that started the helper and reaps it (with a helper only).
    keeper: Option<Keeper>,
    /// Signals for the helper (with a helper only).
    signals: Option<HelperSignals>,
    /// How sending the launch specification to the helper went (with a helper only).
    sent: Option<std::io::Result<()>>,
    /// The front-end's ends of the program's input and output, with [`LaunchRequest::piped`].
    stdio: Option<(std::fs::File, std::fs::File)>,
    /// The thread taking the writable trees (with a helper only).
    journaling: Option<journaling::Taking>,
    degraded: Vec<&'static str>,
    own: Vec<PathBuf>,
    started: std::time::Instant,
}

/// The entry points of sessions.
#[derive(Debug)]
pub struct Session;

impl Session {
    /// Decides and plans a launch without running anything: the decision is recorded, the
    /// view planned, the kernel checked (cgroups only for whether they could be made).
    ///
    /// # Errors
    ///
    /// As [`Session::launch`], before anything would run.
    pub fn dry_run(request: LaunchRequest) -> Result<DryRun, LaunchError> {
        let mut prepared = prepare(request, false)?;
        prepared.audit.commit();
        Ok(DryRun {
            decision: prepared.audit.decision.clone(),
            plan: prepared.plan,
            degraded: prepared.degraded,
        })
    }

    /// Launches the request's program in the sandbox: decides, records, confines, serves
    /// its egress proxy and control socket, and returns once the program was executed.
    ///
    /// # Errors
    ///
    /// A [`LaunchError`]: refused by the policy, a required kernel feature missing, the
    /// sandbox not set up, the program not found or not executable. Each is recorded in the
    /// audit log once the decision was made.
    pub fn launch(request: LaunchRequest) -> Result<Running, LaunchError> {
        protect::recover_pending();
        let prepared = prepare(request, true)?;
        start(prepared)
    }
}

/// A random session id: 12 hex digits.
/// `--allow-net` entries in the form the policy compares; a malformed one refuses.
fn allow_entries(entries: &[String]) -> Result<Vec<String>, LaunchError> {
    entries
        .iter()
        .map(|e| cordon_egress::normalize_allow_entry(e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(refused)
}

fn new_id() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the process id and the time still name one session uniquely.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        return format!(
            "{:06x}{:06x}",
            std::process::id() & 0xff_ffff,
            nanos & 0xff_ffff
        );
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn prepare(request: LaunchRequest, run: bool) -> Result<Prepared, LaunchError> {
    let started = std::time::Instant::now();
    if request.command.is_empty() {
        return Err(refused("no program to run"));
    }
    if request.cwd.to_str().is_none() {
        return Err(refused(format!(
            "the workspace `{}` has a name that is not UTF-8, which cordon's decisions and records cannot carry; run from a directory with a UTF-8 path",
            request.cwd.display()
        )));
    }
    let id = new_id();
    let read = resolve_all(&request.read, &request.cwd)?;
    let write = resolve_all(&request.write, &request.cwd)?;
    let kernel = Kernel::probe();
    // Malformed net entries are refused before anything starts.
    let net = allow_entries(&request.net)?;

    // The helper starts on its keeper's thread (its cgroups made, its process spawned) and
    // prepares the namespaces while the policy loads.
    let mut stdio = None;
    let mut keeper = if run {
        let mut terminal = terminal::streams_on_terminal();
        let piped = if request.piped {
            let (input, to_input) = std::io::pipe()
                .map_err(|e| setup(format!("cannot make the program's input: {e}")))?;
            let (from_output, output) = std::io::pipe()
                .map_err(|e| setup(format!("cannot make the program's output: {e}")))?;
            stdio = Some((
                std::fs::File::from(OwnedFd::from(to_input)),
                std::fs::File::from(OwnedFd::from(from_output)),
            ));
            terminal[0] = false;
            terminal[1] = false;
            Some(Arc::new([OwnedFd::from(input), OwnedFd::from(output)]))
        } else {
            None
        };
        let options = HelperOptions {
            terminal,
            proxy_port: Some(PROXY_PORT),
            program: request.helper.clone(),
            huge_pages_disabled: huge_pages_off_for_cordon(),
            piped,
        };
        Some(Keeper::start(kernel.clone(), options)?)
    } else {
        None
    };
    // The journal opens beside the policy; it takes the writable trees once they are known.
    let mut journal = if run {
        Some(journaling::Opening::start(request.config.clone(), id.clone()).map_err(setup)?)
    } else {
        None
    };
    let [stdin_terminal, _, stderr_terminal] = terminal::streams_on_terminal();
    let session_bus = request
        .env
        .iter()
        .any(|(name, value)| name == "DBUS_SESSION_BUS_ADDRESS" && !value.is_empty());
    let backends = Backends::parse_with(
        request.config.consent.backend.as_deref().unwrap_or("auto"),
        // A piped program's front-end owns this process's input: no one answers there.
        stdin_terminal && stderr_terminal && !request.piped,
        session_bus,
    )
    .map_err(refused)?;
    let supervisor = Supervisor::start_session(&request.config, request.decides, &id, &request.cwd)
        .map_err(|e| setup(format!("cannot start cordon: {}", error_chain(&e))))?
        .with_context("consent", backends.context());
    let supervisor = Arc::new(supervisor);
    let mut helper = keeper.as_mut().map(Keeper::helper).transpose()?;
    tracing::debug!(
        "helper started, beside the policy's loading, by {:?}",
        started.elapsed()
    );
    let signals = helper
        .as_ref()
        .map(|helper| HelperSignals::open(helper.pid()))
        .transpose()
        .map_err(|e| setup(format!("cannot watch the sandbox's helper: {e}")))?;
    let prompter = backends
        .list()
        .contains(&crate::consent::Backend::Terminal)
        .then(|| Arc::new(terminal::TerminalPrompter::default()));
    let consent = consent_broker(&request.config, &supervisor, &id, backends);
    if let Some(prompter) = &prompter {
        consent.add_prompter(prompter.clone());
        prompter.start();
    }
    if consent
        .backends()
        .list()
        .contains(&crate::consent::Backend::Notify)
    {
        match crate::consent::notify::NotifyPrompter::connect() {
            Ok(prompter) => consent.add_prompter(prompter),
            Err(why) => tracing::warn!("questions are not shown as notifications: {why}"),
        }
    }
    // Where someone can be asked, the control socket serves from now on: questions about
    // the launch itself are listed and answered there. Elsewhere it starts with the program.
    let info = helper
        .as_ref()
        .map(|helper| session_info(&id, &request, &supervisor, helper.pid()));
    let control = info
        .clone()
        .zip(signals.as_ref())
        .filter(|_| consent.backends().interactive())
        .and_then(|(info, signals)| start_control(info, signals, &consent));
    tracing::debug!("policy loaded after {:?}", started.elapsed());
    let own = protect::own_paths(&request.config, &supervisor);
    let requested = json!({
        "read": read,
        "write": write,
        "net": net,
        "keep_env": request.keep_env,
        "broad_write": request.broad_write,
    });
    // A dry run asks no one: it shows the obligations the launch would carry out.
    let asking = run.then_some(&consent);
    let (mut audit, mut grants) = decide(&supervisor, asking, &request, &own, requested, &kernel)?;
    tracing::debug!("decided after {:?}", started.elapsed());
    if run {
        audit.start_commit();
        protect::create_own_dirs(&own, &protect::own_files(&request.config), &grants.write)
            .map_err(|why| audit.refuse(Outcome::Failed, setup(why)))?;
    }
    // What cordon keeps about the sessions is never in a program's view: the journal holds
    // copies of what the trees held (secrets the view hides included, before they were
    // left out), the audit log's key signs its checkpoints.
    for hidden in journaling::hidden_paths(&request.config, &supervisor, run) {
        grants.mask.push(format!("{}/", hidden.display()));
    }
    let (uid, _) = sys::real_ids();
    let home = real_path(&dirs::home_dir().unwrap_or_else(|| PathBuf::from("/")));
    let plan = cordon_sandbox::plan::plan(&grants, &home, uid, &read)
        .map_err(|why| audit.refuse(Outcome::Refused, refused(why)))?;
    tracing::debug!("planned after {:?}", started.elapsed());
    let mut plan = plan;
    for path in &plan.skipped {
        tracing::debug!("granted `{}` does not exist here; skipped", path.display());
    }
    // The caps hold before the helper starts anything.
    let missing = missing_features(&kernel, &grants, helper.as_mut());
    tracing::debug!("capped after {:?}", started.elapsed());
    let required: Vec<&str> = missing
        .iter()
        .filter(|(f, _)| grants.require.contains(f))
        .map(|(_, why)| why.as_str())
        .collect();
    if !required.is_empty() && !request.allow_degraded {
        let error = LaunchError::new(ErrorKind::KernelFeatureMissing, required.join("; "))
            .hint("`cordon doctor` shows what this kernel has; `--allow-degraded` runs anyway, and records that it did");
        return Err(audit.refuse(Outcome::Refused, error));
    }
    for (feature, why) in &missing {
        tracing::warn!("running without {}: {why}", feature.name());
    }
    // Made last before the journal takes the trees: a launch that fails from here on is
    // forgotten by the journal, its stage with it.
    if let (Some(_), true) = (request.stage, run) {
        journaling::stage(&request.config, &id, &mut plan)
            .map_err(|why| audit.refuse(Outcome::Refused, refused(why)))?;
    }
    let mut journaling = None;
    if let Some(opening) = journal.take() {
        // The writable trees are taken on the journal's thread while the view is built; the
        // program is released only once they are. What the view hides is not taken.
        let roots = journaling::roots(&grants.write);
        let mut exclude = own.clone();
        exclude.extend(plan.mounts.iter().filter_map(|op| match op {
            cordon_sandbox::plan::MountOp::MaskFile { path }
            | cordon_sandbox::plan::MountOp::MaskDir { path } => Some(path.clone()),
            _ => None,
        }));
        journaling = Some(opening.take(request.command.join(" "), roots, exclude));
    }
    // The helper builds the view from here on, while the protected paths are recorded and
    // the decision made durable; the program starts only after both.
    let mut sent = None;
    if let Some(helper) = helper.as_mut() {
        let spec = LaunchSpec {
            command: request.command.clone(),
            cwd: real_path(&request.cwd),
            env: environment(&request, &grants, &home),
            plan,
            landlock: kernel.landlock_abi > 0,
            seccomp: kernel.seccomp,
        };
        sent = Some(helper.send(&spec));
        plan = spec.plan;
        tracing::debug!("specification sent after {:?}", started.elapsed());
    }
    Ok(Prepared {
        id,
        request,
        supervisor,
        consent,
        prompter,
        control,
        info,
        audit,
        grants,
        plan,
        degraded: missing.iter().map(|(f, _)| f.name()).collect(),
        kernel,
        helper,
        keeper,
        signals,
        sent,
        stdio,
        journaling,
        own,
        started,
    })
}

/// What the session says about itself, before its hosts are granted.
fn session_info(
    id: &str,
    request: &LaunchRequest,
    supervisor: &Supervisor,
    pid: i32,
) -> SessionInfo {
    SessionInfo {
        id: id.to_owned(),
        front_end: request.front_end.clone(),
        command: request.command.clone(),
        workspace: real_path(&request.cwd),
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        pid,
        cordon_pid: std::process::id(),
        cordon_key: protect::process_key("self"),
        granted_hosts: Vec::new(),
        audit_log: supervisor.audit_path().map(Path::to_path_buf),
        state: "starting".into(),
    }
}

/// The thread that starts the sandbox's helper and, once the session is over, reaps it. The
/// helper asks the kernel to kill it when its parent ends, and the kernel takes the thread
/// that spawned it for that parent, not the process: this thread lives as long as the
/// helper, so that a helper started beside the policy's loading does not die with a
/// short-lived thread. Dropped, it waits for the thread, and a helper it started and no one
/// took ends with it.
struct Keeper {
    started: Option<Receiver<Result<Helper, cordon_sandbox::SandboxError>>>,
    reaping: Option<SyncSender<Helper>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    /// Starts the helper (its cgroups made, its process spawned) on a thread of its own.
    fn start(kernel: Kernel, options: HelperOptions) -> Result<Self, LaunchError> {
        let (started_tx, started) = std::sync::mpsc::sync_channel(1);
        let (reaping, to_reap) = std::sync::mpsc::sync_channel::<Helper>(1);
        let thread = std::thread::Builder::new()
            .name("cordon-helper".into())
            .spawn(move || {
                let helper = Helper::start(&kernel, &options);
                // The program's pipes, held only by the helper from here on: the front-end
                // sees their end when the program's side closes.
                drop(options);
                let ok = helper.is_ok();
                if started_tx.send(helper).is_err() || !ok {
                    return;
                }
                // Until the session hands the helper back to be reaped, or gives it up.
                if let Ok(helper) = to_reap.recv() {
                    let _ = helper.wait();
                }
            })
            .map_err(|e| setup(format!("cannot start the sandbox helper: {e}")))?;
        Ok(Self {
            started: Some(started),
            reaping: Some(reaping),
            thread: Some(thread),
        })
    }

    /// The helper, once started.
    fn helper(&mut self) -> Result<Helper, LaunchError> {
        match self.started.take().map(|started| started.recv()) {
            Some(Ok(started)) => started.map_err(|e| setup(e.to_string())),
            Some(Err(_)) | None => Err(setup("the sandbox helper could not be started")),
        }
    }

    /// Has the keeper's thread reap `helper` (wait for its end and remove its cgroups), then
    /// end; here, when that thread is gone.
    fn reap(&mut self, helper: Helper) {
        let unsent = match self.reaping.take() {
            Some(reaping) => reaping.send(helper).err().map(|e| e.0),
            None => Some(helper),
        };
        if let Some(helper) = unsent {
            let _ = helper.wait();
        }
    }

    /// Waits for the keeper's thread to end (after [`Keeper::reap`], once the helper is
    /// reaped).
    fn join(&mut self) {
        drop(self.reaping.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        drop(self.started.take());
        self.join();
    }
}

/// The sandbox's helper, as every signal for it goes (a stop, the front-end's Ctrl-C, the
/// terminal's hang-up): through its pidfd, which reaches no other process once the helper
/// is reaped (its pid, free again, may be another process's by then, while cordon still
/// checks and records what the program left).
#[derive(Debug, Clone)]
pub(super) struct HelperSignals {
    pidfd: Arc<OwnedFd>,
}

impl HelperSignals {
    /// # Errors
    ///
    /// The kernel's refusal of a pidfd.
    fn open(pid: i32) -> std::io::Result<Self> {
        Ok(Self {
            pidfd: Arc::new(sys::pidfd_open(pid)?),
        })
    }

    pub(super) fn send(&self, signal: i32) -> std::io::Result<()> {
        sys::pidfd_signal(std::os::fd::AsFd::as_fd(&*self.pidfd), signal)
    }
}

/// Starts the session's control socket, describing it as `info`, `helper` ended by its stop;
/// a session without one still runs (`cordon ps` does not list it, and questions are
/// answered only by its other backends).
fn start_control(
    info: SessionInfo,
    helper: &HelperSignals,
    consent: &Arc<Broker>,
) -> Option<control::Control> {
    let stop = control::Stopper::Process(helper.clone());
    start_control_with(info, Some(stop), consent)
}

/// Starts the session's control socket, `stop` ending it.
fn start_control_with(
    info: SessionInfo,
    stop: Option<control::Stopper>,
    consent: &Arc<Broker>,
) -> Option<control::Control> {
    let id = info.id.clone();
    let started = control::Control::start(control::Target {
        info: std::sync::Mutex::new(info),
        stop,
        consent: Arc::clone(consent),
    });
    match started {
        Ok(control) => Some(control),
        Err(why) => {
            tracing::warn!(
                "session {id} has no control socket (`cordon ps` will not list it): {why}"
            );
            None
        }
    }
}

/// The session's consent broker: the backends chosen, the configured timeout, the
/// remembered answers' file, its questions and answers recorded in the audit log.
fn consent_broker(
    config: &CordonConfig,
    supervisor: &Arc<Supervisor>,
    id: &str,
    backends: Backends,
) -> Arc<Broker> {
    let recording = Arc::clone(supervisor);
    let consent = Capability::new("consent").unwrap_or_else(|_| Capability::sandbox());
    let recorder: crate::consent::Recorder = Box::new(move |_, input, decision, outcome| {
        recording
            .pipeline()
            .record_outcome(&consent, input, decision, outcome, false)
            .map_err(|e| error_chain(&e))
    });
    let timeout = config.consent.timeout_s.map_or(
        crate::consent::DEFAULT_TIMEOUT,
        std::time::Duration::from_secs,
    );
    let broker = Broker::new(
        id,
        backends,
        timeout,
        config.remembered_path().map(RememberedFile::at),
        Some(recorder),
    );
    if let Some(path) = config.mfa_path() {
        broker.set_mfa(crate::consent::MfaStore::at(path));
    }
    broker
}

/// Turns transparent huge pages off for this process and returns whether they were off
/// before (the first time it is called in this process), which a session's program gets
/// back. cordon's allocator asks for huge pages for all of its heap, and each thread a
/// session starts (audit writer, proxy, control socket) would zero 2 MiB at its first touch:
/// about a third of a launch. A front-end calls this first thing, before it allocates.
pub fn huge_pages_off_for_cordon() -> bool {
    static BEFORE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let before = *BEFORE.get_or_init(|| sys::huge_pages_disabled().unwrap_or(false));
    let _ = sys::set_huge_pages_disabled(true);
    before
}

/// The kernel features this launch lacks, each with why it matters.
fn missing_features(
    kernel: &Kernel,
    grants: &Grants,
    helper: Option<&mut Helper>,
) -> Vec<(Feature, String)> {
    let mut missing = Vec::new();
    if kernel.landlock_abi == 0 {
        missing.push((
            Feature::Landlock,
            "this kernel has no Landlock, so file access cannot be confined in the kernel".into(),
        ));
    } else if let Some(wanted) = grants.landlock_abi.filter(|w| kernel.landlock_abi < *w) {
        missing.push((
            Feature::Landlock,
            format!(
                "this kernel's Landlock is ABI {}, and the policy requires ABI {wanted} or newer",
                kernel.landlock_abi
            ),
        ));
    }
    if !kernel.seccomp {
        missing.push((
            Feature::Seccomp,
            "this kernel has no seccomp filters, so dangerous system calls stay open".into(),
        ));
    }
    if grants.limits.pids.is_some() || grants.limits.memory_bytes.is_some() {
        let capped = match helper {
            Some(helper) => helper.cap(&grants.limits),
            // A dry run changes nothing: it only checks cgroups could be made.
            None => kernel.cgroups.check().map_err(|e| e.to_string()),
        };
        if let Err(why) = capped {
            missing.push((
                Feature::Cgroups,
                format!("{why}, so the process and memory caps cannot hold"),
            ));
        }
    }
    missing
}

/// Asks the policy for the grant set; the decision is recorded by [`LaunchAudit::commit`].
fn decide(
    supervisor: &Arc<Supervisor>,
    consent: Option<&Arc<Broker>>,
    request: &LaunchRequest,
    own: &[PathBuf],
    requested: Value,
    kernel: &Kernel,
) -> Result<(LaunchAudit, Grants), LaunchError> {
    let mut launch = Request {
        action: "launch".into(),
        ..Request::default()
    };
    let resource = &mut launch.resource.extra;
    resource.insert("command".into(), json!(request.command));
    resource.insert("cwd".into(), json!(real_path(&request.cwd)));
    let asks_paths = !request.read.is_empty() || !request.write.is_empty();
    let context = &mut launch.context.extra;
    launch_context(context, requested, &request.env, own, asks_paths);
    context.insert("kernel".into(), kernel.to_json());
    context.insert(
        "machine".into(),
        json!({ "memory_bytes": physical_memory_bytes() }),
    );
    let about = crate::consent::About {
        capability: "sandbox",
        key: format!("sandbox:launch:{}", request.command.join(" ")),
        what: format!(
            "start `{}` with read {:?}, write {:?} and hosts {:?}",
            request.command.join(" "),
            request.read,
            request.write,
            request.net
        ),
    };
    let mut audit = decide_launch(supervisor, consent, &launch, &about)?;
    if !audit.decision.allow {
        audit.commit();
        return Err(refused(format!(
            "the policy refused to launch `{}`: {}",
            request.command[0],
            audit.decision.reasons.join("; ")
        ))
        .hint("see what the policy grants with `cordon exec --dry-run -- CMD`; ask for less, or change the policy"));
    }
    let grants = Grants::from_decision(audit.decision.grants.as_ref())
        .map_err(|reason| audit.refuse(Outcome::Refused, refused(reason)))?;
    Ok((audit, grants))
}

/// Decides a launch (`launch`, a request of the capability `sandbox`), asking `consent` what
/// the decision asks a person (a dry run asks no one); the decision is not recorded yet
/// ([`LaunchAudit::commit`]).
fn decide_launch(
    supervisor: &Arc<Supervisor>,
    consent: Option<&Arc<Broker>>,
    launch: &Request,
    about: &crate::consent::About<'_>,
) -> Result<LaunchAudit, LaunchError> {
    let capability = Capability::sandbox();
    let input = supervisor
        .pipeline()
        .builder()
        .build_for(&capability, launch)
        .map_err(|e| refused(e.to_string()))?;
    // A launch carries out consent and mfa (a person asked before anything starts).
    let unrecorded = supervisor
        .pipeline()
        .decide_unrecorded(&capability, input.clone())
        .require_carried(&["consent", "mfa"]);
    let unrecorded = match consent {
        Some(broker) => crate::consent::carry_out(broker, unrecorded, about, |_, _| {}),
        None => unrecorded,
    };
    Ok(LaunchAudit {
        supervisor: Arc::clone(supervisor),
        input: unrecorded.input().cloned().unwrap_or(input),
        decision: unrecorded.decision().clone(),
        pending: Some(unrecorded),
        committing: None,
    })
}

/// What every launch decision's context has: what the person asked for (`request`), the
/// names of the environment's variables (never their values; `env_credentials` names those
/// whose value carries credentials in a URL), whether cordon runs as root, the configuration
/// home, cordon's own paths, and the person's folders where paths are asked for.
fn launch_context(
    context: &mut serde_json::Map<String, Value>,
    requested: Value,
    env: &[(String, String)],
    own: &[PathBuf],
    asks_paths: bool,
) {
    let env_names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    let env_credentials: Vec<&str> = env
        .iter()
        .filter(|(_, value)| cordon_audit::url_credentials(value).next().is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    context.insert("request".into(), requested);
    context.insert("env".into(), json!(env_names));
    context.insert("as_root".into(), json!(sys::real_ids().0 == 0));
    if let Some(config_home) = dirs::config_dir() {
        context.insert("config_home".into(), json!(real_path(&config_home)));
    }
    context.insert("env_credentials".into(), json!(env_credentials));
    context.insert("cordon_paths".into(), json!(own));
    if asks_paths {
        context.insert("personal_dirs".into(), json!(personal_dirs()));
    }
}

/// The person's own folders as the desktop names them (`~/.config/user-dirs.dirs`, in
/// their language; the English names where it says nothing), links resolved, those that
/// exist: the policy asks before granting them, or a directory holding one.
fn personal_dirs() -> Vec<PathBuf> {
    let home = dirs::home_dir().map(|h| real_path(&h));
    let mut found: Vec<PathBuf> = [
        dirs::desktop_dir(),
        dirs::document_dir(),
        dirs::download_dir(),
        dirs::picture_dir(),
        dirs::video_dir(),
        dirs::audio_dir(),
    ]
    .into_iter()
    .flatten()
    .filter(|dir| dir.exists())
    .map(|dir| real_path(&dir))
    .filter(|dir| Some(dir) != home.as_ref() && dir != Path::new("/"))
    .collect();
    found.sort();
    found.dedup();
    found
}

/// The program's environment: what the policy keeps of the request's, the proxy's variables,
/// and the home where it really is (the view has no link leading to it).
fn environment(request: &LaunchRequest, grants: &Grants, home: &Path) -> Vec<(String, String)> {
    let kept: std::collections::BTreeSet<&str> = grants.env.iter().map(String::as_str).collect();
    let proxy_url = format!("http://127.0.0.1:{PROXY_PORT}");
    let socks_url = format!("socks5h://127.0.0.1:{PROXY_PORT}");
    let proxy_env = [
        ("HTTP_PROXY", &proxy_url),
        ("HTTPS_PROXY", &proxy_url),
        ("ALL_PROXY", &socks_url),
        ("http_proxy", &proxy_url),
        ("https_proxy", &proxy_url),
        ("all_proxy", &socks_url),
    ];
    let mut env: Vec<(String, String)> = request
        .env
        .iter()
        .filter(|(name, _)| kept.contains(name.as_str()))
        .filter(|(name, _)| {
            !proxy_env.iter().any(|(n, _)| n == name) && !name.eq_ignore_ascii_case("no_proxy")
        })
        .cloned()
        .collect();
    env.extend(
        proxy_env
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).clone())),
    );
    if let Some((_, value)) = env.iter_mut().find(|(name, _)| name == "HOME") {
        *value = home.display().to_string();
    }
    env.push(("NO_PROXY".into(), "localhost".into()));
    env.push(("no_proxy".into(), "localhost".into()));
    env
}

fn start(prepared: Prepared) -> Result<Running, LaunchError> {
    let Prepared {
        id,
        request,
        supervisor,
        consent,
        prompter,
        control,
        info,
        mut audit,
        grants,
        plan,
        kernel,
        helper,
        keeper,
        signals,
        sent,
        stdio,
        journaling,
        degraded,
        own,
        started,
    } = prepared;
    // Bound before the helper, so dropped after it on every way out: the helper's parent.
    let Some(keeper) = keeper else {
        return Err(setup("the sandbox helper was not started"));
    };
    let (Some(mut helper), Some(signals)) = (helper, signals) else {
        return Err(setup("the sandbox helper was not started"));
    };
    // Protected paths as they are before anything runs; compared after the run. cordon's own
    // directories are written by cordon itself during the run (the audit log): protected,
    // but not compared.
    let guarded: Vec<_> = plan
        .guarded
        .iter()
        .filter(|g| !own.iter().any(|o| g.path.starts_with(o)))
        .cloned()
        .collect();
    let guard = Guard::record_with_repositories(&guarded, &plan.repos);
    tracing::debug!("protected paths recorded after {:?}", started.elapsed());
    // Saved until checked: if cordon is killed before the program's end, the next launch
    // does the check.
    let pending = protect::Pending::save(&guard, &id);
    tracing::debug!("check saved after {:?}", started.elapsed());
    let sent = sent.unwrap_or_else(|| Err(std::io::Error::other("it was never sent")));
    if !audit.commit() {
        pending.done();
        return Err(setup(format!(
            "the launch of `{}` was refused: {}",
            request.command[0],
            audit.decision.reasons.join("; ")
        )));
    }
    tracing::debug!("decision recorded after {:?}", started.elapsed());
    let fail = |audit: &mut LaunchAudit, pending: protect::Pending, outcome, error| {
        pending.done();
        audit.refuse(outcome, error)
    };
    // The sandbox could not be built: with `--stage`, the stage may be why.
    let staged = request.stage.is_some();
    let not_built = |why: String| {
        let error = setup(why);
        if staged {
            error.hint("`--stage` needs the journal on a file system that can hold an overlay's upper directory (ext4, xfs, btrfs, tmpfs; and idmapped mounts when cordon runs as root); run without `--stage`")
        } else {
            error
        }
    };
    // The proxy serves the listening socket the helper made inside the sandbox. The hosts the
    // sandbox decision granted (the person's requests, as the policy let them through) are
    // what the proxy's decisions see as requested.
    let granted_net = match grants
        .net
        .iter()
        .map(|entry| cordon_egress::normalize_allow_entry(entry))
        .collect::<Result<Vec<_>, String>>()
    {
        Ok(granted) => granted,
        Err(err) => {
            let error = refused(format!("malformed `grants.net`: {err}"));
            return Err(fail(&mut audit, pending, Outcome::Refused, error));
        }
    };
    if let Err(reason) = sent {
        // The helper ended before it took the spec: its status says why.
        let why = match helper.read_status() {
            Ok(Some(Status::Setup(message) | Status::Exec(message))) => message,
            _ => format!("cannot send the launch specification: {reason}"),
        };
        let error = not_built(format!("cannot set up the sandbox: {why}"));
        return Err(fail(&mut audit, pending, Outcome::Failed, error));
    }
    let proxy = match helper
        .receive_proxy()
        .and_then(|listener| serve_proxy(&supervisor, &consent, listener, granted_net.clone()))
    {
        Ok(proxy) => proxy,
        Err(reason) => return Err(fail(&mut audit, pending, Outcome::Failed, setup(reason))),
    };
    let mut info = info.unwrap_or_else(|| session_info(&id, &request, &supervisor, helper.pid()));
    info.granted_hosts = granted_net;
    info.state = "running".into();
    let control = match control {
        Some(control) => {
            if let Err(why) = control.update(info.clone()) {
                tracing::warn!("session {id}: cannot update its description: {why}");
            }
            Some(control)
        }
        None => start_control(info.clone(), &signals, &consent),
    };
    if control.as_ref().is_some_and(control::Control::stopped) {
        let error = setup("the session was stopped before its program started");
        return Err(fail(&mut audit, pending, Outcome::Refused, error));
    }
    let Some(journaling) = journaling else {
        return Err(setup("the journal was not started"));
    };
    let mut journal = match journaling.join() {
        Ok(journal) => journal.map(|(journal, taken)| {
            tracing::info!("{}", journaling::describe(&taken));
            journal
        }),
        Err(why) => {
            let error = setup(why).hint("`--no-journal` (or `[journal] enabled = false`) runs without journaling, and without undo");
            return Err(fail(&mut audit, pending, Outcome::Failed, error));
        }
    };
    tracing::debug!("writable trees taken after {:?}", started.elapsed());
    let (relay, released) = match helper.release() {
        Ok(master) => (
            master.map(|m| terminal::TerminalRelay::start(m, signals.clone(), prompter)),
            Ok(()),
        ),
        Err(err) => (None, Err(err)),
    };
    if request.forward_signals {
        terminal::forward_signals(signals.clone(), relay.as_ref().map(|r| r.master.clone()));
    }
    // A stop that came while the program was being released: it ends now.
    if control.as_ref().is_some_and(control::Control::stopped) {
        let _ = signals.send(libc::SIGTERM);
    }
    let status = helper.read_status();
    tracing::debug!("program executed after {:?}", started.elapsed());
    // A program that was never executed changed nothing: its session is not kept in the
    // journal, where the next launch would record others' changes as its own.
    let mut never_ran = || {
        if let Some(journal) = journal.take() {
            journal.forget();
        }
    };
    let status = match (status, released) {
        (Ok(None), Err(err)) => {
            never_ran();
            Err(format!("cannot release the program: {err}"))
        }
        (Ok(None), Ok(_)) => Ok(()),
        (Ok(Some(Status::Setup(message))), _) => {
            never_ran();
            Err(format!("cannot set up the sandbox: {message}"))
        }
        (Ok(Some(Status::Exec(message))), _) => {
            never_ran();
            let exit = helper.wait();
            if let Some(relay) = relay {
                relay.finish();
            }
            pending.done();
            audit.record(
                Outcome::Failed,
                json!({ "exit_code": exit, "error": message }),
            );
            let kind = match exit {
                NOT_FOUND => ErrorKind::NotFound,
                CANNOT_EXECUTE => ErrorKind::CannotExecute,
                _ => ErrorKind::SetupFailed,
            };
            return Err(LaunchError::new(kind, message));
        }
        (Err(err), _) => Err(err.to_string()),
    };
    if let Err(why) = status {
        let _ = helper.wait();
        if let Some(relay) = relay {
            relay.finish();
        }
        return Err(fail(&mut audit, pending, Outcome::Failed, not_built(why)));
    }
    Ok(Running {
        info,
        helper,
        keeper,
        signals,
        audit,
        guard,
        pending,
        journal,
        stage: request.stage,
        config: request.config.clone(),
        relay,
        control,
        kernel,
        degraded,
        started,
        stdio,
        consent,
        proxy,
    })
}

/// The egress proxy of a session, served on a runtime of its own until this is dropped.
pub(super) struct ProxyServer {
    /// Dropped first: the proxy stops accepting and ends its connections.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The session's questions: closed first, so that a decision waiting for a person
    /// ends (denied, on the record) instead of outliving the session.
    consent: Arc<Broker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a session's end waits for decisions its proxy still makes (a name being
/// resolved) before it leaves them behind.
const PROXY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Drop for ProxyServer {
    /// Ends the proxy: what waits for a person is denied and recorded, the connections end,
    /// decisions still being made get [`PROXY_GRACE`] to be recorded; the proxy then lets go
    /// of the session (its audit log, its policy, the sandbox's network namespace, which its
    /// listening socket keeps).
    fn drop(&mut self) {
        self.consent.close();
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves the proxy's listening socket on a runtime of its own, until the returned
/// [`ProxyServer`] is dropped.
fn serve_proxy(
    supervisor: &Arc<Supervisor>,
    consent: &Arc<Broker>,
    listener: std::net::TcpListener,
    requested: Vec<String>,
) -> Result<ProxyServer, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot set up the proxy socket: {e}"))?;
    let gate: Arc<dyn cordon_egress::Gate> =
        Arc::new(PipelineGate::new(Arc::clone(supervisor)).with_consent(Arc::clone(consent)));
    let options = cordon_egress::ProxyOptions {
        requested,
        ..cordon_egress::ProxyOptions::default()
    };
    // One thread serves every connection; decisions (which may wait for a person) run on
    // the runtime's blocking threads, made when needed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("cordon-proxy")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the proxy: {e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("cordon-proxy".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::error!("cannot serve the proxy socket: {err}");
                        return;
                    }
                };
                let serve = cordon_egress::Proxy::new(gate, options).serve(listener);
                // The sender dropped (the session over) ends the wait with an error.
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
            // The connections' tasks are dropped with the runtime; a decision still being
            // made on a blocking thread is given a moment to be recorded.
            runtime.shutdown_timeout(PROXY_GRACE);
        })
        .map_err(|e| format!("cannot start the proxy: {e}"))?;
    Ok(ProxyServer {
        stop: Some(stop),
        consent: Arc::clone(consent),
        thread: Some(thread),
    })
}

/// A program running in its sandbox.
pub struct Running {
    info: SessionInfo,
    helper: Helper,
    /// Dropped after the helper: the helper's parent for the kernel.
    keeper: Keeper,
    signals: HelperSignals,
    audit: LaunchAudit,
    guard: Guard,
    pending: protect::Pending,
    journal: Option<journaling::Journaling>,
    /// The stage's mode, with `--stage`, and the configuration that finds the journal.
    stage: Option<StageMode>,
    config: CordonConfig,
    relay: Option<terminal::TerminalRelay>,
    control: Option<control::Control>,
    kernel: Kernel,
    degraded: Vec<&'static str>,
    started: std::time::Instant,
    /// The front-end's ends of the program's input and output, until taken.
    stdio: Option<(std::fs::File, std::fs::File)>,
    /// Who the session's questions go to.
    consent: Arc<Broker>,
    /// The session's egress proxy, served until the session ends.
    proxy: ProxyServer,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("info", &self.info)
            .field("degraded", &self.degraded)
            .finish_non_exhaustive()
    }
}

/// How a session ended.
#[derive(Debug, Clone, Serialize)]
pub struct Ended {
    /// The session's id.
    pub id: String,
    /// The program's exit status (128+N when killed by signal N).
    pub exit_code: i32,
    /// What the after-run check found on protected paths.
    pub protected: Vec<Finding>,
    /// How many changes of the writable trees were journaled; `None` when journaling is
    /// off or the changes could not be recorded.
    pub journaled: Option<usize>,
    /// With `--stage`: what the stage holds, and whether it was applied.
    pub staged: Option<StagedOutcome>,
    /// Trees `.gitignore` left out of the journal (not undoable), at most a few.
    pub left_out: Vec<PathBuf>,
}

impl Running {
    /// The program's standard input (to write to) and output (to read from), with
    /// [`LaunchRequest::piped`]; once.
    pub fn take_stdio(&mut self) -> Option<(std::fs::File, std::fs::File)> {
        self.stdio.take()
    }

    /// The session's id (`context.session` of its audit records).
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The session's policy and audit log: what the front-end decides for the session
    /// (with [`LaunchRequest::decides`]) is recorded with its id.
    pub fn supervisor(&self) -> Arc<Supervisor> {
        Arc::clone(&self.audit.supervisor)
    }

    /// The session's consent broker: what the front-end decides with a `consent` or `mfa`
    /// obligation is asked of the person the way the session's own questions are (and
    /// answered on its control socket).
    pub fn consent(&self) -> Arc<Broker> {
        Arc::clone(&self.consent)
    }

    /// What the session says about itself.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Sends `signal` to the program (through its helper, which passes it on).
    ///
    /// # Errors
    ///
    /// The kernel's refusal (`ESRCH` once the sandbox has ended).
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        self.signals.send(signal)
    }

    /// Waits for the program's end, checks the protected paths, records the outcome.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ProtectedPathsUnresolved`] when the program left changes on protected
    /// paths that could not be moved aside: the run does not end as a success, whatever the
    /// program's own status.
    pub fn wait(self) -> Result<Ended, LaunchError> {
        let Running {
            info,
            mut helper,
            mut keeper,
            signals,
            mut audit,
            guard,
            pending,
            journal,
            stage,
            config,
            relay,
            control,
            kernel,
            degraded,
            started,
            stdio,
            consent: _,
            proxy,
        } = self;
        // The front-end's ends close before the wait: a program reading its input sees the end.
        drop(stdio);
        // Everything in the sandbox has ended; the helper takes the namespaces down while the
        // checks below run.
        let exit = helper.ended();
        // The helper's end, and its cgroups removed, on its keeper's thread while the checks
        // run.
        keeper.reap(helper);
        drop(signals);
        if let Some(relay) = relay {
            relay.finish();
        }
        drop(control);
        // Everything in the sandbox has ended: its proxy ends, and what it was deciding is
        // recorded before the session's outcome.
        drop(proxy);
        tracing::debug!("program ended after {:?}", started.elapsed());
        pending.stop();
        let protected = protect::check_protected(&guard, None);
        tracing::debug!("protected paths checked after {:?}", started.elapsed());
        pending.done();
        let journaled = journal.map(journaling::Journaling::end);
        // The stage is applied (or kept) once the session's journal is closed.
        let staged = stage.map(|mode| journaling::finish_stage(&config, &info.id, mode, exit));
        tracing::debug!("changes journaled after {:?}", started.elapsed());
        let journal_record = match &journaled {
            None => json!(null),
            Some(Ok(found)) => json!({ "changes": found.changes.len() }),
            Some(Err(why)) => {
                tracing::error!("{why}; the next launch journals them");
                json!({ "error": why })
            }
        };
        audit.record(
            Outcome::Performed,
            json!({
                "exit_code": exit,
                "degraded": degraded,
                "protected": protected,
                "landlock": kernel.landlock_record(),
                "journal": journal_record,
                "staged": staged,
            }),
        );
        tracing::debug!("outcome recorded after {:?}", started.elapsed());
        keeper.join();
        if protected.iter().any(|f| f.action == Action::Unresolved) {
            return Err(LaunchError::new(
                ErrorKind::ProtectedPathsUnresolved,
                "the program left changes on protected paths that could not be moved aside; look at them before running anything there (see the errors above)",
            ));
        }
        Ok(Ended {
            id: info.id,
            exit_code: exit,
            protected,
            left_out: journaled
                .as_ref()
                .and_then(|j| j.as_ref().ok())
                .map(|found| {
                    found
                        .taken
                        .iter()
                        .flat_map(|t| t.left_out.iter().map(|rel| t.root.join(rel)))
                        .take(5)
                        .collect()
                })
                .unwrap_or_default(),
            journaled: journaled
                .and_then(Result::ok)
                .map(|found| found.changes.len()),
            staged,
        })
    }
}

/// This machine's physical memory (`MemTotal` of /proc/meminfo); 0 when it cannot be read,
/// and the policy then falls back to its fixed cap.
fn physical_memory_bytes() -> u64 {
    fs_err::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(0)
}

/// Makes each requested path absolute and real; a path that does not exist is an error.
fn resolve_all(paths: &[PathBuf], cwd: &Path) -> Result<Vec<PathBuf>, LaunchError> {
    paths
        .iter()
        .map(|path| {
            let absolute = cwd.join(crate::expand_home(path));
            let real = fs_err::canonicalize(&absolute).map_err(|_| {
                refused(format!(
                    "cannot grant `{}`: it does not exist",
                    path.display()
                ))
            })?;
            if real.to_str().is_none() {
                return Err(refused(format!(
                    "cannot grant `{}`: its name is not UTF-8, which cordon's decisions and records cannot carry",
                    real.display()
                )));
            }
            Ok(real)
        })
        .collect()
}
