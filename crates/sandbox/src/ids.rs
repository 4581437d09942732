//! Who the sandboxed program is on the host, and how the granted trees reach its view.
//!
//! When cordon runs as an ordinary user, the sandbox's user namespace maps that user to
//! itself: inside and outside, the program is the same unprivileged user.
//!
//! When cordon runs as root, the program must not be host root: the kernel grants some
//! things to any process whose effective uid is the global root, whatever its namespace
//! and capabilities (global sysctls such as `kernel.core_pattern`, root-owned `0600`
//! files). So the namespace maps its uid and gid 0 to an unprivileged id of its own
//! ([`root_runs_as`]): the program still sees itself as root, while to the host it is an id
//! that owns nothing and that no other process shares (not `nobody`, which daemons use). Only a process
//! with `CAP_SETUID` in the parent namespace may write such a mapping, and the helper has
//! left that namespace when it needs one, so before entering the namespaces it forks a
//! *mapper* that stays behind as host root. The mapper writes the helper's id maps, then
//! opens the granted trees for the view (`open_tree`, in the host's mount namespace) and
//! hands them over. Writable trees become idmapped mounts through the sandbox's namespace:
//! files owned by root on disk show as owned by the program, and what it creates is stored
//! as owned by root, so a root-owned workspace stays writable and keeps its owners. Read-only
//! trees are not idmapped: root-only files in them stay unreadable.
//!
//! ```text
//! helper ─fork─▶ mapper (host root, host mount namespace)
//!   │ unshare ──"unshared"──▶ writes /proc/HELPER/{uid_map,setgroups,gid_map}
//!   │         ◀─────"ok"─────
//!   │ (the policy decides)
//!   │ ──[paths, writable]───▶ open_tree each; idmap the writable ones
//!   │ ◀──"ok", descriptors───  exits
//! ```

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use cordon_sys::process::{self as sys, Forked, Pid};
use serde::{Deserialize, Serialize};

use crate::plan::Identity;

/// The first of the host ids a root-run sandbox takes, in the high range that container
/// managers also draw from (systemd-nspawn's `--private-users=pick` above 0x80000).
pub const ROOT_RUNS_AS_FIRST: u32 = 0x7A00_0000;

/// The host user and group id of the sandbox whose helper is `helper`, when cordon runs as
/// root: unique among running sandboxes (process ids are), owned by no file (every writable
/// tree is idmapped, so files are stored as root's) and by no other process. Inside, the
/// program is uid 0.
pub fn root_runs_as(helper: Pid) -> u32 {
    ROOT_RUNS_AS_FIRST + helper.unsigned_abs()
}

/// The largest message between helper and mapper.
const MAX_MESSAGE: usize = 1 << 20;

const UNSHARED: &[u8] = b"unshared";
const OK: &[u8] = b"ok";

/// One tree of the view, in the order the view attaches them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The host path, without links.
    pub path: PathBuf,
    /// Whether the program may write below it (idmapped when cordon runs as root).
    pub writable: bool,
    /// What the path was when the view was planned.
    pub identity: Identity,
}

/// Opens `source` as planned: no link may have appeared in its path, and it must still be
/// the same file. Otherwise something swapped it after the plan (a race that could make a
/// privileged opener mount another tree), and the launch stops.
fn open_planned(source: &Source) -> Result<OwnedFd, String> {
    use std::os::unix::fs::MetadataExt;
    let changed = || {
        format!(
            "`{}` changed between the decision and the launch (a link or another directory now stands there); refusing to launch",
            source.path.display()
        )
    };
    let fd = sys::open_no_symlinks(&source.path, libc::O_PATH).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            changed()
        } else {
            format!("cannot open `{}`: {e}", source.path.display())
        }
    })?;
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect `{}`: {e}", source.path.display()))?;
    if (meta.dev(), meta.ino()) != (source.identity.dev, source.identity.ino) {
        return Err(changed());
    }
    Ok(file.into())
}

/// The mapper, seen from the helper.
pub(crate) struct Mapper {
    socket: std::fs::File,
    pid: Pid,
}

fn send(socket: &mut std::fs::File, message: &[u8]) -> std::io::Result<()> {
    socket.write_all(message)
}

fn receive(socket: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let n = socket.read(&mut buffer)?;
    buffer.truncate(n);
    Ok(buffer)
}

/// The mapper's answer: "ok", or why not.
fn expect_ok(message: &[u8]) -> Result<(), String> {
    match message {
        OK => Ok(()),
        [] => Err("the id mapper ended without an answer".into()),
        other => Err(String::from_utf8_lossy(other).into_owned()),
    }
}

