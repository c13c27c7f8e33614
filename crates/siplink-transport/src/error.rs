//! The crate's error type.

use std::net::SocketAddr;

use crate::tls::TlsFailure;
use crate::types::{FlowId, Protocol};

/// Everything that can go wrong while listening, connecting or sending.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (`"bind UDP [::1]:5060"`, `"connect TCP 127.0.0.1:5060"`...).
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The flow a message was to be sent over is closed (or never existed).
    #[error("flow {0} is gone")]
    FlowGone(FlowId),
    /// A request over UDP exceeds the RFC 3261 §18.1.1 size limit and the target
    /// does not allow switching to TCP.
    #[error(
        "request of {size} bytes is larger than the UDP limit of {limit} bytes (RFC 3261 §18.1.1) and the target does not allow TCP"
    )]
    TooLargeForUdp {
        /// Size of the serialised request.
        size: usize,
        /// The configured limit ([`TransportConfig::udp_mtu_limit`](crate::TransportConfig::udp_mtu_limit)).
        limit: usize,
    },
    /// A message is larger than the configured maximum message size.
    #[error("message of {size} bytes exceeds the maximum message size of {limit} bytes")]
    TooLarge {
        /// Size of the serialised message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A connection limit (total or per peer) is reached.
    #[error("connection limit reached: {0}")]
    Limit(&'static str),
    /// The TLS handshake failed; `failure` says why in words, with the
    /// certificate the server presented.
    #[error("TLS handshake with {peer} failed: {failure}")]
    Tls {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        failure: Box<TlsFailure>,
    },
    /// A certificate pin is not written as `sha256:` or `spki-sha256:`
    /// followed by 32 bytes in hex or base64.
    #[error("invalid TLS pin {pin:?}: {reason}")]
    Pin {
        /// The text given (at most 120 characters of it).
        pin: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// TLS configuration (certificates, keys, roots) is unusable.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// The WebSocket handshake failed (including a peer that did not agree to the
    /// `sip` subprotocol).
    #[error("WebSocket handshake with {peer} failed: {reason}")]
    WebSocket {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// No transport of this kind is available for the target (no TLS client
    /// configuration, no socket of that address family...).
    #[error("cannot send over {protocol} to {addr}: {reason}")]
    Unavailable {
        /// The protocol asked for.
        protocol: Protocol,
        /// The target address.
        addr: SocketAddr,
        /// Why.
        reason: &'static str,
    },
    /// A response cannot be routed (RFC 3261 §18.2.2).
    #[error("cannot route response: {0}")]
    NoRoute(String),
    /// Name resolution failed or gave no address.
    #[error("cannot resolve {name}: {reason}")]
    Resolve {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Connecting took longer than [`TransportConfig::connect_timeout`](crate::TransportConfig::connect_timeout).
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// The message cannot be sent as it is (no top Via on a request...).
    #[error("invalid message: {0}")]
    Message(#[from] siplink_message::Error),
    /// The transport is shut down.
    #[error("the transport is shut down")]
    Shutdown,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
