//! Sessions: ids in the audit log, `cordon ps`, the control socket, and no stale entries.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use super::common::{
    assert_stderr_has, json, running_as_root, sandbox_ready, stderr, stdout, wait_until, Home,
    KillOnDrop,
};

/// Starts `cordon exec -- sleep 60` in `home` and waits until `cordon ps` lists it; returns
/// the process and the session's id.
fn start_sleeper(home: &Home) -> (KillOnDrop, String) {
    let child = home
        .cordon(&["exec", "--", "sleep", "60"])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let mut id = String::new();
    wait_until("cordon ps to list the session running", 20, || {
        let listed = json(&home.cordon(&["ps", "--json"]).output().unwrap());
        match listed.as_array().and_then(|a| a.first()) {
            Some(session) if session["state"] == "running" => {
                id = session["id"].as_str().unwrap().to_owned();
                true
            }
            _ => false,
        }
    });
    (child, id)
}

/// One request on the control socket of session `id`, as any UI would send it.
fn control(home: &Home, id: &str, request: &str) -> serde_json::Value {
    let socket = home
        .runtime_dir()
        .join("cordon")
        .join(id)
        .join("control.sock");
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

fn wait_exit(child: &mut KillOnDrop) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the session to end", 20, || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

#[test]
fn a_session_is_listed_answers_status_and_stop_and_its_records_carry_its_id() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    // Nothing runs yet.
    let none = home.cordon(&["ps", "--json"]).output().unwrap();
    assert_eq!(json(&none), serde_json::json!([]), "{}", stderr(&none));

    let (mut child, id) = start_sleeper(&home);
    let table = stdout(&home.cordon(&["ps"]).output().unwrap());
    assert!(table.contains(&id) && table.contains("sleep 60"), "{table}");

    let status = control(&home, &id, r#"{"op": "status"}"#);
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(status["session"]["id"], id.as_str());
    assert_eq!(
        status["session"]["command"],
        serde_json::json!(["sleep", "60"])
    );
    assert_eq!(
        status["session"]["workspace"],
        home.workspace().display().to_string()
    );
    let mode = fs_err::metadata(
        home.runtime_dir()
            .join("cordon")
            .join(&id)
            .join("control.sock"),
    )
    .unwrap()
    .permissions()
    .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Malformed and unknown requests get an error, not a hang.
    let bad = control(&home, &id, "not json");
    assert_eq!(bad["ok"], false, "{bad}");
    let unknown = control(&home, &id, r#"{"op": "reboot"}"#);
    assert!(
        unknown["error"].as_str().unwrap().contains("unknown op"),
        "{unknown}"
    );
    assert_eq!(
        control(&home, &id, r#"{"op": "approvals"}"#)["pending"],
        serde_json::json!([])
    );

    let stop = home.cordon(&["stop", &id]).output().unwrap();
    assert!(stop.status.success(), "{}", stderr(&stop));
    // SIGTERM reaches sleep: 128 + 15.
    assert_eq!(wait_exit(&mut child).code(), Some(143));
    assert_eq!(
        json(&home.cordon(&["ps", "--json"]).output().unwrap()),
        serde_json::json!([])
    );
    assert!(!home.runtime_dir().join("cordon").join(&id).exists());

    // Both records of the launch (the decision and the outcome) carry the id; a query for
    // another session finds none of them.
    let records = home
        .cordon(&["audit", "query", "--session", &id, "--json"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = stdout(&records)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&records));
    for record in &lines {
        assert_eq!(record["input"]["context"]["session"], id.as_str());
        assert_eq!(record["capability"], "sandbox");
    }
    assert_eq!(lines[1]["outcome"], "performed");
    let other = home
        .cordon(&["audit", "query", "--session", "000000000000", "--json"])
        .output()
        .unwrap();
    assert_eq!(stdout(&other), "");
}

#[test]
fn a_session_killed_with_sigkill_leaves_no_stale_entry() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let (mut child, id) = start_sleeper(&home);
    let dir = home.runtime_dir().join("cordon").join(&id);
    assert!(dir.join("control.sock").exists());
    // cordon gets no chance to clean up.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Its runtime directory is still there, but `ps` knows the session ended, and removes it.
    assert!(dir.exists());
    wait_until("the stale entry to go", 10, || {
        let listed = json(&home.cordon(&["ps", "--json"]).output().unwrap());
        assert_eq!(listed, serde_json::json!([]), "a killed session is listed");
        !dir.exists()
    });
    let stop = home.cordon(&["stop", &id]).output().unwrap();
    assert!(!stop.status.success());
    assert_stderr_has(&stop, "no running session");
}

#[test]
fn another_user_is_refused_by_the_control_socket_and_a_socket_of_another_user_is_not_trusted() {
    if !sandbox_ready() || !running_as_root() {
        return;
    }
    let home = Home::new();
    let (mut child, id) = start_sleeper(&home);
    let sessions = home.runtime_dir().join("cordon");
    let dir = sessions.join(&id);
    let socket = dir.join("control.sock");
    // Open the way to the socket (the directories and the socket are the owner's alone), so
    // that only the socket's own check stands between another user and the session.
    for path in [
        home.path(),
        home.runtime_dir(),
        sessions.clone(),
        dir.clone(),
    ] {
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    fs_err::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX); s.connect({:?}); s.settimeout(10)\n\
         try: s.sendall(b'{{\"op\": \"stop\", \"grace_secs\": 0}}\\n')\n\
         except BrokenPipeError: pass  # refused before it asked\n\
         print(s.recv(4096).decode())",
        socket.display().to_string()
    );
    let nobody = std::process::Command::new("python3")
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        nobody.status.success(),
        "{:?}: {} {}; session ended: {:?}",
        nobody.status,
        stdout(&nobody),
        stderr(&nobody),
        child.0.try_wait()
    );
    let answer: serde_json::Value = serde_json::from_str(stdout(&nobody).trim()).unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("uid 65534 may not control"),
        "{answer}"
    );
    // The session still runs.
    assert!(child.0.try_wait().unwrap().is_none());
    assert_eq!(control(&home, &id, r#"{"op": "status"}"#)["ok"], true);

    // A directory open to others is not trusted by a client either.
    fs_err::set_permissions(&sessions, std::fs::Permissions::from_mode(0o700)).unwrap();
    let stop = home.cordon(&["stop", &id]).output().unwrap();
    assert!(!stop.status.success());
    assert_stderr_has(&stop, "open to other users");
    fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A session directory planted by another user is neither listed nor used.
    let planted = sessions.join("0123456789ab");
    fs_err::create_dir(&planted).unwrap();
    fs_err::set_permissions(&planted, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let listed = home.cordon(&["ps", "--json"]).output().unwrap();
    let ids: Vec<String> = json(&listed)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![id.clone()]);
    assert_stderr_has(&listed, "belongs to uid 65534");
    let stop = home.cordon(&["stop", "0123456789ab"]).output().unwrap();
    assert!(!stop.status.success());
    assert_stderr_has(&stop, "belongs to uid 65534");

    let stop = home
        .cordon(&["stop", "--grace", "0", &id])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", stderr(&stop));
    // With no grace, the kill may come before sleep ends on the SIGTERM.
    assert!(matches!(wait_exit(&mut child).code(), Some(137 | 143)));
}

#[test]
fn the_second_launch_reads_the_compiled_policy_from_the_cache() {
    let home = Home::new();
    let launch = || {
        let out = home
            .cordon(&["-vv", "exec", "--dry-run", "--", "true"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let first = launch();
    assert!(
        first.contains("compiled policy stored in the cache"),
        "{first}"
    );
    let second = launch();
    assert!(
        second.contains("compiled policy read from the cache"),
        "{second}"
    );
    let dir = home.path().join(".cache/cordon/policy");
    let entries: Vec<_> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1);
    // A damaged entry is not used: the policy is compiled again and the entry rewritten.
    fs_err::write(&entries[0], b"CORDON-RVM-CACHE but not really").unwrap();
    let third = launch();
    assert!(third.contains("was not used"), "{third}");
    let fourth = launch();
    assert!(
        fourth.contains("compiled policy read from the cache"),
        "{fourth}"
    );
    // The cache lies in cordon's own directories, which a sandboxed program cannot write.
    let decision = json(
        &home
            .cordon(&["exec", "--dry-run", "--", "true"])
            .output()
            .unwrap(),
    );
    let protected = decision["decision"]["grants"]["protect"].to_string();
    assert!(protected.contains("/.cache/cordon"), "{protected}");
}

#[test]
fn a_launch_allowed_only_with_an_obligation_nothing_carries_out_is_refused() {
    let home = Home::new();
    let policy = super::common::default_policy_with(&home, |_| {});
    let rego = std::path::Path::new(&policy).join("sandbox.rego");
    let text = fs_err::read_to_string(&rego).unwrap();
    // The allowing branch of the launch decision (whose obligations ask the person about
    // personal folders) asks for a journal, which nothing carries out for a launch.
    let allow = text.find("\"allow\": true").unwrap();
    let start = allow + text[allow..].find("\"obligations\": [").unwrap();
    let end = start + text[start..].find("some ask in ask_grant\n\t],").unwrap();
    let patched = format!(
        "{}\"obligations\": [{{\"type\": \"journal\"}}],{}",
        &text[..start],
        &text[end + "some ask in ask_grant\n\t],".len()..]
    );
    fs_err::write(&rego, patched).unwrap();
    let out = home
        .cordon(&["exec", "--policy", &policy, "--dry-run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));
    assert_stderr_has(&out, "allows only with `journal`");
    // Recorded as the denial it is.
    let records = home.cordon(&["audit", "query", "--json"]).output().unwrap();
    let last: serde_json::Value =
        serde_json::from_str(stdout(&records).lines().last().unwrap()).unwrap();
    assert_eq!(last["allow"], false);
}

#[test]
fn a_sandboxed_program_cannot_write_the_sessions_directory_even_inside_a_writable_grant() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let run = home.runtime_dir();
    let sessions = sessions_dir(&home);
    // What an agent does with the runtime directory in a writable grant: plant a session,
    // swap the sessions directory for another.
    let attack = format!(
        "mkdir -m700 {s}/0123456789ab; mv {s} {r}/moved; mkdir -m700 {r}/cordon; true",
        s = sessions.display(),
        r = run.display()
    );
    let bare = std::process::Command::new("sh")
        .args(["-c", &attack])
        .status()
        .unwrap();
    assert!(bare.success());
    assert!(
        run.join("moved/0123456789ab").exists(),
        "the attack does not work bare"
    );
    fs_err::remove_dir_all(&sessions).unwrap();
    fs_err::rename(run.join("moved"), &sessions).unwrap();
    fs_err::remove_dir(sessions.join("0123456789ab")).unwrap();

    let out = home
        .cordon(&[
            "exec",
            "--allow-write",
            run.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &attack,
        ])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !sessions.join("0123456789ab").exists(),
        "a session was planted"
    );
    assert!(
        !run.join("moved").exists(),
        "the sessions directory was moved"
    );
}

#[test]
fn a_socket_put_in_place_of_a_sessions_is_not_believed() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let (mut child, id) = start_sleeper(&home);
    let dir = home.runtime_dir().join("cordon").join(&id);
    // Someone with write access to the session's directory answers in its place.
    fs_err::rename(dir.join("control.sock"), dir.join("real.sock")).unwrap();
    let impostor = std::os::unix::net::UnixListener::bind(dir.join("control.sock")).unwrap();
    let answering = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = impostor.accept() {
            let _ = writeln!(
                stream,
                r#"{{"ok": true, "stopping": true, "grace_secs": 0}}"#
            );
        }
    });
    let stop = home.cordon(&["stop", &id]).output().unwrap();
    assert!(!stop.status.success(), "cordon stop believed the impostor");
    assert_stderr_has(&stop, "is not served by its cordon");
    drop(answering);
    assert!(child.0.try_wait().unwrap().is_none());
    fs_err::remove_file(dir.join("control.sock")).unwrap();
    fs_err::rename(dir.join("real.sock"), dir.join("control.sock")).unwrap();
    let stop = home
        .cordon(&["stop", "--grace", "0", &id])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(matches!(wait_exit(&mut child).code(), Some(137 | 143)));
}

