//! Typed views of the authentication headers: `WWW-Authenticate` and
//! `Proxy-Authenticate` ([`Challenge`]), `Authorization` and
//! `Proxy-Authorization` ([`Credentials`]).
//!
//! Grammar: RFC 3261 §25.1 (`challenge`, `credentials`), with the RFC 7235 §2.1
//! `token68` form for schemes such as `Bearer` (RFC 8898). One header value is
//! one challenge or one set of credentials: SIP puts each in its own header line.
//!
//! # What is accepted
//!
//! The parser follows RFC 7616 §3.3's "liberal in what you accept":
//!
//! * parameter values the RFC wants quoted (`realm`, `nonce`, `uri`, `response`...)
//!   are accepted unquoted as long as they contain no white space, `"`, `,` or `\`
//!   (any other visible ASCII is allowed, so `uri=sip:bob@biloxi.com` and
//!   `nonce=abc/def==` parse); values the RFC wants bare (`algorithm`, `qop`, `nc`,
//!   `stale`) are accepted quoted. [`Param::quoted`] records which form was used.
//! * empty list elements (`realm="a",,nonce="b"`) are skipped (RFC 7230 §7).
//! * scheme and parameter names compare case-insensitively.
//!
//! Refused with a positioned [`Error::Syntax`] or [`Error::OutOfRange`]:
//! an unterminated quoted string, a value that is followed by anything but a
//! comma or the end (such as an unquoted value with a space in it), a parameter
//! without `=value`, a repeated parameter name (the error names the parameter
//! when it is one of the digest parameters), a `Digest` header without
//! parameters, a header value longer than [`MAX_HEADER_LEN`], a parameter value
//! longer than [`MAX_VALUE_LEN`] and more than [`MAX_PARAMS`] parameters.
//!
//! # Serialisation
//!
//! [`Display`](fmt::Display) writes `scheme param, param...`. `realm`, `nonce`,
//! `uri`, `response`, `cnonce`, `opaque`, `username`, `domain`, `nextnonce` and
//! `rspauth` are always quoted, and so is `qop` in a challenge (it is a list
//! there); `algorithm`, `nc`, `stale`, `userhash`, `charset` and `qop` in
//! credentials are written bare when they are tokens (RFC 7616 §3.4: "a sender
//! MUST NOT generate the quoted string syntax" for them). Other parameters keep
//! the form they were parsed with, and any value that is not a token is quoted.
//! `"` and `\` are escaped inside quoted strings.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::{Error, Result};
use crate::grammar::{Param, Params, Src, is_token_char, quoted_string, sws, token, trim_lws};

/// Longest accepted authentication header value, in bytes.
pub const MAX_HEADER_LEN: usize = 8 * 1024;
/// Longest accepted parameter value (raw, before unescaping), in bytes.
pub const MAX_VALUE_LEN: usize = 1024;
/// Most parameters accepted in one challenge or one set of credentials.
pub const MAX_PARAMS: usize = 32;

const CHALLENGE_CTX: &str = "authentication challenge";
const CREDENTIALS_CTX: &str = "authorization credentials";

/// Parameters that are always written as quoted strings.
const ALWAYS_QUOTED: &[&str] = &[
    "realm",
    "nonce",
    "uri",
    "response",
    "cnonce",
    "opaque",
    "username",
    "domain",
    "nextnonce",
    "rspauth",
];

/// Parameters that are written bare (when their value is a token).
const NEVER_QUOTED: &[&str] = &["algorithm", "nc", "stale", "userhash", "charset"];

/// Which header family a parameter list belongs to (only `qop` differs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Challenge,
    Credentials,
}

