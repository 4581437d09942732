//! Links `cordon` and its helper with packed relative relocations (`DT_RELR`) where this
//! machine's linker makes them and its C library's loader applies them.
//!
//! `cordon` is a large position-independent executable: before `main`, the loader reads and
//! applies about 73,000 relative relocations, 1.7 MB of `.rela.dyn` that each launch maps
//! and unmaps again. Packed, they take about 40 kB. A loader older than glibc 2.36
//! refuses such a binary, so the build tries a small program first: linked with the flag
//! and run, it must start; otherwise the binaries are linked as before.

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
            "cargo:warning=linking without packed relocations (the linker or the C library's loader lacks them): `cordon` starts a little slower"
        );
    }
}

/// Whether a program linked with [`FLAG`] by rustc's linker driver (the one configured for
/// this target, else `cc`, as rustc has it) links without a word and then runs.
fn packed_relocations_work(out: &Path) -> bool {
    let source = out.join("relr-probe.c");
    let program = out.join("relr-probe");
    // A pointer in writable data: the program needs a relative relocation to run.
    let text = "static int x; int *p = &x; int main(void) { return *p; }\n";
    if fs_err::write(&source, text).is_err() {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(linker)
        .args(["-pie", "-fPIE", FLAG, "-o"])
        .arg(&program)
        .arg(&source)
        .stdin(Stdio::null())
        .output();
    // GNU ld only warns about a `-z` option it does not know.
    let linked = linked.is_ok_and(|out| out.status.success() && out.stderr.is_empty());
    linked
        && Command::new(&program)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}
