//! Server transactions (RFC 3261 §17.2, RFC 6026 §8.5-8.7).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::{Message, Method};

use crate::done::{Done, DoneKey};
use crate::error::{Error, Result};
use crate::event::{Action, TuEvent};
use crate::key::ServerKey;
use crate::table::TransactionState;
use crate::timer::{MAX_FIRED, TRYING_DELAY, TimerKind, TimerSet, Timers};

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
/// The core vocabulary of the workspace: created with [`ServerTransaction::new`]
/// from the request that starts it (its delivery to the TU is queued), fed
/// inputs with `handle_*(…, now)`: retransmitted requests and ACKs
/// ([`handle_request`](Self::handle_request)), the TU's responses
/// ([`handle_response`](Self::handle_response), which reports a response the
/// state refuses at once), transport errors
/// ([`handle_transport_error`](Self::handle_transport_error)). What to do comes
/// out of [`poll_output`](Self::poll_output); the timers (G, H, I, J, L and the
/// 100 Trying timer) are kept inside: [`poll_timeout`](Self::poll_timeout),
/// [`handle_timeout`](Self::handle_timeout).
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    invite: bool,
    state: ServerState,
    key: ServerKey,
    /// The request, until a final response was sent (the 100 Trying and the
    /// TU's automatic answers are built from it); then dropped.
    request: Option<Box<Message>>,
    reliable: bool,
    timers: Timers,
    /// Last response sent (what a retransmitted request is answered with).
    last_response: Option<Bytes>,
    /// Current G interval.
    interval: Duration,
    final_to_tag: Option<String>,
    /// Armed timers.
    armed: TimerSet,
    /// Actions not yet taken by `poll_output`.
    out: VecDeque<Action>,
}

