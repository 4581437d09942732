//! The detector: the rules compiled into one automaton, and the search that validates what
//! it matches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex_automata::meta::Regex;
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, PatternSet};

use crate::rules::{Check, Hit, Verdict, RULES};
use crate::{Confidence, Error, Finding, Kind, Result};

/// Which rules a detector runs: kinds, rule ids and custom patterns (`regex:PATTERN`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    /// Indices into the standard rules.
    rules: Vec<usize>,
    /// Patterns a policy gave.
    custom: Vec<String>,
}

impl Selection {
    /// Every standard rule.
    pub fn all() -> Self {
        Self {
            rules: (0..RULES.len()).collect(),
            custom: Vec::new(),
        }
    }

    /// The rules `names` select: each a kind (`token`), a rule id (`github-token`) or a
    /// regular expression written `regex:PATTERN`. No names selects every standard rule.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownName`] for a name that is none of these.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        if names.is_empty() {
            return Ok(Self::all());
        }
        let mut selection = Self::default();
        for name in names {
            let name = name.as_ref().trim();
            if let Some(pattern) = name.strip_prefix("regex:") {
                selection.custom.push(pattern.to_owned());
                continue;
            }
            let by_kind: Vec<usize> = RULES
                .iter()
                .enumerate()
                .filter(|(_, r)| r.kind.as_str() == name)
                .map(|(i, _)| i)
                .collect();
            let by_id = RULES.iter().position(|r| r.id == name);
            match (by_kind.is_empty(), by_id) {
                (false, _) => selection.rules.extend(by_kind),
                (true, Some(i)) => selection.rules.push(i),
                (true, None) => {
                    return Err(Error::UnknownName {
                        name: name.to_owned(),
                    })
                }
            }
        }
        selection.rules.sort_unstable();
        selection.rules.dedup();
        Ok(selection)
    }

    /// Whether a finding of `kind` by `rule` is one this selection names.
    pub fn covers(&self, finding: &Finding) -> bool {
        if finding.kind == Kind::Custom {
            return !self.custom.is_empty();
        }
        self.rules.iter().any(|&i| RULES[i].id == finding.rule)
    }
}

#[derive(Debug)]
struct Compiled {
    id: &'static str,
    kind: Kind,
    confidence: Confidence,
    check: Check,
    visible: usize,
    regex: Regex,
}

/// A set of rules compiled into one automaton. Build one with [`Detector::new`] or use the
/// shared [`Detector::standard`]; both are cheap to search from many threads.
#[derive(Debug)]
pub struct Detector {
    /// Every rule but e-mail addresses, as one automaton (pattern `p` is rule
    /// `pattern_rule[p]`).
    combined: Regex,
    pattern_rule: Vec<usize>,
    /// The e-mail rule, if selected: found from each `@` instead (its local part is a
    /// class so broad that, in the automaton, it would run on to the end of every long run
    /// of letters, digits and dots, once for each candidate of another rule in it).
    email: Option<usize>,
    /// The same patterns, every one reported: which rules can match at a position.
    candidates: Regex,
    rules: Vec<Compiled>,
}

/// Data with its findings replaced by `[REDACTED:kind]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The data as it may leave.
    pub data: Vec<u8>,
    /// What was replaced, at its position in the data searched (for a URL, its
    /// percent-decoded form).
    pub findings: Vec<Finding>,
}

fn builder() -> regex_automata::meta::Builder {
    let mut builder = Regex::builder();
    builder
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            Regex::config()
                .utf8_empty(false)
                .nfa_size_limit(Some(64 << 20))
                .hybrid_cache_capacity(8 << 20),
        );
    builder
}

fn keep(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    hit.keep(confidence)
}

impl Detector {
    /// The detector of every standard rule, built once per process.
    ///
    /// # Errors
    ///
    /// Never in practice: the standard patterns are tested to compile. The error is kept
    /// rather than a panic so that a caller on a decision path can deny.
    pub fn standard() -> Result<&'static Detector> {
        static STANDARD: OnceLock<std::result::Result<Detector, String>> = OnceLock::new();
        STANDARD
            .get_or_init(|| Detector::new(&Selection::all()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Builtin { reason: e.clone() })
    }

