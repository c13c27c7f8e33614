//! What comes out of a transaction state machine.

use bytes::Bytes;
use siplink_message::Message;

/// An output of a transaction state machine, taken one at a time with
/// `poll_output` and carried out in order. Timers are not outputs: the
/// transaction keeps its deadlines (`poll_timeout`, `handle_timeout`).
#[derive(Debug, Clone)]
pub enum Action {
    /// Send these bytes to the transaction's peer (the next hop of a client
    /// transaction; per RFC 3261 §18.2.2 for a server transaction's responses).
    Send(Bytes),
    /// Hand this to the transaction user.
    Deliver(TuEvent),
    /// The transaction is over (no timer is armed any more): free it.
    Terminated,
}

/// What a transaction tells its user (TU). Messages are boxed to keep
/// [`Action`] and [`Output`](crate::Output) small.
#[derive(Debug, Clone)]
pub enum TuEvent {
    /// Server: the request that created the transaction (delivered once;
    /// retransmissions are absorbed).
    Request(Box<Message>),
    /// Server INVITE in the RFC 6026 Accepted state: an ACK that matched the
    /// transaction (RFC 2543 peers); it belongs to the 2xx, so the TU takes it.
    Ack(Box<Message>),
    /// Client: a provisional (1xx) response.
    Provisional(Box<Message>),
    /// Client: the final response (delivered exactly once per transaction).
    Final(Box<Message>),
    /// Client INVITE in the RFC 6026 Accepted state: a further 2xx (a
    /// retransmission, or a 2xx from another fork); also a 2xx arriving after a
    /// non-2xx final (Completed). The TU ACKs it end to end or,
    /// in a proxy, forwards it; it is not a second final response.
    Additional2xx(Box<Message>),
    /// The transaction timed out: client timer B or F (no final response), or
    /// server timer H (no ACK for a non-2xx final).
    Timeout,
    /// The transport failed to send for this transaction.
    TransportError,
}

impl TuEvent {
    /// The message carried, if any.
    pub fn message(&self) -> Option<&Message> {
        match self {
            TuEvent::Request(m)
            | TuEvent::Ack(m)
            | TuEvent::Provisional(m)
            | TuEvent::Final(m)
            | TuEvent::Additional2xx(m) => Some(m.as_ref()),
            TuEvent::Timeout | TuEvent::TransportError => None,
        }
    }
}
