//! Attacks found in review of `cordon exec`, each shown working without the sandbox (or
//! without the fix) and stopped by it, judged by what is observed from outside.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use super::attack::{bare, leak, leaks_only_without_sandbox, reset, sandboxed};
use super::common::{
    assert_stderr_has, exec_script, read_or_empty as read, running_as_root, sandbox_ready, skip,
    stderr, Home, KillOnDrop,
};

/// A global sysctl that is harmless to change for a moment: how many kernel messages may
/// pass before rate limiting starts.
const SYSCTL: &str = "/proc/sys/kernel/printk_ratelimit_burst";

fn sysctl() -> String {
    fs_err::read_to_string(SYSCTL).unwrap().trim().to_string()
}

/// Root in the sandbox must not be host root: a global sysctl written from inside changes
/// the host (and `core_pattern` would run a command as root outside every namespace).
#[test]
fn global_sysctls_are_not_writable_from_a_root_run_sandbox() {
    if !sandbox_ready() || !running_as_root() {
        return;
    }
    let home = Home::new();
    let before = sysctl();
    let changed: u32 = before.parse::<u32>().unwrap() + 1;
    let script = format!("echo {changed} > {SYSCTL}");
    bare(&home, &script);
    let bare_value = sysctl();
    fs_err::write(SYSCTL, &before).unwrap();
    assert_eq!(
        bare_value,
        changed.to_string(),
        "the attack does not work even without the sandbox"
    );

    let core_pattern = fs_err::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let script = format!(
        "echo {changed} > {SYSCTL}; echo '|/bin/true cordon-test' > /proc/sys/kernel/core_pattern"
    );
    let out = sandboxed(&home, &[], &script);
    let inside_value = sysctl();
    let inside_core = fs_err::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    if inside_value != before {
        fs_err::write(SYSCTL, &before).unwrap();
    }
    if inside_core != core_pattern {
        fs_err::write("/proc/sys/kernel/core_pattern", core_pattern.trim()).unwrap();
    }
    assert_eq!(inside_value, before, "a sysctl was changed from inside");
    assert_eq!(
        inside_core, core_pattern,
        "core_pattern was changed from inside"
    );
    // The attempt ran inside: the sandbox itself did not refuse to start.
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
}

/// Files only root may read, in a tree granted read-only, stay unreadable: the program is
/// not root on the host, whatever it is called inside.
#[test]
fn root_only_files_in_a_read_grant_are_unreadable() {
    if !sandbox_ready() || !running_as_root() {
        return;
    }
    let home = Home::new();
    let granted = home.path().join("configs");
    fs_err::create_dir_all(&granted).unwrap();
    let secret = granted.join("wg0.conf");
    fs_err::write(&secret, "PrivateKey = ROOT-ONLY").unwrap();
    fs_err::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let flags = ["--allow-read", granted.to_str().unwrap()];
    let script = format!("cat {} > leak", secret.display());
    leaks_only_without_sandbox(&home, &flags, &script, "ROOT-ONLY");
    // The rest of the tree is readable: the grant works.
    fs_err::write(granted.join("public.conf"), "PUBLIC").unwrap();
    reset(&home);
    let out = sandboxed(
        &home,
        &flags,
        &format!("cat {} > leak", granted.join("public.conf").display()),
    );
    assert_eq!(read(leak(&home)), "PUBLIC", "{}", stderr(&out));
}

/// A root-owned workspace stays writable to the program, which calls itself root, and what
/// it writes is owned by root on disk, as if cordon were not there.
#[test]
fn a_root_run_sandbox_writes_its_workspace_as_root() {
    if !sandbox_ready() || !running_as_root() {
        return;
    }
    let home = Home::new();
    let out = sandboxed(
        &home,
        &[],
        "id -u > made && mkdir dir && echo x > dir/file && echo more >> notes.md",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read(home.workspace().join("made")).trim(), "0");
    for path in ["made", "dir", "dir/file", "notes.md"] {
        let meta = fs_err::metadata(home.workspace().join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path}");
    }
    assert_eq!(read(home.workspace().join("notes.md")), "notesmore\n");
}

