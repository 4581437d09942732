//! The MCP gateway's core: a decision on every tool, resource, prompt and method a client
//! asks a server for, and on every request a server sends back to the client.
//!
//! cordon stands between an MCP client and a server it runs in the sandbox, relaying
//! JSON-RPC messages both ways ([`relay`]: the stdio transport, one JSON value per line).
//! Under `data.cordon.tool`:
//!
//! - `tools/call` (action `call`), `resources/read` (`read_resource`) and `prompts/get`
//!   (`get_prompt`) are decided, their obligations carried out (`consent` and `mfa` asked of
//!   the person, `redact` on what is sent and on the result, `limit` on calls a minute and
//!   bytes sent) and recorded before the server sees them; the result's size, and what was
//!   redacted from it, is recorded once it is delivered. A denied call is answered with a
//!   tool error the model can read ("denied by policy: …").
//! - Listings (`tools/list`, `resources/list`, `prompts/list`) show only what the policy
//!   allows (actions `list`, `list_resources`, `list_prompts`; not recorded). Every tool's
//!   definition is checked against its pin ([`Pins`]).
//! - A method outside the MCP specification passes only when the policy allows it (action
//!   `method`); a request the server sends the client (sampling, elicitation, roots) likewise
//!   (action `server_request`).
//!
//! Only answers to requests in flight are relayed: a response to an id nobody asked with
//! is dropped, and a request that reuses the id of one in flight is refused, so that every
//! result meets the decision of the request it answers.

#[cfg(target_os = "linux")]
pub mod http;
mod pins;
mod relay;
#[cfg(target_os = "linux")]
mod skill;
#[cfg(target_os = "linux")]
mod upstream;

pub use pins::{definition_digest, Pinned, Pins};
pub use relay::{relay, GRACE};
#[cfg(target_os = "linux")]
pub use skill::relay_skill;
#[cfg(target_os = "linux")]
pub use upstream::{relay_upstream, shown_url, Upstream, AUTHORIZATION_VARIABLE};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon_inspect::redact::{Encoding, Redaction};
use cordon_types::{Capability, Decision, Obligation, Outcome, Request};
use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::consent::Broker;
use crate::{Supervisor, Unrecorded};

/// The longest message either side may send, in bytes: larger is refused, not buffered.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Who the server is, as decisions see it (`input.resource.server`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Server {
    /// Its name (`--name`, else the program's file name).
    pub name: String,
    /// The command that runs it.
    pub command: Vec<String>,
    /// The program's file and its SHA-256 (`{"path", "sha256"}`), where cordon found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<Value>,
}

impl Server {
    /// The server run by `command` under `name`, its program found as `cwd` and `path` (the
    /// `PATH` list) find it, and its digest taken.
    pub fn new(name: String, command: Vec<String>, cwd: &std::path::Path, path: &str) -> Self {
        let program = command.first().map(String::as_str).unwrap_or_default();
        let found = if program.contains('/') {
            Some(cwd.join(program))
        } else {
            std::env::split_paths(path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        };
        let executable = found
            .and_then(|file| std::fs::canonicalize(file).ok())
            .and_then(|file| {
                let mut hasher = sha2::Sha256::new();
                let mut reader = fs_err::File::open(&file).ok()?;
                std::io::copy(&mut reader, &mut hasher).ok()?;
                Some(json!({
                    "path": file.display().to_string(),
                    "sha256": cordon_types::hex(&hasher.finalize()),
                }))
            });
        Self {
            name,
            command,
            executable,
        }
    }
}

/// Where each part of a message goes.
#[derive(Debug, Default)]
pub struct Routed {
    /// One line for the server.
    pub to_server: Option<String>,
    /// One line for the client.
    pub to_client: Option<String>,
    /// Calls waiting for the person's answer: each is finished by [`Gateway::answer`], on a
    /// thread of its own, so that the relay goes on meanwhile.
    pub asking: Vec<Asking>,
    /// What was delivered, to be recorded by [`Gateway::record`] once it is.
    pub done: Vec<Done>,
}

/// A call whose decision asks the person first.
#[derive(Debug)]
pub struct Asking {
    key: String,
    id: Option<Value>,
    message: Value,
    target: Target,
    unrecorded: Unrecorded,
}

/// A result delivered, with what its record says.
#[derive(Debug)]
pub struct Done {
    input: Value,
    decision: Decision,
    outcome: Outcome,
}

/// What a decided request is about.
#[derive(Debug, Clone)]
struct Target {
    /// The policy's action.
    action: &'static str,
    /// What limits count and an answer covers: `SERVER/TOOL`, `SERVER/resource:URI`...
    label: String,
    /// What is done, for the person (the payload, redacted, follows it).
    what: String,
    /// The key of `params` whose decided (and redacted) value is what is sent on.
    payload: Option<&'static str>,
}

/// A request to decide: what it is about, and its resource for the policy.
type Decidable = (Target, Map<String, Value>);

/// A request the gateway waits for the answer to, with its id as it was sent.
#[derive(Debug)]
struct Pending {
    id: Value,
    state: Awaited,
}

/// What the gateway waits for an answer to.
#[derive(Debug)]
enum Awaited {
    /// A listing, filtered on its way back.
    List(&'static str),
    /// A decided request: its result redacted as the decision says, and recorded.
    Decided(Box<Call>),
    /// A call while the person is asked.
    Asking,
    /// Cancelled by the client: a late answer is dropped, and the id stays taken until it
    /// comes (or the person's answer does), so that no other request meets it.
    Cancelled(Instant),
    /// Anything else.
    Plain,
}

#[derive(Debug)]
struct Call {
    input: Value,
    decision: Decision,
    redaction: Option<Redaction>,
    started: Instant,
    tool: bool,
}

/// What the client may send without a decision: the methods of the MCP specification whose
/// effect is decided elsewhere (listings are filtered, calls decided).
const CLIENT_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/unsubscribe",
    "prompts/list",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// What the server may tell the client without a decision.
const SERVER_NOTIFICATIONS: &[&str] = &[
    "notifications/message",
    "notifications/progress",
    "notifications/cancelled",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
];

/// The obligations the gateway carries out.
const CARRIED: &[&str] = &["consent", "mfa", "redact", "limit"];

/// The most requests in flight either way: more are refused, never forgotten (a result
/// whose request was forgotten would pass undecided).
const MAX_IN_FLIGHT: usize = 4096;

/// The most tools of one listing that are pinned and shown.
const MAX_LISTED: usize = 1024;

/// The most calls waiting for the person's answer at once.
const MAX_ASKING: usize = 16;

/// Arguments larger than this (as JSON) are recorded as their digest, size and beginning.
const RECORDED_ARGUMENTS: usize = 16 << 10;

/// The gateway's decisions for one server.
#[derive(Debug)]
pub struct Gateway {
    supervisor: Arc<Supervisor>,
    server: Server,
    consent: Option<Arc<Broker>>,
    pins: Pins,
    /// What the last listing said of each tool's definition (`input.resource.definition`).
    definitions: Mutex<HashMap<String, Value>>,
    /// `SERVER/TOOL`s whose changed definitions are accepted.
    accept: Vec<String>,
    /// The client's requests the server has yet to answer, by [`id_key`].
    from_client: Mutex<HashMap<String, Pending>>,
    /// The relay's decision and its input, recorded with its outcome when the session ends
    /// ([`Gateway::end`]).
    relay_decided: Mutex<Option<(Value, Decision)>>,
    /// What every message is redacted with, both ways (the policy's `relay` decision); the
    /// reason when the policy refuses to relay at all.
    relay: Result<Option<Redaction>, String>,
    /// The server's requests the client has yet to answer, and what their answer is
    /// redacted with.
    from_server: Mutex<HashMap<String, (Value, Option<Redaction>)>>,
    limits: Limits,
    asking: AtomicUsize,
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

/// A key of `object` that is not one of `keys` but equals one of them ignoring case, as
/// any parser may fold it (`Method`, `paramſ`: `ſ` is `S` in upper case, as Java's
/// `equalsIgnoreCase` compares).
fn case_twin(object: &Value, keys: &[&str]) -> Option<String> {
    let fold = |text: &str| text.to_uppercase().to_lowercase();
    object.as_object()?.keys().find_map(|key| {
        let folded = fold(key);
        let lower = key.to_lowercase();
        let twin = keys
            .iter()
            .any(|canonical| fold(canonical) == folded || canonical.to_lowercase() == lower);
        (twin && !keys.contains(&key.as_str())).then(|| key.clone())
    })
}

/// The keys a JSON-RPC message may have; others are not passed on.
const MESSAGE_KEYS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];

/// `message` as it may pass, whichever side sent it: an object, no key a case twin of a
/// JSON-RPC key (nor of the MCP keys decisions read in `params`), not both a request and a
/// response, and only JSON-RPC's keys.
fn well_formed(message: Value) -> Result<Value, String> {
    let twin = case_twin(&message, MESSAGE_KEYS).or_else(|| {
        message
            .get("params")
            .and_then(|p| case_twin(p, &["name", "arguments", "uri", "requestId"]))
    });
    if let Some(twin) = twin {
        return Err(format!(
            "invalid request: the key `{twin}` differs from a JSON-RPC or MCP key only in case"
        ));
    }
    let Value::Object(mut object) = message else {
        return Err("invalid request: not a JSON-RPC message".into());
    };
    if object
        .get("id")
        .is_some_and(|id| !(id.is_string() || id.is_number() || id.is_null()))
    {
        return Err("invalid request: an id is a string or a number".into());
    }
    if object.contains_key("method") && object.get("id").is_some_and(Value::is_null) {
        return Err("invalid request: a request's id is a string or a number, never null".into());
    }
    if object.contains_key("method")
        && (object.contains_key("result") || object.contains_key("error"))
    {
        return Err("invalid request: a message is a request or a response, not both".into());
    }
    object.retain(|key, _| MESSAGE_KEYS.contains(&key.as_str()));
    Ok(Value::Object(object))
}

/// One form of a URI for decisions: scheme and host in lower case, `%XX` escapes decoded,
/// `.` and `..` segments resolved, repeated slashes one, `localhost` dropped from a `file:`
/// URI. A pattern that refuses `file:///secret/*` refuses `FILE:///x/../secret/%6Bey` too.
pub fn normalize_uri(uri: &str) -> String {
    // As URL parsers read it: no leading or trailing spaces or controls, no tabs or line
    // ends anywhere, `\` a `/`.
    let uri: String = uri
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    let uri = uri.as_str();
    let decoded = {
        let bytes = uri.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let Some((scheme, rest)) = decoded.split_once(':') else {
        return decoded;
    };
    let scheme = scheme.to_lowercase();
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            // A file's host names no other file system here: `file://host/x` is `/x` to
            // whoever opens it.
            let authority = if scheme == "file" {
                String::new()
            } else {
                after[..end].to_lowercase()
            };
            (Some(authority), &after[end..])
        }
        // `file:/x` is `file:///x`.
        None if scheme == "file" => (Some(String::new()), rest),
        None => (None, rest),
    };
    let (path, tail) = match path.find(['?', '#']) {
        Some(at) => (&path[..at], &path[at..]),
        None => (path, ""),
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let absolute = path.starts_with('/') || authority.is_some();
    let mut joined = segments.join("/");
    if absolute {
        joined.insert(0, '/');
    }
    if path.ends_with('/') && !segments.is_empty() {
        joined.push('/');
    }
    match authority {
        Some(authority) => format!("{scheme}://{authority}{joined}{tail}"),
        None => format!("{scheme}:{joined}{tail}"),
    }
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

/// `value` with every string (and object key) replaced by what `redaction` lets leave, a
/// resource's base64 `blob` searched as bytes: the count of findings, or the kinds that
/// refuse it.
fn redact_value(
    value: &mut Value,
    redaction: &Redaction,
) -> Result<usize, cordon_inspect::redact::Blocked> {
    let strings = crate::inspect::JsonStrings {
        percent_under: None,
        blobs: true,
    };
    crate::inspect::redact_json(value, redaction, strings)
}

/// Calls `each` with the path (`a.b[2]`) and value of every scalar in `value`.
fn leaves(value: &Value, path: &str, each: &mut dyn FnMut(&str, &Value)) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let below = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaves(item, &below, each);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, &format!("{path}[{i}]"), each);
            }
        }
        scalar => each(if path.is_empty() { "(the value)" } else { path }, scalar),
    }
}

