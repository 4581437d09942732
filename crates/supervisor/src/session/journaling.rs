//! A session's writable trees journaled: taken before the program runs, taken again at its
//! end, and every change between recorded with its before-image (`cordon journal`).

use std::path::PathBuf;

use cordon_journal::{Checkpoint, Journal, Options, SessionMark, Taken};
use cordon_sandbox::plan::{MountOp, Plan, Stage};
use serde::Serialize;

use crate::CordonConfig;

/// The journal of one running session.
#[derive(Debug)]
pub(super) struct Journaling {
    journal: Journal,
    options: Options,
    id: String,
    /// Held while the session runs: a session whose mark is free was not ended by its
    /// cordon, and the next launch records its changes.
    _mark: SessionMark,
}

/// The trees to take: the writable grants that are directories, none inside another.
pub(super) fn roots(write: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = write
        .iter()
        .filter(|p| {
            let is_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
            if !is_dir {
                tracing::debug!("`{}` is not a directory: not journaled", p.display());
            }
            is_dir
        })
        .cloned()
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if !out.iter().any(|o| dir.starts_with(o)) {
            out.push(dir);
        }
    }
    out
}

/// cordon's files that no sandbox may see: the journal (made now, so the view can hide it)
/// and the audit log's signing key.
pub(super) fn hidden_paths(
    config: &CordonConfig,
    supervisor: &crate::Supervisor,
    run: bool,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = config.journal_dir() {
        if run {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            let made = builder.create(&dir);
            if let Err(err) = made {
                tracing::debug!("cannot make the journal's directory yet: {err}");
            }
        }
        out.push(crate::real_path(&dir));
    }
    if let Some(db) = supervisor.audit_path() {
        out.push(crate::real_path(&cordon_audit::key_path_for(db)));
    }
    out
}

/// What [`Opening::take`] gives: the session's journal and the trees taken (`None` when
/// journaling is off, or the launch ended before its trees were known), or why the trees
/// could not be taken.
pub(super) type Begun = Result<Option<(Journaling, Vec<Taken>)>, String>;

/// The trees a session's journal takes, once the view is planned.
struct Trees {
    program: String,
    roots: Vec<PathBuf>,
    exclude: Vec<PathBuf>,
}

/// A session's journal being opened on a thread of its own from the session's start, while
/// the policy decides and the view is planned; given the trees, it marks the session as
/// running, records earlier sessions that did not end, then takes this one's.
#[derive(Debug)]
pub(super) struct Opening {
    trees: std::sync::mpsc::SyncSender<Trees>,
    thread: std::thread::JoinHandle<Begun>,
}

impl Opening {
    /// Starts opening the journal of session `id`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub(super) fn start(config: CordonConfig, id: String) -> Result<Self, String> {
        let (trees, wanted) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("cordon-journal".into())
            .spawn(move || begin(&config, &id, &wanted))
            .map_err(|e| format!("cannot start the journal: {e}"))?;
        Ok(Self { trees, thread })
    }

    /// Has `roots` taken, less `exclude` (what the view hides), for `program`. A launch that
    /// ends before drops the opening instead: the journal then takes nothing.
    pub(super) fn take(
        self,
        program: String,
        roots: Vec<PathBuf>,
        exclude: Vec<PathBuf>,
    ) -> Taking {
        // The thread has ended already when journaling is off or the journal could not be
        // opened: it says which when joined.
        let _ = self.trees.send(Trees {
            program,
            roots,
            exclude,
        });
        Taking(Some(self.thread))
    }
}

/// The journal's thread taking a session's trees. Dropped without [`Taking::join`] (the
/// launch was refused or failed before its program ran), it is waited for and the session
/// it recorded forgotten.
#[derive(Debug)]
pub(super) struct Taking(Option<std::thread::JoinHandle<Begun>>);

impl Taking {
    /// The session's journal and its trees, once taken.
    pub(super) fn join(mut self) -> Begun {
        match self.0.take().map(std::thread::JoinHandle::join) {
            Some(Ok(begun)) => begun,
            Some(Err(_)) | None => Err("the journal's thread failed".into()),
        }
    }
}

impl Drop for Taking {
    fn drop(&mut self) {
        if let Some(Ok(Ok(Some((journaling, _))))) =
            self.0.take().map(std::thread::JoinHandle::join)
        {
            journaling.forget();
        }
    }
}

