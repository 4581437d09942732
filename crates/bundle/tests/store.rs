//! The bundle store: one commit point, readers that never write, fallback only for a
//! damaged file, signatures refreshed, revisions that never go back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cordon_bundle::archive::{self, Entry};
use cordon_bundle::store::{Store, Trust, Verdict};
use cordon_bundle::{Algorithm, Bundle, KeyKind, Limits, PrivateKey, Problem, Verifier};
use serde_json::{json, Value};

fn bundle(dir: &std::path::Path, key: &PrivateKey, revision: &str, reason: &str) -> Vec<u8> {
    let policy = dir.join(format!("p-{revision}-{reason}"));
    fs_err::create_dir_all(policy.join("cordon")).unwrap();
    fs_err::write(
        policy.join("cordon/file.rego"),
        format!(
            "package cordon.file\n\ndecision := {{\"allow\": true, \"reasons\": [\"{reason}\"]}}\n"
        ),
    )
    .unwrap();
    Bundle::build(&policy, revision, None)
        .unwrap()
        .sign(key, Algorithm::Es256, "default", 0)
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// The same bundle with its token re-signed carrying `claims`.
fn resigned(bytes: &[u8], key: &PrivateKey, claims: Value) -> Vec<u8> {
    let mut entries = archive::read(bytes, &Limits::default()).unwrap();
    let sigs = entries
        .iter_mut()
        .find(|e| e.name == ".signatures.json")
        .unwrap();
    let file: Value = serde_json::from_slice(&sigs.bytes).unwrap();
    let token = file["signatures"][0].as_str().unwrap();
    let mut parts = token.split('.');
    let header = parts.next().unwrap().to_owned();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    for (k, v) in claims.as_object().unwrap() {
        payload[k] = v.clone();
    }
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
    let signature = key.sign(Algorithm::Es256, signed.as_bytes()).unwrap();
    sigs.bytes = json!({"signatures": [format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))]})
        .to_string()
        .into_bytes();
    archive::write(&entries).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    trust: Trust,
    key: PrivateKey,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate(KeyKind::P256).unwrap();
        let trust = Trust {
            verifier: Verifier::new().with_key("default", key.public()),
            ..Trust::default()
        };
        Self {
            store: Store::new(dir.path().join("store")),
            dir,
            trust,
            key,
        }
    }

    fn offer(&self, bytes: &[u8], now: i64) -> Verdict {
        self.store
            .offer(bytes, "test", &self.trust, &|_| Ok(()), false, now)
            .unwrap()
    }

    fn activate(&self, bytes: &[u8]) {
        let verdict = self.offer(bytes, 0);
        assert!(matches!(verdict, Verdict::Activated { .. }), "{verdict:?}");
    }

    fn bundle(&self, revision: &str, reason: &str) -> Vec<u8> {
        bundle(self.dir.path(), &self.key, revision, reason)
    }

    fn active_revision(&self, now: i64) -> String {
        self.store
            .load(&self.trust, now)
            .unwrap()
            .unwrap()
            .installed
            .revision
    }

    fn kept(&self) -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(self.store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar.gz"))
            .collect();
        names.sort();
        names
    }
}

#[test]
fn only_the_active_and_previous_bundles_are_kept_and_state_is_the_commit() {
    let f = Fixture::new();
    for revision in ["1", "2", "3"] {
        assert!(matches!(
            f.offer(&f.bundle(revision, revision), 0),
            Verdict::Activated { .. }
        ));
    }
    let state = f.store.state().unwrap();
    let mut expected = vec![state.active.unwrap().file, state.previous.unwrap().file];
    expected.sort();
    assert_eq!(f.kept(), expected);
    // A file kept by a writer that died before committing is not used, and goes with the
    // next change.
    fs_err::write(
        f.store.dir().join(format!("{}.tar.gz", "0".repeat(64))),
        b"orphan",
    )
    .unwrap();
    assert_eq!(f.active_revision(0), "3");
    f.activate(&f.bundle("4", "4"));
    assert_eq!(f.kept().len(), 2);
}

#[test]
fn a_damaged_active_file_is_replaced_by_the_previous_for_the_reader_only() {
    let f = Fixture::new();
    f.activate(&f.bundle("1", "one"));
    f.activate(&f.bundle("2", "two"));
    let state = f.store.state().unwrap();
    let active = f.store.dir().join(&state.active.as_ref().unwrap().file);
    for damage in [
        Some(f.bundle("1", "other")),
        Some(b"garbage".to_vec()),
        None,
    ] {
        match &damage {
            Some(bytes) => fs_err::write(&active, bytes).unwrap(),
            None => fs_err::remove_file(&active).unwrap(),
        }
        let loaded = f.store.load(&f.trust, 0).unwrap().unwrap();
        assert_eq!(loaded.installed.revision, "1");
        let (failed, why) = loaded.fallback_from.unwrap();
        assert_eq!(failed.revision, "2");
        assert!(
            matches!(
                why.problem,
                Problem::Tampered | Problem::Unreadable | Problem::NotABundle
            ),
            "{why}"
        );
        // The store itself is untouched: readers never write.
        assert_eq!(f.store.state().unwrap(), state);
    }
}

