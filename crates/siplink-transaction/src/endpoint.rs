//! An async SIP endpoint: the [`TransactionTable`] driven over
//! `siplink-transport` on tokio.
//!
//! One task owns the table and its timers. It reads [`Incoming`] messages from
//! the transport and commands from the handles ([`Endpoint`],
//! [`ClientTransactionHandle`], [`ServerTransactionHandle`]) over channels, so
//! nothing on the hot path takes a lock.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use siplink_message::{HeaderName, Message, Method};
use siplink_transport::{Clock, Destination, Incoming, Origin, Protocol, Transport};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::branch::new_branch;
use crate::client::build_cancel;
use crate::error::{Error, Result};
use crate::event::TuEvent;
use crate::server::ServerState;
use crate::stateless::StatelessReplies;
use crate::table::{
    Output, Received, TableConfig, TransactionId, TransactionState, TransactionTable,
};

/// Called by the endpoint task with every stray message: a response that
/// matches no client transaction (a 2xx retransmitted after the transaction
/// ended, a 2xx from another fork), an ACK for a 2xx (it has a branch of its
/// own, so it matches no server transaction), and an ACK that an RFC 2543 INVITE
/// server transaction in the Accepted state handed to its TU. A proxy forwards
/// them statelessly (RFC 3261 §16.7, §16.11); a UA gives the ACK to its dialog.
///
/// It runs on the endpoint task: it must not block (push to a channel, or spawn).
pub type StrayHandler = Arc<dyn Fn(Incoming) + Send + Sync>;

/// Configuration of an [`Endpoint`].
#[derive(Clone)]
pub struct EndpointConfig {
    /// Timers, the live-transaction limit and its Retry-After, merged-request
    /// detection.
    pub table: TableConfig,
    /// Where stray messages go; `None` drops them (logged at debug level).
    pub stray: Option<StrayHandler>,
    /// Capacity of the [`ServerRequests`] queue. A new request that finds it
    /// full is answered 503 with Retry-After. Default 1024.
    pub server_queue: usize,
    /// Capacity of the command queue from the handles to the endpoint task.
    /// Default 4096.
    pub command_queue: usize,
    /// Longest wait for one send (a full connection queue, a connection to open
    /// for a response); past it the send counts as a transport error. Default 2 s.
    pub send_timeout: Duration,
    /// Longest wait in [`Endpoint::shutdown`] for pending transactions to get
    /// their final response. Default 5 s.
    pub shutdown_grace: Duration,
    /// Where the endpoint reads time (the `now` of every transaction input and
    /// timer). Default [`Clock::new`]: tokio's clock, so a test on a paused
    /// runtime fires the transaction timers with `tokio::time::advance`.
    pub clock: Clock,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            table: TableConfig::default(),
            stray: None,
            server_queue: 1024,
            command_queue: 4096,
            send_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
            clock: Clock::new(),
        }
    }
}

impl EndpointConfig {
    /// The same configuration with `handler` receiving stray messages.
    pub fn with_stray_handler(
        mut self,
        handler: impl Fn(Incoming) + Send + Sync + 'static,
    ) -> Self {
        self.stray = Some(Arc::new(handler));
        self
    }
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("table", &self.table)
            .field("stray", &self.stray.as_ref().map(|_| "handler"))
            .field("server_queue", &self.server_queue)
            .field("command_queue", &self.command_queue)
            .field("send_timeout", &self.send_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("clock", &self.clock)
            .finish()
    }
}

/// What a client transaction reports to its [`ClientTransactionHandle`].
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A provisional (1xx) response.
    Provisional(Message),
    /// The final response (exactly one per transaction, unless it timed out or
    /// failed). For an INVITE the endpoint already sent the ACK of a non-2xx;
    /// the ACK of a 2xx is the caller's.
    Final(Message),
    /// INVITE only, after a 2xx: a retransmission of it or a 2xx from another
    /// fork (RFC 6026). The caller ACKs it (or forwards it).
    Additional2xx(Message),
    /// No final response in time (timer B or F, 64*T1).
    Timeout,
    /// The transport failed to send the request (or the connection closed).
    TransportError,
}

/// New server transactions, one [`ServerTransactionHandle`] each (CANCEL
/// excepted: the endpoint answers it, see [`ServerTransactionHandle::cancelled`]).
pub type ServerRequests = mpsc::Receiver<ServerTransactionHandle>;

