//! `cordon journal`: what sessions changed in their writable trees, and its undo.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use cordon_journal::{Blobs, ChangeKind, Entry, EntryKind, Filter, Journal, Recorded};
use cordon_types::printable;

use super::shared::{duration, load_config, since_time, PolicyArgs};
use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// See and undo what sessions changed in their writable trees
///
/// Before a session's program runs, cordon takes its workspace and every writable grant: each
/// path's size, times, inode and mode, with the content of every file kept once by its
/// SHA-256 (a later session reads again only the files whose metadata changed). What
/// `.gitignore` ignores (target/, node_modules/) is left out, and said so with -v. When the
/// program ends, the trees are taken again and every change (create, modify, delete,
/// rename, mode change) is journaled with what was there before, in
/// $XDG_DATA_HOME/cordon/journal. Writes stay live: your editor sees them at once.
///
/// `undo` puts paths back exactly as they were (content, mode, link target, existence),
/// only where they are still as the session left them: a file changed since by someone else
/// is left alone, and its diff shown, unless --force. An undo is journaled too, so it can be
/// undone. Nothing outside the journaled trees is ever written.
///
/// A session whose cordon was killed is journaled at the next launch, or now with
/// `cordon journal checkpoint SESSION`.
///
/// Examples:
///   cordon journal log                      # the latest changes, all sessions
///   cordon journal log --session 3f9a0c12b7d4 --json
///   cordon journal show 42                  # one change, as a unified diff
///   cordon journal show 3f9a0c12b7d4        # everything a session changed
///   cordon journal undo --session 3f9a0c12b7d4
///   cordon journal undo 42                  # one change
///   cordon journal undo --since 1h --path src/
///   cordon journal checkpoint 3f9a0c12b7d4  # journal a running session's changes so far
///   cordon journal gc --keep 30d
///   cordon journal stats
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct JournalCommand {
    /// The journal's directory [default: `journal.path` of the config, else $XDG_DATA_HOME/cordon/journal]
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,

    #[command(subcommand)]
    command: JournalSubcommand,
}

#[derive(Debug, Subcommand)]
enum JournalSubcommand {
    Log(LogCommand),
    Show(ShowCommand),
    Undo(UndoCommand),
    Checkpoint(CheckpointCommand),
    Staged(StagedCommand),
    Apply(ApplyCommand),
    Discard(DiscardCommand),
    Gc(GcCommand),
    Stats(StatsCommand),
}

/// List journaled changes, oldest first
#[derive(Debug, Args)]
struct LogCommand {
    /// Only this session's changes
    #[arg(long, value_name = "ID")]
    session: Option<String>,

    /// Only changes since this long ago (`7d`, `12h`, `30m`) or this time (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,

    /// At most the latest N changes [default: 50; 0 for all]
    #[arg(short = 'n', long, value_name = "N")]
    last: Option<u64>,

    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

/// Show changes: a unified diff for text, sizes and digests for binary content
#[derive(Debug, Args)]
struct ShowCommand {
    /// A change's number (from `log`), or a session's id for all its changes
    target: String,

    /// The changes as JSON, one per line
    #[arg(long)]
    json: bool,
}

/// Put paths back as they were before the changes selected
///
/// Exit status 0 when every change selected was undone, 1 when some were left as they are
/// (changed since; each is named with its diff), 2 on an error.
#[derive(Debug, Args)]
struct UndoCommand {
    /// Changes by number (from `log`)
    #[arg(value_name = "ID", conflicts_with_all = ["session", "since"])]
    ids: Vec<i64>,

    /// Every change of this session not undone yet
    #[arg(long, value_name = "ID")]
    session: Option<String>,

    /// Every change since this long ago (`1h`) or this time, not undone yet
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,

    /// Only changes to this path or below it (relative to the current directory)
    #[arg(long, value_name = "PATH")]
    path: Option<PathBuf>,

    /// Overwrite paths changed since the session left them
    #[arg(long)]
    force: bool,

    /// Print what was undone as JSON
    #[arg(long)]
    json: bool,
}

/// Journal a session's changes now (a running one's so far; one whose cordon was killed)
#[derive(Debug, Args)]
struct CheckpointCommand {
    /// The session's id (`cordon ps`, `cordon journal log`)
    session: String,

