//! Landlock rules from a grant set: what the agent may read, and what it may also write.

use std::path::PathBuf;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

use crate::grants::TcpPorts;
use crate::SandboxError;

/// The newest Landlock ABI this build asks for; older kernels enforce what they can and
/// [`restrict_current_thread`] says so.
const ABI_WANTED: ABI = ABI::V7;

/// The number of the newest Landlock ABI this build asks for: a kernel with an older ABI
/// enforces the rules partially.
pub const ABI_WANTED_NUMBER: u32 = 7;

/// What the agent may use. Everything else on the file system is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Read (and execute) access, recursively.
    pub read: Vec<PathBuf>,
    /// Read and write access, recursively.
    pub write: Vec<PathBuf>,
    /// TCP ports the agent may bind and connect to (Landlock ABI 4); `None` leaves TCP to
    /// the network namespace.
    #[serde(default)]
    pub tcp: Option<TcpPorts>,
}

/// How completely the kernel enforces the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Every requested restriction is enforced.
    Full,
    /// This kernel lacks some Landlock features; the others are enforced.
    Partial,
}

/// `rights` as the file opened as `fd` can take them: rights that only make sense on
/// directories are refused by the kernel on anything else.
fn rights_for(fd: &PathFd, rights: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
    use std::os::fd::AsFd;
    if cordon_sys::process::is_directory(fd.as_fd()).unwrap_or(false) {
        rights
    } else {
        rights & AccessFs::from_file(ABI_WANTED)
    }
}

/// Restricts the calling thread (and what it executes) to `grants`. Threads that already
/// exist are not restricted: call this in the single-threaded sandbox helper just before it
/// executes the agent. Also sets `no_new_privs`.
///
/// Beyond the grants, directories can be listed anywhere (names only; `ls /` and path
/// walks work), and where the kernel has Landlock ABI 6 the thread can neither connect to
/// abstract unix sockets nor signal processes outside its own Landlock domain.
///
/// # Errors
///
/// [`SandboxError::GrantPath`] naming a grant that cannot be opened (it must exist; one this
/// process has no permission to reach gets no rule),
/// [`SandboxError::Landlock`] when the kernel has no Landlock at all or refuses the rules.
pub fn restrict_current_thread(grants: &Rules) -> Result<Enforcement, SandboxError> {
    let landlock = |e: landlock::RulesetError| SandboxError::Landlock(Box::new(e));
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(landlock)?
        .scope(Scope::from_all(ABI_WANTED))
        .map_err(landlock)?;
    if grants.tcp.is_some() {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(landlock)?;
    }
    let mut ruleset = ruleset.create().map_err(landlock)?;
    if let Some(tcp) = &grants.tcp {
        for (ports, access) in [
            (&tcp.bind, AccessNet::BindTcp),
            (&tcp.connect, AccessNet::ConnectTcp),
        ] {
            for port in ports {
                ruleset = ruleset
                    .add_rule(NetPort::new(*port, access))
                    .map_err(landlock)?;
            }
        }
    }
    let root = PathFd::new("/").map_err(|e| SandboxError::GrantPath {
        path: PathBuf::from("/"),
        source: Box::new(e),
    })?;
    ruleset = ruleset
        .add_rule(PathBeneath::new(root, AccessFs::ReadDir))
        .map_err(landlock)?;
    let read = AccessFs::from_read(ABI_WANTED);
    let write = AccessFs::from_all(ABI_WANTED);
    for (paths, rights) in [(&grants.read, read), (&grants.write, write)] {
        for path in paths {
            let fd = match PathFd::new(path) {
                Ok(fd) => fd,
                // A path this process may not even reach (below a directory of another
                // owner's, say cordon's own 0700 state beside a hidden file): nothing below
                // it could be used anyway, and no rule grants less.
                Err(e) if permission_denied(&e) => continue,
                Err(e) => {
                    return Err(SandboxError::GrantPath {
                        path: path.clone(),
                        source: Box::new(e),
                    })
                }
            };
            let rights = rights_for(&fd, rights);
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, rights))
                .map_err(landlock)?;
        }
    }
    let status = ruleset.restrict_self().map_err(landlock)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(Enforcement::Full),
        RulesetStatus::PartiallyEnforced => Ok(Enforcement::Partial),
        RulesetStatus::NotEnforced => Err(SandboxError::LandlockUnavailable),
    }
}

/// Whether opening a rule's path failed for want of permission.
fn permission_denied(err: &landlock::PathFdError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::PermissionDenied;
        }
        source = e.source();
    }
    false
}
