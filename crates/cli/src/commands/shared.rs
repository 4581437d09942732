//! Flags several subcommands take, and how they override the configuration file.

use std::path::PathBuf;

use anyhow::Context;
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
