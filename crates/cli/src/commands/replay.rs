//! `cordon policy replay`: what a candidate policy would decide differently.

use std::io::{BufRead as _, IsTerminal as _, Read as _};

/// The longest line of an exported log read: a record is far smaller.
const MAX_LINE: u64 = 16 << 20;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_bundle::{Bundle, Limits};
use cordon_policy::{EngineKind, Policy, PolicyOptions, PolicySource};
use cordon_supervisor::replay::{Recorded, Report};

use super::bundle::{now, KeyArgs};
use super::shared::{load_config, PolicyArgs};
use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Re-decide recorded requests under a candidate policy and report what would change
///
/// Reads the decisions in the audit log (or an exported log), decides each input again
/// under CANDIDATE (a bundle or a policy directory) and reports every decision that would
/// change: allowed → denied, denied → allowed, obligations added or removed, with counts per
/// rule (the reason of the side that denies). Run it before signing a bundle, on logs
/// exported from desktops with `cordon audit export`.
///
/// Inputs were recorded with secret-looking values replaced by `[redacted]`.
///
/// Examples:
///   cordon policy replay ./policy --since 7d
///   cordon policy replay candidate.tar.gz --pubkey team.pem.pub --json
///   cordon policy replay ./policy --log exported.jsonl --fail-on-change
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ReplayCommand {
    /// Candidate policy: a bundle (.tar.gz) or a policy directory
    #[arg(value_name = "CANDIDATE")]
    candidate: PathBuf,

    /// Only decisions since this long ago (`7d`, `12h`, `30m`) or this time (RFC 3339 or
    /// `YYYY-MM-DD`)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,

    /// The audit database [default: `audit.path` of the config, else $XDG_DATA_HOME/cordon/audit.db]
    #[arg(long, value_name = "FILE", conflicts_with = "log")]
    db: Option<PathBuf>,

    /// An exported log (JSON Lines, as `cordon audit export` writes) instead of the database
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,

    #[command(flatten)]
    keys: KeyArgs,

    /// Exit 1 when any decision would change
    #[arg(long)]
    fail_on_change: bool,

    /// How many changes to list (all of them with `--json`)
    #[arg(long, value_name = "N", default_value_t = 20)]
    show: usize,

    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// `7d`, `12h`, `30m`, `45s` before now, or a time, as the store writes times.
fn since(text: &str) -> anyhow::Result<String> {
    Ok(super::shared::since_time(text)?.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

impl ReplayCommand {
    fn candidate(&self) -> Result<(Policy, String), CliError> {
        let source = if self.candidate.is_dir() {
            PolicySource::from_path(&self.candidate)?
        } else {
            let bundle = Bundle::read(&self.candidate, &Limits::default())
                .map_err(|err| anyhow!("`{}`: {err}", self.candidate.display()))?;
            if self.keys.pubkey.is_some() {
                bundle
                    .verify(&self.keys.verifier()?, now())
                    .map_err(|err| anyhow!("`{}`: {err}", self.candidate.display()))?;
            }
            bundle
                .policy_source(&self.candidate.display().to_string())
                .map_err(|err| anyhow!("`{}`: {err}", self.candidate.display()))?
        };
        let options = PolicyOptions {
            engine: EngineKind::Rvm,
            ..PolicyOptions::default()
        };
        let policy = Policy::load(&source, options)
            .map_err(|err| CliError::from(err).with_exit(Exit::Failed))?;
        Ok((policy, source.origin().to_owned()))
    }

    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let (policy, origin) = self.candidate()?;
        let since = self.since.as_deref().map(since).transpose()?;
        let mut report = Report::default();
        let progress = std::io::stderr().is_terminal() && !self.json;
        let mut visit = |recorded: &Recorded| {
            report.replay(&policy, recorded);
            if progress && report.records % 5000 == 0 {
                note_part!(
                    "\rreplayed {} of {} records read",
                    report.replayed,
                    report.records
                );
            }
        };
        match &self.log {
            Some(log) => {
                let file = fs_err::File::open(log)?;
                let mut reader = std::io::BufReader::new(file);
                let mut line = Vec::new();
                for n in 0.. {
                    line.clear();
                    let read = (&mut reader)
                        .take(MAX_LINE + 1)
                        .read_until(b'\n', &mut line)
                        .with_context(|| format!("cannot read `{}`", log.display()))?;
                    if read == 0 {
                        break;
                    }
                    if line.len() as u64 > MAX_LINE {
                        return Err(anyhow!(
                            "`{}` line {}: longer than {MAX_LINE} bytes; not an audit record",
                            log.display(),
                            n + 1
                        )
                        .into());
                    }
                    let line = String::from_utf8_lossy(&line);
                    if line.trim().is_empty() {
                        continue;
                    }
                    let value: serde_json::Value = serde_json::from_str(&line)
                        .with_context(|| format!("`{}` line {}: not JSON", log.display(), n + 1))?;
                    let recorded = Recorded::from_json(&value).ok_or_else(|| {
                        anyhow!("`{}` line {}: not an audit record", log.display(), n + 1)
                    })?;
                    if since
                        .as_ref()
                        .is_some_and(|s| recorded.time.as_str() < s.as_str())
                    {
                        continue;
                    }
                    visit(&recorded);
                }
            }
            None => {
                let db = match &self.db {
                    Some(db) => db.clone(),
                    None => load_config(cli, &PolicyArgs::default())?
                        .audit_target()
                        .map(|(path, _)| path)
                        .ok_or_else(|| anyhow!("auditing is off: there is no log to replay"))
                        .hint("pass `--db FILE` or `--log FILE`")?,
                };
                let reader = cordon_audit::Reader::open(&db)
                    .with_context(|| format!("cannot read the audit log `{}`", db.display()))?;
                let filter = cordon_audit::Filter {
                    since,
                    ..cordon_audit::Filter::default()
                };
                let mut failed = None;
                reader.scan(&filter, |record| {
                    match serde_json::to_value(&record)
                        .ok()
                        .as_ref()
                        .and_then(Recorded::from_json)
                    {
                        Some(recorded) => visit(&recorded),
                        None => failed = Some(record.seq),
                    }
                    failed.is_none()
                })?;
                if let Some(seq) = failed {
                    return Err(anyhow!("record {seq} of `{}` cannot be read", db.display()).into());
                }
            }
        }
        if progress {
            note!();
        }
        let changed = !report.changes.is_empty();
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            self.print(&report, &origin);
        }
        Ok(if changed && self.fail_on_change {
            Exit::Failed
        } else {
            Exit::Ok
        })
    }

    fn print(&self, report: &Report, origin: &str) {
        outln!(
            "replayed {} of {} records under {origin}: {} unchanged, {} would change",
            report.replayed,
            report.records,
            report.unchanged,
            report.changes.len()
        );
        for (why, n) in &report.skipped {
            outln!("  skipped {n}: {why}");
        }
        if report.changes.is_empty() {
            return;
        }
        outln!("\nby rule:");
        for (rule, counts) in &report.by_rule {
            let mut parts = Vec::new();
            if counts.allow_to_deny > 0 {
                parts.push(format!("{} allow→deny", counts.allow_to_deny));
            }
            if counts.deny_to_allow > 0 {
                parts.push(format!("{} deny→allow", counts.deny_to_allow));
            }
            if counts.obligations > 0 {
                parts.push(format!("{} obligations", counts.obligations));
            }
            outln!("  {:>6}  {rule}", parts.join(", "));
        }
        outln!("\nchanges:");
        for change in report.changes.iter().take(self.show) {
            let what = change
                .resource
                .get("path")
                .or_else(|| change.resource.get("host"))
                .map_or_else(
                    || change.resource.to_string(),
                    |v| v.as_str().unwrap_or_default().to_owned(),
                );
            let arrow = match change.change {
                "allow_to_deny" => "allow → deny".to_owned(),
                "deny_to_allow" => "deny → allow".to_owned(),
                _ => {
                    let mut parts: Vec<String> =
                        change.added.iter().map(|k| format!("+{k}")).collect();
                    parts.extend(change.removed.iter().map(|k| format!("-{k}")));
                    parts.join(" ")
                }
            };
            outln!(
                "  {}  {} {} {what}: {arrow}",
                change.time,
                change.capability,
                change.action
            );
        }
        if report.changes.len() > self.show {
            outln!(
                "  ... {} more (`--show N`, or `--json` for all)",
                report.changes.len() - self.show
            );
        }
    }
}
