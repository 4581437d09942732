//! `cordon policy build|keygen|sign|verify|inspect`: policy bundles in OPA's format.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Args;
use cordon_bundle::{
    canonical, Algorithm, Bundle, KeyKind, Limits, PrivateKey, PublicKey, Verifier, DEFAULT_KEY_ID,
};
use cordon_policy::{EngineKind, Policy, PolicyOptions};
use serde_json::json;

use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

pub use cordon_supervisor::bundles::now;

/// Writes `bytes` to `path` atomically, `mode` for a new file
/// ([`cordon_bundle::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    cordon_bundle::write_atomic(path, bytes, mode)
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn read_private_key(path: &Path) -> Result<PrivateKey, CliError> {
    let text = fs_err::read_to_string(path)?;
    PrivateKey::from_pem(&text)
        .map_err(|why| anyhow!("`{}`: {why}", path.display()))
        .hint("`cordon policy keygen -o KEY` writes a signing key")
}

/// Reads a public key file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, CliError> {
    let text = fs_err::read_to_string(path)?;
    PublicKey::from_pem(&text).map_err(|why| anyhow!("`{}`: {why}", path.display()).into())
}

fn algorithm_for(key: &PrivateKey, name: Option<&str>) -> Result<Algorithm, CliError> {
    match name {
        None => Ok(key.default_algorithm()),
        Some(name) => {
            let algorithm = Algorithm::from_name(name)
                .ok_or_else(|| anyhow!("unknown algorithm `{name}`"))
                .hint("one of RS256, PS256 (RSA keys), ES256 (P-256), EdDSA (Ed25519)")?;
            if !key.public().fits(algorithm) {
                return Err(
                    anyhow!("a {} cannot sign {algorithm}", key.public().describe()).into(),
                );
            }
            Ok(algorithm)
        }
    }
}

fn bundle_error(path: &Path, err: cordon_bundle::BundleError) -> CliError {
    CliError::from(anyhow!("`{}`: {err}", path.display())).with_exit(Exit::Failed)
}

/// Build a policy bundle (OPA's format) from a policy directory
///
/// Writes a gzip-compressed tar of every `.rego` file and data document in DIR (a
/// `data.yaml` becomes `data.json`) with a `.manifest` holding the revision and roots.
/// The policy must load, as `cordon policy check` loads it. With `--signing-key` the bundle
/// is signed as `opa build --signing-key` signs (`.signatures.json`, key id `default`).
///
/// Revisions are ordered (runs of digits as numbers): a desktop never activates a
/// revision older than one it has run. The default is the time, `20261129.142501`.
///
/// Examples:
///   cordon policy build ./policy -o policy.tar.gz --revision 42
///   cordon policy build ./policy -o policy.tar.gz --signing-key team.pem --rollout 10
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BuildCommand {
    /// Policy directory
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    /// Bundle to write
    #[arg(short, long, value_name = "BUNDLE")]
    output: PathBuf,

    /// Revision written in the manifest (default: the UTC time, YYYYMMDD.HHMMSS)
    #[arg(long, value_name = "REV")]
    revision: Option<String>,

    /// A path under `data` the bundle owns (repeatable; default: all of `data`)
    #[arg(long = "root", value_name = "PATH")]
    roots: Vec<String>,

    /// Percentage of devices that take this revision (`metadata.cordon.rollout`)
    #[arg(long, value_name = "PERCENT")]
    rollout: Option<f64>,

    /// Sign with this private key (PEM)
    #[arg(long, value_name = "KEY")]
    signing_key: Option<PathBuf>,

    /// Key id written in the signature
    #[arg(long, value_name = "ID", default_value = DEFAULT_KEY_ID)]
    key_id: String,

    /// Signing algorithm (default: the key's: ES256, EdDSA or RS256)
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
}