/// Opens the journal; once the trees come on `wanted`, marks this session as running,
/// records the sessions that did not end (their cordon was killed), then takes this one's. `None` when journaling is
/// off, or when the launch ended before.
///
/// # Errors
///
/// Why the journal could not be opened or the trees taken: the session must not run then.
fn begin(config: &CordonConfig, id: &str, wanted: &std::sync::mpsc::Receiver<Trees>) -> Begun {
    let Some(dir) = config.journal_dir() else {
        return Ok(None);
    };
    let fail = |err: std::io::Error| {
        format!("cannot journal the session's writable trees, so its changes could not be undone: {err}")
    };
    let started = std::time::Instant::now();
    let mut journal = Journal::open(&dir).map_err(fail)?;
    let opened = started.elapsed();
    let Ok(trees) = wanted.recv() else {
        return Ok(None);
    };
    let asked = started.elapsed();
    let mark = journal.mark_running(id).map_err(fail)?;
    // Earlier sessions are taken with what this one leaves out, as this one's trees are.
    let mut options = config.journal_options();
    options.exclude.extend(trees.exclude);
    match journal.recover(&options) {
        Ok(found) => {
            for (session, checkpoint) in found {
                tracing::warn!(
                    "session {session} ended without its cordon: {} changes journaled now (`cordon journal log --session {session}`)",
                    checkpoint.changes.len()
                );
            }
        }
        Err(err) => tracing::warn!("earlier sessions could not be checked: {err}"),
    }
    let checked = started.elapsed();
    let taken = journal
        .start(id, &trees.program, &trees.roots, &options)
        .map_err(fail)?;
    tracing::debug!(
        "journal opened in {opened:?}, its trees asked for after {asked:?}, earlier sessions checked after {checked:?}, trees taken after {:?}",
        started.elapsed()
    );
    Ok(Some((
        Journaling {
            journal,
            options,
            id: id.to_owned(),
            _mark: mark,
        },
        taken,
    )))
}

impl Journaling {
    /// Forgets the session, whose program never ran ([`Journal::forget`]); its mark ends.
    pub(super) fn forget(mut self) {
        if let Err(err) = self.journal.forget(&self.id) {
            tracing::warn!(
                "the journal keeps session {}, whose program never ran (`cordon journal log --session {}`): {err}",
                self.id,
                self.id
            );
        }
    }

    /// Takes the trees again and records what changed; the session is ended in the journal.
    ///
    /// # Errors
    ///
    /// Why the changes could not be recorded (the next launch records them).
    pub(super) fn end(mut self) -> Result<Checkpoint, String> {
        self.journal
            .checkpoint(&self.id, "end", true, &self.options)
            .map_err(|e| format!("cannot journal what the session changed: {e}"))
    }
}

/// One line about the trees taken, for a person.
pub(super) fn describe(taken: &[Taken]) -> String {
    let files: u64 = taken.iter().map(|t| t.summary.files).sum();
    let bytes: u64 = taken.iter().map(|t| t.summary.bytes).sum();
    let read: u64 = taken.iter().map(|t| t.summary.read).sum();
    let left: Vec<&str> = taken
        .iter()
        .flat_map(|t| t.left_out.iter().map(String::as_str))
        .take(5)
        .collect();
    let mut line = format!(
        "journal: {files} files ({:.1} MB) taken, {read} read",
        bytes as f64 / 1e6
    );
    if !left.is_empty() {
        line.push_str(&format!("; ignored by .gitignore: {}", left.join(", ")));
    }
    line
}

/// What becomes of a staged session's writes when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageMode {
    /// Kept for review: `cordon journal apply` or `discard`.
    Review,
    /// Applied when the program exits with 0, kept for review otherwise.
    Auto,
}

/// What a staged session left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StagedOutcome {
    /// Paths the stage writes or deletes.
    pub paths: usize,
    /// Whether the stage was applied to the trees.
    pub applied: bool,
    /// Paths not applied, with why (the stage keeps them).
    pub conflicts: Vec<String>,
    /// Changes journaled by the application.
    pub journaled: usize,
    /// Why the stage could not be read or applied (it is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Makes the session's writable trees staged: each writable directory grant gets a stage in
