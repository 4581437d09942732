//! The files in `examples/` decide as `examples/README.md` says.

use std::path::Path;

use pretty_assertions::assert_eq;

use super::common::{json, stderr, Home};

#[test]
fn example_requests_decide_as_documented() {
    let home = Home::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = fs_err::canonicalize(root).unwrap();
    let config = root.join("examples/config.toml");
    let cases = [
        ("read-notes.json", true, 0),
        ("write-confidential.json", true, 2),
        ("connect-github.json", true, 1),
        ("read-ssh-key.json", false, 0),
        ("connect-paste-site.json", false, 0),
        ("connect-metadata.json", false, 0),
    ];
    for (file, allow, obligations) in cases {
        let input = root.join("examples/requests").join(file);
        let mut cmd = home.cordon(&[
            "--config",
            config.to_str().unwrap(),
            "eval",
            "--input",
            input.to_str().unwrap(),
        ]);
        let out = cmd.current_dir(&root).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
        let decision = json(&out);
        assert_eq!(decision["allow"], allow, "{file}: {decision}");
        assert_eq!(
            decision["obligations"].as_array().unwrap().len(),
            obligations,
            "{file}: {decision}"
        );
    }
}

/// The demo agent of the README's first command (`examples/demo.sh`), run in the sandbox:
/// every attempt beyond the workspace ends as the README shows.
#[test]
fn the_demo_agent_is_confined() {
    if !super::common::sandbox_ready() {
        return;
    }
    let home = Home::new();
    let root = fs_err::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
    fs_err::copy(
        root.join("examples/agent/agent.sh"),
        home.workspace().join("agent.sh"),
    )
    .unwrap();
    let out = home
        .cordon(&["exec", "--", "bash", "./agent.sh"])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = super::common::stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for (attempt, outcome) in [
        ("read the workspace", "ok: agent.sh"),
        ("write in the workspace", "ok: agent-notes.txt"),
        ("list ~/.ssh", "hidden"),
        ("read /etc/shadow", "hidden"),
        ("write outside the workspace", "refused"),
        (
            "upload to paste.example.net",
            "refused by the egress proxy (403)",
        ),
        ("raw connection to 1.1.1.1:53", "refused"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(attempt))
            .unwrap_or_else(|| panic!("no `{attempt}` in\n{text}"));
        assert!(line.contains(outcome), "{line}\n{text}");
    }
    assert!(home.workspace().join("agent-notes.txt").exists());
}
