//! The seccomp profile of native agents, as data.
//!
//! Each row of [`ALWAYS`] names a system call and, where only some uses are dangerous, the
//! argument pattern that is. The table is compiled to BPF by [`compile`] and installed by
//! [`apply_to_current_thread`] (also setting `no_new_privs`) just before the sandbox helper
//! executes the agent; the filter is inherited by every descendant.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::SandboxError;

/// When a denied system call matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// When argument `arg` has every bit of `mask` set (`clone` namespace flags).
    FlagsSet {
        /// Argument index.
        arg: u8,
        /// The bits.
        mask: u64,
    },
    /// When the low 32 bits of argument `arg` equal `value`. The kernel reads `ioctl`
    /// requests and socket families as 32-bit values, so the high bits must not be able to
    /// hide a match (`TIOCSTI | 1 << 32` is still `TIOCSTI`).
    Low32Eq {
        /// Argument index.
        arg: u8,
        /// The value.
        value: u32,
    },
    /// When argument 0 is `family` and the protocol (argument 2) is anything but `allowed`
    /// (compared on all 64 bits, so stray high bits deny too).
    SocketProtocolOtherThan {
        /// Address family.
        family: u32,
        /// The one protocol still allowed.
        allowed: u32,
    },
    /// When argument `flags_arg` has every bit of `flags` set and argument `mode_arg` every
    /// bit of `mode` (`open(path, O_CREAT, 04755)`).
    CreateWith {
        /// Index of the open flags.
        flags_arg: u8,
        /// The flag bits (`O_CREAT`, `O_TMPFILE`).
        flags: u64,
        /// Index of the mode.
        mode_arg: u8,
        /// The mode bits (`S_ISUID`, `S_ISGID`).
        mode: u64,
    },
    /// When argument 0 is `family` and the type (argument 1, without `SOCK_NONBLOCK` /
    /// `SOCK_CLOEXEC`) is `kind`.
    Socket {
        /// Address family.
        family: u32,
        /// Socket type, e.g. `SOCK_RAW`.
        kind: u32,
    },
}

/// One denied pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// The system call's name, for people.
    pub name: &'static str,
    /// Its number on this architecture.
    pub nr: i64,
    /// Which uses are denied.
    pub when: When,
    /// Why, in a few words.
    pub why: &'static str,
}

const NS_FLAGS: [(u64, &str); 6] = [
    (libc::CLONE_NEWUSER as u64, "new user namespace"),
    (libc::CLONE_NEWNS as u64, "new mount namespace"),
    (libc::CLONE_NEWPID as u64, "new pid namespace"),
    (libc::CLONE_NEWNET as u64, "new network namespace"),
    (libc::CLONE_NEWIPC as u64, "new ipc namespace"),
    (libc::CLONE_NEWUTS as u64, "new uts namespace"),
];

macro_rules! always {
    ($($name:ident => $why:literal),* $(,)?) => {
        [$(Denied { name: stringify!($name), nr: paste_nr!($name), when: When::Always, why: $why }),*]
    };
}

