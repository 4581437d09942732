//! What the running kernel offers the sandbox: one probe, read by `cordon doctor` and by every
//! launch alike.

use serde_json::{json, Value};

use crate::cgroup::Support;

/// The kernel features the sandbox relies on, as probed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The Landlock ABI version; 0 when Landlock is absent or the query failed.
    pub landlock_abi: u32,
    /// Why the Landlock query failed, when it did.
    pub landlock_error: Option<String>,
    /// Whether seccomp filters are supported.
    pub seccomp: bool,
    /// Why the seccomp query failed, when it did.
    pub seccomp_error: Option<String>,
    /// The cgroup controllers available for the caps.
    pub cgroups: Support,
}

impl Kernel {
    /// Probes this kernel (a few system calls and reads of `/proc`; nothing is forked).
    pub fn probe() -> Self {
        let (landlock_abi, landlock_error) = match cordon_sys::landlock_abi_version() {
            Ok(abi) => (abi, None),
            Err(err) => (0, Some(err.to_string())),
        };
        let (seccomp, seccomp_error) = match cordon_sys::seccomp_filter_supported() {
            Ok(supported) => (supported, None),
            Err(err) => (false, Some(err.to_string())),
        };
        Self {
            landlock_abi,
            landlock_error,
            seccomp,
            seccomp_error,
            cgroups: Support::detect(),
        }
    }

    /// What the policy sees of the kernel (`context.kernel` of a launch).
    pub fn to_json(&self) -> Value {
        json!({
            "landlock_abi": self.landlock_abi,
            "seccomp": self.seccomp,
            "cgroups": match self.cgroups {
                Support::V2 { .. } => "v2",
                Support::V1 { .. } => "v1",
                Support::None => "none",
            },
        })
    }

    /// The Landlock enforcement a launch obtains, for the audit log: the kernel's ABI, the one
    /// cordon asks for, and whether every right it asks for is enforced.
    pub fn landlock_record(&self) -> Value {
        let wanted = crate::landlock::ABI_WANTED_NUMBER;
        let enforcement = match self.landlock_abi {
            0 => "none",
            abi if abi >= wanted => "full",
            _ => "partial",
        };
        json!({ "abi": self.landlock_abi, "wanted": wanted, "enforcement": enforcement })
    }
}
