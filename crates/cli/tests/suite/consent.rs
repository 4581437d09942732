//! Consent end to end: a sandboxed `curl` to a host the policy asks about waits for a
//! person's answer given through real surfaces (`cordon approve`, the control socket), and
//! the answers, the questions and the timeouts are in the audit log.

use std::process::Output;

use super::common::{
    assert_stderr_has, default_policy_with, exec_script, json, read_or_empty, sandbox_ready,
    stderr, stdout, wait_until, Home, KillOnDrop, Listener,
};

/// A copy of the default policy whose `net` decision allows what the person remembered
/// (`data.cordon.remembered`), asks about 127.0.0.1 (the test's own server) when one can be
/// asked, and denies everything else. The default policy asks only about public hosts and
/// never about loopback; its own rules are tested in `net_test.rego`.
fn asking_policy(home: &Home) -> String {
    let dir = default_policy_with(home, |_| {});
    let dir_path = std::path::Path::new(&dir);
    fs_err::remove_file(dir_path.join("net_test.rego")).unwrap();
    fs_err::write(
        dir_path.join("net.rego"),
        r#"package cordon.net

import rego.v1

default decision := {"allow": false, "reasons": ["not the test's server"], "obligations": []}

decision := {"allow": true, "reasons": ["remembered"], "obligations": []} if {
	data.cordon.remembered.net[sprintf("%s:%d", [input.resource.host, input.resource.port])]
} else := {
	"allow": true,
	"reasons": [sprintf("asking about %s:%d", [input.resource.host, input.resource.port])],
	"obligations": [{"type": "consent", "message": "Let the test's curl in?"}],
} if {
	input.resource.host == "127.0.0.1"
	input.context.consent.interactive == true
}
"#,
    )
    .unwrap();
    dir
}

