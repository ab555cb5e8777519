//! The client address a per-client limit counts: the TCP peer, or — only when the peer is a
//! configured trusted proxy — the nearest `X-Forwarded-For` entry that is not one.

use http::header::HeaderName;
use http::HeaderMap;
use std::net::IpAddr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// An IP network, `10.0.0.0/8` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0-{max}"))?,
        };
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

/// The network a client address stands for when counting per client: an IPv4 address is
/// itself, an IPv6 address its /64 (one subscriber gets a /64 or more, and can pick any
/// address in it, so counting a /128 would count nothing).
pub fn client_network(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// `::ffff:10.1.2.3` is `10.1.2.3`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        (a[full] & mask) == (b[full] & mask)
    }
}

/// The proxies whose `X-Forwarded-For` the gateway believes (gateway config
/// `trusted_proxies`). Empty by default: the peer address is the client.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(nets: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted; then walk
    /// `X-Forwarded-For` from the right (the entry our peer added last) past trusted hops
    /// to the first address that is not trusted. A malformed entry stops the walk at the
    /// last trusted hop, which is then counted as the client. No allocation.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let mut hop = peer;
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(text) = value.to_str() else {
                return hop;
            };
            for entry in text.rsplit(',') {
                let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                    return hop;
                };
                if !self.is_trusted(ip) {
                    return canonical(ip);
                }
                hop = ip;
            }
        }
        hop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn clients_are_counted_by_network() {
        assert_eq!(client_network(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_network(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(
            client_network(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_network(ip("2001:db8:1:2:ffff::1")),
            client_network(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            client_network(ip("2001:db8:1:3::1")),
            client_network(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(c.contains(ip("10.200.1.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        let c = Cidr::parse("192.168.1.128/25").expect("cidr");
        assert!(c.contains(ip("192.168.1.200")) && !c.contains(ip("192.168.1.127")));
        assert!(Cidr::parse("::1").expect("cidr").contains(ip("::1")));
        assert!(Cidr::parse("fd00::/8")
            .expect("cidr")
            .contains(ip("fd12::1")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("cidr")
            .contains(ip("8.8.8.8")));
        for bad in ["", "10.0.0.0/33", "::/129", "host/8", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("127.0.0.1"), &xff(&["1.2.3.4"])),
            ip("127.0.0.1")
        );
        let t = TrustedProxies::new(vec![Cidr::parse("10.0.0.0/8").expect("cidr")]);
        // An untrusted peer's header is ignored.
        assert_eq!(t.client(ip("9.9.9.9"), &xff(&["1.2.3.4"])), ip("9.9.9.9"));
        // Rightmost untrusted entry wins; a client cannot prepend its way in.
        assert_eq!(
            t.client(ip("10.0.0.1"), &xff(&["6.6.6.6, 1.2.3.4, 10.0.0.2"])),
            ip("1.2.3.4")
        );
        assert_eq!(
            t.client(ip("10.0.0.1"), &xff(&["6.6.6.6", "1.2.3.4"])),
            ip("1.2.3.4")
        );
        // Nothing usable: the last trusted hop.
        assert_eq!(t.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        assert_eq!(
            t.client(ip("10.0.0.1"), &xff(&["junk, 10.0.0.5"])),
            ip("10.0.0.5")
        );
    }
}
