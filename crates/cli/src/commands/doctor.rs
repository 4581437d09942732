//! `cordon doctor`: which kernel features the native sandbox can use here.

use clap::Args;
use serde::Serialize;

use crate::report::CliError;
use crate::{Cli, Exit};

/// Report the kernel features cordon's native sandbox needs, and what it does without each
///
/// Checks user namespaces (by creating them in a throw-away child), the Landlock ABI
/// version, seccomp filters, and the cgroup controllers that cap processes and memory (v2
/// where delegated, else the v1 pids and memory controllers of hybrid hosts). Exit status 0
/// when everything is there, 1 when something is missing.
///
/// Examples:
///   cordon doctor
///   cordon doctor --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DoctorCommand {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Feature {
    name: &'static str,
    /// `ok`, `partial` or `missing`.
    status: &'static str,
    found: String,
    /// What cordon does about it; empty when all is well.
    consequence: String,
}

impl DoctorCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        // The same probe every launch reads.
        let kernel = cordon_sandbox::kernel::Kernel::probe();
        let features = vec![
            user_namespaces(),
            landlock(&kernel),
            seccomp(&kernel),
            cgroups(&kernel),
        ];
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&features)?);
        } else {
            for f in &features {
                outln!("{:<16} {:<8} {}", f.name, f.status, f.found);
                if !f.consequence.is_empty() {
                    outln!("{:<16} {:<8} -> {}", "", "", f.consequence);
                }
            }
        }
        Ok(if features.iter().all(|f| f.status == "ok") {
            Exit::Ok
        } else {
            Exit::Failed
        })
    }
}

fn user_namespaces() -> Feature {
    let (status, found, consequence) = match cordon_sys::user_namespace_probe_in_child() {
        Ok(Ok(())) => ("ok", "user, mount, pid and network namespaces can be created".to_owned(), String::new()),
        Ok(Err(err)) => (
            "missing",
            format!("creating namespaces was refused: {err}"),
            "cordon exec refuses to run: without namespaces there is no private filesystem view, pid space or network; enable `user.max_user_namespaces` (and `kernel.unprivileged_userns_clone` on Debian)".to_owned(),
        ),
        Err(err) => ("missing", format!("the probe failed: {err}"), "cordon exec refuses to run".to_owned()),
    };
    Feature {
        name: "user namespaces",
        status,
        found,
        consequence,
    }
}

fn landlock(kernel: &cordon_sandbox::kernel::Kernel) -> Feature {
    match (&kernel.landlock_error, kernel.landlock_abi) {
        (None, 0) => Feature {
            name: "landlock",
            status: "missing",
            found: "Landlock is not enabled in this kernel".into(),
            consequence: "cordon exec refuses unless `--allow-degraded`; files are then confined by the mount namespace alone".into(),
        },
        (None, abi) => {
            let mut gaps = Vec::new();
            if abi < 4 {
                gaps.push("TCP connect/bind is not restricted by Landlock (the empty network namespace still applies)");
            }
            if abi < 6 {
                gaps.push("abstract unix sockets and signals are not scoped by Landlock; seccomp filters them instead");
            }
            Feature {
                name: "landlock",
                status: if gaps.is_empty() { "ok" } else { "partial" },
                found: format!("ABI version {abi}{}", landlock_features(abi)),
                consequence: gaps.join("; "),
            }
        }
        (Some(err), _) => Feature {
            name: "landlock",
            status: "missing",
            found: format!("the query failed: {err}"),
            consequence: "cordon exec refuses unless `--allow-degraded`".into(),
        },
    }
}

fn landlock_features(abi: u32) -> String {
    let names = [
        (1, "files"),
        (2, "refer"),
        (3, "truncate"),
        (4, "tcp bind/connect"),
        (5, "device ioctl"),
        (6, "abstract unix socket and signal scoping"),
        (7, "audit logging"),
    ];
    let have: Vec<&str> = names
        .iter()
        .filter(|(v, _)| *v <= abi)
        .map(|(_, n)| *n)
        .collect();
    format!(" ({})", have.join(", "))
}

fn seccomp(kernel: &cordon_sandbox::kernel::Kernel) -> Feature {
    let (status, found, consequence) = match (&kernel.seccomp_error, kernel.seccomp) {
        (None, true) => ("ok", "seccomp filters are supported".to_owned(), String::new()),
        (None, false) => ("missing", "this kernel has no seccomp filters".to_owned(), "cordon exec refuses to run: dangerous system calls (ptrace, mount, bpf, io_uring, TIOCSTI) could not be blocked".to_owned()),
        (Some(err), _) => ("missing", format!("the query failed: {err}"), "cordon exec refuses to run".to_owned()),
    };
    Feature {
        name: "seccomp",
        status,
        found,
        consequence,
    }
}

fn cgroups(kernel: &cordon_sandbox::kernel::Kernel) -> Feature {
    use cordon_sandbox::cgroup::Support;
    let support = &kernel.cgroups;
    let refused = "cordon exec refuses when the policy sets caps (the default policy does), unless run with --allow-degraded";
    let (status, found, consequence) = match (support, support.placement()) {
        (Support::None, _) => (
            "missing",
            support.describe(),
            format!(
                "process and memory caps cannot hold (RLIMIT_NPROC does not bind uid 0): {refused}"
            ),
        ),
        (_, Ok(placement)) => (
            "ok",
            format!("{}: {placement}", support.describe()),
            String::new(),
        ),
        (_, Err(why)) => (
            "missing",
            format!("{}, but {why}", support.describe()),
            refused.to_owned(),
        ),
    };
    Feature {
        name: "cgroups",
        status,
        found,
        consequence,
    }
}
