//! `cordon eval`: decide one request.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_supervisor::{AuditFormat, SetupError, Supervisor};
use cordon_types::{json_type, Capability, Request};
use serde_json::{json, Value};

use super::shared::{load_config, PolicyArgs};
use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Decide one request and print the decision as JSON
///
/// The request is a JSON object with `capability`, `action`, `subject`, `resource` and
/// `context`. cordon resolves it first: `~` and relative paths become absolute, symbolic
/// links are followed, `..` is folded, the sensitivity label gets its level number, and the
/// workspace and home directory are added. The policy's `data.cordon.<capability>.decision`
/// then decides, and the decision is recorded in the audit log.
///
/// The decision is printed to stdout: `{"allow": bool, "reasons": [...], "obligations": [...]}`.
/// When it carries a `redact` obligation, `redacted.resource` shows the request's resource
/// as it may leave (and as the audit log holds it): secrets and personal data the policy
/// names replaced by `[REDACTED:kind]`.
/// Exit status is 0 whatever the decision, unless `--fail-on-deny` is given.
///
/// Examples:
///   echo '{"capability":"file","action":"read","resource":{"path":"~/.ssh/id_ed25519"}}' | cordon eval
///   cordon eval --capability net --input request.json --fail-on-deny
///   cordon eval --policy ./my-policy --explain --input request.json
///   cordon eval --raw --capability file --input input.json     # an input document, as is
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct EvalCommand {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Decide under this capability (`data.cordon.<CAP>.decision`), whatever the request says
    #[arg(long, short = 'c', value_name = "CAP")]
    capability: Option<String>,

    /// The request: a JSON file, or `-` for standard input
    #[arg(long, short = 'i', value_name = "FILE", default_value = "-")]
    input: PathBuf,

    /// Exit with status 1 when the decision is a denial
    #[arg(long)]
    fail_on_deny: bool,

    /// Also print which rules, data and policy lines decided
    #[arg(long)]
    explain: bool,

    /// Give the input to the policy unchanged, without resolving it as a request
    #[arg(long)]
    raw: bool,

    /// Workspace root (repeat for several) [default: `workspace.roots` of the config, else the current directory]
    #[arg(long, value_name = "PATH")]
    workspace: Vec<PathBuf>,

    /// Do not record the decision in the audit log
    #[arg(long)]
    no_audit: bool,

    /// Largest request accepted, in bytes [default: `policy.max_input_bytes`, else 1048576]
    #[arg(long, value_name = "BYTES")]
    max_input_bytes: Option<usize>,

    /// The person, when the request names none [default: `subject.user`, else $USER]
    #[arg(long, value_name = "NAME")]
    user: Option<String>,

    /// The device, when the request names none [default: `subject.device`]
    #[arg(long, value_name = "ID")]
    device: Option<String>,

    /// The agent, when the request names none [default: `subject.agent`]
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,

    /// Record decisions in this audit database [default: `audit.path`, else $XDG_DATA_HOME/cordon/audit.db]
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_audit", "audit_jsonl"])]
    audit_db: Option<PathBuf>,

    /// Record decisions in this JSON Lines file instead of the database (not tamper-evident)
    #[arg(long, value_name = "FILE", conflicts_with = "no_audit")]
    audit_jsonl: Option<PathBuf>,
}