/// Capacity of a client transaction's event queue. Events travel boxed: a
/// channel allocates its slots in blocks of 32, and a boxed slot is a pointer
/// rather than a whole `Message` (measured: 8-11 KiB per channel otherwise,
/// held for the 32 s an answered INVITE transaction lives).
const EVENT_QUEUE: usize = 32;
/// Slots of that queue kept for the final outcome: provisional responses and
/// further 2xx beyond the rest are dropped when the caller does not read.
const EVENT_RESERVE: usize = 4;

enum Command {
    Start {
        request: Message,
        dest: Destination,
        reliable: bool,
        events: mpsc::Sender<Box<ClientEvent>>,
        reply: oneshot::Sender<Result<TransactionId>>,
    },
    Cancel {
        id: TransactionId,
        reply: oneshot::Sender<Result<()>>,
    },
    Respond {
        id: TransactionId,
        response: Message,
        /// Answer statelessly and forget the transaction.
        stateless: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Abandon {
        id: TransactionId,
    },
    Len {
        reply: oneshot::Sender<usize>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// An async SIP transaction endpoint (RFC 3261 §17) over a
/// [`Transport`]: client transactions with [`Endpoint::send_request`], server
/// transactions from the [`ServerRequests`] queue, stray messages to
/// [`EndpointConfig::stray`].
///
/// Cheap to clone. Branch ids are [`new_branch`] (magic cookie and 128 random
/// bits). The transport's protocol decides reliability (UDP retransmits; TCP,
/// TLS, WS and WSS do not). Past [`TableConfig::max_transactions`] new requests
/// are answered 503 with Retry-After and [`Endpoint::send_request`] fails with
/// [`Error::Overloaded`]. A transaction's memory is freed when it terminates.
///
/// ```
/// use siplink_message::{HeaderName, MessageBuilder, Method};
/// use siplink_transaction::{ClientEvent, Endpoint, EndpointConfig};
/// use siplink_transport::{Protocol, Target, Transport, TransportConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A server: answers every request 200.
/// let (st, st_in) = Transport::new(TransportConfig::default());
/// let server_addr = st.listen(Protocol::Udp, "127.0.0.1:0".parse()?).await?;
/// let (server, mut requests) = Endpoint::start(st.clone(), st_in, EndpointConfig::default());
/// tokio::spawn(async move {
///     while let Some(mut tx) = requests.recv().await {
///         let ok = tx.request.response(200).build().expect("response");
///         let _ = tx.respond(ok).await;
///     }
/// });
///
/// // A client: sends OPTIONS (the endpoint sets the branch and sent-by).
/// let (ct, ct_in) = Transport::new(TransportConfig::default());
/// ct.listen(Protocol::Udp, "127.0.0.1:0".parse()?).await?;
/// let (client, _requests) = Endpoint::start(ct.clone(), ct_in, EndpointConfig::default());
/// let options = MessageBuilder::request(Method::Options, "sip:server@127.0.0.1")
///     .header(HeaderName::Via, "SIP/2.0/UDP placeholder")
///     .header(HeaderName::MaxForwards, 70)
///     .header(HeaderName::To, "<sip:server@127.0.0.1>")
///     .header(HeaderName::From, "<sip:client@127.0.0.1>;tag=1")
///     .header(HeaderName::CallId, "example-1")
///     .header(HeaderName::CSeq, "1 OPTIONS")
///     .build()?;
/// let mut tx = client.send_request(options, Target::new(Protocol::Udp, server_addr)).await?;
/// match tx.next().await {
///     Some(ClientEvent::Final(resp)) => assert_eq!(resp.status(), Some(200)),
///     other => panic!("unexpected {other:?}"),
/// }
/// client.shutdown().await;
/// server.shutdown().await;
/// ct.shutdown().await;
/// st.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Endpoint {
    cmd: mpsc::Sender<Command>,
    transport: Transport,
    stateless: StatelessReplies,
    send_timeout: Duration,
}

impl Endpoint {
    /// Starts the endpoint task over `transport`, reading `incoming` (the
    /// receiver [`Transport::new`] returned). Returns the endpoint and the queue
    /// of new server transactions. Must be called within a tokio runtime.
    pub fn start(
        transport: Transport,
        incoming: mpsc::Receiver<Incoming>,
        config: EndpointConfig,
    ) -> (Endpoint, ServerRequests) {
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_queue.max(1));
        let (server_tx, server_rx) = mpsc::channel(config.server_queue.max(1));
        let table = TransactionTable::new(config.table);
        let stateless = table.stateless().clone();
        let core = Core {
            table,
            transport: transport.clone(),
            txs: HashMap::new(),
            server_tx,
            cmd: cmd_tx.downgrade(),
            stray: config.stray.clone(),
            send_timeout: config.send_timeout,
            closing: false,
            clock: config.clock,
        };
        tokio::spawn(core.run(cmd_rx, incoming, config.shutdown_grace));
        (
            Endpoint {
                cmd: cmd_tx,
                transport,
                stateless,
                send_timeout: config.send_timeout,
            },
            server_rx,
        )
    }

    /// The transport (to send what is not a transaction: the ACK for a 2xx, a
    /// statelessly forwarded message).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The stateless reply builder, with the same key as the endpoint's table
    /// (so the ACK of a stateless non-2xx reply built with it is absorbed).
    pub fn stateless(&self) -> &StatelessReplies {
        &self.stateless
    }

    /// Answers `request` (received from `origin`) with `status` statelessly,
    /// as Kamailio's `sl` does: no transaction is created or kept, the To tag
    /// is derived from the request ([`StatelessReplies`]), so a retransmitted
    /// request gets the same status and tag, and the ACK of a non-2xx reply to
    /// an INVITE is absorbed by the endpoint. `extra` headers are added (a
    /// challenge's `WWW-Authenticate`, a `Retry-After`). Sent in the caller's
    /// task, at most [`EndpointConfig::send_timeout`].
    pub async fn reply_stateless(
        &self,
        request: &Message,
        origin: &Origin,
        status: u16,
        extra: &[(HeaderName, &str)],
    ) -> Result<()> {
        let mut b = self.stateless.response(request, status);
        for (name, value) in extra {
            b = b.header(*name, value);
        }
        let response = b.build()?;
        self.send_stateless(response, origin).await
    }

    /// Sends `response`, built with [`stateless`](Self::stateless) (or
    /// [`StatelessReplies::retag`]ged), to `origin` without a transaction.
    pub async fn send_stateless(&self, response: Message, origin: &Origin) -> Result<()> {
        let send = self.transport.send_response(response, Some(origin));
        match tokio::time::timeout(self.send_timeout, send).await {
            Ok(r) => r.map(drop).map_err(|e| Error::Transport(e.to_string())),
            Err(_) => Err(Error::Transport("send timed out".to_owned())),
        }
    }

    /// Starts a client transaction sending `request` (not ACK) to `dest` and
    /// returns its handle.
    ///
    /// The endpoint gives the top Via a fresh branch ([`new_branch`]) unless it
    /// already has one with the magic cookie, and sets its transport and
    /// sent-by to the listener of the protocol used (or the connection's local
    /// address). A UDP target needs a UDP listener of the target's address
    /// family (responses come back to it); a request larger than the
    /// transport's `udp_mtu_limit` goes over TCP when the target allows it
    /// (RFC 3261 §18.1.1). A TCP or TLS target is connected to first; a WS or
    /// WSS request needs an existing flow (`dest` a `FlowId`).
    pub async fn send_request(
        &self,
        request: Message,
        dest: impl Into<Destination>,
    ) -> Result<ClientTransactionHandle> {
        let mut request = request;
        match request.method() {
            None => return Err(Error::NotARequest),
            Some(Method::Ack) => return Err(Error::AckIsNotATransaction),
            Some(_) => {}
        }
        let mut via = request.top_via()?.clone();
        if !via.has_magic_cookie() {
            via.params.set("branch", Some(&new_branch()));
            request.replace_first_value(HeaderName::Via, via.to_string());
        }
        let (dest, protocol, sent_by) = self.route(&request, dest.into()).await?;
        siplink_transport::via::stamp_sent_by(&mut request, protocol, sent_by)?;
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let (reply, wait) = oneshot::channel();
        self.command(Command::Start {
            request: request.clone(),
            dest,
            reliable: protocol.is_stream(),
            events,
            reply,
        })
        .await?;
        let id = wait.await.map_err(|_| Error::EndpointClosed)??;
        Ok(ClientTransactionHandle {
            id,
            request,
            events: rx,
            cmd: self.cmd.clone(),
        })
    }

    /// Number of live transactions (client and server).
    pub async fn transaction_count(&self) -> Result<usize> {
        let (reply, wait) = oneshot::channel();
        self.command(Command::Len { reply }).await?;
        wait.await.map_err(|_| Error::EndpointClosed)
    }

    /// Graceful shutdown: new requests are answered 503 and new client
    /// transactions refused; pending transactions get up to
    /// [`EndpointConfig::shutdown_grace`] for their final response; then every
    /// transaction is dropped (client handles yield `None`) and the task ends.
    /// The transport is the caller's to shut down.
    pub async fn shutdown(&self) {
        let (reply, wait) = oneshot::channel();
        if self.cmd.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = wait.await;
        }
    }