/// `cordon exec FLAGS -- bash -c SCRIPT` started in this home, its output kept.
fn spawn_exec(home: &Home, flags: &[&str], script: &str) -> KillOnDrop {
    KillOnDrop(
        exec_script(home, flags, "bash", script)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// A request to the server; its status code goes to out.txt as `LABEL=CODE`.
fn one_request(port: u16, label: &str) -> String {
    format!(
        "curl -s -m 30 -o /dev/null -w '{label}=%{{http_code}}\\n' http://127.0.0.1:{port}/x >> out.txt"
    )
}

/// Two requests to the server, one after the other; their status codes go to out.txt.
fn two_requests(port: u16) -> String {
    format!(
        "curl -s -m 30 -o /dev/null -w 'one=%{{http_code}}\\n' http://127.0.0.1:{port}/one >> out.txt; \
         curl -s -m 30 -o /dev/null -w 'two=%{{http_code}}\\n' http://127.0.0.1:{port}/two >> out.txt"
    )
}

/// The requests waiting in this home's sessions, as `cordon approve --json` lists them.
fn waiting(home: &Home) -> Vec<serde_json::Value> {
    let out = home.cordon(&["approve", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out).as_array().cloned().unwrap_or_default()
}

/// Waits for exactly one request to be waiting, and returns it.
fn the_question(home: &Home) -> serde_json::Value {
    let mut listed = Vec::new();
    wait_until("a request waiting for an answer", 30, || {
        listed = waiting(home);
        !listed.is_empty()
    });
    assert_eq!(listed.len(), 1, "{listed:?}");
    listed.remove(0)
}

fn consent_records(home: &Home) -> Vec<serde_json::Value> {
    let out = home
        .cordon(&["audit", "query", "--capability", "consent", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (at most a minute) for the session to end, and returns what it printed.
fn finish(mut exec: KillOnDrop) -> Output {
    let child = &mut exec.0;
    let mut status = None;
    wait_until("the session to end", 60, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let read = |stream: Option<&mut dyn std::io::Read>| {
        let mut bytes = Vec::new();
        if let Some(stream) = stream {
            stream.read_to_end(&mut bytes).unwrap();
        }
        bytes
    };
    let stdout = read(child.stdout.as_mut().map(|s| s as &mut dyn std::io::Read));
    let stderr = read(child.stderr.as_mut().map(|s| s as &mut dyn std::io::Read));
    Output {
        status: status.unwrap(),
        stdout,
        stderr,
    }
}

#[test]
fn allowed_for_the_session_on_the_socket_the_request_passes_and_the_next_is_not_asked() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    let exec = spawn_exec(
        &home,
        &["--policy", &policy, "--consent", "socket"],
        &two_requests(server.port),
    );

    let question = the_question(&home);
    assert_eq!(
        question["what"],
        format!("connect to 127.0.0.1:{} (now: GET /one)", server.port)
    );
    assert_eq!(question["message"], "Let the test's curl in?");
    assert_eq!(
        question["scopes"],
        serde_json::json!(["once", "session", "minutes", "always"])
    );
    // Nothing reached the server while the question waits.
    assert_eq!(server.received(), 0);

    let id = question["id"].as_str().unwrap();
    // `cordon approve --watch` prints it as it comes (and keeps watching until stopped).
    let mut watch = KillOnDrop(
        home.cordon(&["approve", "--watch", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(watch.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let watched: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(watched["id"], question["id"]);
    drop(watch);
    let answered = home
        .cordon(&["approve", id, "--allow", "--for", "session"])
        .output()
        .unwrap();
    assert!(answered.status.success(), "{}", stderr(&answered));
    assert_stderr_has(&answered, "allowed by the person");

    let out = finish(exec);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = read_or_empty(home.workspace().join("out.txt"));
    assert!(
        text.contains("one=200") && text.contains("two=200"),
        "{text}"
    );
    assert!(server.received() > 0);

    // One question, one answer, with who answered; the second request was not asked.
    let records = consent_records(&home);
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["prompt", "answer"], "{records:#?}");
    let answer = &records[1];
    assert_eq!(answer["allow"], true);
    let by = answer["input"]["consent"]["answer"]["by"].as_str().unwrap();
    assert!(by.starts_with("socket (pid "), "{by}");
    assert_eq!(answer["input"]["consent"]["answer"]["scope"], "session");
}

#[test]
fn a_denial_and_a_timeout_refuse_the_connection_and_are_recorded() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    let script = one_request(server.port, "denied");
    let exec = spawn_exec(
        &home,
        &["--policy", &policy, "--consent", "socket"],
        &script,
    );
    let question = the_question(&home);
    let id = question["id"].as_str().unwrap().to_owned();
    // A malformed scope and an unknown request change nothing.
    let bad = home
        .cordon(&["approve", &id, "--allow", "--for", "forever"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let unknown = home
        .cordon(&["approve", "ffffffffffff", "--allow"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert_stderr_has(&unknown, "no running session is waiting");
    assert_eq!(waiting(&home).len(), 1);

    let denied = home.cordon(&["approve", &id, "--deny"]).output().unwrap();
    assert!(denied.status.success(), "{}", stderr(&denied));
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(read_or_empty(home.workspace().join("out.txt")).contains("denied=403"));
    assert_eq!(server.received(), 0);

    // No answer within the timeout: denied, and recorded as a timeout.
    fs_err::remove_file(home.workspace().join("out.txt")).unwrap();
    let started = std::time::Instant::now();
    let out = exec_script(
        &home,
        &[
            "--policy",
            &policy,
            "--consent",
            "socket",
            "--consent-timeout",
            "1",
        ],
        "bash",
        &script,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert!(read_or_empty(home.workspace().join("out.txt")).contains("denied=403"));
    let actions: Vec<String> = consent_records(&home)
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["prompt", "answer", "prompt", "timeout"]);
    assert_eq!(server.received(), 0);
}

#[test]
fn a_question_still_waiting_when_the_program_ends_is_denied_on_the_record_before_the_end() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    // The question is left waiting in the background; the program ends once it is asked.
    let script = format!(
        "({}) & for i in $(seq 600); do [ -e go ] && exit 7; sleep 0.1; done; exit 1",
        one_request(server.port, "late")
    );
    let exec = spawn_exec(
        &home,
        &["--policy", &policy, "--consent", "socket"],
        &script,
    );
    the_question(&home);
    fs_err::write(home.workspace().join("go"), "").unwrap();
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(server.received(), 0);
    let all = home.cordon(&["audit", "query", "--json"]).output().unwrap();
    assert!(all.status.success(), "{}", stderr(&all));
    let records: Vec<serde_json::Value> = stdout(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let what: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["capability"].as_str().unwrap_or(""),
                r["action"].as_str().unwrap_or(""),
                r["outcome"].as_str().unwrap_or("")
            )
        })
        .collect();
    // The question is answered "no" by the session's end, the connection refused on that
    // answer, and both recorded before the session's own last record.
    let at = |wanted: &str| {
        what.iter()
            .position(|w| w.starts_with(wanted))
            .unwrap_or_else(|| panic!("no `{wanted}` in {what:#?}"))
    };
    let ended = at("consent ended");
    let refused = what
        .iter()
        .rposition(|w| w.starts_with("net ") && w.ends_with(" refused"))
        .unwrap_or_else(|| panic!("no refused connection in {what:#?}"));
    assert!(at("consent prompt") < ended, "{what:#?}");
    assert!(
        ended < what.len() - 1 && refused < what.len() - 1,
        "{what:#?}"
    );
    assert!(what.last().unwrap().starts_with("sandbox "), "{what:#?}");
    let reason = records[ended]["reasons"][0].as_str().unwrap_or("");
    assert!(reason.contains("the session ended"), "{:#}", records[ended]);
}

#[test]
fn without_anyone_to_ask_the_request_is_denied_with_how_to_answer_next_time() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    // The default backend without a terminal is `deny`: the policy sees no one to ask.
    let script = one_request(server.port, "code");
    let out = exec_script(&home, &["--policy", &policy], "bash", &script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(read_or_empty(home.workspace().join("out.txt")).contains("code=403"));
    // The explicit `deny` backend, with a policy that asks whether or not anyone can answer.
    let dir = std::path::Path::new(&policy);
    let text = fs_err::read_to_string(dir.join("net.rego")).unwrap();
    fs_err::write(
        dir.join("net.rego"),
        text.replace("\tinput.context.consent.interactive == true\n", ""),
    )
    .unwrap();
    let out = exec_script(
        &home,
        &["--policy", &policy, "--consent", "deny"],
        "bash",
        &script,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = home
        .cordon(&["audit", "query", "--capability", "net", "--json"])
        .output()
        .unwrap();
    let last: serde_json::Value =
        serde_json::from_str(stdout(&records).lines().last().unwrap()).unwrap();
    assert_eq!(last["allow"], false);
    let reason = last["reasons"][0].as_str().unwrap();
    assert!(reason.contains("cordon approve"), "{reason}");
    assert_eq!(server.received(), 0);
    // An unknown backend is refused before anything runs.
    let out = exec_script(&home, &["--consent", "telepathy"], "true", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_stderr_has(&out, "unknown consent backend");
}

#[test]
fn always_is_remembered_for_the_next_session_and_can_be_forgotten() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    let script = one_request(server.port, "code");
    let exec = spawn_exec(
        &home,
        &["--policy", &policy, "--consent", "socket"],
        &script,
    );
    let id = the_question(&home)["id"].as_str().unwrap().to_owned();
    let answered = home
        .cordon(&["approve", &id, "--allow", "--for", "always"])
        .output()
        .unwrap();
    assert!(answered.status.success(), "{}", stderr(&answered));
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let key = format!("net:127.0.0.1:{}", server.port);
    let listed = home
        .cordon(&["approve", "--list-remembered"])
        .output()
        .unwrap();
    assert!(stdout(&listed).contains(&key), "{}", stdout(&listed));
    let file = home.path().join("config/cordon/remembered.json");
    let remembered: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&file).unwrap()).unwrap();
    assert!(
        remembered["net"][format!("127.0.0.1:{}", server.port)]["by"]
            .as_str()
            .unwrap()
            .starts_with("socket")
    );

    // The next session has no one to ask, and the remembered answer lets it through: the
    // policy read it as data.
    let alone = |home: &Home| {
        fs_err::remove_file(home.workspace().join("out.txt")).unwrap();
        let out = exec_script(
            home,
            &["--policy", &policy, "--consent", "deny"],
            "bash",
            &script,
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        read_or_empty(home.workspace().join("out.txt"))
    };
    assert!(alone(&home).contains("code=200"));

    let forgotten = home
        .cordon(&["approve", "--forget", &key])
        .output()
        .unwrap();
    assert!(forgotten.status.success(), "{}", stderr(&forgotten));
    let again = home
        .cordon(&["approve", "--forget", &key])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(alone(&home).contains("code=403"));
    let actions: Vec<String> = consent_records(&home)
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["prompt", "remember", "answer", "forget"]);
}

/// What the person's terminal showed, as the test reads it from its side of a real pty.
struct Terminal {
    master: std::fs::File,
    shown: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Opens a pty and collects what is written to it; the other side goes to `command`'s
    /// standard input, output and error.
    fn attach(command: &mut std::process::Command) -> Self {
        let (master, slave) = cordon_sys::process::open_pseudo_terminal().unwrap();
        command
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        let master = std::fs::File::from(master);
        let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = std::sync::Arc::clone(&shown);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once nothing holds the other side.
            while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self { master, shown }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).into_owned()
    }

    /// Waits for `needle` to be shown, then types `keys` after a pause longer than the
    /// quiet time a question waits for.
    fn answer(&mut self, needle: &str, keys: &[u8]) {
        self.wait_for(needle);
        std::thread::sleep(std::time::Duration::from_millis(1300));
        std::io::Write::write_all(&mut self.master, keys).unwrap();
    }

    fn wait_for(&self, needle: &str) {
        wait_until(&format!("`{needle}` on the terminal"), 30, || {
            self.text().contains(needle)
        });
    }

    /// Types `keys` one at a time, `gap` apart, as a person does.
    fn type_slowly(&mut self, keys: &[u8], gap: std::time::Duration) {
        for key in keys {
            std::io::Write::write_all(&mut self.master, &[*key]).unwrap();
            std::thread::sleep(gap);
        }
    }
}

#[test]
fn the_terminal_asks_the_person_and_the_program_cannot_answer_for_them() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    let question = format!("asks to connect to 127.0.0.1:{}", server.port);
    // While its request waits, the program types every answer there is into its own
    // terminal, again and again; before it, it leaves a window-title sequence open, which
    // would swallow the question if nothing closed it.
    let script = format!(
        "printf '\\033]2;x'; (for i in $(seq 1 300); do printf 'y\\ns\\na\\n'; sleep 0.01; done) & \
         curl -s -m 30 -o /dev/null -w 'first=%{{http_code}}\\n' http://127.0.0.1:{p}/a >> out.txt; \
         wait; echo first-done",
        p = server.port
    );
    let mut command = home.cordon(&[
        "exec",
        "--policy",
        &policy,
        "--consent",
        "terminal",
        "--",
        "bash",
        "-c",
        &script,
    ]);
    command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    let mut terminal = Terminal::attach(&mut command);
    let exec = KillOnDrop(command.spawn().unwrap());
    // The person is typing when the question comes, and goes on: keys typed before the
    // keyboard was quiet for a second answer nothing, whatever they spell.
    terminal.wait_for(&question);
    terminal.type_slowly(b"say yes always\r", std::time::Duration::from_millis(80));
    terminal.answer(&question, b"n\r");
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(0), "{}", terminal.text());
    assert!(
        read_or_empty(home.workspace().join("out.txt")).contains("first=403"),
        "{}",
        terminal.text()
    );
    assert_eq!(server.received(), 0);
    let shown = terminal.text();
    assert!(shown.contains("first-done"), "{shown}");
    // The question was answered by the person, with the key typed on the terminal, and the
    // program's flood of answers (its own terminal's output) never reached it, nor showed
    // in the middle of it.
    let records = consent_records(&home);
    let answer = records.iter().find(|r| r["action"] == "answer").unwrap();
    assert_eq!(answer["allow"], false, "{answer:#}");
    assert_eq!(answer["input"]["consent"]["answer"]["by"], "terminal");
    let start = shown.find(&question).unwrap();
    let end = start + shown[start..].find("denied by the person").unwrap();
    assert!(
        !shown[start..end].contains("a\r\ny\r\n"),
        "{:?}",
        &shown[start..end]
    );

    // Allowed for the session on the terminal: both requests pass, one question.
    fs_err::remove_file(home.workspace().join("out.txt")).unwrap();
    let mut command = home.cordon(&[
        "exec",
        "--policy",
        &policy,
        "--consent",
        "terminal",
        "--",
        "bash",
        "-c",
        &two_requests(server.port),
    ]);
    command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    let mut terminal = Terminal::attach(&mut command);
    let exec = KillOnDrop(command.spawn().unwrap());
    terminal.answer(&question, b"s\r");
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(0), "{}", terminal.text());
    let text = read_or_empty(home.workspace().join("out.txt"));
    assert!(
        text.contains("one=200") && text.contains("two=200"),
        "{text}"
    );
    assert_eq!(
        terminal.text().matches(&question).count(),
        1,
        "{}",
        terminal.text()
    );
}

/// Enrolls an authenticator in `home` as a person would (`cordon mfa enroll`, typing the
/// code an authenticator computes from the secret shown); returns the secret and that code.
fn enroll(home: &Home) -> (String, String) {
    let mut child = KillOnDrop(
        home.cordon(&["mfa", "enroll", "--json"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let shown: serde_json::Value = serde_json::from_str(&line).unwrap();
    let secret = shown["secret"].as_str().unwrap().to_owned();
    assert!(shown["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/cordon:"));
    let code = cordon_supervisor::consent::mfa::code_at(&secret, now()).unwrap();
    std::io::Write::write_all(
        child.0.stdin.as_mut().unwrap(),
        format!("{code}\n").as_bytes(),
    )
    .unwrap();
    let out = finish(child);
    assert!(out.status.success(), "{}", stderr(&out));
    (secret, code)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn mfa_passes_with_a_valid_code_and_never_with_a_wrong_or_replayed_one() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    let net = std::path::Path::new(&policy).join("net.rego");
    let text = fs_err::read_to_string(&net).unwrap();
    fs_err::write(
        &net,
        text.replace(
            r#"[{"type": "consent", "message": "Let the test's curl in?"}]"#,
            r#"[{"type": "mfa"}]"#,
        ),
    )
    .unwrap();
    let script = one_request(server.port, "code");
    let run =
        |home: &Home| spawn_exec(home, &["--policy", &policy, "--consent", "socket"], &script);

    // Not enrolled: denied without a question.
    let out = finish(run(&home));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(read_or_empty(home.workspace().join("out.txt")).contains("code=403"));
    fs_err::remove_file(home.workspace().join("out.txt")).unwrap();

    let (secret, enrolment_code) = enroll(&home);
    let exec = run(&home);
    let question = the_question(&home);
    assert_eq!(question["code"], true);
    assert_eq!(question["scopes"], serde_json::json!(["once"]));
    let id = question["id"].as_str().unwrap().to_owned();
    let answer = |code: &str| {
        home.cordon(&["approve", &id, "--allow", "--code", code])
            .output()
            .unwrap()
    };
    // No code, a wrong code, the enrolment's code again: refused, and the request waits.
    let none = home.cordon(&["approve", &id, "--allow"]).output().unwrap();
    assert_stderr_has(&none, "needs a one-time code");
    let wrong = if enrolment_code == "000000" {
        "111111"
    } else {
        "000000"
    };
    let out = answer(wrong);
    assert!(!out.status.success());
    assert_stderr_has(&out, "wrong code");
    let out = answer(&enrolment_code);
    assert!(!out.status.success());
    assert_stderr_has(&out, "already used");
    assert_eq!(waiting(&home).len(), 1);
    assert_eq!(server.received(), 0);
    // The next step's code (within the accepted skew) is fresh: accepted.
    let next = cordon_supervisor::consent::mfa::code_at(&secret, now() + 30).unwrap();
    let out = answer(&next);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(read_or_empty(home.workspace().join("out.txt")).contains("code=200"));
    assert!(server.received() > 0);

    let actions: Vec<String> = consent_records(&home)
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "mfa_enroll",
            "prompt",
            "mfa_refused",
            "mfa_refused",
            "answer"
        ],
    );
}

#[test]
fn remembered_answers_kept_elsewhere_are_still_out_of_the_programs_reach() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let shared = home.workspace().join("shared");
    fs_err::create_dir_all(&shared).unwrap();
    let file = shared.join("remembered.json");
    fs_err::create_dir_all(home.path().join("config/cordon")).unwrap();
    fs_err::write(
        home.path().join("config/cordon/config.toml"),
        format!("[consent]\nremembered = \"{}\"\n", file.display()),
    )
    .unwrap();
    // Without the sandbox, the forged answer would be written.
    let forge = r#"echo '{"net": {"evil.example:443": {"by": "terminal"}}}' > shared/remembered.json; mv shared/remembered.json shared/moved; echo done"#;
    let out = exec_script(&home, &["--allow-write", "shared"], "bash", forge)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs_err::read_to_string(&file).unwrap(), "{}\n");
    assert!(!shared.join("moved").exists());
    let listed = home
        .cordon(&["approve", "--list-remembered"])
        .output()
        .unwrap();
    assert!(!stdout(&listed).contains("evil"), "{}", stdout(&listed));
}

#[test]
fn a_personal_folder_is_granted_only_once_the_person_answers() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let taxes = home.path().join("Documents/taxes");
    fs_err::create_dir_all(&taxes).unwrap();
    fs_err::write(taxes.join("return.txt"), "income: 42").unwrap();
    let grant = taxes.display().to_string();
    let read = format!("cat {grant}/return.txt");
    let launch = |home: &Home, flags: &[&str]| {
        let mut args = vec!["--allow-read", grant.as_str()];
        args.extend_from_slice(flags);
        let mut command = exec_script(home, &args, "bash", &read);
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };

    // No one to ask: refused before anything runs.
    let out = launch(&home, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_stderr_has(&out, "personal folder");

    // Asked on the socket and denied: refused, nothing ran.
    let exec = KillOnDrop(launch(&home, &["--consent", "socket"]).spawn().unwrap());
    let question = the_question(&home);
    assert_eq!(question["key"], format!("sandbox:read:{grant}"));
    let id = question["id"].as_str().unwrap().to_owned();
    let denied = home.cordon(&["approve", &id, "--deny"]).output().unwrap();
    assert!(denied.status.success(), "{}", stderr(&denied));
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(!stdout(&out).contains("income"));

    // Asked on the terminal before the program starts, and allowed.
    let mut command = home.cordon(&[
        "exec",
        "--allow-read",
        &grant,
        "--consent",
        "terminal",
        "--",
        "bash",
        "-c",
        &read,
    ]);
    command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    let mut terminal = Terminal::attach(&mut command);
    let exec = KillOnDrop(command.spawn().unwrap());
    terminal.answer("see your personal folder", b"y\r");
    let out = finish(exec);
    assert_eq!(out.status.code(), Some(0), "{}", terminal.text());
    terminal.wait_for("income: 42");
    let records = consent_records(&home);
    let by: Vec<&str> = records
        .iter()
        .filter(|r| r["action"] == "answer")
        .map(|r| r["input"]["consent"]["answer"]["by"].as_str().unwrap())
        .collect();
    assert_eq!(by.len(), 2, "{records:#?}");
    assert_eq!(by[1], "terminal");
}

/// The notifications a service was shown: summary and actions.
type Shown = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<String>)>>>;

/// A private session bus (`dbus-daemon`) with a notification service that answers every
/// notification it is shown by invoking `action` (after a moment, as a person clicks).
struct Desktop {
    address: String,
    _daemon: KillOnDrop,
    _service: zbus::blocking::Connection,
    shown: Shown,
}

struct Notifications {
    connection: std::sync::Arc<std::sync::OnceLock<zbus::blocking::Connection>>,
    shown: Shown,
    action: &'static str,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments, reason = "the D-Bus method's signature")]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        _body: String,
        actions: Vec<String>,
        _hints: std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let id = {
            let mut shown = self.shown.lock().unwrap();
            shown.push((summary, actions));
            u32::try_from(shown.len()).unwrap()
        };
        let (connection, action) = (std::sync::Arc::clone(&self.connection), self.action);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let connection = connection.get().unwrap();
            connection
                .emit_signal(
                    None::<zbus::names::BusName<'_>>,
                    "/org/freedesktop/Notifications",
                    "org.freedesktop.Notifications",
                    "ActionInvoked",
                    &(id, action),
                )
                .unwrap();
        });
        id
    }

    fn close_notification(&self, _id: u32) {}
}

