//! One registration as a sans-IO state machine.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use siplink_auth::{AuthError, Authorization, DigestClient, RequestInfo};
use siplink_message::uri::{Host, SipUri};
use siplink_message::{HeaderName, Message, MessageBuilder, Method};

use crate::config::{RegistrationConfig, TargetAddr};
use crate::error::Error;

/// Most digest challenges answered within one attempt (a safety net on top of
/// the digest client's own loop detection).
const MAX_AUTH_ROUNDS: u8 = 4;
/// Most Contact rewrites in a row without a stable address.
const MAX_REWRITES: u8 = 2;
/// The longest grant taken into account (one year).
const MAX_GRANT: u32 = 365 * 24 * 3600;

/// What the driver feeds a [`Registration`] through
/// [`handle_input`](Registration::handle_input).
#[allow(clippy::large_enum_variant)] // moved through once, never stored in bulk
#[derive(Debug, Clone)]
pub enum Input {
    /// A final (or provisional, ignored) response to the REGISTER in flight.
    /// Responses that do not match the Call-ID and CSeq in flight are ignored.
    Response(Message),
    /// The client transaction of the REGISTER in flight timed out (Timer F).
    Timeout,
    /// The REGISTER in flight could not be sent (connection refused, ICMP...).
    TransportError,
    /// The connection-oriented flow the registration uses was closed.
    FlowClosed,
    /// Unregister (Expires: 0) and stop.
    Shutdown,
}

/// What a [`Registration`] asks the driver to do or tells it, taken one at a
/// time with [`Registration::poll_output`].
#[allow(clippy::large_enum_variant)] // moved through once, never stored in bulk
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this REGISTER to `target` in a new client transaction. A host name
    /// in `target` is resolved for this send.
    Send {
        /// The request (Via with a fresh branch and `rport`).
        request: Message,
        /// Where to send it.
        target: TargetAddr,
        /// `true` when this request continues an attempt (a digest answer, a
        /// 423 or 439 retry, a Contact rewrite): send it to the same resolved
        /// address as the previous request, so that an answer reaches the
        /// server that challenged. `false` for a new attempt: resolve the
        /// target's host name again.
        reuse_address: bool,
    },
    /// The registration's state changed.
    StateChanged(State),
    /// RFC 5626 §4.4: send a keepalive (CRLF ping on a connection, STUN over
    /// UDP) on the flow to `target`.
    Keepalive {
        /// The flow's far end.
        target: TargetAddr,
    },
}

/// Why a registration is not registered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureReason {
    /// Credentials rejected (a 401/403 after an answered challenge, a 403, too
    /// many stale nonces), or a challenge that cannot be answered (no
    /// credentials configured, unknown realm, unsupported algorithm).
    AuthRejected,
    /// 404: the registrar does not know the AOR.
    NotFound,
    /// The transaction timed out.
    Timeout,
    /// The request could not be sent.
    TransportError,
    /// The connection-oriented flow dropped.
    FlowClosed,
    /// 423 twice, or without a usable Min-Expires.
    IntervalTooBrief,
    /// A transient failure status (408, 480, 5xx...).
    ServerError(u16),
    /// A permanent failure status (other 3xx to 6xx); 0 when no valid
    /// request could be written.
    Rejected(u16),
    /// A 2xx that granted no expiry for our contact.
    NotGranted,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::AuthRejected => f.write_str("credentials rejected"),
            FailureReason::NotFound => f.write_str("not found (404)"),
            FailureReason::Timeout => f.write_str("timeout"),
            FailureReason::TransportError => f.write_str("transport error"),
            FailureReason::FlowClosed => f.write_str("flow closed"),
            FailureReason::IntervalTooBrief => f.write_str("interval too brief (423)"),
            FailureReason::ServerError(s) => write!(f, "server error ({s})"),
            FailureReason::Rejected(s) => write!(f, "rejected ({s})"),
            FailureReason::NotGranted => f.write_str("no expiry granted"),
        }
    }
}

