//! Character classes of RFC 3261 §25.1 / RFC 3966 and the `%HH` escape helpers
//! shared by the URI parsers, printers and comparison rules.

use std::borrow::Cow;

/// Builds a 256-entry class table: ASCII letters and digits plus `extra`.
const fn table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0u8;
    while c < 128 {
        t[c as usize] = c.is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// A class table indexed by byte.
pub(crate) type Class = [bool; 256];

// `unreserved = alphanum / mark`, `mark = - _ . ! ~ * ' ( )`; `%` stands for `escaped`.

/// `user = 1*( unreserved / escaped / user-unreserved )`.
pub(crate) static USER: Class = table(b"-_.!~*'()%&=+$,;?/");
/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )`.
pub(crate) static PASSWORD: Class = table(b"-_.!~*'()%&=+$,");
/// `paramchar = param-unreserved / unreserved / escaped` (RFC 3261 and RFC 3966).
pub(crate) static PARAM: Class = table(b"-_.!~*'()%[]/:&+$");
/// `hname` / `hvalue` characters: `hnv-unreserved / unreserved / escaped`.
pub(crate) static HEADER: Class = table(b"-_.!~*'()%[]/?:+$");
/// `uric = reserved / unreserved / escaped`, plus `[`, `]` (RFC 2732) and `#`
/// (fragment), for opaque absolute URIs.
pub(crate) static URIC: Class = table(b"-_.!~*'()%;/?:@&=+$,[]#");
/// `uric` without `;` (RFC 3966 `isub` values inside a parameter list).
pub(crate) static URIC_NO_SEMI: Class = table(b"-_.!~*'()%/?:@&=+$,[]");
/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (after the first byte).
pub(crate) static SCHEME: Class = table(b"+-.");
/// Hostname characters (`alphanum`, `-`, `.`).
pub(crate) static HOSTNAME: Class = table(b"-.");
/// RFC 3966 `pname = 1*( alphanum / "-" )`.
pub(crate) static TEL_PNAME: Class = table(b"-");

/// `reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","`.
#[inline]
pub(crate) fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
    )
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the `%HH` escape at `s[k..]`, if there is a valid one.
#[inline]
fn escape_at(s: &[u8], k: usize) -> Option<u8> {
    match s.get(k..k + 3) {
        Some([b'%', h, l]) => Some(hex_val(*h)? << 4 | hex_val(*l)?),
        _ => None,
    }
}

/// Scans `s[start..]` while bytes are in `class`. A `%` (when the class allows it)
/// must start a valid `%HH` escape. Returns the end index, or `Err(index)` of a
/// malformed escape.
#[inline]
pub(crate) fn scan(s: &[u8], start: usize, class: &Class) -> Result<usize, usize> {
    let mut k = start;
    while let Some(&c) = s.get(k) {
        if !class[c as usize] {
            break;
        }
        if c == b'%' {
            if escape_at(s, k).is_none() {
                return Err(k);
            }
            k += 3;
        } else {
            k += 1;
        }
    }
    Ok(k)
}

/// Percent-decodes `raw` once (never recursively); `%00` becomes a NUL byte.
/// Borrows when there is nothing to decode. Malformed escapes are kept as is.
pub(crate) fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'%', raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut k = first;
    while k < raw.len() {
        match escape_at(raw, k) {
            Some(v) => {
                out.push(v);
                k += 3;
            }
            None => {
                out.push(raw[k]);
                k += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// [`unescape`] as text; bytes that do not form UTF-8 are replaced (U+FFFD).
pub(crate) fn unescape_str(raw: &str) -> Cow<'_, str> {
    match unescape(raw.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(raw),
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// Iterates over the comparison units of an escaped string: each unit is a byte
/// and whether it was an escaped *reserved* character. RFC 3261 §19.1.4: characters
/// other than those in the reserved set are equivalent to their `%HH` encoding,
/// so `%61` and `a` give the same unit while `%3B` and `;` do not.
struct Units<'a> {
    s: &'a [u8],
    k: usize,
}

impl Iterator for Units<'_> {
    type Item = (u8, bool);

    #[inline]
    fn next(&mut self) -> Option<(u8, bool)> {
        let c = *self.s.get(self.k)?;
        if c == b'%'
            && let Some(v) = escape_at(self.s, self.k)
        {
            self.k += 3;
            return Some((v, is_reserved(v)));
        }
        self.k += 1;
        Some((c, false))
    }
}

/// Compares two escaped strings under the RFC 3261 §19.1.4 escaping rule,
/// optionally ignoring ASCII case.
pub(crate) fn escaped_eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if a == b {
        return true;
    }
    if !a.contains(&b'%') && !b.contains(&b'%') {
        return ignore_case && a.eq_ignore_ascii_case(b);
    }
    let mut x = Units { s: a, k: 0 };
    let mut y = Units { s: b, k: 0 };
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some((p, pe)), Some((q, qe))) => {
                let same = if ignore_case {
                    p.eq_ignore_ascii_case(&q)
                } else {
                    p == q
                };
                if !same || pe != qe {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Whether escaped `raw`, fully decoded once, equals the plain text `plain`
/// ignoring ASCII case (lookups by unescaped name).
pub(crate) fn decoded_eq_ignore_case(raw: &[u8], plain: &[u8]) -> bool {
    if !raw.contains(&b'%') {
        return raw.eq_ignore_ascii_case(plain);
    }
    let mut units = Units { s: raw, k: 0 };
    let mut plain = plain.iter();
    loop {
        match (units.next(), plain.next()) {
            (None, None) => return true,
            (Some((a, _)), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `raw` to `out`, keeping bytes of `class` (except `%`) and escaping
/// every other byte as `%HH`.
pub(crate) fn escape_into(out: &mut String, raw: &[u8], class: &Class) {
    for &c in raw {
        if c != b'%' && class[c as usize] {
            out.push(char::from(c));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 15)]));
        }
    }
}

/// `raw` escaped for `class` (see [`escape_into`]).
pub(crate) fn escape(raw: &[u8], class: &Class) -> String {
    let mut s = String::with_capacity(raw.len());
    escape_into(&mut s, raw, class);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_and_escapes() {
        assert_eq!(scan(b"ab%41c@", 0, &USER), Ok(6));
        assert_eq!(scan(b"ab%4", 0, &USER), Err(2));
        assert_eq!(scan(b"ab%zz", 0, &USER), Err(2));
        assert_eq!(unescape(b"v%61lue%25%34%31").as_ref(), b"value%41");
        assert_eq!(unescape(b"%00%00").as_ref(), b"\0\0");
        assert!(escaped_eq(b"%61lice", b"alice", false));
        assert!(!escaped_eq(b"%41lice", b"alice", false));
        assert!(escaped_eq(b"%41lice", b"alice", true));
        assert!(!escaped_eq(b"a%3Bb", b"a;b", false));
        assert!(escaped_eq(b"a%3bb", b"a%3Bb", false));
        assert_eq!(escape(b"a b%;", &PARAM), "a%20b%25%3B");
        assert!(decoded_eq_ignore_case(b"%26%6C", b"&L"));
        assert!(!decoded_eq_ignore_case(b"%26", b"%26"));
        assert!(!decoded_eq_ignore_case(b"%26x", b"&"));
    }
}
