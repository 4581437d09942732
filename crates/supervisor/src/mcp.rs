//! The MCP gateway's core: a decision on every tool a client calls or sees.
//!
//! cordon stands between an MCP client and a server it runs in the sandbox, relaying
//! JSON-RPC messages (the stdio transport: one JSON value per line) both ways. A `tools/call`
//! is decided under `data.cordon.tool` (action `call`, with the server's identity, the tool's
//! name and arguments) and recorded before it reaches the server; a denial goes back to the
//! client as a tool error the model can read ("denied by policy: …"). A `tools/list` result
//! shows only the tools the policy would allow (action `list`). Anything the client sends
//! that is not JSON gets a JSON-RPC parse error, never reaches the server; anything the
//! server prints that is not JSON is dropped (it would break the client), with a warning.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use cordon_types::{Capability, Decision, Request};
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::Supervisor;

/// The longest message either side may send, in bytes: larger is refused, not buffered.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Who the server is, as decisions see it (`input.resource.server`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Server {
    /// Its name (`--name`, else the program's file name).
    pub name: String,
    /// The command that runs it.
    pub command: Vec<String>,
}

/// What to do with a message from the client.
#[derive(Debug, PartialEq)]
pub enum FromClient {
    /// Pass this to the server: the value decided, encoded again.
    Forward(String),
    /// Answer the client with this instead; the server never sees the message.
    Reply(Value),
    /// Pass some of a batch on and answer the rest.
    Both(String, Value),
    /// Nothing: a denied notification, which has no one to answer.
    Nothing,
}

/// The most `tools/list` requests awaiting their results that are remembered.
const MAX_PENDING_LISTS: usize = 1024;

/// Arguments larger than this (as JSON) are recorded as their digest, size and beginning.
const RECORDED_ARGUMENTS: usize = 16 << 10;

/// The gateway's decisions for one server.
#[derive(Debug)]
pub struct Gateway {
    supervisor: Arc<Supervisor>,
    server: Server,
    /// Ids of the client's `tools/list` requests whose results are still to come.
    listing: Mutex<HashSet<String>>,
    pins: Pins,
    /// What the last listing said of each tool's definition (`input.resource.definition`).
    definitions: Mutex<std::collections::HashMap<String, Value>>,
    /// `SERVER/TOOL`s whose changed definitions are accepted.
    accept: Vec<String>,
}

/// The digests of the tool definitions (name, description, input schema) first seen, by
/// `SERVER/TOOL`, kept in a file: a definition that changes later (a "rug pull", a
/// description rewritten to instruct the model) is told apart from the one first trusted.
#[derive(Debug)]
pub struct Pins {
    path: std::path::PathBuf,
    pinned: Mutex<std::collections::BTreeMap<String, String>>,
}

/// How a tool's definition stands against its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// First seen now, and pinned.
    New,
    /// As pinned.
    Same,
    /// Not as pinned: the pinned digest.
    Changed(String),
}

impl Pins {
    /// The pins kept in `path` (none yet when it does not exist).
    ///
    /// # Errors
    ///
    /// A file that cannot be read or is not a JSON object of digests: refused, never
    /// taken for "nothing pinned", which would trust every changed definition.
    pub fn open(path: &std::path::Path) -> Result<Self, String> {
        let pinned = match fs_err::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the tool pins `{}` are damaged: {e}", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(err) => return Err(format!("cannot read the tool pins: {err}")),
        };
        Ok(Self {
            path: path.to_path_buf(),
            pinned: Mutex::new(pinned),
        })
    }

    /// Where they are kept.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn save(&self, pinned: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(pinned).map_err(|e| e.to_string())?;
        if let Some(dir) = self.path.parent() {
            fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        cordon_bundle::write_atomic(&self.path, &text, 0o600).map_err(|e| e.to_string())
    }

    /// Checks `digest` for `key` (`SERVER/TOOL`), pinning it when none is; with `accept`,
    /// a changed definition is pinned anew.
    ///
    /// # Errors
    ///
    /// A pin that cannot be kept.
    pub fn check(&self, key: &str, digest: &str, accept: bool) -> Result<Pinned, String> {
        let mut pinned = self
            .pinned
            .lock()
            .map_err(|_| "the tool pins were lost".to_owned())?;
        let status = match pinned.get(key) {
            Some(old) if old == digest => return Ok(Pinned::Same),
            Some(old) if !accept => return Ok(Pinned::Changed(old.clone())),
            Some(old) => Pinned::Changed(old.clone()),
            None => Pinned::New,
        };
        pinned.insert(key.to_owned(), digest.to_owned());
        self.save(&pinned)?;
        Ok(status)
    }
}

