//! The grant set a launch decision gives (`data.cordon.sandbox.decision.grants`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the policy lets a sandboxed program see and use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Paths visible read-only (system directories included). Paths that do not exist on
    /// this machine are skipped.
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Paths visible read-write.
    #[serde(default)]
    pub write: Vec<PathBuf>,
    /// Secrets hidden inside whatever is visible. An entry ending in `/` is an exact path;
    /// any other is a name prefix (`/etc/ssh/ssh_host_` hides every host key).
    #[serde(default)]
    pub mask: Vec<String>,
    /// Paths that stay read-only even inside a writable tree.
    #[serde(default)]
    pub protect: Vec<PathBuf>,
    /// Names of the environment variables the program keeps.
    #[serde(default)]
    pub env: Vec<String>,
    /// Hosts the program may reach through cordon's proxy, as the person asked for them.
    #[serde(default)]
    pub net: Vec<String>,
    /// TCP ports the program may bind and connect to, enforced with Landlock; absent, the
    /// network namespace alone confines TCP (it has loopback only).
    #[serde(default)]
    pub tcp: Option<TcpPorts>,
    /// Caps on the whole process tree.
    #[serde(default)]
    pub limits: Limits,
    /// Kernel features without which the launch is refused (unless the person passes
    /// `--allow-degraded`).
    #[serde(default)]
    pub require: Vec<Feature>,
    /// The oldest Landlock ABI the launch accepts when Landlock is required: older ones lack
    /// rights this one relies on (truncation at 3, network ports at 4, ioctl on devices at 5,
    /// signal and abstract socket scoping at 6).
    #[serde(default)]
    pub landlock_abi: Option<u32>,
}

/// TCP ports, for Landlock's network rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpPorts {
    /// Ports the agent may listen on.
    #[serde(default)]
    pub bind: Vec<u16>,
    /// Ports the agent may connect to.
    #[serde(default)]
    pub connect: Vec<u16>,
}

/// Caps on the sandboxed process tree, enforced with cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The most processes and threads at once.
    #[serde(default)]
    pub pids: Option<u64>,
    /// The most memory, in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// A kernel feature the sandbox is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// User namespaces (and with them mount, pid, network, ipc and uts namespaces).
    UserNamespaces,
    /// Landlock file-system rules.
    Landlock,
    /// seccomp filters.
    Seccomp,
    /// cgroup controllers for the process and memory caps.
    Cgroups,
}

impl Feature {
    /// The name policies use.
    pub fn name(self) -> &'static str {
        match self {
            Feature::UserNamespaces => "user_namespaces",
            Feature::Landlock => "landlock",
            Feature::Seccomp => "seccomp",
            Feature::Cgroups => "cgroups",
        }
    }
}

impl Grants {
    /// Reads the `grants` of an allowing launch decision.
    ///
    /// # Errors
    ///
    /// A message naming what is missing or malformed; the launch is then refused.
    pub fn from_decision(grants: Option<&Value>) -> Result<Self, String> {
        let Some(grants) = grants else {
            return Err(
                "the policy allowed the launch but gave no `grants`; nothing to run with".into(),
            );
        };
        let grants: Grants = serde_json::from_value(grants.clone())
            .map_err(|e| format!("malformed `grants` in the launch decision: {e}"))?;
        let relative = grants
            .read
            .iter()
            .chain(&grants.write)
            .chain(&grants.protect)
            .find(|p| !p.is_absolute());
        if let Some(path) = relative {
            return Err(format!(
                "malformed `grants` in the launch decision: `{}` is not an absolute path",
                path.display()
            ));
        }
        if let Some(entry) = grants.mask.iter().find(|m| !m.starts_with('/')) {
            return Err(format!(
                "malformed `grants` in the launch decision: mask `{entry}` is not an absolute path"
            ));
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_a_grant_set() {
        let grants = Grants::from_decision(Some(&json!({
            "read": ["/usr"], "write": ["/w"], "mask": ["/etc/shadow/"], "env": ["PATH"],
            "limits": {"pids": 10}, "require": ["landlock"]
        })))
        .unwrap();
        assert_eq!(grants.write, vec![PathBuf::from("/w")]);
        assert_eq!(grants.limits.pids, Some(10));
        assert_eq!(grants.require, vec![Feature::Landlock]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for (grants, expected) in [
            (None, "gave no `grants`"),
            (
                Some(json!({"read": ["usr"]})),
                "`usr` is not an absolute path",
            ),
            (Some(json!({"mask": ["shadow"]})), "mask `shadow`"),
            (Some(json!({"raed": []})), "unknown field `raed`"),
            (
                Some(json!({"require": ["magic"]})),
                "unknown variant `magic`",
            ),
        ] {
            let err = Grants::from_decision(grants.as_ref()).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
