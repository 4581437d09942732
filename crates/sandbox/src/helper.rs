//! The parent's half of the helper protocol (the child's half is [`crate::launch`]).
//!
//! ```text
//! start ── the helper enters its namespaces, compiles seccomp; the parent joins it to the
//!          cgroups, loads the policy, decides
//! send  ── the LaunchSpec: the helper builds the view and waits
//! proxy ── the helper's listening socket inside the sandbox arrives over a unix socket
//! release ─ the program's pseudo-terminal arrives (when one was asked for), then GO
//! status ── the helper's report before the program runs (EOF: the program was executed)
//! ended ── the program's exit status, once everything in the sandbox has ended (over the
//!          socket; the helper then takes the namespaces down)
//! wait  ── the helper's end; the cgroups removed
//! ```
//!
//! Dropping the [`Helper`] before [`Helper::release`] closes the spec
//! pipe: the helper ends without starting anything.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cordon_sys::process as sys;

use crate::cgroup::Cgroup;
use crate::grants::Limits;
use crate::kernel::Kernel;
use crate::launch::{self, Early, LaunchSpec, ProxyEndpoint, Status, SETUP_FAILED};
use crate::SandboxError;

/// How to start a helper.
#[derive(Debug, Clone, Default)]
pub struct HelperOptions {
    /// Which standard streams (input, output, error) are the person's terminal: each is
    /// replaced by the program's own pseudo-terminal, whose other side is handed back by
    /// [`Helper::release`].
    pub terminal: [bool; 3],
    /// The port on 127.0.0.1 inside the sandbox where the egress proxy listens; `None` for
    /// no proxy.
    pub proxy_port: Option<u16>,
    /// Whether transparent huge pages are to be off for the program (what they were for
    /// cordon's caller).
    pub huge_pages_disabled: bool,
    /// The helper executable. By default `cordon-sandbox-helper` next to the running
    /// executable, else the running executable itself with the hidden `__sandbox-helper`
    /// subcommand (which `cordon` has).
    pub program: Option<PathBuf>,
    /// The program's standard input and output, in place of cordon's own: a pipe's read
    /// end and another's write end (a front-end that relays what the program says, such as
    /// an MCP gateway). Neither is a terminal.
    pub piped: Option<std::sync::Arc<[OwnedFd; 2]>>,
}

/// A started helper, waiting for the launch specification.
#[derive(Debug)]
pub struct Helper {
    /// The helper's report of its move into the cgroups (it moves itself before it starts
    /// anything); read once.
    joining: Option<std::io::PipeReader>,
    /// `None` once waited for.
    child: Option<std::process::Child>,
    spec: Option<std::fs::File>,
    status: Option<std::io::PipeReader>,
    cgroup: Option<Cgroup>,
    cgroup_error: Option<String>,
    terminal: bool,
    /// The parent's end of the socket the helper sends the proxy's listener over (and init
    /// the terminal).
    socket: std::os::unix::net::UnixStream,
}

fn helper_error(what: &str) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |err| SandboxError::Helper(format!("{what}: {err}"))
}

