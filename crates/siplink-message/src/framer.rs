//! Sans-IO stream framer for SIP over stream transports (TCP, TLS).
//!
//! A stream transport delivers SIP messages as one byte stream with no record
//! boundaries: one read may hold half a message, or several messages and a
//! keepalive. [`Framer`] turns such reads back into whole messages. It does no
//! I/O itself: hand it the bytes as they arrive with [`Framer::push`] and drain
//! [`Frame`]s with [`Framer::next_frame`] until it returns `Ok(None)` ("need more
//! bytes").
//!
//! # What it does
//!
//! * **Framing** (RFC 3261 §18.3): a message is its start line and header section
//!   up to the first empty line (`CRLFCRLF`), followed by exactly
//!   `Content-Length` bytes of body. Content-Length is mandatory on streams; the
//!   framer recognises it by its full (`Content-Length`) and compact (`l`) names,
//!   case-insensitively, with optional white space before the colon and folded
//!   (multi-line) values. Each message comes out as a zero-copy [`Bytes`] split
//!   off the internal buffer, holding the start line through the end of the body
//!   and nothing more, ready for the message parser.
//! * **Keepalives** (RFC 5626 §4.4.1, RFC 3261 §7.5): between messages, `CRLFCRLF`
//!   is a ping ([`Frame::Ping`], answer it with [`PONG`]); a lone `CRLF` is a pong
//!   ([`Frame::Pong`]) if [`Framer::ping_sent`] was called since the last pong, and
//!   is otherwise skipped as a leading CRLF.
//! * **Limits**: a message larger than [`FramerConfig::max_message_size`] (whether
//!   it is still arriving or its Content-Length announces it) or with more than
//!   [`FramerConfig::max_headers`] header lines is an error, so a peer cannot make
//!   the framer buffer without bound. Errors are fatal for the connection: see
//!   [`Framer::next_frame`].
//!
//! The framer checks only what framing needs. It does not validate the start
//! line or the other headers: that is the message parser's job.
//!
//! Line ends are strict `CRLF`, as RFC 3261 §7 requires: a bare LF does not end a
//! line, so a header section that uses bare LFs never ends and runs into the size
//! limit.
//!
//! # Results do not depend on how the stream was split
//!
//! Feeding the same bytes in any pieces gives the same frames (and, on bad input,
//! the same kind of error). In particular a ping split as `\r\n` + `\r\n` is still
//! one [`Frame::Ping`]: a `CRLF` at a message boundary that might still become a
//! ping is held until the next bytes decide it. The one exception is pong
//! detection, see [`Framer::ping_sent`].
//!
//! # Datagrams and WebSocket
//!
//! UDP needs no framer: each datagram holds exactly one message, which is parsed
//! whole by the message parser (Content-Length is optional there and only
//! truncates the body). The same goes for SIP over WebSocket, where each
//! WebSocket message carries exactly one SIP message (RFC 7118 §5.2).
//!
//! # Example
//!
//! ```
//! use siplink_message::framer::{Frame, Framer, FramerConfig, PONG};
//!
//! let mut framer = Framer::new(FramerConfig::default());
//! let mut replies: Vec<u8> = Vec::new();
//! let mut messages = Vec::new();
//!
//! // Two reads: a keepalive ping and the first part of a message, then the rest
//! // of that message coalesced with a second one.
//! let reads: [&[u8]; 2] = [
//!     b"\r\n\r\nOPTIONS sip:bob@example.com SIP/2.0\r\nContent-Le",
//!     b"ngth: 0\r\n\r\nMESSAGE sip:bob@example.com SIP/2.0\r\nl: 5\r\n\r\nhello",
//! ];
//! for read in reads {
//!     framer.push(read);
//!     // Drain every complete frame; `Ok(None)` means "read more".
//!     // An `Err` means the peer broke framing: close the connection.
//!     while let Some(frame) = framer.next_frame()? {
//!         match frame {
//!             Frame::Message(bytes) => messages.push(bytes), // then parse it
//!             Frame::Ping => replies.extend_from_slice(PONG),
//!             Frame::Pong => {} // the peer answered one of our pings
//!         }
//!     }
//! }
//! assert_eq!(replies, b"\r\n");
//! assert_eq!(messages.len(), 2);
//! assert!(messages[1].ends_with(b"l: 5\r\n\r\nhello"));
//! assert_eq!(framer.buffered(), 0);
//! # Ok::<(), siplink_message::Error>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::grammar::{is_token_char, is_wsp, parse_decimal, sws, trim_lws};

