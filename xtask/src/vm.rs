//! `cargo xtask vm-test`: cordon on a real systemd desktop, in a VM.
//!
//! A Debian system built with `mmdebstrap` from the mirror this machine's apt uses (systemd,
//! the user's D-Bus session bus, python3), booted with Debian's kernel under QEMU (TCG;
//! `CORDON_VM_ACCEL=kvm` where nested KVM works), the whole root file system as the
//! initramfs (copied into a tmpfs at boot, `xtask/vm/init`: pivot_root refuses the initial
//! root file system, and cordon's sandbox needs it). The desktop user (uid 1000) has a lingering systemd user session; at boot a
//! system unit runs `xtask/vm/tests.sh` as that user in a service of the user's manager,
//! with the freshly built `cordon` binaries, and prints TAP on the serial console, which
//! this task reads. The root file system and the kernel are kept under `target/vm/`, keyed
//! by what they are built from; the binaries and the tests are packed at every run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUITE: &str = "bookworm";
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "dbus-user-session",
    "libpam-systemd",
    "python3",
    "procps",
    "openssh-client",
];
/// Run inside the new system once its packages are in (`$1` is its root).
const HOOKS: &[&str] = &[
    "chroot \"$1\" useradd --create-home --uid 1000 --shell /bin/bash agent",
    "mkdir -p \"$1/var/lib/systemd/linger\" && touch \"$1/var/lib/systemd/linger/agent\"",
    // The serial console carries the tests' output: no login prompt may take it.
    "ln -sf /dev/null \"$1/etc/systemd/system/serial-getty@ttyS0.service\"",
    "ln -sf /dev/null \"$1/etc/systemd/system/getty@tty1.service\"",
    "ln -sf /dev/null \"$1/etc/systemd/system/systemd-firstboot.service\"",
    "echo cordon-vm > \"$1/etc/hostname\"",
    "rm -rf \"$1\"/usr/share/doc/* \"$1\"/usr/share/man/* \"$1\"/usr/share/locale/* \"$1\"/var/cache/apt/* \"$1\"/var/lib/apt/lists/*",
];
/// The tools the task runs, each with the Debian package that has it.
const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("bsdtar", "libarchive-tools"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("objcopy", "binutils"),
];
/// The longest a boot and its tests may take under TCG.
const BOOT_DEADLINE: Duration = Duration::from_secs(900);

/// The tools missing from `PATH`, as the Debian packages that have them.
pub fn missing_tools() -> Vec<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    TOOLS
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .map(|(_, package)| *package)
        .collect()
}

/// Runs `command` to its end, at most `limit`: a mirror or a tool that hangs is stopped.
fn run_within(what: &str, limit: Duration, command: &mut Command) -> Result<(), String> {
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} failed ({status})")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} took longer than {limit:?}; stopped"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(err) => return Err(format!("cannot wait for {what}: {err}")),
        }
    }
}

/// [`run_within`] with the limit of any step but the build: ten minutes.
fn run(what: &str, command: &mut Command) -> Result<(), String> {
    run_within(what, Duration::from_secs(600), command)
}

fn output(what: &str, command: &mut Command) -> Result<String, String> {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian mirror this machine's apt uses (the first `deb.debian.org`-like source that is
/// not the security archive), else Debian's own.
fn mirror() -> String {
    let mut sources = Vec::new();
    for file in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        if let Ok(text) = fs_err::read_to_string(file) {
            sources.push(text);
        }
    }
    sources
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .find(|word| word.starts_with("http") && !word.contains("security"))
        .unwrap_or("http://deb.debian.org/debian")
        .to_owned()
}

/// The kernel package the `linux-image-amd64` meta-package names now.
fn kernel_package() -> Result<String, String> {
    let depends = output(
        "apt-cache depends linux-image-amd64",
        Command::new("apt-cache").args(["depends", "linux-image-amd64"]),
    )?;
    depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|name| name.starts_with("linux-image-"))
        .map(str::to_owned)
        .ok_or_else(|| {
            "apt knows no linux-image-amd64 (its package lists may be missing: `apt-get update`)"
                .to_owned()
        })
}

/// What the image is built from, as a key that stays the same across toolchains (FNV-1a).
fn image_key(mirror: &str) -> u64 {
    let mut key: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [SUITE, mirror]
        .into_iter()
        .chain(PACKAGES.iter().copied())
        .chain(HOOKS.iter().copied());
    for part in parts {
        for byte in part.bytes().chain([0]) {
            key ^= u64::from(byte);
            key = key.wrapping_mul(0x0100_0000_01b3);
        }
    }
    key
}