impl Desktop {
    /// `None` (after saying why) where dbus-daemon is missing.
    fn start(home: &Home, action: &'static str) -> Option<Self> {
        let socket = home.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        let daemon = std::process::Command::new("dbus-daemon")
            .args([
                "--session",
                "--nofork",
                "--nopidfile",
                "--address",
                &address,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(daemon) = daemon else {
            super::common::skip("dbus-daemon is not installed");
            return None;
        };
        let daemon = KillOnDrop(daemon);
        wait_until("the session bus", 10, || socket.exists());
        let shown = std::sync::Arc::default();
        let connection = std::sync::Arc::new(std::sync::OnceLock::new());
        let service = zbus::blocking::connection::Builder::address(address.as_str())
            .unwrap()
            .serve_at(
                "/org/freedesktop/Notifications",
                Notifications {
                    connection: std::sync::Arc::clone(&connection),
                    shown: std::sync::Arc::clone(&shown),
                    action,
                },
            )
            .unwrap()
            .name("org.freedesktop.Notifications")
            .unwrap()
            .build()
            .unwrap();
        connection.set(service.clone()).unwrap();
        Some(Self {
            address,
            _daemon: daemon,
            _service: service,
            shown,
        })
    }
}

#[test]
fn a_desktop_notification_answers_the_question() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let Some(desktop) = Desktop::start(&home, "session") else {
        return;
    };
    let server = Listener::start();
    let policy = asking_policy(&home);
    let out = exec_script(
        &home,
        &["--policy", &policy, "--consent", "notify"],
        "bash",
        &two_requests(server.port),
    )
    .env("DBUS_SESSION_BUS_ADDRESS", &desktop.address)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = read_or_empty(home.workspace().join("out.txt"));
    assert!(
        text.contains("one=200") && text.contains("two=200"),
        "{text}"
    );
    // One notification, with the scopes as actions, for both requests.
    let shown = desktop.shown.lock().unwrap().clone();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0]
            .0
            .contains(&format!("asks to connect to 127.0.0.1:{}", server.port)),
        "{shown:?}"
    );
    assert!(shown[0].1.contains(&"session".to_owned()), "{shown:?}");
    let records = consent_records(&home);
    let answer = records.iter().find(|r| r["action"] == "answer").unwrap();
    assert_eq!(answer["input"]["consent"]["answer"]["by"], "notify");

    // A click on Deny refuses.
    let home = Home::new();
    let Some(desktop) = Desktop::start(&home, "deny") else {
        return;
    };
    let policy = asking_policy(&home);
    let out = exec_script(
        &home,
        &["--policy", &policy, "--consent", "notify"],
        "bash",
        &two_requests(server.port),
    )
    .env("DBUS_SESSION_BUS_ADDRESS", &desktop.address)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = read_or_empty(home.workspace().join("out.txt"));
    assert!(text.contains("one=403"), "{text}");
}

