//! Property tests: the one-pass automaton agrees with a naive reference that
//! tries every pattern in order with the `regex` crate.

use proptest::prelude::*;
use regex::Regex;
use siplink_dialplan::{DialPlan, MatchMode, Pattern};

/// A regex over a small digit alphabet (so that random numbers often match):
/// literals, classes, `.`, `.*`, anchors, Unicode word boundaries (which
/// make non-ASCII numbers take the fallback path), groups, alternation and
/// counted repetitions.
fn pattern() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => "[0-3]".prop_map(|d| d.to_string()),
        1 => Just(r"\+".to_string()),
        1 => Just(r"\*".to_string()),
        1 => Just("#".to_string()),
        2 => prop_oneof![
            Just("[0-2]"),
            Just("[13]"),
            Just("[^0]"),
            Just("[0-9]"),
            Just(r"\d"),
            Just("[#*]"),
        ]
        .prop_map(str::to_string),
        1 => Just(".".to_string()),
        1 => Just(".*".to_string()),
        1 => Just("^".to_string()),
        1 => Just("$".to_string()),
        1 => Just(r"\b".to_string()),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 2..5).prop_map(|v| v.concat()),
            2 => (prop::collection::vec(inner.clone(), 2..4), any::<bool>()).prop_map(|(v, capture)| {
                format!("({}{})", if capture { "" } else { "?:" }, v.join("|"))
            }),
            3 => (inner, 0u32..4, 0u32..3, 0u8..7).prop_map(|(sub, n, extra, kind)| {
                let op = match kind {
                    0 => format!("{{{n}}}"),
                    1 => format!("{{{n},{}}}", n + extra),
                    2 => format!("{{{n},}}"),
                    3 => "?".to_string(),
                    4 => "*".to_string(),
                    5 => "+".to_string(),
                    _ => "??".to_string(),
                };
                format!("(?:{sub}){op}")
            }),
        ]
    })
}

/// Connections (possibly none, possibly without patterns).
fn connections() -> impl Strategy<Value = Vec<Vec<String>>> {
    prop::collection::vec(prop::collection::vec(pattern(), 0..5), 0..6)
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[0-3]{0,8}",
        2 => "[0-3+*#]{0,10}",
        1 => "[0-9+*#]{0,24}",
        1 => "[0-3é ]{0,6}",
    ]
}

/// The reference regex for one pattern in one mode.
fn reference(pattern: &str, mode: MatchMode) -> Regex {
    match mode {
        MatchMode::FullMatch => Regex::new(&format!("^(?:{pattern})$")).unwrap(),
        MatchMode::Search => Regex::new(pattern).unwrap(),
    }
}

fn build(conns: &[Vec<String>], mode: MatchMode) -> DialPlan<usize> {
    conns
        .iter()
        .enumerate()
        .fold(DialPlan::builder().match_mode(mode), |b, (i, p)| {
            b.connection(i, p)
        })
        .build()
        .unwrap()
}

const MODES: [MatchMode; 2] = [MatchMode::FullMatch, MatchMode::Search];

proptest! {
    // 512 cases per property (each case checks up to 11 numbers in both
    // modes); set PROPTEST_CASES for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// `lookup` is the first (connection, pattern) in order that matches;
    /// `matches` is every matching connection in order with its first
    /// matching pattern.
    #[test]
    fn lookup_and_matches_agree_with_naive_ordered_loop(
        conns in connections(),
        numbers in prop::collection::vec(number(), 1..12),
    ) {
        for mode in MODES {
            let plan = build(&conns, mode);
            let refs: Vec<Vec<Regex>> = conns
                .iter()
                .map(|ps| ps.iter().map(|p| reference(p, mode)).collect())
                .collect();
            for number in &numbers {
                let expected: Vec<(usize, usize)> = refs
                    .iter()
                    .enumerate()
                    .filter_map(|(c, res)| res.iter().position(|re| re.is_match(number)).map(|p| (c, p)))
                    .collect();
                let got: Vec<(usize, usize)> = plan
                    .matches(number)
                    .map(|r| (*r.connection(), r.pattern_index()))
                    .collect();
                prop_assert_eq!(&got, &expected, "{:?} {:?} {:?}", mode, conns, number);
                let first = plan.lookup(number).map(|r| {
                    prop_assert_eq!(r.pattern(), conns[*r.connection()][r.pattern_index()].as_str());
                    prop_assert_eq!(r.connection_index(), *r.connection());
                    Ok((*r.connection(), r.pattern_index()))
                }).transpose()?;
                prop_assert_eq!(first, expected.first().copied());
            }
        }
    }

    /// A rewrite gives what the `regex` crate gives: the expanded template
    /// for the whole number (full match) or in place of the first match
    /// (search).
    #[test]
    fn rewrites_agree_with_regex_crate(
        pattern in pattern(),
        pieces in prop::collection::vec((0u8..3, 0usize..8, "[0-9+]{0,3}"), 0..5),
        numbers in prop::collection::vec(number(), 1..12),
    ) {
        for mode in MODES {
            let re = reference(&pattern, mode);
            let groups = re.captures_len();
            let template: String = pieces
                .iter()
                .map(|(kind, group, lit)| match kind {
                    0 => format!("${{{}}}", group % groups),
                    1 => "$$".to_string(),
                    _ => lit.clone(),
                })
                .collect();
            let plan = DialPlan::builder()
                .match_mode(mode)
                .connection("c", [Pattern::new(pattern.as_str()).with_rewrite(template.as_str())])
                .build()
                .unwrap();
            for number in &numbers {
                let expected = match mode {
                    MatchMode::FullMatch => re.captures(number).map(|caps| {
                        let mut out = String::new();
                        caps.expand(&template, &mut out);
                        out
                    }),
                    MatchMode::Search => re
                        .is_match(number)
                        .then(|| re.replacen(number, 1, template.as_str()).into_owned()),
                };
                let got = plan.lookup(number).map(|r| r.rewritten().into_owned());
                prop_assert_eq!(got, expected, "{:?} {:?} {:?} {:?}", mode, pattern, template, number);
            }
        }
    }
}

/// The generators are not degenerate: a fair share of lookups route, and
/// in both modes.
#[test]
fn generators_produce_hits_and_misses() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    for mode in MODES {
        let (mut hits, mut total) = (0, 0);
        for _ in 0..200 {
            let conns = connections().new_tree(&mut runner).unwrap().current();
            let plan = build(&conns, mode);
            for _ in 0..10 {
                let n = number().new_tree(&mut runner).unwrap().current();
                total += 1;
                hits += usize::from(plan.lookup(&n).is_some());
            }
        }
        assert!(
            hits * 5 > total,
            "{mode:?}: only {hits} of {total} lookups routed"
        );
        assert!(
            hits * 20 < total * 19,
            "{mode:?}: {hits} of {total} lookups routed"
        );
    }
}
