//! The tokio driver: runs a [`Registrations`] manager over a
//! [`siplink_transaction::Endpoint`].
//!
//! One task owns the manager. It sleeps until the manager's next wake, sends
//! each REGISTER as a client transaction (one small task per transaction waits
//! for its outcome), feeds the outcomes back, watches the transport's flow
//! events to re-register promptly when a TCP/TLS connection drops, and
//! publishes every state change on a per-registration
//! [`tokio::sync::watch`] and on a broadcast event stream.
//!
//! The driver never reads the endpoint's server-request queue: whoever owns the
//! [`Endpoint`] (a proxy) keeps it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use siplink_message::uri::SipUri;
use siplink_message::{Message, Transport as Protocol};
use siplink_transaction::{ClientEvent, Endpoint};
use siplink_transport::{Clock, Destination, FlowEvent, FlowEventKind, FlowId, Target};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::config::{RegistrationConfig, TargetAddr};
use crate::error::Error;
use crate::manager::{Event, ManagerConfig, RegistrationId, Registrations};
use crate::registration::{Input, State};

/// Capacity of the command queue from [`RegistrationService`] handles.
const COMMAND_QUEUE: usize = 256;
/// Capacity of the queue of transaction outcomes back to the driver task.
const OUTCOME_QUEUE: usize = 1024;
/// RFC 5626 §4.4.1 double-CRLF keepalive on a connection.
const CRLF_PING: &[u8] = b"\r\n\r\n";

/// Configuration of a [`RegistrationService`].
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The manager's policy (start-up staggering rate).
    pub manager: ManagerConfig,
    /// Capacity of the broadcast [`ServiceEvent`] stream; a slow reader loses
    /// the oldest events (`RecvError::Lagged`), the watches never lag.
    /// Default 4096.
    pub event_queue: usize,
    /// Longest wait in [`RegistrationService::shutdown`] for the unregisters
    /// after the last one was sent (they are paced at
    /// [`ManagerConfig::stop_rate`]; default 5 s; each one is bounded by its
    /// own [`Timing::unregister_timeout`](crate::Timing::unregister_timeout)
    /// too).
    pub shutdown_timeout: Duration,
    /// Where the service reads time (the `now` of every core input and timer).
    /// Default [`Clock::new`]: tokio's clock, so a test on a paused runtime
    /// drives registrations, refreshes and retries with `tokio::time::advance`.
    pub clock: Clock,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            manager: ManagerConfig::default(),
            event_queue: 4096,
            shutdown_timeout: Duration::from_secs(5),
            clock: Clock::new(),
        }
    }
}

/// Where a registration's binding lives: what a proxy needs to place calls as
/// this identity and to recognise the calls that come back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address of record (From/To of the REGISTER).
    pub aor: SipUri,
    /// The Contact URI registered (after any NAT rewrite): requests from the
    /// registrar for this AOR arrive with this Request-URI.
    pub contact: SipUri,
    /// The registrar address the last REGISTER went to. Sending to this target
    /// over a connection-oriented transport reuses the registration's
    /// connection (the transport reuses an open connection to the same peer).
    pub target: Target,
    /// The connection carrying the registration (TCP/TLS/WS), when known.
    pub flow: Option<FlowId>,
    /// The registration's Call-ID.
    pub call_id: String,
}

/// The state of one registration, as published on its watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The registration state.
    pub state: State,
    /// The binding, once a REGISTER was sent (kept while retrying: it shows
    /// where the last attempt went).
    pub binding: Option<Binding>,
}

/// What the event stream reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceEvent {
    /// A registration's state changed.
    StateChanged {
        /// The registration.
        id: RegistrationId,
        /// Its new state.
        state: State,
    },
    /// A registration finished unregistering (after
    /// [`RegistrationService::remove`], a re-keying
    /// [`RegistrationService::update`], or shutdown) and is gone.
    Removed {
        /// The registration.
        id: RegistrationId,
    },
}

/// Driver counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Registrations currently managed (including ones unregistering).
    pub registrations: usize,
    /// REGISTER requests handed to the endpoint since start.
    pub registers_sent: u64,
}

