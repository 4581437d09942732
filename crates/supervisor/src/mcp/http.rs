//! The Streamable HTTP transport: `cordon mcp --listen 127.0.0.1:PORT`.
//!
//! One endpoint (`/mcp`) on a loopback address. A client's `initialize` starts an MCP
//! session: a server of its own (launched by the caller, confined like a stdio one) behind a
//! [`Gateway`] and the same [`relay`](super::relay) as stdio, its id in `Mcp-Session-Id`.
//! Then each POST carries one JSON-RPC message: a request is answered with its answer
//! (`application/json`), a notification or an answer to the server's request with 202. What
//! the server says unasked (its requests, notifications) goes on the session's GET stream
//! (`text/event-stream`), kept (at most 256 messages) until one is open. DELETE ends the
//! session and its server.
//!
//! Every request must carry `Authorization: Bearer TOKEN` (another user of the machine can
//! reach a loopback port), a `Host` naming the loopback address and port, and, when it has
//! an `Origin`, a loopback one (a web page's DNS rebinding). Bodies over [`MAX_MESSAGE`],
//! batches, more than [`MAX_SESSIONS`] sessions and more than [`MAX_CONNECTIONS`] connections
//! are refused with a status that says so; a session left [`IDLE`] ends with its server.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{error, id_key, Gateway, MAX_MESSAGE};

/// MCP sessions at once.
pub const MAX_SESSIONS: usize = 16;

/// HTTP connections at once.
pub const MAX_CONNECTIONS: usize = 128;

/// Messages the server said unasked that wait for a GET stream, or for its client to read
/// them: at most this many, and at most [`WAITING_BYTES`] in all (the oldest go first).
const BACKLOG: usize = 256;

/// See [`BACKLOG`].
const WAITING_BYTES: usize = 32 << 20;

/// How long a client may take to send a request's body.
const BODY_WAIT: Duration = Duration::from_secs(30);

/// How long a session may sit with no request, nothing in flight and no event stream open
/// before it ends (its client gone without a DELETE); its client starts a new one.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// How long a client may take to send a request's headers.
const HEADER_WAIT: Duration = Duration::from_secs(10);

/// The endpoint's path.
pub const PATH: &str = "/mcp";

/// A server started for one MCP session.
pub struct Started {
    /// The gateway deciding for it.
    pub gateway: Arc<Gateway>,
    /// Its input.
    pub server_in: Box<dyn Write + Send>,
    /// Its output.
    pub server_out: Box<dyn Read + Send>,
    /// Called once the relay has ended, with its result: stops the server if it still runs,
    /// waits for it, and reports.
    pub finish: Box<dyn FnOnce(std::io::Result<bool>) + Send>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

/// Starts a server for a new session (on the session's own thread, which lives as long as
/// the session: a sandbox ends with the thread that launched it); an error says why not.
pub type Launch = Arc<dyn Fn() -> Result<Started, String> + Send + Sync>;

/// One MCP session over HTTP.
struct McpSession {
    /// Its id (`Mcp-Session-Id`).
    id: String,
    /// Lines to the relay, as the client's input.
    to_relay: Mutex<Option<std::io::PipeWriter>>,
    /// Requests waiting for their answer, by id.
    waiting: Mutex<HashMap<String, oneshot::Sender<String>>>,
    /// The open GET stream.
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Bytes sent on the GET stream that its client has not read yet.
    unread: Arc<AtomicUsize>,
    /// What the server said unasked while no GET stream was open.
    backlog: Mutex<VecDeque<String>>,
    /// When the client last sent a request.
    last: Mutex<std::time::Instant>,
    /// Whether its id reached its client (the answer to `initialize` was sent).
    announced: std::sync::atomic::AtomicBool,
}

impl McpSession {
    /// A message the server said unasked: on the GET stream, else kept.
    fn unasked(&self, line: String) {
        if let Ok(mut stream) = self.stream.lock() {
            if let Some(sender) = stream.as_ref() {
                let bytes = event(&line);
                let size = bytes.len();
                if self.unread.load(Ordering::SeqCst) + size > WAITING_BYTES {
                    tracing::warn!(
                        "the client does not read its event stream; a message was dropped"
                    );
                    return;
                }
                match sender.try_send(bytes) {
                    Ok(()) => {
                        self.unread.fetch_add(size, Ordering::SeqCst);
                        return;
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            "the client does not read its event stream; a message was dropped"
                        );
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => *stream = None,
                }
            }
        }
        if let Ok(mut backlog) = self.backlog.lock() {
            backlog.push_back(line);
            let mut held: usize = backlog.iter().map(String::len).sum();
            while backlog.len() > BACKLOG || held > WAITING_BYTES {
                let Some(dropped) = backlog.pop_front() else {
                    break;
                };
                held -= dropped.len();
                tracing::warn!(
                    "no event stream is open to take what the server said; the oldest message was dropped"
                );
            }
        }
    }