    /// A detector for `selection`, shared with earlier callers that asked for the same
    /// one (at most 64 are kept).
    ///
    /// # Errors
    ///
    /// As [`Detector::new`].
    pub fn shared(selection: &Selection) -> Result<Arc<Detector>> {
        static SHARED: OnceLock<Mutex<BTreeMap<String, Arc<Detector>>>> = OnceLock::new();
        let key = format!("{:?}|{:?}", selection.rules, selection.custom);
        let cache = SHARED.get_or_init(Default::default);
        if let Some(found) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(found);
        }
        let detector = Arc::new(Detector::new(selection)?);
        if let Ok(mut cache) = cache.lock() {
            if cache.len() >= 64 {
                cache.clear();
            }
            cache.insert(key, Arc::clone(&detector));
        }
        Ok(detector)
    }

    /// Compiles the rules of `selection`.
    ///
    /// # Errors
    ///
    /// [`Error::BuildPattern`] for a custom pattern that does not compile.
    pub fn new(selection: &Selection) -> Result<Self> {
        let mut rules = Vec::with_capacity(selection.rules.len() + selection.custom.len());
        let mut patterns = Vec::with_capacity(rules.capacity());
        let mut pattern_rule = Vec::with_capacity(rules.capacity());
        let mut email = None;
        for &i in &selection.rules {
            let rule = &RULES[i];
            let regex = builder()
                .build(rule.pattern)
                .map_err(|e| Error::BuildPattern {
                    pattern: rule.pattern.to_owned(),
                    source: Box::new(e),
                })?;
            if rule.id == "email" {
                email = Some(rules.len());
            } else {
                pattern_rule.push(rules.len());
                patterns.push(rule.pattern.replace("(?P<s>", "(?:"));
            }
            rules.push(Compiled {
                id: rule.id,
                kind: rule.kind,
                confidence: rule.confidence,
                check: rule.check,
                visible: rule.visible,
                regex,
            });
        }
        for pattern in &selection.custom {
            let regex = builder().build(pattern).map_err(|e| Error::BuildPattern {
                pattern: pattern.clone(),
                source: Box::new(e),
            })?;
            // The custom pattern's own groups are left alone; it is matched whole.
            pattern_rule.push(rules.len());
            patterns.push(format!("(?:{pattern})"));
            rules.push(Compiled {
                id: "custom",
                kind: Kind::Custom,
                confidence: Confidence::Medium,
                check: keep,
                visible: 0,
                regex,
            });
        }
        let combined = builder()
            .build_many(&patterns)
            .map_err(|e| Error::BuildPattern {
                pattern: "the combined rules".into(),
                source: Box::new(e),
            })?;
        let mut all = builder();
        all.configure(
            Regex::config()
                .match_kind(regex_automata::MatchKind::All)
                .utf8_empty(false)
                .nfa_size_limit(Some(64 << 20))
                .hybrid_cache_capacity(8 << 20),
        );
        let candidates = all.build_many(&patterns).map_err(|e| Error::BuildPattern {
            pattern: "the combined rules".into(),
            source: Box::new(e),
        })?;
        Ok(Self {
            combined,
            pattern_rule,
            email,
            candidates,
            rules,
        })
    }

    /// How many leading bytes of a finding by `rule` a masked excerpt may show.
    pub(crate) fn visible(&self, rule: &str) -> usize {
        self.rules
            .iter()
            .find(|r| r.id == rule)
            .map_or(0, |r| r.visible)
    }

    /// Rule `i`'s match anchored at `start`, with its groups.
    fn captures_at<'c>(
        &self,
        i: usize,
        hay: &[u8],
        start: usize,
        caps: &'c mut [Option<Captures>],
    ) -> &'c Captures {
        let rule = &self.rules[i];
        let caps = caps[i].get_or_insert_with(|| rule.regex.create_captures());
        let input = Input::new(hay)
            .span(start..hay.len())
            .anchored(Anchored::Yes);
        rule.regex.search_captures(&input, caps);
        caps
    }

    /// Tries rule `i` anchored at `start`.
    fn run_rule(
        &self,
        i: usize,
        hay: &[u8],
        start: usize,
        caps: &mut [Option<Captures>],
    ) -> Option<Verdict> {
        let rule = &self.rules[i];
        let caps = self.captures_at(i, hay, start, caps);
        let m = caps.get_match()?;
        let secret = caps
            .get_group_by_name("s")
            .map_or((m.start(), m.end()), |s| (s.start, s.end));
        let hit = Hit {
            hay,
            start: m.start(),
            end: m.end(),
            secret,
        };
        (rule.check)(&hit, rule.confidence).filter(|v| v.end > v.start)
    }

    /// The first rule from `first` on that matches at `start` and passes its check. A
    /// generic assignment whose value a specific rule knows is reported as that rule's.
    fn try_at(
        &self,
        hay: &[u8],
        start: usize,
        first: usize,
        caps: &mut [Option<Captures>],
        set: &mut PatternSet,
    ) -> std::result::Result<(usize, Verdict), Option<usize>> {
        // The rules that match here at all, in one anchored pass; each is then run alone for
        // its span and check.
        self.matching_at(hay, start, set);
        let matching: Vec<usize> = set
            .iter()
            .map(|p| self.pattern_rule[p.as_usize()])
            .filter(|&i| i >= first)
            .collect();
        let mut value_at = None;
        for i in matching {
            if self.rules[i].kind == Kind::GenericSecret {
                value_at = value_at.or_else(|| self.secret_start(i, hay, start, caps));
            }
            let Some(verdict) = self.run_rule(i, hay, start, caps) else {
                continue;
            };
            if self.rules[i].kind == Kind::GenericSecret && verdict.start != start {
                self.matching_at(hay, verdict.start, set);
                let others: Vec<usize> = set
                    .iter()
                    .map(|p| self.pattern_rule[p.as_usize()])
                    .collect();
                let specific = others
                    .into_iter()
                    .filter(|&j| self.rules[j].kind != Kind::GenericSecret)
                    .find_map(|j| self.run_rule(j, hay, verdict.start, caps).map(|v| (j, v)));
                if let Some(specific) = specific {
                    return Ok(specific);
                }
            }
            return Ok((i, verdict));
        }
        Err(value_at)
    }

    /// Where the value of rule `i`'s match at `start` begins (its `s` group), if it matches.
    fn secret_start(
        &self,
        i: usize,
        hay: &[u8],
        start: usize,
        caps: &mut [Option<Captures>],
    ) -> Option<usize> {
        self.captures_at(i, hay, start, caps)
            .get_group_by_name("s")
            .map(|s| s.start)
            .filter(|&s| s > start)
    }

    /// Fills `set` with the rules that match anchored at `start`.
    fn matching_at(&self, hay: &[u8], start: usize, set: &mut PatternSet) {
        set.clear();
        let input = Input::new(hay)
            .span(start..hay.len())
            .anchored(Anchored::Yes);
        self.candidates.which_overlapping_matches(&input, set);
    }

    /// Calls `found` with each finding in `hay` (rule index and span), in order of
    /// position; findings do not overlap.
    pub(crate) fn each(&self, hay: &[u8], mut found: impl FnMut(&'static str, Kind, Verdict)) {
        let mut caps: Vec<Option<Captures>> = Vec::new();
        caps.resize_with(self.rules.len(), || None);
        let mut set = PatternSet::new(self.pattern_rule.len().max(1));
        let mut verdicts: Vec<(usize, Verdict)> = Vec::new();
        let mut pos = 0;
        while pos < hay.len() && !self.pattern_rule.is_empty() {
            let input = Input::new(hay).span(pos..hay.len());
            let Some(m) = self.combined.search(&input) else {
                break;
            };
            let start = m.start();
            let first = self.pattern_rule[m.pattern().as_usize()];
            match self.try_at(hay, start, first, &mut caps, &mut set) {
                Ok((i, verdict)) => {
                    verdicts.push((i, verdict));
                    pos = verdict.end.max(start + 1);
                }
                // Nothing here. An assignment that is not a secret may assign one a specific
                // rule knows (`api_key = AKIA...`): the search goes on from its value;
                // anything else is passed whole, so no byte is searched twice over.
                Err(value) => pos = value.unwrap_or(m.end()).max(start + 1),
            }
        }
        if let Some(email) = self.email {
            let ordered = verdicts.is_empty();
            for at in memchr::memchr_iter(b'@', hay) {
                let Some(start) = email_start(hay, at) else {
                    continue;
                };
                if let Some(verdict) = self.run_rule(email, hay, start, &mut caps) {
                    verdicts.push((email, verdict));
                }
            }
            if !ordered {
                verdicts.sort_by_key(|(_, v)| v.start);
            }
        }
        // In order, none overlapping the one before (the earlier start wins).
        let mut end = 0;
        for (i, verdict) in verdicts {
            if verdict.start < end {
                continue;
            }
            end = verdict.end;
            let rule = &self.rules[i];
            found(rule.id, rule.kind, verdict);
        }
    }

    /// Every finding in `hay`, with line numbers counted from its start.
    pub fn find(&self, hay: &[u8]) -> Vec<Finding> {
        crate::scan::findings_in(self, hay, 0, 1)
    }

    /// `data` with every finding replaced by `[REDACTED:kind]`.
    pub fn redact(&self, data: &[u8]) -> Redacted {
        let findings = self.find(data);
        let spans = findings
            .iter()
            .map(|f| (f.start as usize, f.end as usize, f.kind));
        Redacted {
            data: replace_spans(data, spans, ("[REDACTED:", "]")),
            findings,
        }
    }
}

