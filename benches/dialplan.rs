//! Dial plan benchmarks: one-pass lookup vs. pattern count, against the
//! naive ordered loop over `regex::Regex`; build time and plan memory.
//!
//! Run with `cargo bench --bench dialplan`
//! (short: `-- --warm-up-time 1 --measurement-time 3`).

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use siplink::dialplan::{DialPlan, Error, Limits, MatchMode, Pattern};

/// Pattern counts and the number of connections they are spread over.
const SIZES: [(usize, usize); 4] = [(1, 1), (100, 10), (1_000, 100), (10_000, 100)];

/// A realistic dial pattern for index `i`: a unique 5-digit prefix followed
/// by one of a few shapes (counted classes, anchors, alternation).
fn pattern(i: usize) -> String {
    let prefix = format!("{:05}", (i * 7_919) % 100_000);
    match i % 4 {
        0 => format!("^{prefix}[0-9]{{3,6}}$"),
        1 => format!("{prefix}[0-9]{{4}}"),
        2 => format!("{prefix}(?:[0-4][0-9]{{2}}|5[0-5][0-9])"),
        _ => format!(r"(?:\+49|0){prefix}[1-9][0-9]*"),
    }
}

/// A number matched by `pattern(i)` (and by no other pattern).
fn hit(i: usize) -> String {
    let prefix = format!("{:05}", (i * 7_919) % 100_000);
    match i % 4 {
        0 => format!("{prefix}1234"),
        1 => format!("{prefix}4711"),
        2 => format!("{prefix}512"),
        _ => format!("+49{prefix}30123"),
    }
}

struct Case {
    patterns: usize,
    connections: usize,
    spec: Vec<(String, Vec<String>)>,
}

impl Case {
    fn new(patterns: usize, connections: usize) -> Self {
        let per = patterns / connections;
        let spec = (0..connections)
            .map(|c| {
                let list = (c * per..(c + 1) * per).map(pattern).collect();
                (format!("conn{c}"), list)
            })
            .collect();
        Self {
            patterns,
            connections,
            spec,
        }
    }

    fn plan(&self, mode: MatchMode) -> DialPlan {
        self.spec
            .iter()
            .fold(DialPlan::builder().match_mode(mode), |b, (id, list)| {
                b.connection(id.clone(), list)
            })
            .build()
            .expect("benchmark plan builds")
    }

