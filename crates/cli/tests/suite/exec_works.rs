//! Everyday workloads inside `cordon exec`, each checked from outside; the interactive
//! terminal; exit statuses; bad input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;

use super::common::{
    assert_stderr_has, default_policy_with, exec_script, read_or_empty as read, sandbox_ready,
    stderr, Home, KillOnDrop,
};

fn inside(home: &Home, flags: &[&str], script: &str) -> Output {
    exec_script(home, flags, "bash", script).output().unwrap()
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

#[test]
fn git_init_commit_and_clone() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let out = inside(
        &home,
        &[],
        "set -e; git init -q repo; cd repo; git config user.email a@b; git config user.name A; \
         echo hi > f; git add f; git commit -qm first; cd ..; git clone -q repo copy",
    );
    ok(&out);
    let log = Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(home.workspace().join("copy"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout), "first\n");
}

#[test]
fn make_and_gcc_build_and_run() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let work = home.workspace();
    fs_err::write(
        work.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello from make\"); return 0; }\n",
    )
    .unwrap();
    fs_err::write(
        work.join("Makefile"),
        "out.txt: hello\n\t./hello > out.txt\nhello: hello.c\n\tgcc -O2 -o hello hello.c\n",
    )
    .unwrap();
    ok(&inside(&home, &[], "make -s"));
    assert_eq!(read(work.join("out.txt")), "hello from make\n");
}

/// A wheel built by hand: enough for pip to install from a local index.
fn write_wheel(dir: &Path) {
    fs_err::create_dir_all(dir).unwrap();
    let script = format!(
        "import zipfile\n\
         z = zipfile.ZipFile('{}/cordonprobe-1.0-py3-none-any.whl', 'w')\n\
         z.writestr('cordonprobe/__init__.py', 'VALUE = 42\\n')\n\
         z.writestr('cordonprobe-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: cordonprobe\\nVersion: 1.0\\n')\n\
         z.writestr('cordonprobe-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         z.writestr('cordonprobe-1.0.dist-info/RECORD', '')\n\
         z.close()\n",
        dir.display()
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn python_venv_and_pip_from_a_local_index() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    write_wheel(&home.workspace().join("wheels"));
    let out = inside(
        &home,
        &[],
        "set -e; /usr/bin/python3 -m venv venv; \
         venv/bin/pip install -q --no-index --find-links wheels cordonprobe; \
         venv/bin/python -c 'import cordonprobe; print(cordonprobe.VALUE)' > out.txt",
    );
    ok(&out);
    assert_eq!(read(home.workspace().join("out.txt")), "42\n");
}

#[test]
fn node_and_npm_install_a_local_package() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let package = home.workspace().join("localpkg");
    fs_err::create_dir_all(&package).unwrap();
    fs_err::write(
        package.join("package.json"),
        r#"{"name": "localpkg", "version": "1.0.0", "main": "index.js"}"#,
    )
    .unwrap();
    fs_err::write(package.join("index.js"), "module.exports = { v: 7 };\n").unwrap();
    let out = inside(
        &home,
        &[],
        "set -e; mkdir app; cd app; npm init -y > /dev/null; \
         npm install --offline --no-audit --no-fund ../localpkg > /dev/null; \
         node -e \"console.log(require('localpkg').v)\" > ../out.txt",
    );
    ok(&out);
    assert_eq!(read(home.workspace().join("out.txt")), "7\n");
}

#[test]
fn cargo_builds_a_crate() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").into()));
    let cargo = fs_err::canonicalize(&cargo).unwrap();
    let toolchain = cargo.parent().unwrap().parent().unwrap().to_path_buf();
    let rustc = toolchain.join("bin/rustc");
    let toolchain_arg = toolchain.display().to_string();
    let script = format!(
        "set -e; export CARGO_HOME=$PWD/.cargo-home RUSTC={}; {} new -q --offline hello; cd hello; \
         {} build -q --offline; ./target/debug/hello > ../out.txt",
        rustc.display(),
        cargo.display(),
        cargo.display()
    );
    let out = inside(&home, &["--allow-read", &toolchain_arg], &script);
    ok(&out);
    assert_eq!(read(home.workspace().join("out.txt")), "Hello, world!\n");
}

#[test]
fn jobs_signals_and_timeout() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let out = inside(
        &home,
        &[],
        "sleep 5 & p=$!; kill -TERM $p; wait $p; echo \"killed:$?\" > out.txt; \
         timeout 0.2 sleep 5; echo \"timeout:$?\" >> out.txt; \
         trap 'echo trapped >> out.txt' USR1; kill -USR1 $$; \
         (sleep 0.1; echo background >> out.txt) & wait",
    );
    ok(&out);
    assert_eq!(
        read(home.workspace().join("out.txt")),
        "killed:143\ntimeout:124\ntrapped\nbackground\n"
    );
}

