//! The Linux implementations.

use std::io;

/// `LANDLOCK_CREATE_RULESET_VERSION` from `<linux/landlock.h>`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The highest Landlock ABI version the running kernel supports; `0` when Landlock is not
/// built in or not enabled at boot. Process-wide effect: none (a query).
///
/// # Errors
///
/// Any error other than "Landlock unavailable" (`ENOSYS`, `EOPNOTSUPP`).
pub fn landlock_abi_version() -> io::Result<u32> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) is the
    // documented query form: the kernel reads no memory (attr is NULL, size 0) and returns
    // the ABI version or -1 with errno; it creates no file descriptor.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret >= 0 {
        return Ok(u32::try_from(ret).unwrap_or(0));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(0),
        _ => Err(err),
    }
}

/// Whether the kernel supports seccomp filters (`SECCOMP_MODE_FILTER`). Process-wide
/// effect: none (a query of the calling thread's current mode).
///
/// # Errors
///
/// An unexpected `prctl` error.
pub fn seccomp_filter_supported() -> io::Result<bool> {
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments and only returns the calling
    // thread's seccomp mode (or -1/EINVAL when the kernel has no seccomp).
    let ret = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if err.raw_os_error() == Some(libc::EINVAL) {
            Ok(false)
        } else {
            Err(err)
        };
    }
    // The filter mode is what cordon needs; the actions file lists what filters may do.
    Ok(std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists())
}

/// Forks a child that tries `unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID |
/// CLONE_NEWNET)` and exits; the caller is not changed. Returns `Ok(Ok(()))` when the child
/// could create the namespaces, `Ok(Err(errno))` when the kernel refused.
///
/// # Errors
///
/// When the probe itself could not run (fork or wait failed).
pub fn user_namespace_probe_in_child() -> io::Result<Result<(), io::Error>> {
    // SAFETY: the child only calls async-signal-safe functions (unshare, _exit) before it
    // exits, so forking a possibly multi-threaded parent is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let flags =
            libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWNET;
        // SAFETY: unshare takes only flags; errno is read through __errno_location, which is
        // async-signal-safe; _exit never returns and runs no destructors or atexit handlers.
        unsafe {
            let code = if libc::unshare(flags) == 0 {
                0
            } else {
                *libc::__errno_location()
            };
            libc::_exit(code.clamp(0, 255));
        }
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable c_int; pid is our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    if !libc::WIFEXITED(status) {
        return Err(io::Error::other("the user-namespace probe died"));
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(Ok(())),
        errno => Ok(Err(io::Error::from_raw_os_error(errno))),
    }
}

