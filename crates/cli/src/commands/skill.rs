//! `cordon skill`: a skill's identity and interface, what a new version asks for, signatures.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use cordon_skills::identity::{self, Inspection};
use cordon_skills::SkillFile;

use crate::report::{self, CliError};
use crate::{Cli, Exit};

/// Look at a WebAssembly skill before running it: identity, imports, declared capabilities,
/// what a new version asks for beyond the old one, signatures
///
/// A skill's identity is the SHA-256 of its component; a signature beside it
/// (SKILL.wasm.sig, Ed25519) names who vouches for it, and a policy can require one from a
/// key it trusts (data.cordon.settings.skills.trusted_keys, require_signed). A skill may
/// declare what it wants in a `cordon-capabilities` custom section (JSON: dirs, net, env),
/// covered by its digest and signature.
///
/// Examples:
///   cordon skill inspect fetch.wasm
///   cordon skill diff fetch-1.0.wasm fetch-1.1.wasm    # exit 1 when 1.1 asks for more
///   cordon skill keygen -o ~/.config/cordon/skill-signing.key
///   cordon skill sign fetch.wasm --key ~/.config/cordon/skill-signing.key
#[derive(Debug, Subcommand)]
#[command(verbatim_doc_comment)]
pub enum SkillCommand {
    /// Print a skill's name, digest, size, signature, imports, exports and declared capabilities
    Inspect(InspectArgs),
    /// Print what NEW imports or declares beyond OLD; exit 1 when it asks for anything more
    Diff(DiffArgs),
    /// Make an Ed25519 signing key (PATH, mode 0600) and its public key (PATH.pub, hex)
    Keygen(KeygenArgs),
    /// Sign a skill: writes SKILL.sig beside it
    Sign(SignArgs),
}

/// `cordon skill inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The skill (`.wasm`)
    skill: PathBuf,
    /// Trust this public key (NAME=HEX) when checking the signature; repeat for several
    #[arg(long, value_name = "NAME=HEX")]
    trust: Vec<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// `cordon skill diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The version approved before
    old: PathBuf,
    /// The version to review
    new: PathBuf,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// `cordon skill keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (the public key goes to PATH.pub)
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
}

/// `cordon skill sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The skill (`.wasm`)
    skill: PathBuf,
    /// The secret key (from `cordon skill keygen`)
    #[arg(long, value_name = "PATH")]
    key: PathBuf,
}

/// What a skill or its signature file chose (names, declarations) as it may reach a
/// terminal: control and invisible characters shown as `?`.
fn shown(text: &str) -> String {
    cordon_types::printable(text)
}

fn read(path: &Path) -> Result<(SkillFile, Inspection), CliError> {
    let skill = SkillFile::read(path).map_err(|e| CliError::from(anyhow!(e)))?;
    let inspection = identity::inspect(&skill).map_err(|e| CliError::from(anyhow!(e)))?;
    Ok((skill, inspection))
}

impl SkillCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        match self {
            Self::Inspect(args) => args.run(),
            Self::Diff(args) => args.run(),
            Self::Keygen(args) => args.run(),
            Self::Sign(args) => args.run(),
        }
    }
}

