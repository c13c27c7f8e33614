//! # siplink-transaction
//!
//! SIP transactions (RFC 3261 §17 with the RFC 6026 changes) as sans-IO state
//! machines: no sockets, no clocks, no runtime. Each transaction takes events
//! (a message received, a timer fired, a transport error, the TU's response)
//! with the current time and returns [`Action`]s (send, start/stop a timer,
//! deliver to the transaction user, terminated).
//!
//! - [`ClientTransaction`] and [`ServerTransaction`]: the four state machines
//!   (INVITE and non-INVITE, client and server), timers A to M, retransmissions
//!   only over unreliable transports, 100 Trying after 200 ms, the ACK for a
//!   non-2xx final built by the client INVITE transaction; [`build_cancel`].
//! - [`TransactionTable`]: matching (§17.1.3, §17.2.3 with the RFC 2543
//!   fallback), server transaction creation, CANCEL-to-INVITE lookup, a
//!   live-transaction limit (503 with Retry-After past it), one ordered timer set.
//!
//! A client non-INVITE transaction over UDP driven with virtual time:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use siplink_message::{HeaderName, MessageBuilder, Method};
//! use siplink_transaction::{
//!     Action, ClientState, ClientTransaction, Event, TimerKind, Timers, TuEvent, new_branch,
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
//! let (mut tx, actions) = ClientTransaction::new(&request, false, Timers::default(), t0)?;
//! assert!(matches!(actions[0], Action::Send(_)));
//! assert!(matches!(actions[1], Action::StartTimer(TimerKind::E, at) if at == t0 + Duration::from_millis(500)));
//!
//! // Timer E fires at 0.5 s: the request is retransmitted, E restarts at 1 s.
//! let t = t0 + Duration::from_millis(500);
//! let actions = tx.handle(Event::TimerFired(TimerKind::E), t);
//! assert!(matches!(actions[0], Action::Send(_)));
//! assert!(matches!(actions[1], Action::StartTimer(TimerKind::E, at) if at == t + Duration::from_secs(1)));
//!
//! // The 200 OK arrives: delivered to the TU; Completed for T4 = 5 s (timer K).
//! let ok = request.response(200).build()?;
//! let t = t0 + Duration::from_millis(700);
//! let actions = tx.handle(Event::Received(ok), t);
//! assert!(actions.iter().any(|a| matches!(a, Action::Deliver(TuEvent::Final(m)) if m.status() == Some(200))));
//! assert_eq!(tx.state(), ClientState::Completed);
//! let actions = tx.handle(Event::TimerFired(TimerKind::K), t + Duration::from_secs(5));
//! assert!(matches!(actions[..], [Action::Terminated]));
//! assert_eq!(tx.state(), ClientState::Terminated);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod branch;
mod client;
pub mod endpoint;
mod error;
mod event;
mod key;
mod server;
mod table;
mod timer;

pub use branch::new_branch;
pub use client::{ClientState, ClientTransaction, build_cancel};
pub use endpoint::{
    ClientEvent, ClientTransactionHandle, Endpoint, EndpointConfig, ServerRequests,
    ServerTransactionHandle, StrayHandler,
};
pub use error::{Error, Result};
pub use event::{Action, Actions, Event, TuEvent};
pub use key::{ClientKey, ServerKey};
pub use server::{ServerState, ServerTransaction};
pub use table::{Output, Received, TableConfig, TransactionId, TransactionState, TransactionTable};
pub use timer::{TRYING_DELAY, TimerKind, Timers};
