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

impl Exit {
    /// The process's exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Error => 2,
            Exit::Code(code) => code,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}
