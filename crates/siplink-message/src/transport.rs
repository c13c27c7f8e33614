//! The SIP transports, as named in Via headers and `transport=` URI parameters.

use std::fmt;

/// A SIP transport: UDP, TCP, TLS (RFC 3261 §18) or WebSocket (RFC 7118).
///
/// One type for every crate of the workspace: the Via token, the `transport=`
/// URI parameter, reliability (RFC 3261 §17 timers) and default ports.
///
/// ```
/// use siplink_message::Transport;
/// assert_eq!("tls".parse::<Transport>(), Ok(Transport::Tls));
/// assert_eq!(Transport::Wss.via_token(), "WSS");
/// assert_eq!(Transport::Tls.default_port(), 5061);
/// assert!(!Transport::Udp.is_reliable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Transport {
    /// SIP over UDP.
    #[default]
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS over TCP.
    Tls,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// The token written in a Via header (`UDP`, `TCP`, `TLS`, `WS`, `WSS`).
    pub const fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The transport named by a Via token or a `transport=` URI parameter
    /// (case-insensitive); `None` for SCTP and unknown tokens.
    pub fn from_token(token: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }

    /// The `transport=` URI parameter value (`None` for UDP, the default).
    pub const fn uri_param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => None,
            Transport::Tcp => Some("tcp"),
            Transport::Tls => Some("tls"),
            Transport::Ws => Some("ws"),
            Transport::Wss => Some("wss"),
        }
    }

    /// Whether the transport is reliable and connection-oriented (everything but
    /// UDP): no retransmissions, timers D, I, J, K are zero (RFC 3261 §17), and a
    /// connection (flow) can drop.
    pub const fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Same as [`Transport::is_reliable`]: the transport is a byte or message stream
    /// over a connection.
    pub const fn is_stream(self) -> bool {
        self.is_reliable()
    }

    /// Whether the transport is encrypted (TLS, WSS).
    pub const fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether the transport is a WebSocket one.
    pub const fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The default port (RFC 3261 §19.1.2: 5060, 5061 for TLS; RFC 7118 uses the
    /// HTTP ports 80 and 443).
    pub const fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 5060,
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }
}

impl fmt::Display for Transport {
    /// Writes the Via token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// The error of parsing an unknown transport name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (expected udp, tcp, tls, ws or wss)")]
pub struct UnknownTransport(pub String);

impl std::str::FromStr for Transport {
    type Err = UnknownTransport;
    fn from_str(s: &str) -> Result<Transport, UnknownTransport> {
        Transport::from_token(s).ok_or_else(|| UnknownTransport(s.to_owned()))
    }
}

/// Where a request goes: a host (a name to resolve when sending, or an IP
/// address), a port and a transport.
///
/// ```
/// use siplink_message::{TargetAddr, Transport};
/// let t = TargetAddr::new("2001:db8::1", 5061, Transport::Tls);
/// assert_eq!(t.host_port(), "[2001:db8::1]:5061");
/// assert_eq!(t.to_string(), "[2001:db8::1]:5061;transport=TLS");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetAddr {
    /// Host name, IPv4 address or IPv6 address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
}

impl TargetAddr {
    /// A destination.
    pub fn new(host: impl Into<String>, port: u16, transport: Transport) -> TargetAddr {
        TargetAddr {
            host: host.into(),
            port,
            transport,
        }
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for TargetAddr {
    /// Writes `host:port;transport=TOKEN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};transport={}", self.host_port(), self.transport)
    }
}