    async fn command(&self, c: Command) -> Result<()> {
        self.cmd.send(c).await.map_err(|_| Error::EndpointClosed)
    }

    /// Where to send, with which protocol, and the sent-by to put in the Via.
    async fn route(
        &self,
        request: &Message,
        dest: Destination,
    ) -> Result<(Destination, Protocol, SocketAddr)> {
        let transport = &self.transport;
        let mut target = match dest {
            Destination::Flow(flow) => {
                let (protocol, _peer, local) = transport
                    .flow_info(flow)
                    .ok_or_else(|| Error::Transport(format!("flow {flow} is gone")))?;
                return Ok((
                    Destination::Flow(flow),
                    protocol,
                    transport.sent_by(protocol, local),
                ));
            }
            Destination::Target(t) => t,
        };
        if target.protocol == Protocol::Udp {
            let listener = transport
                .listeners()
                .into_iter()
                .find(|(p, a)| *p == Protocol::Udp && a.is_ipv4() == target.addr.is_ipv4())
                .map(|(_, a)| a)
                .ok_or_else(|| {
                    Error::NoRoute(format!("no UDP listener to send to {}", target.addr))
                })?;
            let local = if listener.ip().is_unspecified() {
                SocketAddr::new(source_ip(target.addr, listener.ip()), listener.port())
            } else {
                listener
            };
            let mut probe = request.clone();
            siplink_transport::via::stamp_sent_by(&mut probe, Protocol::Udp, local)?;
            let size = probe.to_bytes().len();
            let limit = transport.config().udp_mtu_limit;
            if size <= limit {
                return Ok((Destination::Target(target), Protocol::Udp, local));
            }
            if !target.allow_tcp {
                return Err(Error::Transport(format!(
                    "request of {size} bytes is larger than the UDP limit of {limit} bytes"
                )));
            }
            target.protocol = Protocol::Tcp;
        }
        if target.protocol.is_websocket() {
            return Err(Error::NoRoute(format!(
                "a {} request needs an open flow",
                target.protocol
            )));
        }
        // Open (or reuse) the connection now, outside the endpoint task: a
        // zero-length write sends nothing on a byte stream.
        let sent = transport
            .send_bytes(target.clone(), Bytes::new())
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let flow = sent
            .flow
            .ok_or_else(|| Error::NoRoute(format!("no connection to {}", target.addr)))?;
        Ok((
            Destination::Flow(flow),
            sent.protocol,
            transport.sent_by(sent.protocol, sent.local),
        ))
    }
}