/// A `WWW-Authenticate` or `Proxy-Authenticate` header value (RFC 3261 §20.44,
/// §20.27): an authentication scheme and its parameters.
///
/// ```
/// use siplink_message::headers::auth::Challenge;
///
/// let c = Challenge::parse(
///     r#"Digest realm="atlanta.com", qop="auth,auth-int", nonce="84a4cc6f", algorithm=SHA-256, stale=TRUE"#,
/// ).unwrap();
/// assert!(c.is_digest());
/// assert_eq!(c.realm(), Some("atlanta.com"));
/// assert_eq!(c.qop_options().collect::<Vec<_>>(), ["auth", "auth-int"]);
/// assert_eq!(c.algorithm(), Some("SHA-256"));
/// assert!(c.stale());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Challenge {
    /// The authentication scheme as received (`Digest`, compare case-insensitively).
    pub scheme: ByteString,
    /// The `auth-param`s in order (empty when `token68` is used).
    pub params: Params,
    /// The RFC 7235 `token68` form (`Bearer abc...`), when used instead of parameters.
    pub token68: Option<ByteString>,
}

/// An `Authorization` or `Proxy-Authorization` header value (RFC 3261 §20.7,
/// §20.28): an authentication scheme and its parameters.
///
/// ```
/// use siplink_message::headers::auth::Credentials;
///
/// let c = Credentials::parse(
///     r#"Digest username="bob", realm="biloxi.com", nonce="dcd98b", uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1""#,
/// ).unwrap();
/// assert_eq!(c.username(), Some("bob"));
/// assert_eq!(c.uri(), Some("sip:bob@biloxi.com"));
/// assert_eq!(c.qop(), Some("auth"));
/// assert_eq!(c.nc(), Some("00000001"));
/// // Round trip through Display.
/// assert_eq!(Credentials::parse(c.to_string()).unwrap(), c);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// The authentication scheme as received (`Digest`, compare case-insensitively).
    pub scheme: ByteString,
    /// The `auth-param`s in order (empty when `token68` is used).
    pub params: Params,
    /// The RFC 7235 `token68` form (`Bearer abc...`), when used instead of parameters.
    pub token68: Option<ByteString>,
}

fn value_of<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).flatten()
}

