//! Protected paths, checked after the run.
//!
//! Inside the sandbox each protected path that exists is a read-only mount, and each of its
//! ancestors inside the writable tree is a mount point, which the kernel refuses to rename
//! (`mv .git .git.orig` fails): the path cannot be changed or swapped. This module is the
//! second line: it records every protected path before the program runs, including those
//! that do not exist yet, and after the run compares. What was created, changed, or
//! swapped for a link (in the path or in any directory above it) is renamed aside so the
//! next program that reads it (git, the shell, cordon) does not act on it, and reported.
//!
//! The walk never follows a link: each name is opened on its own under the directory opened
//! before it (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and renames are made
//! relative to that directory. A link the program planted (`.git -> ~/.ssh`) is itself moved
//! aside; nothing it points to is touched.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use cordon_sys::process::{open_beneath, rename_in};
use serde::{Deserialize, Serialize};

/// A protected path and the writable tree it lies in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guarded {
    /// The writable root (a granted path; the walk starts there).
    pub root: PathBuf,
    /// The protected path, below `root`.
    pub path: PathBuf,
}

/// What an entry is, as far as a change would show: its identity, type, size and change
/// time, and for a directory the same of each entry in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
    entries: Vec<(OsString, u64, (i64, i64))>,
    /// The directory holding it (device, inode): the same at the end of the run means it was
    /// not carried away with a renamed parent.
    parent: (u64, u64),
}

impl Fingerprint {
    fn is_link(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// How a protected path was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum State {
    Absent,
    Present(Fingerprint),
    /// A directory above the path is a link or not a directory: the path leads elsewhere.
    Diverted {
        at: PathBuf,
        what: Fingerprint,
    },
}

/// What became of a protected path during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// It did not exist at launch and does now.
    Created,
    /// It existed and is now another file, or the same with other contents or metadata.
    Changed,
    /// It existed and is gone.
    Removed,
    /// A directory above it became a link or a file.
    Diverted,
}

/// What was done about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Moved aside (`moved_to`).
    Moved,
    /// Left where it is: it could not have come from the program (a read-only mount at
    /// launch, changed from outside the sandbox), or it was created but holds nothing that
    /// acts (a `.git/config` without commands, sample hooks).
    Left,
    /// It had to be moved and could not be: the person must look (`error` says why).
    Unresolved,
}

/// One protected path that did not survive the run as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The protected path.
    pub path: PathBuf,
    /// What happened.
    pub change: Change,
    /// What was done.
    pub action: Action,
    /// Where what the program left was moved, if it was.
    pub moved_to: Option<PathBuf>,
    /// Why it could not be inspected or moved, or why it was left.
    pub error: Option<String>,
}

/// A writable root, opened once before the run: the walk after it starts from this
/// descriptor, wherever the directory is by then, never from its path again.
#[derive(Debug)]
struct Root {
    path: PathBuf,
    fd: Result<OwnedFd, String>,
}

/// What [`Guard::save`] writes: enough to run the check later, should cordon not live to
/// the end of the run.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    entries: Vec<(Guarded, Result<State, String>)>,
    repos: Vec<PathBuf>,
}

/// The protected paths as they were before the run.
#[derive(Debug, Default)]
pub struct Guard {
    roots: Vec<Root>,
    /// The `.git` entries of the writable trees at launch.
    repos: Vec<PathBuf>,
    /// Each path, the index of its root, and its state at launch.
    entries: Vec<(Guarded, usize, Result<State, String>)>,
}

/// The most entries of a directory compared; a larger protected directory is compared by its
/// own identity and times only.
const MAX_ENTRIES: usize = 10_000;

fn fingerprint(fd: &OwnedFd, parent: &OwnedFd) -> std::io::Result<Fingerprint> {
    let parent = std::fs::File::from(parent.try_clone()?).metadata()?;
    let file = std::fs::File::from(fd.try_clone()?);
    let meta = file.metadata()?;
    let mut entries = Vec::new();
    if meta.is_dir() {
        // The descriptor is this process's own: its /proc link names exactly that directory.
        let listing = fs_err::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        for entry in listing.take(MAX_ENTRIES + 1) {
            let entry = entry?;
            let meta = entry.metadata()?;
            entries.push((
                entry.file_name(),
                meta.ino(),
                (meta.ctime(), meta.ctime_nsec()),
            ));
        }
        if entries.len() > MAX_ENTRIES {
            entries.clear();
        }
        entries.sort();
    }
    Ok(Fingerprint {
        dev: meta.dev(),
        ino: meta.ino(),
        mode: meta.mode(),
        size: meta.size(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        entries,
        parent: (parent.dev(), parent.ino()),
    })
}

/// Where a walk ended.
enum Lookup {
    /// The path, and the directory holding it.
    Found {
        parent: OwnedFd,
        name: OsString,
        fd: OwnedFd,
    },
    Absent,
    /// `name` in `parent` is a link or a file where a directory was expected.
    Diverted {
        parent: OwnedFd,
        name: OsString,
        at: PathBuf,
    },
}

fn names(guarded: &Guarded) -> Result<Vec<&OsStr>, String> {
    let relative = guarded.path.strip_prefix(&guarded.root).map_err(|_| {
        format!(
            "`{}` is not below `{}`",
            guarded.path.display(),
            guarded.root.display()
        )
    })?;
    let names: Vec<&OsStr> = relative
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(format!("`{}` is not a plain path", guarded.path.display())),
        })
        .collect::<Result<_, _>>()?;
    if names.is_empty() {
        return Err(format!("`{}` is its writable root", guarded.path.display()));
    }
    Ok(names)
}

