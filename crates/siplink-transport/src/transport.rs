//! The tokio layer: listeners, connections, sending, events, shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::uri::Host;
use siplink_message::{HeaderName, Message, MessageBuilder};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tracing::{debug, warn};

use crate::config::TransportConfig;
use crate::conn::{self, ConnCtx};
use crate::error::{Error, Result};
use crate::resolve::{Resolver, SystemResolver};
use crate::table::{ConnTable, TableLimits};
use crate::types::{
    Destination, FlowEvent, FlowEventKind, FlowId, Incoming, Origin, Protocol, Target,
};
use crate::via::{self, ResponseRoute};

/// Asks a connection task to close, with a reason.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    notify: Notify,
    reason: OnceLock<String>,
}

impl Closer {
    pub(crate) fn close(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.notify.notify_one();
    }

    pub(crate) async fn closed(&self) -> String {
        self.notify.notified().await;
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "closed".into())
    }
}

/// Queues `bytes` on a connection's writer and says where they went.
async fn queue(
    handle: &ConnHandle,
    flow: FlowId,
    bytes: Bytes,
    protocol: Protocol,
    local: SocketAddr,
    peer: SocketAddr,
) -> Result<Sent> {
    handle
        .tx
        .send(bytes)
        .await
        .map_err(|_| Error::FlowGone(flow))?;
    Ok(Sent {
        protocol,
        local,
        peer,
        flow: Some(flow),
    })
}

/// The table's handle on a connection task.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) tx: mpsc::Sender<Bytes>,
    pub(crate) closer: Arc<Closer>,
}

#[derive(Debug)]
struct UdpEntry {
    socket: UdpSock,
    local: SocketAddr,
}

/// A UDP socket the transport sends from: a tokio socket, or the blocking
/// socket that run-to-completion reader threads share
/// ([`UdpSharing::Threads`](crate::UdpSharing::Threads)). A UDP send on a
/// blocking socket returns at once unless the socket's send buffer is full,
/// and waits at most the socket's send timeout then.
#[derive(Debug, Clone)]
pub(crate) enum UdpSock {
    /// Registered with tokio (non-blocking).
    Async(Arc<UdpSocket>),
    /// In blocking mode, read by OS threads.
    Blocking(Arc<std::net::UdpSocket>),
}

impl UdpSock {
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            UdpSock::Async(s) => s.local_addr(),
            UdpSock::Blocking(s) => s.local_addr(),
        }
    }

    pub(crate) async fn send_to(&self, bytes: &[u8], peer: SocketAddr) -> std::io::Result<usize> {
        match self {
            UdpSock::Async(s) => s.send_to(bytes, peer).await,
            UdpSock::Blocking(s) => s.send_to(bytes, peer),
        }
    }

    /// Sends now, or fails with `WouldBlock` (a full send buffer).
    pub(crate) fn try_send_to(&self, bytes: &[u8], peer: SocketAddr) -> std::io::Result<usize> {
        match self {
            UdpSock::Async(s) => s.try_send_to(bytes, peer),
            UdpSock::Blocking(s) => s.send_to(bytes, peer),
        }
    }
}

/// Serialises connection attempts to one `(protocol, peer)`.
type ConnectGate = Arc<tokio::sync::Mutex<()>>;

/// Counts live tasks; notifies when the count drops to zero.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    live: AtomicUsize,
    idle: Notify,
}

pub(crate) struct TaskGuard(Arc<Inner>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tasks.idle.notify_waiters();
        }
    }
}

/// The installed [`StreamSink`] (a wrapper for `Debug`).
#[derive(Clone)]
pub(crate) struct SinkSlot(StreamSink);

impl std::fmt::Debug for SinkSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamSink")
    }
}

/// Takes each message that arrives over a connection (TCP, TLS, WS, WSS)
/// in that connection's own task, before the inbound queue: it returns
/// `None` when it has dealt with the message, or gives it back for the
/// queue. See [`Transport::set_stream_sink`].
pub type StreamSink = Arc<dyn Fn(Incoming) -> Option<Incoming> + Send + Sync>;

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: TransportConfig,
    pub(crate) table: Mutex<ConnTable<ConnHandle>>,
    udp: Mutex<Vec<UdpEntry>>,
    listeners: Mutex<Vec<(Protocol, SocketAddr)>>,
    source_ips: Mutex<HashMap<IpAddr, IpAddr>>,
    /// One connection attempt at a time per `(protocol, peer)`.
    connecting: Mutex<HashMap<(Protocol, SocketAddr), ConnectGate>>,
    pub(crate) inbound: mpsc::Sender<Incoming>,
    /// Takes stream messages in their connection's task, before the inbound
    /// queue ([`Transport::set_stream_sink`]).
    stream_sink: std::sync::RwLock<Option<SinkSlot>>,
    events: broadcast::Sender<FlowEvent>,
    shutdown: watch::Sender<bool>,
    pub(crate) closing: AtomicBool,
    tasks: Tasks,
    resolver: Arc<dyn Resolver>,
}

