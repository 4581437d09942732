//! Consent: a person decides what the policy asks about, and the agent cannot answer for
//! them.
//!
//! A surface whose decision allows only with a `consent` obligation asks the session's
//! [`Broker`]: the broker answers at once from an earlier answer that covers the request
//! (this session, a number of minutes, or remembered for always), and otherwise lists the
//! request as pending, hands it to the session's prompters (the terminal cordon holds, a
//! desktop notification) and waits for the first answer from any of them or from the
//! control socket (`cordon approve`). No answer within the timeout is a denial. A burst of
//! identical requests waits on one question.
//!
//! Every question, answer, timeout and remembered answer is recorded in the audit log
//! (capability `consent`), with who answered and through which backend.

pub mod mfa;
pub mod notify;
mod private;
pub mod remembered;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use cordon_types::{Decision, Outcome};
use serde::Serialize;
use serde_json::{json, Value};

pub use mfa::MfaStore;
pub use remembered::RememberedFile;

/// Requests waiting for an answer at once, per session; more are denied.
pub const MAX_PENDING: usize = 16;
/// How long an answer is waited for when the policy and the configuration say nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait a policy may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Wrong codes a question takes before it is denied.
const CODE_ATTEMPTS: u32 = 3;
/// Wrong codes a session takes in [`WRONG_CODE_WINDOW`] before it takes no more for a while.
const WRONG_CODES: usize = 5;
const WRONG_CODE_WINDOW: Duration = Duration::from_secs(300);
/// How long a "once" answer given while a name was resolved covers the connection that
/// follows.
const PASS_LIFETIME: Duration = Duration::from_secs(30);

/// Who answers a session's questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The terminal cordon itself holds (the program has a pty of its own).
    Terminal,
    /// The session's control socket: `cordon approve`, or any UI speaking the protocol.
    Socket,
    /// A desktop notification with actions.
    Notify,
    /// Every question answered yes at once (tests and demos; must be asked for).
    Allow,
    /// Every question answered no at once: the headless default.
    Deny,
}

impl Backend {
    /// Its name in configuration, flags and records.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Terminal => "terminal",
            Backend::Socket => "socket",
            Backend::Notify => "notify",
            Backend::Allow => "allow",
            Backend::Deny => "deny",
        }
    }
}

/// The backends of a session, as chosen by `--consent` or `[consent] backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends(Vec<Backend>);

impl Backends {
    /// Reads `auto`, `deny`, `allow`, or a comma-separated list of `terminal`, `socket` and
    /// `notify`. `auto` is the terminal when cordon holds one (`terminal_available`), else
    /// `deny`. With an interactive backend, pending requests are also listed on the control
    /// socket, so `cordon approve` can answer them from another terminal.
    ///
    /// # Errors
    ///
    /// An unknown name, or `allow`/`deny` mixed with others.
    pub fn parse(text: &str, terminal_available: bool) -> Result<Self, String> {
        Self::parse_with(text, terminal_available, false)
    }

    /// As [`Backends::parse`], where `session_bus` says whether a session bus is configured
    /// (`DBUS_SESSION_BUS_ADDRESS`): `auto` then adds desktop notifications.
    ///
    /// # Errors
    ///
    /// As [`Backends::parse`].
    pub fn parse_with(
        text: &str,
        terminal_available: bool,
        session_bus: bool,
    ) -> Result<Self, String> {
        let names: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let mut backends = Vec::new();
        for name in &names {
            let backend = match *name {
                "auto" if session_bus => {
                    if terminal_available {
                        backends.push(Backend::Terminal);
                    }
                    Backend::Notify
                }
                "auto" if terminal_available => Backend::Terminal,
                "auto" | "deny" => Backend::Deny,
                "terminal" => Backend::Terminal,
                "socket" => Backend::Socket,
                "notify" => Backend::Notify,
                "allow" => Backend::Allow,
                other => {
                    return Err(format!(
                        "unknown consent backend `{other}`: expected auto, terminal, socket, notify, deny or allow"
                    ))
                }
            };
            if !backends.contains(&backend) {
                backends.push(backend);
            }
        }
        if backends.is_empty() {
            backends.push(Backend::Deny);
        }
        let fixed = backends
            .iter()
            .any(|b| matches!(b, Backend::Allow | Backend::Deny));
        if fixed && backends.len() > 1 {
            return Err(format!(
                "consent backend `{text}`: `allow` and `deny` answer alone; they cannot be combined"
            ));
        }
        if backends.contains(&Backend::Terminal) && !terminal_available {
            return Err(
                "consent backend `terminal`: cordon holds no terminal here (standard input and error must be one)"
                    .into(),
            );
        }
        if backends
            .iter()
            .any(|b| matches!(b, Backend::Terminal | Backend::Notify))
            && !backends.contains(&Backend::Socket)
        {
            backends.push(Backend::Socket);
        }
        Ok(Self(backends))
    }

