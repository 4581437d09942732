//! The egress proxy's gate: connections decided through the pipeline, under `data.cordon.net`.
//!
//! Every front-end that serves a proxy (`cordon exec`'s sessions, `cordon proxy`) decides
//! through one [`PipelineGate`].

use std::sync::Arc;

use cordon_egress::Gate;
use cordon_types::{Capability, Decision, Outcome, Request};
use serde_json::{json, Value};

use crate::Supervisor;

/// The obligations the egress proxy carries out: `limit` (connections per minute, upload
/// bytes per host), and `consent` when the gate has a broker to ask.
const CARRIED: &[&str] = &["limit"];
const CARRIED_WITH_CONSENT: &[&str] = &["limit", "consent", "mfa"];
/// A plain-HTTP request (or a skill's, which cordon makes itself) is seen whole: `redact`
/// is carried out on its URL, header values and body; so is a skill's read of a file
/// (it reads a redacted copy). A tunnel is opaque.
const CARRIED_HTTP: &[&str] = &["limit", "redact"];
const CARRIED_HTTP_WITH_CONSENT: &[&str] = &["limit", "redact", "consent", "mfa"];

/// Decides connections through the supervisor's pipeline (`data.cordon.net`), which
/// records each decision: every allowance, and denials as the throttle lets through (the
/// same denial at most once a second, at most 200 every 10 s; what is left out is counted
/// in the next record's `coalesced`). An allowance carrying an obligation the proxy does not
/// carry out (anything but `limit`) is a denial.
#[derive(Debug)]
pub struct PipelineGate {
    supervisor: Arc<Supervisor>,
    capability: Capability,
    /// Who asks, in every request (a skill's identity).
    subject: cordon_types::Subject,
    throttle: std::sync::Mutex<Throttle>,
    /// Host names a skill looked up in the last minute, for `resource.exfil`.
    names: std::sync::Mutex<cordon_egress::exfil::SubdomainWindow>,
    #[cfg(target_os = "linux")]
    consent: Option<Arc<crate::consent::Broker>>,
    /// Keeps what a path is before a write allowed with a `journal` obligation.
    journal: Option<Arc<dyn WriteJournal>>,
}

/// Carries out a `journal` obligation: what a path is, kept before the write the decision
/// allows happens (a skill's file calls).
pub trait WriteJournal: Send + Sync + std::fmt::Debug {
    /// Keeps what `path` is now, durably, before it is written.
    ///
    /// # Errors
    ///
    /// Why it could not be kept: the write is denied then.
    fn before_write(&self, path: &std::path::Path) -> Result<(), String>;
}

/// Bounds what a flood of denied requests writes to the audit log (each record is a durable
/// write): the same denial (action, resource, reason) is recorded at most once a second,
/// and at most [`Throttle::PER_WINDOW`] denials every [`Throttle::WINDOW`]. What is left out
/// is counted, and the count goes with the next denial recorded (`coalesced`). Every request
/// is still decided, and denied; allowances are always recorded.
#[derive(Debug, Default)]
struct Throttle {
    last: std::collections::HashMap<String, (std::time::Instant, u64)>,
    window_start: Option<std::time::Instant>,
    in_window: u64,
    left_out: u64,
}

impl Throttle {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
    const PER_WINDOW: u64 = 200;
    const SAME: std::time::Duration = std::time::Duration::from_secs(1);
    const KEYS: usize = 4096;

    /// `Some(n)` when the denial under `key` is to be recorded, with `n` denials left out
    /// before it; `None` when it is left out.
    fn admit(&mut self, key: String, now: std::time::Instant) -> Option<u64> {
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Self::WINDOW)
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.last.len() > Self::KEYS {
            self.last
                .retain(|_, (at, _)| now.duration_since(*at) < Self::SAME);
        }
        let recent = self
            .last
            .get(&key)
            .is_some_and(|(at, _)| now.duration_since(*at) < Self::SAME);
        if recent || self.in_window >= Self::PER_WINDOW {
            self.left_out += 1;
            if let Some((_, count)) = self.last.get_mut(&key) {
                *count += 1;
            }
            return None;
        }
        self.in_window += 1;
        self.last.insert(key, (now, 0));
        Some(std::mem::take(&mut self.left_out))
    }
}

