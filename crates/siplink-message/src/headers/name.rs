//! Header names: case-insensitive, with the RFC 3261 §7.3.3 compact forms.

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal $(, compact $compact:literal)? ;)*) => {
        /// A header field name.
        ///
        /// Well-known headers get their own variant; everything else is
        /// [`HeaderName::Other`] and keeps its spelling in the message. Parsing is
        /// case-insensitive and maps compact forms (`v`, `i`, `m`...) to the
        /// full header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any other (extension) header.
            Other,
        }

        impl HeaderName {
            /// The canonical spelling, e.g. `"Call-ID"`; `None` for [`HeaderName::Other`].
            pub const fn canonical(self) -> Option<&'static str> {
                match self {
                    $( HeaderName::$variant => Some($canon), )*
                    HeaderName::Other => None,
                }
            }

            /// The compact form (RFC 3261 §7.3.3 and extensions), if the header has one.
            pub const fn compact(self) -> Option<char> {
                match self {
                    $( $( HeaderName::$variant => Some($compact as char), )? )*
                    _ => None,
                }
            }

            /// Every named header, for tests and tooling.
            pub const ALL: &'static [HeaderName] = &[ $( HeaderName::$variant, )* ];

            const NAMES: &'static [&'static str] = &[ $( $canon, )* ];

            fn from_compact(c: u8) -> HeaderName {
                match c.to_ascii_lowercase() {
                    $( $( c if c == $compact => HeaderName::$variant, )? )*
                    _ => HeaderName::Other,
                }
            }
        }
    };
}

header_names! {
    /// `Accept`
    Accept => "Accept";
    /// `Accept-Contact` (RFC 3841)
    AcceptContact => "Accept-Contact", compact b'a';
    /// `Accept-Encoding`
    AcceptEncoding => "Accept-Encoding";
    /// `Accept-Language`
    AcceptLanguage => "Accept-Language";
    /// `Alert-Info`
    AlertInfo => "Alert-Info";
    /// `Allow`
    Allow => "Allow";
    /// `Allow-Events` (RFC 6665)
    AllowEvents => "Allow-Events", compact b'u';
    /// `Authentication-Info`
    AuthenticationInfo => "Authentication-Info";
    /// `Authorization`
    Authorization => "Authorization";
    /// `Call-ID`
    CallId => "Call-ID", compact b'i';
    /// `Call-Info`
    CallInfo => "Call-Info";
    /// `Contact`
    Contact => "Contact", compact b'm';
    /// `Content-Disposition`
    ContentDisposition => "Content-Disposition";
    /// `Content-Encoding`
    ContentEncoding => "Content-Encoding", compact b'e';
    /// `Content-Language`
    ContentLanguage => "Content-Language";
    /// `Content-Length`
    ContentLength => "Content-Length", compact b'l';
    /// `Content-Type`
    ContentType => "Content-Type", compact b'c';
    /// `CSeq`
    CSeq => "CSeq";
    /// `Date`
    Date => "Date";
    /// `Error-Info`
    ErrorInfo => "Error-Info";
    /// `Event` (RFC 6665)
    Event => "Event", compact b'o';
    /// `Expires`
    Expires => "Expires";
    /// `Flow-Timer` (RFC 5626)
    FlowTimer => "Flow-Timer";
    /// `From`
    From => "From", compact b'f';
    /// `Identity` (RFC 8224)
    Identity => "Identity", compact b'y';
    /// `In-Reply-To`
    InReplyTo => "In-Reply-To";
    /// `Max-Forwards`
    MaxForwards => "Max-Forwards";
    /// `MIME-Version`
    MimeVersion => "MIME-Version";
    /// `Min-Expires`
    MinExpires => "Min-Expires";
    /// `Organization`
    Organization => "Organization";
    /// `P-Asserted-Identity` (RFC 3325)
    PAssertedIdentity => "P-Asserted-Identity";
    /// `Path` (RFC 3327)
    Path => "Path";
    /// `Priority`
    Priority => "Priority";
    /// `Proxy-Authenticate`
    ProxyAuthenticate => "Proxy-Authenticate";
    /// `Proxy-Authorization`
    ProxyAuthorization => "Proxy-Authorization";
    /// `Proxy-Require`
    ProxyRequire => "Proxy-Require";
    /// `RAck` (RFC 3262)
    RAck => "RAck";
    /// `Record-Route`
    RecordRoute => "Record-Route";
    /// `Refer-To` (RFC 3515)
    ReferTo => "Refer-To", compact b'r';
    /// `Referred-By` (RFC 3892)
    ReferredBy => "Referred-By", compact b'b';
    /// `Reject-Contact` (RFC 3841)
    RejectContact => "Reject-Contact", compact b'j';
    /// `Reply-To`
    ReplyTo => "Reply-To";
    /// `Request-Disposition` (RFC 3841)
    RequestDisposition => "Request-Disposition", compact b'd';
    /// `Require`
    Require => "Require";
    /// `Retry-After`
    RetryAfter => "Retry-After";
    /// `Route`
    Route => "Route";
    /// `RSeq` (RFC 3262)
    RSeq => "RSeq";
    /// `Server`
    Server => "Server";
    /// `Session-Expires` (RFC 4028)
    SessionExpires => "Session-Expires", compact b'x';
    /// `Subject`
    Subject => "Subject", compact b's';
    /// `Supported`
    Supported => "Supported", compact b'k';
    /// `Timestamp`
    Timestamp => "Timestamp";
    /// `To`
    To => "To", compact b't';
    /// `Unsupported`
    Unsupported => "Unsupported";
    /// `User-Agent`
    UserAgent => "User-Agent";
    /// `Via`
    Via => "Via", compact b'v';
    /// `Warning`
    Warning => "Warning";
    /// `WWW-Authenticate`
    WwwAuthenticate => "WWW-Authenticate";
}

