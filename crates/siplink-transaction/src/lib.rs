//! # siplink-transaction
//!
//! SIP transactions (RFC 3261 §17 with the RFC 6026 changes) as sans-IO state
//! machines: no sockets, no clocks, no runtime. They speak the core vocabulary
//! of the workspace (see `docs/architecture.md`):
//!
//! - inputs are `handle_*(…, now)` methods: a response or request matched to the
//!   transaction, the TU's response, a transport error;
//! - what to do comes out of `poll_output()`, one [`Action`] (or table
//!   [`Output`]) at a time, in order: send, deliver to the transaction user,
//!   terminated;
//! - time is `poll_timeout()` (the earliest armed timer) and
//!   `handle_timeout(now)` (fires every timer due). The timers are kept inside.
//!
//! The pieces:
//!
//! - [`ClientTransaction`] and [`ServerTransaction`]: the four state machines
//!   (INVITE and non-INVITE, client and server), timers A to M, retransmissions
//!   only over unreliable transports, 100 Trying after 200 ms, the ACK for a
//!   non-2xx final built by the client INVITE transaction; [`build_cancel`].
//! - [`TransactionTable`]: matching (§17.1.3, §17.2.3 with the RFC 2543
//!   fallback), server transaction creation, CANCEL-to-INVITE lookup, a
//!   live-transaction limit (503 with Retry-After past it), one ordered set of
//!   deadlines.
//! - With the default `tokio` feature, the `endpoint` module: an `Endpoint`
//!   that drives a table over `siplink-transport`. Without it the crate builds
//!   on `siplink-message` alone.
//!
//! A client non-INVITE transaction over UDP driven with virtual time:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use siplink_message::{HeaderName, MessageBuilder, Method};
//! use siplink_transaction::{
//!     Action, ClientState, ClientTransaction, TimerKind, Timers, TuEvent, new_branch,
//! };
//!
//! let t0 = Instant::now();
//! let request = MessageBuilder::request(Method::Options, "sip:carol@example.com")
//!     .header(HeaderName::Via, format_args!("SIP/2.0/UDP 192.0.2.1:5060;branch={}", new_branch()))
//!     .header(HeaderName::MaxForwards, 70)
//!     .header(HeaderName::To, "<sip:carol@example.com>")
//!     .header(HeaderName::From, "<sip:alice@example.com>;tag=88sja8x")
//!     .header(HeaderName::CallId, "a84b4c76e66710")
//!     .header(HeaderName::CSeq, "63104 OPTIONS")
//!     .build()?;
//! let mut tx = ClientTransaction::new(&request, false, Timers::default(), t0)?;
//! assert!(matches!(tx.poll_output(), Some(Action::Send(_))));
//! assert!(tx.poll_output().is_none());
//! assert_eq!(tx.timer(TimerKind::E), Some(t0 + Duration::from_millis(500)));
//! assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(500)));
//!
//! // Timer E fires at 0.5 s: the request is retransmitted, E re-armed at 1.5 s.
//! let t = t0 + Duration::from_millis(500);
//! tx.handle_timeout(t);
//! assert!(matches!(tx.poll_output(), Some(Action::Send(_))));
//! assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(1)));
//!
//! // The 200 OK arrives: delivered to the TU; Completed for T4 = 5 s (timer K).
//! let ok = request.response(200).build()?;
//! let t = t0 + Duration::from_millis(700);
//! tx.handle_response(ok, t);
//! assert!(matches!(tx.poll_output(), Some(Action::Deliver(TuEvent::Final(m))) if m.status() == Some(200)));
//! assert_eq!(tx.state(), ClientState::Completed);
//! assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(5)));
//! tx.handle_timeout(t + Duration::from_secs(5));
//! assert!(matches!(tx.poll_output(), Some(Action::Terminated)));
//! assert_eq!(tx.state(), ClientState::Terminated);
//! assert_eq!(tx.poll_timeout(), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod branch;
mod client;
mod done;
#[cfg(feature = "tokio")]
pub mod endpoint;
mod error;
mod event;
mod key;
#[cfg(feature = "tokio")]
pub mod runtime;
mod server;
mod stateless;
mod table;
mod timer;

pub use branch::new_branch;
pub use client::{ClientState, ClientTransaction, build_cancel};
#[cfg(feature = "tokio")]
pub use endpoint::{
    ClientEvent, ClientTransactionHandle, Endpoint, EndpointConfig, ServerRequests,
    ServerTransactionHandle, StrayHandler,
};
pub use error::{Error, Result};
pub use event::{Action, TuEvent};
pub use key::{ClientKey, Rfc2543Key, ServerKey};
pub use server::{ServerState, ServerTransaction};
/// The drivers' time source, re-exported from `siplink-transport`.
#[cfg(feature = "tokio")]
pub use siplink_transport::Clock;
pub use stateless::StatelessReplies;
pub use table::{Output, Received, TableConfig, TransactionId, TransactionState, TransactionTable};
pub use timer::{TRYING_DELAY, TimerKind, Timers};
