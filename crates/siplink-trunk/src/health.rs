//! OPTIONS health probing of a trunk's targets (sans-IO).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use siplink_message::uri::{Host, SipUri};
use siplink_message::{HeaderName, Message, MessageBuilder, Method};

use crate::config::{TargetAddr, TrunkConfig};
use crate::error::Result;
use crate::select::target_order;

/// Whether a target takes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Calls go to it (every target starts up).
    Up,
    /// Calls skip it, unless every target is down and
    /// [`HealthConfig::try_when_all_down`](crate::HealthConfig::try_when_all_down) is set.
    Down,
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
        })
    }
}

/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// A final response with this status.
    Status(u16),
    /// No final response (timer F).
    Timeout,
    /// The transport failed (refused, unreachable, TLS handshake...).
    TransportError,
}

impl ProbeOutcome {
    /// Whether the probe shows a target that takes calls: any final response
    /// except `408` and `5xx`. A `401`/`403`/`404`/`405` still proves a live
    /// SIP stack at the address (as Asterisk's qualify counts it); `503`
    /// says it is overloaded or in maintenance, `408`/`5xx` that it could not
    /// serve us. (Kamailio's dispatcher counts only `200` unless
    /// `ds_ping_reply_codes` widens it; a PBX that challenges OPTIONS would
    /// then never be up.)
    pub fn is_success(&self) -> bool {
        match *self {
            ProbeOutcome::Status(s) => s >= 200 && s != 408 && !(500..600).contains(&s),
            ProbeOutcome::Timeout | ProbeOutcome::TransportError => false,
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Status(s) => write!(f, "answered {s}"),
            ProbeOutcome::Timeout => f.write_str("no answer (timeout)"),
            ProbeOutcome::TransportError => f.write_str("transport error"),
        }
    }
}

/// A target changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// Index of the target in the trunk's configuration.
    pub target: usize,
    /// The state before.
    pub from: HealthState,
    /// The state now.
    pub to: HealthState,
    /// The probe that tipped it.
    pub reason: ProbeOutcome,
}

/// What a [`HealthMonitor`] asks the driver to do or tells it, taken one at a
/// time with [`HealthMonitor::poll_output`].
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // handed over once, never stored in bulk
pub enum HealthOutput {
    /// Send this OPTIONS probe.
    Probe(Probe),
    /// A target changed state.
    Changed(HealthEvent),
}

/// An OPTIONS to send in a new client (non-INVITE) transaction.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Index of the probed target.
    pub target: usize,
    /// The OPTIONS request.
    pub request: Message,
    /// Where to send it (the target, or the outbound proxy).
    pub next_hop: TargetAddr,
}

/// What the monitor knows about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// Current state.
    pub state: HealthState,
    /// Failed probes in a row.
    pub failures: u32,
    /// Successful probes in a row.
    pub successes: u32,
    /// The last probe's outcome.
    pub last: Option<ProbeOutcome>,
    next_probe: Option<Instant>,
    pending: Option<String>,
}