    /// Print what was journaled as JSON
    #[arg(long)]
    json: bool,
}

/// List what staged sessions (`cordon exec --stage`) wrote and have not applied yet
#[derive(Debug, Args)]
struct StagedCommand {
    /// Only this session's stage
    session: Option<String>,

    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

/// Write a staged session's changes to its trees, journaled (and so undoable)
///
/// A path changed in the tree during the run is left as it is (the stage keeps it) unless
/// --force; protected paths are never applied. Exit status 1 when some paths were left.
#[derive(Debug, Args)]
struct ApplyCommand {
    /// The session's id
    session: String,

    /// Overwrite paths changed in the tree during the run
    #[arg(long)]
    force: bool,

    /// Print what was applied as JSON
    #[arg(long)]
    json: bool,
}

/// Drop a staged session's changes: nothing it wrote reaches its trees
#[derive(Debug, Args)]
struct DiscardCommand {
    /// The session's id
    session: String,
}

/// Forget changes older than a duration and remove contents nothing refers to
#[derive(Debug, Args)]
struct GcCommand {
    /// Keep what was journaled within this long (`30d`, `12h`)
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    keep: String,

    /// Print what was removed as JSON
    #[arg(long)]
    json: bool,
}

/// How much the journal holds: sessions, changes, the store's size
#[derive(Debug, Args)]
struct StatsCommand {
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

/// Text shown only printable (tabs kept).
fn shown(text: &str) -> String {
    text.split('\t')
        .map(printable)
        .collect::<Vec<_>>()
        .join("\t")
}

fn time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `#ID time session kind path [→ to] [notes]`.
fn line(r: &Recorded) -> String {
    let mut out = format!(
        "#{:<5} {}  {}  {:<6} {}",
        r.id,
        time(r.time_ns),
        shown(&r.session),
        r.change.kind.as_str(),
        shown(&r.root.join(&r.change.path).to_string_lossy())
    );
    if let Some(to) = &r.change.to {
        out.push_str(&format!(
            " -> {}",
            shown(&r.root.join(to).to_string_lossy())
        ));
    }
    if let Some(id) = r.undoes {
        out.push_str(&format!("  (undo of #{id})"));
    }
    if let Some(id) = r.undone_by {
        out.push_str(&format!("  (undone by #{id})"));
    }
    out
}

/// Writes one line to stdout. One that cannot be written (a closed pipe: `| head`) is the
/// command's error at its end, after it has done its work and said on stderr what it left.
fn emit(text: &str) {
    outln!("{text}");
}

fn json_line(value: &impl serde::Serialize) -> Result<(), CliError> {
    emit(&serde_json::to_string(value)?);
    Ok(())
}

/// The content of `entry` if it is a file whose content was kept.
fn content(blobs: &Blobs, entry: Option<&Entry>) -> Option<Vec<u8>> {
    let entry = entry?;
    (entry.kind == EntryKind::File)
        .then_some(entry.digest.as_deref())
        .flatten()
        .and_then(|d| blobs.get(d).ok())
}

/// The largest content shown as a diff.
const MAX_DIFF: usize = 1 << 20;

/// Text worth a diff: UTF-8, no NUL, not too large.
fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.len() > MAX_DIFF || bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

fn describe(entry: Option<&Entry>) -> String {
    match entry {
        None => "nothing".into(),
        Some(e) => match e.kind {
            EntryKind::File => format!(
                "{} bytes, sha256 {}, mode {:o}",
                e.size,
                e.digest
                    .as_deref()
                    .map_or("unknown", |d| &d[..16.min(d.len())]),
                e.mode
            ),
            EntryKind::Dir => format!("a directory, mode {:o}", e.mode),
            EntryKind::Symlink => format!(
                "a link to `{}`",
                shown(e.target.as_deref().unwrap_or_default())
            ),
            EntryKind::Other => "a FIFO, socket or device".into(),
            EntryKind::Unknown => format!(
                "{} bytes, content not kept (too large, sparse or unreadable), mode {:o}",
                e.size, e.mode
            ),
        },
    }
}

/// A unified diff of two contents, or their sizes and digests when either is not text.
fn content_diff(
    old: Option<&[u8]>,
    new: Option<&[u8]>,
    labels: (&str, &str),
    entries: (Option<&Entry>, Option<&Entry>),
) -> String {
    let old_text = old.map_or(Some(""), text);
    let new_text = new.map_or(Some(""), text);
    match (old_text, new_text) {
        (Some(a), Some(b)) => similar::TextDiff::from_lines(a, b)
            .unified_diff()
            .context_radius(3)
            .header(labels.0, labels.1)
            .to_string()
            .lines()
            .map(shown)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => format!("binary: {} -> {}", describe(entries.0), describe(entries.1)),
    }
}

fn show(blobs: &Blobs, r: &Recorded) -> String {
    let mut out = line(r);
    out.push('\n');
    let c = &r.change;
    let (before, after) = (c.before.as_ref(), c.after.as_ref());
    let is_file = |e: Option<&Entry>| e.is_none_or(|e| e.kind == EntryKind::File);
    let body = match c.kind {
        ChangeKind::Mode => format!(
            "mode {:o} -> {:o}",
            before.map_or(0, |e| e.mode),
            after.map_or(0, |e| e.mode)
        ),
        ChangeKind::Rename => format!("renamed, content unchanged ({})", describe(after)),
        _ if is_file(before) && is_file(after) => {
            let path = shown(&c.path);
            content_diff(
                content(blobs, before).as_deref(),
                content(blobs, after).as_deref(),
                (&format!("a/{path}"), &format!("b/{path}")),
                (before, after),
            )
        }
        _ => format!("{} -> {}", describe(before), describe(after)),
    };
    out.push_str(body.trim_end());
    out
}

impl JournalCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => {
                let mut config = load_config(cli, &PolicyArgs::default())?;
                // The journal is read even when new sessions are not journaled.
                config.journal.enabled = None;
                config
                    .journal_dir()
                    .ok_or_else(|| anyhow!("no data directory to find the journal in"))
                    .hint("pass `--dir DIR`")?
            }
        };
        let mut journal = Journal::open(&dir)
            .context("cannot open the journal")
            .hint("`--dir DIR` names another journal")?;
        match &self.command {
            JournalSubcommand::Log(cmd) => cmd.run(&journal),
            JournalSubcommand::Show(cmd) => cmd.run(&journal),
            JournalSubcommand::Undo(cmd) => cmd.run(&mut journal),
            JournalSubcommand::Checkpoint(cmd) => cmd.run(&mut journal, cli),
            JournalSubcommand::Staged(cmd) => cmd.run(&journal),
            JournalSubcommand::Apply(cmd) => cmd.run(&mut journal, cli),
            JournalSubcommand::Discard(cmd) => cmd.run(&mut journal),
            JournalSubcommand::Gc(cmd) => cmd.run(&mut journal),
            JournalSubcommand::Stats(cmd) => cmd.run(&journal),
        }
    }
}