/// SIP over UDP, TCP, TLS, WS and WSS behind one API.
///
/// Cheap to clone (an `Arc`). Create it inside a tokio runtime with
/// [`Transport::new`], add listeners with [`Transport::listen`], read inbound
/// messages from the returned receiver, send with [`Transport::send`] and
/// [`Transport::send_response`], watch flows with [`Transport::subscribe`], and
/// end with [`Transport::shutdown`] (dropping the last clone does *not* stop
/// the tasks).
#[derive(Debug, Clone)]
pub struct Transport {
    pub(crate) inner: Arc<Inner>,
}

/// What [`Transport::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The protocol used (TCP for a request too large for UDP).
    pub protocol: Protocol,
    /// Our address the message left from.
    pub local: SocketAddr,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The connection used (`None` for UDP).
    pub flow: Option<FlowId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unspecified(like: &SocketAddr) -> SocketAddr {
    if like.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    }
}

impl Transport {
    /// A transport with no listener yet, using the system resolver (A/AAAA via
    /// `getaddrinfo`). Returns the receiver of inbound messages. Must be called
    /// within a tokio runtime.
    pub fn new(config: TransportConfig) -> (Transport, mpsc::Receiver<Incoming>) {
        Self::with_resolver(config, Arc::new(SystemResolver))
    }

