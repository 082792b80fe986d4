//! Which addresses a webhook may be delivered to: only globally routable ones, by default.
//!
//! A webhook URL is chosen by a course creator, so without this guard it could point the
//! platform's servers at their own internal network (SSRF): `http://169.254.169.254/` (cloud
//! metadata), `http://localhost:6379/`, or a public name that resolves to `10.0.0.5`.
//!
//! The ranges are those of IANA's IPv4 and IPv6 Special-Purpose Address Registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry/>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/>) that are not globally
//! reachable, plus multicast: keep the list in step with those registries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `address` is globally routable: not loopback, private, link-local, CGNAT,
/// unique-local, unspecified, multicast, broadcast, documentation, benchmarking or otherwise
/// reserved. IPv4 addresses embedded in IPv6 (mapped, compatible, 6to4, NAT64) are judged as
/// the IPv4 address they carry.
///
/// ```
/// use fermion_webhooks::sender::is_global_address;
///
/// assert!(is_global_address("93.184.215.14".parse().unwrap()));
/// assert!(!is_global_address("169.254.169.254".parse().unwrap()));
/// assert!(!is_global_address("::ffff:127.0.0.1".parse().unwrap()));
/// ```
pub fn is_global_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let blocked = a == 0                                  // "this network"
        || a == 10                                        // private
        || (a == 100 && (64..128).contains(&b))           // CGNAT 100.64/10
        || a == 127                                       // loopback
        || (a == 169 && b == 254)                         // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))            // private
        || (a == 192 && b == 0 && c == 0)                 // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                 // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)               // 6to4 relay anycast
        || (a == 192 && b == 168)                         // private
        || (a == 198 && (b == 18 || b == 19))             // benchmarking
        || (a == 198 && b == 51 && c == 100)              // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)               // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !blocked
}

fn is_global_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    let embedded_v4 = || {
        let [.., a, b, c, d] = address.octets();
        Ipv4Addr::new(a, b, c, d)
    };
    if address.is_unspecified() || address.is_loopback() {
        return false;
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if segments[..5] == [0; 5] && (segments[5] == 0xffff || segments[5] == 0) {
        return is_global_v4(embedded_v4());
    }
    // 64:ff9b::/96 NAT64 carries an IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_global_v4(embedded_v4());
    }
    // 2002::/16 6to4 carries one in bits 16..48.
    if segments[0] == 0x2002 {
        let [_, _, a, b, c, d, ..] = address.octets();
        return is_global_v4(Ipv4Addr::new(a, b, c, d));
    }
    let blocked = (segments[0] & 0xfe00) == 0xfc00       // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80               // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0               // site-local (deprecated)
        || (segments[0] & 0xff00) == 0xff00               // multicast
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x2001 && segments[1] < 0x0200)  // IETF protocol assignments, Teredo
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0]) // discard-only
        || (segments[..3] == [0x64, 0xff9b, 1])           // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
        || (segments[0] == 0x3fff && segments[1] < 0x1000) // documentation 3fff::/20 (RFC 9637)
        || segments[0] == 0; // other reserved ::/16 forms
    !blocked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(text: &str) -> bool {
        is_global_address(text.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_not_global() {
        for blocked in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::1",
            "3fff::1",
            "3fff:fff:ffff::1",
        ] {
            assert!(!global(blocked), "{blocked} must be blocked");
        }
    }

    #[test]
    fn public_addresses_are_global() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "3fff:1000::1",
        ] {
            assert!(global(public), "{public} must be allowed");
        }
    }
}
