//! A sandbox launched through the library alone (`cordon_supervisor::session`), as every
//! front-end launches one: no `cordon` command in between.

use cordon_supervisor::session::{ErrorKind, LaunchRequest, Session};
use cordon_supervisor::CordonConfig;

use super::common::{sandbox_ready, Home};

fn request(home: &Home, command: &[&str]) -> LaunchRequest {
    let mut config = CordonConfig::default();
    config.audit.path = Some(home.audit_db());
    // This home's journal, not the one of the user running the tests.
    config.journal.path = Some(home.path().join("data/cordon/journal"));
    let mut request = LaunchRequest::new(
        config,
        command.iter().map(|s| (*s).to_owned()).collect(),
        home.workspace(),
    );
    request.env = vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())];
    request.helper = Some(env!("CARGO_BIN_EXE_cordon-sandbox-helper").into());
    request.front_end = "test".into();
    request
}

#[test]
fn a_program_is_confined_and_audited_through_the_library() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    // Outside the workspace, not granted: the program must not see it.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    fs_err::write(&secret, "not for agents").unwrap();
    let script = format!(
        "echo made > made.txt; cat {} && exit 9; exit 7",
        secret.display()
    );
    // Bare, the script reads the file: the test's attack works without the sandbox.
    let bare = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(home.workspace())
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(9));

    let running = Session::launch(request(&home, &["sh", "-c", &script])).unwrap();
    let id = running.id().to_owned();
    assert_eq!(id.len(), 12);
    assert_eq!(running.info().front_end, "test");
    let ended = running.wait().unwrap();
    assert_eq!(ended.exit_code, 7, "the secret was readable inside");
    assert_eq!(ended.id, id);
    assert_eq!(
        fs_err::read_to_string(home.workspace().join("made.txt")).unwrap(),
        "made\n"
    );

    // The decision and the outcome are in the audit log, with the session's id.
    let reader = cordon_audit::Reader::open(&home.audit_db()).unwrap();
    let mut records = Vec::new();
    let filter = cordon_audit::Filter {
        session: Some(id.clone()),
        ..cordon_audit::Filter::default()
    };
    reader
        .scan(&filter, |record| {
            records.push(record);
            true
        })
        .unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.capability == "sandbox" && r.allow));
    assert_eq!(records[1].input["result"]["exit_code"], 7);
}

#[test]
fn the_library_reports_typed_errors() {
    if !sandbox_ready() {
        return;
    }
    let home = Home::new();
    let missing = Session::launch(request(&home, &["no-such-program-anywhere"])).unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
    assert_eq!(missing.exit_code(), 127);

    let mut secret = request(&home, &["true"]);
    secret.read = vec!["/etc/shadow".into()];
    let refused = Session::launch(secret).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Refused, "{refused}");
    assert_eq!(refused.exit_code(), 125);

    let mut absent = request(&home, &["true"]);
    absent.write = vec!["does-not-exist".into()];
    let refused = Session::launch(absent).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Refused);
    assert!(refused.message.contains("does-not-exist"), "{refused}");
}