    /// The backends, in order.
    pub fn list(&self) -> &[Backend] {
        &self.0
    }

    /// Whether a person can be asked.
    pub fn interactive(&self) -> bool {
        self.0
            .iter()
            .any(|b| matches!(b, Backend::Terminal | Backend::Socket | Backend::Notify))
    }

    /// What the policy sees as `input.context.consent`.
    pub fn context(&self) -> Value {
        json!({
            "interactive": self.interactive(),
            "backends": self.0.iter().map(|b| b.name()).collect::<Vec<_>>(),
        })
    }
}

/// How far an answer reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This request only.
    Once,
    /// Every identical request of this session.
    Session,
    /// Every identical request of this session for this many minutes.
    Minutes(u64),
    /// Every identical request from now on, in every session (remembered in a file the
    /// policy reads; allowances only).
    Always,
}

impl Scope {
    /// Reads `once`, `session`, `always`, or minutes as `10m`, `minutes:10` or `10`.
    ///
    /// # Errors
    ///
    /// Anything else, or zero or more than a day of minutes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let minutes = text
            .strip_suffix('m')
            .or_else(|| text.strip_prefix("minutes:"))
            .unwrap_or(text);
        match text {
            "once" => Ok(Scope::Once),
            "session" => Ok(Scope::Session),
            "always" => Ok(Scope::Always),
            _ => match minutes.parse::<u64>() {
                Ok(n @ 1..=1440) => Ok(Scope::Minutes(n)),
                _ => Err(format!(
                    "`{text}` is not a scope: once, session, always, or minutes such as 10m (1 to 1440)"
                )),
            },
        }
    }

    /// The kind, as policies offer scopes: `once`, `session`, `minutes`, `always`.
    pub fn kind(self) -> &'static str {
        match self {
            Scope::Once => "once",
            Scope::Session => "session",
            Scope::Minutes(_) => "minutes",
            Scope::Always => "always",
        }
    }

    /// As written in answers and records: `once`, `session`, `10m`, `always`.
    pub fn text(self) -> String {
        match self {
            Scope::Minutes(n) => format!("{n}m"),
            other => other.kind().to_owned(),
        }
    }
}

/// What a surface asks the person about.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The capability decided (`net`).
    pub capability: String,
    /// The action decided (`connect`).
    pub action: String,
    /// What the answer covers, the same for every request it covers: `net:example.com:443`.
    /// An "always" answer is remembered under it (the policy reads it as
    /// `data.cordon.remembered.net["example.com:443"]`).
    pub key: String,
    /// One line for the person: `connect to example.com:443`.
    pub what: String,
    /// The policy's reasons.
    pub why: Vec<String>,
    /// The policy's question, if it wrote one.
    pub message: Option<String>,
    /// The scopes the policy offers (all when empty).
    pub scopes: Vec<String>,
    /// How long the policy lets the person think.
    pub timeout: Option<Duration>,
    /// An `mfa` obligation: the answer needs a one-time code from the person's
    /// authenticator, unless one was accepted within `max_age_s` (`Some(None)`: always a
    /// new code).
    pub mfa: Option<Option<u64>>,
    /// Only a person may answer (the decision asks for a code too, even where a recent code
    /// stands in for it): never the `allow` backend.
    pub person: bool,
}

/// The answer to an [`Ask`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Whether the action may proceed.
    pub allow: bool,
    /// How far the answer reaches (`once`, `session`, `10m`, `always`), when a person gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Who answered: `terminal`, `socket (pid 123, cordon)`, `earlier answer`, `timeout`...
    pub by: String,
    /// Why, in words.
    pub reason: String,
    /// The pending request's id, when the person was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

impl Answer {
    fn deny(by: &str, reason: impl Into<String>, request: Option<&str>) -> Self {
        Self {
            allow: false,
            scope: None,
            by: by.to_owned(),
            reason: reason.into(),
            request: request.map(str::to_owned),
        }
    }
}

pub use cordon_types::printable;

/// What a decision's `consent` and `mfa` obligations are about, as the surface carrying
/// them out names it.
#[derive(Debug, Clone)]
pub struct About<'a> {
    /// The capability decided.
    pub capability: &'a str,
    /// What an answer covers when the obligation names no `key`.
    pub key: String,
    /// One line for the person.
    pub what: String,
}

