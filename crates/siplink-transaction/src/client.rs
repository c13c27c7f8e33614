//! Client transactions (RFC 3261 §17.1, RFC 6026 §8.4).

use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::{HeaderName, Message, MessageBuilder, Method};

use crate::error::Result;
use crate::event::{Action, Actions, Event, TuEvent};
use crate::key::ClientKey;
use crate::timer::{TimerKind, Timers};

/// The state of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// INVITE sent, no response yet.
    Calling,
    /// Non-INVITE request sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (non-2xx for INVITE); absorbing retransmissions.
    Completed,
    /// INVITE: a 2xx arrived (RFC 6026); further 2xx go to the TU until timer M.
    Accepted,
    /// Over.
    Terminated,
}

/// What §17.1.1.3 copies from the INVITE into the ACK for a non-2xx final.
#[derive(Debug, Clone)]
struct AckTemplate {
    request_uri: String,
    via: String,
    from: Bytes,
    call_id: Bytes,
    cseq: u32,
    routes: Vec<Bytes>,
}

/// A received header value copied onto one line (same meaning; the builder
/// rejects line breaks).
fn unfold(v: &[u8]) -> Bytes {
    siplink_message::unfold(Bytes::copy_from_slice(v))
}

impl AckTemplate {
    fn of(invite: &Message) -> Result<AckTemplate> {
        let missing = |what| siplink_message::Error::Syntax {
            offset: 0,
            context: what,
            expected: "header present",
        };
        Ok(AckTemplate {
            request_uri: String::from_utf8_lossy(
                invite
                    .request_uri_bytes()
                    .map(|b| &b[..])
                    .unwrap_or_default(),
            )
            .into_owned(),
            via: invite.top_via()?.to_string(),
            from: unfold(invite.header(HeaderName::From).ok_or(missing("From"))?),
            call_id: unfold(
                invite
                    .header(HeaderName::CallId)
                    .ok_or(missing("Call-ID"))?,
            ),
            cseq: invite.cseq()?.seq,
            routes: invite
                .header_values(HeaderName::Route)
                .map(unfold)
                .collect(),
        })
    }

    /// The ACK for `response` (RFC 3261 §17.1.1.3).
    fn build(&self, response: &Message) -> Option<Bytes> {
        let to = unfold(response.header(HeaderName::To)?);
        self.builder(Method::Ack, to).to_bytes().ok()
    }

    /// A request `method` with the copied fields and `to`.
    fn builder(&self, method: Method, to: Bytes) -> MessageBuilder {
        let mut b = MessageBuilder::request(method.clone(), &self.request_uri)
            .header(HeaderName::Via, &self.via)
            .header(HeaderName::MaxForwards, 70)
            .header_bytes(HeaderName::From, self.from.clone())
            .header_bytes(HeaderName::To, to)
            .header_bytes(HeaderName::CallId, self.call_id.clone())
            .header(HeaderName::CSeq, format_args!("{} {method}", self.cseq));
        for r in &self.routes {
            b = b.header_bytes(HeaderName::Route, r.clone());
        }
        b
    }
}

/// Builds the CANCEL for `invite` as RFC 3261 §9.1 says: same Request-URI,
/// Call-ID, To, From and CSeq number (method CANCEL), a single Via equal to the
/// INVITE's top Via (so the same branch), and the INVITE's Route headers. It is
/// sent in a client transaction of its own, to the INVITE's destination, and only
/// after a provisional response arrived (the TU's rule, §9.1).
pub fn build_cancel(invite: &Message) -> Result<Message> {
    if invite.method() != Some(&Method::Invite) {
        return Err(crate::Error::NotAnInvite);
    }
    let to = unfold(
        invite
            .header(HeaderName::To)
            .ok_or(siplink_message::Error::Syntax {
                offset: 0,
                context: "To",
                expected: "header present",
            })?,
    );
    Ok(AckTemplate::of(invite)?
        .builder(Method::Cancel, to)
        .build()?)
}

/// A client transaction: INVITE (RFC 3261 Figure 5 with the RFC 6026 Accepted
/// state) or non-INVITE (Figure 6).
///
/// Created with [`ClientTransaction::new`], which sends the request; then fed
/// [`Event`]s. Every step returns the [`Action`]s to carry out. Time is only what
/// the caller passes in.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    invite: bool,
    state: ClientState,
    key: ClientKey,
    request: Bytes,
    ack_template: Option<AckTemplate>,
    ack: Option<Bytes>,
    reliable: bool,
    timers: Timers,
    /// Current A or E interval.
    interval: Duration,
}

