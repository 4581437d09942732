//! Errors as people read them: `error: ...`, the causes, then a hint.

use std::fmt;

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

/// Prints the error to stderr.
pub fn print_error(err: &CliError) {
    note(format_args!("{err}"));
}