impl BuildCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let revision = self
            .revision
            .clone()
            .unwrap_or_else(|| chrono::Utc::now().format("%Y%m%d.%H%M%S").to_string());
        let ordered = !revision.is_empty()
            && revision
                .split(['.', '-'])
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if !ordered {
            note!(
                "warning: revision `{revision}` is not made of numbers (like `42` or `2026.11.29.1`): \
                 desktops never take a revision that orders before one they ran, comparing runs \
                 of digits as numbers, so `2.0-rc1` comes after `2.0` and commit hashes order at random"
            );
        }
        let roots = (!self.roots.is_empty()).then(|| self.roots.clone());
        let mut bundle = Bundle::build(&self.dir, &revision, roots)
            .map_err(|err| bundle_error(&self.dir, err))?;
        if let Some(rollout) = self.rollout {
            let mut manifest = bundle.manifest().clone();
            manifest
                .metadata
                .get_or_insert_with(Default::default)
                .insert("cordon".into(), json!({ "rollout": rollout }));
            let entries = bundle.entries().to_vec();
            bundle =
                Bundle::assemble(entries, manifest).map_err(|err| bundle_error(&self.dir, err))?;
        }
        let source = bundle
            .policy_source(&self.output.display().to_string())
            .map_err(|err| bundle_error(&self.dir, err))?;
        let options = PolicyOptions {
            engine: EngineKind::Rvm,
            ..PolicyOptions::default()
        };
        Policy::load(&source, options)
            .map_err(|err| CliError::from(err).with_exit(Exit::Failed))?;
        let mut signed = String::from("unsigned");
        if let Some(key_path) = &self.signing_key {
            let key = read_private_key(key_path)?;
            let algorithm = algorithm_for(&key, self.alg.as_deref())?;
            bundle = bundle
                .sign(&key, algorithm, &self.key_id, now())
                .map_err(|err| bundle_error(&self.output, err))?;
            signed = format!(
                "signed with `{}` ({algorithm}, key id `{}`, {})",
                key_path.display(),
                self.key_id,
                key.public().fingerprint()
            );
        }
        write_atomic(&self.output, &bundle.to_bytes()?, 0o644)?;
        note!(
            "wrote `{}`: revision {revision}, {} files, {signed}",
            self.output.display(),
            bundle.entries().len()
        );
        Ok(Exit::Ok)
    }
}

/// Generate a key pair for signing bundles
///
/// Writes the private key to PATH (PKCS#8 PEM, mode 0600) and the public key to PATH.pub
/// (SubjectPublicKeyInfo PEM), which desktops are configured with (`policy.public_key`)
/// and OPA reads (`opa run --verification-key PATH.pub --signing-alg ES256`).
///
/// Examples:
///   cordon policy keygen -o ~/.config/cordon/team.pem
///   cordon policy keygen -o team.pem --type rsa
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct KeygenCommand {
    /// Private key to write (the public key goes to PATH.pub)
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,

    /// Kind of key: p256 (ES256; OPA verifies it), ed25519 (EdDSA; OPA does not), rsa (3072-bit, RS256/PS256)
    #[arg(long = "type", value_name = "KIND", default_value = "p256", value_parser = ["p256", "ed25519", "rsa"])]
    kind: String,

    /// Overwrite existing files
    #[arg(long)]
    force: bool,
}

impl KeygenCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let public_path = PathBuf::from(format!("{}.pub", self.output.display()));
        if !self.force {
            for path in [&self.output, &public_path] {
                if path.exists() {
                    return Err(anyhow!("refusing to overwrite `{}`", path.display()))
                        .hint("pass `--force` to overwrite it, or choose another path");
                }
            }
        }
        let kind = match self.kind.as_str() {
            "ed25519" => KeyKind::Ed25519,
            "rsa" => KeyKind::Rsa,
            _ => KeyKind::P256,
        };
        let key = PrivateKey::generate(kind).map_err(|why| anyhow!(why))?;
        let private_pem = key.to_pem().map_err(|why| anyhow!(why))?;
        let public = key.public();
        let public_pem = public.to_pem().map_err(|why| anyhow!(why))?;
        if self.force {
            let _ = fs_err::remove_file(&self.output);
        }
        write_atomic(&self.output, private_pem.as_bytes(), 0o600)?;
        // An existing file keeps its mode through the rename; the new one is made 0600.
        fs_err::set_permissions(
            &self.output,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        write_atomic(&public_path, public_pem.as_bytes(), 0o644)?;
        note!(
            "wrote `{}` (private, 0600) and `{}`: {}, signs {}, fingerprint {}",
            self.output.display(),
            public_path.display(),
            public.describe(),
            public.default_algorithm(),
            public.fingerprint()
        );
        Ok(Exit::Ok)
    }
}

