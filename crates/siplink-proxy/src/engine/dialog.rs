//! The dialog record: what an established call keeps between its answer and
//! its end, defined once for every later use (routing, ending the call,
//! forwarding 2xx retransmissions, call records, media).

use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::headers::HeaderName;
use siplink_message::{Message, MessageBuilder, Method};
use siplink_transport::FlowId;

use super::NextHop;
use super::dispatch::Refresher;
use super::timers::TimerKey;

/// A dialog's identity: Call-ID and both tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogKey {
    /// The Call-ID.
    pub call_id: String,
    /// The caller's (From) tag.
    pub caller_tag: String,
    /// The callee's (To) tag.
    pub callee_tag: String,
}

/// One side of a call, seen from the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// Its tag.
    pub tag: String,
    /// The From/To header value that names this side (with its tag), as it
    /// sent it.
    pub party: Bytes,
    /// Its remote target (the Contact URI it gave).
    pub target: String,
    /// The Route set from the proxy towards this side (the Record-Route
    /// entries between the proxy and it, nearest first).
    pub route: Vec<String>,
    /// Where requests and responses for this side go: its flow, or the
    /// address the call used.
    pub hop: NextHop,
    /// The highest CSeq number this side has sent.
    pub cseq: u32,
}

impl Leg {
    /// The flow this side is reached over, if any.
    pub fn flow(&self) -> Option<FlowId> {
        match self.hop {
            NextHop::Flow { flow, .. } => Some(flow),
            NextHop::Addr(_) => None,
        }
    }
}

/// The media leg of a call (relay or bridge through rtpengine): what the
/// later SDP exchanges of the dialog (re-INVITE, UPDATE, the ACK of a late
/// offer) and its end (the rtpengine `delete`) need, as
/// [`crate::media_policy`] decided it. Filled in by the engine when the
/// answered call's connection has media `relay` or `bridge`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MediaLeg {
    /// The connection's media settings when the call was set up.
    pub media: crate::media::ConnectionMedia,
    /// The rtpengine instance holding the call (its ng address), when the
    /// driver tells it.
    pub instance: Option<std::net::SocketAddr>,
    /// Whether the phone's leg is WebRTC ([`Ask::phone_webrtc`](crate::media_policy::Ask::phone_webrtc)).
    pub phone_webrtc: bool,
    /// Whether the phone's flow is a WebSocket (WS/WSS).
    pub phone_websocket: bool,
    /// Whether the PBX placed the call (else the phone did).
    pub pbx_is_caller: bool,
    /// The Via branch of the fork that was answered (rtpengine's `via-branch`).
    pub via_branch: Option<String>,
    /// The last offer as its answerer received it (rtpengine's SDP), to
    /// check the answer for a common codec.
    pub offered: Option<String>,
    /// The CSeq and SDP of the last 2xx to an INVITE sent on with
    /// rtpengine's SDP: a retransmission of that 2xx carries the same SDP.
    pub last_2xx: Option<(u32, String)>,
}

/// An RFC 4028 session timer on a dialog, watched by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    /// The session interval (Session-Expires) in force.
    pub interval: Duration,
    /// Who refreshes, as the last 2xx said.
    pub refresher: Option<Refresher>,
    /// When the session expires without a refresh.
    pub expires_at: Instant,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// A BYE from the caller.
    ByeFromCaller,
    /// A BYE from the callee.
    ByeFromCallee,
    /// The caller cancelled before the answer.
    Cancelled,
    /// Not answered: the final response sent to the caller.
    Failed(u16),
    /// One side's flow closed; the other side got a BYE.
    FlowClosed(FlowId),
    /// The RFC 4028 session interval ran out; both sides got a BYE.
    SessionExpired,
    /// The maximum call duration was reached; both sides got a BYE.
    MaxDuration,
    /// The media relay reported no media for too long (rtpengine's media
    /// timeout); both sides got a BYE.
    MediaTimeout,
    /// The media relay failed on an SDP of the established call (an answer
    /// in an ACK or in a re-INVITE's 2xx), or lost the call (its instance is
    /// down); both sides got a BYE.
    MediaFailed,
}

/// Everything an established call keeps: created at the first 2xx of each
/// answered branch, gone at the end of the call.
#[derive(Debug, Clone)]
pub struct DialogRecord {
    /// Call-ID and tags.
    pub key: DialogKey,
    /// The caller's side.
    pub caller: Leg,
    /// The callee's side.
    pub callee: Leg,
    /// The connection that carried the call (`None`: to one of our users).
    pub connection: Option<String>,
    /// When the 2xx went through.
    pub answered_at: Instant,
    /// The media leg (`None`: media off on the call's connection).
    pub media: Option<MediaLeg>,
    /// When the call is ended whatever happens (maximum call duration).
    pub max_end: Instant,
    /// The RFC 4028 session timer, when one was negotiated.
    pub session: Option<SessionTimer>,
    /// What the caller's CSeq numbers are raised by towards the callee: the
    /// proxy resent the INVITE with a connection's credentials (each resend
    /// adds one). Requests from the caller go out that much higher, their
    /// responses come back with the caller's numbers.
    pub cseq_delta: u32,
    /// The From value the callee knows the caller by, when the proxy
    /// presented another identity (an outbound registration's): requests
    /// from the caller carry it, requests from the callee have their To put
    /// back to the caller's From, and the responses are mapped back. (Boxed:
    /// most calls have none, and the record stays small.)
    pub caller_as: Option<Box<Bytes>>,
    pub(crate) session_timer: Option<TimerKey>,
    pub(crate) max_timer: Option<TimerKey>,
}