/// The externally visible state of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not registered and not trying (before start, after unregistering).
    Unregistered,
    /// A first REGISTER (or one after a failure) is in progress.
    Registering,
    /// Registered; the binding lasts until `expires_at` (a refresh is due earlier).
    Registered {
        /// When the granted expiry ends (counted from when the REGISTER was sent).
        expires_at: Instant,
    },
    /// A transient failure; the next attempt is at `at`.
    Retrying {
        /// The failure.
        reason: FailureReason,
        /// The next attempt.
        at: Instant,
    },
    /// A permanent failure; a slow retry follows only if configured
    /// ([`Timing::failed_retry`](crate::Timing::failed_retry)).
    Failed {
        /// The failure.
        reason: FailureReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Register,
    Unregister,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Start a new REGISTER attempt.
    Attempt,
    /// Give up waiting for the unregister.
    UnregisterDeadline,
}

#[derive(Debug)]
struct InFlight {
    kind: Kind,
    cseq: u32,
    target: usize,
    sent_at: Instant,
    /// Expiry requested by this request.
    expires: u32,
    /// Whether the request carried any digest credentials.
    had_credentials: bool,
    /// Challenges answered within this attempt.
    auth_rounds: u8,
    /// A 423 was already followed within this attempt.
    interval_retried: bool,
    /// Contact rewrites in this attempt.
    rewrites: u8,
    /// Reset the digest client once when pre-emptive credentials were refused.
    auth_reset: bool,
}

/// One registration: produces REGISTER requests, consumes their outcomes, and
/// keeps itself registered. Sans-IO: no sockets, no clock, no runtime; time is
/// passed in as `now` and randomness comes from an injected [`StdRng`].
///
/// The core vocabulary of the workspace: call [`start`](Self::start); feed every
/// [`Input`] to [`handle_input`](Self::handle_input); at
/// [`poll_timeout`](Self::poll_timeout) call
/// [`handle_timeout`](Self::handle_timeout); after each call take the
/// [`Output`]s with [`poll_output`](Self::poll_output) until it returns `None`.
/// Run each [`Output::Send`] in a client transaction (retransmissions are the
/// transaction layer's job) and report its final response, timeout or
/// transport error back.
pub struct Registration {
    cfg: RegistrationConfig,
    rng: StdRng,
    auth: Option<DigestClient>,
    auth_server: String,
    call_id: String,
    from_tag: String,
    cseq: u32,
    targets: Vec<TargetAddr>,
    blocked_until: Vec<Option<Instant>>,
    target: usize,
    state: State,
    expires: u32,
    outbound: bool,
    outbound_active: bool,
    contact_host: String,
    contact_port: u16,
    stale_contact: Option<(String, u16)>,
    in_flight: Option<InFlight>,
    timer: Option<(Instant, Timer)>,
    keepalive: Option<(Instant, Duration, Duration)>,
    failures: u32,
    round_failures: usize,
    last_flow_reregister: Option<Instant>,
    bound_until: Option<Instant>,
    shutting_down: bool,
    finished: bool,
    queue: VecDeque<Output>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("aor", &self.cfg.aor.as_str())
            .field("call_id", &self.call_id)
            .field("cseq", &self.cseq)
            .field("state", &self.state)
            .field("target", &self.targets.get(self.target))
            .finish_non_exhaustive()
    }
}

