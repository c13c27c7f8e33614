//! The engine's driver (`[proxy] core = "engine"`): the sans-IO
//! [`Engine`](crate::engine::Engine) fed from the run-to-completion runtime,
//! with no task or channel per call.
//!
//! * A new server transaction's request → `handle_request`, in the worker
//!   (or connection task) that read it; the transaction is kept
//!   ([`Deferred`]) until the engine answers it.
//! * Client transactions' events → `handle_response` /
//!   `handle_branch_failure`, in the worker that read the response (or the
//!   runtime's timer task); responses no transaction wanted (2xx
//!   retransmissions, RFC 6026) and ACKs for 2xx → `handle_stray_response` /
//!   `handle_request`.
//! * Lookups are answered at once from memory (the digest server, the
//!   in-memory location store, the router and the connections' state); a
//!   store that has to wait is asked in a spawned step that re-enters the
//!   engine with the answer.
//! * `Output::Send` → [`Handle::send_request`]: a flow, or an IP literal over
//!   UDP at once; a host name is resolved in a spawned step.
//! * The engine is sharded by Call-ID (one engine behind a short lock per
//!   shard, never held across a send or an await); one task drives the
//!   engines' timers and one hands them closed flows.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use siplink_auth::{Algorithm, Outcome, RequestInfo};
use siplink_message::headers::HeaderName;
use siplink_message::uri::Uri;
use siplink_message::{Message, Transport as Protocol};
use siplink_registrar::Reach;
use siplink_transaction::runtime::{ClientDest, Deferred, Handle, Request};
use siplink_transaction::{TransactionId, TuEvent};
use siplink_transport::{FlowId, Incoming, Origin};
use tokio::sync::{Notify, broadcast};
use tracing::{debug, warn};

use crate::engine::{
    BranchId, Engine, LookupResult, LookupToken, NextHop, Output, Query, RouteGroup, ServerTx,
    Target,
};
use crate::plan::{Kind, LiveState, Plan, PlanView};
use crate::routing::Decision;

use super::{Inner, lock};

/// Engines (shards) per driver: calls are spread by Call-ID.
const SHARDS: usize = 16;
/// Client events kept for transactions whose id is not known yet (a
/// response faster than `send_request` returning) at most.
const EARLY_EVENTS: usize = 4096;

/// The running proxy's live state as the engine's view needs it.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    inner: Weak<Inner>,
}

impl LiveState for Live {
    fn registrar_of(&self, connection: usize, contact_user: &str) -> Option<IpAddr> {
        let inner = self.inner.upgrade()?;
        let rt = inner.runtime();
        let c = rt.connections.get(connection)?;
        let r = c
            .registrations
            .iter()
            .find(|r| r.contact_user == contact_user)?;
        let status = r.status.borrow();
        status.binding.as_ref().map(|b| b.target.addr.ip())
    }

    fn is_registered_pbx(&self, connection: usize, origin: &Origin) -> bool {
        let Some(inner) = self.inner.upgrade() else {
            return false;
        };
        let rt = inner.runtime();
        let Some(c) = rt.connections.get(connection) else {
            return false;
        };
        let Some(targets) = now_or_never(inner.pbx_targets(c)).flatten() else {
            return false;
        };
        targets.iter().any(|t| {
            (t.binding.flow.is_some() && t.binding.flow == origin.flow)
                || t.binding.source == origin.peer
        })
    }
}

type View = PlanView<Live>;

/// One engine and the server transactions it answers.
struct Shard {
    engine: Mutex<Engine<View>>,
    servers: Mutex<HashMap<ServerTx, Deferred>>,
}

/// What a client transaction id stands for.
enum Client {
    /// A branch of shard `.0`'s engine.
    Branch(usize, BranchId),
    /// Events that came before the id was recorded.
    Early(Vec<TuEvent>),
}

