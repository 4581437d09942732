//! `textkit`: functions a component exports, each served as an MCP tool by
//! `cordon mcp --skill textkit.wasm` (`stats`, `convert`, `spin`, `notes.read`,
//! `notes.remove`), each call decided by cordon's policy and each file it touches decided
//! again when it is opened.

wit_bindgen::generate!({
    path: "wit",
    world: "textkit",
});

use exports::notes;

struct Textkit;

impl Guest for Textkit {
    fn stats(text: String) -> Counts {
        Counts {
            words: u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX),
            lines: u32::try_from(text.lines().count()).unwrap_or(u32::MAX),
            longest: text
                .split_whitespace()
                .fold(None, |longest: Option<&str>, word| match longest {
                    Some(l) if l.chars().count() >= word.chars().count() => Some(l),
                    _ => Some(word),
                })
                .map(str::to_owned),
        }
    }

    fn convert(text: String, style: Style) -> String {
        match style {
            Style::Upper => text.to_uppercase(),
            Style::Lower => text.to_lowercase(),
            Style::Title => text
                .split(' ')
                .map(|word| {
                    let mut chars = word.chars();
                    match chars.next() {
                        Some(first) => first.to_uppercase().chain(chars).collect(),
                        None => String::new(),
                    }
                })
                .collect::<Vec<String>>()
                .join(" "),
        }
    }

    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

impl notes::Guest for Textkit {
    fn read(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|err| format!("cannot read `{path}`: {err}"))
    }

    fn remove(path: String) -> Result<(), String> {
        std::fs::remove_file(&path).map_err(|err| format!("cannot remove `{path}`: {err}"))
    }
}

export!(Textkit);
