//! `.manifest`: the bundle's revision, the roots it owns, and metadata (cordon reads a
//! rollout percentage there).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{BundleError, Problem, Result};

/// The manifest's name in a bundle.
pub const NAME: &str = ".manifest";

/// What a bundle's `.manifest` says, as OPA defines it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The bundle's revision: cordon orders revisions (see [`compare_revisions`]).
    #[serde(default)]
    pub revision: String,
    /// The paths under `data` the bundle owns; none means all (`[""]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
    /// The Rego version of the modules: 1 (or absent) only; cordon's engine reads Rego v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego_version: Option<i64>,
    /// Free-form metadata; cordon reads `metadata.cordon.rollout`, a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Wasm resolvers: cordon refuses bundles with any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<Value>,
}

impl Manifest {
    /// Reads a manifest.
    ///
    /// # Errors
    ///
    /// [`Problem::Malformed`] when it is not a JSON object of the manifest's fields, and
    /// [`Problem::Unsupported`] for Wasm resolvers or Rego v0.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let malformed = |why: String| BundleError::file(Problem::Malformed, NAME, why);
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|err| malformed(format!("not a manifest: {err}")))?;
        if cordon_types::printable(&manifest.revision) != manifest.revision
            || manifest.revision.len() > 256
        {
            return Err(malformed(
                "the revision holds a control or invisible character, or is longer than 256 bytes"
                    .into(),
            ));
        }
        if manifest
            .roots
            .iter()
            .flatten()
            .any(|root| cordon_types::printable(root) != *root)
        {
            return Err(malformed(
                "a root holds a control or invisible character".into(),
            ));
        }
        if manifest.wasm.as_ref().is_some_and(|w| !w.is_null()) {
            return Err(BundleError::file(
                Problem::Unsupported,
                NAME,
                "names Wasm modules; cordon evaluates Rego only",
            ));
        }
        match manifest.rego_version {
            None | Some(1) => {}
            Some(0) => {
                return Err(BundleError::file(
                    Problem::Unsupported,
                    NAME,
                    "declares Rego v0 (`rego_version: 0`); cordon reads Rego v1 \
                     (`opa fmt --v0-v1` rewrites modules)",
                ))
            }
            Some(other) => return Err(malformed(format!("unknown rego_version {other}"))),
        }
        manifest.rollout()?;
        let roots = manifest.roots();
        for (i, a) in roots.iter().enumerate() {
            for b in &roots[i + 1..] {
                if contains(a, b) || contains(b, a) {
                    return Err(malformed(format!("roots `{a}` and `{b}` overlap")));
                }
            }
        }
        Ok(manifest)
    }

    /// The roots, each trimmed of `/`; `[""]` (everything) when none are given.
    pub fn roots(&self) -> Vec<String> {
        match &self.roots {
            Some(roots) => roots
                .iter()
                .map(|r| r.trim_matches('/').to_owned())
                .collect(),
            None => vec![String::new()],
        }
    }

    /// The rollout percentage in `metadata.cordon.rollout` (0–100), if any.
    ///
    /// # Errors
    ///
    /// [`Problem::Malformed`] when it is there and not a number from 0 to 100.
    pub fn rollout(&self) -> Result<Option<f64>> {
        let value = self
            .metadata
            .as_ref()
            .and_then(|m| m.get("cordon"))
            .and_then(|c| c.get("rollout"));
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(value) => match value.as_f64() {
                Some(p) if (0.0..=100.0).contains(&p) => Ok(Some(p)),
                _ => Err(BundleError::file(
                    Problem::Malformed,
                    NAME,
                    format!("metadata.cordon.rollout is {value}; a percentage from 0 to 100 is expected"),
                )),
            },
        }
    }

    /// Whether the path `path` (segments under `data`) lies within one of the roots.
    pub fn owns(&self, path: &[&str]) -> bool {
        let joined = path.join("/");
        self.roots().iter().any(|root| contains(root, &joined))
    }

    /// Checks that data mounted at `prefix` with value `value` lies within the roots, as OPA
    /// does: a node outside every root is allowed only as an object on the way to one.
    ///
    /// # Errors
    ///
    /// [`Problem::Malformed`] naming `file` and the first path outside the roots.
    pub fn check_data(&self, file: &str, prefix: &[&str], value: &Value) -> Result<()> {
        let mut path: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
        self.check_node(file, &mut path, value)
    }

    fn check_node(&self, file: &str, path: &mut Vec<String>, value: &Value) -> Result<()> {
        let joined = path.join("/");
        let roots = self.roots();
        if roots.iter().any(|root| contains(root, &joined)) {
            return Ok(());
        }
        let on_the_way = roots.iter().any(|root| contains(&joined, root));
        match value {
            Value::Object(map) if on_the_way => {
                for (key, child) in map {
                    path.push(key.clone());
                    self.check_node(file, path, child)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Err(BundleError::file(
                Problem::Malformed,
                file,
                format!("holds data at `/{joined}`, outside the manifest's roots {roots:?}"),
            )),
        }
    }
}

/// Whether `root` contains `path` (both `/`-separated): `""` contains everything, `a`
/// contains `a` and `a/b` but not `ab`.
fn contains(root: &str, path: &str) -> bool {
    if root.is_empty() {
        return true;
    }
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Orders two revisions: runs of digits compare as numbers, everything else bytewise, so
/// `2026.11.9` < `2026.11.10` and `r9` < `r10`. A revision cordon has activated is never
/// replaced by one that orders before it unless a downgrade is allowed.
pub fn compare_revisions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (la, lb) = (run(a), run(b));
                let (da, db) = (&a[..la], &b[..lb]);
                let strip = |d: &'_ [u8]| -> usize { d.iter().take_while(|c| **c == b'0').count() };
                let (na, nb) = (&da[strip(da)..], &db[strip(db)..]);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[la..];
                b = &b[lb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cmp::Ordering;

    #[test]
    fn revisions_order_numbers_as_numbers() {
        assert_eq!(compare_revisions("2026.11.9", "2026.11.10"), Ordering::Less);
        assert_eq!(compare_revisions("r10", "r9"), Ordering::Greater);
        assert_eq!(compare_revisions("7", "7"), Ordering::Equal);
        assert_eq!(compare_revisions("", "1"), Ordering::Less);
        assert_eq!(compare_revisions("1.0", "1.0-rc"), Ordering::Less);
        assert_eq!(compare_revisions("007", "7"), Ordering::Equal);
    }

    #[test]
    fn roots_must_not_overlap_and_bound_data() {
        let m = |roots: serde_json::Value| {
            Manifest::parse(
                json!({"revision": "1", "roots": roots})
                    .to_string()
                    .as_bytes(),
            )
        };
        assert!(m(json!(["a", "a/b"])).is_err());
        assert!(m(json!(["a", "ab"])).is_ok());
        let manifest = m(json!(["cordon"])).unwrap();
        assert!(manifest
            .check_data("data.json", &[], &json!({"cordon": {"x": 1}}))
            .is_ok());
        let err = manifest
            .check_data("data.json", &[], &json!({"other": 1}))
            .unwrap_err();
        assert!(err.to_string().contains("/other"), "{err}");
        assert!(manifest.owns(&["cordon", "file"]));
        assert!(!manifest.owns(&["cordonx"]));
    }

    #[test]
    fn rollout_is_a_percentage() {
        let m = |v: serde_json::Value| {
            Manifest::parse(
                json!({"metadata": {"cordon": {"rollout": v}}})
                    .to_string()
                    .as_bytes(),
            )
        };
        assert_eq!(m(json!(25)).unwrap().rollout().unwrap(), Some(25.0));
        assert!(m(json!(101)).is_err());
        assert!(m(json!("half")).is_err());
    }
}