/// Probes every target of one trunk with OPTIONS and keeps its up/down state.
///
/// Sans-IO, in the core vocabulary of the workspace:
/// [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout) queues the probes due; the driver takes
/// them from [`poll_output`](Self::poll_output) ([`HealthOutput::Probe`]), sends
/// each in a client transaction and reports the final response
/// ([`handle_response`](Self::handle_response)), timeout
/// ([`handle_probe_timeout`](Self::handle_probe_timeout)) or transport error
/// ([`handle_transport_error`](Self::handle_transport_error)) back; state
/// changes come out as [`HealthOutput::Changed`]. One probe per target is
/// in flight at a time; the next is due `interval` after the previous ended.
/// An up target goes down after `down_after` failed probes in a row, a down
/// one comes up after `up_after` successful ones in a row
/// ([`ProbeOutcome::is_success`] tells which is which).
///
/// ```
/// use std::{sync::Arc, time::{Duration, Instant}};
/// use rand::{SeedableRng, rngs::StdRng};
/// use siplink_trunk::{HealthMonitor, HealthOutput, HealthState, Target, Transport, TrunkConfig};
///
/// let mut cfg = TrunkConfig::new("pbx", vec![Target::new("192.0.2.10", 5060, Transport::Udp)]);
/// cfg.health.down_after = 2;
/// let t0 = Instant::now();
/// let mut mon = HealthMonitor::new(Arc::new(cfg), "198.51.100.1:5060", StdRng::seed_from_u64(1), t0);
/// for round in 0..2 {
///     let now = mon.poll_timeout().unwrap();
///     mon.handle_timeout(now);
///     let Some(HealthOutput::Probe(probe)) = mon.poll_output() else { unreachable!() };
///     let branch = probe.request.top_via()?.branch().unwrap().to_owned();
///     mon.handle_probe_timeout(&branch, now + Duration::from_secs(32));
///     let changed = matches!(mon.poll_output(), Some(HealthOutput::Changed(_)));
///     assert_eq!(changed, round == 1);
/// }
/// assert_eq!(mon.state(0), Some(HealthState::Down));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HealthMonitor {
    config: Arc<TrunkConfig>,
    sent_by: String,
    rng: StdRng,
    targets: Vec<TargetHealth>,
    cseq: u32,
    queue: VecDeque<HealthOutput>,
}

impl HealthMonitor {
    /// A monitor for `config`'s targets, all up, the first probes due at `now`
    /// (none when [`HealthConfig::enabled`](crate::HealthConfig::enabled) is
    /// off). `sent_by` is our Via sent-by.
    pub fn new(
        config: Arc<TrunkConfig>,
        sent_by: impl Into<String>,
        rng: StdRng,
        now: Instant,
    ) -> Self {
        let first = config.health.enabled.then_some(now);
        let targets = config
            .targets
            .iter()
            .map(|_| TargetHealth {
                state: HealthState::Up,
                failures: 0,
                successes: 0,
                last: None,
                next_probe: first,
                pending: None,
            })
            .collect();
        HealthMonitor {
            config,
            sent_by: sent_by.into(),
            rng,
            targets,
            cseq: 0,
            queue: VecDeque::new(),
        }
    }

    /// A monitor with an OS-seeded random source.
    pub fn with_os_rng(config: Arc<TrunkConfig>, sent_by: impl Into<String>, now: Instant) -> Self {
        HealthMonitor::new(config, sent_by, StdRng::from_os_rng(), now)
    }

    /// The state of target `i`.
    pub fn state(&self, i: usize) -> Option<HealthState> {
        self.targets.get(i).map(|t| t.state)
    }

    /// Whether target `i` takes calls (unknown indexes: `false`).
    pub fn is_up(&self, i: usize) -> bool {
        self.state(i) == Some(HealthState::Up)
    }

    /// Everything known about every target, in configuration order.
    pub fn targets(&self) -> &[TargetHealth] {
        &self.targets
    }

    /// The order in which a new call tries the targets: [`target_order`]
    /// with this monitor's states and the trunk's `try_when_all_down`.
    pub fn call_order(&self, rng: &mut impl Rng) -> Vec<usize> {
        target_order(
            &self.config.targets,
            |i| self.is_up(i),
            self.config.health.try_when_all_down,
            rng,
        )
    }

