//! Thin, safe wrappers over the Linux system calls cordon needs.
//!
//! This is the one crate of the workspace with `unsafe` code; every block carries a
//! `SAFETY:` comment. Functions are named after what they do and say whether they act on
//! the calling thread, the process, or a throw-away child process.
//!
//! Not here: policy, sandbox layout, anything that decides. Callers decide; this crate only
//! asks the kernel.
//!
//! ```
//! match cordon_sys::landlock_abi_version() {
//!     Ok(0) | Err(_) => println!("no Landlock"),
//!     Ok(v) => println!("Landlock ABI {v}"),
//! }
//! ```

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub mod process;
#[cfg(feature = "wasm")]
pub mod wasm;

#[cfg(target_os = "linux")]
pub use linux::{
    landlock_abi_version, probe_denied_syscalls, seccomp_filter_supported,
    user_namespace_probe_in_child,
};

#[cfg(not(target_os = "linux"))]
mod unsupported {
    use std::io;

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "cordon's sandbox needs Linux")
    }

    /// Not available on this platform.
    pub fn landlock_abi_version() -> io::Result<u32> {
        Err(unsupported())
    }

    /// Not available on this platform.
    pub fn seccomp_filter_supported() -> io::Result<bool> {
        Err(unsupported())
    }

    /// Not available on this platform.
    pub fn probe_denied_syscalls() -> Vec<(&'static str, Result<(), i32>)> {
        Vec::new()
    }

    /// Not available on this platform.
    pub fn user_namespace_probe_in_child() -> io::Result<Result<(), io::Error>> {
        Err(unsupported())
    }
}

#[cfg(not(target_os = "linux"))]
pub use unsupported::{
    landlock_abi_version, seccomp_filter_supported, user_namespace_probe_in_child,
};
