//! Many registrations on one endpoint.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use siplink_message::Message;

use crate::config::{RegistrationConfig, TargetAddr};
use crate::error::Error;
use crate::registration::{FailureReason, Input, Output, Registration, State};

/// Flow re-registers due within this horizon are paced (later ones are
/// already held back by their own rate limit).
const FLOW_PACING_HORIZON: Duration = Duration::from_secs(60);

/// Names one registration in a [`Registrations`] manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistrationId(pub u64);

/// Manager policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerConfig {
    /// First REGISTERs (after [`Registrations::add`] or an in-place
    /// [`Registrations::update`]) are spread at this many per second, each at
    /// a random point of its slot (default 50/s): adding 10,000 at once after
    /// a restart takes 200 s instead of one burst.
    pub start_rate: f64,
    /// On [`Registrations::shutdown`], the unregisters are spread at this
    /// many per second (default 2000/s: 10,000 registrations unregister over
    /// 5 s instead of in one burst that a registrar's socket buffer drops).
    pub stop_rate: f64,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            start_rate: 50.0,
            stop_rate: 2000.0,
        }
    }
}

/// What the manager tells the driver, in order.
#[allow(clippy::large_enum_variant)] // drained by the driver after every call
#[derive(Debug, Clone)]
pub enum Event {
    /// Send a REGISTER for `id`; report its outcome with [`Registrations::handle_input`].
    Send {
        /// The registration.
        id: RegistrationId,
        /// The request.
        request: Message,
        /// Where to send it (a host name is resolved for this send).
        target: TargetAddr,
        /// See [`Output::Send`]: reuse the previous resolved address.
        reuse_address: bool,
    },
    /// The state of `id` changed.
    StateChanged {
        /// The registration.
        id: RegistrationId,
        /// Its new state.
        state: State,
    },
    /// Send an RFC 5626 keepalive on the flow of `id`.
    Keepalive {
        /// The registration.
        id: RegistrationId,
        /// The flow's far end.
        target: TargetAddr,
    },
    /// `id` finished unregistering and is gone.
    Removed {
        /// The registration.
        id: RegistrationId,
    },
}

struct Entry {
    reg: Registration,
    wake: Option<Instant>,
}

/// Runs many registrations: one wake index, start-up staggering, and an event
/// queue drained by the driver. Sans-IO like [`Registration`].
///
/// The core vocabulary of the workspace. Driver loop: sleep until
/// [`poll_timeout`](Self::poll_timeout), call
/// [`handle_timeout`](Self::handle_timeout); feed transaction outcomes to
/// [`handle_input`](Self::handle_input); after each call, act on every
/// [`Event`] from [`poll_output`](Self::poll_output) until it returns `None`.
pub struct Registrations {
    cfg: ManagerConfig,
    rng: StdRng,
    regs: HashMap<RegistrationId, Entry>,
    wakes: BTreeSet<(Instant, RegistrationId)>,
    next_slot: Option<Instant>,
    /// Registrations whose unregister `shutdown` scheduled, by time.
    stops: BTreeSet<(Instant, RegistrationId)>,
    next_id: u64,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for Registrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrations")
            .field("cfg", &self.cfg)
            .field("registrations", &self.regs.len())
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Default for Registrations {
    fn default() -> Self {
        Registrations::new(ManagerConfig::default())
    }
}

impl Registrations {
    /// A manager with an operating-system-seeded random source.
    pub fn new(cfg: ManagerConfig) -> Self {
        Registrations::with_rng(cfg, StdRng::from_os_rng())
    }