fn lookup(root: &Root, guarded: &Guarded) -> Result<Lookup, String> {
    let names = names(guarded)?;
    let root = root.fd.as_ref().map_err(Clone::clone)?;
    // The directory reached so far; the root itself is only borrowed (most guarded paths are
    // absent, found so at their first name) and copied when a result keeps it.
    let mut dir: Option<OwnedFd> = None;
    let keep = |dir: Option<OwnedFd>| match dir {
        Some(dir) => Ok(dir),
        None => root.try_clone().map_err(|e| e.to_string()),
    };
    let mut at = guarded.root.clone();
    for (i, name) in names.iter().enumerate() {
        at.push(name);
        let last = i + 1 == names.len();
        let flags = if last {
            libc::O_PATH
        } else {
            libc::O_PATH | libc::O_DIRECTORY
        };
        let opened = open_beneath(dir.as_ref().map_or(root.as_fd(), AsFd::as_fd), name, flags);
        match opened {
            Ok(fd) if last => {
                return Ok(Lookup::Found {
                    parent: keep(dir)?,
                    name: name.to_os_string(),
                    fd,
                })
            }
            Ok(fd) => dir = Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Lookup::Absent),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Ok(Lookup::Diverted {
                    parent: keep(dir)?,
                    name: name.to_os_string(),
                    at,
                })
            }
            Err(e) => return Err(format!("cannot open `{}`: {e}", at.display())),
        }
    }
    Ok(Lookup::Absent)
}

fn state(root: &Root, guarded: &Guarded) -> Result<State, String> {
    let fingerprint_of = |fd: &OwnedFd, parent: &OwnedFd, path: &Path| {
        fingerprint(fd, parent).map_err(|e| format!("cannot inspect `{}`: {e}", path.display()))
    };
    Ok(match lookup(root, guarded)? {
        Lookup::Absent => State::Absent,
        Lookup::Found { fd, parent, .. } => {
            State::Present(fingerprint_of(&fd, &parent, &guarded.path)?)
        }
        Lookup::Diverted { parent, name, at } => {
            let fd = open_beneath(parent.as_fd(), &name, libc::O_PATH)
                .map_err(|e| format!("cannot open `{}`: {e}", at.display()))?;
            State::Diverted {
                what: fingerprint_of(&fd, &parent, &at)?,
                at,
            }
        }
    })
}

/// Whether a remote URL reaches a remote by a transport git carries itself (`https`, `http`,
/// `ssh`, `git`, `file`, `host:path`, a path): `NAME::ADDRESS` runs a `git-remote-NAME`
/// program looked up on the person's `PATH`, and `ext::` a command.
fn plain_remote_url(url: &str) -> bool {
    if url.contains("::") || url.starts_with("ext:") || url.starts_with("fd:") {
        return false;
    }
    match url.split_once("://") {
        Some((scheme, _)) => {
            ["https", "http", "ssh", "git", "file"].contains(&scheme.to_ascii_lowercase().as_str())
        }
        None => true,
    }
}

/// Whether a key set in a configuration made during the run (with its value) may stay.
fn allowed_git_entry(key: &str, value: &str) -> bool {
    let (Some((section, _)), Some((_, variable))) = (key.split_once('.'), key.rsplit_once('.'))
    else {
        return false;
    };
    match (section, variable) {
        ("remote", "url" | "pushurl") | ("submodule", "url") => plain_remote_url(value),
        _ => allowed_git_key(key),
    }
}

