//! `cordon test`: run policy unit tests.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use cordon_policy::{run_tests, Outcome, PolicySource, TestOptions, TestReport};

use super::shared::{load_config, PolicyArgs};
use crate::report::{CliError, Hint};
use crate::{Cli, Exit};

/// Run the `test_*` rules of policies, like `opa test`
///
/// Every `.rego` file and `data.json`/`data.yaml` under the given paths is loaded, and every
/// rule whose name starts with `test_` is evaluated: it passes when it is true, fails when it
/// is false or undefined, and errs when evaluation fails. `todo_test_*` rules are skipped.
/// One line is printed per failing test (all tests with `-v`), then a summary line. The exit
/// status is 1 when any test fails or errs, or a file does not parse.
///
/// Examples:
///   cordon test policies/default
///   cordon test -v ./policy ./shared-lib
///   cordon test --run 'net_test' --json ./policy
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TestCommand {
    /// Policy directories or files [default: `policy.path` of the config, else the built-in policy]
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Print every test, not only failures
    #[arg(short = 'v', long)]
    verbose: bool,

    /// Run only tests whose full name (`data.pkg.test_x`) matches this regular expression
    #[arg(long, short = 'r', value_name = "REGEX")]
    run: Option<String>,

    /// Time limit for one test, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    timeout_ms: u64,

    /// Print the results as JSON: one object with every test
    #[arg(long)]
    json: bool,
}

impl TestCommand {
    /// Runs the command.
    pub fn run(&self, cli: &Cli) -> Result<Exit, CliError> {
        let source = if self.paths.is_empty() {
            let config = load_config(cli, &PolicyArgs::default())?;
            cordon_supervisor::load_source(&config)?
        } else {
            PolicySource::from_paths(&self.paths)?
        };
        let mut options = match &self.run {
            Some(pattern) => TestOptions::with_filter(pattern)?,
            None => TestOptions::default(),
        };
        options.timeout = Duration::from_millis(self.timeout_ms);
        let report = run_tests(&source, &options)
            .map_err(|e| CliError::from(e).with_exit(Exit::Failed))
            .hint("fix the policy file named above; `cordon policy check PATH` reports the same error")?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&report, self.verbose);
        }
        Ok(if report.success() {
            Exit::Ok
        } else {
            Exit::Failed
        })
    }
}

fn print_report(report: &TestReport, verbose: bool) {
    let mut file = None;
    for result in &report.results {
        let label = match &result.outcome {
            Outcome::Pass if !verbose => continue,
            Outcome::Skip if !verbose => continue,
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Error(_) => "ERROR",
            Outcome::Skip => "SKIPPED",
        };
        if file.as_ref() != Some(&result.file) {
            if file.is_some() {
                outln!();
            }
            outln!("{}:", result.file);
            file = Some(result.file.clone());
        }
        outln!("{}: {label} ({:?})", result.name, result.duration);
        if let Outcome::Error(message) = &result.outcome {
            for line in message.lines() {
                outln!("  {line}");
            }
        }
    }
    if file.is_some() {
        outln!("{}", "-".repeat(80));
    }
    let total: Duration = report.results.iter().map(|r| r.duration).sum();
    outln!(
        "{} passed, {} failed, {} errored, {} skipped ({} tests in {:.1?})",
        report.passed(),
        report.failed(),
        report.errors(),
        report.skipped(),
        report.results.len(),
        total
    );
}
