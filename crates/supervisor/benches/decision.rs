//! Decision latency on the default policy: cordon's whole pipeline beside bare regorus.
//!
//! Four layers are measured on the same inputs:
//!
//! - `regorus-interpreter`: a bare `regorus::Engine` with the default policy, `set_input` +
//!   `eval_rule` on the input document (what a plain regorus user writes).
//! - `regorus-rvm`: a bare `RegoVM` with the compiled decision, `set_input` + `execute`.
//! - `cordon-policy`: `Policy::evaluate` on the input document (VM pool, conversions,
//!   decision parsing).
//! - `cordon-pipeline`: `Pipeline::decide` on the request (input building, path resolution
//!   with symlinks, evaluation), without an audit sink.
//!
//! Criterion reports means; after it, each case is timed call by call to print p50/p99.
//! Run: `cargo bench -p cordon-supervisor --bench decision`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails by panicking"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cordon_policy::{EngineKind, Policy, PolicyOptions, PolicySource};
use cordon_supervisor::Pipeline;
use cordon_types::{Capability, InputBuilder, InputEnv, Request};
use criterion::Criterion;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;

struct Case {
    name: String,
    capability: Capability,
    request: Request,
    input: serde_json::Value,
}

fn cases(builder: &InputBuilder) -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data/requests.json");
    let all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap();
    all.into_iter()
        .map(|(name, value)| {
            let request: Request = serde_json::from_value(value).unwrap();
            let capability = Capability::new(request.capability.as_deref().unwrap()).unwrap();
            let mut input = builder.build(&request).unwrap();
            input["context"]["time"] = "2026-11-26T12:00:00Z".into();
            Case {
                name,
                capability,
                request,
                input,
            }
        })
        .collect()
}

fn bare_engine(source: &PolicySource) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    for file in source.files() {
        if file.is_rego() {
            engine
                .add_policy(file.display.clone(), file.text.clone())
                .unwrap();
        } else {
            engine
                .add_data(regorus::Value::from_json_str(&file.text).unwrap())
                .unwrap();
        }
    }
    engine
}

fn bare_vm(engine: &mut regorus::Engine, capability: &Capability) -> RegoVM {
    let path = capability.decision_path();
    let entry: regorus::Rc<str> = path.as_str().into();
    let compiled = engine.compile_with_entrypoint(&entry).unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[path.as_str()]).unwrap();
    let mut vm = RegoVM::new();
    vm.load_program(program);
    vm.set_data(engine.get_data()).unwrap();
    vm
}

/// Every layer, as a closure deciding one case.
type Runner<'a> = Box<dyn FnMut() + 'a>;

fn runners<'a>(
    case: &'a Case,
    engine: &'a mut regorus::Engine,
    vm: &'a mut RegoVM,
    policy: &'a Policy,
    pipeline: &'a Pipeline,
) -> Vec<(&'static str, Runner<'a>)> {
    let input = regorus::Value::from(case.input.clone());
    let input_for_vm = input.clone();
    let path = case.capability.decision_path();
    vec![
        (
            "regorus-interpreter",
            Box::new(move || {
                engine.set_input(input.clone());
                black_box(engine.eval_rule(path.clone()).unwrap());
            }),
        ),
        (
            "regorus-rvm",
            Box::new(move || {
                vm.set_input(input_for_vm.clone());
                black_box(vm.execute().unwrap());
            }),
        ),
        (
            "cordon-policy",
            Box::new(move || {
                black_box(policy.evaluate(&case.capability, &case.input));
            }),
        ),
        (
            "cordon-pipeline",
            Box::new(move || {
                black_box(pipeline.decide(&case.request));
            }),
        ),
    ]
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn main() {
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("work");
    fs_err::create_dir_all(work.join("src")).unwrap();
    fs_err::write(work.join("src/main.rs"), "fn main() {}").unwrap();
    let env = InputEnv {
        user: Some("alice".into()),
        home: Some(home.path().to_path_buf()),
        cwd: Some(work.clone()),
        workspace: vec![work.clone()],
        ..InputEnv::default()
    };
    let builder = InputBuilder::new(env);
    let cases = cases(&builder);
    let source = PolicySource::embedded_default();
    let policy = Arc::new(
        Policy::load(
            &source,
            PolicyOptions {
                engine: EngineKind::Rvm,
                ..PolicyOptions::default()
            },
        )
        .unwrap(),
    );
    let pipeline = Pipeline::new(policy.clone(), builder, None);

    let mut criterion = Criterion::default().configure_from_args();
    let mut table = Vec::new();
    for case in &cases {
        let mut engine = bare_engine(&source);
        let mut vm = bare_vm(&mut engine, &case.capability);
        let mut group = criterion.benchmark_group(&case.name);
        let mut layers = runners(case, &mut engine, &mut vm, &policy, &pipeline);
        for (layer, run) in layers.iter_mut() {
            group.bench_function(*layer, |b| b.iter(&mut *run));
        }
        group.finish();
        for (layer, run) in layers.iter_mut() {
            for _ in 0..2_000 {
                run();
            }
            let mut samples: Vec<u128> = (0..50_000)
                .map(|_| {
                    let start = Instant::now();
                    run();
                    start.elapsed().as_nanos()
                })
                .collect();
            samples.sort_unstable();
            table.push((
                case.name.clone(),
                *layer,
                percentile(&samples, 0.5),
                percentile(&samples, 0.99),
            ));
        }
    }
    criterion.final_summary();

    println!("\n| input | layer | p50 (µs) | p99 (µs) |\n| --- | --- | ---: | ---: |");
    for (case, layer, p50, p99) in table {
        println!("| {case} | {layer} | {p50:.1} | {p99:.1} |");
    }
}
