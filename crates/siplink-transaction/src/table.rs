//! A sans-IO table of live transactions: matching, creation, limits and timers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use bytes::Bytes;
use siplink_message::{HeaderName, Message, MessageBuilder, Method};

use crate::client::{ClientState, ClientTransaction};
use crate::done::{Done, DoneKey};
use crate::error::{Error, Result};
use crate::event::{Action, TuEvent};
use crate::key::{ClientKey, MergeKey, ServerKey};
use crate::server::{ServerState, ServerTransaction};
use crate::stateless::StatelessReplies;
use crate::timer::Timers;

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

/// What the caller carries out, taken one at a time with
/// [`TransactionTable::poll_output`], in order.
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

/// What became of a message given to [`TransactionTable::handle_message`]
/// (what to do next comes out of [`TransactionTable::poll_output`]).
#[derive(Debug)]
pub enum Received {
    /// It matched a live transaction (a response, a retransmitted request, an ACK
    /// for a non-2xx final).
    Matched {
        /// The transaction.
        id: TransactionId,
    },
    /// A new server transaction was created; its outputs deliver the request.
    New {
        /// The new transaction.
        id: TransactionId,
        /// For a CANCEL: the live INVITE server transaction it cancels (RFC 3261
        /// §9.2); `None` means the TU answers the CANCEL 481.
        cancels: Option<TransactionId>,
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
    /// A new request without what a transaction needs (a From, To, Call-ID or
    /// CSeq that does not parse, a CSeq method other than the request's):
    /// send this 400 statelessly. No transaction was created.
    Malformed(Message),
    /// The ACK for a stateless non-2xx reply (its To tag is the stateless tag,
    /// see [`StatelessReplies`]): dropped, nothing created.
    Absorbed,
    /// The message lacks what matching needs (Via, CSeq, ...); drop it.
    Invalid(Error),
}

/// A live transaction. Boxed, so that a table slot is small and a finished
/// transaction ([`Done`]) costs only what it keeps.
#[derive(Debug)]
enum Tx {
    Client(Box<ClientTransaction>),
    Server(Box<ServerTransaction>),
    /// Waiting out its last timer: key, resend bytes, one deadline.
    Done(Box<Done>),
}

#[derive(Debug)]
struct Entry {
    tx: Tx,
    /// The transaction's earliest deadline, as indexed in `deadlines`.
    deadline: Option<Instant>,
    merge: Option<Box<MergeKey>>,
    ack_key: Option<Box<ServerKey>>,
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
/// deadlines in one ordered set.
///
/// Sans-IO, in the core vocabulary of the workspace: inputs are `handle_*(…,
/// now)` ([`handle_message`](Self::handle_message),
/// [`handle_response`](Self::handle_response),
/// [`handle_transport_error`](Self::handle_transport_error), and
/// [`start_client`](Self::start_client)); what to do comes out of
/// [`poll_output`](Self::poll_output), one [`Output`] at a time, in order; time is
/// [`poll_timeout`](Self::poll_timeout) (the earliest deadline of any
/// transaction) and [`handle_timeout`](Self::handle_timeout) (fires every timer
/// due). Inputs that must report an error at once (a client transaction the
/// table refuses, a response the server transaction refuses) return a `Result`.
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
    deadlines: BTreeSet<(Instant, TransactionId)>,
    out: VecDeque<Output>,
    next_id: u64,
    /// What `next_id` grows by (1, or the number of tables sharing one id
    /// space, see [`TransactionTable::with_id_space`]).
    id_step: u64,
    stateless: StatelessReplies,
}

impl TransactionTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> TransactionTable {
        TransactionTable {
            config,
            ..TransactionTable::default()
        }
    }

