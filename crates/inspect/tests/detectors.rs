//! Each rule's positives and near-miss negatives, streaming across block boundaries,
//! redaction and masked excerpts.
//!
//! Secret-shaped test values are split with `concat!` so that this file is not itself a
//! finding of a secret scanner.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use cordon_inspect::{Detector, Finding, Kind, Scanner, Selection};

fn detector() -> &'static Detector {
    Detector::standard().unwrap()
}

/// The rules that fire on `text`, with the text each one covers.
fn found(text: &str) -> Vec<(&'static str, String)> {
    detector()
        .find(text.as_bytes())
        .into_iter()
        .map(|f| (f.rule, text[f.start as usize..f.end as usize].to_owned()))
        .collect()
}

fn assert_finds(rule: &str, text: &str, value: &str) {
    let got = found(text);
    assert!(
        got.iter().any(|(r, v)| *r == rule && v == value),
        "expected {rule} to find `{value}` in `{text}`, got {got:?}"
    );
}

fn assert_none(text: &str) {
    let got = found(text);
    assert!(got.is_empty(), "expected nothing in `{text}`, got {got:?}");
}

const GITHUB: &str = concat!("ghp_", "u8jzPde0IgxLd6GncfBAepfJBd0Kh8024xXH");
const AWS_ID: &str = concat!("AKIA", "QYLPMN5HHHFPZAM2");
const AWS_SECRET: &str = concat!("jORS/6ilI8ihN5KXSc7Tvo", "/hBKqFYY/kv5ZJr3J1");
const PEM_BODY: &str = concat!(
    "+ClDDC4z7k+gTofCNEpygKwtRVjNBP5ACQMEu4GN+jCDeT7vchuo0aZuqH6L1eNk+IFOsDf7Olcy1eG0uqIjZ/1Y\n",
    "+w3WIQMSoL3hQW4pDhWq12Hegav4SJk+sUsLdS8oRHIAQ132VPj8jFI+CPfhTzdbLgBVYRV5R4CnMz+BxgEXQ9EW\n",
    "JGaWCmQFTE2hOxWV9YfawCeo5LfI4Zhjw1O4/H4mSLmepCUL09W35IOgbbuzz4Ej6IbAgZHV0M0E06+VzOS2rvSx\n"
);

#[test]
fn private_keys_are_found_whole_and_placeholders_are_not() {
    let block = format!(
        "-----BEGIN RSA {}-----\n{PEM_BODY}-----END RSA {}-----",
        "PRIVATE KEY", "PRIVATE KEY"
    );
    let text = format!("key:\n{block}\nafter");
    assert_finds("private-key", &text, &block);
    // Inside JSON, with escaped newlines (a GCP service account's key).
    let escaped = block.replace('\n', "\\n");
    assert_finds(
        "private-key",
        &format!("{{\"private_key\": \"{escaped}\"}}"),
        &escaped,
    );
    // Documentation: a header and an elided body.
    assert_none(&format!(
        "-----BEGIN {}-----\n...\n-----END {}-----",
        "PRIVATE KEY", "PRIVATE KEY"
    ));
    // A public key is not a secret.
    assert_none(&format!(
        "-----BEGIN PUBLIC KEY-----\n{PEM_BODY}-----END PUBLIC KEY-----"
    ));
}

#[test]
fn aws_keys_need_a_real_prefix_and_are_not_examples() {
    assert_finds("aws-access-key-id", &format!("id={AWS_ID}"), AWS_ID);
    assert_none(&format!("id=AKIB{}", &AWS_ID[4..]));
    assert_none(concat!("id=AKIA", "IOSFODNN7EXAMPLE"));
    assert_finds(
        "aws-secret-access-key",
        &format!("aws_secret_access_key = {AWS_SECRET}\n"),
        AWS_SECRET,
    );
    assert_none(concat!(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/",
        "bPxRfiCYEXAMPLEKEY"
    ));
}

