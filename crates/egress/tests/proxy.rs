//! The proxy against real local servers on 127.0.0.1, with a gate that allows one port:
//! what passes, what is refused, and that bad input never takes the proxy down.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon_egress::{Gate, Proxy, ProxyOptions};
use cordon_types::{Decision, Obligation};
use serde_json::Value;

/// Allows connections to one port; records what it was asked and what was cut.
#[derive(Default)]
struct TestGate {
    allowed_port: u16,
    budget: Option<u64>,
    per_minute: Option<u64>,
    asked: Mutex<Vec<Value>>,
    cuts: Mutex<Vec<String>>,
}

impl Gate for TestGate {
    fn decide(&self, action: &str, resource: Value, _context: Value) -> Decision {
        let mut resource = resource;
        resource["action"] = action.into();
        self.asked.lock().unwrap().push(resource.clone());
        if resource["port"] == self.allowed_port {
            Decision {
                allow: true,
                reasons: vec!["allowed port".into()],
                obligations: vec![Obligation::Limit {
                    per_minute: self.per_minute,
                    bytes: self.budget,
                }],
                grants: None,
            }
        } else {
            Decision::deny(format!("port {} is not allowed", resource["port"]))
        }
    }

    fn cut(&self, _: &str, _: Value, _: Value, _: &Decision, reason: &str) {
        self.cuts.lock().unwrap().push(reason.to_owned());
    }
}

/// A local server that answers every request with `ok` (keep-alive) and keeps what it
/// received.
struct Server {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 65536];
                    let mut pending = Vec::new();
                    loop {
                        let n = match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        pending.extend_from_slice(&buf[..n]);
                        // Answer each complete head (bodies are not awaited).
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let _ =
                                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        }
                    }
                });
            }
        });
        Self { addr, received }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

struct Harness {
    proxy: SocketAddr,
    gate: Arc<TestGate>,
    _runtime: tokio::runtime::Runtime,
}

fn harness(gate: TestGate, options: ProxyOptions) -> Harness {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gate = Arc::new(gate);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let proxy = listener.local_addr().unwrap();
    let dyn_gate: Arc<dyn Gate> = gate.clone();
    runtime.spawn(Proxy::new(dyn_gate, options).serve(listener));
    Harness {
        proxy,
        gate,
        _runtime: runtime,
    }
}

fn allowing(server: &Server) -> TestGate {
    TestGate {
        allowed_port: server.addr.port(),
        ..TestGate::default()
    }
}

