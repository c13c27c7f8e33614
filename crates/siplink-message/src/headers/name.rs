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

/// ASCII case folding for token strings: for token characters, `| 0x20` only
/// merges upper and lower case letters, so comparing words under that mask is
/// exact.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The bytes of a name shorter than 8 bytes as one little-endian word (zero
/// padded), with fixed-size loads only (no variable-length copy).
#[inline(always)]
const fn short_word(s: &[u8]) -> u64 {
    let n = s.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64;
        let hi = u32::from_le_bytes([s[n - 4], s[n - 3], s[n - 2], s[n - 1]]) as u64;
        // The two loads overlap on identical bytes.
        lo | (hi << (8 * (n - 4)))
    } else if n >= 2 {
        let lo = u16::from_le_bytes([s[0], s[1]]) as u64;
        let hi = u16::from_le_bytes([s[n - 2], s[n - 1]]) as u64;
        lo | (hi << (8 * (n - 2)))
    } else if n == 1 {
        s[0] as u64
    } else {
        0
    }
}

/// Eight bytes of `s` from `at`, folded.
#[inline(always)]
const fn word_at(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        s[at],
        s[at + 1],
        s[at + 2],
        s[at + 3],
        s[at + 4],
        s[at + 5],
        s[at + 6],
        s[at + 7],
    ]) | FOLD
}

/// The words a name of 2 to 24 bytes is compared by: for fewer than 8 bytes
/// the folded short word; otherwise the words at 0, at 8 (names over 16 bytes,
/// else 0 again) and at `n - 8` (overlapping loads).
#[inline(always)]
const fn key(s: &[u8]) -> [u64; 3] {
    let n = s.len();
    if n < 8 {
        // Fold only the bytes that are there, so that padding stays zero.
        let mask = if n == 0 { 0 } else { FOLD >> (8 * (8 - n)) };
        [short_word(s) | mask, 0, 0]
    } else {
        let mid = if n > 16 { 8 } else { 0 };
        [word_at(s, 0), word_at(s, mid), word_at(s, n - 8)]
    }
}

/// The table slot of a name from its first (folded) word and its length: a
/// multiplicative hash, one multiplication and a shift.
#[inline(always)]
const fn slot_of(first: u64, n: usize) -> usize {
    ((first.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize ^ n) & (TABLE_SIZE - 1)
}

/// One slot of the name table: the first word and length of the name hashed
/// there, and 1 + its index in [`HeaderName::ALL`] (0 for an empty slot).
#[derive(Clone, Copy)]
struct Slot {
    first: u64,
    len: u8,
    index: u8,
}

/// Open-addressing table of the known names (linear probing).
static TABLE: [Slot; TABLE_SIZE] = {
    let mut t = [Slot {
        first: 0,
        len: 0,
        index: 0,
    }; TABLE_SIZE];
    let mut k = 0;
    while k < HeaderName::NAMES.len() {
        let name = HeaderName::NAMES[k].as_bytes();
        let first = key(name)[0];
        let mut slot = slot_of(first, name.len());
        while t[slot].index != 0 {
            slot = (slot + 1) % TABLE_SIZE;
        }
        t[slot] = Slot {
            first,
            len: name.len() as u8,
            index: (k + 1) as u8,
        };
        k += 1;
    }
    t
};

/// [`key`] of every name of [`HeaderName::ALL`], in the same order.
static KEYS: [[u64; 3]; HeaderName::NAMES.len()] = {
    let mut t = [[0u64; 3]; HeaderName::NAMES.len()];
    let mut k = 0;
    while k < HeaderName::NAMES.len() {
        t[k] = key(HeaderName::NAMES[k].as_bytes());
        k += 1;
    }
    t
};

impl HeaderName {
    /// Classifies a token of 2 to 19 bytes.
    #[inline]
    fn from_long(name: &[u8]) -> HeaderName {
        let n = name.len();
        let first = if n < 8 {
            key(name)[0]
        } else {
            word_at(name, 0)
        };
        let mut slot = slot_of(first, n);
        loop {
            let s = TABLE[slot];
            if s.index == 0 {
                return HeaderName::Other;
            }
            if s.first == first && s.len as usize == n {
                let k = s.index as usize - 1;
                // Names of up to 8 bytes are covered by the first word.
                if n <= 8 || {
                    let mid = if n > 16 { 8 } else { 0 };
                    word_at(name, mid) == KEYS[k][1] && word_at(name, n - 8) == KEYS[k][2]
                } {
                    return HeaderName::ALL[k];
                }
            }
            slot = (slot + 1) & (TABLE_SIZE - 1);
        }
    }

    /// Classifies a name known to be a token (what the message parser has just
    /// scanned).
    #[inline]
    pub(crate) fn from_token(name: &[u8]) -> HeaderName {
        match name.len() {
            1 => HeaderName::from_compact(name[0]),
            // The longest known name is 19 bytes.
            2..=19 => HeaderName::from_long(name),
            _ => HeaderName::Other,
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
        // Known names are tokens; the word comparison is exact for tokens only.
        if name.len() > 19 || !name.iter().all(|&c| crate::grammar::is_token_char(c)) {
            return HeaderName::Other;
        }
        HeaderName::from_token(name)
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