#[test]
fn cloud_credentials() {
    let sa = concat!(
        "{\"type\": \"service_account\", \"project_id\": \"p\", \"private_key_id\": \"1\",",
        " \"private_key\": \"x\", \"client_email\": \"svc@p.iam.gserviceaccount.com\"}"
    );
    assert_finds("gcp-service-account", sa, "\"type\": \"service_account\"");
    assert_none("{\"type\": \"service_account\"}");
    let storage = concat!(
        "cVOc+YGbgzOxRnOCiM56gfE/soXg4PHtQuyP5PEz13Ijah9kcVASqz1tEjarTcgf5",
        "cYn8LekqV0kQOIj93c4vw=="
    );
    assert_finds(
        "azure-storage-key",
        &format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={storage};EndpointSuffix=core.windows.net"),
        storage,
    );
    let sas = concat!("8xhl4nwp/arVOSm0bv6DZ1ZrMl", "tRF7hdBFaNdXC0BGI=");
    assert_finds(
        "azure-shared-access-key",
        &format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={sas}"),
        sas,
    );
    let gcp = concat!("AIza", "BLEPH1qhT61qtc4xatws8phP9nhFyJfm5di");
    assert_finds("gcp-api-key", &format!("key: {gcp}"), gcp);
}

#[test]
fn service_tokens_with_their_structure() {
    assert_finds("github-token", &format!("token {GITHUB}"), GITHUB);
    // The same shape with a wrong checksum.
    assert_none(&format!("token {}Y", &GITHUB[..GITHUB.len() - 1]));
    let fine = concat!(
        "github_pat_oOOL8dKLzdocJ2isAjIhKt_",
        "J0RlgLKOmxgJTeKdNnFRIBXuDL7DxtpYlSXpfKtHF4vUCsMehGAkWvj7FAc"
    );
    assert_finds("github-fine-grained-token", fine, fine);
    let gitlab = concat!("glpat-", "wR4y9ojfljoQoaF1Llqs");
    assert_finds("gitlab-token", &format!("x {gitlab} y"), gitlab);
    let slack = concat!(
        "xoxb-",
        "1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
    );
    assert_finds("slack-token", slack, slack);
    assert_none("xoxb-not-a-token");
    let stripe = concat!("sk_live_", "ajAIxNKu8iS2G8NPRVdD53X8");
    assert_finds("stripe-key", &format!("STRIPE={stripe}"), stripe);
    let openai = concat!(
        "sk-proj-3RZJzzzzgEOzdmenCkhv",
        "T3BlbkFJ",
        "MdgaKjIg8xNbe3nNyjOq"
    );
    assert_finds("openai-key", &format!("\"{openai}\""), openai);
    assert_none("sk-proj-3RZJzzzzgEOzdmenCkhvMdgaKjIg8xNbe3nNyjOq");
    let anthropic = concat!(
        "sk-ant-api03-SU8po_799NksnRH9ucAUsdMlHUvTCQCyEZDz-TddJ8HyS5SUkCnD8zRA9a9",
        "SkpXz9w3QlY7Zkuvqdt7s8Stqcbnr3yBdG",
        "AA"
    );
    assert_finds(
        "anthropic-key",
        &format!("ANTHROPIC_API_KEY={anthropic}"),
        anthropic,
    );
    let sendgrid = concat!(
        "SG.",
        "9pcCJZtx7yJoGW7BC7Df5V.cX4R2JMITLgg02U7GRfMgU11YUFmAImEs8-MegJsCnl"
    );
    assert_finds("sendgrid-key", &format!("SENDGRID={sendgrid}"), sendgrid);
    let npm = concat!("npm_", "a8Xk2LmP0vR7tY2wK9sDq4Zb6Nc1Hj3Fg5Ue");
    assert_finds(
        "npm-token",
        &format!("//registry.npmjs.org/:_authToken={npm}"),
        npm,
    );
    let telegram = concat!("693533162:AA", "HdqTcvCH1vGWJxfSeofSAs0K5PALDsawq");
    assert_finds("telegram-bot-token", &format!("bot {telegram}"), telegram);
    let square = concat!("sq0csp-", "EKvN5riztuedzaX-PG7q7NWHxtNUJVm1f94j5oW_Kv7");
    assert_finds("square-secret", square, square);
    let jwt = concat!(
        "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.",
        "eyJzdWIiOiAiMTIzNDU2Nzg5MCIsICJuYW1lIjogIkpvIn0.",
        "QLioDnkHIfxIq2HZt-PlJhx2jIclHkCiHp6bR1IqfEo"
    );
    assert_finds("jwt", &format!("Authorization: Bearer {jwt}"), jwt);
    // JWT-shaped, but the header is not JSON.
    assert_none("eyJub3QganNvbg.eyJzdWIiOiAiMTIzNDU2Nzg5MCIsICJuYW1lIjogIkpvIn0.abc");
}

