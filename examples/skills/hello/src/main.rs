//! `hello [NAME]`: prints a greeting. The smallest skill, for trying `cordon run` and for
//! measuring what starting a skill costs.

fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "world".to_owned());
    println!("hello, {name}");
}
