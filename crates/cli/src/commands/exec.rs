//! `cordon exec`: run a native program in the sandbox, with what the policy grants.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_sandbox::cgroup::{Cgroup, Support};
use cordon_sandbox::grants::{Feature, Grants};
use cordon_sandbox::guard::{Action, Change, Finding, Guard};
use cordon_sandbox::launch::{self, Early, LaunchSpec, ProxyEndpoint, Status, SETUP_FAILED};
use cordon_supervisor::{real_path, Decided, Supervisor};
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
/// loopback and cordon's egress proxy (HTTP_PROXY, HTTPS_PROXY and ALL_PROXY point at it),
/// which decides every connection. Only an allowlist of environment variables passes.
///
/// The workspace may not be your home, an ancestor of it, /tmp, /var/tmp or /run (nor may
/// --allow-write name them) unless you pass --unsafe-broad-write. cordon's own configuration
/// and state stay read-only whether or not they exist; protected paths are compared after
/// the run, and what the program created, changed or replaced there is moved aside.
///
/// --allow-* and --keep-env are requests: the policy (data.cordon.sandbox) decides what is
/// granted, and refuses secrets locations whatever is asked. The decision, the grants and
/// the outcome are recorded in the audit log.
///
/// When any standard stream is a terminal, the program gets a pseudo-terminal of its own in
/// its place, so interactive shells work while nothing can be typed into yours and nothing
/// read from it; escape sequences that would write your clipboard (OSC 52) or make your
/// terminal answer are removed from its output.
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

    /// Ask to let the program reach HOST (any port) or HOST:PORT through cordon's proxy; an internal address must be named with its port
    #[arg(long, value_name = "HOST[:PORT]")]
    allow_net: Vec<String>,

    /// Ask to keep the environment variable NAME (only an allowlist passes by default: PATH,
    /// HOME, the locale, the terminal, tool-chain and CA-bundle variables)
    #[arg(long, value_name = "NAME")]
    keep_env: Vec<String>,

    /// Allow a workspace or --allow-write that is your home, an ancestor of it, /tmp,
    /// /var/tmp, /run or /run/user/*: the agent could then plant what runs outside later
    /// (shell start-up files, git configuration, autostart entries). Recorded in the audit log
    #[arg(long)]
    unsafe_broad_write: bool,

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
    /// The decision, until it is recorded: the sandbox is prepared meanwhile, and the
    /// program runs only once the record is durable.
    pending: Option<Decided>,
}

impl Launch<'_> {
    /// Records the decision if it is not yet; returns whether the launch is still allowed
    /// (a decision that cannot be recorded is a denial).
    fn commit(&mut self) -> bool {
        if let Some(decided) = self.pending.take() {
            let recorded = self
                .supervisor
                .pipeline()
                .record_decided(&self.capability, decided);
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
            &self.capability,
            input,
            self.decision.clone(),
            outcome,
            true,
        ) {
            tracing::error!("cannot record the outcome of the launch: {err}");
        }
    }

    fn refuse(&mut self, outcome: Outcome, reason: &str) -> CliError {
        self.record(outcome, json!({ "refused": reason }));
        refused(anyhow!("{reason}"))
    }
}

