//! The failed-attempt policy for registrars and proxies: nobody can lock
//! anybody else out.
//!
//! [`FailurePolicy`] is pure: every method takes the facts of one request and
//! `now`, and the answer depends on nothing else (no clock, no randomness, no
//! lock). [`FailureLimiter`] wraps it in a mutex for drivers that share one
//! policy between tasks.
//!
//! # The rules
//!
//! 1. **Only provable failures count.** A failure is counted only when the
//!    credentials answered a nonce that this server issued *to that same
//!    source address* (see [`DigestServer::issued_to`](crate::DigestServer::issued_to)).
//!    A spoofed UDP request from a PBX's or an office's address cannot carry
//!    such a nonce, so it cannot spend their budget.
//! 2. **Counted per source and per (source, user).** A source is an IPv4
//!    address or an IPv6 /64 ([`LimiterConfig::ipv6_prefix`]). After
//!    [`LimiterConfig::max_failures`] failures for one user from one source
//!    within [`LimiterConfig::window`], that source may not try that user any
//!    more; after [`LimiterConfig::source_max_failures`] failures for any users,
//!    the source may not try anyone.
//! 3. **Growing back-off.** The first block lasts [`LimiterConfig::cooldown`];
//!    each further block of the same key doubles it, up to
//!    [`LimiterConfig::max_cooldown`]. A key forgets its past blocks after
//!    [`LimiterConfig::forget_after`] without a failure.
//! 4. **A user is never blocked as such.** Failures are also counted per user
//!    from all sources; past [`LimiterConfig::user_max_failures`] (at least 20×
//!    the per-source cap, whatever is configured) the user is *under attack*:
//!    each source then gets a single wrong guess for that user before its
//!    (source, user) pair is blocked. The right password from a source that
//!    has not failed is still accepted.
//! 5. **Exempt sources** ([`LimiterConfig::exempt`]: trunk PBXs, inbound PBXs,
//!    an office network) are never counted nor blocked.
//! 6. **Bounded memory.** Each of the three tables (sources, pairs, users)
//!    holds at most [`LimiterConfig::capacity`] entries; when one is full the
//!    oldest entry goes first (entries currently blocked are passed over a few
//!    times, so a flood of new keys does not free a blocked attacker). User
//!    names are kept as 64-bit keyed hashes.
//!
//! A success clears that (source, user) pair only: one valid account does
//! not reset a source guessing others' passwords.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, SystemTime};
//! use siplink_auth::{FailurePolicy, LimiterConfig, Scope};
//!
//! let mut policy = FailurePolicy::new(LimiterConfig::default(), 7);
//! let attacker: IpAddr = "192.0.2.7".parse().unwrap();
//! let office: IpAddr = "198.51.100.20".parse().unwrap();
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
//! for _ in 0..5 {
//!     assert!(policy.check(attacker, Some("alice"), now).is_ok());
//!     // `true`: the wrong answer used a nonce issued to `attacker`.
//!     policy.record_failure(attacker, Some("alice"), true, now);
//! }
//! let blocked = policy.check(attacker, Some("alice"), now).unwrap_err();
//! assert_eq!(blocked.scope, Scope::SourceUser);
//! // Alice herself, from her office, is not blocked.
//! assert!(policy.check(office, Some("alice"), now).is_ok());
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::error::AuthError;
use crate::server::{Outcome, Refusal};
use crate::unix_ms;

/// The per-user cap is at least this many times the per-source one.
pub const USER_CAP_FACTOR: u32 = 20;

/// An address prefix (`192.0.2.0/24`, `2001:db8::/48`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// The prefix of `len` bits of `addr` (clamped to the address's width).
    pub fn new(addr: IpAddr, len: u8) -> Self {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        IpPrefix {
            addr,
            len: len.min(max),
        }
    }

    /// One address.
    pub fn host(addr: IpAddr) -> Self {
        Self::new(addr, 128)
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses match IPv4 prefixes).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, width_a) = canonical(self.addr);
        let (b, width_b) = canonical(ip);
        if width_a != width_b {
            return false;
        }
        let len = u32::from(self.len.min(width_a));
        if len == 0 {
            return true;
        }
        let shift = u32::from(width_a) - len;
        (a >> shift) == (b >> shift)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AuthError::BadPrefix(s.chars().take(64).collect());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(l) if l <= max => l,
                _ => return Err(bad()),
            },
        };
        Ok(IpPrefix { addr, len })
    }
}

