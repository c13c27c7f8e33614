//! Media through a relay (rtpengine): the engine holds every SDP-carrying
//! message of a call whose connection has media `relay` or `bridge`, asks the
//! relay ([`Output::Media`]) what [`media_policy`](crate::media_policy)
//! decides, and forwards the message with the relay's SDP when
//! [`Engine::handle_media`] brings the answer.
//!
//! The points of the offer/answer exchange:
//!
//! | message | stage | held until the relay answers |
//! |---|---|---|
//! | INVITE with SDP, per fork branch | [`Stage::InviteOffer`] (`via-branch` of the branch) | the branch's INVITE |
//! | 18x / 2xx with SDP to an INVITE with SDP | [`Stage::EarlyAnswer`] / [`Stage::Answer`] | the response |
//! | 18x / 2xx with SDP to an INVITE without SDP | [`Stage::LateOffer`] | the response |
//! | ACK with SDP | the answer to that late offer | the ACK |
//! | re-INVITE / UPDATE with SDP | [`Stage::ReOffer`] | the request |
//! | 2xx with SDP to a re-INVITE / UPDATE | [`Stage::ReAnswer`] (or a re-offer when the request had none) | the response |
//!
//! The call's rtpengine state is deleted when the call ends without an
//! answer (every branch failed, CANCEL, timer C, the caller's flow closed)
//! and when its dialog ends (BYE, flow closed, session timer, maximum
//! duration, rtpengine's media timeout). A relay failure on an offer in a
//! request answers it with the failure's status (503, 488); on a branch's
//! 2xx the callee is ACKed and hung up and the caller gets the failure
//! unless another branch answers; on an SDP inside an established call the
//! call is ended (BYE to both legs).

use std::collections::HashMap;

use bytes::Bytes;
use siplink_media::Request;
use siplink_message::headers::HeaderName;
use siplink_message::{Message, Method};
use siplink_transport::Origin;

use super::dialog::{DialogKey, DialogRecord, EndReason, Leg, MediaLeg, split_route_set};
use super::fork::BranchSlot;
use super::{BranchId, Caller, Engine, NextHop, Output, ServerTx, Target, View};
use crate::core;
use crate::media::ConnectionMedia;
use crate::media_policy::{
    self, CallDirection, Decision, MediaEnd, Party, PhoneLeg, SdpEvent, SdpIds, Stage,
};

/// The token an [`Output::Media`] is answered with ([`Engine::handle_media`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaToken(pub(crate) u64);

impl MediaToken {
    /// The number behind the token.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The media relay's answer to an [`Output::Media`] request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaResult {
    /// The SDP to send on instead (an `offer` or `answer`).
    Sdp(String),
    /// The `delete` was done (or the relay no longer knew the call).
    Deleted,
    /// The relay failed or refused.
    Failed(MediaFailure),
}

/// Why the media relay did not give an SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFailure {
    /// The SIP status the call fails with: 503 when the relay is down or
    /// did not answer, 488 when it refused the SDP.
    pub status: u16,
    /// What happened, for the reason phrase and the log.
    pub reason: String,
}

/// Longest reason phrase the engine writes for a media failure.
const MAX_PHRASE: usize = 160;

