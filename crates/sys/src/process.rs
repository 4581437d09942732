//! Processes, namespaces, mounts, signals and terminals: what the sandbox launcher needs to
//! build an isolated process tree.
//!
//! Every function acts on the calling process (or thread, where it says so). The launcher
//! runs them in a freshly executed, single-threaded helper, never in the multi-threaded
//! `cordon` process itself.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A process id as the kernel gives it.
pub type Pid = libc::pid_t;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_long(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    c_str(path.as_os_str())
}

fn c_str(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` contains a NUL byte", s.to_string_lossy()),
        )
    })
}

/// Which side of a fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The original process; the child's id.
    Parent(Pid),
}

/// The number of threads of the calling process, from `/proc/self/task`.
///
/// # Errors
///
/// When `/proc` cannot be read.
pub fn thread_count() -> io::Result<usize> {
    Ok(fs_err::read_dir("/proc/self/task")?.count())
}

/// Forks the calling process. Refuses unless the process has exactly one thread: a fork of
/// a multi-threaded process may leave locks held by threads that do not exist in the child.
///
/// # Errors
///
/// When the process has other threads or the kernel refuses the fork.
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked above and nothing in this crate
    // starts one), so the child is a complete copy with no lock held by a vanished thread.
    let pid = unsafe { libc::fork() };
    match pid {
        ..0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Moves the calling process into new namespaces (`CLONE_NEW*` flags). With
/// `CLONE_NEWPID` only the process's future children are in the new pid namespace.
///
/// # Errors
///
/// The kernel's refusal (`EPERM` when user namespaces are disabled, `EINVAL` when the
/// process is multi-threaded and asks for a user namespace).
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes only flags and reads no memory.
    check(unsafe { libc::unshare(flags) })
}

/// Turns transparent huge pages off (`disable`) or back on for this process and what it
/// starts (`PR_SET_THP_DISABLE`, inherited across fork and exec). A short-lived process
/// whose allocator asks for huge pages pays for zeroing 2 MiB at each first touch.
///
/// # Errors
///
/// The kernel's refusal.
pub fn set_huge_pages_disabled(disable: bool) -> io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes a flag; no memory is read or written.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(disable),
            0,
            0,
            0,
        )
    })
}

/// Whether transparent huge pages are off for this process (`PR_GET_THP_DISABLE`).
///
/// # Errors
///
/// The kernel's refusal.
pub fn huge_pages_disabled() -> io::Result<bool> {
    // SAFETY: PR_GET_THP_DISABLE takes no argument and returns the flag.
    let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    check(flag)?;
    Ok(flag != 0)
}

/// Asks the kernel to send `signal` to the calling thread when its parent exits.
///
/// # Errors
///
/// The kernel's refusal.
pub fn set_parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is read or written.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) })
}

/// The parent's process id.
pub fn parent_pid() -> Pid {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::getppid() }
}

/// The calling process's real user and group ids.
pub fn real_ids() -> (u32, u32) {
    // SAFETY: getuid and getgid have no arguments and cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// `mount(2)`.
///
/// # Errors
///
/// The kernel's refusal.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(c_path).transpose()?;
    let target = c_path(target)?;
    let fstype = fstype.map(|s| c_str(OsStr::new(s))).transpose()?;
    let data = data.map(|s| c_str(OsStr::new(s))).transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    })
}

/// `struct mount_attr` from `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Makes the mount at `target` and every mount below it read-only, `nosuid` and `nodev`
/// (`mount_setattr` with `AT_RECURSIVE`), leaving their other flags as they were.
///
/// # Errors
///
/// The kernel's refusal (`ENOSYS` before Linux 5.12).
pub fn make_read_only_recursive(target: &Path) -> io::Result<()> {
    set_attributes_recursive(
        target,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
}

/// Makes the mount at `target` and every mount below it `nosuid` and `nodev`.
///
/// # Errors
///
/// As [`make_read_only_recursive`].
pub fn make_nosuid_recursive(target: &Path) -> io::Result<()> {
    set_attributes_recursive(target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
}

fn set_attributes_recursive(target: &Path, attr_set: u64) -> io::Result<()> {
    let target = c_path(target)?;
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `target` is a NUL-terminated path and `attr` a correctly laid out
    // `struct mount_attr` whose size is passed; both outlive the call.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A detached copy of the mount at `tree` (an `O_PATH` descriptor, see [`open_no_symlinks`]),
/// with every mount below it when `recursive` (`open_tree` with `OPEN_TREE_CLONE`), to be
/// attached elsewhere with [`attach_mount_tree`], possibly in another mount namespace. The
/// caller needs `CAP_SYS_ADMIN` over its mount namespace.
///
/// # Errors
///
/// The kernel's refusal (`ENOSYS` before Linux 5.2).
pub fn clone_mount_tree(tree: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is the empty C string (AT_EMPTY_PATH acts on `tree` itself);
    // open_tree returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, tree.as_raw_fd(), c"".as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the detached tree `tree` (from [`clone_mount_tree`]) an idmapped mount, recursively:
/// file owners are shown, and new files stored, through the id mapping of the user
/// namespace `userns` (a descriptor of `/proc/PID/ns/user`). The caller needs
/// `CAP_SYS_ADMIN` over the file system's user namespace and over `userns`.
///
/// # Errors
///
/// The kernel's refusal: `EINVAL` when the file system cannot be idmapped, `EPERM` without
/// the privileges above, `ENOSYS` before Linux 5.12.
pub fn set_idmap_recursive(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).map_err(io::Error::other)?,
    };
    // SAFETY: the path is the empty C string (AT_EMPTY_PATH acts on `tree` itself) and
    // `attr` a correctly laid out `struct mount_attr` whose size is passed; both outlive the
    // call.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// Attaches the detached tree `tree` at `target` in the calling process's mount namespace
/// (`move_mount` with `MOVE_MOUNT_F_EMPTY_PATH`).
///
/// # Errors
///
/// The kernel's refusal.
pub fn attach_mount_tree(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call; the empty one
    // names `tree` itself.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
}

/// `pivot_root(2)`: `new_root` becomes `/`, the old root moves to `put_old`.
///
/// # Errors
///
/// The kernel's refusal.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = c_path(new_root)?;
    let put_old = c_path(put_old)?;
    // SAFETY: both pointers are NUL-terminated paths that outlive the call.
    check_long(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
}

/// Detaches the mount at `target` (`umount2` with `MNT_DETACH`).
///
/// # Errors
///
/// The kernel's refusal.
pub fn unmount_detached(target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: `target` is a NUL-terminated path that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
}

/// Sets the host name of the calling process's UTS namespace.
///
/// # Errors
///
/// The kernel's refusal.
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

/// Starts a new session with the calling process as its leader and no controlling
/// terminal.
///
/// # Errors
///
/// `EPERM` when the process already leads a process group.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    let ret = unsafe { libc::setsid() };
    check(ret)
}

/// Makes the terminal `fd` the controlling terminal of the calling session leader.
///
/// # Errors
///
/// The kernel's refusal.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal); `fd` is open.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) })
}

/// Sets the process group `pgid` as the foreground group of the terminal `fd`.
///
/// # Errors
///
/// The kernel's refusal.
pub fn set_foreground_group(fd: BorrowedFd<'_>, pgid: Pid) -> io::Result<()> {
    // SAFETY: tcsetpgrp takes an open descriptor and a process group id.
    check(unsafe { libc::tcsetpgrp(fd.as_raw_fd(), pgid) })
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability of the calling thread for good: empties the bounding and ambient
/// sets, then the effective, permitted and inheritable sets. A program it then executes
/// gets no capability, even as uid 0.
///
/// # Errors
///
/// The kernel's refusal of any step.
pub fn drop_all_capabilities() -> io::Result<()> {
    let last: libc::c_ulong = fs_err::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    for cap in 0..=last {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory is involved.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            // Numbers above what this kernel knows are EINVAL: nothing to drop.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and the two-element `data` array are laid out as the kernel's
    // version-3 capability structures and outlive the call.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    })
}

/// Opens the single name `name` in the directory `dir` without following any symbolic link
/// or leaving `dir` (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), adding
/// `O_NOFOLLOW | O_CLOEXEC` to `flags`. With `O_PATH` a trailing link is opened itself.
///
/// # Errors
///
/// The kernel's refusal: `ELOOP` for a link (without `O_PATH`), `EXDEV` for a name that
/// leaves `dir`, `ENOSYS` before Linux 5.6.
pub fn open_beneath(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        dir.as_raw_fd(),
        &c_str(name)?,
        flags,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens the absolute path `path` without following any symbolic link in any of its
/// components (`openat2` with `RESOLVE_NO_SYMLINKS`), adding `O_NOFOLLOW | O_CLOEXEC` to
/// `flags`: a path planned as canonical that now holds a link has been tampered with.
///
/// # Errors
///
/// The kernel's refusal: `ELOOP` when a component is a link, `ENOSYS` before Linux 5.6.
pub fn open_no_symlinks(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        libc::AT_FDCWD,
        &c_path(path)?,
        flags,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

fn openat2(
    dir: libc::c_int,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: open_how is a plain struct of integers; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve;
    // SAFETY: `path` is NUL-terminated and `how` a correctly laid out `struct open_how` whose
    // size is passed; both outlive the call, which returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Renames `from` to `to`, both names in the directory `dir`, failing if `to` exists
/// (`renameat2` with `RENAME_NOREPLACE`). Neither name is resolved through a link.
///
/// # Errors
///
/// The kernel's refusal.
pub fn rename_in(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    let from = c_str(from)?;
    let to = c_str(to)?;
    // SAFETY: both names are NUL-terminated and outlive the call.
    check(unsafe {
        libc::renameat2(
            dir.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })
}

/// Whether `fd` (opened with `O_PATH` or not) is a directory: `fstat`, no path looked up.
///
/// # Errors
///
/// The kernel's refusal.
pub fn is_directory(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the whole buffer, which lives for the call, or fails.
    check(unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Whether the file at `path` (not followed if a link) carries file capabilities (the
/// `security.capability` extended attribute).
///
/// # Errors
///
/// The kernel's refusal, but for the attribute's absence or the file system's lack of
/// extended attributes, which are `Ok(false)`.
pub fn has_file_capabilities(path: &Path) -> io::Result<bool> {
    let path = c_path(path)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; a null buffer of size 0
    // asks only for the attribute's size.
    let ret = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if ret >= 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENODATA | libc::ENOTSUP) => Ok(false),
        _ => Err(err),
    }
}

/// Whether the calling process may create entries in the directory `path` (`access` with
/// `W_OK | X_OK`, by the real ids).
pub fn may_create_in(path: &Path) -> bool {
    let Ok(path) = c_path(path) else {
        return false;
    };
    // SAFETY: `path` is a NUL-terminated path that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Empties the calling process's supplementary groups (needs `CAP_SETGID`).
///
/// # Errors
///
/// The kernel's refusal.
pub fn clear_supplementary_groups() -> io::Result<()> {
    // SAFETY: a count of 0 with a null list reads no memory.
    check(unsafe { libc::setgroups(0, std::ptr::null()) })
}

/// Sets the real, effective and saved group ids to `gid`, then the user ids to `uid`, as
/// numbered in the calling process's user namespace.
///
/// # Errors
///
/// The kernel's refusal (`EINVAL` when an id is not mapped in the namespace).
pub fn set_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setresgid and setresuid take plain integers.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::setresuid(uid, uid, uid) })
}

/// A connected pair of `SOCK_SEQPACKET` unix sockets: each write is one message, read
/// whole, and a closed peer reads as end of file. Both ends are close-on-exec.
///
/// # Errors
///
/// The kernel's refusal.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: the kernel just returned both descriptors; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for the child `pid` to end and returns its exit code (128 + N when signal N
/// killed it).
///
/// # Errors
///
/// When waiting fails for a reason other than an interruption (`ECHILD`: not a child).
pub fn wait_for(pid: Pid) -> io::Result<i32> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return Ok(exit_code(status));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Marks every file descriptor from `first` up as close-on-exec, so that nothing inherited
/// reaches the program executed next.
///
/// # Errors
///
/// The kernel's refusal (`close_range` needs Linux 5.11).
pub fn set_cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors; it
    // closes none, so no owned descriptor of this process is invalidated.
    check(unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) })
}

/// Duplicates `fd` onto descriptor number `target` (0, 1 or 2 for the standard streams).
///
/// # Errors
///
/// The kernel's refusal.
pub fn duplicate_onto(fd: BorrowedFd<'_>, target: libc::c_int) -> io::Result<()> {
    if fd.as_raw_fd() == target {
        return Ok(());
    }
    // SAFETY: dup2 closes `target` and reuses the number. Callers only target the standard
    // streams, which this process does not hold as `OwnedFd`s.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) })
}

/// Executes `argv[0]`, searched in `PATH`, with the calling process's environment. Returns
/// only on failure.
pub fn exec(argv: &[std::ffi::OsString]) -> io::Error {
    let args: io::Result<Vec<CString>> = argv.iter().map(|a| c_str(a)).collect();
    let args = match args {
        Ok(args) if !args.is_empty() => args,
        Ok(_) => return io::Error::new(io::ErrorKind::InvalidInput, "no command to run"),
        Err(e) => return e,
    };
    let mut pointers: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    // SAFETY: `pointers` is a NULL-terminated array of NUL-terminated strings owned by
    // `args`, alive for the call; execvp only returns on failure.
    unsafe { libc::execvp(pointers[0], pointers.as_ptr()) };
    io::Error::last_os_error()
}

/// Ends the calling process at once with `code`: no destructor, no `atexit` handler, no
/// buffered output flushed.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Sends `signal` to process `pid` (to the process group `-pid` when negative).
///
/// # Errors
///
/// The kernel's refusal (`ESRCH` when it is gone).
pub fn kill(pid: Pid, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes integers only.
    check(unsafe { libc::kill(pid, signal) })
}

/// A descriptor of process `pid` (`pidfd_open`): signals sent through it with
/// [`pidfd_signal`] reach that process or nobody, never a later process that reused its id.
/// Open it while the process cannot have been reaped (it is the caller's unwaited child).
///
/// # Errors
///
/// The kernel's refusal (`ESRCH` when it is gone, `ENOSYS` before Linux 5.3).
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    check_long(fd)?;
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns (close-on-exec by
    // default).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process behind `pidfd` ([`pidfd_open`]).
///
/// # Errors
///
/// The kernel's refusal (`ESRCH` when the process has ended).
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number, a null siginfo and no
    // flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check_long(ret)
}

/// The signals a supervising process passes on to the process it supervises.
pub const FORWARDED_SIGNALS: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// A signal mask saved by [`block_supervisor_signals`].
#[derive(Clone, Copy)]
pub struct SavedSignalMask(libc::sigset_t);

impl std::fmt::Debug for SavedSignalMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SavedSignalMask")
    }
}

fn supervisor_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and update the local set; the signal numbers
    // are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in FORWARDED_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// Blocks the forwarded signals and `SIGCHLD` in the calling thread, so that
/// [`supervise`] receives them with `sigwaitinfo`; children inherit the mask, so they must
/// restore it with [`restore_signal_mask`] before executing anything.
///
/// # Errors
///
/// The kernel's refusal.
pub fn block_supervisor_signals() -> io::Result<SavedSignalMask> {
    let set = supervisor_set();
    // SAFETY: both pointers refer to valid sigset_t values that outlive the call.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        check(libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old))?;
        Ok(SavedSignalMask(old))
    }
}

/// Restores a mask saved by [`block_supervisor_signals`].
///
/// # Errors
///
/// The kernel's refusal.
pub fn restore_signal_mask(saved: &SavedSignalMask) -> io::Result<()> {
    // SAFETY: `saved.0` is a valid sigset_t; the old mask is not wanted (null).
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &saved.0, std::ptr::null_mut()) })
}

