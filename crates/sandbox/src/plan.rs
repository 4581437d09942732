//! From a grant set to the file-system view the sandboxed program gets: which mounts, in
//! which order, and the Landlock rules that repeat them.
//!
//! Planning only reads the host file system (what exists, what is a link); the launcher's
//! helper carries the plan out inside the new mount namespace. Paths inside the sandbox are
//! the paths outside, so what an agent reports makes sense to the person.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::grants::Grants;
use crate::guard::Guarded;
use crate::landlock::Rules;
use crate::tree;

/// One step of building the view. Paths are as the program sees them (and as they are on
/// the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountOp {
    /// The host's `path`, at the same place; read-only unless `writable`.
    Bind {
        /// The path.
        path: PathBuf,
        /// Whether the program may write below it.
        writable: bool,
        /// The same without links, as opened when the view is built: a link found in it
        /// then, or another file than [`Identity`] says, means it was swapped after
        /// planning, and the launch stops.
        source: PathBuf,
        /// What `source` was when planned.
        identity: Identity,
        /// Writes go to this stage instead of the tree: an overlay with the tree below
        /// (`cordon exec --stage`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<Stage>,
    },
    /// An empty, private, writable file system.
    Tmpfs {
        /// Where.
        path: PathBuf,
        /// Permission bits of its root.
        mode: u32,
    },
    /// A directory on whatever is mounted above it.
    Dir {
        /// Where.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link, copied from the host (`/bin -> usr/bin`).
    Symlink {
        /// Where.
        path: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// A fresh `/proc` for the sandbox's own pid namespace.
    Proc,
    /// A minimal `/dev`: null, zero, full, random, urandom, tty, a private `pts` and `shm`.
    Dev,
    /// A secret file replaced by an empty read-only file.
    MaskFile {
        /// The file.
        path: PathBuf,
    },
    /// A secret directory replaced by an empty read-only directory.
    MaskDir {
        /// The directory.
        path: PathBuf,
    },
    /// A path made read-only inside a writable tree.
    Protect {
        /// The path.
        path: PathBuf,
    },
    /// A directory above a protected path, made a mount point of itself (still writable):
    /// the kernel refuses to rename a mount point, so the protected path cannot be carried
    /// away with its parent and replaced (`mv .git .git.orig && cp -a .git.orig .git`).
    Pin {
        /// The directory.
        path: PathBuf,
    },
}

impl MountOp {
    /// Where the operation acts.
    pub fn path(&self) -> &Path {
        match self {
            MountOp::Bind { path, .. }
            | MountOp::Tmpfs { path, .. }
            | MountOp::Dir { path, .. }
            | MountOp::Symlink { path, .. }
            | MountOp::MaskFile { path }
            | MountOp::MaskDir { path }
            | MountOp::Protect { path }
            | MountOp::Pin { path } => path,
            MountOp::Proc => Path::new("/proc"),
            MountOp::Dev => Path::new("/dev"),
        }
    }

    /// Masks and protections go on top of everything at their depth.
    fn layer(&self) -> u8 {
        match self {
            MountOp::MaskFile { .. }
            | MountOp::MaskDir { .. }
            | MountOp::Protect { .. }
            | MountOp::Pin { .. } => 1,
            _ => 0,
        }
    }
}

/// Where a staged tree's writes go: a directory of cordon's on the host holding overlayfs's
/// `upper/` (the writes) and `work/`, both empty at the start. It reaches the view the way a
/// writable tree does (opened as planned, idmapped when cordon runs as root), never inside
/// the program's view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// The directory, without links.
    pub dir: PathBuf,
    /// What it was when planned.
    pub identity: Identity,
}

impl Stage {
    /// The stage in `dir`.
    ///
    /// # Errors
    ///
    /// When `dir` cannot be found.
    pub fn at(dir: &Path) -> Result<Self, String> {
        let (dir, identity) = identify(dir)
            .ok_or_else(|| format!("the stage `{}` cannot be found", dir.display()))?;
        Ok(Self { dir, identity })
    }
}

