//! `cordon __seccomp-probe`: the sandbox's self-test, run in a throw-away process.

use clap::Args;

use crate::report::CliError;
use crate::{Cli, Exit};

/// Try each system call the seccomp profile denies and print how each ended, as JSON
/// (`"ok"` or the errno); with `--filtered`, install the profile first
#[derive(Debug, Args)]
pub struct SeccompProbeCommand {
    /// Install cordon's seccomp profile before probing
    #[arg(long)]
    filtered: bool,
}

impl SeccompProbeCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        #[cfg(target_os = "linux")]
        if self.filtered {
            cordon_sandbox::seccomp::apply_to_current_thread()?;
        }
        let results: serde_json::Map<String, serde_json::Value> =
            cordon_sys::probe_denied_syscalls()
                .into_iter()
                .map(|(name, result)| {
                    let value = match result {
                        Ok(()) => serde_json::Value::from("ok"),
                        Err(errno) => serde_json::Value::from(errno),
                    };
                    (name.to_owned(), value)
                })
                .collect();
        outln!("{}", serde_json::Value::Object(results));
        Ok(Exit::Ok)
    }
}

/// Confine this process to the grants with Landlock, then try to read and write the given
/// paths and print how each try ended, as JSON (`"ok"` or the errno); without grants, no
/// Landlock rule is applied
#[derive(Debug, Args)]
pub struct LandlockProbeCommand {
    /// Grant read access below this path
    #[arg(long)]
    read: Vec<std::path::PathBuf>,

    /// Grant read and write access below this path
    #[arg(long)]
    write: Vec<std::path::PathBuf>,

    /// Try to read this file
    #[arg(long)]
    try_read: Vec<std::path::PathBuf>,

    /// Try to create this file
    #[arg(long)]
    try_write: Vec<std::path::PathBuf>,
}

impl LandlockProbeCommand {
    /// Runs the command.
    #[expect(
        clippy::disallowed_methods,
        reason = "the probe reports the kernel's errno, which fs_err wraps into a message"
    )]
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let mut results = serde_json::Map::new();
        #[cfg(target_os = "linux")]
        if !(self.read.is_empty() && self.write.is_empty()) {
            let grants = cordon_sandbox::landlock::Rules {
                read: self.read.clone(),
                write: self.write.clone(),
                tcp: None,
            };
            let enforcement = cordon_sandbox::landlock::restrict_current_thread(&grants)?;
            results.insert("enforcement".into(), format!("{enforcement:?}").into());
        }
        let outcome = |r: std::io::Result<()>| match r {
            Ok(()) => serde_json::Value::from("ok"),
            Err(e) => serde_json::Value::from(e.raw_os_error().unwrap_or(-1)),
        };
        for path in &self.try_read {
            let read = std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 16]).map(|_| ()));
            results.insert(format!("read {}", path.display()), outcome(read));
        }
        for path in &self.try_write {
            let write = std::fs::File::create(path).map(|_| ());
            results.insert(format!("write {}", path.display()), outcome(write));
        }
        outln!("{}", serde_json::Value::Object(results));
        Ok(Exit::Ok)
    }
}
