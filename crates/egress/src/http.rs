//! HTTP/1.1 proxying: `CONNECT host:port` tunnels and absolute-form requests
//! (`GET http://host/path`), each request of a keep-alive connection decided on its own.
//!
//! Requests whose framing two parsers could read differently are refused, since that is
//! how a second request is smuggled past the first decision: `Content-Length` together
//! with `Transfer-Encoding`, more than one `Content-Length`, a transfer coding other than
//! `chunked`, folded header lines, a `Host` header naming another host than the URI.

use std::sync::atomic::AtomicU64;

use cordon_inspect::redact::{Blocked, Encoding, Redaction};
use serde_json::json;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::host::{parse_authority, Host};
use crate::relay::{count, Cut};
use crate::tls::{self, Hello};
use crate::{Decided, Proxy, Refusal};

const MAX_HEADERS: usize = 100;
/// The largest chunk-size or trailer line.
const MAX_LINE: usize = 4096;

/// An HTTP error answered to the client, which is then disconnected.
#[derive(Debug)]
pub(crate) struct Answer {
    code: u16,
    message: String,
}

fn answer(code: u16, message: impl Into<String>) -> Answer {
    Answer {
        code,
        message: message.into(),
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

async fn send_answer<W: AsyncWrite + Unpin + ?Sized>(to: &mut W, answer: &Answer) {
    let body = format!("{}\n", answer.message.replace(['\r', '\n'], " "));
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.code,
        reason_phrase(answer.code),
        body.len()
    );
    let _ = to.write_all(head.as_bytes()).await;
    let _ = to.write_all(body.as_bytes()).await;
    let _ = to.shutdown().await;
}

/// Reads a head (up to the empty line). `Ok(None)`: the peer closed before sending a byte.
async fn read_head<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, Answer> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = (&mut *reader)
            .take((max + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .await
            .map_err(|e| answer(400, format!("cannot read the request: {e}")))?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(answer(400, "the request head ends before its empty line"));
        }
        if head.len() > max {
            return Err(answer(
                431,
                format!("the request head is larger than {max} bytes"),
            ));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Empty lines before a request are allowed (RFC 9112 §2.2): skip them.
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

struct Headers {
    list: Vec<(String, Vec<u8>)>,
}

impl Headers {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.list
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The `Host` header; two are refused (RFC 9112 §3.2: a server must answer 400), as a
    /// second one could name another site on a shared address than the one decided.
    fn host(&self) -> Result<Option<&[u8]>, Answer> {
        let mut hosts = self.all("host");
        let first = hosts.next();
        if hosts.next().is_some() {
            return Err(answer(400, "a request has more than one Host header"));
        }
        Ok(first)
    }

    /// `Connection` tokens, lowercase.
    fn connection_tokens(&self) -> Vec<String> {
        self.all("connection")
            .flat_map(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// The body framing the headers announce; ambiguous framing is refused.
    fn framing(&self, is_request: bool) -> Result<Framing, String> {
        let lengths: Vec<&[u8]> = self.all("content-length").collect();
        let codings: Vec<&[u8]> = self.all("transfer-encoding").collect();
        if !lengths.is_empty() && !codings.is_empty() {
            return Err("both Content-Length and Transfer-Encoding are set".into());
        }
        if lengths.len() > 1 {
            return Err("more than one Content-Length".into());
        }
        if let Some(length) = lengths.first() {
            let text = std::str::from_utf8(length).unwrap_or("").trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("Content-Length `{text}` is not a number"));
            }
            let n: u64 = text
                .parse()
                .map_err(|_| format!("Content-Length `{text}` is too large"))?;
            return Ok(if n == 0 {
                Framing::None
            } else {
                Framing::Length(n)
            });
        }
        if !codings.is_empty() {
            let joined: Vec<String> = codings
                .iter()
                .flat_map(|v| {
                    String::from_utf8_lossy(v)
                        .split(',')
                        .map(|t| t.trim().to_ascii_lowercase())
                        .collect::<Vec<_>>()
                })
                .collect();
            if joined != ["chunked"] {
                return Err(format!(
                    "Transfer-Encoding `{}` is refused (only `chunked`)",
                    joined.join(", ")
                ));
            }
            return Ok(Framing::Chunked);
        }
        Ok(if is_request {
            Framing::None
        } else {
            Framing::Close
        })
    }

    /// The headers to pass on: without hop-by-hop headers and those `Connection` names.
    fn forwarded(&self) -> Vec<(&str, &[u8])> {
        let named = self.connection_tokens();
        const HOP: [&str; 9] = [
            "connection",
            "expect",
            "proxy-connection",
            "keep-alive",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
            "trailer",
            "upgrade",
        ];
        self.list
            .iter()
            .filter(|(n, _)| {
                let lower = n.to_ascii_lowercase();
                !HOP.contains(&lower.as_str()) && !named.contains(&lower)
            })
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect()
    }
}

struct Request {
    method: String,
    target: String,
    minor: u8,
    headers: Headers,
}

fn parse_request(head: &[u8]) -> Result<Request, Answer> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(answer(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(answer(
                431,
                format!("more than {MAX_HEADERS} header fields"),
            ))
        }
        Err(e) => return Err(answer(400, format!("malformed request: {e}"))),
    }
    let headers = Headers {
        list: request
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    };
    Ok(Request {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        minor: request.version.unwrap_or(1),
        headers,
    })
}

/// `http://authority/path?query` → (authority, path).
fn split_absolute(target: &str) -> Result<(&str, &str), Answer> {
    let Some(rest) = target.strip_prefix("http://").or_else(|| {
        target
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("http://"))
            .map(|_| &target[7..])
    }) else {
        if target.to_ascii_lowercase().starts_with("https://") {
            return Err(answer(
                400,
                "https:// requests go through CONNECT, not as absolute-form requests",
            ));
        }
        return Err(answer(
            400,
            format!("`{target}` is not a proxy request (absolute http:// URI or CONNECT)"),
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = if path.is_empty() { "/" } else { path };
    if path.contains('#') {
        return Err(answer(400, "a request target has no fragment"));
    }
    if path.starts_with('?') {
        return Err(answer(
            400,
            "use `http://host/?query`, not `http://host?query`",
        ));
    }
    Ok((authority, path))
}

pub(crate) async fn serve(proxy: &Proxy, stream: TcpStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut first = true;
    loop {
        let wait = if first {
            proxy.options().head_timeout
        } else {
            proxy.options().idle_timeout
        };
        first = false;
        let head = match tokio::time::timeout(
            wait,
            read_head(&mut reader, proxy.options().max_head_bytes),
        )
        .await
        {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return,
            Ok(Err(a)) => return send_answer(&mut write, &a).await,
            Err(_) => {
                return send_answer(
                    &mut write,
                    &answer(408, "the request head did not arrive in time"),
                )
                .await
            }
        };
        let request = match parse_request(&head) {
            Ok(request) => request,
            Err(a) => return send_answer(&mut write, &a).await,
        };
        if request.method.eq_ignore_ascii_case("CONNECT") {
            return connect(proxy, &request, reader, write).await;
        }
        match forward(proxy, &request, &head, &mut reader, &mut write).await {
            Ok(true) => continue,
            Ok(false) => return,
            Err(a) => return send_answer(&mut write, &a).await,
        }
    }
}

fn refusal_answer(refusal: Refusal) -> Answer {
    match refusal {
        Refusal::Denied(reason) => answer(403, format!("cordon: {reason}")),
        Refusal::Unresolvable(reason) => answer(502, format!("cordon: {reason}")),
        Refusal::Unreachable(reason) => answer(502, format!("cordon: {reason}")),
    }
}

async fn connect(
    proxy: &Proxy,
    request: &Request,
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut write: tokio::net::tcp::OwnedWriteHalf,
) {
    let target = match parse_authority(&request.target, None) {
        Ok(target) => target,
        Err(e) => {
            return send_answer(&mut write, &answer(400, format!("CONNECT target: {e}"))).await
        }
    };
    match request.headers.host() {
        Ok(Some(host)) => {
            if let Err(a) = same_host(host, &target) {
                return send_answer(&mut write, &a).await;
            }
        }
        Ok(None) => {}
        Err(a) => return send_answer(&mut write, &a).await,
    }
    let (host, port) = target;
    let decided = match proxy
        .decide(host, port, "connect", json!({"scheme": "tcp"}))
        .await
    {
        Ok(decided) => decided,
        Err(refusal) => return send_answer(&mut write, &refusal_answer(refusal)).await,
    };
    let upstream = match proxy.connect(&decided).await {
        Ok(upstream) => upstream,
        Err(refusal) => return send_answer(&mut write, &refusal_answer(refusal)).await,
    };
    if write
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let leftover = reader.buffer().to_vec();
    let mut client_read = reader.into_inner();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let result = tunnel_checked(
        proxy,
        &decided,
        &mut client_read,
        &mut write,
        &mut upstream_read,
        &mut upstream_write,
        &leftover,
    )
    .await;
    report_cut(proxy, &decided, result);
}

/// Relays a tunnel both ways. What the client sends first is checked before it goes
/// upstream: when it is a TLS ClientHello, the server name in it must be the host decided
/// on (else domain fronting). The server may speak first (SSH, SMTP): the download
/// direction runs meanwhile.
pub(crate) async fn tunnel_checked(
    proxy: &Proxy,
    decided: &Decided,
    client_read: &mut OwnedReadHalf,
    client_write: &mut OwnedWriteHalf,
    upstream_read: &mut OwnedReadHalf,
    upstream_write: &mut OwnedWriteHalf,
    leftover: &[u8],
) -> Result<(), Cut> {
    let sent = proxy
        .session()
        .sent_counter(&decided.host.as_policy_string());
    let up = async {
        let mut first = leftover.to_vec();
        let mut buf = [0u8; 4096];
        if first.is_empty() {
            let n = client_read.read(&mut buf).await.map_err(Cut::Io)?;
            if n == 0 {
                let _ = upstream_write.shutdown().await;
                return Ok(());
            }
            first.extend_from_slice(&buf[..n]);
        }
        if first.first() == Some(&0x16) {
            let deadline = proxy.options().head_timeout;
            let need = loop {
                match tls::record_len(&first) {
                    Some(len) if first.len() >= len => break len,
                    _ if first.len() > 5 + 16 * 1024 => {
                        return Err(Cut::Refused("oversized TLS record".into()))
                    }
                    _ => {}
                }
                let n = match tokio::time::timeout(deadline, client_read.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return Err(Cut::Refused("the TLS ClientHello was cut short".into())),
                };
                first.extend_from_slice(&buf[..n]);
            };
            check_hello(decided, &first[..need])?;
        }
        count(&sent, first.len(), decided.budget).map_err(Cut::Budget)?;
        upstream_write.write_all(&first).await.map_err(Cut::Io)?;
        copy(client_read, upstream_write, Some((&sent, decided.budget))).await
    };
    let down = copy(upstream_read, client_write, None);
    tokio::try_join!(up, down).map(|_| ())
}

/// The rest of a tunnel, one way: in the kernel where it can splice.
async fn copy(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    budget: Option<(&AtomicU64, Option<u64>)>,
) -> Result<(), Cut> {
    #[cfg(target_os = "linux")]
    {
        crate::relay::splice_copy(from, to, budget).await
    }
    #[cfg(not(target_os = "linux"))]
    crate::relay::copy(from, to, budget).await
}

fn check_hello(decided: &Decided, record: &[u8]) -> Result<(), Cut> {
    match tls::client_hello(record) {
        Hello::Sni(name) => {
            let expected = match &decided.host {
                Host::Name(host) => Some(host.as_str()),
                Host::Ip(_) => None,
            };
            if expected == Some(name.as_str()) {
                Ok(())
            } else {
                Err(Cut::Refused(format!(
                    "the TLS server name `{name}` is not the host `{}` that was allowed (domain fronting); connection closed",
                    decided.host
                )))
            }
        }
        Hello::NoSni | Hello::NotTls => Ok(()),
        Hello::Malformed => Err(Cut::Refused(
            "the TLS ClientHello cannot be read whole; connection closed".into(),
        )),
    }
}

/// Records why a tunnel was cut, when it was cordon that cut it.
pub(crate) fn report_cut(proxy: &Proxy, decided: &Decided, result: Result<(), Cut>) {
    match result {
        Err(Cut::Budget(over)) => proxy.cut(
            decided,
            &proxy.session().budget_refusal(
                &decided.host.as_policy_string(),
                over.budget,
                "connection closed",
            ),
        ),
        Err(Cut::Refused(reason)) => proxy.cut(decided, &reason),
        Err(Cut::Io(err)) => tracing::debug!("tunnel to `{}` ended: {err}", decided.host),
        Ok(()) => {}
    }
}

/// The `Host` header must name the URI's host and port.
fn same_host(header: &[u8], target: &(Host, u16)) -> Result<(), Answer> {
    let text = std::str::from_utf8(header).unwrap_or("");
    let parsed = parse_authority(text.trim(), Some(target.1))
        .map_err(|e| answer(400, format!("Host header: {e}")))?;
    if &parsed != target {
        return Err(answer(
            400,
            format!(
                "the Host header `{}` does not name the request's host `{}:{}`",
                text.trim(),
                target.0,
                target.1
            ),
        ));
    }
    Ok(())
}

/// Forwards one absolute-form request and its response. `Ok(true)`: the connection may
/// carry another request.
async fn forward<R, W>(
    proxy: &Proxy,
    request: &Request,
    _head: &[u8],
    reader: &mut R,
    write: &mut W,
) -> Result<bool, Answer>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (authority, path) = split_absolute(&request.target)?;
    // The policy decides, and the server receives, one spelling of the path: no dot
    // segments, unreserved characters not percent-encoded (`/a/%2e%2e/admin` is `/admin`).
    // An encoded or backward slash is a path separator to some servers and not to others:
    // the policy could not know which path it decides on.
    let lowered = path.to_ascii_lowercase();
    if lowered.contains("%2f") || lowered.contains("%5c") || path.contains('\\') {
        return Err(answer(
            400,
            "a request path with an encoded or backward slash is refused: servers disagree on what it names",
        ));
    }
    let path = normalize_path(path);
    let path = path.as_str();
    let target = parse_authority(authority, Some(80)).map_err(|e| answer(400, e))?;
    if let Some(host) = request.headers.host()? {
        same_host(host, &target)?;
    }
    let framing = request
        .headers
        .framing(true)
        .map_err(|why| answer(400, format!("ambiguous request: {why}")))?;
    let (host, port) = target;
    let mut decided = proxy
        .decide(
            host,
            port,
            "http",
            json!({"scheme": "http", "http": {"method": request.method, "path": path}}),
        )
        .await
        .map_err(refusal_answer)?;
    // A `redact` obligation: the URL, the header values and the body leave with what the
    // detectors find replaced, or not at all when the policy blocks what they find.
    let redaction = Redaction::from_obligations(&decided.decision.obligations).map_err(|e| {
        let reason = format!("the policy's `redact` obligation cannot be carried out: {e}");
        proxy.cut(&decided, &reason);
        answer(403, format!("cordon: {reason}"))
    })?;
    let refuse = |decided: &Decided, blocked: Blocked, what: &str| {
        let reason = format!("{what}: {blocked}; refused");
        proxy.cut(decided, &reason);
        answer(403, format!("cordon: {reason}"))
    };
    let path = match &redaction {
        Some(redaction) => {
            let redacted = match redaction.apply(path.as_bytes(), Encoding::Percent) {
                Ok(r) => String::from_utf8_lossy(&r.data).into_owned(),
                Err(blocked) => {
                    // What is recorded of the refusal names the kinds, not the values.
                    decided.resource["http"]["path"] = json!("(withheld)");
                    return Err(refuse(&decided, blocked, "the URL"));
                }
            };
            decided.resource["http"]["path"] = json!(redacted);
            redacted
        }
        None => path.to_owned(),
    };
    let path = path.as_str();
    let body = match &redaction {
        Some(redaction) if framing != Framing::None => {
            Some(redacted_body(proxy, &decided, redaction, request, reader, write, framing).await?)
        }
        _ => None,
    };
    let upstream = proxy.connect(&decided).await.map_err(refusal_answer)?;
    let (upstream_read, mut upstream_write) = upstream.into_split();
    let mut upstream_read = BufReader::new(upstream_read);
    let sent = proxy
        .session()
        .sent_counter(&decided.host.as_policy_string());

    let method = match &redaction {
        Some(redaction) => match redaction.apply(request.method.as_bytes(), Encoding::Percent) {
            Ok(r) => String::from_utf8_lossy(&r.data).into_owned(),
            Err(blocked) => return Err(refuse(&decided, blocked, "the request method")),
        },
        None => request.method.clone(),
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    if request.headers.host()?.is_none() {
        out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    }
    for (name, value) in request.headers.forwarded() {
        let (name, value) = match &redaction {
            Some(redaction) => {
                if body.is_some()
                    && (name.eq_ignore_ascii_case("content-length")
                        || name.eq_ignore_ascii_case("transfer-encoding"))
                {
                    continue;
                }
                // The header as one line, so a name that says what the value is
                // (`X-Api-Key: ...`) is seen with it; the name too leaves redacted.
                let line = [name.as_bytes(), b": ", value].concat();
                let redacted = match redaction.apply(&line, Encoding::Percent) {
                    Ok(r) => r.data,
                    Err(blocked) => return Err(refuse(&decided, blocked, "a request header")),
                };
                match redacted.windows(2).position(|w| w == b": ") {
                    Some(at) => (
                        std::borrow::Cow::Owned(
                            String::from_utf8_lossy(&redacted[..at]).into_owned(),
                        ),
                        std::borrow::Cow::Owned(redacted[at + 2..].to_vec()),
                    ),
                    // The separator itself was inside what was redacted: the whole line goes
                    // as one redacted value under a name of cordon's.
                    None => (
                        std::borrow::Cow::Borrowed("X-Cordon-Redacted"),
                        std::borrow::Cow::Owned(redacted),
                    ),
                }
            }
            None => (
                std::borrow::Cow::Borrowed(name),
                std::borrow::Cow::Borrowed(value),
            ),
        };
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = &body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    let over = |over: crate::relay::OverBudget| {
        let reason = proxy.session().budget_refusal(
            &decided.host.as_policy_string(),
            over.budget,
            "request refused",
        );
        proxy.cut(&decided, &reason);
        answer(403, format!("cordon: {reason}"))
    };
    count(&sent, out.len(), decided.budget).map_err(over)?;
    upstream_write
        .write_all(&out)
        .await
        .map_err(|e| answer(502, format!("cordon: upstream write failed: {e}")))?;
    // `Expect: 100-continue` is answered here (the server is not asked: the request was
    // already decided), so the client sends its body without waiting.
    let expects_continue = request
        .headers
        .all("expect")
        .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
    if let Some(body) = &body {
        count(&sent, body.len(), decided.budget).map_err(over)?;
        upstream_write
            .write_all(body)
            .await
            .map_err(|e| answer(502, format!("cordon: upstream write failed: {e}")))?;
    } else {
        if expects_continue && framing != Framing::None {
            write
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|e| answer(400, e.to_string()))?;
        }
        relay_body(
            reader,
            &mut upstream_write,
            framing,
            Some((&sent, decided.budget)),
        )
        .await
        .map_err(|cut| match cut {
            Cut::Budget(o) => over(o),
            other => answer(400, format!("cannot relay the request body: {other:?}")),
        })?;
    }

    // The response, and as many interim (1xx) responses as come first.
    loop {
        let head = match tokio::time::timeout(
            proxy.options().idle_timeout,
            read_head(&mut upstream_read, proxy.options().max_head_bytes),
        )
        .await
        {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return Err(answer(502, "cordon: the server closed without answering")),
            Ok(Err(a)) => return Err(answer(502, format!("cordon: bad response: {}", a.message))),
            Err(_) => return Err(answer(504, "cordon: the server did not answer in time")),
        };
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut storage);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(answer(502, "cordon: malformed response from the server")),
        }
        let code = response.code.unwrap_or(502);
        let headers = Headers {
            list: response
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
        };
        let no_body = request.method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&code)
            || code == 204
            || code == 304;
        let framing = if no_body {
            Framing::None
        } else {
            headers
                .framing(false)
                .map_err(|why| answer(502, format!("cordon: ambiguous response: {why}")))?
        };
        let client_close = request
            .headers
            .connection_tokens()
            .iter()
            .any(|t| t == "close")
            || (request.minor == 0
                && !request
                    .headers
                    .connection_tokens()
                    .iter()
                    .any(|t| t == "keep-alive"));
        let keep_alive = framing != Framing::Close && !client_close && code >= 200;
        let mut out =
            format!("HTTP/1.1 {} {}\r\n", code, response.reason.unwrap_or("")).into_bytes();
        for (name, value) in headers.forwarded() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if code >= 200 {
            out.extend_from_slice(if keep_alive {
                b"Connection: keep-alive\r\n\r\n".as_slice()
            } else {
                b"Connection: close\r\n\r\n".as_slice()
            });
        } else {
            out.extend_from_slice(b"\r\n");
        }
        write
            .write_all(&out)
            .await
            .map_err(|e| answer(502, e.to_string()))?;
        if code < 200 {
            continue;
        }
        relay_body(&mut upstream_read, write, framing, None)
            .await
            .map_err(|_| answer(502, "cordon: the response was cut short"))?;
        write
            .flush()
            .await
            .map_err(|e| answer(502, e.to_string()))?;
        if !keep_alive {
            let _ = write.shutdown().await;
        }
        return Ok(keep_alive);
    }
}

/// The largest request body cordon holds to redact; a larger one is refused.
const MAX_REDACTED_BODY: u64 = 16 << 20;

/// Reads a request body whole (answering `Expect: 100-continue` first), and redacts it.
async fn redacted_body<R, W>(
    proxy: &Proxy,
    decided: &Decided,
    redaction: &Redaction,
    request: &Request,
    reader: &mut R,
    write: &mut W,
    framing: Framing,
) -> Result<Vec<u8>, Answer>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let refuse = |code: u16, reason: String| {
        proxy.cut(decided, &reason);
        answer(code, format!("cordon: {reason}"))
    };
    let coded = request.headers.all("content-encoding").any(|v| {
        !String::from_utf8_lossy(v)
            .trim()
            .eq_ignore_ascii_case("identity")
    });
    if coded {
        return Err(refuse(
            415,
            "the policy asks to redact this request, and a compressed body cannot be inspected; refused".into(),
        ));
    }
    if let Framing::Length(n) = framing {
        if n > MAX_REDACTED_BODY {
            return Err(refuse(
                413,
                format!("the policy asks to redact this request, and its body ({n} bytes) is larger than the {MAX_REDACTED_BODY} bytes cordon inspects; refused"),
            ));
        }
    }
    // At most four bodies are held for redaction at once (each up to 16 MiB, with the
    // search's own copies); the others wait their turn.
    static REDACTING: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let _turn = REDACTING
        .get_or_init(|| tokio::sync::Semaphore::new(4))
        .acquire()
        .await
        .map_err(|_| answer(503, "cordon: the proxy is shutting down"))?;
    let expects_continue = request
        .headers
        .all("expect")
        .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        write
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| answer(400, e.to_string()))?;
    }
    // A body that stalls holds memory: it has the idle timeout to arrive whole.
    let body = tokio::time::timeout(
        proxy.options().idle_timeout,
        read_whole_body(reader, framing, MAX_REDACTED_BODY),
    )
    .await
    .map_err(|_| answer(408, "cordon: the request body did not arrive in time"))?
    .map_err(|cut| match cut {
        Cut::Refused(why) => refuse(
            413,
            format!("the policy asks to redact this request, and {why}; refused"),
        ),
        other => answer(400, format!("cannot read the request body: {other:?}")),
    })?;
    let form = request.headers.all("content-type").any(|v| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let encoding = if form {
        Encoding::Percent
    } else {
        Encoding::Plain
    };
    // Searching up to 16 MiB is work for a blocking thread, not for the proxy's workers.
    let redaction = redaction.clone();
    let applied = tokio::task::spawn_blocking(move || redaction.apply(&body, encoding))
        .await
        .map_err(|_| {
            refuse(
                500,
                "the redaction of the request body failed; refused".into(),
            )
        })?;
    match applied {
        Ok(redacted) => Ok(redacted.data),
        Err(blocked) => Err(refuse(403, format!("the request body: {blocked}; refused"))),
    }
}

