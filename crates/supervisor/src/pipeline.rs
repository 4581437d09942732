//! One request's path through cordon: resolve, build the input, decide, record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cordon_types::{
    normalize_path, AuditEvent, AuditSink, Capability, Decider, Decision, InputBuilder, Outcome,
    Request,
};
use serde_json::Value;

/// A decision and the input document it was made on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// What the policy saw; `None` when the request could not be turned into an input.
    pub input: Option<Value>,
    /// The decision, after cordon's own checks (audit included).
    pub decision: Decision,
    /// The revision of the policy that decided.
    revision: Arc<str>,
}

impl Decided {
    /// The revision of the policy that decided (the one current when the decision started,
    /// for a request refused before any policy saw it).
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

/// A decision made and not yet recorded ([`Pipeline::decide_unrecorded`]): the surface may
/// prepare the action meanwhile, and proceeds only on what [`Pipeline::record_decided`]
/// returns for it (a decision that cannot be recorded is a denial).
#[must_use = "an action may proceed only on what `Pipeline::record_decided` returns for this decision"]
#[derive(Debug, Clone, PartialEq)]
pub struct Unrecorded(Decided);

impl Unrecorded {
    /// The decision, as the policy made it.
    pub fn decision(&self) -> &Decision {
        &self.0.decision
    }

    /// The input document the decision was made on.
    pub fn input(&self) -> Option<&Value> {
        self.0.input.as_ref()
    }

    /// The input document, to add to what is recorded (never to what was decided).
    pub fn input_mut(&mut self) -> Option<&mut Value> {
        self.0.input.as_mut()
    }

    /// Denies this decision if it allows with an obligation that the surface does not carry
    /// out (`carried` names the kinds it does): an obligation nothing carries out must never
    /// pass as a plain allowance.
    pub fn require_carried(mut self, carried: &[&str]) -> Self {
        let decision = &self.0.decision;
        if !decision.allow {
            return self;
        }
        let missing: Vec<&str> = decision
            .obligations
            .iter()
            .map(cordon_types::Obligation::kind)
            .filter(|kind| !carried.contains(kind))
            .collect();
        if !missing.is_empty() {
            let mut reason = format!(
                "the policy allows only with `{}`, which cordon does not carry out for this action yet; denied",
                missing.join("`, `")
            );
            if !decision.reasons.is_empty() {
                reason = format!(
                    "{reason} (the policy's reasons: {})",
                    decision.reasons.join("; ")
                );
            }
            self.0.decision = Decision::deny(reason);
        }
        self
    }

    /// Turns this decision into a denial for `reason` (an obligation that was not carried
    /// out); a denial stays one.
    pub fn deny(mut self, reason: &str) -> Self {
        self.0.decision = Decision::deny(reason);
        self
    }

    /// Gives up recording: only for a decision that is not acted on by itself (a name allowed
    /// to be resolved, whose addresses are then decided and recorded).
    pub fn without_record(self) -> Decision {
        self.0.decision
    }
}

/// How an outcome's record is written.
enum Last {
    /// The last of the command (a log may seal itself in the same write).
    Yes,
    /// Durably, before returning.
    No,
    /// Queued, durable a little later.
    Deferred,
}

/// Turns requests into recorded decisions.
///
/// Fails closed at every step: a request that cannot be resolved, a policy that errs and an
/// audit log that cannot take the event all give a denial whose reason says which.
#[derive(Clone)]
pub struct Pipeline {
    /// The policy deciding, and the inspection under its settings: replaced whole when a new
    /// policy is activated, shared by every clone of this pipeline.
    current: Arc<PolicyCell>,
    builder: InputBuilder,
    sink: Option<Arc<dyn AuditSink>>,
    session: Option<String>,
    /// Set in every input's `context`, over whatever the request said.
    stamped: serde_json::Map<String, Value>,
}

/// What decides: a policy and, when files are classified, the inspection under its
/// settings.
#[derive(Clone)]
pub struct Generation {
    decider: Arc<dyn Decider>,
    revision: Arc<str>,
    inspection: Option<Arc<crate::inspect::Inspection>>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("revision", &self.revision)
            .field("inspection", &self.inspection.is_some())
            .finish()
    }
}

