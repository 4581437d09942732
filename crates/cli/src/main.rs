//! The `cordon` binary: everything lives in the `cordon_cli` library.
#![forbid(unsafe_code)]

fn main() {
    cordon_cli::main()
}
