//! The tokio driver: answers REGISTER server transactions, runs the expiry
//! timer, drops the bindings of dead flows, serves lookups and broadcasts
//! binding changes. All decisions stay in [`Registrar`]; this module only
//! moves requests, time and transport events in and responses and events out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message, Method, Uri};
use siplink_transaction::{ServerRequests, ServerTransactionHandle};
use siplink_transport::{Clock, FlowEventKind, Origin, Transport};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::Error;
use crate::binding::{Aor, BindingEvent, EventKind, FlowId, Reach, Target};
use crate::registrar::{Decision, Registrar, RequestContext};
use crate::store::LocationStore;

/// Tuning of a [`RegistrarService`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Capacity of the binding-event broadcast: a subscriber that falls this
    /// many events behind loses the oldest (it sees `Lagged`). Default 4 096.
    pub event_capacity: usize,
    /// How often expiry runs when the store cannot say when its next binding
    /// expires ([`LocationStore::poll_timeout`] returns `None` while it holds
    /// bindings, as a store without an expiry index does). Default 1 s.
    pub expiry_poll: Duration,
    /// Where the service reads time: the monotonic `now` (expiry, flood
    /// windows) and the wall-clock `now_system` of every REGISTER
    /// ([`Binding::registered_at`](crate::Binding::registered_at),
    /// [`Binding::expires_at_wall`](crate::Binding::expires_at_wall), digest
    /// nonces). Default [`Clock::new`]: tokio's clock, so a test on a paused
    /// runtime expires bindings with `tokio::time::advance`, and wall time
    /// moves with it.
    pub clock: Clock,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            event_capacity: 4096,
            expiry_poll: Duration::from_secs(1),
            clock: Clock::new(),
        }
    }
}

struct Shared {
    registrar: Registrar,
    store: Arc<dyn LocationStore>,
    transport: Transport,
    events: broadcast::Sender<BindingEvent>,
    /// The time the expiry task sleeps until (`None`: no known deadline).
    armed: Mutex<Option<Instant>>,
    wake: Notify,
    config: ServiceConfig,
}

