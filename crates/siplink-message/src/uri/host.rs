//! `host = hostname / IPv4address / IPv6reference` (RFC 3261 §25.1, RFC 5118).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytestring::ByteString;

use super::CONTEXT;
use super::chars::{HOSTNAME, scan};
use crate::error::{Error, Result};
use crate::grammar::Src;

/// The host part of a SIP URI (or of a `maddr`, `received`... value).
///
/// Derived equality is structural; use [`Host::equivalent`] for the RFC 3261
/// §19.1.4 rule (domain names compare case-insensitively, addresses by value).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name as received (`example.com`, `Example.COM.`).
    Domain(ByteString),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// A bracketed IPv6 reference.
    Ipv6 {
        /// The address. The RFC 3261 ABNF form with three colons before an embedded
        /// IPv4 address (`2001:db8:::192.0.2.1`, RFC 5118 §4.3) reads as `::`.
        addr: Ipv6Addr,
        /// The reference as written, brackets included (`[2001:db8::10]`).
        text: ByteString,
    },
}

impl Host {
    /// Parses a host on its own: a host name, an IPv4 address, or an IPv6 address
    /// with or without brackets.
    pub fn parse(s: &str) -> Result<Host> {
        if !s.starts_with('[')
            && s.contains(':')
            && let Ok(addr) = s.parse::<Ipv6Addr>()
        {
            return Ok(Host::from(addr));
        }
        let raw = ByteString::from(s);
        let (host, end) = parse_host(&raw, 0, 0)?;
        if end != raw.len() {
            return Err(Error::syntax(end, "host", "end of host"));
        }
        Ok(host)
    }

    /// Parses `i` (a sub-slice of `src.bytes`) as exactly one host, zero-copy,
    /// with error offsets into the message.
    #[allow(dead_code)] // for the header parsers
    pub(crate) fn parse_src(src: &Src<'_>, i: &[u8]) -> Result<Host> {
        // Fast path for the common case, a host name: one pass over the bytes
        // and one slice of the buffer.
        if let Ok(false) = check_domain(i) {
            return src.text(i, CONTEXT).map(Host::Domain);
        }
        let base = src.offset_of(i);
        let raw = src.text(i, CONTEXT)?;
        let (host, end) = parse_host(&raw, base, 0)?;
        if end != raw.len() {
            return Err(Error::syntax(base + end, CONTEXT, "end of host"));
        }
        Ok(host)
    }

    /// Reads a host name or IPv4 address at the start of `r` (a sub-slice of
    /// `src.bytes`) in one pass, and returns it with its length. `None` for
    /// anything else (an IPv6 reference, a name ending in `.`, a malformed
    /// name...): the caller then takes the general path, which reports the fault.
    #[inline]
    pub(crate) fn scan_src(src: &Src<'_>, r: &[u8]) -> Option<(Host, usize)> {
        let mut k = 0;
        let mut label_start = 0;
        loop {
            // Letters and digits, the bulk of a name, one table lookup each.
            k += r[k..]
                .iter()
                .position(|&c| !ALNUM[c as usize])
                .unwrap_or(r.len() - k);
            match r.get(k) {
                Some(b'-') if k > label_start => k += 1,
                Some(b'.') if k > label_start && r[k - 1] != b'-' => {
                    k += 1;
                    label_start = k;
                }
                Some(b'-' | b'.') => return None,
                _ => break,
            }
        }
        // Empty, or ending in '.' or '-'.
        if k == label_start || r[k - 1] == b'-' {
            return None;
        }
        let h = &r[..k];
        let host =
            if r[label_start].is_ascii_digit() && h[label_start..].iter().all(u8::is_ascii_digit) {
                // `toplabel` starts with a letter: this must be a dotted quad.
                Host::Ipv4(parse_v4(h)?)
            } else {
                Host::Domain(src.text(h, CONTEXT).ok()?)
            };
        Some((host, k))
    }

