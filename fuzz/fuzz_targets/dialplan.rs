//! Builds a dial plan from arbitrary patterns and rewrites, then looks up
//! arbitrary numbers. Nothing may panic, and `lookup`, `matches` and the
//! rewrite must be consistent with each other.
//!
//! Input layout (lossy UTF-8): the first byte holds options; the rest is
//! `SPEC \0 NUMBERS`. SPEC has one pattern per line, `PATTERN\tREWRITE` for
//! a pattern with a rewrite; a line starting with `--` starts a new
//! connection. NUMBERS has one number per line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use siplink_dialplan::{DialPlan, Limits, MatchMode, Pattern, normalize_number};

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (spec, numbers) = text.split_once('\0').unwrap_or((&text, ""));

    let mut connections: Vec<(usize, Vec<Pattern>)> = vec![(0, Vec::new())];
    for line in spec.split('\n').take(64) {
        if line.starts_with("--") {
            connections.push((connections.len(), Vec::new()));
            continue;
        }
        let pattern = match line.split_once('\t') {
            Some((regex, rewrite)) => Pattern::new(regex).with_rewrite(rewrite),
            None => Pattern::new(line),
        };
        connections
            .last_mut()
            .expect("one connection")
            .1
            .push(pattern);
    }

    let mode = if options & 1 == 0 {
        MatchMode::FullMatch
    } else {
        MatchMode::Search
    };
    // Small limits keep each run fast and exercise the limit errors.
    let limits = Limits::default()
        .with_nfa_size(if options & 2 == 0 { 1 << 20 } else { 1 << 14 })
        .with_cache_capacity(if options & 4 == 0 { 1 << 22 } else { 1 << 16 })
        .with_max_number_len(if options & 8 == 0 { 256 } else { 8 });

    let plan = connections
        .into_iter()
        .fold(
            DialPlan::builder().match_mode(mode).limits(limits),
            |b, (id, patterns)| b.connection(id, patterns),
        )
        .build();
    let plan = match plan {
        Ok(plan) => plan,
        Err(err) => {
            // Every error must render.
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    let _ = plan.memory_usage();

    for number in numbers.split('\n').take(32) {
        for number in [number, &normalize_number(number)] {
            let first = plan.lookup(number);
            let all: Vec<_> = plan.matches(number).collect();
            assert_eq!(
                first.map(|r| (r.connection_index(), r.pattern_index())),
                all.first()
                    .map(|r| (r.connection_index(), r.pattern_index())),
            );
            assert!(
                all.windows(2)
                    .all(|w| w[0].connection_index() < w[1].connection_index())
            );
            for route in &all {
                assert_eq!(*route.connection(), route.connection_index());
                if !route.has_rewrite() {
                    assert_eq!(route.rewritten(), number);
                } else {
                    let _ = route.rewritten();
                }
            }
            if number.len() > plan.limits().max_number_len() {
                assert!(first.is_none());
            }
        }
    }
});
