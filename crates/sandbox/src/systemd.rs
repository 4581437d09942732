//! A delegated cgroup from systemd: a transient scope holding cordon, as podman's systemd
//! cgroup manager asks for one.
//!
//! On a systemd desktop a terminal's shell lives in a cgroup of the user's systemd manager
//! (`…/app.slice/vte-spawn-….scope`, `run-….service`) that also holds the shell, so cordon
//! cannot enable the `pids` and `memory` controllers for children there (cgroup v2 allows no
//! processes in a cgroup whose children have controllers). cordon then asks that manager
//! (on the session bus) for a scope of its own with `Delegate=yes`
//! (`org.freedesktop.systemd1.Manager.StartTransientUnit`), in the slice of the unit it runs
//! in and with that unit's process and memory limits, and moves into it; the sandboxes'
//! cgroups are made inside that scope. cordon never leaves a cgroup that is not its user
//! manager's (a system service's, a login session's, root's): limits an administrator set
//! there would no longer hold. Every call is bounded: a bus or manager that does not answer
//! costs at most [`TIMEOUT`].

use std::path::PathBuf;
use std::time::Duration;

use futures_lite::StreamExt;
use zbus::zvariant::{OwnedObjectPath, Value};

/// The longest any call to the bus, and the wait for the scope, may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

const SERVICE: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Which message bus to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// The user's session bus (`DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`).
    Session,
    /// The system bus.
    System,
}

impl Bus {
    fn name(self) -> &'static str {
        match self {
            Bus::Session => "session bus",
            Bus::System => "system bus",
        }
    }
}

async fn connect_async(bus: Bus) -> Result<zbus::Connection, String> {
    let builder = match bus {
        Bus::Session => zbus::connection::Builder::session(),
        Bus::System => zbus::connection::Builder::system(),
    };
    builder
        .map_err(|e| format!("no {}: {e}", bus.name()))?
        .method_timeout(TIMEOUT)
        .build()
        .await
        .map_err(|e| format!("cannot connect to the {}: {e}", bus.name()))
}

/// A connection to `bus`, the handshake included bounded by [`TIMEOUT`] (a bus that accepts
/// and never answers costs that, not a hang); its calls are bounded by it too.
///
/// # Errors
///
/// Why there is no connection.
pub fn connect(bus: Bus) -> Result<zbus::blocking::Connection, String> {
    bounded("connecting to the bus", connect_async(bus)).map(zbus::blocking::Connection::from)
}

async fn manager() -> Result<zbus::Proxy<'static>, String> {
    let connection = connect_async(Bus::Session).await?;
    zbus::Proxy::new_owned(connection, SERVICE, PATH, MANAGER)
        .await
        .map_err(|e| format!("cannot reach systemd on the session bus: {e}"))
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

/// The user's systemd manager's version, if it answers on the session bus (for
/// `cordon doctor`).
///
/// # Errors
///
/// Why it cannot be asked: no bus, no systemd on it, no answer.
pub fn version() -> Result<String, String> {
    bounded("asking systemd its version", async {
        manager()
            .await?
            .get_property::<String>("Version")
            .await
            .map_err(|e| format!("systemd does not answer on the session bus: {e}"))
    })
}

/// The scope cordon asks for: where it goes and the limits it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The slice of the unit cordon runs in, which the scope joins (its limits hold).
    pub slice: String,
    /// The tightest `pids.max` between cordon's cgroup and that slice.
    pub tasks_max: Option<u64>,
    /// The tightest `memory.max`.
    pub memory_max: Option<u64>,
    /// The tightest `memory.swap.max`.
    pub swap_max: Option<u64>,
}

/// Asks the user's systemd manager for a transient scope with `Delegate=yes` holding this
/// process, in `scope.slice` and with its limits, waits until this process is in it, and
/// returns the scope's cgroup directory.
///
/// # Errors
///
/// Why no scope was delegated: no bus, no manager, a refusal, a job that failed, or no
/// answer in time.
pub fn delegated_scope(scope: &Scope) -> Result<PathBuf, String> {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let unit = format!("cordon-{pid}-{nanos:x}.scope");
    bounded("asking systemd for a delegated scope", async {
        let proxy = manager().await?;
        // Job signals are sent only to subscribers; listening starts before the job exists.
        let _ = proxy.call_method("Subscribe", &()).await;
        let mut removed = proxy
            .receive_signal("JobRemoved")
            .await
            .map_err(|e| format!("cannot listen to systemd's jobs: {e}"))?;
        // PID 0 is the caller as the manager sees it (from the bus's credentials): this
        // process's own pid means another process where cordon runs in a pid namespace.
        let mut properties: Vec<(&str, Value<'_>)> = vec![
            (
                "Description",
                Value::from("cordon and the sandboxes it caps"),
            ),
            ("PIDs", Value::from(vec![0_u32])),
            ("Delegate", Value::from(true)),
            ("CollectMode", Value::from("inactive-or-failed")),
            ("Slice", Value::from(scope.slice.as_str())),
        ];
        for (name, value) in [
            ("TasksMax", scope.tasks_max),
            ("MemoryMax", scope.memory_max),
            ("MemorySwapMax", scope.swap_max),
        ] {
            if let Some(value) = value {
                properties.push((name, Value::from(value)));
            }
        }
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
            if let Some(dir) = own_cgroup().filter(|dir| dir.ends_with(&unit)) {
                return Ok(dir);
            }
            // Whatever the scope holds, it is not cordon: it is stopped, not left behind.
            let _ = proxy
                .call_method("StopUnit", &(unit.as_str(), "fail"))
                .await;
            return Err(format!(
                "systemd made the scope `{unit}` but cordon is not in it"
            ));
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