/// A value as it is recorded: whole, or when large its digest, size and beginning (a
/// client cannot fill the log at the rate it sends).
fn recorded(value: &mut Value) {
    let text = value.to_string();
    if text.len() > RECORDED_ARGUMENTS {
        let digest = cordon_types::hex(&sha2::Sha256::digest(text.as_bytes()));
        let start: String = text.chars().take(1024).collect();
        *value = json!({"sha256": digest, "bytes": text.len(), "start": start});
    }
}

/// What an allowance's `redact` obligations redact (a `redact` that cannot be read has
/// made the decision a denial already, in the pipeline).
fn redaction_of(decision: &Decision) -> Option<Redaction> {
    if !decision.allow {
        return None;
    }
    Redaction::from_obligations(&decision.obligations)
        .ok()
        .flatten()
}

/// Whether `decision` allows only once the person is asked (`consent`, `mfa`).
fn asks_the_person(decision: &Decision) -> bool {
    decision.allow
        && decision
            .obligations
            .iter()
            .any(|o| matches!(o, Obligation::Consent { .. } | Obligation::Mfa { .. }))
}

/// A batch's steps as two batches: what passes on, and what answers its sender.
fn split_batch(steps: impl Iterator<Item = Step>) -> (Option<String>, Option<String>) {
    let (mut forward, mut replies) = (Vec::new(), Vec::new());
    for step in steps {
        match step {
            Step::Forward(message) => forward.push(message),
            Step::Reply(reply) => replies.push(reply),
            Step::Drop | Step::Ask(_) => {}
        }
    }
    let batch =
        |messages: Vec<Value>| (!messages.is_empty()).then(|| Value::Array(messages).to_string());
    (batch(forward), batch(replies))
}

/// The most values (objects, arrays, strings, numbers...) one message may hold: more costs
/// seconds and gigabytes to decide and redact, and is refused.
const MAX_VALUES: usize = 200_000;

/// Whether `value` holds more than [`MAX_VALUES`] values.
fn too_many_values(value: &Value) -> bool {
    let mut count = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        count += 1;
        if count > MAX_VALUES {
            return true;
        }
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    false
}

/// What a step decided for one message.
enum Step {
    /// Send it on (the value decided, encoded again).
    Forward(Value),
    /// Answer its sender with this instead.
    Reply(Value),
    /// Nothing: a refused notification, a response nobody waits for.
    Drop,
    /// Ask the person first.
    Ask(Box<Asking>),
}