#[test]
fn credentials_in_urls_and_assignments() {
    assert_finds(
        "url-credentials",
        "DATABASE_URL=postgres://admin:S3cr3tPass@db.internal:5432/app",
        "admin:S3cr3tPass",
    );
    assert_none("see https://user:password@host/ and https://u:${PASS}@host/");
    assert_finds(
        "generic-secret",
        "api_key = \"q8Xz3LmP0vR7tY2wK9sD\"",
        "q8Xz3LmP0vR7tY2wK9sD",
    );
    // `Authorization: Basic base64(deploy:S3cr3t-pass)`.
    assert_finds(
        "basic-auth",
        "Authorization: Basic ZGVwbG95OlMzY3IzdC1wYXNz",
        "ZGVwbG95OlMzY3IzdC1wYXNz",
    );
    assert_none("a basic question about it");
    assert_none("password = get_password()\ntoken: \"your_token_here\"\nsecret_name = self.config.password_field");
    // A known token assigned to a secret-looking name is reported as the token.
    assert_finds("github-token", &format!("GITHUB_TOKEN={GITHUB}"), GITHUB);
}

#[test]
fn personal_data_is_validated() {
    assert_finds(
        "email",
        "mail alice.smith@corp-mail.com now",
        "alice.smith@corp-mail.com",
    );
    assert_none("user@example.com, logo@2x.png, git@github.com:o/r");
    assert_finds("phone", "call +44 20 7946 0958.", "+44 20 7946 0958");
    assert_finds("phone", "or (415) 555-2671", "(415) 555-2671");
    assert_finds(
        "payment-card",
        "card 4539 1488 0343 6467 ok",
        "4539 1488 0343 6467",
    );
    // Luhn-invalid, and a Luhn-valid number with no issuer.
    assert_none("card 4539 1488 0343 6468 ok, id 1700000000009");
    assert_finds(
        "iban",
        "IBAN GB82 WEST 1234 5698 7654 32.",
        "GB82 WEST 1234 5698 7654 32",
    );
    assert_finds("iban", "DE89370400440532013000", "DE89370400440532013000");
    assert_none("IBAN GB82 WEST 1234 5698 7654 33");
    assert_finds(
        "cn-resident-id",
        "id 11010519491231002X",
        "11010519491231002X",
    );
    assert_none("id 110105194912310021");
    assert_finds("es-dni", "DNI 12345678Z", "12345678Z");
    assert_none("DNI 12345678A");
    assert_finds("se-personnummer", "pnr 811228-9874", "811228-9874");
    assert_none("pnr 811228-9875");
    assert_finds(
        "fr-nir",
        "NIR 1 85 05 78 006 084 91",
        "1 85 05 78 006 084 91",
    );
    assert_none("NIR 1 85 05 78 006 084 92");
}

