//! The gate in front of the transaction layer: per-source request-rate
//! limiting and the scanner User-Agent filter (`[security]`'s `rate_limit`
//! and `drop_scanners`).
//!
//! It sits between the transport and the endpoint, so a refused or dropped
//! request never becomes a transaction: a refusal is a stateless `503` with
//! `Retry-After` sent straight through the transport, a drop costs nothing.
//! Responses pass untouched.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use siplink_auth::rate::{RateDecision, RateLimiter, ScannerFilter};
use siplink_auth::{IpPrefix, RateConfig};
use siplink_message::Method;
use siplink_message::headers::HeaderName;
use siplink_transport::{Clock, Incoming, Transport};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::SecurityConfig;

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand it to the endpoint.
    Pass,
    /// Answer `503` with `Retry-After` (seconds), statelessly.
    Refuse(u32),
    /// Say nothing.
    Drop,
}

#[derive(Debug)]
struct Settings {
    rate: bool,
    scanners: Option<ScannerFilter>,
}

/// Shared by the filter task and [`Proxy::install`](crate::Proxy) (reloads).
#[derive(Debug)]
pub(crate) struct Gate {
    limiter: RateLimiter,
    settings: RwLock<Settings>,
}

/// An IPv4-mapped IPv6 address printed as IPv4.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Gate {
    pub(crate) fn new(security: &SecurityConfig) -> Gate {
        let gate = Gate {
            limiter: RateLimiter::new(RateConfig::default()),
            settings: RwLock::new(Settings {
                rate: false,
                scanners: None,
            }),
        };
        gate.configure(security, security.limiter().exempt);
        gate
    }

    /// Applies `security` (at start and on reload) with the full exempt list
    /// (configured and the connections' PBXs).
    pub(crate) fn configure(&self, security: &SecurityConfig, exempt: Vec<IpPrefix>) {
        let rate = security.rate();
        if let Some(mut cfg) = rate.clone() {
            cfg.exempt = exempt;
            self.limiter.set_config(cfg);
        }
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Settings {
            rate: rate.is_some(),
            scanners: security.scanners(),
        };
    }

    /// The verdict on `incoming` at `now`.
    pub(crate) fn check(&self, incoming: &Incoming, now: Instant) -> Verdict {
        let m = &incoming.message;
        if !m.is_request() {
            return Verdict::Pass;
        }
        let source = incoming.origin.peer.ip();
        let settings = self.settings.read().unwrap_or_else(|e| e.into_inner());
        if let Some(filter) = &settings.scanners
            && let Some(ua) = m.header(HeaderName::UserAgent)
            && filter.matches(ua)
            && !self.limiter.is_exempt(source)
        {
            debug!(source = %plain(source), "scanner User-Agent: dropped");
            return Verdict::Drop;
        }
        if !settings.rate {
            return Verdict::Pass;
        }
        drop(settings);
        match self.limiter.request(source, now) {
            RateDecision::Allow => Verdict::Pass,
            RateDecision::Drop => Verdict::Drop,
            RateDecision::Refuse {
                retry_after,
                started,
            } => {
                if started {
                    // One line per cool-down, not per request.
                    warn!(
                        "request rate limit: {} refused for {retry_after} s",
                        plain(source)
                    );
                }
                if m.method() == Some(&Method::Ack) {
                    Verdict::Drop
                } else {
                    Verdict::Refuse(retry_after)
                }
            }
        }
    }
}

/// Starts the filter task between the transport's queue `from` and the
/// endpoint; returns the endpoint's queue (`capacity` long).
pub(crate) fn spawn(
    gate: Arc<Gate>,
    transport: Transport,
    mut from: mpsc::Receiver<Incoming>,
    clock: Clock,
    capacity: usize,
) -> mpsc::Receiver<Incoming> {
    let (to, rx) = mpsc::channel(capacity.max(1));
    tokio::spawn(async move {
        while let Some(incoming) = from.recv().await {
            match gate.check(&incoming, clock.now()) {
                Verdict::Pass => {
                    if to.send(incoming).await.is_err() {
                        break;
                    }
                }
                Verdict::Drop => {}
                Verdict::Refuse(secs) => {
                    // Stateless: nothing is kept, retransmissions are counted
                    // (and dropped) like any request. At most one refusal per
                    // source per second, so these sends are bounded.
                    let Ok(r) = incoming
                        .message
                        .response(503)
                        .header(HeaderName::RetryAfter, secs)
                        .build()
                    else {
                        continue;
                    };
                    let transport = transport.clone();
                    tokio::spawn(async move {
                        if let Err(e) = transport.send_response(r, Some(&incoming.origin)).await {
                            debug!("rate-limit refusal not sent: {e}");
                        }
                    });
                }
            }
        }
    });
    rx
}