impl Gateway {
    /// A gateway deciding under `supervisor`'s policy (with the `tool` capability loaded)
    /// for `server`.
    pub fn new(supervisor: Arc<Supervisor>, server: Server, pins: Pins) -> Self {
        let mut gateway = Self {
            supervisor,
            server,
            consent: None,
            pins,
            definitions: Mutex::new(HashMap::new()),
            accept: Vec::new(),
            from_client: Mutex::new(HashMap::new()),
            from_server: Mutex::new(HashMap::new()),
            relay: Ok(None),
            relay_decided: Mutex::new(None),
            limits: Limits::default(),
            asking: AtomicUsize::new(0),
        };
        // Once for the session: whether messages are relayed at all, and what every one of
        // them is redacted with.
        gateway.relay = match gateway.decide("relay", Map::new()) {
            Ok(unrecorded) => {
                if let Some(input) = unrecorded.input() {
                    if let Ok(mut kept) = gateway.relay_decided.lock() {
                        *kept = Some((input.clone(), unrecorded.decision().clone()));
                    }
                }
                let decision = unrecorded.without_record();
                if decision.allow {
                    Redaction::from_obligations(&decision.obligations).map_err(|e| {
                        format!("the policy's `redact` obligation for the relay cannot be carried out: {e}")
                    })
                } else {
                    Err(decision.reasons.join("; "))
                }
            }
            Err(decision) => Err(decision.reasons.join("; ")),
        };
        gateway
    }

    /// The server's name in decisions and records.
    pub fn server_name(&self) -> &str {
        &self.server.name
    }

    /// Why the policy refuses to relay this server's messages at all, if it does.
    pub fn refusal(&self) -> Option<&str> {
        self.relay.as_ref().err().map(String::as_str)
    }

    /// Records that the relay ended (`why`), as the outcome of its decision, durably: the
    /// session's last record, which commits the results' records still waiting for one.
    pub fn end(&self, why: &str) {
        let kept = self.relay_decided.lock().ok().and_then(|mut k| k.take());
        let Some((mut input, decision)) = kept else {
            return;
        };
        input["result"] = json!({ "ended": why });
        let recorded = self.supervisor.pipeline().record_outcome(
            &Capability::tool(),
            input,
            decision,
            cordon_types::Outcome::Performed,
            true,
        );
        if let Err(err) = recorded {
            tracing::error!("cannot record the end of the relay: {err}");
        }
    }

    /// `text` the server wrote to its log, redacted as the relay's decision says (withheld
    /// whole where a `block_if` refuses it).
    pub fn redact_log(&self, text: &str) -> String {
        let Ok(Some(redaction)) = &self.relay else {
            return text.to_owned();
        };
        match redaction.apply(text.as_bytes(), Encoding::Plain) {
            Ok(redacted) => String::from_utf8_lossy(&redacted.data).into_owned(),
            Err(_) => "(withheld: it holds what the policy refuses to pass)\n".to_owned(),
        }
    }

    /// Redacts, in place, what a message carries (`params`, `result`, `error`) as the relay's
    /// decision says.
    ///
    /// # Errors
    ///
    /// What a `block_if` refuses: the message must not pass.
    fn scrub(&self, message: &mut Value) -> Result<(), cordon_inspect::redact::Blocked> {
        let Ok(Some(redaction)) = &self.relay else {
            return Ok(());
        };
        // An id is passed back as it came, never rewritten: one that holds what is
        // redacted does not pass.
        if let Some(Value::String(id)) = message.get("id") {
            let found = redaction.apply(id.as_bytes(), Encoding::Plain)?;
            if !found.findings.is_empty() {
                return Err(cordon_inspect::redact::Blocked {
                    kinds: found.findings.iter().map(|f| f.kind).collect(),
                });
            }
        }
        for part in ["params", "result", "error"] {
            if let Some(value) = message.get_mut(part) {
                redact_value(value, redaction)?;
            }
        }
        Ok(())
    }

    /// Whether `message`'s id holds what the relay redacts (it is then never sent on, not
    /// even in an error).
    fn id_withheld(&self, message: &Value) -> bool {
        let mut only_id = json!({"id": message.get("id").cloned().unwrap_or(Value::Null)});
        self.scrub(&mut only_id).is_err()
    }

    /// Redacts a refused request's resource before it is recorded: a refusal carries no
    /// obligation of its own, and what was refused is recorded all the same.
    fn scrub_refused(&self, mut unrecorded: Unrecorded) -> Unrecorded {
        if let (Ok(Some(redaction)), false) = (&self.relay, unrecorded.decision().allow) {
            // The reasons may name what was refused (a tool named like a key).
            let mut reasons = json!(unrecorded.decision().reasons);
            let text = match redact_value(&mut reasons, redaction) {
                Ok(0) => None,
                Ok(_) => Some(
                    reasons
                        .as_array()
                        .map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                        .unwrap_or_default()
                        .join("; "),
                ),
                Err(_) => Some(
                    "denied (the reason is withheld: it holds what the policy does not let leave)"
                        .to_owned(),
                ),
            };
            if let Some(text) = text {
                unrecorded = unrecorded.deny(&text);
            }
            if let Some(resource) = unrecorded
                .input_mut()
                .and_then(|i| i.get_mut("resource"))
                .and_then(Value::as_object_mut)
            {
                for value in resource.values_mut() {
                    if redact_value(value, redaction).is_err() {
                        *value = json!("(withheld: it holds what the policy does not let leave)");
                    }
                }
            }
        }
        unrecorded
    }

    /// Accepts the current definitions of these tools (`SERVER/TOOL`) in place of their pins.
    #[must_use]
    pub fn accepting(mut self, tools: Vec<String>) -> Self {
        self.accept = tools;
        self
    }

    /// Asks `broker` what a `consent` or `mfa` obligation asks (without one, such a
    /// decision is a denial).
    #[must_use]
    pub fn asking(mut self, broker: Arc<Broker>) -> Self {
        self.consent = Some(broker);
        self
    }

    /// What is known of `tool`'s definition for a call: as the last listing showed it
    /// (its digest, its pin, whether it changed), or that no listing in this session did.
    fn definition(&self, tool: &str) -> Value {
        self.definitions
            .lock()
            .ok()
            .and_then(|d| d.get(tool).cloned())
            .unwrap_or_else(|| json!({"listed": false}))
    }