/// The address as a number and its width (IPv4-mapped IPv6 as IPv4).
fn canonical(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), 32),
            None => (u128::from(a), 128),
        },
    }
}

/// Limiter policy. The defaults suit a registrar or proxy facing the
/// Internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures for one user from one source that block that pair (default 5).
    pub max_failures: u32,
    /// Failures from one source, whatever the users, that block the source
    /// (default 10).
    pub source_max_failures: u32,
    /// Failures for one user from all sources that put the user *under
    /// attack* (one wrong guess per source). Default 200; never less than
    /// [`USER_CAP_FACTOR`] × `source_max_failures`.
    pub user_max_failures: u32,
    /// Window in which failures are counted, from the first one (default 60 s).
    pub window: Duration,
    /// The first block's length (default 60 s); it doubles with each further
    /// block of the same key.
    pub cooldown: Duration,
    /// The longest block (default 1 hour).
    pub max_cooldown: Duration,
    /// A key's past blocks are forgotten after this long without a failure
    /// (default 1 hour).
    pub forget_after: Duration,
    /// Most entries per table (sources, pairs, users); default 16 384.
    pub capacity: usize,
    /// IPv6 sources are grouped by this prefix length (default 64).
    pub ipv6_prefix: u8,
    /// Sources never counted nor blocked (trunk and inbound PBXs...).
    pub exempt: Vec<IpPrefix>,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            max_failures: 5,
            source_max_failures: 10,
            user_max_failures: 200,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(3600),
            forget_after: Duration::from_secs(3600),
            capacity: 16_384,
            ipv6_prefix: 64,
            exempt: Vec::new(),
        }
    }
}

impl LimiterConfig {
    /// The per-user cap in force: `user_max_failures`, raised to at least
    /// [`USER_CAP_FACTOR`] × `source_max_failures`.
    pub fn effective_user_cap(&self) -> u32 {
        self.user_max_failures
            .max(self.source_max_failures.saturating_mul(USER_CAP_FACTOR))
            .max(1)
    }
}

/// What a block applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every request from the source (IPv4 address or IPv6 prefix).
    Source,
    /// The source's requests for one user.
    SourceUser,
}

/// A refusal by the limiter: answer 403 without verifying anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// What is blocked.
    pub scope: Scope,
    /// When the block ends.
    pub until: SystemTime,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Not counted: the nonce was not issued to this source (or none was
    /// used), or the source is exempt.
    Ignored,
    /// Counted; nothing is blocked yet.
    Counted,
    /// Counted, and it started this block.
    Blocked(Blocked),
}

#[derive(Clone, Copy)]
struct Entry {
    /// Start of the current window (ms).
    first: u64,
    failures: u32,
    /// Blocks so far (for the back-off).
    strikes: u32,
    blocked_until: u64,
    /// Last failure (ms).
    last: u64,
    /// Insertion number, to recognise this entry in `order`.
    seq: u64,
}

