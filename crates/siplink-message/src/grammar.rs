//! RFC 3261 §25 grammar primitives shared by the start-line, header and URI parsers.
//!
//! Everything here works on `&[u8]` slices borrowed from a message's [`Bytes`]
//! buffer; [`Src::text`] turns a sub-slice back into a zero-copy [`ByteString`].

use std::borrow::Cow;

use bytes::Bytes;
use bytestring::ByteString;
use nom::{
    IResult,
    error::{ErrorKind, ParseError},
};

use crate::error::{Error, Result};

/// nom input type used throughout the crate.
pub(crate) type In<'a> = &'a [u8];

/// nom result type used throughout the crate.
pub(crate) type PResult<'a, O> = IResult<In<'a>, O>;

const fn class_table(extra: &[u8], alnum: bool) -> [bool; 256] {
    let mut t = [false; 256];
    if alnum {
        let mut c = b'0';
        while c <= b'9' {
            t[c as usize] = true;
            c += 1;
        }
        let mut c = b'a';
        while c <= b'z' {
            t[c as usize] = true;
            t[(c - 32) as usize] = true;
            c += 1;
        }
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = class_table(b"-.!%*_+`'~", true);
static WORD: [bool; 256] = class_table(b"-.!%*_+`'~()<>:\\\"/[]?{}", true);

/// Length of the run of bytes of `class` at the start of `s`, four bytes per
/// step while it lasts (names, tokens and words are mostly longer than that).
#[inline(always)]
pub(crate) fn run_of(s: &[u8], class: &[bool; 256]) -> usize {
    let mut k = 0;
    while let Some(c) = s.get(k..k + 4) {
        if !(class[c[0] as usize]
            & class[c[1] as usize]
            & class[c[2] as usize]
            & class[c[3] as usize])
        {
            break;
        }
        k += 4;
    }
    while k < s.len() && class[s[k] as usize] {
        k += 1;
    }
    k
}

/// Length of the run of word characters (Call-ID) at the start of `s`.
#[inline(always)]
pub(crate) fn word_run(s: &[u8]) -> usize {
    run_of(s, &WORD)
}

/// `token` character (RFC 3261 §25.1).
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[b as usize]
}

/// `WSP`: space or horizontal tab.
#[inline]
pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Skips optional linear white space (`SWS`): spaces, tabs and folded line breaks
/// (CRLF followed by at least one WSP). Never fails.
#[inline]
pub(crate) fn sws(i: In<'_>) -> In<'_> {
    // Most separators have no white space around them: decide on one byte.
    match i.first() {
        Some(b' ' | b'\t' | b'\r' | b'\n') => sws_slow(i),
        _ => i,
    }
}

fn sws_slow(mut i: In<'_>) -> In<'_> {
    loop {
        match i {
            [b' ' | b'\t', rest @ ..] => i = rest,
            [b'\r', b'\n', b' ' | b'\t', rest @ ..] => i = rest,
            [b'\n', b' ' | b'\t', rest @ ..] => i = rest,
            _ => return i,
        }
    }
}

/// Trims LWS from both ends of a slice.
pub(crate) fn trim_lws(i: In<'_>) -> In<'_> {
    let i = sws(i);
    let mut end = i.len();
    while end > 0 && matches!(i[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    &i[..end]
}

fn fail<'a, O>(i: In<'a>, kind: ErrorKind) -> PResult<'a, O> {
    Err(nom::Err::Error(nom::error::Error::from_error_kind(i, kind)))
}

/// One or more token characters.
pub(crate) fn token(i: In<'_>) -> PResult<'_, In<'_>> {
    run1(i, is_token_char)
}

/// One or more bytes satisfying `pred` (a hand-rolled `take_while1`: this is the
/// innermost loop of every header parser).
#[inline(always)]
fn run1(i: In<'_>, pred: impl Fn(u8) -> bool) -> PResult<'_, In<'_>> {
    let n = i.iter().position(|&c| !pred(c)).unwrap_or(i.len());
    if n == 0 {
        return fail(i, ErrorKind::TakeWhile1);
    }
    Ok((&i[n..], &i[..n]))
}

/// Matches `c` surrounded by optional LWS (`SEMI`, `COMMA`, `EQUAL`, `SLASH`, `COLON`...).
pub(crate) fn sep(c: u8) -> impl Fn(In<'_>) -> PResult<'_, ()> {
    move |i| {
        let j = sws(i);
        match j.split_first() {
            Some((&b, rest)) if b == c => Ok((sws(rest), ())),
            _ => fail(i, ErrorKind::Char),
        }
    }
}

/// `quoted-string` (RFC 3261 §25.1) without leading LWS: returns the raw contents
/// between the quotes, escapes still in place (see [`unescape_quoted`]).
pub(crate) fn quoted_string(i: In<'_>) -> PResult<'_, In<'_>> {
    let Some((b'"', body)) = i.split_first() else {
        return fail(i, ErrorKind::Char);
    };
    let mut k = 0;
    while k < body.len() {
        match body[k] {
            b'"' => return Ok((&body[k + 1..], &body[..k])),
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                match body.get(k + 1) {
                    Some(&c) if c <= 0x7f && c != b'\n' && c != b'\r' => k += 2,
                    _ => return fail(&body[k..], ErrorKind::Escaped),
                }
            }
            b'\r' | b'\n' => {
                // Only folded line breaks (LWS) are allowed inside.
                let rest = &body[k..];
                let skipped = sws(rest);
                if skipped.len() == rest.len() {
                    return fail(rest, ErrorKind::Char);
                }
                k = body.len() - skipped.len();
            }
            c if c < 0x20 && c != b'\t' => return fail(&body[k..], ErrorKind::Char),
            0x7f => return fail(&body[k..], ErrorKind::Char),
            _ => k += 1,
        }
    }
    fail(&body[body.len()..], ErrorKind::Eof)
}

/// Removes `quoted-pair` escapes; borrows when there are none.
pub(crate) fn unescape_quoted(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&c) = it.next() {
        if c == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Parses `1*DIGIT` as a number no larger than `max` (leading zeros are fine: RFC
/// 4475 §3.1.1.1 has `Max-Forwards: 0068`). Returns `None` for an empty or
/// non-digit input, or a value above `max`, however many digits it has.
pub(crate) fn parse_decimal(digits: &[u8], max: u64) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

/// Common protocol tokens and parameter names, returned as static strings so that
/// the hottest views take no reference on the message buffer for them (each
/// reference is an atomic increment and decrement).
#[inline]
pub(crate) fn intern(sub: &[u8]) -> Option<ByteString> {
    // Dispatch on the length first, then compare against the few literals of
    // that length (the compiler turns these into integer comparisons).
    let s: &'static str = match sub.len() {
        1 => match sub {
            b"q" => "q",
            _ => return None,
        },
        2 => match sub {
            b"WS" => "WS",
            b"ws" => "ws",
            b"lr" => "lr",
            b"ob" => "ob",
            b"r2" => "r2",
            b"on" => "on",
            _ => return None,
        },
        3 => match sub {
            b"SIP" => "SIP",
            b"2.0" => "2.0",
            b"UDP" => "UDP",
            b"TCP" => "TCP",
            b"TLS" => "TLS",
            b"WSS" => "WSS",
            b"udp" => "udp",
            b"tcp" => "tcp",
            b"tls" => "tls",
            b"wss" => "wss",
            b"ttl" => "ttl",
            b"tag" => "tag",
            _ => return None,
        },
        4 => match sub {
            b"SCTP" => "SCTP",
            b"user" => "user",
            _ => return None,
        },
        5 => match sub {
            b"rport" => "rport",
            b"maddr" => "maddr",
            b"phone" => "phone",
            _ => return None,
        },
        6 => match sub {
            b"branch" => "branch",
            b"method" => "method",
            b"reg-id" => "reg-id",
            _ => return None,
        },
        7 => match sub {
            b"expires" => "expires",
            _ => return None,
        },
        8 => match sub {
            b"received" => "received",
            _ => return None,
        },
        9 => match sub {
            b"transport" => "transport",
            _ => return None,
        },
        13 => match sub {
            b"+sip.instance" => "+sip.instance",
            _ => return None,
        },
        _ => return None,
    };
    Some(ByteString::from_static(s))
}

/// The source buffer a parse works on, with the offset of the slice being parsed
/// relative to the start of the message (for error positions).
#[derive(Clone, Copy)]
pub(crate) struct Src<'b> {
    /// The whole buffer (the message).
    pub bytes: &'b Bytes,
    /// Offset of `bytes` in the message, normally 0.
    pub base: usize,
}

impl<'b> Src<'b> {
    pub(crate) fn new(bytes: &'b Bytes) -> Self {
        Src { bytes, base: 0 }
    }

    /// Offset of `sub` (a sub-slice of the buffer) from the start of the message.
    #[inline]
    pub(crate) fn offset_of(&self, sub: &[u8]) -> usize {
        let start = self.bytes.as_ptr() as usize;
        let p = sub.as_ptr() as usize;
        self.base + p.saturating_sub(start).min(self.bytes.len())
    }

    /// A zero-copy [`Bytes`] for `sub`, which must lie inside the buffer.
    #[inline]
    pub(crate) fn slice(&self, sub: &[u8]) -> Bytes {
        if sub.is_empty() {
            return Bytes::new();
        }
        // What `Bytes::slice_ref` does, with one range check instead of three
        // (a slice from outside the buffer still panics in `Bytes::slice`).
        let at = (sub.as_ptr() as usize).wrapping_sub(self.bytes.as_ptr() as usize);
        self.bytes.slice(at..at.saturating_add(sub.len()))
    }

    /// A zero-copy [`ByteString`] for `sub`; fails if it is not UTF-8.
    pub(crate) fn text(&self, sub: &[u8], context: &'static str) -> Result<ByteString> {
        ByteString::try_from(self.slice(sub))
            .map_err(|_| Error::syntax(self.offset_of(sub), context, "UTF-8 text"))
    }

    /// Like [`Src::text`], with common tokens interned (see [`intern`]).
    #[inline]
    pub(crate) fn token_text(&self, sub: &[u8], context: &'static str) -> Result<ByteString> {
        match intern(sub) {
            Some(s) => Ok(s),
            None => self.text(sub, context),
        }
    }

    /// Text that may need unescaping (a quoted string's contents).
    pub(crate) fn unquoted_text(&self, raw: &[u8], context: &'static str) -> Result<ByteString> {
        match unescape_quoted(raw) {
            Cow::Borrowed(b) => self.text(b, context),
            Cow::Owned(v) => ByteString::try_from(Bytes::from(v))
                .map_err(|_| Error::syntax(self.offset_of(raw), context, "UTF-8 text")),
        }
    }

    /// A syntax error at the start of `rest`.
    pub(crate) fn err(&self, rest: &[u8], context: &'static str, expected: &'static str) -> Error {
        Error::syntax(self.offset_of(rest), context, expected)
    }
}

/// A header or URI parameter: `name` or `name=value`.
///
/// Names compare case-insensitively through [`Params::get`]. A quoted value is
/// stored without its quotes and with escapes removed; [`Param::quoted`] says it
/// was quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param {
    /// Parameter name as received.
    pub name: ByteString,
    /// Parameter value, if any.
    pub value: Option<ByteString>,
    /// Whether the value was a quoted string.
    pub quoted: bool,
}

/// Characters a parameter value may hold without quotes (token, `:` and the
/// brackets of an IPv6 reference).
fn is_gen_value_char(b: u8) -> bool {
    is_token_char(b) || matches!(b, b':' | b'[' | b']')
}

impl std::fmt::Display for Param {
    /// Writes `;name`, `;name=value` or `;name="value"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, ";{}", self.name)?;
        match &self.value {
            None => Ok(()),
            Some(v) if self.quoted => {
                f.write_str("=\"")?;
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
            Some(v) => write!(f, "={v}"),
        }
    }
}

impl std::fmt::Display for Params {
    /// Writes every parameter with its leading `;`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|p| write!(f, "{p}"))
    }
}

/// An ordered list of [`Param`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// The first parameter named `name` (case-insensitive).
    pub fn find(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The value of the first parameter named `name`: `Some(None)` for a parameter
    /// without a value, `None` when the parameter is absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.find(name).map(|p| p.value.as_deref())
    }

    /// Whether a parameter named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Appends a parameter (the value is written quoted if it is not a token).
    pub fn push(&mut self, name: &str, value: Option<&str>) {
        let quoted = value.is_some_and(|v| v.is_empty() || !v.bytes().all(is_gen_value_char));
        self.0.push(Param {
            name: ByteString::from(name),
            value: value.map(ByteString::from),
            quoted,
        });
    }

    /// Sets a parameter: replaces the value of the first one named `name`, or
    /// appends it.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        match self
            .0
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(k) => {
                self.0[k].value = value.map(ByteString::from);
                self.0[k].quoted =
                    value.is_some_and(|v| v.is_empty() || !v.bytes().all(is_gen_value_char));
            }
            None => self.push(name, value),
        }
    }

    /// Removes every parameter named `name`; returns whether one was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    /// Iterates over the parameters in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.0.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = &'a Param;
    type IntoIter = std::slice::Iter<'a, Param>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// `gen-value = token / host / quoted-string`, with the RFC 5118 §4.5 liberal