    /// Checks the definitions a listing shows against their pins (pinning those first
    /// seen, in one write), and returns what is known of each, in order. Past
    /// [`MAX_LISTED`] tools, the rest are not pinned and known as refused.
    fn definitions_listed(&self, tools: &[Value]) -> Vec<Value> {
        let names: Vec<String> = tools
            .iter()
            .map(|t| {
                t.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let keys: Vec<String> = names
            .iter()
            .map(|name| format!("{}/{name}", self.server.name))
            .collect();
        let digests: Vec<String> = tools.iter().map(definition_digest).collect();
        let shown = tools.len().min(MAX_LISTED);
        if tools.len() > MAX_LISTED {
            tracing::warn!(
                "server `{}` listed {} tools; the {} past the first {MAX_LISTED} are hidden",
                self.server.name,
                tools.len(),
                tools.len() - MAX_LISTED
            );
        }
        let asked: Vec<(&str, &str, bool)> = (0..shown)
            .map(|i| {
                (
                    keys[i].as_str(),
                    digests[i].as_str(),
                    self.accept.contains(&keys[i]),
                )
            })
            .collect();
        let statuses = self.pins.check_all(&asked);
        let mut known = Vec::with_capacity(tools.len());
        for i in 0..tools.len() {
            let (key, digest) = (&keys[i], &digests[i]);
            let status = match &statuses {
                Ok(statuses) if i < shown => Ok(statuses[i].clone()),
                Ok(_) => Err(format!("more than {MAX_LISTED} tools were listed")),
                Err(why) => Err(why.clone()),
            };
            let accept = self.accept.contains(key);
            let mut value = match status {
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
            value["listed"] = json!(true);
            known.push(value);
        }
        if let Ok(mut definitions) = self.definitions.lock() {
            // A server that lists ever new names cannot grow this without end.
            if definitions.len() + names.len() > 4 * MAX_LISTED {
                definitions.clear();
            }
            for (name, value) in names.into_iter().zip(&known) {
                definitions.insert(name, value.clone());
            }
        }
        known
    }

    /// Decides `action` on `resource` (the server added), unrecorded.
    fn decide(&self, action: &str, resource: Map<String, Value>) -> Result<Unrecorded, Decision> {
        let capability = Capability::tool();
        let mut request = Request {
            capability: Some("tool".into()),
            action: action.into(),
            ..Request::default()
        };
        request
            .resource
            .extra
            .insert("server".into(), json!(self.server));
        request.resource.extra.extend(resource);
        let pipeline = self.supervisor.pipeline();
        let input = pipeline
            .builder()
            .build_for(&capability, &request)
            .map_err(|err| Decision::deny(format!("invalid request: {err}")))?;
        Ok(pipeline
            .decide_unrecorded(&capability, input)
            .require_carried(CARRIED))
    }

    /// Whether a listing shows an item: what the policy would allow (its obligations are
    /// carried out when the item is used).
    fn shows(&self, action: &str, resource: Map<String, Value>) -> bool {
        self.decide(action, resource)
            .is_ok_and(|u| u.without_record().allow)
    }

    /// Records a refusal made before the policy could decide (an invalid request).
    fn record_refusal(&self, action: &str, resource: Map<String, Value>, decision: Decision) {
        let mut input = json!({"capability": "tool", "action": action, "resource": resource});
        input["resource"]["server"] = json!(self.server);
        if let Err(err) = self.supervisor.pipeline().record_outcome(
            &Capability::tool(),
            input,
            decision,
            Outcome::Refused,
            false,
        ) {
            tracing::error!("cannot record a refused request: {err}");
        }
    }

    /// Carries out a decision on a request of the client's: the person asked (`consent`,
    /// `mfa`), the limits counted, the record made; then what is sent on is the value
    /// decided, with its payload as redacted, and the request waits for its result.
    fn proceed(&self, asking: Asking) -> Step {
        let Asking {
            key,
            id,
            mut message,
            target,
            mut unrecorded,
        } = asking;
        let asks = asks_the_person(unrecorded.decision());
        if asks {
            unrecorded = match &self.consent {
                Some(broker) => {
                    let about = crate::consent::About {
                        capability: "tool",
                        key: format!("tool:{}", target.label),
                        what: self.what(&target, unrecorded.input()),
                    };
                    crate::consent::carry_out(broker, unrecorded, &about, |_, _| {})
                }
                None => unrecorded.deny("the policy asks the person, and no one can be asked here"),
            };
            // Cancelled while the person was asked: nothing is sent, nothing answered.
            let cancelled = id.is_some()
                && self
                    .from_client
                    .lock()
                    .map(|m| !matches!(m.get(&key).map(|p| &p.state), Some(Awaited::Asking)))
                    .unwrap_or(true);
            if cancelled {
                self.forget(&key);
                let mut refused =
                    self.scrub_refused(unrecorded.deny("the client cancelled the request"));
                if let Some(input) = refused.input_mut() {
                    if let Some(payload) = target.payload {
                        if let Some(value) = input.pointer_mut(&format!("/resource/{payload}")) {
                            recorded(value);
                        }
                    }
                }
                let _ = self
                    .supervisor
                    .pipeline()
                    .record_decided(&Capability::tool(), refused);
                return Step::Drop;
            }
        }
        let payload = target.payload.and_then(|name| {
            unrecorded
                .input()
                .and_then(|input| input["resource"].get(name))
                .cloned()
        });
        if unrecorded.decision().allow {
            let bytes = payload.as_ref().map_or(0, |p| p.to_string().len() as u64);
            if let Err(why) =
                self.limits
                    .take(&target.label, &unrecorded.decision().obligations, bytes)
            {
                unrecorded = unrecorded.deny(&why);
            }
        }
        // What was decided (and redacted) is what is sent, and redacted as the relay says.
        match (target.payload, payload, message.as_object_mut()) {
            (Some("params"), Some(value), Some(object)) if object.contains_key("params") => {
                object.insert("params".into(), value);
            }
            (Some(name), Some(value), Some(object)) if name != "params" => {
                if let Some(params) = object.get_mut("params").and_then(Value::as_object_mut) {
                    params.insert(name.into(), value);
                }
            }
            _ => {}
        }
        let redaction = redaction_of(unrecorded.decision());
        if unrecorded.decision().allow {
            // All of what is sent, as the call's decision and as the relay's say.
            let by_call = match (&redaction, message.get_mut("params")) {
                (Some(redaction), Some(params)) => redact_value(params, redaction).map(|_| ()),
                _ => Ok(()),
            };
            if let Err(blocked) = by_call.and_then(|()| self.scrub(&mut message)) {
                unrecorded = unrecorded.deny(&format!("the request: {blocked}; refused"));
            }
        }
        if let (Some(name), Some(input)) = (target.payload, unrecorded.input_mut()) {
            if let Some(value) = input.pointer_mut(&format!("/resource/{name}")) {
                recorded(value);
            }
        }
        let unrecorded = self.scrub_refused(unrecorded);
        let decided = self
            .supervisor
            .pipeline()
            .record_decided(&Capability::tool(), unrecorded);
        let decision = decided.decision;
        if !decision.allow {
            if id.is_some() {
                self.forget(&key);
            }
            let Some(id) = id else {
                tracing::warn!(
                    "a {} without an id was denied and dropped: {}",
                    target.action,
                    decision.reasons.join("; ")
                );
                return Step::Drop;
            };
            let text = format!("denied by policy: {}", decision.reasons.join("; "));
            return Step::Reply(match target.action {
                "call" => json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "result": {"content": [{"type": "text", "text": text}], "isError": true},
                }),
                "method" => error(id, -32601, &text),
                _ => error(id, -32001, &text),
            });
        }
        if let Some(id) = id {
            if let Ok(mut awaited) = self.from_client.lock() {
                let call = Call {
                    input: decided.input.unwrap_or_default(),
                    decision,
                    redaction,
                    started: Instant::now(),
                    tool: target.action == "call",
                };
                awaited.insert(
                    key,
                    Pending {
                        id,
                        state: Awaited::Decided(Box::new(call)),
                    },
                );
            }
        }
        Step::Forward(message)
    }

    /// What the person is asked about: what is done, and the payload as it is recorded
    /// (redacted), whole when short, else its start and every key it has.
    fn what(&self, target: &Target, input: Option<&Value>) -> String {
        let Some(name) = target.payload else {
            return target.what.clone();
        };
        let mut payload = input
            .and_then(|i| i["resource"].get(name))
            .cloned()
            .unwrap_or(Value::Null);
        if let Ok(Some(redaction)) = &self.relay {
            if redact_value(&mut payload, redaction).is_err() {
                payload = json!("(withheld)");
            }
        }
        let scope = "an answer for the session or for always covers every call of it, whatever its arguments";
        let text = payload.to_string();
        if text.chars().count() <= 2000 {
            return format!("{} with {text} ({scope})", target.what);
        }
        // Too long to show whole: every value by its path, each cut short, so that nothing
        // hides behind padding.
        let mut shown = Vec::new();
        let mut count = 0;
        leaves(&payload, "", &mut |path, value| {
            count += 1;
            if shown.len() < 200 {
                let value = match value {
                    Value::String(text) => text.split_whitespace().collect::<Vec<_>>().join(" "),
                    other => other.to_string(),
                };
                let mut cut: String = value.chars().take(120).collect();
                if cut.len() < value.len() {
                    cut.push('…');
                }
                shown.push(format!("{path} = {cut}"));
            }
        });
        let more = if count > shown.len() {
            format!("; and {} more values", count - shown.len())
        } else {
            String::new()
        };
        format!(
            "{} with ({} bytes; each value by its path, cut short) {}{more} ({scope})",
            target.what,
            text.len(),
            shown.join("; ")
        )
    }

    /// The client's request under `key` is no longer awaited.
    fn forget(&self, key: &str) {
        if let Ok(mut awaited) = self.from_client.lock() {
            awaited.remove(key);
        }
    }

    /// Finishes a call once the person answered (or did not): what to send where.
    pub fn answer(&self, asking: Asking) -> Routed {
        let step = self.proceed(asking);
        self.asking.fetch_sub(1, Ordering::SeqCst);
        let mut routed = Routed::default();
        match step {
            Step::Forward(message) => routed.to_server = Some(message.to_string()),
            Step::Reply(reply) => routed.to_client = Some(reply.to_string()),
            Step::Drop | Step::Ask(_) => {}
        }
        routed
    }

    /// What a request of the client's is about, and its resource for the policy; `None`
    /// for a method of the specification that passes undecided.
    fn target(&self, method: &str, params: &Value) -> Result<Option<Decidable>, &'static str> {
        let server = &self.server.name;
        let mut resource = Map::new();
        let target = match method {
            "tools/call" => {
                let tool = params.get("name").cloned().unwrap_or(Value::Null);
                let Some(name) = tool.as_str() else {
                    return Err("tools/call needs a tool name");
                };
                let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
                let what = format!("call tool `{name}` of MCP server `{server}`");
                let label = format!("{server}/{name}");
                resource.insert("definition".into(), self.definition(name));
                resource.insert("tool".into(), tool);
                resource.insert("arguments".into(), arguments);
                Target {
                    action: "call",
                    label,
                    what,
                    payload: Some("arguments"),
                }
            }
            "resources/read" | "resources/subscribe" => {
                let Some(uri) = params.get("uri").and_then(Value::as_str) else {
                    return Err("resources/read and resources/subscribe need a uri");
                };
                let subscribe = method == "resources/subscribe";
                // Decided on one form of it (`file:///a/../b%2Fc` is `file:///b/c`), and on
                // the form sent.
                resource.insert("uri".into(), json!(normalize_uri(uri)));
                resource.insert("uri_as_sent".into(), json!(uri));
                Target {
                    action: if subscribe {
                        "subscribe_resource"
                    } else {
                        "read_resource"
                    },
                    // Counted by server: a URI can be varied without end.
                    label: format!("{server}/resources"),
                    what: format!(
                        "{} resource `{uri}` of MCP server `{server}`",
                        if subscribe { "subscribe to" } else { "read" }
                    ),
                    payload: None,
                }
            }
            "prompts/get" => {
                let Some(name) = params.get("name").and_then(Value::as_str) else {
                    return Err("prompts/get needs a prompt name");
                };
                let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
                let what = format!("get prompt `{name}` of MCP server `{server}`");
                resource.insert("prompt".into(), json!(name));
                resource.insert("arguments".into(), arguments);
                Target {
                    action: "get_prompt",
                    label: format!("{server}/prompt:{name}"),
                    what,
                    payload: Some("arguments"),
                }
            }
            known if CLIENT_METHODS.contains(&known) => return Ok(None),
            other => {
                resource.insert("method".into(), json!(other));
                resource.insert("params".into(), params.clone());
                Target {
                    action: "method",
                    label: format!("{server}/methods"),
                    what: format!("send `{other}` to MCP server `{server}`"),
                    payload: Some("params"),
                }
            }
        };
        Ok(Some((target, resource)))
    }

