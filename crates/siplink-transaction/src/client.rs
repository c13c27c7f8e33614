//! Client transactions (RFC 3261 §17.1, RFC 6026 §8.4).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::{HeaderName, Message, MessageBuilder, Method};

use crate::done::{Done, DoneKey};
use crate::error::Result;
use crate::event::{Action, TuEvent};
use crate::key::ClientKey;
use crate::table::TransactionState;
use crate::timer::{MAX_FIRED, TimerKind, TimerSet, Timers};

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
/// The core vocabulary of the workspace: created with [`ClientTransaction::new`]
/// (which queues the request's first send), fed inputs with `handle_*(…, now)`
/// ([`handle_response`](Self::handle_response),
/// [`handle_transport_error`](Self::handle_transport_error)); what to do comes
/// out of [`poll_output`](Self::poll_output), one [`Action`] at a time, in order.
/// The transaction keeps its own timers (A, B, D, E, F, K, M):
/// [`poll_timeout`](Self::poll_timeout) is the earliest armed deadline and
/// [`handle_timeout`](Self::handle_timeout) fires every timer due. Time is only
/// what the caller passes in.
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
    /// Armed timers.
    armed: TimerSet,
    /// Actions not yet taken by `poll_output`.
    out: VecDeque<Action>,
}

impl ClientTransaction {
    /// Starts a client transaction for `request` (not ACK): the first send is
    /// queued (see [`poll_output`](Self::poll_output)) and the timers armed. `reliable` tells whether the transport
    /// is reliable (TCP, TLS, SCTP, WebSocket): then nothing is retransmitted.
    ///
    /// The request must carry its top Via with a branch (see
    /// [`new_branch`](crate::new_branch)) and a CSeq of its method.
    pub fn new(
        request: &Message,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Result<ClientTransaction> {
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
        let mut armed = TimerSet::default();
        if !reliable {
            let t = if invite { TimerKind::A } else { TimerKind::E };
            armed.start(t, now + timers.t1);
        }
        let t = if invite { TimerKind::B } else { TimerKind::F };
        armed.start(t, now + timers.timeout());
        let mut out = VecDeque::with_capacity(3);
        out.push_back(Action::Send(bytes.clone()));
        Ok(ClientTransaction {
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
            armed,
            out,
        })
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

    /// Frees what the current state no longer needs: in Completed and
    /// Accepted only the key, the ACK of a non-2xx (sent again for each
    /// retransmitted final) and timer D, K or M are kept; the request bytes,
    /// the ACK template and the drained action queue go. The table calls it
    /// after taking the actions.
    pub fn compact(&mut self) {
        if matches!(
            self.state,
            ClientState::Completed | ClientState::Accepted | ClientState::Terminated
        ) {
            if !self.request.is_empty() {
                self.request = Bytes::new();
            }
            self.ack_template = None;
            if self.out.is_empty() && self.out.capacity() > 0 {
                self.out = VecDeque::new();
            }
        }
    }

    /// Once this transaction only waits out its last timer (Completed: D or
    /// K; INVITE Accepted: M) and its actions are taken: the small record
    /// that replaces it in a table (the key, the ACK of a non-2xx).
    pub(crate) fn linger(&self) -> Option<Done> {
        if !self.out.is_empty() {
            return None;
        }
        let (resend, until) = match (self.invite, self.state) {
            (false, ClientState::Completed) => (None, self.armed.get(TimerKind::K)?),
            (true, ClientState::Completed) => (self.ack.clone(), self.armed.get(TimerKind::D)?),
            (true, ClientState::Accepted) => (None, self.armed.get(TimerKind::M)?),
            _ => return None,
        };
        Some(Done::new(
            DoneKey::Client(self.key.clone()),
            TransactionState::Client(self.state),
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

    /// A response matched to this transaction arrived. Responses that the
    /// state does not expect (stray or late) produce no action.
    pub fn handle_response(&mut self, msg: Message, now: Instant) {
        if self.state == ClientState::Terminated {
            return;
        }
        match msg.status() {
            Some(status) if self.invite => self.invite_response(msg, status, now),
            Some(status) => self.non_invite_response(msg, status, now),
            None => {}
        }
    }

    /// The transport reported a fatal error sending for this transaction
    /// (RFC 3261 §17.1.4): the TU is told and the transaction ends.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state == ClientState::Terminated {
            return;
        }
        self.out.push_back(Action::Deliver(TuEvent::TransportError));
        self.terminate();
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.armed.clear();
        self.out.push_back(Action::Terminated);
    }

    fn invite_response(&mut self, msg: Message, status: u16, now: Instant) {
        use ClientState::*;
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                if self.state == Calling {
                    self.armed.cancel(TimerKind::A);
                    self.armed.cancel(TimerKind::B);
                    self.state = Proceeding;
                }
                self.out
                    .push_back(Action::Deliver(TuEvent::Provisional(Box::new(msg))));
            }
            (Calling | Proceeding, 200..=299) => {
                if self.state == Calling {
                    self.armed.cancel(TimerKind::A);
                    self.armed.cancel(TimerKind::B);
                }
                self.state = Accepted;
                self.armed.start(TimerKind::M, now + self.timers.timeout());
                self.out
                    .push_back(Action::Deliver(TuEvent::Final(Box::new(msg))));
            }
            (Calling | Proceeding, 300..) => {
                if self.state == Calling {
                    self.armed.cancel(TimerKind::A);
                    self.armed.cancel(TimerKind::B);
                }
                self.ack = self.ack_template.as_ref().and_then(|t| t.build(&msg));
                if let Some(ack) = &self.ack {
                    self.out.push_back(Action::Send(ack.clone()));
                }
                self.out
                    .push_back(Action::Deliver(TuEvent::Final(Box::new(msg))));
                self.state = Completed;
                let d = self.timers.timer_d(self.reliable);
                if d.is_zero() {
                    self.terminate();
                } else {
                    self.armed.start(TimerKind::D, now + d);
                }
            }
            (Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    self.out.push_back(Action::Send(ack.clone()));
                }
            }
            // A 2xx after a non-2xx final (a race between forks) is not dropped
            // either: it creates a dialog the TU must ACK or forward.
            (Accepted | Completed, 200..=299) => self
                .out
                .push_back(Action::Deliver(TuEvent::Additional2xx(Box::new(msg)))),
            _ => {}
        }
    }