/// reading that also allows a bracketed IPv6 reference. Returns the value slice and
/// whether it was quoted (quoted values come back raw, escapes in place).
fn gen_value(i: In<'_>) -> PResult<'_, (In<'_>, bool)> {
    match i.first() {
        Some(b'"') => quoted_string(i).map(|(r, v)| (r, (v, true))),
        Some(b'[') => match memchr::memchr(b']', i) {
            Some(end)
                if i[1..end]
                    .iter()
                    .all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.') =>
            {
                Ok((&i[end + 1..], (&i[..=end], false)))
            }
            _ => fail(i, ErrorKind::Char),
        },
        _ => {
            // token chars plus ':' so that an unbracketed IPv6 address in
            // `received=` (RFC 5118 §4.5) is read whole.
            let (r, v) = run1(i, |c| is_token_char(c) || c == b':')?;
            Ok((r, (v, false)))
        }
    }
}

/// The common form of one parameter, `;name` or `;name=token`, with no white
/// space around the separators: returns the name, the value and the rest.
/// `None` for any other form (the general loop of [`params`] reads it); what
/// this returns is what the general loop would read.
#[inline]
fn plain_param(i: In<'_>) -> Option<(In<'_>, Option<In<'_>>, In<'_>)> {
    let after = i.strip_prefix(b";")?;
    let n = after
        .iter()
        .position(|&c| !is_token_char(c))
        .unwrap_or(after.len());
    if n == 0 {
        return None;
    }
    let (name, rest) = after.split_at(n);
    match rest.first() {
        Some(b'=') => {
            let v = &rest[1..];
            let m = v
                .iter()
                .position(|&c| !(is_token_char(c) || c == b':'))
                .unwrap_or(v.len());
            // A quoted string, an IPv6 reference or white space after '='.
            if m == 0 {
                return None;
            }
            Some((name, Some(&v[..m]), &v[m..]))
        }
        // White space before a possible '='.
        Some(b' ' | b'\t' | b'\r' | b'\n') => None,
        _ => Some((name, None, rest)),
    }
}

/// One parameter as read, before any text is made of it: the name, and the
/// value with whether it was a quoted string (raw, escapes in place).
#[derive(Clone, Copy)]
pub(crate) struct RawParam<'a> {
    pub name: In<'a>,
    pub value: Option<(In<'a>, bool)>,
}

impl RawParam<'_> {
    /// The value as text (a quoted string without its quotes and escapes).
    pub(crate) fn value_text(
        &self,
        src: &Src<'_>,
        context: &'static str,
    ) -> Result<Option<ByteString>> {
        match self.value {
            None => Ok(None),
            Some((raw, true)) => src.unquoted_text(raw, context).map(Some),
            Some((raw, false)) => src.token_text(raw, context).map(Some),
        }
    }

    /// The parameter as a [`Param`].
    pub(crate) fn to_param(self, src: &Src<'_>, context: &'static str) -> Result<Param> {
        let value = self.value_text(src, context)?;
        Ok(Param {
            name: src.token_text(self.name, context)?,
            value,
            quoted: matches!(self.value, Some((_, true))),
        })
    }
}

