//! Landlock confinement, applied for real: reading a secret and writing outside the
//! workspace work without it and fail with EACCES with it; the workspace stays usable.

use pretty_assertions::assert_eq;

use super::common::{stderr, Home};

const EACCES: i64 = 13;

#[test]
fn grants_confine_reads_and_writes() {
    let home = Home::new();
    let secret = home.path().join(".ssh/id_ed25519");
    let inside = home.workspace().join("notes.md");
    let outside = home.path().join(".bashrc");
    let inside_new = home.workspace().join("new.txt");
    let tries = |grants: &[&str]| {
        let mut args = vec!["__landlock-probe".to_owned()];
        args.extend(grants.iter().map(|s| s.to_string()));
        for (flag, path) in [
            ("--try-read", &secret),
            ("--try-read", &inside),
            ("--try-write", &outside),
            ("--try-write", &inside_new),
        ] {
            args.push(flag.to_owned());
            args.push(path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = home.cordon(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let key = |verb: &str, path: &std::path::Path| format!("{verb} {}", path.display());

    // Without Landlock the attacks work.
    let open = tries(&[]);
    assert_eq!(open[key("read", &secret)], "ok");
    assert_eq!(open[key("write", &outside)], "ok");
    fs_err::remove_file(&outside).unwrap();
    fs_err::remove_file(&inside_new).unwrap();

    // With the workspace granted read-write and system directories read-only, they fail.
    let workspace = home.workspace().display().to_string();
    let confined = tries(&["--read", "/usr", "--read", "/etc", "--write", &workspace]);
    assert_eq!(confined["enforcement"], "Full");
    assert_eq!(confined[key("read", &secret)].as_i64(), Some(EACCES));
    assert_eq!(confined[key("write", &outside)].as_i64(), Some(EACCES));
    assert!(!outside.exists());
    assert_eq!(confined[key("read", &inside)], "ok");
    assert_eq!(confined[key("write", &inside_new)], "ok");
}

#[test]
fn a_grant_that_does_not_exist_is_refused() {
    let home = Home::new();
    let missing = home.path().join("nope");
    let out = home
        .cordon(&["__landlock-probe", "--read", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(home
        .filter(&stderr(&out))
        .starts_with("error: cannot grant `[HOME]/nope`: it cannot be opened"));
}