macro_rules! paste_nr {
    (ptrace) => {
        libc::SYS_ptrace
    };
    (process_vm_readv) => {
        libc::SYS_process_vm_readv
    };
    (process_vm_writev) => {
        libc::SYS_process_vm_writev
    };
    (mount) => {
        libc::SYS_mount
    };
    (umount2) => {
        libc::SYS_umount2
    };
    (fsopen) => {
        libc::SYS_fsopen
    };
    (fsmount) => {
        libc::SYS_fsmount
    };
    (fsconfig) => {
        libc::SYS_fsconfig
    };
    (move_mount) => {
        libc::SYS_move_mount
    };
    (open_tree) => {
        libc::SYS_open_tree
    };
    (mount_setattr) => {
        libc::SYS_mount_setattr
    };
    (pivot_root) => {
        libc::SYS_pivot_root
    };
    (unshare) => {
        libc::SYS_unshare
    };
    (setns) => {
        libc::SYS_setns
    };
    (bpf) => {
        libc::SYS_bpf
    };
    (perf_event_open) => {
        libc::SYS_perf_event_open
    };
    (keyctl) => {
        libc::SYS_keyctl
    };
    (add_key) => {
        libc::SYS_add_key
    };
    (request_key) => {
        libc::SYS_request_key
    };
    (io_uring_setup) => {
        libc::SYS_io_uring_setup
    };
    (io_uring_enter) => {
        libc::SYS_io_uring_enter
    };
    (io_uring_register) => {
        libc::SYS_io_uring_register
    };
    (open_by_handle_at) => {
        libc::SYS_open_by_handle_at
    };
    (name_to_handle_at) => {
        libc::SYS_name_to_handle_at
    };
    (userfaultfd) => {
        libc::SYS_userfaultfd
    };
    (kexec_load) => {
        libc::SYS_kexec_load
    };
    (kexec_file_load) => {
        libc::SYS_kexec_file_load
    };
    (init_module) => {
        libc::SYS_init_module
    };
    (finit_module) => {
        libc::SYS_finit_module
    };
    (delete_module) => {
        libc::SYS_delete_module
    };
    (acct) => {
        libc::SYS_acct
    };
    (swapon) => {
        libc::SYS_swapon
    };
    (swapoff) => {
        libc::SYS_swapoff
    };
    (reboot) => {
        libc::SYS_reboot
    };
    (syslog) => {
        libc::SYS_syslog
    };
}

/// Calls denied whatever their arguments.
pub const ALWAYS: [Denied; 35] = always![
    ptrace => "inspect or control other processes",
    process_vm_readv => "read another process's memory",
    process_vm_writev => "write another process's memory",
    mount => "change the filesystem view",
    umount2 => "uncover what a mount hides",
    fsopen => "new-style mount API",
    fsmount => "new-style mount API",
    fsconfig => "new-style mount API",
    move_mount => "new-style mount API",
    open_tree => "new-style mount API",
    mount_setattr => "change mount flags",
    pivot_root => "change the root",
    unshare => "leave the sandbox's namespaces",
    setns => "join other namespaces",
    bpf => "load kernel programs",
    perf_event_open => "observe other processes and the kernel",
    keyctl => "reach the kernel keyrings",
    add_key => "reach the kernel keyrings",
    request_key => "reach the kernel keyrings",
    io_uring_setup => "io_uring bypasses seccomp",
    io_uring_enter => "io_uring bypasses seccomp",
    io_uring_register => "io_uring bypasses seccomp",
    open_by_handle_at => "open files by handle, past the mount view",
    name_to_handle_at => "file handles",
    userfaultfd => "kernel exploitation primitive",
    kexec_load => "replace the kernel",
    kexec_file_load => "replace the kernel",
    init_module => "load kernel modules",
    finit_module => "load kernel modules",
    delete_module => "unload kernel modules",
    acct => "process accounting",
    swapon => "swap devices",
    swapoff => "swap devices",
    reboot => "reboot",
    syslog => "read the kernel log",
];

/// Calls that set a mode, with the index of their mode argument.
fn mode_setters() -> Vec<(&'static str, i64, u8)> {
    let mut calls = vec![
        ("fchmod", libc::SYS_fchmod, 1),
        ("fchmodat", libc::SYS_fchmodat, 2),
        ("fchmodat2", libc::SYS_fchmodat2, 2),
        ("mkdirat", libc::SYS_mkdirat, 2),
        ("mknodat", libc::SYS_mknodat, 2),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        ("chmod", libc::SYS_chmod, 1),
        ("creat", libc::SYS_creat, 1),
        ("mkdir", libc::SYS_mkdir, 1),
        ("mknod", libc::SYS_mknod, 1),
    ]);
    calls
}

/// Calls that create a file with a mode, with the index of their flags and mode arguments.
fn creating_opens() -> Vec<(&'static str, i64, u8, u8)> {
    let mut calls = vec![("openat", libc::SYS_openat, 2, 3)];
    #[cfg(target_arch = "x86_64")]
    calls.push(("open", libc::SYS_open, 1, 2));
    calls
}

