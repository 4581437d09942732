//! Errors as people read them: `error: ...`, the causes, then a hint.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::Exit;

/// An error with the exit code it ends with and, where one helps, what to do about it.
#[derive(Debug)]
pub struct CliError {
    error: anyhow::Error,
    hint: Option<String>,
    exit: Exit,
}

impl CliError {
    /// The exit code.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// Sets the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the exit code.
    pub fn with_exit(mut self, exit: Exit) -> Self {
        self.exit = exit;
        self
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(error: E) -> Self {
        Self {
            error: error.into(),
            hint: None,
            exit: Exit::Error,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.error)?;
        for cause in self.error.chain().skip(1) {
            write!(f, "\n  Caused by: {cause}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Adds a hint to an error on its way up.
pub trait Hint<T> {
    /// Attaches `hint` to the error, if any.
    fn hint(self, hint: impl Into<String>) -> Result<T, CliError>;
}

impl<T, E: Into<CliError>> Hint<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> Result<T, CliError> {
        self.map_err(|e| {
            let mut err: CliError = e.into();
            err.hint = Some(hint.into());
            err
        })
    }
}

/// Writes one line for the person on standard error, and goes on when it cannot be written
/// (a reader that went away): what a command reports must not turn into a panic, nor change
/// its exit status.
pub fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes part of a line for the person on standard error (a question, a progress line),
/// shown at once; like [`note`], it goes on when it cannot be written.
pub fn note_part(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(text).and_then(|()| err.flush());
}

/// Why the command's output could not be written, once a write to standard output failed.
static OUTPUT_LOST: OnceLock<String> = OnceLock::new();

/// Standard output for a command's output. A write that fails (its reader went away, as
/// `| head` does, or the disk under a redirect is full) is remembered, so that the command
/// ends with an error (see [`output_written`]) and loops that would print forever stop (see
/// [`output_lost`]); the write's error names standard output.
pub struct Output(std::io::StdoutLock<'static>);

/// Standard output, locked, for a command that streams its output.
pub fn output() -> Output {
    Output(std::io::stdout().lock())
}

/// Whether anything was written through [`Output`]: only then is standard output flushed at
/// the end (a command that writes it otherwise, the MCP gateway's relay, may hold its lock).
static OUTPUT_USED: AtomicBool = AtomicBool::new(false);

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        OUTPUT_USED.store(true, Ordering::Relaxed);
        self.0.write(buf).map_err(lost)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(lost)
    }
}

fn lost(err: std::io::Error) -> std::io::Error {
    let _ = OUTPUT_LOST.set(err.to_string());
    std::io::Error::new(err.kind(), output_lost_because(&err))
}

/// What a command says when its output could not be written, and why.
pub fn output_lost_because(why: &dyn std::fmt::Display) -> String {
    format!("cannot write the output to standard output: {why}")
}

/// Writes a command's output to standard output; a write that fails is remembered rather
/// than a panic (see [`Output`]), and the command still finishes what it does.
pub fn out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = output().write_fmt(text);
}

/// Whether a write to standard output has failed, or its reader has gone (a closed pipe,
/// seen before anything more is written): a command that would go on printing (`--watch`)
/// stops.
pub fn output_lost() -> bool {
    use std::os::fd::AsFd;
    if OUTPUT_LOST.get().is_none() && cordon_sys::process::other_end_gone(std::io::stdout().as_fd())
    {
        let _ = OUTPUT_LOST.set("its reader has gone".to_owned());
    }
    OUTPUT_LOST.get().is_some()
}

/// Writes out what standard output still holds.
///
/// # Errors
///
/// When any of the command's output could not be written: what the command printed is
/// incomplete, which a script reading it must learn from the exit status.
pub fn output_written() -> Result<(), CliError> {
    use std::io::Write;
    if OUTPUT_USED.load(Ordering::Relaxed) {
        output().flush()?;
    }
    match OUTPUT_LOST.get() {
        None => Ok(()),
        Some(why) => Err(CliError::from(anyhow::anyhow!(output_lost_because(why)))),
    }
}

/// Prints the error to stderr.
pub fn print_error(err: &CliError) {
    note(format_args!("{err}"));
}
