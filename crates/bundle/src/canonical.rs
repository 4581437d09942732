//! The digest OPA signs for each file of a bundle.
//!
//! Structured documents (`data.json`, `data.yaml`, `.manifest`) are hashed in a canonical JSON
//! form, so that re-serialising one does not break its signature; every other file is hashed
//! as its bytes. The canonical form is Go's `encoding/json` output as OPA's hasher writes it:
//! no whitespace, object keys sorted bytewise, numbers exactly as written in the source, and
//! strings escaped as Go does with HTML escaping off (`<`, `>`, `&` and non-ASCII raw; control
//! characters, U+2028 and U+2029 escaped).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::value::RawValue;
use sha2_11::{Digest, Sha256, Sha384, Sha512};

/// How deep a structured document may nest before it is refused.
const MAX_DEPTH: usize = 64;

/// A hash algorithm a signature may name for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// `SHA-256`, what OPA and cordon sign with.
    Sha256,
    /// `SHA-384`.
    Sha384,
    /// `SHA-512`.
    Sha512,
}

impl HashAlgorithm {
    /// The algorithm named `name` in a signature's file list.
    ///
    /// # Errors
    ///
    /// A message naming the algorithm when it is unknown or too weak (OPA also accepts `MD5`
    /// and `SHA-1`; cordon does not, as a collision in either is within reach).
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "SHA-256" => Ok(Self::Sha256),
            "SHA-384" => Ok(Self::Sha384),
            "SHA-512" => Ok(Self::Sha512),
            "" => Err("no hashing algorithm given".into()),
            "MD5" | "SHA-1" | "SHA-224" | "SHA-512-224" => Err(format!(
                "hashing algorithm `{name}` is not accepted (SHA-256, SHA-384 or SHA-512 are)"
            )),
            other => Err(format!("unsupported hashing algorithm `{other}`")),
        }
    }

    /// The name written in a signature.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha384 => Sha384::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// Whether OPA hashes the file `name` in canonical form rather than as bytes.
pub fn is_structured(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    matches!(base, "data.json" | "data.yaml" | ".manifest")
}

/// The digest of the file `name` with content `bytes`, as OPA computes it for a signature.
///
/// # Errors
///
/// A message saying why a structured document could not be read.
pub fn file_digest(name: &str, bytes: &[u8], algorithm: HashAlgorithm) -> Result<Vec<u8>, String> {
    if !is_structured(name) {
        return Ok(algorithm.digest(bytes));
    }
    let canonical = if name.ends_with(".yaml") {
        canonical_json(yaml_to_json(bytes)?.as_bytes())?
    } else {
        canonical_json(bytes)?
    };
    Ok(algorithm.digest(&canonical))
}

/// A YAML document as JSON text (how a `data.yaml` is loaded and hashed).
///
/// # Errors
///
/// A message when the document is not UTF-8 or not YAML.
pub fn yaml_to_json(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    regorus::Value::from_yaml_str(text)
        .and_then(|value| value.to_json_str())
        .map_err(|err| format!("not YAML: {err}"))
}

/// `bytes`, a JSON document, in OPA's canonical form.
///
/// # Errors
///
/// A message when the document is not JSON (or nests deeper than 64 levels).
pub fn canonical_json(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let raw: &RawValue = serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
    let mut out = String::with_capacity(text.len());
    write_value(raw, &mut out, 0)?;
    Ok(out.into_bytes())
}

fn write_value(raw: &RawValue, out: &mut String, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    let text = raw.get();
    let parse_err = |err: serde_json::Error| format!("not JSON: {err}");
    match text.as_bytes().first() {
        Some(b'{') => {
            // Keys in bytewise order, as Go sorts them. A key given twice is refused: Go's
            // decoder keeps the last, another reader may keep the first, and a signed
            // document must mean one thing to every reader.
            let Pairs(pairs) = serde_json::from_str(text).map_err(parse_err)?;
            let mut object: BTreeMap<String, &RawValue> = BTreeMap::new();
            for (key, value) in pairs {
                if object.insert(key.clone(), value).is_some() {
                    return Err(format!("the key `{key}` appears twice in one object"));
                }
            }
            out.push('{');
            for (i, (key, value)) in object.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(value, out, depth + 1)?;
            }
            out.push('}');
        }
        Some(b'[') => {
            let array: Vec<&RawValue> = serde_json::from_str(text).map_err(parse_err)?;
            out.push('[');
            for (i, value) in array.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(value, out, depth + 1)?;
            }
            out.push(']');
        }
        Some(b'"') => {
            let string: String = serde_json::from_str(text).map_err(parse_err)?;
            write_string(&string, out);
        }
        // A number, `true`, `false` or `null`: as written (Go keeps a number's lexeme).
        _ => out.push_str(text),
    }
    Ok(())
}