impl Generation {
    /// `decider`, classifying files with `inspection` if given.
    pub fn new(
        decider: Arc<dyn Decider>,
        inspection: Option<Arc<crate::inspect::Inspection>>,
    ) -> Self {
        let revision = Arc::from(decider.revision());
        Self {
            decider,
            revision,
            inspection,
        }
    }

    /// The revision of its policy.
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

/// The generation a pipeline (and every clone of it) decides with. Replacing it is atomic:
/// each decision takes the generation current when it starts and uses it to the end, its
/// record included, so no decision sees half of one policy and half of another.
pub struct PolicyCell {
    current: std::sync::RwLock<Arc<Generation>>,
}

impl std::fmt::Debug for PolicyCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCell")
            .field("revision", &self.get().revision())
            .finish()
    }
}

impl PolicyCell {
    fn new(generation: Generation) -> Self {
        Self {
            current: std::sync::RwLock::new(Arc::new(generation)),
        }
    }

    /// The generation deciding now.
    pub fn get(&self) -> Arc<Generation> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Makes `generation` decide from the next decision on; decisions under way finish
    /// with the one they started with.
    pub fn replace(&self, generation: Generation) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(generation);
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("revision", &self.current.get().revision())
            .field("env", self.builder.env())
            .field("audited", &self.sink.is_some())
            .field("session", &self.session)
            .finish()
    }
}

impl Pipeline {
    /// A pipeline deciding with `decider`, resolving requests with `builder` and recording to
    /// `sink` (nothing is recorded when `None`).
    pub fn new(
        decider: Arc<dyn Decider>,
        builder: InputBuilder,
        sink: Option<Arc<dyn AuditSink>>,
    ) -> Self {
        Self {
            current: Arc::new(PolicyCell::new(Generation::new(decider, None))),
            builder,
            sink,
            session: None,
            stamped: serde_json::Map::new(),
        }
    }

    /// The same pipeline classifying files with `inspection`: a file decision whose
    /// request names no sensitivity gets the file's (label, path rule or content) and its
    /// findings in `resource`.
    #[must_use]
    pub fn with_inspection(mut self, inspection: Arc<crate::inspect::Inspection>) -> Self {
        let decider = Arc::clone(&self.current.get().decider);
        self.current = Arc::new(PolicyCell::new(Generation::new(decider, Some(inspection))));
        self
    }

    /// The inspection classifying files now, if any.
    pub fn inspection(&self) -> Option<Arc<crate::inspect::Inspection>> {
        self.current.get().inspection.clone()
    }

    /// The cell holding what decides, shared by every clone of this pipeline: replacing its
    /// generation changes the policy of all of them for their next decisions.
    pub fn policy_cell(&self) -> &Arc<PolicyCell> {
        &self.current
    }

    /// The same pipeline deciding for the session `id`: every input it decides and every
    /// record it writes carries `context.session`.
    #[must_use]
    pub fn with_session(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.stamped
            .insert("session".into(), Value::String(id.clone()));
        self.session = Some(id);
        self
    }

    /// The same pipeline setting `context.<key>` of every input it decides and every record
    /// it writes to `value`, over whatever a request says (`context.consent`: whether a
    /// person can be asked).
    #[must_use]
    pub fn with_context(mut self, key: &str, value: Value) -> Self {
        self.stamped.insert(key.to_owned(), value);
        self
    }

    /// The same pipeline resolving requests against the workspace `roots` (canonical)
    /// instead of its own.
    #[must_use]
    pub fn with_workspace(mut self, roots: Vec<std::path::PathBuf>) -> Self {
        let mut env = self.builder.env().clone();
        env.workspace = roots;
        self.builder = InputBuilder::new(env);
        self
    }

