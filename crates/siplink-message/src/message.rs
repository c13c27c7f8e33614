//! The parsed message: a `Bytes` buffer plus an index of its start line and headers.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;

use crate::error::{Error, Result};
use crate::grammar::{Src, is_token_char, is_wsp, parse_decimal, trim_lws};
use crate::headers::HeaderName;
use crate::method::Method;

/// Limits applied while parsing. Every size has a limit: hostile input cannot make
/// the parser allocate or loop without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Largest accepted message in bytes (default 65,535: the largest UDP payload).
    pub max_size: usize,
    /// Most header lines accepted (default 256).
    pub max_headers: usize,
    /// Whether a missing Content-Length is an error (stream transports, RFC 3261
    /// §18.3). When `false` (datagrams) the body is the rest of the input.
    pub require_content_length: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_size: 65_535,
            max_headers: 256,
            require_content_length: false,
        }
    }
}

/// Byte range `[start, end)` inside the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    #[inline]
    fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// What the first line says.
#[derive(Debug, Clone)]
enum StartLine {
    Request {
        method: Method,
        uri: Bytes,
        version: Span,
    },
    Response {
        code: u16,
        reason: Span,
        version: Span,
    },
}

/// One header line as indexed by the parser, or one added by an edit. Plain
/// data (no drop work per line).
#[derive(Debug, Clone, Copy)]
struct Entry {
    name: HeaderName,
    /// The whole line including folded continuations and the final CRLF.
    line: Span,
    /// The name as written.
    raw_name: Span,
    /// The value with surrounding LWS trimmed.
    value: Span,
    /// 0 for a parsed line; `k` for a line added or replaced by an edit, whose
    /// name and value are `lines[k - 1]` of `Message::edits` (the spans are
    /// then unused).
    edit: u32,
}

/// The parts of a message written by edits.
#[derive(Debug, Clone, Default)]
struct Edits {
    /// Replacement start line.
    start: Option<Bytes>,
    /// Names and values of the lines written by edits (see [`Entry::edit`]).
    lines: Vec<(Bytes, Bytes)>,
}

/// A header as seen through [`Message::headers`].
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    name: HeaderName,
    raw_name: &'a [u8],
    value: &'a [u8],
}

impl<'a> Header<'a> {
    /// The classified name ([`HeaderName::Other`] for extension headers).
    pub fn name(&self) -> HeaderName {
        self.name
    }
    /// The name exactly as written (`v`, `VIA`, `X-Foo`...).
    pub fn raw_name(&self) -> &'a [u8] {
        self.raw_name
    }
    /// The value, with leading and trailing whitespace removed; folded lines are
    /// kept as received (CRLF followed by whitespace).
    pub fn value(&self) -> &'a [u8] {
        self.value
    }
    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }
}

macro_rules! typed_cache {
    ($(#[$doc:meta])* $name:ident { $( $field:ident : $ty:ty ),* $(,)? } $( plus $x:ident : $xty:ty )?) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub(crate) struct $name {
            $( pub(crate) $field: OnceLock<Result<$ty>>, )*
            $( pub(crate) $x: $xty, )?
        }
    };
}

typed_cache! {
    /// The views a proxy reads for nearly every message, parsed on first use and
    /// kept until the next edit. Large views are boxed so the cache stays small:
    /// it is allocated, and dropped, once per message that reads a typed header.
    Cache {
        request_uri: Box<crate::uri::Uri>,
        via: Vec<crate::headers::Via>,
        top_via: crate::headers::Via,
        to_tag: Option<bytestring::ByteString>,
        from_tag: Option<bytestring::ByteString>,
        route: Vec<crate::headers::NameAddr>,
        cseq: crate::headers::CSeq,
    }
    plus cold: OnceLock<Box<ColdCache>>
}

typed_cache! {
    /// The other typed views, in a second allocation made only when one of them
    /// is read (registrars, authentication, validation).
    ColdCache {
        from: Box<crate::headers::NameAddr>,
        to: Box<crate::headers::NameAddr>,
        contact: crate::headers::Contacts,
        record_route: Vec<crate::headers::NameAddr>,
        path: Vec<crate::headers::NameAddr>,
        expires: Option<u32>,
        min_expires: Option<u32>,
        content_type: Option<crate::headers::MediaType>,
        www_authenticate: Vec<crate::headers::Challenge>,
        proxy_authenticate: Vec<crate::headers::Challenge>,
        authorization: Vec<crate::headers::Credentials>,
        proxy_authorization: Vec<crate::headers::Credentials>,
        allow: Vec<bytestring::ByteString>,
        supported: Vec<bytestring::ByteString>,
        require: Vec<bytestring::ByteString>,
        proxy_require: Vec<bytestring::ByteString>,
        unsupported: Vec<bytestring::ByteString>,
        retry_after: Option<crate::headers::RetryAfter>,
    }
}

