//! # siplink-auth
//!
//! SIP digest authentication (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), both
//! sides, sans-IO: no sockets, no async runtime, no clock. Time is passed in as
//! `now`, randomness comes from an injectable [`rand::RngCore`].
//!
//! * [`DigestClient`]: answers `401`/`407` challenges from the one server it is
//!   bound to, picks the strongest algorithm (RFC 8760), counts `nc` per nonce,
//!   handles `stale=true`, detects rejected credentials instead of looping, and
//!   caches nonces so that later requests carry credentials pre-emptively.
//! * [`DigestServer`]: issues stateless HMAC-protected nonces, verifies
//!   credentials against a [`CredentialStore`] in constant time, rejects replayed
//!   `nc` values with a bounded cache, and tells the caller what to send
//!   ([`Outcome`]).
//! * [`FailurePolicy`] (and its shareable [`FailureLimiter`]): bounded
//!   failed-attempt limiting per source and per (source, user) that nobody can
//!   use to lock someone else out.
//! * [`RatePolicy`] (and its shareable [`RateLimiter`]): per-source request
//!   rate limiting (token bucket, growing cool-downs, refuse then drop), and
//!   [`ScannerFilter`] for scanner User-Agents.
//! * [`digest`]: the bare computation, for test vectors and tools.
//!
//! # A round trip
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use siplink_auth::{
//!     ClientCredentials, DigestClient, DigestServer, Outcome, RequestInfo, ServerConfig,
//!     StoredSecret,
//! };
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let server = DigestServer::new(ServerConfig::new("example.com"));
//! let store = |user: &str, _realm: &str, _alg| {
//!     (user == "alice").then(|| StoredSecret::Password("s3cret".into()))
//! };
//!
//! // The registrar challenges the first REGISTER...
//! let req = RequestInfo::new("REGISTER", "sip:example.com");
//! let challenges = server.challenge(None, now, false);
//!
//! // ...the client answers (it is bound to the server "sip.example.com")...
//! let mut client = DigestClient::new(
//!     "sip.example.com",
//!     ClientCredentials::password("alice", "s3cret"),
//! );
//! let answers = client.answer("sip.example.com", &challenges, &[], &req).unwrap();
//! assert_eq!(answers[0].header_name(), "Authorization");
//!
//! // ...and the registrar accepts the retried REGISTER.
//! match server.verify(&answers[0].credentials, &req, None, now, &store) {
//!     Outcome::Accept(who) => assert_eq!(who.username, "alice"),
//!     other => panic!("{other:?}"),
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod algorithm;
pub mod client;
pub mod digest;
mod error;
pub mod limiter;
pub mod rate;
pub mod server;

pub use algorithm::{Algorithm, HashFunction, Qop};
pub use client::{
    Authorization, ChallengeKind, ClientConfig, ClientCredentials, DigestClient, Secret,
};
pub use error::AuthError;
pub use limiter::{
    Blocked, Counted, FailureLimiter, FailureLine, FailurePolicy, IpPrefix, LimiterConfig, Scope,
};
pub use rate::{RateConfig, RateDecision, RateLimiter, RatePolicy, ScannerFilter};
pub use server::{
    Authenticated, CredentialStore, DigestServer, Fault, Outcome, Pending, Refusal, ServerConfig,
    StaleReason, StoredSecret,
};
pub use siplink_message::headers::auth::{Challenge, Credentials};

/// The parts of a request that the digest covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestInfo<'a> {
    /// Method (`REGISTER`, `INVITE`...). For the server, the method of the
    /// request being authenticated (for an ACK or CANCEL, the client reuses the
    /// INVITE's credentials: do not challenge those).
    pub method: &'a str,
    /// The Request-URI as it appears on the request line.
    pub uri: &'a str,
    /// The message body (only used by `qop=auth-int`).
    pub body: &'a [u8],
}

impl<'a> RequestInfo<'a> {
    /// A request without a body.
    pub const fn new(method: &'a str, uri: &'a str) -> Self {
        RequestInfo {
            method,
            uri,
            body: &[],
        }
    }

    /// The same request with `body`.
    pub const fn with_body(self, body: &'a [u8]) -> Self {
        RequestInfo { body, ..self }
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
