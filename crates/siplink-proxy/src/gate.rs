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
/// endpoint; returns the endpoint's queue (`capacity` long) and a sender
/// into it for messages already screened elsewhere (the UDP workers).
pub(crate) fn spawn(
    gate: Arc<Gate>,
    transport: Transport,
    mut from: mpsc::Receiver<Incoming>,
    clock: Clock,
    capacity: usize,
) -> (mpsc::Receiver<Incoming>, mpsc::Sender<Incoming>) {
    let (to, rx) = mpsc::channel(capacity.max(1));
    let screened = to.clone();
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
                    let Some(r) = refusal(&incoming.message, secs) else {
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
    (rx, screened)
}

/// The 503 that refuses a rate-limited request.
pub(crate) fn refusal(
    request: &siplink_message::Message,
    secs: u32,
) -> Option<siplink_message::Message> {
    request
        .response(503)
        .header(HeaderName::RetryAfter, secs)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use siplink_message::Message;
    use siplink_transport::{Origin, Protocol};

    fn incoming(from: &str, first_line: &str, method: &str, ua: &str) -> Incoming {
        let text = format!(
            "{first_line}\r\nVia: SIP/2.0/UDP {from}:5060;branch=z9hG4bK-1\r\n\
             From: <sip:a@x.test>;tag=1\r\nTo: <sip:b@x.test>\r\nCall-ID: c@x\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: 70\r\nUser-Agent: {ua}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        Incoming {
            message: Message::parse(text.into_bytes()).unwrap(),
            origin: Origin {
                protocol: Protocol::Udp,
                peer: format!("{from}:5060").parse().unwrap(),
                local: "192.0.2.1:5060".parse().unwrap(),
                flow: None,
            },
        }
    }

    fn security(toml_rate: (u32, u32), drop_scanners: bool) -> SecurityConfig {
        let mut s = SecurityConfig::default();
        s.rate_limit.requests_per_second = toml_rate.0;
        s.rate_limit.burst = toml_rate.1;
        s.drop_scanners = drop_scanners;
        s
    }

    #[test]
    fn a_limited_ack_is_dropped_and_responses_always_pass() {
        let gate = Gate::new(&security((1, 1), false));
        let now = Instant::now();
        let ack = incoming("198.51.100.7", "ACK sip:b@x.test SIP/2.0", "ACK", "x");
        let opt = incoming(
            "198.51.100.7",
            "OPTIONS sip:b@x.test SIP/2.0",
            "OPTIONS",
            "x",
        );
        let resp = incoming("198.51.100.7", "SIP/2.0 200 OK", "OPTIONS", "x");
        assert_eq!(gate.check(&opt, now), Verdict::Pass);
        // Over the limit: an ACK gets no answer, not even the first refusal.
        assert_eq!(gate.check(&ack, now), Verdict::Drop);
        assert_eq!(gate.check(&opt, now), Verdict::Drop);
        assert_eq!(
            gate.check(&opt, now + std::time::Duration::from_secs(1)),
            Verdict::Refuse(59)
        );
        for _ in 0..100 {
            assert_eq!(gate.check(&resp, now), Verdict::Pass);
        }
    }

    #[test]
    fn scanners_are_dropped_when_asked_unless_exempt() {
        let scan = incoming(
            "198.51.100.8",
            "OPTIONS sip:x.test SIP/2.0",
            "OPTIONS",
            "friendly-scanner",
        );
        let now = Instant::now();
        assert_eq!(
            Gate::new(&security((50, 200), false)).check(&scan, now),
            Verdict::Pass
        );
        let gate = Gate::new(&security((50, 200), true));
        assert_eq!(gate.check(&scan, now), Verdict::Drop);
        let mut exempt = security((50, 200), true);
        exempt.exempt = vec!["198.51.100.0/24".into()];
        let gate = Gate::new(&exempt);
        assert_eq!(gate.check(&scan, now), Verdict::Pass);
        // Off means off, whatever the rate.
        let mut off = security((1, 1), false);
        off.rate_limit.enabled = false;
        let gate = Gate::new(&off);
        for _ in 0..100 {
            assert_eq!(gate.check(&scan, now), Verdict::Pass);
        }
    }
}
