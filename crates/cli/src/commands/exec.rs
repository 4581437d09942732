//! `cordon exec`: run a native program in the sandbox, with what the policy grants.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_sandbox::cgroup::{Cgroup, Support};
use cordon_sandbox::grants::{Feature, Grants};
use cordon_sandbox::launch::{self, LaunchSpec, Status, SETUP_FAILED};
use cordon_supervisor::{real_path, Supervisor};
use cordon_sys::process as sys;
use cordon_types::{Capability, Decision, Outcome, Request};
use serde_json::{json, Value};

use super::shared::{load_config, PolicyArgs};
use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Run a program in cordon's sandbox, with only what the policy grants
///
/// The program runs in new user, mount, pid, network, ipc, uts and cgroup namespaces. It
/// sees the system directories read-only, the current directory (the workspace) read-write,
/// a private empty home, /tmp and /dev, and nothing else; secrets such as ~/.ssh and
/// /etc/shadow are hidden even inside what it sees; shell start-up files, .git/hooks and
/// agent configuration stay read-only. Landlock and a seccomp filter repeat those limits in
/// the kernel, cgroups cap its processes and memory, and its network namespace has only
/// loopback. Secret-looking environment variables are removed.
///
/// --allow-* and --keep-env are requests: the policy (data.cordon.sandbox) decides what is
/// granted, and refuses secrets locations whatever is asked. The decision, the grants and
/// the outcome are recorded in the audit log.
///
/// When standard input and output are a terminal, the program gets a pseudo-terminal of
/// its own, so interactive shells work while nothing can be typed into yours.
///
/// Exit status: the program's (128+N when killed by signal N); 125 when cordon refused or
/// could not set up the sandbox; 126 when the program cannot be executed; 127 when it is
/// not found.
///
/// Examples:
///   cordon exec -- bash
///   cordon exec --allow-read ~/datasets -- python3 train.py
///   cordon exec --allow-write ../shared-out --keep-env OPENAI_API_KEY -- ./agent
///   cordon exec --dry-run -- make       # print the grants and the view, run nothing
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ExecCommand {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Ask to make PATH readable (repeat for several; it must exist)
    #[arg(long, value_name = "PATH")]
    allow_read: Vec<PathBuf>,

    /// Ask to make PATH readable and writable (repeat for several; it must exist)
    #[arg(long, value_name = "PATH")]
    allow_write: Vec<PathBuf>,

    /// Ask to let the program reach HOST (through cordon's proxy)
    #[arg(long, value_name = "HOST[:PORT]")]
    allow_net: Vec<String>,

    /// Ask to keep the environment variable NAME although it looks like a secret
    #[arg(long, value_name = "NAME")]
    keep_env: Vec<String>,

    /// Run even when a kernel feature the policy requires is missing (recorded in the audit log)
    #[arg(long)]
    allow_degraded: bool,

    /// Print the decision, the grants and the planned view as JSON, and run nothing
    #[arg(long)]
    dry_run: bool,

    /// The program and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// cordon's own failure before the program runs: exit 125.
fn refused(err: impl Into<CliError>) -> CliError {
    err.into().with_exit(Exit::Code(SETUP_FAILED as u8))
}

struct Launch<'a> {
    supervisor: &'a Supervisor,
    capability: Capability,
    input: Value,
    decision: Decision,
}

impl Launch<'_> {
    /// Records what became of the launch; a failure to record is reported, not hidden.
    fn record(&self, outcome: Outcome, result: Value) {
        let mut input = self.input.clone();
        input["result"] = result;
        if let Err(err) = self.supervisor.pipeline().record_outcome(
            &self.capability,
            input,
            self.decision.clone(),
            outcome,
        ) {
            tracing::error!("cannot record the outcome of the launch: {err}");
        }
    }

    fn refuse(&self, outcome: Outcome, reason: &str) -> CliError {
        self.record(outcome, json!({ "refused": reason }));
        refused(anyhow!("{reason}"))
    }
}

