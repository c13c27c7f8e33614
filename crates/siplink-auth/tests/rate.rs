//! The request-rate policy: property tests against a simple model (one plain
//! token bucket per source in an unbounded map, in floating point seconds
//! turned exact by whole milliseconds) and against the token-bucket bound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use siplink_auth::{RateConfig, RateDecision, RatePolicy};

/// The rules restated as plainly as possible, for one source.
#[derive(Default)]
struct Model {
    /// Requests available (exact: counted in thousandths).
    tokens_milli: u64,
    /// Time of the last refill, ms.
    refilled: u64,
    seen: bool,
    until: Option<u64>,
    strikes: u32,
    refused: Option<u64>,
}

fn model_request(m: &mut Model, cfg: &RateConfig, now: u64) -> RateDecision {
    let full = u64::from(cfg.burst) * 1000;
    if !m.seen {
        *m = Model {
            tokens_milli: full,
            refilled: now,
            seen: true,
            ..Model::default()
        };
    }
    let gained = (now - m.refilled) * u64::from(cfg.requests_per_second);
    m.tokens_milli = (m.tokens_milli + gained).min(full);
    m.refilled = now;
    let ms = |d: Duration| d.as_millis() as u64;
    if let Some(until) = m.until {
        if now < until {
            if m.refused
                .is_none_or(|r| now - r >= ms(cfg.refusal_interval))
            {
                m.refused = Some(now);
                return RateDecision::Refuse {
                    retry_after: (until - now).div_ceil(1000) as u32,
                    started: false,
                };
            }
            return RateDecision::Drop;
        }
        if now - until >= ms(cfg.forget_after) {
            m.strikes = 0;
        }
    }
    if m.tokens_milli >= 1000 {
        m.tokens_milli -= 1000;
        return RateDecision::Allow;
    }
    m.strikes += 1;
    let mut length = ms(cfg.cooldown);
    for _ in 1..m.strikes {
        length = (length * 2).min(ms(cfg.max_cooldown));
    }
    let length = length.min(ms(cfg.max_cooldown));
    m.until = Some(now + length);
    m.refused = Some(now);
    RateDecision::Refuse {
        retry_after: length.div_ceil(1000) as u32,
        started: true,
    }
}

fn config(rate: u32, burst: u32) -> RateConfig {
    RateConfig {
        requests_per_second: rate,
        burst,
        cooldown: Duration::from_secs(2),
        max_cooldown: Duration::from_secs(7),
        forget_after: Duration::from_secs(20),
        ..RateConfig::default()
    }
}

fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
}

/// (source, ms since the previous request)
fn requests() -> impl Strategy<Value = Vec<(u8, u64)>> {
    prop::collection::vec(
        (0u8..4, prop_oneof![Just(0u64), 0u64..50, 0u64..3000]),
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_policy_agrees_with_the_model(
        rate in 1u32..20,
        burst in 1u32..20,
        reqs in requests(),
    ) {
        let cfg = config(rate, burst);
        let mut policy = RatePolicy::new(cfg.clone());
        let mut models: HashMap<u8, Model> = HashMap::new();
        let t0 = Instant::now();
        let mut now = 0;
        for (i, (src, gap)) in reqs.into_iter().enumerate() {
            now += gap;
            let got = policy.request(source(src), t0 + Duration::from_millis(now));
            let want = model_request(models.entry(src).or_default(), &cfg, now);
            prop_assert_eq!(got, want, "request {} from {} at {} ms", i, src, now);
        }
    }

    #[test]
    fn allowed_requests_never_exceed_the_bucket(
        rate in 1u32..20,
        burst in 1u32..20,
        gaps in prop::collection::vec(prop_oneof![Just(0u64), 0u64..100, 0u64..2000], 1..300),
    ) {
        // In any interval [a, b]: allowed ≤ burst + rate × (b - a).
        let mut policy = RatePolicy::new(config(rate, burst));
        let t0 = Instant::now();
        let mut now = 0;
        let mut allowed = Vec::new();
        let mut replies_at = Vec::new();
        for gap in gaps {
            now += gap;
            match policy.request(source(1), t0 + Duration::from_millis(now)) {
                RateDecision::Allow => allowed.push(now),
                RateDecision::Refuse { started, .. } => replies_at.push((now, started)),
                RateDecision::Drop => {}
            }
        }
        for (i, &a) in allowed.iter().enumerate() {
            for (j, &b) in allowed.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u64;
                let bound = u64::from(burst) * 1000 + u64::from(rate) * (b - a);
                prop_assert!(count * 1000 <= bound, "{} allowed in [{}, {}]", count, a, b);
            }
        }
        // A limited source costs at most one refusal per second within a
        // cool-down (the one starting a cool-down is always sent).
        for w in replies_at.windows(2) {
            let ((a, _), (b, started)) = (w[0], w[1]);
            prop_assert!(started || b - a >= 1000, "refusals at {} and {}", a, b);
        }
    }

    #[test]
    fn a_source_within_its_rate_is_never_limited(
        rate in 1u32..50,
        burst in 1u32..20,
        extra in prop::collection::vec(0u64..500, 1..300),
    ) {
        // Spaced at least 1/rate apart: always allowed, whatever else happens.
        let mut policy = RatePolicy::new(config(rate, burst));
        let t0 = Instant::now();
        let step = 1000u64.div_ceil(u64::from(rate));
        let mut now = 0;
        for (k, e) in extra.into_iter().enumerate() {
            now += step + e;
            prop_assert_eq!(policy.request(source(1), t0 + Duration::from_millis(now)), RateDecision::Allow);
            // A flooder next door changes nothing.
            for _ in 0..(k % 7) {
                policy.request(source(2), t0 + Duration::from_millis(now));
            }
        }
    }
}

#[test]
fn a_flood_is_mostly_dropped_and_other_sources_go_on() {
    let mut policy = RatePolicy::new(RateConfig::default());
    let t0 = Instant::now();
    let (mut allowed, mut refused, mut dropped) = (0, 0, 0);
    let mut started = 0;
    // 20,000 requests in 10 s from one source, a phone every 100 ms.
    for k in 0..20_000u64 {
        let now = t0 + Duration::from_micros(k * 500);
        match policy.request(source(66), now) {
            RateDecision::Allow => allowed += 1,
            RateDecision::Refuse { started: s, .. } => {
                refused += 1;
                started += usize::from(s);
            }
            RateDecision::Drop => dropped += 1,
        }
        if k % 200 == 0 {
            assert_eq!(policy.request(source(7), now), RateDecision::Allow);
        }
    }
    // The burst (200) and what 50/s refills before it is spent.
    assert!((200..=210).contains(&allowed), "allowed {allowed}");
    assert_eq!(started, 1);
    assert!(refused <= 11, "refused {refused}");
    assert!(dropped >= 19_700, "dropped {dropped}");
}
