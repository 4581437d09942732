//! Snapshot time of a generated workspace (10,000 files, about 200 MB), first (every file
//! copied into the store) and unchanged (the stat cache), beside `git add -A && git commit`
//! of the same tree in the same run.
//!
//! `cargo bench -p cordon-journal --bench snapshot` (`CORDON_BENCH_FILES`, `CORDON_BENCH_ROUNDS`
//! change the size and the rounds).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a bench fails by panicking"
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cordon_journal::{snapshot, Blobs, Journal, Options};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `files` files in 100 directories, 1–39 KB each (20 KB on average), text-like content
/// (as source code compresses) that differs from file to file.
fn generate(root: &Path, files: usize) -> u64 {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let words: Vec<String> = (0..512)
        .map(|_| {
            let len = 2 + (next() % 9) as usize;
            (0..len)
                .map(|_| char::from(b'a' + (next() % 26) as u8))
                .collect()
        })
        .collect();
    let mut total = 0;
    for i in 0..files {
        let dir = root.join(format!("pkg{:03}", i % 100));
        fs_err::create_dir_all(&dir).unwrap();
        let size = 1024 + (next() % (38 * 1024)) as usize;
        let mut text = String::with_capacity(size + 16);
        while text.len() < size {
            text.push_str(&words[(next() % 512) as usize]);
            text.push(if next() % 12 == 0 { '\n' } else { ' ' });
        }
        total += text.len() as u64;
        fs_err::write(dir.join(format!("file{i:05}.txt")), text).unwrap();
    }
    total
}

fn git(root: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(root)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.org")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.org")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("snapshot: bench");
        return;
    }
    let files = env("CORDON_BENCH_FILES", 10_000);
    let rounds = env("CORDON_BENCH_ROUNDS", 3).max(1);
    let base = tempfile::Builder::new()
        .prefix("cordon-snapshot-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let tree = base.path().join("work");
    let bytes = generate(&tree, files);
    // The tree is on disk before anything is timed: no one's sync pays for its writing.
    assert!(Command::new("sync").status().unwrap().success());
    eprintln!(
        "workspace: {files} files, {:.0} MB; {rounds} rounds",
        bytes as f64 / 1e6
    );
    let options = Options::default();
    let mut first = Vec::new();
    let mut first_journal = Vec::new();
    let mut unchanged = Vec::new();
    let mut unchanged_journal = Vec::new();
    let mut git_first = Vec::new();
    let mut git_unchanged = Vec::new();
    for round in 0..rounds {
        // cordon: the walk and the store alone, then as a session's start (manifest kept,
        // the store synced, the journal's transaction).
        let store = base.path().join(format!("blobs{round}"));
        let blobs = Blobs::new(&store);
        let started = Instant::now();
        let (manifest, summary) = snapshot(&tree, &blobs, None, &options).unwrap();
        blobs.sync().unwrap();
        first.push(started.elapsed());
        assert_eq!(summary.files as usize, files);
        for _ in 0..5 {
            let started = Instant::now();
            let (_, again) = snapshot(&tree, &blobs, Some(&manifest), &options).unwrap();
            unchanged.push(started.elapsed());
            assert_eq!(again.read, 0);
        }
        fs_err::remove_dir_all(&store).unwrap();

        let journal_dir = base.path().join(format!("journal{round}"));
        let mut journal = Journal::open(&journal_dir).unwrap();
        let started = Instant::now();
        journal
            .start(
                &format!("first{round}"),
                "bench",
                std::slice::from_ref(&tree),
                &options,
            )
            .unwrap();
        first_journal.push(started.elapsed());
        for i in 0..5 {
            let started = Instant::now();
            journal
                .start(
                    &format!("again{round}x{i}"),
                    "bench",
                    std::slice::from_ref(&tree),
                    &options,
                )
                .unwrap();
            unchanged_journal.push(started.elapsed());
        }
        drop(journal);
        fs_err::remove_dir_all(&journal_dir).unwrap();

        // git: a new repository, everything added and committed; then `git add -A` of the
        // unchanged tree (its index's stat cache) and an empty commit.
        let started = Instant::now();
        git(&tree, &["init", "-q"]);
        git(&tree, &["add", "-A"]);
        git(&tree, &["commit", "-q", "-m", "snapshot"]);
        git_first.push(started.elapsed());
        for _ in 0..5 {
            let started = Instant::now();
            git(&tree, &["add", "-A"]);
            git(&tree, &["commit", "-q", "--allow-empty", "-m", "again"]);
            git_unchanged.push(started.elapsed());
        }
        fs_err::remove_dir_all(tree.join(".git")).unwrap();
    }
    println!("| step | median (ms) |");
    println!("| --- | ---: |");
    println!(
        "| cordon snapshot, first (every file read and kept, store synced) | {} |",
        ms(median(first))
    );
    println!(
        "| cordon session start, first (as above, manifest kept, journal written) | {} |",
        ms(median(first_journal))
    );
    println!(
        "| git init && git add -A && git commit | {} |",
        ms(median(git_first))
    );
    println!(
        "| cordon snapshot, unchanged (stat cache) | {} |",
        ms(median(unchanged))
    );
    println!(
        "| cordon session start, unchanged | {} |",
        ms(median(unchanged_journal))
    );
    println!(
        "| git add -A && git commit --allow-empty, unchanged | {} |",
        ms(median(git_unchanged))
    );
}