/// A whole body, de-chunked, of at most `max` bytes.
async fn read_whole_body<R: AsyncBufRead + Unpin>(
    from: &mut R,
    framing: Framing,
    max: u64,
) -> Result<Vec<u8>, Cut> {
    let too_large = || {
        Cut::Refused(format!(
            "its body is larger than the {max} bytes cordon inspects"
        ))
    };
    let invalid = |why: &str| {
        Cut::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            why.to_owned(),
        ))
    };
    let mut body = Vec::new();
    match framing {
        Framing::None | Framing::Close => {}
        Framing::Length(n) => {
            if n > max {
                return Err(too_large());
            }
            let read = (&mut *from)
                .take(n)
                .read_to_end(&mut body)
                .await
                .map_err(Cut::Io)?;
            if read as u64 != n {
                return Err(Cut::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Framing::Chunked => {
            let mut line = Vec::new();
            loop {
                read_line(from, &mut line).await?;
                let size = chunk_size(&line).ok_or_else(|| invalid("bad chunk size line"))?;
                if size == 0 {
                    loop {
                        read_line(from, &mut line).await?;
                        if line == b"\r\n" {
                            return Ok(body);
                        }
                        if !line.ends_with(b"\r\n") {
                            return Err(invalid("a trailer line does not end in CRLF"));
                        }
                    }
                }
                let total = (body.len() as u64).checked_add(size).filter(|&t| t <= max);
                if total.is_none() {
                    return Err(too_large());
                }
                // Read as it comes, not allocated ahead on the sender's word.
                let read = (&mut *from)
                    .take(size)
                    .read_to_end(&mut body)
                    .await
                    .map_err(Cut::Io)?;
                if read as u64 != size {
                    return Err(Cut::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                let mut end = [0u8; 2];
                from.read_exact(&mut end).await.map_err(Cut::Io)?;
                if &end != b"\r\n" {
                    return Err(invalid("chunk data does not end in CRLF"));
                }
            }
        }
    }
    Ok(body)
}

async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, line: &mut Vec<u8>) -> Result<(), Cut> {
    line.clear();
    let n = (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', line)
        .await
        .map_err(Cut::Io)?;
    if n == 0 || !line.ends_with(b"\n") {
        return Err(Cut::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad chunk line",
        )));
    }
    Ok(())
}

/// Copies one body with `framing`, counting against a budget when given.
async fn relay_body<R, W>(
    from: &mut R,
    to: &mut W,
    framing: Framing,
    budget: Option<(&AtomicU64, Option<u64>)>,
) -> Result<(), Cut>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let counted = |n: usize| match budget {
        Some((sent, limit)) => count(sent, n, limit).map_err(Cut::Budget),
        None => Ok(()),
    };
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => {
            let mut remaining = n;
            let mut buf = vec![0u8; crate::relay::BUFFER];
            while remaining > 0 {
                let want = usize::try_from(remaining.min(buf.len() as u64)).unwrap_or(buf.len());
                let got = from.read(&mut buf[..want]).await.map_err(Cut::Io)?;
                if got == 0 {
                    return Err(Cut::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                counted(got)?;
                to.write_all(&buf[..got]).await.map_err(Cut::Io)?;
                remaining -= got as u64;
            }
            Ok(())
        }
        Framing::Close => {
            let mut buf = vec![0u8; crate::relay::BUFFER];
            loop {
                let got = from.read(&mut buf).await.map_err(Cut::Io)?;
                if got == 0 {
                    return Ok(());
                }
                counted(got)?;
                to.write_all(&buf[..got]).await.map_err(Cut::Io)?;
            }
        }
        Framing::Chunked => {
            let invalid = |why: &str| {
                Cut::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    why.to_owned(),
                ))
            };
            let mut line = Vec::new();
            loop {
                read_line(from, &mut line).await?;
                let size = chunk_size(&line).ok_or_else(|| invalid("bad chunk size line"))?;
                counted(line.len())?;
                to.write_all(&line).await.map_err(Cut::Io)?;
                if size == 0 {
                    // Trailers, up to the empty line; every line ends in CRLF.
                    loop {
                        read_line(from, &mut line).await?;
                        if !line.ends_with(b"\r\n") {
                            return Err(invalid("a trailer line does not end in CRLF"));
                        }
                        counted(line.len())?;
                        to.write_all(&line).await.map_err(Cut::Io)?;
                        if line == b"\r\n" {
                            return Ok(());
                        }
                    }
                }
                Box::pin(relay_body(
                    &mut *from,
                    &mut *to,
                    Framing::Length(size),
                    budget,
                ))
                .await?;
                // The chunk's data ends in CRLF, and nothing else.
                let mut end = [0u8; 2];
                from.read_exact(&mut end).await.map_err(Cut::Io)?;
                if &end != b"\r\n" {
                    return Err(invalid("chunk data does not end in CRLF"));
                }
                counted(2)?;
                to.write_all(&end).await.map_err(Cut::Io)?;
            }
        }
    }
}

