//! `cordon ps` and `cordon stop`: the running sessions of this user, through their control
//! sockets.

use anyhow::anyhow;
use clap::Args;
use cordon_supervisor::session::{self, SessionInfo};
use serde_json::json;

use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// List this user's running sessions
///
/// Each `cordon exec` is a session with an id; its audit records carry the id
/// (`cordon audit query --session ID`), and its control socket lives in
/// $XDG_RUNTIME_DIR/cordon/ID/ (docs/control-protocol.md). A session whose cordon has ended,
/// even killed, is not listed, and its leftover directory is removed.
///
/// Examples:
///   cordon ps
///   cordon ps --json | jq -r '.[].id'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PsCommand {
    /// Print the sessions as a JSON array
    #[arg(long)]
    json: bool,
}

impl PsCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let sessions = session::list()
            .map_err(|why| anyhow!("cannot list sessions: {why}"))
            .hint("set XDG_RUNTIME_DIR to a directory of your own, mode 0700")?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&sessions)?);
            return Ok(Exit::Ok);
        }
        if sessions.is_empty() {
            note!("no running sessions");
            return Ok(Exit::Ok);
        }
        outln!(
            "{:<12}  {:<8}  {:<8}  {:<20}  {:<7}  {:<24}  COMMAND",
            "ID",
            "STATE",
            "PID",
            "STARTED",
            "VIA",
            "HOSTS"
        );
        for SessionInfo {
            id,
            pid,
            started,
            front_end,
            granted_hosts,
            command,
            workspace,
            state,
            ..
        } in &sessions
        {
            let hosts = if granted_hosts.is_empty() {
                "-".to_owned()
            } else {
                granted_hosts.join(",")
            };
            outln!(
                "{id:<12}  {state:<8}  {pid:<8}  {started:<20}  {front_end:<7}  {hosts:<24}  {} (in {})",
                command.join(" "),
                workspace.display()
            );
        }
        Ok(Exit::Ok)
    }
}

/// Stop a running session: SIGTERM, then the sandbox is killed after a grace period
///
/// The program is asked to end (SIGTERM reaches it through the sandbox's init); if it has
/// not ended when the grace period is over, the whole sandbox is killed. The session's
/// after-run check and audit record are made as after any other end.
///
/// Examples:
///   cordon stop 3f9a0c12b7d4
///   cordon stop --grace 0 3f9a0c12b7d4
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StopCommand {
    /// Seconds the program has to end before the sandbox is killed (at most 60)
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    grace: u64,

    /// The session's id (`cordon ps`)
    id: String,
}

impl StopCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let answer =
            session::control_request(&self.id, &json!({ "op": "stop", "grace_secs": self.grace }))
                .map_err(|why| anyhow!(why))?;
        if answer["ok"] != true {
            return Err(anyhow!(
                "session `{}` refused: {}",
                self.id,
                answer["error"].as_str().unwrap_or("no reason given")
            )
            .into());
        }
        note!("cordon: session {} is stopping", self.id);
        Ok(Exit::Ok)
    }
}