/// The program cannot leave a set-user-id or set-group-id file behind: outside the sandbox
/// it would run with the rights of the user who ran cordon (root here) for anyone.
#[test]
fn set_id_files_cannot_be_made() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let script = "cp /bin/true suid && chmod u+s suid; \
                  cp /bin/true sgid && chmod g+s sgid; \
                  python3 -c \"import os; os.close(os.open('created', os.O_CREAT | os.O_WRONLY, 0o4755))\"; \
                  mkdir -m 2755 setgid-dir";
    let set_id = |home: &Home| -> Vec<String> {
        ["suid", "sgid", "created", "setgid-dir"]
            .into_iter()
            .filter(|name| {
                fs_err::metadata(home.workspace().join(name)).is_ok_and(|m| m.mode() & 0o6000 != 0)
            })
            .map(String::from)
            .collect()
    };
    let out = bare(&home, script);
    assert_eq!(
        set_id(&home).len(),
        4,
        "the attack does not work even without the sandbox: {}",
        stderr(&out)
    );
    for name in ["suid", "sgid", "created", "setgid-dir"] {
        let path = home.workspace().join(name);
        let _ = fs_err::remove_file(&path).or_else(|_| fs_err::remove_dir(&path));
    }
    let out = sandboxed(&home, &[], script);
    assert_eq!(set_id(&home), Vec::<String>::new(), "{}", stderr(&out));
    // Ordinary modes still work.
    let out = sandboxed(&home, &[], "cp /bin/true tool && chmod 755 tool && ./tool");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Whether the host can bind vsock `port` (`None` when this kernel has no vsock).
fn host_vsock_bind(port: u32) -> Option<bool> {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket,sys\ntry: s=socket.socket(socket.AF_VSOCK)\nexcept OSError: sys.exit(3)\ntry: s.bind((socket.VMADDR_CID_ANY,{port}))\nexcept OSError: sys.exit(1)"
            ),
        ])
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None,
    }
}

/// vsock ignores network namespaces: one address space for the whole virtual machine, where
/// the hypervisor's services listen. A socket bound inside takes the port from the host.
#[test]
fn vsock_is_not_a_way_past_the_proxy() {
    if !sandbox_ready() {
        return;
    }
    let Some(true) = host_vsock_bind(47_011) else {
        skip("this kernel has no vsock");
        return;
    };
    let home = Home::new();
    let holder = "import socket,sys,time\ntry:\n    s=socket.socket(socket.AF_VSOCK); s.bind((socket.VMADDR_CID_ANY,47011))\nexcept OSError as e:\n    print('refused', e.errno, flush=True); sys.exit(0)\nprint('bound', flush=True); time.sleep(5)";
    let taken_while_held = |command: Command| -> (bool, String) {
        let mut child = KillOnDrop(
            { command }
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        (host_vsock_bind(47_011) == Some(false), line)
    };
    let mut bare = Command::new("python3");
    bare.args(["-c", holder]);
    let (taken, line) = taken_while_held(bare);
    assert!(
        taken,
        "the attack does not work even without the sandbox: {line}"
    );
    let (taken, line) = taken_while_held(exec_script(&home, &[], "python3", holder));
    assert!(!taken, "the sandbox reached the host's vsock space: {line}");
    assert!(line.starts_with("refused 97"), "{line}");
}

fn git(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap()
}

/// `.git/config` is read-only inside, but renaming `.git` carried the read-only mount away
/// and left a writable copy in its place: the next `git status` outside ran the agent's
/// `core.fsmonitor`. `.git/commondir` redirected git to a config of the agent's.
#[test]
fn renaming_the_parent_of_a_protected_path_does_not_free_it() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let work = home.workspace();
    assert!(git(&work, &["init", "-q"]).status.success());
    let planted = |work: &std::path::Path| {
        read(work.join(".git/config")).contains("fsmonitor") || work.join(".git/commondir").exists()
    };
    let swap = "mv .git .git.orig && cp -a .git.orig .git && printf '[core]\\n\\tfsmonitor = \"touch owned; false\"\\n' >> .git/config";
    let out = bare(&home, swap);
    assert!(
        planted(&work),
        "the attack does not work even without the sandbox: {}",
        stderr(&out)
    );
    fs_err::remove_dir_all(work.join(".git")).unwrap();
    fs_err::rename(work.join(".git.orig"), work.join(".git")).unwrap();

    let out = sandboxed(&home, &[], swap);
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(!planted(&work), "{}", stderr(&out));
    assert!(
        !work.join(".git.orig").exists(),
        "the repository was carried away"
    );

    // No rename needed: a new file git reads.
    let out = sandboxed(
        &home,
        &[],
        "echo ../.evil > .git/commondir; mkdir -p .git/worktrees/x",
    );
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(!work.join(".git/commondir").exists(), "{}", stderr(&out));
    assert_stderr_has(&out, ".git/commondir` was created during the run; moved to");
    let status = git(&work, &["status", "--short"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(!work.join("owned").exists());
}

/// The quarantine of a protected path followed a link the agent planted: cordon, outside
/// the sandbox, renamed `~/.ssh/config` for it. Now the link itself is moved.
#[test]
fn the_after_run_check_never_follows_a_planted_link() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ssh_config = home.path().join(".ssh/config");
    fs_err::write(&ssh_config, "Host *").unwrap();
    let script = format!("ln -s {} .git", home.path().join(".ssh").display());
    let out = sandboxed(&home, &[], &script);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        read(&ssh_config),
        "Host *",
        "a file outside the workspace was moved"
    );
    let git_dir = home.workspace().join(".git");
    assert!(
        fs_err::symlink_metadata(&git_dir).is_err(),
        "the planted link is still there"
    );
    assert_stderr_has(
        &out,
        "replaced with a link or a file during the run; moved to",
    );
}

