//! `cordon audit`: read, verify and export the audit log.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use cordon_audit::{
    to_ocsf, Filter, Forwarder, HttpFormat, Reader, Record, Store, StoreOptions, Target,
};
use cordon_supervisor::AuditFormat;
use cordon_types::{AuditEvent, Decision, Outcome};

use super::shared::{load_config, PolicyArgs};
use crate::report::{self, CliError, Hint};
use crate::{Cli, Exit};

/// Read, verify and export the audit log
///
/// Every decision cordon makes is recorded in a SQLite database (by default
/// $XDG_DATA_HOME/cordon/audit.db). Each record carries the SHA-256 of the one before it,
/// and checkpoints sign (sequence, head hash) with a key created on this device
/// (`<db>.key`), so editing, deleting, reordering or truncating records is detected by
/// `cordon audit verify`.
///
/// Examples:
///   cordon audit verify
///   cordon audit tail -n 20
///   cordon audit query --since 2026-11-01 --capability file --decision deny --json
///   cordon audit query --session 3f9a0c12b7d4   # one session's records (`cordon ps` shows ids)
///   cordon audit export --format ocsf > cordon.ocsf.jsonl
///   cordon audit stats
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct AuditCommand {
    /// The audit database [default: `audit.path` of the config, else $XDG_DATA_HOME/cordon/audit.db]
    #[arg(long, global = true, value_name = "FILE")]
    db: Option<PathBuf>,

    #[command(subcommand)]
    command: AuditSubcommand,
}

#[derive(Debug, Subcommand)]
enum AuditSubcommand {
    Verify(VerifyCommand),
    Tail(TailCommand),
    Query(QueryCommand),
    Export(ExportCommand),
    Stats(StatsCommand),
    Forward(ForwardCommand),
    #[command(hide = true)]
    LoadTest(LoadTestCommand),
}

/// Check the hash chain and the checkpoint signatures; name the first bad record
///
/// Exit status 0 when the log is intact, 1 when it is not.
#[derive(Debug, Args)]
struct VerifyCommand {
    /// Check signatures against this ed25519 public key (64 hex digits) instead of the device key
    #[arg(long, value_name = "HEX")]
    public_key: Option<String>,

    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Print the last records, and with `-f` new ones as they arrive
#[derive(Debug, Args)]
struct TailCommand {
    /// How many records
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: u64,

