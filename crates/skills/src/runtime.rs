//! The engine, the linker and one run of a skill.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, InstancePre, Linker, ResourceTable, Val};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::filesystem::FsPerms;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::cache::{Cache, CacheUse};
use crate::limits::{thread_cpu, Budget, Limiter, Limits, Output, Reached, Sink, Stopped};
use crate::tools::{Function, Returned};
use crate::{http, Error, Gate, SkillFile};

/// How often the engine's epoch advances: the granularity of the processor-time limit and
/// of a stop request.
const TICK: Duration = Duration::from_millis(10);

/// The most host resources (open files, streams, HTTP fields...) a run may hold at once.
const MAX_RESOURCES: usize = 2_000;

/// What WASI and `wasi:http` interfaces a skill may import, by name without the version.
const PROVIDED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "cordon:agent/clipboard",
];

/// How the runtime is set up.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where compiled skills are kept (`None`: compiled at every load).
    pub cache_dir: Option<PathBuf>,
    /// Instances from a pool of memory set up once (for many runs in one process): at most
    /// this many at a time. `None`: memory is set up for each run.
    pub pool: Option<u32>,
    /// The largest linear memory a skill may have, for the pool's slots (and a ceiling on
    /// [`Limits::memory_bytes`]). Default 4 GiB.
    pub max_memory_bytes: Option<u64>,
}

/// The skill runtime: one engine, its linker with cordon's decided WASI, and the cache.
/// Made once and used for any number of skills and runs.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    cache: Option<Cache>,
    ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

/// A skill compiled and linked, ready to run many times.
pub struct Prepared {
    skill: SkillFile,
    pre: InstancePre<Host>,
    /// Its `wasi:cli/run`, for a command.
    command: Option<CommandPre<Host>>,
    /// The functions it offers as tools.
    functions: Vec<Function>,
    cache: CacheUse,
    imports: Vec<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("skill", &self.skill)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The skill.
    pub fn skill(&self) -> &SkillFile {
        &self.skill
    }

    /// Where its compiled code came from.
    pub fn cache(&self) -> &CacheUse {
        &self.cache
    }

    /// What it imports, as the component names it.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The functions it exports that can be called as tools (prepared with
    /// [`Runtime::prepare_functions`]; none for a command).
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }
}

/// What a skill is prepared as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A command: it exports `wasi:cli/run`.
    Command,
    /// A library of functions, each called as a tool.
    Functions,
}

/// How one call of a function ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Called {
    /// What it returned; `None` when it trapped or was stopped (see [`Exit::stopped`]).
    pub returned: Option<Returned>,
    /// How the run ended.
    pub exit: Exit,
}

/// A directory the skill sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host, canonical (the decision was made on it).
    pub host: PathBuf,
    /// The name the skill sees it by.
    pub guest: String,
    /// Whether the skill may change what is in it (each change is still decided).
    pub writable: bool,
}

/// One run: what the skill sees and may spend.
#[derive(Clone)]
pub struct Run {
    /// The arguments, the first being the skill's name.
    pub args: Vec<String>,
    /// The environment the skill sees.
    pub env: Vec<(String, String)>,
    /// The directories the skill sees.
    pub preopens: Vec<Preopen>,
    /// What decides each call.
    pub gate: Arc<dyn Gate>,
    /// The limits.
    pub limits: Limits,
    /// Whether the skill reads cordon's standard input (else it reads nothing).
    pub stdin: bool,
    /// Where its output goes.
    pub stdout: Sink,
    /// Where its errors go.
    pub stderr: Sink,
    /// Set to stop the run (checked every few milliseconds while the skill computes).
    pub stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("args", &self.args)
            .field("preopens", &self.preopens)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit status: what the skill passed to `exit`, 0 when `run` returned success,
    /// 1 when it returned failure or was stopped.
    pub code: i32,
    /// Why it was stopped, if it was.
    pub stopped: Option<Stopped>,
    /// The processor time the run took.
    pub cpu: Duration,
}

