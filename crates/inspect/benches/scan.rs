//! Scan throughput and accuracy on a generated, labelled corpus, beside `detect-secrets`.
//!
//! `cargo bench -p cordon-inspect --bench scan` writes a corpus of mixed text files (source,
//! prose, JSON, CSV, logs, a few binaries) with planted secrets, planted personal data and
//! decoys that a careful detector leaves alone (documentation examples, wrong prefixes,
//! Luhn-invalid numbers, placeholders, hashes in lock files, UUIDs), then times cordon's
//! scanner on one thread and on every core, and `detect-secrets scan --all-files` when it is
//! on `PATH` (or named by `DETECT_SECRETS`), and reports precision and recall of each on
//! the labelled lines. `CORPUS_MB` sets the corpus size (default 50).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark fails by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cordon_inspect::file::{scan_tree, Progress, TreeOptions};
use cordon_inspect::Detector;

/// A small deterministic generator (xorshift64*), so every run writes the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8] = b"0123456789abcdef";
const WORDS: &[&str] = &[
    "the", "agent", "reads", "policy", "file", "value", "request", "session", "model", "data",
    "returns", "when", "config", "handler", "user", "result", "error", "cache", "build", "test",
];

/// What a planted line is: a secret or personal data to find, or a decoy to leave alone.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Label {
    Secret,
    Personal,
    Decoy,
}

fn luhn_complete(rng: &mut Rng, prefix: &str, len: usize) -> String {
    let mut digits: Vec<u32> = prefix.chars().map(|c| c.to_digit(10).unwrap()).collect();
    while digits.len() < len - 1 {
        digits.push(rng.below(10) as u32);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect()
}

fn github_token(rng: &mut Rng) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let random = rng.chars(ALNUM, 30);
    let mut crc = crc32(random.as_bytes());
    let mut check = [b'0'; 6];
    for slot in check.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    format!("ghp_{random}{}", String::from_utf8(check.to_vec()).unwrap())
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn iban(rng: &mut Rng) -> String {
    // A German IBAN: DE, check digits, 18 digits of account.
    let bban: String = (0..18)
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect();
    let numeric = format!("{bban}131400"); // D=13, E=14, then 00
    let remainder = numeric
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - remainder)
}

