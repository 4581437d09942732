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
/// CAN and SUB cancel a sequence in progress.
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;

/// The most bytes of one control or operating-system sequence held back while deciding; a
/// longer one is dropped.
pub const MAX_HELD: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// In `ESC [ ...`, held.
    Csi,
    /// In a CSI too long to hold: dropped up to its final byte.
    CsiSkip,
    /// In `ESC ] ...`, held while its number is read.
    Osc,
    /// In an OSC that passes: copied to its end.
    OscPass,
    /// In an OSC that is dropped (ends at BEL or `ESC \`), or a device control string (ends
    /// only at `ESC \`: a BEL inside is content): swallowed to its end.
    Swallow {
        bel_ends: bool,
    },
    /// ESC seen inside a swallowed or passing string: `\` ends the string; anything else
    /// ends it too (as terminals do) and starts a new escape sequence.
    StringEscape {
        pass: bool,
    },
}

/// A streaming filter of terminal output.
#[derive(Debug)]
pub struct Filter {
    state: State,
    held: Vec<u8>,
    /// UTF-8 continuation bytes still expected in the text (so that bytes 0x80–0x9F inside a
    /// character are not taken for C1 controls).
    continuation: u8,
    /// A 0xC2 byte held back: with 0x80–0x9F after it, it is a C1 control spelt in UTF-8.
    lead_c2: bool,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            state: State::Ground,
            held: Vec::new(),
            continuation: 0,
            lead_c2: false,
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
        // Device status (`6n`, cursor position), device attributes (`c`, `>c`, `=c`),
        // terminal parameters (`x`).
        b'n' | b'c' | b'x' => true,
        // XTVERSION (`>q`), the keyboard protocol query (`?u`).
        b'q' => params.starts_with(b">"),
        b'u' => params.starts_with(b"?"),
        // Window reports: 11 state, 13 position, 14/15/16 sizes, 18/19 text area, 20/21
        // icon and window titles.
        b't' => {
            let first: String = params
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| char::from(b))
                .collect();
            matches!(
                first.trim_start_matches('0'),
                "11" | "13" | "14" | "15" | "16" | "18" | "19" | "20" | "21"
            )
        }
        // DECRQM mode reports (`$p`).
        b'p' => body.ends_with(b"$"),
        _ => false,
    }
}