    /// The session this pipeline decides for, if any.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Sets `context.session` of `input` to this pipeline's session, if it has one, and
    /// every other key set by [`Pipeline::with_context`].
    fn stamp(&self, input: &mut Value) {
        if self.stamped.is_empty() {
            return;
        }
        if let Some(context) = input.as_object_mut().map(|o| {
            o.entry("context")
                .or_insert_with(|| Value::Object(Default::default()))
        }) {
            if let Some(context) = context.as_object_mut() {
                for (key, value) in &self.stamped {
                    context.insert(key.clone(), value.clone());
                }
            }
        }
    }

    /// The revision of the policy deciding now.
    pub fn revision(&self) -> String {
        self.current.get().revision().to_owned()
    }

    /// The builder requests are resolved with.
    pub fn builder(&self) -> &InputBuilder {
        &self.builder
    }

    /// Decides `request` under the capability it names.
    pub fn decide(&self, request: &Request) -> Decided {
        match Capability::new(request.capability.as_deref().unwrap_or_default()) {
            Ok(capability) => self.decide_as(&capability, request),
            Err(err) => {
                let decision = Decision::deny(format!("invalid request: {err}"));
                self.record("", request, None, decision)
            }
        }
    }

    /// Decides `request` under `capability`, whatever the request names.
    ///
    /// A resource path is resolved the way the kernel will resolve it: symbolic links in
    /// its existing part are followed before `..` is folded, so a link planted in the
    /// workspace that points at `~/.ssh` is decided as `~/.ssh`.
    pub fn decide_as(&self, capability: &Capability, request: &Request) -> Decided {
        let generation = self.current.get();
        let input = self
            .builder
            .build_for(capability, request)
            .and_then(|mut input| {
                let mut classified = Ok(());
                if let Some(path) = &request.resource.path {
                    let real = real_path(&self.builder.absolute(path)?);
                    input["resource"]["path"] = Value::String(real.to_string_lossy().into_owned());
                    classified = classify_with(&generation, capability, request, &mut input, &real);
                }
                Ok((input, classified))
            });
        match input {
            Ok((mut input, Err(why))) => {
                self.stamp(&mut input);
                let decision = Decision::deny(format!("cannot classify the file: {why}"));
                self.record_event(
                    capability.as_str(),
                    request.action.as_str(),
                    input,
                    decision,
                    generation.revision(),
                )
            }
            Ok((input, Ok(()))) => {
                let unrecorded = self.decide_with(&generation, capability, input);
                self.record_decided(capability, unrecorded)
            }
            Err(err) => {
                let decision = Decision::deny(format!("invalid request: {err}"));
                self.record(capability.as_str(), request, None, decision)
            }
        }
    }

    /// Classifies the file at `real` into `input` (sensitivity, its source, findings) when
    /// this is a file decision whose request names no sensitivity; every surface that
    /// decides files calls it (`decide_as`, the skill runtime's gate).
    ///
    /// # Errors
    ///
    /// The inspection settings' fault: the decision must be a denial.
    pub fn classify(
        &self,
        capability: &Capability,
        request: &Request,
        input: &mut Value,
        real: &Path,
    ) -> Result<(), String> {
        classify_with(&self.current.get(), capability, request, input, real)
    }

    /// Decides an input document given as is (`cordon eval --raw`), stamping the time when
    /// it carries none.
    pub fn decide_input(&self, capability: &Capability, input: Value) -> Decided {
        let unrecorded = self.decide_unrecorded(capability, input);
        self.record_decided(capability, unrecorded)
    }

    /// As [`Pipeline::decide_input`] without recording: the caller must pass the result to
    /// [`Pipeline::record_decided`], and act on what that returns, before the action
    /// proceeds. Lets a surface prepare the action while the record is made durable.
    pub fn decide_unrecorded(&self, capability: &Capability, input: Value) -> Unrecorded {
        self.decide_with(&self.current.get(), capability, input)
    }

    fn decide_with(
        &self,
        generation: &Generation,
        capability: &Capability,
        mut input: Value,
    ) -> Unrecorded {
        self.stamp(&mut input);
        if let Some(context) = input.as_object_mut().map(|o| {
            o.entry("context")
                .or_insert_with(|| Value::Object(Default::default()))
        }) {
            if let Some(context) = context.as_object_mut() {
                context
                    .entry("time")
                    .or_insert_with(|| Value::String(now()));
            }
        }
        let decision = generation.decider.decide(capability, &input);
        let decision = redact_input(&mut input, decision);
        Unrecorded(Decided {
            input: Some(input),
            decision,
            revision: Arc::clone(&generation.revision),
        })
    }

