//! Loopback throughput of one large download, direct, through `cordon proxy` and through
//! tinyproxy, and the latency each proxy adds to a small request on a new connection, in
//! one run. The same client (curl) fetches from the same local server every time.
//!
//! ```sh
//! ./scripts/bench-proxy.sh     # installs tinyproxy if missing, then this bench
//! CORDON_BENCH_MB=200 CORDON_BENCH_ROUNDS=5 cargo bench -p cordon-cli --bench proxy_throughput
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark fails by panicking"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Serves `size` bytes at `/big` and 2 bytes anywhere else, one thread per connection.
fn server(size: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(vec![b'x'; size]);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = std::sync::Arc::clone(&body);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                let mut line = String::new();
                let mut first = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if first.is_empty() {
                        first = line.clone();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let payload: &[u8] = if first.contains("/big") { &body } else { b"ok" };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(payload);
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a variant reaches the server.
#[derive(Clone, Copy)]
enum Path {
    Direct,
    /// Absolute-form requests to the proxy on this port.
    Forward(u16),
    /// A `CONNECT` tunnel through the proxy on this port (how HTTPS goes).
    Tunnel(u16),
}

/// `curl` along `path`: seconds for the whole transfer.
fn fetch(path: Path, url: &str) -> f64 {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o", "/dev/null", "-w", "%{time_total}"]);
    match path {
        Path::Forward(port) => curl.args(["-x", &format!("http://127.0.0.1:{port}")]),
        Path::Tunnel(port) => curl.args(["-p", "-x", &format!("http://127.0.0.1:{port}")]),
        Path::Direct => curl.args(["--noproxy", "*"]),
    };
    let out = curl.arg(url).output().unwrap();
    assert!(out.status.success(), "curl {url} failed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let mb = env_number("CORDON_BENCH_MB", 200);
    let rounds = env_number("CORDON_BENCH_ROUNDS", 5) as usize;
    let small_rounds = env_number("CORDON_BENCH_SMALL", 200) as usize;
    let size = (mb as usize) << 20;
    let port = server(size);
    let scratch = tempfile::tempdir().unwrap();

    let cordon_port = free_port();
    let cordon = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["proxy", "--listen", &format!("127.0.0.1:{cordon_port}")])
        .args(["--allow-net", &format!("127.0.0.1:{port}")])
        .env("XDG_DATA_HOME", scratch.path().join("data"))
        .env("XDG_CONFIG_HOME", scratch.path().join("config"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _cordon = Killed(cordon);
    wait_for_port(cordon_port);

    let tiny_port = free_port();
    let conf = scratch.path().join("tinyproxy.conf");
    fs_err::write(
        &conf,
        format!("Port {tiny_port}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\nMaxClients 200\nLogLevel Critical\n"),
    )
    .unwrap();
    let tinyproxy = Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let _tiny = match tinyproxy {
        Ok(child) => {
            wait_for_port(tiny_port);
            Some(Killed(child))
        }
        Err(err) => {
            eprintln!("tinyproxy is not available ({err}); run scripts/bench-proxy.sh");
            None
        }
    };

    let big = format!("http://127.0.0.1:{port}/big");
    let small = format!("http://127.0.0.1:{port}/small");
    let mut variants: Vec<(&str, Path)> = vec![
        ("direct", Path::Direct),
        ("cordon proxy, HTTP request", Path::Forward(cordon_port)),
        (
            "cordon proxy, CONNECT tunnel (spliced)",
            Path::Tunnel(cordon_port),
        ),
    ];
    if _tiny.is_some() {
        variants.push(("tinyproxy 1.11, HTTP request", Path::Forward(tiny_port)));
        variants.push(("tinyproxy 1.11, CONNECT tunnel", Path::Tunnel(tiny_port)));
    }
    // Warm-up.
    for (_, proxy) in &variants {
        fetch(*proxy, &small);
    }
    eprintln!("{rounds} downloads of {mb} MiB and {small_rounds} small requests per variant...");
    let mut big_times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut small_times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, (_, proxy)) in variants.iter().enumerate() {
            big_times[i].push(fetch(*proxy, &big));
        }
    }
    for _ in 0..small_rounds {
        for (i, (_, proxy)) in variants.iter().enumerate() {
            small_times[i].push(fetch(*proxy, &small));
        }
    }
    let direct_rate = mb as f64 / median(big_times[0].clone());
    let direct_small = median(small_times[0].clone());
    println!("| path | download MB/s (median of {rounds}) | % of direct | small request p50 (ms) | added per connection (ms) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (i, (name, _)) in variants.iter().enumerate() {
        let rate = mb as f64 / median(big_times[i].clone());
        let small_p50 = median(small_times[i].clone());
        println!(
            "| {name} | {:.0} | {:.0}% | {:.2} | {:.2} |",
            rate * 1.048_576,
            100.0 * rate / direct_rate,
            small_p50 * 1000.0,
            (small_p50 - direct_small) * 1000.0
        );
    }
    let _ = std::io::stdout().flush();
}