/// A file's device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The device.
    pub dev: u64,
    /// The inode.
    pub ino: u64,
}

/// A granted tree, as planned.
struct Granted {
    path: PathBuf,
    writable: bool,
    source: PathBuf,
    identity: Identity,
}

/// The whole view and its Landlock rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Mounts, parents before children.
    pub mounts: Vec<MountOp>,
    /// The Landlock rules: the same paths, read or read-write.
    pub landlock: Rules,
    /// Every protected path inside a writable tree, existing or not: the launcher records
    /// them before the run and compares after it ([`crate::guard`]).
    pub guarded: Vec<Guarded>,
    /// Granted paths that do not exist on this machine and were skipped.
    pub skipped: Vec<PathBuf>,
    /// The `.git` entries found in the writable trees at launch: after the run, a new one is
    /// a repository (or a `gitdir:` pointer) the program made, which git outside would obey.
    #[serde(default)]
    pub repos: Vec<PathBuf>,
}

fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn is_below(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// The most set-id files made read-only, one mount each.
const MAX_SET_ID: usize = 256;

/// What a walk of a granted tree found.
#[derive(Default)]
struct Found {
    /// Regular files with a set-user-id or set-group-id bit, or (when asked) file
    /// capabilities. The program must not rewrite them: a write through a shared memory
    /// mapping keeps the bits (the kernel drops them only on `write`), so the file would keep
    /// running with its owner's rights on the host.
    set_id: Vec<PathBuf>,
    /// Unix sockets: a read-only mount does not stop `connect`, and a socket of the host
    /// (an agent, a multiplexer, a display server) is a way out of the sandbox.
    sockets: Vec<PathBuf>,
    /// `.git` entries (repository directories and `gitdir:` files): git run outside later
    /// obeys each, including nested ones (a top-level `git status` enters submodules).
    repos: Vec<PathBuf>,
}

/// Walks `root` (with `one_device`, not entering mounts below it) for what [`Found`] holds.
fn walk(root: &Path, caps: bool, one_device: bool, found: &mut Found) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let visit = |entry: &fs_err::DirEntry, kind: std::fs::FileType| {
        let path = entry.path();
        if entry.file_name() == ".git" {
            found.repos.push(path);
        } else if kind.is_dir() {
            if crate::guard::is_git_directory(&path) {
                found.repos.push(path);
            }
        } else if kind.is_socket() {
            found.sockets.push(path);
        } else if kind.is_file() {
            let set_id = entry
                .metadata()
                .is_ok_and(|m| m.mode() & (libc::S_ISUID | libc::S_ISGID) != 0);
            if set_id || (caps && cordon_sys::process::has_file_capabilities(&path).unwrap_or(true))
            {
                found.set_id.push(path);
            }
        }
        true
    };
    tree::walk(root, tree::MAX_ENTRIES, one_device, visit).map_err(|e| match e {
        tree::WalkError::TooMany(most) => format!(
            "`{}` holds more than {most} entries, too many to check for set-id files and sockets before granting it; grant a smaller directory",
            root.display()
        ),
        // A directory that can be entered but not listed could hide a socket.
        tree::WalkError::Unreadable(dir) => format!(
            "cannot look inside `{}` (permission denied) to check it for sockets and set-id files before granting it; grant a directory without it",
            dir.display()
        ),
    })
}