/// Set-user-id and set-group-id files: the program may not make any. A file it creates in a
/// writable grant outlives the sandbox, and its owner is the user who ran cordon (root, for
/// a root-run cordon, through the idmapped workspace): a set-uid copy of a shell left there
/// would give anyone on the machine that user's rights. As systemd's `RestrictSUIDSGID=`.
fn set_id_rows() -> Vec<Denied> {
    let why = "make a set-user-id or set-group-id file that outlives the sandbox";
    let bits = [libc::S_ISUID as u64, libc::S_ISGID as u64];
    let mut rows = Vec::new();
    for (name, nr, arg) in mode_setters() {
        for mask in bits {
            rows.push(Denied {
                name,
                nr,
                when: When::FlagsSet { arg, mask },
                why,
            });
        }
    }
    for (name, nr, flags_arg, mode_arg) in creating_opens() {
        for flags in [libc::O_CREAT as u64, libc::O_TMPFILE as u64] {
            for mode in bits {
                rows.push(Denied {
                    name,
                    nr,
                    when: When::CreateWith {
                        flags_arg,
                        flags,
                        mode_arg,
                        mode,
                    },
                    why,
                });
            }
        }
    }
    rows
}

/// The only socket families a program may create; every other fails with `EAFNOSUPPORT`, as
/// on a kernel without it. `AF_VSOCK` above all: its address space is the virtual machine's,
/// not the network namespace's, so it would reach the hypervisor's services (WSL2 interop,
/// port forwarders, guest agents) past the proxy. Packet, `AF_XDP`, Bluetooth, `AF_ALG` and
/// the rest are kernel surface no agent needs. Within netlink only routing queries are
/// allowed, and raw IP sockets are refused ([`denied`]).
pub const SOCKET_FAMILIES: [(libc::c_int, &str); 4] = [
    (libc::AF_UNIX, "unix"),
    (libc::AF_INET, "inet"),
    (libc::AF_INET6, "inet6"),
    (libc::AF_NETLINK, "netlink"),
];

/// Every denied pattern: [`ALWAYS`], namespace flags of `clone`, terminal injection ioctls,
/// raw and non-route netlink sockets, and set-id file modes.
pub fn denied() -> Vec<Denied> {
    let mut rows: Vec<Denied> = ALWAYS.to_vec();
    rows.extend(set_id_rows());
    for (mask, why) in NS_FLAGS {
        rows.push(Denied {
            name: "clone",
            nr: libc::SYS_clone,
            when: When::FlagsSet { arg: 0, mask },
            why,
        });
    }
    for (request, why) in [
        (libc::TIOCSTI, "inject keystrokes into a terminal"),
        (libc::TIOCLINUX, "console control, can inject input"),
    ] {
        rows.push(Denied {
            name: "ioctl",
            nr: libc::SYS_ioctl,
            when: When::Low32Eq {
                arg: 1,
                value: request as u32,
            },
            why,
        });
    }
    rows.push(Denied {
        name: "socket",
        nr: libc::SYS_socket,
        when: When::SocketProtocolOtherThan {
            family: libc::AF_NETLINK as u32,
            allowed: libc::NETLINK_ROUTE as u32,
        },
        why: "netlink reaches the kernel's audit, firewall and device interfaces; only routing queries are needed",
    });
    for family in [libc::AF_INET, libc::AF_INET6] {
        rows.push(Denied {
            name: "socket",
            nr: libc::SYS_socket,
            when: When::Socket {
                family: family as u32,
                kind: libc::SOCK_RAW as u32,
            },
            why: "raw IP sockets forge traffic",
        });
    }
    rows
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SandboxError::CompileSeccomp(Box::new(e)))
}