enum Command {
    Add {
        cfg: RegistrationConfig,
        reply: oneshot::Sender<Result<(RegistrationId, watch::Receiver<Status>), Error>>,
    },
    Update {
        id: RegistrationId,
        cfg: RegistrationConfig,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Remove {
        id: RegistrationId,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Watch {
        id: RegistrationId,
        reply: oneshot::Sender<Option<watch::Receiver<Status>>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// News from one REGISTER transaction's task.
struct Outcome {
    id: RegistrationId,
    /// Call-ID and CSeq of the request, to drop news of superseded ones.
    key: (String, u32),
    kind: OutcomeKind,
}

enum OutcomeKind {
    /// The request goes to this address (resolved, or reused).
    Sending(Target),
    /// Its outcome.
    Done(Input),
}

/// Handle to the registration driver. Cheap to clone; the driver runs until
/// [`shutdown`](Self::shutdown) or until every handle is dropped (which also
/// unregisters everything).
///
/// ```no_run
/// # async fn demo(endpoint: siplink_transaction::Endpoint, cfg: siplink_register::RegistrationConfig)
/// # -> Result<(), siplink_register::Error> {
/// use siplink_register::{RegistrationService, ServiceConfig, State};
///
/// let (service, mut events) = RegistrationService::start(endpoint, ServiceConfig::default());
/// let (id, mut status) = service.add(cfg).await?;
/// status.wait_for(|s| matches!(s.state, State::Registered { .. })).await.ok();
/// println!("{id:?} registered as {:?}", status.borrow().binding);
/// service.shutdown().await; // unregisters, bounded in time
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistrationService {
    cmd: mpsc::Sender<Command>,
    events: broadcast::Sender<ServiceEvent>,
}

impl RegistrationService {
    /// Starts the driver task on `endpoint` (inside a tokio runtime). Returns
    /// the handle and a receiver of the event stream (more with
    /// [`subscribe`](Self::subscribe)).
    pub fn start(
        endpoint: Endpoint,
        config: ServiceConfig,
    ) -> (RegistrationService, broadcast::Receiver<ServiceEvent>) {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, events_rx) = broadcast::channel(config.event_queue.max(1));
        let flows = endpoint.transport().subscribe();
        let (outcome_tx, outcome_rx) = mpsc::channel(OUTCOME_QUEUE);
        let driver = Driver {
            regs: Registrations::new(config.manager.clone()),
            endpoint,
            events: events.clone(),
            watches: HashMap::new(),
            bindings: HashMap::new(),
            in_flight: HashMap::new(),
            by_peer: HashMap::new(),
            flow_of_peer: HashMap::new(),
            outcome_tx,
            registers_sent: 0,
            shutdown_timeout: config.shutdown_timeout,
            clock: config.clock,
        };
        tokio::spawn(driver.run(cmd_rx, outcome_rx, flows));
        (
            RegistrationService {
                cmd: cmd_tx,
                events,
            },
            events_rx,
        )
    }

    /// Another receiver of the event stream (events from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<ServiceEvent> {
        self.events.subscribe()
    }

    /// Adds a registration (its first REGISTER is staggered, see
    /// [`ManagerConfig::start_rate`]) and returns its id and state watch.
    /// Errors: an invalid configuration, or [`Error::ServiceStopped`].
    pub async fn add(
        &self,
        cfg: RegistrationConfig,
    ) -> Result<(RegistrationId, watch::Receiver<Status>), Error> {
        let (reply, wait) = oneshot::channel();
        self.command(Command::Add { cfg, reply }).await?;
        wait.await.map_err(|_| Error::ServiceStopped)?
    }

    /// Changes a registration's configuration, credentials included (see
    /// [`Registrations::update`]). The watch stays valid.
    pub async fn update(&self, id: RegistrationId, cfg: RegistrationConfig) -> Result<(), Error> {
        let (reply, wait) = oneshot::channel();
        self.command(Command::Update { id, cfg, reply }).await?;
        wait.await.map_err(|_| Error::ServiceStopped)?
    }

    /// Removes a registration: it unregisters (bounded in time), then
    /// [`ServiceEvent::Removed`] is sent and its watch closes.
    pub async fn remove(&self, id: RegistrationId) -> Result<(), Error> {
        let (reply, wait) = oneshot::channel();
        self.command(Command::Remove { id, reply }).await?;
        wait.await.map_err(|_| Error::ServiceStopped)?
    }

    /// The state watch of `id` (`None` if unknown).
    pub async fn watch(&self, id: RegistrationId) -> Option<watch::Receiver<Status>> {
        let (reply, wait) = oneshot::channel();
        self.command(Command::Watch { id, reply }).await.ok()?;
        wait.await.ok().flatten()
    }

    /// Counters.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let (reply, wait) = oneshot::channel();
        self.command(Command::Stats { reply }).await?;
        wait.await.map_err(|_| Error::ServiceStopped)
    }

    /// Unregisters every registration and stops the driver. The unregisters
    /// are paced at [`ManagerConfig::stop_rate`] (10,000 take 5 s at the
    /// default 2000/s); the wait ends at most
    /// [`ServiceConfig::shutdown_timeout`] after the last one was sent. The
    /// endpoint is left running (it is the caller's).
    pub async fn shutdown(&self) {
        let (reply, wait) = oneshot::channel();
        if self.cmd.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = wait.await;
        }
    }