/// The RFC 5626 keepalive ping, `CRLFCRLF`: send it to probe a flow.
pub const PING: &[u8] = b"\r\n\r\n";

/// The RFC 5626 keepalive pong, `CRLF`: send it in answer to a [`Frame::Ping`].
pub const PONG: &[u8] = b"\r\n";

/// Default for [`FramerConfig::max_message_size`]: 64 KiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Default for [`FramerConfig::max_headers`].
pub const DEFAULT_MAX_HEADERS: usize = 128;

/// Limits enforced by a [`Framer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FramerConfig {
    /// Largest message accepted, in bytes, from the first byte of the start line
    /// to the last byte of the body. Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// Most header lines accepted in one message (the start line and folded
    /// continuation lines do not count). Default [`DEFAULT_MAX_HEADERS`].
    pub max_headers: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        FramerConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// One unit taken off the stream by [`Framer::next_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole SIP message: start line through the end of the body, exactly.
    Message(Bytes),
    /// A `CRLFCRLF` keepalive ping from the peer: answer with [`PONG`].
    Ping,
    /// A `CRLF` keepalive pong, answering our ping (see [`Framer::ping_sent`]).
    Pong,
}

/// Splits a SIP byte stream into messages and keepalives. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct Framer {
    config: FramerConfig,
    /// Unconsumed bytes; always starts at a message boundary or inside the
    /// message being framed (offsets in [`State`] are relative to its start).
    buf: BytesMut,
    state: State,
    /// [`Framer::ping_sent`] was called and no pong has been seen since.
    pong_armed: bool,
    /// The error that ended this stream, returned again on every call.
    poisoned: Option<Error>,
}

/// Where the framer is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages: CRLFs here are keepalives or leading CRLFs.
    Boundary,
    /// Inside a header section that has not ended yet.
    Headers(HeaderScan),
    /// The header section has ended; the message is `len` bytes long.
    Body {
        /// Total message length (header section plus Content-Length).
        len: usize,
    },
}

/// Progress of the incremental header-section scan. The scan works on logical
/// lines (a physical line plus its folded continuations) and never looks at a
/// byte twice, except for one CRLF that waits for the byte after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HeaderScan {
    /// Start of the logical line being read.
    line_start: usize,
    /// Where the search for the next LF resumes.
    scan: usize,
    /// Logical lines completed so far, the start line included.
    lines: usize,
    /// Content-Length value seen so far.
    content_length: Option<usize>,
}

/// Outcome of looking at the bytes at a message boundary.
enum AtBoundary {
    /// Not enough bytes to decide.
    NeedMore,
    /// A keepalive frame was consumed.
    Frame(Frame),
    /// A leading CRLF was consumed silently.
    Skipped,
    /// A message starts here.
    MessageStart,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(FramerConfig::default())
    }
}

impl Framer {
    /// A framer for a new connection, with the given limits.
    pub fn new(config: FramerConfig) -> Self {
        Framer {
            config,
            buf: BytesMut::new(),
            state: State::Boundary,
            pong_armed: false,
            poisoned: None,
        }
    }

    /// The limits this framer enforces.
    pub fn config(&self) -> &FramerConfig {
        &self.config
    }