/// Carries out the `consent` and `mfa` obligations of an allowance that is not recorded yet:
/// asks `broker` for each (a code with `mfa`), and denies on anything but yes. The answers
/// go into the record (`input.consent`). `then` sees each question and its answer.
pub fn carry_out(
    broker: &Arc<Broker>,
    decided: crate::Unrecorded,
    about: &About<'_>,
    mut then: impl FnMut(&Ask, &Answer),
) -> crate::Unrecorded {
    let decision = decided.decision();
    if !decision.allow {
        return decided;
    }
    let action = decided
        .input()
        .and_then(|input| input["action"].as_str())
        .unwrap_or_default()
        .to_owned();
    let mfa = decision.obligations.iter().find_map(|o| match o {
        cordon_types::Obligation::Mfa { max_age_s } => Some(*max_age_s),
        _ => None,
    });
    let mut asks: Vec<Ask> = decision
        .obligations
        .iter()
        .filter_map(|o| match o {
            cordon_types::Obligation::Consent {
                message,
                scopes,
                timeout_s,
                key,
            } => Some(Ask {
                capability: about.capability.to_owned(),
                action: action.clone(),
                key: key.clone().unwrap_or_else(|| about.key.clone()),
                what: about.what.clone(),
                why: decision.reasons.clone(),
                message: message.clone(),
                scopes: scopes.clone(),
                timeout: timeout_s.map(Duration::from_secs),
                mfa: None,
                person: mfa.is_some(),
            }),
            _ => None,
        })
        .collect();
    // A code accepted recently enough stands in for a new one (never for the consent
    // questions themselves); it is recorded.
    let mut answers = Vec::new();
    let mfa = match mfa {
        Some(Some(age)) if broker.code_fresh(about, age) => {
            answers.push(Answer {
                allow: true,
                scope: None,
                by: "mfa session".into(),
                reason: format!("a one-time code was accepted within the last {age} s"),
                request: None,
            });
            None
        }
        other => other,
    };
    // A code proves consent too: with `mfa`, the first question asks for one.
    if let Some(max_age) = mfa {
        match asks.first_mut() {
            Some(first) => first.mfa = Some(max_age),
            None => asks.push(Ask {
                capability: about.capability.to_owned(),
                action: action.clone(),
                key: about.key.clone(),
                what: about.what.clone(),
                why: decision.reasons.clone(),
                message: None,
                scopes: Vec::new(),
                timeout: None,
                mfa: Some(max_age),
                person: true,
            }),
        }
    }
    let mut refusal = None;
    for ask in &asks {
        let answer = broker.ask(ask);
        then(ask, &answer);
        let allowed = answer.allow;
        if !allowed {
            refusal = Some(answer.reason.clone());
        }
        answers.push(answer);
        if !allowed {
            break;
        }
    }
    let mut decided = match refusal {
        Some(reason) => decided.deny(&reason),
        None => decided,
    };
    if let Some(input) = decided.input_mut() {
        input["consent"] = match answers.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
    }
    decided
}

/// A request waiting for an answer, as the control socket lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingRequest {
    /// Its id: what an answer names.
    pub id: String,
    /// The session asking.
    pub session: String,
    /// The capability decided.
    pub capability: String,
    /// The action decided.
    pub action: String,
    /// What an answer covers.
    pub key: String,
    /// One line for the person.
    pub what: String,
    /// The policy's reasons.
    pub why: Vec<String>,
    /// The policy's question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The scopes an answer may take.
    pub scopes: Vec<String>,
    /// Whether an allowing answer must carry a one-time code (`mfa`).
    pub code: bool,
    /// When it was asked, RFC 3339.
    pub asked: String,
    /// Seconds left before it is denied for want of an answer.
    pub expires_in_s: u64,
    #[serde(skip)]
    deadline: Instant,
}

impl PendingRequest {
    /// How long it still waits for an answer.
    pub fn expires_in(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn refresh(&mut self) {
        self.expires_in_s = self
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs();
    }
}

/// Records what the broker does (a session writes it to the audit log, capability
/// `consent`): `action` is `prompt`, `answer`, `timeout` or `remember`.
pub type Recorder = Box<dyn Fn(&str, Value, Decision, Outcome) -> Result<(), String> + Send + Sync>;

/// Shows a pending request to a person and answers it through [`Broker::answer`].
pub trait Prompter: Send + Sync {
    /// Shows `request`; must not block (a prompter waits on threads of its own).
    fn prompt(&self, request: &PendingRequest, broker: Weak<Broker>);
    /// `id` was answered elsewhere or timed out: stop showing it.
    fn withdraw(&self, id: &str);
}

/// A pending request's answer, when it comes.
#[derive(Default)]
struct Slot {
    answer: Mutex<Option<Answer>>,
    ready: Condvar,
}

impl Slot {
    fn set(&self, answer: Answer) -> bool {
        let Ok(mut slot) = self.answer.lock() else {
            return false;
        };
        if slot.is_some() {
            return false;
        }
        *slot = Some(answer);
        self.ready.notify_all();
        true
    }