/// Plans the view for `grants`, with a private home at `home` and a private runtime
/// directory for `uid`. Writable trees and the read grants in `scan` (those the person asked
/// for; system directories are not walked) are searched for set-id files and sockets.
///
/// # Errors
///
/// When a tree is too large to search, or holds too many set-id files.
pub fn plan(grants: &Grants, home: &Path, uid: u32, scan: &[PathBuf]) -> Result<Plan, String> {
    let mut plan = Plan::default();
    plan.landlock.tcp = grants.tcp.clone();
    let mut ops = Vec::new();
    let mut granted: Vec<Granted> = Vec::new();
    for (paths, writable) in [(&grants.read, false), (&grants.write, true)] {
        for path in paths {
            let Ok(meta) = fs_err::symlink_metadata(path) else {
                plan.skipped.push(path.clone());
                continue;
            };
            if meta.file_type().is_symlink() {
                // `/bin -> usr/bin`: the link itself, pointing where it points on the host;
                // what it points to is granted (or not) on its own.
                if let Ok(target) = fs_err::read_link(path) {
                    ops.push(MountOp::Symlink {
                        path: path.clone(),
                        target,
                    });
                }
                continue;
            }
            let Some((source, identity)) = identify(path) else {
                plan.skipped.push(path.clone());
                continue;
            };
            // The decision was made on the path without links: one that appeared on the way
            // since (while the person was asked, say) would mount another tree than the one
            // decided.
            if &source != path {
                return Err(format!(
                    "`{}` now leads to `{}`: a link appeared on its way since it was decided; refused",
                    path.display(),
                    source.display()
                ));
            }
            // A path granted both ways is writable.
            granted.retain(|g| &g.path != path);
            granted.push(Granted {
                path: path.clone(),
                writable,
                source,
                identity,
            });
        }
    }
    let granted_as = |path: &Path, writable: bool| {
        granted
            .iter()
            .any(|g| g.path == path && g.writable == writable)
    };
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    let private = [
        (PathBuf::from("/tmp"), 0o1777),
        (PathBuf::from("/var/tmp"), 0o1777),
        (PathBuf::from("/run"), 0o755),
        (home.to_path_buf(), 0o700),
    ];
    for (path, mode) in &private {
        // A granted path replaces the private one (`--allow-write /tmp`).
        if !granted.iter().any(|g| &g.path == path) {
            ops.push(MountOp::Tmpfs {
                path: path.clone(),
                mode: *mode,
            });
            plan.landlock.write.push(path.clone());
        }
    }
    ops.push(MountOp::Dir {
        path: run_user.clone(),
        mode: 0o700,
    });
    ops.push(MountOp::Proc);
    ops.push(MountOp::Dev);
    // `/proc` is read-only to Landlock but for the program's own entries (`/proc/self` is
    // resolved when the rules are made, in the program's process): its comm, oom score,
    // attributes. Writes through `/proc/self/fd/N` reopen the file itself and are decided
    // on its own path.
    plan.landlock.read.push(PathBuf::from("/proc"));
    plan.landlock.write.push(PathBuf::from("/proc/self"));
    plan.landlock.write.push(PathBuf::from("/proc/thread-self"));
    plan.landlock.write.push(PathBuf::from("/dev"));
    for g in &granted {
        if g.writable {
            plan.landlock.write.push(g.path.clone());
        } else {
            plan.landlock.read.push(g.path.clone());
        }
        ops.push(MountOp::Bind {
            path: g.path.clone(),
            writable: g.writable,
            source: g.source.clone(),
            identity: g.identity,
            stage: None,
        });
    }

    let visible = |path: &Path| {
        granted.iter().any(|g| is_below(path, &g.path)) || is_below(path, Path::new("/proc"))
    };
    let mut masked: Vec<PathBuf> = Vec::new();
    for entry in &grants.mask {
        for path in expand_mask(entry) {
            // A secret that is a link (`~/.ssh -> dotfiles/ssh`) is masked where it leads.
            let path = match fs_err::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => match fs_err::canonicalize(&path) {
                    Ok(target) => target,
                    Err(_) => continue,
                },
                _ => path,
            };
            if !visible(&path) || masked.contains(&path) {
                continue;
            }
            match fs_err::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => ops.push(MountOp::MaskDir { path: path.clone() }),
                Ok(_) => ops.push(MountOp::MaskFile { path: path.clone() }),
                Err(_) => {}
            }
            masked.push(path);
        }
    }
    // A secret location inside a read-only grant that does not exist yet (or is replaced
    // later) would show through the grant once the person creates it (`aws configure` while
    // the agent runs). Landlock is told the grant less the secrets instead: a rule for each
    // entry beside them, none for them, so whatever appears later in their place is denied.
    let secrets: Vec<PathBuf> = grants
        .mask
        .iter()
        .filter_map(|entry| entry.strip_suffix('/'))
        .map(PathBuf::from)
        .chain(masked)
        .collect();
    let mut read_rules = Vec::new();
    for path in std::mem::take(&mut plan.landlock.read) {
        if granted_as(&path, false) {
            read_rules.extend(without_secrets(&path, &secrets));
        } else {
            read_rules.push(path);
        }
    }
    plan.landlock.read = read_rules;
    let writable_roots: Vec<&PathBuf> = granted
        .iter()
        .filter(|g| g.writable)
        .map(|g| &g.path)
        .collect();
    // Set-id files in writable trees stay read-only. Run by root, the trees hold root's files
    // writable (idmapped), and only root can have set file capabilities: look for those too,
    // on the tree's own file system (mounts below it are not part of the view).
    let mut found = Found::default();
    for root in &writable_roots {
        if crate::guard::is_git_directory(root) {
            found.repos.push(root.to_path_buf());
        }
        walk(root, uid == 0, uid == 0, &mut found)?;
    }
    for root in scan {
        if granted_as(root, false) {
            let mut read_only = Found::default();
            walk(root, false, false, &mut read_only)?;
            found.sockets.extend(read_only.sockets);
        }
    }
    let set_id = found.set_id;
    plan.repos = found.repos.clone();
    // What the policy protects in the workspace's repository is protected in every
    // repository of the writable trees, and so is what git itself points at: a hooks
    // directory named by `core.hooksPath` or reached through a link, and included configs.
    let mut protect: Vec<PathBuf> = grants.protect.clone();
    let git_names: Vec<PathBuf> = grants
        .protect
        .iter()
        .filter_map(|p| {
            let text = p.to_str()?;
            let at = text.find("/.git/")?;
            Some(PathBuf::from(&text[at + 6..]))
        })
        .collect();
    for git in &found.repos {
        let is_dir = fs_err::symlink_metadata(git).is_ok_and(|m| m.is_dir());
        if is_dir {
            protect.extend(git_names.iter().map(|name| git.join(name)));
            let repo = git.parent().unwrap_or(git);
            protect.extend(git_pointers(repo, git));
        } else {
            protect.push(git.clone());
        }
    }
    protect.sort();
    protect.dedup();
    found.sockets.sort();
    found.sockets.dedup();
    ops.extend(
        found
            .sockets
            .into_iter()
            .map(|path| MountOp::MaskFile { path }),
    );
    if set_id.len() > MAX_SET_ID {
        return Err(format!(
            "the writable trees hold {} set-id or capability files (the first: `{}`), more than {MAX_SET_ID} to keep read-only; grant them read-only",
            set_id.len(),
            set_id[0].display()
        ));
    }
    ops.extend(set_id.into_iter().map(|path| MountOp::Protect { path }));
    let mut pinned: Vec<PathBuf> = Vec::new();
    for path in &protect {
        // The innermost writable tree holding the path is where it can be changed from.
        let Some(root) = writable_roots
            .iter()
            .filter(|root| is_below(path, root) && path != **root)
            .max_by_key(|root| depth(root))
        else {
            continue;
        };
        plan.guarded.push(Guarded {
            root: (*root).clone(),
            path: path.clone(),
        });
        // Every real directory between the tree's root and the path is pinned.
        let mut ancestor = path.parent();
        while let Some(dir) = ancestor {
            if dir == root.as_path() || !is_below(dir, root) {
                break;
            }
            let real_dir = fs_err::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
            if real_dir && !pinned.iter().any(|p| p == dir) {
                pinned.push(dir.to_path_buf());
            }
            ancestor = dir.parent();
        }
        match fs_err::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_symlink() => {
                ops.push(MountOp::Protect { path: path.clone() })
            }
            // A link inside a writable tree could be replaced (the guard reports it); what it
            // points to is protected (or not) on its own.
            Ok(_) | Err(_) => {}
        }
    }
    // A protected directory is a mount point already; pinning it as well would bind the
    // writable directory over its read-only mount.
    pinned.retain(|dir| {
        !ops.iter()
            .any(|op| matches!(op, MountOp::Protect { path } if path == dir))
    });
    ops.extend(pinned.into_iter().map(|path| MountOp::Pin { path }));
    // The plan reaches the helper as text: a mount it cannot name would be a mask or a
    // protection left out.
    let unnamed = ops
        .iter()
        .map(MountOp::path)
        .chain(plan.guarded.iter().map(|g| g.path.as_path()))
        .chain(plan.repos.iter().map(PathBuf::as_path))
        .chain(plan.landlock.read.iter().map(PathBuf::as_path))
        .chain(plan.landlock.write.iter().map(PathBuf::as_path))
        .find(|path| path.to_str().is_none());
    if let Some(path) = unnamed {
        return Err(format!(
            "`{}` has a name that is not UTF-8, which the sandbox cannot mask, protect or check; rename or remove it",
            path.display()
        ));
    }
    // Parents before children; at one depth, masks and protections last. The sort is
    // stable, so the order above holds otherwise.
    ops.sort_by_key(|op| (depth(op.path()), op.layer()));
    plan.mounts = ops;
    Ok(plan)
}