fn is_true(params: &Params, name: &str) -> bool {
    value_of(params, name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn push(params: &mut Params, name: impl Into<ByteString>, value: impl Into<ByteString>) {
    let name = name.into();
    let quoted = ALWAYS_QUOTED.iter().any(|n| name.eq_ignore_ascii_case(n));
    params.0.push(Param {
        name,
        value: Some(value.into()),
        quoted,
    });
}

/// The constructors, parser and common accessors shared by [`Challenge`] and
/// [`Credentials`] (same shape: a scheme and `auth-param`s).
macro_rules! auth_value_common {
    ($ty:ident, $ctx:expr, $what:literal) => {
        impl $ty {
            #[doc = concat!("An empty ", $what, " for `scheme`; add parameters with [`", stringify!($ty), "::push`].")]
            pub fn new(scheme: impl Into<ByteString>) -> Self {
                $ty {
                    scheme: scheme.into(),
                    params: Params::default(),
                    token68: None,
                }
            }

            #[doc = concat!("An empty `Digest` ", $what, ".")]
            pub fn digest() -> Self {
                Self::new(ByteString::from_static("Digest"))
            }

            /// Appends `name=value` (quoting is decided when serialising).
            pub fn push(
                &mut self,
                name: impl Into<ByteString>,
                value: impl Into<ByteString>,
            ) -> &mut Self {
                push(&mut self.params, name, value);
                self
            }

            #[doc = concat!("Builder form of [`", stringify!($ty), "::push`].")]
            pub fn with(mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) -> Self {
                self.push(name, value);
                self
            }

            /// Parses one header value (without the header name).
            pub fn parse(input: impl Into<Bytes>) -> Result<Self> {
                let bytes = input.into();
                Self::parse_src(&Src::new(&bytes), &bytes)
            }

            /// Parses `value`, a slice of `src`'s buffer; values are zero-copy slices of it.
            pub(crate) fn parse_src(src: &Src<'_>, value: &[u8]) -> Result<Self> {
                let (scheme, params, token68) = parse_auth(src, value, $ctx)?;
                Ok($ty {
                    scheme,
                    params,
                    token68,
                })
            }

            /// Whether the scheme is `Digest` (case-insensitive).
            pub fn is_digest(&self) -> bool {
                self.scheme.eq_ignore_ascii_case("Digest")
            }

            /// The value of parameter `name` (case-insensitive), if present with a value.
            pub fn param(&self, name: &str) -> Option<&str> {
                value_of(&self.params, name)
            }
        }
    };
}

auth_value_common!(Challenge, CHALLENGE_CTX, "challenge");
auth_value_common!(Credentials, CREDENTIALS_CTX, "set of credentials");

impl Challenge {
    /// `realm`.
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// `nonce`.
    pub fn nonce(&self) -> Option<&str> {
        self.param("nonce")
    }

    /// `opaque`.
    pub fn opaque(&self) -> Option<&str> {
        self.param("opaque")
    }

    /// `algorithm` as sent (absent means MD5).
    pub fn algorithm(&self) -> Option<&str> {
        self.param("algorithm")
    }

    /// The `qop` options (`auth`, `auth-int`...), split on commas and trimmed;
    /// empty when `qop` is absent (RFC 2069 legacy mode).
    pub fn qop_options(&self) -> impl Iterator<Item = &str> + '_ {
        self.param("qop")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// `stale=true` (case-insensitive); anything else, or absence, is `false`.
    pub fn stale(&self) -> bool {
        is_true(&self.params, "stale")
    }

    /// `userhash=true` (RFC 7616 §3.3).
    pub fn userhash(&self) -> bool {
        is_true(&self.params, "userhash")
    }

    /// The `domain` URIs, split on white space.
    pub fn domain(&self) -> impl Iterator<Item = &str> + '_ {
        self.param("domain").unwrap_or("").split_ascii_whitespace()
    }
}

impl Credentials {
    /// `username` (a hash when [`Credentials::userhash`] is true).
    pub fn username(&self) -> Option<&str> {
        self.param("username")
    }

    /// `realm`.
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// `nonce`.
    pub fn nonce(&self) -> Option<&str> {
        self.param("nonce")
    }

    /// `uri` (the digest-uri, which must equal the Request-URI).
    pub fn uri(&self) -> Option<&str> {
        self.param("uri")
    }

    /// `response` (the request digest, lowercase hex).
    pub fn response(&self) -> Option<&str> {
        self.param("response")
    }

    /// `algorithm` as sent (absent means MD5).
    pub fn algorithm(&self) -> Option<&str> {
        self.param("algorithm")
    }

    /// `cnonce`.
    pub fn cnonce(&self) -> Option<&str> {
        self.param("cnonce")
    }

    /// `opaque`.
    pub fn opaque(&self) -> Option<&str> {
        self.param("opaque")
    }

    /// `qop` (the one chosen: `auth` or `auth-int`).
    pub fn qop(&self) -> Option<&str> {
        self.param("qop")
    }

    /// `nc` (nonce count, 8 hex digits) as sent.
    pub fn nc(&self) -> Option<&str> {
        self.param("nc")
    }

    /// `userhash=true` (RFC 7616 §3.4.4).
    pub fn userhash(&self) -> bool {
        is_true(&self.params, "userhash")
    }
}

/// Name used in the duplicate-parameter error message, for the digest parameters.
fn duplicate_message(name: &[u8]) -> &'static str {
    const KNOWN: &[(&str, &str)] = &[
        ("realm", "at most one `realm` parameter"),
        ("nonce", "at most one `nonce` parameter"),
        ("opaque", "at most one `opaque` parameter"),
        ("algorithm", "at most one `algorithm` parameter"),
        ("qop", "at most one `qop` parameter"),
        ("stale", "at most one `stale` parameter"),
        ("domain", "at most one `domain` parameter"),
        ("userhash", "at most one `userhash` parameter"),
        ("charset", "at most one `charset` parameter"),
        ("username", "at most one `username` parameter"),
        ("uri", "at most one `uri` parameter"),
        ("response", "at most one `response` parameter"),
        ("cnonce", "at most one `cnonce` parameter"),
        ("nc", "at most one `nc` parameter"),
    ];
    KNOWN
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map_or("parameter names that are not repeated", |(_, m)| m)
}

