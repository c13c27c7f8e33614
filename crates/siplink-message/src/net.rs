//! Plain network vocabulary shared by the sans-IO cores and the transport:
//! protocols, flow ids, origins, targets, flow events.
//!
//! These are data only (no sockets, no runtime), so that a core such as the
//! registrar can name a connection without depending on the tokio transport.
//! `siplink-transport` re-exports every type of this module unchanged.

use std::fmt;
use std::net::SocketAddr;

use crate::Message;

/// A SIP transport protocol: the workspace-wide [`Transport`](crate::Transport).
pub use crate::Transport as Protocol;

/// An opaque connection (flow) identifier, unique for the life of the
/// transport that issued it. RFC 5626 calls the connection a *flow*.
///
/// ```
/// use siplink_message::net::FlowId;
/// let f = FlowId::from_raw(7);
/// assert_eq!(f.get(), 7);
/// assert_eq!(f.to_string(), "#7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u64);

impl FlowId {
    /// The number behind the id (for logs and maps; ids are never reused).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id with number `n` (the inverse of [`get`](Self::get)): how the
    /// transport issues ids, and how layers that keep flow ids outside the
    /// transport (a location store that persists bindings, the tests of a
    /// sans-IO core) rebuild them. An id that the transport did not issue
    /// names no flow: sending to it fails (`siplink_transport::Error::FlowGone`).
    pub const fn from_raw(n: u64) -> FlowId {
        FlowId(n)
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where an inbound message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The transport it arrived on.
    pub protocol: Protocol,
    /// The peer's address (source address and port).
    pub peer: SocketAddr,
    /// Our address it arrived at.
    pub local: SocketAddr,
    /// The connection it arrived on (`None` for UDP).
    pub flow: Option<FlowId>,
}

/// An inbound message with its origin. Requests have their top Via stamped with
/// `received`/`rport` already (RFC 3261 §18.2.1, RFC 3581).
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message.
    pub message: Message,
    /// Where it came from.
    pub origin: Origin,
}

/// Where to send a message when it is not bound to an existing flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Protocol to use.
    pub protocol: Protocol,
    /// Peer address.
    pub addr: SocketAddr,
    /// Host name for TLS (SNI and certificate check) and the WebSocket `Host`;
    /// without it, TLS checks the certificate against the IP address.
    pub server_name: Option<String>,
    /// Whether a UDP request too large for UDP (RFC 3261 §18.1.1) may go over
    /// TCP to the same address instead. `true` by default; set it to `false`
    /// when the URI insisted on `transport=udp`.
    pub allow_tcp: bool,
}

impl Target {
    /// A target for `protocol` at `addr` (TCP fallback allowed, no server name).
    pub fn new(protocol: Protocol, addr: SocketAddr) -> Target {
        Target {
            protocol,
            addr,
            server_name: None,
            allow_tcp: true,
        }
    }

    /// The same target with a TLS / WebSocket server name.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Target {
        self.server_name = Some(name.into());
        self
    }

    /// The same target with TCP fallback for large UDP requests allowed or not.
    pub fn with_allow_tcp(mut self, allow: bool) -> Target {
        self.allow_tcp = allow;
        self
    }
}

/// Where a message is sent (`siplink_transport::Transport::send`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// An address and protocol; an open connection to the same peer is reused.
    Target(Target),
    /// Over this very connection, or fail (`siplink_transport::Error::FlowGone`).
    Flow(FlowId),
}

impl From<Target> for Destination {
    fn from(t: Target) -> Self {
        Destination::Target(t)
    }
}

impl From<FlowId> for Destination {
    fn from(f: FlowId) -> Self {
        Destination::Flow(f)
    }
}

/// What happened to a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEventKind {
    /// The connection is established (accepted, or connected by us).
    Opened,
    /// The connection is closed; the reason in words (`peer closed`, `idle`,
    /// `framing error: ...`, `shutdown`...).
    Closed(String),
    /// We sent a keepalive ping and no pong came in time; the flow is closed next
    /// (a [`FlowEventKind::Closed`] follows).
    KeepaliveTimeout,
}

/// A flow event, broadcast to the transport's subscribers (`siplink_transport::Transport::subscribe`)
/// so that, e.g., a registrar drops the bindings of a dead flow (RFC 5626).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEvent {
    /// The flow.
    pub flow: FlowId,
    /// Its protocol.
    pub protocol: Protocol,
    /// The peer.
    pub peer: SocketAddr,
    /// Our end.
    pub local: SocketAddr,
    /// What happened.
    pub kind: FlowEventKind,
}
