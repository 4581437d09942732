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