impl ClientTransaction {
    /// Starts a client transaction for `request` (not ACK) and returns the actions
    /// that send it and start its timers. `reliable` tells whether the transport
    /// is reliable (TCP, TLS, SCTP, WebSocket): then nothing is retransmitted.
    ///
    /// The request must carry its top Via with a branch (see
    /// [`new_branch`](crate::new_branch)) and a CSeq of its method.
    pub fn new(
        request: &Message,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Result<(ClientTransaction, Actions)> {
        let key = ClientKey::of_request(request)?;
        if key.method == Method::Ack {
            return Err(crate::Error::AckIsNotATransaction);
        }
        let invite = key.method == Method::Invite;
        let ack_template = if invite {
            Some(AckTemplate::of(request)?)
        } else {
            None
        };
        let bytes = request.to_bytes();
        let mut actions = Vec::with_capacity(3);
        actions.push(Action::Send(bytes.clone()));
        if !reliable {
            let t = if invite { TimerKind::A } else { TimerKind::E };
            actions.push(Action::StartTimer(t, now + timers.t1));
        }
        let t = if invite { TimerKind::B } else { TimerKind::F };
        actions.push(Action::StartTimer(t, now + timers.timeout()));
        let tx = ClientTransaction {
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            key,
            request: bytes,
            ack_template,
            ack: None,
            reliable,
            timers,
            interval: timers.t1,
        };
        Ok((tx, actions))
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The matching key of this transaction.
    pub fn key(&self) -> &ClientKey {
        &self.key
    }

    /// Whether this is an INVITE transaction.
    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// Whether the transport is reliable.
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// Feeds one event; returns the actions to carry out. Events that the state
    /// does not expect (late timers, stray messages) produce no action.
    pub fn handle(&mut self, event: Event, now: Instant) -> Actions {
        let mut out = Vec::new();
        if self.state == ClientState::Terminated {
            return out;
        }
        match event {
            Event::Received(msg) => match msg.status() {
                Some(status) if self.invite => self.invite_response(msg, status, now, &mut out),
                Some(status) => self.non_invite_response(msg, status, now, &mut out),
                None => {}
            },
            Event::TimerFired(t) => self.timer(t, now, &mut out),
            Event::TransportError => {
                out.push(Action::Deliver(TuEvent::TransportError));
                self.terminate(&mut out);
            }
        }
        out
    }

    fn terminate(&mut self, out: &mut Actions) {
        self.state = ClientState::Terminated;
        out.push(Action::Terminated);
    }

    fn invite_response(&mut self, msg: Message, status: u16, now: Instant, out: &mut Actions) {
        use ClientState::*;
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                if self.state == Calling {
                    out.push(Action::CancelTimer(TimerKind::A));
                    out.push(Action::CancelTimer(TimerKind::B));
                    self.state = Proceeding;
                }
                out.push(Action::Deliver(TuEvent::Provisional(Box::new(msg))));
            }
            (Calling | Proceeding, 200..=299) => {
                if self.state == Calling {
                    out.push(Action::CancelTimer(TimerKind::A));
                    out.push(Action::CancelTimer(TimerKind::B));
                }
                self.state = Accepted;
                out.push(Action::StartTimer(
                    TimerKind::M,
                    now + self.timers.timeout(),
                ));
                out.push(Action::Deliver(TuEvent::Final(Box::new(msg))));
            }
            (Calling | Proceeding, 300..) => {
                if self.state == Calling {
                    out.push(Action::CancelTimer(TimerKind::A));
                    out.push(Action::CancelTimer(TimerKind::B));
                }
                self.ack = self.ack_template.as_ref().and_then(|t| t.build(&msg));
                if let Some(ack) = &self.ack {
                    out.push(Action::Send(ack.clone()));
                }
                out.push(Action::Deliver(TuEvent::Final(Box::new(msg))));
                self.state = Completed;
                let d = self.timers.timer_d(self.reliable);
                if d.is_zero() {
                    self.terminate(out);
                } else {
                    out.push(Action::StartTimer(TimerKind::D, now + d));
                }
            }
            (Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    out.push(Action::Send(ack.clone()));
                }
            }
            // A 2xx after a non-2xx final (a race between forks) is not dropped
            // either: it creates a dialog the TU must ACK or forward.
            (Accepted | Completed, 200..=299) => {
                out.push(Action::Deliver(TuEvent::Additional2xx(Box::new(msg))))
            }
            _ => {}
        }
    }

    fn non_invite_response(&mut self, msg: Message, status: u16, now: Instant, out: &mut Actions) {
        use ClientState::*;
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                out.push(Action::Deliver(TuEvent::Provisional(Box::new(msg))));
            }
            (Trying | Proceeding, 200..) => {
                out.push(Action::CancelTimer(TimerKind::E));
                out.push(Action::CancelTimer(TimerKind::F));
                out.push(Action::Deliver(TuEvent::Final(Box::new(msg))));
                self.state = Completed;
                if self.reliable {
                    self.terminate(out);
                } else {
                    out.push(Action::StartTimer(TimerKind::K, now + self.timers.t4));
                }
            }
            _ => {}
        }
    }

    fn timer(&mut self, t: TimerKind, now: Instant, out: &mut Actions) {
        use ClientState::*;
        match (self.state, t) {
            (Calling, TimerKind::A) => {
                out.push(Action::Send(self.request.clone()));
                self.interval = self.interval.saturating_mul(2);
                out.push(Action::StartTimer(TimerKind::A, now + self.interval));
            }
            (Trying, TimerKind::E) => {
                out.push(Action::Send(self.request.clone()));
                self.interval = self.interval.saturating_mul(2).min(self.timers.t2);
                out.push(Action::StartTimer(TimerKind::E, now + self.interval));
            }
            (Proceeding, TimerKind::E) if !self.invite => {
                out.push(Action::Send(self.request.clone()));
                self.interval = self.timers.t2;
                out.push(Action::StartTimer(TimerKind::E, now + self.interval));
            }
            (Calling, TimerKind::B) | (Trying | Proceeding, TimerKind::F) => {
                out.push(Action::Deliver(TuEvent::Timeout));
                self.terminate(out);
            }
            (Completed, TimerKind::D | TimerKind::K) | (Accepted, TimerKind::M) => {
                self.terminate(out);
            }
            _ => {}
        }
    }
}
