//! How the binaries are linked, where that decides how fast a launch starts.

use std::process::Command;

use super::common::skip;

/// The C library's version on this machine, as `getconf` reports it (`glibc 2.36`).
fn glibc_version() -> Option<(u32, u32)> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Where the loader applies packed relative relocations (glibc 2.36 and newer), `cordon`
/// and its helper carry theirs packed: 73,000 of them otherwise take 1.7 MB that each
/// launch reads before `main`. Where the build's linker cannot pack them (the build says
/// so), the test skips; on this project's machines it must not.
#[test]
fn the_binaries_carry_packed_relocations_where_the_loader_takes_them() {
    match glibc_version() {
        Some(version) if version >= (2, 36) => {}
        Some((major, minor)) => {
            skip(&format!(
                "glibc {major}.{minor} cannot load packed relocations"
            ));
            return;
        }
        None => {
            skip("this machine's C library is not glibc (or `getconf` is missing)");
            return;
        }
    }
    for binary in [
        env!("CARGO_BIN_EXE_cordon"),
        env!("CARGO_BIN_EXE_cordon-sandbox-helper"),
    ] {
        let out = Command::new("readelf")
            .args(["--dynamic", binary])
            .output()
            .expect("readelf (binutils) reads the binaries' dynamic section");
        let dynamic = String::from_utf8_lossy(&out.stdout);
        if !dynamic.contains("(RELR)") {
            skip(&format!(
                "{binary} has no packed relocations (see the build's warning):\n{dynamic}"
            ));
            return;
        }
    }
}
