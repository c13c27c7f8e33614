//! The failed-attempt policy: one test per rule, and a property test against
//! a simple model (plain maps keyed by strings, no hashing, no eviction).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use siplink_auth::{Counted, FailurePolicy, IpPrefix, LimiterConfig, Scope};

fn t(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
}

fn s(secs: u64) -> SystemTime {
    t(secs * 1000)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn policy() -> FailurePolicy {
    FailurePolicy::new(LimiterConfig::default(), 42)
}

#[test]
fn five_wrong_passwords_block_that_source_for_that_user_only() {
    let mut p = policy();
    let attacker = ip("203.0.113.9");
    for k in 0..4 {
        assert_eq!(
            p.record_failure(attacker, Some("alice"), true, s(k)),
            Counted::Counted
        );
        assert!(p.check(attacker, Some("alice"), s(k)).is_ok());
    }
    let Counted::Blocked(b) = p.record_failure(attacker, Some("alice"), true, s(4)) else {
        panic!("fifth failure did not block");
    };
    assert_eq!(b.scope, Scope::SourceUser);
    assert_eq!(p.check(attacker, Some("alice"), s(4)), Err(b));
    // The same source may still try another user (it is not blocked as a
    // whole yet), and alice from elsewhere is never blocked.
    assert!(p.check(attacker, Some("bob"), s(4)).is_ok());
    assert!(p.check(ip("198.51.100.1"), Some("alice"), s(4)).is_ok());
    assert!(p.check(attacker, Some("alice"), s(64)).is_ok());
}

#[test]
fn a_source_failing_for_many_users_is_blocked_whole() {
    let mut p = policy();
    let attacker = ip("203.0.113.9");
    for k in 0..9 {
        p.record_failure(attacker, Some(&format!("u{k}")), true, s(1));
    }
    assert!(p.check(attacker, Some("zed"), s(1)).is_ok());
    let Counted::Blocked(b) = p.record_failure(attacker, Some("u9"), true, s(1)) else {
        panic!("tenth failure did not block");
    };
    assert_eq!(b.scope, Scope::Source);
    assert_eq!(
        p.check(attacker, None, s(1)).unwrap_err().scope,
        Scope::Source
    );
    assert!(p.check(ip("203.0.113.10"), None, s(1)).is_ok());
}

#[test]
fn failures_without_a_nonce_issued_to_the_source_are_ignored() {
    let mut p = policy();
    let pbx = ip("192.0.2.10");
    for k in 0..1000 {
        assert_eq!(
            p.record_failure(pbx, Some("pbx"), false, s(k % 50)),
            Counted::Ignored
        );
    }
    assert!(p.check(pbx, Some("pbx"), s(50)).is_ok());
    assert!(p.is_empty());
}

#[test]
fn window_restarts_after_it_ends() {
    let mut p = policy();
    let a = ip("203.0.113.9");
    for k in 0..4 {
        p.record_failure(a, Some("alice"), true, s(k));
    }
    // 61 s after the first failure the window starts over.
    p.record_failure(a, Some("alice"), true, s(61));
    assert!(p.check(a, Some("alice"), s(61)).is_ok());
}

#[test]
fn back_off_grows_then_is_forgotten() {
    // (A high per-source cap, so that only the pair is blocked.)
    let mut p = FailurePolicy::new(
        LimiterConfig {
            source_max_failures: 1000,
            ..LimiterConfig::default()
        },
        1,
    );
    let a = ip("203.0.113.9");
    let mut now = 0;
    for expected in [60, 120, 240, 480] {
        for _ in 0..5 {
            p.record_failure(a, Some("alice"), true, s(now));
        }
        let b = p.check(a, Some("alice"), s(now)).unwrap_err();
        assert_eq!(b.until, s(now + expected));
        now += expected;
    }
    // A quiet hour and a half later, the next block is short again.
    now += 5400;
    for _ in 0..5 {
        p.record_failure(a, Some("alice"), true, s(now));
    }
    assert_eq!(
        p.check(a, Some("alice"), s(now)).unwrap_err().until,
        s(now + 60)
    );
}

#[test]
fn ipv6_sources_are_grouped_by_64() {
    let mut p = policy();
    for k in 0..5u32 {
        let a = ip(&format!("2001:db8:1:2::{:x}", k + 1));
        p.record_failure(a, Some("alice"), true, s(0));
    }
    assert!(
        p.check(ip("2001:db8:1:2:ffff::9"), Some("alice"), s(0))
            .is_err()
    );
    assert!(p.check(ip("2001:db8:1:3::1"), Some("alice"), s(0)).is_ok());
    // IPv4-mapped addresses are the IPv4 source.
    for _ in 0..5 {
        p.record_failure(ip("::ffff:192.0.2.1"), Some("bob"), true, s(0));
    }
    assert!(p.check(ip("192.0.2.1"), Some("bob"), s(0)).is_err());
}

#[test]
fn a_user_under_attack_is_still_reachable_from_clean_sources() {
    let cfg = LimiterConfig::default();
    // The per-user cap is at least 20x the per-source one, whatever is set.
    let low = LimiterConfig {
        user_max_failures: 3,
        ..cfg.clone()
    };
    assert_eq!(low.effective_user_cap(), 200);
    let mut p = FailurePolicy::new(cfg, 1);
    // 200 bots, one guess each.
    for k in 0..200u32 {
        let bot = IpAddr::V4((0x0a00_0000 + k).into());
        p.record_failure(bot, Some("alice"), true, s(1));
    }
    assert!(p.under_attack("alice", s(1)));
    // Each further source gets one wrong guess, then that pair is blocked...
    let late = ip("10.9.9.9");
    assert!(p.check(late, Some("alice"), s(2)).is_ok());
    p.record_failure(late, Some("alice"), true, s(2));
    assert_eq!(
        p.check(late, Some("alice"), s(2)).unwrap_err().scope,
        Scope::SourceUser
    );
    // ...while alice from her own address is not blocked.
    assert!(p.check(ip("198.51.100.7"), Some("alice"), s(2)).is_ok());
    assert!(!p.under_attack("bob", s(2)));
}

#[test]
fn exempt_sources_are_never_counted_nor_blocked() {
    let mut p = FailurePolicy::new(
        LimiterConfig {
            exempt: vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..LimiterConfig::default()
        },
        1,
    );
    for _ in 0..100 {
        assert_eq!(
            p.record_failure(ip("192.0.2.44"), Some("pbx"), true, s(0)),
            Counted::Ignored
        );
        p.record_failure(ip("2001:db8:5::1"), Some("pbx"), true, s(0));
    }
    assert!(p.check(ip("192.0.2.44"), Some("pbx"), s(0)).is_ok());
    assert!(p.is_empty());
    p.set_exempt(Vec::new());
    for _ in 0..5 {
        p.record_failure(ip("192.0.2.44"), Some("pbx"), true, s(0));
    }
    assert!(p.check(ip("192.0.2.44"), Some("pbx"), s(0)).is_err());
}

#[test]
fn a_success_clears_its_pair_only() {
    let mut p = policy();
    let a = ip("203.0.113.9");
    for k in 0..4 {
        p.record_failure(a, Some("alice"), true, s(0));
        p.record_failure(a, Some(&format!("x{k}")), true, s(0));
    }
    p.record_success(a, "alice");
    // Alice's pair starts over; the source still has 8 failures.
    p.record_failure(a, Some("alice"), true, s(0));
    assert!(p.check(a, Some("alice"), s(0)).is_ok());
    p.record_failure(a, Some("y"), true, s(0));
    assert_eq!(p.check(a, None, s(0)).unwrap_err().scope, Scope::Source);
}

#[test]
fn prefixes_parse_and_match() {
    let p: IpPrefix = "10.1.0.0/16".parse().unwrap();
    assert!(p.contains(ip("10.1.200.3")));
    assert!(p.contains(ip("::ffff:10.1.0.1")));
    assert!(!p.contains(ip("10.2.0.1")));
    assert!(!p.contains(ip("::1")));
    let h: IpPrefix = "::1".parse().unwrap();
    assert!(h.contains(ip("::1")) && !h.contains(ip("::2")));
    assert!(
        "0.0.0.0/0"
            .parse::<IpPrefix>()
            .unwrap()
            .contains(ip("8.8.8.8"))
    );
    for bad in ["", "10.0.0.0/33", "::/129", "host", "10.0.0.0/x"] {
        assert!(bad.parse::<IpPrefix>().is_err(), "{bad}");
    }
}

#[test]
fn memory_is_bounded_and_blocked_entries_survive_floods() {
    let mut p = FailurePolicy::new(
        LimiterConfig {
            capacity: 64,
            ..LimiterConfig::default()
        },
        1,
    );
    let attacker = ip("203.0.113.9");
    for _ in 0..10 {
        p.record_failure(attacker, Some("victim"), true, s(0));
    }
    assert!(p.check(attacker, None, s(0)).is_err());
    for k in 0..20_000u32 {
        let src = IpAddr::V4((0x0a00_0000 + k).into());
        p.record_failure(src, Some(&format!("user{k}")), true, s(1));
        let (a, b, c) = p.len();
        assert!(a <= 64 && b <= 64 && c <= 64);
    }
    assert!(p.check(attacker, None, s(2)).is_err());
}

/// The model: the rules as written in the documentation, over plain maps.
#[derive(Default, Clone)]
struct Key {
    first: u64,
    count: u32,
    strikes: u32,
    until: u64,
    last: u64,
}

#[derive(Default)]
struct Model {
    sources: HashMap<String, Key>,
    pairs: HashMap<(String, String), Key>,
    users: HashMap<String, Key>,
}

fn model_fail(k: &mut Key, now: u64, threshold: u32, cfg: &LimiterConfig) {
    let ms = |d: Duration| d.as_millis() as u64;
    if k.until > now {
        return;
    }
    if now - k.last.max(k.until) > ms(cfg.forget_after) {
        k.strikes = 0;
    }
    if k.count == 0 || now - k.first > ms(cfg.window) {
        k.first = now;
        k.count = 0;
    }
    k.count += 1;
    k.last = now;
    if k.count >= threshold {
        k.strikes += 1;
        let len = (ms(cfg.cooldown) << (k.strikes - 1).min(40)).min(ms(cfg.max_cooldown));
        k.until = now + len;
        k.count = 0;
    }
}

impl Model {
    fn fail(&mut self, src: &str, user: &str, now: u64, cfg: &LimiterConfig) {
        let sk = self.sources.entry(src.into()).or_insert_with(|| Key {
            first: now,
            last: now,
            ..Key::default()
        });
        model_fail(sk, now, cfg.source_max_failures, cfg);
        let uk = self.users.entry(user.into()).or_insert_with(|| Key {
            first: now,
            last: now,
            ..Key::default()
        });
        let attacked = uk.until > now;
        model_fail(uk, now, cfg.effective_user_cap(), cfg);
        let pk = self
            .pairs
            .entry((src.into(), user.into()))
            .or_insert_with(|| Key {
                first: now,
                last: now,
                ..Key::default()
            });
        model_fail(pk, now, if attacked { 1 } else { cfg.max_failures }, cfg);
    }

    fn blocked(&self, src: &str, user: &str, now: u64) -> Option<Scope> {
        if self.sources.get(src).is_some_and(|k| k.until > now) {
            return Some(Scope::Source);
        }
        if self
            .pairs
            .get(&(src.to_owned(), user.to_owned()))
            .is_some_and(|k| k.until > now)
        {
            return Some(Scope::SourceUser);
        }
        None
    }
}

#[derive(Debug, Clone)]
enum Op {
    Fail {
        src: usize,
        user: usize,
        bound: bool,
    },
    Succeed {
        src: usize,
        user: usize,
    },
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..4, 0usize..3, proptest::bool::weighted(0.85))
            .prop_map(|(src, user, bound)| Op::Fail { src, user, bound }),
        1 => (0usize..4, 0usize..3).prop_map(|(src, user)| Op::Succeed { src, user }),
        2 => (0u64..400_000).prop_map(Op::Wait),
    ]
}