impl Cache {
    /// Forgets the views read from the lines of `name` (after an edit of
    /// them). Every field is named here: a view added to the cache without
    /// saying which header it reads does not compile.
    fn forget(&mut self, name: HeaderName) {
        use HeaderName as H;
        let Cache {
            request_uri: _,
            via,
            top_via,
            to_tag,
            from_tag,
            route,
            cseq,
            cold,
        } = self;
        match name {
            H::Via => {
                via.take();
                top_via.take();
            }
            H::To => drop(to_tag.take()),
            H::From => drop(from_tag.take()),
            H::Route => drop(route.take()),
            H::CSeq => drop(cseq.take()),
            _ => {}
        }
        if let Some(cold) = cold.get_mut() {
            cold.forget(name);
        }
    }
}

impl ColdCache {
    /// Forgets the views read from the lines of `name` (after an edit of
    /// them); every field is named, as in [`Cache::forget`].
    fn forget(&mut self, name: HeaderName) {
        use HeaderName as H;
        let ColdCache {
            from,
            to,
            contact,
            record_route,
            path,
            expires,
            min_expires,
            content_type,
            www_authenticate,
            proxy_authenticate,
            authorization,
            proxy_authorization,
            allow,
            supported,
            require,
            proxy_require,
            unsupported,
            retry_after,
        } = self;
        match name {
            H::From => drop(from.take()),
            H::To => drop(to.take()),
            H::Contact => drop(contact.take()),
            H::RecordRoute => drop(record_route.take()),
            H::Path => drop(path.take()),
            H::Expires => drop(expires.take()),
            H::MinExpires => drop(min_expires.take()),
            H::ContentType => drop(content_type.take()),
            H::WwwAuthenticate => drop(www_authenticate.take()),
            H::ProxyAuthenticate => drop(proxy_authenticate.take()),
            H::Authorization => drop(authorization.take()),
            H::ProxyAuthorization => drop(proxy_authorization.take()),
            H::Allow => drop(allow.take()),
            H::Supported => drop(supported.take()),
            H::Require => drop(require.take()),
            H::ProxyRequire => drop(proxy_require.take()),
            H::Unsupported => drop(unsupported.take()),
            H::RetryAfter => drop(retry_after.take()),
            _ => {}
        }
    }
}

/// A SIP request or response.
///
/// The message owns its buffer ([`Bytes`]); parsing indexes the start line and
/// every header line once. Header names and values are slices of the buffer, and
/// typed views ([`Message::via`], [`Message::cseq`]...) are parsed from those
/// slices on first use and cached. Unknown headers are kept byte for byte and in
/// order. Until it is edited, [`Message::to_bytes`] returns the received bytes.
///
/// ```
/// use siplink_message::{Message, Method};
///
/// let msg = Message::parse(&b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
/// Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877\r\n\
/// Max-Forwards: 70\r\nTo: <sip:carol@chicago.example.com>\r\n\
/// From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
/// Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n"[..])?;
/// assert_eq!(msg.method(), Some(&Method::Options));
/// assert_eq!(msg.top_via()?.branch(), Some("z9hG4bKhjhs8ass877"));
/// assert_eq!(msg.from()?.tag(), Some("1928301774"));
/// assert_eq!(msg.cseq()?.seq, 63104);
/// # Ok::<(), siplink_message::Error>(())
/// ```
#[derive(Debug)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    /// End of the start line, CRLF included.
    start_end: u32,
    headers: Vec<Entry>,
    /// What edits wrote, allocated on the first edit (a parsed message stays
    /// small: it is moved around whole).
    edits: Option<Box<Edits>>,
    body: Bytes,
    /// Content-Length as received, if present.
    content_length: Option<u32>,
    /// Bytes after the message in the datagram (ignored per RFC 3261 §18.3).
    trailing: usize,
    edited: bool,
    /// Set once the first Call-ID line has been checked: the Call-ID is then
    /// read from its line without another check (a view that needs no
    /// allocation and no reference on the buffer).
    pub(crate) call_id_checked: AtomicBool,
    /// Shared by the clones of a message (they read the same lines, so they
    /// have the same views); an edit of a clone detaches it.
    cache: OnceLock<Arc<Cache>>,
}

