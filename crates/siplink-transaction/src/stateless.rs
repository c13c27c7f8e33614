//! Stateless replies (as Kamailio's `sl` module sends them): a response built
//! from the request alone, with a To tag derived from the request, so that no
//! transaction is created or kept.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use siplink_message::{HeaderName, Message, MessageBuilder, Method};

/// Prefix of every stateless To tag (it tells them apart in traces).
const TAG_PREFIX: &str = "sl";

/// Builds stateless replies: the To tag is a keyed hash (SipHash with a key
/// drawn from the OS when this value is created) of the request's Call-ID,
/// From tag and top Via branch (the whole top Via line without a branch). A
/// retransmitted request therefore gets the same tag, and the ACK for a
/// stateless non-2xx reply (which carries the INVITE's Via branch, RFC 3261
/// §17.1.1.3) can be recognised without any state: its To tag is the tag this
/// value computes for it.
///
/// Cheap to clone: clones share the key.
///
/// ```
/// use siplink_message::{HeaderName, MessageBuilder, Method};
/// use siplink_transaction::StatelessReplies;
///
/// let invite = MessageBuilder::request(Method::Invite, "sip:bob@example.com")
///     .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK74bf9")
///     .header(HeaderName::From, "<sip:alice@example.com>;tag=9fxced76sl")
///     .header(HeaderName::To, "<sip:bob@example.com>")
///     .header(HeaderName::CallId, "3848276298220188511@example.com")
///     .header(HeaderName::CSeq, "1 INVITE")
///     .build()?;
/// let sl = StatelessReplies::new();
/// let a = sl.response(&invite, 407).build()?;
/// let b = sl.response(&invite, 407).build()?;
/// assert_eq!(a.to()?.tag(), b.to()?.tag()); // a retransmission gets the same tag
/// assert_eq!(a.to()?.tag(), Some(sl.to_tag(&invite).as_str()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct StatelessReplies {
    key: RandomState,
}

impl fmt::Debug for StatelessReplies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatelessReplies { .. }")
    }
}

impl StatelessReplies {
    /// A new key.
    pub fn new() -> StatelessReplies {
        StatelessReplies::default()
    }

    /// The To tag of a stateless reply to `request` (the same for every
    /// retransmission of it, and for the ACK of an INVITE answered so).
    pub fn to_tag(&self, request: &Message) -> String {
        let mut h = self.key.build_hasher();
        h.write(b"call-id");
        h.write(request.header(HeaderName::CallId).unwrap_or_default());
        h.write(b"from-tag");
        if let Ok(from) = request.from() {
            h.write(from.tag().unwrap_or_default().as_bytes());
        }
        h.write(b"via");
        match request.top_via() {
            Ok(via) => match via.branch() {
                Some(b) => h.write(b.as_bytes()),
                None => h.write(via.to_string().as_bytes()),
            },
            Err(_) => h.write(b"-"),
        }
        format!("{TAG_PREFIX}{:016x}", h.finish())
    }

    /// Starts the stateless response `status` to `request` (RFC 3261 §8.2.6:
    /// Via, From, Call-ID, CSeq copied; To copied and, when it has no tag,
    /// given [`to_tag`](Self::to_tag)). Add headers, then build.
    pub fn response(&self, request: &Message, status: u16) -> MessageBuilder {
        let tag = self.to_tag(request);
        request.response_with_tag(status, Some(&tag))
    }

    /// `response` (built by the TU for `request`, e.g. a registrar's 401) with
    /// the stateless To tag put in place of the one it was given, when the
    /// request had no To tag (an out-of-dialog request). An in-dialog
    /// request's To tag is kept.
    pub fn retag(&self, request: &Message, mut response: Message) -> Message {
        let request_has_tag = request.to().map(|t| t.tag().is_some()).unwrap_or(true);
        if request_has_tag || response.status() == Some(100) {
            return response;
        }
        let tag = self.to_tag(request);
        // Only the tag is read (not the whole To of the response).
        if response.to_tag().ok().flatten() == Some(tag.as_str()) {
            return response;
        }
        if let Some(to) = request.header(HeaderName::To) {
            // One allocation: the request's To (folds made spaces by the
            // edit) and the tag.
            let mut v = Vec::with_capacity(to.len() + 5 + tag.len());
            v.extend_from_slice(to);
            v.extend_from_slice(b";tag=");
            v.extend_from_slice(tag.as_bytes());
            response.replace_first_value(HeaderName::To, v);
        }
        response
    }

    /// Whether `ack` acknowledges a stateless non-2xx reply of this key: its
    /// To tag is the stateless tag computed from it. Such an ACK is absorbed.
    pub fn is_own_ack(&self, ack: &Message) -> bool {
        if ack.method() != Some(&Method::Ack) {
            return false;
        }
        let Some(tag) = ack.to().ok().and_then(|t| t.tag().map(str::to_owned)) else {
            return false;
        };
        tag.starts_with(TAG_PREFIX) && tag == self.to_tag(ack)
    }
}
