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
}

#[derive(Debug)]
struct State {
    hosts: HashMap<String, HostUsage>,
    names: SubdomainWindow,
}

#[derive(Debug, Default)]
struct HostUsage {
    sent: Arc<AtomicU64>,
    connections: VecDeque<Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Session {
    /// An empty session counting subdomains over `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                hosts: HashMap::new(),
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

    /// Bytes sent to `host` so far, and connections to it in the last minute.
    pub(crate) fn usage(&self, host: &str) -> (u64, u64) {
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
                (
                    usage.sent.load(Ordering::Relaxed),
                    usage.connections.len() as u64,
                )
            }
            None => (0, 0),
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

    /// The counter of bytes sent to `host` in this session.
    pub(crate) fn sent_counter(&self, host: &str) -> Arc<AtomicU64> {
        self.with(|s| Arc::clone(&s.hosts.entry(host.to_owned()).or_default().sent))
    }
}