fn planted(rng: &mut Rng) -> (Label, String) {
    let value = |rng: &mut Rng| rng.chars(B64, 40);
    match rng.below(30) {
        0 => (
            Label::Secret,
            format!("aws_access_key_id = AKIA{}", rng.chars(UPPER32, 16)),
        ),
        1 => (
            Label::Secret,
            format!("aws_secret_access_key = {}", value(rng)),
        ),
        2 => (Label::Secret, format!("token = \"{}\"", github_token(rng))),
        3 => (
            Label::Secret,
            format!("GITLAB_TOKEN=glpat-{}", rng.chars(ALNUM, 20)),
        ),
        4 => (
            Label::Secret,
            format!(
                "slack: xoxb-{}-{}-{}",
                rng.chars(b"0123456789", 12),
                rng.chars(b"0123456789", 13),
                rng.chars(ALNUM, 24)
            ),
        ),
        5 => (
            Label::Secret,
            format!("stripe.api_key = 'sk_live_{}'", rng.chars(ALNUM, 24)),
        ),
        6 => (
            Label::Secret,
            format!(
                "OPENAI_API_KEY=sk-proj-{}T3BlbkFJ{}",
                rng.chars(ALNUM, 20),
                rng.chars(ALNUM, 20)
            ),
        ),
        7 => (
            Label::Secret,
            format!(
                "client = Anthropic(api_key=\"sk-ant-api03-{}AA\")",
                rng.chars(ALNUM, 93)
            ),
        ),
        8 => (
            Label::Secret,
            format!(
                "DATABASE_URL=postgres://app:{}@db.internal:5432/app",
                rng.chars(ALNUM, 16)
            ),
        ),
        9 => (
            Label::Secret,
            format!("db_password = \"{}\"", rng.chars(ALNUM, 18)),
        ),
        10 => (
            Label::Secret,
            format!("maps_key: AIza{}", rng.chars(ALNUM, 35)),
        ),
        11 => (
            Label::Secret,
            format!(
                "AZURE=DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={}==",
                rng.chars(B64, 85) + "A"
            ),
        ),
        12 => (Label::Secret, "-----BEGIN RSA PRIVATE KEY-----".to_owned()),
        13 => {
            use base64::Engine as _;
            let claims = format!(
                "{{\"sub\":\"{}\",\"iat\":{}}}",
                rng.chars(ALNUM, 12),
                1_700_000_000 + rng.below(1_000_000)
            );
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
            (
                Label::Secret,
                format!(
                    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{claims}.{}",
                    rng.chars(ALNUM, 43)
                ),
            )
        }
        14 => (
            Label::Personal,
            format!(
                "contact: {}.{}@mail-{}.com",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.below(1000)
            ),
        ),
        15 => (
            Label::Personal,
            format!("card,{}", luhn_complete(rng, "4", 16)),
        ),
        16 => (Label::Personal, format!("iban: {}", iban(rng))),
        17 => (
            Label::Personal,
            format!(
                "phone: +44 20 {} {}",
                7000 + rng.below(999),
                1000 + rng.below(8999)
            ),
        ),
        // Decoys.
        18 => (
            Label::Decoy,
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE".to_owned(),
        ),
        19 => (Label::Decoy, format!("id = AKIB{}", rng.chars(UPPER32, 16))),
        20 => (
            Label::Decoy,
            format!("card,{}", {
                let mut c = luhn_complete(rng, "4", 16);
                let last = c.pop().unwrap().to_digit(10).unwrap();
                c.push(char::from_digit((last + 1) % 10, 10).unwrap());
                c
            }),
        ),
        21 => (
            Label::Decoy,
            "password = get_password_from_vault()".to_owned(),
        ),
        22 => (Label::Decoy, "api_key: ${API_KEY}".to_owned()),
        23 => (
            Label::Decoy,
            format!("    \"integrity\": \"sha512-{}==\",", rng.chars(B64, 86)),
        ),
        24 => (Label::Decoy, format!("commit {}", rng.chars(HEX, 40))),
        25 => (
            Label::Decoy,
            format!(
                "request_id={}-{}-4{}-a{}-{}",
                rng.chars(HEX, 8),
                rng.chars(HEX, 4),
                rng.chars(HEX, 3),
                rng.chars(HEX, 3),
                rng.chars(HEX, 12)
            ),
        ),
        26 => (
            Label::Decoy,
            format!("checksum = \"{}\"", rng.chars(HEX, 64)),
        ),
        27 => (Label::Decoy, "token: \"your_token_here\"".to_owned()),
        28 => (
            Label::Decoy,
            format!(
                "version = \"{}.{}.{}\"",
                rng.below(20),
                rng.below(50),
                rng.below(100)
            ),
        ),
        _ => (
            Label::Decoy,
            "see https://user:password@example.org/docs".to_owned(),
        ),
    }
}

fn filler(rng: &mut Rng, kind: usize) -> String {
    match kind {
        0 => format!(
            "    let {} = {}.{}({}, {});",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(10_000),
            rng.pick(WORDS)
        ),
        1 => {
            (0..12)
                .map(|_| rng.pick(WORDS))
                .collect::<Vec<_>>()
                .join(" ")
                + "."
        }
        2 => format!(
            "  \"{}_{}\": {},",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(100_000)
        ),
        3 => format!(
            "{},{},{}.{:02},{}",
            rng.below(1_000_000),
            1_700_000_000 + rng.below(10_000_000),
            rng.below(10_000),
            rng.below(100),
            rng.pick(WORDS)
        ),
        _ => format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}Z INFO {} {} in {} ms",
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(900)
        ),
    }
}

