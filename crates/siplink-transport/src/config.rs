//! Limits and timers.

use std::time::Duration;

use siplink_message::framer::{DEFAULT_MAX_HEADERS, DEFAULT_MAX_MESSAGE_SIZE, FramerConfig};

use crate::tls::{TlsClientConfig, TlsServerConfig};

/// RFC 5626 keepalives sent by us on connection-oriented flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// How long a flow may be silent before we send a ping (`CRLFCRLF` on
    /// TCP/TLS, a WebSocket Ping frame on WS/WSS).
    pub interval: Duration,
    /// How long we wait for the pong before the flow is declared dead
    /// ([`FlowEventKind::KeepaliveTimeout`](crate::FlowEventKind::KeepaliveTimeout))
    /// and closed. RFC 5626 §4.4.1 uses 10 s.
    pub timeout: Duration,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            interval: Duration::from_secs(90),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Transport limits. The defaults suit a proxy facing many NATed phones.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest message accepted or sent, in bytes (framer limit on streams, WebSocket
    /// message limit, parse limit on UDP where 65,535 is the ceiling anyway).
    /// Default 65,536 ([`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub max_message_size: usize,
    /// Most header lines in a message. Default 128 ([`DEFAULT_MAX_HEADERS`]).
    pub max_headers: usize,
    /// A connection with no traffic either way for this long is closed.
    /// Default 300 s.
    pub idle_timeout: Duration,
    /// Most open connections (all protocols, both directions). Default 10,000.
    pub max_connections: usize,
    /// Most open connections with one peer IP address. Default 256 (a NAT
    /// can hide many phones behind one address).
    pub max_connections_per_peer: usize,
    /// Time allowed for a TCP connect plus the TLS / WebSocket handshake,
    /// outbound and inbound. Default 10 s.
    pub connect_timeout: Duration,
    /// Keepalives we send on every connection-oriented flow; `None` (the
    /// default) sends none. Pings from peers are always answered.
    pub keepalive: Option<KeepaliveConfig>,
    /// Requests over UDP larger than this go over TCP (RFC 3261 §18.1.1: 1300
    /// bytes when the path MTU is unknown). Default 1300.
    pub udp_mtu_limit: usize,
    /// Capacity of the inbound message queue; readers wait when it is full.
    /// Default 4096.
    pub inbound_queue: usize,
    /// Capacity of each connection's outbound queue. Default 256.
    pub outbound_queue: usize,
    /// Capacity of the flow event broadcast; slow subscribers lose the oldest
    /// events (`RecvError::Lagged`). Default 1024.
    pub event_queue: usize,
    /// TLS server side (certificate, key, optional client verification), for TLS
    /// and WSS listeners.
    pub tls_server: Option<TlsServerConfig>,
    /// TLS client side, for outbound TLS and WSS. Default: the webpki roots,
    /// no client certificate.
    pub tls_client: Option<TlsClientConfig>,
    /// How long [`Transport::shutdown`](crate::Transport::shutdown) waits for
    /// connections to flush their queues. Default 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            max_connections_per_peer: 256,
            connect_timeout: Duration::from_secs(10),
            keepalive: None,
            udp_mtu_limit: 1300,
            inbound_queue: 4096,
            outbound_queue: 256,
            event_queue: 1024,
            tls_server: None,
            tls_client: None,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl TransportConfig {
    /// The framer limits derived from this configuration.
    pub fn framer(&self) -> FramerConfig {
        FramerConfig {
            max_message_size: self.max_message_size,
            max_headers: self.max_headers,
        }
    }

    /// The parse limits for a datagram or WebSocket message.
    pub fn parse_options(&self) -> siplink_message::ParseOptions {
        siplink_message::ParseOptions {
            max_size: self.max_message_size,
            max_headers: self.max_headers,
            require_content_length: false,
        }
    }
}