/// A media failure's status (a 4xx-6xx, else 500) and reason phrase (no
/// control characters, bounded).
fn phrase(status: u16, reason: &str) -> (u16, String) {
    let status = if (400..700).contains(&status) {
        status
    } else {
        500
    };
    let mut text: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() > MAX_PHRASE {
        let mut end = MAX_PHRASE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    if text.trim().is_empty() {
        text = "Media Relay Failed".to_owned();
    }
    (status, text)
}

/// The SDP body of a message (`Content-Type: application/sdp`, not empty).
pub(crate) fn sdp_body(message: &Message) -> Option<&str> {
    let ct = std::str::from_utf8(message.header(HeaderName::ContentType)?).ok()?;
    let essence = ct.split(';').next()?.trim();
    if !essence.eq_ignore_ascii_case("application/sdp") || message.body().is_empty() {
        return None;
    }
    std::str::from_utf8(message.body()).ok()
}

fn set_sdp(message: &mut Message, sdp: String) {
    message.set_body(Some("application/sdp"), Bytes::from(sdp.into_bytes()));
}

fn tag(t: Result<Option<&str>, siplink_message::Error>) -> String {
    t.ok().flatten().unwrap_or_default().to_owned()
}

/// Media of a call being set up (an initial INVITE's fork).
#[derive(Debug)]
struct ForkMedia {
    media: ConnectionMedia,
    direction: CallDirection,
    call_id: String,
    caller_tag: String,
    /// Whether the relay was asked anything (then it holds state to delete).
    asked: bool,
    /// The relay was unavailable for a branch: what the caller is told when
    /// no branch answers (rather than the 500 a downstream 503 becomes).
    unavailable: Option<String>,
}

/// Media of one fork branch.
#[derive(Debug)]
struct BranchMedia {
    via_branch: String,
    phone: PhoneLeg,
    /// The offer as this branch's callee got it (the relay's SDP).
    offered: Option<String>,
}

/// What waits for the relay's answer.
#[derive(Debug)]
enum Op {
    /// A branch's INVITE.
    Offer {
        branch: BranchId,
        request: Message,
        hop: NextHop,
        phone_webrtc: bool,
    },
    /// A response on a branch.
    Response {
        branch: BranchId,
        response: Message,
        stage: Stage,
    },
    /// A re-INVITE or UPDATE inside a dialog.
    Request {
        tx: ServerTx,
        request: Message,
        origin: Origin,
        dialog: (DialogKey, bool),
        target: Target,
    },
    /// An ACK with the answer to an offer in a 2xx.
    Ack {
        key: DialogKey,
        message: Message,
        hop: NextHop,
    },
    /// A delete: nothing waits.
    Delete,
}

#[derive(Debug)]
struct Waiting {
    call_id: String,
    caller_tag: String,
    media: ConnectionMedia,
    op: Op,
}

/// The engine's media state.
#[derive(Debug, Default)]
pub(crate) struct MediaState {
    ops: HashMap<MediaToken, Waiting>,
    forks: HashMap<u64, ForkMedia>,
    branches: HashMap<BranchId, BranchMedia>,
    /// Branches whose offer the policy refused while their group was being
    /// sent: failed once the whole group is out.
    deferred: Vec<(BranchId, u16, String)>,
}

impl MediaState {
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.forks.is_empty()
            && self.branches.is_empty()
            && self.deferred.is_empty()
    }

    /// Media requests waiting for the relay's answer.
    pub(crate) fn waiting(&self) -> usize {
        self.ops.len()
    }
}

/// The parties of a call by who placed it.
fn parties(pbx_is_caller: bool) -> (Party, Party) {
    if pbx_is_caller {
        (Party::Pbx, Party::Phone)
    } else {
        (Party::Phone, Party::Pbx)
    }
}

fn direction_of(pbx_is_caller: bool) -> CallDirection {
    if pbx_is_caller {
        CallDirection::PbxToPhone
    } else {
        CallDirection::PhoneToPbx
    }
}

impl<V: View> Engine<V> {
    /// The answer to the [`Output::Media`] of `token` (an unknown token is
    /// ignored). The message held for it goes on with the relay's SDP, or
    /// the call (or the branch, or the request) fails with the failure's
    /// status.
    pub fn handle_media(
        &mut self,
        token: MediaToken,
        result: MediaResult,
        now: std::time::Instant,
    ) {
        let Some(w) = self.media.ops.remove(&token) else {
            return;
        };
        if matches!(w.op, Op::Delete) {
            return;
        }
        match result {
            MediaResult::Sdp(sdp) => self.media_release(w, sdp, now),
            MediaResult::Deleted => {
                self.media_failed(w, 500, "Unexpected Media Relay Reply".to_owned(), now)
            }
            MediaResult::Failed(f) => self.media_failed(w, f.status, f.reason, now),
        }
    }

    /// The media relay reports that the call `call_id` had no media for too
    /// long (rtpengine's media timeout): its dialogs end, BYE to both legs.
    pub fn handle_media_timeout(&mut self, call_id: &str, now: std::time::Instant) {
        self.end_media_calls(call_id, EndReason::MediaTimeout, now);
    }

    /// The media relay lost the call `call_id` (the rtpengine instance that
    /// held it is down: [`siplink_media::Error::InstanceDown`]): its dialogs
    /// end, BYE to both legs (`Reason: SIP;text="Media Relay Failed"`).
    pub fn handle_media_lost(&mut self, call_id: &str, now: std::time::Instant) {
        self.end_media_calls(call_id, EndReason::MediaFailed, now);
    }

    fn end_media_calls(&mut self, call_id: &str, reason: EndReason, now: std::time::Instant) {
        let mut keys: Vec<DialogKey> = self
            .dialogs
            .values()
            .filter(|d| d.key.call_id == call_id && d.media.is_some())
            .map(|d| d.key.clone())
            .collect();
        keys.sort();
        for key in keys {
            self.end_dialog(&key, reason.clone(), None, now);
        }
    }

