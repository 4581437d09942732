//! Skill sessions: a WebAssembly component run in this process under Wasmtime, a session
//! like a native one (an id, a recorded launch decision, a control socket, `cordon ps`),
//! with every file call and request of the skill decided when it happens.
//!
//! ```text
//! run(SkillRequest)
//!   read the skill; its SHA-256 is its identity
//!   load the policy, decide `sandbox` for the skill ──── directories, hosts, variables, limits
//!   record the decision; serve the control socket
//!   compile (or take from the cache) and link ───────── a component importing what cordon
//!                                                       does not provide is refused
//!   run: each open and change under data.cordon.file, each request, lookup and socket under
//!   data.cordon.net, all recorded with the skill's name and digest
//!   record the outcome (exit status, a limit reached) ─── SkillEnded
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cordon_skills::{
    CacheUse, Called, Exit, Function, Limits, Preopen, Prepared, Run, Runtime, RuntimeOptions,
    Sink, SkillFile,
};
use cordon_types::{error_chain, Capability, Outcome, Request};
use serde_json::{json, Value};

use super::{
    consent_broker, control, decide_launch, launch_context, new_id, process_env, protect, refused,
    resolve_all, setup, start_control_with, terminal, ErrorKind, LaunchError, SessionInfo,
};
use crate::consent::Backends;
use crate::{real_path, CordonConfig, PipelineGate, Supervisor};

/// A directory the person asks to give a skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRequest {
    /// The directory on this machine (relative to the working directory, `~` expanded).
    pub host: PathBuf,
    /// The name the skill sees it by (default: `host` as written).
    pub guest: Option<String>,
    /// Whether the skill asks to change what is in it.
    pub writable: bool,
}

/// What skill to run, and what the person asks for it. Directories and hosts are requests:
/// the policy (`data.cordon.sandbox`, with the skill's identity) decides.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SkillRequest {
    /// cordon's configuration (policy, audit log, consent).
    pub config: CordonConfig,
    /// The component (`.wasm`).
    pub skill: PathBuf,
    /// Its arguments (the skill's name goes before them).
    pub args: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// The directories it asks for.
    pub dirs: Vec<DirRequest>,
    /// The hosts it asks to reach: `HOST` or `HOST:PORT`.
    pub net: Vec<String>,
    /// The environment variables to pass, by name (their values from `env`).
    pub keep_env: Vec<String>,
    /// The environment the skill's is taken from.
    pub env: Vec<(String, String)>,
    /// Whether the skill reads this process's standard input.
    pub stdin: bool,
    /// Limits tighter than the policy's, for this run.
    pub limits: Option<Limits>,
    /// Where compiled skills are kept (`None`: compiled every time).
    pub cache_dir: Option<PathBuf>,
    /// The front-end's name, shown by `cordon ps`.
    pub front_end: String,
    /// End this process when a stopped or timed-out skill stays blocked in a host call for
    /// the grace period (a command-line front-end; a library caller keeps its process).
    pub end_process_when_stuck: bool,
}

impl SkillRequest {
    /// A request to run `skill` with `args` in `cwd` with nothing more asked for, taking the
    /// environment of this process and cordon's cache directory.
    pub fn new(config: CordonConfig, skill: PathBuf, args: Vec<String>, cwd: PathBuf) -> Self {
        Self {
            config,
            skill,
            args,
            cwd,
            dirs: Vec::new(),
            net: Vec::new(),
            keep_env: Vec::new(),
            env: process_env(),
            stdin: true,
            limits: None,
            cache_dir: dirs::cache_dir().map(|dir| dir.join("cordon").join("skills")),
            front_end: "library".into(),
            end_process_when_stuck: false,
        }
    }
}

