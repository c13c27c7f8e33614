//! The engine's own timers: one ordered set of deadlines, each naming what it
//! is for. Cancelling removes the entry; a fired entry is gone.

use std::collections::BTreeMap;
use std::time::Instant;

use super::BranchId;
use super::dialog::DialogKey;

/// `now + after`, or a century on when that does not fit in an [`Instant`]
/// (a configured duration is never a reason to panic).
pub(crate) fn deadline(now: Instant, after: std::time::Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// RFC 3261 §16.6 step 11 / §16.8: an INVITE branch without a final
    /// response for this long is cancelled (or given up with 408).
    C(BranchId),
    /// RFC 4028: the session interval of a dialog ran out without a refresh.
    SessionExpiry(DialogKey),
    /// The dialog reached the configured maximum call duration.
    MaxDuration(DialogKey),
}

/// A deadline's handle: its instant and a sequence number that keeps equal
/// instants apart.
pub(crate) type TimerKey = (Instant, u64);

/// The ordered set of deadlines.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    due: BTreeMap<TimerKey, Timer>,
    seq: u64,
}

impl Timers {
    /// Adds a deadline.
    pub(crate) fn add(&mut self, at: Instant, timer: Timer) -> TimerKey {
        self.seq = self.seq.wrapping_add(1);
        let key = (at, self.seq);
        self.due.insert(key, timer);
        key
    }

    /// Removes a deadline (no effect when it already fired).
    pub(crate) fn cancel(&mut self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.due.remove(&key);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.due.keys().next().map(|k| k.0)
    }

    /// Takes the earliest deadline that is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, Timer)> {
        let (&key, _) = self.due.iter().next()?;
        if key.0 > now {
            return None;
        }
        self.due.remove(&key).map(|t| (key, t))
    }

    /// How many deadlines are pending.
    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }
}