    /// Whether the in-dialog requests and ACKs waiting for the relay reached
    /// their bound (twice `max_calls`, as for relayed in-dialog requests).
    fn media_full(&self) -> bool {
        self.media.ops.len() >= self.config.max_calls.saturating_mul(2)
    }

    fn ask(&mut self, request: Request, w: Waiting) {
        let token = MediaToken(self.id());
        self.media.ops.insert(token, w);
        self.out.push_back(Output::Media { token, request });
    }

    fn ask_delete(
        &mut self,
        media: ConnectionMedia,
        call_id: &str,
        caller_tag: &str,
        end: MediaEnd,
    ) {
        let ids = SdpIds {
            call_id,
            caller_tag,
            callee_tag: None,
            via_branch: None,
        };
        if let Some(d) = media_policy::delete(media, &ids, end) {
            let w = Waiting {
                call_id: call_id.to_owned(),
                caller_tag: caller_tag.to_owned(),
                media,
                op: Op::Delete,
            };
            self.ask(Request::Delete(d), w);
        }
    }

    /// A group of an initial INVITE's fork starts: the media settings of its
    /// connection (the caller's when a PBX calls, else the group's).
    pub(super) fn media_group(&mut self, id: u64) {
        let Some(fork) = self.forks.get(&id) else {
            return;
        };
        if !fork.invite || fork.in_dialog.is_some() {
            return;
        }
        let (direction, connection) = match &fork.caller {
            Some(Caller::Pbx(name)) => (CallDirection::PbxToPhone, Some(name.as_str())),
            Some(Caller::Phone { .. }) => (CallDirection::PhoneToPbx, fork.connection.as_deref()),
            None => return,
        };
        let media = connection
            .map(|c| self.view.connection_media(c))
            .unwrap_or_default();
        if media.mode.is_off() && !self.media.forks.contains_key(&id) {
            return;
        }
        let call_id = fork.request.call_id().unwrap_or_default().to_owned();
        let caller_tag = tag(fork.request.from_tag());
        let entry = self.media.forks.entry(id).or_insert(ForkMedia {
            media,
            direction,
            call_id,
            caller_tag,
            asked: false,
            unavailable: None,
        });
        entry.media = media;
        entry.direction = direction;
    }

    /// A branch's INVITE is ready: `Some` to send it now, `None` when it is
    /// held for the relay (or refused: failed when the group is out).
    pub(super) fn media_branch_offer(
        &mut self,
        id: u64,
        branch: BranchId,
        hop: &NextHop,
        request: Message,
    ) -> Option<Message> {
        let Some(fm) = self.media.forks.get(&id) else {
            return Some(request);
        };
        let Some(fork) = self.forks.get(&id) else {
            return Some(request);
        };
        if fm.media.mode.is_off() {
            return Some(request);
        }
        let phone_transport = match fm.direction {
            CallDirection::PhoneToPbx => fork.origin.protocol,
            CallDirection::PbxToPhone => hop.protocol(),
        };
        let phone = PhoneLeg::on(phone_transport);
        let via_branch = request
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let (media, direction) = (fm.media, fm.direction);
        let (call_id, caller_tag) = (fm.call_id.clone(), fm.caller_tag.clone());
        self.media.branches.insert(
            branch,
            BranchMedia {
                via_branch: via_branch.clone(),
                phone,
                offered: None,
            },
        );
        let Some(sdp) = sdp_body(&request) else {
            return Some(request);
        };
        let ev = SdpEvent {
            media,
            direction,
            stage: Stage::InviteOffer,
            phone,
            ids: SdpIds {
                call_id: &call_id,
                caller_tag: &caller_tag,
                callee_tag: None,
                via_branch: Some(&via_branch),
            },
            sdp,
            offer: None,
            instance: None,
        };
        match media_policy::decide(&ev) {
            Decision::Pass => Some(request),
            Decision::Reject(r) => {
                self.media.deferred.push((branch, r.status, r.reason));
                None
            }
            Decision::Ask(ask) => {
                if let Some(fm) = self.media.forks.get_mut(&id) {
                    fm.asked = true;
                }
                let w = Waiting {
                    call_id,
                    caller_tag,
                    media,
                    op: Op::Offer {
                        branch,
                        request,
                        hop: hop.clone(),
                        phone_webrtc: ask.phone_webrtc,
                    },
                };
                self.ask(ask.request, w);
                None
            }
        }
    }

