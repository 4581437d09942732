//! Bundles in OPA's format: OPA's own output verifies, cordon's signatures are OPA's, and
//! every hostile bundle is refused by name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cordon_bundle::archive::{self, Entry};
use cordon_bundle::{
    Algorithm, Bundle, BundleError, KeyKind, Limits, PrivateKey, Problem, PublicKey, Verifier,
};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn public(name: &str) -> PublicKey {
    PublicKey::from_pem(&fs_err::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn private(name: &str) -> PrivateKey {
    PrivateKey::from_pem(&fs_err::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn token(name: &str) -> String {
    let tokens: Value =
        serde_json::from_str(&fs_err::read_to_string(fixture("opa-tokens.json")).unwrap()).unwrap();
    tokens[name].as_str().unwrap().to_owned()
}

/// The entries of the bundle `opa build -b . --signing-key` writes for the fixture policy,
/// its signature file included.
fn opa_entries() -> Vec<Entry> {
    let bytes = fs_err::read(fixture("opa-build-rs256.tar.gz")).unwrap();
    archive::read(&bytes, &Limits::default()).unwrap()
}

fn signatures_file(token: &str) -> Vec<u8> {
    format!("{{\n \"signatures\": [\n  \"{token}\"\n ]\n}}").into_bytes()
}

/// The fixture's files with `.signatures.json` replaced by `signatures` (or dropped).
fn with_signatures(signatures: Option<Vec<u8>>) -> Vec<u8> {
    let mut entries: Vec<Entry> = opa_entries()
        .into_iter()
        .filter(|e| e.name != ".signatures.json")
        .collect();
    if let Some(bytes) = signatures {
        entries.insert(
            0,
            Entry {
                name: ".signatures.json".into(),
                bytes,
            },
        );
    }
    archive::write(&entries).unwrap()
}

fn read(bytes: &[u8]) -> Result<Bundle, BundleError> {
    Bundle::from_bytes(bytes, &Limits::default())
}

fn verify(bytes: &[u8], verifier: &Verifier) -> Result<Option<cordon_bundle::Signer>, BundleError> {
    read(bytes)?.verify(verifier, 1_800_000_000)
}

fn rsa_verifier() -> Verifier {
    Verifier::new().with_key("default", public("opa-rsa.pub.pem"))
}

#[test]
fn a_bundle_written_by_opa_build_verifies_and_loads() {
    let bytes = fs_err::read(fixture("opa-build-rs256.tar.gz")).unwrap();
    let bundle = read(&bytes).unwrap();
    let signer = bundle.verify(&rsa_verifier(), 0).unwrap().unwrap();
    assert_eq!(signer.key_id, "default");
    assert_eq!(signer.algorithm, "RS256");
    let source = bundle.policy_source("opa.tar.gz").unwrap();
    let names: Vec<&str> = source.files().iter().map(|f| f.relative.as_str()).collect();
    assert_eq!(names, ["data.json", "example.rego"]);
}

#[test]
fn opas_tokens_of_every_algorithm_verify_with_their_keys() {
    for (name, key) in [
        ("rs256", "opa-rsa.pub.pem"),
        ("rs256-old-header", "opa-rsa.pub.pem"),
        ("ps256", "opa-rsa.pub.pem"),
        ("es256", "es256.pub.pem"),
    ] {
        let bytes = with_signatures(Some(signatures_file(&token(name))));
        let verifier = Verifier::new().with_key("default", public(key));
        let signer = verify(&bytes, &verifier)
            .unwrap_or_else(|err| panic!("{name}: {err}"))
            .unwrap();
        assert_eq!(signer.key_id, "default", "{name}");
        // And the other kind of key does not verify it.
        let other = if key == "es256.pub.pem" {
            "opa-rsa.pub.pem"
        } else {
            "es256.pub.pem"
        };
        let err = verify(&bytes, &Verifier::new().with_key("default", public(other))).unwrap_err();
        assert_eq!(err.problem, Problem::WrongKey, "{name}: {err}");
    }
}

#[test]
fn cordons_rs256_signature_is_byte_for_byte_opas() {
    let token = token("rs256");
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let ours = private("opa-rsa.pem")
        .sign(Algorithm::Rs256, signed.as_bytes())
        .unwrap();
    assert_eq!(URL_SAFE_NO_PAD.encode(ours), signature);
}

#[test]
fn opas_own_verify_test_token_checks_key_id_scope_and_files() {
    // `signedTokenRS256` of OPA's `v1/bundle/verify_test.go`: kid `foo`, scope `write`, two
    // files that this bundle does not hold.
    let token = token("opa-verify-test-rs256");
    let mut entries = vec![Entry {
        name: ".signatures.json".into(),
        bytes: signatures_file(&token),
    }];
    entries.push(Entry {
        name: "p.rego".into(),
        bytes: b"package p\n".to_vec(),
    });
    let bytes = archive::write(&entries).unwrap();
    let key = public("opa-rsa.pub.pem");
    // The signature verifies; the file lists then disagree.
    let err = verify(
        &bytes,
        &Verifier::new()
            .with_key("foo", key.clone())
            .with_scope("write"),
    )
    .unwrap_err();
    assert_eq!(err.problem, Problem::NotListed, "{err}");
    assert_eq!(err.file.as_deref(), Some("p.rego"));
    let err = verify(&bytes, &Verifier::new().with_key("foo", key.clone())).unwrap_err();
    assert!(err.reason.contains("scope mismatch"), "{err}");
    let err = verify(&bytes, &Verifier::new().with_key("default", key)).unwrap_err();
    assert!(
        err.reason.contains("`foo`, which is not configured"),
        "{err}"
    );
}

fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(dir.path().join("cordon/file")).unwrap();
    fs_err::write(
        dir.path().join("cordon/file/policy.rego"),
        "package cordon.file\n\ndecision := {\"allow\": data.cordon.file.open}\n",
    )
    .unwrap();
    fs_err::write(dir.path().join("cordon/file/data.yaml"), "open: true\n").unwrap();
    dir
}

#[test]
fn built_and_signed_bundles_verify_for_each_kind_of_key() {
    let dir = policy_dir();
    for key in [
        PrivateKey::generate(KeyKind::P256).unwrap(),
        PrivateKey::generate(KeyKind::Ed25519).unwrap(),
        private("opa-rsa.pem"),
    ] {
        let public = PublicKey::from_pem(&key.public().to_pem().unwrap()).unwrap();
        let reread = PrivateKey::from_pem(&key.to_pem().unwrap()).unwrap();
        for algorithm in [
            Algorithm::Rs256,
            Algorithm::Ps256,
            Algorithm::Es256,
            Algorithm::EdDsa,
        ] {
            if !public.fits(algorithm) {
                assert!(key.sign(algorithm, b"x").is_err());
                continue;
            }
            let bundle = Bundle::build(dir.path(), "7", Some(vec!["cordon".into()]))
                .unwrap()
                .sign(&reread, algorithm, "team", 1_700_000_000)
                .unwrap();
            let bytes = bundle.to_bytes().unwrap();
            let signer = verify(&bytes, &Verifier::new().with_key("team", public.clone()))
                .unwrap_or_else(|err| panic!("{algorithm}: {err}"))
                .unwrap();
            assert_eq!(signer.algorithm, algorithm.name());
            assert_eq!(signer.issued_at, Some(1_700_000_000));
            let read = read(&bytes).unwrap();
            assert_eq!(read.revision(), "7");
            // The YAML data was written as JSON.
            let names: Vec<&str> = read.entries().iter().map(|e| e.name.as_str()).collect();
            assert!(names.contains(&"cordon/file/data.json"), "{names:?}");
            let source = read.policy_source("b.tar.gz").unwrap();
            cordon_policy::Policy::load(&source, cordon_policy::PolicyOptions::default()).unwrap();
        }
    }
}

fn signed_bundle() -> (Vec<u8>, Verifier, PrivateKey) {
    let key = PrivateKey::generate(KeyKind::P256).unwrap();
    let bytes = Bundle::build(policy_dir().path(), "1", None)
        .unwrap()
        .sign(&key, Algorithm::Es256, "default", 0)
        .unwrap()
        .to_bytes()
        .unwrap();
    let verifier = Verifier::new().with_key("default", key.public());
    (bytes, verifier, key)
}

/// The bundle's entries with `change` applied, written again (the signature untouched).
fn altered(bytes: &[u8], change: impl FnOnce(&mut Vec<Entry>)) -> Vec<u8> {
    let mut entries = archive::read(bytes, &Limits::default()).unwrap();
    change(&mut entries);
    archive::write(&entries).unwrap()
}

#[test]
fn a_stripped_signature_is_refused_when_a_key_is_configured() {
    let (bytes, verifier, _) = signed_bundle();
    let stripped = altered(&bytes, |e| e.retain(|e| e.name != ".signatures.json"));
    let err = verify(&stripped, &verifier).unwrap_err();
    assert_eq!(err.problem, Problem::Unsigned, "{err}");
    assert_eq!(err.file.as_deref(), Some(".signatures.json"));
    // Nor does an empty signature list make it unsigned.
    let emptied = altered(&bytes, |e| {
        e.iter_mut()
            .find(|e| e.name == ".signatures.json")
            .unwrap()
            .bytes = br#"{"signatures": []}"#.to_vec();
    });
    assert_eq!(
        verify(&emptied, &verifier).unwrap_err().problem,
        Problem::Unsigned
    );
    // Unsigned bundles are fine where no key is configured.
    assert!(verify(&stripped, &Verifier::new()).unwrap().is_none());
    // And a signed one with no key configured is refused, as OPA does.
    assert_eq!(
        verify(&bytes, &Verifier::new()).unwrap_err().problem,
        Problem::WrongKey
    );
}

#[test]
fn tampered_unlisted_and_missing_files_are_refused_by_name() {
    let (bytes, verifier, _) = signed_bundle();
    let tampered = altered(&bytes, |e| {
        e.iter_mut()
            .find(|e| e.name.ends_with(".rego"))
            .unwrap()
            .bytes = b"package cordon.file\n\ndecision := {\"allow\": true}\n".to_vec();
    });
    let err = verify(&tampered, &verifier).unwrap_err();
    assert_eq!(err.problem, Problem::Tampered);
    assert_eq!(err.file.as_deref(), Some("cordon/file/policy.rego"));
    assert!(err.to_string().contains("digest mismatch"), "{err}");

    let extra = altered(&bytes, |e| {
        e.push(Entry {
            name: "cordon/extra.rego".into(),
            bytes: b"package cordon.extra\n".to_vec(),
        });
    });
    let err = verify(&extra, &verifier).unwrap_err();
    assert_eq!(err.problem, Problem::NotListed);
    assert_eq!(err.file.as_deref(), Some("cordon/extra.rego"));

    let missing = altered(&bytes, |e| e.retain(|e| !e.name.ends_with("data.json")));
    let err = verify(&missing, &verifier).unwrap_err();
    assert_eq!(err.problem, Problem::Missing);
    assert!(err.to_string().contains("cordon/file/data.json"), "{err}");

    // A key given twice hashes like the signed document (Go keeps the last) and could load
    // as the first: refused.
    let doubled = altered(&bytes, |e| {
        let data = e
            .iter_mut()
            .find(|e| e.name.ends_with("data.json"))
            .unwrap();
        data.bytes = br#"{"open": false, "open": true}"#.to_vec();
    });
    let err = verify(&doubled, &verifier).unwrap_err();
    assert_eq!(
        (err.problem, err.file.as_deref()),
        (Problem::Malformed, Some("cordon/file/data.json")),
        "{err}"
    );

    // Re-serialising a data document does not break its signature (it is hashed canonically).
    let reformatted = altered(&bytes, |e| {
        let data = e
            .iter_mut()
            .find(|e| e.name.ends_with("data.json"))
            .unwrap();
        let value: Value = serde_json::from_slice(&data.bytes).unwrap();
        data.bytes = serde_json::to_vec_pretty(&value).unwrap();
    });
    verify(&reformatted, &verifier).unwrap();
}

#[test]
fn a_wrong_key_is_refused_with_its_fingerprint() {
    let (bytes, _, _) = signed_bundle();
    let other = PrivateKey::generate(KeyKind::P256).unwrap().public();
    let err = verify(&bytes, &Verifier::new().with_key("default", other.clone())).unwrap_err();
    assert_eq!(err.problem, Problem::WrongKey);
    assert!(err.reason.contains(&other.fingerprint()), "{err}");
}

/// A token over the bundle's own file list with `header` and extra `claims`, signed by `key`.
fn custom_token(bytes: &[u8], key: &PrivateKey, header: Value, claims: Value) -> Vec<u8> {
    let entries = archive::read(bytes, &Limits::default()).unwrap();
    let sigs: Value = serde_json::from_slice(
        &entries
            .iter()
            .find(|e| e.name == ".signatures.json")
            .unwrap()
            .bytes,
    )
    .unwrap();
    let original = sigs["signatures"][0].as_str().unwrap();
    let payload_part = original.split('.').nth(1).unwrap();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_part).unwrap()).unwrap();
    for (k, v) in claims.as_object().unwrap() {
        payload[k] = v.clone();
    }
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let alg =
        Algorithm::from_name(header["alg"].as_str().unwrap_or("ES256")).unwrap_or(Algorithm::Es256);
    let signature = key.sign(alg, signed.as_bytes()).unwrap_or_default();
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
    altered(bytes, |e| {
        e.iter_mut()
            .find(|e| e.name == ".signatures.json")
            .unwrap()
            .bytes = signatures_file(&token);
    })
}

#[test]
fn expired_not_yet_valid_and_malformed_tokens_are_refused() {
    let (bytes, verifier, key) = signed_bundle();
    let es = json!({"alg": "ES256", "kid": "default"});
    let expired = custom_token(&bytes, &key, es.clone(), json!({"exp": 1_000}));
    assert_eq!(
        verify(&expired, &verifier).unwrap_err().problem,
        Problem::Expired
    );
    let early = custom_token(&bytes, &key, es.clone(), json!({"nbf": 4_000_000_000_i64}));
    assert_eq!(
        verify(&early, &verifier).unwrap_err().problem,
        Problem::Expired
    );
    let valid = custom_token(&bytes, &key, es.clone(), json!({"exp": 4_000_000_000_i64}));
    verify(&valid, &verifier).unwrap();
    // `iat` must be an integer, as OPA requires.
    let string_iat = custom_token(&bytes, &key, es.clone(), json!({"iat": "yesterday"}));
    assert_eq!(
        verify(&string_iat, &verifier).unwrap_err().problem,
        Problem::BadSignature
    );
    // A header cannot choose the algorithm: `none`, HMAC, or another family are refused.
    for header in [
        json!({"alg": "none", "kid": "default"}),
        json!({"alg": "HS256", "kid": "default"}),
    ] {
        let err = verify(&custom_token(&bytes, &key, header, json!({})), &verifier).unwrap_err();
        assert_eq!(err.problem, Problem::BadSignature, "{err}");
    }
    let err = verify(
        &custom_token(
            &bytes,
            &key,
            json!({"alg": "RS256", "kid": "default"}),
            json!({}),
        ),
        &verifier,
    )
    .unwrap_err();
    assert_eq!(err.problem, Problem::WrongKey, "{err}");
    let crit = json!({"alg": "ES256", "kid": "default", "crit": ["exp"]});
    assert_eq!(
        verify(&custom_token(&bytes, &key, crit, json!({})), &verifier)
            .unwrap_err()
            .problem,
        Problem::BadSignature
    );

    for garbage in [
        "not json".to_owned(),
        r#"{"signatures": ["a.b"]}"#.to_owned(),
        r#"{"signatures": ["!!!.e30.e30"]}"#.to_owned(),
        r#"{"signatures": ["e30.e30.e30"]}"#.to_owned(),
        r#"{"signatures": ["x.y.z", "x.y.z"]}"#.to_owned(),
    ] {
        let broken = altered(&bytes, |e| {
            e.iter_mut()
                .find(|e| e.name == ".signatures.json")
                .unwrap()
                .bytes = garbage.clone().into_bytes();
        });
        let err = verify(&broken, &verifier).unwrap_err();
        assert_eq!(err.problem, Problem::BadSignature, "{garbage}: {err}");
    }
    let plugin = altered(&bytes, |e| {
        e.iter_mut()
            .find(|e| e.name == ".signatures.json")
            .unwrap()
            .bytes = br#"{"signatures": ["x.y.z"], "plugin": "mine"}"#.to_vec();
    });
    assert_eq!(
        verify(&plugin, &verifier).unwrap_err().problem,
        Problem::Unsupported
    );
}

/// A tar entry: name, type, content, link target.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a str>);

/// A gzip-compressed tar of entries with any name and type, written past the tar crate's own
/// checks.
fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    use std::io::Write as _;
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn hostile_archives_are_refused_by_entry() {
    use tar::EntryType as T;
    let rego: &[u8] = b"package p\n";
    let cases: Vec<(Vec<u8>, Problem, &str)> = vec![
        (
            raw_tar(&[(b"../evil.rego", T::Regular, rego, None)]),
            Problem::UnsafePath,
            "../evil.rego",
        ),
        (
            raw_tar(&[(b"a/../../evil.rego", T::Regular, rego, None)]),
            Problem::UnsafePath,
            "a/../../evil.rego",
        ),
        (
            raw_tar(&[(b"//etc/cron.d/x", T::Regular, rego, None)]),
            Problem::UnsafePath,
            "//etc/cron.d/x",
        ),
        (
            raw_tar(&[(b"link.rego", T::Symlink, b"", Some("/etc/passwd"))]),
            Problem::NotARegularFile,
            "link.rego",
        ),
        (
            raw_tar(&[(b"hard.rego", T::Link, b"", Some("/etc/shadow"))]),
            Problem::NotARegularFile,
            "hard.rego",
        ),
        (
            raw_tar(&[(b"dev", T::Char, b"", None)]),
            Problem::NotARegularFile,
            "dev",
        ),
        (
            raw_tar(&[(b"fifo", T::Fifo, b"", None)]),
            Problem::NotARegularFile,
            "fifo",
        ),
        (
            raw_tar(&[
                (b"p.rego", T::Regular, rego, None),
                (b"/p.rego", T::Regular, rego, None),
            ]),
            Problem::UnsafePath,
            "p.rego",
        ),
        (
            raw_tar(&[(b"x/.signatures.json", T::Regular, b"{}", None)]),
            Problem::UnsafePath,
            "x/.signatures.json",
        ),
        (
            raw_tar(&[(b"x/.manifest", T::Regular, b"{}", None)]),
            Problem::UnsafePath,
            "x/.manifest",
        ),
        (
            raw_tar(&[(b"patch.json", T::Regular, b"{\"data\":[]}", None)]),
            Problem::Unsupported,
            "patch.json",
        ),
        (
            raw_tar(&[(b"policy.wasm", T::Regular, b"\0asm", None)]),
            Problem::Unsupported,
            "policy.wasm",
        ),
    ];
    // A name that reads otherwise than it is (a right-to-left override).
    let err = read(&raw_tar(&[(
        "a\u{202e}oger.b".as_bytes(),
        T::Regular,
        rego,
        None,
    )]))
    .unwrap_err();
    assert_eq!(err.problem, Problem::UnsafePath, "{err}");
    for manifest in [
        r#"{"revision": "7\u202e01 noisiver"}"#,
        r#"{"revision": "1", "roots": ["cordon\u001b]52;c;aGk=\u0007"]}"#,
    ] {
        let err = read(&raw_tar(&[(
            b".manifest",
            T::Regular,
            manifest.as_bytes(),
            None,
        )]))
        .unwrap_err();
        assert_eq!(
            (err.problem, err.file.as_deref()),
            (Problem::Malformed, Some(".manifest")),
            "{err}"
        );
    }
    // A name that would rewrite a terminal.
    let err = read(&raw_tar(&[(b"a\x1b[2K\rb.rego", T::Regular, rego, None)])).unwrap_err();
    assert_eq!(err.problem, Problem::UnsafePath);
    assert!(!err.to_string().contains('\x1b'), "{err:?}");
    for (bytes, problem, file) in cases {
        let err = read(&bytes).unwrap_err();
        assert_eq!(
            (err.problem, err.file.as_deref()),
            (problem, Some(file)),
            "{err}"
        );
    }
}

#[test]
fn bombs_and_oversized_bundles_stop_at_the_limits() {
    let limits = Limits {
        compressed: 1 << 20,
        total: 1 << 20,
        file: 512 << 10,
        entries: 100,
        ..Limits::default()
    };
    // 4 MiB of zeros compress to a few KiB: a decompression bomb in miniature.
    let zeros = vec![0u8; 4 << 20];
    let bomb = raw_tar(&[(b"data.json", tar::EntryType::Regular, &zeros, None)]);
    assert!(bomb.len() < 64 << 10);
    let err = Bundle::from_bytes(&bomb, &limits).unwrap_err();
    assert_eq!(err.problem, Problem::TooLarge, "{err}");
    // Structured documents are parsed before their digest is compared: tighter limits.
    let big_manifest = format!(
        "{{\"revision\": \"1\", \"metadata\": {{\"x\": \"{}\"}}}}",
        "y".repeat(70 << 10)
    );
    let err = read(&raw_tar(&[(
        b".manifest",
        tar::EntryType::Regular,
        big_manifest.as_bytes(),
        None,
    )]))
    .unwrap_err();
    assert_eq!(
        (err.problem, err.file.as_deref()),
        (Problem::TooLarge, Some(".manifest")),
        "{err}"
    );
    let small_documents = Limits {
        document: 1 << 10,
        ..Limits::default()
    };
    let data = format!("[{}]", vec!["1"; 1000].join(","));
    let err = Bundle::from_bytes(
        &raw_tar(&[(
            b"x/data.json",
            tar::EntryType::Regular,
            data.as_bytes(),
            None,
        )]),
        &small_documents,
    )
    .unwrap_err();
    assert_eq!(
        (err.problem, err.file.as_deref()),
        (Problem::TooLarge, Some("x/data.json")),
        "{err}"
    );
    // A file over the per-file limit is refused from its header, before it is read.
    let big = raw_tar(&[(
        b"big.rego",
        tar::EntryType::Regular,
        &vec![b'#'; 600 << 10],
        None,
    )]);
    let err = Bundle::from_bytes(&big, &limits).unwrap_err();
    assert_eq!(
        (err.problem, err.file.as_deref()),
        (Problem::TooLarge, Some("big.rego")),
        "{err}"
    );
    let names: Vec<Vec<u8>> = (0..150)
        .map(|i| format!("d/{i}.rego").into_bytes())
        .collect();
    // A PAX `size` record says more than the header: the larger one is what is read, and the
    // limit holds for it; a header that claims more than the data holds allocates nothing.
    for (pax, header_size) in [(2u64 << 20, 0u64), (0, 60 << 20)] {
        use std::io::Write as _;
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("size", pax.to_string().as_bytes())])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("big.rego").unwrap();
        header.set_size(header_size);
        header.set_mode(0o644);
        header.set_cksum();
        let raw = builder.get_mut();
        raw.extend_from_slice(header.as_bytes());
        raw.extend(std::iter::repeat_n(b'#', pax as usize));
        raw.extend(std::iter::repeat_n(0u8, (512 - (pax as usize % 512)) % 512));
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let err = Bundle::from_bytes(&gz.finish().unwrap(), &limits);
        if pax > 0 {
            let err = err.unwrap_err();
            assert_eq!(
                (err.problem, err.file.as_deref()),
                (Problem::TooLarge, Some("big.rego")),
                "{err}"
            );
        } else {
            // Read as the empty file PAX says it is.
            assert_eq!(err.unwrap().entries()[0].bytes.len(), 0);
        }
    }
    let many: Vec<RawEntry<'_>> = names
        .iter()
        .map(|n| (n.as_slice(), tar::EntryType::Regular, &b""[..], None))
        .collect();
    let err = Bundle::from_bytes(&raw_tar(&many), &limits).unwrap_err();
    assert_eq!(err.problem, Problem::TooLarge, "{err}");
    let err = Bundle::from_bytes(&vec![7u8; 2 << 20], &limits).unwrap_err();
    assert_eq!(err.problem, Problem::TooLarge, "{err}");
    for garbage in [&b"hello"[..], &[0x1f, 0x8b, 8, 0, 0][..], b""] {
        let err = read(garbage).unwrap_err();
        assert_eq!(err.problem, Problem::NotABundle, "{err}");
    }
    // A truncated archive.
    let (bytes, _, _) = signed_bundle();
    let err = read(&bytes[..bytes.len() / 2]).unwrap_err();
    assert_eq!(err.problem, Problem::NotABundle, "{err}");
}

