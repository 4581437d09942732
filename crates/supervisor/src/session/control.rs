//! A session's identity on the machine: its private runtime directory and control socket.
//!
//! Each running session has `$XDG_RUNTIME_DIR/cordon/ID/` (mode 0700; without
//! `XDG_RUNTIME_DIR`, `/run/user/UID/cordon/`, else `$XDG_STATE_HOME/cordon/sessions/`), holding
//! `session.json` (what `cordon ps` shows) and `control.sock` (mode 0600). The socket speaks
//! JSON lines, one request and one answer per line (`docs/control-protocol.md`):
//!
//! ```text
//! → {"op": "status"}              ← {"ok": true, "session": {...}}
//! → {"op": "stop", "grace_secs": 5} ← {"ok": true, "stopping": true}
//! → {"op": "approvals"}           ← {"ok": true, "pending": [{"id": ..., "what": ...}]}
//! → {"op": "answer", "id": "...", "allow": true, "scope": "session"}  ← {"ok": true, "answer": {...}}
//! ```
//!
//! Only a process of the same user in cordon's own pid namespace is answered: a sandboxed
//! program (another pid namespace, and as root another uid) is refused even where the socket
//! is reachable, and another user is refused by the directory's mode and by the check.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cordon_sys::process as sys;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The version of the control protocol, in every status answer.
pub const PROTOCOL: u32 = 1;

/// The longest request line the control socket reads.
const MAX_LINE: u64 = 64 * 1024;
/// Connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send a request.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest grace a `stop` may ask for before the program is killed.
const MAX_GRACE_SECS: u64 = 60;

/// What a session says about itself (`session.json`, `status`, `cordon ps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's id, carried by each of its audit records as `context.session`.
    pub id: String,
    /// The front-end that started it (`exec`, ...).
    pub front_end: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The working directory (the workspace).
    pub workspace: PathBuf,
    /// When it started, RFC 3339.
    pub started: String,
    /// The process id of the sandbox (its helper; signals sent to it reach the program).
    pub pid: i32,
    /// The process id of the cordon that supervises it.
    pub cordon_pid: u32,
    /// That process's id and start time: a session whose cordon is not this process any
    /// more has ended.
    pub cordon_key: String,
    /// The hosts the launch decision granted.
    pub granted_hosts: Vec<String>,
    /// Where its decisions are recorded.
    pub audit_log: Option<PathBuf>,
    /// `starting` while the launch is decided (questions about it may wait for an answer),
    /// `running` once the program runs.
    #[serde(default = "running")]
    pub state: String,
}

fn running() -> String {
    "running".into()
}

/// The directory holding this user's sessions, opened once: every later step goes through
/// its descriptor, so a swap of it or of a parent for a link changes nothing.
#[derive(Debug)]
pub struct SessionsDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl SessionsDir {
    /// Opens (creating it if needed) `$XDG_RUNTIME_DIR/cordon`, else `/run/user/UID/cordon`,
    /// else `$XDG_STATE_HOME/cordon/sessions` (never a directory other users can write, where
    /// they could plant one first).
    ///
    /// # Errors
    ///
    /// Why no safe directory is available: one exists that is a link, not a directory, owned
    /// by another user or open to others.
    pub fn open() -> Result<Self, String> {
        let uid = sys::real_ids().0;
        let xdg = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let user_run = PathBuf::from(format!("/run/user/{uid}"));
        let path = match xdg {
            Some(base) => base.join("cordon"),
            None if user_run.is_dir() => user_run.join("cordon"),
            None => dirs::state_dir()
                .or_else(dirs::data_dir)
                .ok_or("no XDG_RUNTIME_DIR, /run/user/UID or home directory to keep sessions in")?
                .join("cordon")
                .join("sessions"),
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        if let Some(parent) = path.parent().filter(|p| !p.exists()) {
            builder
                .recursive(true)
                .create(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
            builder.recursive(false);
        }
        match builder.create(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(format!("cannot create `{}`: {err}", path.display())),
        }
        // No link anywhere on the way: a link in a directory a sandboxed program may write
        // could be turned, between two runs of cordon, to a directory of its making.
        let fd = sys::open_no_symlinks(&path, libc::O_PATH | libc::O_DIRECTORY).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                format!(
                    "`{}` is reached through a symbolic link; set XDG_RUNTIME_DIR to a path without one",
                    path.display()
                )
            } else {
                format!("cannot open `{}`: {e}", path.display())
            }
        })?;
        check_open(&fd, &path)?;
        Ok(Self { path, fd })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside it, reached through its descriptor.
    fn at(&self, name: &str) -> PathBuf {
        through(&self.fd, name)
    }

