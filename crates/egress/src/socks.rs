//! SOCKS5 (RFC 1928), `CONNECT` only, no authentication, names resolved by the proxy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::host::Host;
use crate::{Proxy, Refusal};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CONNECT: u8 = 1;

/// Reply codes.
const SUCCEEDED: u8 = 0;
const GENERAL_FAILURE: u8 = 1;
const NOT_ALLOWED: u8 = 2;
const HOST_UNREACHABLE: u8 = 4;
const CONNECTION_REFUSED: u8 = 5;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_NOT_SUPPORTED: u8 = 8;

async fn reply(stream: &mut TcpStream, code: u8) {
    let _ = stream
        .write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0])
        .await;
    let _ = stream.shutdown().await;
}

/// Reads the greeting and the request; `Err` with the reply code to send.
async fn read_request(stream: &mut TcpStream) -> Result<(Host, u16), u8> {
    let mut head = [0u8; 2];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|_| GENERAL_FAILURE)?;
    let mut methods = vec![0u8; usize::from(head[1])];
    stream
        .read_exact(&mut methods)
        .await
        .map_err(|_| GENERAL_FAILURE)?;
    if !methods.contains(&NO_AUTH) {
        let _ = stream.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await;
        return Err(GENERAL_FAILURE);
    }
    stream
        .write_all(&[VERSION, NO_AUTH])
        .await
        .map_err(|_| GENERAL_FAILURE)?;
    let mut request = [0u8; 4];
    stream
        .read_exact(&mut request)
        .await
        .map_err(|_| GENERAL_FAILURE)?;
    if request[0] != VERSION {
        return Err(GENERAL_FAILURE);
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            stream
                .read_exact(&mut ip)
                .await
                .map_err(|_| GENERAL_FAILURE)?;
            Host::Ip(IpAddr::V4(Ipv4Addr::from(ip)))
        }
        4 => {
            let mut ip = [0u8; 16];
            stream
                .read_exact(&mut ip)
                .await
                .map_err(|_| GENERAL_FAILURE)?;
            Host::parse(&Ipv6Addr::from(ip).to_string()).map_err(|_| ADDRESS_NOT_SUPPORTED)?
        }
        3 => {
            let mut len = [0u8; 1];
            stream
                .read_exact(&mut len)
                .await
                .map_err(|_| GENERAL_FAILURE)?;
            let mut name = vec![0u8; usize::from(len[0])];
            stream
                .read_exact(&mut name)
                .await
                .map_err(|_| GENERAL_FAILURE)?;
            let name = String::from_utf8(name).map_err(|_| ADDRESS_NOT_SUPPORTED)?;
            Host::parse(&name).map_err(|_| ADDRESS_NOT_SUPPORTED)?
        }
        _ => return Err(ADDRESS_NOT_SUPPORTED),
    };
    let mut port = [0u8; 2];
    stream
        .read_exact(&mut port)
        .await
        .map_err(|_| GENERAL_FAILURE)?;
    if request[1] != CONNECT {
        return Err(COMMAND_NOT_SUPPORTED);
    }
    Ok((host, u16::from_be_bytes(port)))
}

pub(crate) async fn serve(proxy: &Proxy, mut stream: TcpStream) {
    let timeout = proxy.options().head_timeout;
    let request = match tokio::time::timeout(timeout, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err(code)) => return reply(&mut stream, code).await,
        Err(_) => return reply(&mut stream, GENERAL_FAILURE).await,
    };
    let (host, port) = request;
    let decided = match proxy
        .decide(host, port, "connect", json!({"scheme": "socks5"}))
        .await
    {
        Ok(decided) => decided,
        Err(Refusal::Denied(reason)) => {
            tracing::info!("socks5 refused: {reason}");
            return reply(&mut stream, NOT_ALLOWED).await;
        }
        Err(Refusal::Unresolvable(_)) => return reply(&mut stream, HOST_UNREACHABLE).await,
        Err(Refusal::Unreachable(_)) => return reply(&mut stream, CONNECTION_REFUSED).await,
    };
    let upstream = match proxy.connect(&decided).await {
        Ok(upstream) => upstream,
        Err(_) => return reply(&mut stream, CONNECTION_REFUSED).await,
    };
    if stream
        .write_all(&[VERSION, SUCCEEDED, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .is_err()
    {
        return;
    }
    let (mut client_read, mut client_write) = stream.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let result = crate::http::tunnel_checked(
        proxy,
        &decided,
        &mut client_read,
        &mut client_write,
        &mut upstream_read,
        &mut upstream_write,
        &[],
    )
    .await;
    crate::http::report_cut(proxy, &decided, result);
}