/// Aborts the background tasks when the last service clone goes.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A registrar running on tokio over a [`LocationStore`].
///
/// * [`handle`](Self::handle) answers one REGISTER server transaction (a proxy
///   owning the `Endpoint` hands its REGISTERs here); [`process`](Self::process)
///   is the same without answering; [`run`](Self::run) serves a whole
///   [`ServerRequests`] queue as a standalone registrar.
/// * A background task removes bindings at their expiry time (it sleeps until
///   [`LocationStore::poll_timeout`], woken earlier when a shorter binding
///   arrives); another listens to the transport's flow events and calls
///   [`Registrar::handle_flow_closed_with`] when a connection closes, so the
///   bindings of a dead connection stop being used for routing at once:
///   outbound ones (RFC 5626) and plain ones over TCP/TLS/WS/WSS are removed
///   ([`RemoveReason::FlowClosed`](crate::RemoveReason::FlowClosed)), unless
///   [`RegistrarConfig::contact_fallback`](crate::RegistrarConfig::contact_fallback)
///   keeps the latter with their Contact.
/// * [`lookup`](Self::lookup) gives an AOR's contacts in routing order with
///   their [`Reach`]; [`subscribe`](Self::subscribe) streams every
///   [`BindingEvent`] (registrations, refreshes, removals of any reason).
///
/// The limits of the core apply unchanged: the per-source REGISTER flood limit
/// and the failed-attempt limiter (per source and per user) run inside
/// [`Registrar`]. Cheap to clone; the background tasks stop with
/// [`shutdown`](Self::shutdown) or when the last clone is dropped. Must be
/// created within a tokio runtime.
#[derive(Clone)]
pub struct RegistrarService {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for RegistrarService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarService")
            .field("registrar", &self.shared.registrar)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl RegistrarService {
    /// Starts the service: `registrar` decides, `store` keeps the bindings,
    /// `transport` is the one the REGISTERs arrive on (its flow events are
    /// followed). Spawns the expiry and flow tasks.
    pub fn start(
        registrar: Registrar,
        store: Arc<dyn LocationStore>,
        transport: Transport,
        config: ServiceConfig,
    ) -> RegistrarService {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let flow_events = transport.subscribe();
        let shared = Arc::new(Shared {
            registrar,
            store,
            transport,
            events,
            armed: Mutex::new(None),
            wake: Notify::new(),
            config,
        });
        let tasks = vec![
            tokio::spawn(expiry_task(shared.clone())),
            tokio::spawn(flow_task(shared.clone(), flow_events)),
        ];
        RegistrarService {
            shared,
            tasks: Arc::new(Tasks(tasks)),
        }
    }

    /// The registrar (configuration, [`Registrar::is_ours`]).
    pub fn registrar(&self) -> &Registrar {
        &self.shared.registrar
    }

    /// The location store.
    pub fn store(&self) -> &Arc<dyn LocationStore> {
        &self.shared.store
    }

    /// Processes a REGISTER that arrived from `origin` and applies its
    /// changes; returns the decision (the response is the caller's to send).
    /// [`Error::NotRegister`] for another method.
    pub async fn process(&self, request: &Message, origin: &Origin) -> Result<Decision, Error> {
        if request.method() != Some(&Method::Register) {
            return Err(Error::NotRegister);
        }
        let ctx = self.context(origin);
        let s = &self.shared;
        let d = s
            .registrar
            .handle_register_with(request, &ctx, &*s.store)
            .await?;
        if !d.events.is_empty() {
            s.publish(&d.events);
            s.arm(&d.events);
            // The flow may have closed while the REGISTER was processed: its
            // close event then came before the binding existed.
            if let Some(f) = origin.flow
                && !s.transport.is_flow_alive(f)
            {
                s.flow_closed(f).await;
            }
        }
        Ok(d)
    }

    /// [`process`](Self::process) without waiting, when the store is an
    /// [`InMemoryStore`](crate::InMemoryStore): `None` for a store that must
    /// be awaited.
    pub fn process_now(
        &self,
        request: &Message,
        origin: &Origin,
    ) -> Option<Result<Decision, Error>> {
        let s = &self.shared;
        let memory = s.store.as_in_memory()?;
        if request.method() != Some(&Method::Register) {
            return Some(Err(Error::NotRegister));
        }
        let ctx = self.context(origin);
        let d = match memory.handle_register(&s.registrar, request, &ctx) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        if !d.events.is_empty() {
            s.publish(&d.events);
            s.arm(&d.events);
            if let Some(f) = origin.flow
                && !s.transport.is_flow_alive(f)
            {
                // As in `process`; the removal is awaited elsewhere.
                let this = self.clone();
                tokio::spawn(async move { this.shared.flow_closed(f).await });
            }
        }
        Some(Ok(d))
    }

    fn context(&self, origin: &Origin) -> RequestContext {
        RequestContext {
            source: origin.peer,
            transport: origin.protocol,
            flow: origin.flow,
            now: self.shared.config.clock.now(),
            now_system: self.shared.config.clock.wall_now(),
        }
    }

    /// The answer to a request that is not a REGISTER, for a standalone
    /// registrar: 404 for another domain, 200 with `Allow` to OPTIONS, 405
    /// otherwise.
    fn answer_other(&self, request: &Message) -> Result<Message, Error> {
        Ok(if !self.shared.registrar.is_ours(request) {
            request.response(404).build()?
        } else if request.method() == Some(&Method::Options) {
            request
                .response(200)
                .header(HeaderName::Allow, ALLOW)
                .build()?
        } else {
            not_allowed(request)?
        })
    }

    /// Answers a REGISTER server transaction (from the endpoint's
    /// [`ServerRequests`]) and returns the status sent. A challenge (401, 407)
    /// or a refusal (403, e.g. from the failed-attempt limiter) is sent
    /// statelessly ([`ServerTransactionHandle::respond_stateless`]): the
    /// transaction ends at once instead of holding the final response for
    /// 64*T1. A request that is not
    /// a REGISTER is answered 405 (the caller should not hand those here).
    pub async fn handle(&self, mut tx: ServerTransactionHandle) -> Result<u16, Error> {
        let response = match self.process(&tx.request, &tx.origin).await {
            Ok(d) => d.response,
            Err(Error::NotRegister) => not_allowed(&tx.request)?,
            Err(e) => {
                warn!(error = %e, "registrar failure, answering 500");
                tx.request.response(500).build()?
            }
        };
        let status = response.status().unwrap_or(500);
        // Challenges and refusals are sent statelessly: nothing is kept for
        // 64*T1 per rejected REGISTER (a flood of them costs no memory); a
        // retransmission comes back here and gets the same status (a 401 with
        // a fresh nonce).
        let sent = if is_stateless(status) {
            tx.respond_stateless(response).await
        } else {
            tx.respond(response).await
        };
        sent.map_err(|e| Error::Respond(e.to_string()))?;
        Ok(status)
    }

    /// Serves `requests` as a standalone registrar until the queue ends (the
    /// endpoint shut down): REGISTER through [`handle`](Self::handle), each in
    /// its own task; OPTIONS for one of our domains 200 with `Allow`; any other
    /// method 405 with `Allow: REGISTER, OPTIONS`; any request for another
    /// domain 404.
    pub async fn run(&self, mut requests: ServerRequests) {
        while let Some(tx) = requests.recv().await {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.dispatch(tx).await {
                    debug!(error = %e, "answering a request failed");
                }
            });
        }
    }

    async fn dispatch(&self, mut tx: ServerTransactionHandle) -> Result<(), Error> {
        let method = tx.request.method().cloned();
        if method == Some(Method::Register) {
            return self.handle(tx).await.map(drop);
        }
        let response = self.answer_other(&tx.request)?;
        tx.respond(response)
            .await
            .map_err(|e| Error::Respond(e.to_string()))
    }

    /// The live contacts of `aor`, ordered for routing (`q` descending, then
    /// most recently refreshed), each with its [`Reach`]. A `Reach::Flow` is
    /// only given for a flow the transport still has open; a binding whose
    /// flow is gone but whose removal has not been processed yet is left out
    /// when it would be removed (outbound, or plain over TCP/TLS/WS/WSS
    /// without [`RegistrarConfig::contact_fallback`](crate::RegistrarConfig::contact_fallback)),
    /// else reached through its Contact.
    pub async fn lookup(&self, aor: &Aor) -> Result<Vec<Target>, Error> {
        let targets = self
            .shared
            .store
            .lookup(aor, self.shared.config.clock.now())
            .await?;
        let t = &self.shared.transport;
        let fallback = self.shared.registrar.config().contact_fallback;
        Ok(targets
            .into_iter()
            .filter_map(|mut target| {
                if let Reach::Flow(f) = target.reach
                    && !t.is_flow_alive(f)
                {
                    // Its removal is on its way (the flow task): the same
                    // rule as `BindingTable::flow_closed`.
                    if target.binding.outbound
                        || (target.binding.transport.is_reliable() && !fallback)
                    {
                        return None;
                    }
                    target.reach = Reach::Contact {
                        uri: target.binding.contact.uri.clone(),
                        path: target.binding.path.clone(),
                    };
                }
                Some(target)
            })
            .collect())
    }

    /// [`lookup`](Self::lookup) by URI (e.g. a Request-URI); its canonical AOR
    /// is used, so parameters do not matter. [`Error::InvalidAor`] for a URI
    /// that is not SIP or SIPS.
    pub async fn lookup_uri(&self, uri: &Uri) -> Result<Vec<Target>, Error> {
        let aor = Aor::from_uri(uri).ok_or_else(|| Error::InvalidAor(uri.as_str().to_owned()))?;
        self.lookup(&aor).await
    }

    /// Every binding change from now on: registrations, refreshes and
    /// removals (unregistered, expired, replaced, flow closed).
    pub fn subscribe(&self) -> broadcast::Receiver<BindingEvent> {
        self.shared.events.subscribe()
    }

    /// Stops the expiry and flow tasks (the store keeps its bindings; REGISTER
    /// processing still works, but nothing expires or follows flows any more).
    pub fn shutdown(&self) {
        for t in &self.tasks.0 {
            t.abort();
        }
    }
}

