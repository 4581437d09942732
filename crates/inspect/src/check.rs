//! Validation of matches: checksums and structure where the format has them, and the filters
//! that keep documentation examples and placeholders out.

use base64::Engine as _;

use crate::rules::{Hit, Verdict};
use crate::Confidence;

/// How far past a private key's header its end is looked for.
const KEY_BLOCK: usize = 16 * 1024;

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// A value from documentation (`AKIAIOSFODNN7EXAMPLE`) says so.
fn is_example(value: &[u8]) -> bool {
    contains_ci(value, b"example")
}

/// Shannon entropy of `value` in bits per byte.
pub(crate) fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn digits(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect()
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn number(digits: &[u8]) -> u64 {
    digits
        .iter()
        .fold(0u64, |n, &d| n.wrapping_mul(10).wrapping_add(u64::from(d)))
}

pub(crate) fn not_example(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    if is_example(hit.value()) {
        return None;
    }
    hit.keep(confidence)
}

/// A token whose pattern ends in an open repetition: no example, at most 256 bytes.
pub(crate) fn token_end(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    if value.len() > 256 || hit.hay.get(hit.secret.1).is_some_and(|&b| is_token_byte(b)) {
        return None;
    }
    not_example(hit, confidence)
}

/// A value of a format without a check digit: random enough (3 bits a byte) and no example.
pub(crate) fn random(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    if entropy(hit.value()) < 3.0 {
        return None;
    }
    not_example(hit, confidence)
}

/// HTTP Basic credentials: base64 of `user:password`, printable, with a password.
pub(crate) fn basic_auth(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(hit.value())
        .ok()?;
    let colon = memchr::memchr(b':', &decoded)?;
    let printable = decoded.iter().all(|b| (0x20..0x7f).contains(b));
    if !printable || colon + 1 >= decoded.len() || is_placeholder(&decoded[colon + 1..]) {
        return None;
    }
    hit.keep(confidence)
}

/// An opaque bearer credential (`Authorization: Bearer ...`): random enough, not a
/// placeholder. A JWT or a known token in its place is reported by its own rule.
pub(crate) fn bearer(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    if value.len() > 4096 || is_placeholder(value) || entropy(value) < 3.5 {
        return None;
    }
    hit.keep(confidence)
}

/// A private key block runs to its `-----END ... -----` line; a header with a body too short
/// to be a key (`...` in documentation) is not one.
pub(crate) fn private_key(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let rest = &hit.hay[hit.end..hit.hay.len().min(hit.end + KEY_BLOCK)];
    // The block ends at the next `-----`: an END line, or (a block cut short) the next
    // header, where the search for this one stops.
    let end_marker = memchr::memmem::find(rest, b"-----")
        .filter(|&at| rest[at..].len() >= 8 && rest[at..at + 8].eq_ignore_ascii_case(b"-----END"));
    let (body, end, confidence) = match end_marker {
        Some(at) => {
            let after = &rest[at + 8..];
            let close = memchr::memmem::find(&after[..after.len().min(64)], b"-----")
                .map_or(at + 8, |c| at + 8 + c + 5);
            (&rest[..at], hit.end + close, confidence)
        }
        None => {
            // A block cut short (a truncated paste): the key material up to where it stops.
            let rest = &rest[..memchr::memmem::find(rest, b"-----").unwrap_or(rest.len())];
            let run = rest
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b"+/=\\ \t\r\n".contains(&b)))
                .unwrap_or(rest.len());
            (&rest[..run], hit.end + run, Confidence::Medium)
        }
    };
    let material = body
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || **b == b'+' || **b == b'/')
        .count();
    if material < 64 || memchr::memmem::find(body, b"...").is_some() {
        return None;
    }
    Some(Verdict {
        start: hit.start,
        end,
        confidence,
    })
}

pub(crate) fn aws_secret(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    let next = hit.hay.get(hit.secret.1).copied();
    if next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        || entropy(value) < 4.0
    {
        return None;
    }
    not_example(hit, confidence)
}

pub(crate) fn gcp_service_account(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let from = hit.start.saturating_sub(4096);
    let to = hit.hay.len().min(hit.end + 4096);
    let around = &hit.hay[from..to];
    let has = |needle: &[u8]| memchr::memmem::find(around, needle).is_some();
    if has(b"\"private_key\"") && has(b"\"client_email\"") {
        hit.keep(confidence)
    } else {
        None
    }
}

fn decoded_len(value: &[u8]) -> Option<usize> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .map(|bytes| bytes.len())
}

pub(crate) fn azure_storage(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    (decoded_len(hit.value()) == Some(64)).then_some(())?;
    not_example(hit, confidence)
}

