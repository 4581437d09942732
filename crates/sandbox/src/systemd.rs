//! A delegated cgroup from systemd: a transient scope holding cordon, as podman's systemd
//! cgroup manager asks for one.
//!
//! On a systemd desktop a terminal's shell lives in a cgroup of the user's systemd manager
//! (`…/app.slice/vte-spawn-….scope`, `run-….service`) that also holds the shell, so cordon
//! cannot enable the `pids` and `memory` controllers for children there (cgroup v2 allows no
//! processes in a cgroup whose children have controllers). cordon then asks the manager it
//! belongs to (the user's on the session bus, or the system's for root) for a scope of its
//! own with `Delegate=yes` (`org.freedesktop.systemd1.Manager.StartTransientUnit`) and moves
//! into it; the sandboxes' cgroups are made inside that scope. Every call is bounded: a bus
//! or manager that does not answer costs at most [`TIMEOUT`].

use std::path::PathBuf;
use std::time::Duration;

use futures_lite::StreamExt;
use zbus::zvariant::{OwnedObjectPath, Value};

/// The longest any call to the bus, and the wait for the scope, may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

const SERVICE: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Which systemd manager cordon asks: the user's own on the session bus, or (for root) the
/// system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// The user's manager (`systemd --user`), on the session bus.
    User,
    /// The system's manager, on the system bus.
    System,
}

impl Manager {
    /// The manager a process of this user belongs to.
    pub fn for_this_user() -> Self {
        if cordon_sys::process::real_ids().0 == 0 {
            Manager::System
        } else {
            Manager::User
        }
    }

    /// For people: "the systemd user manager" or "the systemd system manager".
    pub fn describe(self) -> &'static str {
        match self {
            Manager::User => "the systemd user manager (session bus)",
            Manager::System => "the systemd system manager (system bus)",
        }
    }
}

async fn connect(manager: Manager) -> Result<zbus::Proxy<'static>, String> {
    let builder = match manager {
        Manager::User => zbus::connection::Builder::session(),
        Manager::System => zbus::connection::Builder::system(),
    };
    let bus = match manager {
        Manager::User => "session bus",
        Manager::System => "system bus",
    };
    let connection = builder
        .map_err(|e| format!("no {bus}: {e}"))?
        .method_timeout(TIMEOUT)
        .build()
        .await
        .map_err(|e| format!("cannot connect to the {bus}: {e}"))?;
    zbus::Proxy::new_owned(connection, SERVICE, PATH, MANAGER)
        .await
        .map_err(|e| format!("cannot reach systemd on the {bus}: {e}"))
}

fn bounded<T>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    zbus::block_on(futures_lite::future::or(work, async {
        async_io::Timer::after(TIMEOUT).await;
        Err(format!("{what} took longer than {TIMEOUT:?}"))
    }))
}

/// Whether `manager` answers, and its version (for `cordon doctor`).
///
/// # Errors
///
/// Why it cannot be asked: no bus, no systemd on it.
pub fn version(manager: Manager) -> Result<String, String> {
    bounded("asking systemd its version", async {
        let proxy = connect(manager).await?;
        proxy
            .get_property::<String>("Version")
            .await
            .map_err(|e| format!("systemd does not answer on the bus: {e}"))
    })
}

/// Asks `manager` for a transient scope with `Delegate=yes` holding this process, waits until
/// this process is in it, and returns the scope's cgroup directory.
///
/// # Errors
///
/// Why no scope was delegated: no bus, no manager, a refusal, a job that failed, or no
/// answer in time.
pub fn delegated_scope(manager: Manager) -> Result<PathBuf, String> {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let unit = format!("cordon-{pid}-{nanos:x}.scope");
    bounded("asking systemd for a delegated scope", async {
        let proxy = connect(manager).await?;
        // Job signals are sent only to subscribers; listening starts before the job exists.
        let _ = proxy.call_method("Subscribe", &()).await;
        let mut removed = proxy
            .receive_signal("JobRemoved")
            .await
            .map_err(|e| format!("cannot listen to systemd's jobs: {e}"))?;
        let properties: Vec<(&str, Value<'_>)> = vec![
            (
                "Description",
                Value::from("cordon and the sandboxes it caps"),
            ),
            ("PIDs", Value::from(vec![pid])),
            ("Delegate", Value::from(true)),
            ("CollectMode", Value::from("inactive-or-failed")),
        ];
        let auxiliary: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let job: OwnedObjectPath = proxy
            .call(
                "StartTransientUnit",
                &(unit.as_str(), "fail", properties, auxiliary),
            )
            .await
            .map_err(|e| format!("systemd refused the scope `{unit}`: {e}"))?;
        while let Some(signal) = removed.next().await {
            let Ok((_, path, _, result)) = signal
                .body()
                .deserialize::<(u32, OwnedObjectPath, String, String)>()
            else {
                continue;
            };
            if path != job {
                continue;
            }
            if result != "done" {
                return Err(format!(
                    "systemd's job for the scope `{unit}` ended `{result}`"
                ));
            }
            return own_cgroup()
                .filter(|dir| dir.ends_with(&unit))
                .ok_or_else(|| format!("systemd made the scope `{unit}` but cordon is not in it"));
        }
        Err("the bus closed before systemd made the scope".into())
    })
}

/// This process's cgroup v2 directory, from `/proc/self/cgroup`.
pub fn own_cgroup() -> Option<PathBuf> {
    let own = fs_err::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some(PathBuf::from("/sys/fs/cgroup").join(path.trim().trim_start_matches('/')))
}
