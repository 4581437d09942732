//! `cordon policy activate|pull|status|rollback|unpin`: which signed bundle this desktop runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use cordon_bundle::fetch::Timeouts;
use cordon_bundle::store::{Installed, Verdict};
use cordon_supervisor::bundles::Bundles;
use cordon_supervisor::CordonConfig;
use cordon_types::AuditSink;
use serde_json::json;

use super::shared::{load_config, PolicyArgs};
use crate::report::{self, CliError, Hint};
use crate::{Cli, Exit};

fn config(cli: &Cli) -> Result<CordonConfig, CliError> {
    load_config(cli, &PolicyArgs::default())
}

fn sink(config: &CordonConfig) -> Result<Option<std::sync::Arc<dyn AuditSink>>, CliError> {
    Ok(cordon_supervisor::open_audit(config)?)
}

fn describe(installed: Option<&Installed>) -> String {
    installed.map_or("none".into(), |i| format!("revision {}", i.revision))
}

/// Prints a verdict; the exit status says whether the bundle is active.
fn report(verdict: &Verdict, json_out: bool) -> Result<Exit, CliError> {
    let (exit, value) = match verdict {
        Verdict::Activated { from, to } => {
            if !json_out {
                outln!(
                    "activated revision {} ({}), replacing {}",
                    to.revision,
                    to.reason,
                    describe(from.as_ref())
                );
            }
            (
                Exit::Ok,
                json!({"verdict": "activated", "active": to, "previous": from}),
            )
        }
        Verdict::Refreshed(active) => {
            if !json_out {
                outln!(
                    "revision {} is already active; its kept copy was replaced by this one \
                     (a signature that lasts longer, or a repair of a damaged file)",
                    active.revision
                );
            }
            (Exit::Ok, json!({"verdict": "refreshed", "active": active}))
        }
        Verdict::Unchanged(active) => {
            if !json_out {
                outln!("revision {} is already active", active.revision);
            }
            (Exit::Ok, json!({"verdict": "unchanged", "active": active}))
        }
        Verdict::Deferred {
            revision,
            active,
            reason,
        } => {
            if !json_out {
                outln!(
                    "revision {revision} not taken: {reason}; {} stays active",
                    describe(active.as_ref())
                );
            }
            (
                Exit::Ok,
                json!({"verdict": "deferred", "revision": revision, "reason": reason, "active": active}),
            )
        }
        Verdict::Refused {
            revision,
            active,
            error,
        } => {
            let shown = revision
                .as_deref()
                .map_or(String::new(), |r| format!(" (revision {r})"));
            if !json_out {
                note!(
                    "error: bundle refused{shown}: {error}\n{} stays active",
                    describe(active.as_ref())
                );
            }
            (
                Exit::Failed,
                json!({
                    "verdict": "refused",
                    "revision": revision,
                    "problem": error.problem.as_str(),
                    "file": error.file,
                    "reason": error.reason,
                    "active": active,
                }),
            )
        }
    };
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(exit)
}

/// Activate a policy bundle on this desktop
///
/// Verifies the bundle with `policy.public_key` (mandatory when configured), loads its
/// policy, and makes it the active policy of every cordon command and running session;
/// the bundle it replaces is kept as the last known good. A revision older than one already
/// activated is refused unless `--allow-downgrade`; a bundle with a rollout percentage is
/// taken only by the devices it reaches. Each activation and refusal is audited.
///
/// Examples:
///   cordon policy activate policy.tar.gz
///   cordon policy activate policy.tar.gz --pin
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ActivateCommand {
    /// Bundle to activate
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,

    /// Keep this revision until `cordon policy unpin` (takes it whatever its rollout)
    #[arg(long)]
    pin: bool,

    /// Let an older revision replace the active one
    #[arg(long)]
    allow_downgrade: bool,

    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

impl ActivateCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let config = config(cli)?;
        let mut bundles = Bundles::new(&config)?;
        if self.allow_downgrade {
            bundles.allow_downgrade();
        }
        let bytes = cordon_bundle::read_bounded(&self.bundle, bundles.trust().limits.compressed)
            .map_err(|err| anyhow!("{err}"))?;
        let sink = sink(&config)?;
        let source = std::path::absolute(&self.bundle).unwrap_or_else(|_| self.bundle.clone());
        let verdict = bundles.offer(
            &bytes,
            &source.display().to_string(),
            self.pin,
            sink.as_deref(),
        )?;
        report(&verdict, self.json)
    }
}