    /// Whether two hosts are the same under RFC 3261 §19.1.4: domain names
    /// compare case-insensitively, IP addresses by value, and a name never
    /// equals an address.
    pub fn equivalent(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Host::Ipv6 { addr: a, .. }, Host::Ipv6 { addr: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The IP address, if the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6 { addr, .. } => Some(IpAddr::V6(*addr)),
        }
    }

    /// The host name, if the host is one.
    pub fn domain(&self) -> Option<&str> {
        match self {
            Host::Domain(d) => Some(d),
            _ => None,
        }
    }
}

impl From<Ipv4Addr> for Host {
    fn from(a: Ipv4Addr) -> Self {
        Host::Ipv4(a)
    }
}

impl From<Ipv6Addr> for Host {
    fn from(addr: Ipv6Addr) -> Self {
        Host::Ipv6 {
            addr,
            text: ByteString::from(format!("[{addr}]")),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => a.into(),
            IpAddr::V6(a) => a.into(),
        }
    }
}

impl fmt::Display for Host {
    /// Writes the host as it appears in a URI (IPv6 with its brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => {
                // The dotted quad written by hand: `Ipv4Addr`'s `Display`
                // goes through the formatting machinery once per octet
                // (transaction keys write the sent-by of every request).
                let mut buf = [0u8; 15];
                let mut n = 0;
                for (k, o) in a.octets().into_iter().enumerate() {
                    if k > 0 {
                        buf[n] = b'.';
                        n += 1;
                    }
                    if o >= 100 {
                        buf[n] = b'0' + o / 100;
                        n += 1;
                    }
                    if o >= 10 {
                        buf[n] = b'0' + o / 10 % 10;
                        n += 1;
                    }
                    buf[n] = b'0' + o % 10;
                    n += 1;
                }
                f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
            }
            Host::Ipv6 { text, .. } => f.write_str(text),
        }
    }
}

/// ASCII letters and digits.
static ALNUM: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 128 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    t
};

/// Longest IPv6 text accepted between the brackets (45 is the longest canonical
/// form; a little slack for the three-colon variant and leading zeros).
const MAX_V6: usize = 64;

/// Parses the host starting at `raw[start..]` (all ASCII). Returns the host and
/// the index just past it. `base` is added to error offsets.
pub(crate) fn parse_host(raw: &ByteString, base: usize, start: usize) -> Result<(Host, usize)> {
    let s = raw.as_bytes();
    let err = |pos: usize, expected| Error::syntax(base + pos, CONTEXT, expected);
    if s.get(start) == Some(&b'[') {
        let body_start = start + 1;
        let mut k = body_start;
        while let Some(&c) = s.get(k) {
            if !(c.is_ascii_hexdigit() || c == b':' || c == b'.') {
                break;
            }
            k += 1;
        }
        if s.get(k) != Some(&b']') {
            return Err(err(k, "IPv6 address character or ']'"));
        }
        let addr = parse_v6(&raw[body_start..k]).ok_or_else(|| err(body_start, "IPv6 address"))?;
        let text = raw.slice_ref(&raw[start..=k]);
        return Ok((Host::Ipv6 { addr, text }, k + 1));
    }
    let end = scan(s, start, &HOSTNAME).unwrap_or(start);
    if end == start {
        return Err(err(start, "host"));
    }
    let h = &s[start..end];
    match check_domain(h) {
        Err(pos) => Err(err(start + pos, "domain label")),
        // `toplabel` starts with a letter, so this must be a dotted quad.
        Ok(true) => match parse_v4(h) {
            Some(a) => Ok((Host::Ipv4(a), end)),
            None => Err(err(start, "IPv4 address")),
        },
        Ok(false) => Ok((Host::Domain(raw.slice_ref(&raw[start..end])), end)),
    }
}