impl ExecCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let config = load_config(cli, &self.policy).map_err(refused)?;
        let supervisor = Supervisor::start(&config)
            .context("cannot start cordon")
            .map_err(refused)?;
        let command: Vec<String> = self
            .command
            .iter()
            .map(|a| {
                a.to_str().map(str::to_owned).ok_or_else(|| {
                    refused(anyhow!(
                        "the argument `{}` is not valid UTF-8",
                        a.to_string_lossy()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let cwd = std::env::current_dir()
            .context("cannot read the current directory")
            .map_err(refused)?;
        let read = resolve_all(&self.allow_read, &cwd)?;
        let write = resolve_all(&self.allow_write, &cwd)?;
        let kernel = Kernel::probe();

        let env_names: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        let mut cordon_paths = Vec::new();
        if let Some(path) = &config.policy.path {
            cordon_paths.push(real_path(&cordon_supervisor::expand_home(path)));
        }
        if let Some(path) = supervisor.audit_path().and_then(Path::parent) {
            cordon_paths.push(path.to_path_buf());
        }
        let mut request = Request {
            action: "launch".into(),
            ..Request::default()
        };
        request
            .resource
            .extra
            .insert("command".into(), json!(command));
        request
            .resource
            .extra
            .insert("cwd".into(), json!(real_path(&cwd)));
        let context = &mut request.context.extra;
        context.insert(
            "request".into(),
            json!({"read": read, "write": write, "net": self.allow_net, "keep_env": self.keep_env}),
        );
        context.insert("env".into(), json!(env_names));
        context.insert("kernel".into(), kernel.to_json());
        context.insert("cordon_paths".into(), json!(cordon_paths));
        let capability = Capability::new("sandbox").map_err(refused)?;
        let input = supervisor
            .pipeline()
            .builder()
            .build_for(&capability, &request)
            .map_err(refused)?;
        let decided = supervisor
            .pipeline()
            .decide_input(&capability, input.clone());
        let launch = Launch {
            supervisor: &supervisor,
            capability,
            input: decided.input.unwrap_or(input),
            decision: decided.decision,
        };
        if !launch.decision.allow {
            launch.record(Outcome::Refused, json!({ "refused": "policy" }));
            return Err(refused(anyhow!(
                "the policy refused to launch `{}`: {}",
                command[0],
                launch.decision.reasons.join("; ")
            )))
            .hint("see what the policy grants with `cordon exec --dry-run -- CMD`; ask for less, or change the policy");
        }
        let grants = Grants::from_decision(launch.decision.grants.as_ref())
            .map_err(|reason| launch.refuse(Outcome::Refused, &reason))?;

        let (uid, gid) = sys::real_ids();
        let home = dirs::home_dir().unwrap_or_else(|| PathBuf::from("/"));
        let plan = cordon_sandbox::plan::plan(&grants, &home, uid);
        for path in &plan.skipped {
            tracing::debug!("granted `{}` does not exist here; skipped", path.display());
        }

        let wants_caps = grants.limits.pids.is_some() || grants.limits.memory_bytes.is_some();
        let mut missing: Vec<(Feature, String)> = Vec::new();
        if kernel.landlock_abi == 0 {
            missing.push((
                Feature::Landlock,
                "this kernel has no Landlock, so file access cannot be confined in the kernel"
                    .into(),
            ));
        }
        if !kernel.seccomp {
            missing.push((
                Feature::Seccomp,
                "this kernel has no seccomp filters, so dangerous system calls stay open".into(),
            ));
        }
        let pid = std::process::id();
        let cgroup = if wants_caps {
            match Cgroup::create(&kernel.cgroups, &format!("cordon-{pid}"), &grants.limits) {
                Ok(cgroup) => Some(cgroup),
                Err(err) => {
                    missing.push((
                        Feature::Cgroups,
                        format!("{err}, so the process and memory caps cannot hold"),
                    ));
                    None
                }
            }
        } else {
            None
        };
        let required: Vec<&(Feature, String)> = missing
            .iter()
            .filter(|(f, _)| grants.require.contains(f))
            .collect();
        if !required.is_empty() && !self.allow_degraded {
            let why: Vec<&str> = required.iter().map(|(_, why)| why.as_str()).collect();
            return Err(launch.refuse(Outcome::Refused, &why.join("; ")))
                .hint("`cordon doctor` shows what this kernel has; `--allow-degraded` runs anyway, and records that it did");
        }
        let degraded: Vec<&str> = missing.iter().map(|(f, _)| f.name()).collect();
        for (feature, why) in &missing {
            tracing::warn!("running without {}: {why}", feature.name());
        }

        if self.dry_run {
            let report = json!({
                "decision": launch.decision,
                "plan": plan,
                "degraded": degraded,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(Exit::Ok);
        }

        let terminal = {
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            sys::is_terminal(stdin.as_fd()) && sys::is_terminal(stdout.as_fd())
        };
        let pty = if terminal {
            Some(
                sys::open_pseudo_terminal()
                    .context("cannot open a pseudo-terminal")
                    .map_err(|e| launch.refuse(Outcome::Failed, &format!("{e:#}")))?,
            )
        } else {
            None
        };
        let (status_read, status_write) = std::io::pipe()
            .context("cannot create the status pipe")
            .map_err(refused)?;
        let status_write = OwnedFd::from(status_write);
        sys::set_inheritable(status_write.as_fd(), true)
            .context("cannot pass the status pipe")
            .map_err(refused)?;
        let spec = LaunchSpec {
            command: command.clone(),
            cwd: real_path(&cwd),
            uid,
            gid,
            plan: plan.clone(),
            landlock: kernel.landlock_abi > 0,
            seccomp: kernel.seccomp,
            cgroup_procs: cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default(),
            terminal,
            status_fd: std::os::fd::AsRawFd::as_raw_fd(&status_write),
            parent: i32::try_from(pid).unwrap_or_default(),
        };
        let mut helper = Command::new("/proc/self/exe");
        helper
            .arg("__sandbox-helper")
            .arg(serde_json::to_string(&spec)?)
            .env_clear();
        let kept: std::collections::BTreeSet<&str> =
            grants.env.iter().map(String::as_str).collect();
        for (name, value) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| kept.contains(n)) {
                helper.env(name, value);
            }
        }
        if let Some((_, slave)) = &pty {
            for stream in 0..3 {
                let fd = slave.try_clone().context("cannot share the terminal")?;
                match stream {
                    0 => helper.stdin(Stdio::from(fd)),
                    1 => helper.stdout(Stdio::from(fd)),
                    _ => helper.stderr(Stdio::from(fd)),
                };
            }
        }
        let child = helper.spawn();
        drop(status_write);
        let mut child = child
            .context("cannot start the sandbox helper")
            .map_err(|e| launch.refuse(Outcome::Failed, &format!("{e:#}")))?;
        let helper_pid = i32::try_from(child.id()).unwrap_or_default();
        let relay = pty.map(|(master, slave)| {
            drop(slave);
            TerminalRelay::start(master)
        });
        forward_signals(helper_pid, relay.as_ref().map(|r| r.master.clone()));

        let status = launch::read_status(status_read);
        let exit = child
            .wait()
            .map(|s| exit_code(&s))
            .unwrap_or(i32::from(SETUP_FAILED as u8));
        if let Some(relay) = relay {
            relay.finish();
        }
        drop(cgroup);
        match status {
            Ok(None) => {}
            Ok(Some(Status::Setup(message))) => {
                return Err(launch.refuse(
                    Outcome::Failed,
                    &format!("cannot set up the sandbox: {message}"),
                ));
            }
            Ok(Some(Status::Exec(message))) => {
                launch.record(
                    Outcome::Failed,
                    json!({ "exit_code": exit, "error": message }),
                );
                let code = u8::try_from(exit).unwrap_or(SETUP_FAILED as u8);
                return Err(refused(anyhow!("{message}")).with_exit(Exit::Code(code)));
            }
            Err(err) => return Err(launch.refuse(Outcome::Failed, &err.to_string())),
        }
        let created = quarantine_created(&plan.absent_protected);
        launch.record(
            Outcome::Performed,
            json!({ "exit_code": exit, "degraded": degraded, "quarantined": created }),
        );
        Ok(Exit::Code(u8::try_from(exit).unwrap_or(255)))
    }
}

/// What the running kernel offers.
struct Kernel {
    landlock_abi: u32,
    seccomp: bool,
    cgroups: Support,
}

impl Kernel {
    fn probe() -> Self {
        Self {
            landlock_abi: cordon_sys::landlock_abi_version().unwrap_or(0),
            seccomp: cordon_sys::seccomp_filter_supported().unwrap_or(false),
            cgroups: Support::detect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "landlock_abi": self.landlock_abi,
            "seccomp": self.seccomp,
            "cgroups": match self.cgroups {
                Support::V2 { .. } => "v2",
                Support::V1 { .. } => "v1",
                Support::None => "none",
            },
        })
    }
}

/// Makes each requested path absolute and real; a path that does not exist is an error.
fn resolve_all(paths: &[PathBuf], cwd: &Path) -> Result<Vec<PathBuf>, CliError> {
    paths
        .iter()
        .map(|path| {
            let expanded = cordon_supervisor::expand_home(path);
            let absolute = cwd.join(expanded);
            fs_err::canonicalize(&absolute)
                .with_context(|| format!("cannot grant `{}`: it does not exist", path.display()))
                .map_err(refused)
        })
        .collect()
}

fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(i32::from(SETUP_FAILED as u8))
}

/// Passes cordon's termination signals to the helper, which passes them to the program;
/// with a terminal, a window size change is copied to the program's terminal instead.
fn forward_signals(helper: i32, master: Option<std::sync::Arc<OwnedFd>>) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new(sys::FORWARDED_SIGNALS) else {
        tracing::warn!("cannot catch signals; they will not reach the program");
        return;
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            match (&master, signal) {
                (Some(master), libc::SIGWINCH) => {
                    let _ = sys::copy_window_size(std::io::stdin().as_fd(), master.as_fd());
                }
                _ => {
                    let _ = sys::kill(helper, signal);
                }
            }
        }
    });
}