fn hex_token(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn same_host(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.trim_start_matches('[').trim_end_matches(']').to_owned();
    match (strip(a).parse::<IpAddr>(), strip(b).parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

impl Registration {
    /// A registration with an operating-system-seeded random source.
    pub fn new(cfg: RegistrationConfig) -> Result<Self, Error> {
        Registration::with_rng(cfg, StdRng::from_os_rng())
    }

    /// A registration whose Call-ID, tags, cnonces and jitter come from `rng`
    /// (seed it for reproducible tests). Fails on a configuration that cannot
    /// produce a valid REGISTER.
    pub fn with_rng(cfg: RegistrationConfig, mut rng: StdRng) -> Result<Self, Error> {
        cfg.check()?;
        let auth_server = cfg.registrar.host().to_string();
        let auth = cfg.credentials.clone().map(|c| {
            DigestClient::new(auth_server.clone(), c).with_rng(StdRng::from_rng(&mut rng))
        });
        let call_id = hex_token(&mut rng, 16);
        let from_tag = hex_token(&mut rng, 8);
        let targets = cfg.default_targets();
        let reg = Registration {
            auth,
            auth_server,
            call_id,
            from_tag,
            cseq: rng.random_range(1..=1000),
            blocked_until: vec![None; targets.len()],
            targets,
            target: 0,
            state: State::Unregistered,
            expires: cfg.expires,
            outbound: cfg.instance_id.is_some() && cfg.reg_id.is_some(),
            outbound_active: false,
            contact_host: cfg.local_host.clone(),
            contact_port: cfg.local_port,
            stale_contact: None,
            in_flight: None,
            timer: None,
            keepalive: None,
            failures: 0,
            round_failures: 0,
            last_flow_reregister: None,
            bound_until: None,
            shutting_down: false,
            finished: false,
            queue: VecDeque::new(),
            rng,
            cfg,
        };
        // Refuse configurations that cannot be written as a request.
        reg.build_request(Kind::Register, 0, &[])?;
        Ok(reg)
    }

    /// The configuration.
    pub fn config(&self) -> &RegistrationConfig {
        &self.cfg
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The Call-ID used for the life of the registration.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The Contact address currently registered (after any NAT rewrite).
    pub fn contact_addr(&self) -> (&str, u16) {
        (&self.contact_host, self.contact_port)
    }

    /// The Contact URI currently registered (or being registered), after any
    /// NAT rewrite: `sip:user@host:port;transport=..`. `None` only if the
    /// address cannot form a URI (never for a configuration that passed
    /// validation).
    pub fn contact(&self) -> Option<SipUri> {
        self.contact_uri(&self.contact_host, self.contact_port).ok()
    }

    /// Whether the registrar confirmed RFC 5626 Outbound (`Require: outbound`).
    pub fn outbound_active(&self) -> bool {
        self.outbound_active
    }

    /// Whether the registration has stopped for good (after
    /// [`Input::Shutdown`] and the unregister).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The targets in use, in order of preference.
    pub fn targets(&self) -> &[TargetAddr] {
        &self.targets
    }

    /// Replaces the targets (for example with freshly resolved addresses);
    /// the next attempt starts at the first. An empty list restores the
    /// configured default.
    pub fn set_targets(&mut self, targets: Vec<TargetAddr>) {
        self.targets = if targets.is_empty() {
            self.cfg.default_targets()
        } else {
            targets
        };
        self.blocked_until = vec![None; self.targets.len()];
        self.target = 0;
        self.round_failures = 0;
    }

    /// Schedules the first REGISTER at `at` (a no-op once started or finished).
    pub fn start(&mut self, at: Instant) {
        if self.finished
            || self.shutting_down
            || self.timer.is_some()
            || self.in_flight.is_some()
            || self.state != State::Unregistered
        {
            return;
        }
        self.arm(at, Timer::Attempt);
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work to
    /// do (the next attempt, keepalive or unregister deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timer.map(|(t, _)| t);
        let k = self.keepalive.map(|(t, _, _)| t);
        match (t, k) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers due at `now`; what they do is queued for
    /// [`poll_output`](Self::poll_output).
    pub fn handle_timeout(&mut self, now: Instant) {
        // A timer re-armed at or before `now` while firing fires too (bounded).
        for _ in 0..8 {
            if self.poll_timeout().is_none_or(|t| t > now) {
                return;
            }
            self.fire_due(now);
        }
    }

    /// The next output, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    /// Takes one input; what to do is queued for
    /// [`poll_output`](Self::poll_output).
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        if !self.finished {
            match input {
                Input::Response(msg) => self.on_response(&msg, now),
                Input::Timeout => self.on_failure(FailureReason::Timeout, now),
                Input::TransportError => self.on_failure(FailureReason::TransportError, now),
                Input::FlowClosed => self.on_flow_closed(now),
                Input::Shutdown => self.on_shutdown(now),
            }
        }
    }

    /// Whether [`Input::Shutdown`] was received (unregistering or finished).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Replaces the configuration of a running registration whose identity
    /// (registrar, AOR, contact user, local address, transport) is unchanged:
    /// the Call-ID and CSeq continue and a REGISTER is sent at `at`.
    pub(crate) fn reconfigure(
        &mut self,
        cfg: RegistrationConfig,
        at: Instant,
    ) -> Result<(), Error> {
        cfg.check()?;
        if cfg.credentials != self.cfg.credentials {
            self.auth = cfg.credentials.clone().map(|c| {
                DigestClient::new(self.auth_server.clone(), c)
                    .with_rng(StdRng::from_rng(&mut self.rng))
            });
        }
        self.expires = cfg.expires;
        self.outbound = cfg.instance_id.is_some() && cfg.reg_id.is_some();
        let targets_changed =
            cfg.targets != self.cfg.targets || cfg.outbound_proxy != self.cfg.outbound_proxy;
        self.cfg = cfg;
        if targets_changed {
            self.set_targets(Vec::new());
        }
        if !self.finished && !self.shutting_down {
            self.in_flight = None;
            self.arm(at, Timer::Attempt);
        }
        Ok(())
    }

    /// Moves a pending flow-triggered re-register later, to `at` (the
    /// manager paces them when many flows drop together).
    pub(crate) fn defer_flow_reregister(&mut self, at: Instant) {
        if let State::Retrying {
            reason: FailureReason::FlowClosed,
            at: current,
        } = self.state
            && let Some((t, Timer::Attempt)) = self.timer
            && t == current
            && at > t
        {
            self.last_flow_reregister = Some(at);
            self.set_state(State::Retrying {
                reason: FailureReason::FlowClosed,
                at,
            });
            self.arm(at, Timer::Attempt);
        }
    }

    /// Whether `other` names the same binding (so that it can be applied in place).
    pub(crate) fn same_identity(&self, other: &RegistrationConfig) -> bool {
        let c = &self.cfg;
        c.registrar == other.registrar
            && c.aor == other.aor
            && c.contact_user == other.contact_user
            && c.local_host == other.local_host
            && c.local_port == other.local_port
            && c.transport == other.transport
            && c.instance_id == other.instance_id
    }

    // ----- internals -----

    fn arm(&mut self, at: Instant, kind: Timer) {
        self.timer = Some((at, kind));
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state.clone();
            self.queue.push_back(Output::StateChanged(state));
        }
    }

    fn fire_due(&mut self, now: Instant) {
        if let Some((at, lo, hi)) = self.keepalive
            && at <= now
        {
            self.queue.push_back(Output::Keepalive {
                target: self.targets[self.target].clone(),
            });
            let next = now + self.random_between(lo, hi);
            self.keepalive = Some((next, lo, hi));
        }
        if let Some((at, kind)) = self.timer
            && at <= now
        {
            self.timer = None;
            match kind {
                Timer::Attempt => {
                    if !matches!(self.state, State::Registered { .. }) {
                        self.set_state(State::Registering);
                    }
                    self.send(Kind::Register, now, Vec::new(), None);
                }
                Timer::UnregisterDeadline => self.finish(),
            }
        }
    }

    fn random_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let ns = self
            .rng
            .random_range(lo.as_nanos() as u64..=hi.as_nanos() as u64);
        Duration::from_nanos(ns)
    }

    fn contact_uri(&self, host: &str, port: u16) -> Result<SipUri, Error> {
        let mut b = SipUri::builder(Host::parse(host)?)
            .user(&self.cfg.contact_user)
            .port(port);
        if let Some(t) = self.cfg.transport.uri_param() {
            b = b.transport(t);
        }
        Ok(b.build()?)
    }

    fn contact_value(&self, kind: Kind) -> Result<String, Error> {
        let mut v = format!(
            "<{}>",
            self.contact_uri(&self.contact_host, self.contact_port)?
        );
        if let Some(i) = &self.cfg.instance_id {
            v.push_str(&format!(";+sip.instance=\"<{i}>\""));
            if self.outbound
                && let Some(r) = self.cfg.reg_id
            {
                v.push_str(&format!(";reg-id={r}"));
            }
        }
        if kind == Kind::Register
            && let Some((h, p)) = &self.stale_contact
        {
            v.push_str(&format!(", <{}>;expires=0", self.contact_uri(h, *p)?));
        }
        Ok(v)
    }

    fn build_request(
        &self,
        kind: Kind,
        cseq: u32,
        auth: &[Authorization],
    ) -> Result<Message, Error> {
        let local = Host::parse(&self.cfg.local_host)?;
        let branch = siplink_transaction::new_branch();
        let mut b = MessageBuilder::request(Method::Register, &self.cfg.registrar)
            .header(
                HeaderName::Via,
                format_args!(
                    "SIP/2.0/{} {local}:{};rport;branch={branch}",
                    self.cfg.transport, self.cfg.local_port
                ),
            )
            .header(HeaderName::MaxForwards, 70);
        if let Some(p) = &self.cfg.outbound_proxy {
            let lr = if p.lr() {
                p.clone()
            } else {
                p.to_builder().lr().build()?
            };
            b = b.header(HeaderName::Route, format_args!("<{lr}>"));
        }
        b = b
            .header(
                HeaderName::From,
                format_args!("<{}>;tag={}", self.cfg.aor, self.from_tag),
            )
            .header(HeaderName::To, format_args!("<{}>", self.cfg.aor))
            .header(HeaderName::CallId, &self.call_id)
            .header(HeaderName::CSeq, format_args!("{cseq} REGISTER"))
            .header(HeaderName::Contact, self.contact_value(kind)?)
            .header(
                HeaderName::Expires,
                if kind == Kind::Unregister {
                    0
                } else {
                    self.expires
                },
            );
        let mut supported = Vec::new();
        if self.cfg.path {
            supported.push("path");
        }
        if self.outbound {
            supported.push("outbound");
        }
        if !supported.is_empty() {
            b = b.header(HeaderName::Supported, supported.join(", "));
        }
        if let Some(ua) = &self.cfg.user_agent {
            b = b.header(HeaderName::UserAgent, ua);
        }
        for a in auth {
            let name = match a.kind {
                siplink_auth::ChallengeKind::Www => HeaderName::Authorization,
                siplink_auth::ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
            };
            b = b.header(name, &a.credentials);
        }
        Ok(b.build()?)
    }

    /// Sends a REGISTER of `kind`. `answers` are digest answers (an auth retry,
    /// which keeps the target); `carry` keeps the per-attempt counters.
    fn send(
        &mut self,
        kind: Kind,
        now: Instant,
        answers: Vec<Authorization>,
        carry: Option<InFlight>,
    ) {
        if self.targets.is_empty() {
            self.targets = self.cfg.default_targets();
            self.blocked_until = vec![None; self.targets.len()];
        }
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let uri = self.cfg.registrar.to_string();
        let auth = if carry.as_ref().is_some_and(|c| c.auth_rounds > 0) {
            answers
        } else {
            match self.auth.as_mut() {
                Some(a) => a.authorize(&self.auth_server, &RequestInfo::new("REGISTER", &uri)),
                None => Vec::new(),
            }
        };
        let request = match self.build_request(kind, self.cseq, &auth) {
            Ok(r) => r,
            Err(_) => {
                // The configuration was checked by building a request at
                // construction; only a rewritten Contact can fail here.
                self.stale_contact = None;
                self.contact_host = self.cfg.local_host.clone();
                self.contact_port = self.cfg.local_port;
                match self.build_request(kind, self.cseq, &auth) {
                    Ok(r) => r,
                    Err(_) => {
                        self.fail_permanent(FailureReason::Rejected(0), now);
                        return;
                    }
                }
            }
        };
        let reuse_address = carry.is_some();
        let c = carry.unwrap_or(InFlight {
            kind,
            cseq: 0,
            target: self.target,
            sent_at: now,
            expires: 0,
            had_credentials: false,
            auth_rounds: 0,
            interval_retried: false,
            rewrites: 0,
            auth_reset: false,
        });
        self.in_flight = Some(InFlight {
            kind,
            cseq: self.cseq,
            target: c.target,
            sent_at: now,
            expires: if kind == Kind::Unregister {
                0
            } else {
                self.expires
            },
            had_credentials: !auth.is_empty(),
            ..c
        });
        let target = self.targets[c.target.min(self.targets.len() - 1)].clone();
        self.queue.push_back(Output::Send {
            request,
            target,
            reuse_address,
        });
    }

    fn on_response(&mut self, msg: &Message, now: Instant) {
        let Some(status) = msg.status() else { return };
        let Some(fl) = self.in_flight.as_ref() else {
            return;
        };
        let matches = msg.call_id().is_ok_and(|c| c == self.call_id)
            && msg
                .cseq()
                .is_ok_and(|c| c.seq == fl.cseq && c.method == Method::Register);
        if !matches || status < 200 {
            return;
        }
        let Some(fl) = self.in_flight.take() else {
            return;
        };
        if fl.kind == Kind::Unregister {
            if matches!(status, 401 | 407)
                && fl.auth_rounds < 2
                && let Some((answers, reset)) = self.answer(msg, &fl)
            {
                let carry = InFlight {
                    auth_rounds: fl.auth_rounds + 1,
                    auth_reset: fl.auth_reset || reset,
                    ..fl
                };
                self.send(Kind::Unregister, now, answers, Some(carry));
                return;
            }
            self.finish();
            return;
        }
        match status {
            200..=299 => self.on_success(msg, fl, now),
            401 | 407 => {
                if fl.auth_rounds >= MAX_AUTH_ROUNDS {
                    self.fail_permanent(FailureReason::AuthRejected, now);
                    return;
                }
                match self.answer(msg, &fl) {
                    Some((answers, reset)) => {
                        let carry = InFlight {
                            auth_rounds: fl.auth_rounds + 1,
                            auth_reset: fl.auth_reset || reset,
                            ..fl
                        };
                        self.send(Kind::Register, now, answers, Some(carry));
                    }
                    None => self.fail_permanent(FailureReason::AuthRejected, now),
                }
            }
            403 => {
                self.fail_permanent(FailureReason::AuthRejected, now);
                self.honour_retry_after(msg, now);
            }
            404 => {
                self.fail_permanent(FailureReason::NotFound, now);
                self.honour_retry_after(msg, now);
            }
            423 => {
                let min = msg.min_expires().ok().flatten().unwrap_or(0);
                if !fl.interval_retried && min > fl.expires {
                    self.expires = min;
                    let carry = InFlight {
                        interval_retried: true,
                        auth_rounds: 0,
                        ..fl
                    };
                    self.send(Kind::Register, now, Vec::new(), Some(carry));
                } else {
                    self.fail_permanent(FailureReason::IntervalTooBrief, now);
                }
            }
            439 if self.outbound => {
                // RFC 5626 §4.2.1: the first hop lacks Outbound; retry without.
                self.outbound = false;
                let carry = InFlight {
                    auth_rounds: 0,
                    ..fl
                };
                self.send(Kind::Register, now, Vec::new(), Some(carry));
            }
            408 | 480 | 500..=599 => {
                let retry_after = msg.retry_after().ok().flatten().map(|r| r.seconds);
                let reason = FailureReason::ServerError(status);
                self.transient(reason, now, status == 503, retry_after);
            }
            _ => {
                self.fail_permanent(FailureReason::Rejected(status), now);
                self.honour_retry_after(msg, now);
            }
        }
    }

    /// Answers a 401/407; the flag says whether the digest client was reset
    /// (pre-emptive credentials with a nonce the server no longer accepts).
    fn answer(&mut self, msg: &Message, fl: &InFlight) -> Option<(Vec<Authorization>, bool)> {
        let auth = self.auth.as_mut()?;
        let www = msg.www_authenticate().ok()?;
        let proxy = msg.proxy_authenticate().ok()?;
        let uri = self.cfg.registrar.to_string();
        let info = RequestInfo::new("REGISTER", &uri);
        match auth.answer(&self.auth_server, www, proxy, &info) {
            Ok(a) => Some((a, false)),
            Err(AuthError::CredentialsRejected { .. })
                if fl.auth_rounds == 0 && fl.had_credentials && !fl.auth_reset =>
            {
                // Only pre-emptive credentials were refused: start afresh once.
                auth.reset();
                auth.answer(&self.auth_server, www, proxy, &info)
                    .ok()
                    .map(|a| (a, true))
            }
            Err(_) => None,
        }
    }

    fn is_our_contact(&self, c: &siplink_message::headers::NameAddr) -> bool {
        if let (Some(i), Some(ci)) = (&self.cfg.instance_id, c.instance())
            && ci == i
        {
            return !self.outbound || c.reg_id() == self.cfg.reg_id;
        }
        let Some(u) = c.uri.as_sip() else {
            return false;
        };
        u.user() == Some(self.cfg.contact_user.as_str())
            && same_host(&u.host().to_string(), &self.contact_host)
            && u.port_or_default() == self.contact_port
    }

    /// The address the registrar saw us at, when the top Via says so.
    fn observed_addr(&self, msg: &Message) -> Option<(String, u16)> {
        let via = msg.top_via().ok()?;
        let rport = via.rport().flatten();
        if via.received().is_none() && rport.is_none() {
            return None;
        }
        let host = match (via.received_ip(), via.received()) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(r)) => r.to_owned(),
            (None, None) => match via.host.ip() {
                Some(ip) => ip.to_string(),
                None => via.host.to_string(),
            },
        };
        let port = rport
            .or(via.port)
            .unwrap_or(self.cfg.transport.default_port());
        // Only an address that can be written in a Contact is used.
        Host::parse(&host).ok()?;
        Some((host, port))
    }

    fn on_success(&mut self, msg: &Message, fl: InFlight, now: Instant) {
        let outbound_ok = self.outbound
            && msg
                .require()
                .is_ok_and(|r| r.iter().any(|t| t.eq_ignore_ascii_case("outbound")));
        let contact_expires = msg.contact().ok().and_then(|cs| {
            cs.as_slice()
                .iter()
                .find(|c| self.is_our_contact(c))
                .and_then(|c| c.expires())
        });
        let granted = contact_expires
            .or(msg.expires().ok().flatten())
            .unwrap_or(fl.expires);
        self.stale_contact = None;
        if granted == 0 {
            self.transient(FailureReason::NotGranted, now, false, None);
            return;
        }
        // Longer grants are treated as one year: refreshing yearly is harmless
        // and keeps the time arithmetic far from overflow.
        let g = Duration::from_secs(u64::from(granted.min(MAX_GRANT)));
        self.bound_until = Some(fl.sent_at + g);
        self.failures = 0;
        self.round_failures = 0;
        if self.cfg.rewrite_contact
            && !outbound_ok
            && fl.rewrites < MAX_REWRITES
            && let Some((host, port)) = self.observed_addr(msg)
            && !(same_host(&host, &self.contact_host) && port == self.contact_port)
        {
            // NAT: register the public address and drop the private one in
            // the same request (PJSIP's contact rewrite).
            let old_host = std::mem::replace(&mut self.contact_host, host);
            let old_port = std::mem::replace(&mut self.contact_port, port);
            self.stale_contact = Some((old_host, old_port));
            let carry = InFlight {
                rewrites: fl.rewrites + 1,
                auth_rounds: 0,
                interval_retried: false,
                ..fl
            };
            self.send(Kind::Register, now, Vec::new(), Some(carry));
            return;
        }
        self.outbound_active = outbound_ok;
        self.set_state(State::Registered {
            expires_at: fl.sent_at + g,
        });
        let margin = self.cfg.timing.refresh_margin.min(g / 2);
        let jitter = self.cfg.timing.refresh_jitter;
        let extra = g.mul_f64(self.rng.random_range(0.0..=jitter));
        let lead = (margin + extra).min(g / 2).max(margin);
        let at = (fl.sent_at + g - lead).max(now);
        self.arm(at, Timer::Attempt);
        self.keepalive = None;
        if outbound_ok {
            let (lo, hi) = match msg
                .header(HeaderName::FlowTimer)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&s| s > 0)
            {
                // RFC 5626 §4.4.1: 80 % to 100 % of Flow-Timer.
                Some(s) => (Duration::from_secs(s).mul_f64(0.8), Duration::from_secs(s)),
                None if self.cfg.transport.is_reliable() => {
                    (Duration::from_secs(95), Duration::from_secs(120))
                }
                None => (Duration::from_secs(24), Duration::from_secs(29)),
            };
            let next = now + self.random_between(lo, hi);
            self.keepalive = Some((next, lo, hi));
        }
    }

    /// RFC 5626 §4.5: a random 50 % to 100 % of
    /// `min(max-time, base-time * 2^consecutive-failures)`.
    fn backoff(&mut self) -> Duration {
        let t = &self.cfg.timing;
        let exp = self.failures.min(20);
        let w = t
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(t.backoff_max);
        w.mul_f64(self.rng.random_range(0.5..=1.0))
    }

    fn transient(
        &mut self,
        reason: FailureReason,
        now: Instant,
        failover: bool,
        retry_after: Option<u32>,
    ) {
        self.keepalive = None;
        self.outbound_active = false;
        let n = self.targets.len().max(1);
        let old = self.target.min(n - 1);
        if let Some(ra) = retry_after {
            let wait = Duration::from_secs(u64::from(ra)).min(self.cfg.timing.max_retry_after);
            if let Some(b) = self.blocked_until.get_mut(old) {
                *b = Some(now + wait);
            }
        }
        let mut at = if failover && n > 1 {
            self.target = (old + 1) % n;
            self.round_failures += 1;
            if self.round_failures < n {
                now
            } else {
                self.round_failures = 0;
                self.failures = self.failures.saturating_add(1);
                now + self.backoff()
            }
        } else {
            self.round_failures = 0;
            self.failures = self.failures.saturating_add(1);
            now + self.backoff()
        };
        if let Some(Some(b)) = self.blocked_until.get(self.target)
            && *b > at
        {
            at = *b;
        }
        self.set_state(State::Retrying { reason, at });
        self.arm(at, Timer::Attempt);
    }

    /// Pushes a scheduled slow retry back to the response's `Retry-After`.
    fn honour_retry_after(&mut self, msg: &Message, now: Instant) {
        let Some(ra) = msg.retry_after().ok().flatten() else {
            return;
        };
        let wait = Duration::from_secs(u64::from(ra.seconds)).min(self.cfg.timing.max_retry_after);
        if let Some((at, Timer::Attempt)) = self.timer
            && at < now + wait
        {
            self.arm(now + wait, Timer::Attempt);
        }
    }

    fn fail_permanent(&mut self, reason: FailureReason, now: Instant) {
        self.keepalive = None;
        self.outbound_active = false;
        self.set_state(State::Failed { reason });
        match self.cfg.timing.failed_retry {
            Some(d) => {
                let at = now + self.random_between(d / 2, d);
                self.arm(at, Timer::Attempt);
            }
            None => self.timer = None,
        }
    }

    fn on_failure(&mut self, reason: FailureReason, now: Instant) {
        let Some(fl) = self.in_flight.take() else {
            return;
        };
        if fl.kind == Kind::Unregister {
            self.finish();
        } else {
            self.transient(reason, now, true, None);
        }
    }

    fn on_flow_closed(&mut self, now: Instant) {
        if !self.cfg.transport.is_reliable() {
            return;
        }
        self.keepalive = None;
        self.outbound_active = false;
        if self.in_flight.is_some() {
            self.on_failure(FailureReason::FlowClosed, now);
            return;
        }
        if self.shutting_down || !matches!(self.state, State::Registered { .. }) {
            return;
        }
        let t = &self.cfg.timing;
        let (jitter, min_interval) = (t.flow_reregister_jitter, t.flow_reregister_min_interval);
        let mut at = now + self.random_between(Duration::ZERO, jitter);
        if let Some(last) = self.last_flow_reregister {
            at = at.max(last + min_interval);
        }
        if self.timer.is_none_or(|(t, _)| at < t) {
            self.last_flow_reregister = Some(at);
            self.set_state(State::Retrying {
                reason: FailureReason::FlowClosed,
                at,
            });
            self.arm(at, Timer::Attempt);
        }
    }

    fn on_shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.keepalive = None;
        self.timer = None;
        let registering = self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.kind == Kind::Register);
        let bound = self.bound_until.is_some_and(|b| b > now);
        if registering || bound {
            self.in_flight = None;
            self.send(Kind::Unregister, now, Vec::new(), None);
            self.arm(
                now + self.cfg.timing.unregister_timeout,
                Timer::UnregisterDeadline,
            );
        } else {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.in_flight = None;
        self.timer = None;
        self.keepalive = None;
        self.bound_until = None;
        self.finished = true;
        self.set_state(State::Unregistered);
    }
}
