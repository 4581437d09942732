//! A WebAssembly skill's exported functions as an MCP server, in this process: the far end
//! of the gateway's relay, so that each call is decided, redacted, limited, asked about and
//! recorded exactly as a native server's, then run in an instance of its own by the skill
//! runtime (each file it opens and request it makes decided again).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{error, Gateway, Server};
use crate::session::skill::Functions;

/// Protocol versions this server speaks, newest first.
const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Calls running at once; more are answered "busy".
const MAX_CALLS: usize = 8;

/// How often the server looks for a stop of the session while it waits for a message.
const TICK: Duration = Duration::from_millis(50);

impl Server {
    /// A skill as the server: its name, its file and the file's SHA-256.
    pub fn skill(name: String, skill: &cordon_skills::SkillFile) -> Self {
        let path = crate::real_path(skill.path()).display().to_string();
        Self {
            name,
            command: vec![path.clone()],
            executable: Some(json!({ "path": path, "sha256": skill.sha256() })),
        }
    }
}

/// Relays between the client and `functions` served as an MCP server, through `gateway`,
/// until the client leaves or the session is stopped. Returns whether the server side ended
/// (a stop) rather than the client.
///
/// # Errors
///
/// The relay's I/O error, or a pipe that cannot be made.
pub fn relay_skill(
    gateway: Arc<Gateway>,
    functions: &Functions<'_>,
    client_in: impl Read + Send + 'static,
    client_out: impl Write + Send + 'static,
) -> std::io::Result<bool> {
    let (server_reads, relay_writes) = std::io::pipe()?;
    let (relay_reads, server_writes) = std::io::pipe()?;
    std::thread::scope(|scope| {
        scope.spawn(move || serve(functions, server_reads, server_writes));
        super::relay(gateway, client_in, client_out, relay_writes, relay_reads)
    })
}

type Output = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

fn send(output: &Output, message: &Value) {
    if let Ok(mut output) = output.lock() {
        if let Some(out) = output.as_mut() {
            let text = message.to_string();
            let written = out
                .write_all(text.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
            if written.is_err() {
                *output = None;
            }
        }
    }
}

fn answer(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// The server: reads requests from `input` (on a thread of its own, so that a stop is seen
/// while it waits), answers on `output`; each call on a thread of its own.
fn serve(
    functions: &Functions<'_>,
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) {
    let (lines, received) = crossbeam_channel::bounded::<String>(64);
    let reader = std::thread::Builder::new()
        .name("cordon-skill-mcp-in".into())
        .spawn(move || {
            let mut input = BufReader::new(input);
            let mut line = String::new();
            loop {
                line.clear();
                match input.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if lines.send(std::mem::take(&mut line)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(err) = reader {
        tracing::error!("cannot read the relay: {err}");
        return;
    }
    let output: Output = Arc::new(Mutex::new(Some(Box::new(output))));
    let running: Mutex<HashMap<String, Arc<AtomicBool>>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| loop {
        let line = match received.recv_timeout(TICK) {
            Ok(line) => line,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if !functions.stopped() => continue,
            // The client left, or the session was stopped: calls still running end too.
            Err(_) => {
                if let Ok(running) = running.lock() {
                    for stop in running.values() {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                break;
            }
        };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").cloned();
        match (method, id) {
            (Some("notifications/cancelled"), None) => {
                let cancelled = message.pointer("/params/requestId").map(super::id_key);
                if let (Some(key), Ok(running)) = (cancelled, running.lock()) {
                    if let Some(stop) = running.get(&key) {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            (Some("tools/call"), Some(id)) => {
                let key = super::id_key(&id);
                let stop = Arc::new(AtomicBool::new(false));
                let admitted = running.lock().is_ok_and(|mut running| {
                    running.len() < MAX_CALLS
                        && running.insert(key.clone(), Arc::clone(&stop)).is_none()
                });
                if !admitted {
                    let busy = format!("{MAX_CALLS} calls are running; try again");
                    send(&output, &error(id, -32000, &busy));
                    continue;
                }
                let (output, running) = (Arc::clone(&output), &running);
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                scope.spawn(move || {
                    let result = call(functions, &params, &stop);
                    if let Ok(mut running) = running.lock() {
                        running.remove(&key);
                    }
                    if !stop.load(Ordering::SeqCst) {
                        send(&output, &answer(id, result));
                    }
                });
            }
            (Some(method), Some(id)) => {
                let reply = match method {
                    "initialize" => answer(id, initialize(functions, &message)),
                    "ping" => answer(id, json!({})),
                    "tools/list" => answer(id, json!({ "tools": listing(functions) })),
                    other => error(id, -32601, &format!("method `{other}` not found")),
                };
                send(&output, &reply);
            }
            // Other notifications, and answers (this server asks nothing).
            _ => {}
        }
    });
    // The relay sees the server end.
    if let Ok(mut output) = output.lock() {
        output.take();
    };
}

/// The answer to `initialize`: the client's protocol version where this server speaks it,
/// else the newest it does; tools, and nothing else.
fn initialize(functions: &Functions<'_>, message: &Value) -> Value {
    let asked = message
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str);
    let version = VERSIONS
        .iter()
        .find(|v| Some(**v) == asked)
        .unwrap_or(&VERSIONS[0]);
    let skill = functions.skill();
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": {
            "name": skill.name(),
            "version": skill.sha256().get(..12).unwrap_or_default(),
        },
        "instructions": format!(
            "Functions of the WebAssembly skill `{}`, each call decided by cordon's policy.",
            skill.name()
        ),
    })
}

/// Each function as a tool: its name, its signature, the schema of its arguments.
fn listing(functions: &Functions<'_>) -> Vec<Value> {
    let skill = functions.skill().name();
    functions
        .functions()
        .iter()
        .map(|function| {
            json!({
                "name": function.name,
                "description": format!(
                    "`{}` of the WebAssembly skill `{skill}`; the arguments are its parameters \
                     by name, and a `result` returning `err` is a tool error",
                    function.signature
                ),
                "inputSchema": function.input_schema,
            })
        })
        .collect()
}

/// A tool result of one text.
fn text(text: String, error: bool) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": error })
}

/// Runs a `tools/call`: the function named, with the arguments given; what it returned as
/// text (a string as it is, anything else as JSON), what it wrote after it.
fn call(functions: &Functions<'_>, params: &Value, stop: &Arc<AtomicBool>) -> Value {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(function) = functions.functions().iter().find(|f| f.name == name) else {
        return text(format!("no tool `{}`", cordon_types::printable(name)), true);
    };
    let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
    let (called, written) = match functions.call(function, &arguments, stop) {
        Ok(called) => called,
        Err(err) => return text(err.to_string(), true),
    };
    let mut result = match (called.returned, called.exit.stopped) {
        (Some(returned), None) => {
            let shown = match returned.value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            text(shown, returned.error)
        }
        (_, Some(stopped)) => text(format!("the skill was stopped: {stopped}"), true),
        (None, None) => text("the skill returned nothing".into(), true),
    };
    if !written.is_empty() {
        let written = String::from_utf8_lossy(&written).into_owned();
        if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
            content.push(json!({ "type": "text", "text": written }));
        }
    }
    result
}
