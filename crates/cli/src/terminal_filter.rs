//! What a confined program may not make the person's terminal do.
//!
//! A program's output reaches the person's terminal through cordon's relay, and a terminal
//! obeys escape sequences: OSC 52 writes the clipboard (the next paste runs the agent's
//! command in another shell), and report requests (device status, attributes, the window
//! title, colours, `DECRQSS`) make the terminal type an answer. Device control strings are
//! dropped whole: tmux and screen pass their contents to the outer terminal. Everything
//! else passes unchanged, so colours, cursor movement and full-screen programs work.
//!
//! The filter works on a stream: a sequence split between two reads is held back until its
//! end (at most [`MAX_HELD`] bytes; a longer one passes as it came, unless it is one the
//! filter drops, which is dropped to its end).

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// The most bytes of one control or operating-system sequence held back while deciding.
pub const MAX_HELD: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// In `ESC [ ...`, held.
    Csi,
    /// In `ESC ] ...`, held while its number is read.
    Osc,
    /// In an OSC that passes: copied to its end.
    OscPass,
    /// In an OSC that is dropped (ends at BEL or `ESC \`), or a device control string (ends
    /// only at `ESC \`: a BEL inside is content): swallowed to its end.
    Swallow {
        bel_ends: bool,
    },
    /// ESC seen inside a swallowed or passing string (a string terminator is `ESC \`).
    StringEscape {
        pass: bool,
        bel_ends: bool,
    },
}

/// A streaming filter of terminal output.
#[derive(Debug)]
pub struct Filter {
    state: State,
    held: Vec<u8>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            state: State::Ground,
            held: Vec::new(),
        }
    }
}

/// Whether a complete CSI sequence (`ESC [` params final) asks the terminal to answer.
fn csi_is_report(sequence: &[u8]) -> bool {
    let Some((&last, body)) = sequence.split_last() else {
        return false;
    };
    let params = body.get(2..).unwrap_or_default();
    match last {
        // Device status (`6n`, cursor position), device attributes (`c`, `>c`, `=c`).
        b'n' | b'c' => true,
        // Window reports: 11 state, 13 position, 14/15/16 sizes, 18/19 text area, 20/21
        // icon and window titles.
        b't' => {
            let first: String = params
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| char::from(b))
                .collect();
            matches!(
                first.as_str(),
                "11" | "13" | "14" | "15" | "16" | "18" | "19" | "20" | "21"
            )
        }
        // DECRQM mode reports (`$p`).
        b'p' => body.ends_with(b"$"),
        _ => false,
    }
}

/// Whether an OSC with this beginning (after `ESC ]`) is dropped: 52 (clipboard), or a
/// query (`?` as a parameter: colours, fonts).
fn osc_is_dropped(start: &[u8]) -> Option<bool> {
    let semicolon = start.iter().position(|&b| b == b';')?;
    let number = &start[..semicolon];
    if number == b"52" {
        return Some(true);
    }
    let rest = &start[semicolon + 1..];
    if rest.is_empty() {
        return None;
    }
    Some(rest.split(|&b| b == b';').any(|part| part == b"?") || rest.starts_with(b"?"))
}