/// Gives `SIGPIPE` its default action back in the calling process, as `std::process::Command`
/// does for the programs it starts: the Rust runtime ignores it in every Rust program (this
/// process among them), and a program executed with it ignored would, writing to a closed
/// pipe, get `EPIPE` instead of ending quietly (`yes | head -1` would complain).
///
/// # Errors
///
/// The kernel's refusal.
pub fn default_broken_pipe_signal() -> io::Result<()> {
    // SAFETY: SIG_DFL is a valid disposition for SIGPIPE; no handler or memory is involved.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a child ended, as a shell reports it: its exit code, or 128 + the signal that
/// killed it.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Waits for `child` while passing on each of [`FORWARDED_SIGNALS`] to it (to its process
/// group when `to_group`), and reaps every other child that ends meanwhile (as the init of
/// a pid namespace must). Returns the child's exit code, 128 + N when signal N killed it.
/// Call [`block_supervisor_signals`] before forking `child`.
///
/// # Errors
///
/// When waiting fails for a reason other than an interruption.
pub fn supervise(child: Pid, to_group: bool) -> io::Result<i32> {
    let set = supervisor_set();
    loop {
        // Reap everything that has ended; the child's status ends the wait.
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: `status` is a valid, writable c_int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == child {
                return Ok(exit_code(status));
            }
            if pid <= 0 {
                if pid < 0 {
                    let err = io::Error::last_os_error();
                    if err.raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    return Err(err);
                }
                break;
            }
        }
        // SAFETY: `info` is a writable siginfo_t; `set` a valid sigset_t.
        let signal = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&set, &mut info)
        };
        if signal < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        if signal != libc::SIGCHLD {
            let target = if to_group { -child } else { child };
            // The child may be gone already; its status is collected on the next round.
            let _ = kill(target, signal);
        }
    }
}