    /// Fails the branches whose offer the policy refused (once their group
    /// is out, so that the fork sees all its branches).
    pub(super) fn media_flush(&mut self, now: std::time::Instant) {
        for (branch, status, reason) in std::mem::take(&mut self.media.deferred) {
            let (status, reason) = phrase(status, &reason);
            self.fail_branch(branch, status, &reason, now);
        }
    }

    /// A response on a branch: `Some` to process it now, `None` when it is
    /// held for the relay (or dropped / refused).
    pub(super) fn media_hold_response(
        &mut self,
        branch: BranchId,
        mut response: Message,
        now: std::time::Instant,
    ) -> Option<Message> {
        let status = response.status().unwrap_or(0);
        if status <= 100 || status >= 300 {
            return Some(response);
        }
        let Some(BranchSlot::Fork(b)) = self.branches.get(&branch) else {
            return Some(response);
        };
        let fork_id = b.fork;
        let Some(fork) = self.forks.get(&fork_id) else {
            return Some(response);
        };
        let Some(sdp) = sdp_body(&response) else {
            return Some(response);
        };
        let request_has_sdp = sdp_body(&fork.request).is_some();
        let (media, direction, call_id, caller_tag, callee_tag, via, phone, offered, stage);
        if let Some((key, from_caller)) = &fork.in_dialog {
            let method = fork.request.method();
            if status < 200 || !matches!(method, Some(Method::Invite) | Some(Method::Update)) {
                return Some(response);
            }
            let Some(d) = self.dialogs.get(key) else {
                return Some(response);
            };
            let Some(leg) = &d.media else {
                return Some(response);
            };
            let (caller, callee) = parties(leg.pbx_is_caller);
            let from = if *from_caller { callee } else { caller };
            stage = if request_has_sdp {
                Stage::ReAnswer { from }
            } else {
                Stage::ReOffer { from }
            };
            media = leg.media;
            direction = direction_of(leg.pbx_is_caller);
            call_id = key.call_id.clone();
            caller_tag = key.caller_tag.clone();
            callee_tag = key.callee_tag.clone();
            via = None;
            phone = PhoneLeg {
                websocket: leg.phone_websocket,
                webrtc: leg.phone_webrtc,
            };
            offered = leg.offered.clone();
        } else {
            let Some(fm) = self.media.forks.get(&fork_id) else {
                return Some(response);
            };
            if fm.media.mode.is_off() {
                return Some(response);
            }
            let Some(bm) = self.media.branches.get(&branch) else {
                return Some(response);
            };
            callee_tag = tag(response.to_tag());
            // A 2xx retransmission on a recorded call: the SDP sent before.
            let key = DialogKey {
                call_id: fm.call_id.clone(),
                caller_tag: fm.caller_tag.clone(),
                callee_tag: callee_tag.clone(),
            };
            let cseq = response.cseq().map(|c| c.seq).unwrap_or(0);
            if status >= 200
                && let Some((n, sent)) = self
                    .dialogs
                    .get(&key)
                    .and_then(|d| d.media.as_ref())
                    .and_then(|m| m.last_2xx.clone())
                && n == cseq
            {
                set_sdp(&mut response, sent);
                return Some(response);
            }
            stage = match (request_has_sdp, status < 200) {
                (true, true) => Stage::EarlyAnswer,
                (true, false) => Stage::Answer,
                (false, _) => Stage::LateOffer,
            };
            media = fm.media;
            direction = fm.direction;
            call_id = fm.call_id.clone();
            caller_tag = fm.caller_tag.clone();
            via = Some(bm.via_branch.clone());
            phone = bm.phone;
            offered = bm.offered.clone();
        }
        let ev = SdpEvent {
            media,
            direction,
            stage,
            phone,
            ids: SdpIds {
                call_id: &call_id,
                caller_tag: &caller_tag,
                // A response without a To tag has no leg to key: refused.
                callee_tag: (!callee_tag.is_empty()).then_some(callee_tag.as_str()),
                via_branch: via.as_deref(),
            },
            sdp,
            offer: offered.as_deref(),
            instance: None,
        };
        match media_policy::decide(&ev) {
            Decision::Pass => Some(response),
            Decision::Reject(r) => {
                let (status, reason) = phrase(r.status, &r.reason);
                self.media_response_failed(branch, response, status, &reason, now);
                None
            }
            Decision::Ask(ask) => {
                if let Some(fm) = self.media.forks.get_mut(&fork_id) {
                    fm.asked = true;
                }
                if let Some(bm) = self.media.branches.get_mut(&branch) {
                    bm.phone.webrtc |= ask.phone_webrtc;
                }
                let w = Waiting {
                    call_id,
                    caller_tag,
                    media,
                    op: Op::Response {
                        branch,
                        response,
                        stage,
                    },
                };
                self.ask(ask.request, w);
                None
            }
        }
    }

