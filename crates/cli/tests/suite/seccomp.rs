//! The seccomp profile, applied for real: each denied call goes through without it and
//! fails with EPERM with it, while ordinary calls keep working.

use std::collections::BTreeMap;

use pretty_assertions::assert_eq;

use super::common::{stderr, Home};

fn probe(home: &Home, filtered: bool) -> BTreeMap<String, serde_json::Value> {
    let mut args = vec!["__seccomp-probe"];
    if filtered {
        args.push("--filtered");
    }
    let out = home.cordon(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

const EPERM: i64 = 1;
const EAFNOSUPPORT: i64 = 97;

#[test]
fn denied_calls_work_without_the_filter_and_fail_with_it() {
    let home = Home::new();
    let open = probe(&home, false);
    let closed = probe(&home, true);
    assert_eq!(
        open.keys().collect::<Vec<_>>(),
        closed.keys().collect::<Vec<_>>()
    );
    assert!(open.len() >= 15, "{open:?}");
    for (name, result) in &open {
        if name.starts_with("control:") {
            assert_eq!(result, "ok", "{name} must work without the filter");
            assert_eq!(
                closed[name], "ok",
                "{name} must keep working under the filter"
            );
            continue;
        }
        if result.as_i64() == Some(EPERM) {
            // The kernel or its settings already forbid it (io_uring_disabled, for one):
            // nothing to prove for this call on this machine.
            eprintln!("skipped {name}: EPERM even without the filter on this machine");
            continue;
        }
        // Socket families outside the allowlist fail as on a kernel without them.
        let expected =
            if name.starts_with("socket AF_PACKET") || name.starts_with("socket AF_VSOCK") {
                EAFNOSUPPORT
            } else {
                EPERM
            };
        assert_eq!(
            closed[name].as_i64(),
            Some(expected),
            "{name}: {} without the filter, {} with it",
            result,
            closed[name]
        );
    }
}
