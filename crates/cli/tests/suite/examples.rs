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