/// Characters of an unquoted parameter value: visible ASCII except `"`, `,`, `\`.
#[inline]
fn is_bare_value_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'"' && b != b',' && b != b'\\'
}

/// RFC 7235 `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`,
/// the whole of `i`.
fn is_token68(i: &[u8]) -> bool {
    let body = i.iter().take_while(|&&c| c != b'=').count();
    body > 0
        && i[..body].iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
        && i[body..].iter().all(|&c| c == b'=')
}

type Parsed = (ByteString, Params, Option<ByteString>);

fn parse_auth(src: &Src<'_>, value: &[u8], ctx: &'static str) -> Result<Parsed> {
    if value.len() > MAX_HEADER_LEN {
        return Err(Error::OutOfRange {
            offset: src.offset_of(value),
            context: ctx,
            limit: "header value of at most 8192 bytes",
        });
    }
    let i = trim_lws(value);
    let (rest, scheme) = token(i).map_err(|_| src.err(i, ctx, "authentication scheme"))?;
    let scheme_text = src.text(scheme, ctx)?;
    let is_digest = scheme.eq_ignore_ascii_case(b"Digest");
    if rest.is_empty() {
        if is_digest {
            return Err(src.err(rest, ctx, "digest parameters after `Digest`"));
        }
        return Ok((scheme_text, Params::default(), None));
    }
    let mut i = sws(rest);
    if i.len() == rest.len() {
        return Err(src.err(rest, ctx, "white space after the authentication scheme"));
    }
    if !is_digest && is_token68(i) {
        return Ok((scheme_text, Params::default(), Some(src.text(i, ctx)?)));
    }
    // Room for the usual digest credentials (username, realm, nonce, uri,
    // response, algorithm, cnonce, qop, nc, opaque) in one allocation.
    let mut out: Vec<Param> = Vec::with_capacity(10);
    loop {
        // Skip empty list elements.
        i = sws(i);
        if let Some((b',', r)) = i.split_first() {
            i = r;
            continue;
        }
        if i.is_empty() {
            break;
        }
        let (rest, name) = token(i).map_err(|_| src.err(i, ctx, "parameter name"))?;
        let after_name = sws(rest);
        let Some((b'=', rest)) = after_name.split_first() else {
            return Err(src.err(after_name, ctx, "`=` and a value after the parameter name"));
        };
        let v = sws(rest);
        let (rest, value, quoted) = if v.first() == Some(&b'"') {
            let (rest, raw) = quoted_string(v)
                .map_err(|_| src.err(v, ctx, "a quoted string with its closing quote"))?;
            if raw.len() > MAX_VALUE_LEN {
                return Err(too_long(src, v, ctx));
            }
            (rest, src.unquoted_text(raw, ctx)?, true)
        } else {
            let n = v.iter().take_while(|&&c| is_bare_value_char(c)).count();
            if n == 0 {
                return Err(src.err(v, ctx, "a parameter value (token or quoted string)"));
            }
            if n > MAX_VALUE_LEN {
                return Err(too_long(src, v, ctx));
            }
            (&v[n..], src.text(&v[..n], ctx)?, false)
        };
        if out
            .iter()
            .any(|p| p.name.as_bytes().eq_ignore_ascii_case(name))
        {
            return Err(src.err(name, ctx, duplicate_message(name)));
        }
        if out.len() == MAX_PARAMS {
            return Err(Error::OutOfRange {
                offset: src.offset_of(name),
                context: ctx,
                limit: "at most 32 parameters",
            });
        }
        out.push(Param {
            name: src.text(name, ctx)?,
            value: Some(value),
            quoted,
        });
        let j = sws(rest);
        match j.split_first() {
            None => break,
            Some((b',', r)) => i = r,
            Some(_) => {
                return Err(src.err(
                    j,
                    ctx,
                    "`,` or the end of the header after the parameter value",
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(src.err(i, ctx, "at least one parameter"));
    }
    Ok((scheme_text, Params(out), None))
}

fn too_long(src: &Src<'_>, at: &[u8], ctx: &'static str) -> Error {
    Error::OutOfRange {
        offset: src.offset_of(at),
        context: ctx,
        limit: "parameter value of at most 1024 bytes",
    }
}

fn is_token(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(is_token_char)
}

/// Writes `v` as a quoted string: `"` and `\\` and control characters (other
/// than tab) are escaped as quoted-pairs; CR and LF, which a quoted-pair cannot
/// carry, are kept only as line folding (followed by a space or tab, as a parsed
/// value has them) and otherwise written as a space, so that no value can end
/// the header line.
fn write_quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    f.write_str("\"")?;
    let b = v.as_bytes();
    let mut start = 0;
    for (k, &c) in b.iter().enumerate() {
        let fold_ok = |k: usize| match (c, b.get(k + 1)) {
            (b'\n', Some(b' ' | b'\t')) => true,
            (b'\r', Some(b'\n')) => matches!(b.get(k + 2), Some(b' ' | b'\t')),
            _ => false,
        };
        match c {
            b'"' | b'\\' | 0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f => {
                f.write_str(&v[start..k])?;
                f.write_str("\\")?;
                start = k;
            }
            b'\r' | b'\n' if !fold_ok(k) => {
                f.write_str(&v[start..k])?;
                f.write_str(" ")?;
                start = k + 1;
            }
            _ => {}
        }
    }
    f.write_str(&v[start..])?;
    f.write_str("\"")
}

fn write_auth(
    f: &mut fmt::Formatter<'_>,
    scheme: &str,
    params: &Params,
    token68: Option<&ByteString>,
    kind: Kind,
) -> fmt::Result {
    f.write_str(scheme)?;
    if let Some(t) = token68 {
        f.write_str(" ")?;
        return f.write_str(t);
    }
    for (k, p) in params.iter().enumerate() {
        f.write_str(if k == 0 { " " } else { ", " })?;
        f.write_str(&p.name)?;
        let Some(v) = p.value.as_deref() else {
            continue;
        };
        f.write_str("=")?;
        let name = &*p.name;
        let is = |set: &[&str]| set.iter().any(|n| name.eq_ignore_ascii_case(n));
        let bare = if is(ALWAYS_QUOTED) {
            false
        } else if name.eq_ignore_ascii_case("qop") {
            kind == Kind::Credentials && is_token(v)
        } else if is(NEVER_QUOTED) {
            is_token(v)
        } else {
            !p.quoted && is_token(v)
        };
        if bare {
            f.write_str(v)?;
        } else {
            write_quoted(f, v)?;
        }
    }
    Ok(())
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_auth(
            f,
            &self.scheme,
            &self.params,
            self.token68.as_ref(),
            Kind::Challenge,
        )
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_auth(
            f,
            &self.scheme,
            &self.params,
            self.token68.as_ref(),
            Kind::Credentials,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3261_challenge() {
        let c = Challenge::parse(
            "Digest realm=\"atlanta.com\",\r\n domain=\"sip:ss1.carrier.com\", qop=\"auth\",\r\n \
             nonce=\"f84f1cec41e6cbe5aea9c8e88d359\",\r\n opaque=\"\", stale=FALSE, algorithm=MD5",
        )
        .unwrap();
        assert!(c.is_digest());
        assert_eq!(c.realm(), Some("atlanta.com"));
        assert_eq!(c.domain().collect::<Vec<_>>(), ["sip:ss1.carrier.com"]);
        assert_eq!(c.nonce(), Some("f84f1cec41e6cbe5aea9c8e88d359"));
        assert_eq!(c.opaque(), Some(""));
        assert!(!c.stale());
        assert_eq!(c.algorithm(), Some("MD5"));
        assert_eq!(c.qop_options().collect::<Vec<_>>(), ["auth"]);
        assert_eq!(
            c.to_string(),
            "Digest realm=\"atlanta.com\", domain=\"sip:ss1.carrier.com\", qop=\"auth\", \
             nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=MD5"
        );
    }

    #[test]
    fn rfc4475_unknown_scheme() {
        let c = Credentials::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(&*c.scheme, "NoOneKnowsThisScheme");
        assert!(!c.is_digest());
        assert_eq!(c.param("opaque-data"), Some("here"));
        assert_eq!(c.to_string(), "NoOneKnowsThisScheme opaque-data=here");
    }

    #[test]
    fn token68_and_bare_scheme() {
        let c = Credentials::parse("Bearer eyJhbGciOi.JIUzI1N-iJ9_~+/==").unwrap();
        assert_eq!(c.token68.as_deref(), Some("eyJhbGciOi.JIUzI1N-iJ9_~+/=="));
        assert!(c.params.is_empty());
        assert_eq!(c.to_string(), "Bearer eyJhbGciOi.JIUzI1N-iJ9_~+/==");
        let c = Challenge::parse("Bearer").unwrap();
        assert_eq!(&*c.scheme, "Bearer");
        assert!(Challenge::parse("Digest").is_err());
        assert!(Challenge::parse("Digest   ").is_err());
    }

    #[test]
    fn liberal_values() {
        let c = Credentials::parse(
            "digest username=bob, uri=sip:bob@biloxi.com, nonce=abc/def==, algorithm=\"SHA-256\", nc=\"00000001\", qop=\"auth\",, ",
        )
        .unwrap();
        assert!(c.is_digest());
        assert_eq!(c.username(), Some("bob"));
        assert_eq!(c.uri(), Some("sip:bob@biloxi.com"));
        assert_eq!(c.nonce(), Some("abc/def=="));
        assert_eq!(c.algorithm(), Some("SHA-256"));
        assert_eq!(
            c.to_string(),
            "digest username=\"bob\", uri=\"sip:bob@biloxi.com\", nonce=\"abc/def==\", algorithm=SHA-256, nc=00000001, qop=auth"
        );
    }

    #[test]
    fn escapes_round_trip() {
        let c = Credentials::digest()
            .with("username", "a\"b\\c")
            .with("realm", "r")
            .with("x-thing", "has space");
        let s = c.to_string();
        assert_eq!(
            s,
            r#"Digest username="a\"b\\c", realm="r", x-thing="has space""#
        );
        let back = Credentials::parse(s).unwrap();
        assert_eq!(back.username(), Some("a\"b\\c"));
        assert_eq!(back.param("x-thing"), Some("has space"));
    }

    fn syntax_expected(e: Error) -> (usize, &'static str) {
        match e {
            Error::Syntax {
                offset, expected, ..
            } => (offset, expected),
            Error::OutOfRange { offset, limit, .. } => (offset, limit),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_are_positioned() {
        let e = Credentials::parse(r#"Digest realm="a", nonce="x", realm="b""#).unwrap_err();
        assert_eq!(syntax_expected(e), (29, "at most one `realm` parameter"));
        let e = Credentials::parse(r#"Digest NONCE="x", nonce="y""#).unwrap_err();
        assert_eq!(syntax_expected(e).1, "at most one `nonce` parameter");
        let e = Credentials::parse(r#"Digest foo=1, Foo=2"#).unwrap_err();
        assert_eq!(
            syntax_expected(e).1,
            "parameter names that are not repeated"
        );
        let e = Credentials::parse(r#"Digest realm="abc"#).unwrap_err();
        assert_eq!(
            syntax_expected(e),
            (13, "a quoted string with its closing quote")
        );
        let e = Credentials::parse(r#"Digest realm=two words"#).unwrap_err();
        assert_eq!(syntax_expected(e).0, 17);
        let e = Credentials::parse(r#"Digest realm"#).unwrap_err();
        assert_eq!(
            syntax_expected(e).1,
            "`=` and a value after the parameter name"
        );
        let e = Credentials::parse(r#"Digest realm=, nonce="x""#).unwrap_err();
        assert_eq!(
            syntax_expected(e).1,
            "a parameter value (token or quoted string)"
        );
        let e = Credentials::parse("Digestrealm=\"x\"").unwrap_err();
        assert_eq!(
            syntax_expected(e).1,
            "white space after the authentication scheme"
        );
        let e = Credentials::parse(",Digest realm=x").unwrap_err();
        assert_eq!(syntax_expected(e), (0, "authentication scheme"));
    }

    #[test]
    fn limits() {
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        let e = Credentials::parse(format!("Digest nonce=\"{long}\"")).unwrap_err();
        assert_eq!(
            syntax_expected(e),
            (13, "parameter value of at most 1024 bytes")
        );
        let e = Credentials::parse(format!("Digest nonce={long}")).unwrap_err();
        assert_eq!(
            syntax_expected(e).1,
            "parameter value of at most 1024 bytes"
        );
        let ok = "a".repeat(MAX_VALUE_LEN);
        assert!(Credentials::parse(format!("Digest nonce=\"{ok}\"")).is_ok());
        let many: Vec<String> = (0..=MAX_PARAMS).map(|k| format!("p{k}=v")).collect();
        let e = Credentials::parse(format!("Digest {}", many.join(","))).unwrap_err();
        assert_eq!(syntax_expected(e).1, "at most 32 parameters");
        let huge = format!("Digest x=\"{}\"", "b".repeat(MAX_HEADER_LEN));
        assert!(matches!(
            Credentials::parse(huge),
            Err(Error::OutOfRange { offset: 0, .. })
        ));
    }

    #[test]
    fn control_characters_never_break_the_line() {
        // Escaped control characters come back escaped; folding survives.
        let c = Credentials::parse("Digest realm=\"a\\\u{1}b\", nonce=\"x\r\n y\"").unwrap();
        assert_eq!(c.realm(), Some("a\u{1}b"));
        assert_eq!(c.nonce(), Some("x\r\n y"));
        let s = c.to_string();
        assert_eq!(s, "Digest realm=\"a\\\u{1}b\", nonce=\"x\r\n y\"");
        assert_eq!(Credentials::parse(s).unwrap(), c);
        // Built values with bare line breaks cannot inject a header.
        let c = Credentials::digest().with("username", "a\r\nX-Evil: 1\rb\n");
        assert_eq!(c.to_string(), "Digest username=\"a  X-Evil: 1 b \"");
    }

    fn pairs(p: &Params) -> Vec<(String, Option<String>)> {
        p.iter()
            .map(|p| {
                (
                    p.name.to_ascii_lowercase(),
                    p.value.as_deref().map(str::to_owned),
                )
            })
            .collect()
    }

    proptest::proptest! {
        /// Whatever parses serialises to text that parses to the same names and values.
        #[test]
        fn display_round_trips(
            scheme in proptest::sample::select(vec!["Digest", "digest", "Other"]),
            parts in proptest::collection::vec(
                ("[a-zA-Z][a-zA-Z0-9-]{0,6}", "[\\x01-\\x7f]{0,12}", proptest::bool::ANY),
                0..6,
            ),
            sep in proptest::sample::select(vec![",", " , ", ",\r\n ", ",,"]),
        ) {
            let body: Vec<String> = parts
                .iter()
                .map(|(n, v, q)| {
                    if *q {
                        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
                        format!("{n}=\"{v}\"")
                    } else {
                        format!("{n}={v}")
                    }
                })
                .collect();
            let text = format!("{scheme} {}", body.join(sep));
            let parsed = [
                Challenge::parse(text.clone()).map(|c| (c.to_string(), c.params)),
                Credentials::parse(text.clone()).map(|c| (c.to_string(), c.params)),
            ];
            for (shown, params) in parsed.into_iter().flatten() {
                let back = Credentials::parse(shown.clone()).unwrap();
                proptest::prop_assert_eq!(
                    pairs(&back.params),
                    pairs(&params),
                    "{:?} -> {:?}",
                    text,
                    shown
                );
            }
        }
    }

    #[test]
    fn non_utf8_is_an_error() {
        let e = Credentials::parse(&b"Digest username=\"\xff\""[..]).unwrap_err();
        assert!(matches!(
            e,
            Error::Syntax {
                expected: "UTF-8 text",
                ..
            }
        ));
    }
}