/// The local IP the system routes `peer` from (no packet is sent).
pub(crate) fn source_ip(peer: SocketAddr, fallback: IpAddr) -> IpAddr {
    if peer.ip().is_loopback() {
        return peer.ip();
    }
    let bind: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(peer).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(fallback)
}

/// A client transaction in progress: read its responses with
/// [`next`](ClientTransactionHandle::next), cancel an INVITE with
/// [`cancel`](ClientTransactionHandle::cancel).
///
/// Dropping the handle does not stop the transaction (it still retransmits and
/// absorbs responses until it ends); its events are discarded.
#[derive(Debug)]
pub struct ClientTransactionHandle {
    id: TransactionId,
    request: Message,
    events: mpsc::Receiver<Box<ClientEvent>>,
    cmd: mpsc::Sender<Command>,
}

impl ClientTransactionHandle {
    /// The transaction's id.
    pub fn id(&self) -> TransactionId {
        self.id
    }

    /// The request as sent (with its branch and sent-by).
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// The next event: provisional responses, then the final one (or a timeout
    /// or transport error), then for an INVITE answered 2xx any further 2xx
    /// until timer M. `None` once the transaction has terminated and every
    /// event was read. If the caller reads nothing, provisional responses beyond
    /// a small queue are dropped; the final outcome never is.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await.map(|e| *e)
    }

    /// Cancels a pending INVITE (RFC 3261 §9.1): the CANCEL (built by
    /// [`build_cancel`]) is sent in a transaction of its own to the INVITE's
    /// destination once a provisional response has arrived, at once if one
    /// already has. The INVITE's final response (normally 487) still comes
    /// through [`next`](ClientTransactionHandle::next). No effect once a final
    /// response arrived. Errors: [`Error::NotAnInvite`], or
    /// [`Error::UnknownTransaction`] when the transaction has ended.
    pub async fn cancel(&self) -> Result<()> {
        let (reply, wait) = oneshot::channel();
        self.cmd
            .send(Command::Cancel { id: self.id, reply })
            .await
            .map_err(|_| Error::EndpointClosed)?;
        wait.await.map_err(|_| Error::EndpointClosed)?
    }
}

