//! The shape of every attack test: run the attack bare, to prove it works on this machine,
//! then inside `cordon exec`, and judge both by what is observed from outside.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::common::{exec_script, read_or_empty as read, stderr, Home};

pub const SECRET: &str = "PRIVATE KEY";

/// Runs `script` with `sh -c` in the workspace, without the sandbox.
pub fn bare(home: &Home, script: &str) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .current_dir(home.workspace())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("GITHUB_TOKEN", "ghp_canary")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `script` with `sh -c` in the workspace, inside `cordon exec FLAGS`.
pub fn sandboxed(home: &Home, flags: &[&str], script: &str) -> Output {
    exec_script(home, flags, "sh", script)
        .env("GITHUB_TOKEN", "ghp_canary")
        .output()
        .unwrap()
}

/// The file `leak` in the workspace: what an attack managed to copy out.
pub fn leak(home: &Home) -> PathBuf {
    home.workspace().join("leak")
}

pub fn reset(home: &Home) {
    let _ = fs_err::remove_file(leak(home));
}

/// Runs `script` bare, then sandboxed with `flags`, and checks that the leak file holds
/// `canary` only in the bare run.
pub fn leaks_only_without_sandbox(home: &Home, flags: &[&str], script: &str, canary: &str) {
    reset(home);
    let out = bare(home, script);
    assert!(
        read(leak(home)).contains(canary),
        "the attack does not work even without the sandbox: {}",
        stderr(&out)
    );
    reset(home);
    let out = sandboxed(home, flags, script);
    assert!(
        !read(leak(home)).contains(canary),
        "the sandbox let the attack through; stderr: {}",
        stderr(&out)
    );
    // The attack ran inside: the sandbox itself did not refuse to start.
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
}
