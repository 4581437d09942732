//! `cordon doctor` reports what the kernel offers, checked against independent evidence.

use pretty_assertions::assert_eq;

use super::common::{stdout, Home};

#[test]
fn doctor_reports_each_feature() {
    let home = Home::new();
    let out = home.cordon(&["doctor", "--json"]).output().unwrap();
    let features: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = features
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["user namespaces", "landlock", "seccomp", "cgroups"]
    );
    let all_ok = features.iter().all(|f| f["status"] == "ok");
    assert_eq!(out.status.code(), Some(if all_ok { 0 } else { 1 }));
    for f in &features {
        assert!(
            ["ok", "partial", "missing"].contains(&f["status"].as_str().unwrap()),
            "{f}"
        );
        assert_eq!(
            f["status"] == "ok",
            f["consequence"] == "",
            "a missing feature must say what cordon does: {f}"
        );
    }

    // Independent evidence: the kernel's own limit on user namespaces.
    let max_userns: u64 = fs_err::read_to_string("/proc/sys/user/max_user_namespaces")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if max_userns == 0 {
        assert_eq!(features[0]["status"], "missing");
    }
    // CI pins the Landlock ABI it expects (see `.ci/run`), so a kernel change is noticed.
    match std::env::var("CORDON_EXPECT_LANDLOCK_ABI") {
        Ok(abi) => assert!(
            features[1]["found"]
                .as_str()
                .unwrap()
                .starts_with(&format!("ABI version {abi} ")),
            "{}",
            features[1]
        ),
        Err(_) => {
            eprintln!("CORDON_EXPECT_LANDLOCK_ABI is not set: the Landlock ABI is not pinned")
        }
    }
    if std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists() {
        assert_eq!(features[2]["status"], "ok");
    }

    let out = home.cordon(&["doctor"]).output().unwrap();
    let text = stdout(&out);
    assert!(
        text.lines().next().unwrap().starts_with("user namespaces "),
        "{text}"
    );
}
