//! `cordon proxy`: the egress proxy on its own.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_egress::{Gate, Proxy, ProxyOptions};
use cordon_supervisor::{PipelineGate, Supervisor};

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
/// connections per minute and upload bytes per host; its `redact` obligations take secrets
/// and personal data out of plain-HTTP requests (URL, header values, body) or refuse them
/// (`block_if`). HTTPS tunnels are opaque: a tunnel the policy would redact is refused.
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
        let gate: Arc<dyn Gate> = Arc::new(PipelineGate::new(Arc::clone(&supervisor)));
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
            note!("cordon proxy: listening on {bound} (HTTP and SOCKS5); Ctrl-C stops");
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
