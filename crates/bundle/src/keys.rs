//! Signing keys and verification keys, read from and written as PEM, and the JWS algorithms
//! they sign with.
//!
//! Private keys are read as PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
//! (`EC PRIVATE KEY`, after an optional `EC PARAMETERS` block, as `openssl ecparam -genkey`
//! writes them); public keys as SubjectPublicKeyInfo (`PUBLIC KEY`) or PKCS#1
//! (`RSA PUBLIC KEY`). Keys are written as PKCS#8 and SubjectPublicKeyInfo, which OPA reads.

use std::fmt;

use ed25519_dalek::pkcs8::spki::{DecodePublicKey as _, EncodePublicKey as _};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use p256::pkcs8::LineEnding;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::traits::PublicKeyParts as _;
use sha2_11::Sha256;

/// The smallest RSA key accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A JWS algorithm a bundle signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: OPA's default.
    Rs256,
    /// RSASSA-PSS with SHA-256 and a 32-byte salt.
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519. OPA does not verify bundles signed with it; cordon does.
    EdDsa,
}

impl Algorithm {
    /// The algorithm named `name` in a JWS header or on the command line (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            "ES256" => Some(Self::Es256),
            "EDDSA" | "ED25519" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The name in a JWS header.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256 (signs ES256): small, fast, and verified by OPA.
    P256,
    /// Ed25519 (signs EdDSA).
    Ed25519,
    /// RSA of 3072 bits (signs RS256 or PS256).
    Rsa,
}

/// A key that signs bundles.
pub enum PrivateKey {
    /// RSA.
    Rsa(Box<rsa::PrivateKey>),
    /// ECDSA on P-256.
    P256(p256::ecdsa::SigningKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for PrivateKey {
    /// Never shows key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.public().describe())
    }
}

/// A key that verifies bundle signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA.
    Rsa(Box<rsa::PublicKey>),
    /// ECDSA on P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.describe())
    }
}

/// The PEM blocks of a text: (label, the whole block).
fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label_end = block[11..].find("-----").map(|i| i + 11);
        let Some(label_end) = label_end else { break };
        let label = &block[11..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = block.find(&end_marker) else {
            break;
        };
        let end = end + end_marker.len();
        blocks.push((label, &block[..end]));
        rest = &block[end..];
    }
    blocks
}

fn check_rsa_size(bits: usize) -> Result<(), String> {
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA key of {bits} bits is too small ({MIN_RSA_BITS} at least)"
        ));
    }
    Ok(())
}

impl PrivateKey {
    /// Generates a key of `kind` from the system's random source.
    ///
    /// # Errors
    ///
    /// A message when the random source or the RSA generator fails.
    pub fn generate(kind: KeyKind) -> Result<Self, String> {
        use rsa::Generate as _;
        let failed = |err: getrandom::Error| format!("the system's random source failed: {err}");
        let mut rng = getrandom::SysRng;
        Ok(match kind {
            KeyKind::P256 => Self::P256(
                p256::ecdsa::SigningKey::try_generate_from_rng(&mut rng).map_err(failed)?,
            ),
            KeyKind::Ed25519 => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(failed)?;
                Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            KeyKind::Rsa => Self::Rsa(Box::new(
                rsa::PrivateKey::new(&mut getrandom::SysRng, 3072)
                    .map_err(|err| format!("cannot generate an RSA key: {err}"))?,
            )),
        })
    }