/// The digest of a tool's definition: its name, description and input schema, as canonical
/// JSON.
pub fn definition_digest(tool: &Value) -> String {
    let definition = json!({
        "name": tool.get("name"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
    });
    let bytes = cordon_bundle::canonical::canonical_json(definition.to_string().as_bytes())
        .unwrap_or_else(|_| definition.to_string().into_bytes());
    cordon_types::hex(&sha2::Sha256::digest(&bytes))
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// An id as clients match responses to requests: `1`, `1.0` and `"1"` are one request.
fn id_key(id: &Value) -> String {
    match id {
        Value::String(text) => text
            .parse::<i64>()
            .map_or_else(|_| id.to_string(), |n| n.to_string()),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
            .map_or_else(|| n.to_string(), |f| format!("{f:.0}")),
        other => other.to_string(),
    }
}

/// A key of `object` that is not one of `keys` but equals one of them ignoring case.
fn case_twin(object: &Value, keys: &[&str]) -> Option<String> {
    object.as_object()?.keys().find_map(|key| {
        let lower = key.to_lowercase();
        (keys.contains(&lower.as_str()) && !keys.contains(&key.as_str())).then(|| key.clone())
    })
}

/// The id of a message too large to parse, read from its beginning (`"id": 7` or
/// `"id": "abc"`), so that its sender can be answered.
fn leading_id(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 << 10)]);
    let Some(at) = text.find("\"id\"") else {
        return Value::Null;
    };
    let rest = text[at + 4..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return Value::Null;
    };
    let rest = rest.trim_start();
    let end = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').map(|i| i + 2)
    } else {
        rest.find(|c: char| !(c.is_ascii_digit() || c == '-'))
    };
    end.and_then(|end| serde_json::from_str(&rest[..end]).ok())
        .unwrap_or(Value::Null)
}

impl Gateway {
    /// A gateway deciding under `supervisor`'s policy (with the `tool` capability loaded)
    /// for `server`.
    pub fn new(supervisor: Arc<Supervisor>, server: Server, pins: Pins) -> Self {
        Self {
            supervisor,
            server,
            listing: Mutex::new(HashSet::new()),
            pins,
            definitions: Mutex::new(std::collections::HashMap::new()),
            accept: Vec::new(),
        }
    }

    /// Accepts the current definitions of these tools (`SERVER/TOOL`) in place of their pins.
    #[must_use]
    pub fn accepting(mut self, tools: Vec<String>) -> Self {
        self.accept = tools;
        self
    }

    /// What is known of `tool`'s definition: its digest, its pin, whether it changed.
    fn definition(&self, tool: &Value, listed: Option<&Value>) -> Value {
        let name = tool.as_str().unwrap_or_default();
        let Some(listed) = listed else {
            return self
                .definitions
                .lock()
                .ok()
                .and_then(|d| d.get(name).cloned())
                .unwrap_or(Value::Null);
        };
        let key = format!("{}/{name}", self.server.name);
        let digest = definition_digest(listed);
        let accept = self.accept.contains(&key);
        let known = match self.pins.check(&key, &digest, accept) {
            Ok(Pinned::New) => {
                tracing::info!("tool `{key}` pinned (definition {digest})");
                json!({"sha256": digest, "pinned": digest, "changed": false})
            }
            Ok(Pinned::Same) => json!({"sha256": digest, "pinned": digest, "changed": false}),
            Ok(Pinned::Changed(old)) if accept => {
                tracing::warn!("tool `{key}`: its changed definition is accepted and pinned ({old} before, {digest} now)");
                json!({"sha256": digest, "pinned": digest, "changed": false})
            }
            Ok(Pinned::Changed(old)) => {
                tracing::warn!(
                    "tool `{key}` changed its definition since it was pinned ({old} then, {digest} now): hidden and refused until accepted (`--accept-changed {key}`)"
                );
                json!({"sha256": digest, "pinned": old, "changed": true})
            }
            Err(why) => {
                tracing::warn!("tool `{key}`: {why}");
                json!({"sha256": digest, "pinned": null, "changed": true, "error": why})
            }
        };
        if let Ok(mut definitions) = self.definitions.lock() {
            definitions.insert(name.to_owned(), known.clone());
        }
        known
    }