impl Mapper {
    /// Empties the helper's supplementary groups (root's groups must not follow the program
    /// into the namespace, where they could no longer be dropped) and forks the mapper.
    /// Call while the helper is single-threaded and still in the host's namespaces.
    pub(crate) fn start() -> std::io::Result<Mapper> {
        sys::clear_supplementary_groups()?;
        let helper = std::process::id() as Pid;
        give_streams(root_runs_as(helper))?;
        let (ours, theirs) = sys::seqpacket_pair()?;
        match sys::fork_single_threaded()? {
            Forked::Child => {
                drop(ours);
                mapper_main(theirs, helper)
            }
            Forked::Parent(pid) => Ok(Mapper {
                socket: std::fs::File::from(ours),
                pid,
            }),
        }
    }

    /// Has the mapper write the maps of the namespace the helper has just entered.
    pub(crate) fn map_ids(&mut self) -> Result<(), String> {
        send(&mut self.socket, UNSHARED).map_err(|e| e.to_string())?;
        expect_ok(&receive(&mut self.socket).map_err(|e| e.to_string())?)
    }

    /// Has the mapper open `sources` and waits for it to end.
    pub(crate) fn open(mut self, sources: &[Source]) -> Result<Vec<OwnedFd>, String> {
        let opened = (|| {
            let request = serde_json::to_vec(sources).map_err(|e| e.to_string())?;
            send(&mut self.socket, &request).map_err(|e| e.to_string())?;
            expect_ok(&receive(&mut self.socket).map_err(|e| e.to_string())?)?;
            let mut trees = Vec::with_capacity(sources.len());
            for source in sources {
                match sys::recv_fd(self.socket.as_fd()) {
                    Ok(Some(fd)) => trees.push(fd),
                    Ok(None) => {
                        return Err(format!(
                            "the id mapper sent no tree for `{}`",
                            source.path.display()
                        ))
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(trees)
        })();
        drop(self.socket);
        let _ = sys::wait_for(self.pid);
        opened
    }
}

/// The mapper's whole life: host root, in the host's namespaces, doing the two things the
/// helper no longer can.
fn mapper_main(socket: OwnedFd, helper: Pid) -> ! {
    if sys::set_parent_death_signal(libc::SIGKILL).is_err() || sys::parent_pid() != helper {
        sys::exit_now(1);
    }
    let mut socket = std::fs::File::from(socket);
    let answer = |socket: &mut std::fs::File, result: Result<(), String>| {
        let ok = result.is_ok();
        let message = match result {
            Ok(()) => OK.to_vec(),
            Err(e) => e.into_bytes(),
        };
        if send(socket, &message).is_err() || !ok {
            sys::exit_now(1);
        }
    };
    match receive(&mut socket) {
        Ok(message) if message == UNSHARED => {}
        // The helper failed before entering the namespaces; it says why.
        _ => sys::exit_now(1),
    }
    let maps = write_maps(helper);
    answer(&mut socket, maps);
    let request = match receive(&mut socket) {
        Ok(request) if !request.is_empty() => request,
        // Cancelled: the policy refused, or the helper failed.
        _ => sys::exit_now(0),
    };
    let trees = serde_json::from_slice::<Vec<Source>>(&request)
        .map_err(|e| format!("unreadable list of trees: {e}"))
        .and_then(|sources| open_for(helper, &sources));
    match trees {
        Ok(trees) => {
            answer(&mut socket, Ok(()));
            for tree in &trees {
                if sys::send_fd(socket.as_fd(), tree.as_fd()).is_err() {
                    sys::exit_now(1);
                }
            }
            sys::exit_now(0)
        }
        Err(e) => {
            answer(&mut socket, Err(e));
            sys::exit_now(1)
        }
    }
}

/// Pipes and sockets on the standard streams, created by root, are `0600` root's: the
/// program, no longer root, could still use the descriptors it inherits but not reopen them
/// (`echo > /dev/stderr`, `curl -o /dev/stdout`). They are handed to its id. Regular files
/// and named FIFOs (the person's own) and terminals (never the program's: it gets its own)
/// are left as they are.
fn give_streams(id: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let streams = [
        std::io::stdin().as_fd().try_clone_to_owned(),
        std::io::stdout().as_fd().try_clone_to_owned(),
        std::io::stderr().as_fd().try_clone_to_owned(),
    ];
    for stream in streams.into_iter().flatten() {
        let file = std::fs::File::from(stream);
        let Ok(meta) = file.metadata() else {
            continue;
        };
        let kind = meta.file_type();
        // Only anonymous pipes and sockets (`pipe:[N]`, `socket:[N]`): a named FIFO on disk
        // belongs to someone and keeps its owner.
        let anonymous =
            fs_err::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).is_ok_and(|target| {
                let target = target.to_string_lossy();
                target.starts_with("pipe:[") || target.starts_with("socket:[")
            });
        if meta.uid() == 0 && anonymous && (kind.is_fifo() || kind.is_socket()) {
            std::os::unix::fs::fchown(&file, Some(id), Some(id))?;
        }
    }
    Ok(())
}

fn write_maps(helper: Pid) -> Result<(), String> {
    let id = root_runs_as(helper);
    let line = format!("0 {id} 1");
    let proc = PathBuf::from(format!("/proc/{helper}"));
    fs_err::write(proc.join("uid_map"), &line)
        .and_then(|()| fs_err::write(proc.join("setgroups"), "deny"))
        .and_then(|()| fs_err::write(proc.join("gid_map"), &line))
        .map_err(|e| format!("cannot map root to the unprivileged id {id}: {e}"))
}

/// Opens each source as a detached tree; writable ones idmapped through the helper's user
/// namespace.
fn open_for(helper: Pid, sources: &[Source]) -> Result<Vec<OwnedFd>, String> {
    let userns_path = format!("/proc/{helper}/ns/user");
    let userns = fs_err::File::open(&userns_path).map_err(|e| e.to_string())?;
    let mut trees = Vec::with_capacity(sources.len());
    for source in sources {
        // A writable tree comes without the mounts below it: idmapped, they would become
        // writable as root too. What is mounted there must be granted on its own.
        let tree = clone_planned(source, !source.writable)?;
        if source.writable {
            sys::set_idmap_recursive(tree.as_fd(), userns.file().as_fd()).map_err(|e| {
                let why = match e.raw_os_error() {
                    Some(libc::EINVAL) => "its file system (or one mounted below it) does not support idmapped mounts".to_string(),
                    Some(libc::ENOSYS) => "this kernel has no idmapped mounts (Linux 5.12 or later)".to_string(),
                    _ => e.to_string(),
                };
                format!(
                    "cannot give the sandbox write access to `{}` while cordon runs as root: {why}; \
                     run cordon as an ordinary user, or grant the path read-only",
                    source.path.display()
                )
            })?;
        }
        trees.push(tree);
    }
    Ok(trees)
}

/// Opens `sources` in the calling process's own mount namespace (the helper of an ordinary
/// user, after entering its namespaces): no id mapping is needed.
pub(crate) fn open_here(sources: &[Source]) -> Result<Vec<OwnedFd>, String> {
    sources
        .iter()
        .map(|source| clone_planned(source, true))
        .collect()
}

/// A detached copy of `source`'s mount tree (with the mounts below it when `recursive`),
/// opened as planned ([`open_planned`]).
fn clone_planned(source: &Source, recursive: bool) -> Result<OwnedFd, String> {
    sys::clone_mount_tree(open_planned(source)?.as_fd(), recursive)
        .map_err(|e| format!("cannot open `{}`: {e}", source.path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &std::path::Path) -> Source {
        use std::os::unix::fs::MetadataExt;
        let meta = fs_err::metadata(path).unwrap();
        Source {
            path: path.to_path_buf(),
            writable: true,
            identity: Identity {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        }
    }

    #[test]
    fn a_tree_swapped_after_planning_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("p");
        let work = parent.join("etc");
        fs_err::create_dir_all(&work).unwrap();
        let planned = source(&work);
        assert!(open_planned(&planned).is_ok());
        // Another directory of the same name in its place.
        fs_err::rename(&parent, dir.path().join("p.old")).unwrap();
        fs_err::create_dir_all(&work).unwrap();
        let err = open_planned(&planned).unwrap_err();
        assert!(
            err.contains("changed between the decision and the launch"),
            "{err}"
        );
        // A link in a parent (`p -> /`): the path now names the host's /etc.
        fs_err::remove_dir_all(&parent).unwrap();
        std::os::unix::fs::symlink("/", &parent).unwrap();
        let err = open_planned(&planned).unwrap_err();
        assert!(
            err.contains("changed between the decision and the launch"),
            "{err}"
        );
    }
}