    /// Like [`Transport::new`] with a given resolver (for host-name targets and
    /// responses to a Via with a host name).
    pub fn with_resolver(
        config: TransportConfig,
        resolver: Arc<dyn Resolver>,
    ) -> (Transport, mpsc::Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel(config.inbound_queue.max(1));
        let (events, _) = broadcast::channel(config.event_queue.max(1));
        let (shutdown, _) = watch::channel(false);
        let limits = TableLimits {
            max_total: config.max_connections,
            max_per_peer: config.max_connections_per_peer,
            idle_timeout: config.idle_timeout,
        };
        let inner = Arc::new(Inner {
            table: Mutex::new(ConnTable::new(limits)),
            udp: Mutex::new(Vec::new()),
            listeners: Mutex::new(Vec::new()),
            source_ips: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
            inbound: tx,
            stream_sink: std::sync::RwLock::new(None),
            events,
            shutdown,
            closing: AtomicBool::new(false),
            tasks: Tasks::default(),
            resolver,
            config,
        });
        let t = Transport { inner };
        t.inner.spawn(sweeper(t.inner.clone()));
        (t, rx)
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Opens a listener for `protocol` on `addr` (port 0 picks a free port) and
    /// returns the bound address. TLS and WSS need
    /// [`TransportConfig::tls_server`].
    pub async fn listen(&self, protocol: Protocol, addr: SocketAddr) -> Result<SocketAddr> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        if protocol.is_secure() && self.inner.config.tls_server.is_none() {
            return Err(Error::TlsConfig(format!(
                "a {protocol} listener needs TransportConfig::tls_server"
            )));
        }
        let local = if protocol == Protocol::Udp {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|e| Error::io(format!("bind UDP {addr}"), e))?;
            let local = socket
                .local_addr()
                .map_err(|e| Error::io("UDP local address", e))?;
            let socket = Arc::new(socket);
            lock(&self.inner.udp).insert(
                0,
                UdpEntry {
                    socket: UdpSock::Async(socket.clone()),
                    local,
                },
            );
            self.inner
                .spawn(udp_reader(self.inner.clone(), socket, local));
            local
        } else {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| Error::io(format!("bind {protocol} {addr}"), e))?;
            let local = listener
                .local_addr()
                .map_err(|e| Error::io("listener local address", e))?;
            self.inner
                .spawn(accept_loop(self.inner.clone(), listener, protocol, local));
            local
        };
        lock(&self.inner.listeners).push((protocol, local));
        debug!(%protocol, %local, "listening");
        Ok(local)
    }

    /// The listeners' addresses.
    pub fn listeners(&self) -> Vec<(Protocol, SocketAddr)> {
        lock(&self.inner.listeners).clone()
    }

    /// The sent-by to advertise for a message leaving over `protocol` from
    /// `local`: the listener of that protocol and address family (with `local`'s
    /// address when the listener is bound to the unspecified address), else
    /// `local`. [`Transport::send`] writes this into the top Via; a layer that
    /// must know the Via before sending (a transaction key) asks here.
    pub fn sent_by(&self, protocol: Protocol, local: SocketAddr) -> SocketAddr {
        self.inner.sent_by(protocol, local)
    }

    /// Flow events (opened, closed, keepalive timed out). Each subscriber sees
    /// the events that happen after it subscribed.
    pub fn subscribe(&self) -> broadcast::Receiver<FlowEvent> {
        self.inner.events.subscribe()
    }

    /// Number of open connections (handshakes in progress included).
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.table).len()
    }

    /// Number of live tasks (listeners, UDP readers, connections, the idle
    /// sweeper). Drops to zero after [`Transport::shutdown`].
    pub fn task_count(&self) -> usize {
        self.inner.tasks.live.load(Ordering::Acquire)
    }

    /// Whether a flow is open.
    pub fn is_flow_alive(&self, flow: FlowId) -> bool {
        lock(&self.inner.table).get(flow).is_some()
    }

    /// Details of an open flow: protocol, peer, local address.
    pub fn flow_info(&self, flow: FlowId) -> Option<(Protocol, SocketAddr, SocketAddr)> {
        lock(&self.inner.table)
            .get(flow)
            .map(|e| (e.protocol, e.peer, e.local))
    }

    /// Closes a flow (a [`FlowEventKind::Closed`] event follows).
    pub fn close_flow(&self, flow: FlowId, reason: &str) -> bool {
        match lock(&self.inner.table).handle(flow) {
            Some(h) => {
                h.closer.close(reason);
                true
            }
            None => false,
        }
    }

    /// Sends a message.
    ///
    /// * To a [`Target`]: over UDP, or over an open connection of that protocol to
    ///   that peer address, else over a new one. A *request* gets its top Via's
    ///   transport and sent-by set for the transport used (the listener of that
    ///   protocol and address family if there is one, else the socket's address);
    ///   a request over UDP larger than
    ///   [`TransportConfig::udp_mtu_limit`] goes over TCP if
    ///   [`Target::allow_tcp`], else fails with [`Error::TooLargeForUdp`].
    /// * To a [`FlowId`]: over that connection, or [`Error::FlowGone`].
    ///
    /// Returns once the message is queued on the connection (stream transports)
    /// or handed to the socket (UDP). Responses are sent unchanged.
    pub async fn send(&self, dest: impl Into<Destination>, message: Message) -> Result<Sent> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        match dest.into() {
            Destination::Flow(flow) => {
                let (protocol, peer, local, handle) = self.open_flow(flow)?;
                let bytes = self.stream_bytes(message, protocol, local)?;
                queue(&handle, flow, bytes, protocol, local, peer).await
            }
            Destination::Target(target) => self.send_target(&target, message).await,
        }
    }

    async fn send_target(&self, target: &Target, message: Message) -> Result<Sent> {
        let mut protocol = target.protocol;
        if protocol == Protocol::Udp {
            let socket = self.inner.udp_socket_for(target.addr, None)?;
            if message.is_request() {
                let mut local = socket
                    .local_addr()
                    .map_err(|e| Error::io("UDP local address", e))?;
                if local.ip().is_unspecified()
                    && let Some(ip) = self.inner.source_ip_for(target.addr)
                {
                    local.set_ip(ip);
                }
                let mut udp_msg = message.clone();
                via::stamp_sent_by(
                    &mut udp_msg,
                    Protocol::Udp,
                    self.inner.sent_by(Protocol::Udp, local),
                )?;
                let bytes = udp_msg.to_bytes();
                let limit = self.inner.config.udp_mtu_limit;
                if bytes.len() > limit {
                    if !target.allow_tcp {
                        return Err(Error::TooLargeForUdp {
                            size: bytes.len(),
                            limit,
                        });
                    }
                    debug!(
                        size = bytes.len(),
                        limit, "request too large for UDP, using TCP"
                    );
                    protocol = Protocol::Tcp;
                } else {
                    return self.inner.send_udp(&socket, bytes, target.addr).await;
                }
            } else {
                let bytes = message.to_bytes();
                return self.inner.send_udp(&socket, bytes, target.addr).await;
            }
        }
        let mut target = target.clone();
        target.protocol = protocol;
        let (flow, local, handle) = self.inner.clone().connection(&target).await?;
        let bytes = self.stream_bytes(message, protocol, local)?;
        queue(&handle, flow, bytes, protocol, local, target.addr).await
    }

    /// The protocol, peer, local address and queue of an open flow.
    /// Hands every message that arrives over a connection to `sink`, in the
    /// connection's own task and before the inbound queue (run to
    /// completion: no hop through a channel and another task); what the sink
    /// gives back goes to the queue as before. `None` removes the sink.
    /// UDP datagrams are not affected (see [`Transport::bind_udp_workers`]).
    pub fn set_stream_sink(&self, sink: Option<StreamSink>) {
        *self
            .inner
            .stream_sink
            .write()
            .unwrap_or_else(|p| p.into_inner()) = sink.map(SinkSlot);
    }

    /// Queues bytes already serialised for a connection (a response whose
    /// Via needs nothing more) without waiting: `Err(FlowGone)` when the
    /// flow is closed, `Err(Limit)` when its write queue is full (the
    /// connection is not keeping up; the bytes are dropped).
    pub fn try_send_bytes_on_flow(&self, flow: FlowId, bytes: Bytes) -> Result<()> {
        let (_, _, _, handle) = self.open_flow(flow)?;
        self.inner.check_size(&bytes)?;
        handle.tx.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Limit("connection write queue full"),
            mpsc::error::TrySendError::Closed(_) => Error::FlowGone(flow),
        })
    }

    fn open_flow(&self, flow: FlowId) -> Result<(Protocol, SocketAddr, SocketAddr, ConnHandle)> {
        let t = lock(&self.inner.table);
        let e = t.get(flow).ok_or(Error::FlowGone(flow))?;
        Ok((e.protocol, e.peer, e.local, e.handle.clone()))
    }

    /// A message's bytes for a connection from `local`: a request gets its top
    /// Via's transport and sent-by; the size limit is checked.
    fn stream_bytes(
        &self,
        mut message: Message,
        protocol: Protocol,
        local: SocketAddr,
    ) -> Result<Bytes> {
        if message.is_request() {
            via::stamp_sent_by(&mut message, protocol, self.inner.sent_by(protocol, local))?;
        }
        let bytes = message.to_bytes();
        self.inner.check_size(&bytes)?;
        Ok(bytes)
    }

    /// Sends raw bytes (a message serialised by the caller, or a keepalive) with
    /// no Via handling and no size rule.
    pub async fn send_bytes(&self, dest: impl Into<Destination>, bytes: Bytes) -> Result<Sent> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        match dest.into() {
            Destination::Flow(flow) => {
                let (protocol, peer, local, handle) = self.open_flow(flow)?;
                queue(&handle, flow, bytes, protocol, local, peer).await
            }
            Destination::Target(target) if target.protocol == Protocol::Udp => {
                let socket = self.inner.udp_socket_for(target.addr, None)?;
                self.inner.send_udp(&socket, bytes, target.addr).await
            }
            Destination::Target(target) => {
                let (flow, local, handle) = self.inner.clone().connection(&target).await?;
                queue(&handle, flow, bytes, target.protocol, local, target.addr).await
            }
        }
    }

    /// Test Connection's TLS step: connects to `target` over TLS with this
    /// transport's TLS client configuration (roots, pins), runs the handshake
    /// with the certificate check, waits briefly for a TLS 1.3 server's
    /// post-handshake refusal (a required client certificate), then closes.
    /// The connection is not kept as a flow. Bounded by
    /// [`connect_timeout`](crate::TransportConfig::connect_timeout) plus half a
    /// second.
    ///
    /// A failed handshake is [`Error::Tls`], whose
    /// [`TlsFailure`](crate::TlsFailure) names the problem and carries the
    /// certificate the server presented.
    pub async fn probe_tls(&self, target: &Target) -> Result<crate::tls::TlsPeer> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let limit = self.inner.config.connect_timeout + Duration::from_millis(500);
        match tokio::time::timeout(limit, conn::probe_tls(&self.inner, target)).await {
            Ok(r) => r,
            Err(_) => Err(Error::ConnectTimeout(target.addr)),
        }
    }

    /// Sends a response where RFC 3261 §18.2.2 and RFC 3581 say (see
    /// [`route_response`](crate::via::route_response)): `origin` is the origin
    /// of the request it answers, if known; its flow is used while open, and a
    /// UDP response leaves from the socket the request arrived on.
    pub async fn send_response(&self, response: Message, origin: Option<&Origin>) -> Result<Sent> {
        if !response.is_response() {
            return Err(Error::NoRoute("not a response".into()));
        }
        let (route, server_name) = {
            let via = response.top_via()?;
            let flow = origin.and_then(|o| o.flow);
            let alive = flow.is_some_and(|f| self.is_flow_alive(f));
            let route = via::route_response(via, flow, alive).map_err(Error::NoRoute)?;
            (route, via.host.domain().map(str::to_string))
        };
        match route {
            ResponseRoute::Flow(f) => self.send(f, response).await,
            ResponseRoute::Addr { protocol, addr } => {
                self.send_response_to(protocol, addr, server_name, response, origin)
                    .await
            }
            ResponseRoute::Host {
                protocol,
                host,
                port,
            } => {
                let ips = self.inner.resolver.lookup_ip(&host).await?;
                let ip = ips.first().ok_or_else(|| Error::Resolve {
                    name: host.clone(),
                    reason: "no address".into(),
                })?;
                self.send_response_to(
                    protocol,
                    SocketAddr::new(*ip, port),
                    Some(host),
                    response,
                    origin,
                )
                .await
            }
        }
    }

    async fn send_response_to(
        &self,
        protocol: Protocol,
        addr: SocketAddr,
        server_name: Option<String>,
        response: Message,
        origin: Option<&Origin>,
    ) -> Result<Sent> {
        if protocol == Protocol::Udp {
            let from = origin
                .filter(|o| o.protocol == Protocol::Udp)
                .map(|o| o.local);
            let socket = self.inner.udp_socket_for(addr, from)?;
            return self
                .inner
                .send_udp(&socket, response.to_bytes(), addr)
                .await;
        }
        let mut target = Target::new(protocol, addr);
        target.server_name = server_name;
        self.send(target, response).await
    }

    /// Resolves a host name to targets with the transport's resolver (A/AAAA;
    /// an IP address literal is returned as is).
    pub async fn resolve(&self, host: &str, port: u16, protocol: Protocol) -> Result<Vec<Target>> {
        if let Ok(h) = Host::parse(host)
            && let Some(ip) = h.ip()
        {
            return Ok(vec![Target::new(protocol, SocketAddr::new(ip, port))]);
        }
        let ips = self.inner.resolver.lookup_ip(host).await?;
        Ok(ips
            .into_iter()
            .map(|ip| Target::new(protocol, SocketAddr::new(ip, port)).with_server_name(host))
            .collect())
    }

    /// Graceful shutdown: stops accepting (listeners and UDP sockets close),
    /// lets every connection write what is queued and close, and waits for all
    /// tasks to end (at most [`TransportConfig::shutdown_timeout`]). Later sends
    /// fail with [`Error::Shutdown`].
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.shutdown.send_replace(true);
        let handles: Vec<ConnHandle> = {
            let t = lock(&self.inner.table);
            t.ids()
                .into_iter()
                .filter_map(|id| t.handle(id).cloned())
                .collect()
        };
        for h in handles {
            h.closer.close("shutdown");
        }
        lock(&self.inner.udp).clear();
        let deadline = tokio::time::sleep(self.inner.config.shutdown_timeout);
        tokio::pin!(deadline);
        loop {
            let idle = self.inner.tasks.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.tasks.live.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::select! {
                _ = &mut idle => {}
                _ = &mut deadline => {
                    warn!(tasks = self.task_count(), "shutdown timed out");
                    break;
                }
            }
        }
    }
}