    /// Decides one message of the client's; `batched`: one of a batch, which is decided
    /// whole before any of it is sent (a call that asks the person is refused there).
    fn client_one(&self, message: Value, batched: bool) -> Step {
        let id = message.get("id").cloned();
        let message = match well_formed(message) {
            Ok(message) => message,
            Err(why) => return Step::Reply(error(id.unwrap_or(Value::Null), -32600, &why)),
        };
        if self.relay.is_err() {
            let why = format!("denied by policy: {}", self.refusal().unwrap_or_default());
            return id.map_or(Step::Drop, |id| Step::Reply(error(id, -32001, &why)));
        }
        let Some(method) = message.get("method") else {
            return self.client_response(message);
        };
        let Some(method) = method.as_str().map(str::to_owned) else {
            return Step::Reply(error(
                id.unwrap_or(Value::Null),
                -32600,
                "invalid request: the method is not a string",
            ));
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let key = id.as_ref().map(id_key).unwrap_or_default();
        if method == "notifications/cancelled" {
            // The id stays taken until the late answer comes, which is dropped.
            if let (Some(cancelled), Ok(mut awaited)) =
                (params.get("requestId").map(id_key), self.from_client.lock())
            {
                if let Some(pending) = awaited.get_mut(&cancelled) {
                    pending.state = Awaited::Cancelled(Instant::now());
                }
            }
        }
        let target = match self.target(&method, &params) {
            Ok(target) => target,
            Err(why) => return Step::Reply(error(id.unwrap_or(Value::Null), -32602, why)),
        };
        // A request waits for its answer under its id: one reused while in flight is
        // refused, or its result would meet another request's decision.
        if let Some(id) = &id {
            let Ok(mut awaited) = self.from_client.lock() else {
                return Step::Reply(error(id.clone(), -32603, "the gateway failed"));
            };
            if awaited.contains_key(&key) {
                return Step::Reply(error(
                    id.clone(),
                    -32600,
                    "invalid request: a request with this id is still in flight",
                ));
            }
            if awaited.len() >= MAX_IN_FLIGHT {
                // What was cancelled a minute ago or more is most likely never answered.
                awaited.retain(|_, p| {
                    !matches!(p.state, Awaited::Cancelled(at) if at.elapsed() >= Duration::from_secs(60))
                });
            }
            if awaited.len() >= MAX_IN_FLIGHT {
                return Step::Reply(error(
                    id.clone(),
                    -32603,
                    "too many requests in flight; try again once some are answered",
                ));
            }
            let state = match method.as_str() {
                "tools/list" => Awaited::List("list"),
                "resources/list" => Awaited::List("list_resources"),
                "prompts/list" => Awaited::List("list_prompts"),
                _ if target.is_some() => Awaited::Asking,
                _ => Awaited::Plain,
            };
            awaited.insert(
                key.clone(),
                Pending {
                    id: id.clone(),
                    state,
                },
            );
        }
        let Some((target, resource)) = target else {
            let mut message = message;
            return match self.scrub(&mut message) {
                Ok(()) => Step::Forward(message),
                Err(blocked) => {
                    if id.is_some() {
                        self.forget(&key);
                    }
                    let why = format!("the request: {blocked}; refused");
                    id.map_or(Step::Drop, |id| Step::Reply(error(id, -32001, &why)))
                }
            };
        };
        let unrecorded = match self.decide(target.action, resource.clone()) {
            Ok(unrecorded) => unrecorded,
            Err(decision) => {
                if id.is_some() {
                    self.forget(&key);
                }
                self.record_refusal(target.action, resource, decision.clone());
                return match id {
                    Some(id) => Step::Reply(error(id, -32602, &decision.reasons.join("; "))),
                    None => Step::Drop,
                };
            }
        };
        let asks = asks_the_person(unrecorded.decision());
        let unrecorded = if asks && batched {
            unrecorded.deny(
                "a call that needs the person's answer cannot be sent in a batch; send it alone",
            )
        } else if asks && self.asking.fetch_add(1, Ordering::SeqCst) >= MAX_ASKING {
            self.asking.fetch_sub(1, Ordering::SeqCst);
            unrecorded.deny(&format!(
                "{MAX_ASKING} requests already wait for the person's answer"
            ))
        } else if asks {
            return Step::Ask(Box::new(Asking {
                key,
                id,
                message,
                target,
                unrecorded,
            }));
        } else {
            unrecorded
        };
        self.proceed(Asking {
            key,
            id,
            message,
            target,
            unrecorded,
        })
    }

    /// The client's answer to a request of the server's: passed on (redacted as that
    /// request's decision says) only when the server waits for it.
    fn client_response(&self, mut message: Value) -> Step {
        let Some(key) = message.get("id").filter(|id| !id.is_null()).map(id_key) else {
            return Step::Reply(error(
                Value::Null,
                -32600,
                "invalid request: neither a request nor a response",
            ));
        };
        let waiting = self
            .from_server
            .lock()
            .ok()
            .and_then(|mut waiting| waiting.remove(&key));
        let Some((id, redaction)) = waiting else {
            tracing::warn!("the client answered a request the server did not send; dropped");
            return Step::Drop;
        };
        // The server matches the answer by the id it sent.
        message["id"] = id;
        let mut redacted = Ok(());
        if let Some(redaction) = redaction {
            for part in ["result", "error"] {
                if let Some(value) = message.get_mut(part) {
                    redacted = redacted.and(redact_value(value, &redaction).map(|_| ()));
                }
            }
        }
        if let Err(blocked) = redacted.and_then(|()| self.scrub(&mut message)) {
            if self.id_withheld(&message) {
                tracing::warn!("the client's answer was withheld: its id: {blocked}");
                return Step::Drop;
            }
            let id = message.get("id").cloned().unwrap_or_default();
            message = error(id, -32001, &format!("the answer was withheld: {blocked}"));
        }
        Step::Forward(message)
    }

    /// Decides a line the client sent.
    pub fn from_client(&self, line: &str) -> Routed {
        let mut routed = Routed::default();
        let parsed: Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(err) => {
                let message = format!("parse error: {err}");
                routed.to_client = Some(error(Value::Null, -32700, &message).to_string());
                return routed;
            }
        };
        if too_many_values(&parsed) {
            let id = parsed.get("id").cloned().unwrap_or(Value::Null);
            let why = format!("invalid request: a message of over {MAX_VALUES} values; refused");
            routed.to_client = Some(error(id, -32600, &why).to_string());
            return routed;
        }
        match parsed {
            Value::Array(batch) if !batch.is_empty() => {
                let steps = batch.into_iter().map(|m| self.client_one(m, true));
                (routed.to_server, routed.to_client) = split_batch(steps);
            }
            // What is forwarded is the value decided, encoded again, never the bytes as they
            // came: a server could split those otherwise (a bare `\r` is JSON whitespace, and
            // a line end to some readers).
            Value::Object(_) => match self.client_one(parsed, false) {
                Step::Forward(message) => routed.to_server = Some(message.to_string()),
                Step::Reply(reply) => routed.to_client = Some(reply.to_string()),
                Step::Ask(asking) => routed.asking.push(*asking),
                Step::Drop => {}
            },
            _ => {
                let reply = error(
                    Value::Null,
                    -32600,
                    "invalid request: not a JSON-RPC message",
                );
                routed.to_client = Some(reply.to_string());
            }
        }
        routed
    }