    fn decide(&self, action: &str, tool: &Value, extra: &[(&str, Value)]) -> Decision {
        let capability = Capability::tool();
        let mut request = Request {
            capability: Some("tool".into()),
            action: action.into(),
            ..Request::default()
        };
        let resource = &mut request.resource.extra;
        resource.insert("server".into(), json!(self.server));
        resource.insert("tool".into(), tool.clone());
        for (key, value) in extra {
            resource.insert((*key).into(), value.clone());
        }
        let pipeline = self.supervisor.pipeline();
        let input = match pipeline.builder().build_for(&capability, &request) {
            Ok(input) => input,
            Err(err) => return Decision::deny(format!("invalid request: {err}")),
        };
        let mut unrecorded = pipeline
            .decide_unrecorded(&capability, input)
            .require_carried(&[]);
        if action == "list" {
            // What a listing shows is not an action: only calls are recorded.
            return unrecorded.without_record();
        }
        // Large arguments are decided whole and recorded as their digest, size and start:
        // a client cannot fill the log at the rate it sends.
        if let Some(arguments) = unrecorded
            .input_mut()
            .and_then(|input| input.pointer_mut("/resource/arguments"))
        {
            let text = arguments.to_string();
            if text.len() > RECORDED_ARGUMENTS {
                let digest = cordon_types::hex(&sha2::Sha256::digest(text.as_bytes()));
                let start: String = text.chars().take(1024).collect();
                *arguments = json!({"sha256": digest, "bytes": text.len(), "start": start});
            }
        }
        pipeline.record_decided(&capability, unrecorded).decision
    }

    /// Decides one message of the client's (not a batch): `Ok(None)` drops it.
    fn client_one(&self, message: Value) -> Result<Option<Value>, Value> {
        let id = message.get("id").cloned();
        // A key that differs from a JSON-RPC or MCP key only in case would be read as that
        // key by a server whose parser ignores case: what is decided must be what it reads.
        let twin = case_twin(&message, &["jsonrpc", "id", "method", "params"]).or_else(|| {
            message
                .get("params")
                .and_then(|p| case_twin(p, &["name", "arguments"]))
        });
        if let Some(twin) = twin {
            return Err(error(
                id.unwrap_or(Value::Null),
                -32600,
                &format!(
                    "invalid request: the key `{twin}` differs from a JSON-RPC key only in case"
                ),
            ));
        }
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match method {
            // Decided with or without an id: a server may run a call sent as a notification.
            "tools/call" => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                let tool = params.get("name").cloned().unwrap_or(Value::Null);
                if !tool.is_string() {
                    let id = id.unwrap_or(Value::Null);
                    return Err(error(id, -32602, "tools/call needs a tool name"));
                }
                let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
                let definition = self.definition(&tool, None);
                let decision = self.decide(
                    "call",
                    &tool,
                    &[("arguments", arguments), ("definition", definition)],
                );
                match (decision.allow, id) {
                    (true, _) => Ok(Some(message)),
                    (false, None) => {
                        tracing::warn!("a tools/call without an id was denied and dropped");
                        Ok(None)
                    }
                    (false, Some(id)) => {
                        let text = format!("denied by policy: {}", decision.reasons.join("; "));
                        Err(json!({
                            "jsonrpc": "2.0",
                            "id": id,
                            "result": {"content": [{"type": "text", "text": text}], "isError": true},
                        }))
                    }
                }
            }
            "tools/list" => {
                if let (Some(id), Ok(mut listing)) = (&id, self.listing.lock()) {
                    // A client that never reads its results cannot grow this without end.
                    if listing.len() >= MAX_PENDING_LISTS {
                        listing.clear();
                    }
                    listing.insert(id_key(id));
                }
                Ok(Some(message))
            }
            _ => Ok(Some(message)),
        }
    }

    /// Decides a line the client sent.
    pub fn from_client(&self, line: &str) -> FromClient {
        let parsed: Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(err) => {
                let message = format!("parse error: {err}");
                return FromClient::Reply(error(Value::Null, -32700, &message));
            }
        };
        match parsed {
            Value::Array(batch) if !batch.is_empty() => {
                let (mut forward, mut replies) = (Vec::new(), Vec::new());
                for message in batch {
                    match self.client_one(message) {
                        Ok(Some(message)) => forward.push(message),
                        Ok(None) => {}
                        Err(reply) => replies.push(reply),
                    }
                }
                let forward = Value::Array(forward);
                match (
                    forward.as_array().is_some_and(Vec::is_empty),
                    replies.is_empty(),
                ) {
                    (false, true) => FromClient::Forward(forward.to_string()),
                    (false, false) => FromClient::Both(forward.to_string(), Value::Array(replies)),
                    (true, false) => FromClient::Reply(Value::Array(replies)),
                    (true, true) => FromClient::Nothing,
                }
            }
            // What is forwarded is the value decided, encoded again, never the bytes as they
            // came: a server could split those otherwise (a bare `\r` is JSON whitespace, and
            // a line end to some readers).
            Value::Object(_) => match self.client_one(parsed) {
                Ok(Some(message)) => FromClient::Forward(message.to_string()),
                Ok(None) => FromClient::Nothing,
                Err(reply) => FromClient::Reply(reply),
            },
            _ => FromClient::Reply(error(
                Value::Null,
                -32600,
                "invalid request: not a JSON-RPC message",
            )),
        }
    }

    /// Filters one message of the server's: a `tools/list` result shows only what the
    /// policy allows.
    fn server_one(&self, mut message: Value) -> Value {
        let Some(id) = message.get("id").map(id_key) else {
            return message;
        };
        let listed = self
            .listing
            .lock()
            .map(|mut listing| listing.remove(&id))
            .unwrap_or(false);
        if !listed {
            return message;
        }
        if let Some(tools) = message
            .pointer_mut("/result/tools")
            .and_then(Value::as_array_mut)
        {
            tools.retain(|tool| {
                let name = tool.get("name").cloned().unwrap_or(Value::Null);
                let annotations = tool.get("annotations").cloned().unwrap_or(Value::Null);
                let definition = self.definition(&name, Some(tool));
                self.decide(
                    "list",
                    &name,
                    &[("annotations", annotations), ("definition", definition)],
                )
                .allow
            });
        }
        message
    }

    /// What to pass to the client for a line the server sent; `None` for a line that is
    /// not JSON (dropped).
    pub fn from_server(&self, line: &str) -> Option<String> {
        let parsed: Value = serde_json::from_str(line).ok()?;
        Some(match parsed {
            Value::Array(batch) => {
                Value::Array(batch.into_iter().map(|m| self.server_one(m)).collect()).to_string()
            }
            message => self.server_one(message).to_string(),
        })
    }
}

