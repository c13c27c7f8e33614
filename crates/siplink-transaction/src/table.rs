//! A sans-IO table of live transactions: matching, creation, limits and timers.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Instant;

use bytes::Bytes;
use siplink_message::{HeaderName, Message, Method};

use crate::client::{ClientState, ClientTransaction};
use crate::error::{Error, Result};
use crate::event::{Action, Actions, Event, TuEvent};
use crate::key::{ClientKey, MergeKey, ServerKey};
use crate::server::{ServerState, ServerTransaction};
use crate::timer::{TimerKind, Timers};

/// Identifies a transaction in a [`TransactionTable`]; never reused by a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(u64);

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// Configuration of a [`TransactionTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// T1, T2, T4.
    pub timers: Timers,
    /// Most live transactions (client and server together). Past it, new requests
    /// are answered 503 and new client transactions refused.
    pub max_transactions: usize,
    /// Retry-After seconds in the 503 sent past the limit.
    pub retry_after: u32,
    /// Answer merged requests (RFC 3261 §8.2.2.2) with 482. A UAS does; a proxy
    /// must not (it forwards them), so this is off by default.
    pub detect_merged: bool,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            timers: Timers::default(),
            max_transactions: 100_000,
            retry_after: 5,
            detect_merged: false,
        }
    }
}

/// What the caller carries out after a table call, in order.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send these bytes for transaction `id` (to its next hop, or its response
    /// destination per RFC 3261 §18.2.2).
    Send {
        /// The transaction.
        id: TransactionId,
        /// The message.
        bytes: Bytes,
    },
    /// Hand this event of transaction `id` to the TU.
    Deliver {
        /// The transaction.
        id: TransactionId,
        /// The event.
        event: TuEvent,
    },
    /// Transaction `id` is over and freed.
    Terminated {
        /// The transaction.
        id: TransactionId,
    },
}

/// What became of a message given to [`TransactionTable::receive`].
#[derive(Debug)]
pub enum Received {
    /// It matched a live transaction (a response, a retransmitted request, an ACK
    /// for a non-2xx final).
    Matched {
        /// The transaction.
        id: TransactionId,
        /// What to do.
        outputs: Vec<Output>,
    },
    /// A new server transaction was created; `outputs` deliver the request.
    New {
        /// The new transaction.
        id: TransactionId,
        /// For a CANCEL: the live INVITE server transaction it cancels (RFC 3261
        /// §9.2); `None` means the TU answers the CANCEL 481.
        cancels: Option<TransactionId>,
        /// What to do.
        outputs: Vec<Output>,
    },
    /// A response or ACK that matches no transaction (e.g. a 2xx retransmission
    /// after the client transaction ended, or the ACK for a 2xx). Goes to the TU,
    /// which may forward it statelessly (RFC 3261 §16.7, §16.11).
    Stray(Message),
    /// The live-transaction limit is reached: send this 503 (with Retry-After)
    /// statelessly. No transaction was created.
    Rejected(Message),
    /// A merged request (only with [`TableConfig::detect_merged`]): send this 482
    /// statelessly.
    Merged(Message),
    /// The message lacks what matching needs (Via, CSeq, ...); drop it.
    Invalid(Error),
}

#[derive(Debug)]
enum Tx {
    Client(ClientTransaction),
    Server(ServerTransaction),
}

#[derive(Debug)]
struct Entry {
    tx: Tx,
    timers: [Option<Instant>; TimerKind::COUNT],
    merge: Option<MergeKey>,
    ack_key: Option<ServerKey>,
}

/// The state of a live transaction in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// A client transaction.
    Client(ClientState),
    /// A server transaction.
    Server(ServerState),
}

/// Live transactions, keyed for matching (RFC 3261 §17.1.3, §17.2.3), with their
/// timers in one ordered set. Sans-IO: every call takes `now` and returns
/// [`Output`]s; the caller sends, delivers and calls
/// [`poll_timers`](TransactionTable::poll_timers) at
/// [`next_deadline`](TransactionTable::next_deadline).
///
/// Terminated transactions are freed at once, with their keys and timers.
#[derive(Debug, Default)]
pub struct TransactionTable {
    config: TableConfig,
    entries: HashMap<TransactionId, Entry>,
    clients: HashMap<ClientKey, TransactionId>,
    servers: HashMap<ServerKey, TransactionId>,
    /// RFC 2543 INVITE transactions that sent a final response, keyed with the
    /// response's To tag: what their ACK matches (RFC 3261 §17.2.3).
    acks: HashMap<ServerKey, TransactionId>,
    merged: HashMap<MergeKey, TransactionId>,
    deadlines: BTreeSet<(Instant, TransactionId, TimerKind)>,
    next_id: u64,
}