impl ExecCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let started = std::time::Instant::now();
        let config = load_config(cli, &self.policy).map_err(refused)?;
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
        if !self.dry_run {
            recover_pending();
        }
        let read = resolve_all(&self.allow_read, &cwd)?;
        let write = resolve_all(&self.allow_write, &cwd)?;
        let kernel = Kernel::probe();
        // Malformed --allow-net entries are refused before anything starts.
        let net = super::proxy::requested_hosts(&self.allow_net).map_err(refused)?;

        // The helper starts now and prepares the namespaces while the policy loads.
        let mut helper = if self.dry_run {
            None
        } else {
            Some(Helper::start(&kernel)?)
        };
        tracing::debug!("helper started after {:?}", started.elapsed());
        let supervisor = match Supervisor::start_for(&config, &["sandbox", "net"])
            .context("cannot start cordon")
        {
            Ok(supervisor) => Arc::new(supervisor),
            Err(err) => {
                Helper::cancel_if_started(&mut helper);
                return Err(refused(err));
            }
        };
        tracing::debug!("policy loaded after {:?}", started.elapsed());
        let scan = read.clone();
        let requested = Requested { read, write, net };
        let own = own_paths(&config, &supervisor);
        let decided = self.decide(&supervisor, &own, &command, &cwd, requested, &kernel);
        let (mut launch, grants) = match decided {
            Ok(decided) => decided,
            Err(err) => {
                Helper::cancel_if_started(&mut helper);
                return Err(err);
            }
        };
        tracing::debug!("decided after {:?}", started.elapsed());
        if !self.dry_run {
            if let Err(err) = create_own_dirs(&own, &grants.write) {
                Helper::cancel_if_started(&mut helper);
                return Err(err);
            }
        }
        let (uid, _) = sys::real_ids();
        let home = real_path(&dirs::home_dir().unwrap_or_else(|| PathBuf::from("/")));
        let plan = match cordon_sandbox::plan::plan(&grants, &home, uid, &scan) {
            Ok(plan) => plan,
            Err(why) => {
                Helper::cancel_if_started(&mut helper);
                return Err(launch.refuse(Outcome::Refused, &why));
            }
        };
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
        if wants_caps {
            let capped = match &mut helper {
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
        let required: Vec<&(Feature, String)> = missing
            .iter()
            .filter(|(f, _)| grants.require.contains(f))
            .collect();
        if !required.is_empty() && !self.allow_degraded {
            Helper::cancel_if_started(&mut helper);
            let why: Vec<&str> = required.iter().map(|(_, why)| why.as_str()).collect();
            return Err(launch.refuse(Outcome::Refused, &why.join("; ")))
                .hint("`cordon doctor` shows what this kernel has; `--allow-degraded` runs anyway, and records that it did");
        }
        let degraded: Vec<&str> = missing.iter().map(|(f, _)| f.name()).collect();
        for (feature, why) in &missing {
            tracing::warn!("running without {}: {why}", feature.name());
        }

        let Some(mut helper) = helper else {
            launch.commit();
            let report = json!({
                "decision": launch.decision,
                "plan": plan,
                "degraded": degraded,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(Exit::Ok);
        };
        let kept: std::collections::BTreeSet<&str> =
            grants.env.iter().map(String::as_str).collect();
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
        let no_proxy = "localhost".to_owned();
        let mut env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(name, _)| kept.contains(name.as_str()))
            .filter(|(name, _)| {
                !proxy_env.iter().any(|(n, _)| n == name) && !name.eq_ignore_ascii_case("no_proxy")
            })
            .collect();
        env.extend(
            proxy_env
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).clone())),
        );
        // Inside, the home is where it really is (the view has no link leading to it).
        if let Some((_, value)) = env.iter_mut().find(|(name, _)| name == "HOME") {
            *value = home.display().to_string();
        }
        env.push(("NO_PROXY".into(), no_proxy.clone()));
        env.push(("no_proxy".into(), no_proxy));
        // Protected paths as they are before anything runs; compared after the run.
        // cordon's own directories are written by cordon itself during the run (the audit
        // log): protected, but not compared.
        let guarded: Vec<_> = plan
            .guarded
            .iter()
            .filter(|g| !own.iter().any(|o| g.path.starts_with(o)))
            .cloned()
            .collect();
        let guard = Guard::record_with_repositories(&guarded, &plan.repos);
        // Saved until checked: if cordon is killed before the program's end, the next run
        // does the check.
        let pending = pending_dir().map(|dir| dir.join(format!("{}.json", process_key("self"))));
        // While the run lasts, the saved check's time is renewed every few seconds: should
        // cordon be killed, the next run knows when this one ended at the latest, and leaves
        // what changed after it to the person.
        let heartbeat = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        if let Some(path) = &pending {
            let _ = fs_err::remove_file(path);
            match guard.save(path) {
                Ok(()) => {
                    let (path, alive) = (path.clone(), heartbeat.clone());
                    std::thread::spawn(move || {
                        while alive.load(std::sync::atomic::Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_secs(PENDING_HEARTBEAT_SECS));
                            let touched = fs_err::OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .and_then(|f| f.file().set_modified(std::time::SystemTime::now()));
                            if touched.is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(err) => tracing::warn!(
                    "cannot save the check of protected paths to `{}`: {err}",
                    path.display()
                ),
            }
        }
        let spec = LaunchSpec {
            command,
            cwd: real_path(&cwd),
            env,
            plan: plan.clone(),
            landlock: kernel.landlock_abi > 0,
            seccomp: kernel.seccomp,
        };
        // The helper builds the view while the decision is made durable; the program
        // starts only after.
        let sent = helper.send(&spec);
        tracing::debug!("specification sent after {:?}", started.elapsed());
        if !launch.commit() {
            helper.cancel();
            return Err(refused(anyhow!(
                "the launch of `{}` was refused: {}",
                spec.command[0],
                launch.decision.reasons.join("; ")
            )));
        }
        tracing::debug!("decision recorded after {:?}", started.elapsed());
        // The proxy serves the listening socket the helper made inside the sandbox.
        // The hosts the sandbox decision granted (the person's --allow-net, as the policy
        // let them through) are what the proxy's decisions see as requested.
        let granted_net = match grants
            .net
            .iter()
            .map(|entry| cordon_egress::normalize_allow_entry(entry))
            .collect::<Result<Vec<_>, String>>()
        {
            Ok(granted) => granted,
            Err(err) => {
                helper.cancel();
                return Err(
                    launch.refuse(Outcome::Refused, &format!("malformed `grants.net`: {err}"))
                );
            }
        };
        let options = cordon_egress::ProxyOptions {
            requested: granted_net,
            ..cordon_egress::ProxyOptions::default()
        };
        if let Err(reason) = helper.serve_proxy(&supervisor, options) {
            helper.cancel();
            return Err(launch.refuse(Outcome::Failed, &reason));
        }
        let (exit, status) = helper.go(sent, started);
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
        tracing::debug!("program ended after {:?}", started.elapsed());
        heartbeat.store(false, std::sync::atomic::Ordering::Relaxed);
        let protected = check_protected(&guard, None);
        if let Some(path) = &pending {
            let _ = fs_err::remove_file(path);
        }
        launch.record(
            Outcome::Performed,
            json!({
                "exit_code": exit,
                "degraded": degraded,
                "protected": protected,
                "landlock": landlock_record(&kernel),
            }),
        );
        // Something the program left on a protected path could not be moved aside: the run
        // does not end as a success, whatever the program's own status.
        if protected.iter().any(|f| f.action == Action::Unresolved) {
            return Err(refused(anyhow!(
                "the program left changes on protected paths that could not be moved aside; look at them before running anything there (see the errors above)"
            )));
        }
        Ok(Exit::Code(u8::try_from(exit).unwrap_or(255)))
    }

    /// Asks the policy for the grant set; the decision is recorded by [`Launch::commit`].
    fn decide<'a>(
        &self,
        supervisor: &'a Supervisor,
        cordon_paths: &[PathBuf],
        command: &[String],
        cwd: &Path,
        requested: Requested,
        kernel: &Kernel,
    ) -> Result<(Launch<'a>, Grants), CliError> {
        let env_names: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        // Values never reach the policy or the audit log: only the names of variables whose
        // value carries credentials in a URL.
        let env_credentials: Vec<String> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let value = value.to_string_lossy();
                let credentials = cordon_audit::url_credentials(&value).next().is_some();
                credentials.then(|| name.into_string().ok())?
            })
            .collect();
        let mut request = Request {
            action: "launch".into(),
            ..Request::default()
        };
        let resource = &mut request.resource.extra;
        resource.insert("command".into(), json!(command));
        resource.insert("cwd".into(), json!(real_path(cwd)));
        let context = &mut request.context.extra;
        context.insert(
            "request".into(),
            json!({
                "read": requested.read,
                "write": requested.write,
                "net": requested.net,
                "keep_env": self.keep_env,
                "broad_write": self.unsafe_broad_write,
            }),
        );
        context.insert("env".into(), json!(env_names));
        context.insert("as_root".into(), json!(sys::real_ids().0 == 0));
        if let Some(config_home) = dirs::config_dir() {
            context.insert("config_home".into(), json!(real_path(&config_home)));
        }
        context.insert("env_credentials".into(), json!(env_credentials));
        context.insert("kernel".into(), kernel.to_json());
        context.insert(
            "machine".into(),
            json!({ "memory_bytes": physical_memory_bytes() }),
        );
        context.insert("cordon_paths".into(), json!(cordon_paths));
        let capability = Capability::new("sandbox").map_err(refused)?;
        let input = supervisor
            .pipeline()
            .builder()
            .build_for(&capability, &request)
            .map_err(refused)?;
        let decided = supervisor
            .pipeline()
            .decide_unrecorded(&capability, input.clone());
        let mut launch = Launch {
            supervisor,
            capability,
            input: decided.input.clone().unwrap_or(input),
            decision: decided.decision.clone(),
            pending: Some(decided),
        };
        if !launch.decision.allow {
            launch.commit();
            return Err(refused(anyhow!(
                "the policy refused to launch `{}`: {}",
                command[0],
                launch.decision.reasons.join("; ")
            )))
            .hint("see what the policy grants with `cordon exec --dry-run -- CMD`; ask for less, or change the policy");
        }
        let grants = Grants::from_decision(launch.decision.grants.as_ref())
            .map_err(|reason| launch.refuse(Outcome::Refused, &reason))?;
        Ok((launch, grants))
    }
}