/// the journal, and its mount in `plan` an overlay whose upper directory is the stage.
///
/// # Errors
///
/// Why the writes cannot be staged (journaling off, no overlayfs, the journal unwritable).
pub(super) fn stage(config: &CordonConfig, id: &str, plan: &mut Plan) -> Result<(), String> {
    let Some(dir) = config.journal_dir() else {
        return Err(
            "`--stage` keeps the writes in the journal, and journaling is off (`[journal] enabled = false` or `--no-journal`)".into(),
        );
    };
    let filesystems = fs_err::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Err(
            "this kernel has no overlayfs (not in /proc/filesystems), so `--stage` cannot keep the writes apart; run without it".into(),
        );
    }
    let roots: Vec<(PathBuf, Vec<String>)> = plan
        .mounts
        .iter()
        .filter_map(|op| match op {
            MountOp::Bind {
                path,
                writable: true,
                ..
            } if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) => {
                let skip = plan
                    .guarded
                    .iter()
                    .filter_map(|g| g.path.strip_prefix(path).ok())
                    .map(|rel| rel.to_string_lossy().into_owned())
                    .filter(|rel| !rel.is_empty())
                    .collect();
                Some((path.clone(), skip))
            }
            _ => None,
        })
        .collect();
    let fail = |e: std::io::Error| format!("cannot make the session's stage: {e}");
    let mut journal = Journal::open(&dir).map_err(fail)?;
    let stages = journal.make_stages(id, &roots).map_err(fail)?;
    for op in &mut plan.mounts {
        if let MountOp::Bind {
            path,
            writable: true,
            stage,
            ..
        } = op
        {
            if let Some(made) = stages.iter().find(|s| &s.root == path) {
                *stage = Some(Stage::at(&made.dir)?);
            }
        }
    }
    Ok(())
}

/// Applies the session's stage (`Auto` and exit status 0) or keeps it, and says which.
pub(super) fn finish_stage(
    config: &CordonConfig,
    id: &str,
    mode: StageMode,
    exit: i32,
) -> StagedOutcome {
    let mut outcome = StagedOutcome::default();
    let Some(dir) = config.journal_dir() else {
        return outcome;
    };
    let result = (|| -> std::io::Result<()> {
        let mut journal = Journal::open(&dir)?;
        for stage in journal.stages(Some(id))? {
            outcome.paths += stage.staged()?.len();
        }
        if mode == StageMode::Auto && exit == 0 && outcome.paths > 0 {
            let (report, _) = apply_guarded(&mut journal, id, false, &config.journal_options())?;
            outcome.applied = true;
            outcome.journaled = report.journaled.changes.len();
            for (root, applied) in report.applied {
                outcome.conflicts.extend(
                    applied
                        .conflicts
                        .into_iter()
                        .map(|c| format!("{}: {}", root.join(&c.path).display(), c.reason)),
                );
            }
        }
        Ok(())
    })();
    if let Err(err) = result {
        tracing::error!("session {id}: its stage is kept: {err}");
        outcome.error = Some(err.to_string());
    }
    outcome
}

/// The journal of a skill session: each path kept before the skill first writes it.
#[derive(Debug)]
pub(super) struct SkillJournal {
    journal: std::sync::Mutex<Journal>,
    options: Options,
    id: String,
    /// The writable directories, canonical.
    roots: Vec<PathBuf>,
    _mark: SessionMark,
}

/// Opens the journal of a skill session writing in `roots`; `None` when journaling is off
/// or nothing is writable (the skill's writes are then refused by any policy asking for
/// `journal`).
///
/// # Errors
///
/// Why the journal cannot be opened: the skill must not run then.
pub(super) fn for_skill(
    config: &CordonConfig,
    id: &str,
    program: &str,
    roots: &[PathBuf],
) -> Result<Option<std::sync::Arc<SkillJournal>>, String> {
    let Some(dir) = config.journal_dir() else {
        return Ok(None);
    };
    if roots.is_empty() {
        return Ok(None);
    }
    let fail = |e: std::io::Error| format!("cannot journal the skill's writes: {e}");
    let mut journal = Journal::open(&dir).map_err(fail)?;
    let mark = journal.mark_running(id).map_err(fail)?;
    journal.open_session(id, program, roots).map_err(fail)?;
    Ok(Some(std::sync::Arc::new(SkillJournal {
        journal: std::sync::Mutex::new(journal),
        options: config.journal_options(),
        id: id.to_owned(),
        roots: roots.to_vec(),
        _mark: mark,
    })))
}

impl crate::WriteJournal for SkillJournal {
    fn before_write(&self, path: &std::path::Path) -> Result<(), String> {
        let root = self
            .roots
            .iter()
            .filter(|r| path.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
            .ok_or_else(|| format!("`{}` is in no writable directory", path.display()))?;
        let rel = path
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| format!("`{}` is not a path the journal can name", path.display()))?;
        if rel.is_empty() {
            // The directory itself: it is never replaced, only what is in it.
            return Ok(());
        }
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| "the journal's state was lost".to_owned())?;
        journal
            .touch(&self.id, root, rel, &self.options)
            .map_err(|e| e.to_string())
    }
}

impl SkillJournal {
    /// Records what became of every path the skill wrote; the session is ended in the
    /// journal.
    ///
    /// # Errors
    ///
    /// Why the changes could not be recorded (the next launch records them).
    pub(super) fn end(&self) -> Result<Checkpoint, String> {
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| "the journal's state was lost".to_owned())?;
        journal
            .checkpoint(&self.id, "end", true, &self.options)
            .map_err(|e| format!("cannot journal what the skill changed: {e}"))
    }
}