/// The processor time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`).
///
/// # Errors
///
/// The kernel's refusal.
pub fn thread_cpu_time() -> io::Result<std::time::Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is, and keeps no pointer.
    check(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) })?;
    Ok(std::time::Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    ))
}

/// Whether `fd` refers to a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Discards what was typed on the terminal `fd` and not read yet.
///
/// # Errors
///
/// The kernel's refusal (not a terminal).
pub fn discard_input(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: tcflush takes a descriptor and a queue selector.
    check(unsafe { libc::tcflush(fd.as_raw_fd(), libc::TCIFLUSH) })
}

/// Waits at most `timeout` for `fd` to have something to read (or to be closed); whether it
/// has.
///
/// # Errors
///
/// The kernel's refusal (an interrupted wait is not one: it reads as nothing yet).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    let mut polled = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `polled` is one valid pollfd and the count passed is 1.
    let ready = unsafe { libc::poll(&mut polled, 1, millis) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(ready > 0)
}

/// Whether the other end of `fd` has gone: the reader of a pipe closed it, the peer of a
/// socket hung up. Answers at once; a terminal or a file never reports it.
pub fn other_end_gone(fd: BorrowedFd<'_>) -> bool {
    // No event asked for: poll reports an error or a hang-up whatever is asked.
    let mut polled = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: `polled` is one valid pollfd and the count passed is 1; a zero timeout does
    // not wait.
    let ready = unsafe { libc::poll(&mut polled, 1, 0) };
    ready > 0 && polled.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Points standard error at `/dev/null` once its reader has gone (a pipe closed on the
/// other side can never be read again), so that what libraries write there with
/// `eprintln!`, which panics on a failed write, is lost quietly, as it would be anyway.
/// Returns whether it did.
pub fn quiet_stderr_once_unread() -> bool {
    if !other_end_gone(io::stderr().as_fd()) {
        return false;
    }
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return false;
    };
    // SAFETY: both descriptors are open; dup2 replaces descriptor 2 in one step, so no
    // other thread sees it closed.
    unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) >= 0 }
}