    /// A listing's result with what the policy does not show left out.
    fn filter_listing(&self, action: &str, result: &mut Value) {
        let (field, name) = match action {
            "list" => ("tools", "tool"),
            "list_resources" => ("resources", "uri"),
            _ => ("prompts", "prompt"),
        };
        // The listing as any client may read it: its own keys only, none a case twin of
        // them (a case-blind client would read `Tools` as `tools`), its items likewise.
        let keys = [field, "nextCursor", "_meta"];
        if case_twin(result, &keys).is_some() || !result.get(field).is_some_and(Value::is_array) {
            tracing::warn!("the server's {field} listing is malformed; shown empty");
            *result = json!({ field: [] });
        }
        if let Some(object) = result.as_object_mut() {
            object.retain(|key, _| keys.contains(&key.as_str()));
        }
        let Some(items) = result.get_mut(field).and_then(Value::as_array_mut) else {
            return;
        };
        let item_keys: &[&str] = match action {
            "list" => &[
                "name",
                "title",
                "description",
                "inputSchema",
                "outputSchema",
                "annotations",
                "icons",
                "_meta",
            ],
            "list_resources" => &[
                "uri",
                "name",
                "title",
                "description",
                "mimeType",
                "size",
                "annotations",
                "icons",
                "_meta",
            ],
            _ => &[
                "name",
                "title",
                "description",
                "arguments",
                "icons",
                "_meta",
            ],
        };
        items.retain_mut(|item| {
            if !item.is_object() || case_twin(item, item_keys).is_some() {
                tracing::warn!("the server listed an item with a key that differs from an MCP key only in case; hidden");
                return false;
            }
            if let Some(object) = item.as_object_mut() {
                object.retain(|key, _| item_keys.contains(&key.as_str()));
            }
            true
        });
        let definitions = if action == "list" {
            self.definitions_listed(items)
        } else {
            Vec::new()
        };
        let mut definitions = definitions.into_iter();
        items.retain(|item| {
            let mut resource = Map::new();
            match action {
                "list" => {
                    let tool = item.get("name").cloned().unwrap_or(Value::Null);
                    let definition = definitions.next().unwrap_or(Value::Null);
                    resource.insert("definition".into(), definition);
                    resource.insert(
                        "annotations".into(),
                        item.get("annotations").cloned().unwrap_or(Value::Null),
                    );
                    resource.insert(name.into(), tool);
                }
                "list_resources" => {
                    let uri = item.get("uri").and_then(Value::as_str).unwrap_or_default();
                    resource.insert(name.into(), json!(normalize_uri(uri)));
                    resource.insert("uri_as_sent".into(), json!(uri));
                }
                _ => {
                    resource.insert(
                        name.into(),
                        item.get("name").cloned().unwrap_or(Value::Null),
                    );
                }
            }
            self.shows(action, resource)
        });
    }

    /// A result on its way to the client: redacted as its request's decision says, and
    /// what its record will say.
    fn finish(&self, call: Call, message: &mut Value) -> Done {
        let Call {
            mut input,
            decision,
            redaction,
            started,
            tool,
        } = call;
        let id = message.get("id").cloned().unwrap_or_default();
        let mut summary = json!({"ms": started.elapsed().as_secs_f64() * 1000.0});
        let outcome = if let Some(result) = message.get_mut("result") {
            summary["bytes"] = json!(result.to_string().len());
            summary["is_error"] = json!(result.get("isError") == Some(&json!(true)));
            match redaction.as_ref().map(|r| redact_value(result, r)) {
                Some(Ok(found)) => {
                    summary["redacted"] = json!(found);
                    Outcome::Performed
                }
                Some(Err(blocked)) => {
                    let why = format!("the result was withheld: {blocked}");
                    summary["withheld"] = json!(why);
                    *message = if tool {
                        json!({"jsonrpc": "2.0", "id": id,
                            "result": {"content": [{"type": "text", "text": why}], "isError": true}})
                    } else {
                        error(id, -32001, &why)
                    };
                    Outcome::Refused
                }
                None => Outcome::Performed,
            }
        } else {
            if let (Some(redaction), Some(error)) = (&redaction, message.get_mut("error")) {
                if redact_value(error, redaction).is_err() {
                    *error = json!({"code": -32001, "message": "the error was withheld: it holds what the policy does not let leave"});
                }
            }
            summary["error"] = message.get("error").cloned().unwrap_or(Value::Null);
            recorded(&mut summary["error"]);
            Outcome::Failed
        };
        input["result"] = summary;
        Done {
            input,
            decision,
            outcome,
        }
    }

