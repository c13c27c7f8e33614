//! Header names and typed header views.
//!
//! Typed views are parsed from the message's header slices the first time they
//! are asked for (through the accessors on [`Message`]) and the result, success or
//! error, is cached until a line of that header is edited (clones share the
//! views; an edit of one detaches it). Two reads keep no copy: the
//! Call-ID is checked once and then read from its line, and Max-Forwards is read
//! from its line on each call. A header the message does not have needs no
//! view: its empty list (or `None`) is returned without one. Header lines that
//! hold several comma-separated values and the same header on several lines
//! read as one list.

mod addr;
pub mod auth;
mod name;
mod simple;
mod via;

pub use addr::{Contacts, NameAddr};
pub use auth::{Challenge, Credentials};
pub use name::HeaderName;
pub use simple::{CSeq, MediaType, RetryAfter};
pub use via::{MAGIC_COOKIE, Via};

use std::sync::atomic::Ordering;

use bytestring::ByteString;

use crate::Message;
use crate::error::{Error, Result};
use crate::uri::Uri;

/// Returns the cached value of `$field`, computing it with `$init` on first use.
macro_rules! cached {
    ($self:ident . $field:ident, $init:expr) => {
        $self
            .cache()
            .$field
            .get_or_init(|| $init)
            .as_ref()
            .map_err(Clone::clone)
    };
    (cold $self:ident . $field:ident, $init:expr) => {
        $self
            .cold()
            .$field
            .get_or_init(|| $init)
            .as_ref()
            .map_err(Clone::clone)
    };
}

impl Message {
    /// The Request-URI, parsed (requests only).
    pub fn request_uri(&self) -> Result<&Uri> {
        cached!(self.request_uri, {
            match self.request_uri_bytes() {
                Some(b) => {
                    let src = crate::grammar::Src {
                        bytes: b,
                        base: self.offset_of(b),
                    };
                    Uri::parse_src(&src, b).map(Box::new)
                }
                None => Err(Error::MissingHeader("Request-URI (not a request)")),
            }
        })
        .map(|u| &**u)
    }

    /// Every Via value, top first.
    pub fn via(&self) -> Result<&[Via]> {
        cached!(self.via, {
            // The top value, if already parsed, is not parsed again.
            let mut top = self
                .cache()
                .top_via
                .get()
                .and_then(|v| v.as_ref().ok())
                .cloned();
            let mut out = Vec::new();
            self.for_each_value(HeaderName::Via, |src, v| {
                for part in crate::grammar::split_commas(v) {
                    match top.take() {
                        Some(t) if out.is_empty() => out.push(t),
                        _ => out.push(Via::parse_src(src, part)?),
                    }
                }
                Ok(())
            })
            .map(|_| out)
        })
        .map(Vec::as_slice)
    }

    /// The top Via value. Only the first value is parsed (a proxy reads the top
    /// Via of every message; the others only when it forwards a response), unless
    /// [`Message::via`] has already parsed them all.
    pub fn top_via(&self) -> Result<&Via> {
        if let Some(Ok(all)) = self.cache().via.get() {
            return all.first().ok_or(Error::MissingHeader("Via"));
        }
        cached!(self.top_via, {
            self.first_value(HeaderName::Via, |src, v| {
                // The common form stops at the comma before a second value.
                if let Some((via, _)) = Via::parse_common(src, v) {
                    return Ok(via);
                }
                let first = crate::grammar::split_commas(v).next().unwrap_or_default();
                Via::parse_src(src, first)
            })?
            .ok_or(Error::MissingHeader("Via"))
        })
    }

    /// The From header.
    pub fn from(&self) -> Result<&NameAddr> {
        cached!(cold self.from, {
            self.first_value(HeaderName::From, |src, v| {
                NameAddr::parse_src(src, v, "From header").map(Box::new)
            })?
            .ok_or(Error::MissingHeader("From"))
        })
        .map(|n| &**n)
    }

    /// The To header.
    pub fn to(&self) -> Result<&NameAddr> {
        cached!(cold self.to, {
            self.first_value(HeaderName::To, |src, v| {
                NameAddr::parse_src(src, v, "To header").map(Box::new)
            })?
            .ok_or(Error::MissingHeader("To"))
        })
        .map(|n| &**n)
    }

    /// The To tag. Only the header parameters are parsed, not the URI (a proxy
    /// or transaction layer needs the tag of every message, the URI rarely),
    /// unless [`Message::to`] has already parsed the whole header.
    pub fn to_tag(&self) -> Result<Option<&str>> {
        self.name_addr_tag(HeaderName::To, "To header")
    }