    /// A manager whose registrations draw their randomness from `rng`.
    pub fn with_rng(cfg: ManagerConfig, rng: StdRng) -> Self {
        Registrations {
            cfg,
            rng,
            regs: HashMap::new(),
            wakes: BTreeSet::new(),
            next_slot: None,
            stops: BTreeSet::new(),
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// Number of registrations (including ones still unregistering).
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// The ids of all registrations, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = RegistrationId> + '_ {
        self.regs.keys().copied()
    }

    /// The registration `id`.
    pub fn get(&self, id: RegistrationId) -> Option<&Registration> {
        self.regs.get(&id).map(|e| &e.reg)
    }

    /// The current state of `id` (the watch; changes are also reported as
    /// [`Event::StateChanged`]).
    pub fn state(&self, id: RegistrationId) -> Option<&State> {
        self.get(id).map(Registration::state)
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let w = self.wakes.first().map(|&(t, _)| t);
        let s = self.stops.first().map(|&(t, _)| t);
        match (w, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When `id`'s paced unregister is due, if `shutdown` scheduled one.
    fn stop_scheduled(&self, id: RegistrationId) -> Option<Instant> {
        self.stops.iter().find(|&&(_, i)| i == id).map(|&(t, _)| t)
    }

    /// The next event, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next start slot: slots are `1 / start_rate` apart, and the start is
    /// at a random point within its slot.
    fn slot(&mut self, now: Instant) -> Instant {
        let rate = if self.cfg.start_rate.is_finite() && self.cfg.start_rate > 0.0 {
            self.cfg.start_rate
        } else {
            f64::MAX
        };
        let interval = Duration::from_secs_f64((1.0 / rate).min(3600.0));
        let base = self.next_slot.map_or(now, |s| s.max(now));
        self.next_slot = Some(base + interval);
        let off = interval.mul_f64(self.rng.random_range(0.0..1.0));
        base + off
    }

    /// Adds a registration; its first REGISTER is staggered (see
    /// [`ManagerConfig::start_rate`]).
    pub fn add(&mut self, cfg: RegistrationConfig, now: Instant) -> Result<RegistrationId, Error> {
        let reg = Registration::with_rng(cfg, StdRng::from_rng(&mut self.rng))?;
        let id = RegistrationId(self.next_id);
        self.next_id += 1;
        self.regs.insert(id, Entry { reg, wake: None });
        let at = self.slot(now);
        self.with_reg(id, |r| r.start(at));
        Ok(id)
    }

    /// Removes a registration: it unregisters (bounded by
    /// [`Timing::unregister_timeout`](crate::Timing::unregister_timeout)) and is
    /// reported as [`Event::Removed`] when gone.
    pub fn remove(&mut self, id: RegistrationId, now: Instant) -> Result<(), Error> {
        if !self.regs.contains_key(&id) {
            return Err(Error::UnknownRegistration(id));
        }
        if let Some(t) = self.stop_scheduled(id) {
            self.stops.remove(&(t, id));
        }
        self.with_reg(id, |r| r.handle_input(Input::Shutdown, now));
        Ok(())
    }

    /// Changes a registration's configuration. When the binding stays the same
    /// (registrar, AOR, contact user, local address, transport, instance id)
    /// it is updated in place and re-registers at the next start slot;
    /// otherwise the old binding is unregistered under a new id (reported as
    /// [`Event::Removed`] when gone) and `id` starts afresh with `cfg`.
    /// A registration being removed cannot be updated
    /// ([`Error::UnknownRegistration`]).
    pub fn update(
        &mut self,
        id: RegistrationId,
        cfg: RegistrationConfig,
        now: Instant,
    ) -> Result<(), Error> {
        let Some(entry) = self.regs.get(&id) else {
            return Err(Error::UnknownRegistration(id));
        };
        if entry.reg.is_shutting_down() || self.stop_scheduled(id).is_some() {
            return Err(Error::UnknownRegistration(id));
        }
        if entry.reg.same_identity(&cfg) {
            let at = self.slot(now);
            let mut result = Ok(());
            self.with_reg(id, |r| result = r.reconfigure(cfg, at));
            return result;
        }
        let fresh = Registration::with_rng(cfg, StdRng::from_rng(&mut self.rng))?;
        let old_id = RegistrationId(self.next_id);
        self.next_id += 1;
        if let Some(mut old) = self.regs.remove(&id) {
            if let Some(w) = old.wake.take() {
                self.wakes.remove(&(w, id));
            }
            self.regs.insert(old_id, old);
            self.with_reg(old_id, |r| r.handle_input(Input::Shutdown, now));
        }
        self.regs.insert(
            id,
            Entry {
                reg: fresh,
                wake: None,
            },
        );
        let at = self.slot(now);
        self.with_reg(id, |r| r.start(at));
        Ok(())
    }

    /// Replaces the targets of `id` (for example after re-resolving its
    /// registrar's name).
    pub fn set_targets(
        &mut self,
        id: RegistrationId,
        targets: Vec<TargetAddr>,
    ) -> Result<(), Error> {
        let e = self
            .regs
            .get_mut(&id)
            .ok_or(Error::UnknownRegistration(id))?;
        e.reg.set_targets(targets);
        Ok(())
    }

    /// Feeds an input to `id` (responses, transaction timeouts, transport
    /// errors, flow closures). The prompt re-register after a
    /// [`Input::FlowClosed`] takes a start slot (see
    /// [`ManagerConfig::start_rate`]), so that many flows dropping at once do
    /// not cause a burst.
    /// Fails with [`Error::UnknownRegistration`] for an id that is gone.
    pub fn handle_input(
        &mut self,
        id: RegistrationId,
        input: Input,
        now: Instant,
    ) -> Result<(), Error> {
        if !self.regs.contains_key(&id) {
            return Err(Error::UnknownRegistration(id));
        }
        let flow_closed = matches!(input, Input::FlowClosed);
        self.with_reg(id, |r| r.handle_input(input, now));
        if flow_closed
            && let Some(State::Retrying {
                reason: FailureReason::FlowClosed,
                at,
            }) = self.state(id).cloned()
            && at <= now + FLOW_PACING_HORIZON
        {
            // Many flows often drop together (one connection to the
            // registrar, or a proxy restart): their re-registers share the
            // start-up pacing instead of all going out within seconds.
            let slot = self.slot(now);
            if slot > at {
                self.with_reg(id, |r| r.defer_flow_reregister(slot));
            }
        }
        Ok(())
    }

    /// Unregisters everything (on endpoint shutdown). The unregisters are
    /// paced at [`ManagerConfig::stop_rate`]: the first at `now`, then one
    /// every `1 / stop_rate`. Each is bounded by its own
    /// [`Timing::unregister_timeout`](crate::Timing::unregister_timeout), so
    /// everything is gone at most [`stop_span`](Self::stop_span) plus that
    /// timeout after `now`.
    pub fn shutdown(&mut self, now: Instant) {
        let mut ids: Vec<_> = self
            .regs
            .iter()
            .filter(|(_, e)| !e.reg.is_shutting_down())
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        let scheduled: HashSet<RegistrationId> = self.stops.iter().map(|&(_, id)| id).collect();
        ids.retain(|id| !scheduled.contains(id));
        let interval = self.stop_interval();
        let base = self
            .stops
            .last()
            .map_or(now, |&(t, _)| (t + interval).max(now));
        for (i, id) in ids.into_iter().enumerate() {
            let at = base + interval.mul_f64(i as f64);
            if at <= now {
                self.with_reg(id, |r| r.handle_input(Input::Shutdown, now));
            } else {
                self.stops.insert((at, id));
            }
        }
    }

    /// How long the unregisters of a [`shutdown`](Self::shutdown) of the
    /// current registrations are spread over (`(len - 1) / stop_rate`).
    pub fn stop_span(&self) -> Duration {
        self.stop_interval()
            .mul_f64(self.regs.len().saturating_sub(1) as f64)
    }

    fn stop_interval(&self) -> Duration {
        let rate = self.cfg.stop_rate;
        if rate.is_finite() && rate > 0.0 {
            Duration::from_secs_f64((1.0 / rate).min(3600.0))
        } else {
            Duration::ZERO
        }
    }

    /// Runs every timer due at `now` (paced unregisters, registrations' own
    /// timers); what they do is queued for [`poll_output`](Self::poll_output).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.stops.first() {
            if t > now {
                break;
            }
            self.stops.pop_first();
            self.with_reg(id, |r| r.handle_input(Input::Shutdown, now));
        }
        while let Some(&(t, id)) = self.wakes.first() {
            if t > now {
                break;
            }
            self.wakes.pop_first();
            if let Some(e) = self.regs.get_mut(&id) {
                e.wake = None;
            }
            self.with_reg(id, |r| r.handle_timeout(now));
        }
    }

    /// Runs `f` on `id`, turns its outputs into events, re-indexes its wake
    /// time, and drops it once finished.
    fn with_reg(&mut self, id: RegistrationId, f: impl FnOnce(&mut Registration)) {
        let Some(e) = self.regs.get_mut(&id) else {
            return;
        };
        f(&mut e.reg);
        while let Some(o) = e.reg.poll_output() {
            self.events.push_back(match o {
                Output::Send {
                    request,
                    target,
                    reuse_address,
                } => Event::Send {
                    id,
                    request,
                    target,
                    reuse_address,
                },
                Output::StateChanged(state) => Event::StateChanged { id, state },
                Output::Keepalive { target } => Event::Keepalive { id, target },
            });
        }
        let wake = e.reg.poll_timeout();
        let finished = e.reg.is_finished();
        if e.wake != wake {
            if let Some(w) = e.wake {
                self.wakes.remove(&(w, id));
            }
            if let Some(w) = wake {
                self.wakes.insert((w, id));
            }
            e.wake = wake;
        }
        if finished {
            if let Some(w) = e.wake {
                self.wakes.remove(&(w, id));
            }
            self.regs.remove(&id);
            self.events.push_back(Event::Removed { id });
        }
    }
}