/// A server transaction: the request, where it came from, and the way to
/// answer it.
///
/// Dropping the handle before sending a final response answers 500.
#[derive(Debug)]
pub struct ServerTransactionHandle {
    /// The request (top Via stamped with `received`/`rport` by the transport).
    pub request: Message,
    /// Where it came from.
    pub origin: Origin,
    id: TransactionId,
    cmd: mpsc::Sender<Command>,
    cancelled: Option<oneshot::Receiver<()>>,
    finished: bool,
}

impl ServerTransactionHandle {
    /// The transaction's id.
    pub fn id(&self) -> TransactionId {
        self.id
    }

    /// Sends `response` (provisional or final) on this transaction; the
    /// transaction retransmits it as RFC 3261 §17.2 says. Errors:
    /// [`Error::InvalidState`] (e.g. a final response after the INVITE was
    /// cancelled and answered 487), [`Error::UnknownTransaction`] once it ended.
    pub async fn respond(&mut self, response: Message) -> Result<()> {
        let is_final = response.status().is_some_and(|s| s >= 200);
        let (reply, wait) = oneshot::channel();
        self.cmd
            .send(Command::Respond {
                id: self.id,
                response,
                stateless: false,
                reply,
            })
            .await
            .map_err(|_| Error::EndpointClosed)?;
        let r = wait.await.map_err(|_| Error::EndpointClosed)?;
        if r.is_ok() && is_final {
            self.finished = true;
        }
        r
    }

    /// Answers with the final `response` statelessly and ends the transaction
    /// at once (see [`TransactionTable::handle_stateless_response`]): for a
    /// challenge (401/407), a refusal (403), an overload (503). Nothing is kept
    /// for retransmissions: a retransmitted request comes through
    /// [`ServerRequests`] again, to be answered the same way. The To tag is
    /// replaced by the stateless tag (out-of-dialog requests), so the ACK of
    /// an INVITE answered so is absorbed. Errors: [`Error::InvalidState`] for a
    /// provisional response, a 2xx to an INVITE, or a transaction that already
    /// sent a final response.
    pub async fn respond_stateless(&mut self, response: Message) -> Result<()> {
        let (reply, wait) = oneshot::channel();
        self.cmd
            .send(Command::Respond {
                id: self.id,
                response,
                stateless: true,
                reply,
            })
            .await
            .map_err(|_| Error::EndpointClosed)?;
        let r = wait.await.map_err(|_| Error::EndpointClosed)?;
        if r.is_ok() {
            self.finished = true;
        }
        r
    }

    /// For an INVITE: waits until a CANCEL for it arrives (`true`) or the
    /// transaction ends (`false`). On CANCEL the endpoint has already answered
    /// it 200 and, if no final response was sent, the INVITE 487 (RFC 3261
    /// §9.2); a proxy cancels its branches. Always `false` for other methods.
    pub async fn cancelled(&mut self) -> bool {
        match self.cancelled.as_mut() {
            Some(rx) => {
                let r = rx.await.is_ok();
                self.cancelled = None;
                if r {
                    self.finished = true;
                }
                r
            }
            None => false,
        }
    }
}

impl Drop for ServerTransactionHandle {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.cmd.try_send(Command::Abandon { id: self.id });
        }
    }
}

enum TxInfo {
    Client {
        dest: Destination,
        reliable: bool,
        /// `None` for the endpoint's own CANCEL transactions.
        events: Option<mpsc::Sender<Box<ClientEvent>>>,
        /// The INVITE (for its CANCEL).
        invite: Option<Box<Message>>,
        provisional: bool,
        finished: bool,
        cancel_pending: bool,
    },
    Server {
        origin: Origin,
        cancel: Option<oneshot::Sender<()>>,
        is_cancel: bool,
    },
}

/// The endpoint task's state.
struct Core {
    table: TransactionTable,
    transport: Transport,
    txs: HashMap<TransactionId, TxInfo>,
    server_tx: mpsc::Sender<ServerTransactionHandle>,
    cmd: mpsc::WeakSender<Command>,
    stray: Option<StrayHandler>,
    send_timeout: Duration,
    closing: bool,
    clock: Clock,
}