#[test]
fn a_stream_cut_anywhere_finds_the_same() {
    let mut text = String::new();
    for i in 0..40_000 {
        text.push_str(&format!("line {i} of filler text, nothing here\n"));
        if i % 9_000 == 0 {
            text.push_str(&format!("export GITHUB_TOKEN={GITHUB}\n"));
        }
    }
    let whole = detector().find(text.as_bytes());
    assert_eq!(whole.len(), 5);
    for piece in [1usize, 7, 4096, 1 << 20, 3 << 20] {
        let mut scanner = Scanner::new(detector());
        let mut got: Vec<Finding> = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            scanner.push(chunk, &mut |f| got.push(f.finding));
        }
        let len = scanner.finish(&mut |f| got.push(f.finding));
        assert_eq!(len, text.len() as u64);
        assert_eq!(got, whole, "pieces of {piece}");
    }
    assert_eq!(whole[1].line, 9_003);
}

#[test]
fn redaction_replaces_what_it_finds_and_selects_by_kind() {
    let text = format!("user alice.smith@corp-mail.com key {AWS_ID} tok {GITHUB}");
    let all = detector().redact(text.as_bytes());
    assert_eq!(
        String::from_utf8(all.data).unwrap(),
        "user [REDACTED:email] key [REDACTED:cloud_key] tok [REDACTED:token]"
    );
    let secrets_only =
        Detector::new(&Selection::parse(&["cloud_key", "github-token"]).unwrap()).unwrap();
    let some = secrets_only.redact(text.as_bytes());
    assert_eq!(
        String::from_utf8(some.data).unwrap(),
        "user alice.smith@corp-mail.com key [REDACTED:cloud_key] tok [REDACTED:token]"
    );
    let custom = Detector::new(&Selection::parse(&["regex:project-[0-9]{4}"]).unwrap()).unwrap();
    assert_eq!(
        custom.redact(b"see project-1234").data,
        b"see [REDACTED:custom]"
    );
    assert!(Selection::parse(&["no-such-rule"]).is_err());
    assert!(Detector::new(&Selection::parse(&["regex:("]).unwrap()).is_err());
    assert_eq!(
        Kind::PrivateKey.default_sensitivity().as_str(),
        "restricted"
    );
}

#[test]
fn excerpts_never_show_the_value() {
    let text =
        format!("a=1\nexport AWS_ACCESS_KEY_ID={AWS_ID} GITHUB_TOKEN={GITHUB} # keys\nb=2\n");
    let mut scanner = Scanner::new(detector());
    let mut excerpts = Vec::new();
    scanner.push(text.as_bytes(), &mut |f| {
        excerpts.push((f.finding.line, f.excerpt()))
    });
    scanner.finish(&mut |f| excerpts.push((f.finding.line, f.excerpt())));
    assert_eq!(excerpts.len(), 2);
    for (line, excerpt) in &excerpts {
        assert_eq!(*line, 2);
        assert!(
            !excerpt.contains(AWS_ID) && !excerpt.contains(GITHUB),
            "{excerpt}"
        );
        assert!(
            !excerpt.contains(&AWS_ID[4..12]) && !excerpt.contains(&GITHUB[4..12]),
            "{excerpt}"
        );
    }
    assert!(excerpts[0].1.contains("AKIA****"), "{}", excerpts[0].1);
}

#[test]
fn binary_and_huge_input() {
    let mut data = vec![0u8; 100];
    data.extend_from_slice(AWS_ID.as_bytes());
    let mut got = 0;
    let summary =
        cordon_inspect::scan_reader(detector(), &mut data.as_slice(), None, false, &mut |_| {
            got += 1
        })
        .unwrap();
    assert!(summary.binary);
    assert_eq!(got, 0);
    let summary =
        cordon_inspect::scan_reader(detector(), &mut data.as_slice(), None, true, &mut |_| {
            got += 1
        })
        .unwrap();
    assert_eq!(got, 1);
    assert!(!summary.truncated);
    let summary = cordon_inspect::scan_reader(
        detector(),
        &mut data.as_slice(),
        Some(50),
        true,
        &mut |_| got += 1,
    )
    .unwrap();
    assert!(summary.truncated);
    assert_eq!(summary.bytes, 50);
    // Invalid UTF-8 around a finding.
    let mut bytes = vec![0xff, 0xfe, b' '];
    bytes.extend_from_slice(AWS_ID.as_bytes());
    bytes.extend_from_slice(&[b' ', 0xc3]);
    assert_eq!(detector().find(&bytes).len(), 1);
}