#[test]
fn modules_and_data_outside_the_roots_are_refused() {
    let dir = policy_dir();
    fs_err::create_dir_all(dir.path().join("other")).unwrap();
    fs_err::write(dir.path().join("other/x.rego"), "package other\n\nx := 1\n").unwrap();
    let err = Bundle::build(dir.path(), "1", Some(vec!["cordon".into()])).unwrap_err();
    assert_eq!(
        (err.problem, err.file.as_deref()),
        (Problem::Malformed, Some("other/x.rego")),
        "{err}"
    );
    fs_err::remove_file(dir.path().join("other/x.rego")).unwrap();
    fs_err::write(dir.path().join("other/data.json"), "{\"x\": 1}").unwrap();
    let err = Bundle::build(dir.path(), "1", Some(vec!["cordon".into()])).unwrap_err();
    assert_eq!(
        (err.problem, err.file.as_deref()),
        (Problem::Malformed, Some("other/data.json")),
        "{err}"
    );
    Bundle::build(dir.path(), "1", None).unwrap();
}

#[test]
fn keys_in_every_common_pem_form_are_read_and_bad_ones_named() {
    // SEC1 after an `EC PARAMETERS` block, as `openssl ecparam -genkey` writes it.
    let sec1 = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIODqiJlzidGsnlfMHsWMG6aY8Buk1JmLdSXEgTgCpgCQoAoGCCqGSM49\nAwEHoUQDQgAET6bwvYWxRg73V3rIzwCGFT+R97b41l74agyjvcWEXPua3Gv5ja2K\nIu0D/OGTjC0m7ddSWHj2WqGM8TBrL7SvzA==\n-----END EC PRIVATE KEY-----\n";
    let key = PrivateKey::from_pem(sec1).unwrap();
    assert!(key.public() == public("es256.pub.pem"));
    // PKCS#1 RSA private key (the OPA test key) and its public half.
    assert!(private("opa-rsa.pem").public() == public("opa-rsa.pub.pem"));
    let err = PrivateKey::from_pem(&fs_err::read_to_string(fixture("es256.pub.pem")).unwrap())
        .unwrap_err();
    assert!(err.contains("public key"), "{err}");
    let err =
        PublicKey::from_pem(&fs_err::read_to_string(fixture("es256.pem")).unwrap()).unwrap_err();
    assert!(err.contains("private key"), "{err}");
    assert!(PublicKey::from_pem("nothing here").is_err());
    // OPA's 1024-bit `publicKeyInvalid` is too small to trust.
    let small = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDMYfnvWtC8Id5bPKae5yXSxQTt\n+Zpul6AnnZWfI2TtIarvjHBFUtXRo96y7hoL4VWOPKGCsRqMFDkrbeUjRrx8iL91\n4/srnyf6sh9c8Zk04xEOpK1ypvBz+Ks4uZObtjnnitf0NBGdjMKxveTq+VE7BWUI\nyQjtQ8mbDOsiLLvh7wIDAQAB\n-----END PUBLIC KEY-----\n";
    assert!(PublicKey::from_pem(small)
        .unwrap_err()
        .contains("too small"));
}
