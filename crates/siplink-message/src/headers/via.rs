//! The Via header (RFC 3261 §20.42, §18.2.1; RFC 3581 `rport`).

use std::fmt;

use bytestring::ByteString;

use crate::error::{Error, Result};
use crate::grammar::{Params, Src, is_token_char, params, sep, sws, token};
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
