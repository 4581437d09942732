//! Outgoing HTTP, made by the host and decided by `data.cordon.net` for every request.
//!
//! A skill's `wasi:http` request reaches [`Hooks::send_request`] whole: the body is read
//! (at most [`MAX_BODY`]) before anything leaves, so the decision sees the method, the URL
//! and the body's size. The host name is decided before it is looked up (a lookup alone
//! carries data to whoever runs the name's DNS), then the request on the addresses it
//! resolved to, and it is sent to exactly an address decided (over TLS for HTTPS, the
//! certificate checked against the name): a second lookup of the name, which could answer an
//! internal address, is never made. Redirects are not followed by the host: each hop is a new
//! request of the skill, decided again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use tokio_rustls::rustls::pki_types::ServerName;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::Gate;

/// The largest request body a skill may send.
pub const MAX_BODY: usize = 16 << 20;

/// How many requests of one run may have their bodies read at once (each is held in memory
/// until it is decided and sent).
const IN_FLIGHT: usize = 4;

/// How long a connection, the first byte and each later one may take, where the skill
/// set no timeout of its own.
const TIMEOUT: Duration = Duration::from_secs(60);

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// The hooks of one run: every request through the gate.
pub(crate) struct Hooks {
    pub(crate) gate: Arc<dyn Gate>,
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
}

impl Hooks {
    pub(crate) fn new(gate: Arc<dyn Gate>) -> Self {
        Self {
            gate,
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        }
    }
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        drop(fut);
        let gate = self.gate.clone();
        let in_flight = self.in_flight.clone();
        Box::new(async move {
            let _permit = in_flight
                .acquire_owned()
                .await
                .map_err(|_| HttpError::ConnectionLimitReached)?;
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(Some(MAX_BODY as u64)))?
                .to_bytes();
            let target = Target::of(&parts.uri)?;
            let addresses = target.resolve(gate.as_ref()).await?;
            let resource = json!({
                "host": target.host,
                "port": target.port,
                "addresses": addresses.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
                "http": {
                    "method": parts.method.as_str(),
                    "scheme": target.scheme,
                    "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                    "url": parts.uri.to_string(),
                    "body_bytes": body.len(),
                },
            });
            let decision = gate.decide("net", "http", resource.clone());
            if !decision.allow {
                tracing::info!(
                    "skill denied {} {}: {}",
                    parts.method,
                    parts.uri,
                    decision.reasons.join("; ")
                );
                return Err(HttpError::HttpRequestDenied);
            }
            let (parts, body) = match redact(gate.as_ref(), &decision, &resource, parts, body) {
                Ok(redacted) => redacted,
                Err(reason) => {
                    tracing::info!("skill request refused: {reason}");
                    return Err(HttpError::HttpRequestDenied);
                }
            };
            let options = with_default_timeouts(options);
            let request = http::Request::from_parts(parts, Full::new(body));
            send(request, &target, &addresses, options).await
        })
    }
}

/// Carries out the decision's `redact` obligations on a request about to leave: the path
/// and query, each header value and the body, with what the detectors find replaced. A
/// `block_if` that matches refuses the request, recorded through the gate.
fn redact(
    gate: &dyn Gate,
    decision: &cordon_types::Decision,
    resource: &serde_json::Value,
    mut parts: http::request::Parts,
    body: Bytes,
) -> Result<(http::request::Parts, Bytes), String> {
    use cordon_inspect::redact::{Encoding, Redaction};
    let refuse = |reason: String| {
        let mut resource = resource.clone();
        if let (Ok(Some(redaction)), Some(http)) = (
            Redaction::from_obligations(&decision.obligations),
            resource.get_mut("http"),
        ) {
            let _ = redaction.apply_to_url_fields(http);
        }
        gate.cut("net", "http", resource, decision, &reason);
        reason
    };
    let redaction = match Redaction::from_obligations(&decision.obligations) {
        Ok(Some(redaction)) => redaction,
        Ok(None) => return Ok((parts, body)),
        Err(e) => {
            return Err(refuse(format!(
                "the policy's `redact` obligation cannot be carried out: {e}"
            )))
        }
    };
    let blocked =
        |what: &str, b: cordon_inspect::redact::Blocked| refuse(format!("{what}: {b}; refused"));
    if let Some(path) = parts.uri.path_and_query() {
        let redacted = redaction
            .apply(path.as_str().as_bytes(), Encoding::Percent)
            .map_err(|b| blocked("the URL", b))?;
        let mut uri = parts.uri.clone().into_parts();
        uri.path_and_query = Some(
            http::uri::PathAndQuery::try_from(redacted.data)
                .map_err(|e| refuse(format!("the redacted URL is not valid: {e}")))?,
        );
        parts.uri = http::Uri::from_parts(uri)
            .map_err(|e| refuse(format!("the redacted URL is not valid: {e}")))?;
    }
    // Each header as one line, as the egress proxy sees it, so a name that says what the
    // value is (`X-Api-Key: ...`) is seen with it.
    let mut headers = http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let line = [name.as_str().as_bytes(), b": ", value.as_bytes()].concat();
        let redacted = redaction
            .apply(&line, Encoding::Percent)
            .map_err(|b| blocked("a request header", b))?;
        let (name, value) = match redacted.data.windows(2).position(|w| w == b": ") {
            Some(at) => (
                redacted.data[..at].to_vec(),
                redacted.data[at + 2..].to_vec(),
            ),
            None => (b"x-cordon-redacted".to_vec(), redacted.data.clone()),
        };
        let name = http::HeaderName::from_bytes(&name)
            .map_err(|e| refuse(format!("the redacted header is not valid: {e}")))?;
        let value = http::HeaderValue::from_bytes(&value)
            .map_err(|e| refuse(format!("the redacted header is not valid: {e}")))?;
        headers.append(name, value);
    }
    parts.headers = headers;
    let form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes()
                .to_ascii_lowercase()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    if parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(refuse("the policy asks to redact this request, and a compressed body cannot be inspected; refused".into()));
    }
    let redacted = redaction
        .apply(
            &body,
            if form {
                Encoding::Percent
            } else {
                Encoding::Plain
            },
        )
        .map_err(|b| blocked("the request body", b))?;
    if !redacted.findings.is_empty() {
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(redacted.data.len()),
        );
    }
    Ok((parts, Bytes::from(redacted.data)))
}