impl Inner {
    /// Adds a UDP socket read by someone else (run-to-completion workers):
    /// first among the UDP sockets to send from, and listed as a listener.
    pub(crate) fn add_udp(&self, socket: UdpSock, local: SocketAddr) {
        lock(&self.udp).insert(0, UdpEntry { socket, local });
        lock(&self.listeners).push((Protocol::Udp, local));
    }

    pub(crate) fn spawn<F>(self: &Arc<Self>, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.live.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(self.clone());
        tokio::spawn(async move {
            let _guard = guard;
            fut.await;
        });
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn event(
        &self,
        id: FlowId,
        protocol: Protocol,
        peer: SocketAddr,
        local: SocketAddr,
        kind: FlowEventKind,
    ) {
        let _ = self.events.send(FlowEvent {
            flow: id,
            protocol,
            peer,
            local,
            kind,
        });
    }

    fn check_size(&self, bytes: &Bytes) -> Result<()> {
        if bytes.len() > self.config.max_message_size {
            return Err(Error::TooLarge {
                size: bytes.len(),
                limit: self.config.max_message_size,
            });
        }
        Ok(())
    }

    /// See [`Transport::sent_by`].
    pub(crate) fn sent_by(&self, protocol: Protocol, local: SocketAddr) -> SocketAddr {
        let listeners = lock(&self.listeners);
        let same_family = |a: &SocketAddr| a.is_ipv4() == local.is_ipv4();
        let found = listeners
            .iter()
            .find(|(p, a)| {
                *p == protocol
                    && same_family(a)
                    && (a.ip() == local.ip() || a.ip().is_unspecified())
            })
            .or_else(|| {
                listeners
                    .iter()
                    .find(|(p, a)| *p == protocol && same_family(a))
            });
        match found {
            Some((_, a)) if a.ip().is_unspecified() => SocketAddr::new(local.ip(), a.port()),
            Some((_, a)) => *a,
            None => local,
        }
    }

    /// A UDP socket to send to `peer`: the one bound to `from` if given and
    /// open, else the first of the peer's address family, else a new ephemeral
    /// one (with its own reader, so that responses come back).
    fn udp_socket_for(
        self: &Arc<Self>,
        peer: SocketAddr,
        from: Option<SocketAddr>,
    ) -> Result<UdpSock> {
        {
            let udp = lock(&self.udp);
            if let Some(from) = from
                && let Some(e) = udp.iter().find(|e| e.local == from)
            {
                return Ok(e.socket.clone());
            }
            if let Some(e) = udp.iter().find(|e| e.local.is_ipv4() == peer.is_ipv4()) {
                return Ok(e.socket.clone());
            }
        }
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let bind = unspecified(&peer);
        let std = std::net::UdpSocket::bind(bind)
            .map_err(|e| Error::io(format!("bind UDP {bind}"), e))?;
        std.set_nonblocking(true)
            .map_err(|e| Error::io("UDP non-blocking", e))?;
        let socket = Arc::new(UdpSocket::from_std(std).map_err(|e| Error::io("UDP socket", e))?);
        let local = socket
            .local_addr()
            .map_err(|e| Error::io("UDP local address", e))?;
        lock(&self.udp).push(UdpEntry {
            socket: UdpSock::Async(socket.clone()),
            local,
        });
        self.spawn(udp_reader(self.clone(), socket.clone(), local));
        Ok(UdpSock::Async(socket))
    }

    /// [`route_source_ip`], cached per peer address.
    fn source_ip_for(&self, peer: SocketAddr) -> Option<IpAddr> {
        if let Some(ip) = lock(&self.source_ips).get(&peer.ip()) {
            return Some(*ip);
        }
        let ip = route_source_ip(peer)?;
        let mut cache = lock(&self.source_ips);
        if cache.len() >= SOURCE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(peer.ip(), ip);
        Some(ip)
    }

    async fn send_udp(&self, socket: &UdpSock, bytes: Bytes, peer: SocketAddr) -> Result<Sent> {
        self.check_size(&bytes)?;
        let local = socket
            .local_addr()
            .map_err(|e| Error::io("UDP local address", e))?;
        socket
            .send_to(&bytes, peer)
            .await
            .map_err(|e| Error::io(format!("send UDP to {peer}"), e))?;
        Ok(Sent {
            protocol: Protocol::Udp,
            local,
            peer,
            flow: None,
        })
    }

    /// An open connection to `target` (reused), or a new one.
    /// Concurrent callers for the same `(protocol, address)` wait for one
    /// connection attempt instead of each opening their own.
    async fn connection(
        self: Arc<Self>,
        target: &Target,
    ) -> Result<(FlowId, SocketAddr, ConnHandle)> {
        if let Some((id, e)) = lock(&self.table).find(target.protocol, target.addr) {
            return Ok((id, e.local, e.handle.clone()));
        }
        let key = (target.protocol, target.addr);
        let gate = lock(&self.connecting).entry(key).or_default().clone();
        let result = {
            let _turn = gate.lock().await;
            let found = lock(&self.table)
                .find(target.protocol, target.addr)
                .map(|(id, e)| (id, e.local, e.handle.clone()));
            match found {
                Some(f) => Ok(f),
                None => self.clone().connect_new(target).await,
            }
        };
        let mut connecting = lock(&self.connecting);
        // Only the map and this call hold the gate: nobody else is waiting.
        if Arc::strong_count(&gate) == 2 {
            connecting.remove(&key);
        }
        result
    }

    async fn connect_new(
        self: Arc<Self>,
        target: &Target,
    ) -> Result<(FlowId, SocketAddr, ConnHandle)> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let (tx, rx) = mpsc::channel(self.config.outbound_queue.max(1));
        let handle = ConnHandle {
            tx,
            closer: Arc::new(Closer::default()),
        };
        let id = lock(&self.table)
            .insert(
                target.protocol,
                target.addr,
                unspecified(&target.addr),
                handle.clone(),
                Instant::now(),
            )
            .map_err(|e| Error::Limit(e.as_str()))?;
        let result =
            tokio::time::timeout(self.config.connect_timeout, conn::connect(&self, target)).await;
        let stream = match result {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                lock(&self.table).remove(id);
                return Err(e);
            }
            Err(_) => {
                lock(&self.table).remove(id);
                return Err(Error::ConnectTimeout(target.addr));
            }
        };
        let local = stream.local;
        {
            let mut t = lock(&self.table);
            t.set_local(id, local);
            t.set_ready(id, Instant::now());
        }
        self.event(
            id,
            target.protocol,
            target.addr,
            local,
            FlowEventKind::Opened,
        );
        let ctx = ConnCtx {
            inner: self.clone(),
            id,
            protocol: target.protocol,
            peer: target.addr,
            local,
            closer: handle.closer.clone(),
            rx,
        };
        self.spawn(conn::run(ctx, stream.io));
        Ok((id, local, handle))
    }

    /// Turns raw bytes from a peer into an [`Incoming`], a 400 to send back, or
    /// nothing (logged). `Err` means the bytes are not SIP at all (a stream
    /// connection is then closed).
    /// The stream sink, if one is set.
    pub(crate) fn stream_sink(&self) -> Option<StreamSink> {
        self.stream_sink
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.0.clone())
    }

    pub(crate) fn process(&self, bytes: Bytes, origin: Origin) -> Result<Processed, String> {
        let opts = self.config.parse_options();
        let mut msg = match Message::parse_with(bytes, &opts) {
            Ok(m) => m,
            Err(e) => return Err(format!("unparseable message: {e}")),
        };
        match via::check_inbound(&msg) {
            Ok(()) => {}
            Err((e, via_ok)) => {
                if msg.is_request() && via_ok {
                    let _ = via::stamp_request(&mut msg, origin.peer);
                    warn!(peer = %origin.peer, protocol = %origin.protocol, error = %e, "bad request, answering");
                    return Ok(match bad_request(&msg, &e) {
                        Some(r) => Processed::Reply(r),
                        None => Processed::Drop,
                    });
                }
                warn!(peer = %origin.peer, protocol = %origin.protocol, error = %e, "malformed message dropped");
                return Ok(Processed::Drop);
            }
        }
        if msg.is_request()
            && let Err(e) = via::stamp_request(&mut msg, origin.peer)
        {
            warn!(peer = %origin.peer, error = %e, "cannot stamp Via, dropped");
            return Ok(Processed::Drop);
        }
        Ok(Processed::Deliver(Incoming {
            message: msg,
            origin,
        }))
    }

    /// Removes a finished connection from the table and reports it closed.
    pub(crate) fn closed(&self, id: FlowId, reason: String, was_open: bool) {
        if let Some(e) = lock(&self.table).remove(id)
            && was_open
        {
            self.event(
                id,
                e.protocol,
                e.peer,
                e.local,
                FlowEventKind::Closed(reason),
            );
        }
    }

    pub(crate) fn touch(&self, id: FlowId) {
        lock(&self.table).touch(id, Instant::now());
    }
}

