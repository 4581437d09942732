//! `cordon run`: the example skills under the default policy, end to end: what works, every
//! attempt of the hostile skill denied and recorded, limits, bad input, sessions.

use std::path::PathBuf;
use std::process::{Output, Stdio};

use super::common::{assert_stderr_has, json, stdout, wait_until, Home, KillOnDrop, Listener};

/// An example skill, built by `cargo xtask skills`.
fn skill(name: &str) -> String {
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
    let attempts: [&[&str]; 4] = [
        &["read", "/work/../outside.txt"],
        &["read", "/work/link.md"],
        &["open-at", "/etc/passwd"],
        &["write", "/work/planted.sh"],
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
    assert!(!home.workspace().join("planted.sh").exists());

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
    let planted = home.workspace().join("planted.sh").display().to_string();
    let (_, _, why) = denied
        .iter()
        .find(|(a, p, _)| a == "create" && *p == planted)
        .unwrap();
    assert!(why.contains("journal"), "writes wait for journaling: {why}");
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

#[test]
fn a_running_skill_is_listed_and_stopped() {
    let home = Home::new();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skill-cache");
    let mut child = KillOnDrop(
        home.cordon(&["run", "--cpu-ms", "60000", &skill("hostile"), "--", "cpu"])
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
    assert_eq!(status.unwrap().code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("stopped on request"), "{err}");
}
