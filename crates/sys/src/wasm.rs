//! Loading compiled WebAssembly components from cordon's own cache.
//!
//! Wasmtime runs native code from a precompiled artifact as it is: a changed artifact is
//! changed code. Loading one is the only unsafe step of the skill runtime, so it lives here.

use wasmtime::component::Component;
use wasmtime::Engine;

/// Loads a component that `engine` (or an engine of the same configuration) compiled and
/// serialised with `Component::serialize`.
///
/// The caller vouches for `artifact`: it must be bytes this program wrote to a private
/// directory and read back whole, checked against the digest written with them. A wrong
/// Wasmtime version or engine configuration is still refused by Wasmtime itself.
///
/// # Errors
///
/// Wasmtime's refusal of the artifact (not an artifact, another version or configuration).
pub fn load_own_component(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: Wasmtime requires that the bytes be a trusted artifact of a compatible engine.
    // They are: the caller read them whole from cordon's own cache directory (mode 0700, owned
    // by this user) and checked them against the SHA-256 written beside them when this
    // program compiled them; Wasmtime checks the version and configuration itself.
    unsafe { Component::deserialize(engine, artifact) }
}
