//! A remote MCP server over Streamable HTTP (`cordon mcp --upstream URL`), as the far end of
//! the gateway's relay: each message the gateway passes is POSTed to it through the
//! session's egress proxy (so every connection is decided under `data.cordon.net` and
//! recorded), its answers (JSON, or a stream of server-sent events) and what it says on its
//! GET stream relayed back, and its session ended with a DELETE when the client leaves.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::relay::{InProcess, ServerOutput};
use super::{error, Gateway, Server, MAX_MESSAGE};
use crate::session::remote::Remote;

/// Requests to the server at once; more are answered "busy".
const MAX_REQUESTS: usize = 16;

/// How long a connection to the server may take to open.
const CONNECT: Duration = Duration::from_secs(30);

impl Server {
    /// A remote server as the server: its name and URL (without its query, which may hold
    /// a credential).
    pub fn remote(name: String, url: &str) -> Self {
        Self {
            name,
            command: vec![shown_url(url)],
            executable: None,
        }
    }
}

/// `url` as records and listings show it: its query and fragment (where a credential may
/// be) replaced by `?…`.
pub fn shown_url(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(at) => format!("{}?…", &url[..at]),
        None => url.to_owned(),
    }
}

/// The variable whose value, where set, is sent to the server as its `Authorization`
/// header (`Bearer TOKEN`): kept out of the command line, records and listings.
pub const AUTHORIZATION_VARIABLE: &str = "CORDON_MCP_UPSTREAM_AUTHORIZATION";

/// How long the server has to answer a request before it is answered with an error.
const ANSWER_WAIT: Duration = Duration::from_secs(600);

/// How long the server has to take a notification, an answer or the end of its session.
const BRIEF: Duration = Duration::from_secs(10);

/// Where the server is.
#[derive(Debug, Clone)]
pub struct Upstream {
    url: String,
}

impl Upstream {
    /// The server at `url` (`http://` or `https://`, a host and an optional port and path);
    /// also the `HOST:PORT` the session must ask to reach.
    ///
    /// # Errors
    ///
    /// The URL is not one cordon can reach, named.
    pub fn parse(url: &str) -> Result<(Self, String), String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not a URL (http://HOST[:PORT]/PATH)"))?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            other => {
                return Err(format!(
                    "`{url}`: the scheme `{other}` is not http or https"
                ))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "`{url}`: a host is needed, and no credentials in the URL (use a header)"
            ));
        }
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let host_port = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        };
        Ok((
            Self {
                url: url.to_owned(),
            },
            host_port,
        ))
    }
}

/// The session with the server: its id and protocol version once `initialize` has been
/// answered.
#[derive(Default)]
struct State {
    session: Option<String>,
    version: Option<String>,
}

struct Client {
    agent: ureq::Agent,
    url: String,
    /// The `Authorization` header's value, where one is given.
    authorization: Option<String>,
    state: Mutex<State>,
    output: ServerOutput,
    requests: AtomicUsize,
    gateway: Arc<Gateway>,
}

