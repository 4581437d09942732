//! Process and memory caps for a sandboxed tree, with cgroups.
//!
//! `RLIMIT_NPROC` does not bind uid 0, and an agent run as root inside its user namespace
//! counts as its outside uid anyway, so caps come from cgroups: v2 where the `pids` and
//! `memory` controllers are available to cordon's own cgroup, else the v1 `pids` and `memory`
//! hierarchies of hybrid hosts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::grants::Limits;
use crate::SandboxError;

const ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup controllers this host offers for the caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// cgroup v2 (unified), with `pids` and `memory` available below `dir`, cordon's own
    /// cgroup.
    V2 {
        /// cordon's own cgroup directory.
        dir: PathBuf,
        /// The controllers the host lists.
        controllers: String,
    },
    /// The v1 `pids` and `memory` hierarchies (a hybrid host).
    V1 {
        /// cordon's own cgroup in the pids hierarchy.
        pids: PathBuf,
        /// cordon's own cgroup in the memory hierarchy.
        memory: PathBuf,
    },
    /// Neither.
    None,
}

impl Support {
    /// What this host offers, from `/proc/self/cgroup` and `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        let own = fs_err::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let path_of = |controller: &str| {
            own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then(|| path.trim_start_matches('/').to_owned())
            })
        };
        let unified_only = !own.trim().is_empty() && own.lines().all(|l| l.starts_with("0::"));
        if unified_only {
            let controllers = fs_err::read_to_string(Path::new(ROOT).join("cgroup.controllers"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            if lists_pids_and_memory(&controllers) {
                return Support::V2 {
                    dir: without_own_leaf(Path::new(ROOT).join(path_of("").unwrap_or_default())),
                    controllers,
                };
            }
            return Support::None;
        }
        let v1 = |controller: &str| {
            let mount = Path::new(ROOT).join(controller);
            mount
                .join("tasks")
                .exists()
                .then(|| mount.join(path_of(controller).unwrap_or_default()))
        };
        match (v1("pids"), v1("memory")) {
            (Some(pids), Some(memory)) => Support::V1 { pids, memory },
            _ => Support::None,
        }
    }

    /// Whether [`Cgroup::create`] could work, changing nothing: the controllers exist and
    /// cordon may create cgroups below its own (for `--dry-run`).
    ///
    /// # Errors
    ///
    /// [`SandboxError::Cgroup`] saying what is missing.
    pub fn check(&self) -> Result<(), SandboxError> {
        let dirs: Vec<&Path> = match self {
            Support::None => return Err(SandboxError::Cgroup(self.describe())),
            Support::V2 { dir, .. } => vec![dir],
            Support::V1 { pids, memory } => vec![pids, memory],
        };
        for dir in dirs {
            if !cordon_sys::process::may_create_in(dir) {
                return Err(SandboxError::Cgroup(format!(
                    "cordon may not create cgroups in `{}`",
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    /// Where this machine's sandboxes get their caps, found without changing anything (for
    /// `cordon doctor`): cgroup v1, cordon's own v2 cgroup, or a scope systemd delegates.
    ///
    /// # Errors
    ///
    /// Why no cgroup can hold the caps here, with what a person can do.
    pub fn placement(&self) -> Result<String, String> {
        let probed = match self {
            Support::None => return Err(self.describe()),
            Support::V1 { .. } => {
                return Ok(
                    "cgroups below cordon's own in the v1 pids and memory hierarchies".into(),
                )
            }
            Support::V2 { dir, .. } => dir,
        };
        let own = crate::systemd::own_cgroup()
            .map(without_own_leaf)
            .unwrap_or_else(|| probed.clone());
        if enables_controllers(&own) {
            return Ok(format!("cgroups below cordon's own, `{}`", own.display()));
        }
        let procs = fs_err::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
        let alone = procs
            .lines()
            .all(|l| l.trim() == std::process::id().to_string());
        if alone && cordon_sys::process::may_create_in(&own) {
            return Ok(format!(
                "cordon moves itself into a leaf of its cgroup `{}` (delegated to it alone) and caps the sandboxes beside it",
                own.display()
            ));
        }
        let plan = scope_plan(&own)
            .and_then(|plan| crate::systemd::version().map(|version| (plan, version)));
        match plan {
            Ok((plan, version)) => {
                let limit = |name: &str, value: Option<u64>| {
                    value.map(|v| format!(", {name} {v}")).unwrap_or_default()
                };
                Ok(format!(
                    "cordon's cgroup `{}` is shared, so cordon asks the systemd user manager (systemd {version}) for a delegated scope of its own, in `{}` with its unit's limits{}{}{}",
                    own.display(),
                    plan.slice,
                    limit("tasks", plan.tasks_max),
                    limit("memory", plan.memory_max),
                    limit("swap", plan.swap_max),
                ))
            }
            Err(why) => Err(format!(
                "cordon's cgroup `{}` is shared with other processes and no delegated scope can be had ({why}); {DELEGATE_HINT}",
                own.display()
            )),
        }
    }

    /// One line for people: what was found.
    pub fn describe(&self) -> String {
        match self {
            Support::V2 { controllers, .. } => {
                format!("cgroup v2 with the pids and memory controllers ({controllers})")
            }
            Support::V1 { .. } => "cgroup v1 pids and memory controllers (hybrid host)".into(),
            Support::None => "no cgroup controller for pids and memory is available".into(),
        }
    }
}

/// The name prefix of cordon's cgroups.
const PREFIX: &str = "cordon-";

/// A name no other run uses: cordon's pid and the time.
pub fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{PREFIX}{}-{nanos:x}", std::process::id())
}

/// Removes the empty cgroups of earlier runs that could not clean up (cordon was killed).
/// A cgroup that still holds processes is left alone.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs_err::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let owner_alive = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        let empty = fs_err::read_to_string(entry.path().join("cgroup.procs"))
            .is_ok_and(|procs| procs.trim().is_empty());
        if empty && !owner_alive {
            let _ = fs_err::remove_dir(entry.path());
        }
    }
}

/// The leaf cordon moves itself into when its cgroup must enable controllers for its
/// children: `cordon-self-<pid>`.
fn own_leaf(dir: &Path) -> PathBuf {
    dir.join(own_leaf_name())
}

fn own_leaf_name() -> String {
    format!("{PREFIX}self-{}", std::process::id())
}

/// Whether a list of controllers (`cgroup.controllers`, `cgroup.subtree_control`) names
/// both `pids` and `memory`.
fn lists_pids_and_memory(list: &str) -> bool {
    let has = |c: &str| list.split_whitespace().any(|x| x == c);
    has("pids") && has("memory")
}

/// `dir` without this process's own leaf ([`own_leaf`]) at its end: the cgroup cordon's
/// sandboxes are made in, however many sessions this process has started.
fn without_own_leaf(dir: PathBuf) -> PathBuf {
    let leaf = own_leaf_name();
    match dir.parent() {
        Some(parent) if dir.file_name().is_some_and(|n| n == leaf.as_str()) => parent.to_path_buf(),
        _ => dir,
    }
}

/// What a person can do when no cgroup can hold the sandboxes' caps.
pub const DELEGATE_HINT: &str = "run cordon in a cgroup delegated to it alone, for example `systemd-run --user --scope -p Delegate=yes cordon exec ...`";

/// Whether `dir` enables the `pids` and `memory` controllers for its children.
fn enables_controllers(dir: &Path) -> bool {
    lists_pids_and_memory(
        &fs_err::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default(),
    )
}

/// On cgroup v2, a child cgroup has the `pids` and `memory` files only when its parent
/// enables those controllers (`cgroup.subtree_control`), and a cgroup holding processes
/// cannot enable them (no internal processes). So when cordon's own cgroup has them off,
/// cordon moves itself into a leaf of its own (`cordon-self-<pid>`) and enables them. That
/// succeeds in a cgroup delegated to cordon alone (a scope systemd delegated, see
/// [`crate::systemd`]) and fails in a cgroup shared with other processes (a terminal's
/// scope), where cordon goes back where it was.
fn enable_v2_controllers(own: &Path) -> Result<(), String> {
    if enables_controllers(own) {
        return Ok(());
    }
    let refused = |e: &dyn std::fmt::Display| {
        format!(
            "cordon's cgroup `{}` does not enable the pids and memory controllers for its children and cordon cannot enable them there ({e})",
            own.display()
        )
    };
    let leaf = own_leaf(own);
    if !leaf.exists() {
        fs_err::create_dir(&leaf).map_err(|e| refused(&e))?;
    }
    let pid = std::process::id().to_string();
    fs_err::write(leaf.join("cgroup.procs"), &pid).map_err(|e| refused(&e))?;
    let enabled = fs_err::write(own.join("cgroup.subtree_control"), "+pids +memory");
    match enabled {
        Ok(()) if enables_controllers(own) => Ok(()),
        failed => {
            // Back where it was, the leaf removed: nothing of the attempt is left behind.
            let _ = fs_err::write(own.join("cgroup.procs"), &pid);
            let _ = fs_err::remove_dir(&leaf);
            Err(match failed {
                Err(e) => refused(&e),
                Ok(()) => refused(&"the kernel did not enable them"),
            })
        }
    }
}

/// The cgroup v2 directory the sandboxes' cgroups go in, with the controllers enabled:
/// cordon's own (or the leaf trick of [`enable_v2_controllers`]), else a scope systemd
/// delegates to cordon.
fn v2_parent(probed: &Path) -> Result<PathBuf, SandboxError> {
    // One placement at a time in a process: sessions started together would otherwise each
    // ask for a scope, and all but the last would find cordon moved on.
    static PLACING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _placing = PLACING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let own = crate::systemd::own_cgroup()
        .map(without_own_leaf)
        .unwrap_or_else(|| probed.to_path_buf());
    let refused = match enable_v2_controllers(&own) {
        Ok(()) => return Ok(own),
        Err(refused) => refused,
    };
    let delegated = scope_plan(&own).and_then(|plan| crate::systemd::delegated_scope(&plan));
    let scope = delegated.map_err(|why| {
        SandboxError::Cgroup(format!(
            "{refused}; the systemd user manager gave cordon no delegated scope ({why}); {DELEGATE_HINT}"
        ))
    })?;
    enable_v2_controllers(&scope)
        .map_err(|why| SandboxError::Cgroup(format!("{why}; {DELEGATE_HINT}")))?;
    Ok(scope)
}

/// The smallest of the numeric values of `file` in `dirs` (`max` is no limit).
fn tightest(dirs: &[&Path], file: &str) -> Option<u64> {
    dirs.iter()
        .filter_map(|dir| fs_err::read_to_string(dir.join(file)).ok())
        .filter_map(|value| value.trim().parse::<u64>().ok())
        .min()
}

/// The scope cordon may ask its user's systemd manager for, in place of its own cgroup
/// `own`: in the slice of the unit cordon runs in, with the tightest process and memory
/// limits between `own` and that slice, so that nothing that bound cordon is shed.
///
/// # Errors
///
/// Why cordon does not move: it runs as root, or in a cgroup that is not its user
/// manager's (a system service's, a login session's), or the manager has no pids and
/// memory controllers to delegate.
fn scope_plan(own: &Path) -> Result<crate::systemd::Scope, String> {
    let (uid, _) = cordon_sys::process::real_ids();
    if uid == 0 {
        return Err("cordon runs as root, and root's cgroups belong to the system manager: cordon does not move itself out of them".into());
    }
    let manager = Path::new(ROOT).join(format!("user.slice/user-{uid}.slice/user@{uid}.service"));
    let inside = own
        .strip_prefix(&manager)
        .ok()
        .filter(|rest| rest.components().next().is_some());
    if inside.is_none() {
        return Err(format!(
            "cordon's cgroup `{}` is not one of its user's systemd manager, and leaving it would shed the limits set there",
            own.display()
        ));
    }
    let controllers =
        fs_err::read_to_string(manager.join("cgroup.controllers")).unwrap_or_default();
    if !lists_pids_and_memory(&controllers) {
        return Err(format!(
            "the user's systemd manager has no pids and memory controllers to delegate (it has: {})",
            controllers.trim()
        ));
    }
    // The unit's own cgroups, up to the slice that holds it (the manager's root slice,
    // `-.slice`, where there is none below the manager).
    let mut below_slice: Vec<&Path> = Vec::new();
    let mut slice = "-.slice".to_owned();
    for dir in own.ancestors() {
        if dir == manager {
            break;
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".slice") {
            slice = name;
            break;
        }
        below_slice.push(dir);
    }
    Ok(crate::systemd::Scope {
        slice,
        tasks_max: tightest(&below_slice, "pids.max"),
        memory_max: tightest(&below_slice, "memory.max"),
        swap_max: tightest(&below_slice, "memory.swap.max"),
    })
}

/// The cgroups holding one sandboxed tree; removed (after killing what is left) on drop.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    version: Support,
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs_err::write(path, value).map_err(|e| SandboxError::Cgroup(e.to_string()))
}

impl Cgroup {
    /// Creates the (empty, uncapped) cgroups for a tree named `name` under cordon's own.
    ///
    /// # Errors
    ///
    /// [`SandboxError::Cgroup`] when the host has no usable controller or cordon may not
    /// create cgroups (not delegated to this user).
    pub fn create(support: &Support, name: &str) -> Result<Self, SandboxError> {
        match support {
            Support::None => {}
            Support::V2 { dir, .. } => remove_stale(dir),
            Support::V1 { pids, memory } => {
                remove_stale(pids);
                remove_stale(memory);
            }
        }
        let mut cgroup = Cgroup {
            dirs: Vec::new(),
            version: support.clone(),
        };
        match support {
            Support::None => return Err(SandboxError::Cgroup(support.describe())),
            Support::V2 { dir, controllers } => {
                let parent = v2_parent(dir)?;
                if parent != *dir {
                    remove_stale(&parent);
                }
                cgroup.make(&parent.join(name))?;
                cgroup.version = Support::V2 {
                    dir: parent,
                    controllers: controllers.clone(),
                };
            }
            Support::V1 { pids, memory } => {
                cgroup.make(&pids.join(name))?;
                cgroup.make(&memory.join(name))?;
            }
        }
        Ok(cgroup)
    }

    /// Caps the tree.
    ///
    /// # Errors
    ///
    /// [`SandboxError::Cgroup`] when a controller refuses the value (or, on cgroup v2, the
    /// controllers are not enabled for cordon's cgroup).
    pub fn set_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        let dir = |i: usize| self.dirs.get(i).cloned().unwrap_or_default();
        match &self.version {
            Support::None => {}
            Support::V2 { .. } => {
                if let Some(pids) = limits.pids {
                    write(&dir(0).join("pids.max"), &pids.to_string())?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    write(&dir(0).join("memory.max"), &bytes.to_string())?;
                    write(&dir(0).join("memory.swap.max"), "0").ok();
                }
            }
            Support::V1 { .. } => {
                if let Some(max) = limits.pids {
                    write(&dir(0).join("pids.max"), &max.to_string())?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    write(&dir(1).join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // Swap counts too where the kernel accounts it.
                    let memsw = dir(1).join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &bytes.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }

    fn make(&mut self, dir: &Path) -> Result<(), SandboxError> {
        fs_err::create_dir(dir).map_err(|e| {
            SandboxError::Cgroup(format!(
                "{e} (cgroups must be delegated to this user for cordon to cap processes and memory)"
            ))
        })?;
        self.dirs.push(dir.to_path_buf());
        Ok(())
    }

    /// The files a single-threaded process writes `0` to, to move itself in: `tasks` on
    /// cgroup v1, where moving one's own thread skips the lock (and the RCU grace period,
    /// milliseconds) that moving a whole process takes; `cgroup.procs` on v2.
    pub fn join_files(&self) -> Vec<PathBuf> {
        let name = match self.version {
            Support::V1 { .. } => "tasks",
            _ => "cgroup.procs",
        };
        self.dirs.iter().map(|d| d.join(name)).collect()
    }

    /// Kills whatever is still in the cgroups and removes them, waiting at most a second.
    pub fn remove(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        for dir in std::mem::take(&mut self.dirs) {
            loop {
                let procs = fs_err::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = cordon_sys::process::kill(pid, libc::SIGKILL);
                }
                if fs_err::remove_dir(&dir).is_ok() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_cordon_moved_into_is_not_where_sandboxes_go() {
        let scope = PathBuf::from("/sys/fs/cgroup/user.slice/cordon-1-a.scope");
        assert_eq!(without_own_leaf(own_leaf(&scope)), scope);
        assert_eq!(without_own_leaf(scope.clone()), scope);
        // Another process's leaf is not this one's.
        let other = scope.join("cordon-self-1");
        let other = if std::process::id() == 1 {
            scope.join("cordon-self-2")
        } else {
            other
        };
        assert_eq!(without_own_leaf(other.clone()), other);
    }
}