const SOURCES: [&str; 4] = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8:0:1::1"];
const USERS: [&str; 3] = ["alice", "bob", "carol"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn policy_matches_the_model(
        ops in proptest::collection::vec(op(), 1..300),
        source_max in 2u32..8,
        pair_max in 1u32..6,
        user_max in 0u32..4,
    ) {
        let cfg = LimiterConfig {
            max_failures: pair_max,
            source_max_failures: source_max,
            // Low enough to be reached: the cap is raised to 20x anyway.
            user_max_failures: user_max,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(100),
            forget_after: Duration::from_secs(300),
            ..LimiterConfig::default()
        };
        let mut p = FailurePolicy::new(cfg.clone(), 9);
        let mut m = Model::default();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Wait(d) => now += d,
                Op::Fail { src, user, bound } => {
                    let allowed = p.check(ip(SOURCES[src]), Some(USERS[user]), t(now)).is_ok();
                    // Blocked requests are not verified, so they never fail.
                    if allowed {
                        p.record_failure(ip(SOURCES[src]), Some(USERS[user]), bound, t(now));
                        if bound {
                            m.fail(SOURCES[src], USERS[user], now, &cfg);
                        }
                    }
                }
                Op::Succeed { src, user } => {
                    if p.check(ip(SOURCES[src]), Some(USERS[user]), t(now)).is_ok() {
                        p.record_success(ip(SOURCES[src]), USERS[user]);
                        m.pairs.remove(&(SOURCES[src].to_owned(), USERS[user].to_owned()));
                    }
                }
            }
            for src in SOURCES {
                for user in USERS {
                    let got = p.check(ip(src), Some(user), t(now)).err().map(|b| b.scope);
                    prop_assert_eq!(got, m.blocked(src, user, now), "{} {} at {}", src, user, now);
                }
            }
        }
    }

    #[test]
    fn right_password_from_a_clean_source_is_never_blocked(
        bots in proptest::collection::vec((0u32..5000, 0usize..3, 0u64..5000), 0..400),
    ) {
        let mut p = policy();
        for (bot, user, at) in bots {
            let src = IpAddr::V4((0x0a00_0000 + bot).into());
            if p.check(src, Some(USERS[user]), t(at)).is_ok() {
                p.record_failure(src, Some(USERS[user]), true, t(at));
            }
        }
        for user in USERS {
            prop_assert!(p.check(ip("198.51.100.1"), Some(user), t(6000)).is_ok());
        }
    }
}