    async fn command(&self, c: Command) -> Result<(), Error> {
        self.cmd.send(c).await.map_err(|_| Error::ServiceStopped)
    }
}

struct Driver {
    regs: Registrations,
    endpoint: Endpoint,
    events: broadcast::Sender<ServiceEvent>,
    watches: HashMap<RegistrationId, watch::Sender<Status>>,
    /// Last binding per registration (registrar address, contact).
    bindings: HashMap<RegistrationId, Binding>,
    /// Call-ID and CSeq of the REGISTER last sent per registration.
    in_flight: HashMap<RegistrationId, (String, u32)>,
    /// Connection-oriented registrations by the registrar address they use.
    by_peer: HashMap<(Protocol, SocketAddr), HashSet<RegistrationId>>,
    /// Open flows by peer (from the transport's `Opened` events).
    flow_of_peer: HashMap<(Protocol, SocketAddr), FlowId>,
    outcome_tx: mpsc::Sender<Outcome>,
    registers_sent: u64,
    shutdown_timeout: Duration,
    clock: Clock,
}

impl Driver {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut outcomes: mpsc::Receiver<Outcome>,
        mut flows: broadcast::Receiver<FlowEvent>,
    ) {
        let mut shutdown_reply: Option<oneshot::Sender<()>> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut cmds_open = true;
        let mut flows_open = true;
        loop {
            if let Some(d) = deadline
                && (self.regs.is_empty() || self.clock.tokio_now() >= d)
            {
                break;
            }
            let wake = self.regs.poll_timeout().map(tokio::time::Instant::from_std);
            let sleep_until = match (wake, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                c = cmds.recv(), if cmds_open => match c {
                    Some(Command::Shutdown { reply }) => {
                        if deadline.is_none() {
                            deadline = Some(self.begin_shutdown());
                        }
                        // A second shutdown call is answered at once.
                        if let Some(old) = shutdown_reply.replace(reply) {
                            let _ = old.send(());
                        }
                    }
                    Some(c) => self.command(c, deadline.is_some()),
                    None => {
                        cmds_open = false;
                        if deadline.is_none() {
                            deadline = Some(self.begin_shutdown());
                        }
                    }
                },
                Some(o) = outcomes.recv() => self.outcome(o),
                f = flows.recv(), if flows_open => match f {
                    Ok(ev) => self.flow_event(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "flow events lagged: checking known flows");
                        self.check_flows();
                    }
                    Err(broadcast::error::RecvError::Closed) => flows_open = false,
                },
                _ = sleep_opt(sleep_until) => {
                    if deadline.is_some_and(|d| self.clock.tokio_now() >= d) {
                        break;
                    }
                    self.regs.handle_timeout(self.clock.now());
                }
            }
            self.dispatch();
        }
        // Whatever is left (no answer within the bound) is dropped here.
        for (id, w) in self.watches.drain() {
            w.send_modify(|s| s.state = State::Unregistered);
            let _ = self.events.send(ServiceEvent::Removed { id });
        }
        if let Some(r) = shutdown_reply {
            let _ = r.send(());
        }
        debug!("registration service stopped");
    }

    /// Starts the paced unregisters; returns when to stop waiting for them.
    fn begin_shutdown(&mut self) -> tokio::time::Instant {
        let span = self.regs.stop_span();
        self.regs.shutdown(self.clock.now());
        self.clock.tokio_now() + span + self.shutdown_timeout
    }

    fn command(&mut self, c: Command, stopping: bool) {
        let now = self.clock.now();
        match c {
            Command::Add { cfg, reply } => {
                if stopping {
                    let _ = reply.send(Err(Error::ServiceStopped));
                    return;
                }
                let r = self.regs.add(cfg, now).map(|id| {
                    let (tx, rx) = watch::channel(Status {
                        state: State::Unregistered,
                        binding: None,
                    });
                    self.watches.insert(id, tx);
                    (id, rx)
                });
                let _ = reply.send(r);
            }
            Command::Update { id, cfg, reply } => {
                let _ = reply.send(self.regs.update(id, cfg, now));
            }
            Command::Remove { id, reply } => {
                let _ = reply.send(self.regs.remove(id, now));
            }
            Command::Watch { id, reply } => {
                let _ = reply.send(self.watches.get(&id).map(watch::Sender::subscribe));
            }
            Command::Stats { reply } => {
                let _ = reply.send(Stats {
                    registrations: self.regs.len(),
                    registers_sent: self.registers_sent,
                });
            }
            Command::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    /// Acts on the manager's events.
    fn dispatch(&mut self) {
        while let Some(ev) = self.regs.poll_output() {
            match ev {
                Event::Send {
                    id,
                    request,
                    target,
                    reuse_address,
                } => self.send(id, request, target, reuse_address),
                Event::StateChanged { id, state } => {
                    if let Some(w) = self.watches.get(&id) {
                        w.send_replace(self.status(id, state.clone()));
                    }
                    let _ = self.events.send(ServiceEvent::StateChanged { id, state });
                }
                Event::Keepalive { id, target } => self.keepalive(id, target),
                Event::Removed { id } => {
                    self.forget(id);
                    if let Some(w) = self.watches.remove(&id) {
                        w.send_modify(|s| s.state = State::Unregistered);
                    }
                    let _ = self.events.send(ServiceEvent::Removed { id });
                }
            }
        }
    }

    fn forget(&mut self, id: RegistrationId) {
        self.in_flight.remove(&id);
        if let Some(b) = self.bindings.remove(&id) {
            let key = (b.target.protocol, b.target.addr);
            if let Some(set) = self.by_peer.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_peer.remove(&key);
                }
            }
        }
    }

    /// Starts a task that resolves (unless the previous address is to be
    /// reused), runs the client transaction and reports its outcome.
    fn send(&mut self, id: RegistrationId, request: Message, target: TargetAddr, reuse: bool) {
        let (Ok(call_id), Ok(cseq)) = (request.call_id(), request.cseq()) else {
            warn!(?id, "REGISTER without Call-ID or CSeq: not sent");
            return;
        };
        let key = (call_id.to_string(), cseq.seq);
        self.in_flight.insert(id, key.clone());
        self.registers_sent += 1;
        let previous = if reuse {
            self.bindings
                .get(&id)
                .map(|b| b.target.clone())
                .filter(|t| t.protocol == target.transport)
        } else {
            None
        };
        let endpoint = self.endpoint.clone();
        let outcomes = self.outcome_tx.clone();
        tokio::spawn(async move {
            let dest = match previous {
                Some(t) => Some(t),
                None => resolve(&endpoint, &target).await,
            };
            let input = match dest {
                None => Input::TransportError,
                Some(dest) => {
                    let sent = Outcome {
                        id,
                        key: key.clone(),
                        kind: OutcomeKind::Sending(dest.clone()),
                    };
                    if outcomes.send(sent).await.is_err() {
                        return;
                    }
                    run_transaction(&endpoint, request, dest).await
                }
            };
            let done = Outcome {
                id,
                key,
                kind: OutcomeKind::Done(input),
            };
            let _ = outcomes.send(done).await;
        });
    }

    fn outcome(&mut self, o: Outcome) {
        if self.in_flight.get(&o.id) != Some(&o.key) {
            return; // a superseded request
        }
        match o.kind {
            OutcomeKind::Sending(target) => self.record_target(o.id, o.key.0, target),
            OutcomeKind::Done(input) => {
                self.in_flight.remove(&o.id);
                let _ = self.regs.handle_input(o.id, input, self.clock.now());
            }
        }
    }

    /// Remembers where `id`'s REGISTER goes (for the binding, the flow-drop
    /// index and the reuse of the address by a continuation).
    fn record_target(&mut self, id: RegistrationId, call_id: String, target: Target) {
        let Some(reg) = self.regs.get(id) else {
            return;
        };
        let peer = (target.protocol, target.addr);
        let old = self
            .bindings
            .get(&id)
            .map(|b| (b.target.protocol, b.target.addr));
        if old != Some(peer) {
            if let Some(k) = old
                && let Some(set) = self.by_peer.get_mut(&k)
            {
                set.remove(&id);
                if set.is_empty() {
                    self.by_peer.remove(&k);
                }
            }
            if target.protocol.is_stream() {
                self.by_peer.entry(peer).or_default().insert(id);
            }
        }
        let flow = self.flow_of_peer.get(&peer).copied();
        let binding = Binding {
            aor: reg.config().aor.clone(),
            contact: reg.contact().unwrap_or_else(|| reg.config().aor.clone()),
            target,
            flow,
            call_id,
        };
        self.bindings.insert(id, binding);
    }

    /// The status published on `id`'s watch.
    fn status(&self, id: RegistrationId, state: State) -> Status {
        let mut binding = self.bindings.get(&id).cloned();
        if let (Some(b), Some(reg)) = (binding.as_mut(), self.regs.get(id))
            && let Some(c) = reg.contact()
        {
            b.contact = c; // after a Contact rewrite
        }
        Status { state, binding }
    }

    fn keepalive(&mut self, id: RegistrationId, _target: TargetAddr) {
        let Some(b) = self.bindings.get(&id) else {
            return;
        };
        if !b.target.protocol.is_stream() {
            // RFC 5626 STUN keepalives over UDP are not implemented.
            return;
        }
        let dest: Destination = match b.flow {
            Some(f) => f.into(),
            None => b.target.clone().into(),
        };
        let transport = self.endpoint.transport().clone();
        tokio::spawn(async move {
            if let Err(e) = transport
                .send_bytes(dest, Bytes::from_static(CRLF_PING))
                .await
            {
                debug!(%e, "keepalive not sent");
            }
        });
    }

    fn flow_event(&mut self, ev: FlowEvent) {
        let key = (ev.protocol, ev.peer);
        match ev.kind {
            FlowEventKind::Opened => {
                self.flow_of_peer.insert(key, ev.flow);
                if let Some(ids) = self.by_peer.get(&key) {
                    for id in ids {
                        if let Some(b) = self.bindings.get_mut(id) {
                            b.flow = Some(ev.flow);
                        }
                    }
                }
            }
            FlowEventKind::Closed(_) => {
                if self.flow_of_peer.get(&key) == Some(&ev.flow) {
                    self.flow_of_peer.remove(&key);
                }
                let ids: Vec<_> = self
                    .by_peer
                    .get(&key)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                let now = self.clock.now();
                for id in ids {
                    let same_flow = self
                        .bindings
                        .get(&id)
                        .is_some_and(|b| b.flow.is_none_or(|f| f == ev.flow));
                    if same_flow {
                        if let Some(b) = self.bindings.get_mut(&id) {
                            b.flow = None;
                        }
                        let _ = self.regs.handle_input(id, Input::FlowClosed, now);
                    }
                }
            }
            FlowEventKind::KeepaliveTimeout => {}
        }
    }

    /// After missing flow events: every known flow that is gone counts as closed.
    fn check_flows(&mut self) {
        let transport = self.endpoint.transport().clone();
        let dead: Vec<_> = self
            .flow_of_peer
            .iter()
            .filter(|(_, f)| !transport.is_flow_alive(**f))
            .map(|(k, f)| (*k, *f))
            .collect();
        for ((protocol, peer), flow) in dead {
            self.flow_event(FlowEvent {
                flow,
                protocol,
                peer,
                local: peer,
                kind: FlowEventKind::Closed("missed".into()),
            });
        }
    }
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Resolves a target (A/AAAA through the transport's resolver) for a new
/// attempt; the first address is used (failover between several configured or
/// resolved addresses is the core's job, through its target list).
async fn resolve(endpoint: &Endpoint, target: &TargetAddr) -> Option<Target> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Some(Target::new(
            target.transport,
            SocketAddr::new(ip, target.port),
        ));
    }
    match endpoint
        .transport()
        .resolve(&target.host, target.port, target.transport)
        .await
    {
        Ok(list) => list.into_iter().next(),
        Err(e) => {
            debug!(host = %target.host, %e, "registrar name did not resolve");
            None
        }
    }
}

/// Runs one client transaction and turns its outcome into an [`Input`].
async fn run_transaction(endpoint: &Endpoint, request: Message, dest: Target) -> Input {
    let mut tx = match endpoint.send_request(request, dest).await {
        Ok(tx) => tx,
        Err(e) => {
            debug!(%e, "REGISTER not sent");
            return Input::TransportError;
        }
    };
    loop {
        match tx.next().await {
            Some(ClientEvent::Provisional(_)) | Some(ClientEvent::Additional2xx(_)) => {}
            Some(ClientEvent::Final(resp)) => return Input::Response(resp),
            Some(ClientEvent::Timeout) => return Input::Timeout,
            Some(ClientEvent::TransportError) | None => return Input::TransportError,
        }
    }
}
