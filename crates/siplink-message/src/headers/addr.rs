//! `name-addr` / `addr-spec` headers: From, To, Contact, Route, Record-Route, Path,
//! Reply-To, P-Asserted-Identity (RFC 3261 §20, §25.1).

use std::fmt;

use bytestring::ByteString;

use crate::error::{Error, Result};
use crate::grammar::{
    Params, Src, for_each_param, is_token_char, params, quoted_string, sws, trim_lws,
};
use crate::uri::Uri;

/// A URI with an optional display name and header parameters:
/// `"Alice" <sip:alice@example.com>;tag=1928301774`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped (`None` if absent).
    pub display_name: Option<ByteString>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (after the URI), e.g. `tag`, `expires`, `q`.
    pub params: Params,
}

impl NameAddr {
    /// A name-addr for `uri` without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::default(),
        }
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }

    /// The `expires` parameter (Contact), if present and a number. Values above
    /// 2^32-1 read as `u32::MAX`.
    pub fn expires(&self) -> Option<u32> {
        let v = self.params.get("expires").flatten()?;
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(v.parse::<u32>().unwrap_or(u32::MAX))
    }

    /// The `q` parameter (Contact), 0.0 to 1.0.
    pub fn q(&self) -> Option<f32> {
        let q: f32 = self.params.get("q").flatten()?.parse().ok()?;
        (0.0..=1.0).contains(&q).then_some(q)
    }

    /// The `+sip.instance` parameter (RFC 5626), without its quotes and `<>`.
    pub fn instance(&self) -> Option<&str> {
        let v = self.params.get("+sip.instance").flatten()?;
        Some(
            v.strip_prefix('<')
                .and_then(|v| v.strip_suffix('>'))
                .unwrap_or(v),
        )
    }

    /// The `reg-id` parameter (RFC 5626).
    pub fn reg_id(&self) -> Option<u32> {
        self.params.get("reg-id").flatten()?.parse().ok()
    }

    /// Parses one name-addr or addr-spec value (after comma splitting for lists).
    pub(crate) fn parse_src(src: &Src<'_>, value: &[u8], ctx: &'static str) -> Result<NameAddr> {
        let parts = split(src, value, ctx)?;
        let display_name = match parts.display {
            None => None,
            Some((raw, true)) => Some(src.unquoted_text(raw, ctx)?),
            Some((raw, false)) => Some(src.text(raw, ctx)?),
        };
        let uri = Uri::parse_src(src, parts.uri)?;
        let params = header_params(src, parts.params, ctx)?;
        Ok(NameAddr {
            display_name,
            uri,
            params,
        })
    }
}

/// The pieces of a name-addr / addr-spec value, located but not parsed.
struct Parts<'a> {
    /// Display name (raw; `true` when it was a quoted string, escapes in place).
    display: Option<(&'a [u8], bool)>,
    /// The URI text (inside `<>` for a name-addr).
    uri: &'a [u8],
    /// Everything after the URI: `*( SEMI generic-param )`.
    params: &'a [u8],
}

/// Locates the display name, URI and header parameters of one value.
fn split<'a>(src: &Src<'_>, value: &'a [u8], ctx: &'static str) -> Result<Parts<'a>> {
    let i = sws(value);
    let err = |rest: &[u8], what| src.err(rest, ctx, what);
    let (display, rest) = if i.first() == Some(&b'"') {
        let (r, raw) = quoted_string(i).map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => {
                err(e.input, "closing '\"' of the display name")
            }
            nom::Err::Incomplete(_) => err(i, "display name"),
        })?;
        let r = sws(r);
        if r.first() != Some(&b'<') {
            return Err(err(r, "'<' after the display name"));
        }
        (Some((raw, true)), r)
    } else {
        // *(token LWS) followed by '<', or an addr-spec. RFC 4475 §3.1.1.6:
        // accept a display name with no LWS before '<'.
        let run = i
            .iter()
            .take_while(|&&c| is_token_char(c) || matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        if i.get(run) != Some(&b'<') {
            return split_addr_spec(src, i, ctx);
        }
        let name = trim_lws(&i[..run]);
        ((!name.is_empty()).then_some((name, false)), &i[run..])
    };
    // rest starts with '<'
    let inner = &rest[1..];
    let close = memchr::memchr(b'>', inner).ok_or_else(|| err(inner, "'>'"))?;
    Ok(Parts {
        display,
        uri: &inner[..close],
        params: &inner[close + 1..],
    })
}