/// Reads `*( SEMI generic-param )` from the start of `i`, calling `each` with
/// every parameter in order, and returns what follows. Stops (without error)
/// before the first byte that does not start `SEMI`; a `;` not followed by a
/// valid parameter is an error.
pub(crate) fn for_each_param<'a>(
    src: &Src<'_>,
    mut i: In<'a>,
    context: &'static str,
    mut each: impl FnMut(RawParam<'a>) -> Result<()>,
) -> Result<In<'a>> {
    loop {
        if let Some((name, value, rest)) = plain_param(i) {
            each(RawParam {
                name,
                value: value.map(|v| (v, false)),
            })?;
            i = rest;
            continue;
        }
        let Ok((after_semi, ())) = sep(b';')(i) else {
            return Ok(i);
        };
        let (rest, name) =
            token(after_semi).map_err(|_| src.err(after_semi, context, "parameter name"))?;
        let (rest, value) = match sep(b'=')(rest) {
            Ok((v, ())) => {
                let (rest, value) =
                    gen_value(v).map_err(|_| src.err(v, context, "parameter value"))?;
                (rest, Some(value))
            }
            Err(_) => (rest, None),
        };
        each(RawParam { name, value })?;
        i = rest;
    }
}

/// Parses `*( SEMI generic-param )` from the start of `i` (see
/// [`for_each_param`]).
pub(crate) fn params<'a>(
    src: &Src<'_>,
    i: In<'a>,
    context: &'static str,
) -> Result<(In<'a>, Params)> {
    let mut out = Vec::new();
    let rest = for_each_param(src, i, context, |p| {
        out.push(p.to_param(src, context)?);
        Ok(())
    })?;
    Ok((rest, Params(out)))
}

