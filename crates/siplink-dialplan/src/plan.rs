//! The dial plan: building, lookup and failover iteration.

use std::borrow::Cow;
use std::fmt;
use std::iter::FusedIterator;
use std::ops::Range;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;

use regex_automata::hybrid::dfa as lazy;
use regex_automata::nfa::thompson::{self, NFA, WhichCaptures, pikevm};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind, PatternSet, meta};
use regex_syntax::hir::{Dot, Hir, Look, Repetition};

use crate::rewrite::{Rewriter, Template};
use crate::{Error, Limits};

/// How a pattern is matched against a dialled number.
///
/// With the patterns `4[0-9]{3}`, `^0[0-9]{9,10}$` and `.*`:
///
/// | number        | [`FullMatch`](MatchMode::FullMatch) | [`Search`](MatchMode::Search) |
/// |---------------|--------------------|-----------------------------------|
/// | `4711`        | `4[0-9]{3}`        | `4[0-9]{3}`                       |
/// | `14000`       | `.*`               | `4[0-9]{3}` (`4000` inside)       |
/// | `40000`       | `.*`               | `4[0-9]{3}` (`4000` inside)       |
/// | `02081230958` | `^0[0-9]{9,10}$`   | `^0[0-9]{9,10}$`                  |
/// | `902081230958`| `.*`               | `.*` (`^` no longer at the start) |
///
/// ```
/// use siplink_dialplan::{DialPlan, MatchMode};
///
/// let patterns = ["4[0-9]{3}", "^0[0-9]{9,10}$", ".*"];
/// let full = DialPlan::new([("pbx", patterns)]).unwrap();
/// let search = DialPlan::builder()
///     .match_mode(MatchMode::Search)
///     .connection("pbx", patterns)
///     .build()
///     .unwrap();
/// let winner = |plan: &DialPlan<&str>, n| plan.lookup(n).unwrap().pattern_index();
/// assert_eq!(winner(&full, "14000"), 2);
/// assert_eq!(winner(&search, "14000"), 0);
/// assert_eq!(winner(&full, "02081230958"), 1);
/// assert_eq!(winner(&search, "02081230958"), 1);
/// assert_eq!(winner(&search, "902081230958"), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatchMode {
    /// A pattern must match the whole number, as if written `^(?:pattern)$`.
    /// `^` and `$` in the pattern are accepted and change nothing. This is
    /// the default.
    #[default]
    FullMatch,
    /// Plain regex search: a pattern matches if it matches anywhere in the
    /// number, so `^` and `$` matter.
    Search,
}

/// One dial pattern of a connection, with an optional rewrite template.
///
/// The template replaces the text the pattern matched (in
/// [`MatchMode::FullMatch`], the whole number) when this pattern wins a
/// lookup. It may refer to capture groups as `$1`, `${1}` or `${name}`
/// (`$0` is the whole match); `$$` is a literal `$`. A group that did not
/// take part in the match expands to nothing. Digits after `$` are read
/// greedily, so write `${1}0` for group 1 followed by `0`.
///
/// ```
/// use siplink_dialplan::Pattern;
///
/// let p = Pattern::new("0([0-9]{9,10})").with_rewrite("+44$1");
/// assert_eq!(p.regex(), "0([0-9]{9,10})");
/// assert_eq!(p.rewrite(), Some("+44$1"));
/// let q: Pattern = "4[0-9]{3}".into();
/// assert_eq!(q.rewrite(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    regex: String,
    rewrite: Option<String>,
}

impl Pattern {
    /// A pattern without rewrite.
    pub fn new(regex: impl Into<String>) -> Self {
        Self {
            regex: regex.into(),
            rewrite: None,
        }
    }

    /// Sets the rewrite template applied when this pattern wins.
    pub fn with_rewrite(mut self, template: impl Into<String>) -> Self {
        self.rewrite = Some(template.into());
        self
    }

    /// The regular expression.
    pub fn regex(&self) -> &str {
        &self.regex
    }

    /// The rewrite template, if any.
    pub fn rewrite(&self) -> Option<&str> {
        self.rewrite.as_deref()
    }
}

