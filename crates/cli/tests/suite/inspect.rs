//! Content inspection end to end: `cordon scan`, `cordon label`, and file decisions taking
//! a file's sensitivity from its label, a path rule or its content, in that order.
//!
//! Secret-shaped values are assembled at run time so that this file is not a finding.

use std::os::unix::fs::symlink;
use std::process::Command;

use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::{json, stderr, stdout, Home};

fn aws_id() -> String {
    ["AKIA", "QYLPMN5HHHFPZAM2"].concat()
}

fn github() -> String {
    ["ghp_", "u8jzPde0IgxLd6GncfBAepfJBd0Kh8024xXH"].concat()
}

fn private_key() -> String {
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0";
    format!(
        "-----BEGIN {0}-----\n{body}\n{body}\n-----END {0}-----\n",
        "RSA PRIVATE KEY"
    )
}

/// A workspace holding secrets in several places, some of which a scan must not read.
fn planted(home: &Home) -> std::path::PathBuf {
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("src")).unwrap();
    fs_err::write(ws.join(".env"), format!("GITHUB_TOKEN={}\n", github())).unwrap();
    fs_err::write(
        ws.join("src/config.py"),
        format!("# settings\nREGION = 'eu'\nKEY = '{}'\n", aws_id()),
    )
    .unwrap();
    fs_err::write(ws.join(".gitignore"), "ignored.txt\n").unwrap();
    fs_err::write(ws.join("ignored.txt"), aws_id()).unwrap();
    let mut binary = vec![0u8; 64];
    binary.extend_from_slice(aws_id().as_bytes());
    fs_err::write(ws.join("image.bin"), binary).unwrap();
    // A FIFO nobody writes to, and a link loop: neither may hang or stop the scan.
    assert!(Command::new("mkfifo")
        .arg(ws.join("pipe"))
        .status()
        .unwrap()
        .success());
    symlink("loop-b", ws.join("loop-a")).unwrap();
    symlink("loop-a", ws.join("loop-b")).unwrap();
    ws
}

