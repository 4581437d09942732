//! A session's identity on the machine: its private runtime directory and control socket.
//!
//! Each running session has `$XDG_RUNTIME_DIR/cordon/ID/` (mode 0700; without
//! `XDG_RUNTIME_DIR`, `/run/user/UID/cordon/`, else `$TMPDIR/cordon-UID/`), holding
//! `session.json` (what `cordon ps` shows) and `control.sock` (mode 0600). The socket speaks
//! JSON lines, one request and one answer per line (`docs/control-protocol.md`):
//!
//! ```text
//! → {"op": "status"}              ← {"ok": true, "session": {...}}
//! → {"op": "stop", "grace_secs": 5} ← {"ok": true, "stopping": true}
//! → {"op": "approvals"}           ← {"ok": true, "pending": []}
//! ```
//!
//! Only a process of the same user in cordon's own pid namespace is answered: a sandboxed
//! program (another pid namespace, and as root another uid) is refused even where the socket
//! is reachable, and another user is refused by the directory's mode and by the check.

use std::io::{BufRead, BufReader, Read, Write};
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
}

/// The directory that holds the runtime directories of this user's sessions.
///
/// # Errors
///
/// Why no safe directory is available: one exists that is a link, not a directory, owned by
/// another user or open to others.
pub fn sessions_dir() -> Result<PathBuf, String> {
    let uid = sys::real_ids().0;
    let xdg = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let user_run = PathBuf::from(format!("/run/user/{uid}"));
    let dir = match xdg {
        Some(base) => base.join("cordon"),
        None if user_run.is_dir() => user_run.join("cordon"),
        None => std::env::temp_dir().join(format!("cordon-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(format!("cannot create `{}`: {err}", dir.display())),
    }
    check_private(&dir, true)?;
    Ok(dir)
}

/// Checks that `path` (not followed if a link) is this user's own, and open to nobody else
/// when `private`.
fn check_private(path: &Path, private: bool) -> Result<(), String> {
    let meta = fs_err::symlink_metadata(path).map_err(|e| e.to_string())?;
    let uid = sys::real_ids().0;
    if meta.file_type().is_symlink() {
        return Err(format!("`{}` is a symbolic link", path.display()));
    }
    if meta.uid() != uid {
        return Err(format!(
            "`{}` belongs to uid {}, not to this user (uid {uid})",
            path.display(),
            meta.uid()
        ));
    }
    if private && meta.mode() & 0o077 != 0 {
        return Err(format!(
            "`{}` is open to other users (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A path that reaches `name` in the directory `dir` through `/proc/self/fd`: short enough
/// for a socket address whatever the directory's length, and immune to renames of its
/// parents.
fn through(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn open_dir(path: &Path) -> Result<OwnedFd, String> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path);
    opened
        .map(OwnedFd::from)
        .map_err(|e| format!("cannot open `{}`: {e}", path.display()))
}

/// A running session's control socket and runtime directory; both go when it is dropped.
#[derive(Debug)]
pub(super) struct Control {
    dir: PathBuf,
    closed: Arc<AtomicBool>,
    wake: PathBuf,
    _handle: Option<OwnedFd>,
}

/// What the control socket acts on.
pub(super) struct Target {
    /// The session's description.
    pub info: SessionInfo,
    /// The sandbox's helper, for `stop`.
    pub pidfd: Option<OwnedFd>,
}

impl Control {
    /// Creates the runtime directory of `target.info.id` and serves its control socket on a
    /// thread of its own.
    pub(super) fn start(target: Target) -> Result<Self, String> {
        let sessions = sessions_dir()?;
        let dir = sessions.join(&target.info.id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let handle = open_dir(&dir)?;
        let socket = through(&handle, "control.sock");
        let listener = UnixListener::bind(&socket).map_err(|e| {
            format!(
                "cannot create the control socket in `{}`: {e}",
                dir.display()
            )
        })?;
        fs_err::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        let text = serde_json::to_vec_pretty(&target.info).map_err(|e| e.to_string())?;
        let temporary = through(&handle, ".session.json");
        fs_err::write(&temporary, text).map_err(|e| e.to_string())?;
        fs_err::rename(&temporary, through(&handle, "session.json")).map_err(|e| e.to_string())?;
        let closed = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            target,
            closed: closed.clone(),
            connections: AtomicUsize::new(0),
        });
        std::thread::Builder::new()
            .name("cordon-control".into())
            .spawn(move || serve(&listener, &state))
            .map_err(|e| format!("cannot serve the control socket: {e}"))?;
        Ok(Self {
            wake: dir.join("control.sock"),
            dir,
            closed,
            _handle: Some(handle),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag and ends.
        let _ = UnixStream::connect(&self.wake);
        let _ = fs_err::remove_dir_all(&self.dir);
    }
}

struct State {
    target: Target,
    closed: Arc<AtomicBool>,
    connections: AtomicUsize,
}

fn serve(listener: &UnixListener, state: &Arc<State>) {
    for stream in listener.incoming() {
        if state.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
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
    if pid <= 0 {
        return Err("a process outside cordon's pid namespace may not control a session".into());
    }
    let ns = |pid: &str| fs_err::read_link(format!("/proc/{pid}/ns/pid")).ok();
    match (ns(&pid.to_string()), ns("self")) {
        (Some(peer), Some(own)) if peer == own => Ok(()),
        _ => Err("a process in another pid namespace (a sandbox) may not control a session".into()),
    }
}

fn converse(mut stream: UnixStream, state: &State) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    if let Err(why) = peer_allowed(&stream) {
        tracing::warn!("control socket: refused a connection: {why}");
        let _ = answer(&mut stream, &refusal(&why));
        return;
    }
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    loop {
        let mut line = Vec::new();
        let limited = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line);
        match limited {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_LINE => {
                let _ = answer(&mut stream, &refusal("request longer than 64 KiB"));
                return;
            }
            Ok(_) => {}
        }
        let reply = match serde_json::from_slice::<Value>(&line) {
            Ok(request) => handle(&request, state),
            Err(err) => refusal(&format!("not a JSON request: {err}")),
        };
        if answer(&mut stream, &reply).is_err() {
            return;
        }
    }
}

fn handle(request: &Value, state: &State) -> Value {
    match request["op"].as_str() {
        Some("status") => json!({
            "ok": true,
            "protocol": PROTOCOL,
            "session": state.target.info,
            "state": "running",
        }),
        Some("stop") => {
            let grace = request["grace_secs"]
                .as_u64()
                .unwrap_or(5)
                .min(MAX_GRACE_SECS);
            match &state.target.pidfd {
                Some(pidfd) => match stop(pidfd, grace) {
                    Ok(()) => json!({ "ok": true, "stopping": true, "grace_secs": grace }),
                    Err(err) => refusal(&format!("cannot stop the session: {err}")),
                },
                None => refusal("this session cannot be stopped from here"),
            }
        }
        // Requests waiting for a person's answer; none yet.
        Some("approvals") => json!({ "ok": true, "pending": [] }),
        Some(other) => refusal(&format!(
            "unknown op `{other}`: expected status, stop or approvals"
        )),
        None => refusal("a request is an object with an `op`"),
    }
}

/// Asks the program to end (SIGTERM through its helper), and kills the sandbox if it has
/// not ended `grace` seconds later.
fn stop(pidfd: &OwnedFd, grace: u64) -> std::io::Result<()> {
    sys::pidfd_signal(pidfd.as_fd(), libc::SIGTERM)?;
    let pidfd = pidfd.try_clone()?;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(grace));
        // Through the pidfd: an ended helper is not confused with a later process.
        let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
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
    let dir = sessions_dir()?;
    let mut sessions = Vec::new();
    let entries = fs_err::read_dir(&dir).map_err(|e| e.to_string())?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if let Err(why) = check_private(&path, true) {
            tracing::warn!("skipping `{}`: {why}", path.display());
            continue;
        }
        let info = read_info(&path);
        match info {
            Some(info) if alive(&info) => sessions.push(info),
            // A runtime directory whose session has ended (or was never completed): stale.
            _ if stale(&path) => {
                let _ = fs_err::remove_dir_all(&path);
            }
            _ => {}
        }
    }
    sessions.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
    Ok(sessions)
}

fn read_info(dir: &Path) -> Option<SessionInfo> {
    let file = fs_err::File::open(dir.join("session.json")).ok()?;
    let mut text = Vec::new();
    file.take(MAX_LINE).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

fn alive(info: &SessionInfo) -> bool {
    let pid = info.cordon_pid.to_string();
    super::protect::process_key(&pid) == info.cordon_key && !super::protect::is_zombie(&pid)
}

/// Whether a runtime directory without a live session is old enough not to be one being
/// created (a second).
fn stale(dir: &Path) -> bool {
    fs_err::symlink_metadata(dir)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(1))
}

/// Sends `request` to the control socket of session `id` and returns the answer.
///
/// # Errors
///
/// Why the session cannot be reached: unknown id, a directory or socket not this user's, no
/// answer within five seconds.
pub fn request(id: &str, request: &Value) -> Result<Value, String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("`{id}` is not a session id"));
    }
    let dir = sessions_dir()?.join(id);
    if fs_err::symlink_metadata(&dir).is_err() {
        return Err(format!("no running session `{id}` (see `cordon ps`)"));
    }
    check_private(&dir, true)?;
    let handle = open_dir(&dir)?;
    let socket = through(&handle, "control.sock");
    check_private(&socket, false)?;
    let mut stream =
        UnixStream::connect(&socket).map_err(|e| format!("cannot reach session `{id}`: {e}"))?;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    answer(&mut stream, request).map_err(|e| format!("cannot ask session `{id}`: {e}"))?;
    let mut line = Vec::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("session `{id}` did not answer: {e}"))?;
    serde_json::from_slice(&line).map_err(|e| format!("session `{id}` answered nonsense: {e}"))
}
