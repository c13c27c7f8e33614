//! The run-to-completion runtime for UDP: a datagram goes parse → transaction
//! match → the service's decision → serialise → send in the worker task that
//! received it, with no channel, spawned task or boxed future per message or
//! per transaction.
//!
//! * Several workers ([`RuntimeConfig::workers`]), each a tokio task reading a
//!   UDP socket: one socket per worker with `SO_REUSEPORT`, or one socket
//!   read by every worker; or each an OS thread blocked in `recvfrom` on one
//!   shared socket, Kamailio's model ([`UdpSharing`]).
//! * The transaction state is split into buckets ([`RuntimeConfig::buckets`]),
//!   each a [`TransactionTable`] behind its own short lock (as Kamailio's tm
//!   hash table): a message locks only its bucket, chosen by the top Via
//!   branch, so a request, its retransmissions, its ACK and its CANCEL meet
//!   in one table whichever worker reads them.
//! * Each bucket's timers belong to one worker, which sleeps until the
//!   earliest of its buckets' deadlines (woken when another worker gives one
//!   of them an earlier one).
//! * A [`Service`] answers each new request synchronously in the worker
//!   ([`Request::respond`], [`Request::respond_stateless`]); a service that
//!   must wait (an asynchronous store, DNS) takes the transaction with
//!   [`Request::defer`] and answers later from any task.
//!
//! * Messages over connections (TCP, TLS, WebSocket) take the same path in
//!   their connection's own task once [`Runtime::take_streams`] is called,
//!   and their answers are queued on the connection.
//!
//! * Client transactions run there too ([`Handle::send_request`]): the
//!   response is matched in its bucket by the worker that reads it and handed
//!   to [`Service::handle_client_event`] in the same pass.
//!
//! The [`Endpoint`](crate::endpoint::Endpoint) (a task and channels) can
//! serve the same [`Transport`] beside it.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message};
use siplink_transport::{
    Clock, FlowId, Incoming, Ingested, Origin, Transport, UdpSharing, UdpWorkerSocket,
    response_addr,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::{
    Error, Output, Received, Result, TableConfig, TransactionId, TransactionTable, TuEvent,
};

/// Tuning of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Worker tasks (default: the number of CPUs).
    pub workers: usize,
    /// How the workers share the UDP address (default [`UdpSharing::Shared`];
    /// see docs/architecture.md for the measurements behind the default).
    pub sharing: UdpSharing,
    /// Transaction buckets, each behind its own lock (default 64). The
    /// table limits of [`TableConfig::max_transactions`] apply per bucket.
    pub buckets: usize,
    /// The transaction tables' settings (timers, limits).
    pub table: TableConfig,
    /// Datagrams a worker takes in one wake-up before yielding (default 32).
    pub batch: usize,
    /// The clock (default [`Clock::new`], tokio's: paused tests drive it).
    pub clock: Clock,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            sharing: UdpSharing::default(),
            buckets: 64,
            table: TableConfig::default(),
            batch: 32,
            clock: Clock::new(),
        }
    }
}

/// What a [`Runtime`] does with the requests it receives, called in the
/// worker that received them. It must not block: answer at once, or
/// [`Request::defer`] and answer from another task.
pub trait Service: Send + Sync + 'static {
    /// Screens each message before any transaction is looked up or created:
    /// give it back to have it handled here, or keep it (drop it, answer it
    /// statelessly with `reply`, or hand it to another driver, such as an
    /// [`Endpoint`](crate::endpoint::Endpoint) that owns other traffic on the
    /// same transport). Default: everything is handled here.
    fn screen(&self, incoming: Incoming, reply: &Reply<'_>) -> Option<Incoming> {
        let _ = reply;
        Some(incoming)
    }

    /// A new request: its server transaction exists, and `request` answers it.
    /// Dropped unanswered, the request is answered 500.
    fn handle_request(&self, request: Request<'_>);

    /// A response or ACK that matches no transaction (an ACK for a 2xx, a
    /// response to a request not sent through this runtime). Dropped by
    /// default.
    fn handle_stray(&self, message: Message, origin: &Origin) {
        let _ = (message, origin);
    }

    /// What happened to a client transaction started with
    /// [`Handle::send_request`]: a provisional or final response, a further
    /// 2xx (RFC 6026), a timeout or a transport error. Called in the worker
    /// (or connection task) that received the response, or in the timer
    /// task for a timeout, with no lock held: it may start transactions or
    /// answer requests. Dropped by default.
    fn handle_client_event(&self, id: TransactionId, event: TuEvent) {
        let _ = (id, event);
    }
}