fn connect(proxy: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends `data`, then reads until the proxy closes (or `until` appears).
fn exchange(proxy: SocketAddr, data: &[u8], until: Option<&str>) -> String {
    let mut stream = connect(proxy);
    stream.write_all(data).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if until.is_some_and(|u| String::from_utf8_lossy(&out).contains(u)) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn wait_until(what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn keep_alive_requests_are_each_decided_and_a_smuggled_second_target_is_refused() {
    let allowed = Server::start();
    let exfil = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    let e = exfil.addr.port();
    let request = format!(
        "GET http://127.0.0.1:{a}/one HTTP/1.1\r\nHost: 127.0.0.1:{a}\r\n\r\n\
         GET http://127.0.0.1:{a}/two HTTP/1.1\r\nHost: 127.0.0.1:{a}\r\n\r\n\
         GET http://127.0.0.1:{e}/stolen HTTP/1.1\r\nHost: 127.0.0.1:{e}\r\n\r\n"
    );
    let answer = exchange(h.proxy, request.as_bytes(), None);
    assert_eq!(answer.matches("200 OK").count(), 2, "{answer}");
    assert!(answer.contains("403 Forbidden"), "{answer}");
    assert!(answer.contains(&format!("port {e} is not allowed")));
    assert!(allowed.received().contains("GET /one HTTP/1.1"));
    assert!(allowed.received().contains("GET /two HTTP/1.1"));
    assert_eq!(exfil.received(), "");
    assert_eq!(h.gate.asked.lock().unwrap().len(), 3);
}

#[test]
fn ambiguous_requests_are_refused_before_any_decision() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    for (request, expected) in [
        (format!("POST http://127.0.0.1:{a}/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "400"),
        (format!("POST http://127.0.0.1:{a}/ HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"), "400"),
        (format!("GET http://127.0.0.1:{a}/ HTTP/1.1\r\nX-A: 1\r\n folded: 2\r\n\r\n"), "400"),
        (format!("GET http://127.0.0.1:{a}/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"), "400"),
        (format!("GET http://user@127.0.0.1:{a}/ HTTP/1.1\r\n\r\n"), "400"),
        ("GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "400"),
    ] {
        let answer = exchange(h.proxy, request.as_bytes(), None);
        assert!(answer.starts_with(&format!("HTTP/1.1 {expected}")), "{request:?} -> {answer}");
    }
    assert!(h.gate.asked.lock().unwrap().is_empty());
    assert_eq!(allowed.received(), "");
}

#[test]
fn ip_literals_are_normalised_before_the_decision() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    for spelling in [
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
    ] {
        let answer = exchange(
            h.proxy,
            format!("GET http://{spelling}:{a}/ HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
            None,
        );
        assert!(answer.contains("200 OK"), "{spelling}: {answer}");
    }
    for asked in h.gate.asked.lock().unwrap().iter() {
        assert_eq!(asked["host"], "127.0.0.1");
        assert_eq!(asked["host_is_ip"], true);
        assert_eq!(asked["addresses"][0]["class"], "loopback");
    }
}

#[test]
fn connect_with_another_tls_server_name_is_cut() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    let mut stream = connect(h.proxy);
    stream
        .write_all(
            format!("CONNECT localhost:{a} HTTP/1.1\r\nHost: localhost:{a}\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut buf = [0u8; 128];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    stream.write_all(&client_hello("evil.example")).unwrap();
    assert!(
        matches!(stream.read(&mut buf), Ok(0) | Err(_)),
        "the tunnel stays open"
    );
    assert!(wait_until(|| !h.gate.cuts.lock().unwrap().is_empty()));
    assert!(h.gate.cuts.lock().unwrap()[0].contains("`evil.example` is not the host `localhost`"));
    assert_eq!(allowed.received(), "", "the ClientHello reached the server");

    // The right name passes.
    let mut stream = connect(h.proxy);
    stream
        .write_all(format!("CONNECT localhost:{a} HTTP/1.1\r\n\r\n").as_bytes())
        .unwrap();
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let hello = client_hello("localhost");
    stream.write_all(&hello).unwrap();
    assert!(wait_until(
        || allowed.received.lock().unwrap().len() == hello.len()
    ));
}

/// A minimal TLS ClientHello naming `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let mut list = vec![0u8];
    list.extend((name.len() as u16).to_be_bytes());
    list.extend(name.as_bytes());
    let mut sni = (list.len() as u16).to_be_bytes().to_vec();
    sni.extend(list);
    let mut ext = 0u16.to_be_bytes().to_vec();
    ext.extend((sni.len() as u16).to_be_bytes());
    ext.extend(sni);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend(2u16.to_be_bytes());
    body.extend([0x13, 0x01]);
    body.extend([1, 0]);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

fn socks_request(proxy: SocketAddr, command: u8, name: &str, port: u16) -> (TcpStream, u8) {
    let mut stream = connect(proxy);
    stream.write_all(&[5, 1, 0]).unwrap();
    let mut greeting = [0u8; 2];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, [5, 0]);
    let mut request = vec![5, command, 0, 3, name.len() as u8];
    request.extend(name.as_bytes());
    request.extend(port.to_be_bytes());
    stream.write_all(&request).unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    (stream, reply[1])
}

#[test]
fn socks5_connects_refuses_and_reports_with_its_codes() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    let (mut stream, code) = socks_request(h.proxy, 1, "localhost", a);
    assert_eq!(code, 0);
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    assert_eq!(h.gate.asked.lock().unwrap()[0]["host"], "localhost");

    assert_eq!(
        socks_request(h.proxy, 1, "localhost", a + 1).1,
        2,
        "not allowed"
    );
    assert_eq!(
        socks_request(h.proxy, 2, "localhost", a).1,
        7,
        "BIND is not supported"
    );
    assert_eq!(
        socks_request(h.proxy, 1, "no-such-host.invalid", a).1,
        4,
        "unresolvable"
    );
}

#[test]
fn bad_input_gets_an_error_and_the_proxy_keeps_serving() {
    let allowed = Server::start();
    let options = ProxyOptions {
        head_timeout: Duration::from_millis(300),
        max_head_bytes: 2048,
        ..ProxyOptions::default()
    };
    let h = harness(allowing(&allowed), options);
    let a = allowed.addr.port();
    assert!(exchange(h.proxy, b"\x00\x01garbage\r\n\r\n", None).starts_with("HTTP/1.1 400"));
    let big = format!(
        "GET http://127.0.0.1:{a}/ HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(4096)
    );
    assert!(exchange(h.proxy, big.as_bytes(), None).starts_with("HTTP/1.1 431"));
    // A client that sends half a head and stops is answered and closed, in bounded time.
    let started = Instant::now();
    let slow = exchange(h.proxy, b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow:", None);
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A client that connects and says nothing is dropped.
    let mut silent = connect(h.proxy);
    let mut buf = [0u8; 8];
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
    let unresolvable = exchange(
        h.proxy,
        format!("GET http://no-such-host.invalid:{a}/ HTTP/1.1\r\n\r\n").as_bytes(),
        None,
    );
    assert!(unresolvable.starts_with("HTTP/1.1 502"), "{unresolvable}");
    // Still serving.
    let ok = exchange(
        h.proxy,
        format!("GET http://127.0.0.1:{a}/ HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        None,
    );
    assert!(ok.contains("200 OK"), "{ok}");
}

#[test]
fn upload_budget_cuts_the_connection_and_is_reported() {
    let allowed = Server::start();
    let gate = TestGate {
        budget: Some(10_000),
        ..allowing(&allowed)
    };
    let h = harness(gate, ProxyOptions::default());
    let a = allowed.addr.port();
    let mut stream = connect(h.proxy);
    stream
        .write_all(format!("CONNECT 127.0.0.1:{a} HTTP/1.1\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 128];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let chunk = vec![b'x'; 4096];
    for _ in 0..100 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    assert!(wait_until(|| !h.gate.cuts.lock().unwrap().is_empty()));
    assert!(h.gate.cuts.lock().unwrap()[0].contains("upload budget of 10000 bytes"));
    assert!(allowed.received.lock().unwrap().len() <= 10_000);

    // A later request to the same host is refused until the budget refills, and says when.
    let answer = exchange(
        h.proxy,
        format!("POST http://127.0.0.1:{a}/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").as_bytes(),
        None,
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("it refills at"), "{answer}");
}

#[test]
fn an_upload_budget_refills_after_its_window() {
    let allowed = Server::start();
    let gate = TestGate {
        budget: Some(100),
        ..allowing(&allowed)
    };
    let options = ProxyOptions {
        upload_window: Duration::from_millis(700),
        ..ProxyOptions::default()
    };
    let h = harness(gate, options);
    let a = allowed.addr.port();
    let post = |body: &str| {
        exchange(
            h.proxy,
            format!("POST http://127.0.0.1:{a}/ HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            None,
        )
    };
    let big = "x".repeat(500);
    assert!(post(&big).starts_with("HTTP/1.1 403"));
    assert!(post("small").starts_with("HTTP/1.1 403"), "spent: refused");
    std::thread::sleep(Duration::from_millis(900));
    let answer = post("small");
    assert!(answer.contains("200 OK"), "refilled: {answer}");
}

#[test]
fn connections_per_minute_are_capped() {
    let allowed = Server::start();
    let gate = TestGate {
        per_minute: Some(3),
        ..allowing(&allowed)
    };
    let h = harness(gate, ProxyOptions::default());
    let a = allowed.addr.port();
    let request = format!("GET http://127.0.0.1:{a}/ HTTP/1.1\r\nConnection: close\r\n\r\n");
    let answers: Vec<String> = (0..5)
        .map(|_| exchange(h.proxy, request.as_bytes(), None))
        .collect();
    assert_eq!(answers.iter().filter(|a| a.contains("200 OK")).count(), 3);
    assert!(
        answers[4].contains("more than 3 connections a minute"),
        "{}",
        answers[4]
    );
}

#[test]
fn chunked_bodies_are_relayed_whole() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    let answer = exchange(
        h.proxy,
        format!("POST http://127.0.0.1:{a}/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n").as_bytes(),
        None,
    );
    assert!(answer.contains("200 OK"), "{answer}");
    // The server answers at the end of the head; the body may still be on its way.
    assert!(
        wait_until(|| allowed
            .received()
            .ends_with("5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")),
        "{}",
        allowed.received()
    );
    assert!(allowed.received().contains("Connection: close\r\n"));
}

#[test]
fn many_concurrent_connections_are_served() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    let proxy = h.proxy;
    let clients: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                exchange(
                    proxy,
                    format!("GET http://127.0.0.1:{a}/{i} HTTP/1.1\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                    None,
                )
            })
        })
        .collect();
    let ok = clients
        .into_iter()
        .map(|c| c.join().unwrap())
        .filter(|answer| answer.contains("200 OK"))
        .count();
    assert_eq!(ok, 64);
}

#[test]
fn expect_continue_is_answered_by_the_proxy() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    let mut stream = connect(h.proxy);
    stream
        .write_all(
            format!("POST http://127.0.0.1:{a}/ HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("200 OK"), "{rest}");
    assert!(!allowed.received().to_ascii_lowercase().contains("expect:"));
}

#[test]
fn a_second_host_header_lenient_chunks_and_path_spellings_do_not_pass() {
    let allowed = Server::start();
    let h = harness(allowing(&allowed), ProxyOptions::default());
    let a = allowed.addr.port();
    // Two Host headers: refused before any decision, as a second one could name another site
    // on the same address.
    let answer = exchange(
        h.proxy,
        format!("GET http://127.0.0.1:{a}/ HTTP/1.1\r\nHost: 127.0.0.1:{a}\r\nHost: evil.example\r\n\r\n").as_bytes(),
        None,
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(h.gate.asked.lock().unwrap().is_empty());
    assert_eq!(allowed.received(), "");

    // A signed chunk size, and chunk data not followed by CRLF: cut where they stand.
    for (body, smuggled) in [
        ("+5\r\nhello\r\n0\r\n\r\n", "+5"),
        ("5\r\nhelloXX0\r\n\r\n", "XX"),
        ("5\nworld\r\n0\r\n\r\n", "world"),
    ] {
        let _ = exchange(
            h.proxy,
            format!("POST http://127.0.0.1:{a}/chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}").as_bytes(),
            None,
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !allowed.received().contains(smuggled),
            "{body:?}: {}",
            allowed.received()
        );
    }

    // Encoded and backward slashes: refused, as servers disagree on what they name.
    for path in ["/allowed%2F..%2Fsecret", "/a%5Cb", "/a\\..\\b"] {
        let answer = exchange(
            h.proxy,
            format!("GET http://127.0.0.1:{a}{path} HTTP/1.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            None,
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }

    // The policy decides on, and the server receives, the path without dot segments or
    // encoded unreserved characters.
    h.gate.asked.lock().unwrap().clear();
    let answer = exchange(
        h.proxy,
        format!("GET http://127.0.0.1:{a}/allowed/%2e%2e/%61dmin?x=/../y HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        None,
    );
    assert!(answer.contains("200 OK"), "{answer}");
    let asked = h.gate.asked.lock().unwrap();
    assert_eq!(asked[0]["http"]["path"], "/admin?x=/../y");
    assert!(
        wait_until(|| allowed.received().contains("GET /admin?x=/../y HTTP/1.1")),
        "{}",
        allowed.received()
    );
}
