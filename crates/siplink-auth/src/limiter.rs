//! A failed-attempt limiter for registrars and proxies.
//!
//! After [`LimiterConfig::max_failures`] failures within
//! [`LimiterConfig::window`] from one source address (IPv6 grouped by
//! [`LimiterConfig::ipv6_prefix`]) or for one user name, that source or user is
//! refused for [`LimiterConfig::cooldown`]. Memory is bounded: each table holds
//! at most [`LimiterConfig::capacity`] entries (user names are kept as 64-bit
//! keyed hashes); when full, the oldest entry goes first, entries currently in
//! cool-down being skipped a few times so that a flood of new keys does not
//! free a blocked attacker.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use std::time::{Duration, SystemTime};
//! use siplink_auth::{FailureLimiter, LimiterConfig};
//!
//! let limiter = FailureLimiter::new(LimiterConfig { max_failures: 3, ..LimiterConfig::default() });
//! let ip = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
//! for _ in 0..3 {
//!     assert!(limiter.check(ip, Some("alice"), now).is_ok());
//!     limiter.record_failure(ip, Some("alice"), now);
//! }
//! assert!(limiter.check(ip, None, now).is_err());          // the source is blocked
//! assert!(limiter.check(None, Some("alice"), now).is_err()); // and so is the user
//! ```

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::server::{Outcome, Refusal};
use crate::unix_ms;

/// Limiter policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures that trigger a cool-down (default 5).
    pub max_failures: u32,
    /// Window in which they are counted, from the first one (default 60 s).
    pub window: Duration,
    /// How long a source or user is then refused (default 5 minutes).
    pub cooldown: Duration,
    /// Most entries per table (sources, users); default 65 536.
    pub capacity: usize,
    /// IPv6 sources are grouped by this prefix length (default 64).
    pub ipv6_prefix: u8,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            max_failures: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
            capacity: 65_536,
            ipv6_prefix: 64,
        }
    }
}

/// A refusal by the limiter: answer 403 (or 503 with Retry-After) without
/// verifying anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// Whether the source address is blocked (otherwise the user is).
    pub source: bool,
    /// When the cool-down ends.
    pub until: SystemTime,
}

#[derive(Clone, Copy)]
struct Entry {
    first: u64,
    failures: u32,
    blocked_until: u64,
}

struct Table<K> {
    map: HashMap<K, Entry>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn blocked(&self, k: &K, now: u64) -> Option<u64> {
        self.map
            .get(k)
            .filter(|e| e.blocked_until > now)
            .map(|e| e.blocked_until)
    }

