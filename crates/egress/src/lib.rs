//! cordon's egress proxy: every connection an agent makes is a policy decision.
//!
//! One listening port speaks HTTP (absolute-form requests and `CONNECT`) and SOCKS5 (with
//! remote DNS: the proxy resolves names). For each connection or plain-HTTP request the
//! proxy normalises the destination ([`host`]), resolves it once, classifies every address
//! ([`class`]), scores the name for exfiltration patterns ([`exfil`]) and asks the
//! [`Gate`] (`data.cordon.net.decision`). It then connects to exactly the addresses that
//! were decided on (a second lookup could answer differently: DNS rebinding), checks that a
//! TLS tunnel's ClientHello names the host that was decided ([`tls`]), and enforces the
//! decision's `limit` obligations (connections per minute, upload bytes per host per
//! session) while relaying.
//!
//! Bad input never takes the proxy down: each connection is its own task, with bounded
//! header sizes and timeouts, and gets its protocol's error before it is closed.
//!
//! ```no_run
//! # async fn run(gate: std::sync::Arc<dyn cordon_egress::Gate>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3128").await?;
//! cordon_egress::Proxy::new(gate, cordon_egress::ProxyOptions::default())
//!     .serve(listener)
//!     .await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod class;
pub mod exfil;
pub mod host;
mod http;
mod relay;
mod session;
mod socks;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cordon_types::{Decision, Obligation};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::class::classify;
use crate::host::Host;
pub use crate::session::Session;

/// Where decisions are made and recorded.
pub trait Gate: Send + Sync + 'static {
    /// Decides one connection (`action` `connect`) or plain-HTTP request (`http`) under
    /// `data.cordon.net`, and records the decision. `resource` and `context` are what the
    /// proxy knows; the gate adds who asks and when.
    fn decide(&self, action: &str, resource: Value, context: Value) -> Decision;

    /// Records that an allowed connection was cut or refused afterwards (a limit reached, a
    /// TLS server name that is not the decided host), with the reason.
    fn cut(&self, action: &str, resource: Value, context: Value, decision: &Decision, reason: &str);

    /// Decides whether a host *name* may be looked up at all, before any DNS query leaves
    /// (the query itself can carry data to whoever runs the name's DNS). `resource` has no
    /// addresses yet. A gate records denials; an allowance is followed by the recorded
    /// decision on the resolved addresses. By default every name may be looked up.
    fn may_resolve(&self, _resource: Value, _context: Value) -> Decision {
        Decision {
            allow: true,
            reasons: Vec::new(),
            obligations: Vec::new(),
            grants: None,
        }
    }
}

/// Normalises an `--allow-net` entry, `HOST` or `HOST:PORT`, to the form the policy
/// compares (`127.0.0.1:8080`, `example.org`): the host as [`Host::parse`] reads it.
///
/// # Errors
///
/// A message naming what is wrong with the entry.
pub fn normalize_allow_entry(entry: &str) -> Result<String, String> {
    let has_port = match entry.rfind(']') {
        Some(end) => entry[end..].contains(':'),
        None => entry.matches(':').count() == 1,
    };
    if has_port {
        let (host, port) = host::parse_authority(entry, None)
            .map_err(|e| format!("--allow-net `{entry}`: {e}"))?;
        // An IPv6 address keeps its brackets, so that `[::1]:8098` (a port of ::1) and
        // `::1:8098` (an address, any port) never compare equal.
        Ok(match host {
            Host::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
            host => format!("{}:{port}", host.as_policy_string()),
        })
    } else {
        let host = Host::parse(entry).map_err(|e| format!("--allow-net `{entry}`: {e}"))?;
        Ok(host.as_policy_string())
    }
}

/// Bounds and settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// What the person asked for with `--allow-net` (passed to the policy as
    /// `context.request.net`).
    pub requested: Vec<String>,
    /// Largest request or response head.
    pub max_head_bytes: usize,
    /// Time a client has to send a whole request head (slow clients are cut).
    pub head_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Time to resolve and connect upstream.
    pub connect_timeout: Duration,
    /// Window in which distinct subdomains of one parent are counted.
    pub subdomain_window: Duration,
    /// How long an upload budget lasts before it refills.
    pub upload_window: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            requested: Vec::new(),
            max_head_bytes: 32 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            subdomain_window: Duration::from_secs(60),
            upload_window: session::UPLOAD_WINDOW,
        }
    }
}

