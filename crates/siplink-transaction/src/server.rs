//! Server transactions (RFC 3261 §17.2, RFC 6026 §8.5-8.7).

use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::{Message, Method};

use crate::error::{Error, Result};
use crate::event::{Action, Actions, Event, TuEvent};
use crate::key::ServerKey;
use crate::timer::{TRYING_DELAY, TimerKind, Timers};

/// The state of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE: request received, TU has not answered.
    Trying,
    /// A provisional response was sent (INVITE: also the initial state).
    Proceeding,
    /// A final response was sent (non-2xx for INVITE); retransmitting or absorbing.
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived; absorbing ACK retransmissions.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026); further 2xx from the TU pass through.
    Accepted,
    /// Over.
    Terminated,
}

impl ServerState {
    fn name(self) -> &'static str {
        match self {
            ServerState::Trying => "Trying",
            ServerState::Proceeding => "Proceeding",
            ServerState::Completed => "Completed",
            ServerState::Confirmed => "Confirmed",
            ServerState::Accepted => "Accepted",
            ServerState::Terminated => "Terminated",
        }
    }
}

/// A server transaction: INVITE (RFC 3261 Figure 7 with the RFC 6026 Accepted
/// state) or non-INVITE (Figure 8).
///
/// Created with [`ServerTransaction::new`] from the request that starts it (which
/// is delivered to the TU); then fed [`Event`]s (retransmitted requests, ACKs,
/// timers) and the TU's responses through [`ServerTransaction::respond`].
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    invite: bool,
    state: ServerState,
    key: ServerKey,
    request: Message,
    reliable: bool,
    timers: Timers,
    /// Last response sent (what a retransmitted request is answered with).
    last_response: Option<Bytes>,
    /// Current G interval.
    interval: Duration,
    final_to_tag: Option<String>,
}