/// Sign a bundle (replacing any signature it has)
///
/// Lists every file of the bundle with its SHA-256 in a JWS, as `opa build --signing-key`
/// does, and writes the bundle with `.signatures.json` to NEW (default: in place).
///
/// Examples:
///   cordon policy sign policy.tar.gz --key team.pem
///   cordon policy sign opa-built.tar.gz --key team.pem -o signed.tar.gz
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SignCommand {
    /// Bundle to sign
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,

    /// Private key (PEM)
    #[arg(long, value_name = "KEY")]
    key: PathBuf,

    /// Where to write the signed bundle (default: BUNDLE)
    #[arg(short, long, value_name = "NEW")]
    output: Option<PathBuf>,

    /// Key id written in the signature
    #[arg(long, value_name = "ID", default_value = DEFAULT_KEY_ID)]
    key_id: String,

    /// Signing algorithm (default: the key's: ES256, EdDSA or RS256)
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
}

impl SignCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let bundle = Bundle::read(&self.bundle, &Limits::default())
            .map_err(|err| bundle_error(&self.bundle, err))?;
        let key = read_private_key(&self.key)?;
        let algorithm = algorithm_for(&key, self.alg.as_deref())?;
        let bundle = bundle
            .sign(&key, algorithm, &self.key_id, now())
            .map_err(|err| bundle_error(&self.bundle, err))?;
        let output = self.output.as_ref().unwrap_or(&self.bundle);
        write_atomic(output, &bundle.to_bytes()?, 0o644)?;
        note!(
            "signed `{}`: revision {}, {} files, {algorithm}, key id `{}`, {}",
            output.display(),
            bundle.revision(),
            bundle.entries().len(),
            self.key_id,
            key.public().fingerprint()
        );
        Ok(Exit::Ok)
    }
}

/// What verifies a bundle: the key, its id, the scope.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Public key the bundle must be signed with (PEM)
    #[arg(long, value_name = "KEY")]
    pub pubkey: Option<PathBuf>,

    /// Use this key id whatever the signature names (OPA's `--verification-key-id`)
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,

    /// Scope the signature must carry (OPA's `--scope`)
    #[arg(long, value_name = "SCOPE")]
    scope: Option<String>,
}

impl KeyArgs {
    /// The verifier these flags describe; with no `--pubkey`, one with no key.
    pub fn verifier(&self) -> Result<Verifier, CliError> {
        let mut verifier = Verifier::new();
        if let Some(path) = &self.pubkey {
            let id = self
                .key_id
                .clone()
                .unwrap_or_else(|| DEFAULT_KEY_ID.to_owned());
            verifier = verifier.with_key(id, read_public_key(path)?);
            if self.key_id.is_some() {
                verifier = verifier.with_key_id(self.key_id.clone().unwrap_or_default());
            }
        }
        if let Some(scope) = &self.scope {
            verifier = verifier.with_scope(scope);
        }
        Ok(verifier)
    }
}

/// Verify a bundle's signature and contents
///
/// Checks that the bundle is a safe archive, that its one signature verifies with the key,
/// that it lists every file and every listed file is there with its digest, and that its
/// modules and data stay within the manifest's roots. Exits 0 when it verifies, 1 when it
/// does not (naming the file and the reason).
///
/// Examples:
///   cordon policy verify policy.tar.gz --pubkey team.pem.pub
///   cordon policy verify opa-built.tar.gz --pubkey rsa.pub --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct VerifyCommand {
    /// Bundle to verify
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,

    #[command(flatten)]
    keys: KeyArgs,

    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

impl VerifyCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        if self.keys.pubkey.is_none() {
            return Err(anyhow!("`--pubkey KEY` is required"))
                .hint("`cordon policy inspect BUNDLE` shows a bundle without verifying it");
        }
        let verifier = self.keys.verifier()?;
        let checked = Bundle::read(&self.bundle, &Limits::default()).and_then(|bundle| {
            let signer = bundle.verify(&verifier, now())?;
            bundle.policy_source(&self.bundle.display().to_string())?;
            Ok((bundle, signer))
        });
        match checked {
            Ok((bundle, signer)) => {
                if self.json {
                    let out = json!({
                        "ok": true,
                        "revision": bundle.revision(),
                        "digest": bundle.digest(),
                        "signer": signer,
                    });
                    outln!("{}", serde_json::to_string_pretty(&out)?);
                } else if let Some(signer) = signer {
                    outln!(
                        "ok: `{}` revision {} signed by `{}` ({}, {})",
                        self.bundle.display(),
                        bundle.revision(),
                        signer.key_id,
                        signer.algorithm,
                        signer.fingerprint
                    );
                }
                Ok(Exit::Ok)
            }
            Err(err) => {
                if self.json {
                    let out = json!({
                        "ok": false,
                        "problem": err.problem.as_str(),
                        "file": err.file,
                        "reason": err.reason,
                    });
                    outln!("{}", serde_json::to_string_pretty(&out)?);
                }
                Err(bundle_error(&self.bundle, err))
            }
        }
    }
}

