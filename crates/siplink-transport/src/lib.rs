//! # siplink-transport
//!
//! SIP over UDP, TCP, TLS, WS and WSS (RFC 3261 §18, RFC 7118) behind one API,
//! on tokio and rustls, with RFC 5626 flows for NATed peers.
//!
//! * Inbound messages arrive as [`Incoming`] with their [`Origin`]: protocol,
//!   peer and local address, and the [`FlowId`] of the connection they came on.
//!   Requests have their top Via stamped with `received` / `rport`
//!   (RFC 3261 §18.2.1, RFC 3581).
//! * [`Transport::send`] takes a [`Target`] (address + protocol; connections
//!   are reused per peer) or a [`FlowId`] (that connection, or
//!   [`Error::FlowGone`]). [`Transport::send_response`] routes a response as
//!   RFC 3261 §18.2.2 and RFC 3581 say.
//! * Flow events ([`FlowEvent`]: opened, closed, keepalive timed out) are
//!   broadcast to [`Transport::subscribe`]rs.
//! * [`Clock`]: the one time source of every driver (tokio's clock, so
//!   paused-time tests drive it; wall-clock time that moves with it).
//! * TLS clients ([`TlsClientConfig`]) trust roots and, per host, certificate
//!   [`Pin`]s (`sha256:` / `spki-sha256:`), which accept exactly one
//!   certificate whatever its CA flags while still checking the handshake
//!   signature. A failed handshake is [`Error::Tls`] with a [`TlsFailure`]:
//!   the [`TlsProblem`] in a sentence, a fix, and the fingerprints of the
//!   certificate the server presented. [`Transport::probe_tls`] is Test
//!   Connection's TLS step.
//! * The protocol decisions are sans-IO and tested on their own: [`via`]
//!   (stamping, response routing, sent-by), [`table`] (connection table,
//!   limits, idle policy), [`resolve`] (RFC 3263 over a [`Resolver`]).
//!
//! ```no_run
//! use siplink_transport::{Protocol, Transport, TransportConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (transport, mut inbound) = Transport::new(TransportConfig::default());
//! transport.listen(Protocol::Udp, "127.0.0.1:5060".parse()?).await?;
//! transport.listen(Protocol::Tcp, "127.0.0.1:5060".parse()?).await?;
//! while let Some(incoming) = inbound.recv().await {
//!     if incoming.message.is_request() {
//!         let response = incoming.message.response(200).build()?;
//!         transport.send_response(response, Some(&incoming.origin)).await?;
//!     }
//! }
//! transport.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod config;
mod conn;
mod error;
#[cfg(feature = "hickory")]
mod hickory;
pub mod resolve;
pub mod table;
mod tls;
mod transport;
mod types;
mod udp_workers;
pub mod via;

pub use clock::Clock;
pub use config::{KeepaliveConfig, TransportConfig};
pub use conn::SIP_SUBPROTOCOL;
pub use error::{Error, Result};
#[cfg(feature = "hickory")]
pub use hickory::HickoryResolver;
pub use resolve::{Naptr, Resolver, Srv, StaticResolver, SystemResolver, resolve_uri};
pub use tls::{
    ClientAuth, Fingerprints, Pin, PinKind, Roots, TlsClientConfig, TlsFailure, TlsPeer,
    TlsProblem, TlsServerConfig,
};
pub use transport::{Sent, StreamSink, Transport};
pub use types::{
    Destination, FlowEvent, FlowEventKind, FlowId, Incoming, Origin, Protocol, Target,
};
pub use udp_workers::{
    BLOCKING_RECV_TIMEOUT, BLOCKING_SEND_TIMEOUT, Ingested, UdpSharing, UdpWorkerSocket,
    response_addr,
};