#[test]
fn a_link_planted_while_the_person_is_asked_does_not_change_what_is_granted() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let tools = home.path().join("Documents/proj/tools");
    fs_err::create_dir_all(tools.join("gh")).unwrap();
    let secret_dir = home.path().join(".config/gh");
    fs_err::create_dir_all(&secret_dir).unwrap();
    fs_err::write(secret_dir.join("hosts.yml"), "oauth_token: gho_SECRET").unwrap();
    let grant = tools.join("gh").display().to_string();
    let exec = spawn_exec(
        &home,
        &["--consent", "socket", "--allow-read", &grant],
        &format!("cat {grant}/hosts.yml"),
    );
    let id = the_question(&home)["id"].as_str().unwrap().to_owned();
    // Meanwhile, another agent with the parent writable turns a folder on the way into a
    // link to a secrets location.
    fs_err::rename(&tools, home.path().join("Documents/proj/tools.orig")).unwrap();
    std::os::unix::fs::symlink(home.path().join(".config"), &tools).unwrap();
    let answered = home.cordon(&["approve", &id, "--allow"]).output().unwrap();
    assert!(answered.status.success(), "{}", stderr(&answered));
    let out = finish(exec);
    assert!(!stdout(&out).contains("gho_SECRET"), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_stderr_has(&out, "a link appeared on its way");
}