    /// Records a decision made by [`Pipeline::decide_unrecorded`]; the decision returned is
    /// a denial when the record could not be made.
    pub fn record_decided(&self, capability: &Capability, unrecorded: Unrecorded) -> Decided {
        let Unrecorded(decided) = unrecorded;
        let input = decided.input.unwrap_or_default();
        let action = input["action"].as_str().unwrap_or_default().to_owned();
        let revision = decided.revision;
        self.record_event(
            capability.as_str(),
            &action,
            input,
            decided.decision,
            &revision,
        )
    }

    /// Records what became of an action decided earlier: performed, refused by cordon
    /// itself after the policy allowed it (a kernel feature missing), or failed. `input` is
    /// the decided input, with whatever the surface adds about the outcome.
    ///
    /// # Errors
    ///
    /// The audit log's refusal; the caller decides whether the action may still proceed.
    /// With `last`, this is the last event of the command: a durable sink may seal the log
    /// in the same write.
    pub fn record_outcome(
        &self,
        capability: &Capability,
        input: Value,
        decision: Decision,
        outcome: Outcome,
        last: bool,
    ) -> Result<(), cordon_types::AuditError> {
        let last = if last { Last::Yes } else { Last::No };
        self.record_outcome_as(capability, input, decision, outcome, last)
    }

    /// As [`Pipeline::record_outcome`], without waiting for the record to be durable (see
    /// [`AuditSink::record_deferred`]): for what was already done, never for a decision.
    ///
    /// # Errors
    ///
    /// The audit log's refusal to take the event.
    pub fn record_done(
        &self,
        capability: &Capability,
        input: Value,
        decision: Decision,
        outcome: Outcome,
    ) -> Result<(), cordon_types::AuditError> {
        self.record_outcome_as(capability, input, decision, outcome, Last::Deferred)
    }

    fn record_outcome_as(
        &self,
        capability: &Capability,
        input: Value,
        decision: Decision,
        outcome: Outcome,
        last: Last,
    ) -> Result<(), cordon_types::AuditError> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        // What the decision redacts is redacted from the outcome's record too (a connection
        // cut after the decision, a request refused for what it holds).
        let mut input = input;
        let decision = redact_input(&mut input, decision);
        let action = input["action"].as_str().unwrap_or_default().to_owned();
        let revision = self.revision();
        let event = self.event(
            capability.as_str(),
            &action,
            input,
            decision,
            outcome,
            &revision,
        );
        match last {
            Last::Yes => sink.record_last(&event),
            Last::No => sink.record(&event),
            Last::Deferred => sink.record_deferred(&event),
        }
    }

    fn event(
        &self,
        capability: &str,
        action: &str,
        input: Value,
        decision: Decision,
        outcome: Outcome,
        revision: &str,
    ) -> AuditEvent {
        let mut input = input;
        self.stamp(&mut input);
        audit_event(capability, action, input, decision, outcome, revision)
    }

    fn record(
        &self,
        capability: &str,
        request: &Request,
        input: Option<Value>,
        decision: Decision,
    ) -> Decided {
        let logged = input
            .clone()
            .unwrap_or_else(|| serde_json::to_value(request).unwrap_or_default());
        let revision = self.revision();
        let mut decided =
            self.record_event(capability, &request.action, logged, decision, &revision);
        decided.input = input;
        decided
    }

    fn record_event(
        &self,
        capability: &str,
        action: &str,
        input: Value,
        decision: Decision,
        revision: &str,
    ) -> Decided {
        let Some(sink) = &self.sink else {
            return Decided {
                input: Some(input),
                decision,
                revision: Arc::from(revision),
            };
        };
        let outcome = if decision.allow {
            Outcome::Evaluated
        } else {
            Outcome::Refused
        };
        let event = self.event(capability, action, input, decision, outcome, revision);
        let recorded = sink.record(&event);
        let AuditEvent {
            input,
            mut decision,
            ..
        } = event;
        if let Err(err) = recorded {
            let mut cause = err.to_string();
            if let Some(source) = std::error::Error::source(&err) {
                cause = format!("{cause}: {source}");
            }
            decision = Decision::deny(format!(
                "denied because the decision could not be recorded ({cause}); no action proceeds unaudited"
            ));
        }
        Decided {
            input: Some(input),
            decision,
            revision: Arc::from(revision),
        }
    }
}