struct Table<K> {
    map: HashMap<K, Entry>,
    order: VecDeque<(K, u64)>,
    seq: u64,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
        }
    }

    fn blocked(&self, k: &K, now: u64) -> Option<u64> {
        self.map
            .get(k)
            .filter(|e| e.blocked_until > now)
            .map(|e| e.blocked_until)
    }

    /// Counts a failure; returns the end of the block it started, if any.
    fn fail(&mut self, k: K, now: u64, threshold: u32, cfg: &LimiterConfig) -> Option<u64> {
        let threshold = threshold.max(1);
        if !self.map.contains_key(&k) {
            self.make_room(now, cfg.capacity.max(1));
            self.seq += 1;
            self.map.insert(
                k,
                Entry {
                    first: now,
                    failures: 0,
                    strikes: 0,
                    blocked_until: 0,
                    last: now,
                    seq: self.seq,
                },
            );
            self.order.push_back((k, self.seq));
        }
        let e = self.map.get_mut(&k)?;
        if e.blocked_until > now {
            return None;
        }
        if now.saturating_sub(e.last.max(e.blocked_until)) > ms(cfg.forget_after) {
            e.strikes = 0;
        }
        if now.saturating_sub(e.first) > ms(cfg.window) || e.failures == 0 {
            e.first = now;
            e.failures = 0;
        }
        e.failures += 1;
        e.last = now;
        if e.failures < threshold {
            return None;
        }
        e.strikes = e.strikes.saturating_add(1);
        let factor = 1u64 << (e.strikes - 1).min(40);
        let length = ms(cfg.cooldown)
            .saturating_mul(factor)
            .min(ms(cfg.max_cooldown).max(1))
            .max(1);
        e.blocked_until = now.saturating_add(length);
        e.failures = 0;
        Some(e.blocked_until)
    }

    fn make_room(&mut self, now: u64, cap: usize) {
        let mut skipped = 0;
        while self.map.len() >= cap {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            let Some(e) = self.map.get(&old).filter(|e| e.seq == seq) else {
                continue;
            };
            if skipped < 8 && e.blocked_until > now {
                skipped += 1;
                self.order.push_back((old, seq));
            } else {
                self.map.remove(&old);
            }
        }
    }

    fn clear(&mut self, k: &K) {
        self.map.remove(k);
        // Cleared keys leave stale marks in `order`; drop them once they
        // outnumber the live entries.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn at(t: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(t)
}

type SourceKey = (bool, u128);

/// The failed-attempt policy as a pure state machine; see the
/// [module documentation](self) for the rules.
pub struct FailurePolicy {
    config: LimiterConfig,
    key: u64,
    sources: Table<SourceKey>,
    pairs: Table<(SourceKey, u64)>,
    users: Table<u64>,
}

