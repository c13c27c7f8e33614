//! Requests inside a dialog, the dialog records and the end of calls.

use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::headers::HeaderName;
use siplink_message::uri::Uri;
use siplink_message::{Message, Method};
use siplink_transport::{FlowId, Origin};

use super::dialog::{DialogKey, DialogRecord, EndReason, Leg, SessionTimer, split_route_set};
use super::dispatch::{self, Refresher};
use super::fork::BranchSlot;
use super::timers::{self, Timer};
use super::{BranchId, Engine, Event, NextHop, Output, ServerTx, Target, View};
use crate::core;

/// The Contact URI of a message (the remote target it announces).
pub(super) fn contact_uri(message: &Message) -> Option<String> {
    let contacts = message.contact().ok()?;
    contacts
        .as_slice()
        .first()
        .map(|c| c.uri.as_str().to_owned())
}

/// Where a request goes when only its Route and Request-URI say so.
fn hop_of(request: &Message) -> Option<NextHop> {
    match request.route().ok().and_then(|r| r.first()) {
        Some(r) => NextHop::from_uri(&r.uri),
        None => NextHop::from_uri(request.request_uri().ok()?),
    }
}

impl<V: View> Engine<V> {
    /// A request with a To tag (RFC 3261 §16.12 loose routing through our
    /// Record-Route entries, with the strict-router repair of §16.4).
    pub(super) fn in_dialog(
        &mut self,
        tx: ServerTx,
        mut request: Message,
        origin: Origin,
        now: Instant,
    ) {
        if self.forks.len() >= self.config.max_calls.saturating_mul(2)
            && request.method() != Some(&Method::Ack)
        {
            return self.respond(tx, &request, 503, "Too Many Requests In Progress");
        }
        if let core::Check::Reject(status, reason) = core::decrement_max_forwards(&mut request) {
            return self.respond(tx, &request, status, reason);
        }
        let consumed = core::consume_own_routes(&mut request, self.view.local());
        core::remove_own_credentials(&mut request, self.view.realm());
        let call_id = request.call_id().unwrap_or_default().to_owned();
        let from_tag = request
            .from_tag()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let to_tag = request
            .to_tag()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let method = request.method().cloned().unwrap_or(Method::Ack);
        if consumed.routes.is_empty() && !consumed.strict_fixed {
            let to_us = request
                .request_uri()
                .is_ok_and(|u| self.view.local().is_local_uri(u));
            if method == Method::Options && to_us {
                if let Ok(r) = request
                    .response(200)
                    .header(HeaderName::Allow, super::ALLOW)
                    .build()
                {
                    self.out.push_back(Output::Respond { tx, response: r });
                }
                return;
            }
            if method != Method::Ack {
                self.respond(tx, &request, 481, "Call/Transaction Does Not Exist");
            }
            return;
        }
        if !core::routed_by_us(&consumed, &self.view.dialog_mac(&call_id)) {
            // Names us, but not with an entry we recorded for this dialog:
            // not an open relay for in-dialog requests either.
            if method != Method::Ack {
                self.respond(tx, &request, 403, "Not Routed By This Proxy");
            }
            return;
        }
        let key = [
            DialogKey {
                call_id: call_id.clone(),
                caller_tag: from_tag.clone(),
                callee_tag: to_tag.clone(),
            },
            DialogKey {
                call_id,
                caller_tag: to_tag,
                callee_tag: from_tag.clone(),
            },
        ]
        .into_iter()
        .find(|k| self.dialogs.contains_key(k));
        let cseq = request.cseq().map(|c| c.seq).unwrap_or(0);
        // The next hop: the destination leg's flow, a flow token in the last
        // Route entry we consumed (the face towards the destination), or
        // the Route / Request-URI.
        let mut hop = None;
        let mut dialog = None;
        let mut mapping = super::fork::Mapping::default();
        let mut present: Option<DialogRecord> = None;
        if let Some(key) = &key
            && let Some(d) = self.dialogs.get_mut(key)
            && let Some(from_caller) = d.from_caller(&from_tag)
        {
            let (sender, dest) = if from_caller {
                (&mut d.caller, &d.callee)
            } else {
                (&mut d.callee, &d.caller)
            };
            sender.cseq = sender.cseq.max(cseq);
            mapping = d.mapping(from_caller);
            if mapping.cseq_delta > 0 || d.caller_as.is_some() {
                present = Some(d.clone());
            }
            // Over its flow, or (no proxy between us and it) where the call
            // reached it: a NATed phone's source address, not its Contact.
            if matches!(dest.hop, NextHop::Flow { .. }) || dest.route.is_empty() {
                hop = Some(dest.hop.clone());
            }
            dialog = Some((key.clone(), from_caller));
        }
        if dialog.is_none() {
            self.note_early_cseq(&request, &from_tag, cseq);
            // A challenged SUBSCRIBE's dialog: the offset is in our route.
            let call_id = request.call_id().unwrap_or_default();
            let delta = cseq_offset(&self.view, &consumed.routes, call_id, &from_tag);
            if delta > 0
                && let Ok(c) = request.cseq()
            {
                let value = format!("{} {}", c.seq.wrapping_add(delta), c.method);
                request.set_header(HeaderName::CSeq, value);
                mapping.cseq_delta = delta;
            }
        }
        if hop.is_none()
            && let Some(Uri::Sip(last)) = consumed.routes.last()
            && let Some(flow) = last.user().and_then(|u| self.view.flow_from_token(u))
        {
            let protocol = last
                .transport()
                .and_then(|t| siplink_message::Transport::from_token(&t))
                .unwrap_or(siplink_message::Transport::Udp);
            hop = Some(NextHop::Flow { flow, protocol });
        }
        let Some(hop) = hop.or_else(|| hop_of(&request)) else {
            if method != Method::Ack {
                self.respond(tx, &request, 404, "Cannot Reach Next Hop");
            }
            return;
        };
        if let (Some(d), Some((_, from_caller))) = (&present, &dialog) {
            d.present(*from_caller, &mut request);
        }
        if method == Method::Ack {
            let branch = core::stateless_branch(&request, &core::loop_cookie(&request));
            core::push_via(&mut request, &branch);
            // With media on, an answer in the ACK waits for the relay's SDP.
            let Some(request) = self.media_hold_ack(dialog.as_ref(), request, &hop, now) else {
                return;
            };
            self.out.push_back(Output::Forward {
                message: request,
                hop,
            });
            return;
        }
        if method == Method::Bye
            && let Some((key, from_caller)) = &dialog
        {
            let reason = if *from_caller {
                EndReason::ByeFromCaller
            } else {
                EndReason::ByeFromCallee
            };
            self.forget_dialog(key, reason, now);
            dialog = None;
        }
        let target = Target {
            request_uri: None,
            route: Vec::new(),
            hop,
        };
        // With media on, an offer in a re-INVITE/UPDATE waits for the
        // relay's SDP.
        let Some(request) = self.media_hold_request(tx, request, origin, dialog.as_ref(), &target)
        else {
            return;
        };
        self.start_relay(tx, request, origin, dialog, target, mapping, now);
    }

