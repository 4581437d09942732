//! The `redact` obligation: what a decision asks to be removed or refused, applied to data
//! on its way out.

use std::sync::Arc;

use cordon_types::Obligation;

use crate::{Detector, Kind, Redacted, Result, Selection};

/// How the data to redact is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Bytes as they are (a JSON or text body).
    Plain,
    /// A URL or a form body: `%XX` escapes are decoded before searching (`%2F` hides no
    /// AWS secret), and replacements are percent-encoded.
    Percent,
}

/// The `redact` obligations of one decision, compiled.
#[derive(Debug, Clone)]
pub struct Redaction {
    detector: Arc<Detector>,
    block: Option<Selection>,
}

/// Data that may not leave at all: it holds kinds a `block_if` names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the data holds {}, which the policy does not let leave", kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))]
pub struct Blocked {
    /// The kinds found that refuse it.
    pub kinds: Vec<Kind>,
}

impl Redaction {
    /// The redaction `obligations` ask for: `None` when none is a `redact`. Several are
    /// joined: everything any of them names is redacted, anything any of them blocks is
    /// refused.
    ///
    /// # Errors
    ///
    /// A name that is no kind, rule or pattern: the decision must then be a denial.
    pub fn from_obligations(obligations: &[Obligation]) -> Result<Option<Self>> {
        let mut patterns: Vec<String> = Vec::new();
        let mut block_if: Vec<String> = Vec::new();
        let mut all = false;
        let mut any = false;
        for obligation in obligations {
            if let Obligation::Redact {
                patterns: p,
                block_if: b,
            } = obligation
            {
                any = true;
                all |= p.is_empty();
                patterns.extend(p.iter().cloned());
                block_if.extend(b.iter().cloned());
            }
        }
        if !any {
            return Ok(None);
        }
        let mut selection = if all {
            let mut names: Vec<String> = crate::rule_ids().map(|(id, _)| id.to_owned()).collect();
            names.extend(patterns.iter().filter(|p| p.starts_with("regex:")).cloned());
            names
        } else {
            patterns
        };
        selection.extend(block_if.iter().cloned());
        let detector = Detector::shared(&Selection::parse(&selection)?)?;
        let block = if block_if.is_empty() {
            None
        } else {
            Some(Selection::parse(&block_if)?)
        };
        Ok(Some(Self { detector, block }))
    }

    /// `data` with every finding replaced by `[REDACTED:kind]` (percent-encoded for
    /// [`Encoding::Percent`]).
    ///
    /// # Errors
    ///
    /// [`Blocked`] when it holds a kind a `block_if` names.
    pub fn apply(&self, data: &[u8], encoding: Encoding) -> std::result::Result<Redacted, Blocked> {
        let redacted = match encoding {
            Encoding::Plain => self.decoded(data, ("[REDACTED:", "]")),
            Encoding::Percent => self.decoded(data, ("%5BREDACTED%3A", "%5D")),
        };
        if let Some(block) = &self.block {
            let mut kinds: Vec<Kind> = redacted
                .findings
                .iter()
                .filter(|f| block.covers(f))
                .map(|f| f.kind)
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            if !kinds.is_empty() {
                return Err(Blocked { kinds });
            }
        }
        Ok(redacted)
    }

    /// Redacts, in place, the URL fields (`path`, `url`) of the `http` object of a
    /// request's policy resource: what is recorded and shown of a request holds what leaves.
    /// A field that holds what is blocked is replaced by `(withheld)`.
    ///
    /// # Errors
    ///
    /// [`Blocked`] when a field holds a kind a `block_if` names.
    pub fn apply_to_url_fields(
        &self,
        http: &mut serde_json::Value,
    ) -> std::result::Result<(), Blocked> {
        let mut blocked = None;
        for key in ["path", "url"] {
            let Some(text) = http.get(key).and_then(serde_json::Value::as_str) else {
                continue;
            };
            let replaced = match self.apply(text.as_bytes(), Encoding::Percent) {
                Ok(r) => String::from_utf8_lossy(&r.data).into_owned(),
                Err(b) => {
                    blocked = Some(b);
                    "(withheld)".to_owned()
                }
            };
            http[key] = serde_json::Value::String(replaced);
        }
        blocked.map_or(Ok(()), Err)
    }

