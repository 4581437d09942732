//! `cordon audit forward` to real local collectors: every record arrives exactly once, also
//! when the collector was down while records were written.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{assert_stderr_has, free_port, stderr, Home};

fn decide(home: &Home, n: usize) {
    for i in 0..n {
        let request = json!({"capability": "file", "action": "read", "resource": {"path": format!("f{i}.md")}});
        let out = home.run(&["eval"], &request.to_string());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    super::common::wait_until(what, 30, done);
}

/// A minimal HTTP collector: answers every POST with 200 and keeps the bodies.
fn http_collector(port: u16, bodies: Arc<Mutex<Vec<String>>>) {
    flaky_http_collector(port, bodies, 0);
}

/// As `http_collector`, but answers the first `refuse` requests with 503 and drops their
/// bodies.
fn flaky_http_collector(port: u16, bodies: Arc<Mutex<Vec<String>>>, refuse: usize) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = reader.into_inner();
            if n < refuse {
                let refusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                stream.write_all(refusal.as_bytes()).unwrap();
                continue;
            }
            bodies
                .lock()
                .unwrap()
                .push(String::from_utf8(body).unwrap());
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
        }
    });
}

fn seqs_in_bulk(bodies: &[String]) -> Vec<u64> {
    bodies
        .iter()
        .flat_map(|b| b.lines())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["seq"].as_u64())
        .collect()
}

#[test]
fn http_collector_down_then_up_gets_every_record_once() {
    let home = Home::new();
    decide(&home, 5);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/_bulk");
    let mut forwarder = home
        .cordon(&[
            "audit",
            "forward",
            "--to",
            &url,
            "--format",
            "elastic",
            "--timeout-ms",
            "1000",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The collector is down: the forwarder fails and retries; nothing is lost meanwhile.
    std::thread::sleep(Duration::from_millis(800));
    decide(&home, 2);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    http_collector(port, bodies.clone());
    wait_for("7 records at the collector", || {
        seqs_in_bulk(&bodies.lock().unwrap()).len() >= 7
    });
    decide(&home, 1);
    wait_for("the 8th record", || {
        seqs_in_bulk(&bodies.lock().unwrap()).len() >= 8
    });
    std::thread::sleep(Duration::from_millis(700));
    forwarder.kill().unwrap();
    let mut errors = String::new();
    forwarder
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    forwarder.wait().unwrap();
    assert_eq!(
        seqs_in_bulk(&bodies.lock().unwrap()),
        (1..=8).collect::<Vec<u64>>()
    );
    assert!(
        errors.contains(&format!("warning: cannot deliver to `{url}#Elastic`")),
        "{errors}"
    );
    // Each record is indexed under its id, so a resent batch would overwrite, not duplicate.
    let first = bodies.lock().unwrap()[0].lines().next().unwrap().to_owned();
    assert!(first.starts_with("{\"index\":{\"_id\":\""), "{first}");
}

#[test]
fn syslog_tcp_and_udp_receive_rfc5424_frames() {
    let home = Home::new();
    decide(&home, 3);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = home
        .cordon(&[
            "audit",
            "forward",
            "--once",
            "--to",
            &format!("syslog+tcp://{addr}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    // Octet counting: "LEN SP MSG", three times.
    let mut rest = text.as_str();
    let mut messages = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        messages.push(&tail[..len]);
        rest = &tail[len..];
    }
    assert_eq!(messages.len(), 3);
    assert!(messages[0].starts_with("<110>1 "), "{}", messages[0]);
    assert!(messages[0].contains(
        " cordon - decision [cordon@32473 seq=\"1\" capability=\"file\" allow=\"true\"] {"
    ));

    // A second run sends nothing: the cursor remembers.
    let out = home
        .cordon(&[
            "audit",
            "forward",
            "--once",
            "--to",
            &format!("syslog+tcp://{addr}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let target = format!("syslog+udp://{}", socket.local_addr().unwrap());
    let out = home
        .cordon(&["audit", "forward", "--once", "--to", &target])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut buf = [0u8; 65536];
    for seq in 1..=3 {
        let n = socket.recv(&mut buf).unwrap();
        let message = String::from_utf8_lossy(&buf[..n]);
        assert!(message.contains(&format!("seq=\"{seq}\"")), "{message}");
    }
}

#[test]
fn an_unreachable_collector_with_once_exits_one_and_keeps_the_backlog() {
    let home = Home::new();
    decide(&home, 2);
    let port = free_port();
    let out = home
        .cordon(&[
            "audit",
            "forward",
            "--once",
            "--timeout-ms",
            "300",
            "--to",
            &format!("syslog+tcp://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("hint: the records after 0 stay in the database"),
        "{err}"
    );
}

#[test]
fn a_refusing_collector_is_retried_and_gets_each_record_once() {
    let home = Home::new();
    decide(&home, 4);
    let port = free_port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    flaky_http_collector(port, bodies.clone(), 2);
    let url = format!("http://127.0.0.1:{port}/services/collector/event");
    let out = home
        .cordon(&["audit", "forward", "--once", "--to", &url])
        .env("CORDON_FORWARD_TOKEN", "secret-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out)
            .matches("refused the batch with HTTP 503")
            .count(),
        2,
        "{}",
        stderr(&out)
    );
    // HEC: one `{"event": record, ...}` object per line.
    let seqs: Vec<u64> = bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b.lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["seq"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn a_hanging_collector_times_out() {
    let home = Home::new();
    decide(&home, 1);
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        listener
            .incoming()
            .take(3)
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
    });
    let started = Instant::now();
    let out = home
        .cordon(&[
            "audit",
            "forward",
            "--once",
            "--timeout-ms",
            "300",
            "--to",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_stderr_has(&out, "cannot deliver to");
    drop(held);
}

#[test]
fn syslog_collector_down_then_up_gets_every_record_once() {
    let home = Home::new();
    decide(&home, 3);
    let port = free_port();
    let mut forwarder = home
        .cordon(&[
            "audit",
            "forward",
            "--timeout-ms",
            "500",
            "--to",
            &format!("syslog+tcp://127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    decide(&home, 2);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let received = Arc::new(Mutex::new(String::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        }
    });
    let seqs = |text: &str| -> Vec<u64> {
        text.split(" cordon - decision [cordon@32473 seq=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
            .collect()
    };
    wait_for("5 syslog messages", || {
        seqs(&received.lock().unwrap()).len() >= 5
    });
    std::thread::sleep(Duration::from_millis(700));
    forwarder.kill().unwrap();
    forwarder.wait().unwrap();
    assert_eq!(seqs(&received.lock().unwrap()), vec![1, 2, 3, 4, 5]);
}