/// Carries out a `redact` obligation of `decision` on what is recorded and shown of the
/// request: every string under `input.resource` is replaced by what may leave (URLs under
/// `resource.http` percent-encoded), so the audit log, a question to the person and
/// `cordon eval` never hold what the policy redacts. A `block_if` that matches, or an
/// obligation cordon cannot read, turns the decision into a denial.
fn redact_input(input: &mut Value, decision: Decision) -> Decision {
    use cordon_inspect::redact::{Encoding, Redaction};
    if !decision.allow {
        return decision;
    }
    let redaction = match Redaction::from_obligations(&decision.obligations) {
        Ok(None) => return decision,
        Ok(Some(redaction)) => redaction,
        Err(e) => {
            return Decision::deny(format!(
                "the policy's `redact` obligation cannot be carried out: {e}"
            ))
        }
    };
    let mut blocked = None;
    let strings = crate::inspect::JsonStrings {
        percent_under: Some("http"),
        blobs: false,
    };
    for key in ["resource", "result", "subject", "context"] {
        if let Some(part) = input.get_mut(key) {
            if let Err(b) = crate::inspect::redact_json(part, &redaction, strings) {
                blocked.get_or_insert(b);
            }
        }
    }
    if let Some(b) = blocked {
        return Decision::deny(format!("the request: {b}; refused"));
    }
    // What the policy wrote from the input (its reasons, the question it asks) holds what
    // the input held.
    let mut decision = decision;
    let text = |s: &mut String| {
        if let Ok(r) = redaction.apply(s.as_bytes(), Encoding::Plain) {
            if !r.findings.is_empty() {
                *s = String::from_utf8_lossy(&r.data).into_owned();
            }
        } else {
            *s = "(withheld)".to_owned();
        }
    };
    for reason in &mut decision.reasons {
        text(reason);
    }
    for obligation in &mut decision.obligations {
        if let cordon_types::Obligation::Consent {
            message: Some(message),
            ..
        } = obligation
        {
            text(message);
        }
    }
    decision
}

/// Classifies the file at `real` under `generation`'s inspection, for a file decision whose
/// request names no sensitivity.
fn classify_with(
    generation: &Generation,
    capability: &Capability,
    request: &Request,
    input: &mut Value,
    real: &Path,
) -> Result<(), String> {
    match (
        &generation.inspection,
        capability.as_str(),
        request.resource.sensitivity,
    ) {
        (Some(inspection), "file", None) => inspection.enrich(input, real),
        _ => Ok(()),
    }
}