/// Where a client transaction started on the runtime sends its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientDest {
    /// To this address over UDP, from the runtime's socket (its responses
    /// come back to the workers).
    Udp(SocketAddr),
    /// Over this open connection (its responses come back in the
    /// connection's task: call [`Runtime::take_streams`] first).
    Flow(FlowId),
}

/// Starts client transactions on a [`Runtime`] from anywhere (a service's
/// handler, another task). Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Starts a client transaction (RFC 3261 §17.1) sending `request` (not
    /// an ACK) to `dest`, run to completion: the top Via gets a fresh branch
    /// (unless it has an RFC 3261 one) and this runtime's sent-by, the
    /// request is sent at once, retransmitted by the bucket's timers over
    /// UDP, and what happens to it reaches
    /// [`Service::handle_client_event`] with the returned id.
    pub fn send_request(&self, mut request: Message, dest: ClientDest) -> Result<TransactionId> {
        let shared = &self.shared;
        if request
            .method()
            .is_none_or(|m| *m == siplink_message::Method::Ack)
        {
            return Err(Error::NotARequest);
        }
        let mut via = request.top_via()?.clone();
        if !via.has_magic_cookie() {
            via.params.set("branch", Some(&crate::new_branch()));
            request.replace_first_value(HeaderName::Via, via.to_string());
        }
        let (protocol, sent_by, target) = match dest {
            ClientDest::Udp(peer) => {
                let local = shared.sockets[0].local_addr();
                let ip = if local.ip().is_unspecified() {
                    crate::endpoint::source_ip(peer, local.ip())
                } else {
                    local.ip()
                };
                (
                    siplink_transport::Protocol::Udp,
                    SocketAddr::new(ip, local.port()),
                    Dest::Udp(peer),
                )
            }
            ClientDest::Flow(flow) => {
                let (protocol, _, local) = shared
                    .transport
                    .flow_info(flow)
                    .ok_or_else(|| Error::Transport(format!("flow {flow} is gone")))?;
                (
                    protocol,
                    shared.transport.sent_by(protocol, local),
                    Dest::Flow(flow),
                )
            }
        };
        siplink_transport::via::stamp_sent_by(&mut request, protocol, sent_by)?;
        let index = shared.bucket_of(&request);
        let worker = index % shared.sockets.len();
        let now = shared.clock.now();
        let mut b = lock(&shared.buckets[index]);
        let id = b.table.start_client(&request, protocol.is_stream(), now)?;
        b.dests.insert(
            id,
            Route {
                to: target,
                client: true,
            },
        );
        let mut events = Vec::new();
        shared.drain(&mut b, index, worker, &mut events);
        drop(b);
        shared.deliver(events);
        Ok(id)
    }

    /// Sends `message` without a transaction (an ACK for a 2xx, a 2xx
    /// retransmission relayed by a proxy, RFC 3261 §16.11 and RFC 6026): a
    /// request gets this runtime's sent-by in its top Via; a response goes
    /// unchanged. Over UDP from the first worker's socket, or queued on the
    /// connection.
    pub fn send_stateless(&self, mut message: Message, dest: ClientDest) -> Result<()> {
        let shared = &self.shared;
        match dest {
            ClientDest::Udp(peer) => {
                if message.is_request() {
                    let local = shared.sockets[0].local_addr();
                    let ip = if local.ip().is_unspecified() {
                        crate::endpoint::source_ip(peer, local.ip())
                    } else {
                        local.ip()
                    };
                    siplink_transport::via::stamp_sent_by(
                        &mut message,
                        siplink_transport::Protocol::Udp,
                        SocketAddr::new(ip, local.port()),
                    )?;
                }
                let bytes = message.to_bytes();
                if !shared.sockets[0].try_send_to(&bytes, peer) {
                    // Not writable at once (a fresh socket, a full buffer):
                    // nothing retransmits a stateless message, so it goes
                    // as soon as the socket takes it.
                    let socket = shared.sockets[0].clone();
                    tokio::spawn(async move {
                        if let Err(e) = socket.send_to(&bytes, peer).await {
                            debug!(%peer, error = %e, "stateless send failed");
                        }
                    });
                }
                Ok(())
            }
            ClientDest::Flow(flow) => {
                if message.is_request() {
                    let (protocol, _, local) = shared
                        .transport
                        .flow_info(flow)
                        .ok_or_else(|| Error::Transport(format!("flow {flow} is gone")))?;
                    siplink_transport::via::stamp_sent_by(
                        &mut message,
                        protocol,
                        shared.transport.sent_by(protocol, local),
                    )?;
                }
                shared
                    .transport
                    .try_send_bytes_on_flow(flow, message.to_bytes())
                    .map_err(|e| Error::Transport(e.to_string()))
            }
        }
    }
}

