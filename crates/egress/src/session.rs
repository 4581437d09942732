//! What one session (one `cordon exec`, one `cordon proxy`) has done: bytes sent and
//! connections per host, and the names asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exfil::{NameScore, SubdomainWindow};

/// Per-session accounting, shared by every connection of a proxy.
#[derive(Debug)]
pub struct Session {
    state: Mutex<State>,
    upload_window: Duration,
}

#[derive(Debug)]
struct State {
    hosts: HashMap<String, HostUsage>,
    budgets: HashMap<String, Budget>,
    names: SubdomainWindow,
}

#[derive(Debug, Default)]
struct HostUsage {
    connections: VecDeque<Instant>,
}

/// Bytes sent to one registrable domain in the current window.
#[derive(Debug)]
struct Budget {
    sent: Arc<AtomicU64>,
    since: Instant,
}

const MINUTE: Duration = Duration::from_secs(60);

/// How long an upload budget lasts before it refills.
pub const UPLOAD_WINDOW: Duration = Duration::from_secs(3600);

/// What an upload budget is counted against: the registrable domain of a name under the
/// ICANN part of the public suffix list (one budget for `a.example.co.uk` and
/// `b.example.co.uk`, and one for every `*.githubusercontent.com`, whose private-section entry
/// would otherwise give each subdomain a fresh one); an address as itself.
pub fn budget_key(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_owned();
    }
    let host = host.trim_end_matches('.');
    let starts: Vec<usize> = std::iter::once(0)
        .chain(host.match_indices('.').map(|(i, _)| i + 1))
        .collect();
    for (n, &start) in starts.iter().enumerate() {
        let tail = &host[start..];
        let icann_suffix = psl::suffix(tail.as_bytes())
            .is_some_and(|suffix| suffix.typ() == Some(psl::Type::Icann) && suffix == tail);
        if icann_suffix {
            return match n.checked_sub(1) {
                Some(previous) => host[starts[previous]..].to_owned(),
                None => host.to_owned(),
            };
        }
    }
    host.to_owned()
}

impl Session {
    /// An empty session counting subdomains over `window`, with upload budgets that refill
    /// every `upload_window`.
    pub fn new(window: Duration, upload_window: Duration) -> Self {
        Self {
            upload_window,
            state: Mutex::new(State {
                hosts: HashMap::new(),
                budgets: HashMap::new(),
                names: SubdomainWindow::new(window),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut state)
    }

    pub(crate) fn score_name(&self, name: &str) -> NameScore {
        self.with(|s| s.names.score(name))
    }

    /// Bytes sent to `host`'s registrable domain in the current window, and connections to
    /// `host` in the last minute.
    pub(crate) fn usage(&self, host: &str) -> (u64, u64) {
        let sent = self.sent_counter(host).load(Ordering::Relaxed);
        self.with(|s| match s.hosts.get_mut(host) {
            Some(usage) => {
                let now = Instant::now();
                while usage
                    .connections
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > MINUTE)
                {
                    usage.connections.pop_front();
                }
                (sent, usage.connections.len() as u64)
            }
            None => (sent, 0),
        })
    }

    pub(crate) fn note_connection(&self, host: &str) {
        self.with(|s| {
            s.hosts
                .entry(host.to_owned())
                .or_default()
                .connections
                .push_back(Instant::now())
        });
    }

    /// The counter of bytes sent to `host`'s registrable domain in the current window; a
    /// window that has passed starts a new one at zero (connections still open keep counting
    /// against the one they started in).
    pub(crate) fn sent_counter(&self, host: &str) -> Arc<AtomicU64> {
        let key = budget_key(host);
        self.with(|s| {
            let now = Instant::now();
            let budget = s.budgets.entry(key).or_insert_with(|| Budget {
                sent: Arc::new(AtomicU64::new(0)),
                since: now,
            });
            if now.duration_since(budget.since) >= self.upload_window {
                budget.sent = Arc::new(AtomicU64::new(0));
                budget.since = now;
            }
            Arc::clone(&budget.sent)
        })
    }

    /// How long until the upload budget of `host`'s registrable domain refills.
    pub(crate) fn refills_in(&self, host: &str) -> Duration {
        let key = budget_key(host);
        self.with(|s| match s.budgets.get(&key) {
            Some(budget) => self.upload_window.saturating_sub(budget.since.elapsed()),
            None => Duration::ZERO,
        })
    }

    /// A refusal for a used-up upload budget: what, for which domain, and when it refills.
    pub(crate) fn budget_refusal(&self, host: &str, budget: u64, what: &str) -> String {
        let key = budget_key(host);
        let wait = self.refills_in(host).as_secs();
        let at = chrono::Utc::now() + chrono::Duration::seconds(wait as i64);
        format!(
            "upload budget of {budget} bytes to `{key}` (with its subdomains) used up; {what}; it refills at {} (in {}m{:02}s)",
            at.format("%H:%M:%SZ"),
            wait / 60,
            wait % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_kept_per_registrable_domain() {
        assert_eq!(budget_key("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(
            budget_key("x1.githubusercontent.com"),
            "githubusercontent.com"
        );
        assert_eq!(budget_key("example.org"), "example.org");
        assert_eq!(budget_key("127.0.0.1"), "127.0.0.1");
        assert_eq!(budget_key("::1"), "::1");
        let session = Session::new(Duration::from_secs(60), UPLOAD_WINDOW);
        session
            .sent_counter("a.example.com")
            .fetch_add(10, Ordering::Relaxed);
        session
            .sent_counter("b.example.com")
            .fetch_add(5, Ordering::Relaxed);
        assert_eq!(session.usage("c.example.com").0, 15);
        assert_eq!(session.usage("example.net").0, 0);
        assert!(session.refills_in("example.com") > Duration::from_secs(3590));
    }
}