    /// Keep printing new records until interrupted
    #[arg(short = 'f', long)]
    follow: bool,

    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

/// Print the records that match every filter given
#[derive(Debug, Args)]
struct QueryCommand {
    #[command(flatten)]
    filter: FilterArgs,

    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

/// Write records as JSON Lines, as cordon stores them or as OCSF events for a SIEM
#[derive(Debug, Args)]
struct ExportCommand {
    /// `jsonl`: cordon's records; `ocsf`: OCSF 1.3 File System / Network / API Activity events
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,

    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    Jsonl,
    Ocsf,
}

/// Count records by capability and decision
#[derive(Debug, Args)]
struct StatsCommand {
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

/// Send records to a syslog or HTTP collector, keeping a cursor so none is lost or repeated
///
/// Records after the target's cursor are sent in batches; the cursor (stored in the audit
/// database) moves only when the collector accepted a batch. While the collector is down
/// the database is the backlog: the forwarder retries with growing pauses (up to 30 s) and
/// delivers everything, once, when it is back. Runs until interrupted, unless `--once`.
///
/// Targets:
///   syslog+udp://HOST:PORT     RFC 5424, one datagram per record
///   syslog+tcp://HOST:PORT     RFC 5424, octet-counted frames (RFC 6587)
///   syslog+unix:///dev/log     RFC 5424 to a local datagram socket
///   http(s)://HOST/PATH        JSON batches: `--format hec` (Splunk) or `elastic` (_bulk)
///
/// Examples:
///   cordon audit forward --to syslog+tcp://siem.example:6514
///   CORDON_FORWARD_TOKEN=... cordon audit forward --to https://splunk.example:8088/services/collector/event
///   cordon audit forward --once --to http://127.0.0.1:9200/_bulk --format elastic
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct ForwardCommand {
    /// Where to send records
    #[arg(long, value_name = "TARGET")]
    to: String,

    /// Body of HTTP batches
    #[arg(long, value_enum, default_value_t = HttpBody::Hec)]
    format: HttpBody,

    /// Records per batch
    #[arg(long, default_value_t = 500)]
    batch: usize,

    /// Time limit of one delivery, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    timeout_ms: u64,

    /// Environment variable holding the collector's token (HEC token or bearer token)
    #[arg(long, value_name = "NAME", default_value = "CORDON_FORWARD_TOKEN")]
    token_env: String,

    /// Send what is there and stop; exit 1 if the collector stays unreachable after 3 tries
    #[arg(long)]
    once: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HttpBody {
    Hec,
    Elastic,
}

impl ForwardCommand {
    fn run(&self, db: &std::path::Path) -> Result<Exit, CliError> {
        let mut target: Target = self.to.parse().map_err(|e: String| anyhow!(e))?;
        if let Target::Http { format, .. } = &mut target {
            *format = match self.format {
                HttpBody::Hec => HttpFormat::Hec,
                HttpBody::Elastic => HttpFormat::Elastic,
            };
        }
        // The log must exist and be ours before a cursor is written into it.
        Reader::open(db)
            .context("cannot read the audit log")
            .hint("pass `--db FILE` to forward another log")?;
        let token = std::env::var(&self.token_env)
            .ok()
            .filter(|t| !t.is_empty());
        let forwarder = Forwarder::new(
            db,
            target,
            self.batch,
            Duration::from_millis(self.timeout_ms),
            token,
        )?;
        let mut pause = Duration::from_millis(250);
        let mut failures = 0u32;
        loop {
            match forwarder.deliver_batch()? {
                Ok(0) if self.once => return Ok(Exit::Ok),
                Ok(0) => std::thread::sleep(Duration::from_millis(500)),
                Ok(sent) => {
                    tracing::info!(
                        "forwarded {sent} records, through record {}",
                        forwarder.cursor()?
                    );
                    pause = Duration::from_millis(250);
                    failures = 0;
                }
                Err(err) => {
                    failures += 1;
                    if self.once && failures >= 3 {
                        return Err(CliError::from(err).with_exit(Exit::Failed)).hint(format!(
                            "the records after {} stay in the database and are sent by the next `cordon audit forward`",
                            forwarder.cursor()?
                        ));
                    }
                    note!("warning: {err}; retrying in {pause:?}");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Append synthetic events as fast as possible, printing each acknowledged sequence number
#[derive(Debug, Args)]
struct LoadTestCommand {
    /// Events to append
    #[arg(long, default_value_t = 10_000)]
    events: u64,

    /// Threads appending concurrently
    #[arg(long, default_value_t = 4)]
    threads: u64,
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// Only records at or after this time (RFC 3339, or a date `YYYY-MM-DD`)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,

    /// Only records of this capability
    #[arg(long, value_name = "CAP")]
    capability: Option<String>,

    /// Only allowed or only denied records
    #[arg(long, value_enum)]
    decision: Option<DecisionFilter>,

    /// Only records of this session (the id `cordon ps` shows)
    #[arg(long, value_name = "ID")]
    session: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecisionFilter {
    Allow,
    Deny,
}

impl FilterArgs {
    fn filter(&self) -> Result<Filter, CliError> {
        let since = match &self.since {
            None => None,
            Some(text) => Some(
                super::shared::parse_since(text)
                    .hint("give a time like `2026-11-26T08:00:00Z` or a date like `2026-11-26`")?,
            ),
        };
        Ok(Filter {
            since,
            capability: self.capability.clone(),
            allow: self.decision.map(|d| matches!(d, DecisionFilter::Allow)),
            after_seq: None,
            session: self.session.clone(),
        })
    }
}

impl AuditCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let db = self.database(cli)?;
        match &self.command {
            AuditSubcommand::LoadTest(cmd) => return cmd.run(&db),
            AuditSubcommand::Forward(cmd) => return cmd.run(&db),
            _ => {}
        }
        let reader = Reader::open(&db)
            .with_context(|| "cannot read the audit log".to_owned())
            .hint("decisions are recorded by `cordon eval` and the other commands; pass `--db FILE` to read another log")?;
        let mut out = report::output();
        match &self.command {
            AuditSubcommand::Verify(cmd) => return cmd.run(&reader),
            AuditSubcommand::Tail(cmd) => {
                let mut last = 0;
                for record in reader.tail(cmd.lines)? {
                    last = record.seq;
                    print_record(&mut out, &record, cmd.json)?;
                }
                out.flush()?;
                // `-f` follows until interrupted, as `tail -f` does, or until the reader of
                // the output goes away.
                let mut closed = false;
                while cmd.follow && !closed && !report::output_lost() {
                    std::thread::sleep(Duration::from_millis(250));
                    let after = Filter {
                        after_seq: Some(last),
                        ..Filter::default()
                    };
                    reader.scan(&after, |record| {
                        last = record.seq;
                        closed = print_record(&mut out, &record, cmd.json).is_err();
                        !closed
                    })?;
                    closed = closed || out.flush().is_err();
                }
            }
            AuditSubcommand::Query(cmd) => {
                write_records(&reader, &cmd.filter.filter()?, &mut out, |out, record| {
                    print_record(out, record, cmd.json)
                })?;
            }
            AuditSubcommand::Export(cmd) => {
                write_records(&reader, &cmd.filter.filter()?, &mut out, |out, record| {
                    let value = match cmd.format {
                        ExportFormat::Jsonl => serde_json::to_value(record).unwrap_or_default(),
                        ExportFormat::Ocsf => to_ocsf(record),
                    };
                    writeln!(out, "{value}")
                })?;
            }
            AuditSubcommand::Stats(cmd) => {
                let stats = reader.stats()?;
                if cmd.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
                } else {
                    writeln!(
                        out,
                        "{} records: {} allowed, {} denied",
                        stats.records, stats.allowed, stats.denied
                    )?;
                    for (capability, (allowed, denied)) in &stats.by_capability {
                        writeln!(out, "  {capability}: {allowed} allowed, {denied} denied")?;
                    }
                    if let (Some(first), Some(last)) = (&stats.first, &stats.last) {
                        writeln!(out, "from {first} to {last}")?;
                    }
                    writeln!(out, "{} signed checkpoints", stats.checkpoints)?;
                }
            }
            AuditSubcommand::LoadTest(_) | AuditSubcommand::Forward(_) => {}
        }
        Ok(Exit::Ok)
    }

    fn database(&self, cli: &Cli) -> Result<PathBuf, CliError> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let config = load_config(cli, &PolicyArgs::default())?;
        match config.audit_target() {
            Some((path, AuditFormat::Sqlite)) => Ok(path),
            Some((path, AuditFormat::Jsonl)) => Err(anyhow!("the audit log `{}` is a JSON Lines file, not a database", path.display()))
                .hint("read it with any JSON tool, or set `audit.format = \"sqlite\"` for a tamper-evident log"),
            None => Err(anyhow!("auditing is turned off in the configuration")).hint("pass `--db FILE` to read a log"),
        }
    }
}

impl VerifyCommand {
    fn run(&self, reader: &Reader) -> Result<Exit, CliError> {
        let key = match &self.public_key {
            None => None,
            Some(hex) => Some(parse_key(hex).hint("a public key is 64 hexadecimal digits")?),
        };
        let report = reader.verify(key)?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            match &report.problem {
                None => {
                    let head = report
                        .head
                        .as_ref()
                        .map_or("empty".to_owned(), |(seq, hash)| {
                            format!("record {seq} `{hash}`")
                        });
                    outln!(
                        "ok: {} records, {} checkpoints verified; head {head}",
                        report.records,
                        report.checkpoints
                    );
                }
                Some(problem) => outln!(
                    "FAILED at record {}: {} ({})",
                    problem.seq,
                    problem.message,
                    problem.kind
                ),
            }
            if let Some((key, source)) = &report.key {
                outln!("key: {key} ({source})");
            }
        }
        Ok(if report.problem.is_none() {
            Exit::Ok
        } else {
            Exit::Failed
        })
    }
}

fn parse_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    cordon_types::unhex::<32>(hex)
        .ok_or_else(|| anyhow!("`{hex}` is not 32 bytes of hexadecimal (64 digits)"))
}

/// Writes every record matching `filter` with `write`; stops at, and returns, the first
/// write error (a closed pipe, a full disk).
fn write_records<W: Write>(
    reader: &Reader,
    filter: &Filter,
    out: &mut W,
    mut write: impl FnMut(&mut W, &Record) -> std::io::Result<()>,
) -> Result<(), CliError> {
    let mut failed = None;
    reader.scan(filter, |record| match write(out, &record) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    failed.map_or(Ok(()), |e| Err(e.into()))
}

fn print_record(out: &mut impl Write, record: &Record, json: bool) -> std::io::Result<()> {
    if json {
        let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        return writeln!(out, "{line}");
    }
    let target = record.resource["path"]
        .as_str()
        .or(record.resource["host"].as_str())
        .unwrap_or("-");
    // What a program or skill chose (a path, a host, the reasons quoting them) is shown
    // without control characters: a record cannot draw or forge lines on the terminal.
    writeln!(
        out,
        "{:>6} {} {:<5} {:<8} {:<5} {} {}",
        record.seq,
        record.time,
        if record.allow { "ALLOW" } else { "DENY" },
        cordon_types::printable(&record.capability),
        cordon_types::printable(&record.action),
        cordon_types::printable(target),
        cordon_types::printable(&record.reasons.join("; "))
    )
}

impl LoadTestCommand {
    fn run(&self, db: &std::path::Path) -> Result<Exit, CliError> {
        let store = Arc::new(Store::open(db, StoreOptions::default())?);
        let started = Instant::now();
        let per_thread = self.events / self.threads.max(1);
        let threads: Vec<_> = (0..self.threads.max(1))
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || -> Result<(), String> {
                    for i in 0..per_thread {
                        let seq = store.append(&synthetic(t, i)).map_err(|e| e.to_string())?;
                        let mut out = report::output();
                        writeln!(out, "{seq}")
                            .and_then(|()| out.flush())
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow!("a load-test thread panicked"))?
                .map_err(|e| anyhow!(e))?;
        }
        let elapsed = started.elapsed();
        let total = per_thread * self.threads.max(1);
        note!(
            "{total} events in {elapsed:.2?}: {:.0} durable events/s",
            total as f64 / elapsed.as_secs_f64()
        );
        Ok(Exit::Ok)
    }
}

fn synthetic(thread: u64, i: u64) -> AuditEvent {
    AuditEvent {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        capability: "file".into(),
        action: "read".into(),
        input: serde_json::json!({"subject": {"agent": format!("load-{thread}")}, "resource": {"path": format!("/load/{i}")}}),
        decision: Decision::deny("load test"),
        outcome: Outcome::Refused,
        policy_revision: "load-test".into(),
        cordon_version: env!("CARGO_PKG_VERSION").into(),
    }
}