    /// Opens the runtime directory of session `id`, checked like this one.
    fn session(&self, id: &str) -> Result<OwnedFd, String> {
        let shown = self.path.join(id);
        let fd = open_dir(&self.at(id))?;
        check_open(&fd, &shown)?;
        Ok(fd)
    }
}

/// Where this user's sessions are kept, created if needed: `$XDG_RUNTIME_DIR/cordon`, else
/// `/run/user/UID/cordon`, else `$XDG_STATE_HOME/cordon/sessions`.
///
/// # Errors
///
/// Why no safe directory is available: one exists that is a link, not a directory, owned by
/// another user or open to others.
pub fn sessions_dir() -> Result<PathBuf, String> {
    SessionsDir::open().map(|dir| dir.path)
}

/// Checks that the directory open as `fd` (shown as `shown`) is this user's own and open to
/// nobody else.
fn check_open(fd: &OwnedFd, shown: &Path) -> Result<(), String> {
    let meta = fs_err::metadata(fd_path(fd)).map_err(|e| e.to_string())?;
    check_owner(&meta, shown, true)
}

fn check_owner(meta: &std::fs::Metadata, shown: &Path, private: bool) -> Result<(), String> {
    let uid = sys::real_ids().0;
    if meta.uid() != uid {
        return Err(format!(
            "`{}` belongs to uid {}, not to this user (uid {uid})",
            shown.display(),
            meta.uid()
        ));
    }
    if private && meta.mode() & 0o077 != 0 {
        return Err(format!(
            "`{}` is open to other users (mode {:o})",
            shown.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A path that reaches `name` in the directory `dir` through `/proc/self/fd`: short enough
/// for a socket address whatever the directory's length, and immune to renames of its
/// parents.
fn through(dir: &OwnedFd, name: &str) -> PathBuf {
    fd_path(dir).join(name)
}

/// The path of what `fd` is open on itself, through `/proc/self/fd`.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens the directory `path` itself (`O_PATH`), refusing a link in its last component.
fn open_dir(path: &Path) -> Result<OwnedFd, String> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path);
    opened
        .map(OwnedFd::from)
        .map_err(|e| format!("cannot open `{}`: {e}", path.display()))
}

/// Reads at most [`MAX_LINE`] bytes of the regular file `path`: a link, a FIFO or a device is
/// refused without blocking.
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_LINE).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// A running session's control socket and runtime directory; both go when it is dropped.
pub(super) struct Control {
    sessions: SessionsDir,
    id: String,
    state: Arc<State>,
    closed: Arc<AtomicBool>,
    /// The listening socket, to shut down: that ends the accepting thread's wait.
    listener: UnixListener,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How a session is stopped.
pub(super) enum Stopper {
    /// A native sandbox: its helper.
    Process(super::HelperSignals),
    /// A skill running in this process: the flag its runtime checks.
    Flag(Arc<AtomicBool>),
}

/// What the control socket acts on.
pub(super) struct Target {
    /// The session's description (completed once the launch is decided).
    pub info: std::sync::Mutex<SessionInfo>,
    /// How `stop` ends the session.
    pub stop: Option<Stopper>,
    /// The session's consent broker, for `approvals` and `answer`.
    pub consent: Arc<crate::consent::Broker>,
}

impl Control {
    /// Creates the runtime directory of `target.info.id` and serves its control socket on a
    /// thread of its own.
    pub(super) fn start(target: Target) -> Result<Self, String> {
        let sessions = SessionsDir::open()?;
        let info = target
            .info
            .lock()
            .map(|info| info.clone())
            .map_err(|_| "the session's description is unreadable".to_owned())?;
        let id = info.id.clone();
        let shown = sessions.path().join(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(sessions.at(&id))
            .map_err(|e| format!("cannot create `{}`: {e}", shown.display()))?;
        let dir = sessions.session(&id)?;
        let socket = through(&dir, "control.sock");
        let listener = UnixListener::bind(&socket).map_err(|e| {
            format!(
                "cannot create the control socket in `{}`: {e}",
                shown.display()
            )
        })?;
        fs_err::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        write_info(&dir, &info)?;
        let closed = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            target,
            closed: closed.clone(),
            connections: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let serving = listener
            .try_clone()
            .map_err(|e| format!("cannot serve the control socket: {e}"))?;
        let serving_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("cordon-control".into())
            .spawn(move || serve(&serving, &state))
            .map_err(|e| format!("cannot serve the control socket: {e}"))?;
        Ok(Self {
            sessions,
            id,
            state: serving_state,
            closed,
            listener,
        })
    }

    /// Whether a `stop` came (the launch must then not start the program).
    pub(super) fn stopped(&self) -> bool {
        self.state.stopped.load(Ordering::SeqCst)
    }

    /// Replaces the session's description (`session.json` and `status`).
    pub(super) fn update(&self, info: SessionInfo) -> Result<(), String> {
        let dir = self.sessions.session(&self.id)?;
        write_info(&dir, &info)?;
        if let Ok(mut current) = self.state.target.info.lock() {
            *current = info;
        }
        Ok(())
    }
}

/// Writes `session.json` in the session's directory whole (a new file renamed over it).
fn write_info(dir: &OwnedFd, info: &SessionInfo) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(info).map_err(|e| e.to_string())?;
    let temporary = through(dir, ".session.json");
    fs_err::write(&temporary, text).map_err(|e| e.to_string())?;
    fs_err::rename(&temporary, through(dir, "session.json")).map_err(|e| e.to_string())
}

impl Drop for Control {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Shutting the listening socket down ends the accepting thread's wait (nothing is
        // connected to by path: whatever sits at that path now may not answer).
        if let Ok(fd) = self.listener.try_clone() {
            let _ = UnixStream::from(OwnedFd::from(fd)).shutdown(std::net::Shutdown::Read);
        }
        remove_session_dir(&self.sessions, &self.id);
    }
}

/// Removes what a session's runtime directory holds (the names cordon makes there, and
/// nothing else: never through a link or into a mount point), then the directory.
fn remove_session_dir(sessions: &SessionsDir, id: &str) {
    if let Ok(dir) = sessions.session(id) {
        for name in ["control.sock", "session.json", ".session.json"] {
            let _ = fs_err::remove_file(through(&dir, name));
        }
    }
    if let Err(err) = fs_err::remove_dir(sessions.at(id)) {
        tracing::debug!("cannot remove the runtime directory of session {id}: {err}");
    }
}

struct State {
    target: Target,
    closed: Arc<AtomicBool>,
    connections: AtomicUsize,
    /// A `stop` came: a program not yet started must not start.
    stopped: AtomicBool,
}

/// Warns about refused connections: the first at once, then a count every ten seconds.
#[derive(Default)]
struct Refusals {
    since: Option<std::time::Instant>,
    count: u64,
}

impl Refusals {
    fn note(&mut self, why: &str) {
        let now = std::time::Instant::now();
        match self.since {
            Some(since) if now.duration_since(since) < Duration::from_secs(10) => self.count += 1,
            _ => {
                if self.count > 0 {
                    tracing::warn!("control socket: refused {} more connections", self.count);
                }
                tracing::warn!("control socket: refused a connection: {why}");
                self.since = Some(now);
                self.count = 0;
            }
        }
    }
}

fn serve(listener: &UnixListener, state: &Arc<State>) {
    let mut refused = Refusals::default();
    for stream in listener.incoming() {
        if state.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            // Out of descriptors, say: try again shortly rather than spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        // Refused peers are answered at once and take no connection slot: a flood from a
        // sandbox cannot crowd out the person.
        if let Err(why) = peer_allowed(&stream) {
            refused.note(&why);
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = answer(&mut stream, &refusal(&why));
            continue;
        }
        if state.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            state.connections.fetch_sub(1, Ordering::SeqCst);
            let _ = answer(&mut stream, &refusal("too many connections; try again"));
            continue;
        }
        let state = Arc::clone(state);
        let spawned = std::thread::Builder::new()
            .name("cordon-control-conn".into())
            .spawn(move || {
                converse(stream, &state);
                state.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            tracing::warn!("cannot serve a control connection");
        }
    }
}

fn refusal(why: &str) -> Value {
    json!({ "ok": false, "error": why })
}

fn answer(stream: &mut UnixStream, value: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    stream.write_all(&line)
}

/// Whether the peer of `stream` may control the session: the same user, in cordon's own
/// pid namespace (a sandboxed program is in another).
fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let (pid, uid, _) = sys::peer_credentials(stream.as_fd())
        .map_err(|e| format!("cannot tell who is asking: {e}"))?;
    let own = sys::real_ids().0;
    if uid != own {
        return Err(format!("uid {uid} may not control a session of uid {own}"));
    }
    if in_own_pid_namespace(pid) {
        Ok(())
    } else {
        Err("a process in another pid namespace (a sandbox) may not control a session".into())
    }
}