#[test]
fn stopping_a_session_while_its_launch_is_asked_about_starts_nothing() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let folder = home.path().join("Documents");
    fs_err::create_dir_all(&folder).unwrap();
    let grant = folder.display().to_string();
    let exec = spawn_exec(
        &home,
        &["--consent", "socket", "--allow-read", &grant],
        "echo STARTED > started.txt",
    );
    let question = the_question(&home);
    let stopped = home
        .cordon(&["stop", question["session"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let out = finish(exec);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!home.workspace().join("started.txt").exists());
    assert!(waiting(&home).is_empty());
}

#[test]
fn a_recent_code_stands_in_for_a_new_one_but_never_for_the_question() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let server = Listener::start();
    let policy = asking_policy(&home);
    let net = std::path::Path::new(&policy).join("net.rego");
    let text = fs_err::read_to_string(&net).unwrap();
    fs_err::write(
        &net,
        text.replace(
            r#"[{"type": "consent", "message": "Let the test's curl in?"}]"#,
            r#"[{"type": "consent", "message": "Deploy?", "scopes": ["once"]}, {"type": "mfa", "max_age_s": 3600}]"#,
        ),
    )
    .unwrap();
    let (secret, _) = enroll(&home);
    // Enrolling is no verification: the first request needs a code.
    let exec = spawn_exec(
        &home,
        &["--policy", &policy, "--consent", "socket"],
        &one_request(server.port, "first"),
    );
    let question = the_question(&home);
    assert_eq!(question["code"], true);
    let code = cordon_supervisor::consent::mfa::code_at(&secret, now() + 30).unwrap();
    let id = question["id"].as_str().unwrap().to_owned();
    let out = home
        .cordon(&["approve", &id, "--allow", "--code", &code])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(finish(exec).status.code(), Some(0));
    // Within the hour, the next one is asked again (the person consents each time), without
    // a code.
    let exec = spawn_exec(
        &home,
        &["--policy", &policy, "--consent", "socket"],
        &one_request(server.port, "second"),
    );
    let question = the_question(&home);
    assert_eq!(question["code"], false);
    assert_eq!(question["message"], "Deploy?");
    let id = question["id"].as_str().unwrap().to_owned();
    let out = home.cordon(&["approve", &id, "--allow"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(finish(exec).status.code(), Some(0));
    let text = read_or_empty(home.workspace().join("out.txt"));
    assert!(
        text.contains("first=200") && text.contains("second=200"),
        "{text}"
    );
    let actions: Vec<String> = consent_records(&home)
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.contains(&"mfa_session".to_owned()), "{actions:?}");
}

#[test]
fn personal_folders_named_in_another_language_or_reached_through_a_link_are_asked_about() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let config = home.path().join("config");
    fs_err::create_dir_all(&config).unwrap();
    fs_err::create_dir_all(home.path().join("Dokumente/steuer")).unwrap();
    fs_err::create_dir_all(home.path().join("realpics")).unwrap();
    std::os::unix::fs::symlink(home.path().join("realpics"), home.path().join("Bilder")).unwrap();
    fs_err::write(
        config.join("user-dirs.dirs"),
        "XDG_DOCUMENTS_DIR=\"$HOME/Dokumente\"\nXDG_PICTURES_DIR=\"$HOME/Bilder\"\n",
    )
    .unwrap();
    for grant in ["Dokumente/steuer", "realpics"] {
        let path = home.path().join(grant).display().to_string();
        let out = exec_script(
            &home,
            &["--consent", "deny", "--allow-read", &path],
            "true",
            "",
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(125), "{grant}: {}", stderr(&out));
        assert_stderr_has(&out, "personal folder");
    }
}
