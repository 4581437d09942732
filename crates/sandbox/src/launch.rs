//! Starting a program in the sandbox.
//!
//! `cordon` is multi-threaded (the audit writer, the policy engine), and a multi-threaded
//! process can neither enter a new user namespace nor fork safely. So the launch runs in a
//! fresh, single-threaded *helper* process (the small `cordon-sandbox-helper` executable, or
//! cordon's own as a fallback):
//!
//! ```text
//! cordon ─spawn─▶ helper ─unshare(user, mount, pid, net, ipc, uts, cgroup)─fork─▶ init (pid 1)
//!                                                        builds the view ─fork─▶ program
//!                                         caps dropped, Landlock, seccomp ─exec─┘
//! ```
//!
//! cordon starts the helper first, with only what it knows before the policy has decided
//! ([`Early`]: ids, the terminal, the tree's cgroups); the helper moves itself into the
//! cgroups (and reports how that went on a pipe), enters the namespaces and compiles the
//! seccomp filter while cordon loads the policy and decides. cordon then sends the
//! [`LaunchSpec`] over a pipe, or closes it to cancel; the helper joins the cgroups before it
//! forks anything, so everything it starts is in them.
//!
//! The helper's child is pid 1 of the new pid namespace: it builds the file-system view and
//! starts the program, then reaps. When the program exits, init exits with its status and
//! the kernel kills everything left in the namespace: no daemon survives. Each process dies
//! with its parent (`PDEATHSIG`), so killing cordon kills the tree. Errors before the
//! program runs are sent to cordon over a close-on-exec status pipe, whose end-of-file tells
//! cordon the program was executed.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use cordon_sys::process::{self as sys, Forked};
use serde::{Deserialize, Serialize};

use crate::ids::{self, Mapper, Source};
use crate::plan::{MountOp, Plan};
use crate::{landlock, seccomp, SandboxError};

/// What the helper is told on its command line, before the policy has decided. Holds no
/// secret: anyone on the machine can read a command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Early {
    /// cordon's real user and group ids: mapped to themselves, except root, which the
    /// program never is on the host (see [`crate::ids`]).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// Which standard streams (input, output, error) were the person's terminal: each is
    /// given a pseudo-terminal that init opens in the sandbox's own devpts (so that `tty`
    /// names it inside), whose other side is handed to cordon over the proxy socket.
    pub terminal: [bool; 3],
    /// The descriptor of the status pipe's write end.
    pub status_fd: i32,
    /// The descriptor of the read end of the pipe the [`LaunchSpec`] arrives on.
    pub spec_fd: i32,
    /// cordon's pid: the helper stops if its parent is already another process.
    pub parent: i32,
    /// Where the sandbox's egress proxy listens, if it has one.
    pub proxy: Option<ProxyEndpoint>,
    /// Whether transparent huge pages are off for the program: what they were for cordon's
    /// caller (cordon may turn them off for itself).
    #[serde(default)]
    pub huge_pages_disabled: bool,
    /// The cgroup files the helper writes `0` to before anything else, moving itself (and
    /// so everything it starts) into the tree's cgroups.
    #[serde(default)]
    pub cgroup_join: Vec<PathBuf>,
    /// The pipe on which the helper reports the join: `ok`, or why it failed.
    #[serde(default)]
    pub join_fd: Option<i32>,
}

/// The proxy's listening socket inside the sandbox's network namespace: the helper creates
/// it there (on loopback, the only interface) and hands it to cordon, which serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyEndpoint {
    /// The unix socket over which the listener is sent.
    pub socket_fd: i32,
    /// The port on 127.0.0.1 inside the sandbox.
    pub port: u16,
}

/// What the policy granted, sent to the helper over a pipe once decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The working directory, the same path inside as outside.
    pub cwd: PathBuf,
    /// The program's environment, already scrubbed.
    pub env: Vec<(String, String)>,
    /// The view and its Landlock rules.
    pub plan: Plan,
    /// Whether to apply the Landlock rules (off only when degraded on purpose).
    pub landlock: bool,
    /// Whether to apply the seccomp profile.
    pub seccomp: bool,
}

/// Exit code of the helper when the sandbox could not be set up.
pub const SETUP_FAILED: i32 = 125;
/// Exit code when the program exists but cannot be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// Exit code when the program is not found.
pub const NOT_FOUND: i32 = 127;

/// What the helper reports before the program runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "message")]
pub enum Status {
    /// The sandbox could not be set up.
    Setup(String),
    /// The program could not be executed.
    Exec(String),
}

