//! A private home for each test, and the `cordon` binary run inside it.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary home with a workspace, a secret, and XDG directories of its own.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self::with_dir(tempfile::tempdir().unwrap())
    }

    /// A home outside /tmp, /var/tmp and /run (as a person's is): the sandbox's private
    /// directories would otherwise lie above it. Made under the real home's cache.
    pub fn outside_tmp() -> Self {
        let parent = std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
            .join(".cache/cordon-test-homes");
        fs_err::create_dir_all(&parent).unwrap();
        for private in ["/tmp", "/var/tmp", "/run"] {
            assert!(
                !fs_err::canonicalize(&parent).unwrap().starts_with(private),
                "{} lies below {private}",
                parent.display()
            );
        }
        Self::with_dir(tempfile::tempdir_in(parent).unwrap())
    }

    fn with_dir(dir: tempfile::TempDir) -> Self {
        let home = Self { dir };
        fs_err::create_dir_all(home.workspace()).unwrap();
        fs_err::create_dir_all(home.path().join(".ssh")).unwrap();
        fs_err::write(home.path().join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
        fs_err::write(home.workspace().join("notes.md"), "notes").unwrap();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(home.runtime_dir())
            .unwrap();
        home
    }

    /// This home's `XDG_RUNTIME_DIR`: where its sessions' control sockets are.
    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    pub fn path(&self) -> PathBuf {
        fs_err::canonicalize(self.dir.path()).unwrap()
    }

    pub fn workspace(&self) -> PathBuf {
        self.path().join("work")
    }

    pub fn audit_db(&self) -> PathBuf {
        self.path().join("data/cordon/audit.db")
    }

    /// `cordon ARGS` with this home, run in the workspace.
    pub fn cordon(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
        cmd.args(args)
            .current_dir(self.workspace())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("USER", "alice")
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs `cordon ARGS` with `stdin` piped in.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(self.cordon(args), stdin)
    }

    /// Remembers the person's answer "always" to granting this home (for writing, which
    /// covers reading), as `cordon approve --for always` would: the default policy asks
    /// before granting a directory that holds personal folders.
    pub fn remember_home_grant(&self) {
        let dir = self.path().join("config/cordon");
        fs_err::create_dir_all(&dir).unwrap();
        let key = format!("write:{}", self.path().display());
        let document = serde_json::json!({ "sandbox": { key: { "by": "test" } } });
        fs_err::write(dir.join("remembered.json"), document.to_string()).unwrap();
    }

    /// Replaces this home's path with `[HOME]` so output can be snapshotted.
    pub fn filter(&self, text: &str) -> String {
        text.replace(&self.path().display().to_string(), "[HOME]")
    }
}

pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // cordon may stop reading early (an oversized request): a broken pipe is expected then.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {} stderr {}", stdout(out), stderr(out)))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policy/tests/fixtures")
        .join(name)
}

pub fn default_policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default")
}

/// Whether this kernel has what `cordon exec` needs (user namespaces, Landlock, seccomp,
/// cgroups), per `cordon doctor`; when not, says which is missing so the test can skip.
pub fn sandbox_ready() -> bool {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let ready = READY.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(["doctor", "--json"])
            .output()
            .unwrap();
        let report: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let missing: Vec<String> = report
            .iter()
            .filter(|f| f["status"] != "ok")
            .map(|f| format!("{} ({})", f["name"], f["found"]))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join(", "))
        }
    });
    match ready {
        Ok(()) => true,
        Err(missing) => {
            skip(&format!("this kernel lacks {missing}"));
            false
        }
    }
}

/// Whether a skipped test must fail instead: set on this project's machines (and so in CI),
/// where every kernel feature is present and tests run as root, so that a green run means
/// every sandbox test ran.
fn skips_are_failures() -> bool {
    std::env::var_os("CORDON_REQUIRE_SANDBOX").is_some_and(|v| v == "1")
}

/// Reports a skipped test, or fails it where skips are failures.
pub fn skip(why: &str) {
    assert!(
        !skips_are_failures(),
        "CORDON_REQUIRE_SANDBOX=1, but this test would skip: {why}"
    );
    eprintln!("skipped: {why}");
}

/// Whether the tests run as root (the case of containers and CI); when not, says so so the
/// test can skip.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = fs_err::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        skip("this test needs root");
    }
    root
}

/// Kills a `cordon` process when a test ends early, so that no sandbox or proxy outlives a
/// failed test.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A copy of the default policy in this home, with `patch` applied to its
/// `data.cordon.settings`; returns the directory, for `--policy`.
pub fn default_policy_with(home: &Home, patch: impl FnOnce(&mut serde_json::Value)) -> String {
    let dir = home.path().join("policy");
    fs_err::create_dir_all(&dir).unwrap();
    for entry in fs_err::read_dir(default_policy_dir()).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let data_path = dir.join("data.json");
    let mut data: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&data_path).unwrap()).unwrap();
    patch(&mut data["cordon"]["settings"]);
    fs_err::write(&data_path, data.to_string()).unwrap();
    dir.display().to_string()
}

/// `cordon exec FLAGS -- SHELL -c SCRIPT` in this home's workspace, with the system `PATH`
/// and no standard input.
pub fn exec_script(home: &Home, flags: &[&str], shell: &str, script: &str) -> Command {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", shell, "-c", script]);
    let mut command = home.cordon(&args);
    command
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null());
    command
}

/// A file's text, or nothing when it does not exist.
pub fn read_or_empty(path: impl AsRef<Path>) -> String {
    fs_err::read_to_string(path).unwrap_or_default()
}

/// Waits until `done` holds, checking every 50 ms; fails the test after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Fails the test unless `out`'s standard error contains `needle`, showing it when it does not.
#[track_caller]
pub fn assert_stderr_has(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(err.contains(needle), "`{needle}` not in stderr:\n{err}");
}

/// A listener that counts the bytes it receives and answers `200 ok` to each connection.
pub struct Listener {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = std::sync::Arc::clone(&count);
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(300)));
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        count.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    );
                });
            }
        });
        Self { port, received }
    }

    pub fn received(&self) -> usize {
        std::thread::sleep(std::time::Duration::from_millis(400));
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A port nobody listens on right now, that no other test in this process is given, and that
/// the kernel never hands out by itself: two `bind(":0")` calls may return the same port once
/// the first is closed, and any socket may get an ephemeral port as its own, so a port taken
/// from that range can be in use again by the time a test's collector comes up.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = ephemeral_ports();
    let (first, last) = if low > 11_024 {
        (low - 10_000, low - 1)
    } else {
        (high + 1, u32::from(u16::MAX))
    };
    let start = first + std::process::id() % 1000;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port <= last, "no free port left in {first}..={last}");
        let port = u16::try_from(port).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The range the kernel picks ephemeral ports from.
fn ephemeral_ports() -> (u32, u32) {
    let text = fs_err::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".to_owned());
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u32>().unwrap());
    (bounds.next().unwrap(), bounds.next().unwrap())
}
