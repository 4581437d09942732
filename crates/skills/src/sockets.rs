//! Raw sockets and name lookups (`wasi:sockets`), decided call by call under
//! `data.cordon.net`.
//!
//! A name lookup carries the name to whoever runs its DNS, so `resolve-addresses` is decided
//! (action `resolve`) before anything is asked. Each TCP connection, UDP destination and
//! explicit bind is decided on its address (actions `socket` and `listen`); the implicit
//! bind the kernel makes before a connection (any address, port 0) is not a decision.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, Network};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};
use wasmtime_wasi::WasiCtxBuilder;

use crate::runtime::Host;
use crate::Gate;

/// The interface whose function is replaced, as Wasmtime's bindings name it.
const LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// Replaces `resolve-addresses` in `linker` (which already has Wasmtime's) with one that
/// decides the name first.
pub(crate) fn add_decided(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(LOOKUP)?.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, Host>,
         (net, name): (Resource<Network>, String)|
         -> wasmtime::Result<(Result<Resource<ResolveAddressStream>, ErrorCode>,)> {
            let host = store.data_mut();
            let decision =
                host.gate
                    .decide("net", "lookup", json!({"host": name.to_ascii_lowercase()}));
            if !decision.allow {
                tracing::info!(
                    "skill denied looking up `{name}`: {}",
                    decision.reasons.join("; ")
                );
                return Ok((Err(ErrorCode::AccessDenied),));
            }
            let mut view = host.sockets();
            match ip_name_lookup::Host::resolve_addresses(&mut view, net, name) {
                Ok(stream) => Ok((Ok(stream),)),
                Err(err) => Ok((Err(network::Host::convert_error_code(&mut view, err)?),)),
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Lets the skill use sockets and name lookups, each address decided through `gate`.
pub(crate) fn decide_addresses(builder: &mut WasiCtxBuilder, gate: Arc<dyn Gate>) {
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true)
        .socket_addr_check(move |address: SocketAddr, used: SocketAddrUse| {
            let allowed = allowed(gate.as_ref(), address, used);
            Box::pin(async move { allowed })
        });
}

fn allowed(gate: &dyn Gate, address: SocketAddr, used: SocketAddrUse) -> bool {
    let (action, protocol) = match used {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind
            if address.ip().is_unspecified() && address.port() == 0 =>
        {
            return true;
        }
        SocketAddrUse::TcpBind | SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => {
            ("listen", "tcp")
        }
        SocketAddrUse::UdpBind => ("listen", "udp"),
        SocketAddrUse::TcpConnect => ("socket", "tcp"),
        SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => ("socket", "udp"),
    };
    let ip = address.ip().to_string();
    let decision = gate.decide(
        "net",
        action,
        json!({
            "host": ip,
            "port": address.port(),
            "addresses": [{"ip": ip}],
            "protocol": protocol,
        }),
    );
    if !decision.allow {
        tracing::info!(
            "skill denied {action} {protocol} {address}: {}",
            decision.reasons.join("; ")
        );
    }
    decision.allow
}