/// Sends `request` to one of `addresses` (those decided, in order), never to what a second
/// lookup of the name would answer: over TLS for `https`, the certificate checked against the
/// name. The response comes back as soon as its head is read; the connection is driven by
/// the returned future until the body is read.
async fn send(
    mut request: http::Request<Full<Bytes>>,
    target: &Target,
    addresses: &[std::net::IpAddr],
    options: RequestOptions,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
> {
    let connect_timeout = options.connect_timeout.unwrap_or(TIMEOUT);
    let connecting = async {
        let mut last = std::io::Error::other("no address to connect to");
        for ip in addresses {
            match tokio::net::TcpStream::connect(std::net::SocketAddr::new(*ip, target.port)).await
            {
                Ok(stream) => return Ok(stream),
                Err(err) => last = err,
            }
        }
        Err(HttpError::Connect(last))
    };
    let stream = tokio::time::timeout(connect_timeout, connecting)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
    let stream: Box<dyn Stream> = if target.scheme == "https" {
        let name = match target.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(target.host.clone())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?,
        };
        let tls = tokio::time::timeout(connect_timeout, tls_connector().connect(name, stream))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // The request line carries the path only; the name goes in `Host` (set by Wasmtime).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let first_byte = options.first_byte_timeout.unwrap_or(TIMEOUT);
    let between = options.between_bytes_timeout.unwrap_or(TIMEOUT);
    let mut connection = Box::pin(connection);
    let responding = tokio::time::timeout(first_byte, sender.send_request(request));
    tokio::pin!(responding);
    // The connection is driven while the head is awaited; it may end first (a server that
    // closes after its response), the response then already read.
    let mut ended = None;
    let response = tokio::select! {
        biased;
        response = &mut responding => response,
        result = &mut connection => {
            ended = Some(result);
            (&mut responding).await
        }
    };
    let response = response.map_err(|_| HttpError::ConnectionReadTimeout)??;
    let driven: Box<dyn Future<Output = Result<(), HttpError>> + Send> = match ended {
        Some(result) => Box::new(std::future::ready(result.map_err(HttpError::from))),
        None => Box::new(async move { connection.await.map_err(HttpError::from) }),
    };
    Ok((
        response.map(|body| between_bytes(body, between).boxed_unsync()),
        driven,
    ))
}

/// A response body that fails when a frame does not come within `limit` of the last (a
/// server that stalls mid-body does not hold the skill forever).
struct BetweenBytes {
    body: hyper::body::Incoming,
    limit: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

fn between_bytes(body: hyper::body::Incoming, limit: Duration) -> BetweenBytes {
    BetweenBytes {
        body,
        limit,
        deadline: Box::pin(tokio::time::sleep(limit)),
    }
}

impl http_body::Body for BetweenBytes {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.limit;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(HttpError::from(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

/// What a connection is: TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// TLS with the Web PKI's roots (the `webpki-roots` bundle), made once.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: std::sync::OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> =
        std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = tokio_rustls::rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        Arc::new(
            tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| {
                tokio_rustls::rustls::ClientConfig::builder()
                    .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }),
        )
    });
    tokio_rustls::TlsConnector::from(Arc::clone(config))
}

fn with_default_timeouts(options: Option<RequestOptions>) -> RequestOptions {
    let options = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: Some(options.connect_timeout.unwrap_or(TIMEOUT)),
        first_byte_timeout: Some(options.first_byte_timeout.unwrap_or(TIMEOUT)),
        between_bytes_timeout: Some(options.between_bytes_timeout.unwrap_or(TIMEOUT)),
    }
}