impl EvalCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let mut config = load_config(cli, &self.policy)?;
        if !self.workspace.is_empty() {
            config.workspace.roots = self.workspace.clone();
        }
        if let Some(bytes) = self.max_input_bytes {
            config.policy.max_input_bytes = Some(bytes);
        }
        for (key, flag) in [
            (&mut config.subject.user, &self.user),
            (&mut config.subject.device, &self.device),
            (&mut config.subject.agent, &self.agent),
        ] {
            if flag.is_some() {
                key.clone_from(flag);
            }
        }
        if self.no_audit {
            config.audit.enabled = Some(false);
        }
        for (path, format) in [
            (&self.audit_db, AuditFormat::Sqlite),
            (&self.audit_jsonl, AuditFormat::Jsonl),
        ] {
            if let Some(path) = path {
                config.audit.enabled = Some(true);
                config.audit.format = Some(format);
                config.audit.path = Some(path.clone());
            }
        }
        let bytes = read_input(&self.input, config.max_input_bytes())?;
        let source_name = source_name(&self.input);

        let supervisor = match Supervisor::start(&config) {
            Ok(supervisor) => supervisor,
            Err(err) => {
                let hint = match err {
                    SetupError::Audit(_) | SetupError::AuditStore(_) => {
                        "decisions are not made unaudited: make the audit log writable, pass `--audit-db FILE` to use another one, or `--no-audit` for a dry run"
                    }
                    _ => "check the policy with `cordon policy check PATH`, or run without `--policy` to use the built-in one",
                };
                return Err(err).hint(hint);
            }
        };
        let pipeline = supervisor.pipeline();

        let (capability, decided) = if self.raw {
            let input: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{source_name} is not valid JSON"))?;
            if !input.is_object() {
                return Err(anyhow!(
                    "{source_name} must hold a JSON object, not {}",
                    json_type(&input)
                )
                .into());
            }
            let name = self
                .capability
                .clone()
                .or_else(|| input["capability"].as_str().map(str::to_owned))
                .ok_or_else(|| anyhow!("{source_name} names no capability"))
                .hint("add `\"capability\": \"file\"` to the input, or pass `--capability file`")?;
            let capability = Capability::new(&name)?;
            let decided = pipeline.decide_input(&capability, input);
            (capability, decided)
        } else {
            let request: Request = serde_json::from_slice(&bytes)
                .with_context(|| format!("{source_name} is not a valid request"))
                .hint("a request looks like {\"capability\": \"file\", \"action\": \"read\", \"resource\": {\"path\": \"notes.md\"}}")?;
            let name = self
                .capability
                .clone()
                .or_else(|| request.capability.clone())
                .ok_or_else(|| anyhow!("{source_name} names no capability"))
                .hint(
                    "add `\"capability\": \"file\"` to the request, or pass `--capability file`",
                )?;
            let capability = Capability::new(&name)?;
            let decided = pipeline.decide_as(&capability, &request);
            (capability, decided)
        };

        let mut output = serde_json::to_value(&decided.decision)?;
        let redacts = decided
            .decision
            .obligations
            .iter()
            .any(|o| o.kind() == "redact");
        if redacts {
            // What the request holds as it may leave (and as it was recorded).
            output["redacted"] = json!({
                "resource": decided.input.as_ref().map_or(Value::Null, |i| i["resource"].clone()),
            });
        }
        if self.explain {
            let input = decided.input.clone().unwrap_or(Value::Null);
            let explanation = supervisor.policy().explain(&capability, &input);
            let engine = supervisor
                .policy()
                .engine_for(&capability)
                .map(|e| e.as_str());
            output["explain"] = json!({
                "engine": engine,
                "policy": supervisor.policy().origin(),
                "revision": pipeline.revision(),
                "input": input,
                "rules": explanation.rules,
                "data": explanation.data,
                "evaluated": explanation.evaluated,
            });
        }
        outln!("{}", serde_json::to_string_pretty(&output)?);
        Ok(if self.fail_on_deny && !decided.decision.allow {
            Exit::Failed
        } else {
            Exit::Ok
        })
    }
}

fn source_name(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        format!("`{}`", path.display())
    }
}

/// Reads at most `limit` bytes of the request; more is an error rather than a slow decision.
fn read_input(path: &std::path::Path, limit: usize) -> Result<Vec<u8>, CliError> {
    let name = source_name(path);
    let mut bytes = Vec::new();
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(anyhow!("no request given")).hint(
                "pipe a JSON request on standard input, or pass `--input FILE`; see `cordon eval --help`",
            );
        }
        stdin
            .lock()
            .take(take)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name}"))?;
    } else {
        fs_err::File::open(path)
            .and_then(|file| file.take(take).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read request {name}"))?;
    }
    if bytes.len() > limit {
        return Err(anyhow!(
            "{name} is larger than the {limit}-byte limit for one request"
        ))
        .hint(
            "raise `policy.max_input_bytes` in the configuration if such requests are legitimate",
        );
    }
    Ok(bytes)
}