fn since_ns(text: &str) -> Result<i64, CliError> {
    let time = since_time(text)?;
    Ok(time.timestamp_nanos_opt().unwrap_or(i64::MIN))
}

impl LogCommand {
    fn run(&self, journal: &Journal) -> Result<Exit, CliError> {
        let last = match self.last {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(50),
        };
        let mut list = journal.changes(&Filter {
            session: self.session.clone(),
            since_ns: self.since.as_deref().map(since_ns).transpose()?,
            last,
            ..Filter::default()
        })?;
        list.reverse();
        if last.is_none() {
            list.reverse();
        }
        for r in &list {
            if self.json {
                json_line(r)?;
            } else {
                emit(&line(r));
            }
        }
        if list.is_empty() && !self.json {
            note!("no changes journaled");
        }
        Ok(Exit::Ok)
    }
}

impl ShowCommand {
    fn run(&self, journal: &Journal) -> Result<Exit, CliError> {
        let filter = match self.target.parse::<i64>() {
            Ok(id) => Filter {
                ids: vec![id],
                ..Filter::default()
            },
            Err(_) => Filter {
                session: Some(self.target.clone()),
                ..Filter::default()
            },
        };
        let list = journal.changes(&filter)?;
        if list.is_empty() {
            return Err(CliError::from(anyhow!(
                "no change journaled as `{}`",
                shown(&self.target)
            ))
            .with_hint("`cordon journal log` lists the changes and their sessions"));
        }
        for r in &list {
            if self.json {
                json_line(r)?;
            } else {
                emit(&format!("{}\n", show(journal.blobs(), r)));
            }
        }
        Ok(Exit::Ok)
    }
}

/// `path` made absolute against the current directory, `.` and `..` folded.
fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut out = PathBuf::new();
    for part in cwd.join(path).components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