    /// Appends bytes read from the connection (one copy into the internal
    /// buffer; the frames handed out later share that buffer). Call
    /// [`next_frame`](Self::next_frame) until it returns `Ok(None)` after each push,
    /// which keeps the buffer within the size limit. Ignored once the framer has
    /// failed.
    pub fn push(&mut self, data: &[u8]) {
        if self.poisoned.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Takes the next frame off the buffer.
    ///
    /// * `Ok(Some(frame))`: a message or keepalive; call again for more.
    /// * `Ok(None)`: the buffer holds no complete frame; push more bytes. At this
    ///   point at most `max_message_size` bytes are buffered (or up to 3 bytes of
    ///   a possible keepalive, if the limit is smaller).
    /// * `Err(e)`: the stream cannot be framed any more, and the connection should
    ///   be closed (after an error response, if one makes sense):
    ///   [`Error::TooLarge`], [`Error::TooManyHeaders`],
    ///   [`Error::MissingContentLength`] or [`Error::InvalidContentLength`] (whose
    ///   offset counts from the first byte of the offending message). The framer
    ///   is then poisoned: it drops its buffer, ignores further pushes and returns
    ///   the same error on every later call.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        self.step().inspect_err(|e| {
            self.poisoned = Some(e.clone());
            self.buf = BytesMut::new();
            self.state = State::Boundary;
        })
    }

    /// Records that we sent a [`PING`] on this connection, so that the next `CRLF`
    /// at a message boundary is reported as [`Frame::Pong`].
    ///
    /// While armed, a `CRLF` at a boundary is a pong as soon as it is complete,
    /// without waiting to see whether a second `CRLF` follows to make a ping: a
    /// client needs to see the pong at once, and a server answers with nothing
    /// else. The cost is that a ping from the peer crossing ours is read as a pong
    /// (its second half then waits at the boundary like any lone `CRLF`), and that
    /// an RFC 3261 leading CRLF before a message is read as a pong too. Pong
    /// detection is therefore the one result that can depend on when this method
    /// is called relative to the bytes pushed.
    pub fn ping_sent(&mut self) {
        self.pong_armed = true;
    }

    /// Whether [`ping_sent`](Self::ping_sent) was called and no pong has been seen
    /// since.
    pub fn awaiting_pong(&self) -> bool {
        self.pong_armed
    }

    /// Number of bytes buffered and not yet returned as frames: a partial message,
    /// or a partial keepalive (a `CRLF` that may still become a ping). Non-zero
    /// when the peer closes the connection means it closed mid-message or
    /// mid-keepalive.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether an error has ended this stream (see [`next_frame`](Self::next_frame)).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn step(&mut self) -> Result<Option<Frame>> {
        loop {
            match self.state {
                State::Boundary => match self.at_boundary() {
                    AtBoundary::NeedMore => return Ok(None),
                    AtBoundary::Frame(frame) => return Ok(Some(frame)),
                    AtBoundary::Skipped => {}
                    AtBoundary::MessageStart => {
                        self.state = State::Headers(HeaderScan::default());
                    }
                },
                State::Headers(mut scan) => {
                    let done = self.scan_headers(&mut scan);
                    self.state = State::Headers(scan);
                    match done? {
                        Some(len) => self.state = State::Body { len },
                        None => return Ok(None),
                    }
                }
                State::Body { len } => {
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    self.state = State::Boundary;
                    return Ok(Some(Frame::Message(self.buf.split_to(len).freeze())));
                }
            }
        }
    }

    /// Classifies the bytes at a message boundary, consuming keepalives.
    fn at_boundary(&mut self) -> AtBoundary {
        let (consumed, outcome) = match &self.buf[..] {
            [] | [b'\r'] => return AtBoundary::NeedMore,
            [b'\r', b'\n', rest @ ..] => {
                if self.pong_armed {
                    self.pong_armed = false;
                    (2, AtBoundary::Frame(Frame::Pong))
                } else {
                    match rest {
                        // Could still become a ping: decide on the next bytes.
                        [] | [b'\r'] => return AtBoundary::NeedMore,
                        [b'\r', b'\n', ..] => (4, AtBoundary::Frame(Frame::Ping)),
                        _ => (2, AtBoundary::Skipped),
                    }
                }
            }
            _ => return AtBoundary::MessageStart,
        };
        self.buf.advance(consumed);
        outcome
    }

    /// Resumes the header-section scan. Returns the total message length once the
    /// empty line is found, `None` if more bytes are needed.
    fn scan_headers(&self, scan: &mut HeaderScan) -> Result<Option<usize>> {
        let limit = self.config.max_message_size;
        // A message within the limit has its whole header section, and every byte
        // the scan needs to find its end, inside the first `limit` bytes: looking
        // further is wasted work, and capping keeps errors split-independent.
        let window = &self.buf[..self.buf.len().min(limit)];
        loop {
            let Some(i) = memchr::memchr(b'\n', &window[scan.scan..]) else {
                scan.scan = window.len();
                break;
            };
            let lf = scan.scan + i;
            if lf == 0 || window[lf - 1] != b'\r' {
                // A bare LF is ordinary line content.
                scan.scan = lf + 1;
                continue;
            }
            let cr = lf - 1;
            if cr <= scan.line_start {
                // The empty line: the header section ends after its LF.
                return self.header_section_end(scan, lf + 1).map(Some);
            }
            match window.get(lf + 1) {
                // Wait for the byte that tells whether the line is folded.
                None => {
                    scan.scan = lf;
                    break;
                }
                Some(&b) if is_wsp(b) => scan.scan = lf + 1,
                Some(_) => {
                    self.header_line(scan, &window[scan.line_start..cr])?;
                    scan.line_start = lf + 1;
                    scan.scan = lf + 1;
                }
            }
        }
        if self.buf.len() > limit {
            return Err(Error::TooLarge {
                size: self.buf.len(),
                limit,
            });
        }
        Ok(None)
    }

    /// Accounts for one complete logical line (without its CRLF), which starts at
    /// `scan.line_start` in the message.
    fn header_line(&self, scan: &mut HeaderScan, line: &[u8]) -> Result<()> {
        scan.lines += 1;
        if scan.lines == 1 {
            return Ok(()); // the start line
        }
        if scan.lines - 1 > self.config.max_headers {
            return Err(Error::TooManyHeaders {
                limit: self.config.max_headers,
            });
        }
        let Some((value, offset)) = content_length(line) else {
            return Ok(());
        };
        let offset = scan.line_start + offset;
        let value = parse_content_length(value, offset)?;
        match scan.content_length {
            Some(seen) if seen != value => Err(Error::InvalidContentLength {
                offset,
                reason: "conflicting Content-Length headers",
            }),
            _ => {
                scan.content_length = Some(value);
                Ok(())
            }
        }
    }

    /// The header section ends at `header_len`: checks Content-Length and the size
    /// limit and returns the message length.
    fn header_section_end(&self, scan: &HeaderScan, header_len: usize) -> Result<usize> {
        let body_len = scan.content_length.ok_or(Error::MissingContentLength)?;
        let limit = self.config.max_message_size;
        match header_len.checked_add(body_len) {
            Some(len) if len <= limit => Ok(len),
            _ => Err(Error::TooLarge {
                size: header_len.saturating_add(body_len),
                limit,
            }),
        }
    }
}

