//! `cordon audit` end to end: verify, query, export, stats, and durability under kill -9.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{skip, stderr, stdout, Home};

fn decide_some(home: &Home) {
    for path in ["notes.md", "~/.ssh/id_ed25519", "notes.md", "/etc/shadow"] {
        let request =
            json!({"capability": "file", "action": "read", "resource": {"path": path}}).to_string();
        let out = home.run(&["eval"], &request);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let request = json!({"capability": "net", "action": "connect", "resource": {"host": "api.github.com", "port": 443}});
    home.run(&["eval"], &request.to_string());
}

#[test]
fn verify_passes_then_names_the_edited_record() {
    let home = Home::new();
    decide_some(&home);
    let out = home.cordon(&["audit", "verify"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("ok: 5 records, 5 checkpoints verified; head record 5 `"),
        "{}",
        stdout(&out)
    );

    let conn = rusqlite::Connection::open(home.audit_db()).unwrap();
    conn.execute("UPDATE events SET record = replace(record, '\"allow\":false', '\"allow\":true') WHERE seq = 2", [])
        .unwrap();
    let out = home
        .cordon(&["audit", "verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problem"]["seq"], 2);
    assert_eq!(report["problem"]["kind"], "edited");
}

#[test]
fn query_export_and_stats() {
    let home = Home::new();
    decide_some(&home);
    let out = home
        .cordon(&[
            "audit",
            "query",
            "--capability",
            "file",
            "--decision",
            "deny",
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains(" DENY  file ")), "{text}");

    let out = home
        .cordon(&["audit", "query", "--since", "2999-01-01"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "");
    let out = home
        .cordon(&["audit", "query", "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: `yesterday` is not a time"),
        "{}",
        stderr(&out)
    );

    let out = home
        .cordon(&["audit", "export", "--format", "ocsf"])
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5);
    assert_eq!(events[1]["class_uid"], 1001);
    assert_eq!(events[1]["type_uid"], 100102);
    assert_eq!(events[1]["disposition"], "Blocked");
    assert_eq!(events[4]["class_uid"], 4001);
    assert_eq!(
        events[4]["dst_endpoint"],
        json!({"hostname": "api.github.com", "port": 443})
    );

    let out = home.cordon(&["audit", "stats", "--json"]).output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["records"], 5);
    assert_eq!(stats["by_capability"]["file"], json!([2, 2]));
    assert_eq!(stats["by_capability"]["net"], json!([1, 0]));
}

#[test]
fn a_missing_log_is_a_clear_error() {
    let home = Home::new();
    let out = home.cordon(&["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = home.filter(&stderr(&out));
    assert!(
        err.starts_with("error: cannot read the audit log\n  Caused by: cannot open audit database `[HOME]/data/cordon/audit.db`"),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
}

/// kill -9 in the middle of a burst loses no event that was acknowledged.
#[test]
fn kill_during_a_burst_loses_no_acknowledged_event() {
    let home = Home::new();
    let db = home.path().join("burst.db");
    let mut child = home
        .cordon(&[
            "audit",
            "--db",
            db.to_str().unwrap(),
            "load-test",
            "--events",
            "1000000",
            "--threads",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.len() < 3000 && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => acknowledged.push(line.parse::<u64>().unwrap()),
            _ => break,
        }
    }
    // SIGKILL: no destructor, no final checkpoint, possibly in the middle of a commit.
    child.kill().unwrap();
    // Sequence numbers printed before the kill but still in the pipe count as acknowledged.
    for line in lines.map_while(Result::ok) {
        acknowledged.push(line.parse::<u64>().unwrap());
    }
    child.wait().unwrap();
    assert!(
        acknowledged.len() >= 3000,
        "only {} events acknowledged",
        acknowledged.len()
    );

    let out = home
        .cordon(&["audit", "--db", db.to_str().unwrap(), "verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = report["records"].as_u64().unwrap();
    let highest = *acknowledged.iter().max().unwrap();
    assert!(
        stored >= highest,
        "acknowledged record {highest} but only {stored} survived"
    );
    // The store keeps working after the crash, continuing the chain.
    let request = json!({"capability": "file", "action": "read", "resource": {"path": "notes.md"}})
        .to_string();
    let out = home.run(&["eval", "--audit-db", db.to_str().unwrap()], &request);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = home
        .cordon(&["audit", "--db", db.to_str().unwrap(), "verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"].as_u64().unwrap(), stored + 1);
    assert_eq!(report["problem"], serde_json::Value::Null);
}

#[test]
fn tail_follow_prints_new_records() {
    let home = Home::new();
    decide_some(&home);
    let mut child = home
        .cordon(&["audit", "tail", "-n", "1", "-f", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first: serde_json::Value =
        serde_json::from_str(&received.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(first["seq"], 5);
    let request = json!({"capability": "file", "action": "read", "resource": {"path": "later.md"}})
        .to_string();
    home.run(&["eval"], &request);
    let next: serde_json::Value =
        serde_json::from_str(&received.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(next["seq"], 6);
    assert!(next["resource"]["path"]
        .as_str()
        .unwrap()
        .ends_with("/work/later.md"));
}

/// A database that cannot be written is an error before any decision, not a silent dry run.
#[test]
fn a_read_only_database_refuses_to_decide() {
    let home = Home::new();
    decide_some(&home);
    let db = home.audit_db();
    // Root ignores file modes; the immutable attribute binds root too.
    let made_immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&db)
        .status()
        .map(|s| s.success());
    if made_immutable.ok() != Some(true) {
        skip("`chattr +i` is not available on this file system, so a read-only database cannot be made");
        return;
    }
    let request = json!({"capability": "file", "action": "read", "resource": {"path": "notes.md"}})
        .to_string();
    let out = home.run(&["eval"], &request);
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&db)
        .status();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no decision may be printed");
    let err = home.filter(&stderr(&out));
    assert!(
        err.starts_with("error: cannot open the audit log\n"),
        "{err}"
    );
    assert!(
        err.contains("attempt to write a readonly database"),
        "{err}"
    );
    assert!(
        err.contains("hint: decisions are not made unaudited"),
        "{err}"
    );
}

/// A full disk: the event that does not fit is refused with the reason, every event
/// acknowledged before it is kept, and the log still verifies.
#[test]
fn a_full_disk_refuses_and_keeps_what_was_acknowledged() {
    let home = Home::new();
    let dir = home.path().join("small");
    fs_err::create_dir_all(&dir).unwrap();
    let cordon = env!("CARGO_BIN_EXE_cordon");
    // A private mount namespace: the 300 KiB file system disappears with the shell.
    let script = format!(
        "mount -t tmpfs -o size=300k tmpfs {dir} || exit 77
         {cordon} audit --db {dir}/a.db load-test --events 100000 --threads 1 > {dir}/../acks.txt 2> {dir}/../load.err
         echo load=$?
         {cordon} audit --db {dir}/a.db verify --json",
        dir = dir.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output();
    let out = match out {
        Ok(out) if out.status.code() != Some(77) && !stdout(&out).is_empty() => out,
        _ => {
            skip(
                "no permission to mount a small tmpfs in a private mount namespace (`unshare -m`)",
            );
            return;
        }
    };
    let text = stdout(&out);
    let (load, report) = text.split_once('\n').unwrap();
    assert_eq!(
        load, "load=2",
        "the load test must end in an error, not in success"
    );
    let acks = fs_err::read_to_string(home.path().join("acks.txt")).unwrap();
    let acknowledged: Vec<u64> = acks.lines().map(|l| l.parse().unwrap()).collect();
    assert!(!acknowledged.is_empty());
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(report["problem"], serde_json::Value::Null);
    assert_eq!(
        report["records"].as_u64().unwrap(),
        *acknowledged.iter().max().unwrap()
    );
    let err = fs_err::read_to_string(home.path().join("load.err")).unwrap();
    assert!(err.contains("database or disk is full"), "{err}");
}

/// Runs `cmd` with a standard output whose reader has gone, as `| head -0` leaves it.
fn with_output_nobody_reads(mut cmd: std::process::Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// A command whose output nobody reads (`cordon audit verify | head -0`) ends with an error
/// naming standard output, not a panic's 101; one that failed for its own reason (an edited
/// record) keeps its status.
#[test]
fn output_nobody_reads_is_an_error_not_a_panic() {
    let home = Home::new();
    decide_some(&home);
    let doctor = home.cordon(&["doctor"]).output().unwrap();
    let cases: [(&[&str], i32); 5] = [
        (&["audit", "verify"], 2),
        (&["audit", "query"], 2),
        (&["audit", "stats"], 2),
        (&["ps", "--json"], 2),
        // Doctor's own status, where this machine lacks something; else the lost output's.
        (
            &["doctor"],
            doctor.status.code().filter(|&c| c != 0).unwrap_or(2),
        ),
    ];
    for (args, expected) in cases {
        let out = with_output_nobody_reads(home.cordon(args));
        assert_eq!(
            out.status.code(),
            Some(expected),
            "cordon {args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("cannot write the output to standard output"),
            "cordon {args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }

    let conn = rusqlite::Connection::open(home.audit_db()).unwrap();
    conn.execute("UPDATE events SET record = replace(record, '\"allow\":false', '\"allow\":true') WHERE seq = 2", [])
        .unwrap();
    let out = with_output_nobody_reads(home.cordon(&["audit", "verify"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write the output to standard output"),
        "{}",
        stderr(&out)
    );
}