impl UndoCommand {
    fn run(&self, journal: &mut Journal) -> Result<Exit, CliError> {
        if self.ids.is_empty() && self.session.is_none() && self.since.is_none() {
            return Err(CliError::from(anyhow!("nothing selected to undo"))
                .with_hint("name change numbers, `--session ID` or `--since WHEN`"));
        }
        let filter = Filter {
            ids: self.ids.clone(),
            session: self.session.clone(),
            since_ns: self.since.as_deref().map(since_ns).transpose()?,
            // Named changes are undone as named (an undo is undone by its number); a session
            // or a time selects what is not undone yet.
            pending: self.ids.is_empty(),
            last: None,
        };
        let mut selected = journal.changes(&filter)?;
        if let Some(path) = &self.path {
            let path = absolute(path)?;
            selected.retain(|r| {
                [Some(&r.change.path), r.change.to.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|p| r.root.join(p).starts_with(&path))
            });
        }
        for id in &self.ids {
            match selected.iter().find(|r| r.id == *id) {
                None => {
                    return Err(CliError::from(anyhow!("no change #{id} in the journal"))
                        .with_hint("`cordon journal log` lists the changes"))
                }
                Some(r) if r.undone_by.is_some() => {
                    note!(
                        "#{id} was undone already (by #{}); undo that to redo it",
                        r.undone_by.unwrap_or_default()
                    );
                }
                Some(_) => {}
            }
        }
        if selected.is_empty() {
            note!("nothing to undo");
            return Ok(Exit::Ok);
        }
        let report = journal.undo(&selected, self.force)?;
        if self.json {
            json_line(&report)?;
        } else {
            for r in &report.undone {
                emit(&line(r));
            }
        }
        for (root, conflict) in &report.conflicts {
            let path = root.join(&conflict.path);
            note!(
                "left as it is: {}: {}",
                shown(&path.to_string_lossy()),
                shown(&conflict.reason)
            );
            // What the session left there against what is there now.
            let left = selected
                .iter()
                .rev()
                .find(|r| {
                    r.root == *root
                        && (r.change.to.as_deref() == Some(conflict.path.as_str())
                            || (r.change.to.is_none() && r.change.path == conflict.path))
                })
                .and_then(|r| content(journal.blobs(), r.change.after.as_ref()));
            let now = read_regular(root, &conflict.path);
            if left.is_some() || now.is_some() {
                let label = shown(&conflict.path);
                note!(
                    "{}",
                    content_diff(
                        left.as_deref(),
                        now.as_deref(),
                        (&format!("as left/{label}"), &format!("now/{label}")),
                        (None, None),
                    )
                );
            }
        }
        if !report.conflicts.is_empty() {
            note!(
                "{} undone, {} left as they are; `--force` overwrites those changed since (never through a link, nor outside the tree)",
                report.undone.len(),
                report.conflicts.len()
            );
            return Ok(Exit::Failed);
        }
        if !self.json {
            note!(
                "{} undone; `cordon journal undo ID` on these numbers redoes them",
                report.undone.len()
            );
        }
        Ok(Exit::Ok)
    }
}

/// A regular file's content below `root`, for showing (no link followed, no wait, bounded).
fn read_regular(root: &Path, rel: &str) -> Option<Vec<u8>> {
    let root = cordon_journal::Root::open(root).ok()?;
    cordon_journal::read_file(&root, rel, MAX_DIFF as u64 + 1)
        .ok()
        .flatten()
}

impl CheckpointCommand {
    fn run(&self, journal: &mut Journal, cli: &Cli) -> Result<Exit, CliError> {
        let config = load_config(cli, &PolicyArgs::default())?;
        let running = journal.is_running(&self.session);
        let found = journal
            .checkpoint(
                &self.session,
                "checkpoint",
                !running,
                &config.journal_options(),
            )
            .hint("`cordon journal log` lists the sessions journaled")?;
        if self.json {
            json_line(&found)?;
            return Ok(Exit::Ok);
        }
        for r in &found.changes {
            emit(&line(r));
        }
        note!(
            "{} changes journaled{}",
            found.changes.len(),
            if running {
                ""
            } else {
                " (the session is not running: it is recorded as ended)"
            }
        );
        Ok(Exit::Ok)
    }
}

fn staged_kind(kind: cordon_journal::StagedKind) -> &'static str {
    match kind {
        cordon_journal::StagedKind::Write => "write",
        cordon_journal::StagedKind::Delete => "delete",
        cordon_journal::StagedKind::Replace => "replace",
    }
}

