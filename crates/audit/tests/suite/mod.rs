mod common;
mod store;
mod tamper;
