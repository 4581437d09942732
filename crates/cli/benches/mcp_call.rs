//! Latency a tool call gains through `cordon mcp`: the same client sends the same
//! `tools/call` to the same server, straight over its stdio and through the gateway (server
//! in the sandbox, the default policy deciding with its redaction and rate limit carried
//! out, each call's decision durably recorded before the server sees it, its result's record
//! sharing the next commit), in one run.
//!
//! The server is this benchmark's own executable run as a minimal MCP server (it answers
//! `initialize`, `tools/list` and `tools/call` at once), so that what is measured is the
//! transport and the gateway, not a server's work. The calls of the two variants alternate,
//! so that the machine's noise falls on both alike.
//!
//! The same calls go through `cordon mcp --listen` too (Streamable HTTP, one keep-alive
//! connection), against the same direct stdio call: what a client pays for reaching the
//! server through cordon over HTTP rather than starting it itself.
//!
//! ```sh
//! cargo bench -p cordon-cli --bench mcp_call            # 2000 calls each
//! CORDON_BENCH_HTTP=0 cargo bench -p cordon-cli --bench mcp_call   # stdio paths only
//! CORDON_BENCH_CALLS=500 cargo bench -p cordon-cli --bench mcp_call
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark fails by panicking"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Set in the environment of this executable when it is to be the server.
const SERVER: &str = "CORDON_BENCH_MCP_SERVER";

/// The minimal server: one line in, one line out.
fn serve() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = message.get("id").cloned() else {
            continue;
        };
        let result = match message["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench", "version": "1"}})
            }
            Some("tools/list") => {
                json!({"tools": [{"name": "echo", "description": "Say the text back.",
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]})
            }
            Some("tools/call") => json!({"content": [{"type": "text",
                "text": message["params"]["arguments"]["text"]}], "isError": false}),
            _ => json!({}),
        };
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}

/// The call every path is timed on, sent by `request`: its answer and how long it took.
fn timed_call(request: impl FnOnce(&str, Value) -> Value) -> (Value, Duration) {
    let started = Instant::now();
    let answer = request(
        "tools/call",
        json!({"name": "echo",
        "arguments": {"text": "the quarterly numbers are in the usual place"}}),
    );
    (answer, started.elapsed())
}

struct Client {
    name: &'static str,
    what: &'static str,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next: u64,
    times: Vec<Duration>,
}

impl Client {
    fn start(name: &'static str, what: &'static str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut client = Self {
            name,
            what,
            child,
            input,
            output,
            next: 0,
            times: Vec::new(),
        };
        client.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        );
        writeln!(
            client.input,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .unwrap();
        client.request("tools/list", json!({}));
        client
    }

    /// Sends one request and waits for its answer.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let message =
            json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        writeln!(self.input, "{message}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.output.read_line(&mut line).unwrap() > 0,
                "{}: the server ended",
                self.name
            );
            let answer: Value = serde_json::from_str(&line).unwrap();
            if answer["id"] == json!(self.next) {
                return answer;
            }
        }
    }

    fn call(&mut self) {
        let (answer, took) = timed_call(|method, params| self.request(method, params));
        self.times.push(took);
        assert_eq!(
            answer["result"]["isError"], false,
            "{}: {answer}",
            self.name
        );
    }

    fn end(mut self) -> Self {
        drop(std::mem::replace(&mut self.input, {
            // A closed pipe in its place: the server sees the end of its input.
            let (_, write) = std::io::pipe().unwrap();
            ChildStdin::from(std::os::fd::OwnedFd::from(write))
        }));
        let _ = self.child.wait();
        self
    }
}

/// A client of `cordon mcp --listen`: one keep-alive connection, one session.
struct HttpClient {
    child: Child,
    agent: ureq::Agent,
    url: String,
    token: String,
    session: String,
    next: u64,
    times: Vec<Duration>,
}