/// Sends stateless answers from the worker's socket, in
/// [`Service::screen`].
#[derive(Debug)]
pub struct Reply<'a> {
    socket: &'a UdpWorkerSocket,
    /// Set for a message that came over a connection: answers go back on it.
    flow: Option<(FlowId, &'a Transport)>,
}

impl Reply<'_> {
    /// Sends `response` back the way its request came: over its connection,
    /// or over UDP where its top Via says (the transport stamped it).
    /// Returns whether it went.
    pub fn send_response(&self, response: &Message) -> bool {
        match self.flow {
            Some((flow, transport)) => transport
                .try_send_bytes_on_flow(flow, response.to_bytes())
                .is_ok(),
            None => self.socket.send_response(response),
        }
    }
}

/// Where a transaction sends, and whose it is.
#[derive(Debug, Clone, Copy)]
struct Route {
    to: Dest,
    /// A client transaction (its events go to
    /// [`Service::handle_client_event`]).
    client: bool,
}

/// Where a transaction's messages go.
#[derive(Debug, Clone, Copy)]
enum Dest {
    /// A UDP address (from the request's stamped Via).
    Udp(SocketAddr),
    /// The connection the request came over.
    Flow(FlowId),
}

/// A bucket: one transaction table and where its responses go.
struct Bucket {
    table: TransactionTable,
    /// Where each live transaction sends: a server transaction's responses
    /// (the request's stamped Via, or its connection), a client
    /// transaction's request.
    dests: std::collections::HashMap<TransactionId, Route>,
    /// The deadline the owning worker was told of.
    armed: Option<Instant>,
}

struct WorkerTimer {
    wake: Notify,
}

struct Shared {
    /// Set when the runtime goes: reader threads stop at their next wake-up.
    stop: std::sync::atomic::AtomicBool,
    buckets: Vec<Mutex<Bucket>>,
    timers: Vec<WorkerTimer>,
    sockets: Vec<UdpWorkerSocket>,
    service: Arc<dyn Service>,
    hasher: std::collections::hash_map::RandomState,
    clock: Clock,
    /// The transport whose connections' messages this runtime takes
    /// ([`Runtime::take_streams`]).
    streams: std::sync::OnceLock<Transport>,
    /// The sockets' transport (sends over connections).
    transport: Transport,
}