/// Started from the home directory, the workspace was the whole home: the agent wrote
/// cordon's own configuration (and with it the next run's policy), shell and git files.
#[test]
fn the_home_and_shared_directories_are_not_workspaces() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let mut in_home = exec_script(&home, &[], "sh", "touch planted");
    in_home.current_dir(home.path());
    let out = in_home.output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_stderr_has(&out, "is your home directory");
    assert!(!home.path().join("planted").exists());
    for shared in ["/tmp", "/var/tmp"] {
        let out = sandboxed(&home, &["--allow-write", shared], "true");
        assert_eq!(out.status.code(), Some(125), "{shared}: {}", stderr(&out));
    }
    // Said explicitly, it runs.
    let mut in_home = exec_script(&home, &["--unsafe-broad-write"], "sh", "touch planted");
    in_home.current_dir(home.path());
    let out = in_home.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(home.path().join("planted").exists());
}

/// cordon's configuration is protected whether or not it exists, and renaming its parent
/// does not free it.
#[test]
fn cordons_own_configuration_cannot_be_planted() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    // The tests' XDG_CONFIG_HOME.
    let config = home.path().join("config");
    fs_err::create_dir_all(&config).unwrap();
    let script = format!(
        "mkdir -p {c}/cordon; printf '[policy]\\npath = \"/tmp\"\\n' > {c}/cordon/config.toml; \
         mv {c}/cordon {c}/cordon.old; mkdir -p {c}/cordon; printf '[policy]\\npath = \"/tmp\"\\n' > {c}/cordon/config.toml",
        c = config.display()
    );
    let planted = || read(config.join("cordon/config.toml")).contains("policy");
    bare(&home, &script);
    assert!(
        planted(),
        "the attack does not work even without the sandbox"
    );
    fs_err::remove_dir_all(config.join("cordon")).unwrap();
    let _ = fs_err::remove_dir_all(config.join("cordon.old"));

    let flags = ["--allow-write", config.to_str().unwrap()];
    let out = sandboxed(&home, &flags, &script);
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(!planted(), "{}", stderr(&out));
    assert!(!config.join("cordon.old").exists());
}

/// Credential files the first secrets list missed, readable with the home granted.
#[test]
fn more_credential_files_are_masked() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let files = [
        ".npmrc",
        ".pypirc",
        ".cargo/credentials.toml",
        ".claude/.credentials.json",
        ".codex/auth.json",
        ".config/rclone/rclone.conf",
        ".config/containers/auth.json",
        ".terraform.d/credentials.tfrc.json",
        ".m2/settings.xml",
        ".bash_history",
    ];
    for file in files {
        let path = home.path().join(file);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, format!("token-{file}")).unwrap();
    }
    let home_dir = home.path().display().to_string();
    home.remember_home_grant();
    for file in files {
        let script = format!("cat \"$HOME/{file}\" > leak");
        leaks_only_without_sandbox(
            &home,
            &["--allow-read", &home_dir],
            &script,
            &format!("token-{file}"),
        );
    }
}

