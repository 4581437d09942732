//! `summarise PATH...`: for each text file (directories walked), its lines, words and first
//! non-empty line. Plain `std::fs`: the files it can read are those its grant holds.

use std::path::Path;

/// What this skill asks for: one directory, read-only, by the name `/notes`
/// (`cordon skill inspect` shows it; covered by the skill's digest and signature).
#[used]
#[link_section = "cordon-capabilities"]
static CAPABILITIES: [u8; 47] = *br#"{"dirs": [{"guest": "/notes", "write": false}]}"#;
use std::process::ExitCode;

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: summarise PATH...");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for path in &paths {
        if let Err(err) = summarise(Path::new(path)) {
            eprintln!("summarise: {path}: {err}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn summarise(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            summarise(&entry.path())?;
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    println!(
        "{}: {} lines, {} words: {}",
        path.display(),
        text.lines().count(),
        text.split_whitespace().count(),
        first.chars().take(80).collect::<String>()
    );
    Ok(())
}
