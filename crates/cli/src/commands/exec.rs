//! `cordon exec`: run a native program in the sandbox, with what the policy grants.

use std::ffi::OsString;
use std::io::Write;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_sandbox::launch::{self, Early, SETUP_FAILED};
use cordon_supervisor::session::{LaunchError, LaunchRequest, Session, StageMode};

use super::shared::{load_config, report_journaled, ConsentArgs, GrantArgs, PolicyArgs};
use crate::report::CliError;
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
/// When the policy asks a person (a host not on the egress allowlist, in the default policy),
/// the connection waits for an answer: on your terminal (--consent terminal, the default
/// when cordon runs in one; the program can neither see nor answer the question), from
/// `cordon approve` in another terminal (--consent socket), or no one (deny, the default
/// without a terminal). No answer within a minute is a denial.
///
/// Each run is a session with an id, carried by every one of its audit records: `cordon ps`
/// lists the running ones, `cordon stop ID` ends one, `cordon audit query --session ID`
/// shows what it was allowed and refused.
///
/// Exit status: the program's (128+N when killed by signal N); 125 when cordon refused or
/// could not set up the sandbox; 126 when the program cannot be executed; 127 when it is
/// not found.
///
/// Examples:
///   cordon exec -- bash
///   cordon exec --allow-read ~/datasets -- python3 train.py
///   cordon exec --allow-write ../shared-out --keep-env OPENAI_API_KEY -- ./agent
///   cordon exec --consent socket -- ./agent   # answer its questions with `cordon approve`
///   cordon exec --dry-run -- make       # print the grants and the view, run nothing
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ExecCommand {
    #[command(flatten)]
    policy: PolicyArgs,

    #[command(flatten)]
    grants: GrantArgs,

    /// Allow a workspace or --allow-write that is your home, an ancestor of it, /tmp,
    /// /var/tmp, /run or /run/user/*: the agent could then plant what runs outside later
    /// (shell start-up files, git configuration, autostart entries). Recorded in the audit log
    #[arg(long)]
    unsafe_broad_write: bool,

    /// Run even when a kernel feature the policy requires is missing (recorded in the audit log)
    #[arg(long)]
    allow_degraded: bool,

    #[command(flatten)]
    consent: ConsentArgs,

    /// Do not journal what the program changes in its writable trees (no `cordon journal
    /// undo` for this run)
    #[arg(long)]
    no_journal: bool,

    /// Keep the program's writes apart (an overlay on each writable tree): it sees its own
    /// changes, your trees do not change. `review` (the default): at the end, see them with
    /// `cordon journal staged`, then `cordon journal apply ID` or `discard ID`. `auto`: applied
    /// when the program exits with 0, kept for review otherwise
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_missing_value = "review", value_parser = ["review", "auto"])]
    stage: Option<String>,

    /// Print the decision, the grants and the planned view as JSON, and run nothing
    #[arg(long)]
    dry_run: bool,

    /// The program and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// cordon's own failure before the program runs: exit 125.
pub(super) fn refused(err: impl Into<CliError>) -> CliError {
    err.into().with_exit(Exit::Code(SETUP_FAILED as u8))
}

/// Command-line arguments as strings; one that is not UTF-8 is refused (exit 125).
pub(super) fn utf8_args(args: &[OsString]) -> Result<Vec<String>, CliError> {
    args.iter()
        .map(|a| {
            a.to_str().map(str::to_owned).ok_or_else(|| {
                refused(anyhow!(
                    "the argument `{}` is not valid UTF-8",
                    a.to_string_lossy()
                ))
            })
        })
        .collect()
}

/// A launch error as the person reads it, with the exit status it ends with.
pub(super) fn launch_error(err: LaunchError) -> CliError {
    let code = err.exit_code();
    let error = CliError::from(anyhow!(err.message)).with_exit(Exit::Code(code));
    match err.hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

impl ExecCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let started = std::time::Instant::now();
        let mut config = load_config(cli, &self.policy).map_err(refused)?;
        self.consent.apply(&mut config);
        if self.no_journal {
            config.journal.enabled = Some(false);
        }
        let command = utf8_args(&self.command)?;
        let cwd = std::env::current_dir()
            .context("cannot read the current directory")
            .map_err(refused)?;
        let mut request = LaunchRequest::new(config, command, cwd);
        self.grants.ask(&mut request);
        request.broad_write = self.unsafe_broad_write;
        request.allow_degraded = self.allow_degraded;
        request.forward_signals = true;
        request.front_end = "exec".into();
        request.stage = self.stage.as_deref().map(|mode| match mode {
            "auto" => StageMode::Auto,
            _ => StageMode::Review,
        });
        if self.dry_run {
            let report = Session::dry_run(request).map_err(launch_error)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)
                .and_then(|()| out.flush())
                .context("cannot write the dry run's report to standard output")?;
            return Ok(Exit::Ok);
        }
        let running = Session::launch(request).map_err(launch_error)?;
        tracing::debug!("session {} running", running.id());
        let ended = running.wait().map_err(launch_error)?;
        if let (Some(staged), false) = (&ended.staged, cli.quiet) {
            let id = &ended.id;
            if staged.applied {
                note!(
                    "cordon: the stage was applied: {} changes journaled (`cordon journal undo --session {id}` undoes them)",
                    staged.journaled
                );
                for conflict in &staged.conflicts {
                    note!("cordon: not applied: {}", cordon_types::printable(conflict));
                }
            } else if staged.paths > 0 {
                note!(
                    "cordon: {} paths staged, your trees unchanged: `cordon journal staged {id}` shows them, `cordon journal apply {id}` writes them, `cordon journal discard {id}` drops them",
                    staged.paths
                );
            }
        }
        report_journaled(cli, &ended.id, ended.journaled, &ended.left_out);
        tracing::debug!("session ended after {:?}", started.elapsed());
        Ok(Exit::Code(u8::try_from(ended.exit_code).unwrap_or(255)))
    }
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