/// A started helper, waiting for the launch specification.
struct Helper {
    /// Moves the helper into the cgroups; finished before the helper may fork.
    joining: Option<std::thread::JoinHandle<Result<(), String>>>,
    child: std::process::Child,
    spec: std::fs::File,
    status: std::io::PipeReader,
    cgroup: Option<Cgroup>,
    cgroup_error: Option<String>,
    /// Whether a standard stream is the person's terminal: the sandbox's init then opens a
    /// pseudo-terminal in its own devpts and sends its other side over `proxy_socket`.
    terminal: bool,
    /// cordon's end of the socket the helper sends the proxy's listener over (and init the
    /// terminal).
    proxy_socket: std::os::unix::net::UnixStream,
}

/// The port of the egress proxy on 127.0.0.1 inside every sandbox.
const PROXY_PORT: u16 = 3128;

impl Helper {
    /// Creates the cgroups and the pipes and starts the helper.
    fn start(kernel: &Kernel) -> Result<Self, CliError> {
        let (cgroup, cgroup_error) =
            match Cgroup::create(&kernel.cgroups, &cordon_sandbox::cgroup::unique_name()) {
                Ok(cgroup) => (Some(cgroup), None),
                Err(err) => (None, Some(err.to_string())),
            };
        // Any standard stream on a terminal is replaced by the program's own pseudo-terminal:
        // the person's terminal is never handed to it (it could read what is typed there, and
        // change its modes).
        let on_terminal = streams_on_terminal();
        let terminal = on_terminal.iter().any(|t| *t);
        let pipe = || -> Result<(std::io::PipeReader, OwnedFd), CliError> {
            let (read, write) = std::io::pipe()
                .context("cannot create a pipe to the sandbox helper")
                .map_err(refused)?;
            Ok((read, OwnedFd::from(write)))
        };
        let (status_read, status_write) = pipe()?;
        let (spec_read, spec_write) = pipe()?;
        let spec_read = OwnedFd::from(spec_read);
        for fd in [status_write.as_fd(), spec_read.as_fd()] {
            sys::set_inheritable(fd, true)
                .context("cannot pass a pipe to the sandbox helper")
                .map_err(refused)?;
        }
        let (proxy_socket, helper_socket) = std::os::unix::net::UnixStream::pair()
            .context("cannot create the proxy socket pair")
            .map_err(refused)?;
        sys::set_inheritable(helper_socket.as_fd(), true)
            .context("cannot pass the proxy socket to the sandbox helper")
            .map_err(refused)?;
        let (uid, gid) = sys::real_ids();
        let early = Early {
            uid,
            gid,
            terminal: on_terminal,
            status_fd: std::os::fd::AsRawFd::as_raw_fd(&status_write),
            spec_fd: std::os::fd::AsRawFd::as_raw_fd(&spec_read),
            parent: i32::try_from(std::process::id()).unwrap_or_default(),
            proxy: Some(ProxyEndpoint {
                socket_fd: std::os::fd::AsRawFd::as_raw_fd(&helper_socket),
                port: PROXY_PORT,
            }),
        };
        let early = serde_json::to_string(&early)?;
        // The small helper next to cordon starts fastest; cordon itself can stand in.
        let small = std::env::current_exe()
            .ok()
            .map(|exe| exe.with_file_name("cordon-sandbox-helper"))
            .filter(|path| path.is_file());
        let mut command = match &small {
            Some(path) => Command::new(path),
            None => {
                tracing::debug!(
                    "no cordon-sandbox-helper next to cordon; cordon starts the sandbox itself"
                );
                let mut command = Command::new("/proc/self/exe");
                command.arg("__sandbox-helper");
                command
            }
        };
        command.arg(early).env_clear();
        // The person's terminal never reaches the sandbox, not even its helper: those
        // streams are replaced by the sandbox's own terminal before the program runs.
        for stream in (0..3).filter(|&s| on_terminal[s]) {
            match stream {
                0 => command.stdin(Stdio::null()),
                1 => command.stdout(Stdio::null()),
                _ => command.stderr(Stdio::null()),
            };
        }
        let child = command.spawn();
        drop(status_write);
        drop(spec_read);
        drop(helper_socket);
        let child = child
            .context("cannot start the sandbox helper")
            .map_err(refused)?;
        // Joining a cgroup waits for the kernel (an RCU grace period on cgroup v1): done
        // here, it overlaps with loading the policy.
        let procs = cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default();
        let pid = child.id().to_string();
        let joining = std::thread::spawn(move || {
            for file in procs {
                fs_err::write(&file, &pid).map_err(|e| format!("cannot join the cgroup: {e}"))?;
            }
            Ok(())
        });
        Ok(Self {
            joining: Some(joining),
            child,
            spec: std::fs::File::from(spec_write),
            status: status_read,
            cgroup,
            cgroup_error,
            terminal,
            proxy_socket,
        })
    }

