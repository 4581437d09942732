//! Signed, versioned policy bundles in OPA's format.
//!
//! A bundle is a gzip-compressed tar of Rego modules and data documents with a `.manifest`
//! (revision, roots, metadata) and, when signed, a `.signatures.json` holding one JWS that
//! lists every file's digest. A bundle built by `opa build --signing-key` verifies here, and
//! one built by [`Bundle::build`] and [`Bundle::sign`] verifies in OPA (ES256, RS256, PS256;
//! cordon also signs and verifies EdDSA, which OPA's bundle verifier lacks).
//!
//! Trust boundary: a bundle's bytes are untrusted until [`Bundle::verify`] says otherwise. The
//! reader is bounded ([`Limits`]) and refuses, by name, every entry it would not load as it
//! verified it: links, devices, `..`, absolute or duplicate names, a second signature or
//! manifest, delta and Wasm bundles.
//!
//! ```
//! use cordon_bundle::{Bundle, KeyKind, Limits, PrivateKey, Verifier};
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("p.rego"), "package cordon.file\ndecision := {\"allow\": true}\n").unwrap();
//! let key = PrivateKey::generate(KeyKind::P256).unwrap();
//! let bundle = Bundle::build(dir.path(), "1", None).unwrap()
//!     .sign(&key, key.default_algorithm(), "default", 0).unwrap();
//! let bytes = bundle.to_bytes().unwrap();
//!
//! let read = Bundle::from_bytes(&bytes, &Limits::default()).unwrap();
//! let verifier = Verifier::new().with_key("default", key.public());
//! assert!(read.verify(&verifier, 0).unwrap().is_some());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
mod bundle;
pub mod canonical;
mod error;
pub mod fetch;
mod keys;
pub mod manifest;
pub mod signature;
pub mod store;

pub use store::write_atomic;

pub use archive::Limits;
pub use bundle::{read_bounded, Bundle};
pub use error::{BundleError, Problem, Result};
pub use keys::{Algorithm, KeyKind, PrivateKey, PublicKey, MIN_RSA_BITS};
pub use manifest::{compare_revisions, Manifest};
pub use signature::{Signer, Verifier, DEFAULT_KEY_ID};
