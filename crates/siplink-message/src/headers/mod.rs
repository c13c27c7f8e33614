//! Header names and typed header views.

pub mod auth;
