//! cordon's development tasks, run as `cargo xtask <task>`.
//!
//! - `ci`: everything CI checks, in order: formatting, clippy with warnings denied, the
//!   whole test suite, and the default policy's own Rego tests through `cordon test`.
//! - `skills`: build the example skills (`examples/skills`) for `wasm32-wasip2` into the
//!   workspace's target directory, where the skill tests find them.
//! - `vm-test`: cordon on a systemd desktop as a non-root user, in a VM ([`vm`]); `ci` runs
//!   it last, and skips it only where its tools are missing and `CORDON_REQUIRE_SANDBOX` is
//!   not set.
//! - `fmt`: format the workspace.
//! - `lint`: clippy only.
#![forbid(unsafe_code)]

use std::process::{Command, ExitCode};

mod vm;

const USAGE: &str = "usage: cargo xtask <ci|skills|vm-test|fmt|lint>";

/// Builds the example skills: a workspace of its own, for another target, into this
/// workspace's target directory (one target directory for everything).
const SKILLS: (&str, &[&str]) = (
    "example skills",
    &[
        "build",
        "--release",
        "--locked",
        "--quiet",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
        "examples/skills/Cargo.toml",
        "--target-dir",
        "target",
    ],
);

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let steps: &[(&str, &[&str])] = match task.as_str() {
        "ci" => &[
            ("formatting", &["fmt", "--all", "--check"]),
            (
                "formatting of the example skills",
                &[
                    "fmt",
                    "--all",
                    "--check",
                    "--manifest-path",
                    "examples/skills/Cargo.toml",
                ],
            ),
            (
                "clippy",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
            (
                "docs",
                &["doc", "--workspace", "--no-deps", "--locked", "--quiet"],
            ),
            SKILLS,
            ("tests", &["test", "--workspace", "--locked"]),
            (
                "default policy tests",
                &[
                    "run",
                    "--locked",
                    "--quiet",
                    "-p",
                    "cordon-cli",
                    "--",
                    "test",
                    "policies/default",
                ],
            ),
        ],
        "skills" => &[SKILLS],
        "vm-test" => &[],
        "fmt" => &[("formatting", &["fmt", "--all"])],
        "lint" => &[(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )],
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if steps.iter().any(|(name, _)| *name == SKILLS.0) {
        add_wasm_target();
    }
    for (name, args) in steps {
        eprintln!("xtask: {name}: cargo {}", args.join(" "));
        let mut command = Command::new(&cargo);
        command.args(*args);
        if *name == "docs" {
            // A broken intra-doc link or a malformed doc comment fails the run.
            command.env("RUSTDOCFLAGS", "-D warnings");
        }
        match command.status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("xtask: {name} failed ({status})");
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("xtask: cannot run cargo for {name}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    if task == "ci" || task == "vm-test" {
        let missing = vm::missing_tools();
        let required = task == "vm-test"
            || std::env::var_os("CORDON_REQUIRE_SANDBOX").is_some_and(|v| v == "1");
        if !missing.is_empty() && !required {
            eprintln!(
                "xtask: vm test skipped: it needs Debian's {} (set CORDON_REQUIRE_SANDBOX=1 to make this an error)",
                missing.join(", ")
            );
        } else {
            eprintln!("xtask: vm test: cordon on a systemd desktop, as its user");
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(std::path::Path::new("."));
            if let Err(why) = vm::test(root, &cargo) {
                eprintln!("xtask: vm test failed: {why}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("xtask: {task}: all steps passed");
    ExitCode::SUCCESS
}

/// The example skills are built for `wasm32-wasip2`: where rustup manages the toolchain, the
/// target is added (nothing happens when it is there). Without rustup, the build says what
/// is missing.
fn add_wasm_target() {
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(added, Ok(status) if status.success()) {
        eprintln!("xtask: could not add the wasm32-wasip2 target with rustup; building anyway");
    }
}
