//! Behaviour of `DialPlan`: the documented examples, ordering, empty plans,
//! rewrites, limits and every build error.

use std::borrow::Cow;

use siplink_dialplan::{DialPlan, Error, Limits, MatchMode, Pattern, normalize_number};

fn plan_in(mode: MatchMode, conns: &[(&'static str, &[&str])]) -> DialPlan<&'static str> {
    conns
        .iter()
        .fold(DialPlan::builder().match_mode(mode), |b, (id, ps)| {
            b.connection(*id, ps.iter().copied())
        })
        .build()
        .unwrap()
}

fn route(plan: &DialPlan<&'static str>, number: &str) -> Option<(&'static str, usize)> {
    plan.lookup(number)
        .map(|r| (*r.connection(), r.pattern_index()))
}

fn failover(plan: &DialPlan<&'static str>, number: &str) -> Vec<(&'static str, usize)> {
    plan.matches(number)
        .map(|r| (*r.connection(), r.pattern_index()))
        .collect()
}

// ---------------------------------------------------------------- examples

#[test]
fn extension_range_matches_whole_number_by_default() {
    let plan = plan_in(MatchMode::FullMatch, &[("pbx", &["4[0-9]{3}"])]);
    for n in ["4000", "4711", "4999"] {
        assert_eq!(route(&plan, n), Some(("pbx", 0)), "{n}");
    }
    for n in ["14000", "40000", "400", "", "5000", "4a00"] {
        assert_eq!(route(&plan, n), None, "{n}");
    }
}

#[test]
fn extension_range_is_found_inside_numbers_in_search_mode() {
    let plan = plan_in(MatchMode::Search, &[("pbx", &["4[0-9]{3}"])]);
    for n in ["4000", "14000", "40000", "x4711y"] {
        assert_eq!(route(&plan, n), Some(("pbx", 0)), "{n}");
    }
    for n in ["400", "", "3999", "4-000"] {
        assert_eq!(route(&plan, n), None, "{n}");
    }
}

#[test]
fn anchors_change_nothing_in_full_match_mode() {
    let anchored = plan_in(MatchMode::FullMatch, &[("pstn", &["^0[0-9]{9,10}$"])]);
    let bare = plan_in(MatchMode::FullMatch, &[("pstn", &["0[0-9]{9,10}"])]);
    let only_start = plan_in(MatchMode::FullMatch, &[("pstn", &["^0[0-9]{9,10}"])]);
    for (n, hit) in [
        ("0208123095", true),
        ("02081230958", true),
        ("020812309581", false),
        ("020812309", false),
        ("902081230958", false),
        ("12081230958", false),
    ] {
        let expected = hit.then_some(("pstn", 0));
        assert_eq!(route(&anchored, n), expected, "{n}");
        assert_eq!(route(&bare, n), expected, "{n}");
        assert_eq!(route(&only_start, n), expected, "{n}");
    }
}

#[test]
fn anchors_matter_in_search_mode() {
    let anchored = plan_in(MatchMode::Search, &[("pstn", &["^0[0-9]{9,10}$"])]);
    let bare = plan_in(MatchMode::Search, &[("pstn", &["0[0-9]{9,10}"])]);
    assert_eq!(route(&anchored, "02081230958"), Some(("pstn", 0)));
    assert_eq!(route(&anchored, "902081230958"), None);
    assert_eq!(route(&anchored, "020812309581"), None);
    assert_eq!(route(&bare, "902081230958"), Some(("pstn", 0)));
    assert_eq!(route(&bare, "020812309581"), Some(("pstn", 0)));
}

#[test]
fn catch_all_matches_everything_including_the_empty_number() {
    for mode in [MatchMode::FullMatch, MatchMode::Search] {
        let plan = plan_in(mode, &[("any", &[".*"])]);
        for n in ["", "0", "+4930123", "*21#", "ümlaut"] {
            assert_eq!(route(&plan, n), Some(("any", 0)), "{mode:?} {n}");
        }
    }
}

#[test]
fn dialled_characters_are_matched_as_given() {
    let plan = plan_in(
        MatchMode::FullMatch,
        &[("vsc", &[r"\*[0-9]{2}#?"]), ("intl", &[r"\+[1-9][0-9]+"])],
    );
    assert_eq!(route(&plan, "*21#"), Some(("vsc", 0)));
    assert_eq!(route(&plan, "*21"), Some(("vsc", 0)));
    assert_eq!(route(&plan, "+4930123"), Some(("intl", 0)));
    assert_eq!(route(&plan, "+49 30 123"), None);
    assert_eq!(
        route(&plan, &normalize_number("+49 (30) 12-3")),
        Some(("intl", 0))
    );
}

// ---------------------------------------------------------------- ordering

#[test]
fn early_catch_all_wins_over_everything_after_it() {
    let plan = plan_in(
        MatchMode::FullMatch,
        &[
            ("ext", &["4[0-9]{3}"]),
            ("catch-all", &[".*"]),
            ("pstn", &["0[0-9]+", "4711"]),
        ],
    );
    assert_eq!(route(&plan, "4711"), Some(("ext", 0)));
    assert_eq!(route(&plan, "030123"), Some(("catch-all", 0)));
    assert_eq!(route(&plan, "#"), Some(("catch-all", 0)));
    assert_eq!(
        failover(&plan, "4711"),
        [("ext", 0), ("catch-all", 0), ("pstn", 1)]
    );
    assert_eq!(failover(&plan, "030123"), [("catch-all", 0), ("pstn", 0)]);
}

#[test]
fn connection_order_beats_pattern_order() {
    // The winning pattern is the last of the first connection, not the
    // first pattern of the second.
    let plan = plan_in(
        MatchMode::FullMatch,
        &[("a", &["1", "2", "3", "[0-9]"]), ("b", &["[0-9]", "5"])],
    );
    assert_eq!(route(&plan, "5"), Some(("a", 3)));
    assert_eq!(route(&plan, "2"), Some(("a", 1)));
    // Within a connection the first matching pattern is reported, once.
    assert_eq!(failover(&plan, "5"), [("a", 3), ("b", 0)]);
    assert_eq!(failover(&plan, "2"), [("a", 1), ("b", 0)]);
    assert_eq!(plan.matches("5").len(), 2);
}

#[test]
fn route_reports_pattern_text_and_positions() {
    let plan = plan_in(
        MatchMode::FullMatch,
        &[("x", &["9"]), ("empty", &[]), ("y", &["1", "^0[0-9]+$"])],
    );
    let r = plan.lookup("0301").unwrap();
    assert_eq!(*r.connection(), "y");
    assert_eq!(r.connection_index(), 2);
    assert_eq!(r.pattern_index(), 1);
    assert_eq!(r.pattern(), "^0[0-9]+$");
    assert_eq!(r.number(), "0301");
    assert!(!r.has_rewrite());
    assert!(matches!(r.rewritten(), Cow::Borrowed("0301")));
    assert_eq!(plan.connection_count(), 3);
    assert_eq!(plan.pattern_count(), 3);
    assert_eq!(
        plan.connections().copied().collect::<Vec<_>>(),
        ["x", "empty", "y"]
    );
    assert!(format!("{r:?}").contains("^0[0-9]+$"));
    assert!(format!("{plan:?}").contains(r#"("empty", []), ("y", ["1", "^0[0-9]+$"])"#));
}

#[test]
fn duplicate_patterns_and_ids_are_kept_apart() {
    let plan = plan_in(MatchMode::FullMatch, &[("a", &["1", "1"]), ("a", &["1"])]);
    assert_eq!(route(&plan, "1"), Some(("a", 0)));
    let conns: Vec<usize> = plan.matches("1").map(|r| r.connection_index()).collect();
    assert_eq!(conns, [0, 1]);
}

// ---------------------------------------------------------------- empty plans

#[test]
fn empty_plans_route_nothing() {
    let none: DialPlan<String> = DialPlan::builder().build().unwrap();
    assert_eq!(none.connection_count(), 0);
    assert_eq!(none.pattern_count(), 0);
    assert!(none.lookup("").is_none());
    assert!(none.lookup("4711").is_none());
    assert_eq!(none.matches("4711").count(), 0);

    let no_patterns = plan_in(MatchMode::Search, &[("a", &[]), ("b", &[])]);
    assert_eq!(no_patterns.connection_count(), 2);
    assert!(no_patterns.lookup("4711").is_none());
    assert_eq!(no_patterns.matches("").count(), 0);
}

// ---------------------------------------------------------------- rewrites

fn rewrite_plan(mode: MatchMode) -> DialPlan<&'static str> {
    DialPlan::builder()
        .match_mode(mode)
        .connection("ext", ["4[0-9]{3}"])
        .connection(
            "pstn",
            [
                Pattern::new("9(0[0-9]+)").with_rewrite("$1"),
                Pattern::new("0(?<national>[0-9]{9,10})").with_rewrite("+44${national}"),
                Pattern::new(r"00([1-9][0-9]+)").with_rewrite("+${1}"),
            ],
        )
        .connection("cost", [Pattern::new("(0[0-9]*)").with_rewrite("$$$1")])
        .build()
        .unwrap()
}

#[test]
fn rewrite_strips_a_leading_nine() {
    let plan = rewrite_plan(MatchMode::FullMatch);
    let r = plan.lookup("902081230958").unwrap();
    assert_eq!((*r.connection(), r.pattern_index()), ("pstn", 0));
    assert!(r.has_rewrite());
    assert_eq!(r.rewritten(), "02081230958");
}

#[test]
fn rewrite_turns_national_into_international() {
    let plan = rewrite_plan(MatchMode::FullMatch);
    assert_eq!(
        plan.lookup("02081230958").unwrap().rewritten(),
        "+442081230958"
    );
    assert_eq!(plan.lookup("004930123").unwrap().rewritten(), "+4930123");
}

#[test]
fn every_failover_route_uses_its_own_rewrite() {
    let plan = rewrite_plan(MatchMode::FullMatch);
    let outputs: Vec<(&str, String)> = plan
        .matches("02081230958")
        .map(|r| (*r.connection(), r.rewritten().into_owned()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("pstn", "+442081230958".to_string()),
            ("cost", "$02081230958".to_string())
        ]
    );
}

#[test]
fn pattern_without_rewrite_returns_the_number() {
    let plan = rewrite_plan(MatchMode::FullMatch);
    let r = plan.lookup("4711").unwrap();
    assert!(!r.has_rewrite());
    assert_eq!(r.rewritten(), "4711");
}

#[test]
fn search_mode_rewrite_replaces_only_the_matched_text() {
    let plan = DialPlan::builder()
        .match_mode(MatchMode::Search)
        .connection("strip-prefix", [Pattern::new("^9(0)").with_rewrite("$1")])
        .connection("tag", [Pattern::new("#([0-9]+)").with_rewrite("<$1>")])
        .build()
        .unwrap();
    assert_eq!(plan.lookup("9030123").unwrap().rewritten(), "030123");
    assert_eq!(
        plan.lookup("*21#4711#9").unwrap().rewritten(),
        "*21<4711>#9"
    );
}

#[test]
fn unmatched_optional_group_expands_to_nothing() {
    let plan =
        DialPlan::new([("c", [Pattern::new("(9)?(0[0-9]+)").with_rewrite("[$1]$2")])]).unwrap();
    assert_eq!(plan.lookup("0301").unwrap().rewritten(), "[]0301");
    assert_eq!(plan.lookup("90301").unwrap().rewritten(), "[9]0301");
}

#[test]
fn empty_template_rewrites_to_empty() {
    let plan = DialPlan::new([("c", [Pattern::new("[0-9]+").with_rewrite("")])]).unwrap();
    assert_eq!(plan.lookup("123").unwrap().rewritten(), "");
}

// ---------------------------------------------------------------- errors

#[test]
fn invalid_pattern_names_connection_index_pattern_and_position() {
    let err = DialPlan::new([
        ("ok", vec!["4[0-9]{3}"]),
        ("pstn", vec!["0[0-9]+", "4[0-9"]),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        Error::InvalidPattern {
            connection: "pstn".into(),
            index: 2,
            pattern: "4[0-9".into(),
            position: 1,
            message: "unclosed character class".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "connection \"pstn\", pattern 2 `4[0-9`: unclosed character class (at offset 1)"
    );
}

#[test]
fn invalid_pattern_positions_for_parse_and_translate_errors() {
    let cases = [
        ("12)", 2, "unopened group"),
        ("0{3,2}", 1, "invalid repetition count range"),
        ("(?<a>1)(?<a>2)", 10, "duplicate capture group name"),
        (r"12\p{Klingon}", 2, "Unicode property not found"),
        (r"(?-u:\xFF)", 5, "invalid UTF-8"),
        ("", usize::MAX, ""),
    ];
    for (pattern, position, message) in cases {
        let result = DialPlan::new([(7u16, [pattern])]);
        if position == usize::MAX {
            assert!(result.is_ok(), "the empty pattern is valid");
            continue;
        }
        match result.unwrap_err() {
            Error::InvalidPattern {
                connection,
                index,
                pattern: p,
                position: pos,
                message: m,
            } => {
                assert_eq!((connection.as_str(), index, p.as_str()), ("7", 1, pattern));
                assert_eq!(pos, position, "{pattern}");
                assert!(m.contains(message), "{pattern}: {m}");
            }
            other => panic!("{pattern}: {other:?}"),
        }
    }
}

#[test]
fn first_fault_in_order_is_reported() {
    let err = DialPlan::new([("a", vec!["(", "["]), ("b", vec!["{"])]).unwrap_err();
    assert!(matches!(err, Error::InvalidPattern { index: 1, ref pattern, .. } if pattern == "("));
}

#[test]
fn invalid_rewrites_are_rejected_at_build_time() {
    let cases = [
        ("0([0-9]+)", "+44$2", 3, "no capture group 2"),
        ("0(?<n>[0-9]+)", "${num}", 0, "no capture group named `num`"),
        ("0([0-9]+)", "$a", 0, "must be followed"),
        ("0([0-9]+)", "x${1", 1, "unclosed"),
        ("0([0-9]+)", "${}", 0, "empty group name"),
        ("0[0-9]+", "$1", 0, "the pattern has 0 groups"),
    ];
    for (pattern, template, position, message) in cases {
        let err = DialPlan::new([
            ("ok", vec![Pattern::new("1")]),
            (
                "uk",
                vec![
                    Pattern::new("2"),
                    Pattern::new(pattern).with_rewrite(template),
                ],
            ),
        ])
        .unwrap_err();
        match &err {
            Error::InvalidRewrite {
                connection,
                index,
                pattern: p,
                template: t,
                position: pos,
                message: m,
            } => {
                assert_eq!(
                    (connection.as_str(), *index, p.as_str(), t.as_str(), *pos),
                    ("uk", 2, pattern, template, position),
                );
                assert!(m.contains(message), "{template}: {m}");
            }
            other => panic!("{template}: {other:?}"),
        }
        let text = err.to_string();
        assert!(text.starts_with("connection \"uk\", pattern 2 `"), "{text}");
        assert!(text.contains(&format!("rewrite {template:?}")), "{text}");
    }
}

#[test]
fn oversized_pattern_is_named() {
    let limits = Limits::default().with_nfa_size(1 << 20);
    for rewrite in [false, true] {
        let mut big = Pattern::new("(?:[0-9]{1000}){100}");
        if rewrite {
            big = big.with_rewrite("$0");
        }
        let err = DialPlan::builder()
            .limits(limits)
            .connection("small", [Pattern::new("1")])
            .connection("huge", [Pattern::new("2"), Pattern::new("3"), big])
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            Error::PatternTooLarge {
                connection: "huge".into(),
                index: 3,
                pattern: "(?:[0-9]{1000}){100}".into(),
                limit: 1 << 20,
            },
            "rewrite: {rewrite}"
        );
        assert!(
            err.to_string()
                .contains("exceeds the size limit of 1048576 bytes")
        );
    }
}

#[test]
fn oversized_plan_is_rejected_as_a_whole() {
    let pattern = "[0-9]{40}";
    let one = DialPlan::new([("c", [pattern])]).unwrap().memory_usage();
    let limit = 3 * one;
    let limits = Limits::default().with_nfa_size(limit);
    // Each pattern fits on its own...
    assert!(
        DialPlan::builder()
            .limits(limits)
            .connection("c", [pattern])
            .build()
            .is_ok()
    );
    // ... but not ten of them.
    let err = DialPlan::builder()
        .limits(limits)
        .connection("c", vec![pattern; 10])
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        Error::PlanTooLarge {
            patterns: 10,
            limit
        }
    );
    assert!(err.to_string().contains("10 patterns"));
}

#[test]
fn too_small_cache_is_rejected() {
    let err = DialPlan::builder()
        .limits(Limits::default().with_cache_capacity(100))
        .connection("c", ["4[0-9]{3}"])
        .build()
        .unwrap_err();
    match err {
        Error::CacheTooSmall { required, limit } => {
            assert_eq!(limit, 100);
            assert!(required > 100);
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- limits and hostile input

#[test]
fn numbers_over_the_length_limit_match_nothing() {
    let plan: DialPlan<&str> = DialPlan::builder()
        .limits(Limits::default().with_max_number_len(8))
        .connection("any", [".*"])
        .build()
        .unwrap();
    assert!(plan.lookup("12345678").is_some());
    assert!(plan.lookup("123456789").is_none());
    assert_eq!(plan.matches("123456789").count(), 0);

    let default = plan_in(MatchMode::FullMatch, &[("any", &[".*"])]);
    assert!(default.lookup(&"1".repeat(256)).is_some());
    assert!(default.lookup(&"1".repeat(257)).is_none());
}

#[test]
fn minimal_cache_stays_correct_while_it_is_cleared() {
    // Find the smallest cache this plan accepts, then push many distinct
    // numbers through it so that the cache is cleared over and over.
    let patterns: Vec<String> = (0..50).map(|i| format!("{i:02}[0-9]{{2,6}}")).collect();
    let required = match DialPlan::builder()
        .limits(Limits::default().with_cache_capacity(0))
        .connection("c", &patterns)
        .build()
        .unwrap_err()
    {
        Error::CacheTooSmall { required, .. } => required,
        other => panic!("{other:?}"),
    };
    let plan = DialPlan::builder()
        .limits(Limits::default().with_cache_capacity(required))
        .connection("c", &patterns)
        .build()
        .unwrap();
    for i in 0..20_000u32 {
        let number = format!("{}", i.wrapping_mul(2_654_435_761) % 100_000_000);
        let expected =
            number.len() >= 4 && number.len() <= 8 && number[..2].parse::<u32>().unwrap() < 50;
        let got = plan.lookup(&number);
        assert_eq!(got.is_some(), expected, "{number}");
        if let Some(r) = got {
            assert_eq!(r.pattern_index(), number[..2].parse::<usize>().unwrap());
        }
    }
}

#[test]
fn unicode_word_boundary_with_non_ascii_numbers_falls_back_correctly() {
    let pattern = r"\b4[0-9]{3}\b";
    let plan = plan_in(MatchMode::Search, &[("ext", &[pattern]), ("any", &[".*"])]);
    let re = regex::Regex::new(pattern).unwrap();
    for n in [
        "4711",
        "x4711",
        "é4711",
        "–4711",
        "4711ü",
        "ü 4711 ü",
        "日本4711",
    ] {
        let expected = if re.is_match(n) { "ext" } else { "any" };
        assert_eq!(
            plan.lookup(n).map(|r| *r.connection()),
            Some(expected),
            "{n}"
        );
        assert_eq!(
            plan.matches(n).count(),
            if expected == "ext" { 2 } else { 1 },
            "{n}"
        );
    }
}

#[test]
fn fallback_path_keeps_full_match_anchoring() {
    // `\b` makes non-ASCII numbers take the slower fallback path; `.` must
    // still match only a whole one-character number there.
    let plan = plan_in(MatchMode::FullMatch, &[("wb", &[r"0\b"]), ("one", &["."])]);
    assert_eq!(route(&plan, "é"), Some(("one", 0)));
    assert_eq!(route(&plan, "éé"), None);
    assert_eq!(route(&plan, "aé"), None);
    assert_eq!(failover(&plan, "0"), [("wb", 0), ("one", 0)]);
}

#[test]
fn arbitrary_text_does_not_panic() {
    let plan = rewrite_plan(MatchMode::Search);
    let long = "9".repeat(300);
    for n in [
        "\0",
        "\u{feff}",
        "9\n0",
        "0\r\n",
        "🙂9🙂0🙂",
        "$1${x}",
        &long,
    ] {
        let first = plan
            .lookup(n)
            .map(|r| (r.connection_index(), r.rewritten().into_owned()));
        let all: Vec<_> = plan
            .matches(n)
            .map(|r| (r.connection_index(), r.rewritten().into_owned()))
            .collect();
        assert_eq!(first.as_ref(), all.first(), "{n:?}");
    }
    assert!(plan.lookup(&long).is_none(), "over the length limit");
    assert_eq!(plan.lookup("🙂9🙂0🙂").unwrap().rewritten(), "🙂9🙂$0🙂");
    assert_eq!(plan.lookup("9\n0").unwrap().rewritten(), "9\n$0");
}

// ---------------------------------------------------------------- concurrency

#[test]
fn plan_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<DialPlan>();
    assert_send_sync::<DialPlan<u64>>();
    assert_send_sync::<Error>();
}

#[test]
fn concurrent_lookups_agree() {
    let plan = rewrite_plan(MatchMode::FullMatch);
    let numbers = ["4711", "902081230958", "02081230958", "004930123", "0", "x"];
    let expected: Vec<_> = numbers
        .iter()
        .map(|n| {
            plan.lookup(n)
                .map(|r| (*r.connection(), r.rewritten().into_owned()))
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    for (n, e) in numbers.iter().zip(&expected) {
                        let got = plan
                            .lookup(n)
                            .map(|r| (*r.connection(), r.rewritten().into_owned()));
                        assert_eq!(&got, e);
                    }
                }
            });
        }
    });
    assert_eq!(expected[0], Some(("ext", "4711".to_string())));
    assert_eq!(expected[4], Some(("cost", "$0".to_string())));
    assert_eq!(expected[5], None);
}

#[test]
fn memory_usage_grows_with_patterns() {
    let small = plan_in(MatchMode::FullMatch, &[("c", &["4[0-9]{3}"])]);
    let patterns: Vec<String> = (0..1000).map(|i| format!("{i:04}[0-9]{{3,5}}")).collect();
    let large = DialPlan::new([("c", &patterns)]).unwrap();
    assert!(small.memory_usage() > 0);
    assert!(large.memory_usage() > 100 * small.memory_usage() / 2);
    assert_eq!(large.pattern_count(), 1000);
    assert_eq!(large.lookup("0999123").unwrap().pattern_index(), 999);
}
