//! The `cordon` binary: everything lives in the `cordon_cli` library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cordon_cli::main()
}
