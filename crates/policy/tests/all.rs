//! Integration tests of the policy engine: one binary, cases in `suite/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]
mod suite;