/// Tasks aborted when the runtime goes.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The run-to-completion UDP runtime (see the [module](self) documentation).
///
/// ```no_run
/// use std::sync::Arc;
/// use siplink_message::HeaderName;
/// use siplink_transaction::runtime::{Request, Runtime, RuntimeConfig, Service};
/// use siplink_transport::{Transport, TransportConfig};
///
/// struct Options;
/// impl Service for Options {
///     fn handle_request(&self, request: Request<'_>) {
///         if let Ok(r) = request.message().response(200).header(HeaderName::Allow, "OPTIONS").build() {
///             request.respond(r);
///         }
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (transport, _streams) = Transport::new(TransportConfig::default());
/// let rt = Runtime::start(&transport, "127.0.0.1:5060".parse()?, RuntimeConfig::default(), Arc::new(Options))?;
/// println!("answering on {}", rt.local_addr());
/// # Ok(())
/// # }
/// ```
pub struct Runtime {
    shared: Arc<Shared>,
    local: SocketAddr,
    /// The workers, aborted when the runtime is dropped.
    _tasks: Tasks,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.shared.streams.get() {
            t.set_stream_sink(None);
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("local", &self.local)
            .field("workers", &self.shared.sockets.len())
            .field("buckets", &self.shared.buckets.len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Binds `addr` for UDP on `transport` (see
    /// [`Transport::bind_udp_workers`]) and starts the workers. Must be called
    /// within a tokio runtime.
    pub fn start(
        transport: &Transport,
        addr: SocketAddr,
        config: RuntimeConfig,
        service: Arc<dyn Service>,
    ) -> Result<Runtime> {
        let sockets = transport
            .bind_udp_workers(addr, config.workers.max(1), config.sharing)
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Runtime::start_on(sockets, config, service))
    }

    /// Starts a worker per socket of `sockets` (bound earlier with
    /// [`Transport::bind_udp_workers`], e.g. so that the address is known
    /// before the service is built; datagrams wait in the sockets meanwhile).
    /// [`RuntimeConfig::workers`] and [`RuntimeConfig::sharing`] are taken
    /// from the sockets. Panics if `sockets` is empty.
    pub fn start_on(
        sockets: Vec<UdpWorkerSocket>,
        config: RuntimeConfig,
        service: Arc<dyn Service>,
    ) -> Runtime {
        assert!(!sockets.is_empty(), "a runtime needs a socket");
        let workers = sockets.len();
        let sockets_transport = sockets[0].transport();
        let local = sockets[0].local_addr();
        let buckets = config.buckets.max(workers);
        let shared = Arc::new(Shared {
            stop: Default::default(),
            buckets: (0..buckets)
                .map(|i| {
                    Mutex::new(Bucket {
                        // Ids unique over all buckets: client events carry
                        // only the id.
                        table: TransactionTable::with_id_space(
                            config.table,
                            i as u64,
                            buckets as u64,
                        ),
                        dests: Default::default(),
                        armed: None,
                    })
                })
                .collect(),
            timers: (0..workers)
                .map(|_| WorkerTimer {
                    wake: Notify::new(),
                })
                .collect(),
            sockets,
            service,
            hasher: Default::default(),
            clock: config.clock,
            streams: std::sync::OnceLock::new(),
            transport: sockets_transport,
        });
        let batch = config.batch.max(1);
        let mut tasks = Vec::new();
        for w in 0..workers {
            if shared.sockets[w].is_blocking() {
                let (shared, handle) = (shared.clone(), tokio::runtime::Handle::current());
                let spawned = std::thread::Builder::new()
                    .name(format!("sip-udp-{w}"))
                    .spawn(move || {
                        // Services may spawn tasks or read tokio's clock.
                        let _entered = handle.enter();
                        blocking_reader(&shared, w);
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a UDP reader thread");
                }
            } else {
                tasks.push(tokio::spawn(reader(shared.clone(), w, batch)));
            }
            tasks.push(tokio::spawn(timers(shared.clone(), w)));
        }
        debug!(%local, workers, buckets, "runtime started");
        Runtime {
            shared,
            local,
            _tasks: Tasks(tasks),
        }
    }

    /// Takes the messages that arrive over `transport`'s connections (TCP,
    /// TLS, WS, WSS) too: each is handled to the end in its connection's own
    /// task (parse → transaction → the service → the answer queued on the
    /// connection), as a datagram is in a worker; the service's
    /// [`screen`](Service::screen) sees it first. Without this, stream
    /// messages go to the transport's inbound queue. Call it once (later
    /// calls change nothing and return `false`); dropping the runtime gives
    /// the connections' messages back to the queue.
    pub fn take_streams(&self, transport: &Transport) -> bool {
        if self.shared.streams.set(transport.clone()).is_err() {
            return false;
        }
        let weak = Arc::downgrade(&self.shared);
        transport.set_stream_sink(Some(Arc::new(move |incoming: Incoming| {
            match weak.upgrade() {
                Some(shared) => {
                    shared.handle_stream(incoming);
                    None
                }
                None => Some(incoming),
            }
        })));
        true
    }

    /// A handle that starts client transactions on this runtime.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Live transactions over all buckets.
    pub fn transaction_count(&self) -> usize {
        self.shared
            .buckets
            .iter()
            .map(|b| lock(b).table.len())
            .sum()
    }

    /// Stops the workers (the sockets close when the transport's last use
    /// of them goes).
    pub fn shutdown(self) {
        drop(self);
    }
}

fn lock(m: &Mutex<Bucket>) -> MutexGuard<'_, Bucket> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new request, handed to [`Service::handle_request`]: answer it with
/// [`respond`](Self::respond) or [`respond_stateless`](Self::respond_stateless),
/// or take it elsewhere with [`defer`](Self::defer).
pub struct Request<'a> {
    shared: &'a Arc<Shared>,
    worker: usize,
    inner: Pending,
}

/// A request's transaction, answered later (from [`Request::defer`]); `Send`,
/// so another task can answer. Dropped unanswered, it answers 500.
pub struct Deferred {
    shared: Arc<Shared>,
    inner: Pending,
}

struct Pending {
    bucket: usize,
    id: TransactionId,
    message: Message,
    origin: Origin,
    answered: bool,
}

impl Request<'_> {
    /// The request (its top Via stamped with `received`/`rport`).
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        &self.inner.origin
    }