impl From<&str> for Pattern {
    fn from(regex: &str) -> Self {
        Self::new(regex)
    }
}

impl From<String> for Pattern {
    fn from(regex: String) -> Self {
        Self::new(regex)
    }
}

impl From<&String> for Pattern {
    fn from(regex: &String) -> Self {
        Self::new(regex.as_str())
    }
}

/// Collects connections in order, then compiles them into a [`DialPlan`].
///
/// ```
/// use siplink_dialplan::{DialPlanBuilder, Limits, MatchMode, Pattern};
///
/// let plan = DialPlanBuilder::new()
///     .match_mode(MatchMode::FullMatch)
///     .limits(Limits::default().with_max_number_len(32))
///     .connection(1u32, ["4[0-9]{3}"])
///     .connection(2u32, [Pattern::new("9(0[0-9]+)").with_rewrite("$1")])
///     .build()
///     .unwrap();
/// let route = plan.lookup("9030123").unwrap();
/// assert_eq!(*route.connection(), 2);
/// assert_eq!(route.rewritten(), "030123");
/// ```
#[derive(Debug, Clone)]
pub struct DialPlanBuilder<C> {
    mode: MatchMode,
    limits: Limits,
    connections: Vec<(C, Vec<Pattern>)>,
}

impl<C> Default for DialPlanBuilder<C> {
    fn default() -> Self {
        Self {
            mode: MatchMode::default(),
            limits: Limits::default(),
            connections: Vec::new(),
        }
    }
}