/// The outcome of [`Inner::process`].
pub(crate) enum Processed {
    Deliver(Incoming),
    /// A 400-class answer to a malformed request, and where the request's Via
    /// says it goes.
    Reply(Message),
    Drop,
}

/// A response to a request that failed [`via::check_inbound`]: the status the
/// error maps to and its text as the reason; Via (stamped), From, To, Call-ID
/// and CSeq copied as they are.
fn bad_request(req: &Message, e: &siplink_message::Error) -> Option<Message> {
    let mut b = MessageBuilder::response_with_reason(e.status_code(), &e.to_string());
    for h in req.headers() {
        if matches!(
            h.name(),
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            b = b.header_bytes(h.name(), Bytes::copy_from_slice(h.value()));
        }
    }
    b.build().ok()
}

/// The client configuration used when [`TransportConfig::tls_client`] is not
/// set: the webpki roots, built once on first use.
fn default_tls_client() -> Option<crate::tls::TlsClientConfig> {
    static DEFAULT: OnceLock<Option<crate::tls::TlsClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| crate::tls::TlsClientConfig::new(crate::tls::Roots::WebPki, None).ok())
        .clone()
}

pub(crate) fn tls_client(inner: &Inner) -> Option<crate::tls::TlsClientConfig> {
    inner.config.tls_client.clone().or_else(default_tls_client)
}