/// If `line` is a Content-Length header (full or compact name, any case, optional
/// white space before the colon), returns its value with surrounding white space
/// trimmed, and the value's offset in `line`.
fn content_length(line: &[u8]) -> Option<(&[u8], usize)> {
    // Cheap rejection of every other header, without scanning the name.
    let name_len = match line.first()? {
        b'l' | b'L' => 1,
        b'c' | b'C' if line.len() >= 14 && line[..14].eq_ignore_ascii_case(b"content-length") => 14,
        _ => return None,
    };
    if line.get(name_len).is_some_and(|&b| is_token_char(b)) {
        return None; // a longer name such as "Content-Lengths"
    }
    let [b':', value @ ..] = sws(&line[name_len..]) else {
        return None; // not a header line of that name
    };
    let offset = line.len() - sws(value).len();
    Some((trim_lws(value), offset))
}

/// Parses a Content-Length value (`1*DIGIT`) found at `offset` in the message.
fn parse_content_length(value: &[u8], offset: usize) -> Result<usize> {
    let invalid = |reason| Error::InvalidContentLength { offset, reason };
    if value.is_empty() {
        return Err(invalid("empty value"));
    }
    if value.contains(&b',') {
        return Err(invalid("multiple values"));
    }
    if !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid("not a non-negative decimal number"));
    }
    let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    parse_decimal(value, max)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| invalid("value too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(line: &[u8]) -> Option<(&[u8], usize)> {
        content_length(line)
    }

    #[test]
    fn recognises_content_length_names() {
        assert_eq!(cl(b"Content-Length: 12"), Some((&b"12"[..], 16)));
        assert_eq!(cl(b"content-length:12"), Some((&b"12"[..], 15)));
        assert_eq!(cl(b"CONTENT-LENGTH \t:  12  "), Some((&b"12"[..], 19)));
        assert_eq!(cl(b"l: 0"), Some((&b"0"[..], 3)));
        assert_eq!(cl(b"L :7"), Some((&b"7"[..], 3)));
        assert_eq!(cl(b"Content-Length:\r\n 12"), Some((&b"12"[..], 18)));
        assert_eq!(cl(b"Content-Length:"), Some((&b""[..], 15)));
        assert_eq!(cl(b"Content-Lengthx: 1"), None);
        assert_eq!(cl(b"Content-Type: text/plain"), None);
        assert_eq!(cl(b"lx: 1"), None);
        assert_eq!(cl(b"Content-Length 12"), None);
        assert_eq!(cl(b""), None);
    }

    #[test]
    fn parses_content_length_values() {
        assert_eq!(parse_content_length(b"0", 0), Ok(0));
        assert_eq!(parse_content_length(b"0012", 0), Ok(12));
        let reason = |v: &[u8]| match parse_content_length(v, 9) {
            Err(Error::InvalidContentLength { offset: 9, reason }) => reason,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(reason(b""), "empty value");
        assert_eq!(reason(b"12, 12"), "multiple values");
        assert_eq!(reason(b"-1"), "not a non-negative decimal number");
        assert_eq!(reason(b"1 2"), "not a non-negative decimal number");
        assert_eq!(reason(b"99999999999999999999999"), "value too large");
    }

    #[test]
    fn header_scan_is_incremental() {
        let mut f = Framer::default();
        f.push(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        // The CRLF ending "Via: x" waits for the next byte; nothing before it is
        // looked at again.
        let State::Headers(s) = f.state else {
            panic!("{:?}", f.state)
        };
        assert_eq!((s.lines, s.line_start, s.scan), (1, 24, 31));
        f.push(b"X: y");
        assert_eq!(f.next_frame(), Ok(None));
        let State::Headers(s) = f.state else {
            panic!("{:?}", f.state)
        };
        assert_eq!((s.lines, s.line_start, s.scan), (2, 32, 36));
        // Folded continuation: no new line counted.
        f.push(b"\r\n\tz\r\nl: 0\r\n\r");
        assert_eq!(f.next_frame(), Ok(None));
        let State::Headers(s) = f.state else {
            panic!("{:?}", f.state)
        };
        assert_eq!((s.lines, s.content_length), (4, Some(0)));
        f.push(b"\n");
        assert!(matches!(f.next_frame(), Ok(Some(Frame::Message(_)))));
        assert_eq!(f.state, State::Boundary);
    }

    #[test]
    fn one_byte_pushes_of_a_large_header_section_stay_linear() {
        // 60 KB of headers fed byte by byte: quadratic rescanning would take
        // billions of steps here.
        let mut msg = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        while msg.len() < 60_000 {
            msg.extend_from_slice(
                b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        msg.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let mut f = Framer::new(FramerConfig {
            max_headers: 1000,
            ..FramerConfig::default()
        });
        let mut frames = Vec::new();
        for b in &msg {
            f.push(std::slice::from_ref(b));
            while let Some(frame) = f.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![Frame::Message(Bytes::from(msg))]);
    }

    #[test]
    fn poisoned_framer_drops_input() {
        let mut f = Framer::new(FramerConfig {
            max_message_size: 10,
            ..FramerConfig::default()
        });
        f.push(b"INVITE sip:a@b SIP/2.0\r\n");
        let e = f.next_frame().unwrap_err();
        assert!(matches!(
            e,
            Error::TooLarge {
                size: 24,
                limit: 10
            }
        ));
        assert!(f.is_poisoned());
        assert_eq!(f.buffered(), 0);
        f.push(b"more");
        assert_eq!(f.buffered(), 0);
        assert_eq!(f.next_frame(), Err(e));
    }
}