impl<C> DialPlanBuilder<C> {
    /// An empty builder with [`MatchMode::FullMatch`] and default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how patterns match numbers.
    pub fn match_mode(mut self, mode: MatchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Appends a connection with its patterns, in order.
    pub fn connection<I>(mut self, id: C, patterns: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Pattern>,
    {
        self.connections
            .push((id, patterns.into_iter().map(Into::into).collect()));
        self
    }

    /// Compiles every pattern of every connection into one automaton.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPattern`] and [`Error::InvalidRewrite`] for the first
    /// faulty pattern or template, in order; [`Error::PatternTooLarge`],
    /// [`Error::PlanTooLarge`] and [`Error::CacheTooSmall`] when the
    /// [`Limits`] are exceeded.
    pub fn build(self) -> Result<DialPlan<C>, Error>
    where
        C: fmt::Display,
    {
        DialPlan::compile(self)
    }
}

/// The compiled automaton, shared with the cache factory of the pool.
#[derive(Debug)]
struct Engine {
    dfa: lazy::DFA,
    pikevm: pikevm::PikeVM,
}

/// Per-thread mutable search state.
struct SearchCache {
    dfa: lazy::Cache,
    /// Created the first time the lazy DFA has to give up (only possible
    /// with a Unicode word boundary and a non-ASCII number).
    pikevm: Option<pikevm::Cache>,
}

type CacheFn = Box<dyn Fn() -> SearchCache + Send + Sync + UnwindSafe + RefUnwindSafe>;

#[derive(Debug)]
struct PatternEntry {
    text: String,
    connection: usize,
    index: usize,
    rewriter: Option<Rewriter>,
}

#[derive(Debug)]
struct ConnectionEntry<C> {
    id: C,
    /// Its patterns' ids: a range of `DialPlan::patterns`.
    patterns: Range<usize>,
}

/// An immutable, ordered set of connections and their dial patterns,
/// compiled into a single automaton so that a lookup is one pass over the
/// number, whatever the number of patterns.
///
/// Patterns are numbered in connection order, then pattern order; a lookup
/// finds the set of all patterns matching the number in one pass and picks
/// the lowest. So the first connection (in order) with a matching pattern
/// wins, and within it the first matching pattern.
///
/// A plan is `Send + Sync`. To change the configuration at run time, build a
/// new plan and swap it in; lookups already running keep the old one:
///
/// ```
/// use std::sync::{Arc, RwLock};
/// use siplink_dialplan::DialPlan;
///
/// let plan: DialPlan = DialPlan::new([
///     ("alice-pbx".to_string(), vec!["4[0-9]{3}"]),
///     ("pstn".to_string(), vec!["^0[0-9]{9,10}$", ".*"]),
/// ])?;
/// let current = RwLock::new(Arc::new(plan));
///
/// // A call: take a snapshot (cheap), then route on it.
/// let snapshot = Arc::clone(&current.read().unwrap());
/// let route = snapshot.lookup("4711").unwrap();
/// assert_eq!(route.connection(), "alice-pbx");
/// assert_eq!(route.pattern(), "4[0-9]{3}");
/// // Failover: every connection that matches, in order.
/// let order: Vec<&str> = snapshot.matches("4711").map(|r| r.connection().as_str()).collect();
/// assert_eq!(order, ["alice-pbx", "pstn"]);
///
/// // A configuration change: build first, then swap.
/// let next = DialPlan::new([("pstn".to_string(), vec![".*"])])?;
/// *current.write().unwrap() = Arc::new(next);
/// assert_eq!(current.read().unwrap().lookup("4711").unwrap().connection(), "pstn");
/// # Ok::<(), siplink_dialplan::Error>(())
/// ```
pub struct DialPlan<C = String> {
    mode: MatchMode,
    limits: Limits,
    connections: Vec<ConnectionEntry<C>>,
    patterns: Vec<PatternEntry>,
    engine: Arc<Engine>,
    caches: Pool<SearchCache, CacheFn>,
}

impl<C> DialPlan<C> {
    /// A builder, to set a [`MatchMode`] or [`Limits`].
    pub fn builder() -> DialPlanBuilder<C> {
        DialPlanBuilder::new()
    }

    /// Builds a plan from `(connection id, patterns)` pairs, in order, with
    /// [`MatchMode::FullMatch`] and default [`Limits`].
    ///
    /// # Errors
    ///
    /// As [`DialPlanBuilder::build`].
    pub fn new<I, P>(connections: I) -> Result<Self, Error>
    where
        C: fmt::Display,
        I: IntoIterator<Item = (C, P)>,
        P: IntoIterator,
        P::Item: Into<Pattern>,
    {
        connections
            .into_iter()
            .fold(DialPlanBuilder::new(), |b, (id, patterns)| {
                b.connection(id, patterns)
            })
            .build()
    }

    fn compile(builder: DialPlanBuilder<C>) -> Result<Self, Error>
    where
        C: fmt::Display,
    {
        let DialPlanBuilder {
            mode,
            limits,
            connections: input,
        } = builder;
        let mut parser = regex_syntax::ParserBuilder::new().build();
        let mut connections = Vec::with_capacity(input.len());
        let mut patterns = Vec::new();
        let mut hirs = Vec::new();
        for (ci, (id, list)) in input.into_iter().enumerate() {
            let first = patterns.len();
            for (pi, Pattern { regex, rewrite }) in list.into_iter().enumerate() {
                let hir = parser.parse(&regex).map_err(|err| {
                    let (position, message) = syntax_fault(&err);
                    Error::InvalidPattern {
                        connection: id.to_string(),
                        index: pi + 1,
                        pattern: regex.clone(),
                        position,
                        message,
                    }
                })?;
                let rewriter = match rewrite {
                    None => None,
                    Some(template) => Some(
                        build_rewriter(&hir, &template, mode, &limits)
                            .map_err(|fault| fault.into_error(&id, pi, &regex, template))?,
                    ),
                };
                hirs.push(wrap_for_set(hir, mode));
                patterns.push(PatternEntry {
                    text: regex,
                    connection: ci,
                    index: pi,
                    rewriter,
                });
            }
            connections.push(ConnectionEntry {
                id,
                patterns: first..patterns.len(),
            });
        }

        let nfa = compile_nfa(&hirs, limits.nfa_size()).map_err(|fault| {
            if let Some(message) = fault {
                return Error::Build { message };
            }
            // Name the culprit if one pattern alone is too big.
            for (hir, entry) in hirs.iter().zip(&patterns) {
                if compile_nfa(std::slice::from_ref(hir), limits.nfa_size()).is_err() {
                    return Error::PatternTooLarge {
                        connection: connections[entry.connection].id.to_string(),
                        index: entry.index + 1,
                        pattern: entry.text.clone(),
                        limit: limits.nfa_size(),
                    };
                }
            }
            Error::PlanTooLarge {
                patterns: patterns.len(),
                limit: limits.nfa_size(),
            }
        })?;
        drop(hirs);

        let config = lazy::Config::new()
            .match_kind(MatchKind::All)
            .cache_capacity(limits.cache_capacity())
            .unicode_word_boundary(true);
        let required = config
            .get_minimum_cache_capacity(&nfa)
            .map_err(|err| Error::Build {
                message: err.to_string(),
            })?;
        if required > limits.cache_capacity() {
            return Err(Error::CacheTooSmall {
                required,
                limit: limits.cache_capacity(),
            });
        }
        let dfa = lazy::Builder::new()
            .configure(config)
            .build_from_nfa(nfa.clone())
            .map_err(|err| Error::Build {
                message: err.to_string(),
            })?;
        let pikevm = pikevm::PikeVM::builder()
            .configure(pikevm::Config::new().match_kind(MatchKind::All))
            .build_from_nfa(nfa)
            .map_err(|err| Error::Build {
                message: err.to_string(),
            })?;
        let engine = Arc::new(Engine { dfa, pikevm });
        let for_pool = Arc::clone(&engine);
        let create: CacheFn = Box::new(move || SearchCache {
            dfa: for_pool.dfa.create_cache(),
            pikevm: None,
        });
        Ok(Self {
            mode,
            limits,
            connections,
            patterns,
            engine,
            caches: Pool::new(create),
        })
    }

    /// The first connection, in order, with a pattern matching `number`, and
    /// which pattern matched; `None` if no pattern matches or `number` is
    /// longer than [`Limits::max_number_len`].
    ///
    /// One pass over the number; the rewrite, if any, is computed only when
    /// [`Route::rewritten`] is called.
    ///
    /// ```
    /// use siplink_dialplan::DialPlan;
    ///
    /// let plan = DialPlan::new([("ext", ["4[0-9]{3}"]), ("pstn", ["0[0-9]+"])]).unwrap();
    /// let route = plan.lookup("030123").unwrap();
    /// assert_eq!((*route.connection(), route.pattern_index()), ("pstn", 0));
    /// assert!(plan.lookup("14000").is_none());
    /// ```
    pub fn lookup<'a>(&'a self, number: &'a str) -> Option<Route<'a, C>> {
        let mut best = usize::MAX;
        self.for_each_match(number, |id| best = best.min(id));
        (best != usize::MAX).then_some(Route {
            plan: self,
            number,
            pattern: best,
        })
    }

    /// Every connection with a pattern matching `number`, in order, each with
    /// its first matching pattern: the failover list. Its first item is
    /// [`DialPlan::lookup`]'s result.
    ///
    /// ```
    /// use siplink_dialplan::DialPlan;
    ///
    /// let plan = DialPlan::new([
    ///     ("a", vec!["5[0-9]+"]),
    ///     ("b", vec!["4[0-9]{3}", "4.*"]),
    ///     ("c", vec![".*"]),
    /// ]).unwrap();
    /// let routes: Vec<_> = plan
    ///     .matches("4711")
    ///     .map(|r| (*r.connection(), r.pattern_index()))
    ///     .collect();
    /// assert_eq!(routes, [("b", 0), ("c", 0)]);
    /// ```
    pub fn matches<'a>(&'a self, number: &'a str) -> Matches<'a, C> {
        let mut ids = Vec::new();
        self.for_each_match(number, |id| ids.push(id));
        ids.sort_unstable();
        ids.dedup_by_key(|id| self.patterns[*id].connection);
        Matches {
            plan: self,
            number,
            ids: ids.into_iter(),
        }
    }

    /// Calls `f` with the id of every pattern matching `number`, in no
    /// particular order, each once.
    fn for_each_match(&self, number: &str, mut f: impl FnMut(usize)) {
        if number.len() > self.limits.max_number_len() {
            return;
        }
        let haystack = number.as_bytes();
        let mut cache = self.caches.get();
        let cache = &mut *cache;
        if walk_lazy_dfa(&self.engine.dfa, &mut cache.dfa, haystack, &mut f).is_ok() {
            return;
        }
        // The lazy DFA gave up (a quit byte: Unicode word boundary and a
        // non-ASCII number). The PikeVM handles everything, more slowly.
        let vm = &self.engine.pikevm;
        let vm_cache = cache.pikevm.get_or_insert_with(|| vm.create_cache());
        let mut set = PatternSet::new(vm.pattern_len());
        let input = Input::new(haystack).anchored(Anchored::Yes);
        vm.which_overlapping_matches(vm_cache, &input, &mut set);
        set.iter().for_each(|id| f(id.as_usize()));
    }

    /// The match mode the plan was built with.
    pub fn match_mode(&self) -> MatchMode {
        self.mode
    }

    /// The limits the plan was built with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of connections, including those without patterns.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Total number of patterns over all connections.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// The connection ids, in order.
    pub fn connections(&self) -> impl ExactSizeIterator<Item = &C> + '_ {
        self.connections.iter().map(|c| &c.id)
    }

    /// Heap memory of the compiled plan in bytes: the automaton, the
    /// capturing regexes of patterns with a rewrite, and the pattern texts.
    ///
    /// Not included: the connection ids' own heap data, and the lazy DFA
    /// cache of each thread doing lookups, which grows up to
    /// [`Limits::cache_capacity`].
    pub fn memory_usage(&self) -> usize {
        let nfa: &NFA = self.engine.dfa.get_nfa();
        nfa.memory_usage()
            + self.engine.dfa.memory_usage()
            + self.connections.capacity() * std::mem::size_of::<ConnectionEntry<C>>()
            + self.patterns.capacity() * std::mem::size_of::<PatternEntry>()
            + self
                .patterns
                .iter()
                .map(|p| p.text.capacity() + p.rewriter.as_ref().map_or(0, Rewriter::memory_usage))
                .sum::<usize>()
    }
}

impl<C: fmt::Debug> fmt::Debug for DialPlan<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DialPlan")
            .field("mode", &self.mode)
            .field("limits", &self.limits)
            .field("connections", &DebugList(self))
            .finish()
    }
}