/// Resolves once shutdown has begun.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which is a shutdown too.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// The source address the system picks to reach `peer` (connecting a UDP
/// socket sends nothing), for the sent-by of a socket bound to the
/// unspecified address.
fn route_source_ip(peer: SocketAddr) -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind(unspecified(&peer)).ok()?;
    s.connect(peer).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// Most entries kept in the source address cache before it is cleared.
const SOURCE_CACHE_MAX: usize = 4096;

async fn udp_reader(inner: Arc<Inner>, socket: Arc<UdpSocket>, local: SocketAddr) {
    let mut shutdown = inner.shutdown_signal();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors (connection refused) surface here on some systems.
                    debug!(%local, error = %e, "UDP receive error");
                    continue;
                }
            },
        };
        let data = &buf[..n];
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            continue; // keepalive datagram
        }
        let origin = Origin {
            protocol: Protocol::Udp,
            peer,
            local,
            flow: None,
        };
        match inner.process(Bytes::copy_from_slice(data), origin) {
            Ok(Processed::Deliver(incoming)) => {
                if inner.inbound.send(incoming).await.is_err() {
                    debug!("inbound receiver dropped");
                }
            }
            Ok(Processed::Reply(resp)) => {
                let dest = resp
                    .top_via()
                    .ok()
                    .and_then(|v| via::route_response(v, None, false).ok());
                if let Some(ResponseRoute::Addr { addr, .. }) = dest {
                    let _ = socket.send_to(&resp.to_bytes(), addr).await;
                }
            }
            Ok(Processed::Drop) => {}
            Err(reason) => warn!(%peer, %local, %reason, "UDP datagram dropped"),
        }
    }
}

