//! One clock for every driver: monotonic time from tokio's clock, wall-clock
//! time that moves with it.

use std::time::{Instant, SystemTime};

/// The time source of the tokio drivers (the transaction endpoint, the
/// registration and registrar services, the trunk driver, the proxy).
///
/// Every reading of time in a driver goes through one `Clock`, and the sans-IO
/// cores get their `now` from it:
///
/// * [`now`](Self::now) is monotonic and follows tokio's clock
///   (`tokio::time::Instant::now()`), so a test on a paused runtime
///   (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) moves it,
///   and deadlines a driver sleeps on with `tokio::time::sleep_until` agree with
///   the `now` it feeds its core.
/// * [`wall_now`](Self::wall_now) is wall-clock time: a base taken when the
///   clock was created plus the tokio time elapsed since, so paused-clock tests
///   move it too (tokio's paused clock does not move [`SystemTime::now`]). It is
///   for what must outlive the process (binding times in a shared store,
///   digest nonces) and for display.
///
/// Cheap to copy. [`with_wall_base`](Self::with_wall_base) fixes the wall
/// base, for tests that assert wall-clock values.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use siplink_transport::Clock;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let clock = Clock::with_wall_base(base);
/// let t0 = clock.now();
/// tokio::time::advance(Duration::from_secs(90)).await;
/// assert_eq!(clock.now() - t0, Duration::from_secs(90));
/// assert_eq!(clock.wall_now(), base + Duration::from_secs(90));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    wall_base: SystemTime,
    mono_base: tokio::time::Instant,
}

impl Clock {
    /// A clock whose wall time starts at [`SystemTime::now`].
    pub fn new() -> Clock {
        Clock::with_wall_base(SystemTime::now())
    }

    /// A clock whose wall time is `wall_base` now and moves with tokio's clock.
    pub fn with_wall_base(wall_base: SystemTime) -> Clock {
        Clock {
            wall_base,
            mono_base: tokio::time::Instant::now(),
        }
    }

    /// Monotonic now, from tokio's clock (paused time moves it).
    pub fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// Monotonic now as a tokio instant (to sleep until a deadline).
    pub fn tokio_now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// Wall-clock now: the base plus the tokio time elapsed since the clock was
    /// created.
    pub fn wall_now(&self) -> SystemTime {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.mono_base);
        self.wall_base
            .checked_add(elapsed)
            .unwrap_or(self.wall_base)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}
