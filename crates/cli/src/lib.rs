//! The `cordon` command line: clap definitions, one module per subcommand.
//!
//! Exit codes are a contract:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success; for `cordon eval`, a decision was printed (allow or deny) |
//! | 1 | denied (`cordon eval --fail-on-deny`), tests failed, or a policy does not check |
//! | 2 | usage or runtime error |
#![forbid(unsafe_code)]

/// `println!` for a command's output, through [`report::out`]: a write that fails is the
/// command's error at its end, never a panic.
macro_rules! outln {
    () => {
        $crate::report::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::report::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` for the person, through [`report::note`]: a write that fails is let go.
macro_rules! note {
    () => {
        $crate::report::note(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::report::note(format_args!($($arg)*))
    };
}

/// `eprint!` for the person (a question, a progress line), through [`report::note_part`].
macro_rules! note_part {
    ($($arg:tt)*) => {
        $crate::report::note_part(format_args!($($arg)*))
    };
}

mod commands;
mod exit;
mod logging;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    ApproveCommand, AuditCommand, DoctorCommand, EvalCommand, ExecCommand, JournalCommand,
    LabelCommand, LandlockProbeCommand, McpCommand, MfaCommand, PolicyCommand, ProxyCommand,
    PsCommand, RunCommand, SandboxHelperCommand, ScanCommand, SeccompProbeCommand, SkillCommand,
    StopCommand, TestCommand,
};
pub use crate::exit::Exit;

/// Run desktop AI agents under a policy that decides every action
///
/// cordon asks a Rego policy about every file an agent reads or writes, every host it
/// connects to and every model it calls, and records each decision. With no setup it uses the
/// built-in default policy: the current directory is the workspace, secrets such as `~/.ssh`
/// are never readable, and egress goes only to an allowlist.
///
/// Examples:
///   echo '{"capability":"file","action":"read","resource":{"path":"~/.ssh/id_ed25519"}}' | cordon eval
///   cordon test policies/default
///   cordon policy init ./my-policy && cordon eval --policy ./my-policy --input request.json
#[derive(Debug, Parser)]
#[command(
    name = "cordon",
    version,
    about,
    long_about,
    propagate_version = true,
    verbatim_doc_comment
)]
pub struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/cordon/config.toml]
    #[arg(
        long,
        global = true,
        env = "CORDON_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Log more to stderr (repeat for more); RUST_LOG overrides
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log only errors
    #[arg(short = 'q', long = "quiet", conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    // Each variant takes its help from the command's own doc comment.
    Eval(EvalCommand),
    Exec(ExecCommand),
    Run(RunCommand),
    Mcp(McpCommand),
    #[command(subcommand)]
    Skill(SkillCommand),
    Proxy(ProxyCommand),
    Ps(PsCommand),
    Stop(StopCommand),
    Approve(ApproveCommand),
    #[command(subcommand)]
    Mfa(MfaCommand),
    Test(TestCommand),
    #[command(subcommand)]
    Policy(PolicyCommand),
    Audit(AuditCommand),
    Journal(JournalCommand),
    Scan(ScanCommand),
    Label(LabelCommand),
    Doctor(DoctorCommand),
    #[command(name = "__seccomp-probe", hide = true)]
    SeccompProbe(SeccompProbeCommand),
    #[command(name = "__landlock-probe", hide = true)]
    LandlockProbe(LandlockProbeCommand),
    #[command(name = "__sandbox-helper", hide = true)]
    SandboxHelper(SandboxHelperCommand),
}

/// What clap says about the command line (help, the version, a usage error), and the exit
/// status: help or the version that cannot be written to standard output is an error, as
/// any command's output is.
fn usage(err: &clap::Error) -> ExitCode {
    match err.print() {
        Err(why) if err.exit_code() == 0 => {
            note!("error: {}", report::output_lost_because(&why));
            Exit::Error.into()
        }
        _ => ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2)),
    }
}

/// Parses the command line, runs the command and prints any error.
pub fn main() -> ExitCode {
    // Before anything is allocated: cordon's heap gets no huge pages (a launch's programs get
    // the caller's setting back).
    cordon_supervisor::session::huge_pages_off_for_cordon();
    // Libraries (the policy engine among them) create and discard errors on their normal
    // path; with RUST_BACKTRACE set, each would capture a backtrace, which costs more than
    // deciding. Panics still get theirs.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage(&err),
    };
    logging::init(cli.verbose, cli.quiet);
    let result = match &cli.command {
        Command::Eval(cmd) => cmd.run(&cli),
        Command::Exec(cmd) => cmd.run(&cli),
        Command::Run(cmd) => cmd.run(&cli),
        Command::Mcp(cmd) => cmd.run(&cli),
        Command::Skill(cmd) => cmd.run(&cli),
        Command::Proxy(cmd) => cmd.run(&cli),
        Command::Ps(cmd) => cmd.run(&cli),
        Command::Stop(cmd) => cmd.run(&cli),
        Command::Approve(cmd) => cmd.run(&cli),
        Command::Mfa(cmd) => cmd.run(&cli),
        Command::Test(cmd) => cmd.run(&cli),
        Command::Policy(cmd) => cmd.run(&cli),
        Command::Audit(cmd) => cmd.run(&cli),
        Command::Journal(cmd) => cmd.run(&cli),
        Command::Scan(cmd) => cmd.run(&cli),
        Command::Label(cmd) => cmd.run(&cli),
        Command::Doctor(cmd) => cmd.run(&cli),
        Command::SeccompProbe(cmd) => cmd.run(&cli),
        Command::LandlockProbe(cmd) => cmd.run(&cli),
        Command::SandboxHelper(cmd) => cmd.run(&cli),
    };
    // A command whose output could not be written in full fails; one that failed already
    // keeps its own status.
    let result = match result {
        Ok(Exit::Ok) => report::output_written().map(|()| Exit::Ok),
        Ok(exit) => {
            if let Err(err) = report::output_written() {
                report::print_error(&err);
            }
            Ok(exit)
        }
        Err(err) => Err(err),
    };
    let exit = match result {
        Ok(exit) => exit,
        Err(err) => {
            report::print_error(&err);
            err.exit()
        }
    };
    if let Command::Exec(_) = cli.command {
        // A launch has finished its work by now (records committed, the session's threads
        // done with it) and ends at once, without the C library's exit handlers, of which
        // only the allocator's has work: it would hand its whole heap back page by page
        // before the kernel frees it anyway, a third of a millisecond of every launch. Its
        // output is written by this thread alone (the program's goes through its own
        // descriptors), so the flush cannot wait on another. Other commands may leave a
        // thread blocked writing to standard output (the MCP gateway's relay, to a client
        // that stopped reading); they end the ordinary way, whose flush does not wait for
        // the lock.
        drop(cli);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        cordon_sys::process::exit_now(exit.code().into())
    }
    exit.into()
}