/// Applies `session`'s stages as `cordon journal apply` does: the trees are guarded as a
/// program's run is (a protected path changed, or a repository that appeared with
/// something that runs in it, is moved aside before the result is journaled), and every
/// path the tree did not have is vetted first. Returns what was applied, and what the guard
/// found.
///
/// # Errors
///
/// When the stages cannot be read or applied, or the trees not searched.
pub fn apply_guarded(
    journal: &mut Journal,
    session: &str,
    force: bool,
    options: &Options,
) -> std::io::Result<(
    cordon_journal::ApplyReport,
    Vec<cordon_sandbox::guard::Finding>,
)> {
    let stages = journal.stages(Some(session))?;
    let roots: Vec<PathBuf> = stages.iter().map(|s| s.root.clone()).collect();
    let guarded: Vec<cordon_sandbox::guard::Guarded> = stages
        .iter()
        .flat_map(|s| {
            s.skip.iter().map(|rel| cordon_sandbox::guard::Guarded {
                root: s.root.clone(),
                path: s.root.join(rel),
            })
        })
        .collect();
    let guard =
        cordon_sandbox::guard::Guard::for_trees(&roots, &guarded).map_err(std::io::Error::other)?;
    let mut findings = Vec::new();
    let report = journal.apply_stages(
        session,
        force,
        options,
        &cordon_sandbox::guard::vet_staged,
        &mut || findings = super::protect::check_protected(&guard, None),
    )?;
    Ok((report, findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn config_in(dir: &std::path::Path) -> CordonConfig {
        let mut config = CordonConfig::default();
        config.journal.path = Some(dir.join("journal"));
        config
    }

    /// A tree of one file, and the journal's opening for it.
    fn opening_for_a_tree() -> (tempfile::TempDir, PathBuf, CordonConfig, Opening) {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("work");
        fs_err::create_dir_all(&tree).unwrap();
        fs_err::write(tree.join("a.txt"), "a").unwrap();
        let config = config_in(dir.path());
        let opening = Opening::start(config.clone(), ID.into()).unwrap();
        (dir, tree, config, opening)
    }

    #[test]
    fn an_opening_takes_the_trees_it_is_given() {
        let (_dir, tree, config, opening) = opening_for_a_tree();
        let begun = opening
            .take("prog".into(), vec![tree.clone()], Vec::new())
            .join()
            .unwrap();
        let (journaling, taken) = begun.expect("journaling is on");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].summary.files, 1);
        let journal = Journal::open(&config.journal_dir().unwrap()).unwrap();
        assert!(journal.is_running(ID), "the session is marked as running");
        let record = journal
            .session(ID)
            .unwrap()
            .expect("the session is recorded");
        assert_eq!(record.roots, vec![tree]);
        journaling.end().unwrap();
        assert!(!journal.is_running(ID), "the mark ends with the session");
    }

    #[test]
    fn an_opening_given_up_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let Opening { trees, thread } = Opening::start(config.clone(), ID.into()).unwrap();
        // The launch ends before its trees are known (refused by the policy, say).
        drop(trees);
        assert!(thread.join().unwrap().unwrap().is_none());
        let journal = Journal::open(&config.journal_dir().unwrap()).unwrap();
        assert!(!journal.is_running(ID));
        assert!(journal.session(ID).unwrap().is_none());
        let marks = config.journal_dir().unwrap().join("running");
        assert!(!marks.join(format!("{ID}.lock")).exists());
    }

    #[test]
    fn trees_taken_for_a_launch_that_then_fails_are_forgotten() {
        let (_dir, tree, config, opening) = opening_for_a_tree();
        let taking = opening.take("prog".into(), vec![tree.clone()], Vec::new());
        // The decision cannot be made durable, say: the program never runs.
        drop(taking);
        let journal = Journal::open(&config.journal_dir().unwrap()).unwrap();
        assert!(
            journal.session(ID).unwrap().is_none(),
            "a session that never ran stays in the journal, to be recovered with others' changes"
        );
        assert!(!journal.is_running(ID));
        fs_err::write(tree.join("a.txt"), "the person's edit").unwrap();
        let mut journal = journal;
        assert!(journal
            .recover(&config.journal_options())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn an_opening_with_journaling_off_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        config.journal.enabled = Some(false);
        let opening = Opening::start(config, ID.into()).unwrap();
        let begun = opening
            .take("prog".into(), vec![dir.path().to_path_buf()], Vec::new())
            .join()
            .unwrap();
        assert!(begun.is_none());
        assert!(!dir.path().join("journal").exists());
    }
}