    /// Receives the proxy's listening socket from the helper and serves it on a runtime of
    /// its own, for as long as cordon runs.
    fn serve_proxy(
        &self,
        supervisor: &Arc<Supervisor>,
        options: cordon_egress::ProxyOptions,
    ) -> Result<(), String> {
        let _ = self
            .proxy_socket
            .set_read_timeout(Some(Duration::from_secs(10)));
        let listener = match sys::recv_fd(self.proxy_socket.as_fd()) {
            Ok(Some(fd)) => std::net::TcpListener::from(fd),
            Ok(None) => return Err("the sandbox helper sent no proxy socket".into()),
            Err(err) => return Err(format!("cannot receive the proxy socket: {err}")),
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot set up the proxy socket: {e}"))?;
        let gate: Arc<dyn cordon_egress::Gate> = Arc::new(
            super::proxy::PipelineGate::new(Arc::clone(supervisor)).map_err(|e| e.to_string())?,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cordon-proxy")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the proxy: {e}"))?;
        std::thread::Builder::new()
            .name("cordon-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            cordon_egress::Proxy::new(gate, options)
                                .serve(listener)
                                .await
                        }
                        Err(err) => tracing::error!("cannot serve the proxy socket: {err}"),
                    }
                });
            })
            .map_err(|e| format!("cannot start the proxy: {e}"))?;
        Ok(())
    }

    /// Applies the caps to the tree's cgroups.
    fn cap(&mut self, limits: &cordon_sandbox::grants::Limits) -> Result<(), String> {
        self.joined()?;
        match (&self.cgroup, &self.cgroup_error) {
            (Some(cgroup), _) => cgroup.set_limits(limits).map_err(|e| e.to_string()),
            (None, Some(err)) => Err(err.clone()),
            (None, None) => Err("no cgroup".into()),
        }
    }

    /// Waits until the helper is in its cgroups.
    fn joined(&mut self) -> Result<(), String> {
        match self.joining.take().map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(err))) => {
                self.cgroup_error = Some(err.clone());
                Err(err)
            }
            Some(Err(_)) => Err("the cgroup join panicked".into()),
        }
    }

    /// Stops the helper, when one was started, before it runs anything.
    fn cancel_if_started(helper: &mut Option<Helper>) {
        if let Some(helper) = helper.take() {
            helper.cancel();
        }
    }

    /// Stops the helper before it runs anything.
    fn cancel(mut self) {
        drop(self.spec);
        let _ = self.child.wait();
        drop(self.cgroup);
    }

    /// Sends the specification: the helper builds the view, then waits for [`Helper::go`].
    fn send(&mut self, spec: &LaunchSpec) -> std::io::Result<()> {
        // Nothing may start outside the cgroups (a failure to join was decided on already).
        let _ = self.joined();
        launch::write_spec(&mut self.spec, spec)
    }

    /// Lets the program run, relays the terminal and signals, and waits. Returns the exit
    /// code and what the helper reported before the program ran.
    fn go(
        mut self,
        sent: std::io::Result<()>,
        started: std::time::Instant,
    ) -> (i32, Result<Option<Status>, cordon_sandbox::SandboxError>) {
        let helper_pid = i32::try_from(self.child.id()).unwrap_or_default();
        // The terminal comes once init has built the view (nothing, if setting up failed:
        // the status says why).
        let master = if self.terminal && sent.is_ok() {
            let _ = self
                .proxy_socket
                .set_read_timeout(Some(Duration::from_secs(30)));
            sys::recv_fd(self.proxy_socket.as_fd()).ok().flatten()
        } else {
            None
        };
        let sent = sent.and_then(|()| self.spec.write_all(&[launch::GO]));
        drop(self.spec);
        let relay = master.map(|master| TerminalRelay::start(master, helper_pid));
        forward_signals(helper_pid, relay.as_ref().map(|r| r.master.clone()));
        let status = launch::read_status(self.status);
        tracing::debug!("program executed after {:?}", started.elapsed());
        let exit = self
            .child
            .wait()
            .map(|s| exit_code(&s))
            .unwrap_or(i32::from(SETUP_FAILED as u8));
        if let Some(relay) = relay {
            relay.finish();
        }
        drop(self.cgroup);
        let status = match (status, sent) {
            (Ok(None), Err(err)) => Err(cordon_sandbox::SandboxError::Helper(format!(
                "cannot send the launch specification: {err}"
            ))),
            (status, _) => status,
        };
        (exit, status)
    }
}