impl Helper {
    /// Creates the tree's cgroups and the pipes, and starts the helper.
    ///
    /// # Errors
    ///
    /// [`SandboxError::Helper`] when a pipe cannot be made or the helper cannot start. A
    /// cgroup that cannot be made is not an error here: [`Helper::cap`] reports it.
    pub fn start(kernel: &Kernel, options: &HelperOptions) -> Result<Self, SandboxError> {
        /// Held while the ends passed to a helper are inheritable.
        static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let (cgroup, cgroup_error) =
            match Cgroup::create(&kernel.cgroups, &crate::cgroup::unique_name()) {
                Ok(cgroup) => (Some(cgroup), None),
                Err(err) => (None, Some(err.to_string())),
            };
        let pipe = || -> Result<(std::io::PipeReader, OwnedFd), SandboxError> {
            let (read, write) =
                std::io::pipe().map_err(helper_error("cannot create a pipe to the helper"))?;
            Ok((read, OwnedFd::from(write)))
        };
        let (status_read, status_write) = pipe()?;
        let (spec_read, spec_write) = pipe()?;
        let (join_read, join_write) = pipe()?;
        let spec_read = OwnedFd::from(spec_read);
        // From here to the spawn's end the helper's ends are inheritable: a helper another
        // thread spawned meanwhile would inherit them too, and hold this one's join pipe
        // open for ever. One helper is spawned at a time.
        let spawning = SPAWNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for fd in [status_write.as_fd(), spec_read.as_fd(), join_write.as_fd()] {
            sys::set_inheritable(fd, true).map_err(helper_error("cannot pass a pipe"))?;
        }
        let (socket, helper_socket) = std::os::unix::net::UnixStream::pair()
            .map_err(helper_error("cannot create the helper's socket pair"))?;
        sys::set_inheritable(helper_socket.as_fd(), true)
            .map_err(helper_error("cannot pass the socket to the helper"))?;
        let (uid, gid) = sys::real_ids();
        let early = Early {
            uid,
            gid,
            terminal: options.terminal,
            status_fd: status_write.as_raw_fd(),
            spec_fd: spec_read.as_raw_fd(),
            parent: i32::try_from(std::process::id()).unwrap_or_default(),
            proxy: options.proxy_port.map(|port| ProxyEndpoint {
                socket_fd: helper_socket.as_raw_fd(),
                port,
            }),
            huge_pages_disabled: options.huge_pages_disabled,
            cgroup_join: cgroup.as_ref().map(Cgroup::join_files).unwrap_or_default(),
            join_fd: Some(join_write.as_raw_fd()),
        };
        let early = serde_json::to_string(&early)
            .map_err(|e| SandboxError::Helper(format!("cannot encode the start arguments: {e}")))?;
        let mut command = helper_command(options.program.as_deref());
        command.arg(early).env_clear();
        // The person's terminal never reaches the sandbox, not even its helper: those
        // streams are replaced by the sandbox's own terminal before the program runs.
        for stream in (0..3).filter(|&s| options.terminal[s]) {
            match stream {
                0 => command.stdin(Stdio::null()),
                1 => command.stdout(Stdio::null()),
                _ => command.stderr(Stdio::null()),
            };
        }
        if let Some(piped) = &options.piped {
            let [input, output] = &**piped;
            let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
            command
                .stdin(dup(input).map_err(helper_error("cannot pass the program's input"))?)
                .stdout(dup(output).map_err(helper_error("cannot pass the program's output"))?);
        }
        let child = command.spawn();
        drop(status_write);
        drop(spec_read);
        drop(join_write);
        drop(helper_socket);
        drop(spawning);
        let child = child.map_err(helper_error("cannot start the sandbox helper"))?;
        Ok(Self {
            joining: Some(join_read),
            child: Some(child),
            spec: Some(std::fs::File::from(spec_write)),
            status: Some(status_read),
            cgroup,
            cgroup_error,
            terminal: options.terminal.iter().any(|t| *t),
            socket,
        })
    }

