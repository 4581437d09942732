//! `.signatures.json`: one compact JWS whose payload lists every file of the bundle with its
//! digest, in OPA's format.
//!
//! Verification follows OPA's rules and closes the gaps OPA has had: a configured key makes a
//! signature mandatory whatever else is configured (GHSA-g2pf-6v5v-qcc8); exactly one token; the
//! key is chosen by the configured id, then the header's `kid`, then the payload's `keyid`; the
//! algorithm must fit the key (a header cannot choose a weaker one); every file must be listed
//! and every listed file present; `scope` must equal the configured scope; an `exp` that has
//! passed or an `nbf` still to come refuses the token (OPA ignores both).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::archive::Entry;
use crate::canonical::{file_digest, HashAlgorithm};
use crate::error::{BundleError, Problem, Result};
use crate::keys::{Algorithm, PrivateKey, PublicKey};

/// The signature file's name in a bundle.
pub const NAME: &str = ".signatures.json";

/// The key id `opa build` signs and verifies with unless told otherwise.
pub const DEFAULT_KEY_ID: &str = "default";

/// Keys that may sign a bundle, and what a signature must say.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: Vec<(String, PublicKey)>,
    key_id: Option<String>,
    scope: Option<String>,
}

impl Verifier {
    /// No keys: bundles are read unsigned, and a signed one is still checked for
    /// consistency but trusts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` under `id`.
    #[must_use]
    pub fn with_key(mut self, id: impl Into<String>, key: PublicKey) -> Self {
        self.keys.push((id.into(), key));
        self
    }

    /// Uses the key `id` whatever the token names (as `opa --verification-key-id`).
    #[must_use]
    pub fn with_key_id(mut self, id: impl Into<String>) -> Self {
        self.key_id = Some(id.into());
        self
    }

    /// Requires the token's `scope` to be `scope`.
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Whether a signature is required: when any key is configured.
    pub fn requires_signature(&self) -> bool {
        !self.keys.is_empty()
    }

