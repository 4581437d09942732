//! Policy bundles: how long activating a bundle of 200 modules takes, step by step, and how
//! decision latency behaves while the policy is swapped under running decisions.
//!
//! Activation: the default policy plus 200 generated modules (each a package of five rules
//! over `input` and `data`), built and signed with ES256, then each step timed over 20 runs:
//! reading and verifying the archive (every file's digest, the signature), reading its
//! policy (every module parsed to check the manifest's roots), compiling it
//! (`Policy::load`, every decision for the bytecode VM), and the whole activation
//! (`Store::offer`: all of the above, the anti-rollback check and the synced writes); then
//! what each command pays at start while a bundle is active (`Store::load`: read, verify
//! again, the policy's files; compiling is the compiled-policy cache's business).
//!
//! Swap: two threads decide a file read through `Pipeline::decide` for 3 s while a third
//! replaces the pipeline's policy every 10 ms (the swap a running session makes once a new
//! bundle has loaded beside it), then for 3 s with no swap; per-decision latency is
//! reported as p50/p99/p99.9/max for both.
//!
//! Run: `cargo bench -p cordon-supervisor --bench bundle_swap`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails by panicking"
)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon_bundle::store::{Store, Trust, Verdict};
use cordon_bundle::{Algorithm, Bundle, KeyKind, Limits, PrivateKey, Verifier};
use cordon_policy::{EngineKind, Policy, PolicyOptions, PolicySource};
use cordon_supervisor::{Generation, Pipeline};
use cordon_types::{InputBuilder, InputEnv, Request};

const MODULES: usize = 200;

fn options() -> PolicyOptions {
    PolicyOptions {
        engine: EngineKind::Rvm,
        ..PolicyOptions::default()
    }
}

