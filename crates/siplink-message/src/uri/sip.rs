//! `sip:` and `sips:` URIs (RFC 3261 §19.1, §25.1).

use std::borrow::Cow;
use std::fmt;

use bytestring::ByteString;

use super::chars::{
    HEADER, PARAM, PASSWORD, USER, decoded_eq_ignore_case, escape, escaped_eq, scan, unescape,
    unescape_str,
};
use super::host::{Host, parse_host};
use super::{CONTEXT, Uri};
use crate::error::{Error, Result};
use crate::grammar::{Param, Params, parse_decimal};

/// A `sip:` or `sips:` URI.
///
/// Every component is a zero-copy view of the original text and is kept exactly as
/// received (escapes in place); the `*_unescaped` and parameter helpers decode
/// `%HH` escapes once. Build one in code with [`SipUri::builder`].
///
/// Derived equality is structural (same text); use [`SipUri::equivalent`] for the
/// RFC 3261 §19.1.4 comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    raw: ByteString,
    secure: bool,
    user: Option<ByteString>,
    password: Option<ByteString>,
    host: Host,
    port: Option<u16>,
    params: Params,
    headers: Params,
}

/// URI parameters that must appear in both URIs or in neither to match
/// (RFC 3261 §19.1.4; `transport` per the section's examples).
const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];

impl SipUri {
    /// Parses a `sip:` or `sips:` URI; any other scheme is an error.
    pub fn parse(input: impl Into<bytes::Bytes>) -> Result<SipUri> {
        match Uri::parse(input)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(Error::syntax(0, CONTEXT, "sip: or sips: URI")),
        }
    }

    /// Starts building a `sip:` URI for `host` (see [`SipUriBuilder`]).
    pub fn builder(host: Host) -> SipUriBuilder {
        SipUriBuilder {
            secure: false,
            user: None,
            password: None,
            host,
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A builder holding this URI's components (escapes kept as received), to
    /// derive a modified URI.
    pub fn to_builder(&self) -> SipUriBuilder {
        let own = |b: &ByteString| String::from(&**b);
        SipUriBuilder {
            secure: self.secure,
            user: self.user.as_ref().map(own),
            password: self.password.as_ref().map(own),
            host: self.host.clone(),
            port: self.port,
            params: self
                .params
                .iter()
                .map(|p| (own(&p.name), p.value.as_ref().map(own)))
                .collect(),
            headers: self
                .headers
                .iter()
                .map(|h| (own(&h.name), h.value.as_ref().map(own).unwrap_or_default()))
                .collect(),
        }
    }

    /// The URI text exactly as received.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `true` for `sips:`.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// `"sip"` or `"sips"`.
    pub fn scheme(&self) -> &'static str {
        if self.secure { "sips" } else { "sip" }
    }

    /// The user part as received (escapes in place), if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The user part with `%HH` escapes decoded once. `%00` gives a NUL byte; nothing
    /// is truncated. Borrows when there is no escape.
    pub fn user_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.user.as_ref().map(|u| unescape(u.as_bytes()))
    }

    /// The password as received, if any (`sip:user:pw@host`; deprecated by RFC 3261).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The password with `%HH` escapes decoded once.
    pub fn password_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.password.as_ref().map(|p| unescape(p.as_bytes()))
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port, or the scheme's default (5060 for `sip:`, 5061 for `sips:`).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 5061 } else { 5060 })
    }

    /// The `uri-parameters`, names and values as received (escapes in place).
    /// [`Params::get`] matches raw names; [`SipUri::param`] also decodes escapes.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The first parameter whose name, after decoding escapes, is `name`
    /// (case-insensitive): `Some(None)` when it has no value, `Some(Some(v))` with the
    /// value decoded once, `None` when absent. `;%6C%72` is found as `lr`.
    pub fn param(&self, name: &str) -> Option<Option<Cow<'_, str>>> {
        find_param(&self.params, name).map(|p| p.value.as_deref().map(unescape_str))
    }

    /// Whether a parameter named `name` is present (escapes decoded, case-insensitive).
    pub fn has_param(&self, name: &str) -> bool {
        find_param(&self.params, name).is_some()
    }

    fn param_value(&self, name: &str) -> Option<Cow<'_, str>> {
        self.param(name).flatten()
    }

    /// The `transport` parameter value (e.g. `udp`, `tcp`, `tls`, `ws`).
    pub fn transport(&self) -> Option<Cow<'_, str>> {
        self.param_value("transport")
    }

    /// The `maddr` parameter value.
    pub fn maddr(&self) -> Option<Cow<'_, str>> {
        self.param_value("maddr")
    }

    /// The `ttl` parameter, if present and a number in 0..=255.
    pub fn ttl(&self) -> Option<u8> {
        let v = self.param_value("ttl")?;
        parse_decimal(v.as_bytes(), 255).and_then(|n| u8::try_from(n).ok())
    }

    /// The `method` parameter value.
    pub fn method(&self) -> Option<Cow<'_, str>> {
        self.param_value("method")
    }

    /// The `user` parameter value (`phone`, `ip`, `dialstring`...).
    pub fn user_param(&self) -> Option<Cow<'_, str>> {
        self.param_value("user")
    }

    /// Whether the `lr` (loose routing) parameter is present.
    pub fn lr(&self) -> bool {
        self.has_param("lr")
    }

    /// The `?headers` component (`hname=hvalue` pairs), as received. Values are
    /// always `Some` (possibly empty).
    pub fn headers(&self) -> &Params {
        &self.headers
    }

    /// Whether the URI has a `?headers` component.
    pub fn has_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// The value of the first header named `name` (escapes decoded, name
    /// case-insensitive), decoded once.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        find_param(&self.headers, name)
            .map(|h| unescape_str(h.value.as_deref().unwrap_or_default()))
    }

    /// RFC 3261 §19.1.4 comparison: SIP never equals SIPS; user and password are
    /// case-sensitive, host case-insensitive, non-reserved escapes equal their
    /// characters; ports must both be absent or equal; `user`, `ttl`, `method`,
    /// `maddr` and `transport` parameters must be in both or neither, other
    /// parameters are compared only when in both; headers must all match.
    pub fn equivalent(&self, other: &SipUri) -> bool {
        if self.raw == other.raw {
            return true;
        }
        self.secure == other.secure
            && opt_eq(&self.user, &other.user, false)
            && opt_eq(&self.password, &other.password, false)
            && self.host.equivalent(&other.host)
            && self.port == other.port
            && params_equivalent(&self.params, &other.params)
            && headers_equivalent(&self.headers, &other.headers)
    }
}

