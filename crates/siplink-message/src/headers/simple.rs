//! Headers with small grammars: CSeq, Call-ID, Max-Forwards, Expires,
//! Content-Type, option-tag lists, Retry-After, Date.

use std::fmt;

use bytestring::ByteString;

use crate::error::{Error, Result};
use crate::grammar::{Params, Src, is_token_char, params, parse_decimal, sep, sws, token};
use crate::method::Method;

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (0 to 2^32-1).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Reads a decimal number at the start of `i`; returns it and the rest.
fn number<'a>(
    src: &Src<'_>,
    i: &'a [u8],
    max: u64,
    context: &'static str,
    limit: &'static str,
) -> Result<(u64, &'a [u8])> {
    let n = i.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return Err(src.err(i, context, "a decimal number"));
    }
    let v = parse_decimal(&i[..n], max).ok_or(Error::OutOfRange {
        offset: src.offset_of(i),
        context,
        limit,
    })?;
    Ok((v, &i[n..]))
}

/// Ensures nothing but LWS is left.
fn end(src: &Src<'_>, rest: &[u8], context: &'static str) -> Result<()> {
    let r = sws(rest);
    if r.is_empty() {
        Ok(())
    } else {
        Err(src.err(r, context, "end of value"))
    }
}

impl CSeq {
    pub(crate) fn parse_src(src: &Src<'_>, v: &[u8]) -> Result<CSeq> {
        const CTX: &str = "CSeq header";
        // The common form: at most nine digits (below 2^32), one space, and a
        // method token ending the value.
        let n = v
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(v.len());
        if (1..=9).contains(&n) && v.get(n) == Some(&b' ') {
            let m = &v[n + 1..];
            if !m.is_empty() && m.iter().all(|&c| is_token_char(c)) {
                let seq = v[..n]
                    .iter()
                    .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                let method = Method::from_token(m, || src.text(m, CTX).unwrap_or_default());
                return Ok(CSeq { seq, method });
            }
        }
        let (seq, r) = number(src, v, u64::from(u32::MAX), CTX, "0 to 2^32-1")?;
        let r2 = sws(r);
        if r2.len() == r.len() {
            return Err(src.err(r, CTX, "whitespace before the method"));
        }
        let (r, m) = token(r2).map_err(|_| src.err(r2, CTX, "method"))?;
        end(src, r, CTX)?;
        let method = Method::from_token(m, || src.text(m, CTX).unwrap_or_default());
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

/// `Call-ID = word [ "@" word ]`.
pub(crate) fn check_call_id(src: &Src<'_>, v: &[u8]) -> Result<()> {
    const CTX: &str = "Call-ID header";
    let bad = |k: usize| src.err(&v[k..], CTX, "word characters, at most one '@'");
    if v.is_empty() {
        return Err(src.err(v, CTX, "a word"));
    }
    let word_end = crate::grammar::word_run;
    let first = word_end(v);
    if first < v.len() {
        // Only one '@' is allowed, with a word on each side.
        if v[first] != b'@' || first == 0 || first + 1 == v.len() {
            return Err(bad(first));
        }
        let second = first + 1 + word_end(&v[first + 1..]);
        if second < v.len() {
            return Err(bad(second));
        }
    }
    Ok(())
}

/// A single `1*DIGIT` value bounded by `max` (Max-Forwards, Expires, Min-Expires).
pub(crate) fn parse_number(
    src: &Src<'_>,
    v: &[u8],
    max: u64,
    context: &'static str,
    limit: &'static str,
) -> Result<u64> {
    let (n, r) = number(src, v, max, context, limit)?;
    end(src, r, context)?;
    Ok(n)
}

/// `Content-Type: application/sdp;charset=utf-8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// Top-level type (`application`).
    pub kind: ByteString,
    /// Subtype (`sdp`).
    pub subtype: ByteString,
    /// Parameters.
    pub params: Params,
}

impl MediaType {
    /// Whether this is `kind/subtype` (case-insensitive).
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    pub(crate) fn parse_src(src: &Src<'_>, v: &[u8]) -> Result<MediaType> {
        const CTX: &str = "Content-Type header";
        let (r, kind) = token(v).map_err(|_| src.err(v, CTX, "media type"))?;
        let (r, ()) = sep(b'/')(r).map_err(|_| src.err(r, CTX, "'/'"))?;
        let (r, sub) = token(r).map_err(|_| src.err(r, CTX, "media subtype"))?;
        let (r, params) = params(src, r, CTX)?;
        end(src, r, CTX)?;
        Ok(MediaType {
            kind: src.text(kind, CTX)?,
            subtype: src.text(sub, CTX)?,
            params,
        })
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.kind, self.subtype, self.params)
    }
}