/// A new pseudo-terminal: the controlling side (kept by cordon) and the terminal side
/// (given to the sandboxed program as its standard streams).
///
/// # Errors
///
/// The kernel's refusal at any step.
pub fn open_pseudo_terminal() -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt takes flags and returns a new descriptor that we own.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `master` is a descriptor just opened by this function and owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: grantpt and unlockpt take the open master descriptor.
    check(unsafe { libc::grantpt(master.as_raw_fd()) })?;
    // SAFETY: as above.
    check(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` is a writable buffer of the length passed.
    let ret = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name` (checked: ret == 0).
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    // SAFETY: `path` is NUL-terminated; open returns a new descriptor or -1.
    let slave = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `slave` was just opened and is owned by nobody else.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// A terminal's settings, saved so they can be put back.
#[derive(Clone, Copy)]
pub struct TerminalMode(libc::termios);

impl std::fmt::Debug for TerminalMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminalMode")
    }
}

/// Reads the settings of the terminal `fd`.
///
/// # Errors
///
/// The kernel's refusal (`ENOTTY` when `fd` is no terminal).
pub fn terminal_mode(fd: BorrowedFd<'_>) -> io::Result<TerminalMode> {
    // SAFETY: `mode` is a writable termios; `fd` is open.
    unsafe {
        let mut mode: libc::termios = std::mem::zeroed();
        check(libc::tcgetattr(fd.as_raw_fd(), &mut mode))?;
        Ok(TerminalMode(mode))
    }
}