    /// Searches the decoded view of `data` (`%XX` escapes, and the JSON escapes `\/` and
    /// `\u00XX`, taken for what they stand for: an escape hides nothing) and replaces, in
    /// `data`, the bytes each finding came from with `open`, the kind, `close`.
    fn decoded(&self, data: &[u8], (open, close): (&str, &str)) -> Redacted {
        if u32::try_from(data.len()).is_err() {
            return self.detector.redact(data);
        }
        let mut decoded = Vec::with_capacity(data.len());
        // For each decoded byte, where in `data` it came from (it runs to where the next one
        // came from): four bytes a byte.
        let mut origin: Vec<u32> = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if data[i] == b'%' && i + 2 < data.len() {
                if let (Some(hi), Some(lo)) = (hex(data[i + 1]), hex(data[i + 2])) {
                    decoded.push((hi * 16 + lo) as u8);
                    origin.push(i as u32);
                    i += 3;
                    continue;
                }
            }
            if data[i] == b'\\' && data.get(i + 1) == Some(&b'/') {
                decoded.push(b'/');
                origin.push(i as u32);
                i += 2;
                continue;
            }
            if data[i] == b'\\' && data.get(i + 1) == Some(&b'u') && i + 5 < data.len() {
                let digits = &data[i + 2..i + 6];
                let code = digits
                    .iter()
                    .try_fold(0u32, |n, &b| hex(b).map(|d| n * 16 + d));
                if let Some(code @ 0x20..=0x7e) = code {
                    decoded.push(code as u8);
                    origin.push(i as u32);
                    i += 6;
                    continue;
                }
            }
            decoded.push(data[i]);
            origin.push(i as u32);
            i += 1;
        }
        let findings = self.detector.find(&decoded);
        let from = |k: usize| origin.get(k).map_or(data.len(), |&o| o as usize);
        let spans = findings
            .iter()
            .map(|f| (from(f.start as usize), from(f.end as usize), f.kind));
        Redacted {
            data: crate::detector::replace_spans(data, spans, (open, close)),
            findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(patterns: &[&str], block_if: &[&str]) -> Redaction {
        let obligation = Obligation::Redact {
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            block_if: block_if.iter().map(|s| s.to_string()).collect(),
        };
        Redaction::from_obligations(&[obligation]).unwrap().unwrap()
    }

    #[test]
    fn encoded_secrets_are_found_and_replaced_in_place() {
        let secret = ["wJalrXUtnFEMI", "%2FK7MDENG%2FbPxRfiCYzAb3Kq9Lm2"].concat();
        let url = format!("/upload?aws_secret_access_key={secret}&x=1");
        let r = redact(&[], &[])
            .apply(url.as_bytes(), Encoding::Percent)
            .unwrap();
        assert_eq!(
            String::from_utf8(r.data).unwrap(),
            "/upload?aws_secret_access_key=%5BREDACTED%3Acloud_key%5D&x=1"
        );
        assert!(redact(&[], &[]).apply(b"%", Encoding::Percent).is_ok());
        assert!(redact(&[], &[]).apply(b"%4", Encoding::Percent).is_ok());
    }

    #[test]
    fn json_escapes_hide_nothing() {
        let body = [
            "{\"secret\": \"aws_secret_access_key=wJalrXUtnFEMI\\/K7MDENG\\/bPxRfiCYzAb3Kq9Lm2\",",
            " \"t\": \"gh\\u0070_u8jzPde0IgxLd6GncfBAepfJBd0Kh8024xXH\"}",
        ]
        .concat();
        let r = redact(&[], &[])
            .apply(body.as_bytes(), Encoding::Plain)
            .unwrap();
        let text = String::from_utf8(r.data).unwrap();
        assert!(
            !text.contains("bPxRfiCYzAb3Kq9Lm2") && !text.contains("u8jzPde0IgxLd6"),
            "{text}"
        );
    }

    #[test]
    fn block_if_refuses_and_unknown_names_are_errors() {
        let key = ["AKIA", "QYLPMN5HHHFPZAM2"].concat();
        let blocked = redact(&["email"], &["cloud_key"]).apply(key.as_bytes(), Encoding::Plain);
        assert_eq!(blocked.unwrap_err().kinds, vec![Kind::CloudKey]);
        let only_email = redact(&["email"], &[])
            .apply(key.as_bytes(), Encoding::Plain)
            .unwrap();
        assert_eq!(only_email.data, key.as_bytes());
        let bad = Obligation::Redact {
            patterns: vec!["nonsense".into()],
            block_if: vec![],
        };
        assert!(Redaction::from_obligations(&[bad]).is_err());
        assert!(Redaction::from_obligations(&[Obligation::Journal])
            .unwrap()
            .is_none());
    }
}
