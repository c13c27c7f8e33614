//! The crate's error type.

/// Everything that can go wrong in the registrar outside of the SIP answer
/// itself (a refused REGISTER is not an error: it is a [`Decision`](crate::Decision)
/// carrying the error response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`RegistrarConfig::auth`](crate::RegistrarConfig::auth) is on but no
    /// [`Authenticator`](crate::Authenticator) was given.
    #[error("authentication is required by the configuration but no authenticator was given")]
    AuthenticatorMissing,
    /// The configuration is inconsistent.
    #[error("invalid registrar configuration: {0}")]
    Config(&'static str),
    /// The request handed to the registrar is not a REGISTER request.
    #[error("not a REGISTER request")]
    NotRegister,
    /// A URI is not a valid address-of-record.
    #[error("not a valid address-of-record: {0}")]
    InvalidAor(String),
    /// A response could not be built (a header value with a line break).
    #[error("building the response failed: {0}")]
    Build(#[from] siplink_message::Error),
    /// The AOR's bindings changed between reading them and applying changes
    /// computed from them (a concurrent REGISTER); read again and retry.
    #[error("the bindings changed concurrently")]
    Conflict,
    /// The location store failed (a shared store's backend).
    #[error("location store failure: {0}")]
    Store(String),
    /// Sending the response on the server transaction failed (the endpoint
    /// closed, or the transaction already ended).
    #[error("answering the transaction failed: {0}")]
    Respond(String),
}
