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

/// Classifies `ip` (IPv4-mapped IPv6 addresses as their IPv4 address).
pub fn classify(ip: IpAddr) -> AddressClass {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
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
                || segments[0] == 0x2001 && segments[1] == 0x0db8
                || segments[0] == 0x0064 && segments[1] == 0xff9b
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
        ] {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
    }
}
