//! Transaction matching keys (RFC 3261 §17.1.3, §17.2.3).

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use siplink_message::{Message, Method};

use crate::error::{Error, Result};

/// Matches responses to client transactions (RFC 3261 §17.1.3): the branch of the
/// top Via and the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Branch of the top Via.
    pub branch: String,
    /// Method of the request (CSeq method of its responses).
    pub method: Method,
}

impl ClientKey {
    /// The key of a request a client transaction sends.
    pub fn of_request(request: &Message) -> Result<ClientKey> {
        let method = request.method().ok_or(Error::NotARequest)?;
        let cseq = request.cseq()?;
        if &cseq.method != method {
            return Err(Error::CSeqMismatch);
        }
        let branch = request.top_via()?.branch().ok_or(Error::MissingBranch)?;
        Ok(ClientKey {
            branch: branch.to_owned(),
            method: method.clone(),
        })
    }

    /// The key a response matches.
    pub fn of_response(response: &Message) -> Result<ClientKey> {
        if !response.is_response() {
            return Err(Error::NotAResponse);
        }
        let branch = response.top_via()?.branch().ok_or(Error::MissingBranch)?;
        Ok(ClientKey {
            branch: branch.to_owned(),
            method: response.cseq()?.method.clone(),
        })
    }
}

/// Matches requests to server transactions (RFC 3261 §17.2.3).
///
/// ACK is keyed as INVITE so that it finds the INVITE transaction it acknowledges.
/// With the RFC 2543 key an ACK's To tag is the tag of the final response, so a
/// [`TransactionTable`](crate::TransactionTable) indexes INVITE transactions a
/// second time under that tag once they send a final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKey {
    /// Branch with the magic cookie: branch, sent-by and method.
    Rfc3261 {
        /// Branch of the top Via.
        branch: String,
        /// sent-by of the top Via (`host[:port]`, host lower-cased).
        sent_by: String,
        /// Method (INVITE for ACK).
        method: Method,
    },
    /// Branch without the magic cookie (RFC 3261 §17.2.3, RFC 2543 §17);
    /// boxed, so that the common key stays small.
    Rfc2543(Box<Rfc2543Key>),
}

/// Hashes only the branch of an RFC 3261 key (it tells transactions apart:
/// RFC 3261 §8.1.1.7), so that every table lookup reads fewer bytes; the
/// sent-by and the method are compared by `Eq` (equal keys still hash alike).
impl Hash for ServerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            ServerKey::Rfc3261 { branch, .. } => state.write(branch.as_bytes()),
            ServerKey::Rfc2543(k) => {
                state.write_u8(0xff);
                k.hash(state);
            }
        }
    }
}

/// The fields an RFC 2543 request (no magic cookie in its branch) is matched
/// on (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc2543Key {
    /// Request-URI as written.
    pub request_uri: Bytes,
    /// From tag.
    pub from_tag: Option<String>,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method (INVITE for ACK).
    pub method: Method,
    /// The whole top Via, as written back by [`siplink_message::headers::Via`]'s `Display`.
    pub top_via: String,
    /// To tag.
    pub to_tag: Option<String>,
}

impl ServerKey {
    /// The key of a received request (ACK maps to INVITE).
    pub fn of_request(request: &Message) -> Result<ServerKey> {
        let method = request.method().ok_or(Error::NotARequest)?;
        let method = if *method == Method::Ack {
            Method::Invite
        } else {
            method.clone()
        };
        let via = request.top_via()?;
        if via.has_magic_cookie() {
            // One allocation: the host, lower-cased in place, and the port.
            let mut sent_by = String::with_capacity(64);
            let _ = write!(sent_by, "{}", via.host);
            sent_by.make_ascii_lowercase();
            if let Some(p) = via.port {
                let _ = write!(sent_by, ":{p}");
            }
            return Ok(ServerKey::Rfc3261 {
                branch: via.branch().unwrap_or_default().to_owned(),
                sent_by,
                method,
            });
        }
        let cseq = request.cseq()?;
        Ok(ServerKey::Rfc2543(Box::new(Rfc2543Key {
            request_uri: request
                .request_uri_bytes()
                .cloned()
                .ok_or(Error::NotARequest)?,
            from_tag: request.from()?.tag().map(str::to_owned),
            call_id: request.call_id()?.to_owned(),
            cseq: cseq.seq,
            method,
            top_via: via.to_string(),
            to_tag: request.to()?.tag().map(str::to_owned),
        })))
    }

    /// The key of the INVITE that a CANCEL with this key cancels.
    pub fn cancelled_invite(&self) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Rfc3261 { method, .. } => *method = Method::Invite,
            ServerKey::Rfc2543(k) => k.method = Method::Invite,
        }
        k
    }

    /// For an RFC 2543 key, the same key with another To tag (`None` for an
    /// RFC 3261 key).
    pub fn with_to_tag(&self, tag: Option<&str>) -> Option<ServerKey> {
        match self {
            ServerKey::Rfc3261 { .. } => None,
            ServerKey::Rfc2543(k) => {
                let mut k = k.clone();
                k.to_tag = tag.map(str::to_owned);
                Some(ServerKey::Rfc2543(k))
            }
        }
    }

    /// Whether this is an RFC 2543 (no magic cookie) key.
    pub fn is_rfc2543(&self) -> bool {
        matches!(self, ServerKey::Rfc2543(_))
    }
}

/// Detects merged requests (RFC 3261 §8.2.2.2): same From tag, Call-ID and CSeq
/// on a request without To tag, arriving on another branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MergeKey {
    from_tag: String,
    call_id: String,
    cseq: u32,
    method: Method,
}

impl MergeKey {
    /// The merge key of an out-of-dialog request (no To tag), if it has one.
    pub(crate) fn of_request(request: &Message) -> Option<MergeKey> {
        let method = request.method()?;
        if *method == Method::Ack || *method == Method::Cancel {
            return None;
        }
        if request.to().ok()?.tag().is_some() {
            return None;
        }
        Some(MergeKey {
            from_tag: request.from().ok()?.tag()?.to_owned(),
            call_id: request.call_id().ok()?.to_owned(),
            cseq: request.cseq().ok()?.seq,
            method: method.clone(),
        })
    }
}