impl ServerTransaction {
    /// Starts a server transaction for a received `request` (not ACK). The
    /// returned actions deliver the request to the TU and, for INVITE, start the
    /// 200 ms timer after which the transaction sends 100 Trying itself.
    pub fn new(
        request: Message,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Result<(ServerTransaction, Actions)> {
        let key = ServerKey::of_request(&request)?;
        let method = request.method().ok_or(Error::NotARequest)?;
        if *method == Method::Ack {
            return Err(Error::AckIsNotATransaction);
        }
        let invite = *method == Method::Invite;
        let mut actions = Vec::with_capacity(2);
        if invite {
            actions.push(Action::StartTimer(TimerKind::Trying, now + TRYING_DELAY));
        }
        actions.push(Action::Deliver(TuEvent::Request(Box::new(request.clone()))));
        let tx = ServerTransaction {
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            key,
            request,
            reliable,
            timers,
            last_response: None,
            interval: timers.t1,
            final_to_tag: None,
        };
        Ok((tx, actions))
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The matching key of this transaction.
    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// The request that created the transaction.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// Whether this is an INVITE transaction.
    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// Whether the transport is reliable.
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// The To tag of the final response sent, once one was sent.
    pub fn final_to_tag(&self) -> Option<&str> {
        self.final_to_tag.as_deref()
    }

    /// Feeds one event; returns the actions to carry out. Events that the state
    /// does not expect produce no action.
    pub fn handle(&mut self, event: Event, now: Instant) -> Actions {
        let mut out = Vec::new();
        if self.state == ServerState::Terminated {
            return out;
        }
        match event {
            Event::Received(msg) => match msg.method() {
                Some(Method::Ack) => self.ack(msg, now, &mut out),
                Some(_) => self.retransmission(&mut out),
                None => {}
            },
            Event::TimerFired(t) => self.timer(t, now, &mut out),
            Event::TransportError => {
                out.push(Action::Deliver(TuEvent::TransportError));
                // RFC 6026 §8.7: in Accepted the transaction stays, to absorb
                // retransmissions, until timer L.
                if self.state != ServerState::Accepted {
                    self.terminate(&mut out);
                }
            }
        }
        out
    }

    /// Sends the TU's `response` (1xx-6xx) through the transaction.
    ///
    /// INVITE: a 1xx is sent from Proceeding; a 2xx moves to Accepted (RFC 6026),
    /// where further 2xx pass through (the TU retransmits its 2xx itself, RFC 3261
    /// §13.3.1.4); a 3xx-6xx moves to Completed and is retransmitted by the
    /// transaction (timer G, unreliable transports) until the ACK or timer H.
    /// Non-INVITE: 1xx from Trying or Proceeding; a final response moves to
    /// Completed. Anything else is [`Error::InvalidState`].
    pub fn respond(&mut self, response: &Message, now: Instant) -> Result<Actions> {
        let status = response.status().ok_or(Error::NotAResponse)?;
        let bad = |state: ServerState| Error::InvalidState {
            state: state.name(),
            what: "sending this response",
        };
        let bytes = response.to_bytes();
        let mut out = Vec::with_capacity(4);
        if self.invite {
            match (self.state, status) {
                (ServerState::Proceeding, 100..=199) => {
                    out.push(Action::CancelTimer(TimerKind::Trying));
                    out.push(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                }
                (ServerState::Proceeding, 200..=299) => {
                    self.final_to_tag = response.to()?.tag().map(str::to_owned);
                    out.push(Action::CancelTimer(TimerKind::Trying));
                    out.push(Action::Send(bytes));
                    self.last_response = None;
                    self.state = ServerState::Accepted;
                    out.push(Action::StartTimer(
                        TimerKind::L,
                        now + self.timers.timeout(),
                    ));
                }
                (ServerState::Proceeding, 300..) => {
                    self.final_to_tag = response.to()?.tag().map(str::to_owned);
                    out.push(Action::CancelTimer(TimerKind::Trying));
                    out.push(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                    self.state = ServerState::Completed;
                    if !self.reliable {
                        self.interval = self.timers.t1;
                        out.push(Action::StartTimer(TimerKind::G, now + self.interval));
                    }
                    out.push(Action::StartTimer(
                        TimerKind::H,
                        now + self.timers.timeout(),
                    ));
                }
                (ServerState::Accepted, 200..=299) => out.push(Action::Send(bytes)),
                (state, _) => return Err(bad(state)),
            }
        } else {
            match (self.state, status) {
                (ServerState::Trying | ServerState::Proceeding, 100..=199) => {
                    out.push(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                    self.state = ServerState::Proceeding;
                }
                (ServerState::Trying | ServerState::Proceeding, 200..) => {
                    self.final_to_tag = response.to()?.tag().map(str::to_owned);
                    out.push(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                    self.state = ServerState::Completed;
                    if self.reliable {
                        self.terminate(&mut out);
                    } else {
                        out.push(Action::StartTimer(
                            TimerKind::J,
                            now + self.timers.timeout(),
                        ));
                    }
                }
                (state, _) => return Err(bad(state)),
            }
        }
        Ok(out)
    }

    fn terminate(&mut self, out: &mut Actions) {
        self.state = ServerState::Terminated;
        out.push(Action::Terminated);
    }

    fn retransmission(&mut self, out: &mut Actions) {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => {
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
            }
            // Trying: the TU has not answered; Confirmed and Accepted absorb.
            _ => {}
        }
    }

    fn ack(&mut self, ack: Message, now: Instant, out: &mut Actions) {
        if !self.invite {
            return;
        }
        match self.state {
            ServerState::Completed => {
                out.push(Action::CancelTimer(TimerKind::G));
                out.push(Action::CancelTimer(TimerKind::H));
                self.state = ServerState::Confirmed;
                if self.reliable {
                    self.terminate(out);
                } else {
                    out.push(Action::StartTimer(TimerKind::I, now + self.timers.t4));
                }
            }
            ServerState::Accepted => out.push(Action::Deliver(TuEvent::Ack(Box::new(ack)))),
            _ => {}
        }
    }

    fn timer(&mut self, t: TimerKind, now: Instant, out: &mut Actions) {
        match (self.state, t) {
            (ServerState::Proceeding, TimerKind::Trying) if self.last_response.is_none() => {
                if let Ok(trying) = self.request.response(100).to_bytes() {
                    out.push(Action::Send(trying.clone()));
                    self.last_response = Some(trying);
                }
            }
            (ServerState::Completed, TimerKind::G) => {
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
                self.interval = self.interval.saturating_mul(2).min(self.timers.t2);
                out.push(Action::StartTimer(TimerKind::G, now + self.interval));
            }
            (ServerState::Completed, TimerKind::H) => {
                out.push(Action::Deliver(TuEvent::Timeout));
                self.terminate(out);
            }
            (ServerState::Confirmed, TimerKind::I)
            | (ServerState::Completed, TimerKind::J)
            | (ServerState::Accepted, TimerKind::L) => self.terminate(out),
            _ => {}
        }
    }
}