/// The default policy and `MODULES` more, written to `dir`.
fn policy(dir: &Path) {
    for file in PolicySource::embedded_default().files() {
        let path = dir.join(&file.relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, &file.text).unwrap();
    }
    for i in 0..MODULES {
        let module = format!(
            "package cordon.generated.m{i}\n\n\
             threshold := {i}\n\n\
             large if count(input.resource.path) > threshold\n\n\
             tagged contains tag if {{\n\tsome tag in data.cordon.generated.tags\n\tstartswith(input.resource.path, tag)\n}}\n\n\
             allowed if {{\n\tlarge\n\tcount(tagged) == 0\n}}\n\n\
             summary := {{\"module\": {i}, \"allowed\": allowed}} if allowed\n"
        );
        let path = dir.join(format!("generated/m{i}.rego"));
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, module).unwrap();
    }
    fs_err::write(
        dir.join("generated/data.json"),
        r#"{"tags": ["/etc", "/proc", "/sys"]}"#,
    )
    .unwrap();
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f());
                started.elapsed()
            })
            .collect(),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn decide_for(
    pipeline: &Pipeline,
    duration: Duration,
    swap: Option<(Generation, Generation)>,
) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let request: Request = serde_json::from_str(
        r#"{"capability": "file", "action": "read", "resource": {"path": "src/main.rs", "sensitivity": "internal"}}"#,
    )
    .unwrap();
    let deciders: Vec<_> = (0..2)
        .map(|_| {
            let (pipeline, stop, request) = (pipeline.clone(), Arc::clone(&stop), request.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let decided = pipeline.decide(&request);
                    samples.push(started.elapsed());
                    assert!(decided.decision.allow, "{:?}", decided.decision);
                }
                samples
            })
        })
        .collect();
    let mut swaps = 0;
    let started = Instant::now();
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(10));
        if let Some((a, b)) = &swap {
            let next = if swaps % 2 == 0 { b.clone() } else { a.clone() };
            pipeline.policy_cell().replace(next);
            swaps += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = deciders
        .into_iter()
        .flat_map(|d| d.join().unwrap())
        .collect();
    all.sort();
    if swap.is_some() {
        println!("  ({swaps} swaps)");
    }
    all
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policy");
    policy(&policy_dir);
    let key = PrivateKey::generate(KeyKind::P256).unwrap();
    let bundle = Bundle::build(&policy_dir, "1", None)
        .unwrap()
        .sign(&key, Algorithm::Es256, "default", 0)
        .unwrap();
    let bytes = bundle.to_bytes().unwrap();
    let modules = bundle
        .entries()
        .iter()
        .filter(|e| e.name.ends_with(".rego"))
        .count();
    let verifier = Verifier::new().with_key("default", key.public());
    println!(
        "bundle: {modules} modules ({} files), {} bytes compressed",
        bundle.entries().len(),
        bytes.len()
    );

    let runs = 20;
    let read_verify = time(runs, || {
        let b = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
        b.verify(&verifier, 0).unwrap();
        b
    });
    let read = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
    let source_time = time(runs, || read.policy_source("bench").unwrap());
    let source = read.policy_source("bench").unwrap();
    let compile = time(runs, || Policy::load(&source, options()).unwrap());
    let mut revision = 1u64;
    let offer = time(runs, || {
        // A fresh store each time, so that every offer activates.
        revision += 1;
        let store = Store::new(dir.path().join(format!("store-{revision}")));
        let trust = Trust {
            verifier: verifier.clone(),
            ..Trust::default()
        };
        let check = |b: &Bundle| {
            let s = b.policy_source("bench")?;
            Policy::load(&s, options()).map(drop).map_err(|e| {
                cordon_bundle::BundleError::new(cordon_bundle::Problem::Policy, e.to_string())
            })
        };
        let verdict = store
            .offer(&bytes, "bench", &trust, &check, false, 0)
            .unwrap();
        assert!(matches!(verdict, Verdict::Activated { .. }));
    });
    // What every command pays when a bundle is active: the store's bundle read, verified
    // again, and its policy read (the roots were checked at activation).
    let store = Store::new(dir.path().join(format!("store-{revision}")));
    let trust = Trust {
        verifier: verifier.clone(),
        ..Trust::default()
    };
    let load = time(runs, || {
        let loaded = store.load(&trust, 0).unwrap().unwrap();
        loaded.policy_source("bench").unwrap()
    });
    println!("activation of a {modules}-module bundle (median of {runs}):");
    println!(
        "  read + verify (digests, ES256)   {:>8.2} ms",
        read_verify.as_secs_f64() * 1e3
    );
    println!(
        "  policy source (parse, roots)     {:>8.2} ms",
        source_time.as_secs_f64() * 1e3
    );
    println!(
        "  compile (Policy::load, RVM)      {:>8.2} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "  whole activation (Store::offer)  {:>8.2} ms",
        offer.as_secs_f64() * 1e3
    );
    println!("at each command's start, the active bundle:");
    println!(
        "  load + verify + policy source    {:>8.2} ms",
        load.as_secs_f64() * 1e3
    );

    // Decision latency with and without swaps.
    let a = Arc::new(Policy::load(&source, options()).unwrap());
    let b = Arc::new(Policy::load(&PolicySource::embedded_default(), options()).unwrap());
    let work = dir.path().join("work");
    fs_err::create_dir_all(work.join("src")).unwrap();
    fs_err::write(work.join("src/main.rs"), "fn main() {}").unwrap();
    let env = InputEnv {
        user: Some("alice".into()),
        device: None,
        agent: None,
        home: Some(dir.path().to_path_buf()),
        cwd: Some(work.clone()),
        workspace: vec![work.clone()],
        time: Some("2026-11-29T12:00:00Z".into()),
    };
    let pipeline = Pipeline::new(a.clone(), InputBuilder::new(env), None);
    let gen_a = Generation::new(a, None);
    let gen_b = Generation::new(b, None);
    let seconds = Duration::from_secs(3);
    let with = decide_for(&pipeline, seconds, Some((gen_a.clone(), gen_b)));
    pipeline.policy_cell().replace(gen_a);
    let without = decide_for(&pipeline, seconds, None);
    println!(
        "decision latency, 2 deciding threads, {} s each:",
        seconds.as_secs()
    );
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "decisions"
    );
    for (name, samples) in [("no swap", &without), ("swap every 10 ms", &with)] {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "  {name:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10}",
            us(percentile(samples, 0.5)),
            us(percentile(samples, 0.99)),
            us(percentile(samples, 0.999)),
            us(*samples.last().unwrap()),
            samples.len()
        );
    }
}