    fn wait_until(&self, deadline: Instant) -> Option<Answer> {
        let mut slot = self.answer.lock().ok()?;
        loop {
            if let Some(answer) = slot.as_ref() {
                return Some(answer.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            slot = self.ready.wait_timeout(slot, left).ok()?.0;
        }
    }
}

/// A caller's place in a pending request: the request, its answer's slot, and whether this
/// caller made it (or joined it).
struct Queued {
    request: PendingRequest,
    slot: Arc<Slot>,
    created: bool,
}

struct Waiting {
    request: PendingRequest,
    slot: Arc<Slot>,
    /// Wrong codes given for it.
    wrong_codes: u32,
    /// Its question is recorded: only then is it listed and may it be answered.
    listed: bool,
}

/// An earlier answer that covers later identical requests.
struct Grant {
    allow: bool,
    until: Option<Instant>,
    scope: String,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<String, Waiting>,
    grants: HashMap<String, Grant>,
    passes: HashMap<String, Instant>,
    wrong_codes: std::collections::VecDeque<Instant>,
    /// The session is over: nothing more is asked.
    closed: bool,
}

/// A session's consent broker.
pub struct Broker {
    session: String,
    backends: Backends,
    timeout: Duration,
    remembered: Option<RememberedFile>,
    mfa: std::sync::OnceLock<MfaStore>,
    /// The person asked to be asked nothing more in this session: every question is denied.
    muted: std::sync::atomic::AtomicBool,
    recorder: Option<Recorder>,
    prompters: Mutex<Vec<Arc<dyn Prompter>>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("session", &self.session)
            .field("backends", &self.backends)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker for `session`, asking through `backends`, waiting `timeout` unless a policy
    /// says otherwise, remembering "always" answers in `remembered` and recording through
    /// `recorder`.
    pub fn new(
        session: impl Into<String>,
        backends: Backends,
        timeout: Duration,
        remembered: Option<RememberedFile>,
        recorder: Option<Recorder>,
    ) -> Arc<Self> {
        Arc::new(Self {
            session: session.into(),
            backends,
            timeout: timeout.min(MAX_TIMEOUT),
            remembered,
            mfa: std::sync::OnceLock::new(),
            muted: std::sync::atomic::AtomicBool::new(false),
            recorder,
            prompters: Mutex::new(Vec::new()),
            state: Mutex::new(State::default()),
        })
    }

    /// Whether a one-time code was accepted within the last `max_age_s` seconds (an `mfa`
    /// obligation's `max_age_s`); recorded when it stands in for a new code.
    pub fn code_fresh(&self, about: &About<'_>, max_age_s: u64) -> bool {
        let fresh = self
            .mfa
            .get()
            .is_some_and(|store| store.fresh(max_age_s, mfa::now()));
        if fresh {
            let input = json!({
                "consent": {"capability": about.capability, "key": about.key, "what": about.what},
                "mfa": {"max_age_s": max_age_s, "by": "mfa session"},
            });
            let allowed = Decision {
                allow: true,
                reasons: vec![format!(
                    "a one-time code accepted within the last {max_age_s} s stands in for a new one"
                )],
                obligations: Vec::new(),
                grants: None,
            };
            if let Err(why) = self.record("mfa_session", input, allowed, Outcome::Performed) {
                tracing::warn!("cannot record that a recent code was used: {why}");
                return false;
            }
        }
        fresh
    }

    /// Checks one-time codes against `store` (`mfa` obligations); without one, an `mfa`
    /// obligation is a denial. Set once: a later store is ignored.
    pub fn set_mfa(&self, store: MfaStore) {
        let _ = self.mfa.set(store);
    }

    /// Adds a prompter: every request asked from now on is shown by it too.
    pub fn add_prompter(&self, prompter: Arc<dyn Prompter>) {
        if let Ok(mut prompters) = self.prompters.lock() {
            prompters.push(prompter);
        }
    }

    /// The backends answering.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Asks, and waits for the answer (up to the timeout). Never fails: whatever goes wrong
    /// is a denial saying why.
    pub fn ask(self: &Arc<Self>, ask: &Ask) -> Answer {
        if let Some(answer) = self.take_pass(&pass_key(ask)) {
            return answer;
        }
        if let Some(answer) = self.muted() {
            return answer;
        }
        if ask.mfa.is_some() {
            if self.mfa.get().is_none_or(|s| !s.enrolled()) {
                return Answer::deny(
                    "cordon",
                    "the policy requires a one-time code (mfa) and no authenticator is enrolled; run `cordon mfa enroll`",
                    None,
                );
            }
            if self.backends.list() == [Backend::Allow] {
                return Answer::deny(
                    "allow backend",
                    "a one-time code (mfa) cannot be answered by the `allow` backend; a person must type it",
                    None,
                );
            }
        } else if let Some(answer) = self.earlier(&ask.key) {
            return answer;
        }
        match self.backends.list() {
            [Backend::Allow] if ask.person => {
                return Answer::deny(
                    "allow backend",
                    "the policy asks for a one-time code here, so only a person may answer; not the `allow` backend",
                    None,
                )
            }
            [Backend::Allow] => {
                return Answer {
                    allow: true,
                    scope: Some("once".into()),
                    by: "allow backend".into(),
                    reason: "every question is answered yes (consent backend `allow`)".into(),
                    request: None,
                }
            }
            [Backend::Deny] => {
                return Answer::deny(
                    "deny backend",
                    "no one to ask: this session answers every question no (consent backend `deny`, the default without a terminal); run with `--consent terminal` in a terminal, or `--consent socket` and answer with `cordon approve`",
                    None,
                )
            }
            _ => {}
        }
        loop {
            let Queued {
                request,
                slot,
                created,
            } = match self.enqueue(ask) {
                Ok(queued) => queued,
                Err(answer) => return answer,
            };
            let id = request.id.clone();
            if created {
                let input = self.record_input(&request, None);
                let asked = Decision::deny("waiting for the person's answer");
                if let Err(why) = self.record("prompt", input, asked, Outcome::Evaluated) {
                    let answer = Answer::deny(
                        "cordon",
                        format!("denied because the question could not be recorded ({why})"),
                        Some(&id),
                    );
                    self.resolve(&id, answer.clone());
                    return answer;
                }
                if let Ok(mut state) = self.state.lock() {
                    if let Some(waiting) = state.pending.get_mut(&id) {
                        waiting.listed = true;
                    }
                }
                let prompters = self.prompters.lock().map(|p| p.clone()).unwrap_or_default();
                for prompter in prompters {
                    prompter.prompt(&request, Arc::downgrade(self));
                }
            }
            if let Some(answer) = slot.wait_until(request.deadline) {
                // A "once" answer was for the request that asked; one that joined it asks
                // again (a denial, and any wider answer, covers them all).
                if !created && answer.allow && answer.scope.as_deref() == Some("once") {
                    continue;
                }
                return answer;
            }
            let timeout = Answer::deny(
                "timeout",
                format!(
                    "no answer within {} s; denied",
                    self.timeout_for(ask).as_secs()
                ),
                Some(&id),
            );
            if self.resolve(&id, timeout.clone()) {
                let input = self.record_input(&request, Some(&timeout));
                let refused = Decision::deny(&timeout.reason);
                if let Err(why) = self.record("timeout", input, refused, Outcome::Refused) {
                    tracing::warn!("cannot record a consent timeout: {why}");
                }
            }
            // Claimed by an answer being recorded meanwhile: its outcome, shortly.
            return slot
                .wait_until(Instant::now() + Duration::from_secs(10))
                .unwrap_or(timeout);
        }
    }

    /// The denial of every question once the person stopped them all (see [`Broker::mute`]).
    fn muted(&self) -> Option<Answer> {
        self.muted
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| {
                Answer::deny(
                    "earlier answer",
                    "the person stopped all questions of this session; denied without asking",
                    None,
                )
            })
    }

    /// The one-time pass for `key`, used up, if one was given within its lifetime.
    fn take_pass(&self, key: &str) -> Option<Answer> {
        let given = self.state.lock().ok()?.passes.remove(key)?;
        (given.elapsed() < PASS_LIFETIME).then(|| Answer {
            allow: true,
            scope: Some("once".into()),
            by: "earlier answer".into(),
            reason: "allowed once by the person, for this connection".into(),
            request: None,
        })
    }

    /// The answer of an earlier question that covers `key` (for the session or for some
    /// minutes), if any.
    fn earlier(&self, key: &str) -> Option<Answer> {
        let mut state = self.state.lock().ok()?;
        let now = Instant::now();
        let grant = state.grants.get(key)?;
        if grant.until.is_some_and(|until| now >= until) {
            state.grants.remove(key);
            return None;
        }
        let verb = if grant.allow { "allowed" } else { "denied" };
        Some(Answer {
            allow: grant.allow,
            scope: Some(grant.scope.clone()),
            by: "earlier answer".into(),
            reason: format!("{verb} by the person earlier (for {})", grant.scope),
            request: None,
        })
    }

    /// Lets the next request asked like `ask` (same key, and a code needed or not alike)
    /// through once, within 30 s: a connection whose name was allowed once when it was
    /// resolved.
    pub fn pass(&self, ask: &Ask) {
        if let Ok(mut state) = self.state.lock() {
            state
                .passes
                .retain(|_, given| given.elapsed() < PASS_LIFETIME);
            if state.passes.len() < 1024 {
                state.passes.insert(pass_key(ask), Instant::now());
            }
        }
    }

    fn timeout_for(&self, ask: &Ask) -> Duration {
        ask.timeout.unwrap_or(self.timeout).min(MAX_TIMEOUT)
    }

    /// Joins the pending request for the same key, or makes a new one.
    fn enqueue(&self, ask: &Ask) -> Result<Queued, Answer> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Answer::deny("cordon", "the consent broker failed", None))?;
        // Checked again here, where `deny_all` takes what waits: a question cannot slip in
        // between.
        if state.closed {
            return Err(Answer::deny(
                "cordon",
                "the session is over; denied without asking",
                None,
            ));
        }
        if let Some(answer) = self.muted() {
            return Err(answer);
        }
        // Only the same question is joined: the same key, a code needed or not alike, the
        // same scopes and message (a request that needs a code never rides on an answer
        // given without one).
        let same = |w: &Waiting| {
            w.request.key == ask.key
                && w.request.code == ask.mfa.is_some()
                && w.request.message == ask.message
                && (ask.scopes.is_empty() || w.request.scopes == ask.scopes)
        };
        if let Some(waiting) = state.pending.values().find(|w| same(w)) {
            return Ok(Queued {
                request: waiting.request.clone(),
                slot: Arc::clone(&waiting.slot),
                created: false,
            });
        }
        if state.pending.len() >= MAX_PENDING {
            return Err(Answer::deny(
                "cordon",
                format!(
                    "{MAX_PENDING} questions already wait for an answer; denied without asking"
                ),
                None,
            ));
        }
        let request = self.request_for(ask, new_id());
        let slot = Arc::new(Slot::default());
        state.pending.insert(
            request.id.clone(),
            Waiting {
                request: request.clone(),
                slot: Arc::clone(&slot),
                wrong_codes: 0,
                listed: false,
            },
        );
        Ok(Queued {
            request,
            slot,
            created: true,
        })
    }