/// Landlock read rules for `root` less every path in `secrets`: `root` itself when no secret
/// lies below it, else a rule for each entry of it that is not a secret (recursively where a
/// secret lies deeper). Links among the entries get no rule: what they lead to is granted, or
/// not, on its own.
fn without_secrets(root: &Path, secrets: &[PathBuf]) -> Vec<PathBuf> {
    // Compared as bytes from here on (a listing of /etc is checked against every secret):
    // made plain first, with no `//`, `.` or trailing `/` that a comparison of components
    // would have ignored.
    let plain = |path: &Path| path.components().collect::<PathBuf>();
    let secrets: Vec<PathBuf> = secrets.iter().map(|s| plain(s)).collect();
    let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_os_str().as_bytes()).collect();
    without(&plain(root), &secrets)
}

/// Whether the plain path `path` is `root` or lies below it, compared as bytes.
fn is_below_bytes(path: &[u8], root: &[u8]) -> bool {
    path.starts_with(root)
        && (path.len() == root.len() || root.ends_with(b"/") || path[root.len()] == b'/')
}

/// [`without_secrets`], handing each level only the secrets below it.
fn without(root: &Path, secrets: &[&[u8]]) -> Vec<PathBuf> {
    let at = root.as_os_str().as_bytes();
    let below: Vec<&[u8]> = secrets
        .iter()
        .copied()
        .filter(|s| is_below_bytes(s, at) && *s != at)
        .collect();
    if below.is_empty() {
        return vec![root.to_path_buf()];
    }
    let Ok(entries) = fs_err::read_dir(root) else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    // What each entry is comes with the listing (no `lstat` of each of /etc's entries). An
    // entry whose name is not UTF-8 gets no rule (the plan is carried as text): it is denied.
    // Entries of one directory sort by their names as their paths would.
    let mut children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| !kind.is_symlink()))
        .map(|entry| entry.path())
        .filter(|path| path.to_str().is_some())
        .collect();
    children.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    for child in children {
        if below.contains(&child.as_os_str().as_bytes()) {
            continue;
        }
        rules.extend(without(&child, &below));
    }
    rules
}