#[test]
fn excerpts_mask_a_secret_that_began_in_the_block_before() {
    // An AWS secret that begins just before the first 1 MiB block ends, a token right after
    // it: the token's excerpt (in the next block) shows neither.
    let mut text = String::new();
    while text.len() < (1 << 20) - 40 {
        text.push_str("filler filler filler filler filler filler\n");
    }
    text.truncate((1 << 20) - 30);
    text.push('\n');
    text.push_str(&format!(
        "aws_secret_access_key = {AWS_SECRET} {GITHUB} end\n"
    ));
    text.push_str(&"tail line\n".repeat(5000));
    let mut scanner = Scanner::new(detector());
    let mut seen = Vec::new();
    for chunk in text.as_bytes().chunks(4096) {
        scanner.push(chunk, &mut |f| seen.push((f.finding.rule, f.excerpt())));
    }
    scanner.finish(&mut |f| seen.push((f.finding.rule, f.excerpt())));
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (_, excerpt) in &seen {
        assert!(!excerpt.contains(&AWS_SECRET[20..]), "{excerpt}");
        assert!(!excerpt.contains(&GITHUB[4..]), "{excerpt}");
    }
}

#[test]
fn a_scan_of_some_kinds_masks_every_kind_it_prints() {
    let text = format!("mail ann@corp-mail.com token {GITHUB}\n");
    let emails = Detector::new(&Selection::parse(&["email"]).unwrap()).unwrap();
    let mut scanner = Scanner::new(&emails).masking(detector());
    let mut seen = Vec::new();
    scanner.push(text.as_bytes(), &mut |f| seen.push(f.excerpt()));
    scanner.finish(&mut |f| seen.push(f.excerpt()));
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].contains(&GITHUB[4..]), "{}", seen[0]);
}

#[test]
fn an_unreported_copy_of_a_value_found_is_hidden_in_excerpts() {
    let text = format!("key={AWS_ID} backup={AWS_ID}x\n");
    let mut scanner = Scanner::new(detector());
    let mut seen = Vec::new();
    scanner.push(text.as_bytes(), &mut |f| seen.push(f.excerpt()));
    scanner.finish(&mut |f| seen.push(f.excerpt()));
    assert!(!seen.is_empty());
    for excerpt in &seen {
        assert!(!excerpt.contains(&AWS_ID[4..]), "{excerpt}");
    }
}

#[test]
fn a_path_rule_follows_the_path_not_the_file() {
    use cordon_inspect::file::{Classifier, PathRule, Source};
    use cordon_types::Sensitivity;
    let dir = std::env::temp_dir().join(format!("cordon-classify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    fs_err::create_dir_all(dir.join("finance")).unwrap();
    fs_err::write(dir.join("finance/plan.txt"), "quarterly plan").unwrap();
    fs_err::hard_link(dir.join("finance/plan.txt"), dir.join("a.txt")).unwrap();
    let rule = PathRule::new(
        &format!("{}/finance/**", dir.display()),
        Sensitivity::Confidential,
        None,
    )
    .unwrap();
    let classifier = Classifier::new(vec![rule], Default::default(), 1 << 20, false);
    // The second name first: cached, it must not decide for the first.
    let other = classifier.classify(detector(), &dir.join("a.txt"));
    let ruled = classifier.classify(detector(), &dir.join("finance/plan.txt"));
    assert_eq!(
        (other.source, other.sensitivity),
        (Source::Default, Sensitivity::Internal)
    );
    assert_eq!(
        (ruled.source, ruled.sensitivity),
        (Source::Path, Sensitivity::Confidential)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
