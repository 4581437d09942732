//! The person's terminal and signals, as a session relays them to its program.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use cordon_sys::process as sys;

/// Passes cordon's termination signals to the helper, which passes them to the program;
/// with a terminal, a window size change is copied to the program's terminal instead.
pub(super) fn forward_signals(helper: i32, master: Option<std::sync::Arc<OwnedFd>>) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new(sys::FORWARDED_SIGNALS) else {
        tracing::warn!("cannot catch signals; they will not reach the program");
        return;
    };
    std::thread::spawn(move || {
        let mut terminations = 0;
        for signal in signals.forever() {
            match (&master, signal) {
                (Some(master), libc::SIGWINCH) => copy_window_size_to(master),
                _ => {
                    let _ = sys::kill(helper, signal);
                    if matches!(signal, libc::SIGTERM | libc::SIGINT | libc::SIGHUP) {
                        terminations += 1;
                    }
                    // A program that ignores being asked to end is ended: the sandbox goes
                    // and cordon checks what it left.
                    if terminations == 3 {
                        tracing::warn!("the program ignores termination; ending the sandbox");
                        let _ = sys::kill(helper, libc::SIGKILL);
                    }
                }
            }
        }
    });
}

/// Which of standard input, output and error are terminals.
pub(super) fn streams_on_terminal() -> [bool; 3] {
    [
        sys::is_terminal(std::io::stdin().as_fd()),
        sys::is_terminal(std::io::stdout().as_fd()),
        sys::is_terminal(std::io::stderr().as_fd()),
    ]
}

/// Copies the window size of the person's terminal (the first standard stream that is one)
/// to the program's.
fn copy_window_size_to(master: &OwnedFd) {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let streams = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let terminal = streams.into_iter().find(|fd| sys::is_terminal(*fd));
    if let Some(terminal) = terminal {
        let _ = sys::copy_window_size(terminal, master.as_fd());
    }
}

/// Copies keys to the program's pseudo-terminal (when standard input is the person's
/// terminal, put in raw mode meanwhile) and its output back, less the escape sequences a
/// program may not send the person's terminal ([`super::terminal_filter`]).
#[derive(Debug)]
pub(super) struct TerminalRelay {
    pub(super) master: std::sync::Arc<OwnedFd>,
    saved: Option<sys::TerminalMode>,
    output_done: std::sync::mpsc::Receiver<()>,
}

impl TerminalRelay {
    pub(super) fn start(master: OwnedFd, helper: i32) -> Self {
        let [stdin_is_terminal, stdout_is_terminal, _] = streams_on_terminal();
        copy_window_size_to(&master);
        let saved = if stdin_is_terminal {
            sys::make_raw(std::io::stdin().as_fd()).ok()
        } else {
            None
        };
        let master = std::sync::Arc::new(master);
        if stdin_is_terminal {
            let input = master.clone();
            std::thread::spawn(move || {
                let stdin = std::io::stdin().as_fd().try_clone_to_owned();
                if let (Ok(fd), Ok(stdin)) = (input.try_clone(), stdin) {
                    let mut to_program = std::fs::File::from(fd);
                    let _ = std::io::copy(&mut std::fs::File::from(stdin), &mut to_program);
                }
                // A terminal in raw mode ends only when it hangs up: so does the program's.
                let _ = sys::kill(helper, libc::SIGHUP);
            });
        }
        let (done, output_done) = std::sync::mpsc::channel();
        let output = master.clone();
        std::thread::spawn(move || {
            // The program's terminal output goes where the person's terminal is.
            let to = if stdout_is_terminal {
                std::io::stdout().as_fd().try_clone_to_owned()
            } else {
                std::io::stderr().as_fd().try_clone_to_owned()
            };
            if let (Ok(fd), Ok(to)) = (output.try_clone(), to) {
                let mut from_program = std::fs::File::from(fd);
                let mut to = std::fs::File::from(to);
                // Unbuffered: a prompt has no newline to flush a line buffer. Ends with EIO
                // once no process holds the program's side any more.
                let mut filter = super::terminal_filter::Filter::default();
                let mut buf = vec![0u8; 64 * 1024];
                let mut out = Vec::with_capacity(buf.len());
                while let Ok(n) = std::io::Read::read(&mut from_program, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.clear();
                    filter.push(&buf[..n], &mut out);
                    if std::io::Write::write_all(&mut to, &out).is_err() {
                        break;
                    }
                }
            }
            let _ = done.send(());
        });
        Self {
            master,
            saved,
            output_done,
        }
    }

    /// Waits (at most a second) for the last output, then restores the terminal.
    pub(super) fn finish(self) {
        let _ = self.output_done.recv_timeout(Duration::from_secs(1));
        if let Some(saved) = &self.saved {
            let _ = sys::set_terminal_mode(std::io::stdin().as_fd(), saved);
        }
    }
}
