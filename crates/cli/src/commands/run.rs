//! `cordon run`: run a WebAssembly skill, every file open and request decided.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use cordon_supervisor::session::skill::{self, DirRequest, SkillRequest};

use super::exec::{launch_error, refused, utf8_args};
use super::shared::{load_config, PolicyArgs};
use crate::report::CliError;
use crate::{Cli, Exit};

/// Run a WebAssembly skill (a WASI 0.2 component) with only what the policy grants
///
/// The skill runs under Wasmtime in this process, with no ambient authority: it sees the
/// directories given with --dir (or --dir-ro), the environment variables named with
/// --keep-env, and nothing else. What it asks for is a request: the policy
/// (data.cordon.sandbox, with the skill's name and SHA-256) decides which directories it gets
/// and whether it may change them. Then every call is decided when it happens: each file it
/// opens, creates, deletes or renames by data.cordon.file on the real path it reaches (links
/// followed, `..` folded: a link inside a directory pointing out is decided on its target);
/// each HTTP request (wasi:http, made by cordon) by data.cordon.net with its method, URL and
/// body size, each redirect hop again; each host name before it is looked up; each raw
/// socket on its address. Every decision is recorded in the audit log with the skill's name
/// and digest.
///
/// Limits: the policy's (512 MiB of linear memory, 10 s of processor time, 64 MiB of
/// output, 5 minutes in all by default), or lower ones given here. A skill that reaches one
/// is stopped with a message naming it; one stopped (or out of time) while it waits in a
/// host call (a sleep, a read) is ended 5 s later.
///
/// Compiled code is kept in $XDG_CACHE_HOME/cordon/skills by the component's digest: the
/// second run of a skill starts without compiling.
///
/// Each run is a session: `cordon ps` lists it, `cordon stop ID` ends it, `cordon audit
/// query --session ID` shows what it was allowed and refused.
///
/// Exit status: the skill's; 1 when it traps or reaches a limit; 125 when cordon refused or
/// could not set it up; 126 when the file is not a runnable component (not WebAssembly, a
/// core module, importing what cordon does not provide); 127 when it is not found.
///
/// Examples:
///   cordon run --dir-ro ./notes::/notes summarise.wasm -- /notes
///   cordon run --allow-net api.github.com fetch.wasm -- https://api.github.com/zen
///   cordon run --dir ./out --cpu-ms 2000 convert.wasm -- /out/report.md
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RunCommand {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Ask to give the skill the directory HOST, read and write, seen as GUEST (default: HOST
    /// as written); repeat for several
    #[arg(long, value_name = "HOST[::GUEST]")]
    dir: Vec<String>,

    /// As --dir, read-only
    #[arg(long, value_name = "HOST[::GUEST]")]
    dir_ro: Vec<String>,

    /// Ask to let the skill reach HOST (any port) or HOST:PORT; an internal address must be
    /// named with its port
    #[arg(long, value_name = "HOST[:PORT]")]
    allow_net: Vec<String>,

    /// Ask to pass the environment variable NAME (none passes otherwise)
    #[arg(long, value_name = "NAME")]
    keep_env: Vec<String>,

    /// Linear memory limit in MiB, if lower than the policy's
    #[arg(long, value_name = "MIB")]
    memory_mib: Option<u64>,

    /// Processor time limit in milliseconds, if lower than the policy's
    #[arg(long, value_name = "MS")]
    cpu_ms: Option<u64>,

    /// Output limit (standard output and error together) in MiB, if lower than the policy's
    #[arg(long, value_name = "MIB")]
    output_mib: Option<u64>,

    /// Time limit from start to end in seconds, waiting included, if lower than the policy's
    #[arg(long, value_name = "SECS")]
    time_s: Option<u64>,

    /// Who answers when the policy asks a person: auto, terminal, socket, notify, deny or allow
    #[arg(long, value_name = "BACKEND")]
    consent: Option<String>,

    /// Do not keep compiled code on disk (compile at every run)
    #[arg(long)]
    no_cache: bool,

    /// The skill (`.wasm`, a WASI 0.2 command component)
    #[arg(value_name = "SKILL")]
    skill: PathBuf,

    /// The skill's arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

fn dir_request(text: &str, writable: bool) -> DirRequest {
    let (host, guest) = match text.split_once("::") {
        Some((host, guest)) => (host, Some(guest.to_owned())),
        None => (text, None),
    };
    DirRequest {
        host: PathBuf::from(host),
        guest,
        writable,
    }
}

impl RunCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let mut config = load_config(cli, &self.policy).map_err(refused)?;
        if let Some(backend) = &self.consent {
            config.consent.backend = Some(backend.clone());
        }
        let args = utf8_args(&self.args)?;
        let cwd = std::env::current_dir()
            .context("cannot read the current directory")
            .map_err(refused)?;
        let mut request = SkillRequest::new(config, self.skill.clone(), args, cwd);
        request.dirs = self
            .dir
            .iter()
            .map(|d| dir_request(d, true))
            .chain(self.dir_ro.iter().map(|d| dir_request(d, false)))
            .collect();
        request.net.clone_from(&self.allow_net);
        request.keep_env.clone_from(&self.keep_env);
        if self.no_cache {
            request.cache_dir = None;
        }
        if self.memory_mib.is_some()
            || self.cpu_ms.is_some()
            || self.output_mib.is_some()
            || self.time_s.is_some()
        {
            let mut limits = cordon_skills::Limits {
                memory_bytes: u64::MAX,
                cpu: std::time::Duration::MAX,
                output_bytes: u64::MAX,
                wall: std::time::Duration::MAX,
            };
            if let Some(secs) = self.time_s {
                limits.wall = std::time::Duration::from_secs(secs);
            }
            if let Some(mib) = self.memory_mib {
                limits.memory_bytes = mib.saturating_mul(1 << 20);
            }
            if let Some(ms) = self.cpu_ms {
                limits.cpu = std::time::Duration::from_millis(ms);
            }
            if let Some(mib) = self.output_mib {
                limits.output_bytes = mib.saturating_mul(1 << 20);
            }
            request.limits = Some(limits);
        }
        request.front_end = "run".into();
        request.end_process_when_stuck = true;
        let ended = skill::run(request).map_err(launch_error)?;
        tracing::debug!(
            "session {} ended; compiled code: {:?}",
            ended.id,
            ended.cache
        );
        super::shared::report_journaled(cli, &ended.id, ended.journaled, &[]);
        if let Some(stopped) = &ended.exit.stopped {
            note!("cordon: skill {stopped}");
        }
        Ok(Exit::Code(u8::try_from(ended.exit.code).unwrap_or(1)))
    }
}
