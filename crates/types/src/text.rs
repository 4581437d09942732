//! Text from untrusted places (a program's host names and paths, a skill's declarations) as
//! it may be shown to a person.

/// `text` with every control character shown as `?`: the parts of a question the program
/// chose (a host name, a path) must not move the cursor or rewrite what the person reads.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || invisible(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Characters that change how text reads without showing: format characters (direction
/// overrides and isolates, zero-width ones, tags), variation selectors, fillers and blanks
/// that render as nothing, line and paragraph separators.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_and_invisible_characters_are_shown_as_question_marks() {
        assert_eq!(printable("a\nb\u{1b}[2J\u{202E}c"), "a?b?[2J?c");
        assert_eq!(printable("plain text: ok"), "plain text: ok");
        assert_eq!(printable("\u{0600}1\u{06DD}2\u{110BD}"), "?1?2?");
    }
}