impl ServerTransaction {
    /// Starts a server transaction for a received `request` (not ACK). The
    /// request's delivery to the TU is queued and, for INVITE, the 200 ms timer
    /// armed after which the transaction sends 100 Trying itself.
    pub fn new(
        request: Message,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Result<ServerTransaction> {
        let key = ServerKey::of_request(&request)?;
        ServerTransaction::with_key(request, key, reliable, timers, now)
    }

    /// [`new`](Self::new) with the request's key already computed (the table
    /// computes it to look the request up first).
    pub(crate) fn with_key(
        request: Message,
        key: ServerKey,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Result<ServerTransaction> {
        let method = request.method().ok_or(Error::NotARequest)?;
        if *method == Method::Ack {
            return Err(Error::AckIsNotATransaction);
        }
        let invite = *method == Method::Invite;
        let mut armed = TimerSet::default();
        if invite {
            armed.start(TimerKind::Trying, now + TRYING_DELAY);
        }
        let mut out = VecDeque::with_capacity(2);
        out.push_back(Action::Deliver(TuEvent::Request(Box::new(request.clone()))));
        Ok(ServerTransaction {
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            key,
            request: Some(Box::new(request)),
            reliable,
            timers,
            last_response: None,
            interval: timers.t1,
            final_to_tag: None,
            armed,
            out,
        })
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The matching key of this transaction.
    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// The request that created the transaction, while no final response was
    /// sent (Trying, Proceeding). A transaction that answered keeps only its
    /// key, what its timers need and the bytes of its last response.
    pub fn request(&self) -> Option<&Message> {
        self.request.as_deref()
    }

    /// Frees what the current state no longer needs: the request once a final
    /// response was sent, and the action queue once it is drained. The table
    /// calls it after taking the actions.
    pub fn compact(&mut self) {
        if matches!(
            self.state,
            ServerState::Completed
                | ServerState::Confirmed
                | ServerState::Accepted
                | ServerState::Terminated
        ) {
            self.request = None;
            if self.out.is_empty() && self.out.capacity() > 0 {
                self.out = VecDeque::new();
            }
        }
        if matches!(self.state, ServerState::Confirmed | ServerState::Terminated) {
            self.last_response = None;
        }
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

    /// Once this transaction only waits out its last timer (non-INVITE
    /// Completed: timer J; INVITE Confirmed: timer I) and its actions are
    /// taken: the small record that replaces it in a table.
    pub(crate) fn linger(&self) -> Option<Done> {
        if !self.out.is_empty() {
            return None;
        }
        let (resend, until) = match (self.invite, self.state) {
            (false, ServerState::Completed) => {
                (self.last_response.clone(), self.armed.get(TimerKind::J)?)
            }
            (true, ServerState::Confirmed) => (None, self.armed.get(TimerKind::I)?),
            _ => return None,
        };
        Some(Done::new(
            DoneKey::Server(self.key.clone()),
            TransactionState::Server(self.state),
            self.invite,
            resend,
            until,
        ))
    }

    /// The next action to carry out, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// The earliest armed timer's deadline; `None` once terminated.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.armed.earliest().map(|(at, _)| at)
    }

    /// Number of armed timers.
    pub(crate) fn armed_count(&self) -> usize {
        self.armed.count()
    }

    /// The deadline of timer `kind`, if armed (for tests and diagnostics).
    pub fn timer(&self, kind: TimerKind) -> Option<Instant> {
        self.armed.get(kind)
    }

    /// Fires every timer due at `now`, earliest first. Each runs with its own
    /// deadline as the time, so schedules do not drift when called late.
    pub fn handle_timeout(&mut self, now: Instant) {
        for _ in 0..MAX_FIRED {
            let Some((at, kind)) = self.armed.pop_due(now) else {
                return;
            };
            self.fire(kind, at);
        }
    }

    /// A request matched to this transaction arrived: a retransmission of the
    /// request (answered with the last response sent) or an ACK. Requests the
    /// state does not expect produce no action.
    pub fn handle_request(&mut self, msg: Message, now: Instant) {
        if self.state == ServerState::Terminated {
            return;
        }
        match msg.method() {
            Some(Method::Ack) => self.ack(msg, now),
            Some(_) => self.retransmission(),
            None => {}
        }
    }

    /// The transport reported a fatal error sending for this transaction
    /// (RFC 3261 §17.2.4): the TU is told and the transaction ends (except in
    /// Accepted, RFC 6026 §8.7, which stays until timer L).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state == ServerState::Terminated {
            return;
        }
        self.out.push_back(Action::Deliver(TuEvent::TransportError));
        if self.state != ServerState::Accepted {
            self.terminate();
        }
    }

    /// Sends the TU's `response` (1xx-6xx) through the transaction (the send is
    /// queued for [`poll_output`](Self::poll_output)).
    ///
    /// INVITE: a 1xx is sent from Proceeding; a 2xx moves to Accepted (RFC 6026),
    /// where further 2xx pass through (the TU retransmits its 2xx itself, RFC 3261
    /// §13.3.1.4); a 3xx-6xx moves to Completed and is retransmitted by the
    /// transaction (timer G, unreliable transports) until the ACK or timer H.
    /// Non-INVITE: 1xx from Trying or Proceeding; a final response moves to
    /// Completed. Anything else is [`Error::InvalidState`], reported here and
    /// then, with nothing queued.
    pub fn handle_response(&mut self, response: &Message, now: Instant) -> Result<()> {
        let status = response.status().ok_or(Error::NotAResponse)?;
        let bad = |state: ServerState| Error::InvalidState {
            state: state.name(),
            what: "sending this response",
        };
        let bytes = response.to_bytes();
        if self.invite {
            match (self.state, status) {
                (ServerState::Proceeding, 100..=199) => {
                    self.armed.cancel(TimerKind::Trying);
                    self.out.push_back(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                }
                (ServerState::Proceeding, 200..=299) => {
                    self.final_to_tag = response.to()?.tag().map(str::to_owned);
                    self.armed.cancel(TimerKind::Trying);
                    self.out.push_back(Action::Send(bytes));
                    self.last_response = None;
                    self.state = ServerState::Accepted;
                    self.armed.start(TimerKind::L, now + self.timers.timeout());
                }
                (ServerState::Proceeding, 300..) => {
                    self.final_to_tag = response.to()?.tag().map(str::to_owned);
                    self.armed.cancel(TimerKind::Trying);
                    self.out.push_back(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                    self.state = ServerState::Completed;
                    if !self.reliable {
                        self.interval = self.timers.t1;
                        self.armed.start(TimerKind::G, now + self.interval);
                    }
                    self.armed.start(TimerKind::H, now + self.timers.timeout());
                }
                (ServerState::Accepted, 200..=299) => self.out.push_back(Action::Send(bytes)),
                (state, _) => return Err(bad(state)),
            }
        } else {
            match (self.state, status) {
                (ServerState::Trying | ServerState::Proceeding, 100..=199) => {
                    self.out.push_back(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                    self.state = ServerState::Proceeding;
                }
                (ServerState::Trying | ServerState::Proceeding, 200..) => {
                    self.final_to_tag = response.to()?.tag().map(str::to_owned);
                    self.out.push_back(Action::Send(bytes.clone()));
                    self.last_response = Some(bytes);
                    self.state = ServerState::Completed;
                    if self.reliable {
                        self.terminate();
                    } else {
                        self.armed.start(TimerKind::J, now + self.timers.timeout());
                    }
                }
                (state, _) => return Err(bad(state)),
            }
        }
        Ok(())
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.armed.clear();
        self.out.push_back(Action::Terminated);
    }

    fn retransmission(&mut self) {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => {
                if let Some(r) = &self.last_response {
                    self.out.push_back(Action::Send(r.clone()));
                }
            }
            // Trying: the TU has not answered; Confirmed and Accepted absorb.
            _ => {}
        }
    }

    fn ack(&mut self, ack: Message, now: Instant) {
        if !self.invite {
            return;
        }
        match self.state {
            ServerState::Completed => {
                self.armed.cancel(TimerKind::G);
                self.armed.cancel(TimerKind::H);
                self.state = ServerState::Confirmed;
                if self.reliable {
                    self.terminate();
                } else {
                    self.armed.start(TimerKind::I, now + self.timers.t4);
                }
            }
            ServerState::Accepted => self
                .out
                .push_back(Action::Deliver(TuEvent::Ack(Box::new(ack)))),
            _ => {}
        }
    }

    fn fire(&mut self, t: TimerKind, now: Instant) {
        match (self.state, t) {
            (ServerState::Proceeding, TimerKind::Trying) if self.last_response.is_none() => {
                if let Some(req) = &self.request
                    && let Ok(trying) = req.response(100).to_bytes()
                {
                    self.out.push_back(Action::Send(trying.clone()));
                    self.last_response = Some(trying);
                }
            }
            (ServerState::Completed, TimerKind::G) => {
                if let Some(r) = &self.last_response {
                    self.out.push_back(Action::Send(r.clone()));
                }
                self.interval = self.interval.saturating_mul(2).min(self.timers.t2);
                self.armed.start(TimerKind::G, now + self.interval);
            }
            (ServerState::Completed, TimerKind::H) => {
                self.out.push_back(Action::Deliver(TuEvent::Timeout));
                self.terminate();
            }
            (ServerState::Confirmed, TimerKind::I)
            | (ServerState::Completed, TimerKind::J)
            | (ServerState::Accepted, TimerKind::L) => self.terminate(),
            _ => {}
        }
    }
}
