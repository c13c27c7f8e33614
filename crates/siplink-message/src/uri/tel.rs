//! `tel:` URIs (RFC 3966).

use std::borrow::Cow;
use std::fmt;

use bytestring::ByteString;

use super::CONTEXT;
use super::chars::{PARAM, TEL_PNAME, URIC_NO_SEMI, escaped_eq, scan, unescape_str};
use super::host::parse_host;
use crate::error::{Error, Result};
use crate::grammar::{Param, Params};

/// A `tel:` URI (RFC 3966): a global number (`+1-201-555-0123`) or a local number
/// with a required `phone-context` parameter (`7042;phone-context=example.com`).
///
/// Derived equality is structural; use [`TelUri::equivalent`] for RFC 3966 §4.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TelUri {
    raw: ByteString,
    number: ByteString,
    params: Params,
}

#[inline]
fn is_separator(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b'(' | b')')
}

/// Digits of a number without visual separators, lowercased.
fn digits(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.bytes()
        .filter(|c| !is_separator(*c))
        .map(|c| c.to_ascii_lowercase())
}

impl TelUri {
    /// The URI text exactly as received.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The number as received, visual separators included (with the leading `+`
    /// for a global number).
    pub fn number(&self) -> &str {
        &self.number
    }

    /// Whether the number is global (`+` E.164).
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }

    /// The number without visual separators (`-`, `.`, `(`, `)`), hex digits lowercased.
    pub fn normalized_number(&self) -> String {
        digits(&self.number).map(char::from).collect()
    }

    /// All parameters (`ext`, `isub`, `phone-context` and others) as received.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The value of parameter `name` (case-insensitive), decoded once.
    pub fn param(&self, name: &str) -> Option<Option<Cow<'_, str>>> {
        self.params
            .find(name)
            .map(|p| p.value.as_deref().map(unescape_str))
    }

    /// The `phone-context` value (a domain name or a `+` global prefix).
    pub fn phone_context(&self) -> Option<&str> {
        self.params.get("phone-context").flatten()
    }

    /// The `ext` (extension) value.
    pub fn extension(&self) -> Option<&str> {
        self.params.get("ext").flatten()
    }

    /// The `isub` (ISDN subaddress) value as received.
    pub fn isub(&self) -> Option<&str> {
        self.params.get("isub").flatten()
    }

    /// RFC 3966 §4: both global or both local, same digits ignoring visual
    /// separators, and the same set of parameters in any order; `phone-context`
    /// and `ext` values compare without separators; everything case-insensitive.
    pub fn equivalent(&self, other: &TelUri) -> bool {
        if self.raw == other.raw {
            return true;
        }
        self.is_global() == other.is_global()
            && digits(&self.number).eq(digits(&other.number))
            && self.params.len() == other.params.len()
            && params_in(&self.params, &other.params)
            && params_in(&other.params, &self.params)
    }
}

/// Every parameter of `a` has a namesake in `b` with an equal value.
fn params_in(a: &Params, b: &Params) -> bool {
    a.iter().all(|p| {
        b.iter()
            .filter(|q| q.name.eq_ignore_ascii_case(&p.name))
            .any(|q| match (&p.value, &q.value) {
                (None, None) => true,
                (Some(x), Some(y)) => {
                    let digit_like = p.name.eq_ignore_ascii_case("ext")
                        || (p.name.eq_ignore_ascii_case("phone-context") && x.starts_with('+'));
                    if digit_like {
                        digits(x).eq(digits(y))
                    } else {
                        escaped_eq(x.as_bytes(), y.as_bytes(), true)
                    }
                }
                _ => false,
            })
    })
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `phonedigit` (digits and visual separators) run from `k`; returns the end and
/// whether a digit was seen.
fn phonedigits(s: &[u8], k: usize, hex: bool) -> (usize, bool) {
    let mut end = k;
    let mut seen = false;
    while let Some(&c) = s.get(end) {
        let digit = if hex {
            c.is_ascii_hexdigit() || c == b'*' || c == b'#'
        } else {
            c.is_ascii_digit()
        };
        if !digit && !is_separator(c) {
            break;
        }
        seen |= digit;
        end += 1;
    }
    (end, seen)
}

/// Parses what follows `tel:` (at `start`) to the end of `raw` (all ASCII).
pub(crate) fn parse(raw: ByteString, base: usize, start: usize) -> Result<TelUri> {
    let s = raw.as_bytes();
    let err = |pos: usize, expected| Error::syntax(base + pos, CONTEXT, expected);
    let sub = |a: usize, b: usize| raw.slice_ref(&raw[a..b]);

    let global = s.get(start) == Some(&b'+');
    let (end, seen) = if global {
        phonedigits(s, start + 1, false)
    } else {
        phonedigits(s, start, true)
    };
    if !seen {
        return Err(err(start, "telephone number"));
    }
    let number = sub(start, end);

    let mut params = Vec::new();
    let mut has_context = false;
    let mut k = end;
    while s.get(k) == Some(&b';') {
        let ns = k + 1;
        let ne = scan(s, ns, &TEL_PNAME).unwrap_or(ns);
        if ne == ns {
            return Err(err(ns, "tel parameter name"));
        }
        let name = &raw[ns..ne];
        k = ne;
        let mut value = None;
        if s.get(ne) == Some(&b'=') {
            let vs = ne + 1;
            let class = if name.eq_ignore_ascii_case("isub") {
                &URIC_NO_SEMI
            } else {
                &PARAM
            };
            let ve = scan(s, vs, class).map_err(|p| err(p, "escape sequence %HH"))?;
            if ve == vs {
                return Err(err(vs, "tel parameter value"));
            }
            if name.eq_ignore_ascii_case("phone-context") {
                check_descriptor(&raw, base, vs, ve)?;
            } else if name.eq_ignore_ascii_case("ext") && phonedigits(s, vs, false).0 != ve {
                return Err(err(vs, "extension digits"));
            }
            value = Some(sub(vs, ve));
            k = ve;
        }
        if name.eq_ignore_ascii_case("phone-context") {
            if global {
                return Err(err(ns, "no phone-context on a global number"));
            }
            if value.is_none() {
                return Err(err(ne, "'=' phone-context descriptor"));
            }
            has_context = true;
        }
        params.push(Param {
            name: sub(ns, ne),
            value,
            quoted: false,
        });
    }
    if k != s.len() {
        return Err(err(k, "';' tel parameter or end of URI"));
    }
    if !global && !has_context {
        return Err(err(k, "phone-context parameter for a local number"));
    }
    Ok(TelUri {
        raw,
        number,
        params: Params(params),
    })
}

/// `descriptor = domainname / global-number-digits`.
fn check_descriptor(raw: &ByteString, base: usize, vs: usize, ve: usize) -> Result<()> {
    let s = raw.as_bytes();
    let ok = if s[vs] == b'+' {
        let (end, seen) = phonedigits(s, vs + 1, false);
        seen && end == ve
    } else {
        matches!(parse_host(raw, base, vs), Ok((crate::uri::Host::Domain(_), end)) if end == ve)
    };
    if ok {
        Ok(())
    } else {
        Err(Error::syntax(
            base + vs,
            CONTEXT,
            "phone-context domain name or +digits",
        ))
    }
}