    fn non_invite_response(&mut self, msg: Message, status: u16, now: Instant) {
        use ClientState::*;
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.out
                    .push_back(Action::Deliver(TuEvent::Provisional(Box::new(msg))));
            }
            (Trying | Proceeding, 200..) => {
                self.armed.cancel(TimerKind::E);
                self.armed.cancel(TimerKind::F);
                self.out
                    .push_back(Action::Deliver(TuEvent::Final(Box::new(msg))));
                self.state = Completed;
                if self.reliable {
                    self.terminate();
                } else {
                    self.armed.start(TimerKind::K, now + self.timers.t4);
                }
            }
            _ => {}
        }
    }

    fn fire(&mut self, t: TimerKind, now: Instant) {
        use ClientState::*;
        match (self.state, t) {
            (Calling, TimerKind::A) => {
                self.out.push_back(Action::Send(self.request.clone()));
                self.interval = self.interval.saturating_mul(2);
                self.armed.start(TimerKind::A, now + self.interval);
            }
            (Trying, TimerKind::E) => {
                self.out.push_back(Action::Send(self.request.clone()));
                self.interval = self.interval.saturating_mul(2).min(self.timers.t2);
                self.armed.start(TimerKind::E, now + self.interval);
            }
            (Proceeding, TimerKind::E) if !self.invite => {
                self.out.push_back(Action::Send(self.request.clone()));
                self.interval = self.timers.t2;
                self.armed.start(TimerKind::E, now + self.interval);
            }
            (Calling, TimerKind::B) | (Trying | Proceeding, TimerKind::F) => {
                self.out.push_back(Action::Deliver(TuEvent::Timeout));
                self.terminate();
            }
            (Completed, TimerKind::D | TimerKind::K) | (Accepted, TimerKind::M) => {
                self.terminate();
            }
            _ => {}
        }
    }
}