/// The methods a standalone registrar answers.
const ALLOW: &str = "REGISTER, OPTIONS";

fn not_allowed(req: &Message) -> Result<Message, Error> {
    Ok(req.response(405).header(HeaderName::Allow, ALLOW).build()?)
}

impl Shared {
    fn publish(&self, events: &[BindingEvent]) {
        for e in events {
            // No subscriber is not an error.
            let _ = self.events.send(e.clone());
        }
    }

    /// Wakes the expiry task if a new or refreshed binding expires before the
    /// time it sleeps until.
    fn arm(&self, events: &[BindingEvent]) {
        let earliest = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Added | EventKind::Refreshed))
            .map(|e| e.binding.expires_at)
            .min();
        let Some(at) = earliest else { return };
        let wake = match self.armed.lock() {
            Ok(mut armed) => match *armed {
                Some(t) if t <= at => false,
                _ => {
                    *armed = Some(at);
                    true
                }
            },
            Err(_) => true,
        };
        if wake {
            self.wake.notify_one();
        }
    }

    async fn flow_closed(&self, flow: FlowId) {
        let now = self.config.clock.now();
        match self
            .registrar
            .handle_flow_closed_with(flow, now, &*self.store)
            .await
        {
            Ok(events) => self.publish(&events),
            Err(e) => warn!(%flow, error = %e, "store failed to drop a closed flow"),
        }
    }
}

