//! # siplink-trunk
//!
//! Outbound SIP trunks to PBXs and carriers with static addresses (no
//! registration). The core is sans-IO state machines: no sockets, no clock, no runtime.
//! Time comes in as `now`, randomness from an injected RNG, requests go out as
//! outputs for a driver to run in client transactions (`siplink-transaction`).
//! The cores speak the workspace's core vocabulary (`docs/architecture.md`):
//! inputs through `handle_*(…, now)`, outputs one at a time from
//! `poll_output()`, time as `poll_timeout()` / `handle_timeout(now)`.
//!
//! * [`TrunkConfig`]: targets (address, port, transport, priority, weight),
//!   credentials, outbound proxy, caller-ID policy, Request-URI host, failover
//!   and health settings, identify ranges. Plain structs with defaults.
//! * [`target_order`]: priority, then weight (RFC 2782 draw), down targets skipped.
//! * [`OutboundCall`]: one call; rewrites the INVITE per policy, answers
//!   `401`/`407` once per challenge, fails over on timeout, transport error,
//!   no response in time, or `503`/`408` (configurable) before any
//!   provisional, relays provisional and final responses mapped back to the
//!   caller, cancels, and gives a [`DialogMap`] for the rest of the dialog.
//! * [`HealthMonitor`]: OPTIONS probes, down after N failures, up after M
//!   successes, [`HealthEvent`]s on every change.
//! * [`Identify`]: source address (IPv4/IPv6, CIDR, longest prefix) → trunk.
//! * [`TestReport`]: the typed result of a connection test with a likely fix.
//!
//! And, with the default `tokio` feature, a thin tokio driver over a
//! `siplink_transaction::Endpoint`, client side only (the application keeps the
//! server side):
//!
//! * [`Trunk`]: [`Trunk::call`] → [`CallHandle`] of [`CallEvent`]s (with
//!   cancel), the OPTIONS health task ([`Trunk::health_watch`],
//!   [`Trunk::health_events`]), [`Trunk::identify`].
//! * [`TrunkDialog`]: the ACK for the 2xx and in-dialog requests (BYE,
//!   re-INVITE) through the [`DialogMap`], challenges answered.
//! * [`test_connection`]: resolve, connect, TLS, OPTIONS and auth on the
//!   network, as a [`TestReport`].
//!
//! See `docs/trunk.md` for the policies in detail.
//!
//! # A call failing over, in virtual time
//!
//! ```
//! use std::{sync::Arc, time::{Duration, Instant}};
//! use siplink_message::{HeaderName, MessageBuilder, Method};
//! use siplink_trunk::{Input, OutboundCall, Output, Target, Transport, TrunkConfig};
//!
//! let cfg = Arc::new(TrunkConfig::new("pbx", vec![
//!     Target::new("192.0.2.10", 5060, Transport::Udp).with_priority(10),
//!     Target::new("192.0.2.11", 5060, Transport::Udp).with_priority(20),
//! ]));
//! let invite = MessageBuilder::request(Method::Invite, "sip:+4930123@trunk.example.com")
//!     .header(HeaderName::Via, "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKcaller1")
//!     .header(HeaderName::MaxForwards, 70)
//!     .header(HeaderName::To, "<sip:+4930123@trunk.example.com>")
//!     .header(HeaderName::From, "<sip:1001@example.com>;tag=c1")
//!     .header(HeaderName::CallId, "call-1")
//!     .header(HeaderName::CSeq, "1 INVITE")
//!     .build()?;
//! let t0 = Instant::now();
//! let mut call = OutboundCall::new(cfg, "198.51.100.1:5060", vec![0, 1]);
//! call.start(invite, t0)?;
//! let Some(Output::Send { request: first, .. }) = call.poll_output() else { panic!() };
//! assert_eq!(first.request_uri_bytes().unwrap(), "sip:+4930123@192.0.2.10:5060");
//!
//! // The first PBX is overloaded: the same INVITE goes to the second, new branch.
//! let busy = first.response(503).build()?;
//! call.handle_input(Input::Response(busy), t0 + Duration::from_millis(30))?;
//! assert!(matches!(call.poll_output(), Some(Output::TargetFailed { target: 0, .. })));
//! let Some(Output::Send { request: second, target: 1, .. }) = call.poll_output() else { panic!() };
//! assert_ne!(second.top_via()?.branch(), first.top_via()?.branch());
//! assert_eq!(second.call_id()?, "call-1");
//!
//! // It answers; the caller gets the 200 with its own Via on top.
//! let ok = second.response(200).build()?;
//! call.handle_input(Input::Response(ok), t0 + Duration::from_millis(90))?;
//! let Some(Output::Final(ok)) = call.poll_output() else { panic!() };
//! assert_eq!(ok.top_via()?.branch(), Some("z9hG4bKcaller1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod call;
mod config;
#[cfg(feature = "tokio")]
mod connect;
#[cfg(feature = "tokio")]
mod driver;
mod error;
mod health;
mod identify;
pub mod report;
mod select;

pub use call::{AttemptFailure, CallFailure, CallState, DialogMap, Input, OutboundCall, Output};
pub use config::{
    CallerIdPolicy, FailoverPolicy, HealthConfig, PaiPolicy, RuriHost, Target, TargetAddr,
    Transport, TrunkConfig,
};
#[cfg(feature = "tokio")]
pub use connect::{TestOptions, test_connection};
#[cfg(feature = "tokio")]
pub use driver::{CallEvent, CallHandle, InDialogRequest, Trunk, TrunkDialog, in_dialog_request};
pub use error::{Error, Result};
pub use health::{
    HealthEvent, HealthMonitor, HealthOutput, HealthState, Probe, ProbeOutcome, TargetHealth,
};
pub use identify::{Cidr, Identify};
pub use report::TestReport;
pub use select::target_order;
