//! `cordon eval` end to end: decisions, resolution, audit, bad input.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{assert_stderr_has, json, stderr, Home};

fn read(path: &str) -> String {
    json!({"capability": "file", "action": "read", "resource": {"path": path}}).to_string()
}

#[test]
fn allowed_read_in_the_workspace() {
    let home = Home::new();
    let out = home.run(&["eval"], &read("notes.md"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decision = json(&out);
    assert_eq!(
        decision,
        json!({
            "allow": true,
            "reasons": [format!("`{0}/notes.md` is inside the workspace `{0}`", home.workspace().display())],
            "obligations": []
        })
    );
}

#[test]
fn denied_secret_read_and_fail_on_deny() {
    let home = Home::new();
    let out = home.run(&["eval"], &read("~/.ssh/id_ed25519"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["allow"], false);
    let out = home.run(&["eval", "--fail-on-deny"], &read("../.ssh/id_ed25519"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        json(&out)["reasons"],
        json!([format!(
            "`{}/.ssh/id_ed25519` is a credentials or secrets location: agents may never read it",
            home.path().display()
        )])
    );
    let out = home.run(&["eval", "--fail-on-deny"], &read("notes.md"));
    assert_eq!(out.status.code(), Some(0));
}

/// A symbolic link planted in the workspace that points at `~/.ssh`: decided on its lexical
/// path alone it is "inside the workspace"; cordon resolves it and denies.
#[test]
fn symlink_planted_in_workspace_is_resolved() {
    let home = Home::new();
    std::os::unix::fs::symlink(home.path().join(".ssh"), home.workspace().join("keys")).unwrap();
    let lexical = json!({
        "capability": "file", "action": "read",
        "resource": {"path": format!("{}/keys/id_ed25519", home.workspace().display()), "sensitivity_level": 1},
        "context": {"home": home.path(), "workspace": [home.workspace()]}
    });
    let out = home.run(&["eval", "--raw"], &lexical.to_string());
    assert_eq!(
        json(&out)["allow"],
        true,
        "without resolution the link looks harmless"
    );
    let out = home.run(&["eval"], &read("keys/id_ed25519"));
    let decision = json(&out);
    assert_eq!(decision["allow"], false);
    assert_eq!(
        decision["reasons"],
        json!([format!(
            "`{}/.ssh/id_ed25519` is a credentials or secrets location: agents may never read it",
            home.path().display()
        )])
    );
}

#[test]
fn every_decision_is_audited() {
    let home = Home::new();
    home.run(&["eval"], &read("notes.md"));
    home.run(&["eval"], &read("~/.ssh/id_ed25519"));
    home.run(&["eval", "--no-audit"], &read("notes.md"));
    let out = home.cordon(&["audit", "query", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["allow"], true);
    assert_eq!(events[0]["outcome"], "evaluated");
    assert_eq!(events[1]["allow"], false);
    assert_eq!(events[1]["outcome"], "refused");
    assert_eq!(
        events[1]["resource"]["path"],
        format!("{}/.ssh/id_ed25519", home.path().display())
    );
    assert_eq!(events[0]["policy_revision"].as_str().unwrap().len(), 64);
    assert!(home.audit_db().exists());
}

#[test]
fn an_audit_log_that_cannot_be_written_denies() {
    let home = Home::new();
    let out = home.run(&["eval", "--audit-jsonl", "/dev/full"], &read("notes.md"));
    assert_eq!(out.status.code(), Some(0));
    let decision = json(&out);
    assert_eq!(decision["allow"], false);
    let reason = decision["reasons"][0].as_str().unwrap();
    assert!(reason.starts_with("denied because the decision could not be recorded (cannot write audit event to `/dev/full`"), "{reason}");
}

#[test]
fn explain_names_rules_data_and_lines() {
    let home = Home::new();
    let request = json!({"capability": "net", "action": "connect", "resource": {"host": "api.github.com", "port": 443}});
    let out = home.run(&["eval", "--explain"], &request.to_string());
    let output = json(&out);
    assert_eq!(output["allow"], true);
    let explain = &output["explain"];
    assert_eq!(explain["engine"], "rvm");
    assert_eq!(explain["rules"]["allow_entry"], "api.github.com");
    assert!(
        explain["rules"].get("deny").is_none(),
        "empty sets are left out"
    );
    assert_eq!(
        explain["data"]["data.cordon.settings.net.allow"]["api.github.com"],
        json!({"ports": [443]})
    );
    let lines = explain["evaluated"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["text"] == "entry := data.cordon.settings.net.allow[input.resource.host]"),
        "{lines:?}"
    );
}

#[test]
fn capability_flag_and_workspace_flag() {
    let home = Home::new();
    let other = home.path().join("other");
    fs_err::create_dir_all(&other).unwrap();
    let request = json!({"action": "read", "resource": {"path": other.join("x")}}).to_string();
    let out = home.run(&["eval", "--capability", "file"], &request);
    assert_eq!(json(&out)["allow"], false);
    let out = home.run(
        &[
            "eval",
            "--capability",
            "file",
            "--workspace",
            other.to_str().unwrap(),
        ],
        &request,
    );
    assert_eq!(json(&out)["allow"], true, "{}", stderr(&out));
}

#[test]
fn config_file_sets_workspace_and_policy() {
    let home = Home::new();
    let policy = home.path().join("policy");
    fs_err::create_dir_all(&policy).unwrap();
    fs_err::write(
        policy.join("p.rego"),
        "package cordon.file\nimport rego.v1\n\ndecision := {\"allow\": true, \"reasons\": [\"custom\"]} if input.resource.path in input.context.workspace\n",
    )
    .unwrap();
    let config = home.path().join("config/cordon/config.toml");
    fs_err::create_dir_all(config.parent().unwrap()).unwrap();
    fs_err::write(
        &config,
        format!(
            "[policy]\npath = {:?}\n\n[workspace]\nroots = [\"/srv\"]\n",
            policy
        ),
    )
    .unwrap();
    let out = home.run(&["eval"], &read("/srv"));
    assert_eq!(
        json(&out),
        json!({"allow": true, "reasons": ["custom"], "obligations": []}),
        "{}",
        stderr(&out)
    );
    // A flag overrides the file.
    let out = home.run(&["eval", "--workspace", "/opt"], &read("/srv"));
    assert_eq!(json(&out)["allow"], false);

    fs_err::write(&config, "[policy]\npaht = \"x\"\n").unwrap();
    let out = home.run(&["eval"], &read("/srv"));
    assert_eq!(out.status.code(), Some(2));
    let err = home.filter(&stderr(&out));
    assert!(err.starts_with("error: cannot read cordon's configuration\n  Caused by: invalid configuration `[HOME]/config/cordon/config.toml`\n  Caused by: TOML parse error at line 2, column 1"), "{err}");
}

#[test]
fn bad_input_gets_one_clear_error() {
    let home = Home::new();
    let cases: [(&[&str], &str, &str); 5] = [
        (&["eval"], "{not json", "error: standard input is not a valid request\n  Caused by: key must be a string at line 1 column 2"),
        (&["eval"], "{\"action\": \"read\", \"resource\": {\"path\": \"x\"}}", "error: standard input names no capability"),
        (&["eval"], "{\"capability\": \"file\", \"action\": \"read\", \"bogus\": 1}", "error: standard input is not a valid request\n  Caused by: unknown field `bogus`"),
        (&["eval", "--raw", "-c", "file"], "[1, 2]", "error: standard input must hold a JSON object, not an array"),
        (&["eval", "-c", "Bad.Cap"], "{\"action\": \"read\"}", "error: capability `Bad.Cap` is not valid: use lowercase letters, digits and `_`, starting with a letter"),
    ];
    for (args, stdin, expected) in cases {
        let out = home.run(args, stdin);
        assert_eq!(out.status.code(), Some(2), "{args:?} {stdin}");
        assert!(stdout_is_empty(&out), "{args:?}");
        let err = stderr(&out);
        assert!(err.starts_with(expected), "{args:?} {stdin}:\n{err}");
    }
    let big = format!(
        "{{\"capability\": \"file\", \"action\": \"read\", \"pad\": \"{}\"}}",
        "x".repeat(2 << 20)
    );
    let out = home.run(&["eval"], &big);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with(
        "error: standard input is larger than the 1048576-byte limit for one request"
    ));
    let out = home.run(&["eval", "--input", "missing.json"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: cannot read request `missing.json`"),
        "{}",
        stderr(&out)
    );
}

fn stdout_is_empty(out: &std::process::Output) -> bool {
    out.stdout.is_empty()
}

#[test]
fn a_broken_policy_is_named_with_file_line_and_column() {
    let home = Home::new();
    let policy = home.path().join("policy");
    fs_err::create_dir_all(&policy).unwrap();
    fs_err::write(
        policy.join("p.rego"),
        "package cordon.file\n\ndecision := {\"allow\": true\n",
    )
    .unwrap();
    let out = home.run(
        &["eval", "--policy", policy.to_str().unwrap()],
        &read("notes.md"),
    );
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(home.filter(&stderr(&out)), @r"
    error: cannot load policy from `[HOME]/policy`
      Caused by: [HOME]/policy/p.rego:4:1: expecting `}` while parsing object

    hint: check the policy with `cordon policy check PATH`, or run without `--policy` to use the built-in one
    ");
    let empty = home.path().join("empty");
    fs_err::create_dir_all(&empty).unwrap();
    let out = home.run(
        &["eval", "--policy", empty.to_str().unwrap()],
        &read("notes.md"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(home
        .filter(&stderr(&out))
        .contains("Caused by: no `.rego` files found in `[HOME]/empty`"));
}

#[test]
fn every_config_key_has_a_flag() {
    let home = Home::new();
    let out = home.run(
        &[
            "eval",
            "--explain",
            "--user",
            "bob",
            "--device",
            "d1",
            "--agent",
            "coder",
            "--engine",
            "interpreter",
        ],
        &read("notes.md"),
    );
    let output = json(&out);
    assert_eq!(output["explain"]["engine"], "interpreter");
    assert_eq!(
        output["explain"]["input"]["subject"],
        json!({"user": "bob", "device": "d1", "agent": "coder"})
    );
    let out = home.run(&["eval", "--max-input-bytes", "10"], &read("notes.md"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: standard input is larger than the 10-byte limit"));
    let out = home.run(&["eval", "--time-limit-ms", "0"], &read("notes.md"));
    assert_eq!(out.status.code(), Some(2));
    assert_stderr_has(
        &out,
        "invalid configuration value `policy.time_limit_ms`: must be a positive number",
    );
    let out = home.run(
        &["eval", "--time-limit-ms", "50", "--memory-limit-mib", "8"],
        &read("notes.md"),
    );
    assert_eq!(json(&out)["allow"], true);
}