fn rule(when: When) -> Result<Option<SeccompRule>, SandboxError> {
    let conditions = match when {
        When::Always => return Ok(None),
        When::FlagsSet { arg, mask } => vec![condition(arg, SeccompCmpOp::MaskedEq(mask), mask)?],
        When::Low32Eq { arg, value } => vec![condition(
            arg,
            SeccompCmpOp::MaskedEq(0xffff_ffff),
            u64::from(value),
        )?],
        When::SocketProtocolOtherThan { family, allowed } => vec![
            condition(0, SeccompCmpOp::MaskedEq(0xffff_ffff), u64::from(family))?,
            condition(2, SeccompCmpOp::Ne, u64::from(allowed))?,
        ],
        When::CreateWith {
            flags_arg,
            flags,
            mode_arg,
            mode,
        } => vec![
            condition(flags_arg, SeccompCmpOp::MaskedEq(flags), flags)?,
            condition(mode_arg, SeccompCmpOp::MaskedEq(mode), mode)?,
        ],
        When::Socket { family, kind } => vec![
            condition(0, SeccompCmpOp::MaskedEq(0xffff_ffff), u64::from(family))?,
            // The low four bits are the type; SOCK_NONBLOCK and SOCK_CLOEXEC sit above them.
            condition(1, SeccompCmpOp::MaskedEq(0xf), u64::from(kind))?,
        ],
    };
    SeccompRule::new(conditions)
        .map(Some)
        .map_err(|e| SandboxError::CompileSeccomp(Box::new(e)))
}

fn arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::CompileSeccomp(Box::new(e)))
}

/// The socket calls whose family is not one of [`SOCKET_FAMILIES`]. The family is compared
/// on all 64 bits, so stray high bits deny too.
fn other_families() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SandboxError> {
    let not_allowed = || -> Result<SeccompRule, SandboxError> {
        let conditions = SOCKET_FAMILIES
            .iter()
            .map(|(family, _)| condition(0, SeccompCmpOp::Ne, *family as u64))
            .collect::<Result<Vec<_>, _>>()?;
        SeccompRule::new(conditions).map_err(|e| SandboxError::CompileSeccomp(Box::new(e)))
    };
    Ok(BTreeMap::from([
        (libc::SYS_socket, vec![not_allowed()?]),
        (libc::SYS_socketpair, vec![not_allowed()?]),
    ]))
}

/// On x86_64, system calls of the x32 ABI share the architecture tag but carry bit 30 in
/// their number: a filter written for x86_64 numbers would let them all through on kernels
/// built with x32 support. They fail with `ENOSYS`, as on kernels without it.
#[cfg(target_arch = "x86_64")]
fn no_x32() -> BpfProgram {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let op = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    vec![
        // Load the system call number (offset 0 of `struct seccomp_data`).
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            0,
            1,
            X32_SYSCALL_BIT,
        ),
        op(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Compiles the profile: the [`denied`] patterns failing with `EPERM`; sockets of families
/// other than [`SOCKET_FAMILIES`] with `EAFNOSUPPORT`; `clone3` and `openat2` with
/// `ENOSYS` (their flags and modes are behind a pointer a filter cannot read, so the C
/// library must fall back to `clone` and `openat`); on x86_64, x32 system calls with
/// `ENOSYS`.
///
/// # Errors
///
/// [`SandboxError::CompileSeccomp`] on an architecture seccompiler does not know.
pub fn compile() -> Result<Vec<BpfProgram>, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut unconditional = Vec::new();
    for row in denied() {
        match rule(row.when)? {
            Some(rule) => rules.entry(row.nr).or_default().push(rule),
            None => unconditional.push(row.nr),
        }
    }
    // An empty rule list matches every call, whatever conditional rows say.
    for nr in unconditional {
        rules.insert(nr, Vec::new());
    }
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(|e| SandboxError::CompileSeccomp(Box::new(e)))?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([
            (libc::SYS_clone3, Vec::new()),
            (libc::SYS_openat2, Vec::new()),
        ]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(|e| SandboxError::CompileSeccomp(Box::new(e)))?;
    let families = SeccompFilter::new(
        other_families()?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
        arch()?,
    )
    .map_err(|e| SandboxError::CompileSeccomp(Box::new(e)))?;
    #[cfg_attr(
        not(target_arch = "x86_64"),
        expect(unused_mut, reason = "only x86_64 adds a program")
    )]
    let mut programs = [eperm, clone3, families]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(|e| SandboxError::CompileSeccomp(Box::new(e))))
        .collect::<Result<Vec<_>, _>>()?;
    #[cfg(target_arch = "x86_64")]
    programs.push(no_x32());
    Ok(programs)
}

