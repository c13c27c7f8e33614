//! Validation of parsed messages: the checks an element runs before acting on a
//! message, each mapped to the status code it must answer with.
//!
//! Parsing only indexes a message; this step reads the typed headers an element
//! relies on and enforces RFC 3261 §8.2 and §16.3 rules. A request that fails gets
//! the [`Rejection`]'s status and reason; a response that fails is dropped.

use std::fmt;

use bytestring::ByteString;

use crate::Message;
use crate::error::Error;
use crate::headers::HeaderName;
use crate::uri::Uri;

/// Why a message is refused, and the status code to answer a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The status code (400, 416, 420, 483, 505...).
    pub status: u16,
    /// A reason phrase that names the fault.
    pub reason: String,
    /// For 420 Bad Extension: the option tags to list in `Unsupported`.
    pub unsupported: Vec<ByteString>,
}

impl Rejection {
    fn new(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
            unsupported: Vec::new(),
        }
    }
}

impl From<Error> for Rejection {
    fn from(e: Error) -> Rejection {
        Rejection::new(e.status_code(), e.to_string())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Which checks of RFC 3261 §8.2.2 / §16.3 apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// A user agent server or registrar: `Require` is checked (420), and
    /// Max-Forwards 0 is fine.
    #[default]
    Uas,
    /// A proxy: `Proxy-Require` is checked (420) and Max-Forwards 0 is 483.
    Proxy,
    /// Syntax and consistency only (what `siplint` checks).
    Syntax,
}

/// Options for [`Message::validate_with`].
#[derive(Debug, Clone, Default)]
pub struct ValidationOptions {
    /// The element's role.
    pub role: Role,
    /// Option tags this element supports (for the Require / Proxy-Require check).
    pub supported: Vec<String>,
}

/// Headers that may appear at most once (RFC 3261 §7.3.1, §20).
const SINGLE: &[HeaderName] = &[
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::From,
    HeaderName::To,
    HeaderName::MaxForwards,
    HeaderName::ContentType,
    HeaderName::Expires,
    HeaderName::MinExpires,
    HeaderName::Date,
    HeaderName::RetryAfter,
];

/// Headers every request and response carries (RFC 3261 §8.1.1).
const MANDATORY: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
];

impl Message {
    /// Validates with the default options ([`Role::Uas`], no extensions).
    pub fn validate(&self) -> Result<(), Rejection> {
        self.validate_with(&ValidationOptions::default())
    }

    /// Validates a message: version, mandatory and single-valued headers, the
    /// grammar of every header an element reads, CSeq method, Max-Forwards range,
    /// Request-URI scheme and the extension checks of `opts.role`.
    ///
    /// ```
    /// use siplink_message::Message;
    /// let msg = Message::parse(&b"OPTIONS sip:a@example.com SIP/2.0\r\n\
    /// Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\nTo: <sip:a@example.com>\r\n\
    /// From: <sip:b@example.com>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
    /// Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"[..]).unwrap();
    /// let r = msg.validate().unwrap_err();
    /// assert_eq!(r.status, 400);
    /// assert!(r.reason.contains("CSeq method"));
    /// ```
    pub fn validate_with(&self, opts: &ValidationOptions) -> Result<(), Rejection> {
        if !self.version().eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(Rejection::new(505, "Version Not Supported (only SIP/2.0)"));
        }
        let counts = self.header_counts();
        for &h in MANDATORY {
            if counts[h as usize] == 0 {
                return Err(Rejection::new(400, format!("Missing {h} header")));
            }
        }
        for &h in SINGLE {
            if counts[h as usize] > 1 {
                return Err(Rejection::new(400, format!("More than one {h} header")));
            }
        }
        // Grammar of everything an element reads.
        self.via()?;
        self.from()?;
        self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        let max_forwards = self.max_forwards()?;
        self.contact()?;
        self.route()?;
        self.record_route()?;
        self.path()?;
        self.expires()?;
        self.min_expires()?;
        self.content_type()?;
        self.supported()?;
        self.allow()?;
        self.unsupported()?;
        self.retry_after()?;
        self.authorization()?;
        self.proxy_authorization()?;
        self.www_authenticate()?;
        self.proxy_authenticate()?;
        self.check_date()?;
        let require = self.require()?;
        let proxy_require = self.proxy_require()?;

        let Some(method) = self.method() else {
            return Ok(());
        };
        if cseq.method != *method {
            return Err(Rejection::new(
                400,
                format!(
                    "CSeq method {} does not match the request method {}",
                    cseq.method, method
                ),
            ));
        }
        let uri = self.request_uri()?;
        match uri {
            Uri::Sip(sip) => {
                if !sip.headers().is_empty() {
                    return Err(Rejection::new(
                        400,
                        "Request-URI must not carry headers (?...)",
                    ));
                }
            }
            Uri::Tel(_) => {}
            Uri::Absolute(_) => {
                return Err(Rejection::new(
                    416,
                    format!("Unsupported URI Scheme {}", uri.scheme()),
                ));
            }
        }
        let (tags, check) = match opts.role {
            Role::Uas => (
                require,
                !matches!(method, crate::Method::Ack | crate::Method::Cancel),
            ),
            Role::Proxy => (proxy_require, true),
            Role::Syntax => (require, false),
        };
        if check {
            let unsupported: Vec<ByteString> = tags
                .iter()
                .filter(|t| !opts.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .cloned()
                .collect();
            if !unsupported.is_empty() {
                let mut r =
                    Rejection::new(420, format!("Bad Extension: {}", unsupported.join(", ")));
                r.unsupported = unsupported;
                return Err(r);
            }
        }
        if opts.role == Role::Proxy && max_forwards == Some(0) {
            return Err(Rejection::new(483, "Too Many Hops"));
        }
        Ok(())
    }
}
