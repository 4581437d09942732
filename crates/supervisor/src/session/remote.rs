//! Remote sessions: no program of cordon's own, a server reached over the network through
//! the session's egress proxy (each connection decided under `data.cordon.net`), with an
//! id on every record, a control socket and an entry in `cordon ps`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cordon_types::error_chain;

use super::{
    consent_broker, control, new_id, protect, refused, serve_proxy, setup, start_control_with,
    LaunchError, SessionInfo,
};
use crate::consent::{Backends, Broker};
use crate::{real_path, CordonConfig, Supervisor};

/// What remote server to reach, and what the person asks for the session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteRequest {
    /// cordon's configuration (policy, audit log, consent).
    pub config: CordonConfig,
    /// The server's address, as `cordon ps` shows it.
    pub url: String,
    /// The hosts the session asks to reach (`HOST` or `HOST:PORT`): the server's, and any other.
    pub net: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// The capabilities the session's policy decides (`net` among them).
    pub decides: &'static [&'static str],
    /// The front-end's name, shown by `cordon ps`.
    pub front_end: String,
}

impl RemoteRequest {
    /// A request to reach `url`, asking for `net`.
    pub fn new(config: CordonConfig, url: String, net: Vec<String>, cwd: PathBuf) -> Self {
        Self {
            config,
            url,
            net,
            cwd,
            decides: &["net"],
            front_end: "library".into(),
        }
    }
}

/// A remote session while it runs.
pub struct Remote<'a> {
    supervisor: &'a Arc<Supervisor>,
    consent: &'a Arc<Broker>,
    proxy: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    id: &'a str,
}

impl std::fmt::Debug for Remote<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("id", &self.id)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Remote<'_> {
    /// The session's supervisor: its policy, its audit log, its id on every record.
    pub fn supervisor(&self) -> &Arc<Supervisor> {
        self.supervisor
    }

    /// The session's consent broker.
    pub fn consent(&self) -> Arc<Broker> {
        Arc::clone(self.consent)
    }

    /// The session's egress proxy (HTTP, absolute-form and CONNECT): every connection made
    /// through it is decided.
    pub fn proxy(&self) -> std::net::SocketAddr {
        self.proxy
    }

    /// Whether the session was stopped (`cordon stop`).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The flag `cordon stop` sets.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        self.id
    }
}

/// Runs a remote session: its supervisor, consent broker, control socket and egress proxy
/// (asking for `request.net`) set up, then `body` until it returns.
///
/// # Errors
///
/// A [`LaunchError`]: a host that is not one, no consent backend, cordon not set up. What
/// `body` returns as an error is returned as a setup failure.
pub fn serve(
    request: RemoteRequest,
    body: impl FnOnce(&Remote<'_>) -> Result<(), String>,
) -> Result<String, LaunchError> {
    let id = new_id();
    let net = super::allow_entries(&request.net)?;
    let session_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    // Standard input carries the protocol: no answer is read from the terminal.
    let backends = Backends::parse_with(
        request.config.consent.backend.as_deref().unwrap_or("auto"),
        false,
        session_bus,
    )
    .map_err(refused)?;
    let started = Supervisor::start_session(&request.config, request.decides, &id, &request.cwd)
        .map_err(|e| setup(format!("cannot start cordon: {}", error_chain(&e))))?
        .with_context("consent", backends.context());
    let supervisor = Arc::new(started.with_workspace(Vec::new()));
    let consent = consent_broker(&request.config, &supervisor, &id, backends);
    let stop = Arc::new(AtomicBool::new(false));
    let info = SessionInfo {
        id: id.clone(),
        front_end: request.front_end.clone(),
        command: vec![request.url.clone()],
        workspace: real_path(&request.cwd),
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        cordon_pid: std::process::id(),
        cordon_key: protect::process_key("self"),
        granted_hosts: net.clone(),
        audit_log: supervisor.audit_path().map(std::path::Path::to_path_buf),
        state: "running".into(),
    };
    let control = start_control_with(info, Some(control::Stopper::Flag(stop.clone())), &consent);
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| setup(format!("cannot open the session's proxy: {e}")))?;
    let proxy = listener
        .local_addr()
        .map_err(|e| setup(format!("cannot open the session's proxy: {e}")))?;
    let proxy_server = serve_proxy(&supervisor, &consent, listener, net).map_err(setup)?;
    let remote = Remote {
        supervisor: &supervisor,
        consent: &consent,
        proxy,
        stop,
        id: &id,
    };
    let served = body(&remote);
    drop(proxy_server);
    drop(control);
    served.map_err(setup)?;
    Ok(id)
}