fn opt_eq(a: &Option<ByteString>, b: &Option<ByteString>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => escaped_eq(a.as_bytes(), b.as_bytes(), ignore_case),
        _ => false,
    }
}

/// The first parameter whose decoded name is the plain text `name`, ignoring case.
pub(crate) fn find_param<'p>(params: &'p Params, name: &str) -> Option<&'p Param> {
    params
        .iter()
        .find(|p| decoded_eq_ignore_case(p.name.as_bytes(), name.as_bytes()))
}

/// Each parameter of `a` that has a namesake in `b` must equal one of them.
fn shared_params_match(a: &Params, b: &Params) -> bool {
    a.iter().all(|p| {
        let mut namesakes = b
            .iter()
            .filter(|q| escaped_eq(p.name.as_bytes(), q.name.as_bytes(), true))
            .peekable();
        namesakes.peek().is_none() || namesakes.any(|q| opt_eq(&p.value, &q.value, true))
    })
}

fn params_equivalent(a: &Params, b: &Params) -> bool {
    for name in MUST_MATCH {
        if find_param(a, name).is_some() != find_param(b, name).is_some() {
            return false;
        }
    }
    // Checked both ways so that repeated names stay symmetric and reflexive.
    shared_params_match(a, b) && shared_params_match(b, a)
}