#[test]
fn scan_reports_masked_findings_and_never_the_value() {
    let home = Home::new();
    planted(&home);
    let out = home.run(&["scan"], "");
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        text.contains("./.env:1: token github-token (high): GITHUB_TOKEN=ghp_"),
        "{text}"
    );
    assert!(
        text.contains("./src/config.py:3: cloud_key aws-access-key-id (high): KEY = 'AKIA"),
        "{text}"
    );
    assert_eq!(
        text.lines().count(),
        2,
        "ignored and binary files are not reported: {text}"
    );
    for output in [&text, &err] {
        assert!(
            !output.contains(&aws_id()) && !output.contains(&github()),
            "{output}"
        );
        assert!(
            !output.contains(&aws_id()[4..]) && !output.contains(&github()[4..20]),
            "{output}"
        );
    }
    assert!(err.contains("2 findings in 2 files"), "{err}");

    // JSON, with the ignored file read on request and binary files searched.
    let out = home.run(&["scan", "--json", "--no-ignore", "--binary", "-L"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    let mut paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        ["./.env", "./ignored.txt", "./image.bin", "./src/config.py"]
    );
    assert!(!stdout(&out).contains(&aws_id()[4..]));
    // The link loop is reported, the scan goes on.
    assert!(
        doc["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"].as_str().unwrap().contains("loop")),
        "{doc}"
    );

    // Nothing of the kinds asked for: exit 0.
    let out = home.run(&["scan", "--only", "email,payment_card", "src"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = home.run(&["scan", "--only", "no-such-kind"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--list-rules"), "{}", stderr(&out));
    let out = home.run(&["scan", "missing-dir"], "");
    assert_eq!(out.status.code(), Some(2));

    // A file name that is not UTF-8: the JSON report is still one valid document.
    use std::os::unix::ffi::OsStrExt;
    let odd = home
        .workspace()
        .join(std::ffi::OsStr::from_bytes(b"odd-\xff.env"));
    fs_err::write(&odd, format!("T={}\n", github())).unwrap();
    let out = home.run(&["scan", "--json", "--no-ignore"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(json(&out)["findings"].as_array().unwrap().len() >= 3);

    // A file that says it is empty (as /proc's do) is read to its end.
    let out = home
        .cordon(&["scan", "--binary", "/proc/self/environ"])
        .env("DEPLOY_KEY", aws_id())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn scan_is_bounded_on_huge_deep_and_broken_trees() {
    let home = Home::new();
    let ws = home.workspace();
    // A 4 GiB sparse file: binary (zeros), skipped after its first block; searched only up
    // to the limit when binary files are asked for.
    let huge = fs_err::File::create(ws.join("huge.img")).unwrap();
    huge.set_len(4 << 30).unwrap();
    // A tree 200 directories deep with a secret at the bottom.
    let mut deep = ws.join("deep");
    for i in 0..200 {
        deep.push(format!("d{i}"));
    }
    fs_err::create_dir_all(&deep).unwrap();
    fs_err::write(deep.join("leaf.env"), format!("TOKEN={}\n", github())).unwrap();
    // A link to nowhere, followed: reported, and the scan goes on.
    symlink(ws.join("missing"), ws.join("dangling")).unwrap();
    let out = home.run(&["scan", "--json", "-L"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["binary_skipped"], 1, "{doc}");
    assert!(
        doc["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"].as_str().unwrap().contains("dangling")),
        "{doc}"
    );
    let out = home.run(
        &[
            "scan",
            "--json",
            "--binary",
            "--max-filesize",
            "1048576",
            "huge.img",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["truncated"], 1, "{doc}");
    assert_eq!(doc["bytes"], 1_048_576, "{doc}");
}

/// A policy that shows what a file decision sees of the file.
fn echo_policy(home: &Home, paths: serde_json::Value) -> String {
    let dir = home.path().join("echo-policy");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(
        dir.join("file.rego"),
        "package cordon.file\n\nimport rego.v1\n\ndecision := {\"allow\": true, \"reasons\": [sprintf(\"%s %s %v\", [input.resource.sensitivity, object.get(input.resource, \"sensitivity_source\", \"request\"), object.get(input.resource, \"findings\", {})])], \"obligations\": []}\n",
    )
    .unwrap();
    fs_err::write(
        dir.join("data.json"),
        json!({"cordon": {"settings": {"inspect": {"paths": paths}}}}).to_string(),
    )
    .unwrap();
    dir.display().to_string()
}

fn seen(home: &Home, policy: &str, path: &str) -> String {
    let request = json!({"capability": "file", "action": "read", "resource": {"path": path}});
    let out = home.run(&["eval", "--policy", policy], &request.to_string());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json(&out)["reasons"][0].as_str().unwrap().to_owned()
}

#[test]
fn label_beats_path_rule_beats_content() {
    let home = Home::new();
    let ws = home.workspace();
    fs_err::create_dir_all(ws.join("shared")).unwrap();
    fs_err::write(ws.join("shared/key.pem"), private_key()).unwrap();
    fs_err::write(ws.join("key.pem"), private_key()).unwrap();
    fs_err::write(ws.join("cards.csv"), "name,card\nann,4539 1488 0343 6467\n").unwrap();
    let policy = echo_policy(&home, json!([{"glob": "**/shared/**", "level": "public"}]));

    // Content: a private key makes a file restricted, a card number confidential.
    assert_eq!(
        seen(&home, &policy, "key.pem"),
        "restricted content {\"private_key\": 1}"
    );
    assert_eq!(
        seen(&home, &policy, "cards.csv"),
        "confidential content {\"payment_card\": 1}"
    );
    assert_eq!(seen(&home, &policy, "notes.md"), "internal default {}");
    // A path rule beats the content.
    assert_eq!(
        seen(&home, &policy, "shared/key.pem"),
        "public path {\"private_key\": 1}"
    );
    // A label beats the path rule.
    let out = home.run(&["label", "shared/key.pem", "confidential"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        seen(&home, &policy, "shared/key.pem"),
        "confidential label {\"private_key\": 1}"
    );
    let out = home.run(
        &["label", "shared/key.pem", "--json", "--policy", &policy],
        "",
    );
    assert_eq!(json(&out)["source"], "label");
    // A request that names a sensitivity keeps it.
    let request = json!({"capability": "file", "action": "read", "resource": {"path": "key.pem", "sensitivity": "public"}});
    let out = home.run(&["eval", "--policy", &policy], &request.to_string());
    assert!(
        json(&out)["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("public request"),
        "{}",
        stdout(&out)
    );
    // A label that is not a level is refused.
    let out = home.run(&["label", "key.pem", "secret"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = home.run(&["label", "--clear", "shared/key.pem"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        seen(&home, &policy, "shared/key.pem"),
        "public path {\"private_key\": 1}"
    );

    // The default policy asks before an agent reads what the content makes restricted.
    let request = json!({"capability": "file", "action": "read", "resource": {"path": "key.pem"}});
    let out = home.run(&["eval"], &request.to_string());
    let decision = json(&out);
    assert_eq!(decision["obligations"][0]["type"], "consent", "{decision}");
    // Malformed settings deny, naming the setting.
    let bad = echo_policy(&home, json!([{"glob": "**", "level": "secret"}]));
    let out = home.run(&["eval", "--policy", &bad], &request.to_string());
    let decision = json(&out);
    assert_eq!(decision["allow"], false);
    assert!(
        decision["reasons"][0]
            .as_str()
            .unwrap()
            .contains("paths[0].level"),
        "{decision}"
    );
}

#[test]
fn eval_shows_and_records_the_request_as_it_may_leave() {
    let home = Home::new();
    let dir = home.path().join("redact-policy");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(
        dir.join("infer.rego"),
        "package cordon.infer\n\nimport rego.v1\n\ndecision := {\"allow\": true, \"reasons\": [\"ok\"], \"obligations\": [{\"type\": \"redact\", \"patterns\": [\"token\", \"cloud_key\"], \"block_if\": [\"private_key\"]}]}\n",
    )
    .unwrap();
    let policy = dir.display().to_string();
    let prompt = format!("deploy with {} and mail ann@corp-mail.com", aws_id());
    let request = json!({"capability": "infer", "action": "send", "resource": {"host": "api.model.example", "prompt": prompt}, "context": {"note": format!("retry with {}", aws_id())}});
    let out = home.run(&["eval", "--policy", &policy], &request.to_string());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decision = json(&out);
    assert_eq!(decision["allow"], true);
    // Only the kinds named are replaced; the e-mail address is not one of them.
    assert_eq!(
        decision["redacted"]["resource"]["prompt"],
        "deploy with [REDACTED:cloud_key] and mail ann@corp-mail.com"
    );
    let log = stdout(&home.run(&["audit", "query", "--json"], ""));
    assert!(
        !log.contains(&aws_id()) && log.contains("[REDACTED:cloud_key]"),
        "{log}"
    );

    // What a block_if names refuses the request, and the value is withheld from the record.
    let request =
        json!({"capability": "infer", "action": "send", "resource": {"prompt": private_key()}});
    let out = home.run(&["eval", "--policy", &policy], &request.to_string());
    let decision = json(&out);
    assert_eq!(decision["allow"], false);
    assert!(
        decision["reasons"][0]
            .as_str()
            .unwrap()
            .contains("private_key"),
        "{decision}"
    );
    let log = stdout(&home.run(&["audit", "query", "--json"], ""));
    assert!(
        !log.contains(
            "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
        ),
        "{log}"
    );
}