    fn request_for(&self, ask: &Ask, id: String) -> PendingRequest {
        let timeout = self.timeout_for(ask);
        // A code proves the person now: it is good for this request only.
        let scopes: Vec<String> = if ask.mfa.is_some() {
            vec!["once".to_owned()]
        } else if ask.scopes.is_empty() {
            ["once", "session", "minutes", "always"]
                .into_iter()
                .map(str::to_owned)
                .collect()
        } else {
            ask.scopes.clone()
        };
        PendingRequest {
            id,
            session: self.session.clone(),
            capability: ask.capability.clone(),
            action: ask.action.clone(),
            key: ask.key.clone(),
            what: ask.what.clone(),
            why: ask.why.clone(),
            message: ask.message.clone(),
            scopes,
            code: ask.mfa.is_some(),
            asked: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires_in_s: timeout.as_secs(),
            deadline: Instant::now() + timeout,
        }
    }

    /// Gives pending request `id` its answer (the first one wins) and withdraws it from the
    /// prompters; whether this was the first.
    fn resolve(&self, id: &str, answer: Answer) -> bool {
        let waiting = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.pending.remove(id));
        let Some(waiting) = waiting else {
            return false;
        };
        self.settle(id, &waiting, answer);
        true
    }

    /// The requests waiting for an answer, oldest first.
    pub fn pending(&self) -> Vec<PendingRequest> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        let mut listed: Vec<PendingRequest> = state
            .pending
            .values()
            .filter(|w| w.listed)
            .map(|w| {
                let mut request = w.request.clone();
                request.refresh();
                request
            })
            .collect();
        listed.sort_by_key(|r| r.deadline);
        listed
    }

    /// Answers pending request `id`, as `by` (which backend, and who).
    ///
    /// # Errors
    ///
    /// An unknown or expired id, a scope the policy does not offer, "always" for a denial
    /// (a standing denial belongs in the policy).
    pub fn answer(
        &self,
        id: &str,
        allow: bool,
        scope: Scope,
        by: &str,
        code: Option<&str>,
    ) -> Result<Answer, String> {
        let request = {
            let state = self
                .state
                .lock()
                .map_err(|_| "the consent broker failed".to_owned())?;
            let waiting = state.pending.get(id).filter(|w| w.listed).ok_or_else(|| {
                format!("no pending request `{id}` in this session (answered, timed out, or never asked)")
            })?;
            waiting.request.clone()
        };
        if !request.scopes.iter().any(|s| s == scope.kind()) {
            return Err(format!(
                "the policy does not offer `{}` for this request (offered: {})",
                scope.kind(),
                request.scopes.join(", ")
            ));
        }
        if !allow && scope == Scope::Always {
            return Err("a denial cannot be remembered for always; change the policy instead, or deny for this session".into());
        }
        let mut verified = None;
        if allow && request.code {
            verified = Some(self.check_code(&request, code, by)?);
        }
        // Claimed: from here no timeout and no other answer can take it, and nothing lasting
        // happens unless this answer is recorded.
        let waiting = self
            .state
            .lock()
            .map_err(|_| "the consent broker failed".to_owned())?
            .pending
            .remove(id)
            .ok_or_else(|| format!("request `{id}` was answered or timed out meanwhile"))?;
        let verb = if allow { "allowed" } else { "denied" };
        let mut answer = Answer {
            allow,
            scope: Some(scope.text()),
            by: by.to_owned(),
            reason: format!("{verb} by the person ({by}, for {})", scope.text()),
            request: Some(id.to_owned()),
        };
        if let Some(step) = verified {
            answer.reason = format!("{} with a one-time code (step {step})", answer.reason);
        }
        let mut scope = scope;
        let mut remembered = false;
        if allow && scope == Scope::Always {
            match self.remember(&request, by) {
                Ok(()) => remembered = true,
                Err(why) => {
                    scope = Scope::Session;
                    answer.scope = Some(scope.text());
                    answer.reason = format!("{}; not remembered for always: {why}", answer.reason);
                }
            }
        }
        let input = self.record_input(&request, Some(&answer));
        let decision = if allow {
            Decision {
                allow: true,
                reasons: vec![answer.reason.clone()],
                obligations: Vec::new(),
                grants: None,
            }
        } else {
            Decision::deny(&answer.reason)
        };
        let outcome = if allow {
            Outcome::Performed
        } else {
            Outcome::Refused
        };
        if let Err(why) = self.record("answer", input, decision, outcome) {
            if remembered {
                if let Some(file) = &self.remembered {
                    let _ = file.forget(&request.key);
                }
            }
            answer = Answer::deny(
                "cordon",
                format!("denied because the answer could not be recorded ({why})"),
                Some(id),
            );
            self.settle(id, &waiting, answer.clone());
            return Ok(answer);
        }
        let until = match scope {
            Scope::Minutes(n) => Some(Instant::now() + Duration::from_secs(n * 60)),
            _ => None,
        };
        if scope != Scope::Once {
            if let Ok(mut state) = self.state.lock() {
                state.grants.insert(
                    request.key.clone(),
                    Grant {
                        allow,
                        until,
                        scope: scope.text(),
                    },
                );
            }
        }
        self.settle(id, &waiting, answer.clone());
        Ok(answer)
    }

    /// Denies every waiting question and every later one of this session without asking
    /// (the person had enough of them, or stopped the session: `by` is then `stop`);
    /// recorded, unless a stop found nothing waiting.
    pub fn mute(&self, by: &str) {
        let reason = format!("the person stopped all questions of this session ({by}); denied");
        // A session stopped with nothing waiting has nothing to record here: its end is.
        self.deny_all("mute", by, &reason, by == "stop", false);
    }

    /// The session is over: every question still waiting is denied, recorded (`ended`)
    /// before the session's last record, and so is every later one, unasked.
    pub fn close(&self) {
        self.deny_all(
            "ended",
            "session end",
            "the session ended before the question was answered; denied",
            true,
            true,
        );
    }

    /// Denies every waiting question and every later one (the session `closing`, or
    /// muted), recording it as `action` unless nothing waited and `quiet` says so.
    fn deny_all(&self, action: &str, by: &str, reason: &str, quiet: bool, closing: bool) {
        if !closing {
            self.muted.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let waiting: Vec<(String, Waiting)> = match self.state.lock() {
            Ok(mut state) => {
                state.closed |= closing;
                std::mem::take(&mut state.pending).into_iter().collect()
            }
            Err(_) => Vec::new(),
        };
        let input = json!({
            "consent": {
                "denied": waiting.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                "by": by,
            }
        });
        if !(quiet && waiting.is_empty()) {
            if let Err(why) = self.record(action, input, Decision::deny(reason), Outcome::Refused) {
                tracing::warn!("cannot record that questions were denied ({action}): {why}");
            }
        }
        for (id, waiting) in waiting {
            self.settle(&id, &waiting, Answer::deny(by, reason, Some(&id)));
        }
    }

    /// Gives a claimed request its answer and withdraws it from the prompters.
    fn settle(&self, id: &str, waiting: &Waiting, answer: Answer) {
        waiting.slot.set(answer);
        let prompters = self.prompters.lock().map(|p| p.clone()).unwrap_or_default();
        for prompter in prompters {
            prompter.withdraw(id);
        }
    }

    /// Checks the one-time code an allowing answer to `request` carries; a wrong or
    /// replayed one is recorded and refused, and the third wrong one denies the request.
    fn check_code(
        &self,
        request: &PendingRequest,
        code: Option<&str>,
        by: &str,
    ) -> Result<u64, String> {
        let Some(code) = code else {
            return Err("this request needs a one-time code from your authenticator (mfa): answer with the code".into());
        };
        let store = self
            .mfa
            .get()
            .ok_or("no authenticator is enrolled; run `cordon mfa enroll`")?;
        {
            let mut state = self
                .state
                .lock()
                .map_err(|_| "the consent broker failed".to_owned())?;
            state
                .wrong_codes
                .retain(|at| at.elapsed() < WRONG_CODE_WINDOW);
            if state.wrong_codes.len() >= WRONG_CODES {
                drop(state);
                let why = format!(
                    "{WRONG_CODES} wrong codes in the last {} minutes: no more codes are taken for a while",
                    WRONG_CODE_WINDOW.as_secs() / 60
                );
                let mut input = self.record_input(request, None);
                input["mfa"] = json!({ "refused": why, "by": by });
                let _ = self.record("mfa_refused", input, Decision::deny(&why), Outcome::Refused);
                return Err(why);
            }
        }
        let refused = match store.verify(code, mfa::now()) {
            Ok(step) => return Ok(step),
            Err(refused) => refused,
        };
        let mut input = self.record_input(request, None);
        input["mfa"] = json!({ "refused": refused.to_string(), "by": by });
        let _ = self.record(
            "mfa_refused",
            input,
            Decision::deny(refused.to_string()),
            Outcome::Refused,
        );
        let attempts = {
            let mut state = self
                .state
                .lock()
                .map_err(|_| "the consent broker failed".to_owned())?;
            state.wrong_codes.push_back(Instant::now());
            state.pending.get_mut(&request.id).map_or(0, |w| {
                w.wrong_codes += 1;
                w.wrong_codes
            })
        };
        if attempts >= CODE_ATTEMPTS {
            let answer = Answer::deny(
                by,
                format!("{CODE_ATTEMPTS} wrong one-time codes; denied"),
                Some(&request.id),
            );
            self.resolve(&request.id, answer);
            return Err(format!(
                "{refused}; {CODE_ATTEMPTS} wrong codes, so the request is denied"
            ));
        }
        Err(format!("{refused}; the request still waits"))
    }

    fn remember(&self, request: &PendingRequest, by: &str) -> Result<(), String> {
        let file = self
            .remembered
            .as_ref()
            .ok_or("no configuration directory to remember it in")?;
        file.remember(
            &request.key,
            json!({
                "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "by": by,
                "session": self.session,
                "what": request.what,
            }),
        )?;
        let mut input = self.record_input(request, None);
        input["remembered"] = json!({ "file": file.path(), "key": request.key, "by": by });
        let recorded = self.record(
            "remember",
            input,
            Decision {
                allow: true,
                reasons: vec![format!("`{}` remembered for always", request.key)],
                obligations: Vec::new(),
                grants: None,
            },
            Outcome::Performed,
        );
        if let Err(why) = recorded {
            // Nothing lasting without its record.
            let _ = file.forget(&request.key);
            return Err(format!("cannot record it ({why})"));
        }
        Ok(())
    }

    fn record_input(&self, request: &PendingRequest, answer: Option<&Answer>) -> Value {
        let mut input = json!({
            "consent": {
                "request": request.id,
                "capability": request.capability,
                "action": request.action,
                "key": request.key,
                "what": request.what,
                "why": request.why,
                "scopes": request.scopes,
                "backends": self.backends.list().iter().map(|b| b.name()).collect::<Vec<_>>(),
            }
        });
        if let Some(answer) = answer {
            input["consent"]["answer"] = json!(answer);
        }
        input
    }

    fn record(
        &self,
        action: &str,
        mut input: Value,
        decision: Decision,
        outcome: Outcome,
    ) -> Result<(), String> {
        input["action"] = json!(action);
        match &self.recorder {
            Some(recorder) => recorder(action, input, decision, outcome),
            None => Ok(()),
        }
    }
}

/// What a pass is kept under: the key, and whether a code was needed (a pass given without
/// a code never stands in for one).
fn pass_key(ask: &Ask) -> String {
    if ask.mfa.is_some() {
        format!("mfa|{}", ask.key)
    } else {
        ask.key.clone()
    }
}

/// A random request id: 12 hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return format!("{:06x}{n:06x}", std::process::id() & 0xff_ffff);
    }
    cordon_types::hex(&bytes)
}

#[cfg(test)]
mod tests;