/// The engine's driver. See the [module](self).
pub(crate) struct Driver {
    inner: Weak<Inner>,
    shards: Vec<Shard>,
    clients: Vec<Mutex<HashMap<TransactionId, Client>>>,
    handle: OnceLock<Handle>,
    next_tx: AtomicU64,
    hasher: RandomState,
    /// The plan in use (the connections' targets and credentials).
    plan: std::sync::RwLock<Arc<Plan>>,
    /// The media relay (rtpengine) for connections with media on, when
    /// `[media]` lists instances.
    relay: OnceLock<Arc<siplink_media::RtpEngine>>,
    /// Wakes the timer task for an earlier deadline.
    wake: Arc<Notify>,
    /// The deadline the timer task sleeps until, in nanoseconds after
    /// `base` (`u64::MAX`: none): an input with an earlier one wakes it
    /// (no lock: every input checks it).
    armed: AtomicU64,
    base: Instant,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Polls a future once: its value when it is ready at once (the in-memory
/// store's futures always are).
fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

impl Driver {
    /// A driver over `plan` for `inner`'s proxy; [`start`](Self::start)
    /// once the runtime exists.
    pub(crate) fn new(inner: &Arc<Inner>, plan: Arc<Plan>) -> Arc<Driver> {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let live = Live {
            inner: Arc::downgrade(inner),
        };
        let config = plan.engine_config();
        let shards = (0..SHARDS)
            .map(|_| Shard {
                engine: Mutex::new(Engine::new(
                    PlanView::new(plan.clone(), live.clone(), key),
                    config.clone(),
                )),
                servers: Mutex::new(HashMap::new()),
            })
            .collect();
        Arc::new(Driver {
            inner: Arc::downgrade(inner),
            shards,
            clients: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            handle: OnceLock::new(),
            next_tx: AtomicU64::new(1),
            hasher: RandomState::new(),
            plan: std::sync::RwLock::new(plan.clone()),
            relay: OnceLock::new(),
            wake: Arc::new(Notify::new()),
            armed: AtomicU64::new(u64::MAX),
            base: Instant::now(),
        })
    }

    /// Starts sending on `handle` and the two tasks (engine timers, closed
    /// flows).
    pub(crate) fn start(self: &Arc<Self>, handle: Handle) {
        let _ = self.handle.set(handle);
        tokio::spawn(timers(Arc::downgrade(self)));
        if let Some(inner) = self.inner.upgrade() {
            tokio::spawn(flows(Arc::downgrade(self), inner.transport.subscribe()));
        }
    }

    /// The rtpengine client media requests go to.
    pub(crate) fn set_relay(&self, relay: siplink_media::RtpEngine) {
        let _ = self.relay.set(Arc::new(relay));
    }

    /// A reload's new plan (the engines' key stays: tokens and MACs handed
    /// out remain valid).
    pub(crate) fn set_plan(&self, plan: Arc<Plan>) {
        *self.plan.write().unwrap_or_else(|e| e.into_inner()) = plan.clone();
        for s in &self.shards {
            lock(&s.engine).view_mut().set_plan(plan.clone());
        }
    }

    /// The engines' state summed: (calls being set up, branches, dialog
    /// records, timers).
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        self.shards.iter().fold((0, 0, 0, 0), |acc, s| {
            let (a, b, c, d) = lock(&s.engine).sizes();
            (acc.0 + a, acc.1 + b, acc.2 + c, acc.3 + d)
        })
    }

    /// `t` as nanoseconds after `base` (earlier instants are 0).
    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn now(&self) -> Instant {
        match self.inner.upgrade() {
            Some(i) => i.clock.now(),
            None => Instant::now(),
        }
    }

    fn shard_of(&self, m: &Message) -> usize {
        let id = m.header(HeaderName::CallId).unwrap_or_default();
        (self.hasher.hash_one(id) % self.shards.len() as u64) as usize
    }

    fn client_slot(&self, id: TransactionId) -> &Mutex<HashMap<TransactionId, Client>> {
        let i = self.hasher.hash_one(id) % self.clients.len() as u64;
        &self.clients[i as usize]
    }

    /// Runs `input` on shard `s`'s engine and carries out what comes out.
    fn with_engine(&self, s: usize, input: impl FnOnce(&mut Engine<View>, Instant)) {
        let now = self.now();
        let (out, next) = {
            let mut e = lock(&self.shards[s].engine);
            input(&mut e, now);
            let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
            (out, e.poll_timeout())
        };
        if let Some(t) = next {
            let n = self.nanos(t);
            if n < self.armed.fetch_min(n, Ordering::AcqRel) {
                self.wake.notify_one();
            }
        }
        for o in out {
            self.perform(s, o);
        }
    }

    /// A new request in its server transaction.
    pub(crate) fn request(&self, request: Request<'_>) {
        let message = request.message().clone();
        let origin = *request.origin();
        let s = self.shard_of(&message);
        let tx = ServerTx(self.next_tx.fetch_add(1, Ordering::Relaxed));
        lock(&self.shards[s].servers).insert(tx, request.defer());
        self.with_engine(s, |e, now| e.handle_request(tx, message, origin, now));
    }

    /// A response or ACK no transaction wanted: the engine's if it acts on
    /// it, else given back (for the classic path).
    pub(crate) fn stray(&self, message: Message, origin: &Origin) -> Option<Message> {
        let s = self.shard_of(&message);
        let now = self.now();
        let out: Vec<Output> = {
            let mut e = lock(&self.shards[s].engine);
            if message.is_request() {
                e.handle_request(ServerTx(0), message.clone(), *origin, now);
            } else {
                e.handle_stray_response(message.clone(), now);
            }
            std::iter::from_fn(|| e.poll_output()).collect()
        };
        let acted = out
            .iter()
            .any(|o| matches!(o, Output::Forward { .. } | Output::Send { .. }));
        for o in out {
            self.perform(s, o);
        }
        (!acted).then_some(message)
    }

    /// An event of one of the engine's client transactions.
    pub(crate) fn client_event(&self, id: TransactionId, event: TuEvent) {
        let known = {
            let mut map = lock(self.client_slot(id));
            match map.get_mut(&id) {
                Some(Client::Branch(s, b)) => {
                    let (s, b) = (*s, *b);
                    if matches!(
                        event,
                        TuEvent::Final(_) | TuEvent::Timeout | TuEvent::TransportError
                    ) {
                        map.remove(&id);
                    }
                    Some((s, b))
                }
                Some(Client::Early(events)) => {
                    events.push(event);
                    return;
                }
                None => {
                    if let TuEvent::Additional2xx(m) = event {
                        drop(map);
                        let s = self.shard_of(&m);
                        self.with_engine(s, |e, now| e.handle_stray_response(*m, now));
                        return;
                    }
                    if map.len() < EARLY_EVENTS {
                        map.insert(id, Client::Early(vec![event]));
                    }
                    return;
                }
            }
        };
        if let Some((s, branch)) = known {
            self.feed(s, branch, event);
        }
    }

    fn feed(&self, s: usize, branch: BranchId, event: TuEvent) {
        match event {
            TuEvent::Provisional(m) | TuEvent::Final(m) | TuEvent::Additional2xx(m) => {
                self.with_engine(s, |e, now| e.handle_response(branch, *m, now))
            }
            TuEvent::Timeout => {
                self.with_engine(s, |e, now| e.handle_branch_failure(branch, true, now))
            }
            TuEvent::TransportError => {
                self.with_engine(s, |e, now| e.handle_branch_failure(branch, false, now))
            }
            TuEvent::Request(_) | TuEvent::Ack(_) => {}
        }
    }

    /// Records client transaction `id` as branch `branch` of shard `s` and
    /// hands it the events that came first.
    fn record_client(&self, id: TransactionId, s: usize, branch: BranchId) {
        let early = {
            let mut map = lock(self.client_slot(id));
            match map.insert(id, Client::Branch(s, branch)) {
                Some(Client::Early(events)) => events,
                _ => Vec::new(),
            }
        };
        for event in early {
            self.client_event(id, event);
        }
    }

    fn perform(&self, s: usize, output: Output) {
        match output {
            Output::Respond { tx, response } => self.respond(s, tx, response),
            Output::Send {
                branch,
                request,
                hop,
            } => match self.dest(&hop) {
                Dest::Now(dest) => self.send(s, branch, request, dest),
                Dest::Resolve(host, port) => self.resolve_then_send(s, branch, request, host, port),
                Dest::Connect(addr) => self.connect_then_send(s, branch, request, addr),
            },
            Output::Forward { message, hop } => self.forward(message, hop),
            Output::ToRegistrar { tx, .. } => {
                // REGISTERs for our domains never reach the engine (the
                // front hands them to the registrar): answered 500.
                lock(&self.shards[s].servers).remove(&tx);
            }
            Output::Lookup { token, query } => self.lookup(s, token, query),
            Output::Media { token, request } => self.media(s, token, request),
            Output::Event(crate::engine::Event::ConnectionFailed { connection, .. }) => {
                // As the classic path notes it: the connection's last error.
                if let Some(inner) = self.inner.upgrade()
                    && let Some(c) = inner
                        .runtime()
                        .connections
                        .iter()
                        .find(|c| c.config.name == connection)
                {
                    let why = format!("{connection}: no answer (timeout, 408 or 503)");
                    warn!(%connection, "failing over: {why}");
                    c.set_error(inner.clock.wall_now(), why);
                }
            }
            Output::Event(e) => debug!(event = ?e, "call event"),
        }
    }

    /// A media request (rtpengine offer/answer/delete), run in a spawned
    /// step that answers the engine; without a relay it fails at once (503).
    fn media(&self, s: usize, token: crate::engine::MediaToken, request: siplink_media::Request) {
        let (Some(relay), Some(inner)) = (self.relay.get().cloned(), self.inner.upgrade()) else {
            let failed = crate::engine::MediaResult::Failed(crate::engine::MediaFailure {
                status: 503,
                reason: "No Media Relay".to_owned(),
            });
            return self.with_engine(s, |e, now| e.handle_media(token, failed, now));
        };
        let Some(me) = inner.engine.get().map(Arc::downgrade) else {
            return;
        };
        tokio::spawn(async move {
            let result = crate::media_io::run(&*relay, request).await;
            if let Some(driver) = me.upgrade() {
                driver.with_engine(s, |e, now| e.handle_media(token, result, now));
            }
        });
    }

    /// A message without a transaction (ACK for a 2xx, a 2xx
    /// retransmission): at once, or after resolving or connecting in a
    /// spawned step.
    fn forward(&self, message: Message, hop: NextHop) {
        let Some(h) = self.handle.get() else {
            return;
        };
        let dest = match self.dest(&hop) {
            Dest::Now(dest) => dest,
            Dest::Resolve(host, port) => {
                let Some(inner) = self.inner.upgrade() else {
                    return;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let found = inner.transport.resolve(&host, port, Protocol::Udp).await;
                    if let Some(t) = found.ok().and_then(|t| t.into_iter().next()) {
                        let _ = h.send_stateless(message, ClientDest::Udp(t.addr));
                    }
                });
                return;
            }
            Dest::Connect(addr) => {
                let Some(inner) = self.inner.upgrade() else {
                    return;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let Ok(targets) = inner
                        .transport
                        .resolve(&addr.host, addr.port, addr.transport)
                        .await
                    else {
                        return;
                    };
                    let Some(t) = targets.into_iter().next() else {
                        return;
                    };
                    let ping = bytes::Bytes::from_static(b"\r\n\r\n");
                    if let Ok(sent) = inner.transport.send_bytes(t, ping).await
                        && let Some(f) = sent.flow
                    {
                        let _ = h.send_stateless(message, ClientDest::Flow(f));
                    }
                });
                return;
            }
        };
        if let Err(e) = h.send_stateless(message, dest) {
            debug!(error = %e, "stateless forward failed");
        }
    }

    fn respond(&self, s: usize, tx: ServerTx, response: Message) {
        let status = response.status().unwrap_or(500);
        let servers = &self.shards[s].servers;
        let r = if status < 200 {
            match lock(servers).get_mut(&tx) {
                Some(d) => d.respond_provisional(response),
                None => return,
            }
        } else {
            let Some(d) = lock(servers).remove(&tx) else {
                return;
            };
            // Challenges keep nothing (issue 15): a retransmitted request is
            // challenged again.
            if matches!(status, 401 | 407) {
                d.respond_stateless(response)
            } else {
                d.respond(response)
            }
        };
        if let Err(e) = r {
            debug!(error = %e, status, "response not sent");
        }
    }

    fn dest(&self, hop: &NextHop) -> Dest {
        match hop {
            NextHop::Flow { flow, .. } => Dest::Now(ClientDest::Flow(*flow)),
            NextHop::Addr(t) if t.transport == Protocol::Udp => match t.host.parse::<IpAddr>() {
                Ok(ip) => Dest::Now(ClientDest::Udp(SocketAddr::new(ip, t.port))),
                Err(_) => Dest::Resolve(t.host.clone(), t.port),
            },
            // A connection to open (or find) first: TCP, TLS, WS, WSS.
            NextHop::Addr(t) => Dest::Connect(t.clone()),
        }
    }

    fn send(&self, s: usize, branch: BranchId, request: Message, dest: ClientDest) {
        let Some(handle) = self.handle.get() else {
            return;
        };
        match handle.send_request(request, dest) {
            Ok(id) => self.record_client(id, s, branch),
            Err(e) => {
                debug!(error = %e, "branch not sent");
                self.with_engine(s, |e, now| e.handle_branch_failure(branch, false, now));
            }
        }
    }

    /// A host name: resolved (RFC 3263, UDP) in a spawned step that sends
    /// the branch, or fails it.
    fn resolve_then_send(
        &self,
        s: usize,
        branch: BranchId,
        request: Message,
        host: String,
        port: u16,
    ) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let Some(me) = inner.engine.get().map(Arc::downgrade) else {
            return;
        };
        tokio::spawn(async move {
            let found = inner.transport.resolve(&host, port, Protocol::Udp).await;
            let Some(driver) = me.upgrade() else { return };
            match found.ok().and_then(|t| t.into_iter().next()) {
                Some(t) => driver.send(s, branch, request, ClientDest::Udp(t.addr)),
                None => driver.with_engine(s, |e, now| e.handle_branch_failure(branch, false, now)),
            }
        });
    }

    /// A stream next hop: its connection is found or opened (resolving a
    /// name, TLS with the name for SNI) in a spawned step, with a CRLF
    /// keep-alive (RFC 5626 §3.5.1) as the first bytes, then the branch goes
    /// over it as a flow, or fails.
    fn connect_then_send(
        &self,
        s: usize,
        branch: BranchId,
        request: Message,
        addr: siplink_message::TargetAddr,
    ) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let Some(me) = inner.engine.get().map(Arc::downgrade) else {
            return;
        };
        tokio::spawn(async move {
            let flow = match inner
                .transport
                .resolve(&addr.host, addr.port, addr.transport)
                .await
            {
                Ok(targets) => match targets.into_iter().next() {
                    Some(t) => inner
                        .transport
                        .send_bytes(t, bytes::Bytes::from_static(b"\r\n\r\n"))
                        .await
                        .ok()
                        .and_then(|sent| sent.flow),
                    None => None,
                },
                Err(_) => None,
            };
            let Some(driver) = me.upgrade() else { return };
            match flow {
                Some(f) => driver.send(s, branch, request, ClientDest::Flow(f)),
                None => driver.with_engine(s, |e, now| e.handle_branch_failure(branch, false, now)),
            }
        });
    }

    fn lookup(&self, s: usize, token: LookupToken, query: Query) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let result = match query {
            Query::Authenticate { request, origin } => authenticate(&inner, &request, &origin),
            Query::Bindings { user } => match now_or_never(inner.bindings_of(&user, None)) {
                Some(b) => LookupResult::Routes(vec![RouteGroup {
                    connection: None,
                    targets: b.iter().filter_map(|t| binding_target(t, None)).collect(),
                }]),
                None => return self.lookup_later(s, token, Query::Bindings { user }),
            },
            Query::Route {
                number,
                user,
                method,
            } => match route(&inner, &number, user.as_deref()) {
                Some(r) => r,
                None => {
                    let q = Query::Route {
                        number,
                        user,
                        method,
                    };
                    return self.lookup_later(s, token, q);
                }
            },
        };
        self.with_engine(s, |e, now| e.handle_lookup(token, result, now));
    }

    /// A lookup whose store has to wait: asked in a spawned step that
    /// answers the engine.
    fn lookup_later(&self, s: usize, token: LookupToken, query: Query) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let Some(me) = inner.engine.get().map(Arc::downgrade) else {
            return;
        };
        tokio::spawn(async move {
            let result = match query {
                Query::Bindings { user } => {
                    let b = inner.bindings_of(&user, None).await;
                    LookupResult::Routes(vec![RouteGroup {
                        connection: None,
                        targets: b.iter().filter_map(|t| binding_target(t, None)).collect(),
                    }])
                }
                Query::Route { number, user, .. } => {
                    route_async(&inner, &number, user.as_deref()).await
                }
                Query::Authenticate { .. } => return,
            };
            if let Some(driver) = me.upgrade() {
                driver.with_engine(s, |e, now| e.handle_lookup(token, result, now));
            }
        });
    }
}