    /// An empty table that is table `index` of `count` sharing one id
    /// space: its ids are `index + k·count` (k ≥ 1), so that ids from
    /// several tables (a runtime's buckets) never collide. `index` must be
    /// below `count`.
    pub fn with_id_space(config: TableConfig, index: u64, count: u64) -> TransactionTable {
        debug_assert!(index < count.max(1));
        TransactionTable {
            config,
            next_id: index,
            id_step: count.max(1),
            ..TransactionTable::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The table's stateless reply builder (its To-tag key); clone it to
    /// answer statelessly outside the table with the same tags.
    pub fn stateless(&self) -> &StatelessReplies {
        &self.stateless
    }

    /// Starts a stateless response `status` to `request`: no transaction is
    /// created or kept; the To tag is derived from the request (see
    /// [`StatelessReplies`]), so a retransmitted request gets the same answer
    /// and tag, and the ACK of a non-2xx reply to an INVITE is absorbed by
    /// [`handle_message`](Self::handle_message) ([`Received::Absorbed`]).
    /// Send what it builds with the request's origin.
    pub fn stateless_response(&self, request: &Message, status: u16) -> MessageBuilder {
        self.stateless.response(request, status)
    }

    /// Answers server transaction `id` (in Trying or Proceeding) statelessly
    /// with the TU's final `response` and forgets the transaction at once:
    /// the send is queued as [`Output::Send`] followed by
    /// [`Output::Terminated`]; nothing is kept to answer retransmissions, which
    /// create a new transaction and reach the TU again (which answers them the
    /// same way, e.g. a new 401 challenge). The response's To tag is replaced
    /// by the stateless tag for an out-of-dialog request, so that the ACK of a
    /// non-2xx reply to an INVITE is absorbed.
    ///
    /// For challenges (401/407), refusals (403) and overload (503), whose
    /// repetition costs less than keeping a transaction for 64*T1. A 2xx to an
    /// INVITE, a provisional response, or a transaction past Proceeding is
    /// [`Error::InvalidState`].
    pub fn handle_stateless_response(
        &mut self,
        id: TransactionId,
        response: Message,
        _now: Instant,
    ) -> Result<()> {
        let entry = self.entries.get(&id).ok_or(Error::UnknownTransaction)?;
        let s = match &entry.tx {
            Tx::Server(s) => s,
            Tx::Done(d) if d.is_server() => {
                return Err(Error::InvalidState {
                    state: "Completed",
                    what: "sending this response statelessly",
                });
            }
            _ => return Err(Error::WrongRole),
        };
        let status = response.status().ok_or(Error::NotAResponse)?;
        let open = matches!(s.state(), ServerState::Trying | ServerState::Proceeding);
        let min = if s.is_invite() { 300 } else { 200 };
        if !open || status < min {
            return Err(Error::InvalidState {
                state: if open { "Proceeding" } else { "Completed" },
                what: "sending this response statelessly",
            });
        }
        let response = match s.request() {
            Some(req) => self.stateless.retag(req, response),
            None => response,
        };
        self.remove(id);
        self.out.push_back(Output::Send {
            id,
            bytes: response.to_bytes(),
        });
        self.out.push_back(Output::Terminated { id });
        Ok(())
    }

    /// Whether `request` would match a live server transaction (a
    /// retransmission, an ACK or CANCEL of one) rather than create one.
    pub fn matches_server(&self, request: &Message) -> bool {
        let Ok(key) = ServerKey::of_request(request) else {
            return false;
        };
        self.find_server(&key, request.method() == Some(&Method::Ack))
            .is_some()
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of armed timers (all transactions).
    pub fn timer_count(&self) -> usize {
        self.entries
            .values()
            .map(|e| match &e.tx {
                Tx::Client(c) => c.armed_count(),
                Tx::Server(s) => s.armed_count(),
                Tx::Done(d) => d.armed_count(),
            })
            .sum()
    }

    /// The state of a live transaction.
    pub fn state(&self, id: TransactionId) -> Option<TransactionState> {
        self.entries.get(&id).map(|e| match &e.tx {
            Tx::Client(c) => TransactionState::Client(c.state()),
            Tx::Server(s) => TransactionState::Server(s.state()),
            Tx::Done(d) => d.state(),
        })
    }

    /// The request of a live server transaction.
    pub fn server_request(&self, id: TransactionId) -> Option<&Message> {
        match &self.entries.get(&id)?.tx {
            Tx::Server(s) => s.request(),
            Tx::Client(_) | Tx::Done(_) => None,
        }
    }

    /// The next output to carry out, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<Output> {
        let o = self.out.pop_front();
        if o.is_none() && self.out.capacity() > MIN_CAPACITY {
            // What a burst queued: give it back once drained.
            self.out = VecDeque::new();
        }
        o
    }

    /// The earliest timer deadline of any live transaction.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    fn alloc_id(&mut self) -> TransactionId {
        self.next_id += self.id_step.max(1);
        TransactionId(self.next_id)
    }

    /// Starts a client transaction sending `request` (not ACK; its top Via
    /// carries a fresh branch, see [`new_branch`](crate::new_branch)); its
    /// first send is queued for [`poll_output`](Self::poll_output).
    ///
    /// Errors: [`Error::Overloaded`] past the limit, [`Error::DuplicateKey`] if
    /// the branch and method are in use, or what [`ClientTransaction::new`] refuses.
    pub fn start_client(
        &mut self,
        request: &Message,
        reliable: bool,
        now: Instant,
    ) -> Result<TransactionId> {
        if self.entries.len() >= self.config.max_transactions {
            return Err(Error::Overloaded {
                limit: self.config.max_transactions,
            });
        }
        let tx = ClientTransaction::new(request, reliable, self.config.timers, now)?;
        if self.clients.contains_key(tx.key()) {
            return Err(Error::DuplicateKey);
        }
        let id = self.alloc_id();
        self.clients.insert(tx.key().clone(), id);
        self.insert(id, Tx::Client(Box::new(tx)), None);
        self.sync(id);
        Ok(id)
    }

    fn insert(&mut self, id: TransactionId, tx: Tx, merge: Option<Box<MergeKey>>) {
        self.entries.insert(
            id,
            Entry {
                tx,
                deadline: None,
                merge,
                ack_key: None,
            },
        );
    }

    /// Routes a message received from the transport. `reliable` tells whether it
    /// came over a reliable transport (used when it creates a server transaction).
    /// What the matched or new transaction does is queued for
    /// [`poll_output`](Self::poll_output).
    pub fn handle_message(&mut self, msg: Message, reliable: bool, now: Instant) -> Received {
        if msg.is_response() {
            let key = match ClientKey::of_response(&msg) {
                Ok(k) => k,
                Err(e) => return Received::Invalid(e),
            };
            return match self.clients.get(&key) {
                Some(&id) => {
                    self.feed(id, |tx| match tx {
                        Tx::Client(c) => c.handle_response(msg, now),
                        Tx::Done(d) => d.handle_response(msg, now),
                        Tx::Server(_) => {}
                    });
                    Received::Matched { id }
                }
                None => Received::Stray(msg),
            };
        }
        let key = match ServerKey::of_request(&msg) {
            Ok(k) => k,
            Err(e) => return Received::Invalid(e),
        };
        let is_ack = msg.method() == Some(&Method::Ack);
        if let Some(id) = self.find_server(&key, is_ack) {
            self.feed(id, |tx| match tx {
                Tx::Server(s) => s.handle_request(msg, now),
                Tx::Done(d) => d.handle_request(&msg, now),
                Tx::Client(_) => {}
            });
            return Received::Matched { id };
        }
        if is_ack {
            if self.stateless.is_own_ack(&msg) {
                return Received::Absorbed;
            }
            return Received::Stray(msg);
        }
        if !has_transaction_fields(&msg) {
            return match self.stateless.response(&msg, 400).build() {
                Ok(r) => Received::Malformed(r),
                Err(e) => Received::Invalid(e.into()),
            };
        }
        let merge = if self.config.detect_merged {
            MergeKey::of_request(&msg)
        } else {
            None
        };
        if let Some(m) = &merge
            && self.merged.contains_key(m)
        {
            return match self.stateless.response(&msg, 482).build() {
                Ok(r) => Received::Merged(r),
                Err(e) => Received::Invalid(e.into()),
            };
        }
        if self.entries.len() >= self.config.max_transactions {
            return match self
                .stateless
                .response(&msg, 503)
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
        let tx = match ServerTransaction::with_key(
            msg,
            key.clone(),
            reliable,
            self.config.timers,
            now,
        ) {
            Ok(t) => t,
            Err(e) => return Received::Invalid(e),
        };
        let id = self.alloc_id();
        self.servers.insert(key, id);
        if let Some(m) = &merge {
            self.merged.insert(m.clone(), id);
        }
        self.insert(id, Tx::Server(Box::new(tx)), merge.map(Box::new));
        self.sync(id);
        Received::New { id, cancels }
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
    /// [`ServerTransaction::handle_response`]); the send is queued for
    /// [`poll_output`](Self::poll_output), a refused response is an error here.
    pub fn handle_response(
        &mut self,
        id: TransactionId,
        response: &Message,
        now: Instant,
    ) -> Result<()> {
        let entry = self.entries.get_mut(&id).ok_or(Error::UnknownTransaction)?;
        let s = match &mut entry.tx {
            Tx::Server(s) => s,
            Tx::Done(d) => {
                return Err(match d.state() {
                    TransactionState::Server(state) => Error::InvalidState {
                        state: server_state_name(state),
                        what: "sending this response",
                    },
                    TransactionState::Client(_) => Error::WrongRole,
                });
            }
            Tx::Client(_) => return Err(Error::WrongRole),
        };
        let r = s.handle_response(response, now);
        if entry.ack_key.is_none()
            && s.is_invite()
            && let Some(tag) = s.final_to_tag()
            && let Some(k) = s.key().with_to_tag(Some(tag))
        {
            self.acks.insert(k.clone(), id);
            entry.ack_key = Some(Box::new(k));
        }
        self.sync(id);
        r
    }

    /// Reports a fatal transport error for transaction `id`.
    pub fn handle_transport_error(&mut self, id: TransactionId, now: Instant) {
        self.feed(id, |tx| match tx {
            Tx::Client(c) => c.handle_transport_error(now),
            Tx::Server(s) => s.handle_transport_error(now),
            Tx::Done(d) => d.handle_transport_error(now),
        });
    }

    /// Fires every timer due at `now`, earliest first across transactions; each
    /// runs with its own deadline as the time, so schedules do not drift when
    /// called late.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.feed(id, |tx| match tx {
                Tx::Client(c) => c.handle_timeout(at),
                Tx::Server(s) => s.handle_timeout(at),
                Tx::Done(d) => d.handle_timeout(at),
            });
            // A transaction that re-armed a timer at the same deadline (a zero
            // T1) has fired its bounded share; the rest waits for the next call.
            if self.deadlines.first() == Some(&(at, id)) {
                break;
            }
        }
    }

    /// Runs `f` on transaction `id` and takes in what it queued.
    fn feed(&mut self, id: TransactionId, f: impl FnOnce(&mut Tx)) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        f(&mut entry.tx);
        self.sync(id);
    }

    /// Moves transaction `id`'s actions to the table's outputs, re-indexes its
    /// deadline, and frees it once terminated.
    fn sync(&mut self, id: TransactionId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let mut terminated = false;
        loop {
            let action = match &mut entry.tx {
                Tx::Client(c) => c.poll_output(),
                Tx::Server(s) => s.poll_output(),
                Tx::Done(d) => d.poll_output(),
            };
            match action {
                Some(Action::Send(bytes)) => self.out.push_back(Output::Send { id, bytes }),
                Some(Action::Deliver(event)) => self.out.push_back(Output::Deliver { id, event }),
                Some(Action::Terminated) => terminated = true,
                None => break,
            }
        }
        let done = match &mut entry.tx {
            Tx::Client(c) => {
                c.compact();
                c.linger()
            }
            Tx::Server(s) => {
                s.compact();
                s.linger()
            }
            Tx::Done(d) => {
                d.compact();
                None
            }
        };
        if let Some(d) = done {
            entry.tx = Tx::Done(Box::new(d));
        }
        let deadline = match &entry.tx {
            Tx::Client(c) => c.poll_timeout(),
            Tx::Server(s) => s.poll_timeout(),
            Tx::Done(d) => d.poll_timeout(),
        };
        if deadline != entry.deadline {
            if let Some(old) = entry.deadline.take() {
                self.deadlines.remove(&(old, id));
            }
            if let Some(at) = deadline {
                self.deadlines.insert((at, id));
            }
            entry.deadline = deadline;
        }
        if terminated {
            self.remove(id);
            self.out.push_back(Output::Terminated { id });
        }
    }

    fn remove(&mut self, id: TransactionId) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        if let Some(at) = entry.deadline {
            self.deadlines.remove(&(at, id));
        }
        match &entry.tx {
            Tx::Client(c) => remove_if(&mut self.clients, c.key(), id),
            Tx::Server(s) => remove_if(&mut self.servers, s.key(), id),
            Tx::Done(d) => match &d.key {
                DoneKey::Client(k) => remove_if(&mut self.clients, k, id),
                DoneKey::Server(k) => remove_if(&mut self.servers, k, id),
            },
        }
        if let Some(m) = &entry.merge {
            remove_if(&mut self.merged, m, id);
        }
        if let Some(k) = &entry.ack_key {
            remove_if(&mut self.acks, k, id);
        }
        self.shrink();
    }

    /// Gives back the memory of maps that fell well below their capacity (a
    /// `HashMap` never shrinks by itself: after a burst of 10,000
    /// transactions the maps would keep their size for the process's life).
    fn shrink(&mut self) {
        shrink(&mut self.entries);
        shrink(&mut self.clients);
        shrink(&mut self.servers);
        shrink(&mut self.acks);
        shrink(&mut self.merged);
    }
}