/// What git reads from `git` (the `.git` directory of the repository `repo`) and would run:
/// the hooks directory of `core.hooksPath` (relative to `repo`), the target of a `hooks` that
/// is a link, and files named by `include.path` or `includeIf.*.path`. Absolute or relative;
/// only those inside a writable tree matter, and the caller keeps those.
fn git_pointers(repo: &Path, git: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if fs_err::symlink_metadata(git.join("hooks")).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(target) = fs_err::canonicalize(git.join("hooks")) {
            out.push(target);
        }
    }
    let Ok(config) = fs_err::read_to_string(git.join("config")) else {
        return out;
    };
    let mut section = String::new();
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"');
        let wanted = (section == "[core]" && key == "hookspath")
            || (section.starts_with("[include") && key == "path");
        if wanted && !value.is_empty() {
            let value = Path::new(value);
            let base = if key == "hookspath" { repo } else { git };
            let path = if value.is_absolute() {
                value.to_path_buf()
            } else {
                base.join(value)
            };
            out.push(fs_err::canonicalize(&path).unwrap_or(path));
        }
    }
    out
}

/// `path` without links, and what it is.
fn identify(path: &Path) -> Option<(PathBuf, Identity)> {
    use std::os::unix::fs::MetadataExt;
    let source = fs_err::canonicalize(path).ok()?;
    let meta = fs_err::metadata(&source).ok()?;
    Some((
        source,
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

/// The paths a mask entry names: itself when it ends in `/`, else every entry of its
/// directory whose name starts with the given prefix.
fn expand_mask(entry: &str) -> Vec<PathBuf> {
    if let Some(exact) = entry.strip_suffix('/') {
        return vec![PathBuf::from(exact)];
    }
    let path = Path::new(entry);
    let (Some(dir), Some(prefix)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = prefix.to_string_lossy();
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix.as_ref()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants_in(dir: &Path) -> Grants {
        Grants {
            read: vec!["/usr".into(), "/bin".into(), dir.join("absent")],
            write: vec![dir.join("work")],
            mask: vec![
                format!("{}/", dir.join("work/.ssh").display()),
                format!("{}", dir.join("work/key_").display()),
            ],
            protect: vec![dir.join("work/.git/hooks"), dir.join("work/.mcp.json")],
            ..Grants::default()
        }
    }

    #[test]
    fn a_socket_whose_name_is_not_utf8_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        fs_err::create_dir_all(&work).unwrap();
        let name = std::ffi::OsStr::from_bytes(b"trap\xff");
        let _socket = std::os::unix::net::UnixListener::bind(work.join(name)).unwrap();
        let why = plan(&grants_in(dir.path()), Path::new("/home/u"), 1000, &[]).unwrap_err();
        assert!(why.contains("trap") && why.contains("not UTF-8"), "{why}");
    }

    #[test]
    fn an_entry_beside_a_secret_whose_name_is_not_utf8_gets_no_rule() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("etc");
        fs_err::create_dir_all(&root).unwrap();
        fs_err::write(root.join("shadow"), "secret").unwrap();
        fs_err::write(root.join("passwd"), "ok").unwrap();
        fs_err::write(root.join(std::ffi::OsStr::from_bytes(b"odd\xff")), "x").unwrap();
        let rules = without_secrets(&root, &[root.join("shadow")]);
        assert_eq!(rules, vec![root.join("passwd")]);
    }

    #[test]
    fn secrets_written_with_extra_slashes_or_dots_are_still_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("etc");
        fs_err::create_dir_all(root.join("ssl/private")).unwrap();
        fs_err::create_dir_all(root.join("ssl/certs")).unwrap();
        fs_err::create_dir_all(root.join("sslx")).unwrap();
        fs_err::write(root.join("shadow"), "secret").unwrap();
        fs_err::write(root.join("passwd"), "ok").unwrap();
        let odd = |rest: &str| PathBuf::from(format!("{}/{rest}", root.display()));
        let rules = without_secrets(
            &odd("./"),
            &[
                odd("./shadow"),
                odd("ssl//private/"),
                PathBuf::from("/elsewhere"),
            ],
        );
        // The secrets' siblings get rules, and a name that only starts like a secret's
        // directory (`sslx` beside `ssl`) is a sibling like any other.
        assert_eq!(
            rules,
            vec![
                root.join("passwd"),
                root.join("ssl/certs"),
                root.join("sslx")
            ]
        );
        assert!(is_below_bytes(b"/etc/ssl/private", b"/etc/ssl"));
        assert!(is_below_bytes(b"/etc", b"/"));
        assert!(is_below_bytes(b"/etc", b"/etc"));
        assert!(!is_below_bytes(b"/etc/sslx", b"/etc/ssl"));
        assert!(!is_below_bytes(b"/et", b"/etc"));
    }

    #[test]
    fn plans_parents_first_with_masks_and_protections_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        fs_err::create_dir_all(work.join(".ssh")).unwrap();
        fs_err::create_dir_all(work.join(".git/hooks")).unwrap();
        fs_err::write(work.join("key_a"), "a").unwrap();
        fs_err::write(work.join("key_b"), "b").unwrap();
        let plan = plan(&grants_in(dir.path()), Path::new("/home/u"), 1000, &[]).unwrap();

        let position = |op: &MountOp| plan.mounts.iter().position(|o| o == op).unwrap();
        let bind = plan
            .mounts
            .iter()
            .position(
                |op| matches!(op, MountOp::Bind { path, writable: true, .. } if path == &work),
            )
            .unwrap();
        assert!(
            bind < position(&MountOp::MaskDir {
                path: work.join(".ssh")
            })
        );
        assert!(
            bind < position(&MountOp::MaskFile {
                path: work.join("key_a")
            })
        );
        assert!(
            bind < position(&MountOp::MaskFile {
                path: work.join("key_b")
            })
        );
        assert!(
            bind < position(&MountOp::Protect {
                path: work.join(".git/hooks")
            })
        );
        assert!(
            position(&MountOp::Tmpfs {
                path: "/home/u".into(),
                mode: 0o700
            }) < position(&MountOp::Dir {
                path: "/run/user/1000".into(),
                mode: 0o700
            }) || depth(Path::new("/home/u")) == depth(Path::new("/run/user/1000"))
        );
        assert_eq!(
            plan.guarded
                .iter()
                .map(|g| g.path.clone())
                .collect::<Vec<_>>(),
            vec![work.join(".git/hooks"), work.join(".mcp.json")]
        );
        assert!(plan.mounts.contains(&MountOp::Pin {
            path: work.join(".git")
        }));
        assert!(
            position(&MountOp::Pin {
                path: work.join(".git")
            }) < position(&MountOp::Protect {
                path: work.join(".git/hooks")
            })
        );
        assert_eq!(plan.skipped, vec![dir.path().join("absent")]);
        assert!(plan.landlock.write.contains(&work));
        assert!(plan.landlock.read.contains(&PathBuf::from("/usr")));
        for window in plan.mounts.windows(2) {
            assert!(
                depth(window[0].path()) <= depth(window[1].path()),
                "{window:?}"
            );
        }
    }

    #[test]
    fn links_are_copied_and_granted_private_dirs_are_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("target", &link).unwrap();
        let grants = Grants {
            read: vec![link.clone()],
            write: vec!["/tmp".into()],
            ..Grants::default()
        };
        let plan = plan(&grants, Path::new("/home/u"), 0, &[]).unwrap();
        assert!(plan.mounts.contains(&MountOp::Symlink {
            path: link,
            target: "target".into()
        }));
        assert!(!plan
            .mounts
            .iter()
            .any(|op| matches!(op, MountOp::Tmpfs { path, .. } if path == Path::new("/tmp"))));
    }
}