#[test]
fn large_pipes_inside_and_through_the_standard_streams() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    ok(&inside(
        &home,
        &[],
        "head -c 400M /dev/zero | wc -c > out.txt",
    ));
    assert_eq!(read(home.workspace().join("out.txt")).trim(), "419430400");

    // 200 MiB out through cordon's stdout, and 64 MiB in through its stdin.
    let out = inside(&home, &[], "head -c 200M /dev/zero");
    ok(&out);
    assert_eq!(out.stdout.len(), 200 << 20);
    let mut child = home
        .cordon(&["exec", "--", "wc", "-c"])
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&vec![b'x'; 64 << 20]).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "67108864");
}

#[test]
fn same_paths_inside_and_a_private_writable_home() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let out = inside(
        &home,
        &[],
        "pwd > out.txt; echo \"$HOME\" >> out.txt; touch ~/scratch && mkdir -p ~/.cache/tool && echo home-ok >> out.txt",
    );
    ok(&out);
    assert_eq!(
        read(home.workspace().join("out.txt")),
        format!(
            "{}\n{}\nhome-ok\n",
            home.workspace().display(),
            home.path().display()
        )
    );
    assert!(!home.path().join("scratch").exists());
}

#[test]
fn exit_status_is_the_programs() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    assert_eq!(inside(&home, &[], "exit 7").status.code(), Some(7));
    assert_eq!(inside(&home, &[], "kill -9 $$").status.code(), Some(137));
}

#[test]
fn a_missing_program_exits_127_with_a_message() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let out = home
        .cordon(&["exec", "--", "no-such-program-xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        stderr(&out).trim(),
        "error: cannot run `no-such-program-xyz` in the sandbox: No such file or directory (os error 2)"
    );
}