    /// A request of an early dialog from a callee (its From tag is not the
    /// caller's): its CSeq, so that a BYE the proxy sends for it later is
    /// above it (RFC 3261 §12.2.2).
    fn note_early_cseq(&mut self, request: &Message, from_tag: &str, cseq: u32) {
        let Some(id) = request.call_id().ok().and_then(|c| self.early.get(c)) else {
            return;
        };
        let Some(fork) = self.forks.get_mut(id) else {
            return;
        };
        if fork.request.from_tag().ok().flatten() == Some(from_tag) {
            return;
        }
        let full = fork.early_cseq.len() >= 16;
        match fork.early_cseq.iter_mut().find(|(t, _)| t == from_tag) {
            Some((_, n)) => *n = (*n).max(cseq),
            None if !full => fork.early_cseq.push((from_tag.to_owned(), cseq)),
            None => {}
        }
    }

    /// The first 2xx of a branch to an initial INVITE: the dialog record
    /// (RFC 4028 session timer included). Returns the response to forward.
    pub(super) fn record_dialog(
        &mut self,
        fork_id: u64,
        callee_hop: NextHop,
        mut response: Message,
        cseq_delta: u32,
        caller_as: Option<Bytes>,
        now: Instant,
    ) -> Message {
        let Some(fork) = self.forks.get(&fork_id) else {
            return response;
        };
        let request = &fork.request;
        let key = DialogKey {
            call_id: request.call_id().unwrap_or_default().to_owned(),
            caller_tag: request
                .from_tag()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned(),
            callee_tag: response
                .to_tag()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned(),
        };
        if self.dialogs.contains_key(&key) {
            // A retransmission of a 2xx already seen.
            return response;
        }
        let caller_gone = fork.caller_gone;
        let connection = fork.connection.clone();
        let caller_hop = NextHop::back_to(&fork.origin);
        let cseq = request.cseq().map(|c| c.seq).unwrap_or(0);
        // RFC 4028 §8.2: when the callee did not do session timers but the
        // caller supports them, the proxy asks the caller to refresh.
        let mut session = dispatch::session_expires(&response);
        if session.is_none()
            && let Some(secs) = wants_timer(request)
        {
            response.append_header(HeaderName::SessionExpires, format!("{secs};refresher=uac"));
            response.append_header(HeaderName::Require, Bytes::from_static(b"timer"));
            session = Some((secs, Some(Refresher::Uac)));
        }
        let local = self.view.local().clone();
        let (callee_route, caller_route) = split_route_set(&response, |u| local.is_local_uri(u));
        let record = DialogRecord {
            key: key.clone(),
            caller: Leg {
                tag: key.caller_tag.clone(),
                party: header_bytes(request, HeaderName::From),
                target: contact_uri(request).unwrap_or_default(),
                route: caller_route,
                hop: caller_hop,
                cseq,
            },
            callee: Leg {
                tag: key.callee_tag.clone(),
                party: header_bytes(&response, HeaderName::To),
                target: contact_uri(&response).unwrap_or_default(),
                route: callee_route,
                hop: callee_hop,
                cseq: fork
                    .early_cseq
                    .iter()
                    .find(|(tag, _)| *tag == key.callee_tag)
                    .map_or(0, |(_, n)| *n),
            },
            connection: connection.clone(),
            answered_at: now,
            media: None,
            max_end: timers::deadline(now, self.config.max_call_duration),
            session: None,
            cseq_delta,
            caller_as: caller_as.map(Box::new),
            session_timer: None,
            max_timer: None,
        };
        if self.dialogs.len() >= self.config.max_dialogs && !caller_gone {
            return response;
        }
        self.dialogs.insert(key.clone(), record);
        let max_end = timers::deadline(now, self.config.max_call_duration);
        let t = self.timers.add(max_end, Timer::MaxDuration(key.clone()));
        if let Some(d) = self.dialogs.get_mut(&key) {
            d.max_timer = Some(t);
        }
        if let Some((secs, refresher)) = session {
            self.set_session(&key, secs, refresher, now);
        }
        self.out.push_back(Output::Event(Event::CallAnswered {
            key: key.clone(),
            connection,
            at: now,
        }));
        if caller_gone {
            // The caller vanished while the call was ringing: ACK the 2xx
            // and hang up towards the callee.
            if let Some(d) = self.dialogs.get(&key) {
                let branch = core::branch("ack", 0);
                let cseq = cseq.wrapping_add(d.cseq_delta);
                if let Some(mut ack) = d.request_to(false, Method::Ack, cseq, &branch, None) {
                    if let Some(presented) = &d.caller_as {
                        ack.set_header(HeaderName::From, Bytes::clone(presented));
                    }
                    let hop = d.callee.hop.clone();
                    self.out.push_back(Output::Forward { message: ack, hop });
                }
            }
            // (Only a closed flow makes a caller gone.)
            if let Some(flow) = self.forks.get(&fork_id).and_then(|f| f.origin.flow) {
                self.end_dialog(&key, EndReason::FlowClosed(flow), Some(flow), now);
            }
        }
        response
    }

