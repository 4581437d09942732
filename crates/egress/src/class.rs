//! What kind of address a connection would reach.

use std::net::IpAddr;

/// The kind of an address, as policies see it (`input.resource.addresses[_].class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Reachable on the internet.
    Public,
    /// This machine: 127.0.0.0/8, ::1.
    Loopback,
    /// A private network: 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier NAT), fc00::/7.
    Private,
    /// Link-local: 169.254/16, fe80::/10.
    LinkLocal,
    /// A cloud instance-metadata service (169.254.169.254, 169.254.170.2, fd00:ec2::254,
    /// 100.100.100.200).
    Metadata,
    /// Unspecified, broadcast, multicast, documentation or otherwise reserved: never a
    /// destination.
    Reserved,
}

impl AddressClass {
    /// The name policies compare.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link_local",
            AddressClass::Metadata => "metadata",
            AddressClass::Reserved => "reserved",
        }
    }

    /// Whether the address is inside the machine or its networks.
    pub fn is_internal(self) -> bool {
        self != AddressClass::Public
    }
}

/// How an IPv6 address carries an IPv4 one.
enum Embedded {
    /// Reaches exactly the IPv4 address: mapped (`::ffff:0:0/96`), translated
    /// (`::ffff:0:0:0/96`), or the well-known NAT64 prefix (`64:ff9b::/96`).
    Same(std::net::Ipv4Addr),
    /// Reaches it through a relay or a deprecated form: 6to4 (`2002::/16`) and
    /// IPv4-compatible (`::/96`) addresses. Internal when the IPv4 address is; otherwise as
    /// given by `otherwise`.
    Via(std::net::Ipv4Addr, AddressClass),
}

fn embedded(v6: std::net::Ipv6Addr) -> Option<Embedded> {
    let s = v6.segments();
    let low = std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(Embedded::Same(v4));
    }
    match s {
        [0, 0, 0, 0, 0xffff, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            Some(Embedded::Same(low))
        }
        // `::` and `::1` are themselves, not IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(low) > 1 => {
            Some(Embedded::Via(low, AddressClass::Reserved))
        }
        [0x2002, hi, lo, ..] => Some(Embedded::Via(
            std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8),
            AddressClass::Public,
        )),
        // Local-use NAT64 (RFC 8215): a translator of this network.
        [0x64, 0xff9b, 1, ..] => Some(Embedded::Via(low, AddressClass::Private)),
        _ => None,
    }
}

/// Classifies `ip`. An IPv6 address that carries an IPv4 address (mapped, translated,
/// NAT64, 6to4, IPv4-compatible) is classified by that IPv4 address, so that no spelling of
/// an internal address passes as public.
pub fn classify(ip: IpAddr) -> AddressClass {
    let ip = match ip {
        IpAddr::V6(v6) => match embedded(v6) {
            Some(Embedded::Same(v4)) => IpAddr::V4(v4),
            Some(Embedded::Via(v4, otherwise)) => {
                let class = classify(IpAddr::V4(v4));
                return if class.is_internal() {
                    class
                } else {
                    otherwise
                };
            }
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            if [
                [169, 254, 169, 254],
                [169, 254, 170, 2],
                [100, 100, 100, 200],
            ]
            .contains(&[a, b, c, d])
            {
                AddressClass::Metadata
            } else if a == 127 {
                AddressClass::Loopback
            } else if a == 10
                || (a == 172 && (16..=31).contains(&b))
                || (a == 192 && b == 168)
                || (a == 100 && (64..=127).contains(&b))
            {
                AddressClass::Private
            } else if a == 169 && b == 254 {
                AddressClass::LinkLocal
            } else if a == 0
                || a >= 224
                || (a == 192 && b == 0 && c == 2)
                || (a == 198 && (b == 18 || b == 19))
                || (a == 198 && b == 51 && c == 100)
                || (a == 203 && b == 0 && c == 113)
                || (a == 192 && b == 0 && c == 0)
            {
                AddressClass::Reserved
            } else {
                AddressClass::Public
            }
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            if v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                AddressClass::Metadata
            } else if v6.is_loopback() {
                AddressClass::Loopback
            } else if (segments[0] & 0xfe00) == 0xfc00 {
                AddressClass::Private
            } else if (segments[0] & 0xffc0) == 0xfe80 {
                AddressClass::LinkLocal
            } else if v6.is_unspecified()
                || v6.is_multicast()
                // Documentation.
                || segments[0] == 0x2001 && segments[1] == 0x0db8
                // Teredo (its client address is obfuscated; a tunnel, never a destination).
                || segments[0] == 0x2001 && segments[1] == 0
                // Deprecated site-local.
                || (segments[0] & 0xffc0) == 0xfec0
            {
                AddressClass::Reserved
            } else {
                AddressClass::Public
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for (ip, class) in [
            ("8.8.8.8", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.32.0.1", AddressClass::Public),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fd12::1", AddressClass::Private),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("169.254.169.254", AddressClass::Metadata),
            ("::ffff:169.254.169.254", AddressClass::Metadata),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("100.100.100.200", AddressClass::Metadata),
            ("0.0.0.0", AddressClass::Reserved),
            ("255.255.255.255", AddressClass::Reserved),
            ("224.0.0.1", AddressClass::Reserved),
            ("::", AddressClass::Reserved),
            // IPv4 carried in IPv6.
            ("::7f00:1", AddressClass::Loopback),
            ("::127.0.0.1", AddressClass::Loopback),
            ("::8.8.8.8", AddressClass::Reserved),
            ("::ffff:0:127.0.0.1", AddressClass::Loopback),
            ("::ffff:0:a9fe:a9fe", AddressClass::Metadata),
            ("2002:7f00:1::1", AddressClass::Loopback),
            ("2002:a9fe:a9fe::", AddressClass::Metadata),
            ("2002:0a00:0001::1", AddressClass::Private),
            ("2002:0808:0808::1", AddressClass::Public),
            ("64:ff9b::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::10.0.0.1", AddressClass::Private),
            ("64:ff9b::8.8.8.8", AddressClass::Public),
            ("64:ff9b:1::7f00:1", AddressClass::Loopback),
            ("64:ff9b:1::808:808", AddressClass::Private),
            ("2001::1", AddressClass::Reserved),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                AddressClass::Reserved,
            ),
            ("fec0::1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Reserved),
            ("2606:4700::1111", AddressClass::Public),
        ] {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
    }
}