/// The request ids a message holds (a batch's each), as [`super::id_key`] writes them.
fn request_ids(message: &Value) -> Vec<(String, Value)> {
    let one = |m: &Value| {
        m.get("id")
            .filter(|_| m.get("method").is_some())
            .map(|id| (super::id_key(id), id.clone()))
    };
    match message {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// A protocol version as a header may carry it.
fn plausible_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 32
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Client {
    /// `request` with the headers every request to the server carries: what it may answer
    /// with, the credential, the session and its protocol version.
    fn headed<B>(&self, mut request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        request = request.header("Accept", "application/json, text/event-stream");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        if let Ok(state) = self.state.lock() {
            if let Some(session) = &state.session {
                request = request.header("Mcp-Session-Id", session);
            }
            if let Some(version) = &state.version {
                request = request.header("MCP-Protocol-Version", version);
            }
        }
        request
    }

    fn request(&self, method: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.headed(match method {
            "GET" => self.agent.get(&self.url),
            _ => self.agent.delete(&self.url),
        })
    }

    /// POSTs `line` (one message, or a batch) and relays what comes back; each request in
    /// it the server does not answer is answered with an error.
    fn post(&self, line: &str, message: &Value, brief: bool) {
        let mut waiting = request_ids(message);
        let initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
        let request = self.headed(
            self.agent
                .post(&self.url)
                .config()
                .timeout_recv_response(Some(if brief { BRIEF } else { ANSWER_WAIT }))
                .build()
                .header("Content-Type", "application/json"),
        );
        let fail = |waiting: &[(String, Value)], why: &str| {
            tracing::warn!("the upstream server: {why}");
            for (_, id) in waiting {
                self.output
                    .send(&error(id.clone(), -32603, why).to_string());
            }
        };
        let mut response = match request.send(line) {
            Ok(response) => response,
            Err(err) => {
                return fail(
                    &waiting,
                    &format!(
                        "cannot reach the server: {err} (if the session's egress proxy refused it, \
                         `cordon audit query --capability net` says why)"
                    ),
                )
            }
        };
        let status = response.status().as_u16();
        if initialize && (200..300).contains(&status) {
            if let Some(session) = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                if let Ok(mut state) = self.state.lock() {
                    state.session = Some(session.to_owned());
                }
            }
        }
        let streamed = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream"));
        let body = response.body_mut().as_reader();
        match status {
            202 | 204 => {}
            200..=299 if streamed => {
                self.events(body, &mut waiting, initialize);
                if !waiting.is_empty() {
                    fail(&waiting, "the server's stream ended before it answered");
                }
            }
            200..=299 => match read_limited(body) {
                Ok(text) => {
                    self.relay_json(&text, &mut waiting, initialize);
                    if !waiting.is_empty() {
                        fail(&waiting, "the server's answer does not answer the request");
                    }
                }
                Err(why) => fail(&waiting, &why),
            },
            _ => {
                let text = read_limited(body).unwrap_or_default();
                // A JSON-RPC error in the body is the server's own answer.
                let answered = serde_json::from_str::<Value>(&text).ok().filter(|v| {
                    v.get("error").is_some() && v.get("id").is_some_and(|i| !i.is_null())
                });
                if answered.is_some() {
                    self.relay_json(&text, &mut waiting, false);
                }
                if !waiting.is_empty() {
                    // Redacted whole, then cut: a secret is never cut in two first.
                    let shown = self.gateway.redact_log(text.trim());
                    let shown: String = shown.chars().take(300).collect();
                    let why = if shown.is_empty() {
                        format!("the server answered HTTP {status}")
                    } else {
                        format!(
                            "the server answered HTTP {status}: {}",
                            cordon_types::printable(&shown)
                        )
                    };
                    fail(&waiting, &why);
                }
            }
        }
    }

    /// Relays a JSON body (a message or a batch, written over any number of lines) message
    /// by message, taking those it answers off `waiting`.
    fn relay_json(&self, text: &str, waiting: &mut Vec<(String, Value)>, initialize: bool) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            tracing::warn!("the server's answer is not JSON; dropped");
            return;
        };
        let messages = match value {
            Value::Array(items) => items,
            one => vec![one],
        };
        for message in messages {
            self.relay_message(&message, waiting, initialize);
        }
    }

    /// Relays one message from the server, taking the request it answers off `waiting`.
    fn relay_message(&self, message: &Value, waiting: &mut Vec<(String, Value)>, initialize: bool) {
        if message.get("method").is_none() {
            if let Some(id) = message.get("id") {
                let key = super::id_key(id);
                let before = waiting.len();
                waiting.retain(|(k, _)| *k != key);
                if initialize && waiting.len() < before {
                    self.learn_version(message);
                }
            }
        }
        self.output.send(&message.to_string());
    }

    /// Takes the protocol version the server chose from its answer to `initialize`.
    fn learn_version(&self, answer: &Value) {
        let version = answer
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .filter(|v| plausible_version(v));
        if let (Some(version), Ok(mut state)) = (version, self.state.lock()) {
            state.version = Some(version.to_owned());
        }
    }

    /// Relays each event of a stream of server-sent events as a message (or a batch), until
    /// it ends, or (a POST's stream) until every request in `waiting` is answered.
    fn events(&self, body: impl Read, waiting: &mut Vec<(String, Value)>, initialize: bool) {
        let posted = !waiting.is_empty();
        let mut reader = BufReader::new(body);
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_MESSAGE as u64 + 1)
                .read_line(&mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = line.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                if !data.is_empty() {
                    self.relay_json(&data, waiting, initialize);
                    data.clear();
                    if posted && waiting.is_empty() {
                        // Answered: the stream is not held open for what may follow.
                        return;
                    }
                }
            } else if let Some(value) = text.strip_prefix("data:") {
                if data.len() + value.len() > MAX_MESSAGE {
                    tracing::warn!("the server sent an event over {MAX_MESSAGE} bytes; dropped");
                    data.clear();
                    continue;
                }
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
            // `event:`, `id:`, `retry:` and comments carry nothing to relay.
        }
    }

    /// The server's GET stream: what it says unasked, until it ends or is refused.
    fn listen(&self) {
        match self.request("GET").call() {
            Ok(mut response) if response.status().as_u16() == 200 => {
                self.events(response.body_mut().as_reader(), &mut Vec::new(), false);
            }
            Ok(response) => tracing::debug!(
                "the server offers no event stream (HTTP {})",
                response.status()
            ),
            Err(err) => tracing::debug!("the server's event stream: {err}"),
        }
    }
}