    /// A 2xx to a request inside a dialog: a re-INVITE or UPDATE refreshes
    /// the session timer (RFC 4028) and both may refresh the targets.
    pub(super) fn refreshed(
        &mut self,
        key: &DialogKey,
        from_caller: bool,
        request: &Message,
        response: Message,
        now: Instant,
    ) -> Message {
        let method = request.method().cloned();
        let refresh = matches!(method, Some(Method::Invite) | Some(Method::Update));
        if !refresh {
            return response;
        }
        let Some(d) = self.dialogs.get_mut(key) else {
            return response;
        };
        let (sender, receiver) = if from_caller {
            (&mut d.caller, &mut d.callee)
        } else {
            (&mut d.callee, &mut d.caller)
        };
        if let Some(c) = contact_uri(request) {
            sender.target = c;
        }
        if let Some(c) = contact_uri(&response) {
            receiver.target = c;
        }
        // RFC 4028 §9/§10: each 2xx to a refresh sets the session interval
        // anew; one without Session-Expires turns the timer off, unless the
        // request asked for one and its sender supports timers (then the
        // proxy asks it to refresh, as for the initial INVITE).
        let mut response = response;
        match dispatch::session_expires(&response) {
            Some((secs, refresher)) => self.set_session(key, secs, refresher, now),
            None => match wants_timer(request) {
                Some(secs) => {
                    response
                        .append_header(HeaderName::SessionExpires, format!("{secs};refresher=uac"));
                    response.append_header(HeaderName::Require, Bytes::from_static(b"timer"));
                    self.set_session(key, secs, Some(Refresher::Uac), now);
                }
                None => {
                    if let Some(d) = self.dialogs.get_mut(key) {
                        self.timers.cancel(d.session_timer.take());
                        d.session = None;
                    }
                }
            },
        }
        response
    }

