//! `cordon test` end to end.

use pretty_assertions::assert_eq;

use super::common::{default_policy_dir, fixture, json, stdout, Home};

#[test]
fn default_policy_passes() {
    let home = Home::new();
    let out = home
        .cordon(&["test", default_policy_dir().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("117 passed, 0 failed, 0 errored, 0 skipped (117 tests in "),
        "{summary}"
    );
    // With no path, the built-in policy is tested.
    let out = home.cordon(&["test"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn failures_are_listed_and_exit_one() {
    let home = Home::new();
    let dir = fixture("opa-rbac");
    let out = home
        .cordon(&["test", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines
        .iter()
        .any(|l| l.starts_with("data.app.rbac_test.test_bob_is_admin: FAIL (")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("data.app.rbac_test.test_conflict: ERROR (")));
    assert!(
        !lines.iter().any(|l| l.contains(": PASS")),
        "passes are printed only with -v"
    );
    assert!(lines
        .last()
        .unwrap()
        .starts_with("5 passed, 2 failed, 1 errored, 1 skipped (9 tests in "));

    let out = home
        .cordon(&["test", "-v", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains(": PASS ("))
            .count(),
        5
    );

    let out = home
        .cordon(&["test", "--json", "--run", "admin", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let report = json(&out);
    let outcomes: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["pass", "fail"]);
}

#[test]
fn a_parse_error_fails_the_run() {
    let home = Home::new();
    let dir = home.path().join("p");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join("a_test.rego"), "package a\n\ntest_x if {\n").unwrap();
    let out = home
        .cordon(&["test", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = home.filter(&String::from_utf8_lossy(&out.stderr));
    assert!(
        err.starts_with("error: [HOME]/p/a_test.rego:4:1: "),
        "{err}"
    );
}
