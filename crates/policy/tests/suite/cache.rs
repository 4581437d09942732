//! The compiled-policy cache: used on the second load, never trusted when damaged.

use cordon_policy::{CacheUse, Policy, PolicyOptions, PolicySource};
use cordon_types::{Capability, Decider};
use serde_json::json;

fn options() -> PolicyOptions {
    PolicyOptions {
        only: Some(&["sandbox", "net"]),
        ..PolicyOptions::default()
    }
}

/// A few decisions whose outcomes differ, to compare a cached policy with a compiled one.
fn decisions(policy: &Policy) -> Vec<cordon_types::Decision> {
    let net = Capability::new("net").unwrap();
    [
        json!({"capability": "net", "action": "connect", "resource": {"host": "169.254.169.254", "port": 80, "address_class": "metadata"}, "context": {"request": {"net": []}}}),
        json!({"capability": "net", "action": "connect", "resource": {"host": "example.org", "port": 443}, "context": {"requested": ["example.org"]}}),
        json!({"capability": "net", "action": "connect", "resource": {"host": "evil.example", "port": 443}}),
    ]
    .iter()
    .map(|input| policy.evaluate(&net, input))
    .chain(std::iter::once(policy.evaluate(
        &Capability::new("file").unwrap(),
        &json!({}),
    )))
    .collect()
}

fn entry(dir: &std::path::Path) -> std::path::PathBuf {
    let entries: Vec<_> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn the_second_load_reads_the_cache_and_decides_alike() {
    let dir = tempfile::tempdir().unwrap();
    let source = PolicySource::embedded_default();
    let (first, used) = Policy::load_cached(&source, options(), dir.path()).unwrap();
    assert_eq!(used, CacheUse::Stored);
    let (second, used) = Policy::load_cached(&source, options(), dir.path()).unwrap();
    assert_eq!(used, CacheUse::Hit);
    assert_eq!(decisions(&first), decisions(&second));
    assert_eq!(first.revision(), second.revision());
    // The explanation needs the interpreter, which a cached policy loads on demand.
    let net = Capability::new("net").unwrap();
    let input = json!({"capability": "net", "action": "connect", "resource": {"host": "evil.example", "port": 443}});
    assert_eq!(
        second.explain(&net, &input).decision,
        first.explain(&net, &input).decision
    );
    // Only its owner may change the entry.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs_err::metadata(entry(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o022, 0);
}

#[test]
fn another_policy_or_other_decisions_do_not_share_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let source = PolicySource::embedded_default();
    Policy::load_cached(&source, options(), dir.path()).unwrap();
    let all = PolicyOptions::default();
    let (_, used) = Policy::load_cached(&source, all, dir.path()).unwrap();
    assert_eq!(used, CacheUse::Stored);
    let (_, used) = Policy::load_cached(&source, all, dir.path()).unwrap();
    assert_eq!(used, CacheUse::Hit);
}

#[test]
fn a_damaged_entry_is_recompiled_and_rewritten() {
    let source = PolicySource::embedded_default();
    let (reference, _) =
        Policy::load_cached(&source, options(), tempfile::tempdir().unwrap().path()).unwrap();
    let expected = decisions(&reference);

    // Each way of damaging the entry: a flipped byte in the body, a truncation, garbage, an
    // empty file, and a body whose checksum was recomputed over a broken program.
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 5] = [
        ("flipped byte", |bytes| {
            let at = bytes.len() - 100;
            bytes[at] ^= 0x40;
        }),
        ("truncated", |bytes| bytes.truncate(bytes.len() / 2)),
        ("garbage", |bytes| {
            *bytes = b"not a cache entry at all".to_vec()
        }),
        ("empty", |bytes| bytes.clear()),
        ("broken program, valid checksum", |bytes| {
            use sha2::Digest;
            let end = bytes.len();
            for b in &mut bytes[end - 400..end - 10] {
                *b = 0xff;
            }
            let digest = sha2::Sha256::digest(&bytes[52..]);
            bytes[20..52].copy_from_slice(&digest);
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        Policy::load_cached(&source, options(), dir.path()).unwrap();
        let path = entry(dir.path());
        let mut bytes = fs_err::read(&path).unwrap();
        damage(&mut bytes);
        fs_err::write(&path, &bytes).unwrap();
        let (policy, used) = Policy::load_cached(&source, options(), dir.path()).unwrap();
        assert!(matches!(used, CacheUse::Recompiled(_)), "{what}: {used:?}");
        assert_eq!(decisions(&policy), expected, "{what}");
        // The entry was rewritten, and is used again.
        let (_, used) = Policy::load_cached(&source, options(), dir.path()).unwrap();
        assert_eq!(used, CacheUse::Hit, "{what}");
    }
}

#[test]
fn an_unwritable_cache_only_costs_the_compile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    fs_err::write(&file, "").unwrap();
    let (policy, used) =
        Policy::load_cached(&PolicySource::embedded_default(), options(), &file).unwrap();
    assert!(matches!(used, CacheUse::NotStored(_)), "{used:?}");
    assert!(!decisions(&policy).is_empty());
}

#[test]
fn an_entry_that_is_not_a_regular_file_is_not_read() {
    // A FIFO would block a reader for good; a link could lead anywhere.
    let dir = tempfile::tempdir().unwrap();
    let source = PolicySource::embedded_default();
    Policy::load_cached(&source, options(), dir.path()).unwrap();
    let path = entry(dir.path());
    let target = dir.path().join("elsewhere");
    fs_err::rename(&path, &target).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let (_, used) = Policy::load_cached(&source, options(), dir.path()).unwrap();
    assert!(matches!(used, CacheUse::Recompiled(_)), "a link: {used:?}");
    fs_err::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let loaded = Policy::load_cached(&PolicySource::embedded_default(), options(), dir.path());
        let _ = done.send(loaded.map(|(_, used)| used).ok());
    });
    let used = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("loading blocked on a FIFO in the cache");
    assert!(
        matches!(
            used,
            Some(CacheUse::Recompiled(_)) | Some(CacheUse::NotStored(_))
        ),
        "{used:?}"
    );
}
