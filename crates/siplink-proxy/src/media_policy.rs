//! The media policy: what to ask rtpengine at each SDP exchange of a call.
//! A pure function ([`decide`]) of the connection's media settings, the call's
//! direction, the stage of the offer/answer exchange and the phone's leg; it
//! does no I/O and keeps no state (what a later stage needs, such as whether
//! the phone turned out to be WebRTC, comes back in the [`Ask`] for the caller
//! to keep in the dialog).
//!
//! | mode | phone | SDP from → to | flags |
//! |---|---|---|---|
//! | `off` | any | any | none: the SDP passes unchanged |
//! | `relay`, or `bridge` with a non-WebRTC phone | any | any | `replace-origin`, `replace-session-connection` |
//! | `bridge` | WebRTC | phone offer → PBX | `transport-protocol RTP/AVP`, `ICE=remove`, `DTLS=off`, `SDES-off`, `rtcp-mux-demux`, `replace-origin`, `replace-session-connection` |
//! | `bridge` | WebRTC | PBX answer → phone | `ICE=force`, `rtcp-mux-require` |
//! | `bridge` | WebRTC | PBX offer → phone | `transport-protocol UDP/TLS/RTP/SAVPF`, `ICE=force`, `rtcp-mux-require`, `generate-mid` |
//! | `bridge` | WebRTC | phone answer → PBX | `transport-protocol RTP/AVP`, `ICE=remove`, `rtcp-mux-demux` |
//!
//! Every request also carries `call-id`, `from-tag` (the offerer's tag), the
//! `to-tag` (the answerer's: always in an answer, in an offer once known), the fork's `via-branch` when given,
//! and `direction` (the rtpengine interfaces facing the sender and the
//! receiver) when the instance names them. With `transcode = true`, a bridged
//! offer towards the PBX adds `codec-transcode` PCMU and PCMA, and one
//! towards a browser adds `codec-transcode` opus.
//!
//! The phone's leg is WebRTC when its flow is WS/WSS, or an SDP it sent is
//! (`UDP/TLS/RTP/SAVPF`, `RTP/SAVPF`, a fingerprint or ICE credentials): decided
//! per fork branch, so a PBX call forked to a browser and a desk phone gets a
//! WebRTC offer on one branch and a plain one on the other.
//!
//! ```
//! use siplink_proxy::media::{ConnectionMedia, MediaMode};
//! use siplink_proxy::media_policy::{decide, CallDirection, Decision, PhoneLeg, SdpEvent, SdpIds, Stage};
//! use siplink_message::Transport;
//!
//! let pcmu = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
//!             m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
//! let event = SdpEvent {
//!     media: ConnectionMedia { mode: MediaMode::Bridge, transcode: false },
//!     direction: CallDirection::PbxToPhone,
//!     stage: Stage::InviteOffer,
//!     phone: PhoneLeg::on(Transport::Wss),
//!     ids: SdpIds { call_id: "c1", caller_tag: "pbx-tag", callee_tag: None, via_branch: Some("z9hG4bK-b1") },
//!     sdp: pcmu,
//!     offer: None,
//!     instance: None,
//! };
//! let Decision::Ask(ask) = decide(&event) else { panic!() };
//! let siplink_media::Request::Offer(offer) = &ask.request else { panic!() };
//! assert_eq!(offer.transport_protocol.as_deref(), Some("UDP/TLS/RTP/SAVPF"));
//! assert!(ask.phone_webrtc);
//! ```

use std::net::IpAddr;

use siplink_media::{CodecOptions, DeleteRequest, Ice, Replace, Request, RtcpMux, Sdp, SdpRequest};
use siplink_message::Transport;

use crate::media::{ConnectionMedia, MediaMode, MediaSide, RtpEngineInstance};

/// Codecs every browser's WebRTC stack decodes (case-insensitive names).
pub const BROWSER_CODECS: [&str; 4] = ["opus", "G722", "PCMU", "PCMA"];

/// A party of a proxied call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The phone (a user of the proxy); its rtpengine side is `external`.
    Phone,
    /// The PBX (the connection); its rtpengine side is `internal`.
    Pbx,
}