/// The state of one run, inside Wasmtime's store.
pub(crate) struct Host {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    http: WasiHttpCtx,
    hooks: http::Hooks,
    limiter: Limiter,
    pub(crate) gate: Arc<dyn Gate>,
    /// The desktop's clipboard, opened at the skill's first use of it.
    pub(crate) clipboard: Option<arboard::Clipboard>,
    /// What ends the run from outside its code (a stop, the time limit).
    pub(crate) watch: crate::wait::Watch,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

fn setup(what: &str) -> impl FnOnce(wasmtime::Error) -> Error + '_ {
    move |err| Error::Setup(format!("{what}: {err}"))
}

impl Runtime {
    /// The engine (Cranelift, epoch interruption for the time limit and stop requests),
    /// the linker with WASI 0.2 and `wasi:http` whose path and network calls are decided,
    /// and the cache.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`]: the engine or the pool cannot be set up.
    pub fn new(options: &RuntimeOptions) -> Result<Self, Error> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let max_memory = options.max_memory_bytes.unwrap_or(4 << 30);
        if let Some(instances) = options.pool {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(8))
                .total_memories(instances.saturating_mul(4))
                .total_tables(instances.saturating_mul(8))
                .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX));
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(setup("cannot set up Wasmtime"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup("cannot link WASI"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
            .map_err(setup("cannot link wasi:http"))?;
        crate::fs::add_decided(&mut linker)
            .map_err(setup("cannot link the decided file system"))?;
        crate::sockets::add_decided(&mut linker)
            .map_err(setup("cannot link the decided name lookup"))?;
        crate::agent::add_to_linker(&mut linker).map_err(setup("cannot link cordon:agent"))?;
        crate::wait::add_interruptible(&mut linker)
            .map_err(setup("cannot link the interruptible waits"))?;
        let ticker = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let done = ticker.clone();
        std::thread::Builder::new()
            .name("cordon-skill-epoch".into())
            .spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| Error::Setup(format!("cannot start the epoch thread: {e}")))?;
        let cache = options
            .cache_dir
            .as_ref()
            .map(|dir| Cache::new(dir.clone(), &engine));
        Ok(Self {
            engine,
            linker,
            cache,
            ticker,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `skill` (or takes it from the cache) and links it, as a command.
    ///
    /// # Errors
    ///
    /// [`Error::Compile`], [`Error::UnknownImports`] (naming every one), [`Error::NotCommand`].
    pub fn prepare(&self, skill: SkillFile) -> Result<Prepared, Error> {
        self.prepare_as(skill, Kind::Command)
    }

    /// Compiles `skill` (or takes it from the cache) and links it, as a library of functions
    /// called as tools ([`Prepared::functions`]): those it exports itself and those of the
    /// interfaces it exports, WASI's own left out.
    ///
    /// # Errors
    ///
    /// [`Error::Compile`], [`Error::UnknownImports`] (naming every one),
    /// [`Error::NoFunctions`] (naming each exported function left out and why).
    pub fn prepare_functions(&self, skill: SkillFile) -> Result<Prepared, Error> {
        self.prepare_as(skill, Kind::Functions)
    }

    fn prepare_as(&self, skill: SkillFile, kind: Kind) -> Result<Prepared, Error> {
        // A component compiled before was checked before; any other is checked first (a
        // few kilobytes can nest thousands of components, which compile into gigabytes).
        let known = self
            .cache
            .as_ref()
            .is_some_and(|cache| cache.has(skill.sha256()));
        if !known {
            crate::identity::check_structure(&skill)?;
        }
        let compiled = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, skill.sha256(), skill.bytes()),
            None => Component::new(&self.engine, skill.bytes())
                .map(|c| (c, CacheUse::NotStored("no cache directory".into()))),
        };
        let (component, cache) = compiled.map_err(|err| Error::Compile {
            path: skill.path().to_path_buf(),
            message: format!("{err:#}"),
        })?;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let unknown: Vec<String> = imports
            .iter()
            .filter(|name| !PROVIDED.contains(&name.split('@').next().unwrap_or(name)))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(Error::UnknownImports {
                path: skill.path().to_path_buf(),
                names: unknown,
            });
        }
        let linked = |err: wasmtime::Error| Error::Compile {
            path: skill.path().to_path_buf(),
            message: format!("cannot link it: {err:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(linked)?;
        let (command, functions) = match kind {
            Kind::Command => {
                if !ty
                    .exports(&self.engine)
                    .any(|(name, _)| name.starts_with("wasi:cli/run@0.2."))
                {
                    return Err(Error::NotCommand {
                        path: skill.path().to_path_buf(),
                    });
                }
                (
                    Some(CommandPre::new(pre.clone()).map_err(linked)?),
                    Vec::new(),
                )
            }
            Kind::Functions => {
                let exports = ty.exports(&self.engine).map(|(name, e)| (name, e.ty));
                let (functions, skipped) = crate::tools::functions(&self.engine, exports);
                for why in &skipped {
                    tracing::warn!("{}: not offered as a tool: {why}", skill.name());
                }
                if functions.is_empty() {
                    return Err(Error::NoFunctions {
                        path: skill.path().to_path_buf(),
                        skipped,
                    });
                }
                (None, functions)
            }
        };
        Ok(Prepared {
            skill,
            pre,
            command,
            functions,
            cache,
            imports,
        })
    }

    /// Runs `prepared` once, as `run` says.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`]: a directory cannot be opened, or the run cannot be set up;
    /// [`Error::NotCommand`]: it was prepared as functions. A skill that fails, traps or
    /// reaches a limit is not an error: see [`Exit`].
    pub fn run(&self, prepared: &Prepared, run: Run) -> Result<Exit, Error> {
        let command = prepared.command.as_ref().ok_or_else(|| Error::NotCommand {
            path: prepared.skill.path().to_path_buf(),
        })?;
        let (mut store, started) = self.store(run)?;
        let ran = command
            .instantiate(&mut store)
            .and_then(|command| command.wasi_cli_run().call_run(&mut store));
        let (code, trap) = match ran {
            Ok(Ok(())) => (0, None),
            Ok(Err(())) => (1, None),
            Err(err) => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => (exit.0, None),
                None => (1, Some(err)),
            },
        };
        Ok(started.exit(code, trap))
    }

    /// Calls `function` of `prepared` once, in an instance of its own, with `arguments`
    /// (a JSON object, one member a parameter), as `run` says (its `args` and `stdin` unused).
    ///
    /// # Errors
    ///
    /// [`Error::Setup`]: a directory cannot be opened, or the run cannot be set up;
    /// [`Error::Arguments`]: the arguments do not fit the function's parameters. A function
    /// that traps or reaches a limit is not an error: see [`Called`].
    pub fn call(
        &self,
        prepared: &Prepared,
        function: &Function,
        arguments: &serde_json::Value,
        run: Run,
    ) -> Result<Called, Error> {
        let params = crate::tools::arguments(function, arguments).map_err(Error::Arguments)?;
        let (mut store, started) = self.store(run)?;
        // What the component gives back is lifted into host memory: no more than a
        // message may carry.
        store.set_hostcall_fuel(crate::tools::MAX_RESULT_BYTES);
        let mut results = vec![Val::Bool(false); function.results()];
        let called = (|| -> wasmtime::Result<()> {
            let instance = prepared.pre.instantiate(&mut store)?;
            let within = match &function.interface {
                Some(interface) => Some(
                    instance
                        .get_export_index(&mut store, None, interface)
                        .ok_or_else(|| wasmtime::format_err!("no export `{interface}`"))?,
                ),
                None => None,
            };
            let func = instance
                .get_export_index(&mut store, within.as_ref(), &function.export)
                .and_then(|index| instance.get_func(&mut store, index))
                .ok_or_else(|| wasmtime::format_err!("no function `{}`", function.export))?;
            func.call(&mut store, &params, &mut results)
        })();
        Ok(match called.map(|()| crate::tools::returned(&results)) {
            Ok(Ok(returned)) => Called {
                returned: Some(returned),
                exit: started.exit(0, None),
            },
            Ok(Err(too_large)) => Called {
                returned: None,
                exit: started.exit(1, Some(wasmtime::format_err!("{too_large}"))),
            },
            Err(err) => Called {
                returned: None,
                exit: started.exit(1, Some(err)),
            },
        })
    }

    /// A store for one run, its limits in force.
    fn store(&self, run: Run) -> Result<(Store<Host>, Started), Error> {
        let reached = Arc::new(Reached::default());
        let budget = Budget::new(run.limits.output_bytes, reached.clone());
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&run.args)
            .envs(&run.env)
            .stdout(Output {
                sink: run.stdout,
                budget: budget.clone(),
            })
            .stderr(Output {
                sink: run.stderr,
                budget,
            })
            .allow_blocking_current_thread(true);
        crate::sockets::decide_addresses(&mut builder, run.gate.clone());
        if run.stdin {
            builder.inherit_stdin();
        }
        for preopen in &run.preopens {
            let dir = open_decided_dir(&preopen.host)?;
            let perms = if preopen.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder
                .preopened_dir(
                    format!("/proc/self/fd/{}", dir.as_raw_fd()),
                    &preopen.guest,
                    perms,
                )
                .map_err(setup(&format!(
                    "cannot open `{}` for the skill",
                    preopen.host.display()
                )))?;
        }
        let host = Host {
            wasi: builder.build(),
            table: ResourceTable::new(),
            http: {
                // Headers and trailers are host memory: at most 32 KiB a set.
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(32 * 1024);
                http
            },
            hooks: http::Hooks::new(run.gate.clone()),
            limiter: Limiter {
                limit: run.limits.memory_bytes,
                used: 0,
                reached: reached.clone(),
            },
            gate: run.gate,
            clipboard: None,
            watch: crate::wait::Watch {
                stop: run.stop,
                began: std::time::Instant::now(),
                wall: run.limits.wall,
                reached: reached.clone(),
            },
        };
        let mut store = Store::new(&self.engine, host);
        // Host resources (streams, HTTP fields, descriptors) are host memory: a bounded number.
        store.data_mut().table.set_max_capacity(MAX_RESOURCES);
        store.limiter(|host| &mut host.limiter);
        let start = thread_cpu();
        let cpu_limit = run.limits.cpu;
        let watch = store.data().watch.clone();
        let reached_in_callback = reached.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if let Some(why) = watch.ended() {
                return Err(wasmtime::format_err!("{why}"));
            }
            if thread_cpu().saturating_sub(start) > cpu_limit {
                reached_in_callback.set(Stopped::Cpu { limit: cpu_limit });
                return Err(wasmtime::format_err!("processor time limit reached"));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        Ok((store, Started { reached, start }))
    }
}

/// A run under way: what ends it is told apart at its end.
struct Started {
    reached: Arc<Reached>,
    start: Duration,
}

impl Started {
    /// How the run ended, given the status it gave and the error that ended it otherwise.
    fn exit(self, code: i32, trap: Option<wasmtime::Error>) -> Exit {
        let cpu = thread_cpu().saturating_sub(self.start);
        let stopped = trap.map(|err| {
            self.reached
                .take()
                .unwrap_or_else(|| Stopped::Trap(trap_message(&err)))
        });
        // A limit reached inside a host call the skill then handled is still the reason.
        let stopped = stopped.or_else(|| self.reached.take());
        let code = if stopped.is_some() && code == 0 {
            1
        } else {
            code
        };
        Exit { code, stopped, cpu }
    }
}

/// The first line of a trap and its WebAssembly backtrace's first frame, enough to
/// recognise it.
fn trap_message(err: &wasmtime::Error) -> String {
    let text = format!("{err:#}");
    text.lines().take(3).collect::<Vec<_>>().join(" ")
}

/// Opens a directory the launch decision granted, following no link on the way: the
/// decision was made on this canonical path, and a link planted since would lead elsewhere.
fn open_decided_dir(path: &std::path::Path) -> Result<std::os::fd::OwnedFd, Error> {
    cordon_sys::process::open_no_symlinks(path, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|err| {
        Error::Setup(format!(
            "cannot open the granted directory `{}` (it must be a directory, reached without \
             links): {err}",
            path.display()
        ))
    })
}
