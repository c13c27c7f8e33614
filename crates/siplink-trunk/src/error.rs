//! The crate's error type.

/// Everything this crate refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message the trunk must read or edit is malformed.
    #[error("malformed message: {0}")]
    Message(#[from] siplink_message::Error),
    /// [`OutboundCall::start`](crate::OutboundCall::start) was given something
    /// other than an INVITE request.
    #[error("not an INVITE request")]
    NotAnInvite,
    /// A challenge inside a dialog could not be answered (see
    /// [`DialogMap::answer_challenge`](crate::DialogMap::answer_challenge)).
    #[error("trunk authentication failed: {0}")]
    Auth(#[from] siplink_auth::AuthError),
    /// The trunk challenged and has no credentials configured.
    #[error("the trunk asks for credentials and none are configured")]
    NoCredentials,
    /// The trunk configuration cannot be used.
    #[error("invalid trunk configuration: {0}")]
    Config(&'static str),
    /// A caller-ID policy asks to replace the user or host of a From URI that
    /// is not a `sip:`/`sips:` URI.
    #[error("the caller-ID policy needs a sip: From URI, got {scheme}:")]
    FromNotSip {
        /// The scheme of the caller's From URI.
        scheme: String,
    },
    /// A request to forward has Max-Forwards 0 (answer it 483).
    #[error("Max-Forwards is 0")]
    TooManyHops,
    /// The transport failed (resolution, connection, send).
    #[error("transport: {0}")]
    Transport(String),
    /// The transaction layer refused a request or is shut down.
    #[error("transaction layer: {0}")]
    Transaction(String),
    /// An address range for [`Identify`](crate::Identify) could not be parsed.
    #[error("invalid address range {input:?}: {reason}")]
    InvalidCidr {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