#[test]
fn a_key_no_longer_trusted_or_an_expired_token_is_not_a_reason_to_go_back() {
    let f = Fixture::new();
    f.activate(&f.bundle("1", "one"));
    let expiring = resigned(&f.bundle("2", "two"), &f.key, json!({"exp": 1_000}));
    assert!(matches!(f.offer(&expiring, 500), Verdict::Activated { .. }));
    // After `exp` the active bundle is refused, and the older one is not used in its place.
    let err = f.store.load(&f.trust, 2_000).unwrap_err();
    assert_eq!(err.problem, Problem::Expired, "{err}");
    // Another process trusting another key: an error, not the previous bundle.
    let other = Trust {
        verifier: Verifier::new().with_key(
            "default",
            PrivateKey::generate(KeyKind::P256).unwrap().public(),
        ),
        ..Trust::default()
    };
    assert_eq!(
        f.store.load(&other, 500).unwrap_err().problem,
        Problem::WrongKey
    );
    // The same policy signed again, with a later `exp`: the kept signature is refreshed.
    let fresh = resigned(&f.bundle("2", "two"), &f.key, json!({"exp": 5_000}));
    assert!(matches!(f.offer(&fresh, 2_000), Verdict::Refreshed(_)));
    assert_eq!(f.active_revision(2_000), "2");
    // A replayed copy with a shorter life does not replace it.
    let shorter = resigned(&f.bundle("2", "two"), &f.key, json!({"exp": 3_000}));
    assert!(matches!(f.offer(&shorter, 2_500), Verdict::Unchanged(_)));
    assert_eq!(f.active_revision(4_000), "2");
}

#[test]
fn a_revision_rolled_back_from_can_be_taken_again_and_nothing_older() {
    let f = Fixture::new();
    let two = f.bundle("2", "two");
    f.activate(&f.bundle("1", "one"));
    f.activate(&two);
    let verdict = f.store.rollback(&f.trust, &|_| Ok(()), 0).unwrap();
    assert!(matches!(verdict, Verdict::Activated { .. }));
    assert_eq!(f.active_revision(0), "1");
    // Revision 2 again, the same content: taken.
    match f.offer(&two, 0) {
        Verdict::Activated { to, .. } => assert_eq!(to.reason, "activated again"),
        other => panic!("{other:?}"),
    }
    // Revision 2 with other content, and revision 1: refused.
    for (revision, reason) in [("2", "changed"), ("1", "one")] {
        match f.offer(&f.bundle(revision, reason), 0) {
            Verdict::Refused { error, .. } => assert_eq!(error.problem, Problem::Rollback),
            other => panic!("{revision}: {other:?}"),
        }
    }
}