    /// The transaction.
    pub fn id(&self) -> TransactionId {
        self.inner.id
    }

    /// The runtime's handle (to start client transactions, e.g. to forward
    /// the request).
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Answers through the transaction (it keeps the final response for
    /// retransmissions until its timer ends, RFC 3261 §17.2). A provisional
    /// response leaves it open: answer again.
    pub fn respond(mut self, response: Message) -> Result<()> {
        self.inner
            .respond(self.shared, self.worker, response, false)
    }

    /// Answers statelessly and ends the transaction at once (a 401/407
    /// challenge, a 403, a 503): a retransmitted request creates a new one
    /// and is answered again. See
    /// [`TransactionTable::handle_stateless_response`].
    pub fn respond_stateless(mut self, response: Message) -> Result<()> {
        self.inner.respond(self.shared, self.worker, response, true)
    }

    /// Takes the transaction out of the worker, to answer it from another task.
    pub fn defer(mut self) -> Deferred {
        let placeholder = self.inner.placeholder();
        let inner = std::mem::replace(&mut self.inner, placeholder);
        Deferred {
            shared: self.shared.clone(),
            inner,
        }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.inner.answer_500(self.shared, self.worker);
    }
}

impl Deferred {
    /// The request.
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        &self.inner.origin
    }

    /// As [`Request::respond`].
    pub fn respond(mut self, response: Message) -> Result<()> {
        let w = self.inner.owner(&self.shared);
        self.inner.respond(&self.shared, w, response, false)
    }

    /// As [`Request::respond_stateless`].
    pub fn respond_stateless(mut self, response: Message) -> Result<()> {
        let w = self.inner.owner(&self.shared);
        self.inner.respond(&self.shared, w, response, true)
    }

    /// Sends a provisional (1xx) response through the transaction and keeps
    /// it open for more (a proxy relaying 180s before the final response).
    /// [`Error::NotAResponse`] for anything but a 1xx.
    pub fn respond_provisional(&mut self, response: Message) -> Result<()> {
        if response.status().is_none_or(|s| s >= 200) {
            return Err(Error::NotAResponse);
        }
        let w = self.inner.owner(&self.shared);
        self.inner.respond(&self.shared, w, response, false)
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        let w = self.inner.owner(&self.shared);
        self.inner.answer_500(&self.shared, w);
    }
}

impl Pending {
    fn placeholder(&self) -> Pending {
        Pending {
            bucket: self.bucket,
            id: self.id,
            message: self.message.clone(),
            origin: self.origin,
            answered: true,
        }
    }

    fn owner(&self, shared: &Shared) -> usize {
        self.bucket % shared.sockets.len()
    }

    fn respond(
        &mut self,
        shared: &Shared,
        worker: usize,
        response: Message,
        stateless: bool,
    ) -> Result<()> {
        let now = shared.clock.now();
        let is_final = response.status().is_some_and(|s| s >= 200);
        let mut b = lock(&shared.buckets[self.bucket]);
        let r = if stateless {
            b.table.handle_stateless_response(self.id, response, now)
        } else {
            b.table.handle_response(self.id, &response, now)
        };
        if r.is_ok() && is_final {
            self.answered = true;
        }
        let mut events = Vec::new();
        shared.drain(&mut b, self.bucket, worker, &mut events);
        drop(b);
        shared.deliver(events);
        r
    }

    fn answer_500(&mut self, shared: &Shared, worker: usize) {
        if self.answered {
            return;
        }
        if let Ok(r) = self.message.response(500).build() {
            let _ = self.respond(shared, worker, r, false);
        }
    }
}