    /// Reads a private key from PEM text.
    ///
    /// # Errors
    ///
    /// A message saying what the text holds instead, or why the key is refused.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let blocks = pem_blocks(text);
        for (label, block) in &blocks {
            let key = match *label {
                "PRIVATE KEY" => Self::from_pkcs8(block)?,
                "RSA PRIVATE KEY" => Self::Rsa(Box::new(
                    rsa::PrivateKey::from_pkcs1_pem(block)
                        .map_err(|err| format!("not a PKCS#1 RSA private key: {err}"))?,
                )),
                "EC PRIVATE KEY" => Self::P256(
                    p256::SecretKey::from_sec1_pem(block)
                        .map_err(|err| format!("not a SEC1 P-256 private key: {err}"))?
                        .into(),
                ),
                "EC PARAMETERS" => continue,
                "ENCRYPTED PRIVATE KEY" => {
                    return Err("the key is encrypted; decrypt it first \
                                (`openssl pkcs8 -in KEY -out PLAIN.pem`)"
                        .into())
                }
                "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                    return Err("this is a public key; signing needs the private key".into())
                }
                other => return Err(format!("a PEM `{other}` block is not a private key")),
            };
            if let Self::Rsa(rsa) = &key {
                check_rsa_size(rsa.size() * 8)?;
            }
            return Ok(key);
        }
        Err("no PEM private key found".into())
    }

    fn from_pkcs8(block: &str) -> Result<Self, String> {
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(block) {
            return Ok(Self::P256(key));
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(block) {
            return Ok(Self::Ed25519(key));
        }
        match rsa::PrivateKey::from_pkcs8_pem(block) {
            Ok(key) => Ok(Self::Rsa(Box::new(key))),
            Err(_) => Err("a PKCS#8 key of an unsupported kind \
                           (RSA, ECDSA P-256 and Ed25519 are supported)"
                .into()),
        }
    }

    /// The key as PKCS#8 PEM.
    ///
    /// # Errors
    ///
    /// A message when the key cannot be encoded.
    pub fn to_pem(&self) -> Result<String, String> {
        let encoded = match self {
            Self::Rsa(key) => key.to_pkcs8_pem(LineEnding::LF),
            Self::P256(key) => key.to_pkcs8_pem(LineEnding::LF),
            Self::Ed25519(key) => key.to_pkcs8_pem(LineEnding::LF),
        };
        encoded
            .map(|pem| pem.to_string())
            .map_err(|err| format!("cannot encode the key: {err}"))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        match self {
            Self::Rsa(key) => PublicKey::Rsa(Box::new(key.to_public_key())),
            Self::P256(key) => PublicKey::P256(*key.verifying_key()),
            Self::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
        }
    }

    /// The algorithm this key signs with unless told otherwise.
    pub fn default_algorithm(&self) -> Algorithm {
        self.public().default_algorithm()
    }

    /// Signs `message` with `algorithm`.
    ///
    /// # Errors
    ///
    /// A message when the algorithm does not fit the key, or signing fails.
    pub fn sign(&self, algorithm: Algorithm, message: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |err: rsa::signature::Error| format!("signing failed: {err}");
        match (self, algorithm) {
            (Self::Rsa(key), Algorithm::Rs256) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**key).clone());
                Ok(signer.try_sign(message).map_err(failed)?.to_vec())
            }
            (Self::Rsa(key), Algorithm::Ps256) => {
                let signer = rsa::pss::SigningKey::<Sha256>::new((**key).clone());
                Ok(signer.try_sign(message).map_err(failed)?.to_vec())
            }
            (Self::P256(key), Algorithm::Es256) => {
                let signature: p256::ecdsa::Signature = key.try_sign(message).map_err(failed)?;
                Ok(signature.to_bytes().to_vec())
            }
            (Self::Ed25519(key), Algorithm::EdDsa) => {
                Ok(key.try_sign(message).map_err(failed)?.to_bytes().to_vec())
            }
            (key, algorithm) => Err(format!(
                "a {} cannot sign {algorithm}",
                key.public().describe()
            )),
        }
    }
}