/// The environment is an allowlist: names a secret pattern misses, and values carrying
/// credentials in a URL, stay outside.
#[test]
fn only_allowlisted_environment_variables_pass() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let secrets = [
        ("OPENAI_KEY", "canary-1"),
        ("SUPABASE_SERVICE_ROLE_KEY", "canary-2"),
        ("SMTP_PASS", "canary-3"),
        ("MYSQL_PWD", "canary-4"),
        ("REDIS_URL", "redis://:canary-5@cache:6379"),
        ("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=canary-6"),
        ("SLACK_WEBHOOK_URL", "https://hooks.example/canary-7"),
        ("SSL_CERT_FILE", "https://u:canary-8@ca.example/bundle"),
    ];
    let script = "env > leak";
    let mut bare = Command::new("sh");
    bare.args(["-c", script])
        .current_dir(home.workspace())
        .env_clear();
    let mut inside = exec_script(&home, &[], "sh", script);
    for (name, value) in secrets {
        bare.env(name, value);
        inside.env(name, value);
    }
    inside.env("LANG", "C.UTF-8").env("TERM", "xterm");
    reset(&home);
    bare.output().unwrap();
    let leaked = read(leak(&home));
    assert!(secrets.iter().all(|(_, v)| leaked.contains(v)), "{leaked}");
    reset(&home);
    let out = inside.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let leaked = read(leak(&home));
    for (name, value) in secrets {
        assert!(!leaked.contains(value), "{name} reached the sandbox");
    }
    for kept in [
        "PATH=",
        "HOME=",
        "LANG=C.UTF-8",
        "TERM=xterm",
        "HTTPS_PROXY=",
    ] {
        assert!(
            leaked.lines().any(|l| l.starts_with(kept)),
            "{kept} missing: {leaked}"
        );
    }
}

/// A set-uid file already in the workspace: written through a shared memory mapping, it
/// keeps its bit (the kernel drops it only on `write`), so the program could leave its own
/// code there, set-uid to the owner (root, for a root-run cordon).
#[test]
fn set_id_files_in_a_writable_tree_cannot_be_rewritten() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let tool = home.workspace().join("tool");
    let plant = || {
        fs_err::copy("/bin/true", &tool).unwrap();
        fs_err::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
    };
    let rewritten = || {
        fs_err::read(&tool).unwrap().starts_with(b"PLANTED")
            && fs_err::metadata(&tool).unwrap().mode() & 0o4000 != 0
    };
    let script = "python3 -c 'import mmap,os\nfd=os.open(\"tool\",os.O_RDWR); m=mmap.mmap(fd,0); m[:7]=b\"PLANTED\"; m.flush()'";
    plant();
    let out = bare(&home, script);
    assert!(
        rewritten(),
        "the attack does not work even without the sandbox: {}",
        stderr(&out)
    );
    plant();
    let out = sandboxed(&home, &[], script);
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(!rewritten(), "{}", stderr(&out));
    assert_eq!(
        fs_err::read(&tool).unwrap(),
        fs_err::read("/bin/true").unwrap()
    );
}

/// Run by root, the program is no longer root on the host, yet its standard streams (pipes
/// made by root) can still be reopened by name.
#[test]
fn standard_streams_can_be_reopened_by_name() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let out = sandboxed(
        &home,
        &[],
        "echo to-stderr > /dev/stderr && echo to-stdout > /proc/self/fd/1",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("to-stderr"));
    assert!(super::common::stdout(&out).contains("to-stdout"));
}

/// The cgroup directory of `controller` (v1), or the unified one (v2), that `cordon exec`
/// started from here would create its cgroups in.
fn own_cgroup(controller: &str) -> std::path::PathBuf {
    let own = fs_err::read_to_string("/proc/self/cgroup").unwrap();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == controller) {
            return std::path::Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path);
        }
        if controllers.is_empty() && !own.contains(&format!(":{controller}")) {
            return std::path::Path::new("/sys/fs/cgroup").join(path);
        }
    }
    panic!("no {controller} cgroup in {own}");
}

fn own_pids_cgroup() -> std::path::PathBuf {
    own_cgroup("pids")
}