    /// The helper's process id (signals sent to it reach the program).
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .unwrap_or_default()
    }

    /// Applies the caps to the tree's cgroups.
    ///
    /// # Errors
    ///
    /// Why the caps cannot hold (no cgroup, or the kernel refused the limits).
    pub fn cap(&mut self, limits: &Limits) -> Result<(), String> {
        self.joined()?;
        match (&self.cgroup, &self.cgroup_error) {
            (Some(cgroup), _) => cgroup.set_limits(limits).map_err(|e| e.to_string()),
            (None, Some(err)) => Err(err.clone()),
            (None, None) => Err("no cgroup".into()),
        }
    }

    /// Waits until the helper has moved itself into its cgroups (its first step).
    fn joined(&mut self) -> Result<(), String> {
        let Some(report) = self.joining.take() else {
            return match &self.cgroup_error {
                Some(err) => Err(err.clone()),
                None => Ok(()),
            };
        };
        let mut line = String::new();
        let read = report.take(4096).read_to_string(&mut line);
        let outcome = match (read, line.trim()) {
            (Ok(_), "ok") => Ok(()),
            (Ok(_), "") => Err("the sandbox helper ended before joining its cgroups".to_owned()),
            (Ok(_), why) => Err(why.to_owned()),
            (Err(err), _) => Err(format!("cannot read the helper's cgroup report: {err}")),
        };
        if let Err(err) = &outcome {
            if self.cgroup.is_some() {
                self.cgroup_error = Some(err.clone());
            }
        }
        outcome
    }

    /// Sends the specification: the helper builds the view, then waits for
    /// [`Helper::release`].
    ///
    /// # Errors
    ///
    /// The pipe's error, or why the specification could not be written. The spec pipe is
    /// closed then, so the helper ends without starting anything and [`Helper::read_status`]
    /// returns (saying why, when the helper knows).
    pub fn send(&mut self, spec: &LaunchSpec) -> std::io::Result<()> {
        // Nothing may start outside the cgroups (a failure to join was decided on already).
        let _ = self.joined();
        let sent = match &mut self.spec {
            Some(pipe) => launch::write_spec(pipe, spec),
            None => Err(std::io::Error::other("the helper was released already")),
        };
        if sent.is_err() {
            self.spec = None;
        }
        sent
    }

    /// Receives the egress proxy's listening socket, which the helper made on 127.0.0.1
    /// inside the sandbox's network namespace (waits at most ten seconds).
    ///
    /// # Errors
    ///
    /// Why no socket came.
    pub fn receive_proxy(&self) -> Result<std::net::TcpListener, String> {
        let _ = self.socket.set_read_timeout(Some(Duration::from_secs(10)));
        match sys::recv_fd(self.socket.as_fd()) {
            Ok(Some(fd)) => Ok(std::net::TcpListener::from(fd)),
            Ok(None) => Err("the sandbox helper sent no proxy socket".into()),
            Err(err) => Err(format!("cannot receive the proxy socket: {err}")),
        }
    }

    /// Lets the program run: receives its pseudo-terminal (once init has built the view),
    /// then says go. Returns the terminal's other side.
    ///
    /// # Errors
    ///
    /// When the terminal did not come (setting up failed, and then [`Helper::read_status`]
    /// says why; or it took more than 30 seconds), or the go could not be sent: the program
    /// does not run.
    pub fn release(&mut self) -> std::io::Result<Option<OwnedFd>> {
        let master = if self.terminal {
            let _ = self.socket.set_read_timeout(Some(Duration::from_secs(30)));
            match sys::recv_fd(self.socket.as_fd()) {
                Ok(Some(master)) => Some(master),
                // Setting up failed (the status says why), or the terminal never came: the
                // program does not run without it. The spec pipe closes, so it ends.
                _ => {
                    self.spec = None;
                    return Err(std::io::Error::other(
                        "the sandbox's terminal did not arrive",
                    ));
                }
            }
        } else {
            None
        };
        let sent = match self.spec.take() {
            Some(mut pipe) => pipe.write_all(&[launch::GO]),
            None => Err(std::io::Error::other("the helper was released already")),
        };
        sent.map(|()| master)
    }

    /// What the helper reported before the program ran: `None` once the program was
    /// executed. Blocks until then.
    ///
    /// # Errors
    ///
    /// [`SandboxError::Helper`] when the report is malformed or was read already.
    pub fn read_status(&mut self) -> Result<Option<Status>, SandboxError> {
        match self.status.take() {
            Some(reader) => launch::read_status(reader),
            None => Err(SandboxError::Helper("the status was read already".into())),
        }
    }

    /// Waits for the program's end: its exit code (128+N when killed by signal N) once
    /// everything in the sandbox has ended, as the helper reports it before it takes the
    /// sandbox's namespaces down (without waiting for that). A helper that ends without the
    /// report is waited for. [`Helper::wait`] then waits for the helper and removes the
    /// cgroups.
    pub fn ended(&mut self) -> i32 {
        let _ = self.socket.set_read_timeout(None);
        let mut code = [0u8; 4];
        match (&self.socket).read_exact(&mut code) {
            Ok(()) => i32::from_le_bytes(code),
            Err(_) => self.reap(),
        }
    }

    /// Waits for the helper's end and removes the tree's cgroups. Returns its exit code: the
    /// program's (128+N when killed by signal N), or why the sandbox could not be set up.
    pub fn wait(mut self) -> i32 {
        self.reap()
    }

    /// Waits for the helper (once) and removes the tree's cgroups: the helper's exit code.
    fn reap(&mut self) -> i32 {
        let exit = match self.child.take() {
            Some(mut child) => child.wait().map(|s| exit_code(&s)).unwrap_or(SETUP_FAILED),
            None => SETUP_FAILED,
        };
        drop(self.cgroup.take());
        exit
    }
}

impl Drop for Helper {
    /// A helper not yet released ends by itself once its spec pipe closes; a released one
    /// (the program runs) is killed, with its whole tree: nothing outlives its parent's
    /// handle unwatched.
    fn drop(&mut self) {
        let released = self.spec.take().is_none();
        if let Some(mut child) = self.child.take() {
            if released {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// The command that starts the helper: `program`, else `cordon-sandbox-helper` next to the
/// running executable, else the running executable with `__sandbox-helper`.
fn helper_command(program: Option<&std::path::Path>) -> Command {
    let small = program.map(std::path::Path::to_path_buf).or_else(|| {
        std::env::current_exe()
            .ok()
            .map(|exe| exe.with_file_name("cordon-sandbox-helper"))
            .filter(|path| path.is_file())
    });
    match small {
        Some(path) => Command::new(path),
        None => {
            let mut command = Command::new("/proc/self/exe");
            command.arg("__sandbox-helper");
            command
        }
    }
}

fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(SETUP_FAILED)
}
