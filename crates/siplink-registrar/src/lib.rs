//! # siplink-registrar
//!
//! A SIP registrar and location service, sans-IO: REGISTER processing exactly
//! as RFC 3261 §10.3 steps 1 to 8, Path (RFC 3327), Outbound (RFC 5626 §6),
//! digest authentication through `siplink-auth`, limits, expiry under
//! caller-supplied time, and routing lookups.
//!
//! * [`Registrar`] decides: it reads no clock, owns no socket and keeps no
//!   binding. Time, source address, transport and flow come in a
//!   [`RequestContext`]; the answer is a [`Decision`]: the response to send (a
//!   built [`Message`](siplink_message::Message)) and the binding
//!   [`Change`]s, as one all-or-nothing batch.
//! * Bindings live in a store: the synchronous [`BindingTable`] (what
//!   [`Registrar::handle_register`] drives), or any asynchronous, object-safe
//!   [`LocationStore`] ([`Registrar::handle_register_with`]), whose default is
//!   [`InMemoryStore`]. The registrar reads an AOR's bindings with a version,
//!   decides, and commits only if the version did not move (optimistic
//!   concurrency), so a store shared by several proxy nodes plugs in without
//!   changing the registrar.
//! * Expiry is an ordered index in the workspace's core vocabulary
//!   (`docs/architecture.md`): [`BindingTable::handle_timeout`] at
//!   [`BindingTable::poll_timeout`], the expiry events from
//!   [`BindingTable::poll_output`]. [`Registrar::handle_flow_closed`] (over
//!   [`BindingTable::flow_closed`]) removes the bindings of a dead connection:
//!   RFC 5626 outbound ones, and plain ones registered over TCP, TLS, WS or
//!   WSS (as Kamailio's `handle_lost_tcp`; [`RegistrarConfig::contact_fallback`]
//!   keeps those with their Contact instead). [`BindingTable::lookup`] gives an
//!   AOR's contacts by `q`, then freshness, each with its [`Reach`]. Every
//!   change is a [`BindingEvent`] (and [`InMemoryStore::subscribe`] streams them).
//! * Time: the monotonic `now` runs expiry; the wall-clock `now_system` of the
//!   same moment (both in the [`RequestContext`]) stamps what must outlive the
//!   process: [`Binding::registered_at`] and [`Binding::expires_at_wall`].
//! * `RegistrarService` (default `tokio` feature): the tokio driver over a
//!   `siplink_transaction::Endpoint`. Without the feature the crate builds on
//!   `siplink-message` and `siplink-auth` alone.
//!
//! ```
//! use std::time::{Instant, SystemTime};
//! use siplink_message::{HeaderName, MessageBuilder, Method};
//! use siplink_registrar::{
//!     Aor, BindingTable, FlowId, Reach, Registrar, RegistrarConfig, RequestContext, Transport,
//! };
//!
//! let mut config = RegistrarConfig::new(["example.com"]);
//! config.auth = false; // on by default: pass an `Authenticator` instead
//! let registrar = Registrar::new(config, None)?;
//! let mut table = BindingTable::new();
//!
//! let register = MessageBuilder::request(Method::Register, "sip:example.com")
//!     .header(HeaderName::Via, "SIP/2.0/TCP 192.0.2.4:5060;branch=z9hG4bK776asdhds")
//!     .header(HeaderName::MaxForwards, 70)
//!     .header(HeaderName::To, "<sip:1001@example.com>")
//!     .header(HeaderName::From, "<sip:1001@example.com>;tag=456248")
//!     .header(HeaderName::CallId, "843817637684230@998sdasdh09")
//!     .header(HeaderName::CSeq, "1826 REGISTER")
//!     .header(HeaderName::Contact, "<sip:1001@192.0.2.4:5060;transport=tcp>")
//!     .header(HeaderName::Expires, 600)
//!     .build()?;
//! let now = Instant::now();
//! let ctx = RequestContext {
//!     source: "192.0.2.4:5060".parse().unwrap(),
//!     transport: Transport::Tcp,
//!     flow: Some(FlowId::from_raw(7)),
//!     now,
//!     now_system: SystemTime::now(),
//! };
//! let decision = registrar.handle_register(&register, &ctx, &mut table)?;
//! assert_eq!(decision.status(), 200);
//! let contact = decision.response.header(HeaderName::Contact).unwrap();
//! assert_eq!(contact, b"<sip:1001@192.0.2.4:5060;transport=tcp>;expires=600");
//!
//! let targets = table.lookup(&Aor::parse("sip:1001@example.com")?, now);
//! assert_eq!(targets[0].reach, Reach::Flow(FlowId::from_raw(7)));
//! assert_eq!(table.poll_timeout(), Some(now + std::time::Duration::from_secs(600)));
//! table.handle_timeout(now + std::time::Duration::from_secs(600));
//! assert!(table.poll_output().is_some()); // Removed(Expired)
//! assert!(table.lookup(&Aor::parse("sip:1001@example.com")?, now).is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/registrar.md` for the processing steps, statuses and design.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod binding;
mod config;
mod error;
mod registrar;
#[cfg(feature = "tokio")]
mod service;
mod store;
mod stored;
mod table;

pub use auth::Authenticator;
pub use binding::{
    Aor, Binding, BindingEvent, BindingId, Change, EventKind, FlowId, Reach, RemoveReason, Target,
    Transport, Usage,
};
pub use config::{FloodConfig, RegistrarConfig, TooManyContacts};
pub use error::Error;
pub use registrar::{Decision, MAX_ATTEMPTS, Prepared, Registrar, RequestContext, Step};
#[cfg(feature = "tokio")]
pub use service::{RegistrarService, ServiceConfig};
pub use store::{AorSnapshot, InMemoryStore, LocationStore, StoreFuture};
pub use table::BindingTable;