/// Runs `cordon exec FLAGS -- true` while watching the cgroup directory it would use; the
/// names of the cgroups it created (`cordon-PID-*`).
fn cgroups_created_by(home: &Home, flags: &[&str]) -> Vec<String> {
    let watcher = "import ctypes,os,select,struct,sys\nlibc=ctypes.CDLL(None,use_errno=True)\nfd=libc.inotify_init1(0)\nassert libc.inotify_add_watch(fd,sys.argv[1].encode(),0x100)>=0\nprint('ready',flush=True)\nwhile True:\n    r,_,_=select.select([fd,sys.stdin],[],[],20)\n    if not r: break\n    if fd in r:\n        d=os.read(fd,65536); i=0\n        while i<len(d):\n            _,_,_,n=struct.unpack_from('iIII',d,i); print(d[i+16:i+16+n].rstrip(b'\\0').decode(),flush=True); i+=16+n\n    if sys.stdin in r and not sys.stdin.readline(): break";
    let mut watch = KillOnDrop(
        Command::new("python3")
            .args(["-c", watcher, own_pids_cgroup().to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(watch.0.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "true"]);
    let child = home
        .cordon(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(watch.0.stdin.take());
    let prefix = format!("cordon-{pid}-");
    lines
        .map_while(Result::ok)
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// A dry run changes nothing: not even a cgroup made and removed.
#[test]
fn a_dry_run_creates_no_cgroup() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    assert!(
        !cgroups_created_by(&home, &[]).is_empty(),
        "a real run creates cgroups, so the watch works"
    );
    assert_eq!(
        cgroups_created_by(&home, &["--dry-run"]),
        Vec::<String>::new()
    );
}

/// Unix sockets of the host inside granted trees (an agent's socket in a directory the
/// person grants, a multiplexer's socket in the workspace): a read-only mount does not stop
/// `connect`. Each is masked; socket directories such as /run/user/N are refused.
#[test]
fn host_unix_sockets_in_granted_trees_are_unreachable() {
    use std::io::Read as _;
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let shared = home.path().join("shared");
    fs_err::create_dir_all(shared.join("agent-1")).unwrap();
    let in_read_grant = shared.join("agent-1/agent.sock");
    let in_workspace = home.workspace().join(".mux.sock");
    let listeners = [
        std::os::unix::net::UnixListener::bind(&in_read_grant).unwrap(),
        std::os::unix::net::UnixListener::bind(&in_workspace).unwrap(),
    ];
    let script = format!(
        "python3 -c \"
import socket
for a in ['{}', '{}']:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(a); s.sendall(b'canary'); s.close()
    except OSError as e: print(a, e)
\"",
        in_read_grant.display(),
        in_workspace.display()
    );
    let received = |listener: &std::os::unix::net::UnixListener| {
        listener.set_nonblocking(true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
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
    for listener in &listeners {
        assert_eq!(
            received(listener),
            "canary",
            "the attack does not work even without the sandbox"
        );
    }
    let flags = ["--allow-read", shared.to_str().unwrap()];
    let out = sandboxed(&home, &flags, &script);
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    for listener in &listeners {
        assert_eq!(received(listener), "", "{}", super::common::stdout(&out));
    }
    // The runtime directory of a desktop session is refused outright.
    let out = sandboxed(&home, &["--allow-read", "/run"], "true");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_stderr_has(&out, "holds the sockets of other programs");
}

/// A secret that is a link (dotfiles managers: `~/.ssh -> dotfiles/ssh`) was not masked,
/// and a secret created while the program ran showed through a granted home.
#[test]
fn linked_and_late_secrets_in_a_granted_home_stay_hidden() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::outside_tmp();
    let root = home.path();
    // The fixture's real ~/.ssh becomes a link into dotfiles.
    fs_err::remove_dir_all(root.join(".ssh")).unwrap();
    fs_err::create_dir_all(root.join("dotfiles/ssh")).unwrap();
    fs_err::write(root.join("dotfiles/ssh/id_ed25519"), "LINKED KEY").unwrap();
    std::os::unix::fs::symlink("dotfiles/ssh", root.join(".ssh")).unwrap();
    let home_dir = root.display().to_string();
    home.remember_home_grant();
    let flags = ["--allow-read", home_dir.as_str()];
    leaks_only_without_sandbox(
        &home,
        &flags,
        "cat \"$HOME/.ssh/id_ed25519\" > leak",
        "LINKED KEY",
    );

    // Created after launch: the script waits for it (at most five seconds).
    let script = "for i in $(seq 50); do [ -e \"$HOME/.aws/credentials\" ] && break; sleep 0.1; done; cat \"$HOME/.aws/credentials\" > leak";
    let late = |run: &dyn Fn() -> std::process::Output| {
        reset(&home);
        let _ = fs_err::remove_dir_all(root.join(".aws"));
        let writer = {
            let aws = root.join(".aws");
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(700));
                fs_err::create_dir_all(&aws).unwrap();
                fs_err::write(aws.join("credentials"), "LATE SECRET").unwrap();
            })
        };
        let out = run();
        writer.join().unwrap();
        (read(leak(&home)), out)
    };
    let (leaked, out) = late(&|| bare(&home, script));
    assert!(
        leaked.contains("LATE SECRET"),
        "the attack does not work even without the sandbox: {}",
        stderr(&out)
    );
    let (leaked, out) = late(&|| sandboxed(&home, &flags, script));
    assert!(!leaked.contains("LATE SECRET"), "{}", stderr(&out));
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    // The rest of the home is readable.
    fs_err::write(root.join("notes.txt"), "PUBLIC").unwrap();
    reset(&home);
    let out = sandboxed(&home, &flags, "cat \"$HOME/notes.txt\" > leak");
    assert_eq!(read(leak(&home)), "PUBLIC", "{}", stderr(&out));
}

/// With only standard error on the person's terminal (input from elsewhere), the program was
/// handed that terminal: it could read what the person typed there and change its modes.
#[test]
fn the_persons_terminal_is_never_handed_to_the_program() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let script = "read -t 3 x <&2; echo \"STOLEN:$x\"";
    let run = |mut command: Command| -> String {
        let (master, slave) = cordon_sys::process::open_pseudo_terminal().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        std::thread::sleep(std::time::Duration::from_millis(800));
        let mut master = std::fs::File::from(master);
        std::io::Write::write_all(&mut master, b"typed-by-the-person\n").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut out).unwrap();
        out
    };
    let mut plain = Command::new("bash");
    plain.args(["-c", script]).current_dir(home.workspace());
    assert!(
        run(plain).contains("STOLEN:typed-by-the-person"),
        "the attack does not work even without the sandbox"
    );
    let inside = run(exec_script(&home, &[], "bash", script));
    assert!(
        inside.contains("STOLEN:"),
        "the program did not run: {inside}"
    );
    assert!(!inside.contains("typed-by-the-person"), "{inside}");
}

