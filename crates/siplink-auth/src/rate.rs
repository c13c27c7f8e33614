//! Per-source request-rate limiting (what Kamailio's `pike` module does with
//! `sl` replies) and a scanner User-Agent matcher.
//!
//! [`RatePolicy`] is pure: each decision is a function of the requests it
//! was told about and `now` (a monotonic [`Instant`]); no clock, no lock, no
//! randomness. [`RateLimiter`] wraps it in a mutex for drivers that share one
//! policy between tasks.
//!
//! # The rules
//!
//! 1. **A token bucket per source.** A source is an IPv4 address, or an IPv6
//!    /64 ([`RateConfig::ipv6_prefix`]); IPv4-mapped IPv6 addresses count as
//!    IPv4. Each source may send [`RateConfig::burst`] requests at once and
//!    [`RateConfig::requests_per_second`] on average: in any interval of `d`
//!    seconds at most `burst + requests_per_second × d` requests are allowed.
//!    Arithmetic is exact (thousandths of a request, integers).
//! 2. **Over the limit, a cool-down.** The first request that finds the bucket
//!    empty starts a cool-down of [`RateConfig::cooldown`]; every request of
//!    the source during it is refused. Each further cool-down of the same
//!    source doubles, up to [`RateConfig::max_cooldown`]; a source that has
//!    not been limited for [`RateConfig::forget_after`] starts again at the
//!    first length. The bucket keeps filling during a cool-down.
//! 3. **Refused, then dropped.** A limited source gets at most one answer
//!    ([`RateDecision::Refuse`]: `503 Service Unavailable` with `Retry-After`, the
//!    seconds left of its cool-down) per [`RateConfig::refusal_interval`]
//!    (1 s); every other request of its cool-down is [`RateDecision::Drop`]ped
//!    without a word, so a flood costs no replies. The first refusal of a
//!    cool-down says so (`started`): log one line then,
//!    not one per request.
//! 4. **Exempt sources** ([`RateConfig::exempt`]: the configured PBXs, an
//!    office network, the same list as the failed-attempt policy's) are never
//!    counted nor limited.
//! 5. **Bounded memory, O(1) per request.** At most [`RateConfig::capacity`]
//!    sources are tracked; when full, the least recently seen goes first
//!    (a second-chance queue: an entry used since it was queued, or in a
//!    cool-down, is passed over a bounded number of times).
//!
//! Why 503 and not 403: the source may be a legitimate but busy one (an
//! office behind one NAT address); 503 with `Retry-After` tells a well-behaved
//! client when to come back (RFC 3261 §21.5.4), and says nothing about users
//! or passwords. Never answer an ACK (the caller drops it).
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use siplink_auth::rate::{RateDecision, RateConfig, RatePolicy};
//!
//! let config = RateConfig { requests_per_second: 10, burst: 20, ..RateConfig::default() };
//! let mut policy = RatePolicy::new(config);
//! let flood: IpAddr = "192.0.2.7".parse().unwrap();
//! let phone: IpAddr = "198.51.100.20".parse().unwrap();
//! let now = Instant::now();
//! for _ in 0..20 {
//!     assert_eq!(policy.request(flood, now), RateDecision::Allow);
//! }
//! // The 21st request at once starts a 60 s cool-down...
//! assert_eq!(policy.request(flood, now), RateDecision::Refuse { retry_after: 60, started: true });
//! // ...and the rest of the flood is dropped silently.
//! assert_eq!(policy.request(flood, now), RateDecision::Drop);
//! // Other sources are not affected.
//! assert_eq!(policy.request(phone, now), RateDecision::Allow);
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limiter::IpPrefix;

