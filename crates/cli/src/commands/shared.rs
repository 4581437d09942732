//! Flags several subcommands take, and how they override the configuration file.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_supervisor::CordonConfig;

use crate::report::{CliError, Hint};
use crate::Cli;

/// Which policy decides.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// Policy directory or `.rego` file [default: `policy.path` of the config, else the built-in policy]
    #[arg(long, value_name = "PATH")]
    pub policy: Option<PathBuf>,

    /// Evaluator: `rvm` (bytecode VM, fast) or `interpreter` (supports every construct)
    #[arg(long, value_name = "ENGINE", value_parser = ["rvm", "interpreter"])]
    pub engine: Option<String>,

    /// Time limit of one decision, in milliseconds [default: `policy.time_limit_ms`, else 100]
    #[arg(long, value_name = "MS")]
    pub time_limit_ms: Option<u64>,

    /// Memory budget of one decision, in MiB [default: `policy.memory_limit_mib`, else 64]
    #[arg(long, value_name = "MIB")]
    pub memory_limit_mib: Option<u64>,
}

/// Who answers the policy's questions (`cordon exec`, `cordon mcp`).
#[derive(Debug, Clone, Default, Args)]
pub struct ConsentArgs {
    /// Who answers when the policy asks a person: auto (your terminal when cordon runs in
    /// one, else a desktop notification where there is a session bus, else deny), terminal,
    /// socket (`cordon approve`), notify, deny, or allow (every question answered yes: for
    /// tests and demos); several as notify,socket
    #[arg(long, value_name = "BACKEND")]
    pub consent: Option<String>,

    /// Seconds to wait for an answer when the policy does not say [default: 60]
    #[arg(long, value_name = "SECS")]
    pub consent_timeout: Option<u64>,
}

impl ConsentArgs {
    /// Puts what was asked for into `config`, over the configuration file's.
    pub fn apply(&self, config: &mut cordon_supervisor::CordonConfig) {
        if let Some(backend) = &self.consent {
            config.consent.backend = Some(backend.clone());
        }
        if let Some(seconds) = self.consent_timeout {
            config.consent.timeout_s = Some(seconds);
        }
    }
}

/// What a sandboxed program asks to be granted (`cordon exec`, `cordon mcp`).
#[derive(Debug, Clone, Default, Args)]
pub struct GrantArgs {
    /// Ask to make PATH readable (repeat for several; it must exist)
    #[arg(long, value_name = "PATH")]
    pub allow_read: Vec<PathBuf>,

    /// Ask to make PATH readable and writable (repeat for several; it must exist)
    #[arg(long, value_name = "PATH")]
    pub allow_write: Vec<PathBuf>,

    /// Ask to let the program reach HOST (any port) or HOST:PORT through cordon's proxy; an internal address must be named with its port
    #[arg(long, value_name = "HOST[:PORT]")]
    pub allow_net: Vec<String>,

    /// Ask to keep the environment variable NAME (only an allowlist passes by default: PATH,
    /// HOME, the locale, the terminal, tool-chain and CA-bundle variables)
    #[arg(long, value_name = "NAME")]
    pub keep_env: Vec<String>,
}

impl GrantArgs {
    /// Puts what is asked for into `request`.
    pub fn ask(&self, request: &mut cordon_supervisor::session::LaunchRequest) {
        request.read.clone_from(&self.allow_read);
        request.write.clone_from(&self.allow_write);
        request.net.clone_from(&self.allow_net);
        request.keep_env.clone_from(&self.keep_env);
    }
}

/// Reads the configuration file and applies the policy flags on top.
pub fn load_config(cli: &Cli, policy: &PolicyArgs) -> Result<CordonConfig, CliError> {
    let (mut config, path) = CordonConfig::load(cli.config.as_deref())
        .context("cannot read cordon's configuration")
        .hint("fix the file, or pass `--config FILE` to use another one")?;
    if let Some(path) = path {
        tracing::debug!("configuration read from {}", path.display());
    }
    if let Some(path) = &policy.policy {
        // A policy named on the command line is the one that decides, bundle or not.
        config.policy.path = Some(path.clone());
        config.policy.bundle = None;
    }
    if let Some(engine) = &policy.engine {
        config.policy.engine = Some(engine.clone());
    }
    if let Some(ms) = policy.time_limit_ms {
        config.policy.time_limit_ms = Some(ms);
    }
    if let Some(mib) = policy.memory_limit_mib {
        config.policy.memory_limit_mib = Some(mib);
    }
    Ok(config)
}

/// Normalises a time to the form cordon stores (UTC, microseconds, `Z`) so that it
/// compares correctly as text.
pub fn parse_since(text: &str) -> anyhow::Result<String> {
    let time = match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(time) => time.with_timezone(&chrono::Utc),
        Err(_) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| anyhow!("`{text}` is not a time"))?
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| anyhow!("`{text}` is not a time"))?
            .and_utc(),
    };
    Ok(time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// `7d`, `12h`, `30m`, `45s` before now, or a time (RFC 3339, or a date at midnight UTC).
pub fn since_time(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    match duration(text) {
        Some(ago) => ago
            .and_then(|ago| chrono::TimeDelta::from_std(ago).ok())
            .and_then(|ago| chrono::Utc::now().checked_sub_signed(ago))
            .ok_or_else(|| anyhow!("`{text}` is too long ago")),
        None => parse_since(text)
            .ok()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok_or_else(|| anyhow!("`{text}` is neither a duration (`7d`) nor a time")),
    }
}

/// A duration written `7d`, `12h`, `30m` or `45s`: `None` when `text` is not one,
/// `Some(None)` when it is too long.
pub fn duration(text: &str) -> Option<Option<std::time::Duration>> {
    let unit = text.chars().last()?;
    let amount = text[..text.len() - unit.len_utf8()].parse::<u64>().ok()?;
    let seconds = match unit {
        'd' => amount.checked_mul(86_400),
        'h' => amount.checked_mul(3600),
        'm' => amount.checked_mul(60),
        's' => Some(amount),
        _ => return None,
    };
    Some(seconds.map(std::time::Duration::from_secs))
}

/// Tells the person how many changes a session journaled, how to see and undo them, and
/// which trees `.gitignore` left out.
pub fn report_journaled(cli: &Cli, id: &str, changes: Option<usize>, left_out: &[PathBuf]) {
    if let (Some(changes @ 1..), false) = (changes, cli.quiet) {
        note!(
            "cordon: {changes} change{} journaled: `cordon journal show {id}` shows them, `cordon journal undo --session {id}` undoes them",
            if changes == 1 { "" } else { "s" },
        );
        if !left_out.is_empty() {
            let shown: Vec<String> = left_out
                .iter()
                .map(|p| cordon_types::printable(&p.to_string_lossy()))
                .collect();
            note!(
                "cordon: not journaled (ignored by .gitignore): {}",
                shown.join(", ")
            );
        }
    }
}