/// Size of the open-addressing table used to classify long header names.
const TABLE_SIZE: usize = 256;

/// Case-insensitive hash of a header name from its length and three of its bytes
/// (`| 0x20` folds ASCII letters and keeps every other token character distinct).
/// Cheap enough to compute after the name is scanned; equality is checked after
/// the table lookup, so collisions only cost a probe.
#[inline]
const fn name_hash(b: &[u8]) -> usize {
    let n = b.len();
    if n == 0 {
        return 0;
    }
    let first = (b[0] | 0x20) as usize;
    let mid = (b[n / 2] | 0x20) as usize;
    let last = (b[n - 1] | 0x20) as usize;
    (first * 7 + mid * 3 + last * 13 + n * 31) % TABLE_SIZE
}

/// Case-insensitive equality of two token strings: for token characters, `| 0x20`
/// only merges upper and lower case letters, so comparing eight bytes at a time
/// under that mask is exact. Names of 8 to 24 bytes are covered by at most three
/// (overlapping) 8-byte loads.
#[inline]
fn eq_fold(a: &[u8], b: &[u8]) -> bool {
    const MASK: u64 = 0x2020_2020_2020_2020;
    #[inline(always)]
    fn load(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w) | MASK
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
        x[..n].copy_from_slice(a);
        y[..n].copy_from_slice(b);
        return u64::from_le_bytes(x) | MASK == u64::from_le_bytes(y) | MASK;
    }
    if n > 24 {
        return a.eq_ignore_ascii_case(b);
    }
    load(a, 0) == load(b, 0)
        && (n <= 16 || load(a, 8) == load(b, 8))
        && load(a, n - 8) == load(b, n - 8)
}

/// Slot `i` holds 1 + the index in [`HeaderName::ALL`] of the name hashed there, or 0.
static TABLE: [u8; TABLE_SIZE] = {
    let mut t = [0u8; TABLE_SIZE];
    let mut k = 0;
    while k < HeaderName::NAMES.len() {
        let mut slot = name_hash(HeaderName::NAMES[k].as_bytes());
        while t[slot] != 0 {
            slot = (slot + 1) % TABLE_SIZE;
        }
        t[slot] = (k + 1) as u8;
        k += 1;
    }
    t
};

impl HeaderName {
    #[inline]
    fn from_long(name: &[u8]) -> HeaderName {
        HeaderName::from_long_hashed(name, name_hash(name))
    }

    #[inline]
    fn from_long_hashed(name: &[u8], mut slot: usize) -> HeaderName {
        loop {
            let k = TABLE[slot] as usize;
            if k == 0 {
                return HeaderName::Other;
            }
            if eq_fold(HeaderName::NAMES[k - 1].as_bytes(), name) {
                return HeaderName::ALL[k - 1];
            }
            slot = (slot + 1) % TABLE_SIZE;
        }
    }

    /// Classifies a header name (case-insensitive, compact forms included).
    ///
    /// ```
    /// use siplink_message::headers::HeaderName;
    /// assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
    /// assert_eq!(HeaderName::from_bytes(b"cAlL-iD"), HeaderName::CallId);
    /// assert_eq!(HeaderName::from_bytes(b"X-Custom"), HeaderName::Other);
    /// ```
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        match name {
            [c] => HeaderName::from_compact(*c),
            // Quick rejection by length: the longest known name is 19 bytes.
            _ if name.len() > 19 || name.len() < 2 => HeaderName::Other,
            _ => HeaderName::from_long(name),
        }
    }

    /// Whether `raw` (a name as it appears in a message) names this header.
    pub fn matches(self, raw: &[u8]) -> bool {
        self != HeaderName::Other && HeaderName::from_bytes(raw) == self
    }

    /// Whether the header's grammar allows several comma-separated values on one
    /// line (so that `A: x, y` means the same as `A: x` + `A: y`, RFC 3261 §7.3.1).
    pub const fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Accept
                | AcceptContact
                | AcceptEncoding
                | AcceptLanguage
                | AlertInfo
                | Allow
                | AllowEvents
                | CallInfo
                | Contact
                | ContentEncoding
                | ContentLanguage
                | ErrorInfo
                | InReplyTo
                | PAssertedIdentity
                | Path
                | ProxyRequire
                | RecordRoute
                | RejectContact
                | RequestDisposition
                | Require
                | Route
                | Supported
                | Unsupported
                | Via
                | Warning
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical().unwrap_or("(extension header)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_compact_form_round_trips() {
        for &h in HeaderName::ALL {
            let canon = h.canonical().unwrap();
            assert_eq!(HeaderName::from_bytes(canon.as_bytes()), h);
            assert_eq!(HeaderName::from_bytes(canon.to_lowercase().as_bytes()), h);
            assert_eq!(HeaderName::from_bytes(canon.to_uppercase().as_bytes()), h);
            if let Some(c) = h.compact() {
                assert_eq!(HeaderName::from_bytes(&[c as u8]), h);
                assert_eq!(HeaderName::from_bytes(&[c.to_ascii_uppercase() as u8]), h);
            }
            assert!(canon.len() <= 19);
        }
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"z"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
    }
}