/// Whether standard error is a terminal in raw mode (set so by `cordon exec` while it relays
/// a program's terminal), which does not turn a line feed into a carriage return and a line
/// feed: a line written there ends in both.
pub fn stderr_is_raw_terminal() -> bool {
    terminal_mode(io::stderr().as_fd()).is_ok_and(|TerminalMode(mode)| {
        mode.c_oflag & libc::OPOST == 0 || mode.c_oflag & libc::ONLCR == 0
    })
}

/// Applies saved settings to the terminal `fd`.
///
/// # Errors
///
/// The kernel's refusal.
pub fn set_terminal_mode(fd: BorrowedFd<'_>, mode: &TerminalMode) -> io::Result<()> {
    // SAFETY: `mode.0` is a valid termios; `fd` is open.
    check(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &mode.0) })
}

/// Puts the terminal `fd` in raw mode (no echo, no line editing, no signals from keys), so
/// that every key reaches the program on the other side of a pseudo-terminal. Returns the
/// settings to restore.
///
/// # Errors
///
/// The kernel's refusal.
pub fn make_raw(fd: BorrowedFd<'_>) -> io::Result<TerminalMode> {
    let saved = terminal_mode(fd)?;
    let mut raw = saved.0;
    // SAFETY: cfmakeraw updates the local termios in place.
    unsafe { libc::cfmakeraw(&mut raw) };
    set_terminal_mode(fd, &TerminalMode(raw))?;
    Ok(saved)
}

