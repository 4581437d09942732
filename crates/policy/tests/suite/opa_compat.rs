//! `cordon test` gives the results `opa test` gives on an OPA-style package.

use std::path::Path;

use cordon_policy::{run_tests, Outcome, PolicySource, TestOptions};
use pretty_assertions::assert_eq;

fn fixture() -> PolicySource {
    PolicySource::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opa-rbac"))
        .unwrap()
}

#[test]
fn opa_style_package_gives_opa_results() {
    let report = run_tests(&fixture(), &TestOptions::default()).unwrap();
    let outcomes: Vec<(String, &str)> = report
        .results
        .iter()
        .map(|r| {
            let kind = match r.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Error(_) => "ERROR",
                Outcome::Skip => "SKIPPED",
            };
            (r.name.clone(), kind)
        })
        .collect();
    // What `opa test -v` reports for this directory.
    let expected = vec![
        ("data.app.grants_test.test_grants_for_bob", "PASS"),
        ("data.app.rbac_test.test_admin_allowed", "PASS"),
        ("data.app.rbac_test.test_employee_can_update_dog", "PASS"),
        ("data.app.rbac_test.test_customer_cannot_update", "PASS"),
        ("data.app.rbac_test.test_data_override", "PASS"),
        ("data.app.rbac_test.test_bob_is_admin", "FAIL"),
        ("data.app.rbac_test.test_false", "FAIL"),
        ("data.app.rbac_test.test_conflict", "ERROR"),
        ("data.app.rbac_test.todo_test_billing_reports", "SKIPPED"),
    ];
    let expected: Vec<(String, &str)> = expected
        .into_iter()
        .map(|(n, k)| (n.to_owned(), k))
        .collect();
    assert_eq!(outcomes, expected);
    assert_eq!(
        (
            report.passed(),
            report.failed(),
            report.errors(),
            report.skipped()
        ),
        (5, 2, 1, 1)
    );
    assert!(!report.success());
}

#[test]
fn filter_selects_tests_like_opa_run() {
    let options = TestOptions::with_filter("admin").unwrap();
    let report = run_tests(&fixture(), &options).unwrap();
    let names: Vec<&str> = report.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "data.app.rbac_test.test_admin_allowed",
            "data.app.rbac_test.test_bob_is_admin"
        ]
    );
    assert!(TestOptions::with_filter("(").is_err());
}

#[test]
fn default_policy_tests_all_pass() {
    let report = run_tests(&PolicySource::embedded_default(), &TestOptions::default()).unwrap();
    let failures: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(report.passed() >= 30, "only {} tests ran", report.passed());
}
