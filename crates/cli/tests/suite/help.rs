//! Help text is part of the interface: snapshot it.

use super::common::{stdout, Home};

fn help(args: &[&str]) -> String {
    let home = Home::new();
    let out = home.cordon(args).env("COLUMNS", "100").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    stdout(&out)
}

#[test]
fn top_level_help() {
    insta::assert_snapshot!(help(&["--help"]));
}

#[test]
fn eval_help() {
    insta::assert_snapshot!(help(&["eval", "--help"]));
}

#[test]
fn test_help() {
    insta::assert_snapshot!(help(&["test", "--help"]));
}

#[test]
fn policy_help() {
    insta::assert_snapshot!(help(&["policy", "init", "--help"]));
}

#[test]
fn policy_commands_help() {
    insta::assert_snapshot!(help(&["policy", "--help"]));
}

#[test]
fn policy_build_help() {
    insta::assert_snapshot!(help(&["policy", "build", "--help"]));
}

#[test]
fn audit_help() {
    insta::assert_snapshot!(help(&["audit", "--help"]));
}

#[test]
fn exec_help() {
    insta::assert_snapshot!(help(&["exec", "--help"]));
}

#[test]
fn proxy_help() {
    insta::assert_snapshot!(help(&["proxy", "--help"]));
}