/// Show a bundle: revision, roots, files with digests, signer
///
/// Reads the bundle as activation does (a hostile archive is refused the same way) and
/// shows what it holds. The signer is what the signature claims; it is verified only with
/// `--pubkey`.
///
/// Examples:
///   cordon policy inspect policy.tar.gz
///   cordon policy inspect policy.tar.gz --pubkey team.pem.pub --json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct InspectCommand {
    /// Bundle to show
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,

    #[command(flatten)]
    keys: KeyArgs,

    /// Print as JSON
    #[arg(long)]
    json: bool,
}

impl InspectCommand {
    /// Runs the command.
    pub fn run(&self, _cli: &Cli) -> Result<Exit, CliError> {
        let bundle = Bundle::read(&self.bundle, &Limits::default())
            .map_err(|err| bundle_error(&self.bundle, err))?;
        let manifest = bundle.manifest();
        let claimed = bundle
            .claimed()
            .map_err(|err| bundle_error(&self.bundle, err))?;
        let verified = match &self.keys.pubkey {
            Some(_) => Some(
                bundle
                    .verify(&self.keys.verifier()?, now())
                    .map_err(|err| bundle_error(&self.bundle, err))?,
            ),
            None => None,
        };
        let files: Vec<serde_json::Value> = bundle
            .entries()
            .iter()
            .map(|entry| {
                let digest = canonical::file_digest(
                    &entry.name,
                    &entry.bytes,
                    canonical::HashAlgorithm::Sha256,
                )
                .map(|d| cordon_types::hex(&d))
                .unwrap_or_else(|why| format!("unreadable: {}", cordon_types::printable(&why)));
                json!({"name": entry.name, "size": entry.bytes.len(), "sha256": digest})
            })
            .collect();
        let rollout = manifest.rollout().ok().flatten();
        if self.json {
            let out = json!({
                "revision": manifest.revision,
                "roots": manifest.roots(),
                "rollout": rollout,
                "digest": bundle.digest(),
                "files": files,
                "signature": claimed,
                "verified": verified.as_ref().map(|s| s.is_some()),
                "signer": verified.flatten(),
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(Exit::Ok);
        }
        outln!("revision: {}", manifest.revision);
        outln!(
            "roots:    {}",
            manifest
                .roots()
                .iter()
                .map(|r| if r.is_empty() {
                    "(all of data)".to_owned()
                } else {
                    r.clone()
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(rollout) = rollout {
            outln!("rollout:  {rollout}% of devices");
        }
        outln!("digest:   {}", bundle.digest());
        match (&claimed, &verified) {
            (None, _) => outln!("signer:   none (unsigned)"),
            (Some(_), Some(Some(signer))) => outln!(
                "signer:   `{}` {} {} (verified)",
                signer.key_id,
                signer.algorithm,
                signer.fingerprint
            ),
            (Some(claim), _) => outln!(
                "signer:   `{}` {} (claimed; verify with --pubkey){}",
                cordon_types::printable(claim.key_id.as_deref().unwrap_or("?")),
                cordon_types::printable(&claim.algorithm),
                claim
                    .issued_at
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| format!(", signed {}", t.format("%Y-%m-%d %H:%M:%SZ")))
                    .unwrap_or_default()
            ),
        }
        outln!("files:");
        for file in &files {
            outln!(
                "  {}  {:>8}  {}",
                file["sha256"].as_str().unwrap_or_default(),
                file["size"],
                file["name"].as_str().unwrap_or_default()
            );
        }
        Ok(Exit::Ok)
    }
}