    /// The three numbers: hits the first pattern, hits only the last, hits
    /// nothing. For full match the miss is the late number plus a `#`, so
    /// the automaton walks it all before failing; for search (where that
    /// would still be found inside) it is a service code of similar length.
    fn numbers(&self, mode: MatchMode) -> [(&'static str, String); 3] {
        let last = self.patterns - 1;
        let miss = match mode {
            MatchMode::FullMatch => format!("{}#", hit(last)),
            MatchMode::Search => "*#*#*#*#*#*#*#*#*".to_string(),
        };
        [("early", hit(0)), ("late", hit(last)), ("miss", miss)]
    }

    /// The naive reference: every pattern as its own regex, tried in order.
    fn naive(&self, mode: MatchMode) -> Vec<(usize, regex::Regex)> {
        self.spec
            .iter()
            .enumerate()
            .flat_map(|(c, (_, list))| list.iter().map(move |p| (c, p)))
            .map(|(c, p)| {
                let re = match mode {
                    MatchMode::FullMatch => format!("^(?:{p})$"),
                    MatchMode::Search => p.clone(),
                };
                (c, regex::Regex::new(&re).unwrap())
            })
            .collect()
    }
}

fn naive_lookup(naive: &[(usize, regex::Regex)], number: &str) -> Option<usize> {
    naive
        .iter()
        .find(|(_, re)| re.is_match(number))
        .map(|(c, _)| *c)
}

fn check(case: &Case, plan: &DialPlan) {
    let [(_, early), (_, late), (_, miss)] = case.numbers(plan.match_mode());
    assert_eq!(
        plan.lookup(&early).map(|r| r.connection().clone()),
        Some("conn0".to_string())
    );
    let last = format!("conn{}", case.connections - 1);
    assert_eq!(
        plan.lookup(&late).map(|r| r.connection().clone()),
        Some(last)
    );
    assert!(plan.lookup(&miss).is_none());
}

fn bench_lookup(c: &mut Criterion) {
    for mode in [MatchMode::FullMatch, MatchMode::Search] {
        let name = match mode {
            MatchMode::FullMatch => "lookup",
            MatchMode::Search => "lookup_search",
        };
        let mut group = c.benchmark_group(name);
        for (patterns, connections) in SIZES {
            if mode == MatchMode::Search && patterns < 1_000 {
                continue;
            }
            let case = Case::new(patterns, connections);
            let plan = case.plan(mode);
            check(&case, &plan);
            for (kind, number) in case.numbers(mode) {
                group.bench_with_input(BenchmarkId::new(kind, patterns), &number, |b, n| {
                    b.iter(|| plan.lookup(black_box(n)).map(|r| r.pattern_index()))
                });
            }
        }
        group.finish();
    }
}

fn bench_naive(c: &mut Criterion) {
    let mut group = c.benchmark_group("naive");
    for (patterns, connections) in SIZES.into_iter().take(3) {
        let case = Case::new(patterns, connections);
        let naive = case.naive(MatchMode::FullMatch);
        for (kind, number) in case.numbers(MatchMode::FullMatch) {
            group.bench_with_input(BenchmarkId::new(kind, patterns), &number, |b, n| {
                b.iter(|| naive_lookup(&naive, black_box(n)))
            });
        }
    }
    group.finish();
}

fn bench_matches(c: &mut Criterion) {
    let mut group = c.benchmark_group("matches");
    let case = Case::new(1_000, 100);
    let plan = case.plan(MatchMode::FullMatch);
    for (kind, number) in case.numbers(MatchMode::FullMatch) {
        group.bench_with_input(BenchmarkId::new(kind, 1_000), &number, |b, n| {
            b.iter(|| plan.matches(black_box(n)).count())
        });
    }
    group.finish();
}

/// Lookup plus rewrite: captures run for the winning pattern only.
fn bench_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup_rewrite");
    let case = Case::new(1_000, 100);
    let plan = case
        .spec
        .iter()
        .fold(DialPlan::builder(), |b, (id, list)| {
            b.connection(
                id.clone(),
                list.iter()
                    .map(|p| Pattern::new(p.as_str()).with_rewrite("+$0")),
            )
        })
        .build()
        .unwrap();
    for (kind, number) in case.numbers(MatchMode::FullMatch) {
        group.bench_with_input(BenchmarkId::new(kind, 1_000), &number, |b, n| {
            b.iter(|| plan.lookup(black_box(n)).map(|r| r.rewritten().len()))
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for (patterns, connections) in SIZES {
        let case = Case::new(patterns, connections);
        group.bench_function(BenchmarkId::from_parameter(patterns), |b| {
            b.iter(|| case.plan(MatchMode::FullMatch))
        });
    }
    group.finish();
}

/// Prints build time (one cold build) and heap memory of each plan.
fn report_memory() {
    println!("plan memory (DialPlan::memory_usage) and one cold build:");
    for mode in [MatchMode::FullMatch, MatchMode::Search] {
        for (patterns, connections) in SIZES {
            let case = Case::new(patterns, connections);
            let start = Instant::now();
            let plan = case.plan(mode);
            let built = start.elapsed();
            // The smallest lazy DFA cache this plan accepts.
            let probe = case
                .spec
                .iter()
                .fold(DialPlan::builder().match_mode(mode), |b, (id, list)| {
                    b.connection(id.clone(), list)
                })
                .limits(Limits::default().with_cache_capacity(0))
                .build();
            let min_cache = match probe {
                Err(Error::CacheTooSmall { required, .. }) => required,
                other => panic!("unexpected: {other:?}"),
            };
            println!(
                "  {mode:?} {patterns:>6} patterns / {connections:>3} connections: \
                 {:>10} bytes, min cache {min_cache:>9} bytes, built in {built:?}",
                plan.memory_usage()
            );
        }
    }
}

/// Best-of-rounds time per call of `f`, in nanoseconds.
fn best_ns(rounds: usize, iters: u32, mut f: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .fold(f64::INFINITY, f64::min)
}

/// The two acceptance ratios, measured interleaved and best-of-rounds so
/// that load from other processes affects all sizes alike: lookup at 10,000
/// patterns vs. 1 pattern, and the naive loop vs. the plan at 1,000.
fn report_ratios() {
    let cases: Vec<Case> = SIZES.iter().map(|&(p, c)| Case::new(p, c)).collect();
    let plans: Vec<DialPlan> = cases.iter().map(|c| c.plan(MatchMode::FullMatch)).collect();
    let mut best = vec![[f64::INFINITY; 3]; cases.len()];
    for _ in 0..20 {
        for (i, (case, plan)) in cases.iter().zip(&plans).enumerate() {
            for (k, (_, number)) in case.numbers(MatchMode::FullMatch).iter().enumerate() {
                let t = best_ns(1, 20_000, || {
                    black_box(plan.lookup(black_box(number)).map(|r| r.pattern_index()));
                });
                best[i][k] = best[i][k].min(t);
            }
        }
    }
    println!("lookup, best of 20 interleaved rounds (ns): early / late / miss");
    for (case, b) in cases.iter().zip(&best) {
        println!(
            "  {:>6} patterns: {:>6.1} / {:>6.1} / {:>6.1}",
            case.patterns, b[0], b[1], b[2]
        );
    }
    let last = best.len() - 1;
    println!(
        "  10,000 vs 1 pattern: early {:.2}x, late {:.2}x, miss {:.2}x (limit 3x)",
        best[last][0] / best[0][0],
        best[last][1] / best[0][1],
        best[last][2] / best[0][2]
    );
    let case = &cases[2];
    let naive = case.naive(MatchMode::FullMatch);
    println!("naive ordered loop at 1,000 patterns (ns) and plan speed-up:");
    for (k, (kind, number)) in case.numbers(MatchMode::FullMatch).iter().enumerate() {
        let t = best_ns(10, 200, || {
            black_box(naive_lookup(&naive, black_box(number)));
        });
        println!(
            "  {kind:>5}: {t:>9.1} ns, plan {:.0}x faster",
            t / best[2][k]
        );
    }
}

fn main() {
    report_memory();
    report_ratios();
    let mut c = Criterion::default().configure_from_args();
    bench_lookup(&mut c);
    bench_naive(&mut c);
    bench_matches(&mut c);
    bench_rewrite(&mut c);
    bench_build(&mut c);
    c.final_summary();
}