impl Core {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut incoming: mpsc::Receiver<Incoming>,
        grace: Duration,
    ) {
        let clock = self.clock;
        let far = || clock.tokio_now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut incoming_open = true;
        let mut shutdown: Option<(oneshot::Sender<()>, tokio::time::Instant)> = None;
        loop {
            let deadline = self
                .table
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(far);
            let deadline = match &shutdown {
                Some((_, end)) => deadline.min(*end),
                None => deadline,
            };
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                c = commands.recv() => match c {
                    Some(Command::Shutdown { reply }) => {
                        self.closing = true;
                        if shutdown.is_none() {
                            shutdown = Some((reply, self.clock.tokio_now() + grace));
                        }
                    }
                    Some(c) => self.command(c).await,
                    None => break,
                },
                m = incoming.recv(), if incoming_open => match m {
                    Some(m) => self.incoming(m).await,
                    None => incoming_open = false,
                },
                () = &mut sleep => {
                    self.table.handle_timeout(self.clock.now());
                    self.drain().await;
                }
            }
            if let Some((_, end)) = &shutdown
                && (self.clock.tokio_now() >= *end || !self.pending())
            {
                break;
            }
        }
        debug!(live = self.table.len(), "endpoint task ends");
        // Dropping the table and the handles' senders ends every transaction.
        drop(self);
        if let Some((reply, _)) = shutdown {
            let _ = reply.send(());
        }
    }

    /// Whether a transaction still waits for a final response.
    fn pending(&self) -> bool {
        self.txs.iter().any(|(id, info)| match info {
            TxInfo::Client {
                finished, events, ..
            } => !finished && events.is_some(),
            TxInfo::Server { is_cancel, .. } => {
                !is_cancel
                    && matches!(
                        self.table.state(*id),
                        Some(TransactionState::Server(
                            ServerState::Trying | ServerState::Proceeding
                        ))
                    )
            }
        })
    }

    async fn command(&mut self, c: Command) {
        let now = self.clock.now();
        match c {
            Command::Start {
                request,
                dest,
                reliable,
                events,
                reply,
            } => {
                if self.closing {
                    let _ = reply.send(Err(Error::EndpointClosed));
                    return;
                }
                match self.table.start_client(&request, reliable, now) {
                    Ok(id) => {
                        let invite = request.method() == Some(&Method::Invite);
                        self.txs.insert(
                            id,
                            TxInfo::Client {
                                dest,
                                reliable,
                                events: Some(events),
                                invite: invite.then(|| Box::new(request)),
                                provisional: false,
                                finished: false,
                                cancel_pending: false,
                            },
                        );
                        let _ = reply.send(Ok(id));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Cancel { id, reply } => {
                let r = match self.txs.get_mut(&id) {
                    Some(TxInfo::Client {
                        invite: Some(_),
                        provisional,
                        finished,
                        cancel_pending,
                        ..
                    }) => {
                        if !*finished && !*cancel_pending {
                            *cancel_pending = true;
                            if *provisional {
                                self.send_cancel(id);
                            }
                        }
                        Ok(())
                    }
                    Some(TxInfo::Client { .. }) => Err(Error::NotAnInvite),
                    Some(TxInfo::Server { .. }) => Err(Error::WrongRole),
                    None => Err(Error::UnknownTransaction),
                };
                let _ = reply.send(r);
            }
            Command::Respond {
                id,
                response,
                stateless,
                reply,
            } => {
                let r = if stateless {
                    self.table.handle_stateless_response(id, response, now)
                } else {
                    self.table.handle_response(id, &response, now)
                };
                let _ = reply.send(r);
            }
            Command::Abandon { id } => {
                if matches!(
                    self.table.state(id),
                    Some(TransactionState::Server(
                        ServerState::Trying | ServerState::Proceeding
                    ))
                ) {
                    debug!(%id, "server transaction handle dropped unanswered: 500");
                    self.respond_status(id, 500, None);
                }
            }
            Command::Len { reply } => {
                let _ = reply.send(self.table.len());
            }
            Command::Shutdown { .. } => {}
        }
        self.drain().await;
    }

    async fn incoming(&mut self, m: Incoming) {
        let Incoming { message, origin } = m;
        let reliable = origin.protocol.is_stream();
        // A new request that no one can take (the server queue is full, or
        // shutting down): 503 statelessly, before a transaction exists.
        if (self.closing || self.server_tx.capacity() == 0)
            && message.is_request()
            && !matches!(message.method(), Some(Method::Ack | Method::Cancel))
            && !self.table.matches_server(&message)
        {
            debug!(
                closing = self.closing,
                "server request queue full: 503 statelessly"
            );
            let retry_after = self.table.config().retry_after;
            match self
                .table
                .stateless_response(&message, 503)
                .header(HeaderName::RetryAfter, retry_after)
                .build()
            {
                Ok(r) => self.send_stateless(r, &origin).await,
                Err(e) => debug!(error = %e, "cannot build a 503"),
            }
            return;
        }
        match self
            .table
            .handle_message(message, reliable, self.clock.now())
        {
            Received::Matched { .. } => {}
            Received::New { id, cancels } => {
                let is_cancel = self
                    .table
                    .server_request(id)
                    .is_some_and(|r| r.method() == Some(&Method::Cancel));
                self.txs.insert(
                    id,
                    TxInfo::Server {
                        origin,
                        cancel: None,
                        is_cancel,
                    },
                );
                if is_cancel {
                    self.cancel_received(id, cancels);
                }
            }
            Received::Stray(message) => self.stray(Incoming { message, origin }),
            Received::Rejected(r) => {
                debug!("transaction limit reached: 503");
                self.send_stateless(r, &origin).await;
            }
            Received::Merged(r) => self.send_stateless(r, &origin).await,
            Received::Malformed(r) => {
                debug!(from = %origin.peer, "malformed request: 400 statelessly");
                self.send_stateless(r, &origin).await;
            }
            Received::Absorbed => debug!(from = %origin.peer, "ACK of a stateless reply absorbed"),
            Received::Invalid(e) => debug!(error = %e, "dropped invalid message"),
        }
        self.drain().await;
    }

    /// A CANCEL created server transaction `id`: 200 and 487 (RFC 3261 §9.2),
    /// or 481 when it matches no INVITE.
    fn cancel_received(&mut self, id: TransactionId, cancels: Option<TransactionId>) {
        let Some(invite) = cancels else {
            self.respond_status(id, 481, None);
            return;
        };
        self.respond_status(id, 200, None);
        if matches!(
            self.table.state(invite),
            Some(TransactionState::Server(ServerState::Proceeding))
        ) {
            self.respond_status(invite, 487, None);
            if let Some(TxInfo::Server { cancel, .. }) = self.txs.get_mut(&invite)
                && let Some(tx) = cancel.take()
            {
                let _ = tx.send(());
            }
        }
    }

    /// Answers server transaction `id` with `status` (queued outputs).
    fn respond_status(&mut self, id: TransactionId, status: u16, retry_after: Option<u32>) {
        let Some(req) = self.table.server_request(id) else {
            return;
        };
        let mut b = req.response(status);
        if let Some(s) = retry_after {
            b = b.header(HeaderName::RetryAfter, s);
        }
        match b.build() {
            Ok(resp) => {
                if let Err(e) = self.table.handle_response(id, &resp, self.clock.now()) {
                    debug!(%id, status, error = %e, "automatic response refused");
                }
            }
            Err(e) => warn!(%id, status, error = %e, "cannot build automatic response"),
        }
    }

    /// Answers server transaction `id` 503 with Retry-After statelessly and
    /// forgets it (queued outputs).
    fn reject_stateless(&mut self, id: TransactionId, request: &Message) {
        let built = self
            .table
            .stateless_response(request, 503)
            .header(HeaderName::RetryAfter, self.table.config().retry_after)
            .build();
        match built {
            Ok(resp) => {
                if let Err(e) = self
                    .table
                    .handle_stateless_response(id, resp, self.clock.now())
                {
                    debug!(%id, error = %e, "stateless 503 refused");
                }
            }
            Err(e) => warn!(%id, error = %e, "cannot build a 503"),
        }
    }

    /// Starts the CANCEL transaction of INVITE client transaction `id`.
    fn send_cancel(&mut self, id: TransactionId) {
        let Some(TxInfo::Client {
            dest,
            reliable,
            invite: Some(invite),
            ..
        }) = self.txs.get(&id)
        else {
            return;
        };
        let (dest, reliable) = (dest.clone(), *reliable);
        let cancel = match build_cancel(invite) {
            Ok(c) => c,
            Err(e) => {
                warn!(%id, error = %e, "cannot build CANCEL");
                return;
            }
        };
        match self.table.start_client(&cancel, reliable, self.clock.now()) {
            Ok(cid) => {
                debug!(%id, cancel = %cid, "CANCEL sent");
                self.txs.insert(
                    cid,
                    TxInfo::Client {
                        dest,
                        reliable,
                        events: None,
                        invite: None,
                        provisional: false,
                        finished: false,
                        cancel_pending: false,
                    },
                );
            }
            Err(e) => warn!(%id, error = %e, "cannot start the CANCEL transaction"),
        }
    }

    fn stray(&self, m: Incoming) {
        match &self.stray {
            Some(h) => h(m),
            None => debug!(from = %m.origin.peer, "stray message dropped"),
        }
    }

    async fn send_stateless(&self, r: Message, origin: &Origin) {
        let send = self.transport.send_response(r, Some(origin));
        match tokio::time::timeout(self.send_timeout, send).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => debug!(error = %e, "stateless response not sent"),
            Err(_) => debug!("stateless response timed out"),
        }
    }

    /// Carries out the table's outputs (which may queue more).
    async fn drain(&mut self) {
        while let Some(o) = self.table.poll_output() {
            match o {
                Output::Send { id, bytes } => self.send(id, bytes).await,
                Output::Deliver { id, event } => self.deliver(id, event),
                Output::Terminated { id } => {
                    self.txs.remove(&id);
                }
            }
        }
    }

    async fn send(&mut self, id: TransactionId, bytes: Bytes) {
        let r = match self.txs.get(&id) {
            Some(TxInfo::Client { dest, .. }) => {
                let send = self.transport.send_bytes(dest.clone(), bytes);
                tokio::time::timeout(self.send_timeout, send).await
            }
            Some(TxInfo::Server { origin, .. }) => {
                let msg = match Message::parse(bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(%id, error = %e, "cannot reparse a response");
                        return;
                    }
                };
                let send = self.transport.send_response(msg, Some(origin));
                tokio::time::timeout(self.send_timeout, send).await
            }
            None => return,
        };
        let failed = match r {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "send timed out".to_owned(),
        };
        debug!(%id, error = %failed, "transport error");
        self.table.handle_transport_error(id, self.clock.now());
    }

    fn deliver(&mut self, id: TransactionId, event: TuEvent) {
        let Some(info) = self.txs.get_mut(&id) else {
            return;
        };
        match info {
            TxInfo::Client {
                events,
                provisional,
                finished,
                cancel_pending,
                invite,
                ..
            } => {
                let mut cancel_now = false;
                let (ev, must) = match event {
                    TuEvent::Provisional(m) => {
                        if !*provisional && *cancel_pending && invite.is_some() {
                            cancel_now = true;
                        }
                        *provisional = true;
                        (ClientEvent::Provisional(*m), false)
                    }
                    TuEvent::Final(m) => {
                        *finished = true;
                        (ClientEvent::Final(*m), true)
                    }
                    TuEvent::Additional2xx(m) => (ClientEvent::Additional2xx(*m), false),
                    TuEvent::Timeout => {
                        *finished = true;
                        (ClientEvent::Timeout, true)
                    }
                    TuEvent::TransportError => {
                        *finished = true;
                        (ClientEvent::TransportError, true)
                    }
                    TuEvent::Request(_) | TuEvent::Ack(_) => return,
                };
                match events {
                    Some(tx) if must || tx.capacity() > EVENT_RESERVE => {
                        let _ = tx.try_send(Box::new(ev));
                    }
                    Some(_) => debug!(%id, "client event dropped: the handle is not reading"),
                    None => debug!(%id, event = ?ev, "endpoint CANCEL transaction"),
                }
                if cancel_now {
                    self.send_cancel(id);
                }
            }
            TxInfo::Server {
                origin,
                cancel,
                is_cancel,
            } => match event {
                TuEvent::Request(m) if !*is_cancel => {
                    let rx = if m.method() == Some(&Method::Invite) {
                        let (tx, rx) = oneshot::channel();
                        *cancel = Some(tx);
                        Some(rx)
                    } else {
                        None
                    };
                    let Some(cmd) = self.cmd.upgrade() else {
                        return;
                    };
                    let handle = ServerTransactionHandle {
                        request: *m,
                        origin: *origin,
                        id,
                        cmd,
                        cancelled: rx,
                        finished: false,
                    };
                    if self.closing {
                        let mut h = handle;
                        h.finished = true;
                        self.reject_stateless(id, &h.request);
                        return;
                    }
                    if let Err(e) = self.server_tx.try_send(handle) {
                        let mut h = match e {
                            mpsc::error::TrySendError::Full(h)
                            | mpsc::error::TrySendError::Closed(h) => h,
                        };
                        h.finished = true;
                        debug!(%id, "server request queue full or closed: 503");
                        self.reject_stateless(id, &h.request);
                    }
                }
                TuEvent::Ack(m) => {
                    let origin = *origin;
                    self.stray(Incoming {
                        message: *m,
                        origin,
                    });
                }
                TuEvent::Timeout => debug!(%id, "server transaction timed out (no ACK)"),
                TuEvent::TransportError => debug!(%id, "server transaction transport error"),
                _ => {}
            },
        }
    }
}
