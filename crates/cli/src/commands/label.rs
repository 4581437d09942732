//! `cordon label`: a file's sensitivity label, and how cordon classifies it.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use cordon_supervisor::Supervisor;
use cordon_types::Sensitivity;

use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Set or show a file's sensitivity label
///
/// The label is the `user.cordon.sensitivity` extended attribute. A file decision that
/// names no sensitivity takes the file's: its label first, then the first path rule of the
/// policy (`data.cordon.settings.inspect.paths`), then what its content holds (a private
/// key makes it restricted). Without LEVEL, prints the label and the classification a
/// decision would see.
///
/// Levels: public < internal < confidential < restricted.
///
/// Examples:
///   cordon label notes/plan.md confidential
///   cordon label notes/plan.md
///   cordon label --clear notes/plan.md
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LabelCommand {
    /// The file
    path: PathBuf,

    /// The label to set: public, internal, confidential or restricted
    level: Option<Sensitivity>,

    /// Remove the label
    #[arg(long, conflicts_with = "level")]
    clear: bool,

    /// Print the classification as JSON
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    policy: super::shared::PolicyArgs,
}

impl LabelCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let shown = cordon_types::printable(&self.path.display().to_string());
        if self.clear || self.level.is_some() {
            cordon_inspect::file::write_label(&self.path, self.level)
                .map_err(|e| anyhow!("cannot label `{shown}`: {e}"))
                .hint("labels are extended attributes: the file must be a regular file you may write, on a file system with user extended attributes")?;
            match self.level {
                Some(level) => note!("`{shown}` is now {level}"),
                None => note!("`{shown}` has no label now"),
            }
            return Ok(Exit::Ok);
        }
        let config = super::shared::load_config(cli, &self.policy)?;
        let supervisor = Supervisor::start_for(&config, &["file"])?;
        let real = cordon_supervisor::real_path(&std::path::absolute(&self.path)?);
        let inspection = supervisor
            .pipeline()
            .inspection()
            .ok_or_else(|| anyhow!("this cordon classifies no files"))?;
        let classification = inspection.classify(&real).map_err(|e| anyhow!("{e}"))?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&classification)?);
            return Ok(Exit::Ok);
        }
        let findings: Vec<String> = classification
            .findings
            .iter()
            .map(|(kind, n)| format!("{kind} ×{n}"))
            .collect();
        outln!(
            "{shown}: {} (from {}){}",
            classification.sensitivity,
            classification.source.as_str(),
            if findings.is_empty() {
                String::new()
            } else {
                format!("; holds {}", findings.join(", "))
            }
        );
        if let Some(error) = &classification.error {
            note!("warning: {error}");
        }
        Ok(Exit::Ok)
    }
}