fn headers_equivalent(a: &Params, b: &Params) -> bool {
    let contains = |set: &Params, h: &Param| {
        set.iter().any(|g| {
            escaped_eq(g.name.as_bytes(), h.name.as_bytes(), true)
                && opt_eq(&g.value, &h.value, true)
        })
    };
    a.len() == b.len() && a.iter().all(|h| contains(b, h)) && b.iter().all(|h| contains(a, h))
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for SipUri {
    type Err = Error;
    fn from_str(s: &str) -> Result<SipUri> {
        SipUri::parse(bytes::Bytes::copy_from_slice(s.as_bytes()))
    }
}

use crate::grammar::intern;

/// Parses what follows `sip:`/`sips:` (at `start`) to the end of `raw` (all ASCII).
pub(crate) fn parse(raw: ByteString, base: usize, secure: bool, start: usize) -> Result<SipUri> {
    let s = raw.as_bytes();
    let err = |pos: usize, expected| Error::syntax(base + pos, CONTEXT, expected);
    let bad_escape = |pos: usize| err(pos, "escape sequence %HH");
    let sub = |a: usize, b: usize| raw.slice_ref(&raw[a..b]);
    let mut k = start;

    // userinfo: user, valid URIs have at most one '@', which ends it.
    let (mut user, mut password) = (None, None);
    if let Some(at) = memchr::memchr(b'@', &s[start..]).map(|p| p + start) {
        let ue = scan(s, start, &USER).map_err(bad_escape)?;
        if ue == start {
            return Err(err(start, "user"));
        }
        user = Some(sub(start, ue));
        k = ue;
        if s.get(k) == Some(&b':') {
            let pe = scan(s, k + 1, &PASSWORD).map_err(bad_escape)?;
            password = Some(sub(k + 1, pe));
            k = pe;
        }
        if k != at {
            return Err(err(k, "user info character or '@'"));
        }
        k = at + 1;
    }

    let (host, mut k) = parse_host(&raw, base, k)?;

    let mut port = None;
    if s.get(k) == Some(&b':') {
        let ds = k + 1;
        let de = ds + s[ds..].iter().take_while(|c| c.is_ascii_digit()).count();
        if de == ds {
            return Err(err(ds, "port number"));
        }
        let v = parse_decimal(&s[ds..de], u64::from(u16::MAX)).ok_or(Error::OutOfRange {
            offset: base + ds,
            context: "URI port",
            limit: "0-65535",
        })?;
        port = Some(v as u16);
        k = de;
    }

    let mut params = Vec::new();
    while s.get(k) == Some(&b';') {
        let ns = k + 1;
        let ne = scan(s, ns, &PARAM).map_err(bad_escape)?;
        if ne == ns {
            return Err(err(ns, "URI parameter name"));
        }
        let mut value = None;
        k = ne;
        if s.get(ne) == Some(&b'=') {
            let ve = scan(s, ne + 1, &PARAM).map_err(bad_escape)?;
            if ve == ne + 1 {
                return Err(err(ve, "URI parameter value"));
            }
            value = Some(intern(&s[ne + 1..ve]).unwrap_or_else(|| sub(ne + 1, ve)));
            k = ve;
        }
        params.push(Param {
            name: intern(&s[ns..ne]).unwrap_or_else(|| sub(ns, ne)),
            value,
            quoted: false,
        });
    }

    let mut headers = Vec::new();
    if s.get(k) == Some(&b'?') {
        loop {
            let ns = k + 1;
            let ne = scan(s, ns, &HEADER).map_err(bad_escape)?;
            if ne == ns {
                return Err(err(ns, "URI header name"));
            }
            if s.get(ne) != Some(&b'=') {
                return Err(err(ne, "'=' after URI header name"));
            }
            let ve = scan(s, ne + 1, &HEADER).map_err(bad_escape)?;
            headers.push(Param {
                name: sub(ns, ne),
                value: Some(sub(ne + 1, ve)),
                quoted: false,
            });
            k = ve;
            if s.get(k) != Some(&b'&') {
                break;
            }
        }
        if k != s.len() {
            return Err(err(k, "URI header character, '&' or end of URI"));
        }
    }
    if k != s.len() {
        return Err(err(k, "port, ';' parameter, '?' headers or end of URI"));
    }

    Ok(SipUri {
        raw,
        secure,
        user,
        password,
        host,
        port,
        params: Params(params),
        headers: Params(headers),
    })
}

/// Builds a [`SipUri`] from parts, escaping what must be escaped.
///
/// Setters taking text (`user`, `password`, `param`, `header`...) take it
/// *unescaped* and escape every character the grammar does not allow in that
/// component. [`SipUri::to_builder`] keeps already-escaped parts as they were.
/// [`SipUriBuilder::build`] renders the text and parses it back, so the result
/// is exactly what a peer will parse.
///
/// ```
/// use siplink_message::uri::{Host, SipUri};
/// let uri = SipUri::builder(Host::parse("example.com").unwrap())
///     .user("alice smith")
///     .port(5080)
///     .transport("tcp")
///     .lr()
///     .build()
///     .unwrap();
/// assert_eq!(uri.to_string(), "sip:alice%20smith@example.com:5080;transport=tcp;lr");
/// ```
#[derive(Debug, Clone)]
pub struct SipUriBuilder {
    secure: bool,
    user: Option<String>,
    password: Option<String>,
    host: Host,
    port: Option<u16>,
    params: Vec<(String, Option<String>)>,
    headers: Vec<(String, String)>,
}

impl SipUriBuilder {
    /// `sips:` when `true`, `sip:` otherwise.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets the user part (unescaped; must not be empty).
    pub fn user(mut self, user: impl AsRef<[u8]>) -> Self {
        self.user = Some(escape(user.as_ref(), &USER));
        self
    }

    /// Removes the user part (and the password).
    pub fn without_user(mut self) -> Self {
        self.user = None;
        self.password = None;
        self
    }

    /// Sets the password (unescaped); needs a user.
    pub fn password(mut self, password: impl AsRef<[u8]>) -> Self {
        self.password = Some(escape(password.as_ref(), &PASSWORD));
        self
    }

    /// Removes the password.
    pub fn without_password(mut self) -> Self {
        self.password = None;
        self
    }

    /// Sets the host.
    pub fn host(mut self, host: Host) -> Self {
        self.host = host;
        self
    }

    /// Sets (`Some`/a number) or removes (`None`) the port.
    pub fn port(mut self, port: impl Into<Option<u16>>) -> Self {
        self.port = port.into();
        self
    }

    /// Sets a URI parameter (unescaped name and value; a value must not be empty).
    /// Replaces the first parameter of the same name (case-insensitive), else
    /// appends.
    pub fn param(mut self, name: &str, value: Option<&str>) -> Self {
        let value = value.map(|v| escape(v.as_bytes(), &PARAM));
        match self
            .params
            .iter_mut()
            .find(|(n, _)| decoded_eq_ignore_case(n.as_bytes(), name.as_bytes()))
        {
            Some(slot) => slot.1 = value,
            None => self.params.push((escape(name.as_bytes(), &PARAM), value)),
        }
        self
    }

    /// Removes every parameter named `name` (escapes decoded, case-insensitive).
    pub fn remove_param(mut self, name: &str) -> Self {
        self.params
            .retain(|(n, _)| !decoded_eq_ignore_case(n.as_bytes(), name.as_bytes()));
        self
    }

    /// Removes all parameters.
    pub fn clear_params(mut self) -> Self {
        self.params.clear();
        self
    }

    /// Sets `transport=`.
    pub fn transport(self, transport: &str) -> Self {
        self.param("transport", Some(transport))
    }

    /// Sets `maddr=`.
    pub fn maddr(self, maddr: &str) -> Self {
        self.param("maddr", Some(maddr))
    }

    /// Sets `ttl=`.
    pub fn ttl(self, ttl: u8) -> Self {
        self.param("ttl", Some(&ttl.to_string()))
    }

    /// Sets `method=`.
    pub fn method(self, method: &str) -> Self {
        self.param("method", Some(method))
    }

    /// Sets `user=` (e.g. `phone`).
    pub fn user_param(self, user: &str) -> Self {
        self.param("user", Some(user))
    }

    /// Adds `lr`.
    pub fn lr(self) -> Self {
        self.param("lr", None)
    }

    /// Appends a `?hname=hvalue` header (unescaped name and value).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            escape(name.as_bytes(), &HEADER),
            escape(value.as_bytes(), &HEADER),
        ));
        self
    }

    /// Removes all headers.
    pub fn clear_headers(mut self) -> Self {
        self.headers.clear();
        self
    }

    /// Renders and parses the URI. Fails (with offsets into the rendered text)
    /// on an empty user, a password without user, an empty parameter name or value,
    /// an empty header name, or a [`Host`] that is not valid.
    pub fn build(self) -> Result<SipUri> {
        use std::fmt::Write;
        let mut s = String::with_capacity(64);
        s.push_str(if self.secure { "sips:" } else { "sip:" });
        if let Some(u) = &self.user {
            s.push_str(u);
        }
        if let Some(p) = &self.password {
            s.push(':');
            s.push_str(p);
        }
        if self.user.is_some() || self.password.is_some() {
            s.push('@');
        }
        let _ = write!(s, "{}", self.host);
        if let Some(p) = self.port {
            let _ = write!(s, ":{p}");
        }
        for (n, v) in &self.params {
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            s.push(if i == 0 { '?' } else { '&' });
            s.push_str(n);
            s.push('=');
            s.push_str(v);
        }
        SipUri::parse(s)
    }
}