/// Maps keep at least this capacity (no shrinking for small tables). Small:
/// a runtime has 64 tables of five maps each, all shrunk to this floor after
/// a burst.
const MIN_CAPACITY: usize = 16;

/// Shrinks `map` to twice its length once it holds less than a quarter of its
/// capacity. The hysteresis keeps a map that hovers around one size from being
/// rehashed again and again: after a shrink it must lose half its entries, or
/// double, before the next rehash, so the cost is amortised over those
/// removals.
pub(crate) fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    let cap = map.capacity();
    if cap > MIN_CAPACITY && map.len() < cap / 4 {
        map.shrink_to((map.len() * 2).max(MIN_CAPACITY));
    }
}

/// The name of a server state in errors.
fn server_state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Trying => "Trying",
        ServerState::Proceeding => "Proceeding",
        ServerState::Completed => "Completed",
        ServerState::Confirmed => "Confirmed",
        ServerState::Accepted => "Accepted",
        ServerState::Terminated => "Terminated",
    }
}

/// Whether a request has the headers a transaction and its responses need:
/// From, To, Call-ID and a CSeq of the request's method. Cheap: From and To
/// are only looked up (parsing them here would allocate their views in the
/// request the transaction keeps).
fn has_transaction_fields(msg: &Message) -> bool {
    msg.header(HeaderName::From).is_some()
        && msg.header(HeaderName::To).is_some()
        && msg.call_id().is_ok()
        && msg.cseq().is_ok_and(|c| Some(&c.method) == msg.method())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_shrink_after_a_burst_with_hysteresis() {
        let mut m: HashMap<u64, u64> = (0..10_000).map(|i| (i, i)).collect();
        let full = m.capacity();
        // Down to a third of the capacity: no rehash yet.
        while m.len() > full / 3 {
            let k = m.len() as u64 - 1;
            m.remove(&k);
            shrink(&mut m);
        }
        // (`capacity()` counts removed slots not yet reusable as taken.)
        assert!(m.capacity() > full / 2, "{} of {full}", m.capacity());
        // Below a quarter (of what `capacity()` reports): shrunk to about
        // twice the length, once.
        let mut rehashes = 0;
        while m.capacity() > full / 2 {
            let k = m.len() as u64 - 1;
            m.remove(&k);
            let before = m.capacity();
            shrink(&mut m);
            rehashes += usize::from(m.capacity() != before);
        }
        assert_eq!(rehashes, 1);
        assert!(m.len() < full / 4 && m.len() > full / 16, "{}", m.len());
        assert!(
            m.capacity() <= 4 * m.len(),
            "{} for {}",
            m.capacity(),
            m.len()
        );
        // Emptied: down to the minimum, never below.
        while let Some(&k) = m.keys().next() {
            m.remove(&k);
            shrink(&mut m);
        }
        assert!(m.capacity() >= MIN_CAPACITY && m.capacity() < 2 * MIN_CAPACITY);
    }
}