/// A policy may require a minimum Landlock ABI: an older kernel enforces fewer rights, and
/// the launch is refused (or, with --allow-degraded, run and recorded).
#[test]
fn a_minimum_landlock_abi_is_enforced() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let policy = super::common::default_policy_with(&home, |settings| {
        settings["sandbox"]["landlock_abi"] = 99.into();
    });
    let out = sandboxed(&home, &["--policy", &policy], "touch ran");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_stderr_has(&out, "the policy requires ABI 99 or newer");
    assert!(!home.workspace().join("ran").exists());
    let out = sandboxed(
        &home,
        &["--policy", &policy, "--allow-degraded"],
        "touch ran",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(home.workspace().join("ran").exists());
}

/// Caps sized to the machine: 1024 processes, memory half of physical RAM up to 8 GiB, and
/// on cgroup v1 swap capped as well.
#[test]
fn default_caps_are_sized_to_the_machine_and_applied() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let meminfo = fs_err::read_to_string("/proc/meminfo").unwrap();
    let total: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap()
        * 1024;
    let expected = (total / 2).min(8 << 30);
    let mut child = KillOnDrop(
        exec_script(&home, &[], "sh", "touch started; sleep 5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prefix = format!("cordon-{}-", child.0.id());
    let pids_parent = own_pids_cgroup();
    let v1 = pids_parent.starts_with("/sys/fs/cgroup/pids");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The caps are set before the program starts: wait for it.
    while !home.workspace().join("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the program did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dir = loop {
        let found = fs_err::read_dir(&pids_parent)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix));
        if let Some(entry) = found {
            break entry.path();
        }
        assert!(std::time::Instant::now() < deadline, "no cgroup {prefix}*");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let value = |path: std::path::PathBuf| fs_err::read_to_string(path).unwrap().trim().to_string();
    assert_eq!(value(dir.join("pids.max")), "1024");
    if v1 {
        let memory = own_cgroup("memory").join(dir.file_name().unwrap());
        assert_eq!(
            value(memory.join("memory.limit_in_bytes")),
            expected.to_string()
        );
        if memory.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                value(memory.join("memory.memsw.limit_in_bytes")),
                expected.to_string()
            );
        }
    } else {
        assert_eq!(value(dir.join("memory.max")), expected.to_string());
    }
    let _ = child.0.kill();
}

/// Runs `git status` outside the sandbox, as the person would after the run, with a marker
/// that a planted command would create.
fn git_status_runs_nothing_planted(work: &std::path::Path) -> bool {
    let _ = git(work, &["status", "--short"]);
    !work.join("owned").exists()
}