#[test]
fn bad_input_is_refused_with_exit_125() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let out = home
        .cordon(&["exec", "--allow-read", "/no/such/path", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_stderr_has(&out, "cannot grant `/no/such/path`: it does not exist");

    let policy = home.path().join("bad-policy");
    fs_err::create_dir_all(&policy).unwrap();
    fs_err::write(
        policy.join("sandbox.rego"),
        "package cordon.sandbox\nimport rego.v1\ndecision := {\"allow\": true, \"grants\": 1 / 0}\n",
    )
    .unwrap();
    let policy_arg = policy.display().to_string();
    let out = home
        .cordon(&["exec", "--policy", &policy_arg, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_stderr_has(&out, "the policy refused to launch `true`");

    fs_err::write(
        policy.join("sandbox.rego"),
        "package cordon.sandbox\nimport rego.v1\ndecision := {\"allow\": true, \"grants\": {\"read\": [\"usr\"]}}\n",
    )
    .unwrap();
    let out = home
        .cordon(&["exec", "--policy", &policy_arg, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_stderr_has(&out, "`usr` is not an absolute path");

    let out = home.cordon(&["exec"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn launches_are_audited() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    ok(&inside(&home, &[], "exit 0"));
    let key = home.path().join(".ssh/id_ed25519").display().to_string();
    inside(&home, &["--allow-read", &key], "exit 0");
    let out = home
        .cordon(&["audit", "query", "--capability", "sandbox", "--json"])
        .output()
        .unwrap();
    ok(&out);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcomes: Vec<(&str, bool)> = records
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["allow"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![("evaluated", true), ("performed", true), ("refused", false)]
    );
    assert!(records[0]["grants"]["write"][0]
        .as_str()
        .unwrap()
        .ends_with("/work"));
    assert_eq!(records[1]["input"]["result"]["exit_code"], 0);
    // The Landlock enforcement obtained is recorded with the outcome.
    let landlock = &records[1]["input"]["result"]["landlock"];
    assert_eq!(landlock["wanted"], 7, "{landlock}");
    assert!(landlock["abi"].as_u64().unwrap() >= 1, "{landlock}");
    assert!(["full", "partial"].contains(&landlock["enforcement"].as_str().unwrap()));
}

#[test]
fn interactive_shell_with_job_control_and_ctrl_c() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let (master, mut child) = interactive_bash(&home);
    let mut master = std::fs::File::from(master);
    let mut seen = String::new();
    let send = |master: &mut std::fs::File, text: &str| {
        master.write_all(text.as_bytes()).unwrap();
    };
    let reader = terminal_reader(&master);
    let wait_for = |seen: &mut String, expected: &str| wait_for_text(&reader, seen, expected);
    wait_for(&mut seen, "$ ");
    send(&mut master, "echo $((6*7))\r");
    wait_for(&mut seen, "42");
    send(&mut master, "sleep 30\r");
    std::thread::sleep(Duration::from_millis(300));
    send(&mut master, "\x03");
    send(&mut master, "echo status=$?\r");
    wait_for(&mut seen, "status=130");
    send(&mut master, "sleep 0.2 & wait; test -t 0 && echo tty-ok\r");
    wait_for(&mut seen, "tty-ok");
    // The terminal has a name inside (GPG_TTY, ssh prompts and `ps` rely on it): it lives in
    // the sandbox's own devpts.
    send(&mut master, "echo \"name=$(tty)\"\r");
    wait_for(&mut seen, "name=/dev/pts/0");
    // A clipboard write (OSC 52) does not reach the person's terminal; the text around it does.
    send(
        &mut master,
        "printf 'before\\033]52;c;ZXZpbA==\\007after\\n'\r",
    );
    wait_for(&mut seen, "beforeafter");
    assert!(!seen.contains("\x1b]52"), "{seen:?}");
    send(&mut master, "exit 3\r");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "cordon exec did not end: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "{seen:?}");
    assert!(
        !seen.contains("no job control"),
        "bash has no terminal: {seen:?}"
    );
}

/// A thread that hands over what the terminal shows, so that waits on it are bounded.
fn terminal_reader(master: &std::fs::File) -> std::sync::mpsc::Receiver<String> {
    let mut clone = master.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = clone.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Waits at most ten seconds for `expected` to show.
fn wait_for_text(reader: &std::sync::mpsc::Receiver<String>, seen: &mut String, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(expected) && Instant::now() < deadline {
        if let Ok(chunk) = reader.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&chunk);
        }
    }
    assert!(seen.contains(expected), "{expected:?} not in {seen:?}");
}

/// `cordon exec -- bash -i` on a pseudo-terminal of the test's own.
fn interactive_bash(home: &Home) -> (std::os::fd::OwnedFd, KillOnDrop) {
    let (master, slave) = cordon_sys::process::open_pseudo_terminal().unwrap();
    let child = home
        .cordon(&[
            "exec",
            "--keep-env",
            "PS1",
            "--",
            "bash",
            "--norc",
            "--noprofile",
            "-i",
        ])
        .env("PATH", "/usr/bin:/bin")
        .env("TERM", "dumb")
        .env("PS1", "$ ")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    (master, KillOnDrop(child))
}

#[test]
fn a_terminal_that_hangs_up_ends_the_sandbox() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let (master, mut child) = interactive_bash(&home);
    // A reader that stops (and closes its copy of the terminal) once the prompt shows.
    let mut clone = std::fs::File::from(master.try_clone().unwrap());
    let (tx, prompt) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = clone.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&seen).contains("$ ") {
                break;
            }
        }
        let _ = tx.send(());
    });
    prompt
        .recv_timeout(Duration::from_secs(10))
        .expect("no prompt");
    // The person's terminal goes away (every descriptor of its controlling side closed).
    drop(master);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cordon exec outlived its terminal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_program_gets_its_callers_huge_page_setting() {
    if !sandbox_ready() {
        return;
    }
    // cordon turns transparent huge pages off for itself; the program must get what cordon's
    // caller had, on or off.
    let bare = std::process::Command::new("grep")
        .args(["THP_enabled", "/proc/self/status"])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&bare.stdout).trim().is_empty() {
        super::common::skip("this kernel does not report THP_enabled in /proc/self/status");
        return;
    }
    let home = Home::new();
    let out = inside(&home, &[], "grep THP_enabled /proc/self/status");
    ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "THP_enabled:\t1"
    );
    // A caller that turned them off (PR_SET_THP_DISABLE is 41) keeps them off for the program.
    let cordon = exec_script(&home, &[], "bash", "grep THP_enabled /proc/self/status");
    let argv: Vec<String> = std::iter::once(cordon.get_program())
        .chain(cordon.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let script = "import ctypes, os, sys\n\
                  assert ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) == 0\n\
                  os.execv(sys.argv[1], sys.argv[1:])\n";
    let off = std::process::Command::new("python3")
        .env_clear()
        .envs(cordon.get_envs().filter_map(|(n, v)| Some((n, v?))))
        .current_dir(home.workspace())
        .arg("-c")
        .arg(script)
        .args(&argv)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&off);
    assert_eq!(
        String::from_utf8_lossy(&off.stdout).trim(),
        "THP_enabled:\t0"
    );
}

