use std::time::Instant;
fn main() {
    let t = Instant::now();
    let src = cordon_policy::PolicySource::embedded_default();
    println!("source {:?}", t.elapsed());
    let t = Instant::now();
    let p = cordon_policy::Policy::load(&src, Default::default()).unwrap();
    println!("load {:?}", t.elapsed());
    let _ = p;
}
