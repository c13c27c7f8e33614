//! # siplink
//!
//! Building blocks for a cloud SIP proxy that connects to customers' PBXs.
//! This facade re-exports each member crate as a module:
//!
//! - [`message`]: zero-copy SIP message parser, builder, validator and stream framer.
//! - [`auth`]: HTTP digest authentication for SIP, client and server side.
//! - [`dialplan`]: dial patterns of every connection compiled into one automaton.
//! - [`transport`]: SIP over UDP, TCP, TLS, WS and WSS behind one API, with flows.
//! - [`transaction`]: RFC 3261 §17 transactions as sans-IO state machines, and an
//!   async endpoint over the transport.
//! - [`register`]: the outbound registration client (state machine and manager).
//! - [`registrar`]: the registrar and location service.
//! - [`trunk`]: trunks to a PBX's static address: failover, health, identify.
//! - [`media`]: SDP (RFC 8866) and media-relay control (rtpengine's ng protocol):
//!   WebRTC ↔ RTP bridging and RTP anchoring.
//! - [`proxy`]: the embeddable proxy: connections, dial-pattern routing, failover,
//!   Test Connection (`cargo run --example proxy`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use siplink_auth as auth;
pub use siplink_dialplan as dialplan;
pub use siplink_media as media;
pub use siplink_message as message;
pub use siplink_proxy as proxy;
pub use siplink_register as register;
pub use siplink_registrar as registrar;
pub use siplink_transaction as transaction;
pub use siplink_transport as transport;
pub use siplink_trunk as trunk;