/// The proxy: a gate, options and the session's accounting.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Arc<dyn Gate>,
    options: ProxyOptions,
    session: Session,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy deciding with `gate`.
    pub fn new(gate: Arc<dyn Gate>, options: ProxyOptions) -> Self {
        let session = Session::new(options.subdomain_window, options.upload_window);
        Self {
            inner: Arc::new(Inner {
                gate,
                options,
                session,
            }),
        }
    }

    /// Serves `listener` until the task is dropped. Each connection runs on its own task.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let proxy = self.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        proxy.handle(stream, peer).await;
                    });
                }
                Err(err) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!("proxy accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        let mut first = [0u8; 1];
        let peeked =
            tokio::time::timeout(self.inner.options.head_timeout, stream.peek(&mut first)).await;
        match peeked {
            Ok(Ok(1)) if first[0] == 5 => socks::serve(self, stream).await,
            Ok(Ok(1)) => http::serve(self, stream).await,
            _ => tracing::debug!("{peer}: closed before a request"),
        }
    }
}

/// A destination, decided on.
pub(crate) struct Decided {
    pub(crate) host: Host,
    pub(crate) port: u16,
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) action: &'static str,
    pub(crate) resource: Value,
    pub(crate) context: Value,
    pub(crate) decision: Decision,
    /// Upload budget for this host in this session, from a `limit` obligation.
    pub(crate) budget: Option<u64>,
}

fn reasons(decision: &Decision) -> String {
    if decision.reasons.is_empty() {
        "denied by policy".to_owned()
    } else {
        decision.reasons.join("; ")
    }
}

/// Why a destination is not reached.
pub(crate) enum Refusal {
    /// The name does not resolve.
    Unresolvable(String),
    /// The policy denied, or a limit was reached before connecting.
    Denied(String),
    /// The connection failed.
    Unreachable(String),
}

impl Proxy {
    pub(crate) fn options(&self) -> &ProxyOptions {
        &self.inner.options
    }

    pub(crate) fn session(&self) -> &Session {
        &self.inner.session
    }

    pub(crate) fn gate(&self) -> &Arc<dyn Gate> {
        &self.inner.gate
    }