/// Calls each system call the sandbox's seccomp profile denies, with arguments that do no
/// harm, and returns how each ended: `Ok(())` or the errno. Used by the sandbox's own tests
/// to show that each call goes through without the filter and fails with `EPERM` under it.
///
/// Acts on the calling process: the last probe moves it into a new UTS namespace. Run it
/// in a throw-away process.
pub fn probe_denied_syscalls() -> Vec<(&'static str, Result<(), i32>)> {
    fn errno_of(ret: libc::c_long) -> Result<(), i32> {
        if ret < 0 {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(())
        }
    }
    fn close_fd(ret: libc::c_long) -> Result<(), i32> {
        let result = errno_of(ret);
        if ret >= 0 {
            // SAFETY: `ret` is a file descriptor the probe just created and owns.
            unsafe { libc::close(ret as libc::c_int) };
        }
        result
    }
    let mut out = Vec::new();
    let dev_null = fs_err::File::open("/dev/null");
    let null_fd = dev_null
        .as_ref()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .unwrap_or(-1);
    let mut byte: libc::c_char = 0;
    // SAFETY: for every call below, the arguments are integers, null pointers the kernel
    // rejects before reading, or pointers to locals that outlive the call; no call maps or
    // frees memory the program uses. File descriptors created are closed by `close_fd`.
    unsafe {
        out.push((
            "ptrace",
            errno_of(libc::syscall(
                libc::SYS_ptrace,
                libc::PTRACE_PEEKDATA,
                libc::getppid(),
                0,
                0,
            )),
        ));
        out.push((
            "process_vm_readv",
            errno_of(libc::syscall(
                libc::SYS_process_vm_readv,
                libc::getpid(),
                0,
                0,
                0,
                0,
                0,
            )),
        ));
        out.push((
            "mount",
            errno_of(libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0)),
        ));
        out.push(("setns", errno_of(libc::syscall(libc::SYS_setns, -1, 0))));
        out.push(("bpf", errno_of(libc::syscall(libc::SYS_bpf, 0, 0, 0))));
        out.push((
            "perf_event_open",
            errno_of(libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0)),
        ));
        out.push((
            "keyctl",
            errno_of(libc::syscall(libc::SYS_keyctl, 0, -3, 0)),
        ));
        out.push((
            "io_uring_setup",
            close_fd(libc::syscall(libc::SYS_io_uring_setup, 0, 0)),
        ));
        out.push((
            "open_by_handle_at",
            errno_of(libc::syscall(libc::SYS_open_by_handle_at, -1, 0, 0)),
        ));
        out.push((
            "userfaultfd",
            close_fd(libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC)),
        ));
        out.push((
            "ioctl TIOCSTI",
            errno_of(libc::syscall(
                libc::SYS_ioctl,
                null_fd,
                libc::TIOCSTI as libc::c_ulong,
                &mut byte as *mut libc::c_char,
            )),
        ));
        out.push((
            "ioctl TIOCSTI | 1 << 32",
            errno_of(libc::syscall(
                libc::SYS_ioctl,
                null_fd,
                (libc::TIOCSTI as libc::c_ulong) | (1 << 32),
                &mut byte as *mut libc::c_char,
            )),
        ));
        out.push((
            "socket AF_PACKET",
            close_fd(libc::syscall(
                libc::SYS_socket,
                libc::AF_PACKET,
                libc::SOCK_RAW,
                0,
            )),
        ));
        out.push((
            "socket AF_VSOCK",
            close_fd(libc::syscall(
                libc::SYS_socket,
                libc::AF_VSOCK,
                libc::SOCK_STREAM,
                0,
            )),
        ));
        out.push((
            "socket AF_VSOCK | 1 << 32",
            close_fd(libc::syscall(
                libc::SYS_socket,
                (libc::AF_VSOCK as libc::c_long) | (1 << 32),
                libc::SOCK_STREAM,
                0,
            )),
        ));
        out.push((
            "socket AF_INET SOCK_RAW|SOCK_CLOEXEC",
            close_fd(libc::syscall(
                libc::SYS_socket,
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMP,
            )),
        ));
        out.push((
            "socket AF_NETLINK NETLINK_AUDIT",
            close_fd(libc::syscall(
                libc::SYS_socket,
                libc::AF_NETLINK,
                libc::SOCK_RAW,
                libc::NETLINK_AUDIT,
            )),
        ));
        out.push((
            "control: socket AF_NETLINK NETLINK_ROUTE",
            close_fd(libc::syscall(
                libc::SYS_socket,
                libc::AF_NETLINK,
                libc::SOCK_RAW,
                libc::NETLINK_ROUTE,
            )),
        ));
        // A control: ordinary sockets must keep working under the filter.
        out.push((
            "control: socket AF_INET SOCK_STREAM",
            close_fd(libc::syscall(
                libc::SYS_socket,
                libc::AF_INET,
                libc::SOCK_STREAM,
                0,
            )),
        ));
        out.push((
            "unshare",
            errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS)),
        ));
    }
    drop(dev_null);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI pins the Landlock ABI it expects, so that a kernel without Landlock cannot make
    /// the sandbox tests skip unnoticed.
    #[test]
    fn landlock_abi_matches_the_pinned_expectation() {
        let abi = landlock_abi_version().unwrap();
        match std::env::var("CORDON_EXPECT_LANDLOCK_ABI") {
            Ok(expected) => assert_eq!(abi.to_string(), expected, "Landlock ABI of this kernel"),
            Err(_) => {
                eprintln!("CORDON_EXPECT_LANDLOCK_ABI is not set; this kernel reports ABI {abi}")
            }
        }
    }

    #[test]
    fn probes_run_without_changing_the_caller() {
        let before = std::fs::read_link("/proc/self/ns/user").unwrap();
        let _ = user_namespace_probe_in_child().unwrap();
        assert_eq!(std::fs::read_link("/proc/self/ns/user").unwrap(), before);
        assert!(seccomp_filter_supported().is_ok());
    }
}