    fn fail(&mut self, k: K, now: u64, cfg: &LimiterConfig) {
        let window = ms(cfg.window);
        if let Some(e) = self.map.get_mut(&k) {
            if e.blocked_until > now {
                return;
            }
            if now.saturating_sub(e.first) > window || e.blocked_until != 0 {
                *e = Entry {
                    first: now,
                    failures: 0,
                    blocked_until: 0,
                };
            }
            e.failures += 1;
            if e.failures >= cfg.max_failures {
                e.blocked_until = now.saturating_add(ms(cfg.cooldown)).max(now + 1);
            }
            return;
        }
        let cap = cfg.capacity.max(1);
        let mut skipped = 0;
        while self.map.len() >= cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            let keep = skipped < 8 && self.map.get(&old).is_some_and(|e| e.blocked_until > now);
            if keep {
                skipped += 1;
                self.order.push_back(old);
            } else {
                self.map.remove(&old);
            }
        }
        let mut e = Entry {
            first: now,
            failures: 1,
            blocked_until: 0,
        };
        if cfg.max_failures <= 1 {
            e.blocked_until = now.saturating_add(ms(cfg.cooldown)).max(now + 1);
        }
        self.map.insert(k, e);
        self.order.push_back(k);
    }

    fn clear(&mut self, k: &K) {
        // The key stays in `order`; it is skipped (absent from the map) when popped.
        self.map.remove(k);
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Inner {
    sources: Table<(bool, u128)>,
    users: Table<u64>,
}

/// Bounded failed-attempt limiter; shareable between threads.
pub struct FailureLimiter {
    config: LimiterConfig,
    hasher: RandomState,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FailureLimiter {
    /// A limiter with `config`.
    pub fn new(config: LimiterConfig) -> Self {
        FailureLimiter {
            config,
            hasher: RandomState::new(),
            inner: Mutex::new(Inner {
                sources: Table::new(),
                users: Table::new(),
            }),
        }
    }

    fn source_key(&self, ip: IpAddr) -> (bool, u128) {
        match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => (false, u128::from(u32::from(v4))),
                None => {
                    let p = u32::from(self.config.ipv6_prefix.min(128));
                    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                    (true, u128::from(a) & mask)
                }
            },
        }
    }

    fn user_key(&self, user: &str) -> u64 {
        self.hasher.hash_one(user)
    }

    /// Whether a request from `source` for `user` may be verified at `now`.
    pub fn check(
        &self,
        source: Option<IpAddr>,
        user: Option<&str>,
        now: SystemTime,
    ) -> Result<(), Blocked> {
        let t = unix_ms(now);
        let Ok(inner) = self.inner.lock() else {
            return Ok(());
        };
        let at = |until: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(until);
        if let Some(until) = source.and_then(|ip| inner.sources.blocked(&self.source_key(ip), t)) {
            return Err(Blocked {
                source: true,
                until: at(until),
            });
        }
        if let Some(until) = user.and_then(|u| inner.users.blocked(&self.user_key(u), t)) {
            return Err(Blocked {
                source: false,
                until: at(until),
            });
        }
        Ok(())
    }

    /// Counts a failed attempt (wrong password, unknown user...).
    pub fn record_failure(&self, source: Option<IpAddr>, user: Option<&str>, now: SystemTime) {
        let t = unix_ms(now);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(ip) = source {
            let k = self.source_key(ip);
            inner.sources.fail(k, t, &self.config);
        }
        if let Some(u) = user {
            let k = self.user_key(u);
            inner.users.fail(k, t, &self.config);
        }
    }

    /// Counts a success: clears the user's failures (not the source's, so that
    /// one valid account does not reset a source guessing others' passwords).
    pub fn record_success(&self, user: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            let k = self.user_key(user);
            inner.users.clear(&k);
        }
    }

    /// Records a [`DigestServer`](crate::DigestServer) outcome: `Forbidden`
    /// (wrong credentials, unknown user, wrong realm) is a failure, `Accept` a
    /// success; challenges and bad requests are neither.
    pub fn record(
        &self,
        outcome: &Outcome,
        source: Option<IpAddr>,
        user: Option<&str>,
        now: SystemTime,
    ) {
        match outcome {
            Outcome::Accept(a) => self.record_success(&a.username),
            Outcome::Forbidden(Refusal::BadStoredSecret) => {}
            Outcome::Forbidden(_) => self.record_failure(source, user, now),
            _ => {}
        }
    }

    /// Entries held (sources, users): never more than the capacity each.
    pub fn len(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|i| (i.sources.map.len(), i.users.map.len()))
            .unwrap_or_default()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    #[test]
    fn window_and_cooldown() {
        let l = FailureLimiter::new(LimiterConfig {
            max_failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
            ..LimiterConfig::default()
        });
        let ip = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        l.record_failure(ip, None, t(0));
        l.record_failure(ip, None, t(5));
        // The window restarts after 10 s.
        l.record_failure(ip, None, t(20));
        assert!(l.check(ip, None, t(20)).is_ok());
        l.record_failure(ip, None, t(21));
        l.record_failure(ip, None, t(22));
        let b = l.check(ip, None, t(22)).unwrap_err();
        assert!(b.source);
        assert_eq!(b.until, t(52));
        assert!(l.check(ip, None, t(51)).is_err());
        assert!(l.check(ip, None, t(52)).is_ok());
        // After the cool-down, counting starts over.
        l.record_failure(ip, None, t(53));
        assert!(l.check(ip, None, t(53)).is_ok());
    }

    #[test]
    fn ipv6_grouped_by_prefix_and_users_cleared_by_success() {
        let l = FailureLimiter::new(LimiterConfig {
            max_failures: 2,
            ..LimiterConfig::default()
        });
        let a: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap().into();
        let c: IpAddr = "2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap().into();
        l.record_failure(Some(a), Some("bob"), t(0));
        assert!(l.check(None, Some("bob"), t(0)).is_ok());
        l.record_success("bob");
        l.record_failure(Some(b), Some("bob"), t(1));
        assert!(l.check(Some(a), None, t(1)).is_err());
        assert!(l.check(Some(c), None, t(1)).is_ok());
        assert!(l.check(None, Some("bob"), t(1)).is_ok());
    }

    #[test]
    fn memory_is_bounded_and_blocked_entries_survive_floods() {
        let l = FailureLimiter::new(LimiterConfig {
            max_failures: 1,
            capacity: 64,
            ..LimiterConfig::default()
        });
        let attacker = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
        l.record_failure(attacker, Some("victim"), t(0));
        for k in 0..10_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k));
            l.record_failure(Some(ip), Some(&format!("user{k}")), t(1));
            let (s, u) = l.len();
            assert!(s <= 64 && u <= 64);
        }
        // Everything else was blocked too (max_failures 1), so the oldest blocked
        // entries do eventually go; with a realistic threshold they are kept.
        let l = FailureLimiter::new(LimiterConfig {
            max_failures: 2,
            capacity: 64,
            ..LimiterConfig::default()
        });
        l.record_failure(attacker, None, t(0));
        l.record_failure(attacker, None, t(0));
        for k in 0..10_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k));
            l.record_failure(Some(ip), None, t(1));
        }
        assert!(l.check(attacker, None, t(2)).is_err());
        assert!(l.len().0 <= 64);
    }
}