/// The helper's whole life. Never returns: ends the process with the program's status.
pub fn helper_main(early: &Early) -> ! {
    // cordon may have turned transparent huge pages off for itself; the program gets what
    // cordon's caller had.
    let _ = sys::set_huge_pages_disabled(early.huge_pages_disabled);
    let status = match sys::take_inherited_fd(early.status_fd) {
        Ok(fd) => fd,
        Err(e) => {
            // Standard error may be gone too: nothing more can be said, and no panic.
            let _ = writeln!(
                std::io::stderr(),
                "cordon: the sandbox helper has no status pipe: {e}"
            );
            sys::exit_now(SETUP_FAILED);
        }
    };
    match helper(early, status) {
        Ok(code) => sys::exit_now(code),
        Err((status, message)) => fail(status, Status::Setup(message), SETUP_FAILED),
    }
}

fn fail(status: OwnedFd, report: Status, code: i32) -> ! {
    let mut pipe = std::fs::File::from(status);
    if let Ok(line) = serde_json::to_string(&report) {
        let _ = writeln!(pipe, "{line}");
    }
    sys::exit_now(code)
}

type HelperError = (OwnedFd, String);

fn helper(early: &Early, status: OwnedFd) -> Result<i32, HelperError> {
    macro_rules! try_step {
        ($what:expr, $result:expr) => {
            match $result {
                Ok(v) => v,
                Err(e) => return Err((status, format!("{}: {e}", $what))),
            }
        };
    }
    try_step!(
        "cannot ask to die with cordon",
        sys::set_parent_death_signal(libc::SIGKILL)
    );
    if sys::parent_pid() != early.parent {
        return Err((status, "cordon exited before the sandbox started".into()));
    }
    // Into the tree's cgroups before anything is started; cordon decides on the outcome
    // (a launch that needs the caps is refused when this failed).
    if let Some(fd) = early.join_fd {
        let report = try_step!(
            "the sandbox helper has no cgroup report pipe",
            sys::take_inherited_fd(fd)
        );
        let joined = early.cgroup_join.iter().try_for_each(|file| {
            fs_err::write(file, "0").map_err(|e| format!("cannot join the cgroup: {e}"))
        });
        let line = match joined {
            Ok(()) => "ok\n".to_owned(),
            Err(why) => format!("{}\n", why.replace('\n', " ")),
        };
        let _ = std::fs::File::from(report).write_all(line.as_bytes());
    }
    let spec_pipe = try_step!(
        "the sandbox helper has no specification pipe",
        sys::take_inherited_fd(early.spec_fd)
    );
    // Signals from cordon's terminal go to cordon, which passes them on: one delivery.
    try_step!("cannot start a session", sys::new_session());
    let saved = try_step!("cannot block signals", sys::block_supervisor_signals());
    let mut mapper = if early.uid == 0 {
        Some(try_step!(
            "cannot start the sandbox's id mapper",
            Mapper::start()
        ))
    } else {
        None
    };
    let namespaces = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    try_step!(
        "cannot create the sandbox's namespaces (are user namespaces enabled? see `cordon doctor`)",
        sys::unshare(namespaces)
    );
    match mapper.as_mut() {
        Some(mapper) => {
            try_step!("cannot map the user id", mapper.map_ids());
            // From here on the helper, and everything it starts, is host `nobody`. A change
            // of ids clears the parent-death signal: ask again, then check cordon did not
            // exit in between.
            try_step!("cannot take the sandbox's user id", sys::set_ids(0, 0));
            try_step!(
                "cannot ask to die with cordon",
                sys::set_parent_death_signal(libc::SIGKILL)
            );
            if sys::parent_pid() != early.parent {
                return Err((status, "cordon exited before the sandbox started".into()));
            }
        }
        None => try_step!(
            "cannot map the user id",
            fs_err::write("/proc/self/setgroups", "deny")
                .and_then(|()| fs_err::write("/proc/self/uid_map", format!("{0} {0} 1", early.uid)))
                .and_then(|()| fs_err::write(
                    "/proc/self/gid_map",
                    format!("{0} {0} 1", early.gid)
                ))
        ),
    }
    try_step!("cannot bring up loopback", sys::bring_loopback_up());
    // The socket to cordon carries the proxy's listener now and the terminal's other side
    // once init has opened it.
    let mut handoff: Option<OwnedFd> = None;
    if let Some(proxy) = early.proxy {
        let socket = try_step!(
            "the sandbox helper has no proxy socket",
            sys::take_inherited_fd(proxy.socket_fd)
        );
        let listener = try_step!(
            format!(
                "cannot listen on 127.0.0.1:{} inside the sandbox",
                proxy.port
            ),
            std::net::TcpListener::bind(("127.0.0.1", proxy.port))
        );
        try_step!(
            "cannot hand the proxy socket to cordon",
            sys::send_fd(socket.as_fd(), listener.as_fd())
        );
        handoff = Some(socket);
    }
    let filters = try_step!("cannot compile the seccomp filter", seccomp::compile());
    let mut spec_pipe = std::fs::File::from(spec_pipe);
    let spec = match read_spec(&mut spec_pipe) {
        Ok(Some(spec)) => spec,
        // cordon cancelled the launch (the policy refused, or cordon failed); it says why.
        Ok(None) => {
            drop(status);
            return Ok(SETUP_FAILED);
        }
        Err(e) => return Err((status, format!("cannot read the launch specification: {e}"))),
    };
    let filters = if spec.seccomp { filters } else { Vec::new() };
    let sources = sources(&spec.plan);
    let trees = match mapper {
        Some(mapper) => mapper.open(&sources),
        None => ids::open_here(&sources),
    };
    let trees = try_step!("cannot open the granted paths", trees);
    // The helper is single-threaded: setting its environment races with nothing, and init
    // and the program inherit it.
    let inherited: Vec<OsString> = std::env::vars_os().map(|(name, _)| name).collect();
    for name in inherited {
        std::env::remove_var(name);
    }
    for (name, value) in &spec.env {
        std::env::set_var(name, value);
    }
    let program = Program {
        spec: &spec,
        terminal: early.terminal,
        filters: &filters,
        go: &spec_pipe,
    };
    match try_step!(
        "cannot start the sandbox's init",
        sys::fork_single_threaded()
    ) {
        Forked::Child => init(&program, trees, handoff, status, saved),
        Forked::Parent(init) => {
            drop(trees);
            drop(status);
            let ended = sys::supervise(init, false);
            // Init has been reaped, so every process of the sandbox has ended (the kernel
            // ends a pid namespace's processes with its init): cordon goes on with its
            // checks while this helper takes the namespaces down as it exits. Without
            // init's status, cordon waits for the helper's end instead.
            if let (Ok(code), Some(socket)) = (&ended, handoff) {
                let _ = std::fs::File::from(socket).write_all(&code.to_le_bytes());
            }
            Ok(ended.unwrap_or(SETUP_FAILED))
        }
    }
}

