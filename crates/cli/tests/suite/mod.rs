mod audit;
mod common;
mod eval;
mod examples;
mod forward;
mod help;
mod policy_cmd;
mod test_cmd;
