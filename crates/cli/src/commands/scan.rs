//! `cordon scan`: secrets and personal data in files, shown masked.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Args;
use cordon_inspect::file::{scan_tree, Progress, TreeOptions};
use cordon_inspect::{Confidence, Detector, Selection};
use serde_json::json;

use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Find secrets and personal data in files
///
/// Reads files and folders (`.gitignore`d paths left out, hidden files such as `.env` read,
/// links not followed) and prints one line per finding: file, line, kind, rule, confidence
/// and the line with the value masked. The value itself is never printed or logged.
///
/// Exit status: 0 nothing found, 1 something found, 2 a file could not be read (and
/// nothing found) or a usage error; usable as a pre-commit hook or a CI step.
///
/// Secrets: private keys, AWS/GCP/Azure credentials, GitHub, GitLab, Slack, Stripe,
/// OpenAI, Anthropic and Google tokens, JWTs, credentials in URLs, high-entropy values
/// assigned to secret-looking names. Personal data: e-mail addresses, telephone numbers,
/// payment cards (Luhn), IBANs (mod 97), national ids with a check digit.
///
/// Examples:
///   cordon scan
///   cordon scan src/ config/ --only token,cloud_key
///   cordon scan --json . | jq '.findings[] | .path'
///   cordon scan --list-rules
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ScanCommand {
    /// Files and folders to scan [default: .]
    paths: Vec<PathBuf>,

    /// Print one JSON document: findings, counts and unreadable paths
    #[arg(long)]
    json: bool,

    /// Only these kinds or rules (comma-separated; `regex:PATTERN` adds a pattern)
    #[arg(long, value_delimiter = ',', value_name = "KIND|RULE")]
    only: Vec<String>,

    /// Leave out findings below this confidence
    #[arg(long, value_name = "LEVEL", default_value = "low", value_parser = ["low", "medium", "high"])]
    min_confidence: String,

    /// Read files that .gitignore and .ignore leave out
    #[arg(long)]
    no_ignore: bool,

    /// Follow symbolic links (loops are reported, not entered)
    #[arg(long, short = 'L')]
    follow: bool,

    /// Search binary files too (by default a file with a NUL byte near its start is skipped)
    #[arg(long)]
    binary: bool,

    /// Read at most this many bytes of each file
    #[arg(long, value_name = "BYTES")]
    max_filesize: Option<u64>,

    /// List the rules and their kinds, and exit
    #[arg(long)]
    list_rules: bool,
}

impl ScanCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        if self.list_rules {
            for (id, kind) in cordon_inspect::rule_ids() {
                outln!("{id:<28} {kind}");
            }
            return Ok(Exit::Ok);
        }
        let selection = Selection::parse(&self.only)
            .hint("`cordon scan --list-rules` lists the kinds and rules")?;
        let detector = Detector::shared(&selection)?;
        let min = match self.min_confidence.as_str() {
            "high" => Confidence::High,
            "medium" => Confidence::Medium,
            _ => Confidence::Low,
        };
        let roots = if self.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            self.paths.clone()
        };
        for root in &roots {
            if let Err(e) = std::fs::symlink_metadata(root) {
                return Err(CliError::from(anyhow::anyhow!(
                    "cannot scan `{}`: {e}",
                    root.display()
                )));
            }
        }
        let options = TreeOptions {
            no_ignore: self.no_ignore,
            follow: self.follow,
            binary: self.binary,
            max_filesize: self.max_filesize,
        };
        let progress = Progress::default();
        let started = Instant::now();
        let show_progress = !self.json && std::io::stderr().is_terminal();
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut report = std::thread::scope(|scope| {
            if show_progress {
                scope.spawn(|| {
                    let mut shown = false;
                    while !done.load(Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                        if started.elapsed() > Duration::from_secs(1) && !done.load(Relaxed) {
                            note_part!(
                                "\rscanning: {} files, {:.1} MB",
                                progress.files.load(Relaxed),
                                progress.bytes.load(Relaxed) as f64 / 1e6
                            );
                            shown = true;
                        }
                    }
                    if shown {
                        note_part!("\r\x1b[K");
                    }
                });
            }
            let report = scan_tree(&detector, &roots, &options, &progress);
            done.store(true, Relaxed);
            report
        });
        report.findings.retain(|f| f.finding.confidence >= min);
        let elapsed = started.elapsed();
        if self.json {
            let findings: Vec<_> = report
                .findings
                .iter()
                .map(|f| {
                    json!({
                        "path": f.path.to_string_lossy(), "line": f.finding.line, "kind": f.finding.kind,
                        "rule": f.finding.rule, "confidence": f.finding.confidence,
                        "start": f.finding.start, "end": f.finding.end, "excerpt": f.excerpt,
                    })
                })
                .collect();
            let errors: Vec<_> = report
                .errors
                .iter()
                .map(|(path, why)| json!({"path": path.to_string_lossy(), "error": why}))
                .collect();
            let doc = json!({
                "findings": findings, "more": report.more, "files": report.files,
                "bytes": report.bytes, "binary_skipped": report.binary,
                "truncated": report.truncated, "errors": errors,
                "elapsed_ms": elapsed.as_millis() as u64,
            });
            outln!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            for f in &report.findings {
                outln!(
                    "{}:{}: {} {} ({}): {}",
                    cordon_types::printable(&f.path.display().to_string()),
                    f.finding.line,
                    f.finding.kind,
                    f.finding.rule,
                    serde_json::to_value(f.finding.confidence)?
                        .as_str()
                        .unwrap_or_default(),
                    f.excerpt
                );
            }
            for (path, why) in &report.errors {
                note!(
                    "warning: cannot read `{}`: {}",
                    cordon_types::printable(&path.display().to_string()),
                    cordon_types::printable(why)
                );
            }
            let files_with: std::collections::BTreeSet<_> =
                report.findings.iter().map(|f| &f.path).collect();
            note!(
                "{} finding{} in {} file{} ({} files and {:.1} MB read, {} binary skipped, {} unreadable, {:.2} s){}",
                report.findings.len() as u64 + report.more,
                if report.findings.len() == 1 { "" } else { "s" },
                files_with.len(),
                if files_with.len() == 1 { "" } else { "s" },
                report.files,
                report.bytes as f64 / 1e6,
                report.binary,
                report.errors.len(),
                elapsed.as_secs_f64(),
                if report.more > 0 { format!("; {} more not listed", report.more) } else { String::new() },
            );
        }
        Ok(if !report.findings.is_empty() || report.more > 0 {
            Exit::Failed
        } else if !report.errors.is_empty() {
            Exit::Error
        } else {
            Exit::Ok
        })
    }
}
