//! Resource limits applied when a plan is built and searched.

/// Bounds on the memory and time a [`DialPlan`](crate::DialPlan) may use.
///
/// A plan is compiled into one Thompson NFA which is searched by a lazy DFA:
/// DFA states are built on demand during lookups and kept in a per-thread
/// cache of bounded size. So memory is bounded by
/// `nfa_size + cache_capacity × threads doing lookups at once`, and a lookup
/// takes time linear in the number's length (at worst linear in the length
/// times the automaton size, when the cache is cold).
///
/// ```
/// use siplink_dialplan::Limits;
///
/// let limits = Limits::default()
///     .with_nfa_size(8 << 20)
///     .with_cache_capacity(4 << 20)
///     .with_max_number_len(64);
/// assert_eq!(limits.nfa_size(), 8 << 20);
/// assert_eq!(limits.max_number_len(), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    nfa_size: usize,
    cache_capacity: usize,
    max_number_len: usize,
}

impl Limits {
    /// Default for [`Limits::nfa_size`]: 64 MiB.
    pub const DEFAULT_NFA_SIZE: usize = 64 << 20;
    /// Default for [`Limits::cache_capacity`]: 16 MiB.
    pub const DEFAULT_CACHE_CAPACITY: usize = 16 << 20;
    /// Default for [`Limits::max_number_len`]: 256 bytes.
    pub const DEFAULT_MAX_NUMBER_LEN: usize = 256;

    /// The default limits (same as [`Limits::default`]).
    pub const fn new() -> Self {
        Self {
            nfa_size: Self::DEFAULT_NFA_SIZE,
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
            max_number_len: Self::DEFAULT_MAX_NUMBER_LEN,
        }
    }

    /// Sets the maximum heap size, in bytes, of the compiled automaton of the
    /// whole plan (and of each pattern compiled for a rewrite). A plan over
    /// it fails to build with [`Error::PlanTooLarge`](crate::Error::PlanTooLarge)
    /// or [`Error::PatternTooLarge`](crate::Error::PatternTooLarge).
    pub const fn with_nfa_size(mut self, bytes: usize) -> Self {
        self.nfa_size = bytes;
        self
    }

    /// Sets the capacity, in bytes, of the lazy DFA cache that each thread
    /// doing lookups uses. When full, the cache is cleared and rebuilt, so
    /// memory stays bounded. A plan whose automaton cannot work within it
    /// fails to build with [`Error::CacheTooSmall`](crate::Error::CacheTooSmall).
    pub const fn with_cache_capacity(mut self, bytes: usize) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Sets the longest number, in bytes, that a lookup considers. A longer
    /// number matches nothing: [`DialPlan::lookup`](crate::DialPlan::lookup)
    /// returns `None` and [`DialPlan::matches`](crate::DialPlan::matches)
    /// yields nothing.
    pub const fn with_max_number_len(mut self, bytes: usize) -> Self {
        self.max_number_len = bytes;
        self
    }

    /// Maximum heap size of the compiled automaton, in bytes.
    pub const fn nfa_size(&self) -> usize {
        self.nfa_size
    }

    /// Capacity of each thread's lazy DFA cache, in bytes.
    pub const fn cache_capacity(&self) -> usize {
        self.cache_capacity
    }

    /// Longest number a lookup considers, in bytes.
    pub const fn max_number_len(&self) -> usize {
        self.max_number_len
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}
