//! A bundle read whole: its files, its manifest, its signature, and the policy it holds.

use std::path::Path;

use cordon_policy::{PolicyFile, PolicySource};
use sha2_11::{Digest, Sha256};

use crate::archive::{self, Entry, Limits};
use crate::canonical;
use crate::error::{BundleError, Problem, Result};
use crate::keys::{Algorithm, PrivateKey};
use crate::manifest::{self, Manifest};
use crate::signature::{self, Signer, Verifier};

/// A bundle: every file but the signature, the signature file if any, and the manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    entries: Vec<Entry>,
    signatures: Option<Vec<u8>>,
    manifest: Manifest,
}

/// What the policy engine loads from a bundle; other files are carried and verified only.
fn loaded(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    name.ends_with(".rego") || matches!(base, "data.json" | "data.yaml" | "data.yml")
}

impl Bundle {
    /// Reads a bundle from its compressed bytes within `limits`.
    ///
    /// # Errors
    ///
    /// A [`BundleError`] naming the entry and the reason: the archive's problems
    /// ([`archive::read`]), a second signature or manifest file, a delta bundle, Wasm or plan
    /// files, a malformed manifest.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self> {
        let mut signatures = None;
        let mut manifest = None;
        let mut entries = Vec::new();
        for entry in archive::read(bytes, limits)? {
            let base = entry.name.rsplit('/').next().unwrap_or(&entry.name);
            if entry.name == signature::NAME {
                signatures = Some(entry.bytes);
                continue;
            }
            if base.ends_with("signatures.json")
                || (base.ends_with(".manifest") && entry.name != manifest::NAME)
            {
                // OPA takes any name ending so as the signature or manifest; cordon reads only
                // the ones at the root, and refuses the ambiguity.
                return Err(BundleError::file(
                    Problem::UnsafePath,
                    &entry.name,
                    "only `/.signatures.json` and `/.manifest` at the root are read; \
                     another file named like them is refused",
                ));
            }
            match base {
                "patch.json" => {
                    return Err(BundleError::file(
                        Problem::Unsupported,
                        &entry.name,
                        "delta bundles are not supported (OPA does not sign them either)",
                    ))
                }
                "policy.wasm" | "plan.json" => {
                    return Err(BundleError::file(
                        Problem::Unsupported,
                        &entry.name,
                        "Wasm and plan bundles are not supported; cordon evaluates Rego",
                    ))
                }
                _ => {}
            }
            // Structured documents are parsed whole (to be hashed canonically) before their
            // digest can be compared: they have tighter limits than other files.
            let limit = match base {
                _ if entry.name == manifest::NAME => archive::MAX_MANIFEST,
                "data.json" => limits.document,
                // YAML costs several times more to parse than JSON.
                "data.yaml" | "data.yml" => limits.document / 4,
                _ => u64::MAX,
            };
            if entry.bytes.len() as u64 > limit {
                return Err(BundleError::file(
                    Problem::TooLarge,
                    &entry.name,
                    format!(
                        "{} bytes, more than the limit of {limit} for this file",
                        entry.bytes.len()
                    ),
                ));
            }
            if entry.name == manifest::NAME {
                manifest = Some(Manifest::parse(&entry.bytes)?);
            }
            entries.push(entry);
        }
        Ok(Self {
            entries,
            signatures,
            manifest: manifest.unwrap_or_default(),
        })
    }

    /// Reads a bundle file within `limits`.
    ///
    /// # Errors
    ///
    /// [`Problem::Unreadable`] when the file cannot be read, [`Problem::TooLarge`] when it
    /// is over the compressed limit, else as [`Bundle::from_bytes`].
    pub fn read(path: &Path, limits: &Limits) -> Result<Self> {
        Self::from_bytes(&read_bounded(path, limits.compressed)?, limits)
    }

    /// Builds an unsigned bundle of the policy in `dir` (every `.rego` file, tests included,
    /// and every data document; a `data.yaml` becomes a `data.json`), with `revision` and
    /// `roots` in its manifest.
    ///
    /// # Errors
    ///
    /// A [`BundleError`] when the directory cannot be read, holds a data document that is
    /// not JSON or YAML, holds two data documents for one path, or lies outside the roots.
    pub fn build(dir: &Path, revision: &str, roots: Option<Vec<String>>) -> Result<Self> {
        let source = PolicySource::from_path(dir)
            .map_err(|err| BundleError::new(Problem::Unreadable, err.to_string()))?;
        let mut entries: Vec<Entry> = Vec::new();
        for file in source.files() {
            let (name, bytes) = match file
                .relative
                .rsplit_once('/')
                .map_or(("", file.relative.as_str()), |(dir, base)| (dir, base))
            {
                (_, "data.yaml" | "data.yml") => {
                    let json = canonical::yaml_to_json(file.text.as_bytes())
                        .map_err(|why| BundleError::file(Problem::Malformed, &file.display, why))?;
                    let dir = file.relative.rsplit_once('/').map(|(d, _)| d);
                    let name = dir.map_or("data.json".to_owned(), |d| format!("{d}/data.json"));
                    (name, json.into_bytes())
                }
                _ => (file.relative.clone(), file.text.clone().into_bytes()),
            };
            if entries.iter().any(|e| e.name == name) {
                return Err(BundleError::file(
                    Problem::Malformed,
                    &file.display,
                    format!("a second data document for `{name}`"),
                ));
            }
            entries.push(Entry { name, bytes });
        }
        let manifest = Manifest {
            revision: revision.to_owned(),
            roots: roots.or_else(|| Some(vec![String::new()])),
            rego_version: Some(1),
            metadata: None,
            wasm: None,
        };
        Self::assemble(entries, manifest)
    }

    /// A bundle of `entries` and `manifest` (written as `.manifest`), checked as a read one is.
    ///
    /// # Errors
    ///
    /// As [`Bundle::build`].
    pub fn assemble(mut entries: Vec<Entry>, manifest: Manifest) -> Result<Self> {
        let text = serde_json::to_vec(&manifest).map_err(|err| {
            BundleError::file(Problem::Malformed, manifest::NAME, err.to_string())
        })?;
        let manifest = Manifest::parse(&text)?;
        entries.retain(|e| e.name != manifest::NAME);
        entries.push(Entry {
            name: manifest::NAME.to_owned(),
            bytes: text,
        });
        let bundle = Self {
            entries,
            signatures: None,
            manifest,
        };
        bundle.policy_source("the new bundle")?;
        Ok(bundle)
    }

    /// The manifest (empty when the bundle has none).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The revision its manifest gives.
    pub fn revision(&self) -> &str {
        &self.manifest.revision
    }

    /// Every file but the signature, in archive order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether the bundle carries a signature file.
    pub fn is_signed(&self) -> bool {
        self.signatures.is_some()
    }

    /// SHA-256 over every file's name and content but the signature's, the manifest taken
    /// without its rollout percentage: two bundles with the same digest hold the same policy,
    /// however they were compressed or signed, and widening a revision's rollout does not
    /// make it another bundle.
    pub fn digest(&self) -> String {
        let mut sorted: Vec<&Entry> = self.entries.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut hasher = Sha256::new();
        for entry in sorted {
            let manifest;
            let bytes = if entry.name == manifest::NAME {
                let mut without = self.manifest.clone();
                if let Some(cordon) = without
                    .metadata
                    .as_mut()
                    .and_then(|m| m.get_mut("cordon"))
                    .and_then(serde_json::Value::as_object_mut)
                {
                    cordon.remove("rollout");
                }
                manifest = serde_json::to_vec(&without).unwrap_or_default();
                manifest.as_slice()
            } else {
                entry.bytes.as_slice()
            };
            for part in [entry.name.as_bytes(), bytes] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        cordon_types::hex(&hasher.finalize())
    }

    /// What the signature claims about its signer, unverified; `None` when unsigned.
    ///
    /// # Errors
    ///
    /// As [`signature::claimed`].
    pub fn claimed(&self) -> Result<Option<signature::Claimed>> {
        self.signatures
            .as_deref()
            .map(signature::claimed)
            .transpose()
    }

    /// Checks the signature with `verifier` at `now` (seconds since the epoch): `None` when
    /// the bundle is unsigned and no key is configured.
    ///
    /// # Errors
    ///
    /// [`Problem::Unsigned`] when a key is configured and there is no signature (or one
    /// with no token), [`Problem::WrongKey`] when the bundle is signed and no key is
    /// configured, else as [`signature::verify`].
    pub fn verify(&self, verifier: &Verifier, now: i64) -> Result<Option<Signer>> {
        match &self.signatures {
            None if verifier.requires_signature() => Err(BundleError::file(
                Problem::Unsigned,
                signature::NAME,
                "is missing: the bundle is unsigned and a signing key is configured, so a \
                 signature is required",
            )),
            None => Ok(None),
            Some(_) if !verifier.requires_signature() => Err(BundleError::file(
                Problem::WrongKey,
                signature::NAME,
                "the bundle is signed and no verification key is configured \
                 (give `--pubkey KEY`, or `policy.public_key` in the configuration)",
            )),
            Some(bytes) => signature::verify(bytes, &self.entries, verifier, now).map(Some),
        }
    }

    /// The same bundle signed with `key` under `key_id` at `now`, any earlier signature
    /// replaced.
    ///
    /// # Errors
    ///
    /// As [`signature::sign`].
    pub fn sign(
        mut self,
        key: &PrivateKey,
        algorithm: Algorithm,
        key_id: &str,
        now: i64,
    ) -> Result<Self> {
        self.signatures = Some(signature::sign(&self.entries, key, algorithm, key_id, now)?);
        Ok(self)
    }

    /// The compressed archive: the signature file first, then every other file in order.
    ///
    /// # Errors
    ///
    /// An I/O error from compression.
    pub fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        let mut entries = Vec::with_capacity(self.entries.len() + 1);
        if let Some(signatures) = &self.signatures {
            entries.push(Entry {
                name: signature::NAME.to_owned(),
                bytes: signatures.clone(),
            });
        }
        entries.extend(self.entries.iter().cloned());
        archive::write(&entries)
    }

    /// The policy the bundle holds, each file shown as `origin:/name`: every Rego module and
    /// data document, checked against the manifest's roots.
    ///
    /// # Errors
    ///
    /// [`Problem::Malformed`] naming the file: not UTF-8, data that is not JSON or YAML, a
    /// module or data outside the roots, no Rego module at all.
    pub fn policy_source(&self, origin: &str) -> Result<PolicySource> {
        self.source(origin, true)
    }

    /// The policy of a bundle checked when it was activated (its digest is the activated
    /// one): as [`Bundle::policy_source`] without parsing every module again for the roots.
    pub(crate) fn source(&self, origin: &str, check_roots: bool) -> Result<PolicySource> {
        let mut files = Vec::new();
        let mut engine = regorus::Engine::new();
        for entry in self.entries.iter().filter(|e| loaded(&e.name)) {
            let malformed = |why: String| BundleError::file(Problem::Malformed, &entry.name, why);
            let text = String::from_utf8(entry.bytes.clone())
                .map_err(|_| malformed("is not UTF-8".into()))?;
            let file = PolicyFile {
                relative: entry.name.clone(),
                display: format!("{origin}:/{}", entry.name),
                text,
            };
            if !check_roots {
                files.push(file);
                continue;
            }
            if file.is_rego() {
                let package = cordon_policy::unwound(|| {
                    engine.add_policy(file.display.clone(), file.text.clone())
                })
                .map_err(&malformed)?
                .map_err(|err| malformed(format!("does not parse: {err}")))?;
                let path = package.strip_prefix("data.").unwrap_or(&package);
                let path: Vec<&str> = path.split('.').collect();
                if !self.manifest.owns(&path) {
                    return Err(malformed(format!(
                        "declares `package {}`, outside the manifest's roots {:?}",
                        path.join("."),
                        self.manifest.roots()
                    )));
                }
            } else {
                let json = if file.relative.ends_with(".json") {
                    file.text.clone()
                } else {
                    canonical::yaml_to_json(file.text.as_bytes()).map_err(malformed)?
                };
                let value: serde_json::Value = serde_json::from_str(&json)
                    .map_err(|err| malformed(format!("is not JSON: {err}")))?;
                let prefix = file.data_prefix();
                if prefix.is_empty() && !value.is_object() {
                    return Err(malformed("is at the root and is not a JSON object".into()));
                }
                self.manifest.check_data(&entry.name, &prefix, &value)?;
            }
            files.push(file);
        }
        if !files.iter().any(PolicyFile::is_rego) {
            return Err(BundleError::new(
                Problem::Malformed,
                "the bundle holds no Rego module",
            ));
        }
        Ok(PolicySource::from_files(origin.to_owned(), files))
    }
}

/// Reads at most `limit` bytes of `path`.
///
/// # Errors
///
/// [`Problem::Unreadable`] or [`Problem::TooLarge`], naming the path.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::io::Read as _;
    let unreadable = |err: std::io::Error| BundleError::new(Problem::Unreadable, err.to_string());
    // Opened without blocking: a FIFO with no writer is refused below, not waited on.
    let file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(BundleError::new(
            Problem::Unreadable,
            format!("`{}` is not a regular file", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(BundleError::new(
            Problem::TooLarge,
            format!(
                "`{}` is larger than the limit of {limit} bytes",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}