/// Checks `hostname = *( domainlabel "." ) toplabel [ "." ]` in one pass: only
/// alphanumerics, `-` and `.`; labels are non-empty and start and end with an
/// alphanumeric. Returns whether the last label is all digits (then the host must
/// be an IPv4 address), or the offset of the fault.
fn check_domain(h: &[u8]) -> Result<bool, usize> {
    let body = h.strip_suffix(b".").unwrap_or(h);
    if body.is_empty() {
        return Err(0);
    }
    let mut label_start = 0;
    let mut all_digits = true;
    for (k, &c) in body.iter().enumerate() {
        if c == b'.' {
            if k == label_start || body[k - 1] == b'-' {
                return Err(label_start);
            }
            label_start = k + 1;
            all_digits = true;
        } else {
            if (k == label_start && c == b'-') || !(c.is_ascii_alphanumeric() || c == b'-') {
                return Err(label_start);
            }
            all_digits &= c.is_ascii_digit();
        }
    }
    if label_start == body.len() || body[body.len() - 1] == b'-' {
        return Err(label_start);
    }
    Ok(all_digits)
}

/// `1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`, each at most 255.
pub(crate) fn parse_v4(s: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&s.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut k = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if s.get(k) != Some(&b'.') {
                return None;
            }
            k += 1;
        }
        let start = k;
        let mut value = 0u16;
        while let Some(&c) = s.get(k) {
            let d = c.wrapping_sub(b'0');
            if d > 9 || k - start == 3 {
                break;
            }
            value = value * 10 + u16::from(d);
            k += 1;
        }
        if k == start {
            return None;
        }
        *octet = u8::try_from(value).ok()?;
    }
    (k == s.len()).then(|| Ipv4Addr::from(octets))
}

/// An IPv6 address; tolerates the RFC 3261 ABNF's `:::` before an IPv4 tail.
fn parse_v6(s: &str) -> Option<Ipv6Addr> {
    if s.len() > MAX_V6 {
        return None;
    }
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    // RFC 5118 §4.3: `hexpart ":" IPv4address` with a `::`-terminated hexpart.
    let i = s.find(":::")?;
    if s[i + 3..].contains("::") || !s[i + 3..].contains('.') {
        return None;
    }
    let mut fixed = String::with_capacity(s.len());
    fixed.push_str(&s[..i + 2]);
    fixed.push_str(&s[i + 3..]);
    fixed.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &'static str) -> Result<(Host, usize)> {
        parse_host(&ByteString::from_static(s), 0, 0)
    }

    #[test]
    fn kinds() {
        assert!(matches!(
            host("example.com.").unwrap(),
            (Host::Domain(_), 12)
        ));
        assert!(matches!(host("3com").unwrap(), (Host::Domain(_), 4)));
        assert_eq!(
            host("192.0.2.1:5060").unwrap(),
            (Host::Ipv4([192, 0, 2, 1].into()), 9)
        );
        assert!(host("192.0.2.256").is_err());
        assert_eq!(parse_v4(b"001.02.3.255"), Some([1, 2, 3, 255].into()));
        for bad in [
            &b"1.2.3"[..],
            b"1.2.3.4.",
            b"1.2.3.4.5",
            b"1234.1.1.1",
            b"1..2.3",
            b".1.2.3",
            b"1.2.3.4a",
            b"1.2.3.0004",
            b"255.255.255.256",
        ] {
            assert_eq!(parse_v4(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert!(host("1.2.3").is_err());
        assert!(host("host.123").is_err());
        assert!(host("-a.com").is_err());
        assert!(host("a-.com").is_err());
        assert!(host("a..com").is_err());
        assert!(host(".").is_err());
        let (h, end) = host("[2001:db8:::192.0.2.1]").unwrap();
        assert_eq!(end, 22);
        assert_eq!(h.ip(), Some("2001:db8::192.0.2.1".parse().unwrap()));
        assert!(host("[2001:db8::1").is_err());
        assert!(host("[1:2]").is_err());
        assert!(host("[::1::2]").is_err());
    }

    #[test]
    fn standalone() {
        assert_eq!(
            Host::parse("2001:db8::1").unwrap().to_string(),
            "[2001:db8::1]"
        );
        assert!(Host::parse("a b").is_err());
        assert!(
            Host::parse("Example.com")
                .unwrap()
                .equivalent(&Host::parse("eXample.COM").unwrap())
        );
    }
}