impl InspectArgs {
    fn run(&self) -> Result<Exit, CliError> {
        let (skill, inspection) = read(&self.skill)?;
        let trusted: Vec<(String, String)> = self
            .trust
            .iter()
            .map(|entry| {
                entry
                    .split_once('=')
                    .map(|(name, key)| (name.to_owned(), key.to_owned()))
                    .ok_or_else(|| anyhow!("--trust `{entry}`: expected NAME=HEX"))
            })
            .collect::<Result<_, _>>()?;
        let signature = match identity::signed_by(&skill, &trusted) {
            Ok(Some(name)) => format!("signed by `{name}`"),
            Ok(None) => "not signed".to_owned(),
            Err(why) => format!("signature does not hold: {why}"),
        };
        if self.json {
            let mut value = serde_json::to_value(&inspection)?;
            value["signature"] = serde_json::json!(signature);
            outln!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(Exit::Ok);
        }
        let mut out = report::output();
        writeln!(out, "skill      {}", shown(&inspection.name))?;
        writeln!(
            out,
            "file       {}",
            shown(&inspection.path.display().to_string())
        )?;
        writeln!(out, "size       {} bytes", inspection.size)?;
        writeln!(out, "sha256     {}", inspection.sha256)?;
        writeln!(out, "signature  {}", shown(&signature))?;
        writeln!(out, "imports")?;
        for import in &inspection.imports {
            writeln!(out, "  {}", shown(import))?;
        }
        writeln!(out, "exports")?;
        for export in &inspection.exports {
            writeln!(out, "  {}", shown(export))?;
        }
        match &inspection.declared {
            None => writeln!(
                out,
                "declares   nothing (no `{}` section)",
                identity::CAPABILITIES_SECTION
            )?,
            Some(declared) => {
                writeln!(out, "declares")?;
                for dir in &declared.dirs {
                    let mode = if dir.write { "read and write" } else { "read" };
                    writeln!(out, "  directory {} ({mode})", shown(&dir.guest))?;
                }
                for host in &declared.net {
                    writeln!(out, "  host {}", shown(host))?;
                }
                for name in &declared.env {
                    writeln!(out, "  environment variable {}", shown(name))?;
                }
            }
        }
        Ok(Exit::Ok)
    }
}

impl DiffArgs {
    fn run(&self) -> Result<Exit, CliError> {
        let (_, old) = read(&self.old)?;
        let (_, new) = read(&self.new)?;
        let more = identity::asks_beyond(&old, &new);
        if self.json {
            let value = serde_json::json!({
                "old": {"path": old.path, "sha256": old.sha256},
                "new": {"path": new.path, "sha256": new.sha256},
                "asks_for_more": more,
            });
            outln!("{}", serde_json::to_string_pretty(&value)?);
        } else if more.is_empty() {
            outln!(
                "{} asks for nothing beyond {}",
                new.path.display(),
                old.path.display()
            );
        } else {
            outln!(
                "{} asks for more than {}:",
                new.path.display(),
                old.path.display()
            );
            for line in &more {
                outln!("  + {}", shown(line));
            }
        }
        Ok(if more.is_empty() {
            Exit::Ok
        } else {
            Exit::Failed
        })
    }
}

impl KeygenArgs {
    fn run(&self) -> Result<Exit, CliError> {
        use fs_err::os::unix::fs::OpenOptionsExt;
        let (secret, public) = identity::new_key().map_err(|e| anyhow!(e))?;
        let mut options = fs_err::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        options
            .open(&self.output)
            .and_then(|mut file| writeln!(file, "{secret}"))
            .with_context(|| "cannot write the key (an existing key is never replaced)")?;
        let mut public_path = self.output.as_os_str().to_owned();
        public_path.push(".pub");
        options
            .open(&public_path)
            .and_then(|mut file| writeln!(file, "{public}"))
            .with_context(|| "cannot write the public key (an existing file is never replaced)")?;
        outln!("{public}");
        note!(
            "secret key in {} (keep it private); public key in {}: trust it in the policy's \
             data.cordon.settings.skills.trusted_keys",
            self.output.display(),
            PathBuf::from(public_path).display()
        );
        Ok(Exit::Ok)
    }
}

impl SignArgs {
    fn run(&self) -> Result<Exit, CliError> {
        let (skill, _) = read(&self.skill)?;
        let key = identity::read_signing_key(&self.key).map_err(|e| anyhow!(e))?;
        let signature = identity::sign(&skill, &key);
        let path = identity::signature_path(skill.path());
        // Written beside the skill under a new name, then renamed over the old signature:
        // a link planted as SKILL.sig is replaced, never written through.
        let text = serde_json::to_string_pretty(&signature)? + "\n";
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.tmp", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let written = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .and_then(|()| fs_err::rename(&temporary, &path));
        if let Err(err) = written {
            let _ = fs_err::remove_file(&temporary);
            return Err(err.into());
        }
        outln!("{}", path.display());
        Ok(Exit::Ok)
    }
}