impl TransactionTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> TransactionTable {
        TransactionTable {
            config,
            ..TransactionTable::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of running timers (all transactions).
    pub fn timer_count(&self) -> usize {
        self.deadlines.len()
    }

    /// The state of a live transaction.
    pub fn state(&self, id: TransactionId) -> Option<TransactionState> {
        self.entries.get(&id).map(|e| match &e.tx {
            Tx::Client(c) => TransactionState::Client(c.state()),
            Tx::Server(s) => TransactionState::Server(s.state()),
        })
    }

    /// The request of a live server transaction.
    pub fn server_request(&self, id: TransactionId) -> Option<&Message> {
        match &self.entries.get(&id)?.tx {
            Tx::Server(s) => Some(s.request()),
            Tx::Client(_) => None,
        }
    }

    /// The earliest timer deadline, if any timer runs.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _, _)| at)
    }

    fn alloc_id(&mut self) -> TransactionId {
        self.next_id += 1;
        TransactionId(self.next_id)
    }

    /// Starts a client transaction sending `request` (not ACK; its top Via
    /// carries a fresh branch, see [`new_branch`](crate::new_branch)).
    ///
    /// Errors: [`Error::Overloaded`] past the limit, [`Error::DuplicateKey`] if
    /// the branch and method are in use, or what [`ClientTransaction::new`] refuses.
    pub fn start_client(
        &mut self,
        request: &Message,
        reliable: bool,
        now: Instant,
    ) -> Result<(TransactionId, Vec<Output>)> {
        if self.entries.len() >= self.config.max_transactions {
            return Err(Error::Overloaded {
                limit: self.config.max_transactions,
            });
        }
        let (tx, actions) = ClientTransaction::new(request, reliable, self.config.timers, now)?;
        if self.clients.contains_key(tx.key()) {
            return Err(Error::DuplicateKey);
        }
        let id = self.alloc_id();
        self.clients.insert(tx.key().clone(), id);
        self.insert(id, Tx::Client(tx), None);
        let mut out = Vec::with_capacity(actions.len());
        self.apply(id, actions, &mut out);
        Ok((id, out))
    }

    fn insert(&mut self, id: TransactionId, tx: Tx, merge: Option<MergeKey>) {
        self.entries.insert(
            id,
            Entry {
                tx,
                timers: [None; TimerKind::COUNT],
                merge,
                ack_key: None,
            },
        );
    }

    /// Routes a message received from the transport. `reliable` tells whether it
    /// came over a reliable transport (used when it creates a server transaction).
    pub fn receive(&mut self, msg: Message, reliable: bool, now: Instant) -> Received {
        if msg.is_response() {
            let key = match ClientKey::of_response(&msg) {
                Ok(k) => k,
                Err(e) => return Received::Invalid(e),
            };
            return match self.clients.get(&key) {
                Some(&id) => Received::Matched {
                    id,
                    outputs: self.feed(id, Event::Received(msg), now),
                },
                None => Received::Stray(msg),
            };
        }
        let key = match ServerKey::of_request(&msg) {
            Ok(k) => k,
            Err(e) => return Received::Invalid(e),
        };
        let is_ack = msg.method() == Some(&Method::Ack);
        if let Some(id) = self.find_server(&key, is_ack) {
            return Received::Matched {
                id,
                outputs: self.feed(id, Event::Received(msg), now),
            };
        }
        if is_ack {
            return Received::Stray(msg);
        }
        let merge = if self.config.detect_merged {
            MergeKey::of_request(&msg)
        } else {
            None
        };
        if let Some(m) = &merge
            && self.merged.contains_key(m)
        {
            return match msg.response(482).build() {
                Ok(r) => Received::Merged(r),
                Err(e) => Received::Invalid(e.into()),
            };
        }
        if self.entries.len() >= self.config.max_transactions {
            return match msg
                .response(503)
                .header(HeaderName::RetryAfter, self.config.retry_after)
                .build()
            {
                Ok(r) => Received::Rejected(r),
                Err(e) => Received::Invalid(e.into()),
            };
        }
        let cancels = if msg.method() == Some(&Method::Cancel) {
            self.find_server(&key.cancelled_invite(), false)
        } else {
            None
        };
        let (tx, actions) = match ServerTransaction::new(msg, reliable, self.config.timers, now) {
            Ok(t) => t,
            Err(e) => return Received::Invalid(e),
        };
        let id = self.alloc_id();
        self.servers.insert(key, id);
        if let Some(m) = &merge {
            self.merged.insert(m.clone(), id);
        }
        self.insert(id, Tx::Server(tx), merge);
        let mut outputs = Vec::with_capacity(actions.len());
        self.apply(id, actions, &mut outputs);
        Received::New {
            id,
            cancels,
            outputs,
        }
    }

    /// The live server transaction a request with `key` belongs to.
    fn find_server(&self, key: &ServerKey, is_ack: bool) -> Option<TransactionId> {
        if is_ack && key.is_rfc2543() {
            self.acks.get(key).copied()
        } else {
            self.servers.get(key).copied()
        }
    }