/// Helper printing `(connection, [patterns])` pairs.
struct DebugList<'a, C>(&'a DialPlan<C>);

impl<C: fmt::Debug> fmt::Debug for DebugList<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        f.debug_list()
            .entries(plan.connections.iter().map(|c| {
                let texts: Vec<&str> = plan.patterns[c.patterns.clone()]
                    .iter()
                    .map(|p| p.text.as_str())
                    .collect();
                (&c.id, texts)
            }))
            .finish()
    }
}

/// Walks the lazy DFA over the whole number. Every pattern ends in `\z`, so
/// matches can only be reported after the end-of-input transition, each
/// pattern at most once. `Err` means the DFA gave up.
fn walk_lazy_dfa(
    dfa: &lazy::DFA,
    cache: &mut lazy::Cache,
    haystack: &[u8],
    f: &mut impl FnMut(usize),
) -> Result<(), ()> {
    let input = Input::new(haystack).anchored(Anchored::Yes);
    let mut sid = dfa.start_state_forward(cache, &input).map_err(drop)?;
    for &byte in haystack {
        if sid.is_tagged() {
            if sid.is_dead() {
                return Ok(());
            }
            if sid.is_quit() {
                return Err(());
            }
        }
        sid = dfa.next_state(cache, sid, byte).map_err(drop)?;
    }
    if sid.is_dead() {
        return Ok(());
    }
    if sid.is_quit() {
        return Err(());
    }
    sid = dfa.next_eoi_state(cache, sid).map_err(drop)?;
    if sid.is_match() {
        for i in 0..dfa.match_len(cache, sid) {
            f(dfa.match_pattern(cache, sid, i).as_usize());
        }
    }
    Ok(())
}