impl DialogRecord {
    /// How a request from the caller (`from_caller`) or the callee is
    /// mapped, and what its responses get back.
    pub(crate) fn mapping(&self, from_caller: bool) -> super::fork::Mapping {
        match (&self.caller_as, from_caller) {
            (Some(_), true) => super::fork::Mapping {
                cseq_delta: self.cseq_delta,
                restore: Some((HeaderName::From, self.caller.party.clone())),
            },
            (Some(presented), false) => super::fork::Mapping {
                cseq_delta: 0,
                restore: Some((HeaderName::To, Bytes::clone(presented))),
            },
            (None, true) => super::fork::Mapping {
                cseq_delta: self.cseq_delta,
                restore: None,
            },
            (None, false) => super::fork::Mapping::default(),
        }
    }

    /// Maps a request of this dialog for the other side (see
    /// [`mapping`](Self::mapping)).
    pub(crate) fn present(&self, from_caller: bool, request: &mut Message) {
        if from_caller {
            if self.cseq_delta > 0
                && let Ok(c) = request.cseq()
            {
                let value = format!("{} {}", c.seq.wrapping_add(self.cseq_delta), c.method);
                request.set_header(HeaderName::CSeq, value);
            }
            if let Some(presented) = &self.caller_as {
                request.set_header(HeaderName::From, Bytes::clone(presented));
            }
        } else if self.caller_as.is_some() {
            request.set_header(HeaderName::To, self.caller.party.clone());
        }
    }

    /// Which side sent a request with this From tag: `Some(true)` the caller,
    /// `Some(false)` the callee.
    pub fn from_caller(&self, from_tag: &str) -> Option<bool> {
        if from_tag == self.key.caller_tag {
            Some(true)
        } else if from_tag == self.key.callee_tag {
            Some(false)
        } else {
            None
        }
    }

    /// Where a 2xx retransmission for the caller goes (RFC 6026 lets a proxy
    /// forward it statelessly once the INVITE's server transaction is gone):
    /// the caller's hop.
    pub fn caller_hop(&self) -> &NextHop {
        &self.caller.hop
    }

    /// A request of `method` from the proxy to one side (`to_caller`), as if
    /// the other side sent it: its From/To, Call-ID, the next CSeq of the
    /// other side, the side's target and Route set. `branch` is the Via
    /// branch (the endpoint fills in the sent-by). `reason`: a Reason header
    /// text (RFC 3326).
    pub(crate) fn request_to(
        &self,
        to_caller: bool,
        method: Method,
        cseq: u32,
        branch: &str,
        reason: Option<&str>,
    ) -> Option<Message> {
        let (to, from) = if to_caller {
            (&self.caller, &self.callee)
        } else {
            (&self.callee, &self.caller)
        };
        let mut b = MessageBuilder::request(method.clone(), &to.target)
            .header(
                HeaderName::Via,
                format!("SIP/2.0/UDP 0.0.0.0:0;branch={branch};rport"),
            )
            .header(HeaderName::MaxForwards, 70);
        for r in &to.route {
            b = b.header(HeaderName::Route, r);
        }
        b = b
            .header_bytes(HeaderName::From, from.party.clone())
            .header_bytes(HeaderName::To, to.party.clone())
            .header(HeaderName::CallId, &self.key.call_id)
            .header(HeaderName::CSeq, format!("{cseq} {method}"));
        if let Some(text) = reason {
            b = b.extension_header("Reason", format!("SIP;text=\"{text}\""));
        }
        b.build().ok()
    }
}

/// The Record-Route entries of a 2xx split around ours: those above (towards
/// the callee, nearest us first) and those below (towards the caller,
/// nearest us first).
pub(crate) fn split_route_set(
    response: &Message,
    is_ours: impl Fn(&siplink_message::uri::Uri) -> bool,
) -> (Vec<String>, Vec<String>) {
    let rr = response
        .record_route()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    let first_ours = rr.iter().position(|n| is_ours(&n.uri));
    let last_ours = rr.iter().rposition(|n| is_ours(&n.uri));
    match (first_ours, last_ours) {
        (Some(f), Some(l)) => {
            let callee: Vec<String> = rr[..f].iter().rev().map(|n| n.to_string()).collect();
            let caller: Vec<String> = rr[l + 1..].iter().map(|n| n.to_string()).collect();
            (callee, caller)
        }
        _ => (Vec::new(), Vec::new()),
    }
}