    /// Whether the client seems gone: no request for `idle`, none waiting for its answer,
    /// no event stream open.
    fn idle(&self, idle: Duration) -> bool {
        let quiet = self.last.lock().is_ok_and(|last| last.elapsed() >= idle);
        let waiting = self.waiting.lock().map_or(true, |w| !w.is_empty());
        let streaming = self
            .stream
            .lock()
            .map_or(true, |s| s.as_ref().is_some_and(|s| !s.is_closed()));
        quiet && !waiting && !streaming
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = std::time::Instant::now();
        }
    }

    /// Ends the session: the server's input closes, waiting requests fail.
    fn close(&self) {
        if let Ok(mut to_relay) = self.to_relay.lock() {
            to_relay.take();
        }
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.clear();
        }
        if let Ok(mut stream) = self.stream.lock() {
            stream.take();
        }
    }
}

/// A server-sent event carrying one message.
fn event(line: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {line}\n\n"))
}

/// The relay's output to the client: each answer to the request waiting for it, the rest
/// to the GET stream.
struct Router {
    session: Arc<McpSession>,
    partial: Vec<u8>,
}

impl Write for Router {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if line.is_empty() {
                continue;
            }
            let message: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let answer = message.get("method").is_none() && message.get("id").is_some();
            if answer {
                let key = id_key(&message["id"]);
                let waiting = self
                    .session
                    .waiting
                    .lock()
                    .ok()
                    .and_then(|mut waiting| waiting.remove(&key));
                match waiting {
                    Some(sender) => {
                        let _ = sender.send(line);
                    }
                    // Its request's connection is gone: the answer has no one to go to.
                    None => tracing::debug!("an answer no request waits for was dropped"),
                }
            } else {
                self.session.unasked(line);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A session started by an `initialize` whose answer has not reached its client yet: should
/// the request be dropped (its client gone), the session ends, since no one knows its id.
struct Unannounced {
    listener: Arc<Listener>,
    session: Arc<McpSession>,
}

impl Drop for Unannounced {
    fn drop(&mut self) {
        if !self.session.announced.load(Ordering::SeqCst) {
            if let Ok(mut sessions) = self.listener.sessions.lock() {
                sessions.remove(&self.session.id);
            }
            self.session.close();
        }
    }
}

/// A body of server-sent events, as they come; what is read is taken off the session's
/// count of unread bytes.
struct Events(mpsc::Receiver<Bytes>, Arc<AtomicUsize>);

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let unread = Arc::clone(&self.1);
        self.0.poll_recv(cx).map(|next| {
            next.map(|bytes| {
                let read = bytes.len();
                let _ = unread.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(read))
                });
                Ok(Frame::data(bytes))
            })
        })
    }
}

type Reply = Response<http_body_util::Either<Full<Bytes>, Events>>;

