//! The small record a [`TransactionTable`](crate::TransactionTable) keeps for a
//! transaction that only waits out its last timer: the key, the bytes it may
//! send again and one deadline.
//!
//! | transaction, state | kept | does |
//! |---|---|---|
//! | server non-INVITE Completed (timer J) | key, final response bytes | a retransmitted request gets the bytes again |
//! | server INVITE Confirmed (timer I) | key | absorbs ACKs |
//! | client non-INVITE Completed (timer K) | key | absorbs responses |
//! | client INVITE Completed (timer D) | key, ACK bytes | a retransmitted non-2xx final gets the ACK again; a 2xx goes to the TU |
//! | client INVITE Accepted (timer M) | key | a 2xx goes to the TU, others are absorbed |

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use siplink_message::{Message, Method};

use crate::client::ClientState;
use crate::event::{Action, TuEvent};
use crate::key::{ClientKey, ServerKey};
use crate::server::ServerState;
use crate::table::TransactionState;

/// The key a finished transaction is indexed under.
#[derive(Debug, Clone)]
pub(crate) enum DoneKey {
    Client(ClientKey),
    Server(ServerKey),
}

/// A transaction waiting out its last timer (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub(crate) key: DoneKey,
    state: TransactionState,
    invite: bool,
    /// What a retransmission is answered with: the server's final response,
    /// the client INVITE's ACK.
    resend: Option<Bytes>,
    until: Option<Instant>,
    out: VecDeque<Action>,
}

impl Done {
    pub(crate) fn new(
        key: DoneKey,
        state: TransactionState,
        invite: bool,
        resend: Option<Bytes>,
        until: Instant,
    ) -> Done {
        Done {
            key,
            state,
            invite,
            resend,
            until: Some(until),
            out: VecDeque::new(),
        }
    }

    pub(crate) fn state(&self) -> TransactionState {
        self.state
    }

    pub(crate) fn is_server(&self) -> bool {
        matches!(self.key, DoneKey::Server(_))
    }

    pub(crate) fn poll_output(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.until
    }

    pub(crate) fn armed_count(&self) -> usize {
        usize::from(self.until.is_some())
    }

    /// Frees the drained action queue.
    pub(crate) fn compact(&mut self) {
        if self.out.is_empty() && self.out.capacity() > 0 {
            self.out = VecDeque::new();
        }
    }

    fn terminate(&mut self) {
        self.until = None;
        self.state = match self.key {
            DoneKey::Client(_) => TransactionState::Client(ClientState::Terminated),
            DoneKey::Server(_) => TransactionState::Server(ServerState::Terminated),
        };
        self.resend = None;
        self.out.push_back(Action::Terminated);
    }

    fn terminated(&self) -> bool {
        self.until.is_none()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.until.is_some_and(|at| at <= now) {
            self.terminate();
        }
    }

    pub(crate) fn handle_transport_error(&mut self, _now: Instant) {
        if self.terminated() {
            return;
        }
        self.out.push_back(Action::Deliver(TuEvent::TransportError));
        self.terminate();
    }

    /// A request matched to a finished server transaction: a retransmission
    /// of the non-INVITE request gets the final response again; ACKs (of a
    /// Confirmed INVITE) are absorbed.
    pub(crate) fn handle_request(&mut self, msg: &Message, _now: Instant) {
        if self.terminated() || msg.method() == Some(&Method::Ack) {
            return;
        }
        if let Some(r) = &self.resend {
            self.out.push_back(Action::Send(r.clone()));
        }
    }

    /// A response matched to a finished client transaction.
    pub(crate) fn handle_response(&mut self, msg: Message, _now: Instant) {
        if self.terminated() || !self.invite {
            return;
        }
        match msg.status() {
            Some(200..=299) => self
                .out
                .push_back(Action::Deliver(TuEvent::Additional2xx(Box::new(msg)))),
            Some(300..) if self.state == TransactionState::Client(ClientState::Completed) => {
                if let Some(ack) = &self.resend {
                    self.out.push_back(Action::Send(ack.clone()));
                }
            }
            _ => {}
        }
    }
}