/// Writes the corpus; returns the labelled lines: (file, line) → label.
fn write_corpus(dir: &Path, megabytes: usize) -> BTreeMap<(PathBuf, u64), Label> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut labels = BTreeMap::new();
    let exts = ["rs", "md", "json", "csv", "log"];
    let per_file = 128 * 1024;
    let files = megabytes * 1024 * 1024 / per_file;
    for i in 0..files {
        let kind = i % exts.len();
        let path = dir.join(format!("d{}/f{i}.{}", i % 16, exts[kind]));
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        if i % 97 == 0 {
            // A binary file (an image): skipped.
            let bytes: Vec<u8> = (0..per_file).map(|_| rng.next() as u8).collect();
            fs_err::write(path.with_extension("png"), bytes).unwrap();
            continue;
        }
        let mut text = String::with_capacity(per_file + 4096);
        let mut line = 1u64;
        while text.len() < per_file {
            if rng.below(60) == 0 {
                let (label, content) = planted(&mut rng);
                labels.insert((path.clone(), line), label);
                text.push_str(&content);
                text.push('\n');
                line += 1;
                if content.starts_with("-----BEGIN") {
                    for _ in 0..12 {
                        text.push_str(&rng.chars(B64, 64));
                        text.push('\n');
                        line += 1;
                    }
                    text.push_str("-----END RSA PRIVATE KEY-----\n");
                    line += 1;
                }
            } else {
                text.push_str(&filler(&mut rng, kind));
                text.push('\n');
                line += 1;
            }
        }
        fs_err::write(&path, text).unwrap();
    }
    labels
}

#[derive(Default, Debug)]
struct Score {
    found: BTreeMap<Label, usize>,
    planted: BTreeMap<Label, usize>,
    false_positives: usize,
}

impl Score {
    fn of(labels: &BTreeMap<(PathBuf, u64), Label>, reported: &BTreeSet<(PathBuf, u64)>) -> Self {
        let mut score = Score::default();
        for (key, label) in labels {
            *score.planted.entry(*label).or_default() += 1;
            if reported.contains(key) {
                *score.found.entry(*label).or_default() += 1;
            }
        }
        score.false_positives = reported
            .iter()
            .filter(|key| labels.get(*key).is_none_or(|l| *l == Label::Decoy))
            .count();
        score
    }

    fn recall(&self, label: Label) -> f64 {
        *self.found.get(&label).unwrap_or(&0) as f64
            / *self.planted.get(&label).unwrap_or(&1) as f64
    }

    fn precision(&self) -> f64 {
        let tp: usize = self
            .found
            .iter()
            .filter(|(l, _)| **l != Label::Decoy)
            .map(|(_, n)| n)
            .sum();
        tp as f64 / (tp + self.false_positives).max(1) as f64
    }
}

