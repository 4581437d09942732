//! The sandbox helper: a small, single-threaded executable that `cordon exec` starts to
//! build the sandbox (see `cordon_sandbox::launch`). Not meant to be run by hand.
#![forbid(unsafe_code)]

#[cfg(target_os = "linux")]
fn main() {
    let Some(early) = std::env::args().nth(1) else {
        say("cordon-sandbox-helper is started by `cordon exec`, not by hand");
        std::process::exit(2);
    };
    match serde_json::from_str::<cordon_sandbox::launch::Early>(&early) {
        Ok(early) => cordon_sandbox::launch::helper_main(&early),
        Err(e) => {
            say(&format!(
                "cordon-sandbox-helper: malformed start arguments: {e}"
            ));
            std::process::exit(2);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    say("cordon's native sandbox needs Linux");
    std::process::exit(2);
}

/// One line on standard error; one that cannot be written is let go.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
