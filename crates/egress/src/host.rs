//! Destinations as clients spell them, normalised before anything is decided.
//!
//! An address can be written many ways: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`,
//! `[::ffff:127.0.0.1]`, `localhost.`. Each is turned into one canonical form, so a policy
//! that names `127.0.0.1` sees `127.0.0.1` however the agent wrote it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A destination host: an address, or a lowercase name without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal, IPv4-mapped IPv6 addresses turned into IPv4.
    Ip(IpAddr),
    /// A DNS name.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl Host {
    /// The host as the policy sees it: the address without brackets, or the name.
    pub fn as_policy_string(&self) -> String {
        match self {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    /// Reads a host as written in a URI, a `CONNECT` target or a SOCKS request.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: empty, user information (`user@host`), a zone
    /// identifier, characters no host name has, an out-of-range number.
    pub fn parse(raw: &str) -> Result<Host, String> {
        if raw.contains('@') {
            return Err(format!(
                "`{raw}` carries user information (`user@host`), which is refused"
            ));
        }
        if let Some(inner) = raw.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| format!("`{raw}` is an unterminated IPv6 literal"))?;
            if inner.contains('%') {
                return Err(format!("`{raw}` has an IPv6 zone identifier"));
            }
            let ip: Ipv6Addr = inner
                .parse()
                .map_err(|_| format!("`{raw}` is not an IPv6 address"))?;
            return Ok(Host::Ip(canonical_v6(ip)));
        }
        if let Ok(ip) = raw.parse::<Ipv6Addr>() {
            return Ok(Host::Ip(canonical_v6(ip)));
        }
        let name = raw.strip_suffix('.').unwrap_or(raw);
        if name.is_empty() {
            return Err("the host is empty".into());
        }
        if let Some(v4) = parse_ipv4_any(name)? {
            return Ok(Host::Ip(IpAddr::V4(v4)));
        }
        if name.len() > 253 {
            return Err(format!("`{raw}` is longer than a host name can be"));
        }
        for label in name.split('.') {
            let valid = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(format!("`{raw}` is not a valid host name"));
            }
        }
        Ok(Host::Name(name.to_ascii_lowercase()))
    }
}

fn canonical_v6(ip: Ipv6Addr) -> IpAddr {
    match ip.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(ip),
    }
}

/// One part of a numeric IPv4 spelling: decimal, octal (leading `0`) or hex (`0x`).
fn parse_number(part: &str) -> Option<u64> {
    if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        if hex.is_empty() {
            return Some(0);
        }
        return u64::from_str_radix(hex, 16).ok();
    }
    if part.len() > 1 && part.starts_with('0') {
        return u64::from_str_radix(&part[1..], 8).ok();
    }
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// IPv4 in every spelling `inet_aton` accepts (`a`, `a.b`, `a.b.c`, `a.b.c.d`, each part
/// decimal, octal or hex). `Ok(None)` when the name is not numeric at all.
fn parse_ipv4_any(name: &str) -> Result<Option<Ipv4Addr>, String> {
    let parts: Vec<&str> = name.split('.').collect();
    let numbers: Vec<Option<u64>> = parts.iter().map(|p| parse_number(p)).collect();
    let last_numeric = numbers.last().copied().flatten().is_some();
    // A name whose last label is a number is either an address or nothing valid.
    if !last_numeric {
        return Ok(None);
    }
    if parts.len() > 4 || numbers.iter().any(Option::is_none) {
        return Err(format!(
            "`{name}` is neither an IPv4 address nor a host name"
        ));
    }
    let numbers: Vec<u64> = numbers.into_iter().flatten().collect();
    let (init, last) = numbers.split_at(numbers.len() - 1);
    if init.iter().any(|n| *n > 255) {
        return Err(format!("`{name}` is an IPv4 address out of range"));
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if last[0] >= 1u64 << rest_bits {
        return Err(format!("`{name}` is an IPv4 address out of range"));
    }
    let mut value: u64 = 0;
    for n in init {
        value = (value << 8) | n;
    }
    value = (value << rest_bits) | last[0];
    Ok(Some(Ipv4Addr::from(u32::try_from(value).unwrap_or(0))))
}

/// Splits `host:port` (IPv6 literals in brackets).
///
/// # Errors
///
/// A message when the port is missing or not a number, or the host is malformed.
pub fn parse_authority(authority: &str, default_port: Option<u16>) -> Result<(Host, u16), String> {
    let (host, port) = if let Some(end) = authority.rfind(']') {
        let (host, rest) = authority.split_at(end + 1);
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match (port, default_port) {
        (Some(port), _) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{authority}` has an invalid port"))?,
        (None, Some(port)) => port,
        (None, None) => return Err(format!("`{authority}` has no port")),
    };
    Ok((Host::parse(host)?, port))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn every_spelling_of_loopback_is_loopback() {
        for raw in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "0177.0.0.01",
            "127.1",
            "127.0.1",
            "127.0.0.1.",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
            "0x7F.0.0.1",
        ] {
            assert_eq!(Host::parse(raw), Ok(ip("127.0.0.1")), "{raw}");
        }
        assert_eq!(Host::parse("[::1]"), Ok(ip("::1")));
        assert_eq!(Host::parse("169.254.169.254"), Ok(ip("169.254.169.254")));
        assert_eq!(Host::parse("0xa9fea9fe"), Ok(ip("169.254.169.254")));
    }

    #[test]
    fn names_are_lowercased_without_trailing_dot() {
        assert_eq!(
            Host::parse("API.GitHub.com."),
            Ok(Host::Name("api.github.com".into()))
        );
        assert_eq!(
            Host::parse("1password.com"),
            Ok(Host::Name("1password.com".into()))
        );
    }

    #[test]
    fn tricks_are_refused() {
        for raw in [
            "user@evil.com",
            "allowed.com@evil.com",
            "",
            ".",
            "256.0.0.1",
            "1.2.3.4.5",
            "0x100000000",
            "1.2.3.999",
            "[fe80::1%25eth0]",
            "[::1",
            "ev il.com",
            "a..b",
            "12.evil.999",
        ] {
            assert!(Host::parse(raw).is_err(), "{raw} should be refused");
        }
    }

    #[test]
    fn authorities_split_with_default_ports() {
        assert_eq!(
            parse_authority("example.com:8443", None),
            Ok((Host::Name("example.com".into()), 8443))
        );
        assert_eq!(parse_authority("[::1]:80", None), Ok((ip("::1"), 80)));
        assert_eq!(
            parse_authority("example.com", Some(80)),
            Ok((Host::Name("example.com".into()), 80))
        );
        assert!(parse_authority("example.com", None).is_err());
        assert!(parse_authority("example.com:0", None).is_err());
        assert!(parse_authority("example.com:99999", None).is_err());
    }
}