impl fmt::Debug for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailurePolicy")
            .field("config", &self.config)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl FailurePolicy {
    /// A policy with `config`; `hash_key` keys the hash that user names are
    /// kept as (pick it at random, so nobody can aim collisions at a user).
    pub fn new(config: LimiterConfig, hash_key: u64) -> Self {
        FailurePolicy {
            config,
            key: hash_key,
            sources: Table::new(),
            pairs: Table::new(),
            users: Table::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Replaces the exempt sources (a configuration reload).
    pub fn set_exempt(&mut self, exempt: Vec<IpPrefix>) {
        self.config.exempt = exempt;
    }

    /// Whether `source` is exempt.
    pub fn is_exempt(&self, source: IpAddr) -> bool {
        self.config.exempt.iter().any(|p| p.contains(source))
    }

    fn source_key(&self, ip: IpAddr) -> SourceKey {
        match canonical(ip) {
            (a, 32) => (false, a),
            (a, _) => {
                let p = u32::from(self.config.ipv6_prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                (true, a & mask)
            }
        }
    }

    fn user_key(&self, user: &str) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.key.hash(&mut h);
        user.hash(&mut h);
        h.finish()
    }

    /// Whether a request from `source` (for `user`, if it names one) may be
    /// verified at `now`. A refusal is answered 403 without verifying.
    pub fn check(
        &self,
        source: IpAddr,
        user: Option<&str>,
        now: SystemTime,
    ) -> Result<(), Blocked> {
        if self.is_exempt(source) {
            return Ok(());
        }
        let t = unix_ms(now);
        let s = self.source_key(source);
        if let Some(until) = self.sources.blocked(&s, t) {
            return Err(Blocked {
                scope: Scope::Source,
                until: at(until),
            });
        }
        if let Some(u) = user
            && let Some(until) = self.pairs.blocked(&(s, self.user_key(u)), t)
        {
            return Err(Blocked {
                scope: Scope::SourceUser,
                until: at(until),
            });
        }
        Ok(())
    }

    /// Whether `user` is under attack (past the per-user cap) at `now`.
    pub fn under_attack(&self, user: &str, now: SystemTime) -> bool {
        self.users
            .blocked(&self.user_key(user), unix_ms(now))
            .is_some()
    }

    /// Counts a failed attempt (wrong password, unknown user, wrong realm)
    /// from `source` for `user`. `nonce_bound`: the credentials answered a
    /// nonce issued to `source` (otherwise nothing is counted).
    pub fn record_failure(
        &mut self,
        source: IpAddr,
        user: Option<&str>,
        nonce_bound: bool,
        now: SystemTime,
    ) -> Counted {
        if !nonce_bound || self.is_exempt(source) {
            return Counted::Ignored;
        }
        let t = unix_ms(now);
        let s = self.source_key(source);
        let cfg = &self.config;
        let mut result = Counted::Counted;
        if let Some(until) = self.sources.fail(s, t, cfg.source_max_failures, cfg) {
            result = Counted::Blocked(Blocked {
                scope: Scope::Source,
                until: at(until),
            });
        }
        if let Some(u) = user {
            let uk = self.user_key(u);
            let attacked_before = self.users.blocked(&uk, t).is_some();
            self.users.fail(uk, t, cfg.effective_user_cap(), cfg);
            let threshold = if attacked_before { 1 } else { cfg.max_failures };
            if let Some(until) = self.pairs.fail((s, uk), t, threshold, cfg)
                && result == Counted::Counted
            {
                result = Counted::Blocked(Blocked {
                    scope: Scope::SourceUser,
                    until: at(until),
                });
            }
        }
        result
    }

    /// Counts a success: clears the (source, user) pair's failures.
    pub fn record_success(&mut self, source: IpAddr, user: &str) {
        let k = (self.source_key(source), self.user_key(user));
        self.pairs.clear(&k);
    }

    /// Records a [`DigestServer`](crate::DigestServer) outcome: `Forbidden`
    /// (wrong credentials, unknown user, wrong realm) is a failure, `Accept` a
    /// success; challenges, stale nonces and bad requests are neither.
    /// `nonce_bound` as for [`record_failure`](Self::record_failure).
    pub fn record(
        &mut self,
        outcome: &Outcome,
        source: IpAddr,
        user: Option<&str>,
        nonce_bound: bool,
        now: SystemTime,
    ) -> Counted {
        match outcome {
            Outcome::Accept(a) => {
                self.record_success(source, &a.username);
                Counted::Ignored
            }
            Outcome::Forbidden(Refusal::BadStoredSecret) => Counted::Ignored,
            Outcome::Forbidden(_) => self.record_failure(source, user, nonce_bound, now),
            _ => Counted::Ignored,
        }
    }

    /// Entries held (sources, pairs, users): never more than the capacity each.
    pub fn len(&self) -> (usize, usize, usize) {
        (
            self.sources.map.len(),
            self.pairs.map.len(),
            self.users.map.len(),
        )
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }
}

/// A [`FailurePolicy`] behind a mutex, shareable between threads and tasks.
pub struct FailureLimiter {
    inner: Mutex<FailurePolicy>,
}

impl fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.lock() {
            Ok(p) => p.fmt(f),
            Err(_) => f.write_str("FailureLimiter(poisoned)"),
        }
    }
}

impl FailureLimiter {
    /// A limiter with `config` and a random hash key.
    pub fn new(config: LimiterConfig) -> Self {
        Self::from_policy(FailurePolicy::new(config, rand::random()))
    }