async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    protocol: Protocol,
    local: SocketAddr,
) {
    let mut shutdown = inner.shutdown_signal();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(%protocol, %local, error = %e, "accept failed");
                    // Out of file descriptors and the like: back off a little.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (tx, rx) = mpsc::channel(inner.config.outbound_queue.max(1));
        let handle = ConnHandle {
            tx,
            closer: Arc::new(Closer::default()),
        };
        let conn_local = stream.local_addr().unwrap_or(local);
        let id = match lock(&inner.table).insert(
            protocol,
            peer,
            conn_local,
            handle.clone(),
            Instant::now(),
        ) {
            Ok(id) => id,
            Err(e) => {
                warn!(%protocol, %peer, reason = e.as_str(), "connection refused");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ConnCtx {
            inner: inner.clone(),
            id,
            protocol,
            peer,
            local: conn_local,
            closer: handle.closer.clone(),
            rx,
        };
        inner.spawn(conn::accept(ctx, stream));
    }
}

/// Closes connections idle longer than the idle timeout.
async fn sweeper(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown_signal();
    let period =
        (inner.config.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = tick.tick() => {}
        }
        let idle: Vec<ConnHandle> = {
            let t = lock(&inner.table);
            t.idle(Instant::now())
                .into_iter()
                .filter_map(|id| t.handle(id).cloned())
                .collect()
        };
        for h in idle {
            h.closer.close("idle timeout");
        }
    }
}