async fn expiry_task(shared: Arc<Shared>) {
    let clock = shared.config.clock;
    loop {
        let t = clock.now();
        match shared.store.handle_timeout(t).await {
            Ok(events) => shared.publish(&events),
            Err(e) => warn!(error = %e, "store failed to expire bindings"),
        }
        let next = match shared.store.poll_timeout().await {
            Ok(Some(at)) => Some(at),
            Ok(None) => match shared.store.usage().await {
                Ok(u) if u.bindings == 0 => None,
                _ => Some(clock.now() + shared.config.expiry_poll),
            },
            Err(_) => Some(clock.now() + shared.config.expiry_poll),
        };
        if let Ok(mut armed) = shared.armed.lock() {
            *armed = next;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

async fn flow_task(
    shared: Arc<Shared>,
    mut events: broadcast::Receiver<siplink_transport::FlowEvent>,
) {
    loop {
        match events.recv().await {
            Ok(ev) => {
                if let FlowEventKind::Closed(reason) = &ev.kind {
                    debug!(flow = %ev.flow, %reason, "flow closed");
                    shared.flow_closed(ev.flow).await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Lookups check that a flow is alive, so a missed close only
                // delays the removal of its bindings until they expire.
                warn!(
                    missed = n,
                    "registrar fell behind the transport's flow events"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The registrar as a service of the run-to-completion runtime
/// ([`siplink_transaction::runtime::Runtime`]), a standalone registrar over
/// UDP: REGISTERs are processed in the worker that received them when the
/// store is in memory (deferred to a task for another store); other requests
/// as [`RegistrarService::run`] answers them.
impl siplink_transaction::runtime::Service for RegistrarService {
    fn handle_request(&self, request: siplink_transaction::runtime::Request<'_>) {
        if request.message().method() != Some(&Method::Register) {
            match self.answer_other(request.message()) {
                Ok(r) => {
                    let _ = request.respond(r);
                }
                Err(e) => debug!(error = %e, "answering a request failed"),
            }
            return;
        }
        let decided = self.process_now(request.message(), request.origin());
        let Some(decided) = decided else {
            let deferred = request.defer();
            let this = self.clone();
            tokio::spawn(async move {
                let d = this.process(deferred.message(), deferred.origin()).await;
                if let Some((r, stateless)) = answer(deferred.message(), d) {
                    let sent = if stateless {
                        deferred.respond_stateless(r)
                    } else {
                        deferred.respond(r)
                    };
                    if let Err(e) = sent {
                        debug!(error = %e, "sending the registrar's answer failed");
                    }
                }
            });
            return;
        };
        if let Some((r, stateless)) = answer(request.message(), decided) {
            let sent = if stateless {
                request.respond_stateless(r)
            } else {
                request.respond(r)
            };
            if let Err(e) = sent {
                debug!(error = %e, "sending the registrar's answer failed");
            }
        }
    }
}

/// The response to send for a registrar decision, and whether it goes
/// statelessly (challenges and refusals); a failure answers 500.
fn answer(request: &Message, decided: Result<Decision, Error>) -> Option<(Message, bool)> {
    let response = match decided {
        Ok(d) => d.response,
        Err(e) => {
            warn!(error = %e, "registrar failure, answering 500");
            request.response(500).build().ok()?
        }
    };
    let stateless = response.status().is_some_and(is_stateless);
    Some((response, stateless))
}

/// Whether a registrar answer is sent statelessly: challenges and refusals.
fn is_stateless(status: u16) -> bool {
    matches!(status, 401 | 403 | 407)
}
