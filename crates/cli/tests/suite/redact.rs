//! The `redact` obligation through the egress proxy: a plain-HTTP upload arrives with its
//! secrets replaced, in the URL, the headers and the body (content-length and chunked);
//! `block_if` refuses and is recorded; the audit log never holds what was redacted.
//!
//! Secret-shaped values are assembled at run time so that this file is not a finding.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::common::Home;
use super::exec_net::{audit_net, standalone_proxy_with};

fn aws_id() -> String {
    ["AKIA", "QYLPMN5HHHFPZAM2"].concat()
}

fn aws_secret() -> String {
    ["jORS/6ilI8ihN5KXSc7Tvo", "/hBKqFYY/kv5ZJr3J1"].concat()
}

/// An opaque credential: no known format, only its header's name says what it is.
const OPAQUE: &str = "q8Xz3LmP0vR7tY2wK9sDq4Zb6Nc1";

fn github() -> String {
    ["ghp_", "u8jzPde0IgxLd6GncfBAepfJBd0Kh8024xXH"].concat()
}

/// An HTTP server that keeps each request as it arrived (head and body) and answers 200.
fn recording_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock()
                .unwrap()
                .push(format!("{head}{}", String::from_utf8_lossy(&body)));
            let _ = reader
                .into_inner()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, seen)
}

/// Sends `request` to the proxy and returns its answer's status line.
fn send(proxy: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

const POLICY: &str = r#"package cordon.net

import rego.v1

decision := {"allow": true, "reasons": ["a plain request, redacted"], "obligations": [{"type": "redact", "block_if": ["private_key"]}]} if {
	input.action == "http"
} else := {"allow": true, "reasons": ["a tunnel, which cannot be redacted"], "obligations": [{"type": "redact"}]} if {
	input.action == "connect"
}
"#;

#[test]
fn plain_http_uploads_leave_redacted_and_blocked_ones_not_at_all() {
    let home = Home::new();
    let policy = home.path().join("redact-policy");
    fs_err::create_dir_all(&policy).unwrap();
    fs_err::write(policy.join("net.rego"), POLICY).unwrap();
    let (port, seen) = recording_server();
    let (_proxy, proxy) = standalone_proxy_with(&home, &["--policy", policy.to_str().unwrap()]);
    let target = format!("127.0.0.1:{port}");

    // Content-length body, a secret in the query (percent-encoded) and in a header.
    // Escapes hide nothing: `%41` is `A`.
    let encoded = aws_id().replacen('A', "%41", 1);
    let body = format!(
        "{{\"key\": \"{}\", \"secret\": \"aws_secret_access_key={}\"}}",
        aws_id(),
        aws_secret()
    );
    let request = format!(
        "POST http://{target}/upload?key={encoded}&n=1 HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nX-Note: {}\r\nX-{}: 1\r\nX-Api-Key: {OPAQUE}\r\nAuthorization: Bearer {OPAQUE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        github(),
        github(),
        body.len()
    );
    assert_eq!(send(&proxy, &request), "HTTP/1.1 200 OK");

    // A chunked body, the token split across chunks.
    let token = github();
    let (a, b) = token.split_at(10);
    let chunked = format!(
        "POST http://{target}/chunked HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\ntoken {a}\r\n{:x}\r\n{b} end\r\n0\r\n\r\n",
        6 + a.len(),
        b.len() + 4
    );
    assert_eq!(send(&proxy, &chunked), "HTTP/1.1 200 OK");

    // A private key: refused, nothing arrives.
    let key = format!(
        "-----BEGIN {0}-----\n{1}\n{1}\n-----END {0}-----\n",
        "PRIVATE KEY",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4"
    );
    let blocked = format!(
        "POST http://{target}/key HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{key}",
        key.len()
    );
    assert_eq!(send(&proxy, &blocked), "HTTP/1.1 403 Forbidden");
    // A chunk size at the edge of u64 after a first chunk: refused, and the proxy goes on.
    let huge = format!(
        "POST http://{target}/huge HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nFFFFFFFFFFFFFFFF\r\n"
    );
    assert_eq!(send(&proxy, &huge), "HTTP/1.1 413 Payload Too Large");
    // A tunnel cannot be redacted: refused.
    let tunnel =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    assert_eq!(send(&proxy, &tunnel), "HTTP/1.1 403 Forbidden");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let all = seen.join("\n");
    for secret in [
        aws_id(),
        aws_secret(),
        encoded.clone(),
        github(),
        a.to_owned(),
        OPAQUE.to_owned(),
    ] {
        assert!(!all.contains(&secret), "`{secret}` arrived: {all}");
    }
    assert!(
        seen[0].starts_with("POST /upload?key=%5BREDACTED%3Acloud_key%5D&n=1 HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains("X-Note: %5BREDACTED%3Atoken%5D"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains("\"key\": \"[REDACTED:cloud_key]\""),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].ends_with("token [REDACTED:token] end"),
        "{}",
        seen[1]
    );
    let length = |s: &str| {
        s.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap()
    };
    for request in &seen {
        let body = request.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(length(request), body.len(), "{request}");
    }

    // The audit log: the refusal with its reason, and no value anywhere.
    for _ in 0..100 {
        if audit_net(&home)
            .iter()
            .any(|r| r["input"]["result"]["cut"].is_string())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = audit_net(&home);
    let text = serde_json::to_string(&records).unwrap();
    for secret in [aws_id(), aws_secret(), encoded, github(), OPAQUE.to_owned()] {
        assert!(!text.contains(&secret), "`{secret}` is in the audit log");
    }
    let cut = records.iter().any(|r| {
        r["input"]["result"]["cut"]
            .as_str()
            .is_some_and(|c| c.contains("private_key") && c.contains("refused"))
    });
    assert!(cut, "the block_if refusal is not recorded: {text}");
    let tunnel_denied = records
        .iter()
        .any(|r| r["input"]["action"] == "connect" && r["allow"] == false);
    assert!(tunnel_denied, "{text}");
}