    /// A re-INVITE or UPDATE inside a dialog, about to be relayed: `Some` to
    /// relay it now, `None` when it is held for the relay (or refused).
    pub(super) fn media_hold_request(
        &mut self,
        tx: ServerTx,
        request: Message,
        origin: Origin,
        dialog: Option<&(DialogKey, bool)>,
        target: &Target,
    ) -> Option<Message> {
        if !matches!(
            request.method(),
            Some(Method::Invite) | Some(Method::Update)
        ) {
            return Some(request);
        }
        let Some((key, from_caller)) = dialog else {
            return Some(request);
        };
        let Some(leg) = self.dialogs.get(key).and_then(|d| d.media.as_ref()) else {
            return Some(request);
        };
        let Some(sdp) = sdp_body(&request) else {
            return Some(request);
        };
        if self.media_full() {
            self.respond(tx, &request, 503, "Too Many Requests In Progress");
            return None;
        }
        let (caller, callee) = parties(leg.pbx_is_caller);
        let from = if *from_caller { caller } else { callee };
        let media = leg.media;
        let ev = SdpEvent {
            media,
            direction: direction_of(leg.pbx_is_caller),
            stage: Stage::ReOffer { from },
            phone: PhoneLeg {
                websocket: leg.phone_websocket,
                webrtc: leg.phone_webrtc,
            },
            ids: SdpIds {
                call_id: &key.call_id,
                caller_tag: &key.caller_tag,
                callee_tag: Some(&key.callee_tag),
                via_branch: None,
            },
            sdp,
            offer: None,
            instance: None,
        };
        match media_policy::decide(&ev) {
            Decision::Pass => Some(request),
            Decision::Reject(r) => {
                let (status, reason) = phrase(r.status, &r.reason);
                self.respond(tx, &request, status, &reason);
                None
            }
            Decision::Ask(ask) => {
                let w = Waiting {
                    call_id: key.call_id.clone(),
                    caller_tag: key.caller_tag.clone(),
                    media,
                    op: Op::Request {
                        tx,
                        request,
                        origin,
                        dialog: (key.clone(), *from_caller),
                        target: target.clone(),
                    },
                };
                self.ask(ask.request, w);
                None
            }
        }
    }

    /// An ACK inside a dialog, about to be forwarded: one with SDP answers
    /// an offer made in a 2xx. `Some` to forward it now, `None` when held.
    pub(super) fn media_hold_ack(
        &mut self,
        dialog: Option<&(DialogKey, bool)>,
        message: Message,
        hop: &NextHop,
        now: std::time::Instant,
    ) -> Option<Message> {
        let Some((key, from_caller)) = dialog else {
            return Some(message);
        };
        let Some(leg) = self.dialogs.get(key).and_then(|d| d.media.as_ref()) else {
            return Some(message);
        };
        let Some(sdp) = sdp_body(&message) else {
            return Some(message);
        };
        if self.media_full() {
            // Overloaded: the ACK is dropped (the callee retransmits its
            // 2xx, then gives up and hangs up).
            return None;
        }
        let (caller, callee) = parties(leg.pbx_is_caller);
        let from = if *from_caller { caller } else { callee };
        let stage = if *from_caller {
            Stage::AckAnswer
        } else {
            Stage::ReAnswer { from }
        };
        let media = leg.media;
        let offered = leg.offered.clone();
        let ev = SdpEvent {
            media,
            direction: direction_of(leg.pbx_is_caller),
            stage,
            phone: PhoneLeg {
                websocket: leg.phone_websocket,
                webrtc: leg.phone_webrtc,
            },
            ids: SdpIds {
                call_id: &key.call_id,
                caller_tag: &key.caller_tag,
                callee_tag: Some(&key.callee_tag),
                via_branch: None,
            },
            sdp,
            offer: offered.as_deref(),
            instance: None,
        };
        match media_policy::decide(&ev) {
            Decision::Pass => Some(message),
            Decision::Reject(_) => {
                self.media_ack_failed(key.clone(), message, hop.clone(), now);
                None
            }
            Decision::Ask(ask) => {
                let w = Waiting {
                    call_id: key.call_id.clone(),
                    caller_tag: key.caller_tag.clone(),
                    media,
                    op: Op::Ack {
                        key: key.clone(),
                        message,
                        hop: hop.clone(),
                    },
                };
                self.ask(ask.request, w);
                None
            }
        }
    }