/// The form a pattern takes in the multi-pattern automaton:
/// `\A(?:p)\z` for full match, `\A.*(?:p).*\z` for search. Both make a
/// pattern match only at the end of the number, so the automaton reports
/// each matching pattern once.
///
/// The search is also anchored, so the leading `\A` changes nothing for the
/// lazy DFA; it is there because the PikeVM's `which_overlapping_matches`
/// (regex-automata 0.4.19) does not honour `Anchored::Yes` and would
/// otherwise find matches starting after the first byte.
fn wrap_for_set(hir: Hir, mode: MatchMode) -> Hir {
    let start = Hir::look(Look::Start);
    let end = Hir::look(Look::End);
    match mode {
        MatchMode::FullMatch => Hir::concat(vec![start, hir, end]),
        MatchMode::Search => Hir::concat(vec![start, any_star(), hir, any_star(), end]),
    }
}

fn any_star() -> Hir {
    Hir::repetition(Repetition {
        min: 0,
        max: None,
        greedy: true,
        sub: Box::new(Hir::dot(Dot::AnyChar)),
    })
}

/// Why the NFA could not be compiled: over the size limit (`None`) or
/// another engine error.
type NfaFault = Option<String>;

fn compile_nfa(hirs: &[Hir], limit: usize) -> Result<NFA, NfaFault> {
    thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .nfa_size_limit(Some(limit))
                .which_captures(WhichCaptures::None),
        )
        .build_many_from_hir(hirs)
        .map_err(|err| match err.size_limit() {
            Some(_) => None,
            None => Some(err.to_string()),
        })
}

