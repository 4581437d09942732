//! `cordon policy init` and `cordon policy check` end to end.

use pretty_assertions::assert_eq;

use super::common::{json, stderr, stdout, Home};

#[test]
fn init_writes_a_policy_that_tests_and_checks() {
    let home = Home::new();
    let dir = home.path().join("mine");
    let out = home
        .cordon(&["policy", "init", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.join("file.rego").exists() && dir.join("data.json").exists());

    let out = home
        .cordon(&["test", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let out = home
        .cordon(&["policy", "check", "--json", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["capabilities"],
        serde_json::json!([
            "clipboard",
            "env",
            "file",
            "infer",
            "net",
            "sandbox",
            "tool"
        ])
    );

    // A second init refuses to overwrite the person's edits.
    let out = home
        .cordon(&["policy", "init", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("refusing to overwrite"));
    assert!(stderr(&out).contains("hint: pass `--force`"));
    let out = home
        .cordon(&["policy", "init", "--force", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_reports_the_first_error_and_exits_one() {
    let home = Home::new();
    let dir = home.path().join("broken");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(
        dir.join("p.rego"),
        "package cordon.net\nimport rego.v1\n\ndecision := {\"allow\": nope(1)}\n",
    )
    .unwrap();
    let out = home
        .cordon(&["policy", "check", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        home.filter(&stderr(&out)).trim_end(),
        "error: [HOME]/broken/p.rego:4:27: Unknown function: 'nope'"
    );
}