/// The public keys the policy trusts to sign skills: `data.cordon.settings.skills.trusted_keys`,
/// an object of names to hexadecimal Ed25519 public keys.
fn trusted_keys(supervisor: &Supervisor) -> Vec<(String, String)> {
    let keys = supervisor
        .policy()
        .data_at(&["cordon", "settings", "skills", "trusted_keys"]);
    keys.and_then(|keys| keys.as_object().cloned())
        .map(|keys| {
            keys.into_iter()
                .filter_map(|(name, key)| Some((name, key.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// How long a stopped skill blocked in a host call has to return before its process ends.
const STUCK_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends the process when the run is stopped, or outlives `wall`, and does not finish within
/// [`STUCK_GRACE`]; the outcome is recorded first.
fn watch_stuck(
    stop: &Arc<AtomicBool>,
    finished: &Arc<AtomicBool>,
    wall: std::time::Duration,
    (supervisor, input, decision): (Arc<Supervisor>, Value, cordon_types::Decision),
) {
    let (stop, finished) = (Arc::clone(stop), Arc::clone(finished));
    let began = std::time::Instant::now();
    let spawned = std::thread::Builder::new()
        .name("cordon-skill-watch".into())
        .spawn(move || {
            let tick = std::time::Duration::from_millis(50);
            while !stop.load(Ordering::SeqCst) && began.elapsed() < wall {
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(tick);
            }
            let ended = std::time::Instant::now();
            while ended.elapsed() < STUCK_GRACE {
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(tick);
            }
            let why = if stop.load(Ordering::SeqCst) {
                "stopped on request"
            } else {
                "the time limit was reached"
            };
            let message = format!(
                "skill {why}, and it did not return from a host call (a wait) within {} s: ended",
                STUCK_GRACE.as_secs()
            );
            end_stuck(&(supervisor, input, decision), &message);
        });
    if let Err(err) = spawned {
        tracing::warn!("a stuck skill cannot be ended: {err}");
    }
}

/// Records the session's outcome as failed for `message` and ends the process: a skill is
/// blocked in a host call no stop reaches.
fn end_stuck(
    (supervisor, input, decision): &(Arc<Supervisor>, Value, cordon_types::Decision),
    message: &str,
) -> ! {
    let mut input = input.clone();
    input["result"] = json!({ "exit_code": 1, "stopped": message });
    if let Err(err) = supervisor.pipeline().record_outcome(
        &Capability::sandbox(),
        input,
        decision.clone(),
        Outcome::Failed,
        true,
    ) {
        tracing::error!("cannot record the outcome of the skill: {err}");
    }
    // Said where it can be; a standard error nobody reads must not keep the skill running.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "cordon: {message}");
    std::process::exit(1);
}

/// Which of cordon's streams.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// A skill's output on cordon's own stream: through the terminal filter where that is a
/// terminal (no clipboard writes, no answers typed back), as it is elsewhere.
fn output(stream: Stream) -> Sink {
    use std::io::IsTerminal;
    let terminal = match stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    match (terminal, stream) {
        (false, Stream::Stdout) => Sink::Stdout,
        (false, Stream::Stderr) => Sink::Stderr,
        (true, stream) => Sink::Writer(Arc::new(std::sync::Mutex::new(Filtered {
            filter: super::terminal_filter::Filter::default(),
            stream,
        }))),
    }
}

/// Writes what passes the terminal filter.
struct Filtered {
    filter: super::terminal_filter::Filter,
    stream: Stream,
}

impl std::io::Write for Filtered {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut clean = Vec::with_capacity(buf.len());
        self.filter.push(buf, &mut clean);
        match self.stream {
            Stream::Stdout => std::io::stdout().lock().write_all(&clean)?,
            Stream::Stderr => std::io::stderr().lock().write_all(&clean)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.stream {
            Stream::Stdout => std::io::stdout().flush(),
            Stream::Stderr => std::io::stderr().flush(),
        }
    }
}

/// How a skill session ended.
#[derive(Debug, Clone)]
pub struct SkillEnded {
    /// The session's id.
    pub id: String,
    /// The skill's SHA-256.
    pub sha256: String,
    /// How the run ended: exit status, a limit reached.
    pub exit: Exit,
    /// The directories the skill was given.
    pub preopens: Vec<Preopen>,
    /// Where its compiled code came from.
    pub cache: CacheUse,
    /// How many changes of its writable directories were journaled; `None` when nothing
    /// was journaled (journaling off, nothing writable) or the changes could not be recorded.
    pub journaled: Option<usize>,
}

/// What a skill launch decision grants.
#[derive(Debug, Default)]
struct SkillGrants {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    net: Vec<String>,
    env: Vec<String>,
    limits: Limits,
}

impl SkillGrants {
    /// Reads `data.cordon.sandbox.decision.grants` for a skill; anything malformed refuses.
    fn from_decision(grants: Option<&Value>) -> Result<Self, String> {
        let grants = grants
            .and_then(Value::as_object)
            .ok_or("the launch decision allows but grants nothing (`grants` is not an object)")?;
        let strings = |key: &str| -> Result<Vec<String>, String> {
            match grants.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("`grants.{key}` holds a non-string: {item}"))
                    })
                    .collect(),
                Some(other) => Err(format!("`grants.{key}` is not a list: {other}")),
            }
        };
        let defaults = Limits::default();
        let limits = grants.get("limits").cloned().unwrap_or(json!({}));
        let limit = |key: &str, default: u64| -> Result<u64, String> {
            match limits.get(key) {
                None => Ok(default),
                Some(value) => value
                    .as_u64()
                    .ok_or_else(|| format!("`grants.limits.{key}` is not a whole number: {value}")),
            }
        };
        Ok(Self {
            read: strings("read")?.into_iter().map(PathBuf::from).collect(),
            write: strings("write")?.into_iter().map(PathBuf::from).collect(),
            net: strings("net")?,
            env: strings("env")?,
            limits: Limits {
                memory_bytes: limit("memory_bytes", defaults.memory_bytes)?,
                cpu: std::time::Duration::from_millis(limit(
                    "cpu_ms",
                    u64::try_from(defaults.cpu.as_millis()).unwrap_or(u64::MAX),
                )?),
                output_bytes: limit("output_bytes", defaults.output_bytes)?,
                wall: std::time::Duration::from_millis(limit(
                    "wall_ms",
                    u64::try_from(defaults.wall.as_millis()).unwrap_or(u64::MAX),
                )?),
            },
        })
    }
}

/// Runs a skill as a session: decides, records, compiles, runs with every call decided,
/// and records how it ended.
///
/// # Errors
///
/// A [`LaunchError`]: the skill not found (127), not a runnable component (126), refused
/// by the policy, or not set up (125). A skill that fails or reaches a limit is not an
/// error: see [`SkillEnded::exit`].
pub fn run(request: SkillRequest) -> Result<SkillEnded, LaunchError> {
    session(request, false, |session| {
        session
            .runtime
            .run(session.prepared, session.run.clone())
            .map_err(|e| setup(e.to_string()))
    })
}

/// A skill whose exported functions are called as tools, in a session: what it offers, and
/// a way to call each function (in an instance of its own, its limits and grants those of
/// the session's launch decision).
pub struct Functions<'a> {
    supervisor: &'a Arc<Supervisor>,
    consent: &'a Arc<crate::consent::Broker>,
    runtime: &'a Runtime,
    prepared: &'a Prepared,
    run: Run,
    id: &'a str,
    /// The processor time the calls took, in microseconds.
    cpu_us: std::sync::atomic::AtomicU64,
    /// What records the session's end, should a call never return.
    launch: (Arc<Supervisor>, Value, cordon_types::Decision),
}

impl std::fmt::Debug for Functions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Functions")
            .field("id", &self.id)
            .field("skill", self.prepared.skill())
            .finish_non_exhaustive()
    }
}

