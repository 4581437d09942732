//! The digest OPA signs for each file of a bundle.
//!
//! Structured documents (`data.json`, `data.yaml`, `.manifest`) are hashed in a canonical JSON
//! form, so that re-serialising one does not break its signature; every other file is hashed
//! as its bytes. The canonical form is Go's `encoding/json` output as OPA's hasher writes it:
//! no whitespace, object keys sorted bytewise, numbers exactly as written in the source, and
//! strings escaped as Go does with HTML escaping off (`<`, `>`, `&` and non-ASCII raw; control
//! characters, U+2028 and U+2029 escaped).

use std::fmt::Write as _;

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
/// One pass: the document is parsed once into a tree whose numbers point at their text (Go
/// keeps a number's lexeme), then written once with keys sorted.
///
/// # Errors
///
/// A message when the document is not JSON, nests deeper than 64 levels, or has an object
/// with a key given twice.
pub fn canonical_json(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use serde::de::DeserializeSeed as _;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let numbers = std::cell::Cell::new(0);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let node = Seed {
        numbers: &numbers,
        depth: 0,
    }
    .deserialize(&mut deserializer)
    .and_then(|node| deserializer.end().map(|()| node))
    .map_err(|err| format!("not JSON: {err}"))?;
    let lexemes = number_lexemes(text);
    if lexemes.len() != numbers.get() {
        return Err("the document's numbers cannot be read".into());
    }
    let mut out = String::with_capacity(text.len());
    write_node(&node, &lexemes, &mut out);
    Ok(out.into_bytes())
}

/// A parsed JSON value; a number is the index of its lexeme in the text.
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    String(String),
    Number(usize),
    Literal(&'static str),
}

/// Parses one value, numbering numbers in document order.
struct Seed<'c> {
    numbers: &'c std::cell::Cell<usize>,
    depth: usize,
}

impl Seed<'_> {
    fn number(&self) -> Node {
        let index = self.numbers.get();
        self.numbers.set(index + 1);
        Node::Number(index)
    }

    fn child(&self) -> Self {
        Seed {
            numbers: self.numbers,
            depth: self.depth + 1,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Seed<'_> {
    type Value = Node;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Seed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Literal(if v { "true" } else { "false" }))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Literal("null"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(self.number())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(self.number())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(self.number())
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut members: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child())?;
            members.push((key, value));
        }
        // Keys in bytewise order, as Go sorts them. A key given twice is refused: Go's
        // decoder keeps the last, another reader may keep the first, and a signed document
        // must mean one thing to every reader.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(serde::de::Error::custom(format!(
                "the key `{}` appears twice in one object",
                pair[0].0
            )));
        }
        Ok(Node::Object(members))
    }
}

/// The text of every number of a JSON document, in document order (strings skipped).
fn number_lexemes(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lexemes = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                lexemes.push(&text[start..i]);
            }
            _ => i += 1,
        }
    }
    lexemes
}

fn write_node(node: &Node, lexemes: &[&str], out: &mut String) {
    match node {
        Node::Object(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_node(value, lexemes, out);
            }
            out.push('}');
        }
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_node(item, lexemes, out);
            }
            out.push(']');
        }
        Node::String(text) => write_string(text, out),
        Node::Number(index) => out.push_str(lexemes.get(*index).copied().unwrap_or("0")),
        Node::Literal(text) => out.push_str(text),
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

#[cfg(test)]
mod nesting {
    use super::canonical_json;

    #[test]
    fn deep_documents_around_large_values_canonicalise() {
        let inner = format!("[{}]", vec!["1.50"; 20_000].join(", "));
        let mut doc = inner.clone();
        for _ in 0..60 {
            doc = format!("{{\"b\": 1, \"a\": {doc}}}");
        }
        let out = String::from_utf8(canonical_json(doc.as_bytes()).unwrap()).unwrap();
        assert!(out.starts_with("{\"a\":{\"a\":"), "{}", &out[..40]);
        assert!(
            out.contains("1.50,1.50],\"b\":1},\"b\":1}"),
            "{}",
            &out[out.len() - 40..]
        );
        assert_eq!(out.matches("1.50").count(), 20_000);
    }
}