    /// The live INVITE server transaction a CANCEL request cancels (RFC 3261 §9.2).
    pub fn find_cancelled(&self, cancel: &Message) -> Option<TransactionId> {
        if cancel.method() != Some(&Method::Cancel) {
            return None;
        }
        let key = ServerKey::of_request(cancel).ok()?.cancelled_invite();
        self.find_server(&key, false)
    }

    /// Sends the TU's response on server transaction `id` (see
    /// [`ServerTransaction::respond`]).
    pub fn respond(
        &mut self,
        id: TransactionId,
        response: &Message,
        now: Instant,
    ) -> Result<Vec<Output>> {
        let entry = self.entries.get_mut(&id).ok_or(Error::UnknownTransaction)?;
        let Tx::Server(s) = &mut entry.tx else {
            return Err(Error::WrongRole);
        };
        let actions = s.respond(response, now)?;
        if entry.ack_key.is_none()
            && s.is_invite()
            && let Some(tag) = s.final_to_tag()
            && let Some(k) = s.key().with_to_tag(Some(tag))
        {
            self.acks.insert(k.clone(), id);
            entry.ack_key = Some(k);
        }
        let mut out = Vec::with_capacity(actions.len());
        self.apply(id, actions, &mut out);
        Ok(out)
    }

    /// Reports a fatal transport error for transaction `id`.
    pub fn transport_error(&mut self, id: TransactionId, now: Instant) -> Vec<Output> {
        self.feed(id, Event::TransportError, now)
    }

    /// Fires every timer due at `now`, earliest first; each runs with its own
    /// deadline as the time, so schedules do not drift when polled late.
    pub fn poll_timers(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(&(at, id, kind)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            entry.timers[kind.index()] = None;
            let actions = match &mut entry.tx {
                Tx::Client(c) => c.handle(Event::TimerFired(kind), at),
                Tx::Server(s) => s.handle(Event::TimerFired(kind), at),
            };
            self.apply(id, actions, &mut out);
        }
        out
    }

    fn feed(&mut self, id: TransactionId, event: Event, now: Instant) -> Vec<Output> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Vec::new();
        };
        let actions = match &mut entry.tx {
            Tx::Client(c) => c.handle(event, now),
            Tx::Server(s) => s.handle(event, now),
        };
        let mut out = Vec::with_capacity(actions.len());
        self.apply(id, actions, &mut out);
        out
    }

    fn apply(&mut self, id: TransactionId, actions: Actions, out: &mut Vec<Output>) {
        for action in actions {
            match action {
                Action::Send(bytes) => out.push(Output::Send { id, bytes }),
                Action::Deliver(event) => out.push(Output::Deliver { id, event }),
                Action::StartTimer(kind, at) => {
                    let Some(entry) = self.entries.get_mut(&id) else {
                        continue;
                    };
                    if let Some(old) = entry.timers[kind.index()].replace(at) {
                        self.deadlines.remove(&(old, id, kind));
                    }
                    self.deadlines.insert((at, id, kind));
                }
                Action::CancelTimer(kind) => {
                    if let Some(entry) = self.entries.get_mut(&id)
                        && let Some(old) = entry.timers[kind.index()].take()
                    {
                        self.deadlines.remove(&(old, id, kind));
                    }
                }
                Action::Terminated => {
                    self.remove(id);
                    out.push(Output::Terminated { id });
                }
            }
        }
    }

    fn remove(&mut self, id: TransactionId) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        for (k, at) in entry.timers.iter().enumerate() {
            if let Some(at) = at {
                self.deadlines.remove(&(*at, id, KINDS[k]));
            }
        }
        match &entry.tx {
            Tx::Client(c) => remove_if(&mut self.clients, c.key(), id),
            Tx::Server(s) => remove_if(&mut self.servers, s.key(), id),
        }
        if let Some(m) = &entry.merge {
            remove_if(&mut self.merged, m, id);
        }
        if let Some(k) = &entry.ack_key {
            remove_if(&mut self.acks, k, id);
        }
    }
}

/// Removes `key` from an index if it still points at `id`.
fn remove_if<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, TransactionId>,
    key: &K,
    id: TransactionId,
) {
    if map.get(key) == Some(&id) {
        map.remove(key);
    }
}

/// Every timer kind, in `TimerKind::index` order.
const KINDS: [TimerKind; TimerKind::COUNT] = [
    TimerKind::A,
    TimerKind::B,
    TimerKind::D,
    TimerKind::E,
    TimerKind::F,
    TimerKind::G,
    TimerKind::H,
    TimerKind::I,
    TimerKind::J,
    TimerKind::K,
    TimerKind::L,
    TimerKind::M,
    TimerKind::Trying,
];
