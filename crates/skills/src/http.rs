//! Outgoing HTTP, made by the host and decided by `data.cordon.net` for every request.
//!
//! A skill's `wasi:http` request reaches [`Hooks::send_request`] whole: the body is read
//! (at most [`MAX_BODY`]) before anything leaves, so the decision sees the method, the URL
//! and the body's size. The host name is decided before it is looked up (a lookup alone
//! carries data to whoever runs the name's DNS), then the request on the addresses it
//! resolved to; a plain-HTTP request is sent to exactly the address decided. Redirects are
//! not followed by the host: each hop is a new request of the skill, decided again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
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
            let (mut parts, body) = request.into_parts();
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
            let decision = gate.decide("net", "http", resource);
            if !decision.allow {
                tracing::info!(
                    "skill denied {} {}: {}",
                    parts.method,
                    parts.uri,
                    decision.reasons.join("; ")
                );
                return Err(HttpError::HttpRequestDenied);
            }
            // Plain HTTP goes to the address decided, not to a second lookup's answer (the
            // `Host` header keeps the name). HTTPS checks the name in the certificate.
            if target.scheme == "http" {
                if let Some(ip) = addresses.first() {
                    let authority = std::net::SocketAddr::new(*ip, target.port).to_string();
                    let mut uri = http::uri::Parts::from(parts.uri.clone());
                    uri.authority = authority.parse().ok();
                    parts.uri =
                        http::Uri::from_parts(uri).map_err(|_| HttpError::HttpRequestUriInvalid)?;
                }
            }
            let options = Some(with_default_timeouts(options));
            let request = http::Request::from_parts(
                parts,
                Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
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
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
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
