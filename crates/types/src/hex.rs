//! Digests as people and logs read them.

/// Lowercase hexadecimal, two digits a byte: how cordon writes SHA-256 digests, policy
/// revisions and keys.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// `N` bytes from `2 × N` hexadecimal digits (either case); `None` for anything else.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_lowercase_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(super::unhex::<3>("00AB7f"), Some([0x00, 0xab, 0x7f]));
        assert_eq!(super::unhex::<3>("00ab7"), None);
        assert_eq!(super::unhex::<2>("0g00"), None);
        assert_eq!(super::unhex::<1>("+1"), None);
    }
}
