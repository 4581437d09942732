//! The MCP gateway over HTTP counts a session from the start of its launch: many clients
//! initializing at once cannot start more servers than [`MAX_SESSIONS`].
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cordon_supervisor::mcp::http::{serve, Launch, MAX_SESSIONS};

/// One POST of `body` to the gateway on `port`; its status code.
fn post(port: u16, token: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

#[test]
fn sessions_being_launched_count_against_the_limit() {
    const CLIENTS: usize = 40;
    // Each launch takes a while, then fails: what matters is how many run at once.
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let launch: Launch = {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        Arc::new(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(2));
            running.fetch_sub(1, Ordering::SeqCst);
            Err("this test's servers never start".to_owned())
        })
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let token = "5a4b3c2d1e0f5a4b3c2d1e0f".to_owned();
    let served = token.clone();
    std::thread::spawn(move || serve(listener, served, launch));

    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(|| post(port, &token, initialize)))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let refused_for_room = statuses.iter().filter(|&&s| s == 503).count();
    let launched = statuses.iter().filter(|&&s| s == 403).count();
    assert_eq!(refused_for_room + launched, CLIENTS, "{statuses:?}");
    assert!(
        launched <= MAX_SESSIONS,
        "{launched} launched: {statuses:?}"
    );
    assert!(
        most.load(Ordering::SeqCst) <= MAX_SESSIONS,
        "{} launches at once",
        most.load(Ordering::SeqCst)
    );
    // A failed launch gives its room back.
    assert_eq!(post(port, &token, initialize), 403);
}