/// Copies the window size of terminal `from` to terminal `to`.
///
/// # Errors
///
/// The kernel's refusal.
pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCGWINSZ writes a winsize into `size`; TIOCSWINSZ reads it; both fds are open.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        check(libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut size))?;
        check(libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &size))
    }
}

/// Lets `fd` be inherited across `exec` (clears `FD_CLOEXEC`) or not.
///
/// # Errors
///
/// The kernel's refusal.
pub fn set_inheritable(fd: BorrowedFd<'_>, inheritable: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD read and set the descriptor flags of an open descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
        check(flags)?;
        let flags = if inheritable {
            flags & !libc::FD_CLOEXEC
        } else {
            flags | libc::FD_CLOEXEC
        };
        check(libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags))
    }
}

/// Takes ownership of descriptor `fd`, inherited from the process that executed this one,
/// and marks it close-on-exec.
///
/// # Errors
///
/// `EBADF` when no such descriptor is open, or when `fd` is a standard stream.
pub fn take_inherited_fd(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only checks that the descriptor is open.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open (checked above) and was handed to this process by its
    // parent for this purpose; nothing else in the process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_inheritable(owned.as_fd(), false)?;
    Ok(owned)
}

/// Brings the loopback interface of the calling process's network namespace up, as a new
/// network namespace starts with it down.
///
/// # Errors
///
/// The kernel's refusal.
pub fn bring_loopback_up() -> io::Result<()> {
    // SAFETY: socket returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `request` is a zeroed ifreq whose name holds "lo" NUL-terminated; the two
    // ioctls read and write its flags field only.
    unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        check(libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut request,
        ))?;
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &request,
        ))
    }
}