/// Whether the process `pid` (as a peer's credentials name it) is in this process's pid
/// namespace; a sandboxed process is not, and a peer outside it shows as pid 0.
fn in_own_pid_namespace(pid: i32) -> bool {
    let ns = |pid: &str| fs_err::read_link(format!("/proc/{pid}/ns/pid")).ok();
    pid > 0 && matches!((ns(&pid.to_string()), ns("self")), (Some(peer), Some(own)) if peer == own)
}

fn converse(mut stream: UnixStream, state: &State) {
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let peer = describe_peer(&stream);
    let mut pending = Vec::new();
    loop {
        let line = match next_line(&mut stream, &mut pending) {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(why) => {
                let _ = answer(&mut stream, &refusal(why));
                return;
            }
        };
        let reply = match serde_json::from_slice::<Value>(&line) {
            Ok(request) => handle(&request, state, &peer),
            Err(err) => refusal(&format!("not a JSON request: {err}")),
        };
        if answer(&mut stream, &reply).is_err() {
            return;
        }
    }
}

/// Reads the next request line (`pending` keeps what came after it): at most 64 KiB, the
/// whole of it within [`IO_TIMEOUT`], so that a client trickling bytes cannot hold a
/// connection. `None` at the end of the stream.
fn next_line(
    stream: &mut UnixStream,
    pending: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, &'static str> {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(at) = pending.iter().position(|b| *b == b'\n') {
            return Ok(Some(pending.drain(..=at).collect()));
        }
        if pending.len() as u64 >= MAX_LINE {
            return Err("request longer than 64 KiB");
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err("no whole request within 5 s");
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => pending.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no whole request within 5 s")
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Who is at the other end, for the records of their answers: `socket (pid 123, cordon)`.
fn describe_peer(stream: &UnixStream) -> String {
    match sys::peer_credentials(stream.as_fd()) {
        Ok((pid, _, _)) => {
            let name = fs_err::read_to_string(format!("/proc/{pid}/comm"))
                .map(|n| n.trim().to_owned())
                .unwrap_or_default();
            format!("socket (pid {pid}, {name})")
        }
        Err(_) => "socket".to_owned(),
    }
}

fn handle(request: &Value, state: &State, peer: &str) -> Value {
    match request["op"].as_str() {
        Some("status") => json!({
            "ok": true,
            "protocol": PROTOCOL,
            "session": state.target.info.lock().map(|i| i.clone()).ok(),
            "state": state.target.info.lock().map(|i| i.state.clone()).unwrap_or_default(),
        }),
        Some("stop") => {
            let grace = request["grace_secs"]
                .as_u64()
                .unwrap_or(5)
                .min(MAX_GRACE_SECS);
            // Questions still waiting are denied, and no later one is asked: the person
            // wants the session over.
            state.stopped.store(true, Ordering::SeqCst);
            state.target.consent.mute("stop");
            match &state.target.stop {
                Some(Stopper::Process(helper)) => match stop(helper, grace) {
                    Ok(()) => json!({ "ok": true, "stopping": true, "grace_secs": grace }),
                    Err(err) => refusal(&format!("cannot stop the session: {err}")),
                },
                Some(Stopper::Flag(flag)) => {
                    flag.store(true, Ordering::SeqCst);
                    json!({ "ok": true, "stopping": true, "grace_secs": 0 })
                }
                None => refusal("this session cannot be stopped from here"),
            }
        }
        Some("approvals") => json!({ "ok": true, "pending": state.target.consent.pending() }),
        Some("answer") => answer_request(request, state, peer),
        Some(other) => refusal(&format!(
            "unknown op `{other}`: expected status, stop, approvals or answer"
        )),
        None => refusal("a request is an object with an `op`"),
    }
}

/// `{"op": "answer", "id": ID, "allow": BOOL, "scope": "once"|"session"|"10m"|"always",
/// "code": "123456"}` (the code only where the request says `"code": true`).
fn answer_request(request: &Value, state: &State, peer: &str) -> Value {
    let Some(id) = request["id"].as_str() else {
        return refusal("an answer names the pending request: `id` (see `approvals`)");
    };
    let Some(allow) = request["allow"].as_bool() else {
        return refusal("an answer says `allow`: true or false");
    };
    let scope = match request.get("scope") {
        None => crate::consent::Scope::Once,
        Some(Value::String(text)) => match crate::consent::Scope::parse(text) {
            Ok(scope) => scope,
            Err(why) => return refusal(&why),
        },
        Some(_) => {
            return refusal("`scope` is a string: once, session, always, or minutes such as 10m")
        }
    };
    let code = match request.get("code") {
        None | Some(Value::Null) => None,
        Some(Value::String(code)) if code.len() <= 16 => Some(code.as_str()),
        Some(_) => return refusal("`code` is the one-time code, a string of digits"),
    };
    match state.target.consent.answer(id, allow, scope, peer, code) {
        Ok(answer) => json!({ "ok": true, "answer": answer }),
        Err(why) => refusal(&why),
    }
}

/// Asks the program to end (SIGTERM through its helper), and kills the sandbox if it has
/// not ended `grace` seconds later.
fn stop(helper: &super::HelperSignals, grace: u64) -> std::io::Result<()> {
    helper.send(libc::SIGTERM)?;
    let helper = helper.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(grace));
        let _ = helper.send(libc::SIGKILL);
    });
    Ok(())
}