impl Shared {
    /// The bucket of a message: the hash of its top Via branch (a request,
    /// its retransmissions, its ACK and CANCEL, and the responses to a
    /// request we sent share it), else of its Call-ID.
    fn bucket_of(&self, msg: &Message) -> usize {
        let mut h = self.hasher.build_hasher();
        match msg.top_via().ok().and_then(|v| v.branch()) {
            Some(b) if b.starts_with("z9hG4bK") => h.write(b.as_bytes()),
            _ => h.write(msg.header(HeaderName::CallId).unwrap_or_default()),
        }
        (h.finish() % self.buckets.len() as u64) as usize
    }

    /// Carries out a bucket's outputs (sends from `worker`'s socket) and
    /// tells its timer owner of an earlier deadline.
    /// Returns the request a new server transaction delivered, if any.
    fn drain(
        &self,
        b: &mut Bucket,
        index: usize,
        worker: usize,
        events: &mut Vec<(TransactionId, TuEvent)>,
    ) -> Option<Message> {
        let request = self.drain_outputs(b, worker, events);
        let t = b.table.poll_timeout();
        if let Some(t) = t
            && b.armed.is_none_or(|a| t < a)
        {
            b.armed = Some(t);
            self.timers[index % self.timers.len()].wake.notify_one();
        }
        request
    }

    /// Carries out a bucket's outputs, sending from `worker`'s socket.
    /// Returns the request a new server transaction delivered, if any;
    /// client transactions' events are added to `events`, for
    /// [`deliver`](Self::deliver) once the bucket is unlocked.
    fn drain_outputs(
        &self,
        b: &mut Bucket,
        worker: usize,
        events: &mut Vec<(TransactionId, TuEvent)>,
    ) -> Option<Message> {
        let socket = &self.sockets[worker % self.sockets.len()];
        let mut request = None;
        while let Some(out) = b.table.poll_output() {
            match out {
                Output::Send { id, bytes } => match b.dests.get(&id).map(|r| r.to) {
                    Some(Dest::Udp(addr)) => {
                        socket.try_send_to(&bytes, addr);
                    }
                    Some(Dest::Flow(flow)) => {
                        if let Err(e) = self.transport.try_send_bytes_on_flow(flow, bytes) {
                            debug!(%flow, error = %e, "send on a connection dropped");
                        }
                    }
                    None => debug!(?id, "no destination for a send, dropped"),
                },
                Output::Terminated { id } => {
                    b.dests.remove(&id);
                    // After a burst the map gives its capacity back, as the
                    // table's own maps do.
                    crate::table::shrink(&mut b.dests);
                }
                Output::Deliver { id, event } => match event {
                    TuEvent::Request(m) => request = Some(*m),
                    TuEvent::Ack(_) => debug!(?id, "ACK for an accepted INVITE, dropped"),
                    event if b.dests.get(&id).is_some_and(|r| r.client) => events.push((id, event)),
                    TuEvent::Timeout | TuEvent::TransportError => {
                        debug!(?id, "server transaction failed")
                    }
                    _ => debug!(?id, "event for a transaction without a TU, dropped"),
                },
            }
        }
        request
    }

    /// Hands client transactions' events to the service (no lock held).
    fn deliver(&self, events: Vec<(TransactionId, TuEvent)>) {
        for (id, event) in events {
            self.service.handle_client_event(id, event);
        }
    }

    /// One datagram, start to finish.
    fn handle_datagram(self: &Arc<Self>, worker: usize, data: &[u8], peer: SocketAddr) {
        let socket = &self.sockets[worker];
        let incoming = match socket.ingest(data, peer) {
            Ingested::Message(m) => m,
            Ingested::Answered | Ingested::Dropped => return,
        };
        self.handle_incoming(worker, incoming, None);
    }

    /// One message from a connection, start to finish, in the connection's
    /// task (its bucket's timer owner sends any retransmission-free answer
    /// over the connection).
    fn handle_stream(self: &Arc<Self>, incoming: Incoming) {
        let Some(flow) = incoming.origin.flow else {
            return;
        };
        let worker = self.bucket_of(&incoming.message) % self.sockets.len();
        self.handle_incoming(worker, incoming, Some(flow));
    }

