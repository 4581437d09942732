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

use super::relay::{InProcess, ServerOutput};
use super::{error, Gateway, Server};
use crate::session::skill::Functions;

/// Protocol versions this server speaks, newest first.
const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Calls running at once; more are answered "busy".
const MAX_CALLS: usize = 8;

/// How often the server looks for a stop of the session, and for calls past their time,
/// while it waits for a message.
const TICK: Duration = Duration::from_millis(50);

/// How long a call stopped (cancelled, past its time limit, its client gone) has to return
/// before it is given up: answered with an error, and the process ended when the session ends.
const GRACE: Duration = Duration::from_secs(5);

/// A call running.
struct Running {
    /// The call's id, as it came.
    id: Value,
    stop: Arc<AtomicBool>,
    began: std::time::Instant,
    /// Answered already (given up): its own answer, if it ever comes, is not sent.
    answered: Arc<AtomicBool>,
}

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
    let InProcess {
        from_relay,
        output,
        relay_ends: (relay_writes, relay_reads),
    } = InProcess::new()?;
    let logs = Arc::clone(&gateway);
    std::thread::scope(|scope| {
        scope.spawn(move || serve(functions, &logs, from_relay, &output));
        super::relay(gateway, client_in, client_out, relay_writes, relay_reads)
    })
}

fn send(output: &ServerOutput, message: &Value) {
    output.send(&message.to_string());
}

fn answer(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// The server: reads requests from `input` (on a thread of its own, so that a stop is seen
/// while it waits), answers on `output`; each call on a thread of its own.
fn serve(
    functions: &Functions<'_>,
    gateway: &Gateway,
    input: impl Read + Send + 'static,
    output: &ServerOutput,
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
    let running: Mutex<HashMap<String, Running>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        loop {
            // The session stopped: calls still running end too (below).
            if functions.stopped() {
                break;
            }
            give_up_late(functions, &running, output);
            let line = match received.recv_timeout(TICK) {
                Ok(line) => line,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                // The client left: calls still running end too.
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            // A batch's messages are each handled, each answered on its own.
            let messages = match message {
                Value::Array(items) => items,
                one => vec![one],
            };
            for message in messages {
                handle(scope, functions, gateway, &running, output, message);
            }
        }
        if let Ok(running) = running.lock() {
            for call in running.values() {
                call.stop.store(true, Ordering::SeqCst);
            }
        }
        // A call blocked in a host call no stop reaches would hold the session open for
        // ever: past the grace, the process ends.
        let deadline = std::time::Instant::now() + GRACE;
        while running.lock().is_ok_and(|r| !r.is_empty()) {
            if std::time::Instant::now() >= deadline {
                functions.end_stuck(&format!(
                    "a tool call did not return from a host call (a wait) within {} s of the session's end: ended",
                    GRACE.as_secs()
                ));
            }
            std::thread::sleep(TICK);
        }
    });
    // The relay sees the server end.
    output.close();
}

/// Answers, with an error, each call past its time limit and the grace, stopped but still
/// blocked in a host call; it keeps its place among the calls running.
fn give_up_late(
    functions: &Functions<'_>,
    running: &Mutex<HashMap<String, Running>>,
    output: &ServerOutput,
) {
    let limit = functions.time_limit().saturating_add(GRACE);
    let Ok(running) = running.lock() else { return };
    for call in running.values() {
        if call.began.elapsed() >= functions.time_limit() {
            call.stop.store(true, Ordering::SeqCst);
        }
        if call.began.elapsed() >= limit && !call.answered.swap(true, Ordering::SeqCst) {
            let id = call.id.clone();
            let why = format!(
                "the call passed its time limit ({} s) and did not return from a host call (a wait); given up",
                functions.time_limit().as_secs()
            );
            send(output, &answer(id, text(why, true)));
        }
    }
}

/// One message from the relay.
fn handle<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    functions: &'env Functions<'env>,
    gateway: &'env Gateway,
    running: &'env Mutex<HashMap<String, Running>>,
    output: &ServerOutput,
    message: Value,
) {
    let method = message.get("method").and_then(Value::as_str);
    let id = message.get("id").cloned();
    match (method, id) {
        (Some("notifications/cancelled"), None) => {
            let cancelled = message.pointer("/params/requestId").map(super::id_key);
            if let (Some(key), Ok(running)) = (cancelled, running.lock()) {
                if let Some(call) = running.get(&key) {
                    call.stop.store(true, Ordering::SeqCst);
                }
            }
        }
        (Some("tools/call"), Some(id)) => {
            let key = super::id_key(&id);
            let stop = Arc::new(AtomicBool::new(false));
            let answered = Arc::new(AtomicBool::new(false));
            let admitted = running.lock().is_ok_and(|mut running| {
                if running.len() >= MAX_CALLS {
                    return false;
                }
                match running.entry(key.clone()) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        entry.insert(Running {
                            id: id.clone(),
                            stop: Arc::clone(&stop),
                            began: std::time::Instant::now(),
                            answered: Arc::clone(&answered),
                        });
                        true
                    }
                }
            });
            if !admitted {
                let busy = format!("{MAX_CALLS} calls are running, or one with this id; try again");
                send(output, &error(id, -32000, &busy));
                return;
            }
            let output = output.clone();
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            scope.spawn(move || {
                let result = call(functions, gateway, &params, &stop);
                if let Ok(mut running) = running.lock() {
                    running.remove(&key);
                }
                // A cancelled call is not answered; one given up was answered already.
                if !stop.load(Ordering::SeqCst) && !answered.swap(true, Ordering::SeqCst) {
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
            send(output, &reply);
        }
        // Other notifications, and answers (this server asks nothing).
        _ => {}
    }
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
fn call(
    functions: &Functions<'_>,
    gateway: &Gateway,
    params: &Value,
    stop: &Arc<AtomicBool>,
) -> Value {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(function) = functions.functions().iter().find(|f| f.name == name) else {
        return text(format!("no tool `{}`", cordon_types::printable(name)), true);
    };
    let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
    let (called, written, complained) = match functions.call(function, &arguments, stop) {
        Ok(called) => called,
        Err(err) => return text(err.to_string(), true),
    };
    // What it wrote to its standard error goes to cordon's (the client's log), redacted.
    if !complained.is_empty() {
        let complained = gateway.redact_log(&String::from_utf8_lossy(&complained));
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(complained.as_bytes());
        if !complained.ends_with('\n') {
            let _ = stderr.write_all(b"\n");
        }
    }
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
