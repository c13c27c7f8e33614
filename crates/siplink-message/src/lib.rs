//! # siplink-message
//!
//! A zero-copy SIP message parser, builder, validator and stream framer (RFC 3261).
#![warn(clippy::all)]

mod error;
mod grammar;

pub mod framer;
pub mod headers;
pub mod uri;

pub use error::{Error, Result};
pub use grammar::{Param, Params};
pub use uri::Uri;
