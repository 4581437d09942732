//! Masked excerpts: where a finding is, shown without its value.

use crate::{Detector, Finding, Kind};

/// How many bytes of context an excerpt shows on each side of a finding.
const CONTEXT: usize = 24;

/// The mask shown in place of `finding`: its public prefix (`AKIA`, `ghp_`, a private
/// key's header line), then asterisks, never the value. A finding that began before `hay`
/// (an earlier block) shows no prefix: what is here is its middle.
fn mask(detector: &Detector, hay: &[u8], finding: &Finding, base: u64) -> String {
    let cut = finding.start < base;
    let start = finding.start.saturating_sub(base) as usize;
    let end = (finding.end.saturating_sub(base) as usize).clamp(start.min(hay.len()), hay.len());
    let value = &hay[start.min(hay.len())..end];
    let visible = if cut {
        0
    } else if finding.kind == Kind::PrivateKey {
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
/// `base`), with the finding and every one of `all` (sorted by start) that the line shows
/// masked, and control and invisible characters replaced: what a report may print.
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
    let end = (finding.end.saturating_sub(base) as usize).clamp(start, line_end);
    let from = line_start.max(start.saturating_sub(CONTEXT));
    let to = line_end.min(end + CONTEXT);
    // The findings this window shows: those starting before its end and ending after its
    // start. `all` is sorted by start and one detector's findings do not overlap, so they
    // are the last few before the window's end (a binary search, then a short walk back:
    // a block with many findings stays linear).
    let (window_from, window_to) = (base + from as u64, base + to as u64);
    let first = all.partition_point(|f| f.start < window_to);
    let mut shown: Vec<&Finding> = Vec::new();
    let mut misses = 0;
    for f in all[..first].iter().rev() {
        if f.end > window_from {
            shown.push(f);
            misses = 0;
        } else {
            misses += 1;
            if misses > 8 {
                break;
            }
        }
    }
    // A second copy of a value found, unreported (`backup = <the same key>`), is hidden too.
    let values: Vec<&[u8]> = shown
        .iter()
        .chain(std::iter::once(&finding))
        .filter(|f| f.start >= base)
        .map(|f| {
            let s = (f.start - base) as usize;
            &hay[s.min(hay.len())..((f.end - base) as usize).min(hay.len())]
        })
        .filter(|v| v.len() >= 8)
        .collect();
    let hide = |plain: &mut Vec<u8>| {
        for value in &values {
            let mut at = 0;
            while let Some(i) = memchr::memmem::find(&plain[at..], value) {
                plain[at + i..at + i + value.len()].fill(b'*');
                at += i + value.len();
            }
        }
    };
    let mut out = String::new();
    if from > line_start {
        out.push('…');
    }
    let mut at = from;
    let mut plain = Vec::new();
    while at < to {
        let here = base + at as u64;
        match shown.iter().find(|f| f.start <= here && here < f.end) {
            Some(f) => {
                hide(&mut plain);
                out.push_str(&cordon_types::printable(&String::from_utf8_lossy(&plain)));
                plain.clear();
                out.push_str(&cordon_types::printable(&mask(detector, hay, f, base)));
                at = (f.end.saturating_sub(base) as usize).max(at + 1);
            }
            None => {
                plain.push(hay[at]);
                at += 1;
            }
        }
    }
    hide(&mut plain);
    out.push_str(&cordon_types::printable(&String::from_utf8_lossy(&plain)));
    if to < line_end {
        out.push('…');
    }
    out.trim().to_owned()
}
