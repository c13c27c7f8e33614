//! The crate's error type.

/// Why a [`DialPlan`](crate::DialPlan) (or a [`PlanConfig`](crate::PlanConfig))
/// could not be built.
///
/// Every error about one pattern names the connection, the pattern's 1-based
/// index within that connection and the pattern text, so that the message can
/// be shown as is to whoever wrote the configuration.
///
/// ```
/// use siplink_dialplan::{DialPlan, Error};
///
/// let err = DialPlan::new([("pstn", ["0[0-9]{9,10}", "4[0-9"])]).unwrap_err();
/// assert!(matches!(err, Error::InvalidPattern { index: 2, position: 1, .. }));
/// assert_eq!(
///     err.to_string(),
///     "connection \"pstn\", pattern 2 `4[0-9`: unclosed character class (at offset 1)",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A pattern is not a valid regular expression.
    #[error(
        "connection {connection:?}, pattern {index} `{pattern}`: {message} (at offset {position})"
    )]
    InvalidPattern {
        /// The connection the pattern belongs to (its `Display` form).
        connection: String,
        /// 1-based index of the pattern within its connection.
        index: usize,
        /// The pattern as given.
        pattern: String,
        /// 0-based byte offset in `pattern` where the fault starts.
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// A rewrite template is malformed or names a capture group that the
    /// pattern does not have.
    #[error(
        "connection {connection:?}, pattern {index} `{pattern}`: rewrite {template:?}: {message} (at offset {position})"
    )]
    InvalidRewrite {
        /// The connection the pattern belongs to (its `Display` form).
        connection: String,
        /// 1-based index of the pattern within its connection.
        index: usize,
        /// The pattern as given.
        pattern: String,
        /// The rewrite template as given.
        template: String,
        /// 0-based byte offset in `template` where the fault starts.
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// One pattern on its own compiles to an automaton larger than
    /// [`Limits::nfa_size`](crate::Limits::nfa_size) (for example
    /// `[0-9]{1000}{1000}`).
    #[error(
        "connection {connection:?}, pattern {index} `{pattern}`: compiled pattern exceeds the size limit of {limit} bytes"
    )]
    PatternTooLarge {
        /// The connection the pattern belongs to (its `Display` form).
        connection: String,
        /// 1-based index of the pattern within its connection.
        index: usize,
        /// The pattern as given.
        pattern: String,
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// Every pattern compiles on its own, but together they exceed
    /// [`Limits::nfa_size`](crate::Limits::nfa_size).
    #[error(
        "the {patterns} patterns of the plan together exceed the automaton size limit of {limit} bytes (raise Limits::nfa_size or simplify the patterns)"
    )]
    PlanTooLarge {
        /// Number of patterns in the plan.
        patterns: usize,
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// The automaton needs a bigger lazy DFA cache than
    /// [`Limits::cache_capacity`](crate::Limits::cache_capacity) allows.
    #[error(
        "the plan's automaton needs a cache of at least {required} bytes per thread but the limit is {limit} bytes (raise Limits::cache_capacity or simplify the patterns)"
    )]
    CacheTooSmall {
        /// Minimum cache capacity the automaton needs, in bytes.
        required: usize,
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// A plan file could not be read or is malformed.
    #[error("invalid plan configuration: {message}")]
    Config {
        /// What is wrong, with the TOML line and column when known.
        message: String,
    },
    /// The regex engine refused the pattern set for another reason (for
    /// example more patterns than it can number).
    #[error("cannot build the dial plan automaton: {message}")]
    Build {
        /// The engine's message.
        message: String,
    },
}
