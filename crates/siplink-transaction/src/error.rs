//! The crate's error type.

/// Everything the transaction layer can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A header the transaction layer needs is missing or malformed.
    #[error("malformed message: {0}")]
    Message(#[from] siplink_message::Error),
    /// A request was expected.
    #[error("not a request")]
    NotARequest,
    /// A response was expected.
    #[error("not a response")]
    NotAResponse,
    /// Only an INVITE can be cancelled (RFC 3261 §9.1).
    #[error("not an INVITE")]
    NotAnInvite,
    /// ACK never starts a transaction (RFC 3261 §17).
    #[error("ACK does not start a transaction")]
    AckIsNotATransaction,
    /// The top Via of a request sent by a client transaction has no branch.
    #[error("the top Via has no branch parameter")]
    MissingBranch,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("the CSeq method differs from the request method")]
    CSeqMismatch,
    /// The TU asked for something the transaction's state does not allow.
    #[error("{what} is not allowed in state {state}")]
    InvalidState {
        /// The state the transaction is in.
        state: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// A client transaction with the same branch and method is already live.
    #[error("a transaction with this key is already live")]
    DuplicateKey,
    /// The live-transaction limit is reached.
    #[error("too many live transactions (limit {limit})")]
    Overloaded {
        /// The configured limit.
        limit: usize,
    },
    /// No live transaction has this id (it terminated, or never existed).
    #[error("no live transaction with this id")]
    UnknownTransaction,
    /// The operation needs a server transaction and the id names a client one, or
    /// the reverse.
    #[error("wrong kind of transaction for this operation")]
    WrongRole,
    /// The endpoint's task has ended or is shutting down.
    #[error("the endpoint is shut down")]
    EndpointClosed,
    /// The endpoint cannot send a request to this destination (no UDP listener
    /// for the address family, a WebSocket target without a flow...).
    #[error("no route: {0}")]
    NoRoute(String),
    /// The transport failed (connecting, sending); the transport's error in words.
    #[error("transport error: {0}")]
    Transport(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
