//! What a skill is and what it says it wants: its imports and exports, the capabilities it
//! declares, and who signed it.
//!
//! **Declared capabilities** are a custom section named `cordon-capabilities` in the
//! component (or in a module inside it: a Rust skill writes it with `#[link_section]`), so
//! the digest and the signature cover them:
//!
//! ```json
//! {"dirs": [{"guest": "/notes", "write": false}], "net": ["api.github.com"], "env": ["LANG"]}
//! ```
//!
//! **Signatures** are detached, beside the skill (`SKILL.wasm.sig`): Ed25519 over
//! `cordon-skill-signature/1\n` followed by the component's SHA-256 (lowercase hex), as JSON
//! `{"format": "cordon-skill-signature/1", "sha256": ..., "key": HEX, "signature": HEX}`.
//! A signature is checked against trusted public keys (32 bytes, hex), each with a name; the
//! name of the key that verifies it is who signed the skill.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{Error, SkillFile};

/// The signature format's name, the first line of what is signed.
pub const SIGNATURE_FORMAT: &str = "cordon-skill-signature/1";

/// The custom section holding a skill's declared capabilities.
pub const CAPABILITIES_SECTION: &str = "cordon-capabilities";

/// The largest declaration read.
const MAX_DECLARATION: usize = 64 * 1024;

/// How deep components and modules may nest in a skill, and how many there may be: a
/// skill needs a few; thousands nested make compiling take gigabytes.
const MAX_NESTING: usize = 16;
const MAX_NESTED: usize = 1000;

/// The largest signature file read.
const MAX_SIGNATURE_FILE: u64 = 4096;

/// What a skill declares it wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// Directories, by the name the skill uses.
    #[serde(default)]
    pub dirs: Vec<DeclaredDir>,
    /// Hosts: `HOST` or `HOST:PORT`.
    #[serde(default)]
    pub net: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: Vec<String>,
}

/// A directory a skill declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredDir {
    /// The name the skill opens it by.
    pub guest: String,
    /// Whether it changes what is in it.
    #[serde(default)]
    pub write: bool,
}

/// A skill's identity and interface, read without compiling it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// Its name (the file name without `.wasm`).
    pub name: String,
    /// Its size in bytes.
    pub size: usize,
    /// SHA-256 of the component.
    pub sha256: String,
    /// The interfaces it imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// The capabilities it declares, if it declares any.
    pub declared: Option<Declared>,
}

/// Reads `skill`'s imports, exports and declared capabilities.
///
/// # Errors
///
/// [`Error::Malformed`]: the component cannot be parsed, or its declaration is not what
/// [`Declared`] describes.
pub fn inspect(skill: &SkillFile) -> Result<Inspection, Error> {
    let malformed = |message: String| Error::Malformed {
        path: skill.path().to_path_buf(),
        message,
    };
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut declared = None;
    let mut depth = 0usize;
    let mut nested = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(skill.bytes()) {
        use wasmparser::Payload;
        match payload.map_err(|e| malformed(e.to_string()))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                depth += 1;
                nested += 1;
                if depth > MAX_NESTING || nested > MAX_NESTED {
                    return Err(malformed(format!(
                        "components and modules nest deeper than {MAX_NESTING} or number more \
                         than {MAX_NESTED}"
                    )));
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(
                        import
                            .map_err(|e| malformed(e.to_string()))?
                            .name
                            .name
                            .to_owned(),
                    );
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(
                        export
                            .map_err(|e| malformed(e.to_string()))?
                            .name
                            .name
                            .to_owned(),
                    );
                }
            }
            Payload::CustomSection(section) if section.name() == CAPABILITIES_SECTION => {
                if declared.is_some() {
                    return Err(malformed(format!("two `{CAPABILITIES_SECTION}` sections")));
                }
                if section.data().len() > MAX_DECLARATION {
                    return Err(malformed(format!(
                        "the `{CAPABILITIES_SECTION}` section is larger than {MAX_DECLARATION} bytes"
                    )));
                }
                let parsed: Declared = serde_json::from_slice(section.data())
                    .map_err(|e| malformed(format!("its `{CAPABILITIES_SECTION}` section: {e}")))?;
                let names = parsed
                    .dirs
                    .iter()
                    .map(|d| &d.guest)
                    .chain(&parsed.net)
                    .chain(&parsed.env);
                if names.clone().any(|name| name.chars().any(char::is_control)) {
                    return Err(malformed(format!(
                        "its `{CAPABILITIES_SECTION}` section names something with control characters"
                    )));
                }
                declared = Some(parsed);
            }
            _ => {}
        }
    }
    Ok(Inspection {
        path: skill.path().to_path_buf(),
        name: skill.name().to_owned(),
        size: skill.bytes().len(),
        sha256: skill.sha256().to_owned(),
        imports,
        exports,
        declared,
    })
}

/// Checks that `skill`'s structure is one cordon compiles (nesting bounded), without
/// compiling it.
///
/// # Errors
///
/// [`Error::Malformed`].
pub fn check_structure(skill: &SkillFile) -> Result<(), Error> {
    inspect(skill).map(|_| ())
}