/// `addr-spec` form: the URI ends at the first `;` (what follows are header
/// parameters) and may not contain `,`, `;` or `?` (RFC 3261 §20).
fn split_addr_spec<'a>(src: &Src<'_>, i: &'a [u8], ctx: &'static str) -> Result<Parts<'a>> {
    let end = i.iter().position(|&c| c == b';').unwrap_or(i.len());
    let uri = trim_lws(&i[..end]);
    if uri.is_empty() {
        return Err(src.err(i, ctx, "a URI"));
    }
    if let Some(k) = uri.iter().position(|&c| matches!(c, b',' | b'?')) {
        return Err(src.err(
            &uri[k..],
            ctx,
            "'<' and '>' around a URI with ',', ';' or '?'",
        ));
    }
    Ok(Parts {
        display: None,
        uri,
        params: &i[end..],
    })
}

/// Parses the header parameters after the URI, which must end the value.
fn header_params(src: &Src<'_>, i: &[u8], ctx: &'static str) -> Result<Params> {
    let (r, params) = params(src, i, ctx)?;
    let r = sws(r);
    if !r.is_empty() {
        return Err(src.err(r, ctx, "';' or end of value"));
    }
    Ok(params)
}

/// The `tag` parameter of a name-addr value (what transaction matching and
/// proxies need from To and From), without parsing its URI and without
/// keeping the other parameters. The value is checked as for
/// [`NameAddr::parse_src`]'s parameters: the same faults are errors.
pub(crate) fn parse_header_tag(
    src: &Src<'_>,
    value: &[u8],
    ctx: &'static str,
) -> Result<Option<ByteString>> {
    let parts = split(src, value, ctx)?;
    let mut found = false;
    let mut tag = None;
    let r = for_each_param(src, parts.params, ctx, |p| {
        if !found && p.name.eq_ignore_ascii_case(b"tag") {
            found = true;
            tag = p.value_text(src, ctx)?;
        } else if let Some((raw, true)) = p.value {
            // Only quoted strings can fail to make text (UTF-8).
            src.unquoted_text(raw, ctx)?;
        }
        Ok(())
    })?;
    let r = sws(r);
    if !r.is_empty() {
        return Err(src.err(r, ctx, "';' or end of value"));
    }
    Ok(tag)
}

impl fmt::Display for NameAddr {
    /// Always writes the name-addr form (`"name" <uri>;params`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dn) = &self.display_name {
            f.write_str("\"")?;
            for c in dn.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The Contact header: `*` (remove all bindings) or a list of contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *`.
    Star,
    /// Contact addresses in order (empty if the header is absent).
    List(Vec<NameAddr>),
}

impl Contacts {
    /// The contacts, empty for `*`.
    pub fn as_slice(&self) -> &[NameAddr] {
        match self {
            Contacts::Star => &[],
            Contacts::List(l) => l,
        }
    }

    /// Whether this is `Contact: *`.
    pub fn is_star(&self) -> bool {
        matches!(self, Contacts::Star)
    }
}

/// Parses every element of every line of a name-addr list header.
pub(crate) fn parse_list(
    msg: &crate::Message,
    name: crate::headers::HeaderName,
    ctx: &'static str,
) -> Result<Vec<NameAddr>> {
    let mut out = Vec::new();
    msg.for_each_value(name, |src, v| {
        for part in crate::grammar::split_commas(v) {
            if part.is_empty() {
                return Err(src.err(part, ctx, "a name-addr"));
            }
            out.push(NameAddr::parse_src(src, part, ctx)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Parses the Contact header(s).
pub(crate) fn parse_contacts(msg: &crate::Message) -> Result<Contacts> {
    const CTX: &str = "Contact header";
    let mut star = false;
    let mut list = Vec::new();
    msg.for_each_value(crate::headers::HeaderName::Contact, |src, v| {
        for part in crate::grammar::split_commas(v) {
            if part == b"*" {
                star = true;
            } else if part.is_empty() {
                return Err(src.err(part, CTX, "a contact"));
            } else {
                list.push(NameAddr::parse_src(src, part, CTX)?);
            }
        }
        Ok(())
    })?;
    match (star, list.is_empty()) {
        (true, true) => Ok(Contacts::Star),
        (true, false) => Err(Error::Syntax {
            offset: 0,
            context: CTX,
            expected: "either '*' alone or a list of contacts",
        }),
        (false, _) => Ok(Contacts::List(list)),
    }
}