/// Rate-limit policy. The defaults are generous: an office of a hundred
/// phones behind one address stays far below them, a flood does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateConfig {
    /// Average requests per second allowed from one source (default 50).
    pub requests_per_second: u32,
    /// Requests a source may send at once (default 200).
    pub burst: u32,
    /// The first cool-down (default 60 s); it doubles with each further one.
    pub cooldown: Duration,
    /// The longest cool-down (default 1 hour).
    pub max_cooldown: Duration,
    /// A source's past cool-downs are forgotten after this long without one
    /// (default 1 hour).
    pub forget_after: Duration,
    /// At most one refusal per limited source per this interval (default
    /// 1 s); the rest of its requests are dropped.
    pub refusal_interval: Duration,
    /// Most sources tracked (default 16 384).
    pub capacity: usize,
    /// IPv6 sources are grouped by this prefix length (default 64).
    pub ipv6_prefix: u8,
    /// Sources never counted nor limited.
    pub exempt: Vec<IpPrefix>,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            requests_per_second: 50,
            burst: 200,
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(3600),
            forget_after: Duration::from_secs(3600),
            refusal_interval: Duration::from_secs(1),
            capacity: 16_384,
            ipv6_prefix: 64,
            exempt: Vec::new(),
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go on.
    Allow,
    /// Answer `503 Service Unavailable` with `Retry-After: retry_after`
    /// (seconds), statelessly, without looking further at the request (an
    /// ACK is not answered).
    Refuse {
        /// Seconds left of the cool-down (at least 1).
        retry_after: u32,
        /// This request started the cool-down: log it (once per cool-down).
        started: bool,
    },
    /// Say nothing: the source is far over its limit.
    Drop,
}

/// One thousandth of a request: the bucket's unit.
const MILLI: u64 = 1000;
/// How many times an entry may be passed over for eviction in one insertion.
const MAX_SKIPS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Thousandths of a request available.
    tokens: u64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
    /// End of the current (or last) cool-down.
    limited_until: Option<Instant>,
    /// Cool-downs so far (for the back-off).
    strikes: u32,
    /// Last refusal sent.
    refused: Option<Instant>,
    /// Bumped each time the entry is used; compared with the mark in `order`.
    touched: u64,
    /// The mark this entry has in `order`.
    queued: u64,
}

type SourceKey = (bool, u128);

/// The rate-limit policy as a pure state machine; see the
/// [module documentation](self) for the rules.
pub struct RatePolicy {
    config: RateConfig,
    map: HashMap<SourceKey, Entry>,
    /// Second-chance queue: (key, mark when queued).
    order: VecDeque<(SourceKey, u64)>,
    tick: u64,
}

impl fmt::Debug for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatePolicy")
            .field("config", &self.config)
            .field("sources", &self.map.len())
            .finish_non_exhaustive()
    }
}

fn canonical(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), false),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), false),
            None => (u128::from(a), true),
        },
    }
}

fn cooldown_for(cfg: &RateConfig, strikes: u32) -> Duration {
    let factor = 1u32 << strikes.saturating_sub(1).min(30);
    cfg.cooldown
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(cfg.max_cooldown.max(Duration::from_millis(1)))
        .max(Duration::from_millis(1))
}

fn ceil_secs(d: Duration) -> u32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(s).unwrap_or(u32::MAX).max(1)
}