/// A comma-separated list of tokens (Allow, Supported, Require, Proxy-Require,
/// Unsupported). An empty header line is an empty list (`Supported:`).
pub(crate) fn parse_tokens(
    msg: &crate::Message,
    name: crate::headers::HeaderName,
    ctx: &'static str,
) -> Result<Vec<ByteString>> {
    let mut out = Vec::new();
    msg.for_each_value(name, |src, v| {
        if v.is_empty() {
            return Ok(());
        }
        for part in crate::grammar::split_commas(v) {
            if part.is_empty() || !part.iter().all(|&c| is_token_char(c)) {
                return Err(src.err(part, ctx, "a token"));
            }
            out.push(src.text(part, ctx)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// `Retry-After: 120 (I'm in a meeting);duration=3600`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfter {
    /// Seconds to wait.
    pub seconds: u32,
    /// The comment, without parentheses.
    pub comment: Option<ByteString>,
    /// Parameters (`duration`).
    pub params: Params,
}

impl RetryAfter {
    pub(crate) fn parse_src(src: &Src<'_>, v: &[u8]) -> Result<RetryAfter> {
        const CTX: &str = "Retry-After header";
        let (n, r) = number(src, v, u64::from(u32::MAX), CTX, "0 to 2^32-1 seconds")?;
        let mut r = sws(r);
        let mut comment = None;
        if r.first() == Some(&b'(') {
            // comment = LPAREN *(ctext / quoted-pair / comment) RPAREN, bounded nesting
            let mut depth = 0usize;
            let mut k = 0;
            loop {
                match r.get(k) {
                    None => return Err(src.err(&r[r.len()..], CTX, "')'")),
                    Some(b'(') => depth += 1,
                    Some(b')') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Some(b'\\') => k += 1,
                    _ => {}
                }
                if depth > 16 {
                    return Err(src.err(&r[k..], CTX, "comment nesting of at most 16"));
                }
                k += 1;
            }
            comment = Some(src.text(&r[1..k], CTX)?);
            r = &r[k + 1..];
        }
        let (r, params) = params(src, r, CTX)?;
        end(src, r, CTX)?;
        Ok(RetryAfter {
            seconds: n as u32,
            comment,
            params,
        })
    }
}

/// Checks an RFC 1123 date as SIP restricts it (RFC 3261 §25.1: `GMT` only):
/// `Sat, 13 Nov 2010 23:29:00 GMT`.
pub(crate) fn check_date(src: &Src<'_>, v: &[u8]) -> Result<()> {
    const CTX: &str = "Date header";
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let bad = |expected| Err(src.err(v, CTX, expected));
    if v.len() != 29 {
        return bad("'Wkd, DD Mon YYYY HH:MM:SS GMT'");
    }
    let digits = |r: std::ops::Range<usize>| v[r].iter().all(u8::is_ascii_digit);
    if !DAYS.contains(&&v[0..3])
        || &v[3..5] != b", "
        || !digits(5..7)
        || v[7] != b' '
        || !MONTHS.contains(&&v[8..11])
        || v[11] != b' '
        || !digits(12..16)
        || v[16] != b' '
        || !digits(17..19)
        || v[19] != b':'
        || !digits(20..22)
        || v[22] != b':'
        || !digits(23..25)
        || v[25] != b' '
    {
        return bad("'Wkd, DD Mon YYYY HH:MM:SS GMT'");
    }
    if &v[26..29] != b"GMT" {
        return bad("the time zone GMT");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn call_id(s: &'static str) -> Result<&'static str> {
        let b = Bytes::from_static(s.as_bytes());
        check_call_id(&Src::new(&b), &b).map(|()| s)
    }

    fn fault_at(s: &'static str) -> Option<usize> {
        match call_id(s) {
            Err(Error::Syntax { offset, .. }) => Some(offset),
            _ => None,
        }
    }

    #[test]
    fn cseq_common_form_reads_like_the_general_one() {
        let cseq = |s: &'static str| {
            let b = Bytes::from_static(s.as_bytes());
            CSeq::parse_src(&Src::new(&b), &b)
        };
        let ok = |s, seq, method: &str| {
            let c = cseq(s).unwrap();
            assert_eq!((c.seq, c.method.as_str()), (seq, method), "{s}");
        };
        ok("314159 INVITE", 314159, "INVITE");
        ok("1 FOO-BAR", 1, "FOO-BAR");
        ok("000000007 ACK", 7, "ACK");
        ok("999999999 BYE", 999_999_999, "BYE");
        ok("4294967295 BYE", u32::MAX, "BYE");
        ok("12\t \r\n REGISTER ", 12, "REGISTER");
        assert!(cseq("4294967296 BYE").is_err());
        assert!(cseq("12 INVITE x").is_err());
        assert!(cseq("12INVITE").is_err());
        assert!(cseq("12 ").is_err());
        assert!(cseq(" 12 ACK").is_err());
    }

    #[test]
    fn call_id_words_and_one_at() {
        assert_eq!(
            call_id("a84b4c76e66710@pc33.atlanta.example.com").unwrap(),
            "a84b4c76e66710@pc33.atlanta.example.com"
        );
        assert_eq!(call_id("x").unwrap(), "x");
        assert_eq!(call_id("{[<a>]}:~\"/?").unwrap(), "{[<a>]}:~\"/?");
        assert_eq!(fault_at(""), Some(0));
        assert_eq!(fault_at("@host"), Some(0));
        assert_eq!(fault_at("id@"), Some(2));
        assert_eq!(fault_at("a@b@c"), Some(3));
        assert_eq!(fault_at("a b"), Some(1));
        assert_eq!(fault_at("a@b c"), Some(3));
        assert_eq!(fault_at("a;b@c"), Some(1));
    }
}
