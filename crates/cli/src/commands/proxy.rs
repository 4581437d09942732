//! `cordon proxy`: the egress proxy on its own, and the gate it decides through (shared
//! with `cordon exec`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_egress::{Gate, Proxy, ProxyOptions};
use cordon_supervisor::Supervisor;
use cordon_types::{Capability, Decision, Outcome, Request};
use serde_json::{json, Value};

use super::shared::{load_config, PolicyArgs};
use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Serve cordon's egress proxy (HTTP and SOCKS5) for other sandboxes
///
/// Every connection (and every plain-HTTP request) is decided by the policy's
/// `data.cordon.net.decision` and recorded in the audit log. The proxy resolves names
/// itself and connects only to the addresses it decided on; loopback, private, link-local
/// and cloud-metadata addresses are refused unless the policy names them; a TLS tunnel
/// whose ClientHello names another host is closed; the policy's `limit` obligations cap
/// connections per minute and upload bytes per host.
///
/// Point a VM, a container or bubblewrap at it with HTTP_PROXY / HTTPS_PROXY
/// (http://HOST:PORT) or ALL_PROXY (socks5h://HOST:PORT). `cordon exec` runs the same proxy
/// inside each sandbox by itself.
///
/// Examples:
///   cordon proxy --listen 127.0.0.1:3128
///   cordon proxy --allow-net example.org --allow-net 10.0.0.5:8080
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ProxyCommand {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3128")]
    listen: SocketAddr,

    /// Ask to let clients reach HOST (any port) or HOST:PORT; an internal address must be named with its port
    #[arg(long, value_name = "HOST[:PORT]")]
    allow_net: Vec<String>,
}

/// Normalises `--allow-net` entries for the policy.
pub(crate) fn requested_hosts(entries: &[String]) -> Result<Vec<String>, CliError> {
    entries
        .iter()
        .map(|e| cordon_egress::normalize_allow_entry(e).map_err(|why| anyhow!(why).into()))
        .collect()
}

impl ProxyCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let requested = requested_hosts(&self.allow_net)?;
        let config = load_config(cli, &self.policy)?;
        let supervisor =
            Arc::new(Supervisor::start_for(&config, &["net"]).context("cannot start cordon")?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the proxy's runtime")?;
        let listen = self.listen;
        let gate: Arc<dyn Gate> = Arc::new(PipelineGate::new(Arc::clone(&supervisor))?);
        let options = ProxyOptions {
            requested,
            ..ProxyOptions::default()
        };
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))
                .hint("choose another address with --listen")?;
            let bound = listener.local_addr().unwrap_or(listen);
            eprintln!("cordon proxy: listening on {bound} (HTTP and SOCKS5); Ctrl-C stops");
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("cannot catch SIGTERM")?;
            tokio::select! {
                () = Proxy::new(gate, options).serve(listener) => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            Ok::<(), CliError>(())
        })?;
        // The runtime's tasks may hold the gate; the audit log closes when the last goes.
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        Ok(Exit::Ok)
    }
}

/// Decides connections through the supervisor's pipeline (`data.cordon.net`), which
/// records each decision: every allowance, and denials as [`Throttle`] lets through.
pub(crate) struct PipelineGate {
    supervisor: Arc<Supervisor>,
    capability: Capability,
    throttle: std::sync::Mutex<Throttle>,
}

/// Bounds what a flood of denied requests writes to the audit log (each record is a durable
/// write): the same denial (action, resource, reason) is recorded at most once a second,
/// and at most [`Throttle::PER_WINDOW`] denials every [`Throttle::WINDOW`]. What is left out
/// is counted, and the count goes with the next denial recorded (`coalesced`). Every request
/// is still decided, and denied; allowances are always recorded.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: std::collections::HashMap<String, (std::time::Instant, u64)>,
    window_start: Option<std::time::Instant>,
    in_window: u64,
    left_out: u64,
}

impl Throttle {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
    const PER_WINDOW: u64 = 200;
    const SAME: std::time::Duration = std::time::Duration::from_secs(1);
    const KEYS: usize = 4096;

    /// `Some(n)` when the denial under `key` is to be recorded, with `n` denials left out
    /// before it; `None` when it is left out.
    pub(crate) fn admit(&mut self, key: String, now: std::time::Instant) -> Option<u64> {
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Self::WINDOW)
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.last.len() > Self::KEYS {
            self.last
                .retain(|_, (at, _)| now.duration_since(*at) < Self::SAME);
        }
        let recent = self
            .last
            .get(&key)
            .is_some_and(|(at, _)| now.duration_since(*at) < Self::SAME);
        if recent || self.in_window >= Self::PER_WINDOW {
            self.left_out += 1;
            if let Some((_, count)) = self.last.get_mut(&key) {
                *count += 1;
            }
            return None;
        }
        self.in_window += 1;
        self.last.insert(key, (now, 0));
        Some(std::mem::take(&mut self.left_out))
    }
}