/// The root file system and the kernel, built into `dir` unless already there.
fn image(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let rootfs = dir.join("rootfs.cpio");
    let kernel = dir.join("vmlinuz");
    if rootfs.is_file() && kernel.is_file() {
        eprintln!("xtask: vm: using the image in {}", dir.display());
        return Ok((rootfs, kernel));
    }
    let work = dir.with_extension("partial");
    let _ = fs_err::remove_dir_all(&work);
    fs_err::create_dir_all(&work).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let package = kernel_package()?;
    eprintln!("xtask: vm: downloading {package}");
    run(
        "apt-get download",
        Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(&work),
    )?;
    let deb = fs_err::read_dir(&work)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let unpacked = work.join("kernel");
    run(
        "dpkg-deb -x",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
    )?;
    let vmlinuz = fs_err::read_dir(unpacked.join("boot"))
        .map_err(|e| format!("the kernel package has no /boot: {e}"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("the kernel package has no vmlinuz")?;
    fs_err::copy(&vmlinuz, work.join("vmlinuz")).map_err(|e| e.to_string())?;

    let mirror = mirror();
    eprintln!("xtask: vm: building a {SUITE} system from {mirror} (about a minute)");
    let tar = work.join("rootfs.tar");
    let mut mmdebstrap = Command::new("mmdebstrap");
    mmdebstrap
        .args(["--variant=minbase", "--quiet", "--format=tar"])
        .arg(format!("--include={}", PACKAGES.join(",")));
    for hook in HOOKS {
        mmdebstrap.arg(format!("--customize-hook={hook}"));
    }
    mmdebstrap.arg(SUITE).arg(&tar).arg(&mirror);
    run("mmdebstrap", &mut mmdebstrap)?;
    run(
        "bsdtar (tar to cpio)",
        Command::new("bsdtar")
            .args(["--format", "newc", "-cf"])
            .arg(work.join("rootfs.cpio"))
            .arg(format!("@{}", tar.display())),
    )?;
    let _ = fs_err::remove_file(&tar);
    let _ = fs_err::remove_dir_all(&unpacked);
    let _ = fs_err::remove_file(&deb);
    let _ = fs_err::remove_dir_all(dir);
    fs_err::rename(&work, dir).map_err(|e| format!("cannot keep the image: {e}"))?;
    eprintln!(
        "xtask: vm: image built in {:.0?} ({})",
        started.elapsed(),
        dir.display()
    );
    Ok((rootfs, kernel))
}

/// The cordon binaries and the tests, as a cpio archive laid over the image.
fn overlay(root: &Path, vm: &Path) -> Result<PathBuf, String> {
    let staging = vm.join("overlay");
    let _ = fs_err::remove_dir_all(&staging);
    let bin = staging.join("opt/cordon/bin");
    let units = staging.join("etc/systemd/system/multi-user.target.wants");
    for dir in [&bin, &units] {
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    for name in ["cordon", "cordon-sandbox-helper"] {
        let built = root.join("target/debug").join(name);
        run(
            &format!("objcopy --strip-debug {name}"),
            Command::new("objcopy")
                .arg("--strip-debug")
                .arg(&built)
                .arg(bin.join(name)),
        )?;
    }
    let scripts = root.join("xtask/vm");
    for (from, to) in [
        ("tests.sh", "opt/cordon/tests.sh"),
        ("run-tests.sh", "opt/cordon/run-tests.sh"),
        ("init", "opt/cordon/init"),
        (
            "cordon-vm-test.service",
            "etc/systemd/system/cordon-vm-test.service",
        ),
    ] {
        fs_err::copy(scripts.join(from), staging.join(to))
            .map_err(|e| format!("cannot copy {from}: {e}"))?;
    }
    std::os::unix::fs::symlink(
        "../cordon-vm-test.service",
        units.join("cordon-vm-test.service"),
    )
    .map_err(|e| format!("cannot enable the test unit: {e}"))?;
    let archive = vm.join("overlay.cpio");
    run(
        "bsdtar (overlay)",
        Command::new("bsdtar")
            .args(["--format", "newc", "--uid", "0", "--gid", "0", "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(&staging)
            .args(["opt", "etc/systemd/system"]),
    )?;
    Ok(archive)
}

/// What the tests printed, judged.
#[derive(Debug, Default)]
struct Tally {
    begun: bool,
    passed: usize,
    failed: usize,
    planned: Option<usize>,
    end: Option<i32>,
}

impl Tally {
    fn read(&mut self, line: &str) {
        let line = line.trim_end_matches('\r');
        // The markers may follow the escape sequences of a terminal reset.
        if line.contains("CORDON-VM: BEGIN") {
            self.begun = true;
        } else if let Some((_, rc)) = line.split_once("CORDON-VM: END rc=") {
            self.end = Some(rc.trim().parse().unwrap_or(-1));
        } else if line.starts_with("ok ") {
            self.passed += 1;
        } else if line.starts_with("not ok ") {
            self.failed += 1;
        } else if let Some(n) = line.strip_prefix("1..") {
            self.planned = n.trim().parse().ok();
        }
    }

    fn verdict(&self) -> Result<(), String> {
        match (self.begun, self.end, self.planned) {
            (false, _, _) => Err("the tests never started in the VM".into()),
            (true, None, _) => Err("the VM stopped before the tests ended".into()),
            (true, Some(rc), planned) => {
                if self.failed > 0 || rc != 0 || planned != Some(self.passed) || self.passed == 0 {
                    Err(format!(
                        "{} passed, {} failed, {} planned, exit {rc}",
                        self.passed,
                        self.failed,
                        planned.map_or("none".into(), |n| n.to_string())
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

fn boot(vm: &Path, kernel: &Path, initrd: &Path) -> Result<(), String> {
    let accel = std::env::var("CORDON_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
    eprintln!("xtask: vm: booting ({accel}); the tests follow");
    let log_path = vm.join("console.log");
    let mut log = fs_err::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", &accel, "-m", "3072", "-smp", "2"])
        .args([
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 rdinit=/opt/cordon/init panic=-1 quiet loglevel=0 systemd.show_status=false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let stdout = qemu.stdout.take().ok_or("qemu's output is not readable")?;
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Bytes, not UTF-8 lines: whatever the guest prints (a test's binary output), the
        // console is drained to its end.
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches('\n')
                        .to_owned();
                    if lines.send(text).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut ended_at: Option<Instant> = None;
    loop {
        match received.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                tally.read(&line);
                let shown = line.trim_end_matches('\r');
                if tally.begun
                    && (shown.starts_with("ok ")
                        || shown.starts_with("not ok ")
                        || shown.starts_with('#')
                        || shown.starts_with("1..")
                        || shown.contains("CORDON-VM: "))
                {
                    eprintln!("vm: {shown}");
                }
                if tally.end.is_some() && ended_at.is_none() {
                    ended_at = Some(Instant::now());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if matches!(qemu.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let overdue = started.elapsed() > BOOT_DEADLINE
            || ended_at.is_some_and(|t| t.elapsed() > Duration::from_secs(60));
        if overdue {
            eprintln!("xtask: vm: the VM did not power off in time; stopping it");
            let _ = qemu.kill();
            break;
        }
    }
    let _ = qemu.wait();
    eprintln!(
        "xtask: vm: {} passed, {} failed in {:.0?} (console: {})",
        tally.passed,
        tally.failed,
        started.elapsed(),
        log_path.display()
    );
    tally.verdict().map_err(|why| {
        let console = fs_err::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{why}\nthe console's last lines:\n{}", tail.join("\n"))
    })
}

/// Builds what is missing, boots the VM and judges its tests.
///
/// # Errors
///
/// What failed: a tool, the image, the boot, or the tests (with the console's last lines).
pub fn test(root: &Path, cargo: &std::ffi::OsStr) -> Result<(), String> {
    let missing = missing_tools();
    if !missing.is_empty() {
        return Err(format!(
            "the VM test needs Debian's {} (`apt-get install {}`)",
            missing.join(", "),
            missing.join(" ")
        ));
    }
    run_within(
        "cargo build (cordon's binaries)",
        Duration::from_secs(3600),
        Command::new(cargo).args(["build", "--locked", "--quiet", "-p", "cordon-cli", "--bins"]),
    )?;
    let vm = root.join("target/vm");
    let (rootfs, kernel) = image(&vm.join(format!("image-{:016x}", image_key(&mirror()))))?;
    let overlay = overlay(root, &vm)?;
    let initrd = vm.join("initrd.cpio");
    let mut joined = fs_err::File::create(&initrd).map_err(|e| e.to_string())?;
    for part in [&rootfs, &overlay] {
        let mut from = fs_err::File::open(part).map_err(|e| e.to_string())?;
        std::io::copy(&mut from, &mut joined)
            .map_err(|e| format!("cannot write the initramfs: {e}"))?;
    }
    drop(joined);
    boot(&vm, &kernel, &initrd)
}

#[cfg(test)]
mod tests {
    use super::Tally;

    fn tally(lines: &str) -> Result<(), String> {
        let mut tally = Tally::default();
        lines.lines().for_each(|l| tally.read(l));
        tally.verdict()
    }

    #[test]
    fn a_run_passes_only_when_every_planned_test_passed() {
        let good = "noise\n\x1bc\x1b[2JCORDON-VM: BEGIN 6.1\nok 1 - a\nok 2 - b\n1..2\nCORDON-VM: END rc=0\n";
        assert_eq!(tally(good), Ok(()));
        assert!(
            tally("CORDON-VM: BEGIN\nok 1 - a\nnot ok 2 - b\n1..2\nCORDON-VM: END rc=1").is_err()
        );
        assert!(tally("CORDON-VM: BEGIN\nok 1 - a\n1..2\nCORDON-VM: END rc=0").is_err());
        assert!(tally("CORDON-VM: BEGIN\nok 1 - a\n").is_err());
        assert!(tally("kernel panic").is_err());
        assert!(tally("CORDON-VM: BEGIN\n1..0\nCORDON-VM: END rc=0").is_err());
    }
}