/// Reads one line into `line`, keeping at most [`MAX_MESSAGE`] bytes of it (the rest is
/// read and discarded in pieces, never held); `Ok(None)` at the end, else whether the line
/// was whole.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    line.clear();
    let read = reader
        .by_ref()
        .take(MAX_MESSAGE as u64 + 1)
        .read_until(b'\n', line)?;
    if read == 0 {
        return Ok(None);
    }
    let whole = line.ends_with(b"\n") || read <= MAX_MESSAGE;
    if !whole {
        loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                break;
            }
            match buffer.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    reader.consume(at + 1);
                    break;
                }
                None => {
                    let all = buffer.len();
                    reader.consume(all);
                }
            }
        }
        line.truncate(MAX_MESSAGE);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(whole))
}

fn send(out: &Mutex<Box<dyn Write + Send>>, text: &str) -> std::io::Result<()> {
    let mut out = out
        .lock()
        .map_err(|_| std::io::Error::other("the client's stream was lost"))?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// How long a server may take to end once its client has gone, and to take a message it
/// was sent.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Messages on their way to the server that it has not yet taken.
const QUEUED: usize = 256;

/// Relays between the client (`client_in`, `client_out`) and the server (`server_in`,
/// `server_out`) until the server's output ends, or the client's input ends and the server
/// has had [`GRACE`] to end after its input was closed, or the server has not taken a
/// message for [`GRACE`] with 256 waiting. Returns whether the server ended.
///
/// # Errors
///
/// The I/O error that ended the relay, other than a broken pipe.
pub fn relay(
    gateway: Arc<Gateway>,
    client_in: impl Read + Send + 'static,
    client_out: impl Write + Send + 'static,
    mut server_in: impl Write + Send + 'static,
    server_out: impl Read + Send + 'static,
) -> std::io::Result<bool> {
    enum Ended {
        Client(std::io::Result<()>),
        Server(std::io::Result<()>),
        Stalled,
    }
    let client_out: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(client_out)));
    let (ended, events) = std::sync::mpsc::channel();

    // The server's output, to the client.
    let to_client = Arc::clone(&client_out);
    let from_server = Arc::clone(&gateway);
    let server_ended = ended.clone();
    std::thread::Builder::new()
        .name("cordon-mcp-server".into())
        .spawn(move || {
            let relayed = (|| -> std::io::Result<()> {
                let mut reader = BufReader::new(server_out);
                let mut line = Vec::new();
                while let Some(whole) = read_line(&mut reader, &mut line)? {
                    if !whole {
                        // The request it answers is answered with an error, not left waiting.
                        tracing::warn!("the server sent a message over {MAX_MESSAGE} bytes; dropped");
                        let id = leading_id(&line);
                        if !id.is_null() {
                            let why = format!("the server's response was over {MAX_MESSAGE} bytes");
                            send(&to_client, &error(id, -32603, &why).to_string())?;
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    match from_server.from_server(&text) {
                        Some(message) => send(&to_client, &message)?,
                        None if text.trim().is_empty() => {}
                        None => tracing::warn!(
                            "the server wrote something that is not JSON-RPC on its output; dropped: {}",
                            cordon_types::printable(&text.chars().take(200).collect::<String>())
                        ),
                    }
                }
                Ok(())
            })();
            let _ = server_ended.send(Ended::Server(relayed));
        })?;

    // The server's input, written on a thread of its own: a server that stops reading
    // blocks that thread, never the reading of the client.
    let (queue, queued) = crossbeam_channel::bounded::<String>(QUEUED);
    std::thread::Builder::new()
        .name("cordon-mcp-to-server".into())
        .spawn(move || {
            for message in queued {
                let written = server_in
                    .write_all(message.as_bytes())
                    .and_then(|()| server_in.write_all(b"\n"))
                    .and_then(|()| server_in.flush());
                if written.is_err() {
                    break;
                }
            }
            // The client is gone (or the server's input is): the server's input closes.
        })?;

    // The client's input, decided.
    let client_ended = ended;
    std::thread::Builder::new()
        .name("cordon-mcp-client".into())
        .spawn(move || {
            let relayed = (|| -> Result<(), Ended> {
                let io = |err: std::io::Error| Ended::Client(Err(err));
                let mut reader = BufReader::new(client_in);
                let mut line = Vec::new();
                let to_server = |message: String| match queue.send_timeout(message, GRACE) {
                    Ok(()) => Ok(()),
                    Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => Err(Ended::Stalled),
                    Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                        Err(Ended::Client(Err(std::io::ErrorKind::BrokenPipe.into())))
                    }
                };
                while let Some(whole) = read_line(&mut reader, &mut line).map_err(io)? {
                    if !whole {
                        let refused = format!("message over {MAX_MESSAGE} bytes; refused");
                        let reply = error(leading_id(&line), -32600, &refused);
                        send(&client_out, &reply.to_string()).map_err(io)?;
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    match gateway.from_client(&text) {
                        FromClient::Forward(message) => to_server(message)?,
                        FromClient::Reply(reply) => {
                            send(&client_out, &reply.to_string()).map_err(io)?;
                        }
                        FromClient::Both(message, reply) => {
                            to_server(message)?;
                            send(&client_out, &reply.to_string()).map_err(io)?;
                        }
                        FromClient::Nothing => {}
                    }
                }
                Ok(())
            })();
            let _ = client_ended.send(match relayed {
                Ok(()) => Ended::Client(Ok(())),
                Err(ended) => ended,
            });
        })?;

    let quiet = |result: std::io::Result<()>| match result {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err),
        _ => Ok(()),
    };
    match events.recv() {
        Ok(Ended::Server(result)) => quiet(result).map(|()| true),
        Ok(Ended::Stalled) => {
            tracing::warn!("the server has not read its input for {GRACE:?}; stopping it");
            Ok(false)
        }
        Ok(Ended::Client(result)) => {
            quiet(result)?;
            match events.recv_timeout(GRACE) {
                Ok(Ended::Server(result)) => quiet(result).map(|()| true),
                _ => Ok(false),
            }
        }
        Err(_) => Ok(true),
    }
}
