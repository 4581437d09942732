//! `cordon approve`: answer the questions running sessions ask a person, and manage the
//! answers remembered for always.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use cordon_supervisor::consent::{printable, RememberedFile, Scope};
use cordon_supervisor::session;
use cordon_types::{Capability, Decision, Outcome};
use serde_json::{json, Value};

use super::shared::{load_config, PolicyArgs};
use crate::report::{self, CliError, Hint};
use crate::{Cli, Exit};

/// Answer what running sessions ask a person: list, allow or deny, follow
///
/// When the policy asks a person (a host not on the egress allowlist, in the default
/// policy), the request waits in its session for an answer. Without arguments, this lists
/// the requests waiting in all your running sessions; with a request's id it answers it.
/// The answer reaches as far as --for says: once (this request), session (every identical
/// request of the session), minutes (10m), or always (remembered in
/// ~/.config/cordon/remembered.json, which the policy reads as data and no sandbox can
/// write). Every question, answer and remembered answer is in the audit log, with who
/// answered.
///
/// Examples:
///   cordon approve                                   # what is waiting
///   cordon approve 5c1e0a9f3b27 --allow --for session
///   cordon approve 5c1e0a9f3b27 --deny
///   cordon approve 5c1e0a9f3b27 --allow --code 492039   # a request that needs a code (mfa)
///   cordon approve --watch                           # print each new request as it comes
///   cordon approve --list-remembered
///   cordon approve --forget net:paste.example:443
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ApproveCommand {
    #[command(flatten)]
    policy: PolicyArgs,

    /// The request to answer (its id, from the list)
    #[arg(value_name = "REQUEST", conflicts_with_all = ["watch", "list_remembered", "forget"])]
    request: Option<String>,

    /// Allow the request
    #[arg(long, requires = "request", conflicts_with = "deny")]
    allow: bool,

    /// Deny the request
    #[arg(long, requires = "request")]
    deny: bool,

    /// The one-time code your authenticator shows, for a request that needs one (mfa)
    #[arg(long, value_name = "CODE", requires = "allow")]
    code: Option<String>,

    /// How far the answer reaches: once, session, minutes such as 10m, or always (allow only)
    #[arg(
        long = "for",
        value_name = "SCOPE",
        default_value = "once",
        requires = "request"
    )]
    scope: String,

    /// Keep listing: print each new request as it comes, until interrupted
    #[arg(long)]
    watch: bool,

    /// List the answers remembered for always
    #[arg(long, conflicts_with_all = ["watch", "forget"])]
    list_remembered: bool,

    /// Forget a remembered answer: its key, as --list-remembered shows it (net:HOST:PORT)
    #[arg(long, value_name = "KEY", conflicts_with = "watch")]
    forget: Option<String>,

    /// Print JSON (one object per request with --watch)
    #[arg(long)]
    json: bool,
}