/// Fetch the configured bundle and activate it if it is new
///
/// Reads `policy.bundle`: a file, or an https:// URL fetched with the ETag of the last
/// answer (any static server, object store or CDN). A server that is down or answers
/// garbage leaves the active bundle in place. With `--watch`, checks every
/// `policy.poll_interval_s` seconds (default 300), backing off after failures up to an hour,
/// until stopped: run it as a user service.
///
/// Examples:
///   cordon policy pull
///   cordon policy pull --watch --interval 60
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PullCommand {
    /// Keep checking until stopped
    #[arg(long)]
    watch: bool,

    /// Seconds between checks with `--watch` [default: `policy.poll_interval_s`, else 300]
    #[arg(long, value_name = "SECONDS")]
    interval: Option<u64>,

    /// Seconds one fetch may take
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,

    /// Print each result as JSON
    #[arg(long)]
    json: bool,
}

impl PullCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let config = config(cli)?;
        let bundles = Bundles::new(&config)?;
        let sink = sink(&config)?;
        let timeouts = Timeouts {
            connect: Duration::from_secs(self.timeout.clamp(1, 10)),
            total: Duration::from_secs(self.timeout.max(1)),
        };
        let interval = self
            .interval
            .or(config.policy.poll_interval_s)
            .unwrap_or(300)
            .max(1);
        loop {
            let result = bundles.pull(sink.as_deref(), timeouts);
            let exit = match &result {
                Ok(Some(verdict)) => report(verdict, self.json)?,
                Ok(None) => {
                    if self.json {
                        outln!("{}", json!({"verdict": "not_modified"}));
                    } else {
                        outln!("not modified since the last check");
                    }
                    Exit::Ok
                }
                Err(err) if !self.watch => {
                    return Err(CliError::from(anyhow!(cordon_types::error_chain(err))))
                        .hint("the active bundle stays; `cordon policy status` shows it")
                }
                Err(err) => {
                    note!("error: {}", cordon_types::error_chain(err));
                    Exit::Failed
                }
            };
            // Watching ends, as `tail -f` does, once the reader of the output is gone.
            if !self.watch || report::output_lost() {
                return Ok(exit);
            }
            let failures = bundles.store().state().map_or(0, |s| s.failures);
            let wait = backoff(interval, failures);
            if !self.json {
                note!("next check in {wait} s");
            }
            std::thread::sleep(Duration::from_secs(wait));
        }
    }
}

/// Seconds to wait before the next check: the interval, doubled after each failure in a row,
/// up to an hour (never less than the interval).
fn backoff(interval: u64, failures: u32) -> u64 {
    if failures == 0 {
        return interval;
    }
    interval
        .saturating_mul(1u64 << failures.min(12))
        .min(3600)
        .max(interval)
}

/// Show the active policy bundle: revision, source, signer, and why
///
/// Says which revision is active, where it came from, who signed it and why it is active
/// (a newer revision, the canary side this device is on, a fallback to the last known good,
/// a pin), the previous revision kept, the highest revision seen (nothing older is taken),
/// and the last check of the source.
///
/// Examples:
///   cordon policy status
///   cordon policy status --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StatusCommand {
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