/// An object's members in the order written, duplicates kept.
struct Pairs<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, &'de RawValue>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A string as Go's encoder writes it with HTML escaping off.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        String::from_utf8(canonical_json(text.as_bytes()).unwrap()).unwrap()
    }

    fn sha256_hex(name: &str, text: &str) -> String {
        cordon_types::hex(&file_digest(name, text.as_bytes(), HashAlgorithm::Sha256).unwrap())
    }

    #[test]
    fn numbers_keep_their_lexeme_and_keys_sort_bytewise() {
        assert_eq!(
            canon(r#"{"b": 1.0, "a": "<tag> & \u2028 \u00e9 \"q\" \b\u0001", "c": [1e2, -0, 10000000000000000000000]}"#),
            "{\"a\":\"<tag> & \\u2028 é \\\"q\\\" \\b\\u0001\",\"b\":1.0,\"c\":[1e2,-0,10000000000000000000000]}"
        );
        assert_eq!(
            canon(r#"{"\u00e9": 1, "z": 2, "Z": 3, "\ud83d\ude00": 4, "a": 5}"#),
            "{\"Z\":3,\"a\":5,\"z\":2,\"é\":1,\"😀\":4}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        // `{"a": 2, "a": 1}` would hash as `{"a":1}` (Go keeps the last) and could load as
        // `a = 2` in a reader that keeps the first: a signed document must have one meaning.
        let err = canonical_json(br#"{"x": {"a": 2, "a": 1}}"#).unwrap_err();
        assert!(err.contains("`a` appears twice"), "{err}");
    }

    /// Digests from OPA's own tests (`v1/bundle/bundle_test.go`, `verify_test.go`).
    #[test]
    fn digests_match_opas_test_vectors() {
        assert_eq!(
            sha256_hex(".manifest", r#"{"revision": "quickbrownfaux"}"#),
            "507a2c38a1441db58d2cb87982c42aa91a4342ef422a6b542eddebeef6f0412f"
        );
        assert_eq!(
            sha256_hex("a/b/c/data.json", "[1,2,3]"),
            "a615eeaee21de5179de080de8c3052c8da901138406ba71c38c032845f7d54f4"
        );
        assert_eq!(
            sha256_hex("http/policy/policy.rego", "package example"),
            "f664461e303b37c20c5e0be2900881678cdf8e860aa433a5a14d494ba3c66649"
        );
        let sha512 = file_digest("a/b/c/data.json", b"[1,2,3]", HashAlgorithm::Sha512).unwrap();
        assert_eq!(
            cordon_types::hex(&sha512),
            "60f7b5dc86ded48785436192a08dbfd04894d7f1b417c4f8d3714679a7f78cb3c833f16a8559a1cf1f32968747dc1d95ef34826263dacf125ded8f5c374be4c0"
        );
        let yaml = file_digest("a/b/y/data.yaml", b"foo: 1", HashAlgorithm::Sha512).unwrap();
        assert_eq!(
            cordon_types::hex(&yaml),
            "20f27a640a233e6524fe7d138898583cd43475724806feb26be7f214e1d10b29edf6a0d3cb08f82107a45686b61b8fdabab6406cf4e70efe134f42238dbd70ab"
        );
    }

    #[test]
    fn weak_and_unknown_algorithms_are_refused_by_name() {
        assert!(HashAlgorithm::from_name("MD5").unwrap_err().contains("MD5"));
        assert!(HashAlgorithm::from_name("MD6").unwrap_err().contains("MD6"));
        assert!(HashAlgorithm::from_name("SHA256").is_err());
    }

    #[test]
    fn malformed_and_deep_documents_are_errors() {
        assert!(canonical_json(b"{").is_err());
        assert!(canonical_json(b"{} {}").is_err());
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(canonical_json(deep.as_bytes()).is_err());
    }
}