/// An audit event made now by this cordon.
pub(crate) fn audit_event(
    capability: &str,
    action: &str,
    input: Value,
    decision: Decision,
    outcome: Outcome,
    revision: &str,
) -> AuditEvent {
    AuditEvent {
        time: now(),
        capability: capability.to_owned(),
        action: action.to_owned(),
        input,
        outcome,
        decision,
        policy_revision: revision.to_owned(),
        cordon_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Resolves symbolic links in the longest existing prefix of an absolute path, then folds
/// the rest lexically. A path with no existing prefix is only folded.
pub fn real_path(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs_err::canonicalize(&existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return normalize_path(&out);
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normalize_path(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cordon_types::{AuditError, InputEnv};
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    /// Allows reads of exactly `/ok` and records what it saw.
    struct Fixed;

    impl Decider for Fixed {
        fn decide(&self, _: &Capability, input: &Value) -> Decision {
            if input["resource"]["path"] == "/ok" {
                Decision {
                    allow: true,
                    reasons: vec!["ok".into()],
                    obligations: vec![],
                    grants: None,
                }
            } else {
                Decision::deny(format!("not {}", input["resource"]["path"]))
            }
        }

        fn revision(&self) -> &str {
            "fixed"
        }
    }

    #[derive(Default)]
    struct Memory(Mutex<Vec<AuditEvent>>);

    impl AuditSink for Memory {
        fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        }
    }

    struct Broken;

    impl AuditSink for Broken {
        fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
            Err(AuditError::Write {
                target: "/audit".into(),
                source: std::io::Error::other("disk full"),
            })
        }
    }

    fn request(path: &str) -> Request {
        serde_json::from_value(
            json!({"capability": "file", "action": "read", "resource": {"path": path}}),
        )
        .unwrap()
    }

    #[test]
    fn every_decision_is_recorded() {
        let sink = Arc::new(Memory::default());
        let pipeline = Pipeline::new(
            Arc::new(Fixed),
            InputBuilder::new(InputEnv::default()),
            Some(sink.clone()),
        );
        assert!(pipeline.decide(&request("/ok")).decision.allow);
        assert!(!pipeline.decide(&request("relative")).decision.allow);
        let events = sink.0.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].policy_revision, "fixed");
        assert!(events[0].input["context"]["time"].is_string());
        assert_eq!(
            events[1].decision,
            Decision::deny("invalid request: path `relative` is relative and no working directory is known to resolve it")
        );
    }

    #[test]
    fn what_a_decision_redacts_is_redacted_from_every_record_of_it() {
        let sink = Arc::new(Memory::default());
        let pipeline = Pipeline::new(
            Arc::new(Fixed),
            InputBuilder::new(InputEnv::default()),
            Some(sink.clone()),
        );
        let token = ["ghp_", "u8jzPde0IgxLd6GncfBAepfJBd0Kh8024xXH"].concat();
        let decision = Decision {
            allow: true,
            reasons: vec![format!("`/up/{token}` is allowed")],
            obligations: vec![cordon_types::Obligation::Redact {
                patterns: vec![],
                block_if: vec![],
            }],
            grants: None,
        };
        // An outcome recorded after the decision: a connection cut, with the path in its
        // resource and in the reason cordon wrote.
        let input = json!({
            "action": "http",
            "resource": {"http": {"method": "GET", "path": format!("/up/{token}")}},
            "result": {"cut": format!("more than 1 request a minute to `/up/{token}`")},
        });
        pipeline
            .record_outcome(&Capability::net(), input, decision, Outcome::Refused, false)
            .unwrap();
        let events = sink.0.lock().unwrap();
        let recorded = serde_json::to_string(&events[0]).unwrap();
        assert!(!recorded.contains(&token[4..]), "{recorded}");
        assert!(recorded.contains("REDACTED"), "{recorded}");
    }

    #[test]
    fn an_unrecorded_decision_is_a_denial() {
        let pipeline = Pipeline::new(
            Arc::new(Fixed),
            InputBuilder::new(InputEnv::default()),
            Some(Arc::new(Broken)),
        );
        let decided = pipeline.decide(&request("/ok"));
        assert_eq!(
            decided.decision,
            Decision::deny(
                "denied because the decision could not be recorded (cannot write audit event to `/audit`: disk full); no action proceeds unaudited"
            )
        );
    }

    #[test]
    fn symlinks_are_resolved_before_deciding() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(dir.path()).unwrap();
        fs_err::create_dir_all(root.join("secret")).unwrap();
        fs_err::create_dir_all(root.join("work")).unwrap();
        std::os::unix::fs::symlink(root.join("secret"), root.join("work/link")).unwrap();
        assert_eq!(
            real_path(&root.join("work/link/key")),
            root.join("secret/key")
        );
        // `..` after a link is taken from the link's target, as the kernel does.
        assert_eq!(real_path(&root.join("work/link/../x")), root.join("x"));
        assert_eq!(real_path(&root.join("work/new/../y")), root.join("work/y"));
        assert_eq!(
            real_path(Path::new("/nonexistent-root/a/../b")),
            PathBuf::from("/nonexistent-root/b")
        );
    }
}
