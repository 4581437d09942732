//! `cordon test`: run every `test_*` rule, as `opa test` does.

use std::time::{Duration, Instant};

use regex::Regex;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Value;
use serde::Serialize;

use crate::engine::load_engine;
use crate::{modules, PolicyError, PolicySource, Result};

/// Which tests to run and how long each may take.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Run only tests whose full name (`data.pkg.test_x`) matches.
    pub filter: Option<Regex>,
    /// How long one test may run before it counts as an error.
    pub timeout: Duration,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            filter: None,
            timeout: Duration::from_secs(5),
        }
    }
}

impl TestOptions {
    /// Options selecting tests by a regular expression, as `opa test --run`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Pattern`] when `pattern` is not a valid regular expression.
    pub fn with_filter(pattern: &str) -> Result<Self> {
        let filter = Regex::new(pattern).map_err(|source| PolicyError::Pattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        Ok(Self {
            filter: Some(filter),
            ..Self::default()
        })
    }
}

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "lowercase")]
pub enum Outcome {
    /// The rule was true.
    Pass,
    /// The rule was false or undefined.
    Fail,
    /// Evaluating the rule failed (a builtin error, a conflict, the time limit).
    Error(String),
    /// A `todo_test_*` rule, not run.
    Skip,
}

/// One test and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    /// The file that defines the test.
    pub file: String,
    /// The full rule path, `data.pkg.test_x`.
    pub name: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it took.
    #[serde(serialize_with = "micros")]
    pub duration: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_micros())
}

/// Every test run, in file and source order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TestReport {
    /// The results.
    pub results: Vec<TestResult>,
}

impl TestReport {
    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| pred(&r.outcome)).count()
    }

    /// Tests that passed.
    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Pass)
    }

    /// Tests that failed (false or undefined).
    pub fn failed(&self) -> usize {
        self.count(|o| *o == Outcome::Fail)
    }

    /// Tests that could not be evaluated.
    pub fn errors(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Error(_)))
    }

    /// `todo_test_*` rules.
    pub fn skipped(&self) -> usize {
        self.count(|o| *o == Outcome::Skip)
    }

    /// Whether every test that ran passed.
    pub fn success(&self) -> bool {
        self.failed() == 0 && self.errors() == 0
    }
}

/// Runs every `test_*` rule of `source` on the interpreter, which supports `with`.
///
/// A test passes when its rule is defined and not `false`, fails when it is `false` or
/// undefined, and is an error when evaluation fails; `todo_test_*` rules are skipped. These
/// are `opa test`'s rules.
///
/// # Errors
///
/// A [`PolicyError`] when the policy does not load: a parse error fails the whole run, as
/// with `opa test`.
pub fn run_tests(source: &PolicySource, options: &TestOptions) -> Result<TestReport> {
    let mut engine = load_engine(source, true)?;
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: options.timeout,
        check_interval: std::num::NonZeroU32::MIN,
    });
    let mut seen = std::collections::BTreeSet::new();
    let mut report = TestReport::default();
    for rule in modules::rules(&mut engine) {
        let skip = rule.name.starts_with("todo_test_");
        if !(rule.name.starts_with("test_") || skip) {
            continue;
        }
        let name = format!("data.{}.{}", rule.package, rule.name);
        if !seen.insert(name.clone()) || options.filter.as_ref().is_some_and(|f| !f.is_match(&name))
        {
            continue;
        }
        let started = Instant::now();
        let outcome = if skip {
            Outcome::Skip
        } else {
            match crate::engine::eval_rule(&mut engine, name.clone()) {
                Ok(Value::Undefined | Value::Bool(false)) => Outcome::Fail,
                Ok(_) => Outcome::Pass,
                Err(e) => Outcome::Error(e.to_string().trim().to_owned()),
            }
        };
        report.results.push(TestResult {
            file: rule.file,
            name,
            outcome,
            duration: started.elapsed(),
        });
    }
    Ok(report)
}