/// `data` with each span (in order, not overlapping) replaced by `open`, the kind, `close`.
pub(crate) fn replace_spans(
    data: &[u8],
    spans: impl Iterator<Item = (usize, usize, Kind)>,
    (open, close): (&str, &str),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0usize;
    for (start, end, kind) in spans {
        out.extend_from_slice(&data[at..start]);
        out.extend_from_slice(open.as_bytes());
        out.extend_from_slice(kind.as_str().as_bytes());
        out.extend_from_slice(close.as_bytes());
        at = end;
    }
    out.extend_from_slice(&data[at..]);
    out
}

/// Where the e-mail address whose `@` is at `at` would begin: at most 64 characters of
/// its local part back, at a word boundary as the rule's `\b` asks; `None` when there is
/// no local part.
fn email_start(hay: &[u8], at: usize) -> Option<usize> {
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut start = at;
    while start > 0 && at - start < 64 && local(hay[start - 1]) {
        start -= 1;
    }
    // The boundary: a word character may not follow another one.
    while start < at && start > 0 && word(hay[start]) && word(hay[start - 1]) {
        start += 1;
    }
    (start < at).then_some(start)
}

/// How many findings of each kind: what a policy may see of them.
pub fn counts(findings: &[Finding]) -> BTreeMap<Kind, u64> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.kind).or_insert(0) += 1;
    }
    counts
}