impl Party {
    /// The other party.
    pub fn other(self) -> Party {
        match self {
            Party::Phone => Party::Pbx,
            Party::Pbx => Party::Phone,
        }
    }
}

impl RtpEngineInstance {
    /// The side facing `party`: [`internal`](Self::internal) for the PBX,
    /// [`external`](Self::external) for the phone.
    pub fn side(&self, party: Party) -> &MediaSide {
        match party {
            Party::Pbx => &self.internal,
            Party::Phone => &self.external,
        }
    }
}

/// Who placed the call (sent the dialog-creating INVITE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallDirection {
    /// A phone calls out through a connection.
    PhoneToPbx,
    /// The PBX calls a phone.
    PbxToPhone,
}

impl CallDirection {
    /// The caller.
    pub fn caller(self) -> Party {
        match self {
            CallDirection::PhoneToPbx => Party::Phone,
            CallDirection::PbxToPhone => Party::Pbx,
        }
    }

    /// The callee.
    pub fn callee(self) -> Party {
        self.caller().other()
    }
}

/// Where in the offer/answer exchange an SDP body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The offer in the initial INVITE (caller → callee), on one fork branch.
    InviteOffer,
    /// The answer in a 183 to that INVITE: early media (callee → caller).
    EarlyAnswer,
    /// The answer in the 2xx to that INVITE (callee → caller).
    Answer,
    /// The offer in the 2xx to an INVITE without SDP (callee → caller).
    LateOffer,
    /// The answer to a late offer, in the ACK (caller → callee).
    AckAnswer,
    /// An offer in a re-INVITE or UPDATE (hold, resume, codec change) sent by `from`.
    ReOffer {
        /// The party that sent the offer.
        from: Party,
    },
    /// The answer to a re-INVITE or UPDATE, sent by `from`.
    ReAnswer {
        /// The party that sent the answer.
        from: Party,
    },
}

impl Stage {
    /// Whether the SDP is an offer.
    pub fn is_offer(self) -> bool {
        matches!(
            self,
            Stage::InviteOffer | Stage::LateOffer | Stage::ReOffer { .. }
        )
    }

    /// The party that sent the SDP.
    pub fn sender(self, direction: CallDirection) -> Party {
        match self {
            Stage::InviteOffer | Stage::AckAnswer => direction.caller(),
            Stage::EarlyAnswer | Stage::Answer | Stage::LateOffer => direction.callee(),
            Stage::ReOffer { from } | Stage::ReAnswer { from } => from,
        }
    }

    /// Whether the SDP came in a request that can still be answered with an
    /// error (an INVITE, re-INVITE or UPDATE offer); else (a response or an
    /// ACK) a rejection must end the branch or the call instead.
    pub fn answerable(self) -> bool {
        matches!(self, Stage::InviteOffer | Stage::ReOffer { .. })
    }
}

/// What is known of the phone's leg on this fork branch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PhoneLeg {
    /// The phone's flow is WebSocket (WS or WSS).
    pub websocket: bool,
    /// An earlier SDP from this phone in this dialog was WebRTC (kept from
    /// [`Ask::phone_webrtc`]).
    pub webrtc: bool,
}

impl PhoneLeg {
    /// The leg of a phone whose flow uses `transport`.
    pub fn on(transport: Transport) -> PhoneLeg {
        PhoneLeg {
            websocket: matches!(transport, Transport::Ws | Transport::Wss),
            webrtc: false,
        }
    }
}

/// The SIP identifiers rtpengine keys a call's legs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpIds<'a> {
    /// The Call-ID.
    pub call_id: &'a str,
    /// The caller's tag (the From tag of the initial INVITE).
    pub caller_tag: &'a str,
    /// The callee's tag (the To tag of its response on this branch), once known.
    pub callee_tag: Option<&'a str>,
    /// The proxy's Via branch on this fork branch (tells forks apart).
    pub via_branch: Option<&'a str>,
}