    /// The From tag, parsed like [`Message::to_tag`].
    pub fn from_tag(&self) -> Result<Option<&str>> {
        self.name_addr_tag(HeaderName::From, "From header")
    }

    fn name_addr_tag(&self, name: HeaderName, ctx: &'static str) -> Result<Option<&str>> {
        let cache = self.cache();
        let tag = match name {
            HeaderName::To => &cache.to_tag,
            _ => &cache.from_tag,
        };
        if let Some(cold) = cache.cold.get() {
            let full = if name == HeaderName::To {
                &cold.to
            } else {
                &cold.from
            };
            if let Some(Ok(na)) = full.get() {
                return Ok(na.tag());
            }
        }
        tag.get_or_init(|| {
            self.first_value(name, |src, v| addr::parse_header_tag(src, v, ctx))?
                .ok_or(Error::MissingHeader(if name == HeaderName::To {
                    "To"
                } else {
                    "From"
                }))
        })
        .as_ref()
        .map(Option::as_deref)
        .map_err(Clone::clone)
    }

    /// The Contact header(s): `*` or the list of contacts (empty when absent).
    pub fn contact(&self) -> Result<&Contacts> {
        static NONE: Contacts = Contacts::List(Vec::new());
        if !self.has_header(HeaderName::Contact) {
            return Ok(&NONE);
        }
        cached!(cold self.contact, addr::parse_contacts(self))
    }

    /// Route values in order.
    pub fn route(&self) -> Result<&[NameAddr]> {
        // Most responses and many requests have none: no view to build.
        if !self.has_header(HeaderName::Route) {
            return Ok(&[]);
        }
        cached!(
            self.route,
            addr::parse_list(self, HeaderName::Route, "Route header")
        )
        .map(Vec::as_slice)
    }

    /// Record-Route values in order.
    pub fn record_route(&self) -> Result<&[NameAddr]> {
        if !self.has_header(HeaderName::RecordRoute) {
            return Ok(&[]);
        }
        cached!(cold self.record_route,
            addr::parse_list(self, HeaderName::RecordRoute, "Record-Route header")
        )
        .map(Vec::as_slice)
    }