/// What init and the program need.
struct Program<'a> {
    spec: &'a LaunchSpec,
    terminal: [bool; 3],
    filters: &'a [seccompiler::BpfProgram],
    /// The specification pipe, on which cordon sends [`GO`] once the decision is durably
    /// recorded.
    go: &'a std::fs::File,
}

/// The trees the view attaches, in its order.
fn sources(plan: &Plan) -> Vec<Source> {
    let mut out = Vec::new();
    for op in &plan.mounts {
        if let MountOp::Bind {
            writable,
            source,
            identity,
            stage,
            ..
        } = op
        {
            out.push(Source {
                path: source.clone(),
                writable: *writable,
                identity: *identity,
            });
            // A staged tree's stage comes right after it, writable as the tree would be.
            if let Some(stage) = stage {
                out.push(Source {
                    path: stage.dir.clone(),
                    writable: true,
                    identity: stage.identity,
                });
            }
        }
    }
    out
}

/// The byte that lets the program run.
pub const GO: u8 = b'1';

/// The largest specification accepted.
const MAX_SPEC: u64 = 16 << 20;

/// Writes `spec` as cordon sends it: its length (8 bytes, little-endian), then its JSON.
///
/// # Errors
///
/// The pipe's.
pub fn write_spec(mut pipe: impl Write, spec: &LaunchSpec) -> std::io::Result<()> {
    let json = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
    pipe.write_all(&(json.len() as u64).to_le_bytes())?;
    pipe.write_all(&json)
}

/// Reads what [`write_spec`] wrote, without reading past it (the go byte follows);
/// `None` when cordon closed the pipe instead.
fn read_spec(pipe: &mut std::fs::File) -> std::io::Result<Option<LaunchSpec>> {
    let mut len = [0u8; 8];
    match pipe.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u64::from_le_bytes(len);
    if len > MAX_SPEC {
        return Err(std::io::Error::other(format!("{len} bytes is too long")));
    }
    let mut json = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    pipe.read_exact(&mut json)?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(std::io::Error::other)
}