/// The git configuration keys a repository made during the run may set and still stay: what
/// `git init` and `git clone` write. Anything else (a command, a pager, a filter, an include,
/// an alias, a protocol permission) and the configuration is moved aside.
fn allowed_git_key(key: &str) -> bool {
    const PLAIN: [&str; 12] = [
        "core.repositoryformatversion",
        "core.filemode",
        "core.bare",
        "core.logallrefupdates",
        "core.ignorecase",
        "core.precomposeunicode",
        "core.symlinks",
        "user.name",
        "user.email",
        "init.defaultbranch",
        "extensions.objectformat",
        "extensions.refstorage",
    ];
    if PLAIN.contains(&key) {
        return true;
    }
    // `remote.NAME.url`, `remote.NAME.fetch`, `branch.NAME.remote`, `branch.NAME.merge`
    // (NAME may hold dots). `ext::` URLs stay inert: `protocol.ext.allow` is not allowed.
    let (Some((section, _)), Some((_, variable))) = (key.split_once('.'), key.rsplit_once('.'))
    else {
        return false;
    };
    matches!(
        (section, variable),
        ("remote", "fetch" | "tagopt")
            | ("branch", "remote" | "merge" | "rebase")
            | ("submodule", "active" | "path")
            | ("pull", "rebase" | "ff")
    )
}

/// Whether the git configuration file at `path` sets only [`allowed_git_key`]s, as git itself
/// reads it (`git config --list --no-includes`, with no other configuration): a file git
/// cannot read, or no git, is not harmless.
fn benign_git_config(path: &Path) -> bool {
    // A regular file of reasonable size only (a FIFO would block the open).
    if !fs_err::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() <= 1 << 20) {
        return false;
    }
    match fs_err::File::open(path) {
        Ok(file) => benign_git_config_in(file.into_parts().0.into()),
        Err(_) => false,
    }
}

/// As [`benign_git_config`], for an open file (git reads it as its standard input).
fn benign_git_config_in(file: OwnedFd) -> bool {
    let out = std::process::Command::new("git")
        .args([
            "config",
            "--no-includes",
            "--null",
            "--list",
            "--file",
            "/proc/self/fd/0",
        ])
        .stdin(std::process::Stdio::from(file))
        .env_clear()
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        return false;
    };
    out.status.success()
        && out
            .stdout
            .split(|b| *b == 0)
            .filter(|entry| !entry.is_empty())
            .all(|entry| {
                let mut parts = entry.splitn(2, |b| *b == b'\n');
                let key = parts.next().unwrap_or_default();
                let value = parts.next().unwrap_or_default();
                match (std::str::from_utf8(key), std::str::from_utf8(value)) {
                    (Ok(key), Ok(value)) => allowed_git_entry(&key.to_ascii_lowercase(), value),
                    _ => false,
                }
            })
}

/// Whether a hooks directory holds only git's samples.
fn only_sample_hooks(dir: &Path) -> bool {
    fs_err::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).all(|e| {
            e.file_name().to_string_lossy().ends_with(".sample")
                && e.file_type().is_ok_and(|t| t.is_file())
        })
    })
}

/// Whether what the program created at `guarded` holds nothing that acts: a git config
/// without command keys, includes or shell aliases; a hooks directory of samples only.
fn benign_creation(guarded: &Guarded, fd: &OwnedFd) -> bool {
    let name = guarded.path.file_name().and_then(OsStr::to_str);
    let parent = guarded
        .path
        .parent()
        .and_then(Path::file_name)
        .and_then(OsStr::to_str);
    if parent != Some(".git") {
        return false;
    }
    let Ok(meta) = fd
        .try_clone()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
    else {
        return false;
    };
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match name {
        Some("config") if meta.is_file() && meta.len() <= 1 << 20 => {
            fs_err::File::open(&path).is_ok_and(|f| benign_git_config_in(f.into_parts().0.into()))
        }
        Some("hooks") if meta.is_dir() => only_sample_hooks(Path::new(&path)),
        _ => false,
    }
}

/// Whether `dir` is a directory git would take for a repository of its own (a bare one, or a
/// `.git`), as git tests it: a `HEAD` (a file, or a link), and either `objects` and `refs`
/// (links followed) or a `commondir` naming where they are.
pub fn is_git_directory(dir: &Path) -> bool {
    let head = fs_err::symlink_metadata(dir.join("HEAD"))
        .is_ok_and(|m| m.is_file() || m.file_type().is_symlink());
    let own = fs_err::metadata(dir.join("objects")).is_ok_and(|m| m.is_dir())
        && fs_err::metadata(dir.join("refs")).is_ok_and(|m| m.is_dir());
    let common = fs_err::symlink_metadata(dir.join("commondir")).is_ok();
    head && (own || common)
}