    fn set_session(
        &mut self,
        key: &DialogKey,
        secs: u32,
        refresher: Option<Refresher>,
        now: Instant,
    ) {
        let secs = secs.clamp(1, 86_400);
        let interval = Duration::from_secs(u64::from(secs));
        let Some(d) = self.dialogs.get_mut(key) else {
            return;
        };
        self.timers.cancel(d.session_timer.take());
        let expires_at = timers::deadline(now, interval);
        let refresher = refresher.or(d.session.as_ref().and_then(|s| s.refresher));
        d.session = Some(SessionTimer {
            interval,
            refresher,
            expires_at,
        });
        d.session_timer = Some(
            self.timers
                .add(expires_at, Timer::SessionExpiry(key.clone())),
        );
    }

    /// Removes a record (the call ended by a BYE passing through).
    fn forget_dialog(&mut self, key: &DialogKey, reason: EndReason, now: Instant) {
        if let Some(mut d) = self.dialogs.remove(key) {
            self.timers.cancel(d.session_timer.take());
            self.timers.cancel(d.max_timer.take());
            self.media_dialog_gone(&d, &reason);
            self.out.push_back(Output::Event(Event::CallEnded {
                call_id: key.call_id.clone(),
                reason,
                at: now,
            }));
        }
    }

    /// Ends a call from the proxy: BYE to both legs (but not over `gone`, a
    /// flow that closed), record removed.
    pub(super) fn end_dialog(
        &mut self,
        key: &DialogKey,
        reason: EndReason,
        gone: Option<FlowId>,
        now: Instant,
    ) {
        let Some(d) = self.dialogs.get(key).cloned() else {
            return;
        };
        let text = match reason {
            EndReason::SessionExpired => "Session Timer Expired",
            EndReason::MaxDuration => "Maximum Call Duration",
            EndReason::FlowClosed(_) => "Connection Closed",
            EndReason::MediaTimeout => "Media Timeout",
            EndReason::MediaFailed => "Media Relay Failed",
            _ => "Call Ended By Proxy",
        };
        for to_caller in [false, true] {
            let (leg, other) = if to_caller {
                (&d.caller, &d.callee)
            } else {
                (&d.callee, &d.caller)
            };
            if gone.is_some() && leg.flow() == gone {
                continue;
            }
            let id = BranchId(self.id());
            let branch = core::branch("bye", id.get() as usize);
            // Towards the callee, the caller's numbers run `cseq_delta`
            // higher.
            let delta = if to_caller { 0 } else { d.cseq_delta };
            let cseq = other.cseq.saturating_add(delta).saturating_add(1);
            if let Some(mut bye) = d.request_to(to_caller, Method::Bye, cseq, &branch, Some(text)) {
                // The callee knows the caller by the identity presented.
                if !to_caller && let Some(presented) = &d.caller_as {
                    bye.set_header(HeaderName::From, Bytes::clone(presented));
                }
                self.branches.insert(id, BranchSlot::Own);
                self.out.push_back(Output::Send {
                    branch: id,
                    request: bye,
                    hop: leg.hop.clone(),
                });
            }
        }
        self.forget_dialog(key, reason, now);
    }