impl Filter {
    /// Filters `input`, appending what may reach the terminal to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            self.step(byte, out);
        }
    }

    fn step(&mut self, byte: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Ground => {
                if byte == ESC {
                    self.held.clear();
                    self.held.push(byte);
                    self.state = State::Escape;
                } else {
                    out.push(byte);
                }
            }
            State::Escape => {
                self.held.push(byte);
                self.state = match byte {
                    b'[' => State::Csi,
                    b']' => State::Osc,
                    // DCS, and the other string introducers (SOS, PM, APC).
                    b'P' | b'X' | b'^' | b'_' => {
                        self.held.clear();
                        State::Swallow { bel_ends: false }
                    }
                    _ => {
                        out.append(&mut self.held);
                        State::Ground
                    }
                };
            }
            State::Csi => {
                self.held.push(byte);
                if (0x40..=0x7e).contains(&byte) {
                    if !csi_is_report(&self.held) {
                        out.append(&mut self.held);
                    }
                    self.held.clear();
                    self.state = State::Ground;
                } else if self.held.len() > MAX_HELD {
                    out.append(&mut self.held);
                    self.state = State::Ground;
                }
            }
            State::Osc => {
                if byte == BEL || byte == ESC {
                    // Ended before it said what it was: a bare OSC passes.
                    self.held.push(byte);
                    if byte == BEL {
                        out.append(&mut self.held);
                        self.state = State::Ground;
                    } else {
                        out.append(&mut self.held);
                        self.state = State::StringEscape {
                            pass: true,
                            bel_ends: true,
                        };
                    }
                    return;
                }
                self.held.push(byte);
                match osc_is_dropped(&self.held[2..]) {
                    Some(true) => {
                        self.held.clear();
                        self.state = State::Swallow { bel_ends: true };
                    }
                    Some(false) => {
                        out.append(&mut self.held);
                        self.state = State::OscPass;
                    }
                    None if self.held.len() > MAX_HELD => {
                        out.append(&mut self.held);
                        self.state = State::OscPass;
                    }
                    None => {}
                }
            }
            State::OscPass | State::Swallow { .. } => {
                let (pass, bel_ends) = match self.state {
                    State::Swallow { bel_ends } => (false, bel_ends),
                    _ => (true, true),
                };
                if pass {
                    out.push(byte);
                }
                if byte == BEL && bel_ends {
                    self.state = State::Ground;
                } else if byte == ESC {
                    self.state = State::StringEscape { pass, bel_ends };
                }
            }
            State::StringEscape { pass, bel_ends } => {
                if pass {
                    out.push(byte);
                }
                self.state = if byte == b'\\' {
                    State::Ground
                } else if pass {
                    State::OscPass
                } else {
                    State::Swallow { bel_ends }
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = Filter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            f.push(chunk, &mut out);
        }
        out
    }

    #[test]
    fn ordinary_output_and_colours_pass() {
        let text = b"plain \x1b[1;31mred\x1b[0m \x1b[2J\x1b[H\x1b]0;title\x07done\r\n";
        assert_eq!(filter(&[text]), text.to_vec());
        // Split anywhere, the same.
        for cut in 0..text.len() {
            assert_eq!(
                filter(&[&text[..cut], &text[cut..]]),
                text.to_vec(),
                "{cut}"
            );
        }
    }

    #[test]
    fn clipboard_writes_are_dropped() {
        assert_eq!(filter(&[b"a\x1b]52;c;ZXZpbA==\x07b"]), b"ab");
        assert_eq!(filter(&[b"a\x1b]52;c;ZXZp", b"bA==\x1b\\b"]), b"ab");
        assert_eq!(filter(&[b"a\x1b]5", b"2;;x\x07b"]), b"ab");
    }

    #[test]
    fn reports_and_device_strings_are_dropped() {
        for sequence in [
            &b"\x1b[6n"[..],
            b"\x1b[c",
            b"\x1b[>c",
            b"\x1b[21t",
            b"\x1b[14;2t",
            b"\x1b[?2026$p",
            b"\x1b]10;?\x07",
            b"\x1b]11;?\x1b\\",
            b"\x1bP$qm\x1b\\",
            b"\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\",
        ] {
            let mut text = b"<".to_vec();
            text.extend_from_slice(sequence);
            text.extend_from_slice(b">");
            assert_eq!(
                filter(&[&text]),
                b"<>",
                "{:?}",
                String::from_utf8_lossy(sequence)
            );
        }
        // Title changes and resize requests still pass.
        assert_eq!(filter(&[b"\x1b[8;24;80t"]), b"\x1b[8;24;80t");
    }
}
