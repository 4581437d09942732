//! Masked excerpts: where a finding is, shown without its value.

use crate::{Detector, Finding, Kind};

/// How many bytes of context an excerpt shows on each side of a finding.
const CONTEXT: usize = 24;

/// The mask shown in place of `finding`: its public prefix (`AKIA`, `ghp_`, a private
/// key's header line), then asterisks, never the value.
fn mask(detector: &Detector, hay: &[u8], finding: &Finding, base: u64) -> String {
    let start = (finding.start - base) as usize;
    let end = ((finding.end - base) as usize).min(hay.len());
    let value = &hay[start..end];
    let visible = if finding.kind == Kind::PrivateKey {
        // `-----BEGIN RSA PRIVATE KEY-----`: the header names the key's type only.
        value
            .get(5..)
            .and_then(|rest| memchr::memmem::find(rest, b"-----"))
            .map_or(0, |at| at + 10)
    } else {
        detector.visible(finding.rule)
    }
    .min(value.len().saturating_sub(4));
    let shown = String::from_utf8_lossy(&value[..visible]);
    let hidden = (value.len() - visible).min(16);
    format!("{}{}", shown, "*".repeat(hidden.max(4)))
}

/// One line of text around `finding`, found in `hay` (which starts at stream offset
/// `base`), with the finding and every one of `all` that the line shows masked, and control
/// and invisible characters replaced: what a report may print.
pub fn excerpt(
    detector: &Detector,
    hay: &[u8],
    base: u64,
    finding: &Finding,
    all: &[Finding],
) -> String {
    let start = (finding.start.saturating_sub(base) as usize).min(hay.len());
    let line_start = memchr::memrchr(b'\n', &hay[..start]).map_or(0, |i| i + 1);
    let line_end = memchr::memchr(b'\n', &hay[start..]).map_or(hay.len(), |i| start + i);
    let end = ((finding.end.saturating_sub(base)) as usize).clamp(start, line_end);
    let from = line_start.max(start.saturating_sub(CONTEXT));
    let to = line_end.min(end + CONTEXT);
    let mut out = String::new();
    if from > line_start {
        out.push('…');
    }
    let mut at = from;
    let mut plain = Vec::new();
    while at < to {
        let covering = all.iter().find(|f| {
            let (s, e) = (
                f.start.saturating_sub(base) as usize,
                f.end.saturating_sub(base) as usize,
            );
            s <= at && at < e && f.start >= base
        });
        match covering {
            Some(f) => {
                out.push_str(&cordon_types::printable(&String::from_utf8_lossy(&plain)));
                plain.clear();
                out.push_str(&cordon_types::printable(&mask(detector, hay, f, base)));
                at = ((f.end - base) as usize).max(at + 1);
            }
            None => {
                plain.push(hay[at]);
                at += 1;
            }
        }
    }
    out.push_str(&cordon_types::printable(&String::from_utf8_lossy(&plain)));
    if to < line_end {
        out.push('…');
    }
    out.trim().to_owned()
}