#[test]
fn a_first_bundle_is_taken_whatever_its_rollout() {
    let f = Fixture::new();
    let trust = Trust {
        device: (0..100)
            .map(|i| format!("d{i}"))
            .find(|d| cordon_bundle::store::bucket(d) >= 10.0)
            .unwrap(),
        ..f.trust.clone()
    };
    let dir = f.dir.path().join("p");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(
        dir.join("p.rego"),
        "package cordon.file\n\ndecision := {\"allow\": true}\n",
    )
    .unwrap();
    let mut manifest = Bundle::build(&dir, "1", None).unwrap().manifest().clone();
    manifest.metadata = Some(
        json!({"cordon": {"rollout": 10}})
            .as_object()
            .unwrap()
            .clone(),
    );
    let entries: Vec<Entry> = Bundle::build(&dir, "1", None).unwrap().entries().to_vec();
    let bytes = Bundle::assemble(entries, manifest)
        .unwrap()
        .sign(&f.key, Algorithm::Es256, "default", 0)
        .unwrap()
        .to_bytes()
        .unwrap();
    let verdict = f
        .store
        .offer(&bytes, "test", &trust, &|_| Ok(()), false, 0)
        .unwrap();
    match verdict {
        Verdict::Activated { to, .. } => {
            assert!(to.reason.starts_with("first bundle"), "{}", to.reason)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_state_names_only_bundles_of_the_store_and_a_fifo_never_blocks() {
    let f = Fixture::new();
    f.activate(&f.bundle("1", "one"));
    f.activate(&f.bundle("2", "two"));
    let state_path = f.store.state_path();
    let original: Value = serde_json::from_slice(&fs_err::read(&state_path).unwrap()).unwrap();
    // A FIFO with no writer in place of the active bundle: read without waiting, refused.
    let active = f
        .store
        .dir()
        .join(original["active"]["file"].as_str().unwrap());
    fs_err::remove_file(&active).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&active)
        .status()
        .unwrap();
    assert!(made.success());
    let loaded = f.store.load(&f.trust, 0).unwrap().unwrap();
    assert_eq!(loaded.installed.revision, "1");
    // A state naming a file outside the store.
    let mut edited = original.clone();
    edited["active"]["file"] = json!("../../../etc/hostname");
    fs_err::write(&state_path, edited.to_string()).unwrap();
    let (_, why) = f
        .store
        .load(&f.trust, 0)
        .unwrap()
        .unwrap()
        .fallback_from
        .unwrap();
    assert_eq!(why.problem, Problem::Tampered);
    assert!(why.reason.contains("not a bundle of the store"), "{why}");
    // The store goes on: a rollback, then a new bundle (the FIFO is collected).
    fs_err::write(&state_path, original.to_string()).unwrap();
    let verdict = f.store.rollback(&f.trust, &|_| Ok(()), 0).unwrap();
    assert!(matches!(verdict, Verdict::Activated { .. }));
    f.activate(&f.bundle("3", "three"));
    assert_eq!(f.active_revision(0), "3");
}

#[test]
fn a_downgrade_at_one_revision_is_not_undone_by_a_replay() {
    let mut f = Fixture::new();
    let a = f.bundle("5", "a");
    let b = f.bundle("5", "b");
    f.activate(&a);
    f.trust.allow_downgrade = true;
    f.activate(&b);
    f.trust.allow_downgrade = false;
    match f.offer(&a, 0) {
        Verdict::Refused { error, .. } => assert_eq!(error.problem, Problem::Rollback),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_damaged_active_bundle_does_not_push_out_the_last_known_good() {
    let f = Fixture::new();
    f.activate(&f.bundle("1", "one"));
    f.activate(&f.bundle("2", "two"));
    let state = f.store.state().unwrap();
    fs_err::write(f.store.dir().join(&state.active.unwrap().file), b"junk").unwrap();
    match f.offer(&f.bundle("3", "three"), 0) {
        // What was active is what was replaced, damaged or not.
        Verdict::Activated { from, .. } => assert_eq!(from.unwrap().revision, "2"),
        other => panic!("{other:?}"),
    }
    let state = f.store.state().unwrap();
    assert_eq!(state.previous.unwrap().revision, "1");
    // The same bundle offered again repairs a damaged file.
    let two = f.bundle("4", "four");
    f.activate(&two);
    let active = f.store.state().unwrap().active.unwrap();
    fs_err::write(f.store.dir().join(&active.file), b"junk").unwrap();
    assert!(matches!(f.offer(&two, 0), Verdict::Refreshed(_)));
    assert!(f
        .store
        .load(&f.trust, 0)
        .unwrap()
        .unwrap()
        .fallback_from
        .is_none());
}

#[test]
fn a_fifo_at_the_state_or_the_lock_is_an_error_not_a_hang() {
    let f = Fixture::new();
    f.activate(&f.bundle("1", "one"));
    for name in ["state.json", "lock"] {
        let path = f.store.dir().join(name);
        let saved = fs_err::read(&path).unwrap();
        fs_err::remove_file(&path).unwrap();
        assert!(std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap()
            .success());
        let offered = f.store.offer(
            &f.bundle("2", "two"),
            "test",
            &f.trust,
            &|_| Ok(()),
            false,
            0,
        );
        assert!(offered.is_err(), "{name}: {offered:?}");
        fs_err::remove_file(&path).unwrap();
        fs_err::write(&path, saved).unwrap();
    }
    assert_eq!(f.active_revision(0), "1");
}

#[test]
fn a_refresh_compares_with_what_the_kept_file_verifies_with() {
    let f = Fixture::new();
    f.activate(&f.bundle("1", "one"));
    let short = resigned(&f.bundle("2", "two"), &f.key, json!({"exp": 1_000}));
    assert!(matches!(f.offer(&short, 500), Verdict::Activated { .. }));
    // The state file says the kept signature never expires: the file itself says 1000.
    let path = f.store.state_path();
    let mut state: Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
    state["active"]["signer"]
        .as_object_mut()
        .unwrap()
        .remove("expires_at");
    fs_err::write(&path, state.to_string()).unwrap();
    let long = resigned(&f.bundle("2", "two"), &f.key, json!({"exp": 9_000}));
    assert!(matches!(f.offer(&long, 800), Verdict::Refreshed(_)));
    assert_eq!(f.active_revision(2_000), "2");
}

#[test]
fn a_rollback_makes_its_content_the_known_one_of_its_revision() {
    let mut f = Fixture::new();
    let a = f.bundle("5", "a");
    let b = f.bundle("5", "b");
    f.activate(&a);
    f.trust.allow_downgrade = true;
    f.activate(&b);
    f.trust.allow_downgrade = false;
    let verdict = f.store.rollback(&f.trust, &|_| Ok(()), 0).unwrap();
    assert!(matches!(verdict, Verdict::Activated { .. }));
    match f.offer(&b, 0) {
        Verdict::Refused { error, .. } => assert_eq!(error.problem, Problem::Rollback),
        other => panic!("{other:?}"),
    }
}