impl Functions<'_> {
    /// The session's supervisor: its policy (`tool` among the capabilities it decides), its
    /// audit log, its id on every record.
    pub fn supervisor(&self) -> &Arc<Supervisor> {
        self.supervisor
    }

    /// The session's consent broker.
    pub fn consent(&self) -> Arc<crate::consent::Broker> {
        Arc::clone(self.consent)
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        self.id
    }

    /// The skill.
    pub fn skill(&self) -> &SkillFile {
        self.prepared.skill()
    }

    /// The functions it offers.
    pub fn functions(&self) -> &[Function] {
        self.prepared.functions()
    }

    /// How long one call may take, waiting included (the policy's limit).
    pub fn time_limit(&self) -> std::time::Duration {
        self.run.limits.wall
    }

    /// Records that the session ended because a call is blocked in a host call that no stop
    /// reaches (`why`), and ends this process: nothing else ends the call.
    pub fn end_stuck(&self, why: &str) -> ! {
        end_stuck(&self.launch, why)
    }

    /// Whether the session was stopped (`cordon stop`): no call runs any longer.
    pub fn stopped(&self) -> bool {
        self.run.stop.load(Ordering::SeqCst)
    }

    /// Calls `function` with `arguments`, every file it opens and request it makes decided
    /// as the session's grants say; `stop` ends it. A stop of the session reaches a call
    /// through its caller, which sets `stop` when [`Functions::stopped`] says so (the MCP
    /// server does for every call it runs). Returns how it ended, and what it wrote on its
    /// standard output and its standard error.
    ///
    /// # Errors
    ///
    /// The arguments do not fit the function, or the call cannot be set up.
    pub fn call(
        &self,
        function: &Function,
        arguments: &Value,
        stop: &Arc<AtomicBool>,
    ) -> Result<(Called, Vec<u8>, Vec<u8>), cordon_skills::Error> {
        if self.stopped() {
            return Err(cordon_skills::Error::Setup(
                "the session was stopped".into(),
            ));
        }
        let output = Arc::new(std::sync::Mutex::new(Vec::new()));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut run = self.run.clone();
        run.stdout = Sink::Memory(Arc::clone(&output));
        run.stderr = Sink::Memory(Arc::clone(&errors));
        run.stop = Arc::clone(stop);
        let called = self.runtime.call(self.prepared, function, arguments, run);
        let written = output.lock().map(|o| o.clone()).unwrap_or_default();
        let complained = errors.lock().map(|o| o.clone()).unwrap_or_default();
        if let Ok(called) = &called {
            let us = u64::try_from(called.exit.cpu.as_micros()).unwrap_or(u64::MAX);
            self.cpu_us.fetch_add(us, Ordering::SeqCst);
        }
        called.map(|called| (called, written, complained))
    }
}