    /// Resolves, classifies, scores and decides a destination. `extra` adds to the resource
    /// (scheme, method, path).
    pub(crate) async fn decide(
        &self,
        host: Host,
        port: u16,
        action: &'static str,
        extra: Value,
    ) -> Result<Decided, Refusal> {
        let host_key = host.as_policy_string();
        let mut resource = json!({
            "host": host_key,
            "port": port,
            "host_is_ip": matches!(host, Host::Ip(_)),
        });
        if let Host::Name(name) = &host {
            let score = self.session().score_name(name);
            resource["exfil"] = json!({
                "longest_label": score.longest_label,
                "entropy": (score.entropy * 100.0).round() / 100.0,
                "unique_subdomains": score.unique_subdomains,
            });
        }
        if let (Value::Object(resource), Value::Object(extra)) = (&mut resource, extra) {
            resource.extend(extra);
        }
        let (bytes_sent, recent) = self.session().usage(&host_key);
        let context = json!({
            "request": {"net": self.options().requested},
            "session": {"bytes_sent": bytes_sent, "connections_last_minute": recent},
        });
        if matches!(host, Host::Name(_)) {
            let gate = Arc::clone(self.gate());
            // Whether the name may be looked up is decided on the name: the request's
            // method and path (which a later decision may redact) are not part of it.
            let mut r = resource.clone();
            if let Some(r) = r.as_object_mut() {
                r.remove("http");
            }
            let c = context.clone();
            let verdict = tokio::task::spawn_blocking(move || gate.may_resolve(r, c))
                .await
                .unwrap_or_else(|_| Decision::deny("the policy decision failed"));
            if !verdict.allow {
                return Err(Refusal::Denied(reasons(&verdict)));
            }
        }
        let addresses = match &host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                match tokio::time::timeout(self.options().connect_timeout, lookup).await {
                    Ok(Ok(found)) => {
                        let mut ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                        ips.dedup();
                        ips
                    }
                    Ok(Err(err)) => {
                        return Err(Refusal::Unresolvable(format!(
                            "cannot resolve `{name}`: {err}"
                        )))
                    }
                    Err(_) => {
                        return Err(Refusal::Unresolvable(format!(
                            "resolving `{name}` timed out"
                        )))
                    }
                }
            }
        };
        if addresses.is_empty() {
            return Err(Refusal::Unresolvable(format!(
                "`{}` resolves to no address",
                host.as_policy_string()
            )));
        }
        resource["addresses"] = addresses
            .iter()
            .map(|ip| json!({"ip": ip.to_string(), "class": classify(*ip).as_str()}))
            .collect::<Vec<_>>()
            .into();
        let gate = Arc::clone(self.gate());
        let (r, c) = (resource.clone(), context.clone());
        let decision = tokio::task::spawn_blocking(move || gate.decide(action, r, c))
            .await
            .unwrap_or_else(|_| Decision::deny("the policy decision failed"));
        if !decision.allow {
            return Err(Refusal::Denied(reasons(&decision)));
        }
        let mut budget = None;
        for obligation in &decision.obligations {
            if let Obligation::Limit { per_minute, bytes } = obligation {
                if let Some(max) = per_minute {
                    if recent >= *max {
                        let reason = format!(
                            "more than {max} connections a minute to `{host_key}`; refused by the policy's limit"
                        );
                        // Recorded before the refusal is answered.
                        let recorded = self.record_cut(
                            action,
                            resource.clone(),
                            context.clone(),
                            decision.clone(),
                            reason.clone(),
                        );
                        let _ = recorded.await;
                        return Err(Refusal::Denied(reason));
                    }
                }
                if let Some(bytes) = bytes {
                    budget = Some(budget.map_or(*bytes, |b: u64| b.min(*bytes)));
                }
            }
        }
        self.session().note_connection(&host_key);
        Ok(Decided {
            host,
            port,
            addresses,
            action,
            resource,
            context,
            decision,
            budget,
        })
    }

    /// Connects to the decided addresses, in order.
    pub(crate) async fn connect(&self, decided: &Decided) -> Result<TcpStream, Refusal> {
        let mut last = String::from("no address");
        for ip in &decided.addresses {
            let addr = SocketAddr::new(*ip, decided.port);
            match tokio::time::timeout(self.options().connect_timeout, TcpStream::connect(addr))
                .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(err)) => last = format!("{addr}: {err}"),
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        Err(Refusal::Unreachable(format!(
            "cannot connect to `{}`: {last}",
            decided.host
        )))
    }

    /// Records that `decided` was cut for `reason`.
    pub(crate) fn cut(&self, decided: &Decided, reason: &str) {
        // The relay does not wait for the record.
        drop(self.record_cut(
            decided.action,
            decided.resource.clone(),
            decided.context.clone(),
            decided.decision.clone(),
            reason.to_owned(),
        ));
    }

    /// Records a connection cut for `reason` on the runtime's blocking threads: recording may
    /// wait on the audit log's sync, and the proxy's one thread serves every other
    /// connection meanwhile. Awaited, the record is made.
    fn record_cut(
        &self,
        action: &'static str,
        resource: Value,
        context: Value,
        decision: Decision,
        reason: String,
    ) -> tokio::task::JoinHandle<()> {
        let gate = Arc::clone(self.gate());
        tokio::task::spawn_blocking(move || gate.cut(action, resource, context, &decision, &reason))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn allow_entries_keep_ipv6_hosts_and_ports_apart() {
        assert_eq!(
            super::normalize_allow_entry("[::1]:8098").unwrap(),
            "[::1]:8098"
        );
        assert_eq!(
            super::normalize_allow_entry("::1:8098").unwrap(),
            "::1:8098"
        );
        assert_eq!(
            super::normalize_allow_entry("127.1:80").unwrap(),
            "127.0.0.1:80"
        );
        assert_eq!(
            super::normalize_allow_entry("Example.ORG").unwrap(),
            "example.org"
        );
    }
}