/// What the person asked for, resolved: real paths, normalised hosts.
struct Requested {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    net: Vec<String>,
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

/// The Landlock enforcement this launch obtained, for the audit log: the kernel's ABI, the one
/// cordon asks for, and whether every right it asks for is enforced.
fn landlock_record(kernel: &Kernel) -> Value {
    let wanted = cordon_sandbox::landlock::ABI_WANTED_NUMBER;
    let enforcement = match kernel.landlock_abi {
        0 => "none",
        abi if abi >= wanted => "full",
        _ => "partial",
    };
    json!({ "abi": kernel.landlock_abi, "wanted": wanted, "enforcement": enforcement })
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
        let mut terminations = 0;
        for signal in signals.forever() {
            match (&master, signal) {
                (Some(master), libc::SIGWINCH) => copy_window_size_to(master),
                _ => {
                    let _ = sys::kill(helper, signal);
                    if matches!(signal, libc::SIGTERM | libc::SIGINT | libc::SIGHUP) {
                        terminations += 1;
                    }
                    // A program that ignores being asked to end is ended: the sandbox goes
                    // and cordon checks what it left.
                    if terminations == 3 {
                        eprintln!("cordon: the program ignores termination; ending the sandbox");
                        let _ = sys::kill(helper, libc::SIGKILL);
                    }
                }
            }
        }
    });
}