/// `.git` entries and other git directories below `root`, `root` included (not following
/// links, not entering `.git` directories); an error when the tree is too large, or holds a
/// directory that cannot be listed, to look at all of it.
fn repositories_below(root: &Path) -> Result<Vec<PathBuf>, String> {
    repositories_below_at_most(root, crate::tree::MAX_ENTRIES)
}

fn repositories_below_at_most(root: &Path, most: usize) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    if is_git_directory(root) {
        found.push(root.to_path_buf());
    }
    let visit = |entry: &fs_err::DirEntry, kind: std::fs::FileType| {
        if entry.file_name() == ".git" {
            found.push(entry.path());
            return false;
        }
        if kind.is_dir() && is_git_directory(&entry.path()) {
            found.push(entry.path());
        }
        true
    };
    crate::tree::walk(root, most, false, visit).map_err(|e| match e {
        crate::tree::WalkError::TooMany(most) => format!(
            "`{}` holds more than {most} entries: repositories made in it during the run could not all be looked for",
            root.display()
        ),
        crate::tree::WalkError::Unreadable(dir) => format!(
            "cannot look inside `{}` (permission denied): a repository made in it during the run could not be looked for",
            dir.display()
        ),
    })?;
    Ok(found)
}

/// Whether what a staged program made at `path` (in its stage) may be applied to a tree: not
/// a `.git` file (a pointer git follows elsewhere), not a repository (a `.git` directory, or
/// a directory git takes for one) whose configuration or hooks could run commands, which
/// live sessions move aside too.
///
/// # Errors
///
/// Why it is not applied.
pub fn vet_staged(path: &Path) -> Result<(), String> {
    let meta = fs_err::symlink_metadata(path).map_err(|e| e.to_string())?;
    let named_git = path.file_name().is_some_and(|n| n == ".git");
    if named_git && !meta.is_dir() {
        return Err("a `.git` that is no directory (a pointer git would follow to another repository): not applied".into());
    }
    if meta.is_dir() && (named_git || is_git_directory(path)) && !benign_repository(path) {
        return Err("a repository the program made, whose configuration or hooks could run commands when git runs there: not applied".into());
    }
    Ok(())
}

/// Whether a repository the program made is a plain one whose configuration runs nothing
/// (what `git init` or `git clone` leaves): it stays.
fn benign_repository(git: &Path) -> bool {
    let Ok(meta) = fs_err::symlink_metadata(git) else {
        return false;
    };
    // Each part looked at as it is, links not followed: a link to where nothing is yet
    // would pass as "none" and be filled in later.
    let absent = |name: &str| fs_err::symlink_metadata(git.join(name)).is_err();
    // A hooks link leads elsewhere, where anything may appear later.
    let hooks = match fs_err::symlink_metadata(git.join("hooks")) {
        Err(_) => true,
        Ok(m) => m.is_dir() && only_sample_hooks(&git.join("hooks")),
    };
    meta.is_dir() && benign_git_config(&git.join("config")) && hooks && absent("commondir")
}

impl Guard {
    /// Opens each writable root and records the state of each of `guarded` (call before
    /// the program runs).
    pub fn record(guarded: &[Guarded]) -> Guard {
        Self::record_with_repositories(guarded, &[])
    }

    /// As [`Guard::record`], knowing the `.git` entries of the writable trees at launch: after
    /// the run, a new one that could run something (a `gitdir:` file, a configuration with
    /// commands, hooks) is moved aside too, since a top-level `git status` enters it.
    pub fn record_with_repositories(guarded: &[Guarded], repos: &[PathBuf]) -> Guard {
        let mut guard = Guard {
            repos: repos.to_vec(),
            ..Guard::default()
        };
        for g in guarded {
            let index = guard.root_index(&g.root);
            let state = state(&guard.roots[index], g);
            guard.entries.push((g.clone(), index, state));
        }
        guard
    }

    /// A guard over `roots` as they are now (protected paths `guarded`, and every repository
    /// found in them): what then writes into them (a stage being applied) is checked as a
    /// program's run is.
    ///
    /// # Errors
    ///
    /// When a root is too large to search for repositories.
    pub fn for_trees(roots: &[PathBuf], guarded: &[Guarded]) -> Result<Guard, String> {
        let mut repos = Vec::new();
        for root in roots {
            repos.extend(repositories_below(root)?);
        }
        let mut guard = Self::record_with_repositories(guarded, &repos);
        for root in roots {
            guard.root_index(root);
        }
        Ok(guard)
    }

