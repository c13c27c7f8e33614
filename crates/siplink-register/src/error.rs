//! The crate's error type.

use crate::manager::RegistrationId;

/// Why a registration could not be created or a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or malformed.
    #[error("invalid registration configuration: {0}")]
    InvalidConfig(&'static str),
    /// The configuration does not produce a valid REGISTER.
    #[error("cannot build REGISTER: {0}")]
    Message(#[from] siplink_message::Error),
    /// The digest client refused the credentials configuration.
    #[error("invalid credentials: {0}")]
    Auth(#[from] siplink_auth::AuthError),
    /// No registration with this id (never added, or already removed).
    #[error("unknown registration {0:?}")]
    UnknownRegistration(RegistrationId),
    /// The registration service has stopped (shut down, or its task ended).
    #[error("the registration service has stopped")]
    ServiceStopped,
}
