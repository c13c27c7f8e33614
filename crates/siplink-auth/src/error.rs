//! The crate's error type (client side; the server reports through [`Outcome`](crate::server::Outcome)).

/// Why the client did not produce credentials, or a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The challenge came from a server other than the one the client is bound
    /// to: answering it could leak a digest to a third party.
    #[error("challenge from {from:?} refused: credentials are only sent to {configured:?}")]
    ForeignServer {
        /// Where the challenge came from.
        from: String,
        /// The configured server.
        configured: String,
    },
    /// A challenged realm is not covered by any configured credentials.
    #[error("no credentials for realm {realm:?}")]
    UnknownRealm {
        /// The realm.
        realm: String,
    },
    /// No challenge can be answered: not Digest, no nonce, or only algorithms or
    /// qop values that are not supported or not allowed by the configuration.
    #[error("no usable challenge{}: {reason}", realm.as_ref().map(|r| format!(" for realm {r:?}")).unwrap_or_default())]
    NoUsableChallenge {
        /// The realm, when known.
        realm: Option<String>,
        /// What was missing.
        reason: &'static str,
    },
    /// The server rejected the credentials: it challenged the nonce we had just
    /// answered again, or sent a fresh challenge without `stale=true` after our
    /// answer (wrong user name or password).
    #[error("credentials rejected for realm {realm:?}")]
    CredentialsRejected {
        /// The realm.
        realm: String,
    },
    /// The server answered with `stale=true` more often in a row than allowed.
    #[error("too many stale nonces in a row for realm {realm:?}")]
    TooManyStale {
        /// The realm.
        realm: String,
    },
    /// Invalid configuration (for example an HA1 that is not hex of the right length).
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// Not an address nor `address/prefix-length` (an exempt source).
    #[error("not an address or address/prefix-length: {0:?}")]
    BadPrefix(String),
}
