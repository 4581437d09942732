#![allow(clippy::unwrap_used, reason = "scratch")]
use std::time::Instant;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut engine = regorus::Engine::new();
    for f in args[1].split(',') { engine.add_policy(f.into(), fs_err::read_to_string(f).unwrap()).unwrap(); }
    engine.add_data(regorus::Value::from_json_str(&fs_err::read_to_string("policies/default/data.json").unwrap()).unwrap()).unwrap();
    let input = regorus::Value::from_json_str(&args[2]).unwrap();
    for rule in &args[3..] {
        let entry: regorus::Rc<str> = rule.as_str().into();
        let compiled = engine.compile_with_entrypoint(&entry).unwrap();
        let program = Compiler::compile_from_policy(&compiled, &[rule.as_str()]).unwrap();
        let mut vm = RegoVM::new();
        vm.load_program(program);
        vm.set_data(engine.get_data()).unwrap();
        vm.set_input(input.clone());
        let v = vm.execute().unwrap();
        let mut t: Vec<u128> = (0..20000).map(|_| { let s = Instant::now(); vm.set_input(input.clone()); std::hint::black_box(vm.execute().unwrap()); s.elapsed().as_nanos() }).collect();
        t.sort();
        println!("{rule}: p50 {:.1}µs p99 {:.1}µs => {}", t[t.len()/2] as f64/1000.0, t[t.len()*99/100] as f64/1000.0, v.to_string().chars().take(80).collect::<String>());
    }
}
