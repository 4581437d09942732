//! `cordon mfa`: enroll an authenticator app for `mfa` obligations, show it, remove it.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::anyhow;
use clap::{Args, Subcommand};
use cordon_supervisor::consent::mfa::{self, Enrollment, MfaStore, Refused};
use cordon_types::{Capability, Decision, Outcome};
use serde_json::json;

use super::shared::{load_config, PolicyArgs};
use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// One-time codes for `mfa` obligations: enroll an authenticator app, show it, remove it
///
/// A policy that returns an `mfa` obligation lets the action proceed only once the person
/// types the code their authenticator app shows (TOTP, RFC 6238: six digits, every 30 s),
/// on the terminal cordon holds or with `cordon approve ID --allow --code CODE`. With
/// `max_age_s`, a code accepted that recently is enough. A code is never accepted twice;
/// wrong codes are limited and recorded.
///
/// The secret is kept in ~/.config/cordon/mfa.json (mode 0600), which no sandbox can read.
///
/// Examples:
///   cordon mfa enroll              # scan the QR code, then type the first code
///   cordon mfa status
///   cordon mfa remove
#[derive(Debug, Subcommand)]
#[command(verbatim_doc_comment)]
pub enum MfaCommand {
    /// Make a new secret, show it as a QR code, and keep it once a first code checks
    Enroll(EnrollArgs),
    /// Say whether an authenticator is enrolled, and when a code was last accepted
    Status(StatusArgs),
    /// Forget the enrolled secret (mfa obligations then deny until the next enrolment)
    Remove(StatusArgs),
}

/// `cordon mfa enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    policy: PolicyArgs,

    /// The account name the authenticator shows [default: $USER]
    #[arg(long, value_name = "NAME")]
    account: Option<String>,

    /// Print the secret and the URI as JSON and read the first code from standard input
    /// (for scripts)
    #[arg(long)]
    json: bool,
}

/// `cordon mfa status` and `remove`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl MfaCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        match self {
            MfaCommand::Enroll(args) => enroll(cli, args),
            MfaCommand::Status(args) => status(cli, args),
            MfaCommand::Remove(args) => remove(cli, args),
        }
    }
}

fn store(cli: &Cli, policy: &PolicyArgs) -> Result<MfaStore, CliError> {
    let config = load_config(cli, policy)?;
    config
        .mfa_path()
        .map(MfaStore::at)
        .ok_or_else(|| anyhow!("no configuration directory: set XDG_CONFIG_HOME or HOME").into())
}

/// Records a change of the enrolment in the audit log.
fn record(cli: &Cli, policy: &PolicyArgs, action: &str, what: &str) -> Result<(), CliError> {
    let config = load_config(cli, policy)?;
    let supervisor = cordon_supervisor::Supervisor::start_for(&config, &[])?;
    let capability = Capability::new("consent").map_err(|e| anyhow!(e))?;
    let decision = Decision {
        allow: true,
        reasons: vec![what.to_owned()],
        obligations: Vec::new(),
        grants: None,
    };
    supervisor
        .pipeline()
        .record_outcome(
            &capability,
            json!({ "action": action, "mfa": { "what": what } }),
            decision,
            Outcome::Performed,
            true,
        )
        .map_err(|e| anyhow!("done, but not recorded: {e}").into())
}

fn enroll(cli: &Cli, args: &EnrollArgs) -> Result<Exit, CliError> {
    let store = store(cli, &args.policy)?;
    let account = args
        .account
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cordon".into());
    let enrollment = Enrollment::new(&account).map_err(|why| anyhow!(why))?;
    let uri = enrollment.uri().map_err(|why| anyhow!(why))?;
    if args.json {
        outln!(
            "{}",
            json!({ "account": account, "secret": enrollment.secret(), "uri": uri })
        );
    } else {
        let qr = qrcode::QrCode::new(uri.as_bytes())
            .map_err(|e| anyhow!("cannot draw the QR code: {e}"))?;
        let drawn = qr
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        outln!("{drawn}");
        outln!("Scan this with your authenticator app, or enter the secret by hand:");
        outln!("  secret: {}", enrollment.secret());
        outln!("  uri:    {uri}");
    }
    if store.enrolled() && !args.json {
        note!("cordon: this replaces the authenticator enrolled before");
    }
    let stdin = std::io::stdin();
    for attempt in 1..=3 {
        if !args.json || stdin.is_terminal() {
            note_part!("Type the code it shows now: ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Err(anyhow!("no code typed; nothing enrolled").into());
        }
        match store.confirm(&enrollment, &line, mfa::now()) {
            Ok(()) => {
                note!(
                    "cordon: enrolled `{account}`; the secret is in `{}`",
                    store.path().display()
                );
                record(
                    cli,
                    &args.policy,
                    "mfa_enroll",
                    &format!("enrolled `{account}`"),
                )?;
                return Ok(Exit::Ok);
            }
            Err(Refused::Wrong) if attempt < 3 => note!("cordon: wrong code; try again"),
            Err(refused) => {
                return Err(anyhow!("{refused}; nothing enrolled")).hint(
                    "check the clock of this machine and of the phone; codes change every 30 s",
                )
            }
        }
    }
    Err(anyhow!("three wrong codes; nothing enrolled").into())
}

fn status(cli: &Cli, args: &StatusArgs) -> Result<Exit, CliError> {
    let store = store(cli, &args.policy)?;
    let status = store.status().map_err(|why| anyhow!(why))?;
    if args.json {
        let value = match &status {
            Some((account, enrolled, verified_at)) => json!({
                "enrolled": true, "account": account, "since": enrolled,
                "last_code_accepted": verified_at, "file": store.path(),
            }),
            None => json!({ "enrolled": false, "file": store.path() }),
        };
        outln!("{value}");
        return Ok(Exit::Ok);
    }
    match status {
        Some((account, enrolled, verified_at)) => {
            let ago = mfa::now().saturating_sub(verified_at);
            outln!("enrolled: `{account}` since {enrolled}; a code was last accepted {ago} s ago");
        }
        None => outln!("no authenticator is enrolled (`cordon mfa enroll`)"),
    }
    Ok(Exit::Ok)
}

fn remove(cli: &Cli, args: &StatusArgs) -> Result<Exit, CliError> {
    let store = store(cli, &args.policy)?;
    if !store.remove().map_err(|why| anyhow!(why))? {
        return Err(anyhow!("no authenticator is enrolled").into());
    }
    record(
        cli,
        &args.policy,
        "mfa_remove",
        "the enrolled authenticator was removed",
    )?;
    note!("cordon: removed; mfa obligations deny until the next `cordon mfa enroll`");
    Ok(Exit::Ok)
}