/// Where a request goes.
struct Target {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl Target {
    fn of(uri: &http::Uri) -> Result<Self, HttpError> {
        let scheme = match uri.scheme_str() {
            Some("http") => "http",
            Some("https") | None => "https",
            Some(_) => return Err(HttpError::HttpProtocolError),
        };
        // `user@host`: the name a server would see in `Host` is not the host decided.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(HttpError::HttpRequestUriInvalid);
        }
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        Ok(Self { scheme, host, port })
    }

    /// The addresses the host names: itself when it is one; else, once the gate allows the
    /// name to be looked up, what the lookup answers.
    async fn resolve(&self, gate: &dyn Gate) -> Result<Vec<std::net::IpAddr>, HttpError> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![ip]);
        }
        let resource: Value = json!({"host": self.host, "port": self.port});
        let decision = gate.decide("net", "resolve", resource);
        if !decision.allow {
            tracing::info!(
                "skill denied looking up `{}`: {}",
                self.host,
                decision.reasons.join("; ")
            );
            return Err(HttpError::HttpRequestDenied);
        }
        let found = tokio::time::timeout(
            TIMEOUT,
            tokio::net::lookup_host((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| HttpError::DnsTimeout)?
        .map_err(|_| HttpError::DnsError {
            rcode: None,
            info_code: None,
        })?;
        let mut addresses: Vec<std::net::IpAddr> = found.map(|a| a.ip()).collect();
        addresses.dedup();
        if addresses.is_empty() {
            return Err(HttpError::DestinationNotFound);
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A name no resolver knows, and a listener on 127.0.0.1: the request reaches the
    /// listener only if it goes to the address decided rather than to a second lookup.
    #[test]
    fn https_goes_to_the_address_decided_with_the_name_for_tls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut hello = vec![0u8; 2048];
            let n = stream.read(&mut hello).unwrap();
            hello.truncate(n);
            hello
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let target = Target {
            scheme: "https",
            host: "rebound.invalid".into(),
            port,
        };
        let request = http::Request::builder()
            .uri(format!("https://rebound.invalid:{port}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let options = with_default_timeouts(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(5)),
            first_byte_timeout: Some(Duration::from_secs(5)),
            between_bytes_timeout: None,
        }));
        let sent = runtime.block_on(send(
            request,
            &target,
            &["127.0.0.1".parse().unwrap()],
            options,
        ));
        // The listener speaks no TLS: the request fails, after reaching it.
        assert!(sent.is_err());
        let hello = accepted.join().unwrap();
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        let sni = b"rebound.invalid";
        assert!(
            hello.windows(sni.len()).any(|w| w == sni),
            "the name goes in the ClientHello"
        );
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_authority_with_user_information_is_refused_and_a_trailing_dot_folded() {
        let uri: http::Uri = "http://evil.example@127.0.0.1:8080/".parse().unwrap();
        assert!(Target::of(&uri).is_err());
        let uri: http::Uri = "https://Example.ORG./x".parse().unwrap();
        let target = Target::of(&uri).unwrap();
        assert_eq!((target.host.as_str(), target.port), ("example.org", 443));
    }

    #[test]
    fn a_body_that_stalls_fails_after_the_between_bytes_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
            // Three bytes of a hundred, then nothing.
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
                .unwrap();
            std::thread::sleep(Duration::from_secs(5));
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let target = Target {
            scheme: "http",
            host: "127.0.0.1".into(),
            port,
        };
        let request = http::Request::builder()
            .uri(format!("http://127.0.0.1:{port}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let options = RequestOptions {
            connect_timeout: Some(Duration::from_secs(5)),
            first_byte_timeout: Some(Duration::from_secs(5)),
            between_bytes_timeout: Some(Duration::from_millis(300)),
        };
        let started = std::time::Instant::now();
        let read = runtime.block_on(async {
            let (response, driven) =
                send(request, &target, &["127.0.0.1".parse().unwrap()], options)
                    .await
                    .unwrap();
            let driving = tokio::spawn(Box::into_pin(driven));
            let body = response.into_body().collect().await;
            driving.abort();
            body.map(|_| ())
        });
        assert!(
            matches!(read, Err(HttpError::ConnectionReadTimeout)),
            "{read:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        drop(server);
    }
}