/// Copies keys to the program's pseudo-terminal and its output back, with the person's
/// terminal in raw mode meanwhile.
struct TerminalRelay {
    master: std::sync::Arc<OwnedFd>,
    saved: Option<sys::TerminalMode>,
    output_done: std::sync::mpsc::Receiver<()>,
}

impl TerminalRelay {
    fn start(master: OwnedFd) -> Self {
        let stdin = std::io::stdin();
        let _ = sys::copy_window_size(stdin.as_fd(), master.as_fd());
        let saved = sys::make_raw(stdin.as_fd()).ok();
        let master = std::sync::Arc::new(master);
        let input = master.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin().as_fd().try_clone_to_owned();
            if let (Ok(fd), Ok(stdin)) = (input.try_clone(), stdin) {
                let mut to_program = std::fs::File::from(fd);
                let _ = std::io::copy(&mut std::fs::File::from(stdin), &mut to_program);
            }
        });
        let (done, output_done) = std::sync::mpsc::channel();
        let output = master.clone();
        std::thread::spawn(move || {
            // Unbuffered both ways: a prompt has no newline to flush a line buffer.
            let stdout = std::io::stdout().as_fd().try_clone_to_owned();
            if let (Ok(fd), Ok(stdout)) = (output.try_clone(), stdout) {
                let mut from_program = std::fs::File::from(fd);
                let mut stdout = std::fs::File::from(stdout);
                // Ends with EIO once no process holds the program's side any more.
                let _ = std::io::copy(&mut from_program, &mut stdout);
            }
            let _ = done.send(());
        });
        Self {
            master,
            saved,
            output_done,
        }
    }

    /// Waits (at most a second) for the last output, then restores the terminal.
    fn finish(self) {
        let _ = self.output_done.recv_timeout(Duration::from_secs(1));
        if let Some(saved) = &self.saved {
            let _ = sys::set_terminal_mode(std::io::stdin().as_fd(), saved);
        }
    }
}