/// Which of standard input, output and error are terminals.
fn streams_on_terminal() -> [bool; 3] {
    [
        sys::is_terminal(std::io::stdin().as_fd()),
        sys::is_terminal(std::io::stdout().as_fd()),
        sys::is_terminal(std::io::stderr().as_fd()),
    ]
}

/// Copies the window size of the person's terminal (the first standard stream that is one)
/// to the program's.
fn copy_window_size_to(master: &OwnedFd) {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let streams = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let terminal = streams.into_iter().find(|fd| sys::is_terminal(*fd));
    if let Some(terminal) = terminal {
        let _ = sys::copy_window_size(terminal, master.as_fd());
    }
}

/// Copies keys to the program's pseudo-terminal (when standard input is the person's
/// terminal, put in raw mode meanwhile) and its output back, less the escape sequences a
/// program may not send the person's terminal ([`crate::terminal_filter`]).
struct TerminalRelay {
    master: std::sync::Arc<OwnedFd>,
    saved: Option<sys::TerminalMode>,
    output_done: std::sync::mpsc::Receiver<()>,
}

impl TerminalRelay {
    fn start(master: OwnedFd, helper: i32) -> Self {
        let [stdin_is_terminal, stdout_is_terminal, _] = streams_on_terminal();
        copy_window_size_to(&master);
        let saved = if stdin_is_terminal {
            sys::make_raw(std::io::stdin().as_fd()).ok()
        } else {
            None
        };
        let master = std::sync::Arc::new(master);
        if stdin_is_terminal {
            let input = master.clone();
            std::thread::spawn(move || {
                let stdin = std::io::stdin().as_fd().try_clone_to_owned();
                if let (Ok(fd), Ok(stdin)) = (input.try_clone(), stdin) {
                    let mut to_program = std::fs::File::from(fd);
                    let _ = std::io::copy(&mut std::fs::File::from(stdin), &mut to_program);
                }
                // A terminal in raw mode ends only when it hangs up: so does the program's.
                let _ = sys::kill(helper, libc::SIGHUP);
            });
        }
        let (done, output_done) = std::sync::mpsc::channel();
        let output = master.clone();
        std::thread::spawn(move || {
            // The program's terminal output goes where the person's terminal is.
            let to = if stdout_is_terminal {
                std::io::stdout().as_fd().try_clone_to_owned()
            } else {
                std::io::stderr().as_fd().try_clone_to_owned()
            };
            if let (Ok(fd), Ok(to)) = (output.try_clone(), to) {
                let mut from_program = std::fs::File::from(fd);
                let mut to = std::fs::File::from(to);
                // Unbuffered: a prompt has no newline to flush a line buffer. Ends with EIO
                // once no process holds the program's side any more.
                let mut filter = crate::terminal_filter::Filter::default();
                let mut buf = vec![0u8; 64 * 1024];
                let mut out = Vec::with_capacity(buf.len());
                while let Ok(n) = std::io::Read::read(&mut from_program, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.clear();
                    filter.push(&buf[..n], &mut out);
                    if std::io::Write::write_all(&mut to, &out).is_err() {
                        break;
                    }
                }
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

/// cordon's own policy, configuration and state, whether or not they exist yet: an agent
/// that could write them would set the next run's policy.
fn own_paths(config: &cordon_supervisor::CordonConfig, supervisor: &Supervisor) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(path) = &config.policy.path {
        paths.push(real_path(&cordon_supervisor::expand_home(path)));
    }
    if let Some(path) = supervisor.audit_path().and_then(Path::parent) {
        paths.push(path.to_path_buf());
    }
    for dir in [
        dirs::config_dir(),
        dirs::data_dir(),
        dirs::cache_dir(),
        dirs::state_dir(),
    ]
    .into_iter()
    .flatten()
    {
        paths.push(real_path(&dir).join("cordon"));
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Creates those of cordon's own directories that do not exist yet but lie in a writable
/// grant, so that the view can hold them read-only instead of letting the agent create them.
fn create_own_dirs(own: &[PathBuf], writable: &[PathBuf]) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    for path in own {
        if fs_err::symlink_metadata(path).is_ok()
            || !writable.iter().any(|root| path.starts_with(root))
        {
            continue;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create cordon's directory `{}`", path.display()))
            .map_err(refused)?;
    }
    Ok(())
}

/// How often a running cordon renews its saved check (see [`recover_pending`]).
const PENDING_HEARTBEAT_SECS: u64 = 5;

/// Where checks of protected paths wait until done: cordon's state directory.
fn pending_dir() -> Option<PathBuf> {
    dirs::state_dir()
        .or_else(dirs::data_dir)
        .map(|dir| dir.join("cordon").join("pending"))
}

/// A process's id and start time (`PID-TICKS`, from /proc/PID/stat), naming it uniquely over
/// the machine's uptime; empty when it does not exist.
fn process_key(pid: &str) -> String {
    let Ok(stat) = fs_err::read_to_string(format!("/proc/{pid}/stat")) else {
        return String::new();
    };
    let id = stat
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    // Fields after the command name (which may hold spaces and parentheses): the start time
    // is the 22nd field, the 20th after the name.
    let start = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .unwrap_or_default();
    format!("{id}-{start}")
}

/// Whether the process `pid` has ended but not been reaped.
fn is_zombie(pid: &str) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Runs the checks that earlier runs saved and did not live to run (cordon was killed while
/// its program ran): what such a program left on protected paths is moved aside now.
fn recover_pending() {
    let Some(dir) = pending_dir() else {
        return;
    };
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        // A cordon still running does its own check: the same process id started at the
        // same time (a process id alone may have been reused, or be a zombie's).
        let running = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|key| Some((key, key.split_once('-')?.0)))
            .is_some_and(|(key, pid)| process_key(pid) == key && !is_zombie(pid));
        if running {
            continue;
        }
        // The run ended at the latest one heartbeat after the file's last renewal.
        let ended = fs_err::metadata(&path)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64 + PENDING_HEARTBEAT_SECS as i64 + 1);
        match Guard::load(&path) {
            Ok(guard) => {
                tracing::warn!(
                    "an earlier cordon exec ended before checking its protected paths; checking them now"
                );
                check_protected(&guard, ended);
            }
            Err(err) => tracing::warn!("{err}; removed"),
        }
        let _ = fs_err::remove_file(&path);
    }
}

/// Compares the protected paths with their state at launch and reports each finding: what
/// the program created, changed or swapped for a link (and where it was moved), what changed
/// from outside (left), and what could not be moved.
fn check_protected(guard: &Guard, ended: Option<i64>) -> Vec<Finding> {
    let findings = guard.check_until(ended);
    for finding in &findings {
        let path = finding.path.display();
        let what = match finding.change {
            Change::Created => "created",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Diverted => "replaced with a link or a file",
        };
        match (finding.action, &finding.moved_to, &finding.error) {
            (Action::Moved, Some(to), _) => tracing::warn!(
                "the protected path `{path}` was {what} during the run; moved to `{}`",
                to.display()
            ),
            (Action::Unresolved, _, error) => tracing::error!(
                "the protected path `{path}` was {what} during the run and could not be moved aside: {}",
                error.as_deref().unwrap_or("unknown error")
            ),
            (_, _, Some(error)) => tracing::warn!(
                "the protected path `{path}` was {what} during the run: {error}"
            ),
            _ if finding.change == Change::Created => tracing::info!(
                "`{path}` was created during the run; it holds nothing that runs, so it stays"
            ),
            _ => tracing::warn!(
                "the protected path `{path}` was {what} during the run, from outside the sandbox (it was read-only inside); left as it is"
            ),
        }
    }
    findings
}

/// Runs the sandbox helper (the hidden `cordon __sandbox-helper EARLY`), when the small
/// `cordon-sandbox-helper` is not installed next to cordon.
#[derive(Debug, Args)]
pub struct SandboxHelperCommand {
    /// What the helper needs before the policy decides, as JSON
    early: String,
}

impl SandboxHelperCommand {
    /// Runs the command: never returns.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let early: Early = serde_json::from_str(&self.early)
            .context("the sandbox helper's start arguments are malformed")?;
        launch::helper_main(&early)
    }
}
