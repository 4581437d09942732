//! `fetch URL`: GETs the URL (following up to five redirects, each a new request the host
//! decides) and prints the status line and the body.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(mut url) = std::env::args().nth(1) else {
        eprintln!("usage: fetch URL");
        return ExitCode::from(2);
    };
    for _ in 0..=5 {
        let response = match skill_common::get(&url, 1 << 20) {
            Ok(response) => response,
            Err(err) => {
                eprintln!("fetch {url}: {err}");
                return ExitCode::FAILURE;
            }
        };
        match response.location {
            Some(next) if (300..400).contains(&response.status) => {
                println!("{} {url} -> {next}", response.status);
                url = next;
            }
            _ => {
                println!("{} {url}", response.status);
                let _ = std::io::stdout().write_all(&response.body);
                return ExitCode::SUCCESS;
            }
        }
    }
    eprintln!("fetch: too many redirects");
    ExitCode::FAILURE
}
