//! SIP, SIPS, tel and other absolute URIs (RFC 3261 §19.1 and §25.1, RFC 3966,
//! RFC 5118).
//!
//! Parsing is zero-copy: every component is a [`ByteString`] view of the input
//! buffer, kept exactly as received (escapes in place), and [`Uri::as_bytes`]
//! gives back the original text. Whitespace is never part of a URI: any LWS
//! inside the parsed slice is a syntax error (RFC 4475 §3.1.2.8).
//!
//! ```
//! use siplink_message::Uri;
//! let a = Uri::parse("sip:%61lice@atlanta.com;transport=TCP").unwrap();
//! let b = Uri::parse("sip:alice@AtLanTa.CoM;Transport=tcp").unwrap();
//! assert!(a.equivalent(&b));
//! assert_eq!(a.as_sip().unwrap().user_unescaped().unwrap().as_ref(), b"alice");
//! ```

mod chars;
pub(crate) mod host;
mod sip;
mod tel;

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

pub use host::Host;
pub use sip::{SipUri, SipUriBuilder};
pub use tel::TelUri;

use crate::error::{Error, Result};
use crate::grammar::Src;
use chars::{SCHEME, URIC, escaped_eq, scan};

/// Error context of every URI syntax error.
pub(crate) const CONTEXT: &str = "URI";

/// A parsed URI.
///
/// Derived equality is structural (same text); [`Uri::equivalent`] applies the
/// scheme's comparison rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:`.
    Tel(TelUri),
    /// Any other scheme, kept opaque.
    Absolute(AbsoluteUri),
}

impl Uri {
    /// Parses `input`, which must be exactly one URI (no surrounding whitespace or
    /// `<>`). Error offsets count from the start of `input`.
    pub fn parse(input: impl Into<Bytes>) -> Result<Uri> {
        let bytes = input.into();
        Uri::parse_src(&Src::new(&bytes), &bytes)
    }

    /// Parses `i`, a sub-slice of `src.bytes`, as one whole URI; components are
    /// zero-copy views of the buffer and error offsets point into the message.
    pub(crate) fn parse_src(src: &Src<'_>, i: &[u8]) -> Result<Uri> {
        let base = src.offset_of(i);
        let err = |pos: usize, expected| Error::syntax(base + pos, CONTEXT, expected);
        // URIs are ASCII (anything else must be %-escaped).
        if !i.is_ascii() {
            let pos = i.iter().position(|c| !c.is_ascii()).unwrap_or(0);
            return Err(err(pos, "URI character (ASCII)"));
        }
        match i.first() {
            Some(c) if c.is_ascii_alphabetic() => {}
            _ => return Err(err(0, "URI scheme")),
        }
        let colon = scan(i, 1, &SCHEME).unwrap_or(1);
        if i.get(colon) != Some(&b':') {
            return Err(err(colon, "':' after URI scheme"));
        }
        let raw = src.text(i, CONTEXT)?;
        let scheme = &i[..colon];
        let start = colon + 1;
        if scheme.eq_ignore_ascii_case(b"sip") {
            sip::parse(raw, base, false, start).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            sip::parse(raw, base, true, start).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            tel::parse(raw, base, start).map(Uri::Tel)
        } else {
            let end = scan(i, start, &URIC).map_err(|p| err(p, "escape sequence %HH"))?;
            if end == start {
                return Err(err(start, "URI body after the scheme"));
            }
            if end != i.len() {
                return Err(err(end, "URI character or end of URI"));
            }
            Ok(Uri::Absolute(AbsoluteUri {
                raw,
                scheme_len: colon,
            }))
        }
    }

