//! Loading a policy and evaluating decisions.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use cordon_types::{Capability, Decider, Decision};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::rvm::Program;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, MemoryBudgetConfig, Value};

use crate::cache::{CacheUse, Entry, Slot};
use crate::error::syntax_error;
use crate::{modules, PolicyError, PolicyFile, PolicySource, Result};

/// Which regorus evaluator decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The bytecode VM: decisions are compiled once at load time. The default: on the default
    /// policy it is several times faster than the interpreter with identical decisions.
    #[default]
    Rvm,
    /// The tree-walking interpreter. Supports every construct, including `with`.
    Interpreter,
}

impl EngineKind {
    /// The name used in configuration and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            EngineKind::Rvm => "rvm",
            EngineKind::Interpreter => "interpreter",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rvm" => Ok(EngineKind::Rvm),
            "interpreter" => Ok(EngineKind::Interpreter),
            other => Err(format!(
                "unknown engine `{other}`: expected `rvm` or `interpreter`"
            )),
        }
    }
}

/// Bounds on one evaluation. Exceeding any of them denies.
///
/// The checks are cooperative: regorus tests them between instructions, so one builtin call
/// (a huge `numbers.range`, say) can overshoot before it is stopped. The memory budget and the
/// instruction count apply to the bytecode VM; the interpreter is bounded by time only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for one decision.
    pub time: Duration,
    /// Bytes allocated during one decision.
    pub memory_bytes: NonZeroU64,
    /// Bytecode instructions executed for one decision.
    pub instructions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_millis(100),
            memory_bytes: NonZeroU64::new(64 << 20).unwrap_or(NonZeroU64::MIN),
            instructions: 10_000_000,
        }
    }
}