fn syntax_fault(err: &regex_syntax::Error) -> (usize, String) {
    match err {
        regex_syntax::Error::Parse(e) => (e.span().start.offset, e.kind().to_string()),
        regex_syntax::Error::Translate(e) => (e.span().start.offset, e.kind().to_string()),
        other => (0, other.to_string()),
    }
}

/// Why a rewrite could not be set up.
enum RewriteFault {
    Template { position: usize, message: String },
    TooLarge { limit: usize },
    Build(String),
}

impl RewriteFault {
    fn into_error<C: fmt::Display>(
        self,
        id: &C,
        pattern_index: usize,
        pattern: &str,
        template: String,
    ) -> Error {
        let connection = id.to_string();
        let index = pattern_index + 1;
        let pattern = pattern.to_owned();
        match self {
            Self::Template { position, message } => Error::InvalidRewrite {
                connection,
                index,
                pattern,
                template,
                position,
                message,
            },
            Self::TooLarge { limit } => Error::PatternTooLarge {
                connection,
                index,
                pattern,
                limit,
            },
            Self::Build(message) => Error::Build { message },
        }
    }
}

fn build_rewriter(
    hir: &Hir,
    template: &str,
    mode: MatchMode,
    limits: &Limits,
) -> Result<Rewriter, RewriteFault> {
    let capturing = match mode {
        MatchMode::FullMatch => Hir::concat(vec![
            Hir::look(Look::Start),
            hir.clone(),
            Hir::look(Look::End),
        ]),
        MatchMode::Search => hir.clone(),
    };
    // Numbers are short (`Limits::max_number_len`), so the NFA-based
    // capture engines are fast enough; leaving the DFAs out keeps each
    // rewrite's memory bounded by its NFA.
    let config = meta::Config::new()
        .nfa_size_limit(Some(limits.nfa_size()))
        .hybrid(false)
        .dfa(false);
    let regex = meta::Builder::new()
        .configure(config)
        .build_from_hir(&capturing)
        .map_err(|err| match err.size_limit() {
            Some(limit) => RewriteFault::TooLarge { limit },
            None => RewriteFault::Build(err.to_string()),
        })?;
    let template =
        Template::parse(template, regex.group_info()).map_err(|e| RewriteFault::Template {
            position: e.position,
            message: e.message,
        })?;
    Ok(Rewriter::new(regex, template))
}

/// The outcome of a successful lookup: which connection, which of its
/// patterns, and the rewritten number.
pub struct Route<'a, C> {
    plan: &'a DialPlan<C>,
    number: &'a str,
    pattern: usize,
}

