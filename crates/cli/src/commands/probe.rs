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
        println!("{}", serde_json::Value::Object(results));
        Ok(Exit::Ok)
    }
}
