//! Data-driven decision cases (`tests/cases/*.yaml`), each run on both evaluators.

use std::path::Path;

use cordon_policy::{EngineKind, Policy, PolicyOptions, PolicySource};
use cordon_types::{Capability, Decision, InputBuilder, InputEnv, Request};
use pretty_assertions::assert_eq;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    note: String,
    request: Request,
    want: Decision,
}

fn builder() -> InputBuilder {
    InputBuilder::new(InputEnv {
        user: Some("alice".into()),
        home: Some("/home/alice".into()),
        cwd: Some("/home/alice/work".into()),
        workspace: vec!["/home/alice/work".into()],
        time: Some("2026-11-26T12:00:00Z".into()),
        ..InputEnv::default()
    })
}

fn load_cases() -> Vec<(String, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = fs_err::read_to_string(&file).unwrap();
        let parsed: Vec<Case> =
            yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        cases.extend(parsed.into_iter().map(|c| (name.clone(), c)));
    }
    assert!(
        cases.len() >= 10,
        "case files not found in {}",
        dir.display()
    );
    cases
}

#[test]
fn default_policy_cases_on_both_engines() {
    let source = PolicySource::embedded_default();
    let rvm = Policy::load(
        &source,
        PolicyOptions {
            engine: EngineKind::Rvm,
            ..PolicyOptions::default()
        },
    )
    .unwrap();
    let interpreter = Policy::load(
        &source,
        PolicyOptions {
            engine: EngineKind::Interpreter,
            ..PolicyOptions::default()
        },
    )
    .unwrap();
    assert!(
        rvm.warnings().is_empty(),
        "the default policy must compile for the VM: {:?}",
        rvm.warnings()
    );
    let file = Capability::new("file").unwrap();
    assert_eq!(rvm.engine_for(&file), Some(EngineKind::Rvm));
    assert_eq!(interpreter.engine_for(&file), Some(EngineKind::Interpreter));

    let builder = builder();
    for (file, case) in load_cases() {
        let input = builder.build(&case.request).unwrap();
        let capability = Capability::new(case.request.capability.as_deref().unwrap()).unwrap();
        let by_rvm = rvm.evaluate(&capability, &input);
        let by_interpreter = interpreter.evaluate(&capability, &input);
        assert_eq!(by_rvm, case.want, "{file}: {} (rvm)", case.note);
        assert_eq!(
            by_interpreter, case.want,
            "{file}: {} (interpreter)",
            case.note
        );
    }
}

/// Every combination of a grid of requests decides identically on both evaluators.
#[test]
fn rvm_matches_interpreter_on_a_request_grid() {
    let source = PolicySource::embedded_default();
    let rvm = Policy::load(&source, PolicyOptions::default()).unwrap();
    let interpreter = Policy::load(
        &source,
        PolicyOptions {
            engine: EngineKind::Interpreter,
            ..PolicyOptions::default()
        },
    )
    .unwrap();
    let builder = builder();
    let paths = [
        "a.txt",
        "/home/alice/work",
        "/home/alice/.ssh/config",
        "/home/alice/.config/gcloud/x",
        "/etc/passwd",
        "/etc/ssh/ssh_host_rsa_key",
        "/home/alice/workx",
        "~/.kube/config",
        "../x",
    ];
    let hosts = [
        "api.github.com",
        "github.com",
        "x.githubusercontent.com",
        "evil.example",
        "169.254.169.254",
        "metadata.google.internal",
        "127.0.0.1",
        "169.254.1.1",
    ];
    let mut compared = 0;
    for sensitivity in ["public", "internal", "confidential", "restricted"] {
        for action in ["read", "write", "list", "delete", "exfiltrate"] {
            for path in paths {
                let request: Request = serde_json::from_value(serde_json::json!({
                    "capability": "file", "action": action,
                    "resource": {"path": path, "sensitivity": sensitivity}
                }))
                .unwrap();
                let input = builder.build(&request).unwrap();
                let cap = Capability::new("file").unwrap();
                assert_eq!(
                    rvm.evaluate(&cap, &input),
                    interpreter.evaluate(&cap, &input),
                    "{input}"
                );
                compared += 1;
            }
        }
        for host in hosts {
            for port in [22u16, 80, 443] {
                for capability in ["net", "infer"] {
                    let request: Request = serde_json::from_value(serde_json::json!({
                        "capability": capability, "action": "connect",
                        "resource": {"host": host, "port": port, "sensitivity": sensitivity}
                    }))
                    .unwrap();
                    let input = builder.build(&request).unwrap();
                    let cap = Capability::new(capability).unwrap();
                    assert_eq!(
                        rvm.evaluate(&cap, &input),
                        interpreter.evaluate(&cap, &input),
                        "{input}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 4 * (5 * 9 + 8 * 3 * 2));
}

/// The launch decision, on inputs that ask the person (personal folders, the home) and that
/// do not, decides identically on both evaluators (the launch decision's grants are too
/// large for the case files).
#[test]
fn launch_decisions_match_on_both_engines() {
    let source = PolicySource::embedded_default();
    let load = |engine| {
        Policy::load(
            &source,
            PolicyOptions {
                engine,
                ..PolicyOptions::default()
            },
        )
        .unwrap()
    };
    let (rvm, interpreter) = (load(EngineKind::Rvm), load(EngineKind::Interpreter));
    let sandbox = Capability::new("sandbox").unwrap();
    for (read, write, interactive) in [
        (vec!["/home/alice/Dokumente"], vec![], true),
        (vec!["/data"], vec![], false),
        (vec!["/home/alice"], vec![], true),
        (vec!["/home/alice"], vec![], false),
        (vec!["/home/alice/Documents/taxes"], vec![], true),
        (vec![], vec!["/home/alice/Desktop"], true),
        (
            vec!["/home/alice/Pictures"],
            vec!["/home/alice/Pictures"],
            true,
        ),
        (vec!["/data"], vec!["/home/alice/out"], true),
    ] {
        let input = serde_json::json!({
            "capability": "sandbox",
            "action": "launch",
            "resource": {"command": ["bash"], "cwd": "/home/alice/proj"},
            "context": {
                "home": "/home/alice",
                "workspace": ["/home/alice/proj"],
                "request": {"read": read, "write": write},
                "consent": {"interactive": interactive},
                "personal_dirs": ["/home/alice/Dokumente", "/data/photos"],
                "machine": {"memory_bytes": 8_000_000_000_u64},
            },
        });
        // The same request from a skill (`cordon run`): no command, the skill's identity.
        let mut skill = input.clone();
        skill["subject"] =
            serde_json::json!({"skill": {"name": "summarise", "sha256": "ab12cd34ef56ab12"}});
        skill["resource"] = serde_json::json!({"skill": "/home/alice/skills/summarise.wasm"});
        skill["context"]["workspace"] = serde_json::json!([]);
        for input in [input, skill] {
            let by_rvm = rvm.evaluate(&sandbox, &input);
            assert!(
                !by_rvm.reasons.iter().any(|r| r.contains("malformed")),
                "{input}: {by_rvm:?}"
            );
            assert_eq!(by_rvm, interpreter.evaluate(&sandbox, &input), "{input}");
        }
    }
}