/// The size of a chunk from its size line (`1a;ext=x\r\n`): hexadecimal digits only (no
/// sign, no space, at most 16), the line ending in CRLF.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n")?;
    let digits = line.split(|&b| b == b';').next()?;
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// The path of a request as one spelling (RFC 3986 §6.2.2): percent-encoded unreserved
/// characters decoded (others, such as `%2F`, kept, with upper-case hex), then dot segments
/// removed (§5.2.4). The query is kept as it is.
fn normalize_path(target: &str) -> String {
    let (path, query) = match target.find('?') {
        Some(at) => target.split_at(at),
        None => (target, ""),
    };
    let bytes = path.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                let unreserved = value.is_ascii_alphanumeric() || b"-._~".contains(&value);
                if unreserved {
                    decoded.push(value);
                } else {
                    decoded.extend_from_slice(format!("%{value:02X}").as_bytes());
                }
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = decoded.split('/').collect();
    let last = parts.len().saturating_sub(1);
    for (n, segment) in parts.iter().enumerate().skip(1) {
        match *segment {
            "." => {
                if n == last {
                    segments.push("");
                }
            }
            ".." => {
                segments.pop();
                if n == last {
                    segments.push("");
                }
            }
            other => segments.push(other),
        }
    }
    let mut out = String::from("/");
    out.push_str(&segments.join("/"));
    out.push_str(query);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_before_the_policy_sees_them() {
        for (raw, normal) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/allowed/../admin", "/admin"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../etc", "/etc"),
            ("/%61dmin", "/admin"),
            ("/a/%2e%2e/admin", "/admin"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/x?q=/../y", "/x?q=/../y"),
            ("/bad%zz", "/bad%zz"),
            ("/trail%2", "/trail%2"),
        ] {
            assert_eq!(normalize_path(raw), normal, "{raw}");
        }
    }

    #[test]
    fn chunk_sizes_are_strict_hex_lines() {
        assert_eq!(chunk_size(b"1a\r\n"), Some(26));
        assert_eq!(chunk_size(b"0;ext=1\r\n"), Some(0));
        for bad in [
            &b"+5\r\n"[..],
            b"5\n",
            b" 5\r\n",
            b"\r\n",
            b"0x5\r\n",
            b"11111111111111111\r\n",
        ] {
            assert_eq!(chunk_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn framing_of(head: &str) -> Result<Framing, String> {
        parse_request(head.as_bytes())
            .map_err(|a| a.message)?
            .headers
            .framing(true)
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        assert_eq!(
            framing_of("POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing_of("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        for head in [
            "POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST http://a/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST http://a/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        ] {
            assert!(framing_of(head).is_err(), "{head:?}");
        }
    }

    #[test]
    fn absolute_targets_split() {
        assert_eq!(
            split_absolute("http://example.com:8080/a?b").map_err(|a| a.message),
            Ok(("example.com:8080", "/a?b"))
        );
        assert_eq!(
            split_absolute("HTTP://example.com").map_err(|a| a.message),
            Ok(("example.com", "/"))
        );
        assert!(split_absolute("/relative").is_err());
        assert!(split_absolute("https://example.com/").is_err());
        assert!(split_absolute("http://example.com?q").is_err());
    }
}
