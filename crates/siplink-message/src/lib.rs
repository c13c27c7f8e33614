//! # siplink-message
//!
//! The SIP wire format (RFC 3261 §7, §19, §20, §25): a zero-copy parser on
//! [`bytes::Bytes`], typed header views, a builder, validation that maps every
//! fault to the status code an element answers with, and a sans-IO stream framer.
//!
//! ```
//! use siplink_message::{HeaderName, Message};
//!
//! let raw = &b"SIP/2.0 200 OK\r\n\
//! Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=192.0.2.3\r\n\
//! To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
//! From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
//! CSeq: 314159 INVITE\r\n\
//! Content-Length: 0\r\n\r\n"[..];
//! let msg = Message::parse(raw)?;
//! assert_eq!(msg.status(), Some(200));
//! assert_eq!(msg.top_via()?.received(), Some("192.0.2.3"));
//! assert_eq!(msg.to()?.tag(), Some("a6c85cf"));
//! assert_eq!(msg.to_bytes(), raw); // unedited: the same bytes
//! # Ok::<(), siplink_message::Error>(())
//! ```
//!
//! Parsing indexes; [`Message::validate`] checks. Network input is hostile: every
//! size is bounded by [`ParseOptions`] and [`FramerConfig`](framer::FramerConfig),
//! and no input makes the parser panic.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod error;
mod grammar;
mod message;
mod method;
mod transport;
mod validate;

pub mod framer;
pub mod headers;
pub mod net;
pub mod uri;

pub use builder::MessageBuilder;
pub use error::{Error, Result};
pub use grammar::{Param, Params};
pub use headers::HeaderName;
pub use message::{Header, Message, ParseOptions, unfold};
pub use method::{Method, reason_phrase};
pub use transport::{TargetAddr, Transport, UnknownTransport};
pub use uri::Uri;
pub use validate::{Rejection, Role, ValidationOptions};