/// One SDP body passing through the proxy.
#[derive(Debug, Clone, Copy)]
pub struct SdpEvent<'a> {
    /// The connection's media settings.
    pub media: ConnectionMedia,
    /// Who placed the call.
    pub direction: CallDirection,
    /// Where in the exchange the body is.
    pub stage: Stage,
    /// The phone's leg on this branch.
    pub phone: PhoneLeg,
    /// The identifiers.
    pub ids: SdpIds<'a>,
    /// The SDP body.
    pub sdp: &'a str,
    /// For an answer: the offer it answers as the answerer received it (the
    /// SDP rtpengine returned for the offer), to check for a common codec.
    pub offer: Option<&'a str>,
    /// The rtpengine instance the call is on (for its interface names and
    /// advertised addresses), when known.
    pub instance: Option<&'a RtpEngineInstance>,
}

/// What to do with an SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: forward the SDP unchanged (media `off`).
    Pass,
    /// Send this request to rtpengine and forward the SDP it returns instead.
    Ask(Box<Ask>),
    /// Refuse the SDP.
    Reject(Reject),
}

/// An rtpengine request for an SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// [`Request::Offer`] or [`Request::Answer`].
    pub request: Request,
    /// Whether the phone's leg is WebRTC (keep it for the dialog's later stages).
    pub phone_webrtc: bool,
    /// The address rtpengine should advertise in the SDP it returns (the
    /// receiver's side `address`), when configured: a different one in the
    /// reply is a misconfiguration that means one-way audio.
    pub expect_address: Option<IpAddr>,
}

/// An SDP the proxy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The SIP status: 488 (no usable codec) or 400 (unparseable SDP); when
    /// the SDP came in a response or an ACK, the Reason of the CANCEL/BYE.
    pub status: u16,
    /// Why, for the reason phrase / Reason header and the log.
    pub reason: String,
    /// Whether the request that carried the SDP can be answered with
    /// `status` ([`Stage::answerable`]); otherwise end the branch or the call.
    pub respond: bool,
}

/// Why a call's (or a branch's) media ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaEnd {
    /// A BYE ended the dialog.
    Bye,
    /// The caller cancelled the INVITE.
    Cancel,
    /// The INVITE failed (final non-2xx on every branch), or the proxy
    /// rejected an SDP.
    Failure,
    /// A timeout: transaction, session timer, maximum duration or rtpengine's
    /// media timeout.
    Timeout,
    /// The dialog ended for any other reason (shutdown, reload).
    DialogEnd,
    /// One fork branch failed or was cancelled while others go on: only that
    /// branch (its `via-branch`) is deleted.
    BranchEnded,
}

/// The `delete` that leaves no rtpengine call behind (`delete-delay` 0), or
/// `None` when the connection's media is off. For [`MediaEnd::BranchEnded`]
/// it is narrowed to `via_branch`.
pub fn delete(media: ConnectionMedia, ids: &SdpIds<'_>, end: MediaEnd) -> Option<DeleteRequest> {
    if media.mode == MediaMode::Off {
        return None;
    }
    let mut d = DeleteRequest::call(ids.call_id)
        .from_tag(ids.caller_tag)
        .delete_delay(0);
    if end == MediaEnd::BranchEnded {
        if let Some(b) = ids.via_branch {
            d = d.via_branch(b);
        }
        if let Some(t) = ids.callee_tag {
            d.to_tag = Some(t.to_owned());
        }
    }
    Some(d)
}