/// Sends the descriptor `fd` over the unix socket `socket` (`SCM_RIGHTS`), with one byte of
/// data.
///
/// # Errors
///
/// The kernel's refusal.
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    let mut byte = [0u8; 1];
    // SAFETY: `space` is sized with CMSG_SPACE for one int and aligned for cmsghdr (u64
    // array); `msg` points at locals that outlive sendmsg; CMSG_FIRSTHDR of that buffer is
    // non-null (the control length is at least one header), and CMSG_DATA has room for the
    // one descriptor copied into it.
    unsafe {
        let mut space = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::copy_nonoverlapping(
            (&raw as *const libc::c_int).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<libc::c_int>(),
        );
        if libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Who is at the other end of the connected unix socket `socket`, as the kernel recorded it
/// when the connection was made: `(pid, uid, gid)`, the pid as seen from the caller's pid
/// namespace (0 when the peer's process is not visible there).
///
/// # Errors
///
/// The kernel's refusal (not a unix socket, not connected).
pub fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<(Pid, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a local that outlives the
    // call, and updates `len`.
    check(unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    })?;
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short SO_PEERCRED answer",
        ));
    }
    Ok((cred.pid, cred.uid, cred.gid))
}

/// Receives a descriptor sent with [`send_fd`]; `Ok(None)` when the peer closed without
/// sending one.
///
/// # Errors
///
/// The kernel's refusal (`EAGAIN` after the socket's receive timeout).
pub fn recv_fd(socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    // SAFETY: as in send_fd, `msg` describes locals that outlive recvmsg. The kernel writes
    // at most msg_controllen bytes of control data; a descriptor is read only from an
    // SCM_RIGHTS header of the right length, and MSG_CMSG_CLOEXEC marks it close-on-exec.
    unsafe {
        let mut space = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&space);
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || cmsg.is_null() {
            return Ok(None);
        }
        if (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            || (*cmsg).cmsg_len
                != libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected control message",
            ));
        }
        let mut raw: libc::c_int = -1;
        std::ptr::copy_nonoverlapping(
            libc::CMSG_DATA(cmsg),
            (&mut raw as *mut libc::c_int).cast::<u8>(),
            std::mem::size_of::<libc::c_int>(),
        );
        if raw < 0 {
            return Ok(None);
        }
        Ok(Some(OwnedFd::from_raw_fd(raw)))
    }
}

/// Moves up to `len` bytes from `from` to `to` inside the kernel (`splice`, without
/// blocking on the pipe end); one of the two must be a pipe. `Ok(0)` at end of input;
/// `WouldBlock` when either side is not ready.
///
/// # Errors
///
/// The kernel's refusal.
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: splice takes two open descriptors, null offsets (both are streams), a length
    // and flags; it touches no memory of this process.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Grows the pipe `fd` to `size` bytes (`F_SETPIPE_SZ`); returns the size granted.
///
/// # Errors
///
/// The kernel's refusal (`EPERM` above `/proc/sys/fs/pipe-max-size` for unprivileged users).
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an integer; no memory is involved.
    let granted = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    if granted < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(granted as usize)
    }
}
