//! Flags several subcommands take, and how they override the configuration file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use cordon_supervisor::CordonConfig;

use crate::report::{CliError, Hint};
use crate::Cli;

/// Which policy decides.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy directory or `.rego` file [default: `policy.path` of the config, else the built-in policy]
    #[arg(long, value_name = "PATH")]
    pub policy: Option<PathBuf>,

    /// Evaluator: `rvm` (bytecode VM, fast) or `interpreter` (supports every construct)
    #[arg(long, value_name = "ENGINE", value_parser = ["rvm", "interpreter"])]
    pub engine: Option<String>,
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
        config.policy.path = Some(path.clone());
    }
    if let Some(engine) = &policy.engine {
        config.policy.engine = Some(engine.clone());
    }
    Ok(config)
}
