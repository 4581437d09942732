//! The person's terminal and signals, as a session relays them to its program.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use cordon_sys::process as sys;

use super::HelperSignals;
use crate::consent::{printable, Broker, PendingRequest, Prompter, Scope};

/// Passes cordon's termination signals to the helper, which passes them to the program;
/// with a terminal, a window size change is copied to the program's terminal instead.
pub(super) fn forward_signals(helper: HelperSignals, master: Option<std::sync::Arc<OwnedFd>>) {
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
                    let _ = helper.send(signal);
                    if matches!(signal, libc::SIGTERM | libc::SIGINT | libc::SIGHUP) {
                        terminations += 1;
                    }
                    // A program that ignores being asked to end is ended: the sandbox goes
                    // and cordon checks what it left.
                    if terminations == 3 {
                        tracing::warn!("the program ignores termination; ending the sandbox");
                        let _ = helper.send(libc::SIGKILL);
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
    /// Relays between the person's terminal and the program's `master`; with `prompter`,
    /// the consent questions it shows pause the program's output and take the keys typed
    /// meanwhile.
    pub(super) fn start(
        master: OwnedFd,
        helper: HelperSignals,
        prompter: Option<Arc<TerminalPrompter>>,
    ) -> Self {
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
            let prompter = prompter.clone();
            std::thread::spawn(move || {
                let stdin = std::io::stdin().as_fd().try_clone_to_owned();
                if let (Ok(fd), Ok(stdin)) = (input.try_clone(), stdin) {
                    let mut to_program = std::fs::File::from(fd);
                    let mut from_person = std::fs::File::from(stdin);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = std::io::Read::read(&mut from_person, &mut buf) {
                        let Some(keys) = buf.get(..n).filter(|k| !k.is_empty()) else {
                            break;
                        };
                        // Keys typed while a question is shown answer it; the program
                        // never gets them.
                        if prompter.as_ref().is_some_and(|p| p.take_keys(keys)) {
                            continue;
                        }
                        if to_program.write_all(keys).is_err() {
                            break;
                        }
                    }
                }
                // A terminal in raw mode ends only when it hangs up: so does the program's.
                let _ = helper.send(libc::SIGHUP);
            });
        }
        if let Some(prompter) = &prompter {
            prompter.lock().relayed = true;
            prompter.start();
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
                    // Held while a question is shown: the program's output waits (and, once
                    // its terminal's buffer is full, so does the program).
                    let held = prompter.as_ref().map(|p| p.hold_output());
                    if to.write_all(&out).is_err() {
                        break;
                    }
                    drop(held);
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

/// How long the keyboard must have been quiet, after a question appears, before keys answer
/// it: a person typing for the program when the question comes (which the program can time,
/// since it sees their keys) answers nothing. Each key typed sooner starts the wait again.
const QUIET: Duration = Duration::from_secs(1);

/// Written before a question: ends any string or sequence the program's output left open
/// (ST, CAN), and resets attributes, character set and cursor, so that nothing the program
/// printed can hide or restyle the question.
const RESET: &[u8] = b"\x1b\\\x18\x1b[0m\x1b(B\x0f\x1b[?25h\r\n";

/// The consent backend `terminal`: each question is shown on the person's terminal, which
/// cordon holds (the program has a pseudo-terminal of its own, so it can neither see the
/// question nor type the answer). While a question is shown the program's output waits and
/// the person's keys go to the question.
#[derive(Default)]
pub(crate) struct TerminalPrompter {
    state: Mutex<PromptState>,
    changed: Condvar,
}

#[derive(Default)]
struct PromptState {
    queue: VecDeque<(PendingRequest, Weak<Broker>)>,
    showing: Option<String>,
    /// When the keyboard was last heard before keys were taken: the question's start, or
    /// the last key dropped since.
    quiet_since: Option<Instant>,
    /// Keys are taken for the question shown (the keyboard was quiet long enough).
    taking: bool,
    keys: Vec<u8>,
    withdrawn: HashSet<String>,
    started: bool,
    /// The relay holds the terminal (raw, its keys read by the relay); before it does,
    /// questions read the terminal themselves, line by line.
    relayed: bool,
}

impl Prompter for TerminalPrompter {
    fn prompt(&self, request: &PendingRequest, broker: Weak<Broker>) {
        if let Ok(mut state) = self.state.lock() {
            state.queue.push_back((request.clone(), broker));
            self.changed.notify_all();
        }
    }

    fn withdraw(&self, id: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.queue.retain(|(r, _)| r.id != id);
            if state.showing.as_deref() == Some(id) {
                state.withdrawn.insert(id.to_owned());
            }
            self.changed.notify_all();
        }
    }
}

impl TerminalPrompter {
    fn lock(&self) -> MutexGuard<'_, PromptState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts showing questions, on a thread of its own (questions asked before the program
    /// runs, about its launch, read the terminal themselves).
    pub(super) fn start(self: &Arc<Self>) {
        let mut state = self.lock();
        if std::mem::replace(&mut state.started, true) {
            return;
        }
        let prompter = Arc::clone(self);
        std::thread::Builder::new()
            .name("cordon-consent".into())
            .spawn(move || prompter.run())
            .map(drop)
            .unwrap_or_else(|err| tracing::warn!("cannot show consent questions: {err}"));
    }

    /// Waits while a question is shown; the program's output is written while the guard
    /// is held, so that a question never starts in the middle of it.
    fn hold_output(&self) -> MutexGuard<'_, PromptState> {
        let mut state = self.lock();
        while state.showing.is_some() {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state
    }

    /// Takes `keys` for the question shown, if one is; whether they were taken.
    fn take_keys(&self, keys: &[u8]) -> bool {
        let mut state = self.lock();
        if state.showing.is_none() {
            return false;
        }
        let quiet = state.quiet_since.is_some_and(|at| at.elapsed() >= QUIET);
        if state.taking || quiet {
            state.taking = true;
            state.keys.extend_from_slice(keys);
            self.changed.notify_all();
        } else {
            state.quiet_since = Some(Instant::now());
        }
        true
    }

    fn run(&self) {
        loop {
            let next = {
                let mut state = self.lock();
                loop {
                    if let Some(next) = state.queue.pop_front() {
                        state.showing = Some(next.0.id.clone());
                        state.quiet_since = Some(Instant::now());
                        state.taking = false;
                        state.keys.clear();
                        break next;
                    }
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            let (request, broker) = next;
            let said = self.ask(&request, &broker);
            let _ = std::io::stderr().write_all(format!("{said}\r\n").as_bytes());
            let mut state = self.lock();
            state.showing = None;
            state.withdrawn.remove(&request.id);
            self.changed.notify_all();
        }
    }

    /// Shows `request` and waits for an answer typed and confirmed with Enter; returns what
    /// became of it.
    fn ask(&self, request: &PendingRequest, broker: &Weak<Broker>) -> String {
        let offered = |kind: &str| request.scopes.iter().any(|s| s == kind);
        let mut choices = Vec::new();
        if request.code {
            choices.push("the code your authenticator shows = allow once");
        } else {
            if offered("once") {
                choices.push("y = allow once");
            }
            if offered("session") {
                choices.push("s = this session");
            }
            if offered("minutes") {
                choices.push("m = 10 minutes");
            }
            if offered("always") {
                choices.push("always = always");
            }
        }
        choices.push("n = deny");
        choices.push("x = deny this and every later question");
        let mut text = String::from_utf8_lossy(RESET).into_owned();
        text.push_str(&format!(
            "cordon: the program in session {} asks to {}\r\n",
            request.session,
            printable(&request.what)
        ));
        if let Some(message) = &request.message {
            text.push_str(&format!("  {}\r\n", printable(message)));
        }
        for reason in &request.why {
            text.push_str(&format!("  why: {}\r\n", printable(reason)));
        }
        if !self.lock().relayed {
            // Before the program runs, the terminal is in line mode: what was typed before
            // the question (a whole line, or half of one) must not answer it.
            let _ = sys::discard_input(std::io::stdin().as_fd());
        }
        let left = request.expires_in();
        text.push_str(&format!(
            "  type {}, then Enter [{} s]: ",
            choices.join(", "),
            left.as_secs()
        ));
        let _ = std::io::stderr().write_all(text.as_bytes());
        let deadline = Instant::now() + left;
        let mut typed = String::new();
        let mut state = self.lock();
        loop {
            if state.withdrawn.contains(&request.id) {
                return "\r\ncordon: answered elsewhere, or no answer in time".into();
            }
            let keys: Vec<u8> = state.keys.drain(..).collect();
            for key in keys {
                let line = match key {
                    // Ctrl-C, Ctrl-D, Escape: no, to this and to every later question.
                    3 | 4 | 27 => "x".to_owned(),
                    b'\r' | b'\n' => std::mem::take(&mut typed),
                    8 | 127 => {
                        if typed.pop().is_some() {
                            let _ = std::io::stderr().write_all(b"\x08 \x08");
                        }
                        continue;
                    }
                    b' '..=b'~' if typed.len() < 16 => {
                        typed.push(char::from(key));
                        if state.relayed {
                            let shown: &[u8] = if request.code { b"*" } else { &[key] };
                            let _ = std::io::stderr().write_all(shown);
                        }
                        continue;
                    }
                    _ => continue,
                };
                let line = line.trim().to_owned();
                let is_code = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
                let choice = match line.as_str() {
                    "x" | "X" => None,
                    "n" | "N" => Some((false, Scope::Once)),
                    _ if request.code && is_code => Some((true, Scope::Once)),
                    "y" | "Y" if !request.code && offered("once") => Some((true, Scope::Once)),
                    "s" | "S" if !request.code && offered("session") => {
                        Some((true, Scope::Session))
                    }
                    "m" | "M" if !request.code && offered("minutes") => {
                        Some((true, Scope::Minutes(10)))
                    }
                    "always" if !request.code && offered("always") => Some((true, Scope::Always)),
                    _ => {
                        let _ = std::io::stderr().write_all(
                            b"\r\ncordon: not one of the choices; type it again, then Enter: ",
                        );
                        continue;
                    }
                };
                drop(state);
                let Some(broker) = broker.upgrade() else {
                    return "\r\ncordon: the session is over".into();
                };
                let Some((allow, scope)) = choice else {
                    broker.mute("terminal");
                    return "\r\ncordon: denied; no more questions in this session (all denied)"
                        .into();
                };
                let code = (allow && request.code).then_some(line.as_str());
                match broker.answer(&request.id, allow, scope, "terminal", code) {
                    Ok(answer) => return format!("\r\ncordon: {}", printable(&answer.reason)),
                    Err(why) if code.is_some() && why.ends_with("still waits") => {
                        let _ = std::io::stderr().write_all(
                            format!("\r\ncordon: {}; code: ", printable(&why)).as_bytes(),
                        );
                    }
                    Err(why) => return format!("\r\ncordon: {}", printable(&why)),
                }
                state = self.lock();
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return "\r\ncordon: no answer in time; denied".into();
            }
            if state.relayed {
                state = self
                    .changed
                    .wait_timeout(state, left)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|e| e.into_inner().0);
            } else {
                // Before the program runs: nothing else reads the terminal, which is still
                // in line mode (it echoes, and gives a line at Enter).
                drop(state);
                let stdin = std::io::stdin();
                let wait = left.min(Duration::from_millis(100));
                if matches!(sys::wait_readable(stdin.as_fd(), wait), Ok(true)) {
                    let mut buf = [0u8; 256];
                    match std::io::Read::read(&mut stdin.lock(), &mut buf) {
                        // A line typed before the question (or within its first second)
                        // answers nothing: say so, and wait for another.
                        Ok(n) if n > 0 => {
                            if !self.take_keys(buf.get(..n).unwrap_or_default())
                                || !self.lock().taking
                            {
                                let _ = std::io::stderr().write_all(
                                    b"cordon: that was typed before the question; type the answer again: ",
                                );
                            }
                        }
                        // The terminal is gone: no one can answer.
                        _ => return "\r\ncordon: the terminal closed; denied".into(),
                    }
                }
                state = self.lock();
            }
        }
    }
}