fn reply(status: StatusCode, content_type: &str, body: String) -> Reply {
    let mut response = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// A refusal: the status, and a JSON-RPC error saying why (`id` null: before any was read).
fn refusal(status: StatusCode, why: &str) -> Reply {
    let mut response = reply(
        status,
        "application/json",
        error(Value::Null, -32600, why).to_string(),
    );
    if status == StatusCode::UNAUTHORIZED {
        if let Ok(value) = "Bearer".parse() {
            response
                .headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// A request refused: its status and why.
struct Refused(StatusCode, String);

impl Refused {
    fn new(status: StatusCode, why: &str) -> Self {
        Self(status, why.to_owned())
    }

    /// The refusal; the connection closes after it (a client refused keeps no slot).
    fn reply(&self) -> Reply {
        let mut response = refusal(self.0, &self.1);
        if let Ok(value) = "close".parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, value);
        }
        response
    }
}

/// The listener's state.
struct Listener {
    /// The `Host` values that name it: its address and `localhost`, with its port.
    hosts: Vec<String>,
    token: String,
    launch: Launch,
    sessions: Mutex<HashMap<String, Arc<McpSession>>>,
    connections: AtomicUsize,
}

impl Listener {
    /// Whether `request` comes from someone holding the token, for this address.
    fn admitted<B>(&self, request: &Request<B>) -> Result<(), Refused> {
        // Each of these headers once at most, and readable: a second copy or bytes that are
        // not text could be read otherwise by someone else on the way.
        let header = |name: hyper::header::HeaderName| -> Result<Option<String>, Refused> {
            let mut values = request.headers().get_all(&name).iter();
            let first = values.next();
            if values.next().is_some() {
                return Err(Refused::new(
                    StatusCode::BAD_REQUEST,
                    &format!("the {name} header is given more than once"),
                ));
            }
            first
                .map(|v| {
                    v.to_str().map(str::to_owned).map_err(|_| {
                        Refused::new(
                            StatusCode::BAD_REQUEST,
                            &format!("the {name} header is not readable text"),
                        )
                    })
                })
                .transpose()
        };
        let loopback = |host: &str| self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
        if !header(hyper::header::HOST)?.is_some_and(|host| loopback(&host)) {
            return Err(Refused::new(
                StatusCode::FORBIDDEN,
                "the Host header must name this loopback address and port",
            ));
        }
        if let Some(origin) = header(hyper::header::ORIGIN)? {
            let host = origin.strip_prefix("http://").unwrap_or("");
            if !loopback(host) {
                return Err(Refused::new(
                    StatusCode::FORBIDDEN,
                    "requests from another origin than this address are refused",
                ));
            }
        }
        let given = header(hyper::header::AUTHORIZATION)?
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
            .unwrap_or_default();
        // Compared whole, in constant time for equal lengths.
        let same = given.len() == self.token.len()
            && given
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong `Authorization: Bearer TOKEN` (cordon printed the token when it started listening)",
            ));
        }
        Ok(())
    }

    fn session<B>(
        &self,
        request: &Request<B>,
    ) -> Result<Option<(String, Arc<McpSession>)>, Refused> {
        let Some(id) = request.headers().get("mcp-session-id") else {
            return Ok(None);
        };
        let id = id.to_str().unwrap_or_default().to_owned();
        let found = self
            .sessions
            .lock()
            .ok()
            .and_then(|sessions| sessions.get(&id).cloned());
        match found {
            Some(session) => {
                session.touch();
                Ok(Some((id, session)))
            }
            None => Err(Refused::new(
                StatusCode::NOT_FOUND,
                "no such session (it ended): initialize a new one",
            )),
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Reply {
        if let Err(refused) = self.admitted(&request) {
            return refused.reply();
        }
        if request.uri().path() != PATH {
            return refusal(StatusCode::NOT_FOUND, "the MCP endpoint is /mcp");
        }
        match *request.method() {
            Method::POST => self.post(request).await,
            Method::GET => match self.session(&request) {
                Ok(Some((_, session))) => open_stream(&session),
                Ok(None) => refusal(StatusCode::BAD_REQUEST, "a GET needs an Mcp-Session-Id"),
                Err(refused) => refused.reply(),
            },
            Method::DELETE => match self.session(&request) {
                Ok(Some((id, session))) => {
                    if let Ok(mut sessions) = self.sessions.lock() {
                        sessions.remove(&id);
                    }
                    session.close();
                    reply(StatusCode::OK, "application/json", "{}".into())
                }
                Ok(None) => refusal(StatusCode::BAD_REQUEST, "a DELETE needs an Mcp-Session-Id"),
                Err(refused) => refused.reply(),
            },
            _ => {
                let mut refused = refusal(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "the MCP endpoint takes POST, GET and DELETE",
                );
                if let Ok(value) = "POST, GET, DELETE".parse() {
                    refused.headers_mut().insert(hyper::header::ALLOW, value);
                }
                refused
            }
        }
    }

    async fn post(self: &Arc<Self>, request: Request<Incoming>) -> Reply {
        let session = match self.session(&request) {
            Ok(session) => session,
            Err(refused) => return refused.reply(),
        };
        let collected = tokio::time::timeout(
            BODY_WAIT,
            Limited::new(request.into_body(), MAX_MESSAGE).collect(),
        )
        .await;
        let body = match collected {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(err))
                if err
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Refused::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("message over {MAX_MESSAGE} bytes; refused"),
                )
                .reply()
            }
            Ok(Err(_)) => {
                return Refused::new(StatusCode::BAD_REQUEST, "the body could not be read").reply()
            }
            Err(_) => {
                return Refused::new(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("the body took over {} s to send", BODY_WAIT.as_secs()),
                )
                .reply()
            }
        };
        let message: Value = match serde_json::from_slice(&body) {
            Ok(message @ Value::Object(_)) => message,
            Ok(Value::Array(_)) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "batches are not taken over HTTP: send one message a request",
                )
            }
            _ => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    error(Value::Null, -32700, "the body is not a JSON-RPC message").to_string(),
                )
            }
        };
        let method = message.get("method").and_then(Value::as_str);
        let mut unannounced = None;
        let session = match (session, method) {
            (Some((_, session)), _) => session,
            (None, Some("initialize")) if message.get("id").is_none_or(Value::is_null) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "`initialize` is a request: it needs an id",
                )
            }
            (None, Some("initialize")) => match self.start().await {
                Ok(started) => {
                    // Should the client be gone before its answer, no one knows the
                    // session's id: it ends with the request.
                    let session = Arc::clone(&started.session);
                    unannounced = Some(started);
                    session
                }
                Err(refused) => return refused.reply(),
            },
            (None, _) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "no Mcp-Session-Id: initialize a session first",
                )
            }
        };
        let request = method.is_some() && message.get("id").is_some();
        let answer = if request {
            let key = id_key(&message["id"]);
            let (sender, receiver) = oneshot::channel();
            let taken = match session.waiting.lock() {
                Ok(mut waiting) => match waiting.entry(key) {
                    std::collections::hash_map::Entry::Occupied(_) => true,
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        entry.insert(sender);
                        false
                    }
                },
                Err(_) => true,
            };
            if taken {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    error(
                        message["id"].clone(),
                        -32600,
                        "a request with this id is still in flight",
                    )
                    .to_string(),
                );
            }
            Some(receiver)
        } else {
            None
        };
        // A request the client cancels is answered as cancelled, not left waiting.
        if method == Some("notifications/cancelled") {
            let cancelled = message.pointer("/params/requestId").map(id_key);
            let waiting = cancelled.and_then(|key| {
                session
                    .waiting
                    .lock()
                    .ok()
                    .and_then(|mut waiting| waiting.remove(&key))
            });
            if let (Some(sender), Some(id)) = (waiting, message.pointer("/params/requestId")) {
                let _ =
                    sender.send(error(id.clone(), -32800, "cancelled by the client").to_string());
            }
        }
        let line = String::from_utf8_lossy(&body).replace('\n', " ");
        let to = Arc::clone(&session);
        let written = tokio::task::spawn_blocking(move || {
            let mut to_relay = to
                .to_relay
                .lock()
                .map_err(|_| std::io::Error::other("the session's input was lost"))?;
            let Some(pipe) = to_relay.as_mut() else {
                return Err(std::io::Error::other("the session has ended"));
            };
            pipe.write_all(line.as_bytes())?;
            pipe.write_all(b"\n")
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return refusal(
                StatusCode::NOT_FOUND,
                "the session has ended: initialize a new one",
            );
        }
        let Some(receiver) = answer else {
            return reply(StatusCode::ACCEPTED, "application/json", String::new());
        };
        match receiver.await {
            Ok(line) => {
                let mut response = reply(StatusCode::OK, "application/json", line);
                if method == Some("initialize") {
                    if let Ok(value) = session.id.parse() {
                        response.headers_mut().insert("mcp-session-id", value);
                    }
                }
                session.announced.store(true, Ordering::SeqCst);
                drop(unannounced);
                response
            }
            Err(_) => reply(
                StatusCode::OK,
                "application/json",
                error(
                    message["id"].clone(),
                    -32603,
                    "the session ended before the server answered",
                )
                .to_string(),
            ),
        }
    }

    /// Starts a session: its server launched on a thread of its own, which then relays.
    /// The session counts against [`MAX_SESSIONS`] from the start of its launch, and ends
    /// with the returned guard should its client be gone before the answer.
    async fn start(self: &Arc<Self>) -> Result<Unannounced, Refused> {
        let (reader, writer) = std::io::pipe()
            .map_err(|e| Refused::new(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
        let id = secret().map_err(|why| Refused::new(StatusCode::INTERNAL_SERVER_ERROR, &why))?;
        let session = Arc::new(McpSession {
            id: id.clone(),
            to_relay: Mutex::new(Some(writer)),
            waiting: Mutex::new(HashMap::new()),
            stream: Mutex::new(None),
            backlog: Mutex::new(VecDeque::new()),
            unread: Arc::new(AtomicUsize::new(0)),
            last: Mutex::new(std::time::Instant::now()),
            announced: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let mut sessions = self.sessions.lock().map_err(|_| {
                Refused::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the list of sessions was lost",
                )
            })?;
            if sessions.len() >= MAX_SESSIONS {
                return Err(Refused::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("{MAX_SESSIONS} sessions are open: end one (DELETE) first"),
                ));
            }
            sessions.insert(id, Arc::clone(&session));
        }
        let unannounced = Unannounced {
            listener: Arc::clone(self),
            session: Arc::clone(&session),
        };
        let (launched, started) = oneshot::channel::<Result<(), String>>();
        let (listener, relayed) = (Arc::clone(self), Arc::clone(&session));
        let thread = std::thread::Builder::new()
            .name("cordon-mcp-session".into())
            .spawn(move || {
                let started = match (listener.launch)() {
                    Ok(started) => started,
                    Err(why) => {
                        let _ = launched.send(Err(why));
                        return;
                    }
                };
                let _ = launched.send(Ok(()));
                let router = Router {
                    session: Arc::clone(&relayed),
                    partial: Vec::new(),
                };
                let ended = super::relay(
                    started.gateway,
                    reader,
                    router,
                    started.server_in,
                    started.server_out,
                );
                if let Ok(mut sessions) = listener.sessions.lock() {
                    sessions.remove(&relayed.id);
                }
                relayed.close();
                (started.finish)(ended);
            });
        if let Err(err) = thread {
            return Err(Refused::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot start a session: {err}"),
            ));
        }
        match started.await {
            Ok(Ok(())) => Ok(unannounced),
            Ok(Err(why)) => Err(Refused::new(StatusCode::FORBIDDEN, &why)),
            Err(_) => Err(Refused::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session's server could not be started",
            )),
        }
    }
}

