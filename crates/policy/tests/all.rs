//! Integration tests of the policy engine: one binary, cases in `suite/`.
mod suite;