impl Clone for Message {
    /// A clone shares the buffer, and the typed views already parsed (and
    /// those parsed later by either copy, until one of them is edited).
    fn clone(&self) -> Self {
        Message {
            buf: self.buf.clone(),
            start: self.start.clone(),
            start_end: self.start_end,
            headers: self.headers.clone(),
            edits: self.edits.clone(),
            body: self.body.clone(),
            content_length: self.content_length,
            trailing: self.trailing,
            edited: self.edited,
            call_id_checked: AtomicBool::new(self.call_id_checked.load(Ordering::Relaxed)),
            cache: self.cache.clone(),
        }
    }
}

/// How many header names there are ([`HeaderName::Other`] included).
pub(crate) const HEADER_NAMES: usize = HeaderName::ALL.len() + 1;

const CTX_START: &str = "start line";
const CTX_HEADER: &str = "header line";

/// Replaces folded line breaks (and any stray CR or LF, with the whitespace that
/// follows them) by single spaces: the value means the same (RFC 3261 §7.3.1) and
/// can be written on one header line, never starting a new one (no header
/// injection). Returns the input itself when there is nothing to replace.
///
/// ```
/// use bytes::Bytes;
/// assert_eq!(siplink_message::unfold(Bytes::from_static(b"a;\r\n  b=1")), "a; b=1");
/// ```
pub fn unfold(value: Bytes) -> Bytes {
    if memchr::memchr2(b'\r', b'\n', &value).is_none() {
        return value;
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' | b'\n' => {
                while i < value.len() && matches!(value[i], b'\r' | b'\n' | b' ' | b'\t') {
                    i += 1;
                }
                out.push(b' ');
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Bytes::from(out)
}

/// Finds the end of the line starting at `from`: returns the index just past its
/// LF. Lines must end in CRLF.
#[inline]
fn line_end(b: &[u8], from: usize, context: &'static str) -> Result<usize> {
    match memchr(b'\n', &b[from..]) {
        Some(k) => {
            let nl = from + k;
            if nl == 0 || b[nl - 1] != b'\r' {
                return Err(Error::syntax(nl, context, "CRLF line ending"));
            }
            Ok(nl + 1)
        }
        None => Err(Error::Incomplete),
    }
}

/// Finds the end of the header line starting at `from` (just past its LF): the
/// same as [`line_end`] with the error context of a header line.
#[inline]
fn header_line_end(b: &[u8], from: usize) -> Result<usize> {
    match memchr(b'\n', &b[from..]) {
        Some(k) => {
            let nl = from + k;
            if b[nl - 1] != b'\r' {
                return Err(Error::syntax(nl, CTX_HEADER, "CRLF line ending"));
            }
            Ok(nl + 1)
        }
        None => Err(Error::Incomplete),
    }
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`; returns whether it is 2.0.
fn check_version(v: &[u8], offset: usize) -> Result<bool> {
    if v == b"SIP/2.0" {
        return Ok(true);
    }
    let bad = || Error::syntax(offset, CTX_START, "SIP-Version (SIP/2.0)");
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(bad());
    }
    let rest = &v[4..];
    let dot = memchr(b'.', rest).ok_or_else(bad)?;
    let (major, minor) = (&rest[..dot], &rest[dot + 1..]);
    if major.is_empty()
        || minor.is_empty()
        || !major.iter().all(u8::is_ascii_digit)
        || !minor.iter().all(u8::is_ascii_digit)
    {
        return Err(bad());
    }
    // Well-formed, but not `SIP/2.0` exactly.
    Ok(false)
}

impl Message {
    /// Parses one message from a datagram with the default [`ParseOptions`].
    ///
    /// Without Content-Length, the body is the rest of the datagram; bytes after
    /// the Content-Length body are ignored (see [`Message::trailing_bytes`]).
    pub fn parse(buf: impl Into<Bytes>) -> Result<Message> {
        Message::parse_with(buf, &ParseOptions::default())
    }

    /// Parses one message with explicit limits.
    pub fn parse_with(buf: impl Into<Bytes>, opts: &ParseOptions) -> Result<Message> {
        let mut buf: Bytes = buf.into();
        if buf.len() > opts.max_size {
            return Err(Error::TooLarge {
                size: buf.len(),
                limit: opts.max_size,
            });
        }
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        if !buf.starts_with(b"\r\n") {
            // The usual case, returned as it is (no copy of the message).
            return Message::index(buf, opts);
        }
        let lead = buf
            .chunks(2)
            .take_while(|c| *c == b"\r\n")
            .count()
            .saturating_mul(2);
        buf = buf.slice(lead..);
        // Error offsets count from the start of the input, leading CRLFs included.
        Message::index(buf, opts).map_err(|e| e.offset_by(lead))
    }

    /// Indexes a message whose first byte is the start line.
    fn index(mut buf: Bytes, opts: &ParseOptions) -> Result<Message> {
        let b: &[u8] = &buf;
        let start_end = line_end(b, 0, CTX_START)?;
        let start = Self::parse_start_line(&buf, &b[..start_end - 2])?;

        let mut headers: Vec<Entry> = Vec::with_capacity(16);
        let mut content_length: Option<(u32, usize)> = None;
        let mut p = start_end;
        let body_start = loop {
            match b.get(p..p + 2) {
                Some(b"\r\n") => break p + 2,
                None => return Err(Error::Incomplete),
                _ => {}
            }
            // One header line, with folded continuation lines.
            let mut end = header_line_end(b, p)?;
            let mut folded = false;
            while matches!(b.get(end), Some(b' ' | b'\t')) {
                end = header_line_end(b, end)?;
                folded = true;
            }
            let line = &b[p..end];
            // The line ends in CRLF, which is not a token character: the scan
            // stops inside the line.
            let name_len = line
                .iter()
                .position(|&c| !is_token_char(c))
                .unwrap_or(line.len());
            if name_len == 0 {
                return Err(Error::syntax(p, CTX_HEADER, "header name"));
            }
            let name_end = p + name_len;
            let mut q = name_end;
            while is_wsp(b[q]) {
                q += 1;
            }
            if b[q] != b':' {
                return Err(Error::syntax(q, CTX_HEADER, "':' after the header name"));
            }
            // The value with surrounding white space removed. An unfolded line
            // has no CR/LF inside, so trimming is only spaces and tabs.
            let (raw_start, raw_end) = (q + 1, end - 2);
            let (vstart, vend) = if !folded {
                let mut s = raw_start;
                while s < raw_end && is_wsp(b[s]) {
                    s += 1;
                }
                let mut e = raw_end;
                while e > s && is_wsp(b[e - 1]) {
                    e -= 1;
                }
                if s == e {
                    (raw_start, raw_start)
                } else {
                    (s, e)
                }
            } else {
                let v = trim_lws(&b[raw_start..raw_end]);
                if v.is_empty() {
                    (raw_start, raw_start)
                } else {
                    let s = v.as_ptr() as usize - b.as_ptr() as usize;
                    (s, s + v.len())
                }
            };
            let name = HeaderName::from_token(&b[p..name_end]);
            if name == HeaderName::ContentLength {
                let n = parse_decimal(&b[vstart..vend], u64::from(u32::MAX)).ok_or(
                    Error::InvalidContentLength {
                        offset: vstart,
                        reason: "not a decimal number of bytes",
                    },
                )? as u32;
                match content_length {
                    Some((prev, _)) if prev != n => {
                        return Err(Error::InvalidContentLength {
                            offset: vstart,
                            reason: "several different Content-Length values",
                        });
                    }
                    _ => content_length = Some((n, vstart)),
                }
            }
            if headers.len() == opts.max_headers {
                return Err(Error::TooManyHeaders {
                    limit: opts.max_headers,
                });
            }
            headers.push(Entry {
                name,
                line: Span::new(p, end),
                raw_name: Span::new(p, name_end),
                value: Span::new(vstart, vend),
                edit: 0,
            });
            p = end;
        };

        let available = b.len() - body_start;
        let (body_len, trailing) = match content_length {
            Some((n, _)) => {
                let n = n as usize;
                if n > available {
                    return Err(Error::TruncatedBody {
                        declared: n,
                        available,
                    });
                }
                (n, available - n)
            }
            None if opts.require_content_length => return Err(Error::MissingContentLength),
            None => (available, 0),
        };
        if trailing > 0 {
            buf.truncate(body_start + body_len);
        }
        let body = buf.slice(body_start..body_start + body_len);
        Ok(Message {
            buf,
            start,
            start_end: start_end as u32,
            headers,
            edits: None,
            body,
            content_length: content_length.map(|(n, _)| n),
            trailing,
            edited: false,
            call_id_checked: AtomicBool::new(false),
            cache: OnceLock::new(),
        })
    }

    fn parse_start_line(buf: &Bytes, line: &[u8]) -> Result<StartLine> {
        let sp1 = memchr(b' ', line).ok_or(Error::syntax(line.len(), CTX_START, "SP"))?;
        if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
            // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
            let version = Span::new(0, sp1);
            check_version(&line[..sp1], 0)?;
            let rest = &line[sp1 + 1..];
            let code_len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            if code_len != 3 || rest.get(3) != Some(&b' ') {
                return Err(Error::syntax(
                    sp1 + 1,
                    CTX_START,
                    "a three-digit status code followed by SP",
                ));
            }
            let code = parse_decimal(&rest[..3], 999).unwrap_or(0) as u16;
            if !(100..=699).contains(&code) {
                return Err(Error::OutOfRange {
                    offset: sp1 + 1,
                    context: "status code",
                    limit: "100 to 699",
                });
            }
            let reason = &rest[4..];
            if let Some(k) = reason.iter().position(|&c| c < 0x20 && c != b'\t') {
                return Err(Error::syntax(
                    sp1 + 5 + k,
                    CTX_START,
                    "reason phrase text (no control characters)",
                ));
            }
            return Ok(StartLine::Response {
                code,
                reason: Span::new(sp1 + 5, line.len()),
                version,
            });
        }
        // Request-Line = Method SP Request-URI SP SIP-Version
        let method = &line[..sp1];
        if method.is_empty() || !method.iter().all(|&c| is_token_char(c)) {
            return Err(Error::syntax(0, CTX_START, "method token"));
        }
        let sp2 = line
            .iter()
            .rposition(|&c| c == b' ')
            .filter(|&k| k > sp1)
            .ok_or(Error::syntax(line.len(), CTX_START, "SP SIP-Version"))?;
        let version = &line[sp2 + 1..];
        check_version(version, sp2 + 1)?;
        let uri = &line[sp1 + 1..sp2];
        if uri.is_empty() {
            return Err(Error::syntax(sp1 + 1, CTX_START, "Request-URI"));
        }
        if let Some(k) = uri.iter().position(|&c| c <= b' ' || c == 0x7f) {
            return Err(Error::syntax(
                sp1 + 1 + k,
                CTX_START,
                "Request-URI without whitespace or control characters",
            ));
        }
        let src = Src::new(buf);
        Ok(StartLine::Request {
            method: Method::from_token(method, || {
                bytestring::ByteString::try_from(src.slice(method)).unwrap_or_default()
            }),
            uri: src.slice(uri),
            version: Span::new(sp2 + 1, line.len()),
        })
    }

    /// The typed-view cache, allocated on first use so that a parse that reads no
    /// typed header pays nothing for it.
    #[inline]
    pub(crate) fn cache(&self) -> &Cache {
        self.cache.get_or_init(Arc::default)
    }

    /// The second-level cache of less used views.
    #[inline]
    pub(crate) fn cold(&self) -> &ColdCache {
        self.cache().cold.get_or_init(Box::default)
    }

    // ----- start line -----

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (raw bytes; UTF-8 is allowed but not checked).
    pub fn reason(&self) -> Option<&[u8]> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason.of(&self.buf)),
            StartLine::Request { .. } => None,
        }
    }

    /// The SIP-Version of the start line as written (`SIP/2.0`, or another
    /// well-formed version that [`Message::validate`] answers with 505).
    pub fn version(&self) -> &[u8] {
        match (&self.start, self.new_start()) {
            // An edited start line is always written with SIP/2.0 (before its CRLF).
            (StartLine::Request { .. }, Some(line)) => &line[line.len() - 9..line.len() - 2],
            (StartLine::Request { version, .. }, None)
            | (StartLine::Response { version, .. }, _) => version.of(&self.buf),
        }
    }

    /// The Request-URI exactly as written (zero-copy), `None` for a response.
    pub fn request_uri_bytes(&self) -> Option<&Bytes> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Offset of `sub` in the received buffer (0 if it is not inside it, e.g. an
    /// edited value).
    pub(crate) fn offset_of(&self, sub: &[u8]) -> usize {
        let start = self.buf.as_ptr() as usize;
        let p = sub.as_ptr() as usize;
        if p >= start && p + sub.len() <= start + self.buf.len() {
            p - start
        } else {
            0
        }
    }

    // ----- headers -----

    /// Every header line in order (including extension headers).
    pub fn headers(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        self.headers.iter().map(|e| self.header_ref(e))
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The start line written by an edit, if any.
    fn new_start(&self) -> Option<&Bytes> {
        self.edits.as_ref()?.start.as_ref()
    }

    /// The name and value written by an edit, for an edited line.
    #[inline]
    fn edited(&self, e: &Entry) -> Option<&(Bytes, Bytes)> {
        match e.edit {
            0 => None,
            k => self.edits.as_ref()?.lines.get(k as usize - 1),
        }
    }

    /// The name of header line `at` as written, sharing the buffer (no copy).
    fn raw_name_bytes(&self, at: usize) -> Bytes {
        let e = &self.headers[at];
        match self.edited(e) {
            Some(nv) => nv.0.clone(),
            None => self
                .buf
                .slice(e.raw_name.start as usize..e.raw_name.end as usize),
        }
    }

    /// The value of header line `at`, sharing the buffer (no copy).
    pub(crate) fn value_bytes(&self, at: usize) -> Bytes {
        let e = &self.headers[at];
        match self.edited(e) {
            Some(nv) => nv.1.clone(),
            None => self.buf.slice(e.value.start as usize..e.value.end as usize),
        }
    }

    fn header_ref<'a>(&'a self, e: &'a Entry) -> Header<'a> {
        match self.edited(e) {
            Some(nv) => Header {
                name: e.name,
                raw_name: &nv.0,
                value: &nv.1,
            },
            None => Header {
                name: e.name,
                raw_name: e.raw_name.of(&self.buf),
                value: e.value.of(&self.buf),
            },
        }
    }

    /// The value of the first header line with this name.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.header_values(name).next()
    }

    /// The values of every header line with this name, in order (one item per
    /// line: comma-separated values on one line are not split here).
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.headers
            .iter()
            .filter(move |e| e.name == name)
            .map(|e| self.header_ref(e).value)
    }

    /// Values of an extension header looked up by name (case-insensitive).
    pub fn header_values_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |h| h.raw_name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value)
    }

    /// Whether there is a header line with this name.
    #[inline]
    pub(crate) fn has_header(&self, name: HeaderName) -> bool {
        self.headers.iter().any(|e| e.name == name)
    }

    /// Number of header lines with this name.
    pub fn count(&self, name: HeaderName) -> usize {
        self.headers.iter().filter(|e| e.name == name).count()
    }

    /// The number of lines of every header name, in one pass (indexed by
    /// `HeaderName as usize`; saturates at `u16::MAX`).
    pub(crate) fn header_counts(&self) -> [u16; HEADER_NAMES] {
        let mut counts = [0u16; HEADER_NAMES];
        for e in &self.headers {
            let c = &mut counts[e.name as usize];
            *c = c.saturating_add(1);
        }
        counts
    }

    /// Calls `f` with a [`Src`] and the value slice of every line of `name`,
    /// so typed parsers get zero-copy slices and positions in the message.
    pub(crate) fn for_each_value<T>(
        &self,
        name: HeaderName,
        mut f: impl FnMut(&Src<'_>, &[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for e in self.headers.iter().filter(|e| e.name == name) {
            match self.edited(e) {
                Some(nv) => out.push(f(&Src::new(&nv.1), &nv.1)?),
                None => out.push(f(&Src::new(&self.buf), e.value.of(&self.buf))?),
            }
        }
        Ok(out)
    }

    /// Like [`Message::for_each_value`] for the first line only.
    pub(crate) fn first_value<T>(
        &self,
        name: HeaderName,
        f: impl FnOnce(&Src<'_>, &[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.headers.iter().find(|e| e.name == name) {
            None => Ok(None),
            Some(e) => match self.edited(e) {
                Some(nv) => f(&Src::new(&nv.1), &nv.1).map(Some),
                None => f(&Src::new(&self.buf), e.value.of(&self.buf)).map(Some),
            },
        }
    }

    // ----- body -----

    /// The body (zero-copy).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The Content-Length value as received, if the header was present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// How many bytes followed the message in its datagram and were ignored
    /// (RFC 3261 §18.3). They are not part of the message and are never forwarded.
    pub fn trailing_bytes(&self) -> usize {
        self.trailing
    }

    // ----- serialisation and edits -----
    //
    // Values given to the edit methods below are written on one line: folded or
    // stray line breaks become spaces, so an edit can never inject a header.

    /// Whether the message was edited since it was parsed.
    pub fn is_edited(&self) -> bool {
        self.edited
    }

    /// The message on the wire. Unedited, this is the received buffer (without any
    /// leading CRLFs or trailing datagram bytes); edited, every line that was not
    /// touched is copied byte for byte.
    pub fn to_bytes(&self) -> Bytes {
        if !self.edited {
            return self.buf.clone();
        }
        let mut out = BytesMut::with_capacity(self.buf.len() + 256);
        match self.new_start() {
            Some(s) => out.put_slice(s),
            None => out.put_slice(&self.buf[..self.start_end as usize]),
        }
        for e in &self.headers {
            match self.edited(e) {
                Some(nv) => {
                    out.put_slice(&nv.0);
                    out.put_slice(b": ");
                    out.put_slice(&nv.1);
                    out.put_slice(b"\r\n");
                }
                None => out.put_slice(e.line.of(&self.buf)),
            }
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
        out.freeze()
    }

    fn touch(&mut self) {
        self.edited = true;
        self.call_id_checked = AtomicBool::new(false);
        self.cache = OnceLock::new();
    }

    /// After an edit of the lines of `name` only: forgets the views of that
    /// header (the views of the others read lines that did not change, in a
    /// buffer that did not change either). A cache shared with a clone is
    /// dropped whole instead (the clone keeps it).
    fn touch_header(&mut self, name: HeaderName) {
        self.edited = true;
        if name == HeaderName::CallId {
            self.call_id_checked = AtomicBool::new(false);
        }
        let Some(cache) = self.cache.get_mut() else {
            return;
        };
        match Arc::get_mut(cache) {
            Some(c) => c.forget(name),
            None => self.cache = OnceLock::new(),
        }
    }

    /// A line written by an edit (its name and value are kept in `edits`).
    fn new_entry(&mut self, name: HeaderName, raw_name: Bytes, value: Bytes) -> Entry {
        // Lines replaced or removed leave their edits behind: drop those once
        // they outnumber the lines, so that repeated edits stay bounded.
        let edits = self.edits.get_or_insert_with(Box::default);
        if edits.lines.len() >= 2 * self.headers.len() + 16 {
            let mut kept = Vec::with_capacity(self.headers.len());
            for e in &mut self.headers {
                if e.edit != 0 {
                    kept.push(edits.lines[e.edit as usize - 1].clone());
                    e.edit = kept.len() as u32;
                }
            }
            edits.lines = kept;
        }
        edits.lines.push((raw_name, unfold(value)));
        Entry {
            name,
            line: Span::default(),
            raw_name: Span::default(),
            value: Span::default(),
            edit: edits.lines.len() as u32,
        }
    }

    fn name_bytes(name: HeaderName, custom: Option<&str>) -> Bytes {
        match name.canonical() {
            Some(c) => Bytes::from_static(c.as_bytes()),
            None => Bytes::copy_from_slice(custom.unwrap_or("X-Unnamed").as_bytes()),
        }
    }

    /// Inserts a header line before the first line of the same header, or before
    /// the first header if there is none (the place for a new top Via or
    /// Record-Route). Line breaks in `value` are replaced by spaces, as in every
    /// edit method: an edit cannot inject a header.
    pub fn prepend_header(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let at = self
            .headers
            .iter()
            .position(|e| e.name == name)
            .unwrap_or(0);
        let entry = self.new_entry(name, Self::name_bytes(name, None), value.into());
        self.headers.insert(at, entry);
        self.touch_header(name);
    }

    /// Appends a header line after the last header.
    pub fn append_header(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let entry = self.new_entry(name, Self::name_bytes(name, None), value.into());
        self.headers.push(entry);
        self.touch_header(name);
    }

    /// Appends an extension header line with the given name.
    pub fn append_extension_header(&mut self, name: &str, value: impl Into<Bytes>) {
        let classified = HeaderName::from_bytes(name.as_bytes());
        let entry = self.new_entry(
            classified,
            Bytes::copy_from_slice(name.as_bytes()),
            value.into(),
        );
        self.headers.push(entry);
        self.touch_header(classified);
    }

    /// Replaces every line of `name` by one line with `value`, at the position of
    /// the first one (or appended if there was none).
    pub fn set_header(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let entry = self.new_entry(name, Self::name_bytes(name, None), value.into());
        match self.headers.iter().position(|e| e.name == name) {
            Some(at) => {
                self.headers[at] = entry;
                let mut i = 0;
                self.headers.retain(|e| {
                    i += 1;
                    i - 1 == at || e.name != name
                });
            }
            None => self.headers.push(entry),
        }
        self.touch_header(name);
    }

    /// Removes every line of `name`; returns how many were removed.
    pub fn remove_header(&mut self, name: HeaderName) -> usize {
        let before = self.headers.len();
        self.headers.retain(|e| e.name != name);
        let n = before - self.headers.len();
        if n > 0 {
            self.touch_header(name);
        }
        n
    }

    /// Removes the first *value* of a list header (e.g. the top Via of
    /// `Via: a, b`): if its line holds several comma-separated values, the line is
    /// rewritten without the first one; otherwise the line is removed. Returns
    /// whether anything was removed.
    pub fn remove_first_value(&mut self, name: HeaderName) -> bool {
        let Some(at) = self.headers.iter().position(|e| e.name == name) else {
            return false;
        };
        let value = self.header_ref(&self.headers[at]).value;
        let mut parts = crate::grammar::split_commas(value);
        parts.next();
        let rest: Vec<&[u8]> = parts.collect();
        if rest.is_empty() {
            self.headers.remove(at);
        } else {
            let joined = rest.join(&b", "[..]);
            let raw_name = self.raw_name_bytes(at);
            self.headers[at] = self.new_entry(name, raw_name, Bytes::from(joined));
        }
        self.touch_header(name);
        true
    }

    /// Replaces the first value of a list header (e.g. the top Via, to stamp
    /// `received`/`rport`), keeping the other values of its line.
    pub fn replace_first_value(&mut self, name: HeaderName, value: impl Into<Bytes>) -> bool {
        let Some(at) = self.headers.iter().position(|e| e.name == name) else {
            return false;
        };
        let value: Bytes = value.into();
        let line = {
            let old = self.header_ref(&self.headers[at]).value;
            let mut parts = crate::grammar::split_commas(old).skip(1).peekable();
            // The usual line holds one value: the new value is the line's (no copy).
            if parts.peek().is_none() {
                value
            } else {
                let mut joined = value.to_vec();
                for p in parts {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(p);
                }
                Bytes::from(joined)
            }
        };
        let raw_name = self.raw_name_bytes(at);
        self.headers[at] = self.new_entry(name, raw_name, line);
        self.touch_header(name);
        true
    }

    /// Replaces the Request-URI. Returns `false` (and changes nothing) for a
    /// response or for a URI that is empty or holds whitespace or control
    /// characters.
    pub fn set_request_uri(&mut self, uri: impl Into<Bytes>) -> bool {
        let uri: Bytes = uri.into();
        // A Request-URI has no whitespace: anything else would corrupt the line.
        if uri.is_empty() || uri.iter().any(|&c| c <= b' ' || c == 0x7f) {
            return false;
        }
        let StartLine::Request { method, .. } = &self.start else {
            return false;
        };
        let mut line = BytesMut::new();
        line.put_slice(method.as_str().as_bytes());
        line.put_u8(b' ');
        line.put_slice(&uri);
        line.put_slice(b" SIP/2.0\r\n");
        let line = line.freeze();
        let version_start = line.len() - 9;
        self.start = StartLine::Request {
            method: method.clone(),
            uri: line.slice(method.as_str().len() + 1..version_start - 1),
            version: Span::new(0, 0),
        };
        self.edits.get_or_insert_with(Box::default).start = Some(line);
        self.touch();
        true
    }

    /// Replaces the body and sets Content-Length (and Content-Type if given).
    pub fn set_body(&mut self, content_type: Option<&str>, body: impl Into<Bytes>) {
        self.body = body.into();
        self.content_length = Some(self.body.len() as u32);
        self.set_header(
            HeaderName::ContentLength,
            Bytes::from(self.body.len().to_string()),
        );
        if let Some(ct) = content_type {
            self.set_header(
                HeaderName::ContentType,
                Bytes::copy_from_slice(ct.as_bytes()),
            );
        }
    }

    /// Serialises an edited message and parses it again, so that every view
    /// reads the new bytes with positions in the new buffer.
    pub fn reparse(&self) -> Result<Message> {
        Message::parse_with(
            self.to_bytes(),
            &ParseOptions {
                max_size: usize::MAX,
                max_headers: usize::MAX,
                require_content_length: false,
            },
        )
    }
}

impl fmt::Display for Message {
    /// Writes the message as (lossy) UTF-8 text, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}