/// 32 random bytes in hexadecimal: a session id no one guesses, or a token.
///
/// # Errors
///
/// The system has no randomness to give.
pub fn secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a secret: {e}"))?;
    Ok(cordon_types::hex(&bytes))
}

/// The GET stream: what the server said unasked, as it comes (and what it said before).
fn open_stream(session: &Arc<McpSession>) -> Reply {
    let (sender, receiver) = mpsc::channel(BACKLOG);
    // A stream opened in place of another starts with nothing unread.
    session.unread.store(0, Ordering::SeqCst);
    if let Ok(mut backlog) = session.backlog.lock() {
        for line in backlog.drain(..) {
            let bytes = event(&line);
            let size = bytes.len();
            if sender.try_send(bytes).is_ok() {
                session.unread.fetch_add(size, Ordering::SeqCst);
            }
        }
    }
    if let Ok(mut stream) = session.stream.lock() {
        *stream = Some(sender);
    }
    let mut response = Response::new(http_body_util::Either::Right(Events(
        receiver,
        Arc::clone(&session.unread),
    )));
    let headers = response.headers_mut();
    if let Ok(value) = "text/event-stream".parse() {
        headers.insert(hyper::header::CONTENT_TYPE, value);
    }
    if let Ok(value) = "no-cache".parse() {
        headers.insert(hyper::header::CACHE_CONTROL, value);
    }
    response
}