impl HttpClient {
    fn start(mut command: Command) -> Self {
        let token = "bench-token-0123456789abcdef".to_owned();
        let mut child = command
            .env("CORDON_MCP_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut said)
            .unwrap();
        let address = said
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("no address in {said:?}"))
            .to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut client = Self {
            child,
            agent,
            url: format!("http://{address}"),
            token,
            session: String::new(),
            next: 0,
            times: Vec::new(),
        };
        client.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        );
        client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        client.request("tools/list", json!({}));
        client
    }

    fn send(&mut self, message: &Value) -> Value {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json");
        if !self.session.is_empty() {
            request = request.header("Mcp-Session-Id", &self.session);
        }
        let mut response = request.send(message.to_string()).unwrap();
        if let Some(id) = response.headers().get("mcp-session-id") {
            self.session = id.to_str().unwrap().to_owned();
        }
        let body = response.body_mut().read_to_string().unwrap();
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let message =
            json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        self.send(&message)
    }

    fn call(&mut self) {
        let (answer, took) = timed_call(|method, params| self.request(method, params));
        self.times.push(took);
        assert_eq!(answer["result"]["isError"], false, "over HTTP: {answer}");
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn main() {
    if std::env::var_os(SERVER).is_some() {
        serve();
        return;
    }
    let calls: usize = std::env::var("CORDON_BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let cordon = PathBuf::from(env!("CARGO_BIN_EXE_cordon"));
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path();
    let workspace = home.join("work");
    fs_err::create_dir_all(&workspace).unwrap();
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(home.join("run"))
        .unwrap();
    // The server's executable, where the sandbox shows it: in the workspace.
    let server = workspace.join("bench-server");
    fs_err::copy(std::env::current_exe().unwrap(), &server).unwrap();
    let env = |command: &mut Command, home: &Path| {
        command
            .current_dir(home.join("work"))
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env(SERVER, "1");
    };
    let mut direct = Command::new(&server);
    env(&mut direct, home);
    // The default policy, its rate limit raised past the calls made (still carried out).
    let policy = home.join("policy");
    fs_err::create_dir_all(&policy).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default");
    for entry in fs_err::read_dir(&shipped).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), policy.join(entry.file_name())).unwrap();
    }
    let mut data: Value =
        serde_json::from_str(&fs_err::read_to_string(policy.join("data.json")).unwrap()).unwrap();
    data["cordon"]["settings"]["tool"]["per_minute"] = json!(1_000_000);
    fs_err::write(policy.join("data.json"), data.to_string()).unwrap();
    let mut gated = Command::new(&cordon);
    gated
        .args(["mcp", "--keep-env", SERVER, "--policy"])
        .arg(&policy)
        .arg("--")
        .arg(&server);
    env(&mut gated, home);
    // The same, with no audit log: what the durable record costs.
    let unaudited_config = home.join("no-audit.toml");
    fs_err::write(&unaudited_config, "[audit]\nenabled = false\n").unwrap();
    let mut unaudited = Command::new(&cordon);
    unaudited
        .arg("--config")
        .arg(&unaudited_config)
        .args(["mcp", "--keep-env", SERVER, "--policy"])
        .arg(&policy)
        .arg("--")
        .arg(&server);
    env(&mut unaudited, home);
    let mut listening = Command::new(&cordon);
    listening
        .args([
            "mcp",
            "--keep-env",
            SERVER,
            "--listen",
            "127.0.0.1:0",
            "--policy",
        ])
        .arg(&policy)
        .arg("--")
        .arg(&server);
    env(&mut listening, home);
    // CORDON_BENCH_HTTP=0 leaves the HTTP path out (the stdio paths alone, as before it).
    let mut http = (std::env::var("CORDON_BENCH_HTTP").as_deref() != Ok("0"))
        .then(|| HttpClient::start(listening));
    let mut clients = [
        Client::start("direct", "client → server over its stdio", direct),
        Client::start(
            "cordon mcp",
            "client → cordon → sandboxed server: the default policy (redaction both ways, rate limit), each call's decision a durable record before the server sees it, its result's record in the next commit",
            gated,
        ),
        Client::start(
            "cordon mcp, no audit log",
            "the same without the audit log (`[audit] enabled = false`): what the durable record costs",
            unaudited,
        ),
    ];
    eprintln!("{calls} calls through each, alternating...");
    for _ in 0..calls {
        for client in &mut clients {
            client.call();
        }
        if let Some(http) = &mut http {
            http.call();
        }
    }
    let clients = clients.map(Client::end);
    println!("| variant | what runs | calls | p50 (µs) | p90 (µs) | p99 (µs) | mean (µs) |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    let mut p = Vec::new();
    for client in &clients {
        let mut times = client.times.clone();
        times.sort();
        let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len() as f64;
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            client.name,
            client.what,
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            percentile(&times, 0.99),
            mean,
        );
        p.push((percentile(&times, 0.5), percentile(&times, 0.99)));
    }
    let over_http = http.map(|http| {
    let mut times = http.times.clone();
    times.sort();
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len() as f64;
    println!(
        "| cordon mcp --listen | the client over Streamable HTTP (one keep-alive connection, JSON answers) → cordon → the same sandboxed stdio server, as `cordon mcp` | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        mean,
    );
    (percentile(&times, 0.5), percentile(&times, 0.99))
    });
    println!(
        "\nadded by the gateway: p50 {:.1} µs, p99 {:.1} µs ({:.1} and {:.1} without the audit log)",
        p[1].0 - p[0].0,
        p[1].1 - p[0].1,
        p[2].0 - p[0].0,
        p[2].1 - p[0].1
    );
    if let Some(over_http) = over_http {
        println!(
            "added over HTTP (against the direct stdio call): p50 {:.1} µs, p99 {:.1} µs",
            over_http.0 - p[0].0,
            over_http.1 - p[0].1
        );
    }
}