    /// The answered branch's media leg goes into the new dialog record.
    pub(super) fn media_fill_dialog(&mut self, fork_id: u64, branch: BranchId, response: &Message) {
        let Some(fm) = self.media.forks.get(&fork_id) else {
            return;
        };
        if fm.media.mode.is_off() {
            return;
        }
        let key = DialogKey {
            call_id: fm.call_id.clone(),
            caller_tag: fm.caller_tag.clone(),
            callee_tag: tag(response.to_tag()),
        };
        let bm = self.media.branches.get(&branch);
        let leg = MediaLeg {
            media: fm.media,
            instance: None,
            phone_webrtc: bm.is_some_and(|b| b.phone.webrtc),
            phone_websocket: bm.is_some_and(|b| b.phone.websocket),
            pbx_is_caller: fm.direction == CallDirection::PbxToPhone,
            via_branch: bm.map(|b| b.via_branch.clone()),
            offered: bm.and_then(|b| b.offered.clone()),
            last_2xx: None,
        };
        if let Some(d) = self.dialogs.get_mut(&key)
            && d.media.is_none()
        {
            d.media = Some(leg);
        }
    }

    /// A branch is gone (failover to the next group, or the fork's end).
    pub(super) fn media_branch_dropped(&mut self, branch: BranchId) {
        self.media.branches.remove(&branch);
    }

    fn note_unavailable(&mut self, branch: BranchId, status: u16, reason: &str) {
        if status != 503 {
            return;
        }
        if let Some(BranchSlot::Fork(b)) = self.branches.get(&branch)
            && let Some(fm) = self.media.forks.get_mut(&b.fork)
        {
            fm.unavailable = Some(reason.to_owned());
        }
    }

    /// An initial INVITE's fork is over: when no dialog took its media over
    /// (no 2xx, or one refused), the relay's call is deleted. Returns the
    /// relay's unavailability when a branch failed for it.
    pub(super) fn media_fork_done(&mut self, id: u64, cancelled: bool) -> Option<String> {
        let fm = self.media.forks.remove(&id)?;
        if !fm.asked {
            return None;
        }
        let answered = self
            .dialogs
            .values()
            .any(|d| d.key.call_id == fm.call_id && d.media.is_some());
        if !answered {
            let end = if cancelled {
                MediaEnd::Cancel
            } else {
                MediaEnd::Failure
            };
            self.ask_delete(fm.media, &fm.call_id, &fm.caller_tag, end);
        }
        fm.unavailable
    }

    /// The final response of a fork whose best response is a 5xx while the
    /// relay was unavailable for a branch: 503 with the relay's reason (the
    /// proxy's own condition, not a downstream 503 turned 500).
    pub(super) fn media_final(
        request: &Message,
        response: Message,
        unavailable: Option<String>,
    ) -> Message {
        match unavailable {
            Some(reason) if response.status().is_some_and(|s| (500..600).contains(&s)) => {
                core::local_response(request, 503, &reason).unwrap_or(response)
            }
            _ => response,
        }
    }

    /// A dialog record is gone: its media is deleted.
    pub(super) fn media_dialog_gone(&mut self, d: &DialogRecord, reason: &EndReason) {
        let Some(leg) = &d.media else {
            return;
        };
        // A second answered branch of the same call keeps the relay's call.
        if self
            .dialogs
            .values()
            .any(|o| o.key.call_id == d.key.call_id && o.media.is_some())
        {
            return;
        }
        let end = match reason {
            EndReason::ByeFromCaller | EndReason::ByeFromCallee => MediaEnd::Bye,
            EndReason::SessionExpired | EndReason::MaxDuration | EndReason::MediaTimeout => {
                MediaEnd::Timeout
            }
            EndReason::Cancelled => MediaEnd::Cancel,
            EndReason::Failed(_) | EndReason::MediaFailed => MediaEnd::Failure,
            EndReason::FlowClosed(_) => MediaEnd::DialogEnd,
        };
        self.ask_delete(leg.media, &d.key.call_id, &d.key.caller_tag, end);
    }

    /// A 2xx retransmission forwarded statelessly: the SDP the relay gave
    /// for that 2xx.
    pub(super) fn media_retransmission(&self, key: &DialogKey, response: &mut Message) {
        let cseq = response.cseq().map(|c| c.seq).unwrap_or(0);
        if sdp_body(response).is_none() {
            return;
        }
        if let Some((n, sdp)) = self
            .dialogs
            .get(key)
            .and_then(|d| d.media.as_ref())
            .and_then(|m| m.last_2xx.clone())
            && n == cseq
        {
            set_sdp(response, sdp);
        }
    }