/// Pid 1 of the sandbox: builds the view, starts the program, reaps, passes signals on.
fn init(
    program: &Program<'_>,
    trees: Vec<OwnedFd>,
    handoff: Option<OwnedFd>,
    status: OwnedFd,
    saved: sys::SavedSignalMask,
) -> ! {
    let spec = program.spec;
    let setup = || -> Result<Option<OwnedFd>, String> {
        sys::set_parent_death_signal(libc::SIGKILL)
            .map_err(|e| format!("cannot ask to die with the helper: {e}"))?;
        sys::set_hostname("cordon").map_err(|e| format!("cannot set the host name: {e}"))?;
        crate::view::build(&spec.plan.mounts, trees, &spec.cwd)?;
        if !program.terminal.iter().any(|t| *t) {
            return Ok(None);
        }
        // In the view, /dev/ptmx is the sandbox's own devpts: the terminal is named there.
        let (master, slave) = sys::open_pseudo_terminal()
            .map_err(|e| format!("cannot open a pseudo-terminal in the sandbox: {e}"))?;
        let socket = handoff
            .as_ref()
            .ok_or("no socket to hand the terminal to cordon")?;
        sys::send_fd(socket.as_fd(), master.as_fd())
            .map_err(|e| format!("cannot hand the terminal to cordon: {e}"))?;
        Ok(Some(slave))
    };
    let slave = match setup() {
        Ok(slave) => slave,
        Err(message) => fail(status, Status::Setup(message), SETUP_FAILED),
    };
    drop(handoff);
    match sys::fork_single_threaded() {
        Ok(Forked::Child) => run(program, slave, status, &saved),
        Ok(Forked::Parent(child)) => {
            // Only the program holds the terminal: when it (and its children) are gone,
            // cordon's side reads the end.
            drop(slave);
            drop(status);
            sys::exit_now(sys::supervise(child, true).unwrap_or(SETUP_FAILED))
        }
        Err(e) => fail(
            status,
            Status::Setup(format!("cannot start the program: {e}")),
            SETUP_FAILED,
        ),
    }
}

/// The program's process: confine, then execute.
fn run(
    program: &Program<'_>,
    terminal: Option<OwnedFd>,
    status: OwnedFd,
    saved: &sys::SavedSignalMask,
) -> ! {
    let spec = program.spec;
    let confine = || -> Result<(), String> {
        sys::restore_signal_mask(saved).map_err(|e| format!("cannot restore signals: {e}"))?;
        sys::default_broken_pipe_signal()
            .map_err(|e| format!("cannot give SIGPIPE its default action: {e}"))?;
        sys::new_session().map_err(|e| format!("cannot start a session: {e}"))?;
        if let Some(terminal) = &terminal {
            // The pseudo-terminal stands in for whichever standard streams were terminals.
            for (stream, _) in program.terminal.iter().enumerate().filter(|(_, t)| **t) {
                sys::duplicate_onto(terminal.as_fd(), stream as libc::c_int)
                    .map_err(|e| format!("cannot give the program its terminal: {e}"))?;
            }
            sys::set_controlling_terminal(terminal.as_fd())
                .map_err(|e| format!("cannot take the terminal: {e}"))?;
        }
        sys::set_cloexec_from(3).map_err(|e| format!("cannot close inherited descriptors: {e}"))?;
        sys::drop_all_capabilities().map_err(|e| format!("cannot drop capabilities: {e}"))?;
        if spec.landlock {
            landlock::restrict_current_thread(&spec.plan.landlock).map_err(|e| {
                let mut message = e.to_string();
                if let Some(source) = std::error::Error::source(&e) {
                    message = format!("{message}: {source}");
                }
                message
            })?;
        }
        seccomp::apply_compiled(program.filters).map_err(|e| e.to_string())?;
        Ok(())
    };
    if let Err(message) = confine() {
        fail(status, Status::Setup(message), SETUP_FAILED);
    }
    // Nothing runs before cordon has recorded the decision; without the go byte, leave
    // quietly: cordon reports why.
    let mut go = [0u8; 1];
    let mut pipe = program.go;
    if !matches!(pipe.read(&mut go), Ok(1)) || go[0] != GO {
        drop(status);
        sys::exit_now(SETUP_FAILED);
    }
    let argv: Vec<OsString> = spec.command.iter().map(OsString::from).collect();
    let err = sys::exec(&argv);
    let name = spec.command.first().map(String::as_str).unwrap_or_default();
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_EXECUTE
    };
    fail(
        status,
        Status::Exec(format!("cannot run `{name}` in the sandbox: {err}")),
        code,
    )
}

/// Reads what the helper reported before the program ran: `None` when the program was
/// executed (the pipe closed without a word).
///
/// # Errors
///
/// When the pipe cannot be read, or holds something other than a status.
pub fn read_status(mut reader: impl Read) -> Result<Option<Status>, SandboxError> {
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|e| SandboxError::Helper(format!("cannot read the helper's status: {e}")))?;
    let Some(line) = text.lines().next() else {
        return Ok(None);
    };
    serde_json::from_str(line)
        .map(Some)
        .map_err(|e| SandboxError::Helper(format!("unreadable status `{line}`: {e}")))
}