impl<'a, C> Route<'a, C> {
    fn entry(&self) -> &'a PatternEntry {
        &self.plan.patterns[self.pattern]
    }

    /// The connection's id.
    pub fn connection(&self) -> &'a C {
        &self.plan.connections[self.entry().connection].id
    }

    /// The connection's 0-based position in the plan.
    pub fn connection_index(&self) -> usize {
        self.entry().connection
    }

    /// The 0-based index of the matching pattern within its connection.
    pub fn pattern_index(&self) -> usize {
        self.entry().index
    }

    /// The matching pattern, as given.
    pub fn pattern(&self) -> &'a str {
        &self.entry().text
    }

    /// The number that was looked up.
    pub fn number(&self) -> &'a str {
        self.number
    }

    /// Whether the matching pattern has a rewrite template.
    pub fn has_rewrite(&self) -> bool {
        self.entry().rewriter.is_some()
    }

    /// The number to dial on the connection: the rewritten number if the
    /// pattern has a rewrite, else the number itself (borrowed).
    ///
    /// Runs the winning pattern's capturing regex, once per call.
    ///
    /// ```
    /// use siplink_dialplan::{DialPlan, Pattern};
    ///
    /// let plan = DialPlan::new([(
    ///     "uk",
    ///     [Pattern::new("9?0(?<rest>[0-9]{9,10})").with_rewrite("+44${rest}")],
    /// )])
    /// .unwrap();
    /// assert_eq!(plan.lookup("902079460958").unwrap().rewritten(), "+442079460958");
    /// ```
    pub fn rewritten(&self) -> Cow<'a, str> {
        match &self.entry().rewriter {
            Some(rewriter) => rewriter.apply(self.number),
            None => Cow::Borrowed(self.number),
        }
    }
}

/// `NAME (pattern N: PATTERN) as OUTPUT`, with `N` counted from 1 within
/// the connection and `OUTPUT` the [rewritten](Route::rewritten) number.
///
/// ```
/// use siplink_dialplan::{DialPlan, Pattern};
///
/// let plan = DialPlan::new([
///     ("alice-pbx", vec![Pattern::new("4[0-9]{3}")]),
///     ("pstn", vec![Pattern::new("5"), Pattern::new("9(0[0-9]+)").with_rewrite("$1")]),
/// ])
/// .unwrap();
/// let line = |n| format!("{n} -> {}", plan.lookup(n).unwrap());
/// assert_eq!(line("4711"), "4711 -> alice-pbx (pattern 1: 4[0-9]{3}) as 4711");
/// assert_eq!(line("9030"), "9030 -> pstn (pattern 2: 9(0[0-9]+)) as 030");
/// ```
impl<C: fmt::Display> fmt::Display for Route<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pattern {}: {}) as {}",
            self.connection(),
            self.pattern_index() + 1,
            self.pattern(),
            self.rewritten()
        )
    }
}

impl<C> Clone for Route<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Route<'_, C> {}

impl<C: fmt::Debug> fmt::Debug for Route<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("connection", self.connection())
            .field("pattern_index", &self.pattern_index())
            .field("pattern", &self.pattern())
            .field("number", &self.number)
            .finish()
    }
}

/// Iterator over the connections matching a number, in order; see
/// [`DialPlan::matches`].
pub struct Matches<'a, C> {
    plan: &'a DialPlan<C>,
    number: &'a str,
    ids: std::vec::IntoIter<usize>,
}

impl<'a, C> Iterator for Matches<'a, C> {
    type Item = Route<'a, C>;

    fn next(&mut self) -> Option<Self::Item> {
        self.ids.next().map(|pattern| Route {
            plan: self.plan,
            number: self.number,
            pattern,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }
}

impl<C> ExactSizeIterator for Matches<'_, C> {}

impl<C> FusedIterator for Matches<'_, C> {}

impl<C: fmt::Debug> fmt::Debug for Matches<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matches")
            .field("number", &self.number)
            .field("remaining", &self.ids.len())
            .finish()
    }
}
