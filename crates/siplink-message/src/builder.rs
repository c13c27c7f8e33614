//! Building requests and responses.

use std::fmt::{Display, Write as _};

use bytes::{BufMut, Bytes, BytesMut};

use crate::Message;
use crate::error::{Error, Result};
use crate::headers::HeaderName;
use crate::method::{Method, reason_phrase};

/// Builds a request or response and parses it into a [`Message`].
///
/// Content-Length is written by [`MessageBuilder::build`] from the body; header
/// values may not contain line breaks (an error, never header injection).
///
/// ```
/// use siplink_message::{HeaderName, MessageBuilder, Method};
///
/// let req = MessageBuilder::request(Method::Register, "sip:registrar.example.com")
///     .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776asdhds;rport")
///     .header(HeaderName::MaxForwards, 70)
///     .header(HeaderName::To, "<sip:1001@example.com>")
///     .header(HeaderName::From, "<sip:1001@example.com>;tag=456248")
///     .header(HeaderName::CallId, "843817637684230@998sdasdh09")
///     .header(HeaderName::CSeq, "1826 REGISTER")
///     .header(HeaderName::Contact, "<sip:1001@192.0.2.4>")
///     .header(HeaderName::Expires, 3600)
///     .build()?;
/// assert_eq!(req.expires()?, Some(3600));
/// assert_eq!(req.content_length(), Some(0));
/// let ok = req.response(200).build()?;
/// assert_eq!(ok.status(), Some(200));
/// assert_eq!(ok.call_id()?, "843817637684230@998sdasdh09");
/// assert!(ok.to()?.tag().is_some());
/// let busy = req.response(486).reason("Busy Here (all lines in use)").build()?;
/// assert_eq!(busy.reason(), Some(&b"Busy Here (all lines in use)"[..]));
/// # Ok::<(), siplink_message::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    start: String,
    headers: Vec<(Bytes, Bytes)>,
    body: Bytes,
}

fn header_name_bytes(name: HeaderName) -> Bytes {
    Bytes::from_static(name.canonical().unwrap_or("X-Unnamed").as_bytes())
}

impl MessageBuilder {
    /// Starts a request line `METHOD uri SIP/2.0`.
    pub fn request(method: Method, uri: impl Display) -> MessageBuilder {
        MessageBuilder {
            start: format!("{method} {uri} SIP/2.0"),
            headers: Vec::with_capacity(12),
            body: Bytes::new(),
        }
    }

    /// Starts a status line with the default reason phrase.
    pub fn response(status: u16) -> MessageBuilder {
        MessageBuilder::response_with_reason(status, reason_phrase(status))
    }

    /// Starts a status line with the given reason phrase (line breaks are removed).
    pub fn response_with_reason(status: u16, reason: &str) -> MessageBuilder {
        let mut start = String::with_capacity(12 + reason.len());
        start.push_str("SIP/2.0 ");
        start.push_str(decimal(u64::from(status), &mut [0; 20]));
        start.push(' ');
        start.extend(reason.chars().filter(|c| *c != '\r' && *c != '\n'));
        MessageBuilder {
            start,
            headers: Vec::with_capacity(12),
            body: Bytes::new(),
        }
    }

    /// Replaces the reason phrase of a response (line breaks are removed); no
    /// effect on a request.
    pub fn reason(mut self, reason: &str) -> MessageBuilder {
        if let Some(rest) = self.start.strip_prefix("SIP/2.0 ")
            && rest.len() >= 3
        {
            let code = rest[..3].to_string();
            let reason: String = reason
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .collect();
            self.start = format!("SIP/2.0 {code} {reason}");
        }
        self
    }

    /// Adds a header line.
    pub fn header(mut self, name: HeaderName, value: impl Display) -> MessageBuilder {
        // Room for most values at once (`to_string` grows from nothing, one
        // allocation per doubling: six for a digest challenge).
        let mut v = String::with_capacity(128);
        let _ = write!(v, "{value}");
        self.headers.push((header_name_bytes(name), Bytes::from(v)));
        self
    }

    /// Adds a header line whose value is raw bytes (copied as they are).
    pub fn header_bytes(mut self, name: HeaderName, value: impl Into<Bytes>) -> MessageBuilder {
        self.headers.push((header_name_bytes(name), value.into()));
        self
    }

