//! Start-up cost of `cordon exec -- true`, beside bare `true`, `unshare` and bubblewrap
//! running `true` with a comparable profile, in one run.
//!
//! Each round runs every variant once, in turn, so that the machine's noise falls on all of
//! them alike; the table gives wall-clock percentiles over the rounds. bubblewrap must be on
//! PATH (`scripts/bench-exec.sh` installs Debian's).
//!
//! ```sh
//! cargo bench -p cordon-cli --bench exec_startup            # 200 rounds
//! CORDON_BENCH_ROUNDS=50 cargo bench -p cordon-cli --bench exec_startup
//! # beside another build of cordon (an earlier commit, say), in the same rounds:
//! CORDON_BENCH_BASELINE=/path/to/old/cordon cargo bench -p cordon-cli --bench exec_startup
//! # only some variants (names as in the table, separated by `;`): an A/B of two builds
//! CORDON_BENCH_BASELINE=/path/to/old/cordon \
//!   CORDON_BENCH_VARIANTS="baseline cordon exec;cordon exec" \
//!   cargo bench -p cordon-cli --bench exec_startup
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark fails by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Variant {
    name: &'static str,
    what: &'static str,
    command: Command,
    times: Vec<Duration>,
}

fn variant(name: &'static str, what: &'static str, argv: &[String]) -> Variant {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Variant {
        name,
        what,
        command,
        times: Vec::new(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// bubblewrap with the view cordon builds: system directories read-only, the workspace
/// read-write, private /tmp, /var/tmp, /run and home, fresh /proc and /dev, secrets in /etc
/// masked, every namespace, a new session, death with the parent.
fn bwrap_argv(home: &Path, workspace: &Path) -> Vec<String> {
    let mut argv = strings(&[
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
        "--ro-bind-try",
        "/opt",
        "/opt",
    ]);
    for dir in ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"] {
        let path = Path::new(dir);
        if let Ok(target) = fs_err::read_link(path) {
            argv.extend(strings(&["--symlink", target.to_str().unwrap(), dir]));
        } else if path.exists() {
            argv.extend(strings(&["--ro-bind", dir, dir]));
        }
    }
    for dir in ["/tmp", "/var/tmp", "/run", home.to_str().unwrap()] {
        argv.extend(strings(&["--tmpfs", dir]));
    }
    argv.extend(strings(&["--proc", "/proc", "--dev", "/dev"]));
    for secret in ["/etc/shadow", "/etc/gshadow", "/etc/sudoers"] {
        if Path::new(secret).exists() {
            argv.extend(strings(&["--ro-bind", "/dev/null", secret]));
        }
    }
    let workspace = workspace.to_str().unwrap();
    argv.extend(strings(&[
        "--bind", workspace, workspace, "--chdir", workspace, "true",
    ]));
    argv
}

/// `cordon` and the sandbox helper beside it, copied into `dir`, as an install writes them: a
/// binary the linker has just written is served from the page cache in small pieces, and
/// each start of it faults more (on this project's VM about 0.3 ms for `cordon --version`
/// and 1 ms for a launch, gone once the file is read back whole). Every build compared runs
/// from such a copy.
fn staged(cordon: &Path, dir: &Path) -> String {
    fs_err::create_dir_all(dir).unwrap();
    let helper = cordon.with_file_name("cordon-sandbox-helper");
    if helper.exists() {
        fs_err::copy(&helper, dir.join("cordon-sandbox-helper")).unwrap();
    }
    let copy = dir.join("cordon");
    fs_err::copy(cordon, &copy).unwrap();
    copy.to_str().unwrap().to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() {
    let rounds: usize = std::env::var("CORDON_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let cordon = PathBuf::from(env!("CARGO_BIN_EXE_cordon"));
    let scratch = tempfile::tempdir().unwrap();
    let workspace = scratch.path().join("work");
    fs_err::create_dir_all(&workspace).unwrap();
    let config = scratch.path().join("no-audit.toml");
    fs_err::write(&config, "[audit]\nenabled = false\n").unwrap();
    let uncached = scratch.path().join("no-cache.toml");
    fs_err::write(&uncached, "[policy]\ncache = false\n").unwrap();
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap();
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(scratch.path().join("run"))
        .unwrap();
    let cordon_s = staged(&cordon, &scratch.path().join("build"));

    let mut variants = vec![
        variant("true", "the program alone", &strings(&["true"])),
        variant(
            "unshare",
            "`unshare -Urmnpf true`: namespaces only, no view",
            &strings(&["unshare", "-Urmnpf", "true"]),
        ),
        variant(
            "bwrap",
            "bubblewrap, comparable view (see the bench source)",
            &bwrap_argv(&home, &workspace),
        ),
        variant(
            "cordon exec",
            "policy decision (compiled policy from the cache), audit log (two durable records), namespaces, view, Landlock, seccomp, cgroup caps, egress proxy, control socket, journal of the workspace",
            &[cordon_s.clone(), "exec".into(), "--".into(), "true".into()],
        ),
        variant(
            "cordon exec --no-journal",
            "as above, the workspace not journaled",
            &[
                cordon_s.clone(),
                "exec".into(),
                "--no-journal".into(),
                "--".into(),
                "true".into(),
            ],
        ),
        variant(
            "cordon exec, policy compiled",
            "as above, the policy compiled at every start (`[policy] cache = false`)",
            &[
                cordon_s.clone(),
                "--config".into(),
                uncached.to_str().unwrap().into(),
                "exec".into(),
                "--".into(),
                "true".into(),
            ],
        ),
        variant(
            "cordon exec, no audit",
            "as above with `[audit] enabled = false`",
            &[
                cordon_s.clone(),
                "--config".into(),
                config.to_str().unwrap().into(),
                "exec".into(),
                "--".into(),
                "true".into(),
            ],
        ),
        variant(
            "cordon exec --dry-run",
            "policy decision and audit record only: no sandbox, nothing run",
            &[
                cordon_s,
                "exec".into(),
                "--dry-run".into(),
                "--".into(),
                "true".into(),
            ],
        ),
    ];
    if let Some(baseline) = std::env::var_os("CORDON_BENCH_BASELINE") {
        let baseline = staged(Path::new(&baseline), &scratch.path().join("baseline"));
        variants.insert(
            3,
            variant(
                "baseline cordon exec",
                "`cordon exec -- true` of the build in CORDON_BENCH_BASELINE",
                &[baseline, "exec".into(), "--".into(), "true".into()],
            ),
        );
    }
    if let Ok(wanted) = std::env::var("CORDON_BENCH_VARIANTS") {
        let wanted: Vec<&str> = wanted.split(';').map(str::trim).collect();
        if let Some(unknown) = wanted
            .iter()
            .find(|name| !variants.iter().any(|v| v.name == **name))
        {
            let known: Vec<&str> = variants.iter().map(|v| v.name).collect();
            panic!("CORDON_BENCH_VARIANTS names `{unknown}`; the variants are: {known:?}");
        }
        variants.retain(|v| wanted.contains(&v.name));
    }
    for v in &mut variants {
        v.command
            .current_dir(&workspace)
            .env("XDG_DATA_HOME", scratch.path().join("data"))
            .env("XDG_CACHE_HOME", scratch.path().join("cache"))
            .env("XDG_RUNTIME_DIR", scratch.path().join("run"))
            .env_remove("RUST_BACKTRACE");
        let out = v.command.output().unwrap();
        assert!(
            out.status.success(),
            "`{}` does not run here: {}",
            v.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("{rounds} rounds of {} variants...", variants.len());
    for round in 0..rounds {
        for v in &mut variants {
            let start = Instant::now();
            let out = v.command.output().unwrap();
            v.times.push(start.elapsed());
            assert!(
                out.status.success(),
                "`{}` failed in round {round} ({}): {}",
                v.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    println!("| variant | what runs | p50 (ms) | p90 (ms) | mean (ms) |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for v in &mut variants {
        v.times.sort();
        let mean = v.times.iter().map(Duration::as_secs_f64).sum::<f64>() / v.times.len() as f64;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} |",
            v.name,
            v.what,
            percentile(&v.times, 0.5),
            percentile(&v.times, 0.9),
            mean * 1000.0
        );
    }
}
