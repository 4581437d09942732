mod common;
mod eval;
mod help;
mod policy_cmd;
mod test_cmd;
