//! # siplink
//!
//! Building blocks for a cloud SIP proxy that connects to customers' PBXs.
//! This facade re-exports each member crate as a module:
//!
//! - [`message`]: zero-copy SIP message parser, builder, validator and stream framer.
//! - [`auth`]: HTTP digest authentication for SIP, client and server side.
//! - [`dialplan`]: dial patterns of every connection compiled into one automaton.

pub use siplink_auth as auth;
pub use siplink_dialplan as dialplan;
pub use siplink_message as message;