    /// Path values in order (RFC 3327).
    pub fn path(&self) -> Result<&[NameAddr]> {
        if !self.has_header(HeaderName::Path) {
            return Ok(&[]);
        }
        cached!(cold self.path,
            addr::parse_list(self, HeaderName::Path, "Path header")
        )
        .map(Vec::as_slice)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str> {
        let Some(value) = self.header(HeaderName::CallId) else {
            return Err(Error::MissingHeader("Call-ID"));
        };
        if !self.call_id_checked.load(Ordering::Relaxed) {
            // A faulty Call-ID is checked again on every call, and gives the
            // same error each time.
            self.first_value(HeaderName::CallId, simple::check_call_id)?;
            self.call_id_checked.store(true, Ordering::Relaxed);
        }
        // Checked: word characters only, which are ASCII.
        std::str::from_utf8(value)
            .map_err(|_| Error::syntax(self.offset_of(value), "Call-ID header", "UTF-8 text"))
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<&CSeq> {
        cached!(self.cseq, {
            self.first_value(HeaderName::CSeq, CSeq::parse_src)?
                .ok_or(Error::MissingHeader("CSeq"))
        })
    }

    /// Max-Forwards (0 to 255), `None` when absent. Read from its line on each
    /// call: a number of at most three digits costs less to read than a cached
    /// view costs to set up.
    pub fn max_forwards(&self) -> Result<Option<u8>> {
        self.first_value(HeaderName::MaxForwards, |src, v| {
            simple::parse_number(src, v, 255, "Max-Forwards header", "0 to 255").map(|n| n as u8)
        })
    }

    /// Expires in seconds, `None` when absent.
    pub fn expires(&self) -> Result<Option<u32>> {
        if !self.has_header(HeaderName::Expires) {
            return Ok(None);
        }
        cached!(cold self.expires, {
            self.first_value(HeaderName::Expires, |src, v| {
                simple::parse_number(src, v, u64::from(u32::MAX), "Expires header", "0 to 2^32-1")
                    .map(|n| n as u32)
            })
        })
        .copied()
    }

    /// Min-Expires in seconds, `None` when absent.
    pub fn min_expires(&self) -> Result<Option<u32>> {
        if !self.has_header(HeaderName::MinExpires) {
            return Ok(None);
        }
        cached!(cold self.min_expires, {
            self.first_value(HeaderName::MinExpires, |src, v| {
                simple::parse_number(
                    src,
                    v,
                    u64::from(u32::MAX),
                    "Min-Expires header",
                    "0 to 2^32-1",
                )
                .map(|n| n as u32)
            })
        })
        .copied()
    }

    /// Content-Type, `None` when absent.
    pub fn content_type(&self) -> Result<Option<&MediaType>> {
        if !self.has_header(HeaderName::ContentType) {
            return Ok(None);
        }
        cached!(cold self.content_type, {
            self.first_value(HeaderName::ContentType, MediaType::parse_src)
        })
        .map(Option::as_ref)
    }

    /// WWW-Authenticate challenges (one per header line).
    pub fn www_authenticate(&self) -> Result<&[Challenge]> {
        if !self.has_header(HeaderName::WwwAuthenticate) {
            return Ok(&[]);
        }
        cached!(cold self.www_authenticate, {
            self.for_each_value(HeaderName::WwwAuthenticate, Challenge::parse_src)
        })
        .map(Vec::as_slice)
    }

    /// Proxy-Authenticate challenges (one per header line).
    pub fn proxy_authenticate(&self) -> Result<&[Challenge]> {
        if !self.has_header(HeaderName::ProxyAuthenticate) {
            return Ok(&[]);
        }
        cached!(cold self.proxy_authenticate, {
            self.for_each_value(HeaderName::ProxyAuthenticate, Challenge::parse_src)
        })
        .map(Vec::as_slice)
    }

    /// Authorization credentials (one per header line).
    pub fn authorization(&self) -> Result<&[Credentials]> {
        if !self.has_header(HeaderName::Authorization) {
            return Ok(&[]);
        }
        cached!(cold self.authorization, {
            self.for_each_value(HeaderName::Authorization, Credentials::parse_src)
        })
        .map(Vec::as_slice)
    }

    /// Proxy-Authorization credentials (one per header line).
    pub fn proxy_authorization(&self) -> Result<&[Credentials]> {
        if !self.has_header(HeaderName::ProxyAuthorization) {
            return Ok(&[]);
        }
        cached!(cold self.proxy_authorization, {
            self.for_each_value(HeaderName::ProxyAuthorization, Credentials::parse_src)
        })
        .map(Vec::as_slice)
    }

    /// Allow: the methods listed.
    pub fn allow(&self) -> Result<&[ByteString]> {
        if !self.has_header(HeaderName::Allow) {
            return Ok(&[]);
        }
        cached!(cold self.allow,
            simple::parse_tokens(self, HeaderName::Allow, "Allow header")
        )
        .map(Vec::as_slice)
    }

    /// Supported: option tags.
    pub fn supported(&self) -> Result<&[ByteString]> {
        if !self.has_header(HeaderName::Supported) {
            return Ok(&[]);
        }
        cached!(cold self.supported,
            simple::parse_tokens(self, HeaderName::Supported, "Supported header")
        )
        .map(Vec::as_slice)
    }

    /// Require: option tags.
    pub fn require(&self) -> Result<&[ByteString]> {
        if !self.has_header(HeaderName::Require) {
            return Ok(&[]);
        }
        cached!(cold self.require,
            simple::parse_tokens(self, HeaderName::Require, "Require header")
        )
        .map(Vec::as_slice)
    }

    /// Proxy-Require: option tags.
    pub fn proxy_require(&self) -> Result<&[ByteString]> {
        if !self.has_header(HeaderName::ProxyRequire) {
            return Ok(&[]);
        }
        cached!(cold self.proxy_require,
            simple::parse_tokens(self, HeaderName::ProxyRequire, "Proxy-Require header")
        )
        .map(Vec::as_slice)
    }

    /// Unsupported: option tags.
    pub fn unsupported(&self) -> Result<&[ByteString]> {
        if !self.has_header(HeaderName::Unsupported) {
            return Ok(&[]);
        }
        cached!(cold self.unsupported,
            simple::parse_tokens(self, HeaderName::Unsupported, "Unsupported header")
        )
        .map(Vec::as_slice)
    }

    /// Retry-After, `None` when absent.
    pub fn retry_after(&self) -> Result<Option<&RetryAfter>> {
        if !self.has_header(HeaderName::RetryAfter) {
            return Ok(None);
        }
        cached!(cold self.retry_after, {
            self.first_value(HeaderName::RetryAfter, RetryAfter::parse_src)
        })
        .map(Option::as_ref)
    }

    /// User-Agent, as raw text.
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.header(HeaderName::UserAgent)
    }

    /// Server, as raw text.
    pub fn server(&self) -> Option<&[u8]> {
        self.header(HeaderName::Server)
    }

    /// Checks the Date header, if any (RFC 1123 date in GMT).
    pub fn check_date(&self) -> Result<()> {
        self.for_each_value(HeaderName::Date, simple::check_date)
            .map(|_| ())
    }
}
