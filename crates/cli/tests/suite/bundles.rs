//! Policy bundles end to end: `cordon policy build|keygen|sign|verify|inspect`, activation
//! with a configured key, a local HTTP server polled with ETags (outage, garbage, a hang, a
//! replayed older bundle), rollback, and canary assignment.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon_bundle::archive::{self, Entry};
use cordon_bundle::{Algorithm, Bundle, KeyKind, Limits, PrivateKey};
use pretty_assertions::assert_eq;
use serde_json::Value;

use super::common::{free_port, json, stderr, stdout, Home};

/// A policy directory whose file decisions allow with the reason `reason`.
fn policy_dir(home: &Home, reason: &str) -> PathBuf {
    let dir = home.path().join(format!("policy-{reason}"));
    fs_err::create_dir_all(dir.join("cordon")).unwrap();
    fs_err::write(
        dir.join("cordon/file.rego"),
        format!(
            "package cordon.file\n\ndecision := {{\"allow\": true, \"reasons\": [\"{reason}\"]}}\n"
        ),
    )
    .unwrap();
    dir
}

fn keygen(home: &Home, name: &str) -> PathBuf {
    let path = home.path().join(name);
    let out = home
        .cordon(&["policy", "keygen", "-o", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    path
}

/// Builds a bundle of revision `revision` deciding with `reason`, signed with `key`.
fn build(home: &Home, revision: &str, reason: &str, key: Option<&Path>, extra: &[&str]) -> PathBuf {
    let out_path = home
        .path()
        .join(format!("bundle-{revision}-{reason}.tar.gz"));
    let dir = policy_dir(home, reason);
    let mut args = vec![
        "policy",
        "build",
        dir.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        "--revision",
        revision,
    ];
    if let Some(key) = key {
        args.extend(["--signing-key", key.to_str().unwrap()]);
    }
    args.extend(extra);
    let out = home.cordon(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out_path
}

fn configure(home: &Home, lines: &str) {
    let dir = home.path().join("config/cordon");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join("config.toml"), format!("[policy]\n{lines}\n")).unwrap();
}

/// What a file decision says now: its reason.
fn deciding(home: &Home) -> String {
    let out = home.run(
        &["eval", "--input", "-"],
        r#"{"capability": "file", "action": "read", "resource": {"path": "notes.md"}}"#,
    );
    json(&out)["reasons"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn status(home: &Home) -> Value {
    json(
        &home
            .cordon(&["policy", "status", "--json"])
            .output()
            .unwrap(),
    )
}

#[test]
fn keygen_build_verify_and_inspect() {
    let home = Home::new();
    let key = keygen(&home, "team.pem");
    let mode = fs_err::metadata(&key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let public = PathBuf::from(format!("{}.pub", key.display()));
    assert!(fs_err::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    // A second keygen does not overwrite the key.
    let out = home
        .cordon(&["policy", "keygen", "-o", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let bundle = build(&home, "7", "seven", Some(&key), &["--root", "cordon"]);
    let out = home
        .cordon(&[
            "policy",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let verified = json(&out);
    assert_eq!(
        (verified["ok"].clone(), verified["revision"].clone()),
        (Value::Bool(true), Value::from("7"))
    );
    assert_eq!(verified["signer"]["algorithm"], "ES256");

    let out = home
        .cordon(&["policy", "inspect", bundle.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let shown = json(&out);
    assert_eq!(shown["roots"], serde_json::json!(["cordon"]));
    let names: Vec<&str> = shown["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cordon/file.rego", ".manifest"]);
    assert_eq!(shown["signature"]["key_id"], "default");

    // A file changed after signing: refused, naming the file.
    let bytes = fs_err::read(&bundle).unwrap();
    let mut entries = archive::read(&bytes, &Limits::default()).unwrap();
    entries
        .iter_mut()
        .find(|e| e.name.ends_with(".rego"))
        .unwrap()
        .bytes = b"package cordon.file\n\ndecision := {\"allow\": true}\n".to_vec();
    let tampered = home.path().join("tampered.tar.gz");
    fs_err::write(&tampered, archive::write(&entries).unwrap()).unwrap();
    let out = home
        .cordon(&[
            "policy",
            "verify",
            tampered.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let refused = json(&out);
    assert_eq!(
        (refused["problem"].as_str(), refused["file"].as_str()),
        (Some("tampered"), Some("cordon/file.rego"))
    );

    // Another key: refused.
    let other = keygen(&home, "other.pem");
    let out = home
        .cordon(&[
            "policy",
            "verify",
            bundle.to_str().unwrap(),
            "--pubkey",
            &format!("{}.pub", other.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));

    // `sign` re-signs with another key and that key then verifies it.
    let resigned = home.path().join("resigned.tar.gz");
    let out = home
        .cordon(&[
            "policy",
            "sign",
            bundle.to_str().unwrap(),
            "--key",
            other.to_str().unwrap(),
            "-o",
            resigned.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = home
        .cordon(&[
            "policy",
            "verify",
            resigned.to_str().unwrap(),
            "--pubkey",
            &format!("{}.pub", other.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn activation_refuses_stripped_replayed_and_foreign_bundles_and_rolls_back() {
    let home = Home::new();
    let key = keygen(&home, "team.pem");
    configure(&home, &format!("public_key = \"{}.pub\"", key.display()));
    let default = deciding(&home);
    assert!(
        default.contains("inside the workspace"),
        "the built-in default decides before any bundle: {default}"
    );

    let two = build(&home, "2", "two", Some(&key), &[]);
    let out = home
        .cordon(&["policy", "activate", two.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(deciding(&home), "two");

    // Stripped of its signature while a key is configured.
    let unsigned = build(&home, "3", "unsigned", None, &[]);
    let out = home
        .cordon(&["policy", "activate", unsigned.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["problem"], "unsigned");
    // Signed by a key nobody configured.
    let foreign = key_signed(&home, "4", "foreign");
    let out = home
        .cordon(&["policy", "activate", foreign.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out)["problem"], "wrong_key");
    // An older, validly signed bundle replayed.
    let one = build(&home, "1", "one", Some(&key), &[]);
    let out = home
        .cordon(&["policy", "activate", one.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["problem"], "rollback");
    // The same revision with other content.
    let other_two = build(&home, "2", "other-two", Some(&key), &[]);
    let out = home
        .cordon(&["policy", "activate", other_two.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out)["problem"], "rollback");
    assert_eq!(
        deciding(&home),
        "two",
        "the active bundle stays after every refusal"
    );

    let five = build(&home, "5", "five", Some(&key), &[]);
    let out = home
        .cordon(&["policy", "activate", five.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(deciding(&home), "five");
    let out = home
        .cordon(&["policy", "rollback", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out)["active"]["revision"], "2");
    assert_eq!(deciding(&home), "two");
    let state = status(&home)["state"].clone();
    assert_eq!(
        (
            state["active"]["reason"].as_str(),
            state["highest"].as_str()
        ),
        (Some("rollback"), Some("5"))
    );

    // A bundle swapped on disk is not run: the previous one (the last known good) decides,
    // for this command only, and that is recorded; the store is left as it is.
    let store = home.path().join("data/cordon/bundles");
    let active_file = status(&home)["state"]["active"]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    fs_err::copy(&foreign, store.join(active_file)).unwrap();
    assert_eq!(deciding(&home), "five");
    let state = status(&home)["state"].clone();
    assert_eq!(
        (
            state["active"]["revision"].as_str(),
            state["active"]["reason"].as_str()
        ),
        (Some("2"), Some("rollback"))
    );

    // Every activation, refusal, rollback and fallback is in the audit log with both revisions.
    let out = home
        .cordon(&["audit", "query", "--capability", "policy", "--json"])
        .output()
        .unwrap();
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["activate", "refuse", "refuse", "refuse", "refuse", "activate", "rollback", "fallback"]
    );
    let replay = &records[3]["input"]["resource"];
    assert_eq!(
        (
            replay["bundle"]["revision"].as_str(),
            replay["active"]["revision"].as_str()
        ),
        (Some("1"), Some("2"))
    );
    assert_eq!(replay["problem"], "rollback");
}

/// A bundle signed with a key of its own.
fn key_signed(home: &Home, revision: &str, reason: &str) -> PathBuf {
    let key = PrivateKey::generate(KeyKind::P256).unwrap();
    let dir = policy_dir(home, reason);
    let bytes = Bundle::build(&dir, revision, None)
        .unwrap()
        .sign(&key, Algorithm::Es256, "default", 0)
        .unwrap()
        .to_bytes()
        .unwrap();
    let path = home.path().join(format!("{reason}.tar.gz"));
    fs_err::write(&path, bytes).unwrap();
    path
}

/// What the test server answers.
#[derive(Clone)]
enum Answer {
    Bundle(Vec<u8>, String),
    Bytes(Vec<u8>),
    Status(u16),
    Hang,
}

/// A static server on 127.0.0.1 that answers every GET as told, with `If-None-Match`
/// honoured, and logs the `If-None-Match` of each request.
struct Server {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(answer));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (Arc::clone(&answer), Arc::clone(&seen));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (answer, seen) = (a.lock().unwrap().clone(), Arc::clone(&s));
                std::thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
                        if stream.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let etag = head
                        .lines()
                        .find_map(|l| l.strip_prefix("if-none-match:"))
                        .map(|v| v.trim().to_owned());
                    seen.lock().unwrap().push(etag.clone());
                    let reply = |status: &str, headers: &str, body: &[u8]| {
                        let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n", body.len()).into_bytes();
                        out.extend_from_slice(body);
                        out
                    };
                    let out = match answer {
                        Answer::Bundle(_, tag)
                            if etag.as_deref() == Some(tag.to_lowercase().as_str()) =>
                        {
                            reply("304 Not Modified", "", b"")
                        }
                        Answer::Bundle(body, tag) => {
                            reply("200 OK", &format!("etag: {tag}\r\n"), &body)
                        }
                        Answer::Bytes(body) => reply("200 OK", "", &body),
                        Answer::Status(code) => reply(&format!("{code} Oops"), "", b"oops"),
                        Answer::Hang => {
                            std::thread::sleep(Duration::from_secs(30));
                            return;
                        }
                    };
                    let _ = stream.write_all(&out);
                });
            }
        });
        Self { port, answer, seen }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cordon/bundle.tar.gz", self.port)
    }
}

fn pull(home: &Home, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["policy", "pull", "--json"];
    args.extend(extra);
    home.cordon(&args).output().unwrap()
}

#[test]
fn a_polled_server_is_followed_with_etags_and_its_failures_change_nothing() {
    let home = Home::new();
    let key = keygen(&home, "team.pem");
    let two = fs_err::read(build(&home, "2", "two", Some(&key), &[])).unwrap();
    let server = Server::start(Answer::Bundle(two, "\"v2\"".into()));
    configure(
        &home,
        &format!(
            "bundle = \"{}\"\npublic_key = \"{}.pub\"",
            server.url(),
            key.display()
        ),
    );

    // Nothing active yet: the first command fetches the bundle.
    assert_eq!(deciding(&home), "two");
    let out = pull(&home, &[]);
    assert_eq!(json(&out)["verdict"], "not_modified", "{}", stderr(&out));
    assert_eq!(
        *server.seen.lock().unwrap(),
        [None, Some("\"v2\"".to_owned())]
    );

    // Garbage, a server error, an older bundle, a foreign key: each refused or failed, the
    // active bundle stays, the status says why.
    server.set(Answer::Bytes(b"<html>maintenance</html>".to_vec()));
    let out = pull(&home, &[]);
    assert_eq!(
        (out.status.code(), json(&out)["problem"].as_str()),
        (Some(1), Some("not_a_bundle"))
    );
    server.set(Answer::Status(503));
    let out = pull(&home, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    assert!(status(&home)["state"]["last_error"]
        .as_str()
        .unwrap()
        .contains("503"));
    let one = fs_err::read(build(&home, "1", "one", Some(&key), &[])).unwrap();
    server.set(Answer::Bundle(one, "\"v1\"".into()));
    assert_eq!(json(&pull(&home, &[]))["problem"], "rollback");
    server.set(Answer::Bundle(
        fs_err::read(key_signed(&home, "3", "foreign")).unwrap(),
        "\"v3f\"".into(),
    ));
    assert_eq!(json(&pull(&home, &[]))["problem"], "wrong_key");
    let stripped = fs_err::read(build(&home, "3", "stripped", None, &[])).unwrap();
    server.set(Answer::Bundle(stripped, "\"v3s\"".into()));
    assert_eq!(json(&pull(&home, &[]))["problem"], "unsigned");
    // A decompression bomb: 300 MiB of zeros in a few hundred KiB.
    let bomb = archive::write(&[Entry {
        name: "data.json".into(),
        bytes: vec![b' '; 300 << 20],
    }])
    .unwrap();
    server.set(Answer::Bundle(bomb, "\"bomb\"".into()));
    assert_eq!(json(&pull(&home, &[]))["problem"], "too_large");

    // A server that accepts and never answers is given up on.
    server.set(Answer::Hang);
    let started = Instant::now();
    let out = pull(&home, &["--timeout", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );

    // A server that is gone.
    let gone_url = format!("http://127.0.0.1:{}/b.tar.gz", free_port());
    configure(
        &home,
        &format!(
            "bundle = \"{gone_url}\"\npublic_key = \"{}.pub\"",
            key.display()
        ),
    );
    assert_eq!(pull(&home, &[]).status.code(), Some(2));
    assert_eq!(
        deciding(&home),
        "two",
        "the last known good decides while the server is down"
    );

    // Back, with a rollout this device is outside of.
    let outside = (0..100)
        .map(|i| format!("device-{i}"))
        .find(|d| cordon_bundle::store::bucket(d) >= 50.0)
        .unwrap();
    configure(
        &home,
        &format!(
            "bundle = \"{}\"\npublic_key = \"{}.pub\"\n\n[subject]\ndevice = \"{outside}\"",
            server.url(),
            key.display()
        ),
    );
    // A body larger than the limit (64 MiB) is cut off at it.
    server.set(Answer::Bytes(vec![0x1f; 65 << 20]));
    let out = pull(&home, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("larger than the limit"),
        "{}",
        stderr(&out)
    );

    let canary = fs_err::read(build(
        &home,
        "3",
        "canary",
        Some(&key),
        &["--rollout", "50"],
    ))
    .unwrap();
    server.set(Answer::Bundle(canary, "\"v3c\"".into()));
    assert_eq!(json(&pull(&home, &[]))["verdict"], "deferred");
    assert_eq!(status(&home)["state"]["canary"]["joined"], false);
    assert_eq!(deciding(&home), "two");

    // Back, with a newer revision.
    configure(
        &home,
        &format!(
            "bundle = \"{}\"\npublic_key = \"{}.pub\"",
            server.url(),
            key.display()
        ),
    );
    let four = fs_err::read(build(&home, "4", "four", Some(&key), &[])).unwrap();
    server.set(Answer::Bundle(four, "\"v4\"".into()));
    assert_eq!(json(&pull(&home, &[]))["verdict"], "activated");
    assert_eq!(deciding(&home), "four");
    let state = status(&home)["state"].clone();
    assert_eq!(
        (state["etag"].as_str(), state["failures"].as_u64()),
        (Some("\"v4\""), Some(0))
    );
}

#[test]
fn plain_http_without_a_key_is_refused() {
    let home = Home::new();
    configure(&home, "bundle = \"http://127.0.0.1:9/b.tar.gz\"");
    let out = pull(&home, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("plain HTTP"), "{}", stderr(&out));
}

#[test]
fn a_rollout_places_each_device_on_one_side_and_keeps_it_there() {
    // Two device ids on either side of a 50% rollout.
    let ids: Vec<String> = (0..100).map(|i| format!("device-{i}")).collect();
    let inside = ids
        .iter()
        .find(|d| cordon_bundle::store::bucket(d) < 50.0)
        .unwrap();
    let outside = ids
        .iter()
        .find(|d| cordon_bundle::store::bucket(d) >= 50.0)
        .unwrap();
    for (device, joins) in [(inside, true), (outside, false)] {
        let home = Home::new();
        let key = keygen(&home, "team.pem");
        let one = build(&home, "1", "one", Some(&key), &[]);
        let canary = build(&home, "2", "canary", Some(&key), &["--rollout", "50"]);
        fs_err::create_dir_all(home.path().join("config/cordon")).unwrap();
        fs_err::write(
            home.path().join("config/cordon/config.toml"),
            format!(
                "[policy]\npublic_key = \"{}.pub\"\n\n[subject]\ndevice = \"{device}\"\n",
                key.display()
            ),
        )
        .unwrap();
        assert_eq!(
            home.cordon(&["policy", "activate", one.to_str().unwrap()])
                .output()
                .unwrap()
                .status
                .code(),
            Some(0)
        );
        for _ in 0..2 {
            let out = home
                .cordon(&["policy", "activate", canary.to_str().unwrap(), "--json"])
                .output()
                .unwrap();
            let verdict = json(&out)["verdict"].as_str().unwrap().to_owned();
            let expected = if joins {
                ["activated", "unchanged"]
            } else {
                ["deferred", "deferred"]
            };
            assert!(expected.contains(&verdict.as_str()), "{device}: {verdict}");
        }
        let state = status(&home)["state"].clone();
        assert_eq!(state["canary"]["joined"], joins, "{device}");
        assert_eq!(
            deciding(&home),
            if joins { "canary" } else { "one" },
            "{device}"
        );
        // The same revision widened to every device: the same bundle for one already on
        // it, taken now by the other.
        let everyone = build(&home, "2", "canary", Some(&key), &["--rollout", "100"]);
        let out = home
            .cordon(&["policy", "activate", everyone.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        // (Signed later, its signature replaces the kept one unless signed in the same second.)
        let expected: &[&str] = if joins {
            &["unchanged", "refreshed"]
        } else {
            &["activated"]
        };
        let verdict = json(&out)["verdict"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            expected.contains(&verdict.as_str()),
            "{device}: {verdict} {}",
            stderr(&out)
        );
        assert_eq!(deciding(&home), "canary", "{device}");
    }
}

#[test]
fn replay_reports_the_flips_of_a_changed_rule() {
    let home = Home::new();
    for path in ["notes.md", "/etc/hostname", "/etc/passwd", "src/main.rs"] {
        let input = format!(
            r#"{{"capability": "file", "action": "read", "resource": {{"path": "{path}"}}}}"#
        );
        home.run(&["eval", "--input", "-"], &input);
    }
    // The candidate: markdown is refused, and reads outside the workspace are allowed.
    let candidate = home.path().join("candidate");
    let out = home
        .cordon(&["policy", "init", candidate.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rego = fs_err::read_to_string(candidate.join("file.rego")).unwrap();
    let outside =
        "} else := {\n\t\"allow\": false,\n\t\"reasons\": [sprintf(\"`%s` is outside the workspace";
    assert!(rego.contains(outside));
    let rego = rego.replace(outside, &outside.replace("false", "true"))
        + "\ndeny contains sprintf(\"`%s` is markdown\", [input.resource.path]) if endswith(input.resource.path, \".md\")\n";
    fs_err::write(candidate.join("file.rego"), rego).unwrap();

    let out = home
        .cordon(&[
            "policy",
            "replay",
            candidate.to_str().unwrap(),
            "--json",
            "--since",
            "1d",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(
        (report["replayed"].as_u64(), report["unchanged"].as_u64()),
        (Some(4), Some(1))
    );
    let changes: Vec<(String, String)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["resource"]["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                c["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("notes.md".to_owned(), "allow_to_deny".to_owned()),
            ("hostname".to_owned(), "deny_to_allow".to_owned()),
            ("passwd".to_owned(), "deny_to_allow".to_owned()),
        ]
    );
    // Counted per rule: the two reads outside the workspace are one rule's.
    assert_eq!(
        report["by_rule"]["file: `…` is markdown"]["allow_to_deny"],
        1
    );
    assert_eq!(
        report["by_rule"]["file: `…` is outside the workspace […]"]["deny_to_allow"],
        2
    );

    // The same through an exported log, failing a CI step.
    let export = home.cordon(&["audit", "export"]).output().unwrap();
    let log = home.path().join("exported.jsonl");
    fs_err::write(&log, &export.stdout).unwrap();
    let out = home
        .cordon(&[
            "policy",
            "replay",
            candidate.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--fail-on-change",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("3 would change"), "{}", stdout(&out));
    // The policy that decided replays with no change.
    let out = home
        .cordon(&[
            "policy",
            "replay",
            crate::suite::common::default_policy_dir().to_str().unwrap(),
            "--fail-on-change",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn a_configured_source_never_falls_back_to_the_built_in_policy() {
    let home = Home::new();
    let key = keygen(&home, "team.pem");
    // A server (or someone on the path) answering 304 to a first request, with no ETag sent.
    let server = Server::start(Answer::Status(304));
    configure(
        &home,
        &format!(
            "bundle = \"{}\"\npublic_key = \"{}.pub\"",
            server.url(),
            key.display()
        ),
    );
    let out = home.run(
        &["eval", "--input", "-"],
        r#"{"capability": "file", "action": "read", "resource": {"path": "notes.md"}}"#,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("304"), "{}", stderr(&out));
    // A server that is down: the same.
    server.set(Answer::Status(503));
    let out = home.run(
        &["eval", "--input", "-"],
        r#"{"capability": "file", "action": "read", "resource": {"path": "notes.md"}}"#,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}