/// Serves the MCP endpoint on `listener` (bound to a loopback address), admitting requests
/// that carry `token`, each new session's server started by `launch`; runs until the
/// process ends.
///
/// # Errors
///
/// The listener is not on a loopback address, or the runtime cannot start.
pub fn serve(
    listener: std::net::TcpListener,
    token: String,
    launch: Launch,
) -> std::io::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    if !address.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "{address} is not a loopback address: cordon listens on 127.0.0.1 or ::1 only"
        )));
    }
    listener.set_nonblocking(true)?;
    let port = address.port();
    let mut hosts = vec![address.to_string(), format!("localhost:{port}")];
    if address.ip() == std::net::IpAddr::from([127, 0, 0, 1]) {
        hosts.push(format!("[::1]:{port}"));
    }
    let state = Arc::new(Listener {
        hosts,
        token,
        launch,
        sessions: Mutex::new(HashMap::new()),
        connections: AtomicUsize::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cordon-mcp-http")
        .enable_all()
        .build()?;
    // Sessions whose client has gone end.
    let reaped = Arc::clone(&state);
    runtime.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            every.tick().await;
            let idle: Vec<Arc<McpSession>> = match reaped.sessions.lock() {
                Ok(mut sessions) => {
                    let ids: Vec<String> = sessions
                        .iter()
                        .filter(|(_, s)| s.idle(IDLE))
                        .map(|(id, _)| id.clone())
                        .collect();
                    ids.iter().filter_map(|id| sessions.remove(id)).collect()
                }
                Err(_) => Vec::new(),
            };
            for session in idle {
                tracing::info!("a session idle for {} minutes ended", IDLE.as_secs() / 60);
                session.close();
            }
        }
    });
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("cannot accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if state.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                state.connections.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!("{MAX_CONNECTIONS} connections are open; one more was closed");
                continue;
            }
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(state.handle(request).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_WAIT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                if let Err(err) = served {
                    tracing::debug!("a connection ended: {err}");
                }
                state.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    })
}