/// Serves a skill's exported functions as a session: decides its launch (its directories,
/// hosts and limits) and records it, compiles it, then hands `serve` the [`Functions`] it
/// offers until `serve` returns; records how the session ended.
///
/// # Errors
///
/// A [`LaunchError`] as [`run`]'s; a component that exports no function callable as a tool
/// cannot execute (126). What `serve` returns as an error is recorded as the session's failure.
pub fn serve(
    request: SkillRequest,
    serve: impl FnOnce(&Functions<'_>) -> Result<(), String>,
) -> Result<SkillEnded, LaunchError> {
    session(request, true, |functions| {
        let served = serve(functions);
        let cpu = std::time::Duration::from_micros(functions.cpu_us.load(Ordering::SeqCst));
        Ok(match served {
            Ok(()) if functions.stopped() => Exit {
                code: 1,
                stopped: Some(cordon_skills::Stopped::Requested),
                cpu,
            },
            Ok(()) => Exit {
                code: 0,
                stopped: None,
                cpu,
            },
            Err(why) => Exit {
                code: 1,
                stopped: Some(cordon_skills::Stopped::Trap(why)),
                cpu,
            },
        })
    })
}

/// A skill session: launch decided and recorded, the skill prepared (as a command, or as
/// `functions`), `body` run with it, the outcome recorded.
fn session(
    request: SkillRequest,
    functions: bool,
    body: impl FnOnce(&Functions<'_>) -> Result<Exit, LaunchError>,
) -> Result<SkillEnded, LaunchError> {
    let skill = SkillFile::read(&request.skill).map_err(|err| match &err {
        cordon_skills::Error::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            LaunchError::new(ErrorKind::NotFound, err.to_string())
        }
        cordon_skills::Error::Read { .. } => refused(err.to_string()),
        _ => LaunchError::new(ErrorKind::CannotExecute, err.to_string()),
    })?;
    let id = new_id();
    let hosts: Vec<PathBuf> = request.dirs.iter().map(|d| d.host.clone()).collect();
    let resolved = resolve_all(&hosts, &request.cwd)?;
    let net = super::allow_entries(&request.net)?;
    let [stdin_terminal, _, stderr_terminal] = terminal::streams_on_terminal();
    let session_bus = request
        .env
        .iter()
        .any(|(name, value)| name == "DBUS_SESSION_BUS_ADDRESS" && !value.is_empty());
    let backends = Backends::parse_with(
        request.config.consent.backend.as_deref().unwrap_or("auto"),
        // Serving functions, standard input carries the protocol: no answer is read there.
        stdin_terminal && stderr_terminal && !functions,
        session_bus,
    )
    .map_err(refused)?;
    let decides: &[&str] = if functions {
        &["sandbox", "file", "net", "clipboard", "tool"]
    } else {
        &["sandbox", "file", "net", "clipboard"]
    };
    let started = Supervisor::start_session(&request.config, decides, &id, &request.cwd)
        .map_err(|e| setup(format!("cannot start cordon: {}", error_chain(&e))))?
        .with_context("consent", backends.context());
    // The launch is decided with no workspace: a skill is given only what it asks for.
    let supervisor = Arc::new(started.with_workspace(Vec::new()));
    let consent = consent_broker(&request.config, &supervisor, &id, backends);
    if consent
        .backends()
        .list()
        .contains(&crate::consent::Backend::Terminal)
    {
        let prompter = Arc::new(terminal::TerminalPrompter::default());
        consent.add_prompter(prompter.clone());
        prompter.start();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut command = vec![request.skill.display().to_string()];
    command.extend(request.args.iter().cloned());
    let mut info = SessionInfo {
        id: id.clone(),
        front_end: request.front_end.clone(),
        command,
        workspace: real_path(&request.cwd),
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        cordon_pid: std::process::id(),
        cordon_key: protect::process_key("self"),
        granted_hosts: Vec::new(),
        audit_log: supervisor.audit_path().map(std::path::Path::to_path_buf),
        state: "starting".into(),
    };
    let control = start_control_with(
        info.clone(),
        Some(control::Stopper::Flag(stop.clone())),
        &consent,
    );

    // The launch decision.
    let own = protect::own_paths(&request.config, &supervisor);
    let (mut read, mut write) = (Vec::new(), Vec::new());
    for (dir, path) in request.dirs.iter().zip(&resolved) {
        if dir.writable {
            write.push(path.clone());
        } else {
            read.push(path.clone());
        }
    }
    let requested = json!({
        "read": read,
        "write": write,
        "net": net,
        "keep_env": request.keep_env,
        "broad_write": false,
    });
    // Who the skill is: its digest, who signed it (a signature that is there and does not
    // hold refuses the skill, whatever the policy says), what it imports and declares.
    let inspection = cordon_skills::identity::inspect(&skill)
        .map_err(|e| LaunchError::new(ErrorKind::CannotExecute, e.to_string()))?;
    let signed = cordon_skills::identity::signed_by(&skill, &trusted_keys(&supervisor));
    let identity = cordon_types::Skill {
        name: skill.name().to_owned(),
        sha256: Some(skill.sha256().to_owned()),
        signed_by: signed.clone().ok().flatten(),
    };
    let mut launch = Request {
        action: "launch".into(),
        ..Request::default()
    };
    launch.subject.skill = Some(identity.clone());
    let resource = &mut launch.resource.extra;
    resource.insert("skill".into(), json!(real_path(skill.path())));
    resource.insert("imports".into(), json!(inspection.imports));
    resource.insert("declared".into(), json!(inspection.declared));
    if let Err(why) = &signed {
        resource.insert("signature_error".into(), json!(why));
    }
    launch.resource.sha256 = Some(skill.sha256().to_owned());
    launch_context(
        &mut launch.context.extra,
        requested,
        &request.env,
        &own,
        !request.dirs.is_empty(),
    );
    let about = crate::consent::About {
        capability: "sandbox",
        key: format!("sandbox:skill:{}", skill.sha256()),
        what: format!(
            "run skill `{}` with directories {:?} and hosts {:?}",
            skill.name(),
            resolved,
            request.net
        ),
    };
    let mut audit = decide_launch(&supervisor, Some(&consent), &launch, &about)?;
    if !audit.commit() {
        return Err(refused(format!(
            "the policy refused to run skill `{}`: {}",
            skill.name(),
            audit.decision.reasons.join("; ")
        ))
        .hint("ask for less (fewer or narrower --dir), or change the policy"));
    }
    if let Err(why) = signed {
        return Err(audit.refuse(
            Outcome::Refused,
            refused(format!("refusing skill `{}`: {why}", skill.name())).hint(
                "sign the skill again with `cordon skill sign`, or remove the stale signature",
            ),
        ));
    }
    let grants = SkillGrants::from_decision(audit.decision.grants.as_ref())
        .map_err(|why| audit.refuse(Outcome::Refused, refused(why)))?;

    // What the decision gave: each directory asked for, writable only where granted so.
    let mut preopens = Vec::new();
    for (dir, path) in request.dirs.iter().zip(&resolved) {
        let writable = dir.writable && grants.write.contains(path);
        if !writable && !grants.read.contains(path) && !grants.write.contains(path) {
            tracing::warn!(
                "`{}` was not granted; the skill does not see it",
                path.display()
            );
            continue;
        }
        preopens.push(Preopen {
            host: path.clone(),
            guest: dir
                .guest
                .clone()
                .unwrap_or_else(|| dir.host.display().to_string()),
            writable,
        });
    }
    let roots: Vec<PathBuf> = preopens.iter().map(|p| p.host.clone()).collect();
    let mut limits = grants.limits;
    if let Some(asked) = request.limits {
        limits.memory_bytes = limits.memory_bytes.min(asked.memory_bytes);
        limits.cpu = limits.cpu.min(asked.cpu);
        limits.output_bytes = limits.output_bytes.min(asked.output_bytes);
        limits.wall = limits.wall.min(asked.wall);
    }
    let env: Vec<(String, String)> = request
        .env
        .iter()
        .filter(|(name, _)| grants.env.contains(name))
        .cloned()
        .collect();

    // Each call of the skill is decided against what it was given.
    let calls = Arc::new(
        supervisor
            .with_workspace(roots)
            .with_context("request", json!({ "net": grants.net }))
            .with_context("cordon_paths", json!(own)),
    );
    let mut gate = PipelineGate::new(calls)
        .with_consent(Arc::clone(&consent))
        .for_skill(identity);
    // Each write is journaled before it happens: what the path was is kept first.
    let writable: Vec<PathBuf> = preopens
        .iter()
        .filter(|p| p.writable)
        .map(|p| p.host.clone())
        .collect();
    let journal = super::journaling::for_skill(
        &request.config,
        &id,
        &request.skill.display().to_string(),
        &writable,
    )
    .map_err(|why| audit.refuse(Outcome::Failed, setup(why)))?;
    if let Some(journal) = &journal {
        gate = gate.with_journal(Arc::clone(journal) as Arc<dyn crate::WriteJournal>);
    }

    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: request.cache_dir.clone(),
        ..RuntimeOptions::default()
    })
    .map_err(|e| audit.refuse(Outcome::Failed, setup(e.to_string())))?;
    let sha256 = skill.sha256().to_owned();
    let name = skill.name().to_owned();
    let prepared = if functions {
        runtime.prepare_functions(skill)
    } else {
        runtime.prepare(skill)
    };
    let prepared = prepared.map_err(|err| {
        let kind = match err {
            cordon_skills::Error::Setup(_) => ErrorKind::SetupFailed,
            _ => ErrorKind::CannotExecute,
        };
        audit.refuse(Outcome::Failed, LaunchError::new(kind, err.to_string()))
    })?;
    info.granted_hosts = grants.net.clone();
    info.state = "running".into();
    if let Some(control) = &control {
        if let Err(why) = control.update(info) {
            tracing::warn!("session {id}: cannot update its description: {why}");
        }
        if control.stopped() {
            return Err(audit.refuse(
                Outcome::Refused,
                setup("the session was stopped before its skill started"),
            ));
        }
    }
    let mut args = vec![name];
    args.extend(request.args.iter().cloned());
    // A skill blocked in a host call (a sleep, a read, a slow server) does not see a stop
    // or its time limit until the call returns: the process ends it, after a grace period.
    let finished = Arc::new(AtomicBool::new(false));
    // A session serving functions has limits for each call, not for the whole session.
    if request.end_process_when_stuck && !functions {
        let record = (
            Arc::clone(&supervisor),
            audit.input.clone(),
            audit.decision.clone(),
        );
        watch_stuck(&stop, &finished, limits.wall, record);
    }
    let served = Functions {
        supervisor: &supervisor,
        consent: &consent,
        runtime: &runtime,
        prepared: &prepared,
        run: Run {
            args,
            env,
            preopens: preopens.clone(),
            gate: Arc::new(gate),
            limits,
            stdin: request.stdin && !functions,
            stdout: output(Stream::Stdout),
            stderr: output(Stream::Stderr),
            stop,
        },
        id: &id,
        cpu_us: std::sync::atomic::AtomicU64::new(0),
        launch: (
            Arc::clone(&supervisor),
            audit.input.clone(),
            audit.decision.clone(),
        ),
    };
    let exit = body(&served).map_err(|e| audit.refuse(Outcome::Failed, e));
    finished.store(true, Ordering::SeqCst);
    let journaled = journal.map(|journal| journal.end());
    if let Some(Err(why)) = &journaled {
        tracing::error!("{why}; the next launch journals them");
    }
    let exit = exit?;
    let outcome = if exit.stopped.is_some() {
        Outcome::Failed
    } else {
        Outcome::Performed
    };
    audit.record(
        outcome,
        json!({
            "exit_code": exit.code,
            "stopped": exit.stopped.as_ref().map(ToString::to_string),
            "cpu_ms": exit.cpu.as_millis(),
            "journal": journaled.as_ref().map(|j| match j {
                Ok(found) => json!({ "changes": found.changes.len() }),
                Err(why) => json!({ "error": why }),
            }),
        }),
    );
    drop(control);
    Ok(SkillEnded {
        id,
        sha256,
        exit,
        preopens,
        cache: prepared.cache().clone(),
        journaled: journaled
            .and_then(Result::ok)
            .map(|found| found.changes.len()),
    })
}