fn detect_secrets() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DETECT_SECRETS") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("detect-secrets"))
        .find(|p| p.is_file())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    adversarial();
    let megabytes: usize = std::env::var("CORPUS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let labels = write_corpus(dir.path(), megabytes);
    let bytes: u64 = walk_size(dir.path());
    let mb = bytes as f64 / 1e6;
    println!(
        "corpus: {mb:.1} MB in {} labelled lines ({} secrets, {} personal, {} decoys)",
        labels.len(),
        labels.values().filter(|l| **l == Label::Secret).count(),
        labels.values().filter(|l| **l == Label::Personal).count(),
        labels.values().filter(|l| **l == Label::Decoy).count()
    );
    let detector = Detector::standard().unwrap();

    // One thread: every file in turn.
    let mut files = Vec::new();
    collect(dir.path(), &mut files);
    files.sort();
    let started = Instant::now();
    let mut single = BTreeSet::new();
    for path in &files {
        let file = cordon_inspect::file::open_regular(path).unwrap();
        let mut reader = &file;
        cordon_inspect::scan_reader(detector, &mut reader, None, false, &mut |f| {
            single.insert((path.clone(), f.finding.line));
        })
        .unwrap();
    }
    let one = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let report = scan_tree(
        detector,
        &[dir.path().to_path_buf()],
        &TreeOptions::default(),
        &Progress::default(),
    );
    let all = started.elapsed().as_secs_f64();
    let reported: BTreeSet<_> = report
        .findings
        .iter()
        .map(|f| (f.path.clone(), f.finding.line))
        .collect();
    assert_eq!(
        reported, single,
        "the tree scan and the file-by-file scan agree"
    );
    let ours = Score::of(&labels, &reported);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cordon, 1 thread:      {:8.1} MB/s ({one:.2} s)", mb / one);
    println!(
        "cordon, {cores} threads:     {:8.1} MB/s ({all:.2} s)",
        mb / all
    );
    println!(
        "cordon: secrets recall {:.3}, personal data recall {:.3}, precision {:.3} ({} false positives)",
        ours.recall(Label::Secret),
        ours.recall(Label::Personal),
        ours.precision(),
        ours.false_positives
    );
    if std::env::var_os("SHOW_MISSES").is_some() {
        for ((path, line), label) in &labels {
            let hit = reported.contains(&(path.clone(), *line));
            if (*label == Label::Decoy) == hit {
                let text = fs_err::read_to_string(path).unwrap();
                let content = text.lines().nth(*line as usize - 1).unwrap_or_default();
                println!(
                    "  {}: {label:?}: {content}",
                    if hit { "flagged" } else { "missed" }
                );
            }
        }
    }
    // The secrets-only view, comparable with detect-secrets (which finds no personal data).
    let secrets_only: BTreeMap<_, _> = labels
        .iter()
        .filter(|(_, l)| **l != Label::Personal)
        .map(|(k, l)| (k.clone(), *l))
        .collect();
    let ours_secrets = Score::of(
        &secrets_only,
        &reported
            .iter()
            .filter(|k| labels.get(*k) != Some(&Label::Personal))
            .cloned()
            .collect(),
    );
    println!(
        "cordon, secrets only: recall {:.3}, precision {:.3} ({} false positives)",
        ours_secrets.recall(Label::Secret),
        ours_secrets.precision(),
        ours_secrets.false_positives
    );

    let Some(ds) = detect_secrets() else {
        println!("detect-secrets: not on PATH (pip install detect-secrets, or set DETECT_SECRETS)");
        return;
    };
    let started = Instant::now();
    let output = std::process::Command::new(&ds)
        .args(["scan", "--all-files"])
        .arg(".")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let theirs_time = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut theirs = BTreeSet::new();
    for (file, results) in doc["results"].as_object().unwrap() {
        for r in results.as_array().unwrap() {
            let path = dir.path().join(file.trim_start_matches("./"));
            let line = r["line_number"].as_u64().unwrap();
            if labels.get(&(path.clone(), line)) != Some(&Label::Personal) {
                theirs.insert((path, line));
            }
        }
    }
    let score = Score::of(&secrets_only, &theirs);
    println!(
        "detect-secrets:        {:8.1} MB/s ({theirs_time:.2} s); secrets recall {:.3}, precision {:.3} ({} false positives)",
        mb / theirs_time,
        score.recall(Label::Secret),
        score.precision(),
        score.false_positives
    );
    println!(
        "cordon (all cores) / detect-secrets throughput: {:.1}x",
        theirs_time / all
    );
}

/// Throughput on inputs made to be slow: repeated rule prefixes that match and fail their
/// checks, long runs of one class, many candidates per line. 1 MiB each.
fn adversarial() {
    let detector = Detector::standard().unwrap();
    let mut rng = Rng(7);
    let repeat = |unit: &str| unit.repeat((1 << 20) / unit.len());
    let inputs: Vec<(&str, String)> = vec![
        ("`password=` repeated", repeat("password=")),
        ("`token=` repeated", repeat("token=")),
        ("digits", repeat("0123456789")),
        ("`a@a@` repeated", repeat("a@")),
        ("`4111 ` repeated", repeat("4111 ")),
        (
            "PEM headers repeated",
            repeat("-----BEGIN PRIVATE KEY-----\n"),
        ),
        ("`eyJa.` repeated", repeat("eyJa.")),
        ("random base64", rng.chars(B64, 1 << 20)),
        (
            "an e-mail address a line",
            repeat("ann.lee@corp-mail.com\n"),
        ),
        ("`Bearer ` repeated", repeat("Bearer ")),
        ("`1234567890124.` repeated", repeat("1234567890124.")),
        ("AWS key ids joined by `.`", repeat("AKIAQYLPMN5HHHFPZAM2.")),
    ];
    println!("adversarial inputs (1 MiB each, one thread):");
    for (name, text) in inputs {
        let started = Instant::now();
        let found = detector.find(text.as_bytes()).len();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  {name:<28} {:8.1} MB/s ({found} findings)",
            text.len() as f64 / 1e6 / secs
        );
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            collect(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

fn walk_size(dir: &Path) -> u64 {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.iter().map(|f| f.metadata().unwrap().len()).sum()
}