/// Installs the profile on the calling thread (and sets `no_new_privs`, which seccomp
/// requires). Threads created afterwards and executed programs inherit it; other existing
/// threads are not affected, so call this in the single-threaded helper just before exec.
///
/// # Errors
///
/// [`SandboxError::ApplySeccomp`] when the kernel refuses the filter.
pub fn apply_to_current_thread() -> Result<(), SandboxError> {
    apply_compiled(&compile()?)
}

/// Installs programs made by [`compile`] on the calling thread (and sets `no_new_privs`).
///
/// # Errors
///
/// [`SandboxError::ApplySeccomp`] when the kernel refuses a program.
pub fn apply_compiled(programs: &[BpfProgram]) -> Result<(), SandboxError> {
    for program in programs {
        seccompiler::apply_filter(program).map_err(|e| SandboxError::ApplySeccomp(Box::new(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denies(name: &str, when: When) -> bool {
        denied().iter().any(|d| d.name == name && d.when == when)
    }

    #[test]
    fn the_issue_list_is_denied() {
        for name in [
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "open_by_handle_at",
            "userfaultfd",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
        ] {
            assert!(denies(name, When::Always), "{name} is not denied");
        }
        for (mask, _) in NS_FLAGS {
            assert!(denies("clone", When::FlagsSet { arg: 0, mask }));
        }
        assert!(denies(
            "ioctl",
            When::Low32Eq {
                arg: 1,
                value: libc::TIOCSTI as u32
            }
        ));
        assert!(denies(
            "ioctl",
            When::Low32Eq {
                arg: 1,
                value: libc::TIOCLINUX as u32
            }
        ));
        assert!(denies(
            "socket",
            When::SocketProtocolOtherThan {
                family: libc::AF_NETLINK as u32,
                allowed: libc::NETLINK_ROUTE as u32
            }
        ));
        assert!(denies(
            "socket",
            When::Socket {
                family: libc::AF_INET as u32,
                kind: libc::SOCK_RAW as u32
            }
        ));
        assert!(denies(
            "socket",
            When::Socket {
                family: libc::AF_INET6 as u32,
                kind: libc::SOCK_RAW as u32
            }
        ));
    }

    #[test]
    fn ordinary_calls_are_not_in_the_table() {
        let names: Vec<&str> = denied().iter().map(|d| d.name).collect();
        for allowed in ["read", "write", "connect", "execve", "fork", "kill"] {
            assert!(!names.contains(&allowed), "{allowed} must stay allowed");
        }
        // Opening, creating and changing modes stay allowed but for the set-id bits.
        for row in denied() {
            if ["openat", "fchmodat", "mkdirat"].contains(&row.name) {
                assert_ne!(row.when, When::Always, "{}", row.name);
            }
        }
        // Plain TCP/UDP sockets are allowed: only the raw type is denied.
        assert!(!denied().iter().any(|d| d.when
            == When::Low32Eq {
                arg: 0,
                value: libc::AF_INET as u32
            }));
    }

    #[test]
    fn set_id_modes_are_denied_on_every_call_that_sets_a_mode() {
        for bit in [libc::S_ISUID as u64, libc::S_ISGID as u64] {
            for name in ["fchmod", "fchmodat", "fchmodat2", "mkdirat", "mknodat"] {
                assert!(
                    denied().iter().any(|d| d.name == name
                        && matches!(d.when, When::FlagsSet { mask, .. } if mask == bit)),
                    "{name} {bit:o}"
                );
            }
            for flags in [libc::O_CREAT as u64, libc::O_TMPFILE as u64] {
                assert!(denies(
                    "openat",
                    When::CreateWith {
                        flags_arg: 2,
                        flags,
                        mode_arg: 3,
                        mode: bit
                    }
                ));
            }
        }
    }

    #[test]
    fn the_profile_compiles() {
        let programs = compile().unwrap();
        let expected = if cfg!(target_arch = "x86_64") { 4 } else { 3 };
        assert_eq!(programs.len(), expected);
        assert!(programs.iter().all(|p| !p.is_empty()));
    }
}