    /// The next output, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<HealthOutput> {
        self.queue.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.targets
            .iter()
            .filter(|t| t.pending.is_none())
            .filter_map(|t| t.next_probe)
            .min()
    }

    /// Queues the probes due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.targets.len() {
            let t = &self.targets[i];
            if t.pending.is_some() || t.next_probe.is_none_or(|at| at > now) {
                continue;
            }
            match self.build_probe(i) {
                Ok((probe, branch)) => {
                    self.targets[i].pending = Some(branch);
                    self.targets[i].next_probe = None;
                    self.queue.push_back(HealthOutput::Probe(probe));
                }
                // An unusable address (validate() catches it): count a failure
                // and retry later rather than stop probing.
                Err(_) => self.record(i, ProbeOutcome::TransportError, now),
            }
        }
    }

    /// A response to a probe. Provisional responses and responses to no
    /// pending probe are ignored.
    pub fn handle_response(&mut self, response: &Message, now: Instant) {
        let Some(status) = response.status().filter(|&s| s >= 200) else {
            return;
        };
        let Some(branch) = response.top_via().ok().and_then(|v| v.branch()) else {
            return;
        };
        if let Some(i) = self.pending_target(branch) {
            self.record(i, ProbeOutcome::Status(status), now);
        }
    }

    /// The probe with this branch timed out (its transaction's timer F).
    pub fn handle_probe_timeout(&mut self, branch: &str, now: Instant) {
        if let Some(i) = self.pending_target(branch) {
            self.record(i, ProbeOutcome::Timeout, now);
        }
    }

    /// The probe with this branch hit a transport error.
    pub fn handle_transport_error(&mut self, branch: &str, now: Instant) {
        if let Some(i) = self.pending_target(branch) {
            self.record(i, ProbeOutcome::TransportError, now);
        }
    }

    fn pending_target(&self, branch: &str) -> Option<usize> {
        self.targets
            .iter()
            .position(|t| t.pending.as_deref() == Some(branch))
    }

    /// Counts one outcome for target `i`, schedules its next probe and queues
    /// the state change, if any.
    fn record(&mut self, i: usize, outcome: ProbeOutcome, now: Instant) {
        let h = &self.config.health;
        let t = &mut self.targets[i];
        t.pending = None;
        t.last = Some(outcome);
        t.next_probe = h.enabled.then(|| now + h.interval);
        let before = t.state;
        if outcome.is_success() {
            t.successes = t.successes.saturating_add(1);
            t.failures = 0;
            if t.state == HealthState::Down && t.successes >= h.up_after {
                t.state = HealthState::Up;
            }
        } else {
            t.failures = t.failures.saturating_add(1);
            t.successes = 0;
            if t.state == HealthState::Up && t.failures >= h.down_after {
                t.state = HealthState::Down;
            }
        }
        if t.state != before {
            let ev = HealthEvent {
                target: i,
                from: before,
                to: t.state,
                reason: outcome,
            };
            self.queue.push_back(HealthOutput::Changed(ev));
        }
    }

    fn random_hex(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// The OPTIONS for target `i` (RFC 3261 §11.1).
    fn build_probe(&mut self, i: usize) -> Result<(Probe, String)> {
        let cfg = self.config.clone();
        let target = &cfg.targets[i].addr;
        let next_hop = cfg.outbound_proxy.clone().unwrap_or_else(|| target.clone());
        let mut uri = SipUri::builder(Host::parse(&target.host)?).port(target.port);
        if let Some(t) = target.transport.uri_param() {
            uri = uri.transport(t);
        }
        let uri = uri.build()?;
        let to = SipUri::builder(Host::parse(&target.host)?)
            .port(target.port)
            .build()?;
        let from = SipUri::builder(Host::parse(&cfg.health.from_domain)?)
            .user(&cfg.health.from_user)
            .build()?;
        let branch = format!("z9hG4bK{}", self.random_hex());
        let tag = self.random_hex();
        let call_id = self.random_hex();
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let mut b = MessageBuilder::request(Method::Options, &uri).header(
            HeaderName::Via,
            format_args!(
                "SIP/2.0/{} {};branch={branch};rport",
                next_hop.transport.via_token(),
                self.sent_by
            ),
        );
        if let Some(p) = &cfg.outbound_proxy {
            let mut r = SipUri::builder(Host::parse(&p.host)?).port(p.port).lr();
            if let Some(t) = p.transport.uri_param() {
                r = r.transport(t);
            }
            b = b.header(HeaderName::Route, format_args!("<{}>", r.build()?));
        }
        let request = b
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::To, format_args!("<{to}>"))
            .header(HeaderName::From, format_args!("<{from}>;tag={tag}"))
            .header(HeaderName::CallId, call_id)
            .header(HeaderName::CSeq, format_args!("{} OPTIONS", self.cseq))
            .header(HeaderName::Accept, "application/sdp")
            .build()?;
        Ok((
            Probe {
                target: i,
                request,
                next_hop,
            },
            branch,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Target, Transport};
    use std::time::Duration;

    fn monitor(n: usize, tweak: impl FnOnce(&mut TrunkConfig)) -> (HealthMonitor, Instant) {
        let targets = (0..n)
            .map(|i| Target::new(format!("192.0.2.{}", 10 + i), 5060, Transport::Udp))
            .collect();
        let mut cfg = TrunkConfig::new("pbx", targets);
        cfg.health.interval = Duration::from_secs(10);
        cfg.health.down_after = 3;
        cfg.health.up_after = 2;
        tweak(&mut cfg);
        let t0 = Instant::now();
        (
            HealthMonitor::new(
                Arc::new(cfg),
                "198.51.100.1:5060",
                StdRng::seed_from_u64(3),
                t0,
            ),
            t0,
        )
    }

    fn probes(mon: &mut HealthMonitor, now: Instant) -> Vec<Probe> {
        mon.handle_timeout(now);
        std::iter::from_fn(|| mon.poll_output())
            .filter_map(|o| match o {
                HealthOutput::Probe(p) => Some(p),
                HealthOutput::Changed(_) => None,
            })
            .collect()
    }

    /// The state change queued, if any (everything else queued is dropped).
    fn changed(mon: &mut HealthMonitor) -> Option<HealthEvent> {
        std::iter::from_fn(|| mon.poll_output()).find_map(|o| match o {
            HealthOutput::Changed(e) => Some(e),
            HealthOutput::Probe(_) => None,
        })
    }

    fn branch(p: &Probe) -> String {
        p.request.top_via().unwrap().branch().unwrap().to_owned()
    }

    /// Runs one probe round for target 0 ending in `outcome` at `now + 1 s`.
    fn round(mon: &mut HealthMonitor, outcome: ProbeOutcome) -> (Option<HealthEvent>, Instant) {
        let now = mon.poll_timeout().unwrap();
        let probes = probes(mon, now);
        assert_eq!(probes.len(), 1);
        let p = &probes[0];
        let end = now + Duration::from_secs(1);
        match outcome {
            ProbeOutcome::Status(s) => {
                let resp = p.request.response(s).build().unwrap();
                mon.handle_response(&resp, end)
            }
            ProbeOutcome::Timeout => mon.handle_probe_timeout(&branch(p), end),
            ProbeOutcome::TransportError => mon.handle_transport_error(&branch(p), end),
        };
        (changed(mon), end)
    }

    #[test]
    fn probe_is_a_proper_options() {
        let (mut mon, t0) = monitor(1, |c| {
            c.targets[0].addr.transport = Transport::Tcp;
            c.health.from_domain = "proxy.example".into();
        });
        assert_eq!(mon.poll_timeout(), Some(t0));
        let p = probes(&mut mon, t0).remove(0);
        let r = &p.request;
        assert_eq!(r.method(), Some(&Method::Options));
        assert_eq!(
            r.request_uri_bytes().unwrap(),
            "sip:192.0.2.10:5060;transport=tcp"
        );
        assert_eq!(r.max_forwards().unwrap(), Some(70));
        assert!(r.top_via().unwrap().is_transport("TCP"));
        assert!(r.top_via().unwrap().has_magic_cookie());
        assert_eq!(r.to().unwrap().tag(), None);
        assert!(r.from().unwrap().tag().is_some());
        assert_eq!(r.from().unwrap().uri.as_str(), "sip:ping@proxy.example");
        assert_eq!(r.cseq().unwrap().method, Method::Options);
        assert!(r.validate().is_ok());
        // One probe in flight per target: nothing more is due until it ends.
        assert!(probes(&mut mon, t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(mon.poll_timeout(), None);
    }

    #[test]
    fn down_after_n_failures_up_after_m_successes() {
        let (mut mon, _) = monitor(1, |_| {});
        assert_eq!(round(&mut mon, ProbeOutcome::Timeout).0, None);
        assert_eq!(round(&mut mon, ProbeOutcome::Status(503)).0, None);
        // A success in between resets the count.
        assert_eq!(round(&mut mon, ProbeOutcome::Status(200)).0, None);
        assert_eq!(round(&mut mon, ProbeOutcome::Timeout).0, None);
        assert_eq!(round(&mut mon, ProbeOutcome::TransportError).0, None);
        let (ev, end) = round(&mut mon, ProbeOutcome::Status(408));
        assert_eq!(
            ev,
            Some(HealthEvent {
                target: 0,
                from: HealthState::Up,
                to: HealthState::Down,
                reason: ProbeOutcome::Status(408)
            })
        );
        assert!(!mon.is_up(0));
        assert_eq!(mon.targets()[0].failures, 3);
        // The next probe is due one interval after the last ended.
        assert_eq!(mon.poll_timeout(), Some(end + Duration::from_secs(10)));
        assert_eq!(round(&mut mon, ProbeOutcome::Status(200)).0, None);
        assert!(!mon.is_up(0));
        let (ev, _) = round(&mut mon, ProbeOutcome::Status(404));
        assert_eq!(
            ev,
            Some(HealthEvent {
                target: 0,
                from: HealthState::Down,
                to: HealthState::Up,
                reason: ProbeOutcome::Status(404)
            })
        );
        assert!(mon.is_up(0));
    }

    #[test]
    fn outcome_classification() {
        for s in [200, 202, 301, 401, 403, 404, 405, 481, 603] {
            assert!(ProbeOutcome::Status(s).is_success(), "{s}");
        }
        for s in [100, 408, 500, 503, 504] {
            assert!(!ProbeOutcome::Status(s).is_success(), "{s}");
        }
        assert!(!ProbeOutcome::Timeout.is_success());
        assert!(!ProbeOutcome::TransportError.is_success());
    }

    #[test]
    fn stray_and_provisional_responses_are_ignored() {
        let (mut mon, t0) = monitor(2, |c| c.health.down_after = 1);
        let probes = probes(&mut mon, t0);
        assert_eq!(probes.len(), 2);
        let trying = probes[0].request.response(100).build().unwrap();
        mon.handle_response(&trying, t0);
        assert!(mon.poll_output().is_none());
        assert_eq!(mon.targets()[0].last, None);
        mon.handle_probe_timeout("z9hG4bKunknown", t0);
        assert!(mon.poll_output().is_none());
        // Target 1 fails, target 0 is unaffected.
        mon.handle_probe_timeout(&branch(&probes[1]), t0);
        let ev = changed(&mut mon).unwrap();
        assert_eq!(ev.target, 1);
        assert!(mon.is_up(0));
        // A duplicate report for the same probe does nothing.
        mon.handle_probe_timeout(&branch(&probes[1]), t0);
        assert!(mon.poll_output().is_none());
    }

    #[test]
    fn disabled_monitor_never_probes() {
        let (mut mon, t0) = monitor(2, |c| c.health.enabled = false);
        assert_eq!(mon.poll_timeout(), None);
        assert!(probes(&mut mon, t0 + Duration::from_secs(3600)).is_empty());
        assert!(mon.is_up(0) && mon.is_up(1));
    }

    #[test]
    fn probes_go_through_the_outbound_proxy() {
        let (mut mon, t0) = monitor(1, |c| {
            c.outbound_proxy = Some(TargetAddr::new("sbc.example", 5060, Transport::Udp));
        });
        let p = probes(&mut mon, t0).remove(0);
        assert_eq!(p.next_hop.host, "sbc.example");
        assert_eq!(
            p.request.route().unwrap()[0].uri.as_str(),
            "sip:sbc.example:5060;lr"
        );
    }
}