    /// Whether anything still uses the relay's call `call_id`.
    fn media_call_alive(&self, call_id: &str) -> bool {
        self.media.forks.values().any(|f| f.call_id == call_id)
            || self
                .dialogs
                .values()
                .any(|d| d.key.call_id == call_id && d.media.is_some())
    }

    fn remember_2xx(&mut self, key: &DialogKey, response: &Message, offer: bool) {
        let Some(sdp) = sdp_body(response) else {
            return;
        };
        let sdp = sdp.to_owned();
        let cseq = response.cseq().map(|c| c.seq).unwrap_or(0);
        if let Some(leg) = self.dialogs.get_mut(key).and_then(|d| d.media.as_mut()) {
            if offer {
                leg.offered = Some(sdp.clone());
            }
            leg.last_2xx = Some((cseq, sdp));
        }
    }

    /// The relay answered with `sdp`: the held message goes on.
    fn media_release(&mut self, w: Waiting, sdp: String, now: std::time::Instant) {
        let Waiting {
            call_id,
            caller_tag,
            media,
            op,
        } = w;
        let orphan = (call_id.as_str(), caller_tag.as_str(), media);
        match op {
            Op::Offer {
                branch,
                mut request,
                hop,
                phone_webrtc,
            } => {
                let live = match self.branches.get(&branch) {
                    Some(BranchSlot::Fork(b)) => Some(!b.done && !b.cancel_wanted()),
                    _ => None,
                };
                match live {
                    Some(true) => {
                        if let Some(bm) = self.media.branches.get_mut(&branch) {
                            bm.offered = Some(sdp.clone());
                            bm.phone.webrtc |= phone_webrtc;
                        }
                        set_sdp(&mut request, sdp);
                        self.out.push_back(Output::Send {
                            branch,
                            request,
                            hop,
                        });
                    }
                    Some(false) => {
                        // Cancelled while the relay was asked: never sent
                        // (the fork's end deletes the relay's call).
                        self.fail_branch(branch, 487, "Request Terminated", now);
                    }
                    None => self.media_orphan(orphan),
                }
            }
            Op::Response {
                branch,
                mut response,
                stage,
            } => {
                set_sdp(&mut response, sdp);
                let status = response.status().unwrap_or(0);
                let in_dialog = match self.branches.get(&branch) {
                    Some(BranchSlot::Fork(b)) => self
                        .forks
                        .get(&b.fork)
                        .and_then(|f| f.in_dialog.as_ref().map(|(k, _)| k.clone())),
                    _ => None,
                };
                let key = in_dialog.unwrap_or_else(|| DialogKey {
                    call_id: call_id.clone(),
                    caller_tag: caller_tag.clone(),
                    callee_tag: tag(response.to_tag()),
                });
                let remember = (200..300).contains(&status)
                    && response.cseq().is_ok_and(|c| c.method == Method::Invite);
                let kept = remember.then(|| response.clone());
                self.branch_response(branch, response, now);
                if let Some(r) = kept {
                    self.remember_2xx(&key, &r, stage.is_offer());
                }
                self.media_orphan(orphan);
            }
            Op::Request {
                tx,
                mut request,
                origin,
                dialog,
                target,
            } => {
                set_sdp(&mut request, sdp.clone());
                if let Some(leg) = self
                    .dialogs
                    .get_mut(&dialog.0)
                    .and_then(|d| d.media.as_mut())
                {
                    leg.offered = Some(sdp);
                }
                // A request from the caller of a call whose INVITE was
                // resent with credentials carries the raised CSeq already.
                // (Mapped already: a resent INVITE's CSeq offset, the
                // identity presented.)
                let mapping = self
                    .dialogs
                    .get(&dialog.0)
                    .map(|d| d.mapping(dialog.1))
                    .unwrap_or_default();
                self.start_relay(tx, request, origin, Some(dialog), target, mapping, now);
                self.media_orphan(orphan);
            }
            Op::Ack {
                key: _,
                mut message,
                hop,
            } => {
                set_sdp(&mut message, sdp);
                self.out.push_back(Output::Forward { message, hop });
                self.media_orphan(orphan);
            }
            Op::Delete => {}
        }
    }

    /// The relay answered for a call that ended meanwhile (its delete may
    /// have reached the relay first): nothing else would delete what the
    /// answer made, so delete it now.
    /// When a fork of the call is still being set up, its end deletes the
    /// call (it is marked as having asked the relay).
    fn media_orphan(&mut self, (call_id, caller_tag, media): (&str, &str, ConnectionMedia)) {
        let mut fork_alive = false;
        for f in self.media.forks.values_mut() {
            if f.call_id == call_id {
                f.asked = true;
                fork_alive = true;
            }
        }
        if !fork_alive && !self.media_call_alive(call_id) {
            self.ask_delete(media, call_id, caller_tag, MediaEnd::DialogEnd);
        }
    }