    /// A checked message: the service's screen, the transaction table, the
    /// service's decision, the sends.
    fn handle_incoming(self: &Arc<Self>, worker: usize, incoming: Incoming, flow: Option<FlowId>) {
        let socket = &self.sockets[worker];
        let reply = Reply {
            socket,
            flow: flow.zip(self.streams.get()),
        };
        let Some(incoming) = self.service.screen(incoming, &reply) else {
            return;
        };
        let (msg, origin) = (incoming.message, incoming.origin);
        let index = self.bucket_of(&msg);
        let now = self.clock.now();
        let mut b = lock(&self.buckets[index]);
        match b.table.handle_message(msg, flow.is_some(), now) {
            Received::New { id, .. } => {
                // Where its responses go: its connection, or the stamped Via
                // of the request the table keeps (only for a new transaction,
                // not per message).
                let dest = match flow {
                    Some(f) => Some(Dest::Flow(f)),
                    None => b
                        .table
                        .server_request(id)
                        .and_then(response_addr)
                        .map(Dest::Udp),
                };
                if let Some(to) = dest {
                    b.dests.insert(id, Route { to, client: false });
                }
                let mut events = Vec::new();
                let request = self.drain(&mut b, index, worker, &mut events);
                drop(b);
                self.deliver(events);
                if let Some(message) = request {
                    self.service.handle_request(Request {
                        shared: self,
                        worker,
                        inner: Pending {
                            bucket: index,
                            id,
                            message,
                            origin,
                            answered: false,
                        },
                    });
                }
            }
            Received::Matched { .. } => {
                let mut events = Vec::new();
                self.drain(&mut b, index, worker, &mut events);
                drop(b);
                self.deliver(events);
            }
            Received::Stray(m) => {
                drop(b);
                self.service.handle_stray(m, &origin);
            }
            Received::Rejected(r) | Received::Merged(r) | Received::Malformed(r) => {
                drop(b);
                reply.send_response(&r);
            }
            Received::Absorbed => {}
            Received::Invalid(e) => {
                drop(b);
                debug!(peer = %origin.peer, error = %e, "message without what matching needs, dropped");
            }
        }
    }
}

/// A reader thread's loop ([`UdpSharing::Threads`]): blocked in `recvfrom`
/// until the kernel hands this thread a datagram, which it handles to the
/// end; it looks at the stop flag at least every
/// [`siplink_transport::BLOCKING_RECV_TIMEOUT`].
fn blocking_reader(shared: &Arc<Shared>, worker: usize) {
    use std::io::ErrorKind;
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 65_536];
    let socket = shared.sockets[worker].clone();
    while !shared.stop.load(Ordering::Relaxed) {
        match socket.recv_blocking(&mut buf) {
            Ok((n, peer)) => shared.handle_datagram(worker, &buf[..n], peer),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                debug!(error = %e, "UDP receive error");
                // A persistent error must not spin.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    debug!(worker, "UDP reader thread stopped");
}

/// A worker's receive loop: waits for the socket, then takes up to `batch`
/// datagrams without waiting, each handled to the end.
async fn reader(shared: Arc<Shared>, worker: usize, batch: usize) {
    let mut buf = vec![0u8; 65_536];
    let socket = shared.sockets[worker].clone();
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        shared.handle_datagram(worker, &buf[..n], peer);
        for _ in 1..batch {
            match socket.try_recv_from(&mut buf) {
                Ok((n, peer)) => shared.handle_datagram(worker, &buf[..n], peer),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(error = %e, "UDP receive error");
                    break;
                }
            }
        }
    }
}

/// A worker's timers: the buckets `b` with `b % workers == worker`.
async fn timers(shared: Arc<Shared>, worker: usize) {
    let n = shared.timers.len();
    let far = Duration::from_secs(3600);
    loop {
        let now = shared.clock.now();
        let mut next: Option<Instant> = None;
        let mut events = Vec::new();
        for index in (worker..shared.buckets.len()).step_by(n) {
            let mut b = lock(&shared.buckets[index]);
            if b.table.poll_timeout().is_some_and(|t| t <= now) {
                b.table.handle_timeout(now);
            }
            shared.drain_outputs(&mut b, worker, &mut events);
            b.armed = b.table.poll_timeout();
            if let Some(t) = b.armed {
                next = Some(next.map_or(t, |x: Instant| x.min(t)));
            }
            drop(b);
            shared.deliver(std::mem::take(&mut events));
        }
        let wait = next.map_or(far, |t| t.saturating_duration_since(now));
        let until = shared.clock.tokio_now() + wait;
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = shared.timers[worker].wake.notified() => {}
        }
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.inner.id)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("id", &self.inner.id)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}