/// Whether an OSC with this beginning (after `ESC ]`) is dropped: the clipboard (52, and
/// the clipboard and file commands of iTerm2 (1337) and kitty (5522, 5113)), or a query (`?`
/// as a parameter: colours, fonts). `None` while it cannot tell yet.
fn osc_is_dropped(start: &[u8]) -> Option<bool> {
    let semicolon = start.iter().position(|&b| b == b';')?;
    let number = &start[..semicolon];
    let number = std::str::from_utf8(number)
        .ok()
        .and_then(|n| n.parse::<u32>().ok());
    if matches!(number, Some(52 | 1337 | 5522 | 5113)) {
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

    /// Ends the sequence in progress where it stands: what was held is dropped, and an OSC
    /// already passing to the terminal is closed there.
    fn cut_sequence(&mut self, out: &mut Vec<u8>) {
        if matches!(
            self.state,
            State::OscPass | State::StringEscape { pass: true }
        ) {
            out.push(BEL);
        }
        self.held.clear();
        self.state = State::Ground;
    }

    /// Starts a new escape sequence at an ESC.
    fn escape(&mut self) {
        self.held.clear();
        self.held.push(ESC);
        self.state = State::Escape;
    }

    fn ground(&mut self, byte: u8, out: &mut Vec<u8>) {
        if self.lead_c2 {
            self.lead_c2 = false;
            if (0x80..=0x9f).contains(&byte) {
                // U+0080–U+009F: a C1 control spelt in UTF-8; dropped.
                return;
            }
            out.push(0xc2);
            self.continuation = 0;
        }
        match byte {
            ESC => {
                self.continuation = 0;
                self.escape();
            }
            0x80..=0xbf if self.continuation > 0 => {
                self.continuation -= 1;
                out.push(byte);
            }
            // Stray C1 controls (DCS, CSI, OSC, SOS, PM, APC, DECID...): dropped.
            0x80..=0x9f => self.continuation = 0,
            0xc2 => self.lead_c2 = true,
            0xc0..=0xdf => {
                self.continuation = 1;
                out.push(byte);
            }
            0xe0..=0xef => {
                self.continuation = 2;
                out.push(byte);
            }
            0xf0..=0xf7 => {
                self.continuation = 3;
                out.push(byte);
            }
            _ => {
                self.continuation = 0;
                out.push(byte);
            }
        }
    }

    fn step(&mut self, byte: u8, out: &mut Vec<u8>) {
        // A C1 control inside a sequence (raw, or spelt in UTF-8 as C2 80–9F) ends it in
        // terminals that honour C1, and starts whatever it names: the sequence is cut here
        // (an OSC already passing is closed) and the control dropped.
        if self.state != State::Ground {
            if self.lead_c2 {
                self.lead_c2 = false;
                if (0x80..=0x9f).contains(&byte) {
                    self.cut_sequence(out);
                    return;
                }
                if self.state == State::OscPass {
                    out.push(0xc2);
                }
            }
            let ascii_only = matches!(
                self.state,
                State::Escape | State::Csi | State::CsiSkip | State::Osc
            );
            if (0x80..=0x9f).contains(&byte) || (ascii_only && byte >= 0x80) {
                self.cut_sequence(out);
                return;
            }
            if byte == 0xc2 && self.state == State::OscPass {
                self.lead_c2 = true;
                return;
            }
        }
        // In any sequence, CAN and SUB cancel it, and ESC starts a new one.
        if self.state != State::Ground {
            if byte == CAN || byte == SUB {
                self.held.clear();
                self.state = State::Ground;
                return;
            }
            if byte == ESC {
                match self.state {
                    State::OscPass => {
                        out.push(ESC);
                        self.state = State::StringEscape { pass: true };
                    }
                    State::Swallow { .. } => self.state = State::StringEscape { pass: false },
                    _ => self.escape(),
                }
                return;
            }
        }
        match self.state {
            State::Ground => self.ground(byte, out),
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
                    // DECID asks the terminal to identify itself; a string terminator
                    // with no string means nothing.
                    b'Z' | b'\\' => {
                        self.held.clear();
                        State::Ground
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
                    self.held.clear();
                    self.state = State::CsiSkip;
                }
            }
            State::CsiSkip => {
                if (0x40..=0x7e).contains(&byte) {
                    self.state = State::Ground;
                }
            }
            State::Osc => {
                self.held.push(byte);
                if byte == BEL {
                    // Ended before it said what it was: a bare OSC passes.
                    out.append(&mut self.held);
                    self.state = State::Ground;
                    return;
                }
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
                        self.held.clear();
                        self.state = State::Swallow { bel_ends: true };
                    }
                    None => {}
                }
            }
            State::OscPass => {
                out.push(byte);
                if byte == BEL {
                    self.state = State::Ground;
                }
            }
            State::Swallow { bel_ends } => {
                if byte == BEL && bel_ends {
                    self.state = State::Ground;
                }
            }
            State::StringEscape { pass } => {
                if byte == b'\\' {
                    if pass {
                        out.push(byte);
                    }
                    self.state = State::Ground;
                } else {
                    // The string ended at the ESC; this byte continues a new escape.
                    self.escape();
                    self.step(byte, out);
                }
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

    #[test]
    fn restarted_malformed_and_eight_bit_sequences_do_not_smuggle() {
        for sequence in [
            &b"\x1b\x1b]52;c;UFdO\x07"[..],
            b"\x1b[\x1b]52;c;UFdO\x07",
            b"\x1b]\x1b]52;c;UFdO\x07",
            b"\x1b]052;c;UFdO\x07",
            b"\x1b]1337;Copy=:UFdO\x07",
            b"\x1b]5522;type=write\x07",
            b"\x1b[\x1b[6n",
            b"\x1bZ",
            b"\x1b[>0q",
            b"\x1b[?u",
            b"\xc2\x9d52;c;UFdO\x07",
            b"\x9d52;c;UFdO\x07",
            b"\xc2\x9b6n",
            b"\x9b6n",
            b"\x90$qm\x1b\\",
            b"\x1b]0;t\xc2\x9d52;c;ZXZpbA==\x07",
            b"\x1b]0;t\xc2\x9c\xc2\x9d52;c;eA==\x1b\\",
            b"\x1b[\xc2\x9d1;;Z\x07",
            b"\x1b]0;\xc2\x9a\x07",
            b"\x1b]0;t\x9d52;c;eA==\x07",
        ] {
            let out = filter(&[sequence]);
            let text = String::from_utf8_lossy(&out);
            // No clipboard write or report request is left to reach the terminal: no OSC 52
            // or report sequence, and no C1 control at all (these inputs hold no other text
            // above ASCII).
            let has = |pattern: &[u8]| out.windows(pattern.len()).any(|w| w == pattern);
            assert!(
                !has(b"\x1b]52")
                    && !has(b"\x1b]052")
                    && !has(b"\x1b]1337")
                    && !has(b"\x1b[6n")
                    && !out.iter().any(|b| (0x80..=0x9f).contains(b)),
                "{:?} -> {:?}",
                String::from_utf8_lossy(sequence),
                text
            );
            assert!(!out.contains(&0x9d) && !out.contains(&0x9b) && !out.contains(&0x90));
        }
        // An OSC ended by an ESC that is not a string terminator: the next sequence is judged
        // on its own.
        let out = filter(&[b"\x1b]0;t\x1b]52;c;UFdO\x07after"]);
        assert!(!String::from_utf8_lossy(&out).contains("52;"), "{out:?}");
        assert!(out.ends_with(b"after"));
        // Too long to decide: dropped, not passed.
        let mut long = b"\x1b[".to_vec();
        long.extend(std::iter::repeat_n(b'0', 300));
        long.extend_from_slice(b"6nok");
        assert_eq!(filter(&[&long]), b"ok");
        // Text in any script passes whole.
        let text = "héllo wörld — 日本語 🙂".as_bytes();
        assert_eq!(filter(&[text]), text.to_vec());
        for cut in 0..text.len() {
            assert_eq!(
                filter(&[&text[..cut], &text[cut..]]),
                text.to_vec(),
                "{cut}"
            );
        }
    }
}