impl ApproveCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        if self.list_remembered {
            return self.list_remembered(cli);
        }
        if let Some(key) = &self.forget {
            return self.forget(cli, key);
        }
        if let Some(id) = &self.request {
            return self.answer(id);
        }
        if self.watch {
            return self.watch();
        }
        let pending = pending_everywhere()?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&pending)?);
        } else if pending.is_empty() {
            note!("no requests are waiting for an answer");
        } else {
            outln!(
                "{:<12}  {:<12}  {:>7}  WHAT",
                "REQUEST",
                "SESSION",
                "EXPIRES"
            );
            for request in &pending {
                print_request(request);
            }
        }
        Ok(Exit::Ok)
    }

    fn answer(&self, id: &str) -> Result<Exit, CliError> {
        if !self.allow && !self.deny {
            return Err(anyhow!("say --allow or --deny").into());
        }
        let scope = Scope::parse(&self.scope).map_err(|why| anyhow!(why))?;
        let sessions = session::list().map_err(|why| anyhow!("cannot list sessions: {why}"))?;
        for info in &sessions {
            let Ok(listed) = session::control_request(&info.id, &json!({ "op": "approvals" }))
            else {
                continue;
            };
            let holds = listed["pending"]
                .as_array()
                .is_some_and(|p| p.iter().any(|r| r["id"] == id));
            if !holds {
                continue;
            }
            let answer = session::control_request(
                &info.id,
                &json!({
                    "op": "answer", "id": id, "allow": self.allow, "scope": scope.text(),
                    "code": self.code,
                }),
            )
            .map_err(|why| anyhow!(why))?;
            if answer["ok"] != true {
                return Err(anyhow!(
                    "session `{}` refused the answer: {}",
                    info.id,
                    answer["error"].as_str().unwrap_or("no reason given")
                )
                .into());
            }
            if self.json {
                outln!("{}", serde_json::to_string_pretty(&answer["answer"])?);
            } else {
                note!(
                    "cordon: {}",
                    answer["answer"]["reason"].as_str().unwrap_or("answered")
                );
            }
            return Ok(Exit::Ok);
        }
        Err(anyhow!("no running session is waiting on request `{id}`"))
            .hint("it may have been answered or timed out; `cordon approve` lists what is waiting")
    }

    fn watch(&self) -> Result<Exit, CliError> {
        let mut seen = BTreeSet::new();
        if !self.json {
            note!("cordon: watching for requests; Ctrl-C to stop");
        }
        loop {
            for request in pending_everywhere()? {
                let id = request["id"].as_str().unwrap_or_default().to_owned();
                if seen.insert(id) {
                    if self.json {
                        outln!("{}", serde_json::to_string(&request)?);
                    } else {
                        print_request(&request);
                    }
                }
            }
            // Watching ends, as `tail -f` does, once the reader of the output is gone.
            if report::output_lost() {
                return Ok(Exit::Ok);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn list_remembered(&self, cli: &Cli) -> Result<Exit, CliError> {
        let file = remembered_file(cli, &self.policy)?;
        let listed = file.list().map_err(|why| anyhow!(why))?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&listed)?);
        } else if listed.is_empty() {
            note!("nothing is remembered (`{}`)", file.path().display());
        } else {
            for entry in &listed {
                outln!(
                    "{}  (by {}, {})",
                    entry.key,
                    entry.details["by"].as_str().unwrap_or("?"),
                    entry.details["at"].as_str().unwrap_or("?")
                );
            }
        }
        Ok(Exit::Ok)
    }

    fn forget(&self, cli: &Cli, key: &str) -> Result<Exit, CliError> {
        let config = load_config(cli, &self.policy)?;
        let file = remembered_file(cli, &self.policy)?;
        let removed = file.forget(key).map_err(|why| anyhow!(why))?;
        if !removed {
            return Err(anyhow!("`{key}` is not remembered"))
                .hint("`cordon approve --list-remembered` lists what is");
        }
        // The change is recorded like the answer that made it.
        let supervisor = cordon_supervisor::Supervisor::start_for(&config, &[])?;
        let capability = Capability::new("consent").map_err(|e| anyhow!(e))?;
        let decision = Decision {
            allow: true,
            reasons: vec![format!("`{key}` forgotten")],
            obligations: Vec::new(),
            grants: None,
        };
        let input = json!({
            "action": "forget",
            "remembered": { "file": file.path(), "key": key, "by": "cordon approve" },
        });
        supervisor
            .pipeline()
            .record_outcome(&capability, input, decision, Outcome::Performed, true)
            .map_err(|e| anyhow!("forgotten, but not recorded: {e}"))?;
        note!("cordon: `{key}` forgotten; the next sessions ask again");
        Ok(Exit::Ok)
    }
}

fn remembered_file(cli: &Cli, policy: &PolicyArgs) -> Result<RememberedFile, CliError> {
    let config = load_config(cli, policy)?;
    config
        .remembered_path()
        .map(RememberedFile::at)
        .ok_or_else(|| anyhow!("no configuration directory: set XDG_CONFIG_HOME or HOME").into())
}

/// The requests waiting in every running session of this user.
fn pending_everywhere() -> Result<Vec<Value>, CliError> {
    let sessions = session::list()
        .map_err(|why| anyhow!("cannot list sessions: {why}"))
        .hint("set XDG_RUNTIME_DIR to a directory of your own, mode 0700")?;
    let mut pending = Vec::new();
    for info in sessions {
        match session::control_request(&info.id, &json!({ "op": "approvals" })) {
            Ok(answer) => {
                if let Some(listed) = answer["pending"].as_array() {
                    pending.extend(listed.iter().cloned());
                }
            }
            Err(why) => tracing::warn!("session {}: {why}", info.id),
        }
    }
    Ok(pending)
}

fn print_request(request: &Value) {
    let text = |key: &str| printable(request[key].as_str().unwrap_or_default());
    outln!(
        "{:<12}  {:<12}  {:>6}s  {}",
        text("id"),
        text("session"),
        request["expires_in_s"].as_u64().unwrap_or_default(),
        text("what")
    );
    if let Some(reasons) = request["why"].as_array() {
        for reason in reasons.iter().filter_map(Value::as_str) {
            outln!("{:<12}  why: {}", "", printable(reason));
        }
    }
    if request["code"] == true {
        outln!("{:<12}  needs a one-time code: --allow --code CODE", "");
    }
}