    /// A response of the server's: passed on only when the client waits for it, filtered
    /// (a listing) or redacted (a decided request) as its request says.
    fn server_response(&self, mut message: Value, done: &mut Vec<Done>) -> Step {
        let Some(key) = message.get("id").filter(|id| !id.is_null()).map(id_key) else {
            // An error about a message the server could not read: the client sent it.
            return if message.get("error").is_some() {
                self.scrubbed(message)
            } else {
                tracing::warn!(
                    "the server sent a message that is neither request nor response; dropped"
                );
                Step::Drop
            };
        };
        let awaited = self.from_client.lock().ok().and_then(|mut awaited| {
            match awaited.get(&key).map(|p| &p.state) {
                // A call still asked about has not reached the server: this is no answer.
                Some(Awaited::Asking) | None => None,
                Some(_) => awaited.remove(&key),
            }
        });
        let Some(Pending { id, state }) = awaited else {
            tracing::warn!(
                "the server answered a request the client did not send (id {key}); dropped"
            );
            return Step::Drop;
        };
        // The client matches the answer by the id it sent.
        message["id"] = id;
        match state {
            Awaited::Cancelled(_) => Step::Drop,
            Awaited::List(action) => {
                if let Some(result) = message.get_mut("result") {
                    self.filter_listing(action, result);
                }
                self.scrubbed(message)
            }
            Awaited::Decided(call) => {
                done.push(self.finish(*call, &mut message));
                self.scrubbed(message)
            }
            Awaited::Plain | Awaited::Asking => self.scrubbed(message),
        }
    }

    /// `message` on its way to the client, redacted as the relay says; a response whose
    /// content may not leave is replaced by an error, a notification dropped.
    fn scrubbed(&self, mut message: Value) -> Step {
        match self.scrub(&mut message) {
            Ok(()) => Step::Forward(message),
            Err(blocked) if self.id_withheld(&message) => {
                tracing::warn!("a message of the server's was withheld: its id: {blocked}");
                Step::Drop
            }
            Err(blocked) => match message.get("id").filter(|id| !id.is_null()).cloned() {
                Some(id) if message.get("method").is_none() => Step::Forward(error(
                    id,
                    -32001,
                    &format!("the answer was withheld: {blocked}"),
                )),
                _ => {
                    tracing::warn!("a message of the server's was withheld: {blocked}");
                    Step::Drop
                }
            },
        }
    }

    /// The answer to a request the server's too-large message answered, if the client
    /// waits for it: an error in its place.
    pub fn oversized(&self, id: &Value) -> Option<String> {
        let key = id_key(id);
        let mut awaited = self.from_client.lock().ok()?;
        if matches!(
            awaited.get(&key).map(|p| &p.state),
            None | Some(Awaited::Asking)
        ) {
            return None;
        }
        let pending = awaited.remove(&key)?;
        if matches!(pending.state, Awaited::Cancelled(_)) {
            return None;
        }
        let why = format!(
            "the server's response was too large (over {MAX_MESSAGE} bytes or {MAX_VALUES} values)"
        );
        Some(error(pending.id, -32603, &why).to_string())
    }

    /// A request (or notification) the server sends the client: decided under
    /// `server_request`; a denied request is answered to the server.
    fn server_request(&self, mut message: Value, method: &str) -> Step {
        let id = message.get("id").cloned();
        if id.is_none() && SERVER_NOTIFICATIONS.contains(&method) {
            return self.scrubbed(message);
        }
        let mut resource = Map::new();
        resource.insert("method".into(), json!(method));
        resource.insert(
            "params".into(),
            message.get("params").cloned().unwrap_or(Value::Null),
        );
        let key = id.as_ref().map(id_key).unwrap_or_default();
        let refuse = |why: &str| match &id {
            Some(id) => Step::Reply(error(id.clone(), -32001, why)),
            None => Step::Drop,
        };
        if id.is_some() {
            let busy = self
                .from_server
                .lock()
                .map(|w| w.contains_key(&key) || w.len() >= MAX_IN_FLIGHT)
                .unwrap_or(true);
            if busy {
                return refuse("a request with this id is still in flight, or too many are");
            }
        }
        let mut unrecorded = match self.decide("server_request", resource) {
            Ok(unrecorded) => unrecorded,
            Err(decision) => return refuse(&decision.reasons.join("; ")),
        };
        // Asking the person is for what the client asks; a server's request is not.
        let asks = asks_the_person(unrecorded.decision());
        if asks {
            unrecorded = unrecorded
                .deny("the policy asks the person about a server's request; cordon asks only about the client's");
        }
        let label = format!("{}/server:{method}", self.server.name);
        if unrecorded.decision().allow {
            if let Err(why) = self
                .limits
                .take(&label, &unrecorded.decision().obligations, 0)
            {
                unrecorded = unrecorded.deny(&why);
            }
        }
        let params = unrecorded
            .input()
            .and_then(|input| input["resource"].get("params"))
            .cloned();
        let redaction = redaction_of(unrecorded.decision());
        if let (Some(params), Some(object)) = (params, message.as_object_mut()) {
            if object.contains_key("params") {
                object.insert("params".into(), params);
            }
        }
        if unrecorded.decision().allow {
            if let Err(blocked) = self.scrub(&mut message) {
                unrecorded = unrecorded.deny(&format!("the request: {blocked}; refused"));
            }
        }
        let mut unrecorded = self.scrub_refused(unrecorded);
        let decision = if method == "ping" && unrecorded.decision().allow {
            unrecorded.without_record()
        } else {
            if let Some(value) = unrecorded
                .input_mut()
                .and_then(|input| input.pointer_mut("/resource/params"))
            {
                recorded(value);
            }
            self.supervisor
                .pipeline()
                .record_decided(&Capability::tool(), unrecorded)
                .decision
        };
        if !decision.allow {
            let why = format!("denied by policy: {}", decision.reasons.join("; "));
            tracing::warn!("the server's `{method}` request: {why}");
            return refuse(&why);
        }
        if let Some(id) = id {
            if let Ok(mut waiting) = self.from_server.lock() {
                waiting.insert(key, (id, redaction));
            }
        }
        Step::Forward(message)
    }

    /// Decides a line the server sent: what goes to the client, and what answers the
    /// server's own refused requests.
    pub fn from_server(&self, line: &str) -> Option<Routed> {
        let parsed: Value = serde_json::from_str(line).ok()?;
        let mut routed = Routed::default();
        if too_many_values(&parsed) {
            tracing::warn!("the server sent a message of over {MAX_VALUES} values; dropped");
            routed.to_client = parsed.get("id").and_then(|id| self.oversized(id));
            return Some(routed);
        }
        let one = |message: Value, done: &mut Vec<Done>| -> Step {
            let message = match well_formed(message) {
                Ok(message) => message,
                Err(why) => {
                    tracing::warn!("the server sent a message that cannot pass ({why}); dropped");
                    return Step::Drop;
                }
            };
            if self.relay.is_err() {
                return Step::Drop;
            }
            match message.get("method").map(|m| m.as_str().map(str::to_owned)) {
                Some(Some(method)) => self.server_request(message, &method),
                Some(None) => Step::Drop,
                None => self.server_response(message, done),
            }
        };
        match parsed {
            Value::Array(batch) => {
                let done = &mut routed.done;
                let steps: Vec<Step> = batch.into_iter().map(|m| one(m, done)).collect();
                (routed.to_client, routed.to_server) = split_batch(steps.into_iter());
            }
            message @ Value::Object(_) => match one(message, &mut routed.done) {
                Step::Forward(message) => routed.to_client = Some(message.to_string()),
                Step::Reply(reply) => routed.to_server = Some(reply.to_string()),
                Step::Drop | Step::Ask(_) => {}
            },
            _ => return None,
        }
        Some(routed)
    }