impl PipelineGate {
    /// A gate deciding through `supervisor`'s pipeline.
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self {
            supervisor,
            capability: Capability::net(),
            subject: cordon_types::Subject::default(),
            throttle: std::sync::Mutex::new(Throttle::default()),
            names: std::sync::Mutex::new(cordon_egress::exfil::SubdomainWindow::new(
                std::time::Duration::from_secs(60),
            )),
            #[cfg(target_os = "linux")]
            consent: None,
            journal: None,
        }
    }

    /// The same gate carrying out `journal` obligations on file decisions with `journal`.
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<dyn WriteJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The same gate carrying out `consent` obligations by asking `broker`: the connection
    /// waits for the person's answer.
    #[cfg(target_os = "linux")]
    #[must_use]
    pub fn with_consent(mut self, broker: Arc<crate::consent::Broker>) -> Self {
        self.consent = Some(broker);
        self
    }

    /// The same gate deciding for `skill`: its identity is the subject of every request.
    #[must_use]
    pub fn for_skill(mut self, skill: cordon_types::Skill) -> Self {
        self.subject.skill = Some(skill);
        self
    }

    fn carried(&self, capability: &Capability, action: &str) -> Vec<&'static str> {
        let http = matches!(
            (capability.as_str(), action),
            ("net", "http") | ("file", "read")
        );
        #[cfg(target_os = "linux")]
        let consent = self.consent.is_some();
        #[cfg(not(target_os = "linux"))]
        let consent = false;
        let mut carried = match (http, consent) {
            (true, true) => CARRIED_HTTP_WITH_CONSENT,
            (false, true) => CARRIED_WITH_CONSENT,
            (true, false) => CARRIED_HTTP,
            (false, false) => CARRIED,
        }
        .to_vec();
        if self.journal.is_some() && capability.as_str() == "file" {
            carried.push("journal");
        }
        carried
    }

    /// Carries out a `journal` obligation of a file allowance: what the path is now is kept
    /// before the write happens; a path that cannot be kept denies.
    fn journal_before(
        &self,
        capability: &Capability,
        decided: crate::Unrecorded,
    ) -> crate::Unrecorded {
        let Some(journal) = &self.journal else {
            return decided;
        };
        let asked = capability.as_str() == "file"
            && decided.decision().allow
            && decided
                .decision()
                .obligations
                .iter()
                .any(|o| o.kind() == "journal");
        if !asked {
            return decided;
        }
        let path = decided
            .input()
            .and_then(|input| input["resource"]["path"].as_str())
            .map(std::path::PathBuf::from);
        match path.map(|p| journal.before_write(&p)) {
            Some(Ok(())) => decided,
            Some(Err(why)) => decided.deny(&format!(
                "denied because the write could not be journaled: {why}"
            )),
            None => decided.deny("denied because the write names no path to journal"),
        }
    }

    /// Carries out a `consent` or `mfa` obligation of an allowance: asks the broker (for a
    /// one-time code with `mfa`) and denies on anything but yes. The answer goes into the
    /// record (`consent`). `resolving`: the name is being resolved, and a "once" answer
    /// covers the connection that follows.
    #[cfg(target_os = "linux")]
    fn consent(
        &self,
        capability: &Capability,
        decided: crate::Unrecorded,
        resolving: bool,
    ) -> crate::Unrecorded {
        let Some(broker) = &self.consent else {
            return decided;
        };
        let Some(input) = decided.input() else {
            return decided;
        };
        let resource = &input["resource"];
        if capability.as_str() != "net" {
            // A file: the answer covers this action on this path.
            let action = input["action"].as_str().unwrap_or_default();
            let path = resource["path"].as_str().unwrap_or_default();
            let about = crate::consent::About {
                capability: capability.as_str(),
                key: format!("{}:{action}:{path}", capability.as_str()),
                what: format!("{action} `{path}`"),
            };
            return crate::consent::carry_out(broker, decided, &about, |_, _| {});
        }
        let host = resource["host"].as_str().unwrap_or_default();
        let port = resource["port"].as_u64().unwrap_or_default();
        let place = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut what = format!("connect to {place}");
        let http = &resource["http"];
        if let (Some(method), Some(path)) = (http["method"].as_str(), http["path"].as_str()) {
            // The answer covers the host and port; the request shows what asks first.
            let path: String = path.chars().take(120).collect();
            what = format!("{what} (now: {method} {path})");
        }
        let about = crate::consent::About {
            capability: capability.as_str(),
            key: format!("net:{place}"),
            what,
        };
        crate::consent::carry_out(broker, decided, &about, |ask, answer| {
            // A name allowed once as it is resolved: the connection that follows is that once.
            if resolving
                && answer.allow
                && (answer.scope.as_deref() == Some("once") || ask.mfa.is_some())
            {
                broker.pass(ask);
            }
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn consent(
        &self,
        _capability: &Capability,
        decided: crate::Unrecorded,
        _resolving: bool,
    ) -> crate::Unrecorded {
        decided
    }

    /// Records `decided` if it allows, or if the throttle admits its denial.
    fn record(&self, capability: &Capability, decided: crate::Unrecorded) -> Decision {
        let pipeline = self.supervisor.pipeline();
        if decided.decision().allow {
            return pipeline.record_decided(capability, decided).decision;
        }
        let resource = decided
            .input()
            .map(|input| &input["resource"])
            .cloned()
            .unwrap_or_default();
        // The same request refused for the same reason: action, the whole resource (host,
        // port, method and path), the first reason.
        let key = format!(
            "{}|{}|{}",
            decided
                .input()
                .map(|input| input["action"].to_string())
                .unwrap_or_default(),
            resource,
            decided
                .decision()
                .reasons
                .first()
                .cloned()
                .unwrap_or_default()
        );
        let admitted = self
            .throttle
            .lock()
            .map(|mut t| t.admit(key, std::time::Instant::now()))
            .unwrap_or(Some(0));
        match admitted {
            Some(left_out) => {
                let mut decided = decided;
                if left_out > 0 {
                    if let Some(input) = decided.input_mut() {
                        input["coalesced"] = json!(left_out);
                    }
                }
                pipeline.record_decided(capability, decided).decision
            }
            None => decided.without_record(),
        }
    }

    fn request(&self, action: &str, resource: Value, context: Value) -> Request {
        let mut request = Request {
            capability: Some(self.capability.as_str().into()),
            action: action.to_owned(),
            subject: self.subject.clone(),
            ..Request::default()
        };
        if let Ok(resource) = serde_json::from_value(resource) {
            request.resource = resource;
        }
        if let Ok(context) = serde_json::from_value(context) {
            request.context = context;
        }
        request
    }
}

impl PipelineGate {
    /// Decides and records one request under `capability` (consent asked for, denials
    /// throttled). `resolving`: a host name about to be looked up (a "once" answer covers
    /// the connection that follows). `record_allowed`: whether an allowance is recorded
    /// (not when a recorded decision follows it, as the one on a name's addresses).
    fn decide_as(
        &self,
        capability: &Capability,
        action: &str,
        resource: Value,
        context: Value,
        (resolving, record_allowed): (bool, bool),
    ) -> Decision {
        let mut request = self.request(action, resource, context);
        request.capability = Some(capability.as_str().into());
        let pipeline = self.supervisor.pipeline();
        match pipeline.builder().build_for(capability, &request) {
            Ok(mut input) => {
                // A skill's file: its path is the kernel's already; its sensitivity is the
                // file's (label, path rule, content), as for any file decision.
                if let Some(path) = input["resource"]["path"]
                    .as_str()
                    .map(std::path::PathBuf::from)
                {
                    if let Err(why) = pipeline.classify(capability, &request, &mut input, &path) {
                        let unrecorded = pipeline
                            .decide_unrecorded(capability, input)
                            .deny(&format!("cannot classify the file: {why}"));
                        return pipeline.record_decided(capability, unrecorded).decision;
                    }
                }
                let decided = self.consent(
                    capability,
                    pipeline
                        .decide_unrecorded(capability, input)
                        .require_carried(&self.carried(capability, action)),
                    resolving,
                );
                let decided = self.journal_before(capability, decided);
                if !record_allowed && decided.decision().allow {
                    decided.without_record()
                } else {
                    self.record(capability, decided)
                }
            }
            Err(_) => pipeline.decide(&request).decision,
        }
    }

    /// What the proxy adds to a destination before it is decided: the host as the policy
    /// compares it, whether it is an address, how it looks as a data channel, and the class
    /// of each address.
    fn describe_destination(&self, mut resource: Value) -> Value {
        let host = resource["host"].as_str().unwrap_or_default().to_owned();
        match cordon_egress::host::Host::parse(&host) {
            Ok(parsed) => {
                let is_ip = matches!(parsed, cordon_egress::host::Host::Ip(_));
                resource["host"] = json!(parsed.as_policy_string());
                resource["host_is_ip"] = json!(is_ip);
                if !is_ip {
                    if let Ok(mut names) = self.names.lock() {
                        let score = names.score(&parsed.as_policy_string());
                        resource["exfil"] = json!({
                            "longest_label": score.longest_label,
                            "entropy": (score.entropy * 100.0).round() / 100.0,
                            "unique_subdomains": score.unique_subdomains,
                        });
                    }
                }
            }
            Err(why) => resource["malformed"] = json!(why),
        }
        if let Some(addresses) = resource["addresses"].as_array_mut() {
            for address in addresses {
                let class = address["ip"]
                    .as_str()
                    .and_then(|ip| ip.parse().ok())
                    .map(|ip| cordon_egress::class::classify(ip).as_str());
                address["class"] = json!(class.unwrap_or("reserved"));
            }
        }
        resource
    }
}

impl Gate for PipelineGate {
    fn decide(&self, action: &str, resource: Value, context: Value) -> Decision {
        self.decide_as(&self.capability, action, resource, context, (false, true))
    }

    fn may_resolve(&self, resource: Value, context: Value) -> Decision {
        self.decide_as(
            &self.capability,
            "resolve",
            resource,
            context,
            (true, false),
        )
    }

    fn cut(
        &self,
        action: &str,
        resource: Value,
        context: Value,
        decision: &Decision,
        reason: &str,
    ) {
        self.record_cut(
            &self.capability,
            action,
            resource,
            context,
            decision,
            reason,
        );
    }
}

impl PipelineGate {
    /// Records that an action `decision` allowed was refused afterwards, for `reason` (a
    /// connection cut, a request whose body a `redact` obligation blocks).
    fn record_cut(
        &self,
        capability: &Capability,
        action: &str,
        resource: Value,
        context: Value,
        decision: &Decision,
        reason: &str,
    ) {
        let request = self.request(action, resource, context);
        let mut input = self
            .supervisor
            .pipeline()
            .builder()
            .build_for(capability, &request)
            .unwrap_or_else(|_| json!({}));
        input["result"] = json!({ "cut": reason });
        if let Err(err) = self.supervisor.pipeline().record_outcome(
            capability,
            input,
            decision.clone(),
            Outcome::Refused,
            false,
        ) {
            tracing::error!("cannot record that an action was cut: {err}");
        }
        // After the record: a diagnostic that cannot be written loses nothing.
        tracing::warn!("{reason}");
    }
}

/// A skill's calls: its file opens and changes under `data.cordon.file`, its requests, name
/// lookups and sockets under `data.cordon.net`, each recorded with the skill's identity.
impl cordon_skills::Gate for PipelineGate {
    fn cut(
        &self,
        capability: &str,
        action: &str,
        resource: Value,
        decision: &Decision,
        reason: &str,
    ) {
        let capability = Capability::new(capability).unwrap_or_else(|_| Capability::net());
        let resource = if capability.as_str() == "net" {
            self.describe_destination(resource)
        } else {
            resource
        };
        self.record_cut(&capability, action, resource, json!({}), decision, reason);
    }

    fn decide(&self, capability: &str, action: &str, resource: Value) -> Decision {
        let Ok(capability) = Capability::new(capability) else {
            return Decision::deny(format!(
                "a skill asked for `{capability}`, which is no capability"
            ));
        };
        if capability.as_str() == "net" {
            let resource = self.describe_destination(resource);
            if resource.get("malformed").is_some() {
                // Refused by cordon before the policy: recorded all the same.
                let decision = Decision::deny(format!("malformed host: {}", resource["malformed"]));
                let request = self.request(action, resource, json!({}));
                let input = self
                    .supervisor
                    .pipeline()
                    .builder()
                    .build_for(&capability, &request)
                    .unwrap_or_else(|_| json!({"action": action}));
                if let Err(err) = self.supervisor.pipeline().record_outcome(
                    &capability,
                    input,
                    decision.clone(),
                    Outcome::Refused,
                    false,
                ) {
                    tracing::error!("cannot record a refused request: {err}");
                }
                return decision;
            }
            // A name is recorded as it is looked up: the query leaves whatever follows.
            let resolving = action == "resolve";
            return self.decide_as(&capability, action, resource, json!({}), (resolving, true));
        }
        // Metadata reads are many (every `is_dir`): refusals are recorded, allowances not.
        let record_allowed = action != "stat";
        self.decide_as(
            &capability,
            action,
            resource,
            json!({}),
            (false, record_allowed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;
    use std::time::{Duration, Instant};

    #[test]
    fn a_flood_of_denials_is_coalesced_and_capped() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        // The same denial a thousand times in a second: recorded once.
        let admitted = (0..1000)
            .filter(|_| {
                throttle
                    .admit("connect|evil|443|no".into(), start)
                    .is_some()
            })
            .count();
        assert_eq!(admitted, 1);
        // A second later it is recorded again, carrying the count of those left out.
        assert_eq!(
            throttle.admit("connect|evil|443|no".into(), start + Duration::from_secs(1)),
            Some(999)
        );
        // Many different denials: at most PER_WINDOW recorded in the window.
        let later = start + Duration::from_secs(2);
        let admitted = (0..5000)
            .filter(|n| {
                throttle
                    .admit(format!("connect|h{n}|443|no"), later)
                    .is_some()
            })
            .count();
        assert_eq!(admitted as u64, Throttle::PER_WINDOW - 2);
        // The next window starts afresh.
        assert!(throttle
            .admit(
                "connect|h-new|443|no".into(),
                later + Duration::from_secs(10)
            )
            .is_some());
    }
}

#[cfg(test)]
mod obligation_tests {
    use super::*;
    use crate::CordonConfig;

    /// A gate deciding with a one-rule `net` policy that allows with `obligations`.
    fn gate_allowing_with(obligations: &str) -> (tempfile::TempDir, PipelineGate) {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("net.rego"),
            format!(
                "package cordon.net\n\ndecision := {{\"allow\": true, \"reasons\": [\"ok\"], \"obligations\": {obligations}}}\n"
            ),
        )
        .unwrap();
        let mut config = CordonConfig::default();
        config.policy.path = Some(dir.path().to_path_buf());
        config.policy.cache = Some(false);
        config.audit.enabled = Some(false);
        let supervisor = Arc::new(Supervisor::start_for(&config, &["net"]).unwrap());
        (dir, PipelineGate::new(supervisor))
    }

    fn connect(gate: &PipelineGate) -> Decision {
        gate.decide(
            "connect",
            json!({"host": "example.org", "port": 443}),
            json!({}),
        )
    }

    #[test]
    fn an_allowance_with_an_obligation_the_proxy_does_not_carry_out_is_a_denial() {
        for kind in ["consent", "mfa", "journal"] {
            let (_dir, gate) = gate_allowing_with(&format!("[{{\"type\": \"{kind}\"}}]"));
            let decision = connect(&gate);
            assert!(!decision.allow, "{kind}: {decision:?}");
            assert!(decision.reasons[0].contains(kind), "{decision:?}");
            let resolve = gate.may_resolve(json!({"host": "example.org"}), json!({}));
            assert!(!resolve.allow, "{kind}: {resolve:?}");
        }
        // `limit` is carried out by the proxy: the allowance stands.
        let (_dir, gate) = gate_allowing_with("[{\"type\": \"limit\", \"per_minute\": 5}]");
        assert!(connect(&gate).allow);
        let (_dir, gate) = gate_allowing_with("[]");
        assert!(connect(&gate).allow);
    }
}
