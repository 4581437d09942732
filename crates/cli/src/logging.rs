//! Diagnostics to stderr through `tracing`; the audit log is separate and never goes here.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber: `warn` by default, `-v` info, `-vv` debug, `-vvv` trace, `-q`
/// errors only; `RUST_LOG` overrides.
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        (false, _) => LevelFilter::TRACE,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_writer(|| Diagnostics(std::io::stderr()))
        .with_target(false)
        .with_ansi(ansi)
        .without_time();
    // A plain level needs no directive parser (whose regular expressions cost more to
    // compile than many a command takes to run); RUST_LOG gets the full filter.
    let _ = match std::env::var_os("RUST_LOG") {
        Some(_) => builder
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
            )
            .try_init(),
        None => builder.with_max_level(level).try_init(),
    };
}

/// Standard error for diagnostics: a write that fails (a closed pipe, a full disk) is
/// dropped rather than reported, so that no diagnostic can stop the work around it (the
/// audit record that follows a warning).
struct Diagnostics(std::io::Stderr);

impl std::io::Write for Diagnostics {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}