fn read_limited(body: impl Read) -> Result<String, String> {
    let mut bytes = Vec::new();
    body.take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the server's answer: {e}"))?;
    if bytes.len() > MAX_MESSAGE {
        return Err(format!("the server's answer is over {MAX_MESSAGE} bytes"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Relays between the client and the remote server `upstream`, through `gateway` and the
/// egress proxy of `remote`, until the client leaves or the session is stopped. Returns
/// whether the server side ended first.
///
/// # Errors
///
/// The relay's I/O error, or a pipe that cannot be made.
pub fn relay_upstream(
    gateway: Arc<Gateway>,
    remote: &Remote<'_>,
    upstream: &Upstream,
    client_in: impl Read + Send + 'static,
    client_out: impl Write + Send + 'static,
) -> std::io::Result<bool> {
    let InProcess {
        from_relay,
        output,
        relay_ends: (relay_writes, relay_reads),
    } = InProcess::new()?;
    let proxy = ureq::Proxy::new(&format!("http://{}", remote.proxy()))
        .map_err(|e| std::io::Error::other(format!("the session's proxy: {e}")))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(Some(proxy))
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT))
        .max_redirects(0)
        .build()
        .into();
    let authorization = std::env::var(AUTHORIZATION_VARIABLE)
        .ok()
        .filter(|v| !v.is_empty());
    let client = Arc::new(Client {
        agent,
        url: upstream.url.clone(),
        authorization,
        state: Mutex::new(State::default()),
        output,
        requests: AtomicUsize::new(0),
        gateway: Arc::clone(&gateway),
    });
    let forwarding = Arc::clone(&client);
    std::thread::Builder::new()
        .name("cordon-mcp-upstream".into())
        .spawn(move || forward(&forwarding, from_relay))?;
    // A stop ends the server's side: the relay answers what waits, and ends.
    let (stop, stopping) = (remote.stop_flag(), Arc::clone(&client));
    std::thread::Builder::new()
        .name("cordon-mcp-upstream-stop".into())
        .spawn(move || loop {
            if stopping.output.closed() {
                return;
            }
            if stop.load(Ordering::SeqCst) {
                stopping.output.close();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        })?;
    let ended = super::relay(
        Arc::clone(&gateway),
        client_in,
        client_out,
        relay_writes,
        relay_reads,
    );
    // The client left: the server's session ends too, if the server takes the DELETE soon.
    let has_session = client.state.lock().is_ok_and(|s| s.session.is_some());
    if has_session {
        let deleted = client
            .request("DELETE")
            .config()
            .timeout_global(Some(BRIEF))
            .build()
            .call();
        if let Err(err) = deleted {
            tracing::debug!("cannot end the server's session: {err}");
        }
    }
    gateway.end(if remote.stopped() {
        "the session was stopped"
    } else {
        "the client left"
    });
    ended
}

/// Reads what the relay passes to the server and POSTs each request on a thread of its own
/// (notifications and answers at once, briefly); once the server's session has begun,
/// listens on its GET stream.
fn forward(client: &Arc<Client>, from_relay: std::io::PipeReader) {
    let mut reader = BufReader::new(from_relay);
    let mut line = String::new();
    let mut listening = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.trim().to_owned();
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if !listening
            && message.get("method").and_then(Value::as_str) == Some("notifications/initialized")
        {
            listening = true;
            let listener = Arc::clone(client);
            let _ = std::thread::Builder::new()
                .name("cordon-mcp-upstream-events".into())
                .spawn(move || listener.listen());
        }
        if request_ids(&message).is_empty() {
            client.post(&text, &message, true);
            continue;
        }
        if client.requests.fetch_add(1, Ordering::SeqCst) >= MAX_REQUESTS {
            client.requests.fetch_sub(1, Ordering::SeqCst);
            let busy = format!("{MAX_REQUESTS} requests to the server are waiting; try again");
            for (_, id) in request_ids(&message) {
                client.output.send(&error(id, -32000, &busy).to_string());
            }
            continue;
        }
        let posting = Arc::clone(client);
        let spawned = std::thread::Builder::new()
            .name("cordon-mcp-upstream-post".into())
            .spawn(move || {
                posting.post(&text, &message, false);
                posting.requests.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            client.requests.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // The client left: what is on its way still reaches it, for a moment.
    let deadline = std::time::Instant::now() + super::GRACE;
    while client.requests.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    client.output.close();
}
