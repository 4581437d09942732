//! What a session protects on the host while its program runs: cordon's own paths, and the
//! after-run check of protected paths ([`cordon_sandbox::guard`]), saved to disk until done so
//! that a cordon killed mid-run has its check done by the next launch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cordon_sandbox::guard::{Action, Change, Finding, Guard};

use crate::{real_path, CordonConfig, Supervisor};

/// cordon's own policy, configuration and state, whether or not they exist yet: an agent
/// that could write them would set the next run's policy.
pub(super) fn own_paths(config: &CordonConfig, supervisor: &Supervisor) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(path) = &config.policy.path {
        paths.push(real_path(&crate::expand_home(path)));
    }
    if let Some(path) = supervisor.audit_path().and_then(Path::parent) {
        paths.push(path.to_path_buf());
    }
    // The journal: a program that could write it could rewrite what an undo puts back.
    if let Some(path) = config
        .journal
        .path
        .as_ref()
        .and_then(|_| config.journal_dir())
    {
        paths.push(real_path(&path));
    }
    for dir in [
        dirs::config_dir(),
        dirs::data_dir(),
        dirs::cache_dir(),
        dirs::state_dir(),
    ]
    .into_iter()
    .flatten()
    {
        paths.push(real_path(&dir).join("cordon"));
    }
    // The person's remembered answers, wherever configured: a program that could write
    // them would answer the next sessions' questions.
    paths.extend(own_files(config));
    // The sessions' runtime directories: a program that could write there could put its
    // own socket in place of a session's, or make `cordon ps` remove what it should not.
    match super::control::sessions_dir() {
        Ok(dir) => paths.push(real_path(&dir)),
        Err(why) => tracing::debug!("no sessions directory to protect: {why}"),
    }
    paths.sort();
    paths.dedup();
    paths
}

/// cordon's own files outside its own directories: the remembered answers, when the
/// configuration puts them elsewhere.
pub(super) fn own_files(config: &CordonConfig) -> Vec<PathBuf> {
    config
        .consent
        .remembered
        .as_ref()
        .and_then(|_| config.remembered_path())
        .and_then(|path| Some(real_path(path.parent()?).join(path.file_name()?)))
        .into_iter()
        .collect()
}

/// Creates those of cordon's own directories (and files, `files`) that do not exist yet
/// but lie in a writable grant, so that the view can hold them read-only instead of letting
/// the agent create them.
pub(super) fn create_own_dirs(
    own: &[PathBuf],
    files: &[PathBuf],
    writable: &[PathBuf],
) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    for path in own {
        if fs_err::symlink_metadata(path).is_ok()
            || !writable.iter().any(|root| path.starts_with(root))
        {
            continue;
        }
        if files.contains(path) {
            // An empty document: what the remembered answers' file holds when nothing is.
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .and_then(|mut file| std::io::Write::write_all(&mut file, b"{}\n"));
            created
                .map_err(|e| format!("cannot create cordon's file `{}`: {e}", path.display()))?;
            continue;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| format!("cannot create cordon's directory `{}`: {e}", path.display()))?;
    }
    Ok(())
}

/// How often a running cordon renews its saved check (see [`recover_pending`]).
const PENDING_HEARTBEAT_SECS: u64 = 5;

/// Where checks of protected paths wait until done: cordon's state directory.
fn pending_dir() -> Option<PathBuf> {
    dirs::state_dir()
        .or_else(dirs::data_dir)
        .map(|dir| dir.join("cordon").join("pending"))
}

/// A process's id and start time (`PID-TICKS`, from /proc/PID/stat), naming it uniquely over
/// the machine's uptime; empty when it does not exist.
pub(super) fn process_key(pid: &str) -> String {
    let Ok(stat) = fs_err::read_to_string(format!("/proc/{pid}/stat")) else {
        return String::new();
    };
    let id = stat
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    // Fields after the command name (which may hold spaces and parentheses): the start time
    // is the 22nd field, the 20th after the name.
    let start = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .unwrap_or_default();
    format!("{id}-{start}")
}

/// Whether the process `pid` has ended but not been reaped.
pub(super) fn is_zombie(pid: &str) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Runs the checks that earlier runs saved and did not live to run (cordon was killed while
/// its program ran): what such a program left on protected paths is moved aside now.
pub fn recover_pending() {
    if let Some(dir) = pending_dir() {
        recover_pending_in(&dir);
    }
}

/// [`recover_pending`] for the checks saved in `dir`.
fn recover_pending_in(dir: &Path) {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        // Only files cordon wrote are read: a pipe would hang every launch, a link lead
        // elsewhere.
        match entry.file_type() {
            Ok(kind) if kind.is_file() => {}
            Ok(kind) if kind.is_dir() => {
                tracing::warn!("`{}` is not a saved check; left as it is", path.display());
                continue;
            }
            _ => {
                tracing::warn!("`{}` is not a saved check; removed", path.display());
                let _ = fs_err::remove_file(&path);
                continue;
            }
        }
        // A cordon still running does its own check: the same process id started at the
        // same time (a process id alone may have been reused, or be a zombie's). A file is
        // named `PID-START_SESSION.json` (or `PID-START.json`, as it was before sessions).
        let running = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|stem| stem.split_once('_').map_or(stem, |(key, _)| key))
            .and_then(|key| Some((key, key.split_once('-')?.0)))
            .is_some_and(|(key, pid)| process_key(pid) == key && !is_zombie(pid));
        if running {
            continue;
        }
        // The run ended at the latest one heartbeat after the file's last renewal.
        let ended = fs_err::metadata(&path)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64 + PENDING_HEARTBEAT_SECS as i64 + 1);
        match Guard::load(&path) {
            Ok(guard) => {
                tracing::warn!(
                    "an earlier cordon session ended before checking its protected paths; checking them now"
                );
                check_protected(&guard, ended);
            }
            Err(err) => tracing::warn!("{err}; removed"),
        }
        let _ = fs_err::remove_file(&path);
    }
}