/// The running sessions of this user. Entries whose cordon has ended (killed, crashed) are
/// removed and not listed; entries not owned by this user are skipped with a warning.
///
/// # Errors
///
/// Why the sessions directory cannot be used.
pub fn list() -> Result<Vec<SessionInfo>, String> {
    let sessions = SessionsDir::open()?;
    let mut listed = Vec::new();
    let entries = fs_err::read_dir(sessions.at("")).map_err(|e| e.to_string())?;
    for entry in entries.filter_map(Result::ok) {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_id(&name) {
            continue;
        }
        let dir = match sessions.session(&name) {
            Ok(dir) => dir,
            Err(why) => {
                tracing::warn!("skipping session `{name}`: {why}");
                continue;
            }
        };
        match read_info(&dir) {
            Some(info) if info.id == name && alive(&info) => listed.push(info),
            // A runtime directory whose session has ended (or was never completed): stale.
            _ if stale(&dir) => {
                drop(dir);
                remove_session_dir(&sessions, &name);
            }
            _ => {}
        }
    }
    listed.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
    Ok(listed)
}

/// Whether `name` can be a session id: what [`super::Session`] makes, 12 hex digits (and
/// never `.`, `..` or a name with a slash).
fn is_id(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn read_info(dir: &OwnedFd) -> Option<SessionInfo> {
    serde_json::from_slice(&read_regular(&through(dir, "session.json"))?).ok()
}

fn alive(info: &SessionInfo) -> bool {
    let pid = info.cordon_pid.to_string();
    super::protect::process_key(&pid) == info.cordon_key && !super::protect::is_zombie(&pid)
}

/// Whether a runtime directory without a live session is old enough not to be one being
/// created (a second).
fn stale(dir: &OwnedFd) -> bool {
    fs_err::metadata(fd_path(dir))
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(1))
}