impl StatusCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let config = config(cli)?;
        let bundles = Bundles::new(&config)?;
        let state = bundles.store().state()?;
        let deciding = match (&config.policy.path, &config.policy.bundle, &state.active) {
            (Some(path), _, _) => {
                format!("the policy directory `{}` (policy.path)", path.display())
            }
            // What decides is what verifies now, not what the state file says.
            (None, _, Some(_)) => match bundles.store().load(bundles.trust(), super::bundle::now())
            {
                Ok(Some(loaded)) => match &loaded.fallback_from {
                    None => format!("bundle revision {} (verified)", loaded.installed.revision),
                    Some((failed, why)) => format!(
                        "bundle revision {}, the previous one: revision {} cannot be used ({why})",
                        loaded.installed.revision, failed.revision
                    ),
                },
                Ok(None) => "the built-in default policy (no bundle activated)".into(),
                Err(err) => format!("nothing: the active bundle cannot be used ({err})"),
            },
            (None, Some(source), None) => format!("nothing yet: `{source}` has not been activated"),
            (None, None, None) => "the built-in default policy (no bundle activated)".into(),
        };
        if self.json {
            let out = json!({
                "deciding": deciding,
                "source": config.policy.bundle,
                "device": cordon_supervisor::bundles::device_id(&config),
                "state": state,
                "store": bundles.store().dir(),
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(Exit::Ok);
        }
        outln!("deciding:  {deciding}");
        if let Some(active) = &state.active {
            outln!(
                "active:    revision {} from {}",
                active.revision,
                active.source
            );
            outln!(
                "           since {}, {}{}",
                active.activated_at,
                active.reason,
                if state.pinned { ", pinned" } else { "" }
            );
            match &active.signer {
                Some(s) => outln!(
                    "           signed by `{}` ({}, {})",
                    s.key_id,
                    s.algorithm,
                    s.fingerprint
                ),
                None => outln!("           unsigned"),
            }
        }
        if let Some(previous) = &state.previous {
            outln!(
                "previous:  revision {} (the last known good)",
                previous.revision
            );
        }
        if let Some(highest) = &state.highest {
            outln!("highest:   revision {highest} (no older revision is activated)");
        }
        if let Some(canary) = &state.canary {
            outln!(
                "rollout:   revision {} to {}% of devices; this device is at {:.2}: {}",
                canary.revision,
                canary.percent,
                canary.bucket,
                if canary.joined { "joined" } else { "not yet" }
            );
        }
        if let Some(source) = &config.policy.bundle {
            outln!("source:    {source}");
        }
        if let Some(check) = &state.last_check {
            outln!(
                "checked:   {check}{}",
                state
                    .last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(", failed: {e}"))
            );
        } else if let Some(error) = &state.last_error {
            outln!("last error: {error}");
        }
        Ok(Exit::Ok)
    }
}

/// Make the previous bundle active again
///
/// The previous bundle (the last known good) must still verify with the configured key.
/// The highest revision seen stays: a newer bundle is taken again when it is offered.
///
/// Examples:
///   cordon policy rollback
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RollbackCommand {
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

impl RollbackCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let config = config(cli)?;
        let bundles = Bundles::new(&config)?;
        let sink = sink(&config)?;
        let verdict = bundles.rollback(sink.as_deref())?;
        report(&verdict, self.json)
    }
}

/// Let newer bundles replace a pinned one again
///
/// Examples:
///   cordon policy unpin
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct UnpinCommand {}

impl UnpinCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let config = config(cli)?;
        let bundles = Bundles::new(&config)?;
        let was = bundles.store().unpin()?;
        outln!(
            "{}",
            if was {
                "unpinned"
            } else {
                "nothing was pinned"
            }
        );
        Ok(Exit::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn failures_back_off_twice_as_long_up_to_an_hour() {
        assert_eq!(backoff(60, 0), 60);
        assert_eq!(backoff(60, 1), 120);
        assert_eq!(backoff(60, 3), 480);
        assert_eq!(backoff(60, 40), 3600);
        assert_eq!(backoff(7200, 2), 7200);
    }
}