    /// Adds an extension header line.
    pub fn extension_header(mut self, name: &str, value: impl Display) -> MessageBuilder {
        self.headers.push((
            Bytes::copy_from_slice(name.as_bytes()),
            Bytes::from(value.to_string()),
        ));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> MessageBuilder {
        self.headers
            .retain(|(n, _)| !HeaderName::ContentType.matches(n));
        self.headers.push((
            header_name_bytes(HeaderName::ContentType),
            Bytes::copy_from_slice(content_type.as_bytes()),
        ));
        self.body = body.into();
        self
    }

    /// Writes the message bytes (with Content-Length from the body).
    pub fn to_bytes(&self) -> Result<Bytes> {
        // The exact size (Content-Length lines given by the caller are
        // counted too: a few bytes too many at worst), so the buffer never
        // grows while written.
        let lines: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let mut out = BytesMut::with_capacity(self.start.len() + lines + self.body.len() + 42);
        if let Some(k) = self.start.bytes().position(|c| c == b'\r' || c == b'\n') {
            return Err(Error::Syntax {
                offset: k,
                context: "start line",
                expected: "no line breaks",
            });
        }
        out.put_slice(self.start.as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in &self.headers {
            if is_content_length(name) {
                continue;
            }
            if let Some(k) = memchr::memchr2(b'\r', b'\n', value) {
                return Err(Error::Syntax {
                    offset: k,
                    context: "header value",
                    expected: "no line breaks",
                });
            }
            if name.is_empty() || !name.iter().all(|&c| crate::grammar::is_token_char(c)) {
                return Err(Error::Syntax {
                    offset: 0,
                    context: "header name",
                    expected: "a token",
                });
            }
            out.put_slice(name);
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"Content-Length: ");
        out.put_slice(decimal(self.body.len() as u64, &mut [0; 20]).as_bytes());
        out.put_slice(b"\r\n\r\n");
        out.put_slice(&self.body);
        Ok(out.freeze())
    }

    /// Writes and parses the message.
    pub fn build(self) -> Result<Message> {
        let bytes = self.to_bytes()?;
        Message::parse_with(
            bytes,
            &crate::ParseOptions {
                max_size: usize::MAX,
                max_headers: usize::MAX,
                require_content_length: true,
            },
        )
    }
}

/// Whether `name` is `Content-Length` (or its compact form `l`): only names
/// of those lengths are looked at further.
fn is_content_length(name: &[u8]) -> bool {
    matches!(name.len(), 1 | 14) && HeaderName::ContentLength.matches(name)
}

/// `n` in decimal, written at the end of `buf` (no allocation).
fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut k = buf.len();
    let mut n = n;
    loop {
        k -= 1;
        buf[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[k..]).unwrap_or_default()
}

/// Appends a random token suitable for a To tag (24 hexadecimal digits).
fn push_new_tag(out: &mut Vec<u8>) {
    use std::hash::{BuildHasher, Hasher};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // RandomState is seeded from the OS per instance; two hashes give 64 bits each.
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let b = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    for i in (0..16).rev() {
        out.push(HEX[((a >> (4 * i)) & 0xf) as usize]);
    }
    for i in (0..8).rev() {
        out.push(HEX[((b >> (4 * i)) & 0xf) as usize]);
    }
}

impl Message {
    /// Starts a response to this request as RFC 3261 §8.2.6 says: the Via lines,
    /// From, Call-ID and CSeq are copied as received, To is copied and gets a tag
    /// (a random one) if it had none and the status is not 100; a 100 Trying also
    /// copies Timestamp. Use [`Message::response_with_tag`] to choose the tag.
    pub fn response(&self, status: u16) -> MessageBuilder {
        self.response_with_tag(status, None)
    }

    /// Like [`Message::response`] with a given To tag (used when the tag must be
    /// stable across retransmissions or dialog responses).
    pub fn response_with_tag(&self, status: u16, tag: Option<&str>) -> MessageBuilder {
        let mut b = MessageBuilder::response(status);
        // Values are taken from the request's buffer (no copy) with folded
        // line breaks turned into spaces (the value means the same; the
        // builder writes one line per header).
        for (at, h) in self.headers().enumerate() {
            match h.name() {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    b = b.header_bytes(h.name(), crate::unfold(self.value_bytes(at)));
                }
                HeaderName::Timestamp if status == 100 => {
                    b = b.header_bytes(h.name(), crate::unfold(self.value_bytes(at)));
                }
                HeaderName::To => {
                    let value = crate::unfold(self.value_bytes(at));
                    let has_tag = self.to().map(|t| t.tag().is_some()).unwrap_or(true);
                    if has_tag || status == 100 {
                        b = b.header_bytes(h.name(), value);
                        continue;
                    }
                    let mut v = Vec::with_capacity(value.len() + 30);
                    v.extend_from_slice(&value);
                    v.extend_from_slice(b";tag=");
                    match tag {
                        Some(t) => v.extend_from_slice(t.as_bytes()),
                        None => push_new_tag(&mut v),
                    }
                    b = b.header_bytes(h.name(), Bytes::from(v));
                }
                _ => {}
            }
        }
        b
    }
}