/// The aside names of the old quarantine could be made ahead of time, so that the move
/// failed and the planted file stayed.
#[test]
fn names_made_ahead_do_not_keep_a_planted_file() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let work = home.workspace();
    assert!(git(&work, &["init", "-q"]).status.success());
    let script = "mkdir .evil && cp -a .git/objects .git/refs .git/HEAD .evil/ && cp .git/config .evil/config && \
        printf '[core]\\n\\tfsmonitor = \"touch owned; false\"\\n' >> .evil/config && echo ../.evil > .git/commondir; \
        now=$(date -u +%s); for i in $(seq 0 30); do touch \".git/commondir.cordon-quarantine-$(date -u -d @$((now+i)) +%Y%m%dT%H%M%SZ)\"; done";
    let out = bare(&home, script);
    assert!(
        !git_status_runs_nothing_planted(&work),
        "the attack does not work even without the sandbox: {}",
        stderr(&out)
    );
    fs_err::remove_file(work.join("owned")).unwrap();
    fs_err::remove_file(work.join(".git/commondir")).unwrap();
    fs_err::remove_dir_all(work.join(".evil")).unwrap();
    let out = sandboxed(&home, &[], script);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!work.join(".git/commondir").exists(), "{}", stderr(&out));
    assert!(git_status_runs_nothing_planted(&work));
}

/// A repository made inside the workspace (and added as a gitlink) is entered by the
/// person's next top-level `git status`: one whose configuration runs a command is moved.
#[test]
fn a_nested_repository_planted_during_the_run_runs_nothing_outside() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let work = home.workspace();
    assert!(git(&work, &["init", "-q"]).status.success());
    let script = "mkdir -p vendor/lib && cd vendor/lib && git init -q && \
        git -c user.name=a -c user.email=a@b commit -q --allow-empty -m x && \
        printf '[core]\\n\\tfsmonitor = \"touch ../../owned; false\"\\n' >> .git/config && cd ../.. && git add vendor/lib";
    let out = bare(&home, script);
    assert!(
        !git_status_runs_nothing_planted(&work),
        "the attack does not work even without the sandbox: {}",
        stderr(&out)
    );
    fs_err::remove_file(work.join("owned")).unwrap();
    fs_err::remove_dir_all(work.join("vendor")).unwrap();
    let _ = git(&work, &["rm", "-q", "--cached", "-r", "vendor"]);
    let out = sandboxed(&home, &[], script);
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(git_status_runs_nothing_planted(&work), "{}", stderr(&out));
    assert!(!work.join("vendor/lib/.git").exists(), "{}", stderr(&out));
}

/// `core.hooksPath` names a hooks directory outside `.git`: it is protected as `.git/hooks`.
#[test]
fn a_hooks_path_outside_git_stays_read_only() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let work = home.workspace();
    assert!(git(&work, &["init", "-q"]).status.success());
    assert!(git(&work, &["config", "core.hooksPath", "tools/hooks"])
        .status
        .success());
    fs_err::create_dir_all(work.join("tools/hooks")).unwrap();
    let hook = work.join("tools/hooks/pre-commit");
    fs_err::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    let script = "printf '#!/bin/sh\\ntouch owned\\n' > tools/hooks/pre-commit; printf x > tools/hooks/post-checkout";
    bare(&home, script);
    assert!(
        read(&hook).contains("owned"),
        "the attack does not work even without the sandbox"
    );
    fs_err::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    let _ = fs_err::remove_file(work.join("tools/hooks/post-checkout"));
    let out = sandboxed(&home, &[], script);
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_eq!(read(&hook), "#!/bin/sh\nexit 0\n", "{}", stderr(&out));
    assert!(!work.join("tools/hooks/post-checkout").exists());
}

/// A home reached through a link (`/home -> var/home`): secrets are masked and the home is
/// refused as a workspace all the same.
#[test]
fn a_home_behind_a_link_keeps_its_secrets() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let link = home.path().with_extension("link");
    std::os::unix::fs::symlink(home.path(), &link).unwrap();
    let script = "cat \"$HOME/.ssh/id_ed25519\" > leak";
    let linked = link.display().to_string();
    home.remember_home_grant();
    let mut inside = exec_script(&home, &["--allow-read", &linked], "sh", script);
    inside.env("HOME", &link);
    reset(&home);
    let out = inside.output().unwrap();
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        !read(leak(&home)).contains(super::attack::SECRET),
        "{}",
        stderr(&out)
    );
    let mut in_home = exec_script(&home, &[], "sh", "true");
    in_home.env("HOME", &link).current_dir(&link);
    let out = in_home.output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let _ = fs_err::remove_file(&link);
}