/// Decides what to ask rtpengine for one SDP body. See the [module](self).
pub fn decide(ev: &SdpEvent<'_>) -> Decision {
    if ev.media.mode == MediaMode::Off {
        return Decision::Pass;
    }
    let respond = ev.stage.answerable();
    let reject = |status: u16, reason: String| {
        Decision::Reject(Reject {
            status,
            reason,
            respond,
        })
    };
    let sdp: Sdp = match ev.sdp.parse() {
        Ok(s) => s,
        Err(e) => return reject(400, format!("the SDP does not parse: {e}")),
    };
    let sender = ev.stage.sender(ev.direction);
    let receiver = sender.other();
    let phone_webrtc =
        ev.phone.websocket || ev.phone.webrtc || (sender == Party::Phone && sdp.is_webrtc());
    let bridge = ev.media.mode == MediaMode::Bridge && phone_webrtc;
    let offer = ev.stage.is_offer();

    let codecs: Vec<String> = sdp
        .media
        .iter()
        .filter(|m| m.desc.port != 0)
        .flat_map(|m| m.codecs())
        .filter(|c| c.is_media())
        .map(|c| c.name)
        .collect();
    if offer {
        if codecs.is_empty() && sdp.media.iter().any(|m| m.desc.port != 0) {
            return reject(488, "the offer has no media codec".into());
        }
        if bridge && receiver == Party::Phone && !ev.media.transcode && !codecs.is_empty() {
            let browser_ok = codecs
                .iter()
                .any(|c| BROWSER_CODECS.iter().any(|b| b.eq_ignore_ascii_case(c)));
            if !browser_ok {
                return reject(
                    488,
                    format!(
                        "no common codec: the PBX offers {} and browsers decode only opus, G722, PCMU, PCMA (offer one of them, or set transcode = true)",
                        codecs.join(", ")
                    ),
                );
            }
        }
    } else if let Some(o) = ev.offer {
        match o.parse::<Sdp>() {
            Ok(o) if !o.has_common_codec(&sdp) => {
                let theirs: Vec<String> = o
                    .media
                    .iter()
                    .flat_map(|m| m.codecs())
                    .filter(|c| c.is_media())
                    .map(|c| c.name)
                    .collect();
                return reject(
                    488,
                    format!(
                        "no common codec: the offer had {}, the answer has {}",
                        list_or_none(&theirs),
                        list_or_none(&codecs)
                    ),
                );
            }
            _ => {}
        }
    }

    // Tags: from-tag is the offerer's, to-tag the answerer's.
    let offerer = if offer { sender } else { receiver };
    let (from_tag, to_tag) = if offerer == ev.direction.caller() {
        (Some(ev.ids.caller_tag), ev.ids.callee_tag)
    } else {
        (ev.ids.callee_tag, Some(ev.ids.caller_tag))
    };
    let Some(from_tag) = from_tag else {
        return reject(
            400,
            "the callee's offer has no To tag to key the media leg by".into(),
        );
    };
    let mut r = if offer {
        // The answerer's tag, when the dialog has one (re-offers, late offers).
        let mut r = SdpRequest::offer(ev.ids.call_id, from_tag, ev.sdp);
        r.to_tag = to_tag.map(str::to_owned);
        r
    } else {
        let Some(to_tag) = to_tag else {
            return reject(
                400,
                "the answer has no To tag to key the media leg by".into(),
            );
        };
        SdpRequest::answer(ev.ids.call_id, from_tag, to_tag, ev.sdp)
    };
    if let Some(b) = ev.ids.via_branch {
        r = r.via_branch(b);
    }
    if let Some(i) = ev.instance
        && let (Some(from), Some(to)) = (&i.side(sender).interface, &i.side(receiver).interface)
    {
        r = r.direction(from.clone(), to.clone());
    }

    r = match (bridge, offer, receiver) {
        (false, _, _) => r
            .replace(Replace::Origin)
            .replace(Replace::SessionConnection),
        (true, true, Party::Pbx) => r.to_plain_rtp(),
        (true, false, Party::Phone) => r.ice(Ice::Force).rtcp_mux(RtcpMux::Require),
        (true, true, Party::Phone) => r.to_webrtc(),
        (true, false, Party::Pbx) => r
            .transport_protocol("RTP/AVP")
            .ice(Ice::Remove)
            .rtcp_mux(RtcpMux::Demux),
    };
    if bridge && offer && ev.media.transcode {
        let names: &[&str] = match receiver {
            Party::Pbx => &["PCMU", "PCMA"],
            Party::Phone => &["opus"],
        };
        r = r.codec(CodecOptions {
            transcode: names.iter().map(|s| (*s).to_owned()).collect(),
            ..CodecOptions::default()
        });
    }
    Decision::Ask(Box::new(Ask {
        request: if offer {
            Request::Offer(r)
        } else {
            Request::Answer(r)
        },
        phone_webrtc,
        expect_address: ev.instance.and_then(|i| i.side(receiver).address),
    }))
}

fn list_or_none(l: &[String]) -> String {
    if l.is_empty() {
        "none".to_owned()
    } else {
        l.join(", ")
    }
}