impl RatePolicy {
    /// A policy with `config`.
    pub fn new(config: RateConfig) -> Self {
        RatePolicy {
            config,
            map: HashMap::new(),
            order: VecDeque::new(),
            tick: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    /// Replaces the configuration (a reload); sources tracked so far keep
    /// their state.
    pub fn set_config(&mut self, config: RateConfig) {
        self.config = config;
    }

    /// Replaces the exempt sources (a configuration reload).
    pub fn set_exempt(&mut self, exempt: Vec<IpPrefix>) {
        self.config.exempt = exempt;
    }

    /// Whether `source` is exempt.
    pub fn is_exempt(&self, source: IpAddr) -> bool {
        self.config.exempt.iter().any(|p| p.contains(source))
    }

    fn key(&self, ip: IpAddr) -> SourceKey {
        match canonical(ip) {
            (a, false) => (false, a),
            (a, true) => {
                let p = u32::from(self.config.ipv6_prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                (true, a & mask)
            }
        }
    }

    /// Counts a request from `source` at `now` and says what to do with it.
    pub fn request(&mut self, source: IpAddr, now: Instant) -> RateDecision {
        if self.is_exempt(source) {
            return RateDecision::Allow;
        }
        let key = self.key(source);
        let cfg = &self.config;
        let full = u64::from(cfg.burst.max(1)).saturating_mul(MILLI);
        self.tick += 1;
        let tick = self.tick;
        if !self.map.contains_key(&key) {
            self.make_room(now);
            self.map.insert(
                key,
                Entry {
                    tokens: full,
                    refilled: now,
                    limited_until: None,
                    strikes: 0,
                    refused: None,
                    touched: tick,
                    queued: tick,
                },
            );
            self.order.push_back((key, tick));
        }
        let cfg = &self.config;
        let Some(e) = self.map.get_mut(&key) else {
            return RateDecision::Allow;
        };
        e.touched = tick;
        // Refill: rate × elapsed, in thousandths (rate per second = per 1000 ms).
        let elapsed = now.saturating_duration_since(e.refilled);
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let added = ms.saturating_mul(u64::from(cfg.requests_per_second));
        if added > 0 {
            e.tokens = e.tokens.saturating_add(added).min(full);
            // Whole milliseconds only: the remainder counts next time.
            e.refilled = e
                .refilled
                .checked_add(Duration::from_millis(ms))
                .unwrap_or(now);
        }
        if let Some(until) = e.limited_until {
            if now < until {
                let due = e
                    .refused
                    .is_none_or(|r| now.saturating_duration_since(r) >= cfg.refusal_interval);
                if due {
                    e.refused = Some(now);
                    return RateDecision::Refuse {
                        retry_after: ceil_secs(until - now),
                        started: false,
                    };
                }
                return RateDecision::Drop;
            }
            if now.saturating_duration_since(until) >= cfg.forget_after {
                e.strikes = 0;
                e.limited_until = None;
            }
        }
        if e.tokens >= MILLI {
            e.tokens -= MILLI;
            return RateDecision::Allow;
        }
        e.strikes = e.strikes.saturating_add(1);
        let length = cooldown_for(cfg, e.strikes);
        let until = now.checked_add(length).unwrap_or(now);
        e.limited_until = Some(until);
        e.refused = Some(now);
        RateDecision::Refuse {
            retry_after: ceil_secs(length),
            started: true,
        }
    }

    /// Evicts until there is room for one more source: least recently seen
    /// first, passing over (a bounded number of times) entries used since
    /// they were queued or in a cool-down.
    fn make_room(&mut self, now: Instant) {
        let cap = self.config.capacity.max(1);
        let mut skips = 0;
        while self.map.len() >= cap {
            let Some((k, mark)) = self.order.pop_front() else {
                break;
            };
            let Some(e) = self.map.get_mut(&k) else {
                continue;
            };
            if e.queued != mark {
                continue;
            }
            let busy = e.limited_until.is_some_and(|u| u > now);
            if skips < MAX_SKIPS && (e.touched != mark || busy) {
                skips += 1;
                self.tick += 1;
                e.queued = self.tick;
                e.touched = self.tick;
                self.order.push_back((k, self.tick));
            } else {
                self.map.remove(&k);
            }
        }
    }

    /// Whether `source` is in a cool-down at `now`.
    pub fn is_limited(&self, source: IpAddr, now: Instant) -> bool {
        self.map
            .get(&self.key(source))
            .and_then(|e| e.limited_until)
            .is_some_and(|u| now < u)
    }

    /// Sources tracked (never more than the capacity).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A [`RatePolicy`] behind a mutex, shareable between threads and tasks.
pub struct RateLimiter {
    inner: Mutex<RatePolicy>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.lock() {
            Ok(p) => p.fmt(f),
            Err(_) => f.write_str("RateLimiter(poisoned)"),
        }
    }
}

impl RateLimiter {
    /// A limiter with `config`.
    pub fn new(config: RateConfig) -> Self {
        RateLimiter {
            inner: Mutex::new(RatePolicy::new(config)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut RatePolicy) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// See [`RatePolicy::request`].
    pub fn request(&self, source: IpAddr, now: Instant) -> RateDecision {
        self.with(|p| p.request(source, now))
    }

    /// See [`RatePolicy::set_config`].
    pub fn set_config(&self, config: RateConfig) {
        self.with(|p| p.set_config(config))
    }

    /// See [`RatePolicy::set_exempt`].
    pub fn set_exempt(&self, exempt: Vec<IpPrefix>) {
        self.with(|p| p.set_exempt(exempt))
    }

    /// See [`RatePolicy::is_exempt`].
    pub fn is_exempt(&self, source: IpAddr) -> bool {
        self.with(|p| p.is_exempt(source))
    }

    /// See [`RatePolicy::is_limited`].
    pub fn is_limited(&self, source: IpAddr, now: Instant) -> bool {
        self.with(|p| p.is_limited(source, now))
    }

    /// See [`RatePolicy::len`].
    pub fn len(&self) -> usize {
        self.with(|p| p.len())
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// User-Agent substrings of well-known SIP scanners (matched
/// case-insensitively): sipvicious and its `friendly-scanner` disguise,
/// `sipcli`, `sip-scan`, `iWar`, `sundayddr`, `SIVuS`, `VaxSIPUserAgent`,
/// `siparmyknife`, `friendly-request`, `pplsip`.
pub const DEFAULT_SCANNERS: &[&str] = &[
    "friendly-scanner",
    "friendly-request",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "iwar",
    "sundayddr",
    "sivus",
    "vaxsipuseragent",
    "siparmyknife",
    "pplsip",
];

/// Only this many bytes of a User-Agent are looked at.
pub const MAX_USER_AGENT: usize = 256;

/// Tells scanner User-Agents: a case-insensitive substring list.
///
/// A request whose User-Agent contains one of the patterns is a scanner's:
/// drop it silently (it is the proxy's `drop_scanners`, off by default: a
/// real attacker changes its User-Agent, and a false match costs a user his
/// phone). Only the first [`MAX_USER_AGENT`] bytes are searched.
///
/// ```
/// use siplink_auth::rate::ScannerFilter;
/// let f = ScannerFilter::default();
/// assert!(f.matches(b"Friendly-Scanner"));
/// assert!(f.matches(b"sipvicious 0.3.4"));
/// assert!(!f.matches(b"Linphone/5.2 (belle-sip/5.2)"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerFilter {
    /// Lower-case, non-empty, at most [`MAX_USER_AGENT`] bytes each.
    patterns: Vec<Vec<u8>>,
}

impl Default for ScannerFilter {
    fn default() -> Self {
        ScannerFilter::new(DEFAULT_SCANNERS.iter().copied())
    }
}

impl ScannerFilter {
    /// A filter for `patterns` (empty ones are ignored, long ones cut).
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        ScannerFilter {
            patterns: patterns
                .into_iter()
                .map(|p| {
                    let b = p.as_bytes();
                    b[..b.len().min(MAX_USER_AGENT)].to_ascii_lowercase()
                })
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// Whether `user_agent` contains one of the patterns (ASCII
    /// case-insensitively).
    pub fn matches(&self, user_agent: &[u8]) -> bool {
        let ua = &user_agent[..user_agent.len().min(MAX_USER_AGENT)];
        self.patterns.iter().any(|p| {
            ua.windows(p.len())
                .any(|w| w.iter().zip(p).all(|(a, b)| a.to_ascii_lowercase() == *b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xc000_0200 + n))
    }

    fn small() -> RateConfig {
        RateConfig {
            requests_per_second: 2,
            burst: 4,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(35),
            forget_after: Duration::from_secs(100),
            ..RateConfig::default()
        }
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let mut p = RatePolicy::new(small());
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(p.request(ip(1), t0), RateDecision::Allow);
        }
        // Half a second brings one request back (2 per second).
        let t = t0 + Duration::from_millis(500);
        assert_eq!(p.request(ip(1), t), RateDecision::Allow);
        assert!(matches!(
            p.request(ip(1), t),
            RateDecision::Refuse { started: true, .. }
        ));
    }

    #[test]
    fn cooldown_doubles_is_capped_and_forgotten() {
        let mut p = RatePolicy::new(small());
        let mut now = Instant::now();
        for expected in [10, 20, 35, 35] {
            let mut last = RateDecision::Allow;
            while last == RateDecision::Allow {
                last = p.request(ip(1), now);
            }
            assert_eq!(
                last,
                RateDecision::Refuse {
                    retry_after: expected,
                    started: true
                }
            );
            assert!(p.is_limited(ip(1), now));
            // One refusal per second while limited, the rest dropped.
            assert_eq!(p.request(ip(1), now), RateDecision::Drop);
            let later = now + Duration::from_secs(1);
            assert_eq!(
                p.request(ip(1), later),
                RateDecision::Refuse {
                    retry_after: expected - 1,
                    started: false
                }
            );
            now += Duration::from_secs(u64::from(expected));
            assert!(!p.is_limited(ip(1), now));
        }
        // 100 s without a cool-down: back to the first length.
        now += Duration::from_secs(100);
        let mut last = RateDecision::Allow;
        while last == RateDecision::Allow {
            last = p.request(ip(1), now);
        }
        assert_eq!(
            last,
            RateDecision::Refuse {
                retry_after: 10,
                started: true
            }
        );
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64() {
        let mut p = RatePolicy::new(small());
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(p.request(a, now), RateDecision::Allow);
            assert_eq!(p.request(b, now), RateDecision::Allow);
        }
        assert!(matches!(p.request(a, now), RateDecision::Refuse { .. }));
        assert_eq!(p.request(c, now), RateDecision::Allow);
        // IPv4-mapped counts as IPv4.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        for _ in 0..4 {
            assert_eq!(p.request(ip(1), now), RateDecision::Allow);
        }
        assert!(matches!(
            p.request(mapped, now),
            RateDecision::Refuse { .. }
        ));
    }

    #[test]
    fn exempt_sources_are_never_limited() {
        let mut cfg = small();
        cfg.exempt = vec!["192.0.2.0/28".parse().unwrap()];
        let mut p = RatePolicy::new(cfg);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(p.request(ip(3), now), RateDecision::Allow);
        }
        assert!(p.is_empty());
        assert!(matches!(
            (0..5).map(|_| p.request(ip(20), now)).last(),
            Some(RateDecision::Refuse { .. })
        ));
    }

    #[test]
    fn memory_is_bounded_and_a_limited_flooder_survives_some_churn() {
        let mut cfg = small();
        cfg.capacity = 64;
        let mut p = RatePolicy::new(cfg);
        let now = Instant::now();
        for _ in 0..5 {
            p.request(ip(1), now);
        }
        assert!(p.is_limited(ip(1), now));
        for n in 0..10_000 {
            p.request(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), now);
            assert!(p.len() <= 64);
            assert!(p.order.len() <= 64 + MAX_SKIPS + 1);
        }
        // The limited source was passed over each time it came first...
        assert!(p.is_limited(ip(1), now));
        // ...while a source seen once early went long ago.
        assert!(
            !p.map
                .contains_key(&p.key(IpAddr::V4(Ipv4Addr::from(0x0a00_0000))))
        );
        // Once its cool-down is over it may go too.
        let later = now + Duration::from_secs(11);
        for n in 0..200 {
            p.request(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n)), later);
        }
        assert!(!p.map.contains_key(&p.key(ip(1))));
    }

    #[test]
    fn scanner_filter() {
        let f = ScannerFilter::default();
        for ua in [
            "friendly-scanner",
            "FRIENDLY-SCANNER",
            "sipcli/v1.8",
            "SIPVicious 0.3.4",
            "VaxSIPUserAgent/3.1",
            "x iWar y",
        ] {
            assert!(f.matches(ua.as_bytes()), "{ua}");
        }
        for ua in [
            "",
            "Linphone/5.2",
            "Yealink SIP-T46S",
            "baresip",
            "friendly",
            "SIPp",
        ] {
            assert!(!f.matches(ua.as_bytes()), "{ua}");
        }
        // Only the first MAX_USER_AGENT bytes are looked at.
        let mut long = vec![b'a'; MAX_USER_AGENT];
        long.extend_from_slice(b"sipvicious");
        assert!(!f.matches(&long));
        assert!(!ScannerFilter::new([""]).matches(b"anything"));
        assert!(ScannerFilter::new(["Evil"]).matches(b"an evil agent"));
    }
}
