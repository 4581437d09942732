//! `clip read`, `clip write TEXT`, `clip copy TEXT` (write, then read back): the desktop's
//! clipboard through `cordon:agent/clipboard`, each call decided by cordon's policy.

use std::process::ExitCode;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "agent",
});

use cordon::agent::clipboard;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let text = args.get(2).cloned().unwrap_or_default();
    let result = match args.get(1).map(String::as_str) {
        Some("read") => clipboard::read_text(),
        Some("write") => {
            clipboard::write_text(&text).map(|()| format!("wrote {} bytes", text.len()))
        }
        Some("copy") => clipboard::write_text(&text).and_then(|()| clipboard::read_text()),
        _ => {
            eprintln!("usage: clip read | write TEXT | copy TEXT");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("clip: {why}");
            ExitCode::FAILURE
        }
    }
}