    /// Writes what the check needs to `path` (created `0600`), so that a later cordon can run
    /// it if this one is killed before the program's end ([`Guard::load`]).
    ///
    /// # Errors
    ///
    /// The file system's.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let saved = Saved {
            entries: self
                .entries
                .iter()
                .map(|(g, _, state)| (g.clone(), state.clone()))
                .collect(),
            repos: self.repos.clone(),
        };
        let json = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        // Not synced: it is for a cordon killed during the run, not a machine that crashed.
        file.write_all(&json)
    }

    /// Reads what [`Guard::save`] wrote; the writable roots are opened again (the program
    /// that ran in them has ended).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a saved guard.
    pub fn load(path: &Path) -> Result<Guard, String> {
        let bytes = fs_err::read(path).map_err(|e| e.to_string())?;
        let saved: Saved = serde_json::from_slice(&bytes)
            .map_err(|e| format!("`{}` is not a saved check: {e}", path.display()))?;
        let mut guard = Guard {
            repos: saved.repos,
            ..Guard::default()
        };
        for (g, state) in saved.entries {
            let index = guard.root_index(&g.root);
            guard.entries.push((g, index, state));
        }
        Ok(guard)
    }

    fn root_index(&mut self, root: &Path) -> usize {
        if let Some(index) = self.roots.iter().position(|r| r.path == root) {
            return index;
        }
        let fd = cordon_sys::process::open_no_symlinks(root, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| format!("cannot open `{}`: {e}", root.display()));
        self.roots.push(Root {
            path: root.to_path_buf(),
            fd,
        });
        self.roots.len() - 1
    }

    /// Compares each protected path with its state at launch. What the program created,
    /// or what now diverts the path, is moved aside (unless it holds nothing that acts); a
    /// path that was a read-only mount at launch cannot have been changed from inside, so a
    /// change there is reported and left. Returns what was found; findings whose action is
    /// [`Action::Unresolved`] need the person.
    pub fn check(&self) -> Vec<Finding> {
        self.check_until(None)
    }

    /// As [`Guard::check`], for a run that ended at the latest at `ended` (seconds since the
    /// epoch; a check saved by a cordon that was killed): what changed after it is the
    /// person's own doing, reported and left.
    pub fn check_until(&self, ended: Option<i64>) -> Vec<Finding> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let mut findings: Vec<Finding> = Vec::new();
        for (guarded, index, before) in &self.entries {
            let root = &self.roots[*index];
            let Ok(before) = before else {
                continue;
            };
            let now = state(root, guarded);
            if now.as_ref() == Ok(before) {
                continue;
            }
            let change = match (before, &now) {
                (_, Ok(State::Diverted { .. })) => Change::Diverted,
                (State::Absent, _) => Change::Created,
                (_, Ok(State::Absent)) => Change::Removed,
                _ => Change::Changed,
            };
            // A path that existed (not a link) was a read-only mount through the run, in a
            // directory pinned as a mount point: if that directory is still the same, the
            // change came from outside the sandbox (the person's editor, git), not from it.
            let was_bound = match (before, &now) {
                (State::Present(b), Ok(State::Present(n))) => !b.is_link() && b.parent == n.parent,
                (State::Present(b), Err(_)) => !b.is_link(),
                _ => false,
            };
            let mut finding = Finding {
                path: match &now {
                    Ok(State::Diverted { at, .. }) => at.clone(),
                    _ => guarded.path.clone(),
                },
                change,
                action: Action::Left,
                moved_to: None,
                error: now.as_ref().err().cloned(),
            };
            if change == Change::Removed || (change == Change::Changed && was_bound) {
                findings.push(finding);
                continue;
            }
            let changed_at = match &now {
                Ok(State::Present(f)) => Some(f.ctime.0),
                Ok(State::Diverted { what, .. }) => Some(what.ctime.0),
                _ => None,
            };
            if let (Some(ended), Some(at)) = (ended, changed_at) {
                if at > ended {
                    finding.error = Some("changed after the run had ended; left".into());
                    findings.push(finding);
                    continue;
                }
            }
            let target = match lookup(root, guarded) {
                Ok(Lookup::Found { parent, name, fd }) => {
                    if change == Change::Created && now.is_ok() && benign_creation(guarded, &fd) {
                        findings.push(finding);
                        continue;
                    }
                    Some((parent, name, guarded.path.clone()))
                }
                Ok(Lookup::Diverted { parent, name, at }) => {
                    if findings
                        .iter()
                        .any(|f| f.action == Action::Moved && f.path == at)
                    {
                        continue;
                    }
                    Some((parent, name, at))
                }
                Ok(Lookup::Absent) => None,
                Err(e) => {
                    finding.error = Some(e);
                    None
                }
            };
            match target.map(|(parent, name, at)| move_aside(&parent, &name, &at, &stamp)) {
                Some(Ok(to)) => {
                    finding.action = Action::Moved;
                    finding.moved_to = Some(to);
                }
                Some(Err(e)) => {
                    finding.action = Action::Unresolved;
                    finding.error = Some(e);
                }
                None if finding.error.is_some() => finding.action = Action::Unresolved,
                None => {}
            }
            findings.push(finding);
        }
        findings.extend(self.new_repositories(&stamp));
        findings
    }

    /// Repositories (or `gitdir:` files) that appeared in the writable trees during the run.
    fn new_repositories(&self, stamp: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        for root in &self.roots {
            let found = match repositories_below(&root.path) {
                Ok(found) => found,
                Err(e) => {
                    findings.push(Finding {
                        path: root.path.clone(),
                        change: Change::Changed,
                        action: Action::Unresolved,
                        moved_to: None,
                        error: Some(e),
                    });
                    continue;
                }
            };
            for git in found {
                if self.repos.contains(&git) || benign_repository(&git) {
                    continue;
                }
                // A directory named otherwise than `.git` may hold the person's files (`src`
                // turned into a bare repository): only what makes it a repository that runs
                // something is moved, its `HEAD` and `config`.
                let parts: Vec<PathBuf> = if git.file_name() == Some(OsStr::new(".git"))
                    || fs_err::symlink_metadata(&git).is_ok_and(|m| !m.is_dir())
                {
                    vec![git.clone()]
                } else {
                    vec![git.join("HEAD"), git.join("config"), git.join("commondir")]
                };
                for part in parts {
                    findings.extend(self.move_new(root, &part, stamp));
                }
            }
        }
        findings
    }

    /// Moves aside `path`, made during the run below `root`.
    fn move_new(&self, root: &Root, path: &Path, stamp: &str) -> Option<Finding> {
        let git = path.to_path_buf();
        let guarded = Guarded {
            root: root.path.clone(),
            path: git.clone(),
        };
        let mut finding = Finding {
            path: git.clone(),
            change: Change::Created,
            action: Action::Unresolved,
            moved_to: None,
            error: None,
        };
        match lookup(root, &guarded) {
            Ok(Lookup::Found { parent, name, .. }) => {
                match move_aside(&parent, &name, &git, stamp) {
                    Ok(to) => {
                        finding.action = Action::Moved;
                        finding.moved_to = Some(to);
                    }
                    Err(e) => finding.error = Some(e),
                }
            }
            Ok(Lookup::Absent) => return None,
            Ok(Lookup::Diverted { at, .. }) => {
                finding.error = Some(format!(
                    "`{}` leads elsewhere (a link or a file): look at it",
                    at.display()
                ))
            }
            Err(e) => finding.error = Some(e),
        }
        Some(finding)
    }
}