/// Opens the socket file `control.sock` of a session's directory itself (`O_PATH`, never
/// through a link), checking it is a socket of this user's.
fn open_socket(dir: &OwnedFd, shown: &Path) -> Result<OwnedFd, String> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(through(dir, "control.sock"))
        .map_err(|e| format!("cannot open `{}`: {e}", shown.display()))?;
    let meta = opened.metadata().map_err(|e| e.to_string())?;
    if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        return Err(format!("`{}` is not a socket", shown.display()));
    }
    check_owner(&meta, shown, false)?;
    Ok(OwnedFd::from(opened))
}

/// Connects to the socket at `path`, giving up after `limit` (a listener that never accepts
/// holds a connect by path forever).
fn connect_within(path: &Path, limit: Duration) -> std::io::Result<UnixStream> {
    let (done, connected) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = done.send(UnixStream::connect(path));
    });
    connected.recv_timeout(limit).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no connection within 5 s",
        ))
    })
}

/// Sends `request` to the control socket of session `id` and returns the answer.
///
/// # Errors
///
/// Why the session cannot be reached: unknown id, a directory or socket not this user's, a
/// socket not answered by the session's own cordon, no answer within five seconds.
pub fn request(id: &str, request: &Value) -> Result<Value, String> {
    if !is_id(id) {
        return Err(format!(
            "`{id}` is not a session id (12 hex digits; see `cordon ps`)"
        ));
    }
    let sessions = SessionsDir::open()?;
    if fs_err::symlink_metadata(sessions.at(id)).is_err() {
        return Err(format!("no running session `{id}` (see `cordon ps`)"));
    }
    let dir = sessions.session(id)?;
    let info = read_info(&dir)
        .filter(|info| info.id == id && alive(info))
        .ok_or_else(|| format!("no running session `{id}` (see `cordon ps`)"))?;
    let socket = open_socket(&dir, &sessions.path().join(id).join("control.sock"))?;
    let mut stream = connect_within(&fd_path(&socket), IO_TIMEOUT)
        .map_err(|e| format!("cannot reach session `{id}`: {e}"))?;
    // Only the session's own cordon may answer: a socket put in its place by anyone else
    // (a program with the directory in a writable grant) is not believed.
    let (pid, uid, _) = sys::peer_credentials(stream.as_fd())
        .map_err(|e| format!("cannot tell who answers for session `{id}`: {e}"))?;
    let own = u32::try_from(pid).ok() == Some(info.cordon_pid)
        && uid == sys::real_ids().0
        && in_own_pid_namespace(pid)
        && super::protect::process_key(&pid.to_string()) == info.cordon_key;
    if !own {
        return Err(format!(
            "the control socket of session `{id}` is not served by its cordon (pid {}, but pid {pid} answers); not trusted",
            info.cordon_pid
        ));
    }
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    answer(&mut stream, request).map_err(|e| format!("cannot ask session `{id}`: {e}"))?;
    let mut pending = Vec::new();
    match next_line(&mut stream, &mut pending) {
        Ok(Some(line)) => serde_json::from_slice(&line)
            .map_err(|e| format!("session `{id}` answered nonsense: {e}")),
        Ok(None) => Err(format!(
            "session `{id}` closed the connection without an answer"
        )),
        Err(why) => Err(format!("session `{id}` did not answer: {why}")),
    }
}
