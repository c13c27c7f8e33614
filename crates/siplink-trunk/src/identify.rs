//! Recognising requests from a trunk by their source address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::config::TrunkConfig;
use crate::error::{Error, Result};

/// An IPv4 or IPv6 address range: `192.0.2.0/24`, `2001:db8::/32`, or a single
/// address (`/32` or `/128` implied).
///
/// Host bits below the prefix are cleared (`192.0.2.10/24` is `192.0.2.0/24`).
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are read as IPv4, in ranges
/// and in [`Cidr::contains`].
///
/// ```
/// use siplink_trunk::Cidr;
/// let net: Cidr = "192.0.2.0/24".parse()?;
/// assert!(net.contains("192.0.2.77".parse()?));
/// assert!(!net.contains("198.51.100.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn mask_v4(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(a);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(a: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u128::from(a);
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    Ipv6Addr::from(bits & mask)
}

impl Cidr {
    /// The range of `prefix` leading bits of `addr`. Fails when the prefix is
    /// longer than the address (32 bits for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr> {
        let (addr, prefix) = match (addr, canonical(addr)) {
            // A mapped address with a prefix counted over 128 bits.
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix > 32 => {
                if prefix < 96 {
                    return Err(Error::InvalidCidr {
                        input: format!("{addr}/{prefix}"),
                        reason: "an IPv4-mapped range needs a prefix of at least 96",
                    });
                }
                (IpAddr::V4(v4), prefix.saturating_sub(96))
            }
            (_, a) => (a, prefix),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::InvalidCidr {
                input: format!("{addr}/{prefix}"),
                reason: "prefix longer than the address",
            });
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(a, prefix)),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(a, prefix)),
        };
        Ok(Cidr { addr, prefix })
    }

    /// The range holding exactly `addr`.
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = canonical(addr);
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the range (never across address families, except
    /// IPv4-mapped IPv6 addresses, which are IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => mask_v4(a, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(a)) => mask_v6(a, self.prefix) == net,
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Cidr> {
        let bad = |reason| Error::InvalidCidr {
            input: s.to_owned(),
            reason,
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        match prefix {
            None => Ok(Cidr::host(addr)),
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad("the prefix length is not a number"));
                }
                let p: u8 = p
                    .parse()
                    .map_err(|_| bad("prefix longer than the address"))?;
                Cidr::new(addr, p).map_err(|_| bad("prefix longer than the address"))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Maps source addresses to trunk names: a request from one of a trunk's
/// addresses (its targets' IP literals and its [`TrunkConfig::identify`]
/// ranges) comes from that trunk, for calls from the PBX to users.
///
/// The most specific range wins (longest prefix); between equal ranges of two
/// trunks, the one added first. Lookups are a linear scan: trunk lists are
/// short, and the scan holds no per-lookup allocation.
///
/// ```
/// use siplink_trunk::{Identify, Target, Transport, TrunkConfig};
/// let mut pbx = TrunkConfig::new("acme-pbx", vec![Target::new("192.0.2.10", 5060, Transport::Udp)]);
/// pbx.identify.push("192.0.2.0/24".parse()?);
/// let carrier = TrunkConfig::new("carrier", vec![Target::new("sbc.carrier.example", 5060, Transport::Udp)]);
/// let id = Identify::from_configs([&pbx, &carrier]);
/// assert_eq!(id.lookup("192.0.2.10".parse()?), Some("acme-pbx"));
/// assert_eq!(id.lookup("203.0.113.1".parse()?), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Identify {
    entries: Vec<(Cidr, String)>,
}

impl Identify {
    /// An empty matcher.
    pub fn new() -> Identify {
        Identify::default()
    }

    /// A matcher for these trunks: each target whose host is an IP literal, and
    /// every range of [`TrunkConfig::identify`]. Targets given by host name are
    /// not resolved here: add their addresses with [`Identify::add`].
    pub fn from_configs<'a>(configs: impl IntoIterator<Item = &'a TrunkConfig>) -> Identify {
        let mut id = Identify::new();
        for c in configs {
            for t in &c.targets {
                let host = t.addr.host.trim_start_matches('[').trim_end_matches(']');
                if let Ok(ip) = host.parse::<IpAddr>() {
                    id.add(&c.name, Cidr::host(ip));
                }
            }
            for r in &c.identify {
                id.add(&c.name, *r);
            }
        }
        id
    }

    /// Adds a range for `trunk`.
    pub fn add(&mut self, trunk: &str, range: Cidr) {
        self.entries.push((range, trunk.to_owned()));
    }

    /// Removes every range of `trunk`; returns how many were removed.
    pub fn remove_trunk(&mut self, trunk: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(_, t)| t != trunk);
        before - self.entries.len()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no range is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The trunk whose most specific range holds `source`.
    pub fn lookup(&self, source: IpAddr) -> Option<&str> {
        let mut best: Option<&(Cidr, String)> = None;
        for e in &self.entries {
            if e.0.contains(source) && best.is_none_or(|b| e.0.prefix > b.0.prefix) {
                best = Some(e);
            }
        }
        best.map(|(_, t)| t.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_masks() {
        let c: Cidr = "192.0.2.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        let c: Cidr = "2001:db8:1:2::5/48".parse().unwrap();
        assert_eq!(c.to_string(), "2001:db8:1::/48");
        let c: Cidr = "[2001:db8::1]".parse().unwrap();
        assert_eq!(c.prefix(), 128);
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains(ip("203.0.113.9")));
        assert!(!c.contains(ip("2001:db8::1")));
        let c: Cidr = "::/0".parse().unwrap();
        assert!(c.contains(ip("2001:db8::1")));
    }

    #[test]
    fn rejects_bad_ranges() {
        for s in [
            "192.0.2.0/33",
            "2001:db8::/129",
            "192.0.2.0/",
            "192.0.2.0/x",
            "192.0.2/24",
            "host.example/24",
            "",
            "192.0.2.0/-1",
            "192.0.2.0/0024",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }

    #[test]
    fn boundaries() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.0.0")));
        assert!(c.contains(ip("10.1.255.255")));
        assert!(!c.contains(ip("10.2.0.0")));
        assert!(!c.contains(ip("10.0.255.255")));
        let c: Cidr = "2001:db8::/127".parse().unwrap();
        assert!(c.contains(ip("2001:db8::1")));
        assert!(!c.contains(ip("2001:db8::2")));
    }

    #[test]
    fn ipv4_mapped() {
        let c: Cidr = "192.0.2.0/24".parse().unwrap();
        assert!(c.contains(ip("::ffff:192.0.2.8")));
        let c: Cidr = "::ffff:192.0.2.0/120".parse().unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert!(c.contains(ip("192.0.2.200")));
        assert!("::ffff:192.0.2.0/90".parse::<Cidr>().is_err());
    }

    #[test]
    fn longest_prefix_wins() {
        let mut id = Identify::new();
        id.add("wide", "10.0.0.0/8".parse().unwrap());
        id.add("narrow", "10.1.2.0/24".parse().unwrap());
        id.add("host", "10.1.2.3".parse().unwrap());
        id.add("v6", "2001:db8::/32".parse().unwrap());
        id.add("v6-narrow", "2001:db8:aa::/48".parse().unwrap());
        assert_eq!(id.lookup(ip("10.9.9.9")), Some("wide"));
        assert_eq!(id.lookup(ip("10.1.2.9")), Some("narrow"));
        assert_eq!(id.lookup(ip("10.1.2.3")), Some("host"));
        assert_eq!(id.lookup(ip("2001:db8:1::1")), Some("v6"));
        assert_eq!(id.lookup(ip("2001:db8:aa::1")), Some("v6-narrow"));
        assert_eq!(id.lookup(ip("11.0.0.1")), None);
        // Equal ranges: the first added wins.
        id.add("later", "10.1.2.0/24".parse().unwrap());
        assert_eq!(id.lookup(ip("10.1.2.9")), Some("narrow"));
        assert_eq!(id.remove_trunk("narrow"), 1);
        assert_eq!(id.lookup(ip("10.1.2.9")), Some("later"));
    }

    proptest::proptest! {
        #[test]
        fn contains_matches_bit_comparison(a in proptest::prelude::any::<u32>(), b in proptest::prelude::any::<u32>(), p in 0u8..=32) {
            let c = Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap();
            let expect = p == 0 || (a >> (32 - u32::from(p))) == (b >> (32 - u32::from(p)));
            proptest::prop_assert_eq!(c.contains(IpAddr::V4(Ipv4Addr::from(b))), expect);
        }

        #[test]
        fn v6_contains_matches_bit_comparison(a in proptest::prelude::any::<u128>(), b in proptest::prelude::any::<u128>(), p in 0u8..=128) {
            let c = Cidr::new(IpAddr::V6(Ipv6Addr::from(a)), p).unwrap();
            let (ma, mb) = (Ipv6Addr::from(a), Ipv6Addr::from(b));
            // Mapped addresses are IPv4: leave them out of this property.
            proptest::prop_assume!(ma.to_ipv4_mapped().is_none() && mb.to_ipv4_mapped().is_none());
            let expect = p == 0 || (a >> (128 - u32::from(p))) == (b >> (128 - u32::from(p)));
            proptest::prop_assert_eq!(c.contains(IpAddr::V6(mb)), expect);
        }
    }
}
