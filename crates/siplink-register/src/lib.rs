//! # siplink-register
//!
//! An outbound SIP registration client (RFC 3261 §10.2) as sans-IO state
//! machines: no sockets, no clock, no runtime. Time is passed in as `now`,
//! randomness comes from an injected [`rand::rngs::StdRng`], and requests go
//! out as [`Output::Send`] for the driver to run in client transactions
//! (retransmissions are the transaction layer's job).
//!
//! Both cores speak the workspace's core vocabulary (`docs/architecture.md`):
//! inputs through `handle_input(…, now)`, outputs one at a time from
//! `poll_output()`, time as `poll_timeout()` / `handle_timeout(now)`.
//!
//! * [`Registration`]: one binding. One Call-ID for its life and an increasing
//!   CSeq; `401`/`407` answered through [`siplink_auth::DigestClient`] (the
//!   answer goes to the target that sent the challenge); `423` retried once with
//!   Min-Expires; the granted expiry read from our Contact's `expires` or the
//!   Expires header; refresh before expiry (margin plus jitter); RFC 5626 §4.5
//!   backoff with jitter, `Retry-After`, failover between registrar addresses;
//!   NAT Contact rewrite from the Via `received`/`rport`; RFC 5626 Outbound
//!   (`+sip.instance`, `reg-id`, keepalives, `439`) and RFC 3327
//!   `Supported: path`; prompt but rate-limited re-register when a TCP/TLS
//!   flow drops; a bounded unregister on shutdown.
//! * [`Registrations`]: many registrations on one endpoint, with start-up
//!   staggering, one wake index and an event queue.
//! * `RegistrationService` (default `tokio` feature): the tokio driver. It runs a [`Registrations`]
//!   manager over a [`siplink_transaction::Endpoint`] (REGISTERs as client
//!   transactions, targets re-resolved per attempt, flow events for prompt
//!   re-registration over TCP/TLS), publishes each registration's
//!   `Status` on a `watch` and every change on a broadcast stream, and
//!   unregisters everything on shutdown within a bound.
//!
//! See `docs/register.md` for the policy in detail.
//!
//! # A registration answering a challenge, in virtual time
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rand::{SeedableRng, rngs::StdRng};
//! use siplink_auth::ClientCredentials;
//! use siplink_message::{HeaderName, uri::SipUri};
//! use siplink_register::{Input, Output, Registration, RegistrationConfig, State, Transport};
//!
//! let cfg = RegistrationConfig::new(
//!     SipUri::parse("sip:example.com")?,
//!     SipUri::parse("sip:1001@example.com")?,
//!     "1001",
//!     "192.0.2.10",
//!     5060,
//!     Transport::Udp,
//! )
//! .with_credentials(ClientCredentials::password("1001", "s3cret"));
//! let mut reg = Registration::with_rng(cfg, StdRng::seed_from_u64(1))?;
//!
//! let t0 = Instant::now(); // any instant: time only moves when we say so
//! reg.start(t0);
//! let send = |outputs: Vec<Output>| {
//!     outputs.into_iter().find_map(|o| match o {
//!         Output::Send { request, .. } => Some(request),
//!         _ => None,
//!     })
//! };
//! reg.handle_timeout(t0);
//! let first = send(std::iter::from_fn(|| reg.poll_output()).collect()).unwrap();
//! assert_eq!(first.expires()?, Some(3600));
//!
//! // The registrar challenges; the answer reuses the Call-ID with the next CSeq.
//! let challenge = first
//!     .response(401)
//!     .header(HeaderName::WwwAuthenticate, r#"Digest realm="example.com", nonce="abc", qop="auth""#)
//!     .build()?;
//! let t1 = t0 + Duration::from_millis(40);
//! reg.handle_input(Input::Response(challenge), t1);
//! let retry = send(std::iter::from_fn(|| reg.poll_output()).collect()).unwrap();
//! assert!(retry.header(HeaderName::Authorization).is_some());
//! assert_eq!(retry.call_id()?, first.call_id()?);
//! assert_eq!(retry.cseq()?.seq, first.cseq()?.seq + 1);
//!
//! // 200 OK granting 600 s for our Contact.
//! let ok = retry
//!     .response(200)
//!     .header(HeaderName::Contact, "<sip:1001@192.0.2.10:5060>;expires=600")
//!     .build()?;
//! reg.handle_input(Input::Response(ok), t1 + Duration::from_millis(40));
//! assert_eq!(reg.state(), &State::Registered { expires_at: t1 + Duration::from_secs(600) });
//!
//! // The refresh is due between half-life and 5 s before expiry.
//! let refresh_at = reg.poll_timeout().unwrap();
//! assert!(refresh_at >= t1 + Duration::from_secs(300));
//! assert!(refresh_at <= t1 + Duration::from_secs(595));
//! reg.handle_timeout(refresh_at);
//! let refresh = send(std::iter::from_fn(|| reg.poll_output()).collect()).unwrap();
//! assert_eq!(refresh.call_id()?, first.call_id()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
pub mod manager;
mod registration;
#[cfg(feature = "tokio")]
mod service;

pub use config::{RegistrationConfig, TargetAddr, Timing, Transport};
pub use error::Error;
pub use manager::{Event, ManagerConfig, RegistrationId, Registrations};
pub use registration::{FailureReason, Input, Output, Registration, State};
#[cfg(feature = "tokio")]
pub use service::{Binding, RegistrationService, ServiceConfig, ServiceEvent, Stats, Status};
