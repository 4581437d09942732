//! What can go wrong loading or running a skill, each with what and where.

use std::path::PathBuf;

/// An error loading, compiling or running a skill. Each names the file or the limit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The skill's file could not be read.
    #[error("cannot read skill `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not WebAssembly at all.
    #[error("`{path}` is not a WebAssembly file (it does not start with `\\0asm`)")]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// A core module, not a component.
    #[error(
        "`{path}` is a core WebAssembly module, not a component: build the skill for \
         `wasm32-wasip2` (or wrap the module with `wasm-tools component new` and a WASI adapter)"
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// Wasmtime refused to compile the component.
    #[error("cannot compile `{path}`: {message}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Wasmtime's reason.
        message: String,
    },
    /// The component imports interfaces cordon does not provide.
    #[error(
        "`{path}` imports what cordon does not provide: {}; a skill may import WASI 0.2 \
         (cli, clocks, filesystem, io, random, sockets, http) and cordon:agent (clipboard)",
        .names.join(", ")
    )]
    UnknownImports {
        /// The file.
        path: PathBuf,
        /// The imports, as the component names them.
        names: Vec<String>,
    },
    /// The component is not a command (it does not export `wasi:cli/run`).
    #[error("`{path}` is not a command component: it does not export `wasi:cli/run`")]
    NotCommand {
        /// The file.
        path: PathBuf,
    },
    /// The component exports no function that can be called as a tool.
    #[error(
        "`{path}` exports no function that can be called as a tool{}",
        if .skipped.is_empty() { String::new() } else { format!(" (left out: {})", .skipped.join("; ")) }
    )]
    NoFunctions {
        /// The file.
        path: PathBuf,
        /// Each exported function left out, and why.
        skipped: Vec<String>,
    },
    /// A function's arguments do not fit its parameters.
    #[error("{0}")]
    Arguments(String),
    /// The component cannot be parsed, or what it declares is malformed.
    #[error("`{path}` is malformed: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The engine or the run could not be set up.
    #[error("{0}")]
    Setup(String),
}