/// The program starts with `SIGPIPE` at its default action, as a program started from a
/// shell (or by `std::process::Command`) does, although cordon and its helper are Rust
/// programs, whose runtime ignores it: a writer to a closed pipe ends quietly instead of
/// failing with `EPIPE`.
#[test]
fn the_program_starts_with_the_broken_pipe_signal_at_its_default_action() {
    if !sandbox_ready() {
        return;
    }
    let script = "kill -PIPE $$; echo survived";
    let bare = Command::new("bash")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), None, "bash outlived SIGPIPE outside");
    let home = Home::new();
    let out = inside(&home, &[], script);
    assert_eq!(
        out.status.code(),
        Some(128 + 13),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let piped = inside(&home, &[], "yes | head -n 1");
    ok(&piped);
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "y\n");
    assert!(
        !stderr(&piped).contains("Broken pipe"),
        "a writer to a closed pipe complained: {}",
        stderr(&piped)
    );
}

/// What cordon says after the run (here, that a change was journaled) goes to a standard
/// error whose reader has gone: cordon still ends with the program's status, not a panic's.
#[test]
fn a_standard_error_nobody_reads_leaves_the_exit_status_to_the_program() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = exec_script(&home, &[], "bash", "echo new > made.txt; exit 3")
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(read(home.workspace().join("made.txt")), "new\n");
    // Nor when what cordon says is its own error: a program that is not there is 127.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let missing = home
        .cordon(&["exec", "--", "no-such-program-here"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(missing.code(), Some(127));
    // A dry run whose report cannot be written fails as an error does (2), not a panic (101).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let dry = home
        .cordon(&["exec", "--dry-run", "--", "true"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(2), "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains("cannot write the dry run's report"),
        "{}",
        stderr(&dry)
    );
}

/// A standard error whose reader has gone, for `cmd`; what it wrote to stdout is returned.
fn with_standard_error_nobody_reads(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(writer)
        .output()
        .unwrap()
}

/// What the policy says with `print` while it decides is written to standard error, as
/// OPA writes it; when nobody reads that, it is lost and the launch goes on (the policy
/// engine used to panic, and cordon ended with 101 instead of the program's status).
#[test]
fn a_policys_print_nobody_reads_leaves_the_launch_alone() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let policy = default_policy_with(&home, |_| {});
    let sandbox = Path::new(&policy).join("sandbox.rego");
    let text = read(&sandbox).replacen(
        "summary := sprintf(",
        "summary := s if {\n\tprint(\"deciding the launch of\", input.resource.command[0], \"\\u001b[2J\\ncordon: all allowed\")\n\ts := summary_text\n}\n\nsummary_text := sprintf(",
        1,
    );
    assert!(text.contains("summary_text"));
    fs_err::write(&sandbox, text).unwrap();
    let flags = ["--policy", policy.as_str()];
    // Read, the print is there: the launch's decision ran it.
    let out = exec_script(&home, &flags, "sh", "exit 3").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // On one line, starting with its place in the policy: what it prints (which may come
    // from the request) neither moves the cursor nor starts a line that reads as cordon's.
    let said = stderr(&out);
    let line = said
        .lines()
        .find(|l| l.contains("deciding the launch of sh"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.starts_with(&format!("{}:", sandbox.display())),
        "{line}"
    );
    assert!(
        line.ends_with(": deciding the launch of sh ?[2J\\ncordon: all allowed"),
        "{line}"
    );
    assert!(!said.contains('\u{1b}'), "{said}");
    assert!(
        !said.lines().any(|l| l.starts_with("cordon: all allowed")),
        "{said}"
    );
    let out = with_standard_error_nobody_reads(exec_script(&home, &flags, "sh", "exit 3"));
    assert_eq!(out.status.code(), Some(3));

    // A module the engine warns about as it reads it (a redundant `import input`), with no
    // one to read the warning: the warning is lost and the policy decides, as it does when
    // its compiled form comes from the cache and the module is not read at all (the engine
    // used to panic there). Read, the warning is shown.
    let home = Home::new();
    let policy = default_policy_with(&home, |_| {});
    let clipboard = Path::new(&policy).join("clipboard.rego");
    let text = read(&clipboard).replacen("import rego.v1", "import rego.v1\n\nimport input", 1);
    fs_err::write(&clipboard, text).unwrap();
    let request = r#"{"capability": "file", "action": "read", "resource": {"path": "notes.md"}}"#;
    let (stdin, to_stdin) = std::io::pipe().unwrap();
    (&to_stdin).write_all(request.as_bytes()).unwrap();
    drop(to_stdin);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = home
        .cordon(&["eval", "--policy", &policy])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"allow\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Its compiled form, stored by that run, would spare the next one reading the module.
    fs_err::remove_dir_all(home.path().join(".cache/cordon/policy")).unwrap();
    let out = home.run(&["eval", "--policy", &policy], request);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stderr_has(&out, "redundant import of `input`");
}