/// A few random bytes as hex, so that the program cannot create the name a file will be
/// moved to ahead of time.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    let read = fs_err::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        bytes[..4].copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn move_aside(parent: &OwnedFd, name: &OsStr, path: &Path, stamp: &str) -> Result<PathBuf, String> {
    let mut last = None;
    for _ in 0..8 {
        let mut aside = name.to_os_string();
        aside.push(format!(".cordon-quarantine-{stamp}-{}", random_suffix()));
        match rename_in(parent.as_fd(), name, &aside) {
            Ok(()) => return Ok(path.with_file_name(&aside)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = Some(e),
            Err(e) => return Err(format!("cannot move `{}` aside: {e}", path.display())),
        }
    }
    Err(format!(
        "cannot move `{}` aside: {}",
        path.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(root: &Path, relative: &str) -> Guarded {
        Guarded {
            root: root.to_path_buf(),
            path: root.join(relative),
        }
    }

    #[test]
    fn untouched_paths_raise_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join(".git/hooks")).unwrap();
        fs_err::write(root.join(".git/config"), "[core]").unwrap();
        let all = [
            guarded(root, ".git/config"),
            guarded(root, ".git/hooks"),
            guarded(root, ".git/commondir"),
        ];
        let guard = Guard::record(&all);
        assert_eq!(guard.check(), Vec::new());
    }

    #[test]
    fn created_changed_and_swapped_paths_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join(".git/hooks")).unwrap();
        fs_err::write(root.join(".git/config"), "[core]").unwrap();
        let all = [
            guarded(root, ".git/config"),
            guarded(root, ".git/commondir"),
        ];
        let guard = Guard::record_with_repositories(&all, &[root.join(".git")]);
        // The parent renamed and a copy put in its place, with a new config.
        fs_err::rename(root.join(".git"), root.join(".git.orig")).unwrap();
        fs_err::create_dir_all(root.join(".git")).unwrap();
        fs_err::write(root.join(".git/config"), "[core]\n\tfsmonitor = evil").unwrap();
        fs_err::write(root.join(".git/commondir"), "../.evil").unwrap();
        let findings = guard.check();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[0].change, Change::Changed);
        assert_eq!(findings[1].change, Change::Created);
        assert!(!root.join(".git/config").exists());
        assert!(!root.join(".git/commondir").exists());
        assert!(findings.iter().all(|f| f
            .moved_to
            .as_ref()
            .is_some_and(|to| to.exists() && to.parent() == Some(&root.join(".git")))));
    }

    #[test]
    fn a_planted_link_is_moved_and_what_it_points_to_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proj");
        let outside = dir.path().join("ssh");
        fs_err::create_dir_all(&root).unwrap();
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::write(outside.join("config"), "Host *").unwrap();
        let guard = Guard::record(&[guarded(&root, ".git/config")]);
        std::os::unix::fs::symlink(&outside, root.join(".git")).unwrap();
        let findings = guard.check();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].change, Change::Diverted);
        assert_eq!(findings[0].path, root.join(".git"));
        assert!(
            outside.join("config").exists(),
            "the link's target was touched"
        );
        assert!(fs_err::symlink_metadata(root.join(".git")).is_err());
        let moved = findings[0].moved_to.as_ref().unwrap();
        assert!(fs_err::symlink_metadata(moved)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_repository_made_during_the_run_is_moved_unless_it_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("src")).unwrap();
        let guard = Guard::record_with_repositories(&[guarded(root, ".git/config")], &[]);
        // A nested repository with a command in its configuration, a gitdir file, and a plain
        // clone.
        fs_err::create_dir_all(root.join("vendor/lib/.git")).unwrap();
        fs_err::write(
            root.join("vendor/lib/.git/config"),
            "[core]\n\tfsmonitor = id\n",
        )
        .unwrap();
        fs_err::write(root.join("src/.git"), "gitdir: ../../elsewhere\n").unwrap();
        fs_err::create_dir_all(root.join("clone/.git")).unwrap();
        fs_err::write(
            root.join("clone/.git/config"),
            "[remote \"origin\"]\n\turl = x\n",
        )
        .unwrap();
        let findings = guard.check();
        let moved: Vec<&Path> = findings
            .iter()
            .filter(|f| f.action == Action::Moved)
            .map(|f| f.path.as_path())
            .collect();
        assert!(
            moved.contains(&root.join("vendor/lib/.git").as_path()),
            "{findings:?}"
        );
        assert!(
            moved.contains(&root.join("src/.git").as_path()),
            "{findings:?}"
        );
        assert!(root.join("clone/.git/config").exists());
        assert!(!root.join("vendor/lib/.git").exists());
    }

    #[test]
    fn a_configuration_is_harmless_only_if_git_reads_only_plain_keys_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        for (text, harmless) in [
            ("[core]\n\trepositoryformatversion = 0\n\tbare = false\n[remote \"origin\"]\n\turl = https://x/y\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n", true),
            ("[x][core]fsmonitor = \"echo PWNED\"\n", false),
            ("[core]\n\tfsMonitor = x\n", false),
            ("[pager]\n\tstatus = sh -c id\n", false),
            ("[protocol \"ext\"]\n\tallow = always\n", false),
            ("[x][include]path = /tmp/evil\n", false),
            ("[alias]\n\tst = !id\n", false),
            ("[core]\n\tfs\\\nmonitor = x\n", false),
            ("not a config at all [[[", false),
            ("[remote \"origin\"]\n\turl = zz::x\n", false),
            ("[remote \"origin\"]\n\turl = ext::sh -c id\n", false),
            ("[remote \"origin\"]\n\turl = git@github.com:o/r.git\n\tpushurl = ssh://h/r\n[pull]\n\trebase = true\n", true),
            ("[submodule \"x\"]\n\tupdate = !sh -c id\n", false),
        ] {
            fs_err::write(&config, text).unwrap();
            assert_eq!(benign_git_config(&config), harmless, "{text:?}");
        }
    }

    #[test]
    fn a_bare_repository_made_in_a_directory_loses_what_makes_it_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("src")).unwrap();
        fs_err::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        let guard = Guard::record_with_repositories(&[guarded(root, ".git/config")], &[]);
        fs_err::create_dir_all(root.join("src/objects")).unwrap();
        fs_err::create_dir_all(root.join("src/refs")).unwrap();
        fs_err::write(root.join("src/HEAD"), "ref: refs/heads/master\n").unwrap();
        fs_err::write(
            root.join("src/config"),
            "[core]\n\tworktree = .\n\tfsmonitor = id\n",
        )
        .unwrap();
        // Variants git accepts as well: a linked HEAD, linked objects, a commondir.
        fs_err::create_dir_all(root.join("s1/objects")).unwrap();
        fs_err::create_dir_all(root.join("s1/refs/heads")).unwrap();
        std::os::unix::fs::symlink("refs/heads/master", root.join("s1/HEAD")).unwrap();
        fs_err::write(root.join("s1/config"), "[core]\n\tpager = id\n").unwrap();
        fs_err::create_dir_all(root.join("s2/o")).unwrap();
        fs_err::create_dir_all(root.join("s2/refs")).unwrap();
        std::os::unix::fs::symlink("o", root.join("s2/objects")).unwrap();
        fs_err::write(root.join("s2/HEAD"), "ref: refs/heads/master\n").unwrap();
        fs_err::create_dir_all(root.join("s3/c")).unwrap();
        fs_err::write(root.join("s3/HEAD"), "ref: refs/heads/master\n").unwrap();
        fs_err::write(root.join("s3/commondir"), "c\n").unwrap();
        guard.check();
        for dir in ["s1", "s2", "s3"] {
            assert!(!is_git_directory(&root.join(dir)), "{dir}");
        }
        assert!(!is_git_directory(&root.join("src")));
        assert!(!root.join("src/config").exists());
        assert_eq!(
            fs_err::read_to_string(root.join("src/main.rs")).unwrap(),
            "fn main() {}"
        );
    }

    #[test]
    fn too_many_entries_to_look_for_repositories_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..20 {
            fs_err::write(dir.path().join(format!("f{n}")), "").unwrap();
        }
        assert!(repositories_below_at_most(dir.path(), 10).is_err());
        assert!(repositories_below_at_most(dir.path(), 100).is_ok());
    }

    #[test]
    fn names_made_ahead_do_not_stop_the_move() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join(".git")).unwrap();
        let guard = Guard::record(&[guarded(root, ".git/commondir")]);
        fs_err::write(root.join(".git/commondir"), "../.evil").unwrap();
        // Every name of the old scheme for the next minute exists already.
        let now = chrono::Utc::now();
        for second in 0..60 {
            let stamp = (now + chrono::Duration::seconds(second)).format("%Y%m%dT%H%M%SZ");
            fs_err::write(
                root.join(format!(".git/commondir.cordon-quarantine-{stamp}")),
                "",
            )
            .unwrap();
        }
        let findings = guard.check();
        assert_eq!(findings[0].action, Action::Moved, "{findings:?}");
        assert!(!root.join(".git/commondir").exists());
    }

    #[test]
    fn changes_from_outside_are_left_and_harmless_creations_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("repo/.git")).unwrap();
        fs_err::write(root.join("repo/.git/config"), "[core]").unwrap();
        let all = [
            guarded(root, "repo/.git/config"),
            guarded(root, "new/.git/config"),
            guarded(root, "new/.git/hooks"),
            guarded(root, "evil/.git/config"),
        ];
        let guard = Guard::record(&all);
        // The person runs `git config` outside (a new file renamed over the old one).
        fs_err::write(root.join("repo/.git/config.lock"), "[remote]").unwrap();
        fs_err::rename(
            root.join("repo/.git/config.lock"),
            root.join("repo/.git/config"),
        )
        .unwrap();
        // `git init` inside: a plain config and sample hooks.
        fs_err::create_dir_all(root.join("new/.git/hooks")).unwrap();
        fs_err::write(
            root.join("new/.git/config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = x\n",
        )
        .unwrap();
        fs_err::write(root.join("new/.git/hooks/pre-commit.sample"), "").unwrap();
        // A config that runs something.
        fs_err::create_dir_all(root.join("evil/.git")).unwrap();
        fs_err::write(
            root.join("evil/.git/config"),
            "[core]\n\tfsmonitor = sh -c id\n",
        )
        .unwrap();
        let findings = guard.check();
        let action = |path: &str| {
            findings
                .iter()
                .find(|f| f.path == root.join(path))
                .map(|f| f.action)
        };
        assert_eq!(
            action("repo/.git/config"),
            Some(Action::Left),
            "{findings:?}"
        );
        assert_eq!(action("new/.git/config"), Some(Action::Left));
        assert_eq!(action("new/.git/hooks"), Some(Action::Left));
        assert_eq!(action("evil/.git/config"), Some(Action::Moved));
        assert_eq!(
            fs_err::read_to_string(root.join("repo/.git/config")).unwrap(),
            "[remote]"
        );
    }
}