/// Where a branch goes.
enum Dest {
    /// At once.
    Now(ClientDest),
    /// A host name to resolve (UDP).
    Resolve(String, u16),
    /// Over a connection to open or find first.
    Connect(siplink_message::TargetAddr),
}

/// The engines' timers: one task for every shard.
async fn timers(driver: Weak<Driver>) {
    loop {
        let Some(d) = driver.upgrade() else { return };
        let now = d.now();
        let mut next: Option<Instant> = None;
        for s in 0..d.shards.len() {
            let due = lock(&d.shards[s].engine)
                .poll_timeout()
                .is_some_and(|t| t <= now);
            if due {
                d.with_engine(s, |e, now| e.handle_timeout(now));
            }
            if let Some(t) = lock(&d.shards[s].engine).poll_timeout() {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        d.armed
            .store(next.map_or(u64::MAX, |t| d.nanos(t)), Ordering::Release);
        let wait = next.map_or(Duration::from_secs(60), |t| {
            t.saturating_duration_since(now)
        });
        let Some(inner) = d.inner.upgrade() else {
            return;
        };
        let until = inner.clock.tokio_now() + wait;
        drop(inner);
        // No strong reference while asleep: a proxy that goes takes its
        // driver (and this task, at its next wake-up) with it.
        let wake = d.wake.clone();
        drop(d);
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = wake.notified() => {}
        }
    }
}

/// Closed flows, to every engine (calls with a leg on them end).
async fn flows(
    driver: Weak<Driver>,
    mut events: broadcast::Receiver<siplink_transport::FlowEvent>,
) {
    loop {
        let flow: FlowId = match events.recv().await {
            Ok(e) => match e.kind {
                siplink_transport::FlowEventKind::Closed(_) => e.flow,
                _ => continue,
            },
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "the engine's driver fell behind the flow events"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(d) = driver.upgrade() else { return };
        for s in 0..d.shards.len() {
            d.with_engine(s, |e, now| e.handle_flow_closed(flow, now));
            // The engine answers nothing more to a caller whose flow is gone
            // (its calls are cancelled): its transactions go.
            // (Dropped with no lock held: each answers 500 into the void.)
            let gone: Vec<Deferred> = {
                let mut servers = lock(&d.shards[s].servers);
                let ids: Vec<ServerTx> = servers
                    .iter()
                    .filter(|(_, t)| t.origin().flow == Some(flow))
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter().filter_map(|id| servers.remove(id)).collect()
            };
            drop(gone);
        }
    }
}

/// A registered contact as a branch target (`number`: the user part the
/// Request-URI gets, for a PBX's binding).
fn binding_target(t: &siplink_registrar::Target, number: Option<&str>) -> Option<Target> {
    let mut uri = t.binding.uri().clone();
    if let Some(n) = number
        && let Uri::Sip(sip) = &uri
        && sip.user() != Some(n)
        && let Ok(u) = sip.to_builder().user(n.as_bytes()).build()
    {
        uri = Uri::Sip(u);
    }
    let request_uri = Some(uri.as_str().to_owned());
    match &t.reach {
        Reach::Flow(f) => Some(Target {
            request_uri,
            route: Vec::new(),
            hop: NextHop::Flow {
                flow: *f,
                protocol: t.binding.transport,
            },
        }),
        Reach::Contact { uri: contact, path } => {
            let first = path.first().and_then(|p| super::fork::path_uri(p));
            let hop = NextHop::from_uri(first.as_ref().unwrap_or(contact))?;
            Some(Target {
                request_uri,
                route: path.clone(),
                hop,
            })
        }
    }
}

/// The route groups for `number` dialled by `user`: `None` when a binding
/// lookup has to wait.
fn route(inner: &Inner, number: &str, user: Option<&str>) -> Option<LookupResult> {
    let rt = inner.runtime();
    let mut up = Vec::with_capacity(rt.connections.len());
    for c in &rt.connections {
        up.push(now_or_never(inner.connection_up(c, user))?);
    }
    let mut pbx = Vec::new();
    for c in &rt.connections {
        pbx.push(
            if c.config.kind == crate::config::ConnectionKind::InboundRegistration {
                now_or_never(inner.pbx_targets(c))?.unwrap_or_default()
            } else {
                Vec::new()
            },
        );
    }
    Some(groups(inner, number, user, &up, &pbx))
}

async fn route_async(inner: &Inner, number: &str, user: Option<&str>) -> LookupResult {
    let rt = inner.runtime();
    let mut up = Vec::with_capacity(rt.connections.len());
    let mut pbx = Vec::new();
    for c in &rt.connections {
        up.push(inner.connection_up(c, user).await);
        pbx.push(
            if c.config.kind == crate::config::ConnectionKind::InboundRegistration {
                inner.pbx_targets(c).await.unwrap_or_default()
            } else {
                Vec::new()
            },
        );
    }
    groups(inner, number, user, &up, &pbx)
}

/// The router's candidates as engine groups: each address of a trunk or
/// outbound registration a group of its own (tried in order), an inbound
/// PBX's bindings one group.
fn groups(
    inner: &Inner,
    number: &str,
    user: Option<&str>,
    up: &[bool],
    pbx: &[Vec<siplink_registrar::Target>],
) -> LookupResult {
    let rt = inner.runtime();
    let decision = rt
        .router
        .route(user, number, |i| up.get(i).copied().unwrap_or(false));
    let candidates = match decision {
        Decision::Route(c) | Decision::AllDown(c) => c,
        Decision::NoMatch => {
            return LookupResult::Refused(
                rt.config.proxy.no_match_status,
                "No Route For Number".into(),
            );
        }
        Decision::NotAllowed => {
            return LookupResult::Refused(403, "Connection Not Allowed".into());
        }
    };
    let plan = inner
        .engine
        .get()
        .map(|d| d.plan.read().unwrap_or_else(|e| e.into_inner()).clone());
    let Some(plan) = plan else {
        return LookupResult::Refused(500, "Engine Not Ready".into());
    };
    let mut out = Vec::new();
    for cand in candidates {
        let Some(c) = plan.connection(&cand.name) else {
            continue;
        };
        let name = Some(cand.name.clone());
        let (targets, domain, outbound) = match &c.kind {
            Kind::Trunk(t) => (&t.targets, &t.domain, &t.outbound_proxy),
            Kind::OutboundRegistration(or) => (&or.targets, &or.domain, &or.outbound_proxy),
            Kind::InboundRegistration(_) => {
                let targets: Vec<Target> = pbx
                    .get(cand.connection)
                    .map(|b| {
                        b.iter()
                            .filter_map(|t| binding_target(t, Some(&cand.number)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(RouteGroup {
                    connection: name,
                    targets,
                });
                continue;
            }
        };
        let ruri = format!("sip:{}@{}", cand.number, domain.uri_host());
        for t in targets {
            let (hop, route) = match outbound {
                Some(p) => (
                    NextHop::Addr(p.addr()),
                    vec![format!("<sip:{}:{};lr>", p.host.uri_host(), p.port())],
                ),
                None => (NextHop::Addr(t.addr()), Vec::new()),
            };
            out.push(RouteGroup {
                connection: name.clone(),
                targets: vec![Target {
                    request_uri: Some(ruri.clone()),
                    route,
                    hop,
                }],
            });
        }
    }
    LookupResult::Routes(out)
}

/// A phone's digest answer (407 challenge), with the failed-attempt limiter
/// shared with the registrar, as the classic path checks it.
fn authenticate(inner: &Inner, request: &Message, origin: &Origin) -> LookupResult {
    let creds = match request.proxy_authorization() {
        Ok(c) => c.to_vec(),
        Err(_) => return LookupResult::Refused(400, "Bad Proxy-Authorization".into()),
    };
    let method = request
        .method()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let uri = String::from_utf8_lossy(request.request_uri_bytes().map_or(&[][..], |b| b));
    let ip = origin.peer.ip();
    let selected = inner.digest.select(creds.iter());
    let claimed = selected.and_then(|c| c.username()).map(str::to_owned);
    let now = inner.clock.wall_now();
    if inner.limiter.check(ip, claimed.as_deref(), now).is_err() {
        return LookupResult::Refused(403, "Forbidden".into());
    }
    let bound = inner.digest.failure_counts(selected, ip, now);
    let outcome = {
        let secrets = inner.secrets.read().unwrap_or_else(|e| e.into_inner());
        let store = |user: &str, _realm: &str, _a: Algorithm| secrets.get(user).cloned();
        let info = RequestInfo::new(&method, &uri).with_body(request.body());
        inner
            .digest
            .authenticate(creds.iter(), &info, Some(ip), now, &store)
    };
    let counted = inner
        .limiter
        .record(&outcome, ip, claimed.as_deref(), bound, now);
    if counted != siplink_auth::Counted::Ignored {
        // The one line fail2ban matches (docs/security.md).
        warn!(
            "{}",
            siplink_auth::FailureLine {
                source: ip,
                user: claimed.as_deref(),
                method: &method,
            }
        );
    }
    let challenge = |challenges: Vec<siplink_message::headers::Challenge>| {
        let mut b = request.response(407);
        for c in challenges {
            b = b.header(HeaderName::ProxyAuthenticate, c);
        }
        match b.build() {
            Ok(r) => LookupResult::Challenge(r),
            Err(_) => LookupResult::Refused(500, "Challenge Not Built".into()),
        }
    };
    match outcome {
        Outcome::Accept(a) => LookupResult::Authenticated {
            user: Some(a.username),
        },
        Outcome::Challenge(ch) => challenge(ch),
        Outcome::Stale { challenges, .. } => challenge(challenges),
        Outcome::Forbidden(_) => LookupResult::Refused(403, "Forbidden".into()),
        Outcome::BadRequest(_) => LookupResult::Refused(400, "Bad Proxy-Authorization".into()),
    }
}

/// Whether the engine takes `incoming` (else the classic path does): every
/// request, and the responses to its own branches (top Via branch
/// `z9hG4bKsl…`; the endpoint's own client transactions, registrations and
/// probes, use other branches).
pub(crate) fn engine_takes(incoming: &Incoming) -> bool {
    let m = &incoming.message;
    if m.is_response() {
        return m
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .is_some_and(|b| b.starts_with("z9hG4bKsl"));
    }
    true
}
