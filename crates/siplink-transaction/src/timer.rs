//! Timer configuration and the RFC 3261 / RFC 6026 timer names.

use std::time::{Duration, Instant};

/// The base timer values of RFC 3261 §17.1.1.1 and Table 4.
///
/// Every transaction timer is derived from these: A, E, G start at T1 and double
/// (E and G capped at T2); B, F, H, J and the RFC 6026 timers L and M are 64*T1;
/// I and K are T4; D is 32 s (at least 64*T1). Over reliable transports D, I,
/// J and K are zero and A, E, G are not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// Maximum duration a message remains in the network (default 5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: the transaction timeout (timers B, F, H, J, L, M).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: over unreliable transports 32 s, or 64*T1 if T1 was raised above
    /// 500 ms (the server retransmits its final response for 64*T1); zero over
    /// reliable ones.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            TIMER_D.max(self.timeout())
        }
    }
}

/// Timer D over unreliable transports (RFC 3261 Table 4: "> 32 s").
pub(crate) const TIMER_D: Duration = Duration::from_secs(32);

/// How long a server INVITE transaction waits for the TU before sending
/// 100 Trying itself (RFC 3261 §17.2.1).
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// The transaction timers (RFC 3261 Table 4, RFC 6026 §8), plus the 200 ms
/// 100 Trying timer of the server INVITE transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Client INVITE request retransmission (T1, doubling).
    A,
    /// Client INVITE transaction timeout (64*T1).
    B,
    /// Client INVITE wait for response retransmissions (32 s; 0 reliable).
    D,
    /// Client non-INVITE request retransmission (T1 doubling to T2).
    E,
    /// Client non-INVITE transaction timeout (64*T1).
    F,
    /// Server INVITE non-2xx final response retransmission (T1 doubling to T2).
    G,
    /// Server INVITE wait for ACK (64*T1).
    H,
    /// Server INVITE wait for ACK retransmissions (T4; 0 reliable).
    I,
    /// Server non-INVITE wait for request retransmissions (64*T1; 0 reliable).
    J,
    /// Client non-INVITE wait for response retransmissions (T4; 0 reliable).
    K,
    /// Server INVITE Accepted state: wait for 2xx retransmissions and ACKs (64*T1, RFC 6026).
    L,
    /// Client INVITE Accepted state: absorb 2xx retransmissions (64*T1, RFC 6026).
    M,
    /// Server INVITE: send 100 Trying if the TU has not answered within 200 ms.
    Trying,
}

/// Timers one transaction can have armed at once: at most two in every state
/// (A+B, E+F, G+H; otherwise one), so four slots never fill.
const SLOTS: usize = 4;

/// The armed timers of one transaction: at most one deadline per kind, in a
/// few slots (a transaction has at most two armed at once).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerSet([Option<(Instant, TimerKind)>; SLOTS]);

impl TimerSet {
    /// Arms (or re-arms) `kind` at `at`.
    pub(crate) fn start(&mut self, kind: TimerKind, at: Instant) {
        if let Some(slot) = self.0.iter_mut().flatten().find(|(_, k)| *k == kind) {
            slot.0 = at;
            return;
        }
        if let Some(free) = self.0.iter_mut().find(|s| s.is_none()) {
            *free = Some((at, kind));
            return;
        }
        // Not reached (see SLOTS); should it be, the latest deadline gives way.
        if let Some(latest) = self.0.iter_mut().max_by_key(|s| s.map(|(at, _)| at)) {
            *latest = Some((at, kind));
        }
    }

    /// Disarms `kind`.
    pub(crate) fn cancel(&mut self, kind: TimerKind) {
        for s in &mut self.0 {
            if s.is_some_and(|(_, k)| k == kind) {
                *s = None;
            }
        }
    }

    /// Disarms every timer.
    pub(crate) fn clear(&mut self) {
        self.0 = [None; SLOTS];
    }

    /// The deadline of `kind`, if armed.
    pub(crate) fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.0
            .iter()
            .flatten()
            .find(|(_, k)| *k == kind)
            .map(|&(at, _)| at)
    }

    /// The earliest armed timer (ties: the first kind in declaration order).
    pub(crate) fn earliest(&self) -> Option<(Instant, TimerKind)> {
        self.0.iter().flatten().copied().min()
    }

    /// Number of armed timers.
    pub(crate) fn count(&self) -> usize {
        self.0.iter().flatten().count()
    }

    /// Disarms and returns the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKind)> {
        let (at, kind) = self.earliest().filter(|&(at, _)| at <= now)?;
        self.cancel(kind);
        Some((at, kind))
    }
}

/// Most timers one `handle_timeout` call fires in one transaction: a bound on
/// the loop even with a zero T1 (a timer that re-arms itself at its own
/// deadline); the rest fire at the next call.
pub(crate) const MAX_FIRED: usize = 64;