    /// A response that matched no client transaction of ours, or came on a
    /// branch already finished: a 2xx retransmission to an INVITE of an
    /// answered call (or to a re-INVITE inside it) is forwarded statelessly
    /// to the side that sent the INVITE (RFC 6026 §8.4 lets a proxy do so);
    /// anything else is dropped.
    pub fn handle_stray_response(&mut self, mut response: Message, _now: Instant) {
        let is_2xx_invite = response.status().is_some_and(|s| (200..300).contains(&s))
            && response.cseq().is_ok_and(|c| c.method == Method::Invite);
        if !is_2xx_invite {
            return;
        }
        // The response goes to whoever sent the INVITE: its From tag.
        let call_id = response.call_id().unwrap_or_default().to_owned();
        let from = response
            .from_tag()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let to = response
            .to_tag()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let as_sent = DialogKey {
            call_id: call_id.clone(),
            caller_tag: from.clone(),
            callee_tag: to.clone(),
        };
        let reversed = DialogKey {
            call_id,
            caller_tag: to,
            callee_tag: from,
        };
        let (hop, key, mapping) = if let Some(d) = self.dialogs.get(&as_sent) {
            (d.caller_hop().clone(), as_sent, d.mapping(true))
        } else if let Some(d) = self.dialogs.get(&reversed) {
            (d.callee.hop.clone(), reversed, d.mapping(false))
        } else {
            return;
        };
        if mapping.cseq_delta > 0 {
            super::fork::restore_cseq(&mut response, mapping.cseq_delta);
        }
        if let Some((name, value)) = mapping.restore {
            response.set_header(name, value);
        }
        self.media_retransmission(&key, &mut response);
        core::pop_via(&mut response);
        self.out.push_back(Output::Forward {
            message: response,
            hop,
        });
    }
}

/// The Session-Expires of a request whose sender supports timers.
fn wants_timer(request: &Message) -> Option<u32> {
    let (secs, _) = dispatch::session_expires(request)?;
    super::supports_timer(request).then_some(secs)
}

fn header_bytes(message: &Message, name: HeaderName) -> Bytes {
    message
        .header(name)
        .map(Bytes::copy_from_slice)
        .unwrap_or_default()
}

/// What the MAC of a `cs` Record-Route parameter binds: the Call-ID, the
/// caller's From tag and the offset.
fn cseq_offset_input(call_id: &str, from_tag: &str, delta: u32) -> String {
    format!("{call_id}\ncs\n{from_tag}\n{delta}")
}

/// Marks our Record-Route entries in `request` (an initial request other than
/// INVITE, sent again `delta` above the caller's CSeq with the connection's
/// credentials, RFC 3261 §22.2) with `cs=DELTA.MAC`: no dialog record keeps
/// the offset of a SUBSCRIBE's or REFER's dialog, so the route set does. The
/// caller's later requests in that dialog go out `delta` higher (the PBX
/// wants its CSeq to grow, §12.2.2) and their responses come back lowered;
/// the callee's requests are left alone (the MAC binds the caller's From
/// tag).
pub(super) fn mark_cseq_offset(view: &dyn View, request: &mut Message, delta: u32) {
    let call_id = request.call_id().unwrap_or_default().to_owned();
    let from_tag = request
        .from_tag()
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_owned();
    let ours = format!(";sld={}", view.dialog_mac(&call_id));
    let values: Vec<String> = request
        .header_values(HeaderName::RecordRoute)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    if !values.iter().any(|v| v.contains(&ours)) {
        return;
    }
    let mac = view.dialog_mac(&cseq_offset_input(&call_id, &from_tag, delta));
    let param = format!(";cs={delta}.{mac}");
    request.remove_header(HeaderName::RecordRoute);
    for v in values.iter().rev() {
        let v = match (v.contains(&ours), v.rfind('>')) {
            (true, Some(end)) => {
                // Another round replaces an earlier mark.
                let head = match v[..end].find(";cs=") {
                    Some(at) => &v[..at],
                    None => &v[..end],
                };
                format!("{head}{param}{}", &v[end..])
            }
            _ => v.clone(),
        };
        request.prepend_header(HeaderName::RecordRoute, v);
    }
}

/// The CSeq offset that our consumed Route entries give a request from the
/// dialog's caller (`from_tag`; see [`mark_cseq_offset`]), 0 if none.
fn cseq_offset(view: &dyn View, routes: &[Uri], call_id: &str, from_tag: &str) -> u32 {
    routes
        .iter()
        .filter_map(|u| u.as_sip()?.param("cs")?.map(|v| v.into_owned()))
        .find_map(|v| {
            let (delta, mac) = v.split_once('.')?;
            let delta: u32 = delta.parse().ok()?;
            let want = view.dialog_mac(&cseq_offset_input(call_id, from_tag, delta));
            (mac == want).then_some(delta)
        })
        .unwrap_or(0)
}