/// What `new` asks for beyond `old`: imports, and declared directories (a directory
/// declared writable that was read-only counts), hosts and variables; one line each.
pub fn asks_beyond(old: &Inspection, new: &Inspection) -> Vec<String> {
    let mut more = Vec::new();
    let versionless = |name: &str| name.split('@').next().unwrap_or(name).to_owned();
    let old_imports: BTreeSet<String> = old.imports.iter().map(|i| versionless(i)).collect();
    for import in &new.imports {
        if !old_imports.contains(&versionless(import)) {
            more.push(format!("imports {import}"));
        }
    }
    let empty = Declared::default();
    let (was, now) = (
        old.declared.as_ref().unwrap_or(&empty),
        new.declared.as_ref().unwrap_or(&empty),
    );
    for dir in &now.dirs {
        match was.dirs.iter().find(|d| d.guest == dir.guest) {
            None if dir.write => {
                more.push(format!("declares directory {} (read and write)", dir.guest))
            }
            None => more.push(format!("declares directory {} (read)", dir.guest)),
            Some(before) if dir.write && !before.write => {
                more.push(format!(
                    "declares directory {} writable (was read-only)",
                    dir.guest
                ));
            }
            Some(_) => {}
        }
    }
    for host in now.net.iter().filter(|h| !was.net.contains(h)) {
        more.push(format!("declares host {host}"));
    }
    for name in now.env.iter().filter(|n| !was.env.contains(n)) {
        more.push(format!("declares environment variable {name}"));
    }
    more
}

/// A detached signature, as written in `SKILL.wasm.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// [`SIGNATURE_FORMAT`].
    pub format: String,
    /// The SHA-256 of the component signed.
    pub sha256: String,
    /// The signer's public key, hex.
    pub key: String,
    /// The Ed25519 signature, hex.
    pub signature: String,
}

/// Where the signature of the skill at `path` is looked for: `PATH.sig`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn signed_message(sha256: &str) -> Vec<u8> {
    format!("{SIGNATURE_FORMAT}\n{sha256}").into_bytes()
}

/// Signs `skill` with `key`.
pub fn sign(skill: &SkillFile, key: &SigningKey) -> SignatureFile {
    SignatureFile {
        format: SIGNATURE_FORMAT.to_owned(),
        sha256: skill.sha256().to_owned(),
        key: cordon_types::hex(key.verifying_key().as_bytes()),
        signature: cordon_types::hex(&key.sign(&signed_message(skill.sha256())).to_bytes()),
    }
}

/// Who signed `skill`, checking its signature file against `trusted` (name, public key in
/// hex): `Ok(None)` when it has no signature, `Ok(Some(name))` when a trusted key verifies
/// it.
///
/// # Errors
///
/// Why a signature that is there cannot be trusted: unreadable or malformed, for another
/// component (the skill was changed after signing), made by a key not trusted, or not
/// verifying.
pub fn signed_by(
    skill: &SkillFile,
    trusted: &[(String, String)],
) -> Result<Option<String>, String> {
    let path = signature_path(skill.path());
    let text = match read_small(&path, MAX_SIGNATURE_FILE) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("`{}`: {err}", path.display())),
    };
    let shown = path.display();
    let file: SignatureFile = serde_json::from_str(&text)
        .map_err(|e| format!("`{shown}` is not a skill signature: {e}"))?;
    // The file's fields are shown quoted (`{:?}`): it is not trusted yet.
    if file.format != SIGNATURE_FORMAT {
        return Err(format!(
            "`{shown}` is in format {:?}, expected `{SIGNATURE_FORMAT}`",
            file.format
        ));
    }
    if file.sha256 != skill.sha256() {
        return Err(format!(
            "`{shown}` signs the component {:?}, not this one ({}): the skill was changed after it was signed",
            file.sha256,
            skill.sha256()
        ));
    }
    let names: Vec<&String> = trusted
        .iter()
        .filter(|(_, key)| key.eq_ignore_ascii_case(&file.key))
        .map(|(name, _)| name)
        .collect();
    let name = match names.as_slice() {
        [] => {
            return Err(format!(
                "`{shown}` was made with the key {:?}, which is not trusted",
                file.key
            ))
        }
        [name] => *name,
        _ => {
            return Err(format!(
                "the key {:?} is trusted under several names ({names:?}): which one signed is \
                 ambiguous; list it once in the policy's trusted_keys",
                file.key
            ))
        }
    };
    let key = cordon_types::unhex::<32>(&file.key)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| format!("`{shown}`: the key is not an Ed25519 public key"))?;
    let signature = cordon_types::unhex::<64>(&file.signature)
        .map(|bytes| Signature::from_bytes(&bytes))
        .ok_or_else(|| format!("`{shown}`: the signature is not 64 bytes of hex"))?;
    key.verify(&signed_message(skill.sha256()), &signature)
        .map_err(|_| format!("`{shown}` does not verify with the key `{name}`: the signature or the skill was altered"))?;
    Ok(Some(name.clone()))
}

/// Reads a small regular file: never a FIFO or a device (no blocking), at most `limit`
/// bytes.
fn read_small(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(text)
}

/// Reads an Ed25519 signing key: 32 bytes, raw or as 64 hex digits.
///
/// # Errors
///
/// Unreadable, or neither form.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let bytes = fs_err::read(path).map_err(|e| e.to_string())?;
    let secret: Option<[u8; 32]> = bytes.as_slice().try_into().ok().or_else(|| {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| cordon_types::unhex::<32>(text.trim()))
    });
    secret
        .map(|secret| SigningKey::from_bytes(&secret))
        .ok_or_else(|| {
            format!(
                "`{}` is not an Ed25519 key (32 bytes, raw or hex)",
                path.display()
            )
        })
}

/// A new Ed25519 signing key: its secret and its public key, as hexadecimal.
///
/// # Errors
///
/// No randomness.
pub fn new_key() -> Result<(String, String), String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness for the key: {e}"))?;
    let key = SigningKey::from_bytes(&secret);
    Ok((
        cordon_types::hex(&secret),
        cordon_types::hex(key.verifying_key().as_bytes()),
    ))
}
