//! `cordon policy`: write out the default policy, or check one.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use cordon_policy::{EngineKind, Policy, PolicyOptions, PolicySource};
use serde_json::json;

use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Write, check, bundle, sign, activate and replay policies
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    Init(InitCommand),
    Check(CheckCommand),
    Build(super::bundle::BuildCommand),
    Keygen(super::bundle::KeygenCommand),
    Sign(super::bundle::SignCommand),
    Verify(super::bundle::VerifyCommand),
    Inspect(super::bundle::InspectCommand),
    Activate(super::activation::ActivateCommand),
    Pull(super::activation::PullCommand),
    Status(super::activation::StatusCommand),
    Rollback(super::activation::RollbackCommand),
    Unpin(super::activation::UnpinCommand),
    Replay(super::replay::ReplayCommand),
}

impl PolicyCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        match self {
            PolicyCommand::Init(cmd) => cmd.run(cli),
            PolicyCommand::Check(cmd) => cmd.run(cli),
            PolicyCommand::Build(cmd) => cmd.run(cli),
            PolicyCommand::Keygen(cmd) => cmd.run(cli),
            PolicyCommand::Sign(cmd) => cmd.run(cli),
            PolicyCommand::Verify(cmd) => cmd.run(cli),
            PolicyCommand::Inspect(cmd) => cmd.run(cli),
            PolicyCommand::Activate(cmd) => cmd.run(cli),
            PolicyCommand::Pull(cmd) => cmd.run(cli),
            PolicyCommand::Status(cmd) => cmd.run(cli),
            PolicyCommand::Rollback(cmd) => cmd.run(cli),
            PolicyCommand::Unpin(cmd) => cmd.run(cli),
            PolicyCommand::Replay(cmd) => cmd.run(cli),
        }
    }
}

/// Write the built-in default policy to a directory, to edit it
///
/// Writes every `.rego` file, its `_test.rego` tests and `data.json`. Existing files are not
/// overwritten unless `--force` is given.
///
/// Examples:
///   cordon policy init ~/.config/cordon/policy
///   cordon test ~/.config/cordon/policy
///   cordon eval --policy ~/.config/cordon/policy --input request.json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct InitCommand {
    /// Directory to write (created if needed)
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    /// Overwrite files that already exist
    #[arg(long)]
    force: bool,
}

impl InitCommand {
    fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let source = PolicySource::embedded_default();
        if !self.force {
            let existing: Vec<String> = source
                .files()
                .iter()
                .filter(|f| self.dir.join(&f.relative).exists())
                .map(|f| format!("`{}`", self.dir.join(&f.relative).display()))
                .collect();
            if !existing.is_empty() {
                return Err(anyhow!("refusing to overwrite {}", existing.join(", ")))
                    .hint("pass `--force` to overwrite them, or choose another directory");
            }
        }
        for file in source.files() {
            let path = self.dir.join(&file.relative);
            if let Some(parent) = path.parent() {
                fs_err::create_dir_all(parent)
                    .with_context(|| format!("cannot create `{}`", parent.display()))?;
            }
            fs_err::write(&path, &file.text)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        note!(
            "wrote {} files to `{}`",
            source.files().len(),
            self.dir.display()
        );
        note!(
            "next: `cordon test {0}`, then `cordon eval --policy {0} --input request.json`",
            self.dir.display()
        );
        Ok(Exit::Ok)
    }
}

/// Load a policy and report errors as `file:line:col: message`
///
/// Parses every file, loads the data, and compiles every `data.cordon.<capability>.decision`
/// rule for the bytecode VM, which also resolves every function the decisions can reach.
/// Prints the capabilities found and the policy revision; exits 1 when the policy does not
/// load.
///
/// Examples:
///   cordon policy check ./my-policy
///   cordon policy check --json ./my-policy
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CheckCommand {
    /// Policy directories or files
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,

    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

impl CheckCommand {
    fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let source = PolicySource::from_paths(&self.paths)?;
        let options = PolicyOptions {
            engine: EngineKind::Rvm,
            ..PolicyOptions::default()
        };
        let policy = match Policy::load(&source, options) {
            Ok(policy) => policy,
            Err(err) => {
                if self.json {
                    outln!("{}", json!({"ok": false, "error": err.to_string()}));
                }
                return Err(CliError::from(err).with_exit(Exit::Failed));
            }
        };
        let capabilities: Vec<&str> = policy.capabilities().collect();
        if self.json {
            let out = json!({
                "ok": true,
                "files": source.files().len(),
                "capabilities": capabilities,
                "revision": source.revision(),
                "warnings": policy.warnings(),
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            for warning in policy.warnings() {
                note!("warning: {warning}");
            }
            let listed = if capabilities.is_empty() {
                "none (no `data.cordon.<capability>.decision` rule)".to_owned()
            } else {
                capabilities.join(", ")
            };
            outln!(
                "ok: {} files, decisions for: {listed}",
                source.files().len()
            );
            outln!("revision: {}", source.revision());
        }
        Ok(Exit::Ok)
    }
}