impl StagedCommand {
    fn run(&self, journal: &Journal) -> Result<Exit, CliError> {
        let stages = journal.stages(self.session.as_deref())?;
        if stages.is_empty() && !self.json {
            note!("nothing staged");
        }
        for stage in stages {
            let paths = stage.staged()?;
            if self.json {
                json_line(&serde_json::json!({
                    "session": stage.session,
                    "root": stage.root,
                    "paths": paths,
                }))?;
                continue;
            }
            emit(&format!(
                "session {} — {} ({} paths)",
                shown(&stage.session),
                shown(&stage.root.to_string_lossy()),
                paths.len()
            ));
            for p in paths {
                emit(&format!(
                    "  {:<7} {}",
                    staged_kind(p.kind),
                    shown(&stage.root.join(&p.path).to_string_lossy())
                ));
            }
        }
        Ok(Exit::Ok)
    }
}

impl ApplyCommand {
    fn run(&self, journal: &mut Journal, cli: &Cli) -> Result<Exit, CliError> {
        let config = load_config(cli, &PolicyArgs::default())?;
        let (report, findings) = cordon_supervisor::session::apply_guarded(
            journal,
            &self.session,
            self.force,
            &config.journal_options(),
        )
        .hint("`cordon journal staged` lists the sessions with a stage")?;
        if self.json {
            json_line(&report)?;
        } else {
            for r in &report.journaled.changes {
                emit(&line(r));
            }
        }
        let mut left = findings
            .iter()
            .filter(|f| f.action == cordon_sandbox::guard::Action::Unresolved)
            .count();
        for (root, applied) in &report.applied {
            for conflict in &applied.conflicts {
                left += 1;
                note!(
                    "left in the stage: {}: {}",
                    shown(&root.join(&conflict.path).to_string_lossy()),
                    shown(&conflict.reason)
                );
            }
        }
        note!(
            "{} changes applied and journaled (`cordon journal undo --session {}` undoes them)",
            report.journaled.changes.len(),
            shown(&self.session)
        );
        if left > 0 {
            note!("{left} paths left in the stage; `--force` writes them over the tree's");
            return Ok(Exit::Failed);
        }
        Ok(Exit::Ok)
    }
}

impl DiscardCommand {
    fn run(&self, journal: &mut Journal) -> Result<Exit, CliError> {
        let dropped = journal
            .discard_stages(&self.session)
            .hint("`cordon journal staged` lists the sessions with a stage")?;
        note!(
            "dropped the stage of session {} ({} trees); nothing it wrote reached them",
            shown(&self.session),
            dropped.len()
        );
        Ok(Exit::Ok)
    }
}

impl GcCommand {
    fn run(&self, journal: &mut Journal) -> Result<Exit, CliError> {
        let keep = duration(&self.keep)
            .flatten()
            .ok_or_else(|| anyhow!("`{}` is not a duration", shown(&self.keep)))
            .hint("write it as `30d`, `12h`, `45m` or `90s`")?;
        let cutoff = chrono::Utc::now()
            - chrono::TimeDelta::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
        let collected = journal.collect(cutoff.timestamp_nanos_opt().unwrap_or(i64::MIN))?;
        if self.json {
            json_line(&collected)?;
        } else {
            emit(&format!(
                "forgot {} changes, {} snapshots, {} sessions; removed {} contents ({:.1} MB)",
                collected.changes,
                collected.snapshots,
                collected.sessions,
                collected.blobs,
                collected.bytes as f64 / 1e6
            ));
        }
        Ok(Exit::Ok)
    }
}

impl StatsCommand {
    fn run(&self, journal: &Journal) -> Result<Exit, CliError> {
        let stats = journal.stats()?;
        if self.json {
            json_line(&stats)?;
            return Ok(Exit::Ok);
        }
        let mut text = format!(
            "journal:   {}\nsessions:  {}\nchanges:   {}\nsnapshots: {}\nstore:     {} contents, {:.1} MB\ndatabase:  {:.1} MB",
            journal.dir().display(),
            stats.sessions,
            stats.changes,
            stats.snapshots,
            stats.blobs,
            stats.blob_bytes as f64 / 1e6,
            stats.db_bytes as f64 / 1e6
        );
        if let Some(oldest) = stats.oldest_ns {
            text.push_str(&format!("\noldest:    {}", time(oldest)));
        }
        emit(&text);
        Ok(Exit::Ok)
    }
}