impl PipelineGate {
    pub(crate) fn new(supervisor: Arc<Supervisor>) -> Result<Self, CliError> {
        Ok(Self {
            supervisor,
            capability: Capability::new("net")?,
            throttle: std::sync::Mutex::new(Throttle::default()),
        })
    }

    /// Records `decided` if it allows, or if the throttle admits its denial.
    fn record(&self, decided: cordon_supervisor::Decided) -> Decision {
        let pipeline = self.supervisor.pipeline();
        if decided.decision.allow {
            return pipeline.record_decided(&self.capability, decided).decision;
        }
        let resource = decided
            .input
            .as_ref()
            .map(|input| &input["resource"])
            .cloned()
            .unwrap_or_default();
        // The same request refused for the same reason: action, the whole resource (host,
        // port, method and path), the first reason.
        let key = format!(
            "{}|{}|{}",
            decided
                .input
                .as_ref()
                .map(|input| input["action"].to_string())
                .unwrap_or_default(),
            resource,
            decided
                .decision
                .reasons
                .first()
                .cloned()
                .unwrap_or_default()
        );
        let admitted = self
            .throttle
            .lock()
            .map(|mut t| t.admit(key, std::time::Instant::now()))
            .unwrap_or(Some(0));
        match admitted {
            Some(left_out) => {
                let mut decided = decided;
                if left_out > 0 {
                    if let Some(input) = decided.input.as_mut() {
                        input["coalesced"] = json!(left_out);
                    }
                }
                pipeline.record_decided(&self.capability, decided).decision
            }
            None => decided.decision,
        }
    }

    fn request(&self, action: &str, resource: Value, context: Value) -> Request {
        let mut request = Request {
            capability: Some("net".into()),
            action: action.to_owned(),
            ..Request::default()
        };
        if let Ok(resource) = serde_json::from_value(resource) {
            request.resource = resource;
        }
        if let Ok(context) = serde_json::from_value(context) {
            request.context = context;
        }
        request
    }
}

impl Gate for PipelineGate {
    fn decide(&self, action: &str, resource: Value, context: Value) -> Decision {
        let request = self.request(action, resource, context);
        let pipeline = self.supervisor.pipeline();
        match pipeline.builder().build_for(&self.capability, &request) {
            Ok(input) => self.record(pipeline.decide_unrecorded(&self.capability, input)),
            Err(_) => pipeline.decide(&request).decision,
        }
    }

    fn may_resolve(&self, resource: Value, context: Value) -> Decision {
        // Only a refusal is recorded: an allowance is followed by the recorded decision on
        // the addresses the name resolved to.
        let request = self.request("resolve", resource, context);
        let pipeline = self.supervisor.pipeline();
        match pipeline.builder().build_for(&self.capability, &request) {
            Ok(input) => {
                let decided = pipeline.decide_unrecorded(&self.capability, input);
                if decided.decision.allow {
                    decided.decision
                } else {
                    self.record(decided)
                }
            }
            Err(_) => pipeline.decide(&request).decision,
        }
    }

    fn cut(
        &self,
        action: &str,
        resource: Value,
        context: Value,
        decision: &Decision,
        reason: &str,
    ) {
        tracing::warn!("{reason}");
        let request = self.request(action, resource, context);
        let mut input = self
            .supervisor
            .pipeline()
            .builder()
            .build_for(&self.capability, &request)
            .unwrap_or_else(|_| json!({}));
        input["result"] = json!({ "cut": reason });
        if let Err(err) = self.supervisor.pipeline().record_outcome(
            &self.capability,
            input,
            decision.clone(),
            Outcome::Refused,
            false,
        ) {
            tracing::error!("cannot record that a connection was cut: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;
    use std::time::{Duration, Instant};

    #[test]
    fn a_flood_of_denials_is_coalesced_and_capped() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        // The same denial a thousand times in a second: recorded once.
        let admitted = (0..1000)
            .filter(|_| {
                throttle
                    .admit("connect|evil|443|no".into(), start)
                    .is_some()
            })
            .count();
        assert_eq!(admitted, 1);
        // A second later it is recorded again, carrying the count of those left out.
        assert_eq!(
            throttle.admit("connect|evil|443|no".into(), start + Duration::from_secs(1)),
            Some(999)
        );
        // Many different denials: at most PER_WINDOW recorded in the window.
        let later = start + Duration::from_secs(2);
        let admitted = (0..5000)
            .filter(|n| {
                throttle
                    .admit(format!("connect|h{n}|443|no"), later)
                    .is_some()
            })
            .count();
        assert_eq!(admitted as u64, Throttle::PER_WINDOW - 2);
        // The next window starts afresh.
        assert!(throttle
            .admit(
                "connect|h-new|443|no".into(),
                later + Duration::from_secs(10)
            )
            .is_some());
    }
}