    /// The relay failed (or refused) what `w` waits for.
    fn media_failed(&mut self, w: Waiting, status: u16, reason: String, now: std::time::Instant) {
        let (status, reason) = phrase(status, &reason);
        match w.op {
            Op::Offer { branch, .. } => {
                self.note_unavailable(branch, status, &reason);
                self.fail_branch(branch, status, &reason, now)
            }
            Op::Response {
                branch, response, ..
            } => self.media_response_failed(branch, response, status, &reason, now),
            Op::Request { tx, request, .. } => self.respond(tx, &request, status, &reason),
            Op::Ack { key, message, hop } => self.media_ack_failed(key, message, hop, now),
            Op::Delete => {}
        }
    }

    /// No SDP for a response on a branch: a provisional response is
    /// dropped; a 2xx to an initial INVITE is ACKed and hung up (the caller
    /// gets `status` unless another branch answers); a 2xx inside a dialog
    /// goes on and the call is ended.
    fn media_response_failed(
        &mut self,
        branch: BranchId,
        response: Message,
        status: u16,
        reason: &str,
        now: std::time::Instant,
    ) {
        if response.status().unwrap_or(0) < 200 {
            return;
        }
        self.note_unavailable(branch, status, reason);
        let Some(BranchSlot::Fork(b)) = self.branches.get(&branch) else {
            return;
        };
        let hop = b.hop.clone();
        let Some(fork) = self.forks.get(&b.fork) else {
            return;
        };
        if let Some((key, _)) = fork.in_dialog.clone() {
            self.branch_response(branch, response, now);
            self.end_dialog(&key, EndReason::MediaFailed, None, now);
            return;
        }
        // The callee answered: ACK its 2xx, then BYE, as if the caller did.
        let request = &fork.request;
        let local = self.view.local().clone();
        let (callee_route, _) = split_route_set(&response, |u| local.is_local_uri(u));
        let cseq = request.cseq().map(|c| c.seq).unwrap_or(0);
        let key = DialogKey {
            call_id: request.call_id().unwrap_or_default().to_owned(),
            caller_tag: tag(request.from_tag()),
            callee_tag: tag(response.to_tag()),
        };
        let party = |m: &Message, name| {
            m.header(name)
                .map(Bytes::copy_from_slice)
                .unwrap_or_default()
        };
        let record = DialogRecord {
            caller: Leg {
                tag: key.caller_tag.clone(),
                party: party(request, HeaderName::From),
                target: String::new(),
                route: Vec::new(),
                hop: NextHop::back_to(&fork.origin),
                cseq,
            },
            callee: Leg {
                tag: key.callee_tag.clone(),
                party: party(&response, HeaderName::To),
                target: super::indialog::contact_uri(&response).unwrap_or_default(),
                route: callee_route,
                hop: hop.clone(),
                cseq: 0,
            },
            key,
            connection: fork.connection.clone(),
            answered_at: now,
            media: None,
            max_end: now,
            session: None,
            cseq_delta: 0,
            caller_as: None,
            session_timer: None,
            max_timer: None,
        };
        let ack_branch = core::branch("ack", self.id() as usize);
        if let Some(ack) = record.request_to(false, Method::Ack, cseq, &ack_branch, None) {
            self.out.push_back(Output::Forward {
                message: ack,
                hop: hop.clone(),
            });
        }
        let id = BranchId(self.id());
        let bye_branch = core::branch("bye", id.get() as usize);
        if let Some(bye) = record.request_to(
            false,
            Method::Bye,
            cseq.saturating_add(1),
            &bye_branch,
            Some(reason),
        ) {
            self.branches.insert(id, BranchSlot::Own);
            self.out.push_back(Output::Send {
                branch: id,
                request: bye,
                hop,
            });
        }
        self.fail_branch(branch, status, reason, now);
    }

    /// No SDP for the answer in an ACK: the ACK goes on without a body (the
    /// callee's transaction completes) and the call is ended.
    fn media_ack_failed(
        &mut self,
        key: DialogKey,
        mut message: Message,
        hop: NextHop,
        now: std::time::Instant,
    ) {
        message.set_body(None, Bytes::new());
        message.remove_header(HeaderName::ContentType);
        self.out.push_back(Output::Forward { message, hop });
        self.end_dialog(&key, EndReason::MediaFailed, None, now);
    }
}
