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
    println!("cargo:rerun-if-env-changed=CORDON_PACKED_RELOCATIONS");
    // The probe speaks for this machine's loader only: a build for machines with an older
    // C library (through a sysroot, say) sets CORDON_PACKED_RELOCATIONS=0.
    if std::env::var_os("CORDON_PACKED_RELOCATIONS").is_some_and(|value| value == "0") {
        return;
    }
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
    // As cargo orders them: the configured linker first, so that one in the flags wins.
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        rustc.arg(format!("-Clinker={linker}"));
    }
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        rustc.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
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
    let packed = built && fs_err::read(&program).is_ok_and(|elf| has_packed_relocations(&elf));
    packed
        && Command::new(&program)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

/// Whether a 64-bit little-endian ELF file's dynamic section has a `DT_RELR` entry.
fn has_packed_relocations(elf: &[u8]) -> bool {
    const PT_DYNAMIC: u32 = 2;
    const DT_NULL: u64 = 0;
    const DT_RELR: u64 = 36;
    let u16_at = |at: usize| {
        Some(u16::from_le_bytes(
            elf.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |at: usize| {
        Some(u32::from_le_bytes(
            elf.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |at: usize| {
        Some(u64::from_le_bytes(
            elf.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let found = || -> Option<bool> {
        // ELF64 (class 2), little-endian (data 1).
        if elf.get(..6)? != b"\x7fELF\x02\x01" {
            return Some(false);
        }
        let table = usize::try_from(u64_at(0x20)?).ok()?;
        let size = usize::from(u16_at(0x36)?);
        for index in 0..usize::from(u16_at(0x38)?) {
            let header = table.checked_add(index.checked_mul(size)?)?;
            if u32_at(header)? != PT_DYNAMIC {
                continue;
            }
            // The segment's place in the file (p_offset) and its size there (p_filesz).
            let start = usize::try_from(u64_at(header.checked_add(8)?)?).ok()?;
            let length = usize::try_from(u64_at(header.checked_add(32)?)?).ok()?;
            for entry in (start..start.checked_add(length)?).step_by(16) {
                match u64_at(entry)? {
                    DT_RELR => return Some(true),
                    DT_NULL => return Some(false),
                    _ => {}
                }
            }
        }
        Some(false)
    };
    found().unwrap_or(false)
}
