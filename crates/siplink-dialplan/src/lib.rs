//! # siplink-dialplan
//!
//! Routing of dialled numbers to connections by dial patterns.
//!
//! A proxy has an ordered list of connections (PBX trunks, carriers), each
//! with an ordered list of dial patterns: regular expressions such as
//! `4[0-9]{3}`, `^0[0-9]{9,10}$` or `.*`. A [`DialPlan`] compiles all the
//! patterns of all the connections into one automaton (a lazy DFA from
//! `regex-automata` over a multi-pattern NFA), so a lookup is one pass over
//! the number, whatever the number of patterns.
//!
//! - [`DialPlan::lookup`] gives the first connection, in order, with a
//!   matching pattern, and which pattern matched ([`Route`]).
//! - [`DialPlan::matches`] gives every matching connection in order, for
//!   failover.
//! - By default a pattern must match the whole number ([`MatchMode::FullMatch`]);
//!   [`MatchMode::Search`] gives plain regex search semantics.
//! - A [`Pattern`] may carry a rewrite template (`$1`, `${name}`, `$$`),
//!   applied by [`Route::rewritten`] to the number when that pattern wins.
//! - Numbers are matched as given; [`normalize_number`] strips spaces,
//!   dashes, dots and parentheses for callers who want that.
//! - Faulty patterns and templates are rejected at build time with an
//!   [`Error`] naming the connection, the pattern and the position; the
//!   [`Limits`] bound the automaton's memory.
//! - [`PlanConfig`] (feature `serde`, on by default) loads a plan from TOML.
//!
//! ```
//! use siplink_dialplan::{DialPlan, Pattern};
//!
//! let plan = DialPlan::new([
//!     ("alice-pbx", vec![Pattern::new("4[0-9]{3}")]),
//!     ("pstn", vec![
//!         Pattern::new("9(0[0-9]+)").with_rewrite("$1"),
//!         Pattern::new("0([0-9]{9,10})").with_rewrite("+44$1"),
//!     ]),
//!     ("fallback", vec![Pattern::new(".*")]),
//! ])?;
//!
//! let route = plan.lookup("4711").unwrap();
//! assert_eq!(*route.connection(), "alice-pbx");
//! assert_eq!(route.rewritten(), "4711");
//!
//! let route = plan.lookup("02079460958").unwrap();
//! assert_eq!((*route.connection(), route.pattern_index()), ("pstn", 1));
//! assert_eq!(route.rewritten(), "+442079460958");
//!
//! let failover: Vec<_> = plan.matches("9030").map(|r| *r.connection()).collect();
//! assert_eq!(failover, ["pstn", "fallback"]);
//! # Ok::<(), siplink_dialplan::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "serde")]
mod config;
mod error;
mod limits;
mod normalize;
mod plan;
mod rewrite;

#[cfg(feature = "serde")]
pub use config::{ConnectionConfig, PlanConfig};
pub use error::Error;
pub use limits::Limits;
pub use normalize::normalize_number;
pub use plan::{DialPlan, DialPlanBuilder, MatchMode, Matches, Pattern, Route};
