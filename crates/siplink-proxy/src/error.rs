//! The proxy's error type.

use crate::config::ConfigError;

/// What can go wrong starting, reloading or asking the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (every problem listed).
    #[error("invalid configuration:\n{0}")]
    Invalid(#[from] ConfigError),
    /// A configuration value could not be used.
    #[error("configuration: {0}")]
    Config(String),
    /// A listener could not be opened.
    #[error("cannot listen on {0}")]
    Listen(String),
    /// No connection has this name.
    #[error("no connection named {0:?}")]
    UnknownConnection(String),
    /// The status HTTP endpoint failed.
    #[error("status endpoint: {0}")]
    Status(String),
}
