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

use cordon_types::{Capability, Request};
use serde_json::{json, Value};

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
    /// Pass it to the server, as it came.
    Forward(String),
    /// Answer the client with this instead; the server never sees the message.
    Reply(Value),
    /// Pass some of a batch on and answer the rest.
    Both(String, Value),
}

/// The gateway's decisions for one server.
#[derive(Debug)]
pub struct Gateway {
    supervisor: Arc<Supervisor>,
    server: Server,
    /// Ids of the client's `tools/list` requests whose results are still to come.
    listing: Mutex<HashSet<String>>,
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

impl Gateway {
    /// A gateway deciding under `supervisor`'s policy (with the `tool` capability loaded)
    /// for `server`.
    pub fn new(supervisor: Arc<Supervisor>, server: Server) -> Self {
        Self {
            supervisor,
            server,
            listing: Mutex::new(HashSet::new()),
        }
    }

    fn decide(
        &self,
        action: &str,
        tool: &Value,
        extra: &[(&str, Value)],
    ) -> cordon_types::Decision {
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
            Err(err) => return cordon_types::Decision::deny(format!("invalid request: {err}")),
        };
        let unrecorded = pipeline
            .decide_unrecorded(&capability, input)
            .require_carried(&[]);
        if action == "list" {
            // What a listing shows is not an action: only calls are recorded.
            unrecorded.without_record()
        } else {
            pipeline.record_decided(&capability, unrecorded).decision
        }
    }

    /// Decides one message of the client's (not a batch).
    fn client_one(&self, message: Value) -> Result<Value, Value> {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = message.get("id").cloned();
        match (method, id) {
            ("tools/call", Some(id)) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                let tool = params.get("name").cloned().unwrap_or(Value::Null);
                if !tool.is_string() {
                    return Err(error(id, -32602, "tools/call needs a tool name"));
                }
                let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
                let decision = self.decide("call", &tool, &[("arguments", arguments)]);
                if decision.allow {
                    Ok(message)
                } else {
                    let text = format!("denied by policy: {}", decision.reasons.join("; "));
                    Err(json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "result": {"content": [{"type": "text", "text": text}], "isError": true},
                    }))
                }
            }
            ("tools/list", Some(id)) => {
                if let Ok(mut listing) = self.listing.lock() {
                    listing.insert(id.to_string());
                }
                Ok(message)
            }
            _ => Ok(message),
        }
    }

    /// Decides a line the client sent.
    pub fn from_client(&self, line: &str) -> FromClient {
        let parsed: Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(err) => {
                return FromClient::Reply(error(
                    Value::Null,
                    -32700,
                    &format!("parse error: {err}"),
                ))
            }
        };
        match parsed {
            Value::Array(batch) if !batch.is_empty() => {
                let (mut forward, mut replies) = (Vec::new(), Vec::new());
                for message in batch {
                    match self.client_one(message) {
                        Ok(message) => forward.push(message),
                        Err(reply) => replies.push(reply),
                    }
                }
                match (forward.is_empty(), replies.is_empty()) {
                    (false, true) => FromClient::Forward(Value::Array(forward).to_string()),
                    (true, _) => FromClient::Reply(Value::Array(replies)),
                    (false, false) => {
                        FromClient::Both(Value::Array(forward).to_string(), Value::Array(replies))
                    }
                }
            }
            Value::Object(_) => match self.client_one(parsed) {
                Ok(_) => FromClient::Forward(line.to_owned()),
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
        let Some(id) = message.get("id").map(Value::to_string) else {
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
                self.decide("list", &name, &[("annotations", annotations)])
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

/// Reads one line of at most [`MAX_MESSAGE`] bytes; `Ok(None)` at the end.
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
        // Skip the rest of the oversized line.
        let mut rest = Vec::new();
        reader.read_until(b'\n', &mut rest)?;
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

/// How long a server may take to end once its client has gone.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Relays between the client (`client_in`, `client_out`) and the server (`server_in`,
/// `server_out`) until the server's output ends, or the client's input ends and the server
/// has had [`GRACE`] to end after its input was closed. Returns whether the server ended.
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
    }
    let client_out: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(client_out)));
    let (ended, events) = std::sync::mpsc::channel();
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
                    let text = String::from_utf8_lossy(&line);
                    match (whole, from_server.from_server(&text)) {
                        (true, Some(message)) => send(&to_client, &message)?,
                        (false, _) => tracing::warn!(
                            "the server sent a message over {MAX_MESSAGE} bytes; dropped"
                        ),
                        (true, None) if text.trim().is_empty() => {}
                        (true, None) => tracing::warn!(
                            "the server wrote something that is not JSON-RPC on its output; dropped: {}",
                            cordon_types::printable(&text.chars().take(200).collect::<String>())
                        ),
                    }
                }
                Ok(())
            })();
            let _ = server_ended.send(Ended::Server(relayed));
        })?;
    std::thread::Builder::new()
        .name("cordon-mcp-client".into())
        .spawn(move || {
            let relayed = (|| -> std::io::Result<()> {
                let mut reader = BufReader::new(client_in);
                let mut line = Vec::new();
                let mut to_server = |message: &str| -> std::io::Result<()> {
                    server_in.write_all(message.as_bytes())?;
                    server_in.write_all(b"\n")?;
                    server_in.flush()
                };
                while let Some(whole) = read_line(&mut reader, &mut line)? {
                    if !whole {
                        let refused = format!("message over {MAX_MESSAGE} bytes; refused");
                        send(
                            &client_out,
                            &error(Value::Null, -32600, &refused).to_string(),
                        )?;
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    match gateway.from_client(&text) {
                        FromClient::Forward(message) => to_server(&message)?,
                        FromClient::Reply(reply) => send(&client_out, &reply.to_string())?,
                        FromClient::Both(message, reply) => {
                            to_server(&message)?;
                            send(&client_out, &reply.to_string())?;
                        }
                    }
                }
                Ok(())
            })();
            // The client is gone (or the server's input is): the server's input closes.
            drop(server_in);
            let _ = ended.send(Ended::Client(relayed));
        })?;
    let quiet = |result: std::io::Result<()>| match result {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err),
        _ => Ok(()),
    };
    match events.recv() {
        Ok(Ended::Server(result)) => quiet(result).map(|()| true),
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
