//! What starting a skill costs: compiling it, starting it from the compiled-code cache, and
//! running it again through the library API (pooling allocator, `InstancePre`), beside bare
//! Wasmtime doing the same with the same component and no decisions.
//!
//! `cargo xtask skills && cargo bench -p cordon-skills --bench start`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails by panicking"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cordon_skills::{Decision, Gate, Limits, Run, Runtime, RuntimeOptions, Sink, SkillFile};
use criterion::{criterion_group, criterion_main, Criterion};

struct AllowAll;

impl Gate for AllowAll {
    fn decide(&self, _: &str, _: &str, _: serde_json::Value) -> Decision {
        Decision {
            allow: true,
            reasons: Vec::new(),
            obligations: Vec::new(),
            grants: None,
        }
    }
}

fn hello() -> SkillFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/release/hello.wasm");
    SkillFile::read(&path).expect("build the example skills first: cargo xtask skills")
}

fn run_once(runtime: &Runtime, prepared: &cordon_skills::Prepared) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let exit = runtime
        .run(
            prepared,
            Run {
                args: vec!["hello".into()],
                env: Vec::new(),
                preopens: Vec::new(),
                gate: Arc::new(AllowAll),
                limits: Limits::default(),
                stdin: false,
                stdout: Sink::Memory(out.clone()),
                stderr: Sink::Memory(out),
                stop: Default::default(),
            },
        )
        .unwrap();
    assert_eq!(exit.code, 0);
}

fn cordon(c: &mut Criterion) {
    let skill = hello();
    let mut group = c.benchmark_group("cordon-skills");
    group.sample_size(10);
    let uncached = Runtime::new(&RuntimeOptions::default()).unwrap();
    group.bench_function("compile", |b| {
        b.iter(|| uncached.prepare(skill.clone()).unwrap());
    });
    group.sample_size(100);
    let cache = tempfile::tempdir().unwrap();
    let cached = Runtime::new(&RuntimeOptions {
        cache_dir: Some(cache.path().join("skills")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    cached.prepare(skill.clone()).unwrap();
    group.bench_function("start from the disk cache (load, link, run)", |b| {
        b.iter(|| {
            let prepared = cached.prepare(skill.clone()).unwrap();
            assert_eq!(prepared.cache(), &cordon_skills::CacheUse::Hit);
            run_once(&cached, &prepared);
        });
    });
    let pooled = Runtime::new(&RuntimeOptions {
        pool: Some(16),
        max_memory_bytes: Some(512 << 20),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let prepared = pooled.prepare(skill).unwrap();
    group.bench_function("warm run (pool, InstancePre)", |b| {
        b.iter(|| run_once(&pooled, &prepared));
    });
    group.finish();
}

/// Bare Wasmtime: the same component, WASI as Wasmtime provides it, no decisions, no limits.
fn bare(c: &mut Criterion) {
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
    use wasmtime_wasi::p2::bindings::sync::CommandPre;
    use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

    struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }
    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }
    let skill = hello();
    let mut config = Config::new();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(16)
        .total_core_instances(128)
        .total_memories(64)
        .total_tables(128)
        .max_memory_size(512 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).unwrap();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let component = Component::new(&engine, skill.bytes()).unwrap();
    let artifact = component.serialize().unwrap();
    let pre = CommandPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let run = |pre: &CommandPre<State>| {
        let out = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new().arg("hello").stdout(out).build();
        let mut store = Store::new(
            &engine,
            State {
                wasi,
                table: ResourceTable::new(),
            },
        );
        let command = pre.instantiate(&mut store).unwrap();
        command
            .wasi_cli_run()
            .call_run(&mut store)
            .unwrap()
            .unwrap();
    };
    let mut group = c.benchmark_group("bare wasmtime");
    group.sample_size(100);
    group.bench_function("start from a precompiled artifact (load, link, run)", |b| {
        b.iter(|| {
            let component = cordon_sys::wasm::load_own_component(&engine, &artifact).unwrap();
            run(&CommandPre::new(linker.instantiate_pre(&component).unwrap()).unwrap());
        });
    });
    group.bench_function("warm run (pool, InstancePre)", |b| b.iter(|| run(&pre)));
    group.finish();
}

criterion_group!(benches, cordon, bare);
criterion_main!(benches);
