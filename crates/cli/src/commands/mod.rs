//! One module per subcommand, each an `Args` struct with a `run` method.

mod activation;
mod approve;
mod audit;
mod bundle;
mod doctor;
mod eval;
mod exec;
mod journal;
mod label;
mod mfa;
mod policy;
mod probe;
mod proxy;
mod ps;
mod replay;
mod run;
mod scan;
mod shared;
mod skill;
mod test;

pub use approve::ApproveCommand;
pub use audit::AuditCommand;
pub use doctor::DoctorCommand;
pub use eval::EvalCommand;
pub use exec::{ExecCommand, SandboxHelperCommand};
pub use journal::JournalCommand;
pub use label::LabelCommand;
pub use mfa::MfaCommand;
pub use policy::PolicyCommand;
pub use probe::{LandlockProbeCommand, SeccompProbeCommand};
pub use proxy::ProxyCommand;
pub use ps::{PsCommand, StopCommand};
pub use run::RunCommand;
pub use scan::ScanCommand;
pub use skill::SkillCommand;
pub use test::TestCommand;