/// A unix socket at `path` that never accepts and whose backlog is full: a connect to it by
/// path waits until the returned process is killed.
fn never_accepting_socket(path: &std::path::Path) -> KillOnDrop {
    let script = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_UNIX); s.bind({0:?}); s.listen(0)\n\
         held = []\n\
         while True:\n\
         \x20   c = socket.socket(socket.AF_UNIX); c.setblocking(False)\n\
         \x20   try: c.connect({0:?})\n\
         \x20   except BlockingIOError: break\n\
         \x20   held.append(c)\n\
         print('full', flush=True)\n\
         time.sleep(60)\n",
        path.display().to_string()
    );
    started_when_it_says(
        std::process::Command::new("python3").args(["-c", &script]),
        "full",
    )
}

/// Starts `command` and waits for its first line of output, which must be `line`.
fn started_when_it_says(command: &mut std::process::Command, line: &str) -> KillOnDrop {
    let mut child = KillOnDrop(command.stdout(Stdio::piped()).spawn().unwrap());
    let mut said = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said.trim(), line);
    child
}

#[test]
fn planted_fifos_and_blocked_sockets_hang_nothing() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let sessions = sessions_dir(&home);
    session_dir(&home, "00000000beef");
    let fifo = std::process::Command::new("mkfifo")
        .arg(sessions.join("00000000beef/session.json"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let mut ps = KillOnDrop(
        home.cordon(&["ps", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until("cordon ps with a FIFO for session.json", 10, || {
        ps.0.try_wait().unwrap().is_some()
    });

    // A session whose directory is swapped, at its end, for one whose socket never accepts:
    // it still ends.
    let mut child = KillOnDrop(
        home.cordon(&["exec", "--", "sleep", "2"])
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut id = String::new();
    wait_until("the session to be listed", 20, || {
        let listed = json(&home.cordon(&["ps", "--json"]).output().unwrap());
        listed.as_array().and_then(|a| a.first()).is_some_and(|s| {
            id = s["id"].as_str().unwrap().to_owned();
            true
        })
    });
    let dir = sessions.join(&id);
    fs_err::rename(&dir, sessions.join("aside")).unwrap();
    fs_err::create_dir(&dir).unwrap();
    // A socket whose backlog is full: a connect to it by path would wait.
    let blocking = never_accepting_socket(&dir.join("control.sock"));
    wait_until("the session to end with its program", 15, || {
        child.0.try_wait().unwrap().is_some()
    });
    drop(blocking);
}

#[test]
fn cordons_own_directories_are_never_write_grants() {
    let home = Home::new();
    let sessions = sessions_dir(&home);
    let policy = super::common::default_policy_with(&home, |_| {});
    for (flags, own) in [
        (
            vec!["--allow-write", sessions.to_str().unwrap()],
            sessions.display().to_string(),
        ),
        (
            vec![
                "--policy",
                policy.as_str(),
                "--allow-write",
                policy.as_str(),
            ],
            policy.clone(),
        ),
    ] {
        let mut args = vec!["exec", "--unsafe-broad-write", "--dry-run"];
        args.extend(flags);
        args.extend(["--", "true"]);
        let out = home.cordon(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{own}: {}", stdout(&out));
        assert_stderr_has(&out, "is cordon's own");
    }
}

/// This home's sessions directory, made as cordon makes it (mode 0700).
fn sessions_dir(home: &Home) -> std::path::PathBuf {
    let sessions = home.runtime_dir().join("cordon");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&sessions)
        .unwrap();
    sessions
}

/// The runtime directory of session `id` in this home, made as cordon makes it (mode 0700).
fn session_dir(home: &Home, id: &str) -> std::path::PathBuf {
    let dir = sessions_dir(home).join(id);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    dir
}

/// Writes, in the session directory `dir`, a `session.json` that names the process `pid` as
/// its cordon.
fn plant_session(dir: &std::path::Path, pid: u32) {
    let id = dir.file_name().unwrap().to_str().unwrap();
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap();
    let info = serde_json::json!({
        "id": id, "front_end": "exec", "command": ["sleep", "60"], "workspace": "/",
        "started": "2026-01-01T00:00:00Z", "pid": pid, "cordon_pid": pid,
        "cordon_key": format!("{pid}-{start}"), "granted_hosts": [], "audit_log": null,
    });
    fs_err::write(dir.join("session.json"), info.to_string()).unwrap();
}

#[test]
fn a_control_socket_served_from_another_pid_namespace_or_never_accepting_is_not_believed() {
    if !running_as_root() {
        return;
    }
    let home = Home::new();
    // A server in a pid namespace of its own (as a sandboxed program is), claiming to be the
    // session's cordon: same uid, and session.json names its real pid and start time.
    let dir = session_dir(&home, "0000000000aa");
    let server = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX); s.bind({:?}); s.listen(8)\n\
         print('ready', flush=True)\n\
         while True:\n\
         \x20   c, _ = s.accept(); c.sendall(b'{{\"ok\": true, \"stopping\": true}}\\n')\n",
        dir.join("control.sock").display().to_string()
    );
    let unshared = started_when_it_says(
        std::process::Command::new("unshare").args([
            "--pid",
            "--fork",
            "--kill-child",
            "python3",
            "-c",
            &server,
        ]),
        "ready",
    );
    let children =
        fs_err::read_to_string(format!("/proc/{0}/task/{0}/children", unshared.0.id())).unwrap();
    let python: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    plant_session(&dir, python);
    let stop = home.cordon(&["stop", "0000000000aa"]).output().unwrap();
    assert!(
        !stop.status.success(),
        "an impostor in another pid namespace was believed"
    );
    assert_stderr_has(&stop, "not served by its cordon");

    // A socket that never accepts: the client gives up instead of waiting for ever.
    let dir = session_dir(&home, "0000000000bb");
    let blocking = never_accepting_socket(&dir.join("control.sock"));
    plant_session(&dir, blocking.0.id());
    let mut stop = KillOnDrop(
        home.cordon(&["stop", "0000000000bb"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until(
        "cordon stop to give up on a socket that never accepts",
        15,
        || stop.0.try_wait().unwrap().is_some(),
    );
    assert!(!stop.0.wait().unwrap().success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stop.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("no connection within 5 s"), "{err}");
}

#[test]
fn a_sessions_directory_reached_through_a_link_is_refused() {
    let home = Home::new();
    let real = home.path().join("real-run");
    fs_err::create_dir(&real).unwrap();
    fs_err::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = home.path().join("run-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = home
        .cordon(&["ps"])
        .env("XDG_RUNTIME_DIR", &link)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_stderr_has(&out, "symbolic link");
}
