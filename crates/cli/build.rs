//! Links `cordon` and its helper with packed relative relocations (`DT_RELR`) where this
//! machine's linker makes them and its C library's loader applies them.
//!
//! `cordon` is a large position-independent executable: before `main`, the loader reads and
//! applies about 73,000 relative relocations, 1.7 MB of `.rela.dyn` that each launch maps
//! and unmaps again. Packed, they take about 40 kB. A loader older than glibc 2.36
//! refuses such a binary, so the build tries a small program first, built as the binaries
//! are and with the flag: it must carry packed relocations and start; otherwise the
//! binaries are linked as before.

use std::path::Path;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let (Ok(target), Ok(host), Ok(out)) = (
        std::env::var("TARGET"),
        std::env::var("HOST"),
        std::env::var("OUT_DIR"),
    ) else {
        return;
    };
    // The probe runs here, so it says something only about a binary that runs here too.
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if packed_relocations_work(Path::new(&out)) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    } else {
        println!(
            "cargo:warning=linking without packed relocations: a program built with them by this rustc and linker did not link, carry them or run (a linker or C library too old, or an OUT_DIR that cannot execute): `cordon` starts a little slower"
        );
    }
}

/// Whether an empty Rust program built by this build's rustc, with the flags cargo gives it
/// for this target (a configured linker among them) and [`FLAG`], links, carries packed
/// relocations (a linker that does not know the flag may only warn) and runs.
fn packed_relocations_work(out: &Path) -> bool {
    let source = out.join("relr_probe.rs");
    let program = out.join("relr-probe");
    if fs_err::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let mut rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        rustc.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    }
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        rustc.arg(format!("-Clinker={linker}"));
    }
    let built = rustc
        .args(["--crate-type=bin", "--edition=2021"])
        .arg(format!("-Clink-arg={FLAG}"))
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    // Only a section of that name holds packed relocations.
    let packed =
        built && fs_err::read(&program).is_ok_and(|elf| elf.windows(9).any(|w| w == b".relr.dyn"));
    packed
        && Command::new(&program)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}