/// Compares the protected paths with their state at launch and reports each finding: what
/// the program created, changed or swapped for a link (and where it was moved), what changed
/// from outside (left), and what could not be moved.
pub(super) fn check_protected(guard: &Guard, ended: Option<i64>) -> Vec<Finding> {
    let findings = guard.check_until(ended);
    for finding in &findings {
        let path = finding.path.display();
        let what = match finding.change {
            Change::Created => "created",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Diverted => "replaced with a link or a file",
        };
        match (finding.action, &finding.moved_to, &finding.error) {
            (Action::Moved, Some(to), _) => tracing::warn!(
                "the protected path `{path}` was {what} during the run; moved to `{}`",
                to.display()
            ),
            (Action::Unresolved, _, error) => tracing::error!(
                "the protected path `{path}` was {what} during the run and could not be moved aside: {}",
                error.as_deref().unwrap_or("unknown error")
            ),
            (_, _, Some(error)) => tracing::warn!(
                "the protected path `{path}` was {what} during the run: {error}"
            ),
            _ if finding.change == Change::Created => tracing::info!(
                "`{path}` was created during the run; it holds nothing that runs, so it stays"
            ),
            _ => tracing::warn!(
                "the protected path `{path}` was {what} during the run, from outside the sandbox (it was read-only inside); left as it is"
            ),
        }
    }
    findings
}

/// The saved check of one running launch, renewed every few seconds until [`Pending::done`].
#[derive(Debug)]
pub(super) struct Pending {
    path: Option<PathBuf>,
    alive: Arc<AtomicBool>,
}

impl Pending {
    /// Saves `guard` under this process's key and the session's id, and starts renewing
    /// it.
    pub(super) fn save(guard: &Guard, session: &str) -> Self {
        Self::save_in(pending_dir(), guard, session)
    }

    /// [`Pending::save`] to `dir`. One process may run several sessions (the MCP gateway),
    /// each with its own check: each has a file of its own, which its end removes.
    fn save_in(dir: Option<PathBuf>, guard: &Guard, session: &str) -> Self {
        let alive = Arc::new(AtomicBool::new(true));
        let path = dir.map(|dir| dir.join(format!("{}_{session}.json", process_key("self"))));
        if let Some(path) = &path {
            let _ = fs_err::remove_file(path);
            match guard.save(path) {
                Ok(()) => {
                    let (path, alive) = (path.clone(), alive.clone());
                    std::thread::spawn(move || {
                        while alive.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_secs(PENDING_HEARTBEAT_SECS));
                            let touched = fs_err::OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .and_then(|f| f.file().set_modified(std::time::SystemTime::now()));
                            if touched.is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(err) => tracing::warn!(
                    "cannot save the check of protected paths to `{}`: {err}",
                    path.display()
                ),
            }
        }
        Self { path, alive }
    }

    /// Stops renewing; the check is about to be done.
    pub(super) fn stop(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }

    /// The check was done: the saved copy goes.
    pub(super) fn done(self) {
        self.stop();
        if let Some(path) = &self.path {
            let _ = fs_err::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_one_process_keep_their_own_checks() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::record_with_repositories(&[], &[]);
        let first = Pending::save_in(Some(dir.path().to_path_buf()), &guard, "aaaaaaaaaaaa");
        let second = Pending::save_in(Some(dir.path().to_path_buf()), &guard, "bbbbbbbbbbbb");
        let saved = || {
            let mut names: Vec<String> = fs_err::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let key = process_key("self");
        assert_eq!(
            saved(),
            [
                format!("{key}_aaaaaaaaaaaa.json"),
                format!("{key}_bbbbbbbbbbbb.json")
            ]
        );
        // One session's end leaves the other's check in place, for the next launch to do
        // should this process be killed.
        second.done();
        assert_eq!(saved(), [format!("{key}_aaaaaaaaaaaa.json")]);
        // A running process's checks are its own to do; a dead one's are done and removed.
        let dead = dir.path().join("999999999-1_cccccccccccc.json");
        guard.save(&dead).unwrap();
        let old = dir.path().join("999999998-1.json");
        guard.save(&old).unwrap();
        // Nor does anything but a file hang or mislead it: a pipe is removed unread.
        let pipe = dir.path().join("999999997-1_dddddddddddd.json");
        assert!(std::process::Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap()
            .success());
        recover_pending_in(dir.path());
        assert_eq!(saved(), [format!("{key}_aaaaaaaaaaaa.json")]);
        first.done();
        assert!(saved().is_empty());
    }
}