/// Protected paths that did not exist at launch cannot be mounted read-only; if the program
/// created one, it is renamed aside so that the next run does not act on it.
fn quarantine_created(absent: &[PathBuf]) -> Vec<String> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut moved = Vec::new();
    for path in absent {
        if fs_err::symlink_metadata(path).is_err() {
            continue;
        }
        let mut aside = path.clone().into_os_string();
        aside.push(format!(".cordon-quarantine-{stamp}"));
        match fs_err::rename(path, &aside) {
            Ok(()) => {
                tracing::warn!(
                    "the program created the protected path `{}`; moved to `{}`",
                    path.display(),
                    Path::new(&aside).display()
                );
                moved.push(path.display().to_string());
            }
            Err(err) => tracing::error!(
                "the program created the protected path `{}` and it cannot be moved aside: {err}",
                path.display()
            ),
        }
    }
    moved
}

/// Runs the sandbox helper (the hidden `cordon __sandbox-helper SPEC`).
#[derive(Debug, Args)]
pub struct SandboxHelperCommand {
    /// The launch specification, as JSON
    spec: String,
}

impl SandboxHelperCommand {
    /// Runs the command: never returns.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let spec: LaunchSpec = serde_json::from_str(&self.spec)
            .context("the sandbox helper's specification is malformed")?;
        launch::helper_main(&spec)
    }
}
