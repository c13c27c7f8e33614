//! The Via header (RFC 3261 §20.42, §18.2.1; RFC 3581 `rport`).

use std::fmt;

use bytestring::ByteString;

use crate::error::{Error, Result};
use crate::grammar::{Param, Params, Src, is_token_char, is_wsp, params, sep, sws, token};
use crate::uri::Host;

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

const CTX: &str = "Via header";

/// One Via value: `SIP/2.0/UDP host:port;branch=...;received=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Protocol name (`SIP`).
    pub protocol: ByteString,
    /// Protocol version (`2.0`).
    pub version: ByteString,
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP`, or an extension).
    pub transport: ByteString,
    /// sent-by host.
    pub host: Host,
    /// sent-by port, if given.
    pub port: Option<u16>,
    /// Via parameters in order.
    pub params: Params,
}

impl Via {
    /// A Via for `transport` and sent-by `host:port` with a branch parameter.
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::default();
        params.push("branch", Some(branch));
        Via {
            protocol: ByteString::from_static("SIP"),
            version: ByteString::from_static("2.0"),
            transport: ByteString::from(transport.to_ascii_uppercase()),
            host,
            port,
            params,
        }
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch starts with the RFC 3261 magic cookie (`z9hG4bK`).
    pub fn has_magic_cookie(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter (the address the request came from), as written.
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }

    /// The `received` parameter as an IP address (with or without the brackets
    /// RFC 5118 §4.5 says to tolerate).
    pub fn received_ip(&self) -> Option<std::net::IpAddr> {
        self.received().and_then(parse_received)
    }

    /// The `rport` parameter (RFC 3581): `None` if absent, `Some(None)` if present
    /// without a value (a request asking for it), `Some(Some(port))` once stamped.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.params.get("maddr").flatten()
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .get("ttl")
            .flatten()
            .and_then(|t| t.parse().ok())
    }

    /// Whether the transport is `transport` (case-insensitive).
    pub fn is_transport(&self, transport: &str) -> bool {
        self.transport.eq_ignore_ascii_case(transport)
    }

    /// `host[:port]` as it would be written.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }

    /// Parses one Via value (after comma splitting).
    pub(crate) fn parse_src(src: &Src<'_>, i: &[u8]) -> Result<Via> {
        match Via::parse_common(src, i) {
            Some((via, [])) => Ok(via),
            _ => Via::parse_general(src, i),
        }
    }

    /// One pass over the common form of a Via value: `SIP/2.0/` and a transport
    /// token, white space without line breaks, a host name or IPv4 address, an
    /// optional port right after a `:`, and `;name` or `;name=token` parameters
    /// with nothing around the separators, each of the parameters Via defines
    /// valid. Returns the Via and the rest of `i`: empty, or the `,` before the
    /// next value of a list. Returns `None` for anything else, which
    /// [`Via::parse_general`] then reads (or rejects with a position). Whatever
    /// this accepts, the general parser reads the same way.
    #[inline]
    pub(crate) fn parse_common<'a>(src: &Src<'_>, i: &'a [u8]) -> Option<(Via, &'a [u8])> {
        let rest = i.strip_prefix(b"SIP/2.0/")?;
        let t = rest
            .iter()
            .position(|&c| !is_token_char(c))
            .unwrap_or(rest.len());
        if t == 0 {
            return None;
        }
        let transport = src.token_text(&rest[..t], CTX).ok()?;
        let mut r = &rest[t..];
        let ws = r.iter().position(|&c| !is_wsp(c)).unwrap_or(r.len());
        if ws == 0 {
            return None;
        }
        r = &r[ws..];
        let (host, n) = Host::scan_src(src, r)?;
        r = &r[n..];
        let mut port = None;
        if let Some(after) = r.strip_prefix(b":") {
            let d = after
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(after.len());
            port = Some(crate::grammar::parse_decimal(&after[..d], 65_535)? as u16);
            r = &after[d..];
        }
        let mut params = Vec::with_capacity(4);
        while let Some((&sep, after)) = r.split_first() {
            match sep {
                b';' => {}
                // The end of this value in a list.
                b',' => break,
                _ => return None,
            }
            let n = after
                .iter()
                .position(|&c| !is_token_char(c))
                .unwrap_or(after.len());
            if n == 0 {
                return None;
            }
            let (name, after) = after.split_at(n);
            r = after;
            let mut value = None;
            let mut colon = false;
            if let Some(v) = r.strip_prefix(b"=") {
                let token_run =
                    |s: &[u8]| s.iter().position(|&c| !is_token_char(c)).unwrap_or(s.len());
                let mut n = token_run(v);
                // A ':' (an IPv6 address in `received`) continues the value.
                while v.get(n) == Some(&b':') {
                    colon = true;
                    n += 1 + token_run(&v[n + 1..]);
                }
                if n == 0 {
                    return None;
                }
                value = Some(&v[..n]);
                r = &v[n..];
            }
            if !common_param_ok(name, value, colon) {
                return None;
            }
            params.push(Param {
                name: src.token_text(name, CTX).ok()?,
                value: match value {
                    Some(v) => Some(src.token_text(v, CTX).ok()?),
                    None => None,
                },
                quoted: false,
            });
        }
        let via = Via {
            protocol: ByteString::from_static("SIP"),
            version: ByteString::from_static("2.0"),
            transport,
            host,
            port,
            params: Params(params),
        };
        Some((via, r))
    }

    /// The general parser: any white space and line folding, IPv6 references,
    /// quoted parameter values, and positioned errors.
    fn parse_general(src: &Src<'_>, i: &[u8]) -> Result<Via> {
        let err = |rest: &[u8], what| src.err(rest, CTX, what);
        let (r, protocol) = token(i).map_err(|_| err(i, "protocol name"))?;
        let (r, ()) = sep(b'/')(r).map_err(|_| err(r, "'/'"))?;
        let (r, version) = token(r).map_err(|_| err(r, "protocol version"))?;
        let (r, ()) = sep(b'/')(r).map_err(|_| err(r, "'/'"))?;
        let (r, transport) = token(r).map_err(|_| err(r, "transport"))?;
        let r2 = sws(r);
        if r2.len() == r.len() {
            return Err(err(r, "whitespace before sent-by"));
        }
        let r = r2;
        // sent-by = host [ COLON port ]
        let host_len = if r.first() == Some(&b'[') {
            memchr::memchr(b']', r).map_or(r.len(), |k| k + 1)
        } else {
            r.iter()
                .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                .count()
        };
        if host_len == 0 {
            return Err(err(r, "host"));
        }
        let host = Host::parse_src(src, &r[..host_len])?;
        let mut r = &r[host_len..];
        let mut port = None;
        if let Ok((after, ())) = sep(b':')(r) {
            let digits = after.iter().take_while(|c| c.is_ascii_digit()).count();
            let p = crate::grammar::parse_decimal(&after[..digits], 65_535).ok_or(
                Error::OutOfRange {
                    offset: src.offset_of(after),
                    context: "Via port",
                    limit: "0 to 65535",
                },
            )?;
            port = Some(p as u16);
            r = &after[digits..];
        }
        let (r, params) = params(src, r, CTX)?;
        let r = sws(r);
        if !r.is_empty() {
            return Err(err(r, "';' or ',' or end of value"));
        }
        let via = Via {
            protocol: src.token_text(protocol, CTX)?,
            version: src.token_text(version, CTX)?,
            transport: src.token_text(transport, CTX)?,
            host,
            port,
            params,
        };
        via.check_params(src, i)?;
        Ok(via)
    }

    /// Checks the values of the parameters with a grammar of their own.
    fn check_params(&self, src: &Src<'_>, at: &[u8]) -> Result<()> {
        let bad = |expected| Error::syntax(src.offset_of(at), CTX, expected);
        for p in &self.params {
            let v = p.value.as_deref();
            if p.name.eq_ignore_ascii_case("branch") {
                match v {
                    Some(b) if !b.is_empty() && b.bytes().all(is_token_char) => {}
                    _ => return Err(bad("branch=token")),
                }
            } else if p.name.eq_ignore_ascii_case("received") {
                if v.is_none_or(|r| parse_received(r).is_none()) {
                    return Err(bad("received=IP address"));
                }
            } else if p.name.eq_ignore_ascii_case("rport") {
                if let Some(port) = v
                    && port.parse::<u16>().is_err()
                {
                    return Err(bad("rport or rport=port"));
                }
            } else if p.name.eq_ignore_ascii_case("ttl") {
                if v.and_then(|t| t.parse::<u8>().ok()).is_none() {
                    return Err(bad("ttl=0-255"));
                }
            } else if p.name.eq_ignore_ascii_case("maddr")
                && v.is_none_or(|m| Host::parse(m).is_err())
            {
                return Err(bad("maddr=host"));
            }
        }
        Ok(())
    }
}

/// Whether a parameter of the common form (unquoted value; `colon` when it
/// holds a ':') passes the checks of [`Via::check_params`].
#[inline]
fn common_param_ok(name: &[u8], value: Option<&[u8]>, colon: bool) -> bool {
    fn text(v: &[u8]) -> Option<&str> {
        std::str::from_utf8(v).ok()
    }
    match name.len() {
        6 if name.eq_ignore_ascii_case(b"branch") => {
            // The value was read as token characters and ':'.
            value.is_some() && !colon
        }
        8 if name.eq_ignore_ascii_case(b"received") => value.is_some_and(|v| {
            crate::uri::host::parse_v4(v).is_some() || text(v).and_then(parse_received).is_some()
        }),
        5 if name.eq_ignore_ascii_case(b"rport") => {
            value.is_none_or(|p| text(p).is_some_and(|p| p.parse::<u16>().is_ok()))
        }
        3 if name.eq_ignore_ascii_case(b"ttl") => value
            .and_then(text)
            .is_some_and(|t| t.parse::<u8>().is_ok()),
        5 if name.eq_ignore_ascii_case(b"maddr") => {
            value.and_then(text).is_some_and(|m| Host::parse(m).is_ok())
        }
        _ => true,
    }
}

/// Parses a `received` value: an IPv4 address, or an IPv6 address with or
/// without brackets (and the RFC 5118 §4.10 three-colon form, through [`Host`]).
fn parse_received(v: &str) -> Option<std::net::IpAddr> {
    let bare = v
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse()
        .ok()
        .or_else(|| Host::parse(v).ok().and_then(|h| h.ip()))
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} {}",
            self.protocol, self.version, self.transport, self.host
        )?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    /// The one-pass reading and the general parser, on the same value.
    fn both(s: &str) -> (Option<Via>, Result<Via>) {
        let b = Bytes::copy_from_slice(s.as_bytes());
        let src = Src::new(&b);
        let fast = Via::parse_common(&src, &b).and_then(|(v, r)| r.is_empty().then_some(v));
        (fast, Via::parse_general(&src, &b))
    }

    #[test]
    fn common_form_reads_like_the_general_parser() {
        let common = [
            "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1",
            "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport",
            "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;rport=51234;ttl=1",
            "SIP/2.0/UDP 192.0.2.4:5060;BRANCH=z9hG4bKx;Received=192.0.2.9;x-y",
            "SIP/2.0/SCTP a--b.c3;maddr=224.2.0.1;received=2001:db8::9",
            "SIP/2.0/udp \thost;rport=5060",
            "SIP/2.0/UDP 3com.example;branch=0",
        ];
        for s in common {
            let (fast, general) = both(s);
            let fast = fast.unwrap_or_else(|| panic!("{s}: not read in one pass"));
            assert_eq!(Ok(fast), general, "{s}");
        }
        // In a list, the common form stops at the comma.
        let list = Bytes::from_static(b"SIP/2.0/UDP a.example;branch=z9hG4bK1,SIP/2.0/TCP b");
        let src = Src::new(&list);
        let (first, rest) = Via::parse_common(&src, &list).expect("one pass");
        assert_eq!(rest, b",SIP/2.0/TCP b");
        assert_eq!(
            Ok(first),
            Via::parse_general(&src, &list[..list.len() - rest.len()])
        );
        // Forms left to the general parser (it accepts some, rejects others).
        let other = [
            "SIP / 2.0 / UDP host",
            "sip/2.0/udp host",
            "SIP/2.0/UDP [2001:db8::1]:5060",
            "SIP/2.0/UDP host.;branch=z9hG4bK1",
            "SIP/2.0/UDP host ; branch = z9hG4bK1",
            "SIP/2.0/UDP host\t;rport",
            "SIP/2.0/UDP host;received=[2001:db8::9]",
            "SIP/2.0/UDP host;branch=\"quoted\"",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host: 5060",
            "SIP/2.0/UDP -host",
            "SIP/2.0/UDP host-.com",
            "SIP/2.0/UDP 1.2.3",
            "SIP/2.0/UDP 192.0.2.256",
            "SIP/2.0/UDP host;branch=a:b",
            "SIP/2.0/UDP host;received=nowhere",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;ttl=300",
            "SIP/2.0/UDP host;maddr",
            "SIP/2.0/UDP host;;x",
            "SIP/2.0/UDP\r\n host",
            "SIP/2.0/UDPhost",
        ];
        for s in other {
            let (fast, general) = both(s);
            assert!(
                fast.is_none(),
                "{s}: read in one pass as {fast:?} ({general:?})"
            );
        }
    }

    proptest! {
        /// Whatever the one-pass reading accepts, the general parser reads the
        /// same way.
        #[test]
        fn common_form_never_disagrees(
            s in "SIP/2\\.0/(UDP|TCP|tls|WS|X-1)[ \t]{0,2}[a-z0-9.\\-]{0,10}(:[0-9]{0,6})?\
                  (;(branch|received|rport|ttl|maddr|x)(=[a-zA-Z0-9.:\\-\\[\\]\" ]{0,10})?){0,4}"
        ) {
            let (fast, general) = both(&s);
            if let Some(fast) = fast {
                prop_assert_eq!(Ok(fast), general);
            }
        }
    }
}