    /// Wraps `policy`.
    pub fn from_policy(policy: FailurePolicy) -> Self {
        FailureLimiter {
            inner: Mutex::new(policy),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut FailurePolicy) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// See [`FailurePolicy::check`].
    pub fn check(
        &self,
        source: IpAddr,
        user: Option<&str>,
        now: SystemTime,
    ) -> Result<(), Blocked> {
        self.with(|p| p.check(source, user, now))
    }

    /// See [`FailurePolicy::record_failure`].
    pub fn record_failure(
        &self,
        source: IpAddr,
        user: Option<&str>,
        nonce_bound: bool,
        now: SystemTime,
    ) -> Counted {
        self.with(|p| p.record_failure(source, user, nonce_bound, now))
    }

    /// See [`FailurePolicy::record_success`].
    pub fn record_success(&self, source: IpAddr, user: &str) {
        self.with(|p| p.record_success(source, user))
    }

    /// See [`FailurePolicy::record`].
    pub fn record(
        &self,
        outcome: &Outcome,
        source: IpAddr,
        user: Option<&str>,
        nonce_bound: bool,
        now: SystemTime,
    ) -> Counted {
        self.with(|p| p.record(outcome, source, user, nonce_bound, now))
    }

    /// See [`FailurePolicy::set_exempt`].
    pub fn set_exempt(&self, exempt: Vec<IpPrefix>) {
        self.with(|p| p.set_exempt(exempt))
    }

    /// See [`FailurePolicy::is_exempt`].
    pub fn is_exempt(&self, source: IpAddr) -> bool {
        self.with(|p| p.is_exempt(source))
    }

    /// See [`FailurePolicy::len`].
    pub fn len(&self) -> (usize, usize, usize) {
        self.with(|p| p.len())
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }
}

/// The one log line for a counted failure, for fail2ban
/// (`docs/fail2ban/siplink.conf`):
/// `auth failure from 192.0.2.1 user=alice method=REGISTER`.
///
/// The user name is printed with every byte outside `[A-Za-z0-9._+@-]`
/// percent-escaped and cut at 64 bytes, so a user name cannot forge another
/// address into the line; the method likewise. Passwords and `Authorization`
/// values are never part of it.
///
/// ```
/// use siplink_auth::limiter::FailureLine;
/// let line = FailureLine { source: "192.0.2.1".parse().unwrap(), user: Some("al ice"), method: "REGISTER" };
/// assert_eq!(line.to_string(), "auth failure from 192.0.2.1 user=al%20ice method=REGISTER");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FailureLine<'a> {
    /// The request's source address.
    pub source: IpAddr,
    /// The user name claimed, if any.
    pub user: Option<&'a str>,
    /// The request method.
    pub method: &'a str,
}

fn write_safe(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for &b in s.as_bytes().iter().take(64) {
        if b.is_ascii_alphanumeric() || b"._+@-".contains(&b) {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

impl fmt::Display for FailureLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = match self.source {
            IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(self.source),
            v4 => v4,
        };
        write!(f, "auth failure from {ip} user=")?;
        match self.user {
            Some(u) if !u.is_empty() => write_safe(f, u)?,
            _ => f.write_str("-")?,
        }
        f.write_str(" method=")?;
        if self.method.is_empty() {
            f.write_str("-")
        } else {
            write_safe(f, self.method)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xc000_0200 + n))
    }

    #[test]
    fn stale_marks_in_order_are_compacted() {
        let mut p = FailurePolicy::new(LimiterConfig::default(), 1);
        for k in 0..10_000 {
            p.record_failure(ip(1), Some("alice"), true, t(k));
            p.record_success(ip(1), "alice");
        }
        assert!(p.pairs.order.len() <= 2 * p.pairs.map.len() + 65);
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let cfg = LimiterConfig {
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(35),
            source_max_failures: 1000,
            ..LimiterConfig::default()
        };
        let mut p = FailurePolicy::new(cfg, 1);
        let mut now = 0;
        for expected in [10, 20, 35, 35] {
            let mut last = Counted::Counted;
            for _ in 0..5 {
                last = p.record_failure(ip(1), Some("a"), true, t(now));
            }
            let Counted::Blocked(b) = last else {
                panic!("not blocked: {last:?}")
            };
            assert_eq!(b.until, t(now + expected));
            now += expected;
        }
    }
}