pub(crate) fn azure_sas(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    (decoded_len(hit.value()) == Some(32)).then_some(())?;
    not_example(hit, confidence)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// GitHub's tokens end in the CRC-32 of their 30 random characters, in base 62.
pub(crate) fn github(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    let (random, checksum) = value.get(4..)?.split_at(30);
    let mut crc = crc32fast::hash(random);
    let mut expected = [b'0'; 6];
    for slot in expected.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    (checksum == expected).then(|| hit.keep(confidence))?
}

pub(crate) fn gitlab(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    if hit.value().len() > 100 {
        return None;
    }
    not_example(hit, confidence)
}

pub(crate) fn slack(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    let parts = value
        .split(|&b| b == b'-')
        .filter(|p| !p.is_empty())
        .count();
    if !(24..=256).contains(&value.len()) || parts < 3 {
        return None;
    }
    not_example(hit, confidence)
}

pub(crate) fn stripe(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    if value.len() > 255 {
        return None;
    }
    let confidence = if value[3..].starts_with(b"live") {
        confidence
    } else {
        Confidence::Medium
    };
    not_example(hit, confidence)
}

pub(crate) fn anthropic(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    if !(90..=200).contains(&value.len()) || !value.ends_with(b"AA") {
        return None;
    }
    token_end(hit, confidence)
}

fn json_object(part: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A JWT's header and claims are base64url JSON objects, and the header names an `alg`.
pub(crate) fn jwt(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    if value.len() > 16 * 1024 {
        return None;
    }
    let mut parts = value.split(|&b| b == b'.');
    let header = json_object(parts.next()?)?;
    json_object(parts.next()?)?;
    let signature = parts.next().unwrap_or_default();
    let alg = header.get("alg")?.as_str()?;
    let confidence = if alg.eq_ignore_ascii_case("none") || signature.is_empty() {
        Confidence::Medium
    } else {
        confidence
    };
    hit.keep(confidence)
}

/// Words that stand for a secret rather than being one.
fn is_placeholder(value: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[
        b"example",
        b"xxxx",
        b"****",
        b"changeme",
        b"change_me",
        b"placeholder",
        b"your_",
        b"your-",
        b"dummy",
        b"redacted",
        b"${",
        b"{{",
        b"<",
        b"%s",
        b"process.env",
        b"os.environ",
    ];
    let lowered = value.to_ascii_lowercase();
    WORDS
        .iter()
        .any(|w| memchr::memmem::find(&lowered, w).is_some())
        || matches!(
            lowered.as_slice(),
            b"password" | b"passwd" | b"pass" | b"secret" | b"token" | b"pwd" | b"none" | b"null"
        )
        || lowered.first() == Some(&b'$')
}

pub(crate) fn url_credentials(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    let colon = memchr::memchr(b':', value)?;
    let (user, password) = (&value[..colon], &value[colon + 1..]);
    if user.len() > 64 || password.is_empty() || password.len() > 128 || is_placeholder(password) {
        return None;
    }
    hit.keep(confidence)
}

/// A value assigned to a secret-looking name: long enough, random enough, of at least two
/// character classes, and not a placeholder or a dotted name (`self.config.password`).
pub(crate) fn generic(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let mut end = hit.secret.1;
    while end > hit.secret.0 && b".,;".contains(&hit.hay[end - 1]) {
        end -= 1;
    }
    let value = &hit.hay[hit.secret.0..end];
    if !(12..=200).contains(&value.len()) || is_placeholder(value) {
        return None;
    }
    let classes = [
        value.iter().any(u8::is_ascii_lowercase),
        value.iter().any(u8::is_ascii_uppercase),
        value.iter().any(u8::is_ascii_digit),
        value.iter().any(|b| !b.is_ascii_alphanumeric()),
    ];
    let count = classes.iter().filter(|&&c| c).count();
    // A quoted value is a literal; an unquoted one without digits is more likely a name
    // (`self.config.password`, `getPassword`).
    let quoted = hit.secret.0 > 0 && b"\"'`".contains(&hit.hay[hit.secret.0 - 1]);
    let name_like = !classes[2]
        && value
            .iter()
            .all(|b| b.is_ascii_alphabetic() || b"._".contains(b));
    let threshold = if quoted { 3.0 } else { 3.5 };
    if count < 2
        || (name_like && !(quoted && classes[0] && classes[1]))
        || entropy(value) < threshold
    {
        return None;
    }
    Some(Verdict {
        start: hit.secret.0,
        end,
        confidence,
    })
}

pub(crate) fn email(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    let at = memchr::memchr(b'@', value)?;
    let (local, domain) = (&value[..at], value[at + 1..].to_ascii_lowercase());
    if local.len() > 64
        || domain.len() > 253
        || domain.split(|&b| b == b'.').any(|label| label.len() > 63)
        || local.starts_with(b".")
        || local.ends_with(b".")
        || local == b"git"
    {
        return None;
    }
    let tld = domain.rsplit(|&b| b == b'.').next().unwrap_or_default();
    const RESERVED: &[&[u8]] = &[b"test", b"invalid", b"localhost", b"example", b"local"];
    const FILES: &[&[u8]] = &[
        b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"js", b"css", b"ts", b"map",
        b"json", b"txt", b"md", b"html", b"pdf", b"zip", b"gz",
    ];
    let example_domain = domain
        .split(|&b| b == b'.')
        .any(|label| label == b"example")
        || domain.starts_with(b"example.");
    if RESERVED.contains(&tld) || FILES.contains(&tld) || example_domain {
        return None;
    }
    hit.keep(confidence)
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN has its country's length and its check digits make the number 1 modulo 97.
/// A match that ran on into the next word is cut to the country's length.
pub(crate) fn iban(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    let country: [u8; 2] = value.get(..2)?.try_into().ok()?;
    let length = IBAN_LENGTHS
        .iter()
        .find(|(code, _)| **code == country)
        .map(|(_, len)| *len)?;
    let mut compact = Vec::with_capacity(length);
    let mut end = hit.secret.0;
    for (i, &b) in value.iter().enumerate() {
        if compact.len() == length {
            break;
        }
        if b != b' ' {
            compact.push(b);
            end = hit.secret.0 + i + 1;
        }
    }
    if compact.len() != length || hit.hay.get(end).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    compact.rotate_left(4);
    let mut remainder = 0u32;
    for b in compact {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    (remainder == 1).then_some(Verdict {
        start: hit.secret.0,
        end,
        confidence,
    })
}

fn plausible_date(month: u64, day: u64) -> bool {
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// A Chinese resident identity number: ISO 7064 MOD 11-2 check character and a birth date.
pub(crate) fn cn_resident_id(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let d = digits(&value[..17]);
    let sum: u32 = d.iter().zip(WEIGHTS).map(|(&d, w)| u32::from(d) * w).sum();
    let expected = b"10X98765432"[(sum % 11) as usize];
    let year = number(&d[6..10]);
    if value[17] != expected
        || !(1900..=2099).contains(&year)
        || !plausible_date(number(&d[10..12]), number(&d[12..14]))
    {
        return None;
    }
    hit.keep(confidence)
}

/// A French social security number (NIR): the key is 97 minus the first 13 digits modulo
/// 97 (Corsica's 2A and 2B counted as 19 and 18).
pub(crate) fn fr_nir(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value: Vec<u8> = hit.value().iter().copied().filter(|&b| b != b' ').collect();
    if value.len() != 15 {
        return None;
    }
    let mut body = value[..13].to_vec();
    match (body[5], body[6]) {
        (b'2', b'A') => body[5..7].copy_from_slice(b"19"),
        (b'2', b'B') => body[5..7].copy_from_slice(b"18"),
        _ => {}
    }
    if !body.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = number(&digits(&body));
    let key = number(&digits(&value[13..]));
    (97 - n % 97 == key).then(|| hit.keep(confidence))?
}

/// Payment card numbers: Luhn, and a length that fits the issuer's prefix.
pub(crate) fn payment_card(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let d = digits(hit.value());
    if !(13..=19).contains(&d.len()) || d.iter().all(|&x| x == d[0]) || !luhn(&d) {
        return None;
    }
    let prefix = |n: usize| number(&d[..n]);
    let len = d.len();
    let known = match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&prefix(2)) && len == 16,
        2 => (2221..=2720).contains(&prefix(4)) && len == 16,
        3 => {
            (matches!(prefix(2), 34 | 37) && len == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len))
                || (((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39))
                    && (14..=19).contains(&len))
        }
        6 => {
            (prefix(4) == 6011
                || (644..=649).contains(&prefix(3))
                || prefix(2) == 65
                || prefix(2) == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    };
    known.then(|| hit.keep(confidence))?
}

/// A Spanish DNI: eight digits and the letter of their remainder modulo 23.
pub(crate) fn es_dni(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    let n = number(&digits(&value[..8]));
    let letter = *value.last()?;
    (b"TRWAGMYFPDXBNJZSQVHLCKE"[(n % 23) as usize] == letter).then(|| hit.keep(confidence))?
}

/// A Swedish personal identity number: a date (or a co-ordination number's day + 60) and
/// a Luhn check over its last ten digits.
pub(crate) fn se_personnummer(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let d = digits(hit.value());
    let ten = &d[d.len() - 10..];
    let month = number(&ten[2..4]);
    let day = number(&ten[4..6]);
    let day = if day > 60 { day - 60 } else { day };
    if !plausible_date(month, day) || !luhn(ten) {
        return None;
    }
    hit.keep(confidence)
}

pub(crate) fn phone(hit: &Hit<'_>, confidence: Confidence) -> Option<Verdict> {
    let value = hit.value();
    if hit.start > 0 && hit.hay[hit.start - 1].is_ascii_alphanumeric() {
        return None;
    }
    let count = value.iter().filter(|b| b.is_ascii_digit()).count();
    if value.first() == Some(&b'+') {
        (8..=15)
            .contains(&count)
            .then(|| hit.keep(Confidence::Medium))?
    } else {
        (count == 10).then(|| hit.keep(confidence))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_entropy() {
        assert!(luhn(&digits(b"4539 1488 0343 6467")));
        assert!(!luhn(&digits(b"4539 1488 0343 6468")));
        assert!(entropy(b"aaaaaaaa") < 0.01);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
