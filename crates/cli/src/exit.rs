//! Exit codes, a documented contract (see the crate docs).

use std::process::ExitCode;

/// How `cordon` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: denied, tests failed, or a policy does not check.
    Failed,
    /// 2: usage or runtime error.
    Error,
    /// `cordon exec`: the program's own status, or 125 when cordon refused or could not
    /// set up the sandbox (126 and 127 as in shells).
    Code(u8),
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failed => ExitCode::from(1),
            Exit::Error => ExitCode::from(2),
            Exit::Code(code) => ExitCode::from(code),
        }
    }
}