impl Limits {
    fn timer(&self) -> ExecutionTimerConfig {
        ExecutionTimerConfig {
            limit: self.time,
            check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// How to load a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyOptions {
    /// Which evaluator decides.
    pub engine: EngineKind,
    /// Bounds on each evaluation.
    pub limits: Limits,
    /// Load only what deciding these capabilities needs: the `_test.rego` files are left
    /// out and only these decisions are compiled (a command that decides one capability
    /// starts faster). Every other module is still parsed and checked. `None` loads all.
    pub only: Option<&'static [&'static str]>,
}

/// A loaded, checked policy, ready to decide from many threads at once.
///
/// Every `data.cordon.<capability>.decision` rule found at load time gets an evaluator: a
/// compiled bytecode program with a pool of VMs, or a pool of interpreter engines. Each
/// thread takes one from the pool for the duration of a decision, so no lock is held while
/// evaluating.
pub struct Policy {
    origin: String,
    revision: String,
    options: PolicyOptions,
    engine: LazyEngine,
    decisions: BTreeMap<String, Evaluator>,
    interpreters: Pool<Engine>,
    warnings: Vec<String>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("origin", &self.origin)
            .field("revision", &self.revision)
            .field("options", &self.options)
            .field("capabilities", &self.decisions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The interpreter's engine: loaded at once by [`Policy::load`]; after a cache hit, only when
/// something needs it (an explanation, a test run), from the source kept for that.
struct LazyEngine {
    cell: OnceLock<std::result::Result<Engine, String>>,
    source: Option<PolicySource>,
    with_tests: bool,
    timer: ExecutionTimerConfig,
}

impl LazyEngine {
    fn loaded(engine: Engine) -> Self {
        let cell = OnceLock::new();
        let timer = ExecutionTimerConfig {
            limit: Duration::ZERO,
            check_interval: NonZeroU32::MIN,
        };
        let _ = cell.set(Ok(engine));
        Self {
            cell,
            source: None,
            with_tests: false,
            timer,
        }
    }

    fn get(&self) -> std::result::Result<&Engine, String> {
        self.cell
            .get_or_init(|| {
                let source = self
                    .source
                    .as_ref()
                    .ok_or_else(|| "the policy's source is not kept".to_owned())?;
                let mut engine = load_engine(source, self.with_tests).map_err(|e| e.to_string())?;
                engine.set_execution_timer_config(self.timer);
                Ok(engine)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

enum Evaluator {
    Rvm {
        program: Arc<Program>,
        data: Value,
        vms: Pool<RegoVM>,
    },
    Interpreter,
}

struct Pool<T>(Mutex<Vec<T>>);

impl<T> Pool<T> {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    fn give(&self, item: T) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item);
    }
}

/// Why an evaluation produced no value.
pub(crate) enum EvalFailure {
    Limit(String),
    Error(String),
}

impl EvalFailure {
    fn into_decision(self) -> Decision {
        match self {
            EvalFailure::Limit(what) => {
                Decision::deny(format!("policy evaluation stopped: {what}; denying"))
            }
            EvalFailure::Error(what) => {
                Decision::deny(format!("policy evaluation failed: {what}; denying"))
            }
        }
    }
}

fn describe_limit(err: &LimitError) -> String {
    match err {
        LimitError::TimeLimitExceeded { limit, .. } => {
            format!("exceeded its time limit of {limit:?}")
        }
        LimitError::MemoryLimitExceeded { limit, .. } => {
            format!("exceeded its memory limit of {limit} bytes")
        }
        LimitError::RegexSizeLimitExceeded { limit } => {
            format!("a regular expression exceeded {limit} bytes")
        }
    }
}

fn vm_failure(err: VmError) -> EvalFailure {
    match err {
        VmError::TimeLimitExceeded { limit, .. } => {
            EvalFailure::Limit(format!("exceeded its time limit of {limit:?}"))
        }
        VmError::MemoryBudgetExceeded { budget, .. } => {
            EvalFailure::Limit(format!("exceeded its memory budget of {budget} bytes"))
        }
        VmError::MemoryLimitExceeded { limit, .. } => {
            EvalFailure::Limit(format!("exceeded its memory limit of {limit} bytes"))
        }
        VmError::InstructionLimitExceeded { limit, .. } => {
            EvalFailure::Limit(format!("exceeded its limit of {limit} instructions"))
        }
        other => EvalFailure::Error(other.to_string()),
    }
}

/// Reads an evaluation's outcome as a decision: undefined, malformed and failed
/// evaluations all deny with their reason.
pub(crate) fn decision_from(result: Result<Value, EvalFailure>) -> Decision {
    match result {
        Ok(Value::Undefined) => Decision::from_policy_value(None),
        Ok(value) => match serde_json::to_value(&value) {
            Ok(json) => Decision::from_policy_value(Some(&json)),
            Err(e) => Decision::deny(format!("malformed decision: cannot read it as JSON ({e})")),
        },
        Err(failure) => failure.into_decision(),
    }
}

pub(crate) fn interpreter_failure(err: &(dyn std::error::Error + 'static)) -> EvalFailure {
    match err.downcast_ref::<LimitError>() {
        Some(limit) => EvalFailure::Limit(describe_limit(limit)),
        None => EvalFailure::Error(first_line(&err.to_string())),
    }
}

/// Runs `f`, a call into regorus that writes its warnings (a redundant `import input`, a
/// future keyword used as a name) to standard error itself with `eprintln!`, which panics
/// when the write fails. A standard error whose reader has gone (a pipe that can never be
/// read again) is pointed at `/dev/null` first, so the warning is lost quietly and the
/// policy reads as it would from the compiled cache, which does not read the modules. Any
/// other failed write (a full disk) still panics: the panic becomes an error, and the engine
/// it left half-built is dropped by the caller: the policy does not load, and decisions deny.
/// Regorus warns while it reads a module and while it first prepares to evaluate.
pub fn unwound<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    cordon_sys::process::quiet_stderr_once_unread();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        format!("the policy engine stopped while reading it ({what})")
    })
}

/// At most this much of what one evaluation's `print` calls said is written; the rest is
/// counted.
const PRINTS_SHOWN: usize = 64 << 10;

/// Evaluates the rule at `path` and writes what its `print` calls said (see
/// [`relay_prints`]): every evaluation on the interpreter goes through here.
pub(crate) fn eval_rule(engine: &mut Engine, path: String) -> anyhow::Result<Value> {
    let result = engine.eval_rule(path);
    relay_prints(engine);
    result
}

/// Writes what the policy's `print` calls said to standard error, as OPA does, each line
/// with its file and line; a standard error nobody reads loses them, never the decision.
fn relay_prints(engine: &mut Engine) {
    use std::io::Write;
    let Ok(prints) = engine.take_prints() else {
        return;
    };
    if prints.is_empty() {
        return;
    }
    // A terminal in raw mode (a program's own, relayed by `cordon exec`) does not return
    // to the line's start by itself.
    let end = if cordon_sys::process::stderr_is_raw_terminal() {
        "\r\n"
    } else {
        "\n"
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(shown_prints(&prints, end).as_bytes());
}

/// The lines `relay_prints` writes: each print on one line that starts with its file and
/// line, whatever it says (what it prints may come from the request: a line break shows as
/// `\n`, any other control or invisible character as `?`, so it can neither move the
/// cursor nor start a line of its own), at most [`PRINTS_SHOWN`] bytes in all.
fn shown_prints(prints: &[String], end: &str) -> String {
    let mut text = String::new();
    for (n, print) in prints.iter().enumerate() {
        let line = print
            .split('\n')
            .map(cordon_types::printable)
            .collect::<Vec<_>>()
            .join("\\n");
        if text.len() + line.len() > PRINTS_SHOWN {
            let cut = (0..=PRINTS_SHOWN.saturating_sub(text.len()).min(line.len()))
                .rev()
                .find(|&at| line.is_char_boundary(at))
                .unwrap_or(0);
            text.push_str(&line[..cut]);
            text.push_str(end);
            text.push_str(&format!(
                "cordon: {} more bytes of the policy's print output not shown{end}",
                prints[n..].iter().map(String::len).sum::<usize>() - cut
            ));
            break;
        }
        text.push_str(&line);
        text.push_str(end);
    }
    text
}

pub(crate) fn first_line(text: &str) -> String {
    // regorus renders errors with a source excerpt; the decision reason keeps the message.
    text.lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("error: "))
        .or_else(|| text.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("unknown error")
        .to_owned()
}

/// Loads `source` into a fresh regorus engine: every module (the tests only when
/// `with_tests`), then every data document.
pub(crate) fn load_engine(source: &PolicySource, with_tests: bool) -> Result<Engine> {
    let mut engine = Engine::new();
    // What `print` says is gathered and written by `relay_prints`, which goes on when
    // standard error cannot be written; regorus would panic there.
    engine.set_gather_prints(true);
    let modules = source
        .files()
        .iter()
        .filter(|f| f.is_rego() && (with_tests || !f.is_test()));
    for file in modules {
        unwound(|| engine.add_policy(file.display.clone(), file.text.clone()))
            .map_err(|why| PolicyError::Syntax {
                location: file.display.clone(),
                message: why,
            })?
            .map_err(|e| syntax_error(&file.display, &e))?;
    }
    for file in source.files().iter().filter(|f| !f.is_rego()) {
        engine
            .add_data(parse_data(file)?)
            .map_err(|e| PolicyError::Data {
                file: file.display.clone(),
                message: first_line(&e.to_string()),
            })?;
    }
    // Preparing the engine runs regorus's semantic checks (unsafe variables, unknown
    // functions, recursion), so those errors surface at load time, not on the first request.
    unwound(|| engine.eval_bool_query("true".to_owned(), false))
        .map_err(|why| PolicyError::Syntax {
            location: source.origin().to_owned(),
            message: why,
        })?
        .map_err(|e| syntax_error(source.origin(), &e))?;
    Ok(engine)
}

fn parse_data(file: &PolicyFile) -> Result<Value> {
    let data_error = |message: String| PolicyError::Data {
        file: file.display.clone(),
        message,
    };
    let value = if file.relative.ends_with(".json") {
        Value::from_json_str(&file.text)
    } else {
        Value::from_yaml_str(&file.text)
    }
    .map_err(|e| data_error(first_line(&e.to_string())))?;
    if !matches!(value, Value::Object(_)) {
        return Err(data_error(
            "a data document must be an object at the top level".to_owned(),
        ));
    }
    let mut value = value;
    for key in file.data_prefix().into_iter().rev() {
        let mut wrapper = Value::new_object();
        if let Ok(map) = wrapper.as_object_mut() {
            map.insert(Value::from(key), value);
        }
        value = wrapper;
    }
    Ok(value)
}

impl Policy {
    /// Loads and checks `source`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Syntax`] with `file:line:col` for parse and semantic errors,
    /// [`PolicyError::Data`] for a bad data document.
    pub fn load(source: &PolicySource, options: PolicyOptions) -> Result<Self> {
        Self::load_compiled(source, options, None).map(|(policy, _)| policy)
    }

    /// As [`Policy::load`], keeping the compiled decisions in `cache_dir`
    /// ([`crate::cache`]): a policy compiled before under the same revision, versions and
    /// options is read from there instead of being parsed, checked and compiled again. Says
    /// what became of the cache.
    ///
    /// # Errors
    ///
    /// As [`Policy::load`]. A cache entry that cannot be used is never an error: the policy
    /// is compiled.
    pub fn load_cached(
        source: &PolicySource,
        options: PolicyOptions,
        cache_dir: &std::path::Path,
    ) -> Result<(Self, CacheUse)> {
        Self::load_compiled(source, options, Some(cache_dir))
    }

    fn load_compiled(
        source: &PolicySource,
        options: PolicyOptions,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<(Self, CacheUse)> {
        let slot = cache_dir
            .filter(|_| options.engine == EngineKind::Rvm)
            .map(|dir| Slot::new(dir, source.revision(), options.only));
        let mut rejected = None;
        if let Some(slot) = &slot {
            match slot.read() {
                Ok(Some(entry)) => match Self::from_entry(source, options, entry) {
                    Ok(policy) => return Ok((policy, CacheUse::Hit)),
                    Err(why) => rejected = Some(why),
                },
                Ok(None) => {}
                Err(why) => rejected = Some(why),
            }
        }
        let policy = Self::compile_all(source, options)?;
        let used = match &slot {
            None => CacheUse::NotStored("no cache".into()),
            Some(slot) => match policy.store(slot) {
                Ok(()) => match rejected {
                    Some(why) => CacheUse::Recompiled(why),
                    None => CacheUse::Stored,
                },
                Err(why) => CacheUse::NotStored(match rejected {
                    Some(first) => format!("{first}; and it cannot be rewritten: {why}"),
                    None => why,
                }),
            },
        };
        Ok((policy, used))
    }

    /// A policy from a cache entry: its programs and data; the engine loads on demand.
    fn from_entry(
        source: &PolicySource,
        options: PolicyOptions,
        entry: Entry,
    ) -> std::result::Result<Self, String> {
        let data = Value::from_json_str(&entry.data).map_err(|e| format!("its data: {e}"))?;
        let mut decisions = BTreeMap::new();
        for (capability, program) in entry.programs {
            decisions.insert(
                capability,
                Evaluator::Rvm {
                    program: Arc::new(program),
                    data: data.clone(),
                    vms: Pool::new(),
                },
            );
        }
        Ok(Self {
            origin: source.origin().to_owned(),
            revision: source.revision().to_owned(),
            options,
            engine: LazyEngine {
                cell: OnceLock::new(),
                source: Some(source.clone()),
                with_tests: options.only.is_none(),
                timer: options.limits.timer(),
            },
            decisions,
            interpreters: Pool::new(),
            warnings: Vec::new(),
        })
    }

    /// The policy's data document at `path` below `data` (`["cordon", "settings", "skills"]`),
    /// as JSON; `None` when there is nothing there (or the data cannot be read).
    pub fn data_at(&self, path: &[&str]) -> Option<serde_json::Value> {
        let data = self
            .decisions
            .values()
            .find_map(|evaluator| match evaluator {
                Evaluator::Rvm { data, .. } => Some(data.clone()),
                Evaluator::Interpreter => None,
            })
            .or_else(|| self.engine.get().ok().map(Engine::get_data))?;
        let mut value: serde_json::Value = serde_json::from_str(&data.to_json_str().ok()?).ok()?;
        for key in path {
            value = value.get_mut(*key)?.take();
        }
        Some(value)
    }

    /// Stores the compiled decisions in `slot`; only a policy decided wholly by bytecode.
    fn store(&self, slot: &Slot) -> std::result::Result<(), String> {
        let mut programs = Vec::new();
        for (capability, evaluator) in &self.decisions {
            match evaluator {
                Evaluator::Rvm { program, .. } => programs.push((capability.as_str(), &**program)),
                Evaluator::Interpreter => {
                    return Err(format!("`{capability}` is decided by the interpreter"))
                }
            }
        }
        let data = self.engine.get()?.get_data();
        let data = data.to_json_str().map_err(|e| e.to_string())?;
        slot.write(&data, &programs)
            .map_err(|e| format!("cannot write `{}`: {e}", slot.path().display()))
    }

    fn compile_all(source: &PolicySource, options: PolicyOptions) -> Result<Self> {
        let mut engine = load_engine(source, options.only.is_none())?;
        let mut warnings = Vec::new();
        let mut decisions = BTreeMap::new();
        let data = engine.get_data();
        for rule in modules::rules(&mut engine) {
            let Some(capability) = rule.package.strip_prefix("cordon.") else {
                continue;
            };
            if rule.name != "decision"
                || Capability::new(capability).is_err()
                || decisions.contains_key(capability)
                || options.only.is_some_and(|only| !only.contains(&capability))
            {
                continue;
            }
            let path = format!("data.cordon.{capability}.decision");
            // The bytecode compiler resolves every function and variable the decision can
            // reach, which the interpreter only does when a request arrives; its verdict is
            // used to check the policy whichever evaluator is chosen.
            let compiled = compile(&mut engine, &path);
            let evaluator = match (options.engine, compiled) {
                (_, Err(CompileFailure::Policy(err))) => {
                    return Err(syntax_error(source.origin(), &err))
                }
                (EngineKind::Interpreter, _) => Evaluator::Interpreter,
                (EngineKind::Rvm, Ok(program)) => Evaluator::Rvm {
                    program,
                    data: data.clone(),
                    vms: Pool::new(),
                },
                (EngineKind::Rvm, Err(CompileFailure::Unsupported(why))) => {
                    warnings.push(format!(
                        "`{path}` uses a construct the bytecode VM does not support ({why}); it is evaluated by the interpreter"
                    ));
                    Evaluator::Interpreter
                }
            };
            decisions.insert(capability.to_owned(), evaluator);
        }
        engine.set_execution_timer_config(options.limits.timer());
        Ok(Self {
            origin: source.origin().to_owned(),
            revision: source.revision().to_owned(),
            options,
            engine: LazyEngine::loaded(engine),
            decisions,
            interpreters: Pool::new(),
            warnings,
        })
    }

    /// The capabilities this policy has a `decision` rule for.
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.decisions.keys().map(String::as_str)
    }

    /// Where the policy came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Things worth knowing that do not stop the policy from working.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The options the policy was loaded with.
    pub fn options(&self) -> PolicyOptions {
        self.options
    }

    /// Which evaluator decides `capability`, if the policy has a rule for it.
    pub fn engine_for(&self, capability: &Capability) -> Option<EngineKind> {
        self.decisions.get(capability.as_str()).map(|e| match e {
            Evaluator::Rvm { .. } => EngineKind::Rvm,
            Evaluator::Interpreter => EngineKind::Interpreter,
        })
    }

    /// Decides `input` under `capability`. Never fails: errors, limits, a missing rule and a
    /// malformed answer all deny with a reason.
    pub fn evaluate(&self, capability: &Capability, input: &serde_json::Value) -> Decision {
        // Converted by reference: cheaper than cloning the JSON value and converting that.
        match <Value as serde::Deserialize>::deserialize(input) {
            Ok(input) => self.evaluate_value(capability, input),
            Err(e) => Decision::deny(format!(
                "cannot convert the input document for the policy engine: {e}"
            )),
        }
    }

    /// As [`Policy::evaluate`], for an input already in regorus's representation.
    pub fn evaluate_value(&self, capability: &Capability, input: Value) -> Decision {
        let Some(evaluator) = self.decisions.get(capability.as_str()) else {
            return Decision::deny(format!(
                "the policy has no `{}` rule; denying by default",
                capability.decision_path()
            ));
        };
        let result = match evaluator {
            Evaluator::Rvm { program, data, vms } => self.run_vm(program, data, vms, input),
            Evaluator::Interpreter => self.run_interpreter(&capability.decision_path(), input),
        };
        decision_from(result)
    }

    fn run_vm(
        &self,
        program: &Arc<Program>,
        data: &Value,
        vms: &Pool<RegoVM>,
        input: Value,
    ) -> Result<Value, EvalFailure> {
        let mut vm = match vms.take() {
            Some(vm) => vm,
            None => {
                let mut vm = RegoVM::new();
                vm.load_program(Arc::clone(program));
                vm.set_data(data.clone())
                    .map_err(|e| EvalFailure::Error(e.to_string()))?;
                vm.set_execution_timer_config(Some(self.options.limits.timer()));
                vm.set_memory_budget_config(Some(MemoryBudgetConfig {
                    limit: self.options.limits.memory_bytes,
                }));
                vm.set_max_instructions(self.options.limits.instructions);
                vm
            }
        };
        vm.set_input(input);
        let result = vm.execute();
        // A VM that failed is dropped rather than reused, so no state of a stopped
        // evaluation can leak into the next decision.
        if result.is_ok() {
            vms.give(vm);
        }
        result.map_err(vm_failure)
    }

    fn run_interpreter(&self, path: &str, input: Value) -> Result<Value, EvalFailure> {
        let mut engine = match self.interpreters.take() {
            Some(engine) => engine,
            None => self.engine()?,
        };
        engine.set_input(input);
        let result = eval_rule(&mut engine, path.to_owned());
        if result.is_ok() {
            self.interpreters.give(engine);
        }
        result.map_err(|e| interpreter_failure(&*e))
    }

    /// A clone of the loaded engine, for explanations and tests.
    pub(crate) fn engine(&self) -> Result<Engine, EvalFailure> {
        self.engine
            .get()
            .cloned()
            .map_err(|why| EvalFailure::Error(format!("cannot load the policy: {why}")))
    }
}

enum CompileFailure {
    /// The policy is wrong: an unknown function or an undefined variable.
    Policy(String),
    /// The policy is fine but uses something the bytecode compiler lacks.
    Unsupported(String),
}

/// Messages of the bytecode compiler that mean the policy itself is wrong.
const POLICY_ERRORS: [&str; 4] = [
    "Unknown function",
    "Unknown builtin function",
    "Not a builtin function",
    "Undefined variable",
];

fn compile(engine: &mut Engine, path: &str) -> Result<Arc<Program>, CompileFailure> {
    let entry: regorus::Rc<str> = path.into();
    let compiled = unwound(|| engine.compile_with_entrypoint(&entry))
        .map_err(CompileFailure::Policy)?
        .map_err(|e| CompileFailure::Policy(e.to_string()))?;
    Compiler::compile_from_policy(&compiled, &[path]).map_err(|e| {
        let text = e.to_string();
        if POLICY_ERRORS.iter().any(|p| text.contains(p)) {
            CompileFailure::Policy(text)
        } else {
            CompileFailure::Unsupported(first_line(&text))
        }
    })
}

impl Decider for Policy {
    fn decide(&self, capability: &Capability, input: &serde_json::Value) -> Decision {
        self.evaluate(capability, input)
    }

    fn revision(&self) -> &str {
        &self.revision
    }
}

#[cfg(test)]
mod tests {
    use super::{shown_prints, PRINTS_SHOWN};

    #[test]
    fn a_print_is_one_line_that_moves_no_cursor() {
        let said = vec![
            "p.rego:3: url http://x/\u{1b}[2J\u{1b}]0;owned\u{7}\ncordon: all allowed".to_owned(),
            "p.rego:4: two".to_owned(),
        ];
        assert_eq!(
            shown_prints(&said, "\n"),
            "p.rego:3: url http://x/?[2J?]0;owned?\\ncordon: all allowed\np.rego:4: two\n"
        );
        assert_eq!(shown_prints(&said[1..], "\r\n"), "p.rego:4: two\r\n");
    }

    #[test]
    fn what_prints_say_is_shown_up_to_a_bound() {
        let said: Vec<String> = (0..100)
            .map(|n| format!("p.rego:{n}: {}", "é".repeat(5000)))
            .collect();
        let shown = shown_prints(&said, "\n");
        assert!(shown.len() < PRINTS_SHOWN + 200, "{}", shown.len());
        let total: usize = said.iter().map(String::len).sum();
        let last = shown.lines().last().unwrap();
        let hidden: usize = last.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(
            last,
            format!("cordon: {hidden} more bytes of the policy's print output not shown")
        );
        // What is shown and what is counted add up to what was said, less the line ends.
        let shown_bytes = shown.len() - last.len() - 1 - shown.lines().count() + 1;
        assert_eq!(shown_bytes + hidden, total);
    }
}