    /// The scheme: `"sip"`, `"sips"` or `"tel"` in lower case, any other scheme
    /// as received.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) => u.scheme(),
            Uri::Tel(_) => "tel",
            Uri::Absolute(u) => u.scheme(),
        }
    }

    /// The URI text exactly as received (or as rendered by a builder).
    pub fn as_str(&self) -> &str {
        match self {
            Uri::Sip(u) => u.as_str(),
            Uri::Tel(u) => u.as_str(),
            Uri::Absolute(u) => u.as_str(),
        }
    }

    /// The URI text exactly as received, byte for byte.
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }

    /// Scheme-specific equivalence: RFC 3261 §19.1.4 for SIP/SIPS, RFC 3966 §4 for
    /// tel, and for other schemes a case-insensitive scheme with the same rest
    /// (non-reserved escapes equal to their characters). URIs of different
    /// schemes never match.
    pub fn equivalent(&self, other: &Uri) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Uri::Tel(a), Uri::Tel(b)) => a.equivalent(b),
            (Uri::Absolute(a), Uri::Absolute(b)) => a.equivalent(b),
            _ => false,
        }
    }

    /// The SIP/SIPS URI, if it is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The tel URI, if it is one.
    pub fn as_tel(&self) -> Option<&TelUri> {
        match self {
            Uri::Tel(u) => Some(u),
            _ => None,
        }
    }

    /// The opaque URI, if the scheme is neither SIP, SIPS nor tel.
    pub fn as_absolute(&self) -> Option<&AbsoluteUri> {
        match self {
            Uri::Absolute(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Uri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Uri> {
        Uri::parse(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Self {
        Uri::Sip(u)
    }
}

impl From<TelUri> for Uri {
    fn from(u: TelUri) -> Self {
        Uri::Tel(u)
    }
}

impl From<AbsoluteUri> for Uri {
    fn from(u: AbsoluteUri) -> Self {
        Uri::Absolute(u)
    }
}

/// A URI of a scheme other than SIP, SIPS and tel (`http:`, `mailto:`, `urn:`,
/// `isbn:`...): `scheme ":" opaque`, where the opaque part is any sequence of
/// RFC 2396 URI characters (`uric`, plus `[`, `]` and `#`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AbsoluteUri {
    raw: ByteString,
    scheme_len: usize,
}

impl AbsoluteUri {
    /// The scheme as received.
    pub fn scheme(&self) -> &str {
        &self.raw[..self.scheme_len]
    }

    /// Everything after `scheme:`, as received.
    pub fn opaque(&self) -> &str {
        &self.raw[self.scheme_len + 1..]
    }

    /// The URI text exactly as received.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Same scheme (case-insensitive) and same rest (non-reserved escapes equal
    /// to their characters, otherwise case-sensitive).
    pub fn equivalent(&self, other: &AbsoluteUri) -> bool {
        self.scheme().eq_ignore_ascii_case(other.scheme())
            && escaped_eq(self.opaque().as_bytes(), other.opaque().as_bytes(), false)
    }
}

impl fmt::Display for AbsoluteUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_src_is_zero_copy_and_positioned() {
        let msg = Bytes::from_static(b"INVITE sip:alice@example.com;lr SIP/2.0\r\n");
        let src = Src::new(&msg);
        let uri = Uri::parse_src(&src, &msg[7..31]).unwrap();
        let sip = uri.as_sip().unwrap();
        let inside = |s: &str| {
            let p = s.as_ptr() as usize;
            let b = msg.as_ptr() as usize;
            p >= b && p + s.len() <= b + msg.len()
        };
        assert!(inside(uri.as_str()));
        assert!(inside(sip.user().unwrap()));
        assert!(matches!(sip.host(), Host::Domain(d) if inside(d)));
        // Common parameter names are interned (static), others are slices.
        assert_eq!(&*sip.params().iter().next().unwrap().name, "lr");
        let msg2 = Bytes::from_static(b"INVITE sip:alice@example.com;xyz SIP/2.0\r\n");
        let uri2 = Uri::parse_src(&Src::new(&msg2), &msg2[7..32]).unwrap();
        let name = &uri2.as_sip().unwrap().params().iter().next().unwrap().name;
        let p = name.as_ptr() as usize;
        assert!(p >= msg2.as_ptr() as usize && p < msg2.as_ptr() as usize + msg2.len());

        let msg = Bytes::from_static(b"INVITE sip:alice@example.com; lr SIP/2.0\r\n");
        let e = Uri::parse_src(&Src::new(&msg), &msg[7..32]).unwrap_err();
        assert_eq!(e, Error::syntax(29, CONTEXT, "URI parameter name"));
        let e = Uri::parse_src(&Src::new(&msg), &msg[7..17]).unwrap_err();
        assert_eq!(e, Error::syntax(17, CONTEXT, "host"));
    }

    #[test]
    fn host_parse_src() {
        let msg = Bytes::from_static(b"Via: SIP/2.0/UDP h-1.example.com:5060");
        let h = Host::parse_src(&Src::new(&msg), &msg[17..32]).unwrap();
        assert_eq!(h, Host::Domain("h-1.example.com".into()));
        let e = Host::parse_src(&Src::new(&msg), &msg[17..37]).unwrap_err();
        assert_eq!(e, Error::syntax(32, CONTEXT, "end of host"));
    }
}