impl PublicKey {
    /// Reads a public key from PEM text.
    ///
    /// # Errors
    ///
    /// A message saying what the text holds instead, or why the key is refused.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        if let Some((label, block)) = pem_blocks(text).into_iter().next() {
            let key = match label {
                "PUBLIC KEY" => Self::from_spki(block)?,
                "RSA PUBLIC KEY" => Self::Rsa(Box::new(
                    rsa::PublicKey::from_pkcs1_pem(block)
                        .map_err(|err| format!("not a PKCS#1 RSA public key: {err}"))?,
                )),
                label if label.ends_with("PRIVATE KEY") => {
                    return Err("this is a private key; give the public key \
                                (`cordon policy keygen` wrote it beside, as KEY.pub)"
                        .into())
                }
                other => return Err(format!("a PEM `{other}` block is not a public key")),
            };
            if let Self::Rsa(rsa) = &key {
                check_rsa_size(rsa.size() * 8)?;
            }
            return Ok(key);
        }
        Err("no PEM public key found".into())
    }

    fn from_spki(block: &str) -> Result<Self, String> {
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(block) {
            return Ok(Self::P256(key));
        }
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(block) {
            return Ok(Self::Ed25519(key));
        }
        match rsa::PublicKey::from_public_key_pem(block) {
            Ok(key) => Ok(Self::Rsa(Box::new(key))),
            Err(_) => Err("a public key of an unsupported kind \
                           (RSA, ECDSA P-256 and Ed25519 are supported)"
                .into()),
        }
    }

    /// The key as SubjectPublicKeyInfo PEM.
    ///
    /// # Errors
    ///
    /// A message when the key cannot be encoded.
    pub fn to_pem(&self) -> Result<String, String> {
        let encoded = match self {
            Self::Rsa(key) => key.to_public_key_pem(LineEnding::LF),
            Self::P256(key) => key.to_public_key_pem(LineEnding::LF),
            Self::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
        };
        encoded.map_err(|err| format!("cannot encode the key: {err}"))
    }

    /// What kind of key this is, for messages: `ECDSA P-256 key`, `RSA 3072-bit key`.
    pub fn describe(&self) -> String {
        match self {
            Self::Rsa(key) => format!("RSA {}-bit key", key.size() * 8),
            Self::P256(_) => "ECDSA P-256 key".into(),
            Self::Ed25519(_) => "Ed25519 key".into(),
        }
    }

    /// The algorithm this key verifies unless the signature names another it can verify.
    pub fn default_algorithm(&self) -> Algorithm {
        match self {
            Self::Rsa(_) => Algorithm::Rs256,
            Self::P256(_) => Algorithm::Es256,
            Self::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    /// Whether this key can verify `algorithm` at all.
    pub fn fits(&self, algorithm: Algorithm) -> bool {
        matches!(
            (self, algorithm),
            (Self::Rsa(_), Algorithm::Rs256 | Algorithm::Ps256)
                | (Self::P256(_), Algorithm::Es256)
                | (Self::Ed25519(_), Algorithm::EdDsa)
        )
    }

    /// A short, stable fingerprint: the first 16 hex digits of the SHA-256 of the
    /// SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> String {
        use sha2_11::Digest as _;
        let der = match self {
            Self::Rsa(key) => key.to_public_key_der().map(|d| d.into_vec()),
            Self::P256(key) => key.to_public_key_der().map(|d| d.into_vec()),
            Self::Ed25519(key) => key.to_public_key_der().map(|d| d.into_vec()),
        };
        let digest = Sha256::digest(der.unwrap_or_default());
        cordon_types::hex(&digest[..8])
    }

    /// Whether `signature` is this key's signature of `message` under `algorithm`.
    pub fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match (self, algorithm) {
            (Self::Rsa(key), Algorithm::Rs256) => {
                let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new((**key).clone());
                rsa::pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|sig| verifier.verify(message, &sig).is_ok())
            }
            (Self::Rsa(key), Algorithm::Ps256) => {
                let verifier = rsa::pss::VerifyingKey::<Sha256>::new((**key).clone());
                rsa::pss::Signature::try_from(signature)
                    .is_ok_and(|sig| verifier.verify(message, &sig).is_ok())
            }
            (Self::P256(key), Algorithm::Es256) => {
                // Exactly r||s, 32 bytes each, as JWS and OPA require.
                signature.len() == 64
                    && p256::ecdsa::Signature::from_slice(signature)
                        .is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            (Self::Ed25519(key), Algorithm::EdDsa) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok())
            }
            _ => false,
        }
    }
}