    /// Records a result delivered: queued for the audit log's next commit (the call's
    /// decision was durable before the server saw it; what came of it need not hold up the
    /// next call).
    pub fn record(&self, done: Done) {
        if let Err(err) = self.supervisor.pipeline().record_done(
            &Capability::tool(),
            done.input,
            done.decision,
            done.outcome,
        ) {
            tracing::error!("cannot record a tool's result: {err}");
        }
    }

    /// Answers, with `why`, every request of the client's still in flight (the server
    /// ended): the client is not left waiting.
    pub fn abandon(&self, why: &str) -> Vec<String> {
        let Ok(mut awaited) = self.from_client.lock() else {
            return Vec::new();
        };
        awaited
            .drain()
            .filter(|(_, pending)| !matches!(pending.state, Awaited::Cancelled(_)))
            .map(|(_, pending)| error(pending.id, -32603, why).to_string())
            .collect()
    }
}

/// The `limit` obligations' counts: calls in the last minute and bytes sent, by what is
/// called (`SERVER/TOOL`...).
#[derive(Debug, Default)]
struct Limits(Mutex<HashMap<String, Usage>>);

#[derive(Debug, Default)]
struct Usage {
    calls: VecDeque<Instant>,
    bytes: u64,
}

impl Limits {
    const MINUTE: Duration = Duration::from_secs(60);
    const KEYS: usize = 4096;

    /// Counts one use of `label` sending `bytes`, or says which limit it would pass.
    fn take(&self, label: &str, obligations: &[Obligation], bytes: u64) -> Result<(), String> {
        let (mut per_minute, mut max_bytes): (Option<u64>, Option<u64>) = (None, None);
        for obligation in obligations {
            if let Obligation::Limit {
                per_minute: p,
                bytes: b,
            } = obligation
            {
                per_minute = per_minute.min(*p).or(*p).or(per_minute);
                max_bytes = max_bytes.min(*b).or(*b).or(max_bytes);
            }
        }
        if per_minute.is_none() && max_bytes.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let mut usage = self
            .0
            .lock()
            .map_err(|_| "the limits' counts were lost".to_owned())?;
        if usage.len() >= Self::KEYS && !usage.contains_key(label) {
            usage.retain(|_, u| {
                u.calls
                    .back()
                    .is_some_and(|at| now.duration_since(*at) < Self::MINUTE)
            });
        }
        let used = usage.entry(label.to_owned()).or_default();
        while used
            .calls
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Self::MINUTE)
        {
            used.calls.pop_front();
        }
        if let Some(limit) = per_minute {
            if used.calls.len() as u64 >= limit {
                return Err(format!(
                    "`{label}` was used {} times in the last minute, and the policy allows {limit} a minute",
                    used.calls.len()
                ));
            }
        }
        if let Some(limit) = max_bytes {
            if used.bytes.saturating_add(bytes) > limit {
                return Err(format!(
                    "`{label}` was sent {} bytes in this session, and the policy allows {limit}",
                    used.bytes
                ));
            }
        }
        if per_minute.is_some() {
            used.calls.push_back(now);
        }
        used.bytes = used.bytes.saturating_add(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_calls_a_minute_and_bytes() {
        let limits = Limits::default();
        let per_minute = [Obligation::Limit {
            per_minute: Some(2),
            bytes: None,
        }];
        assert!(limits.take("s/t", &per_minute, 10).is_ok());
        assert!(limits.take("s/t", &per_minute, 10).is_ok());
        let third = limits.take("s/t", &per_minute, 10).unwrap_err();
        assert!(third.contains("2 a minute"), "{third}");
        // Counted by what is called.
        assert!(limits.take("s/other", &per_minute, 10).is_ok());
        // The tightest of two limits holds.
        let bytes = [
            Obligation::Limit {
                per_minute: None,
                bytes: Some(100),
            },
            Obligation::Limit {
                per_minute: None,
                bytes: Some(50),
            },
        ];
        assert!(limits.take("s/b", &bytes, 40).is_ok());
        assert!(limits.take("s/b", &bytes, 20).is_err());
        assert!(limits.take("s/b", &bytes, 10).is_ok());
        // No limit: nothing counted.
        assert!(limits.take("s/t", &[], 1 << 40).is_ok());
    }

    #[test]
    fn redaction_reaches_every_string_and_key() {
        let redaction = Redaction::from_obligations(&[Obligation::Redact {
            patterns: vec!["cloud_key".into()],
            block_if: vec![],
        }])
        .unwrap()
        .unwrap();
        let key = "AKIAQYLPMN5HHHFPZAM2";
        let mut value = json!({"content": [{"type": "text", "text": format!("the key is {key}")}],
            key: 1, "n": 3});
        let found = redact_value(&mut value, &redaction).unwrap();
        assert_eq!(found, 2, "{value}");
        assert!(!value.to_string().contains(key), "{value}");
        assert!(
            value.to_string().contains("[REDACTED:cloud_key]"),
            "{value}"
        );
        let blocking = Redaction::from_obligations(&[Obligation::Redact {
            patterns: vec![],
            block_if: vec!["cloud_key".into()],
        }])
        .unwrap()
        .unwrap();
        let mut value = json!([format!("x {key}")]);
        assert!(redact_value(&mut value, &blocking).is_err());
    }

    #[test]
    fn a_uri_is_decided_in_the_form_its_opener_reads() {
        for uri in [
            "file:///secret/key",
            "FILE:///notes/../secret/key",
            "file:///secret%2Fkey",
            "file://localhost/secret//key",
            "file:/secret/key",
            "file://127.0.0.1/secret/key",
            "file://LOCALHOST./secret/key",
            "file:///x\\..\\secret/key",
            " file:///secret/key\n",
            "file:///se\tcret/key",
        ] {
            assert_eq!(normalize_uri(uri), "file:///secret/key", "{uri:?}");
        }
        assert_eq!(
            normalize_uri("HTTPS://Example.ORG/a/./b/../c?x=1#f"),
            "https://example.org/a/c?x=1#f"
        );
        assert_eq!(normalize_uri("urn:x:y"), "urn:x:y");
    }

    #[test]
    fn a_message_of_too_many_values_is_told_apart() {
        let wide: serde_json::Map<String, Value> =
            (0..MAX_VALUES).map(|i| (i.to_string(), json!(i))).collect();
        assert!(too_many_values(&Value::Object(wide)));
        assert!(!too_many_values(&json!({"a": [1, 2, {"b": "c"}]})));
    }

    #[test]
    fn ids_match_as_clients_match_them() {
        assert_eq!(id_key(&json!(1)), id_key(&json!("1")));
        assert_eq!(id_key(&json!(1)), id_key(&json!(1.0)));
        assert_ne!(id_key(&json!("a")), id_key(&json!("b")));
        assert_eq!(leading_id(br#"{"jsonrpc":"2.0","id": 42, "x""#), json!(42));
        assert_eq!(leading_id(br#"{"id":"abc","#), json!("abc"));
    }
}