/// Splits a header value on top-level commas (outside quoted strings and `<...>`),
/// trimming LWS around each element. Empty elements are kept (as empty slices) so
/// that callers can reject them with a position.
pub(crate) fn split_commas(value: In<'_>) -> impl Iterator<Item = In<'_>> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let mut in_angle = false;
        let mut k = 0;
        // Jump from one interesting byte to the next with memchr3: commas,
        // quotes and angle brackets are rare in a value.
        while let Some(off) =
            memchr::memchr3(b',', b'"', if in_angle { b'>' } else { b'<' }, &v[k..])
        {
            k += off;
            match v[k] {
                b'"' => {
                    // Skip the quoted string (escapes included); unterminated
                    // quotes run to the end, for the element parser to reject.
                    let mut q = k + 1;
                    while q < v.len() && v[q] != b'"' {
                        q += if v[q] == b'\\' { 2 } else { 1 };
                    }
                    k = q.min(v.len());
                }
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                _ if in_angle => {}
                _ => {
                    rest = Some(&v[k + 1..]);
                    return Some(trim_lws(&v[..k]));
                }
            }
            k += 1;
            if k >= v.len() {
                break;
            }
        }
        rest = None;
        Some(trim_lws(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sws_skips_folding() {
        assert_eq!(sws(b" \t\r\n  x"), b"x");
        assert_eq!(sws(b"\r\nx"), b"\r\nx");
        assert_eq!(trim_lws(b"  a b \r\n "), b"a b");
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            quoted_string(b"\"a\\\"b\" rest").unwrap(),
            (&b" rest"[..], &b"a\\\"b"[..])
        );
        assert!(quoted_string(b"\"unterminated").is_err());
        assert_eq!(unescape_quoted(b"a\\\"b").as_ref(), b"a\"b");
    }

    #[test]
    fn decimal_limits() {
        assert_eq!(parse_decimal(b"0068", 255), Some(68));
        assert_eq!(parse_decimal(b"300", 255), None);
        assert_eq!(
            parse_decimal(b"36893488147419103232", u64::from(u32::MAX)),
            None
        );
        assert_eq!(parse_decimal(b"", 9), None);
    }

    #[test]
    fn params_and_commas() {
        let b = Bytes::from_static(
            b";branch=z9hG4bK1 ; rport;received=[2001:db8::1];x=\"q \\\" v\" tail",
        );
        let src = Src::new(&b);
        let (rest, p) = params(&src, &b, "test").unwrap();
        assert_eq!(rest, b" tail");
        assert_eq!(p.get("BRANCH"), Some(Some("z9hG4bK1")));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.get("received"), Some(Some("[2001:db8::1]")));
        assert_eq!(p.get("x"), Some(Some("q \" v")));
        assert!(p.find("x").unwrap().quoted);
        let parts: Vec<_> = split_commas(b"a, \"b,c\" <d,e>, f").collect();
        assert_eq!(parts, vec![&b"a"[..], b"\"b,c\" <d,e>", b"f"]);
        let parts: Vec<_> = split_commas(b"\"x\\\",y\" <sip:a>, <sip:b;p=\",\">,,").collect();
        assert_eq!(
            parts,
            vec![&b"\"x\\\",y\" <sip:a>"[..], b"<sip:b;p=\",\">", b"", b""]
        );
        let parts: Vec<_> = split_commas(b"\"open, never closed").collect();
        assert_eq!(parts, vec![&b"\"open, never closed"[..]]);
    }

    proptest::proptest! {
        /// The common form read in one step gives what the general loop gives
        /// (white space before each ';' sends every parameter through it).
        #[test]
        fn plain_parameters_read_like_the_general_loop(
            list in proptest::collection::vec(
                (
                    "[a-zA-Z0-9\\-]{0,4}",
                    proptest::option::of("[a-zA-Z0-9:\\[\\]. ]{0,6}|\"[a-z ;]{0,4}\""),
                ),
                0..4,
            ),
            tail in "[ ,>a]{0,2}",
        ) {
            let write = |sep: &str| {
                let mut s = String::new();
                for (name, value) in &list {
                    s.push_str(sep);
                    s.push_str(name);
                    if let Some(v) = value {
                        s.push('=');
                        s.push_str(v);
                    }
                }
                s.push_str(&tail);
                Bytes::from(s)
            };
            let (plain, spaced) = (write(";"), write(" ;"));
            // What is left over, without the white space the spaced form adds.
            let left = |r: &[u8]| r.iter().filter(|&&c| c != b' ').count();
            let a = params(&Src::new(&plain), &plain, "test").map(|(r, p)| (left(r), p));
            let b = params(&Src::new(&spaced), &spaced, "test").map(|(r, p)| (left(r), p));
            match (a, b) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => proptest::prop_assert!(false, "{a:?} / {b:?}"),
            }
        }
    }

    #[test]
    fn bad_param_has_position() {
        let b = Bytes::from_static(b";;x");
        let e = params(&Src::new(&b), &b, "Via header").unwrap_err();
        assert_eq!(
            e,
            Error::Syntax {
                offset: 1,
                context: "Via header",
                expected: "parameter name"
            }
        );
    }
}
