//! Host names as a data channel: long or random-looking labels, and many distinct
//! subdomains of one parent in a short time, are how data leaves through names.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// What a host name looks like, for the policy (`input.resource.exfil`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NameScore {
    /// The longest label, in bytes.
    pub longest_label: usize,
    /// Shannon entropy of the longest label, in bits per character.
    pub entropy: f64,
    /// Distinct subdomains of the same parent (last two labels) asked for in the window.
    pub unique_subdomains: usize,
}

fn entropy(label: &str) -> f64 {
    if label.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for b in label.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = label.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Counts distinct subdomains per parent domain over a sliding window.
#[derive(Debug)]
pub struct SubdomainWindow {
    window: Duration,
    seen: HashMap<String, VecDeque<(Instant, String)>>,
}

impl SubdomainWindow {
    /// A window of `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: HashMap::new(),
        }
    }

    /// Notes `name` and scores it.
    pub fn score(&mut self, name: &str) -> NameScore {
        let labels: Vec<&str> = name.split('.').collect();
        let longest = labels.iter().copied().max_by_key(|l| l.len()).unwrap_or("");
        let parent = labels
            .iter()
            .rev()
            .take(2)
            .rev()
            .copied()
            .collect::<Vec<_>>()
            .join(".");
        let now = Instant::now();
        let entries = self.seen.entry(parent).or_default();
        while entries
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            entries.pop_front();
        }
        entries.push_back((now, name.to_owned()));
        let unique: HashSet<&str> = entries.iter().map(|(_, n)| n.as_str()).collect();
        NameScore {
            longest_label: longest.len(),
            entropy: entropy(longest),
            unique_subdomains: unique.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_labels_score_high_and_subdomains_are_counted() {
        let mut window = SubdomainWindow::new(Duration::from_secs(60));
        let plain = window.score("api.github.com");
        assert_eq!(plain.longest_label, 6);
        assert!(plain.entropy < 3.0);
        let encoded = window.score("mzxw6ytboi4dcnrqgazdgnbvgy3tqojqgezdgnbvgy3tqojq.evil.example");
        assert!(encoded.longest_label > 40);
        assert!(encoded.entropy > 3.0);
        for i in 0..10 {
            window.score(&format!("chunk{i}.evil.example"));
        }
        assert_eq!(window.score("chunk0.evil.example").unique_subdomains, 11);
    }
}