/// cordon killed while the program runs: the next run does the check it could not.
#[test]
fn a_check_cut_short_is_done_by_the_next_run() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let work = home.workspace();
    assert!(git(&work, &["init", "-q"]).status.success());
    let mut running = KillOnDrop(
        exec_script(&home, &[], "sh", "echo ../.evil > .git/commondir; sleep 30")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !work.join(".git/commondir").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the program did not run"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    running.0.kill().unwrap();
    running.0.wait().unwrap();
    assert!(work.join(".git/commondir").exists());
    // What the person makes once the killed run is over (an `.envrc`, a little later than
    // the run's last heartbeat allows for) is theirs and stays.
    std::thread::sleep(std::time::Duration::from_secs(7));
    fs_err::write(work.join(".envrc"), "use nix\n").unwrap();
    let out = sandboxed(&home, &[], "true");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!work.join(".git/commondir").exists(), "{}", stderr(&out));
    assert!(work.join(".envrc").exists(), "{}", stderr(&out));
    assert_stderr_has(&out, "ended before checking its protected paths");
}

/// A program that ignores termination is ended after the third request, and the check runs.
#[test]
fn a_program_ignoring_termination_is_ended_and_checked() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let work = home.workspace();
    assert!(git(&work, &["init", "-q"]).status.success());
    let child = exec_script(
        &home,
        &[],
        "sh",
        "trap '' TERM INT HUP; echo ../.evil > .git/commondir; while :; do sleep 1; done",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut child = KillOnDrop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !work.join(".git/commondir").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the program did not run"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.0.id().to_string();
    for _ in 0..3 {
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "cordon did not end the sandbox"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!work.join(".git/commondir").exists());
}

#[test]
fn a_secret_in_a_private_directory_of_a_granted_home_stays_out_of_reach() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    // ~/.ssh private to its owner: run as root, the sandbox's identity (root mapped to an
    // id of its own) can neither hide it nor enter it.
    fs_err::set_permissions(
        home.path().join(".ssh"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let grant = home.path().display().to_string();
    let key = home.path().join(".ssh/id_ed25519");
    let script = format!("cat {} > stolen.txt 2>&1; true", key.display());
    home.remember_home_grant();
    let out = exec_script(&home, &["--allow-read", &grant], "bash", &script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stolen = read(home.workspace().join("stolen.txt"));
    assert!(!stolen.contains("PRIVATE KEY"), "{stolen}");
}

/// A signal cordon passes on after the program's end (Ctrl-C while the journal records what
/// the program left) must not reach whatever process took the pid of the sandbox's helper,
/// reaped by then: it goes through the helper's pidfd. Without it, the process holding the
/// pid (made to be a `sleep` here) is killed, as root when cordon runs as root.
#[test]
fn a_signal_passed_on_after_the_helper_is_reaped_reaches_no_other_process() {
    if !sandbox_ready() || !running_as_root() {
        return;
    }
    let home = Home::new();
    // Many files make the journal's end, after the program's, take a while.
    let mut cordon = exec_script(
        &home,
        &[],
        "sh",
        "mkdir many && cd many && seq 1 30000 | xargs touch",
    );
    let cordon = cordon.stdout(Stdio::null()).stderr(Stdio::null());
    let mut cordon = KillOnDrop(cordon.spawn().unwrap());
    let cordon_pid = cordon.0.id();
    let mut helper = None;
    super::common::wait_until("the sandbox helper", 30, || {
        let out = Command::new("pgrep")
            .args(["-P", &cordon_pid.to_string()])
            .output()
            .unwrap();
        helper = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok());
        helper.is_some()
    });
    let helper = helper.unwrap();
    // The helper reaped while cordon still journals.
    super::common::wait_until("the helper's end", 60, || {
        !std::path::Path::new(&format!("/proc/{helper}")).exists()
    });
    assert!(
        cordon.0.try_wait().unwrap().is_none(),
        "cordon ended with its helper: the journal's end was too quick to test this"
    );
    // The next process started gets the helper's pid.
    let mut taker = None;
    for _ in 0..50 {
        fs_err::write("/proc/sys/kernel/ns_last_pid", (helper - 1).to_string()).unwrap();
        let mut sleep = Command::new("sleep").arg("30").spawn().unwrap();
        if sleep.id() == helper {
            taker = Some(sleep);
            break;
        }
        let _ = sleep.kill();
        let _ = sleep.wait();
    }
    let Some(mut taker) = taker else {
        panic!("no process could be started with the pid {helper}");
    };
    assert!(
        cordon.0.try_wait().unwrap().is_none(),
        "cordon ended before it could be signalled"
    );
    Command::new("kill")
        .args(["-TERM", &cordon_pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let survived = taker.try_wait().unwrap().is_none();
    let _ = taker.kill();
    let _ = taker.wait();
    assert!(
        survived,
        "the process that took the helper's pid was killed by cordon's forwarded signal"
    );
    super::common::wait_until("cordon's end", 120, || {
        cordon.0.try_wait().unwrap().is_some()
    });
}