    fn key(&self, id: Option<&str>) -> Result<(&str, &PublicKey)> {
        let wrong = |why: String| BundleError::file(Problem::WrongKey, NAME, why);
        match id {
            Some(id) => self
                .keys
                .iter()
                .find(|(kid, _)| kid == id)
                .map(|(kid, key)| (kid.as_str(), key))
                .ok_or_else(|| {
                    wrong(format!(
                        "signed with key `{id}`, which is not configured (configured: {})",
                        self.keys
                            .iter()
                            .map(|(kid, _)| format!("`{kid}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
            None => match self.keys.as_slice() {
                [(kid, key)] => Ok((kid.as_str(), key)),
                _ => Err(wrong(
                    "the token names no key id and several keys are configured".into(),
                )),
            },
        }
    }
}

/// Who signed a bundle, as its verified token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// The id of the key that verified it.
    pub key_id: String,
    /// The algorithm.
    pub algorithm: String,
    /// The key's fingerprint ([`PublicKey::fingerprint`]).
    pub fingerprint: String,
    /// `iss`, if the token has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `iat` (seconds since the epoch), if the token has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<i64>,
    /// `exp` (seconds since the epoch), if the token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Signer {
    /// Whether this signature outlasts `other`'s: a later `exp` (none is later than any),
    /// then a later `iat`.
    pub fn fresher_than(&self, other: &Signer) -> bool {
        let expiry = |s: &Signer| s.expires_at.unwrap_or(i64::MAX);
        (expiry(self), self.issued_at.unwrap_or(i64::MIN))
            > (expiry(other), other.issued_at.unwrap_or(i64::MIN))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SignaturesFile {
    #[serde(default)]
    signatures: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    plugin: String,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileInfo {
    name: String,
    hash: String,
    #[serde(default)]
    algorithm: String,
}

#[derive(Debug, Deserialize)]
struct Payload {
    files: Vec<FileInfo>,
    keyid: Option<String>,
    scope: Option<String>,
    iss: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

#[derive(Serialize)]
struct SignedPayload<'a> {
    files: &'a [FileInfo],
    iat: i64,
    keyid: &'a str,
}

#[derive(Serialize)]
struct SignedHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

fn bad(why: impl Into<String>) -> BundleError {
    BundleError::file(Problem::BadSignature, NAME, why)
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|err| bad(format!("the token's {what} is not base64url: {err}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| bad(format!("the token's {what} is malformed: {err}")))
}

/// What a token claims about its signer, read without verifying it (for `inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claimed {
    /// The header's `alg`.
    pub algorithm: String,
    /// The header's `kid`, else the payload's `keyid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `iat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<i64>,
    /// `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// How many files the token lists.
    pub files: usize,
}

/// The one token of a signatures file, split into its three parts.
fn parts(signatures: &[u8]) -> Result<[String; 3]> {
    let parsed: SignaturesFile = serde_json::from_slice(signatures)
        .map_err(|err| bad(format!("not a signatures file: {err}")))?;
    if !parsed.plugin.is_empty() {
        return Err(BundleError::file(
            Problem::Unsupported,
            NAME,
            format!(
                "names the signature plugin `{}`, which cordon does not have",
                parsed.plugin
            ),
        ));
    }
    let token = match parsed.signatures.as_slice() {
        [] => {
            return Err(BundleError::file(
                Problem::Unsigned,
                NAME,
                "holds no signature",
            ))
        }
        [token] => token,
        _ => return Err(bad("holds several tokens; exactly one is read")),
    };
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [h, p, s] => Ok([(*h).to_owned(), (*p).to_owned(), (*s).to_owned()]),
        _ => Err(bad(format!(
            "the token has {} parts; a compact JWS has 3",
            parts.len()
        ))),
    }
}

/// What the token in `signatures` claims, unverified.
///
/// # Errors
///
/// As the first steps of [`verify`]: the file or token cannot be read.
pub fn claimed(signatures: &[u8]) -> Result<Claimed> {
    let [header_part, payload_part, _] = parts(signatures)?;
    let header: Header = decode_part(&header_part, "header")?;
    let payload: Payload = decode_part(&payload_part, "payload")?;
    Ok(Claimed {
        algorithm: header.alg.unwrap_or_default(),
        key_id: header.kid.or(payload.keyid),
        issuer: payload.iss,
        issued_at: payload.iat,
        expires_at: payload.exp,
        files: payload.files.len(),
    })
}

/// Verifies `signatures` (the bytes of `.signatures.json`) against `files` (every other file
/// of the bundle) with `verifier`, at `now` (seconds since the epoch).
///
/// # Errors
///
/// A [`BundleError`] naming the file and the reason.
pub fn verify(signatures: &[u8], files: &[Entry], verifier: &Verifier, now: i64) -> Result<Signer> {
    let [header_part, payload_part, signature_part] = parts(signatures)?;
    let header: Header = decode_part(&header_part, "header")?;
    let payload: Payload = decode_part(&payload_part, "payload")?;
    if header.crit.is_some() {
        return Err(bad(
            "the token has critical header parameters cordon does not know",
        ));
    }
    let alg_name = header.alg.unwrap_or_default();
    let algorithm = Algorithm::from_name(&alg_name).ok_or_else(|| {
        bad(format!(
            "the token's algorithm `{alg_name}` is not accepted (RS256, PS256, ES256, EdDSA are)"
        ))
    })?;
    let id = verifier
        .key_id
        .as_deref()
        .or(header.kid.as_deref())
        .or(payload.keyid.as_deref());
    let (key_id, key) = verifier.key(id)?;
    if !key.fits(algorithm) {
        return Err(BundleError::file(
            Problem::WrongKey,
            NAME,
            format!(
                "the token says {algorithm}, which the {} for `{key_id}` does not sign",
                key.describe()
            ),
        ));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_part)
        .map_err(|err| bad(format!("the token's signature is not base64url: {err}")))?;
    let signed = format!("{header_part}.{payload_part}");
    if !key.verify(algorithm, signed.as_bytes(), &signature) {
        return Err(BundleError::file(
            Problem::WrongKey,
            NAME,
            format!(
                "the signature does not verify with the {} `{key_id}` ({})",
                key.describe(),
                key.fingerprint()
            ),
        ));
    }
    if let Some(exp) = payload.exp {
        if now >= exp {
            return Err(BundleError::file(
                Problem::Expired,
                NAME,
                format!("the token expired at {exp} (now {now})"),
            ));
        }
    }
    if let Some(nbf) = payload.nbf {
        if now < nbf {
            return Err(BundleError::file(
                Problem::Expired,
                NAME,
                format!("the token is not valid before {nbf} (now {now})"),
            ));
        }
    }
    let want_scope = verifier.scope.as_deref().unwrap_or("");
    let got_scope = payload.scope.as_deref().unwrap_or("");
    if want_scope != got_scope {
        return Err(BundleError::file(
            Problem::WrongKey,
            NAME,
            format!("scope mismatch: the token says `{got_scope}`, `{want_scope}` is required"),
        ));
    }
    check_files(&payload.files, files)?;
    Ok(Signer {
        key_id: key_id.to_owned(),
        algorithm: algorithm.name().to_owned(),
        fingerprint: key.fingerprint(),
        issuer: payload.iss,
        issued_at: payload.iat,
        expires_at: payload.exp,
    })
}

fn check_files(listed: &[FileInfo], files: &[Entry]) -> Result<()> {
    let mut by_name: BTreeMap<&str, &FileInfo> = BTreeMap::new();
    for info in listed {
        let name = info.name.strip_prefix('/').unwrap_or(&info.name);
        if by_name.insert(name, info).is_some() {
            return Err(bad(format!("lists `{name}` twice")));
        }
    }
    for file in files {
        let info = by_name.remove(file.name.as_str()).ok_or_else(|| {
            BundleError::file(
                Problem::NotListed,
                &file.name,
                "is not listed in the bundle's signature",
            )
        })?;
        let algorithm = HashAlgorithm::from_name(&info.algorithm)
            .map_err(|why| BundleError::file(Problem::BadSignature, &file.name, why))?;
        let digest = file_digest(&file.name, &file.bytes, algorithm)
            .map_err(|why| BundleError::file(Problem::Malformed, &file.name, why))?;
        let got = cordon_types::hex(&digest);
        if !info.hash.eq_ignore_ascii_case(&got) {
            return Err(BundleError::file(
                Problem::Tampered,
                &file.name,
                format!("digest mismatch (signed: {}, file: {got})", info.hash),
            ));
        }
    }
    if !by_name.is_empty() {
        let names: Vec<String> = by_name.keys().map(|n| format!("`{n}`")).collect();
        return Err(BundleError::new(
            Problem::Missing,
            format!(
                "{} listed in the signature but not in the bundle",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Signs `files` with `key` under `key_id`, as `opa build --signing-key` does (header `alg`,
/// `kid`, `typ`; payload `files`, `keyid`, and `iat` = `now`), and returns the bytes of
/// `.signatures.json`.
///
/// # Errors
///
/// A [`BundleError`] when a structured file cannot be hashed or signing fails.
pub fn sign(
    files: &[Entry],
    key: &PrivateKey,
    algorithm: Algorithm,
    key_id: &str,
    now: i64,
) -> Result<Vec<u8>> {
    let mut infos = Vec::with_capacity(files.len());
    for file in files {
        let digest = file_digest(&file.name, &file.bytes, HashAlgorithm::Sha256)
            .map_err(|why| BundleError::file(Problem::Malformed, &file.name, why))?;
        infos.push(FileInfo {
            name: file.name.clone(),
            hash: cordon_types::hex(&digest),
            algorithm: HashAlgorithm::Sha256.name().to_owned(),
        });
    }
    let header = encode(&SignedHeader {
        alg: algorithm.name(),
        kid: key_id,
        typ: "JWT",
    })?;
    let payload = encode(&SignedPayload {
        files: &infos,
        iat: now,
        keyid: key_id,
    })?;
    let signed = format!("{header}.{payload}");
    let signature = key
        .sign(algorithm, signed.as_bytes())
        .map_err(|why| BundleError::new(Problem::WrongKey, why))?;
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
    let file = SignaturesFile {
        signatures: vec![token],
        plugin: String::new(),
    };
    // OPA writes it indented by one space.
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    file.serialize(&mut serializer)
        .map_err(|err| BundleError::new(Problem::BadSignature, err.to_string()))?;
    Ok(out)
}

/// `value` as base64url of its JSON.
fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_vec(value)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .map_err(|err| BundleError::new(Problem::BadSignature, err.to_string()))
}
