//! The tokio driver: [`OutboundCall`], [`DialogMap`] and [`HealthMonitor`]
//! run over a `siplink_transaction::Endpoint`.
//!
//! The driver only moves messages and fires timers; every decision is the
//! sans-IO core's. It never reads the endpoint's `ServerRequests` queue: the
//! application (a proxy, a UA) owns it and hands the trunk the requests that
//! are for it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::{ClientEvent, ClientTransactionHandle, Endpoint, new_branch};
use siplink_transport::{Clock, Target as NetTarget, Transport};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::call::{AttemptFailure, CallFailure, DialogMap, Input, OutboundCall, Output};
use crate::config::{TargetAddr, TrunkConfig};
use crate::error::{Error, Result};
use crate::health::{HealthEvent, HealthMonitor, HealthOutput, HealthState, TargetHealth};
use crate::identify::Identify;

/// Capacity of a call's event queue (provisional responses beyond it are dropped).
const CALL_EVENTS: usize = 32;
/// Capacity of the health event broadcast.
const HEALTH_EVENTS: usize = 64;
/// Longest time a call task waits for a transaction that never ends (a
/// safety net; the transaction layer ends every transaction by timer B/M).
const CALL_LINGER: Duration = Duration::from_secs(64);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves a next hop to the transport's target (the first address).
pub(crate) async fn resolve(transport: &Transport, hop: &TargetAddr) -> Result<NetTarget> {
    let targets = transport
        .resolve(&hop.host, hop.port, hop.transport)
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    targets
        .into_iter()
        .next()
        .ok_or_else(|| Error::Transport(format!("{} resolves to no address", hop.host)))
}

/// Our Via sent-by before the endpoint stamps the real one: the first
/// listener, or a placeholder (the endpoint and transport replace it).
fn sent_by(transport: &Transport) -> String {
    transport
        .listeners()
        .first()
        .map(|(_, a)| a.to_string())
        .unwrap_or_else(|| "0.0.0.0".to_owned())
}

fn branch_of(m: &Message) -> String {
    m.top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_owned))
        .unwrap_or_default()
}

/// Aborts the health task when the last [`Trunk`] clone is dropped.
#[derive(Debug)]
struct TaskGuard(Option<JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: Arc<TrunkConfig>,
    endpoint: Endpoint,
    monitor: Mutex<HealthMonitor>,
    rng: Mutex<StdRng>,
    identify: Identify,
    events: broadcast::Sender<HealthEvent>,
    states: watch::Sender<Vec<HealthState>>,
    wake: Notify,
    clock: Clock,
}

/// A trunk on the network: calls, in-dialog requests and OPTIONS health
/// probes over an [`Endpoint`].
///
/// The trunk sends client transactions only. The endpoint's `ServerRequests`
/// queue stays with the application: a proxy receives the caller's INVITE,
/// gives it to [`Trunk::call`] and relays the [`CallEvent`]s to its server
/// transaction; requests arriving from the PBX are recognised with
/// [`Trunk::identify`] and mapped with [`TrunkDialog::from_trunk`].
///
/// Cheap to clone; the health task stops when the last clone is dropped.
///
/// ```no_run
/// use siplink_message::Method;
/// use siplink_transaction::{Endpoint, EndpointConfig};
/// use siplink_transport::{Protocol, Transport, TransportConfig};
/// use siplink_trunk::{CallEvent, Target, Trunk, TrunkConfig, in_dialog_request};
///
/// # async fn run(invite: siplink_message::Message) -> Result<(), Box<dyn std::error::Error>> {
/// let (transport, incoming) = Transport::new(TransportConfig::default());
/// transport.listen(Protocol::Udp, "0.0.0.0:5060".parse()?).await?;
/// // The application keeps `requests` (the server side).
/// let (endpoint, _requests) = Endpoint::start(transport, incoming, EndpointConfig::default());
/// let config = TrunkConfig::new("pbx", vec![Target::new("192.0.2.10", 5060, Protocol::Udp)]);
/// let trunk = Trunk::new(config, endpoint)?;
///
/// let mut call = trunk.call(invite.clone()).await?;
/// while let Some(event) = call.next().await {
///     if let CallEvent::Final { response, dialog: Some(dialog) } = event {
///         dialog.send_ack(in_dialog_request(Method::Ack, &invite, &response, 1)?).await?;
///         let bye = in_dialog_request(Method::Bye, &invite, &response, 2)?;
///         let answer = dialog.send_request(bye).await?.final_response().await?;
///         println!("BYE answered {:?}", answer.status());
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Trunk {
    shared: Arc<Shared>,
    _health: Arc<TaskGuard>,
}

impl Trunk {
    /// A trunk over `endpoint`, whose transport must have a listener for each
    /// protocol of the targets that needs one (UDP). Starts the health task
    /// when [`HealthConfig::enabled`](crate::HealthConfig::enabled) (first
    /// probes at once). Must be called within a tokio runtime. Time is read
    /// from a [`Clock::new`] (see [`with_clock`](Self::with_clock)).
    pub fn new(config: TrunkConfig, endpoint: Endpoint) -> Result<Trunk> {
        Trunk::with_clock(config, endpoint, Clock::new())
    }

    /// [`new`](Self::new) with the clock every reading of time goes through
    /// (the `now` of calls and health probes): a test on a paused tokio
    /// runtime drives the probe interval and failover timers with
    /// `tokio::time::advance`.
    pub fn with_clock(config: TrunkConfig, endpoint: Endpoint, clock: Clock) -> Result<Trunk> {
        config.validate()?;
        let config = Arc::new(config);
        let monitor =
            HealthMonitor::with_os_rng(config.clone(), sent_by(endpoint.transport()), clock.now());
        let states = monitor.targets().iter().map(|t| t.state).collect();
        let enabled = config.health.enabled;
        let shared = Arc::new(Shared {
            identify: Identify::from_configs([config.as_ref()]),
            config,
            endpoint,
            monitor: Mutex::new(monitor),
            rng: Mutex::new(StdRng::from_os_rng()),
            events: broadcast::channel(HEALTH_EVENTS).0,
            states: watch::channel(states).0,
            wake: Notify::new(),
            clock,
        });
        let task = enabled.then(|| tokio::spawn(health_loop(shared.clone())));
        Ok(Trunk {
            shared,
            _health: Arc::new(TaskGuard(task)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<TrunkConfig> {
        &self.shared.config
    }

    /// The endpoint the trunk sends through.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Whether a request from `source` comes from this trunk (its target IP
    /// literals and [`TrunkConfig::identify`] ranges). For many trunks at
    /// once, build one [`Identify`] with [`Identify::from_configs`].
    pub fn identify(&self, source: IpAddr) -> bool {
        self.shared.identify.lookup(source).is_some()
    }

    /// A snapshot of every target's health, in configuration order.
    pub fn health(&self) -> Vec<TargetHealth> {
        lock(&self.shared.monitor).targets().to_vec()
    }

    /// The up/down state of every target, updated on every change.
    pub fn health_watch(&self) -> watch::Receiver<Vec<HealthState>> {
        self.shared.states.subscribe()
    }

    /// Every health state change from now on (a slow reader loses the oldest).
    pub fn health_events(&self) -> broadcast::Receiver<HealthEvent> {
        self.shared.events.subscribe()
    }

    /// Sends a call: `invite` is the caller's INVITE as received (a proxy
    /// has removed a Route naming itself and added its Record-Route). The
    /// INVITE goes to the targets in health/priority/weight order with
    /// failover, challenges are answered; the returned handle yields the
    /// [`CallEvent`]s. Errors only for an INVITE the trunk cannot send
    /// (answer the caller 400/500 yourself).
    pub async fn call(&self, invite: Message) -> Result<CallHandle> {
        let order = {
            let monitor = lock(&self.shared.monitor);
            let mut rng = lock(&self.shared.rng);
            monitor.call_order(&mut *rng)
        };
        let transport = self.shared.endpoint.transport();
        let mut call = OutboundCall::new(self.shared.config.clone(), sent_by(transport), order);
        let clock = self.shared.clock;
        call.start(invite, clock.now())?;
        let (events, rx) = mpsc::channel(CALL_EVENTS);
        let (cmd, cmd_rx) = mpsc::channel(4);
        let task = CallTask {
            endpoint: self.shared.endpoint.clone(),
            call,
            events,
            live: 0,
            msg_tx: None,
            clock,
        };
        tokio::spawn(task.run(cmd_rx));
        Ok(CallHandle { events: rx, cmd })
    }
}

/// What happens to a call sent with [`Trunk::call`], in order.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum CallEvent {
    /// A provisional response (101-199) for the caller, mapped back (our Via
    /// removed, the caller's CSeq and From restored).
    Provisional(Message),
    /// The final response for the caller, mapped back; exactly once. For a
    /// 2xx, `dialog` carries the rest of the call (the caller's ACK goes
    /// through [`TrunkDialog::send_ack`]).
    Final {
        /// The response.
        response: Message,
        /// The dialog, for a 2xx.
        dialog: Option<TrunkDialog>,
    },
    /// A further 2xx (another target answered too, or a retransmission):
    /// forward it to the caller, who ACKs it and hangs this dialog up.
    Additional2xx {
        /// The response, mapped back.
        response: Message,
        /// Where that dialog's ACK and BYE go.
        dialog: Option<TrunkDialog>,
    },
    /// A target failed; the call moves on to the next one (or ends).
    TargetFailed {
        /// Index of the target in the configuration.
        target: usize,
        /// What happened.
        reason: AttemptFailure,
    },
    /// The trunk ended the call itself; the [`CallEvent::Final`] that follows
    /// is a locally built response.
    Failed(CallFailure),
}

#[derive(Debug)]
enum Command {
    Cancel,
}

/// A call in progress: read its events with [`next`](Self::next), cancel it
/// with [`cancel`](Self::cancel). Dropping the handle before the final
/// response cancels the call.
#[derive(Debug)]
pub struct CallHandle {
    events: mpsc::Receiver<Box<CallEvent>>,
    cmd: mpsc::Sender<Command>,
}

impl CallHandle {
    /// The next event; `None` once the call is over (its final response and
    /// any further 2xx were given and every transaction ended).
    pub async fn next(&mut self) -> Option<CallEvent> {
        self.events.recv().await.map(|e| *e)
    }

    /// The caller cancelled: no further target is tried and the current one
    /// gets a CANCEL (RFC 3261 §9.1); a `487` (or the PBX's answer, if it
    /// came first) follows as [`CallEvent::Final`]. No effect once answered.
    pub async fn cancel(&self) {
        let _ = self.cmd.send(Command::Cancel).await;
    }
}

#[allow(clippy::large_enum_variant)]
enum Msg {
    /// An input from the transaction of a request sent to `dest`.
    Input(Input, Option<NetTarget>),
    /// A transaction's task ended.
    Done,
}

struct CallTask {
    endpoint: Endpoint,
    call: OutboundCall,
    events: mpsc::Sender<Box<CallEvent>>,
    live: usize,
    msg_tx: Option<mpsc::Sender<Box<Msg>>>,
    clock: Clock,
}

impl CallTask {
    async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>) {
        let (msg_tx, mut msg_rx) = mpsc::channel(CALL_EVENTS);
        self.msg_tx = Some(msg_tx);
        self.execute(None).await;
        let mut cmd_open = true;
        let mut finished_at: Option<tokio::time::Instant> = None;
        loop {
            if self.call.is_finished() {
                if self.live == 0 {
                    break;
                }
                finished_at.get_or_insert_with(|| self.clock.tokio_now());
            }
            let wake = self.call.poll_timeout().map(tokio::time::Instant::from_std);
            let linger = finished_at.map(|t| t + CALL_LINGER);
            tokio::select! {
                m = msg_rx.recv() => match m.map(|m| *m) {
                    Some(Msg::Input(input, dest)) => {
                        match self.call.handle_input(input, self.clock.now()) {
                            Ok(()) => self.execute(dest).await,
                            Err(e) => debug!(error = %e, "trunk call: input ignored"),
                        }
                    }
                    Some(Msg::Done) => self.live = self.live.saturating_sub(1),
                    None => break,
                },
                c = cmd_rx.recv(), if cmd_open => {
                    // A dropped handle cancels too.
                    cmd_open = matches!(c, Some(Command::Cancel));
                    match self.call.handle_cancel(self.clock.now()) {
                        Ok(()) => self.execute(None).await,
                        Err(e) => debug!(error = %e, "trunk call: cancel failed"),
                    }
                }
                _ = sleep_until_opt(wake) => {
                    match self.call.handle_timeout(self.clock.now()) {
                        Ok(()) => self.execute(None).await,
                        Err(e) => debug!(error = %e, "trunk call: poll failed"),
                    }
                }
                _ = sleep_until_opt(linger) => break,
            }
        }
    }

    /// Carries out the core's outputs. `from` is where the input that caused
    /// them came from (the answering target for a 2xx).
    async fn execute(&mut self, from: Option<NetTarget>) {
        while let Some(o) = self.call.poll_output() {
            let event = match o {
                Output::Send {
                    request, next_hop, ..
                } => {
                    self.send(request, next_hop);
                    continue;
                }
                Output::Relay(m) => CallEvent::Provisional(m),
                Output::Final(response) => {
                    let dialog = self.dialog_for(&response, from.as_ref());
                    CallEvent::Final { response, dialog }
                }
                Output::Additional2xx(response) => {
                    let dialog = self.dialog_for(&response, from.as_ref());
                    CallEvent::Additional2xx { response, dialog }
                }
                Output::TargetFailed { target, reason } => {
                    CallEvent::TargetFailed { target, reason }
                }
                Output::Failed(f) => CallEvent::Failed(f),
            };
            // A reader that lags loses provisional responses (as the
            // transaction layer's own queue does), never the rest; a reader
            // that is gone loses everything and the call still runs to its end.
            if let CallEvent::Provisional(_) = event {
                let _ = self.events.try_send(Box::new(event));
            } else {
                let _ = self.events.send(Box::new(event)).await;
            }
        }
    }

    fn dialog_for(&self, response: &Message, from: Option<&NetTarget>) -> Option<TrunkDialog> {
        if !response.status().is_some_and(|s| (200..300).contains(&s)) {
            return None;
        }
        let map = self.call.dialog()?.clone();
        Some(TrunkDialog {
            map: Arc::new(Mutex::new(map)),
            dest: from?.clone(),
            endpoint: self.endpoint.clone(),
        })
    }

    /// Runs one request (INVITE or CANCEL) in its own task: resolve, send,
    /// report every response, timeout or transport error back to the call.
    fn send(&mut self, request: Message, next_hop: TargetAddr) {
        let Some(msg_tx) = self.msg_tx.clone() else {
            return;
        };
        let is_invite = request.method() == Some(&Method::Invite);
        let endpoint = self.endpoint.clone();
        if is_invite {
            self.live += 1;
        }
        tokio::spawn(async move {
            let branch = branch_of(&request);
            let sent = match resolve(endpoint.transport(), &next_hop).await {
                Ok(dest) => endpoint
                    .send_request(request, dest.clone())
                    .await
                    .map(|tx| (tx, dest))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok((mut tx, dest)) => {
                    while let Some(ev) = tx.next().await {
                        if !is_invite {
                            continue;
                        }
                        let input = match ev {
                            ClientEvent::Provisional(m)
                            | ClientEvent::Final(m)
                            | ClientEvent::Additional2xx(m) => Input::Response(m),
                            ClientEvent::Timeout => Input::Timeout {
                                branch: branch.clone(),
                            },
                            ClientEvent::TransportError => Input::TransportError {
                                branch: branch.clone(),
                            },
                        };
                        if msg_tx
                            .send(Box::new(Msg::Input(input, Some(dest.clone()))))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, %next_hop.host, "trunk: send failed");
                    if is_invite {
                        let _ = msg_tx
                            .send(Box::new(Msg::Input(Input::TransportError { branch }, None)))
                            .await;
                    }
                }
            }
            if is_invite {
                let _ = msg_tx.send(Box::new(Msg::Done)).await;
            }
        });
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An answered call's dialog on the trunk side: where in-dialog requests go
/// (the address of the target that answered) and the [`DialogMap`] between
/// the caller's view and the trunk's. Cheap to clone; clones share the map.
///
/// In-dialog requests go to the answering target's address (or the outbound
/// proxy): a static trunk is reached at its configured address whatever
/// Contact it gives. Loose routing (Route/Record-Route) stays the caller's job.
#[derive(Debug, Clone)]
pub struct TrunkDialog {
    map: Arc<Mutex<DialogMap>>,
    dest: NetTarget,
    endpoint: Endpoint,
}

impl TrunkDialog {
    /// Where this dialog's requests go.
    pub fn destination(&self) -> &NetTarget {
        &self.dest
    }

    /// The current mapping (a copy).
    pub fn map(&self) -> DialogMap {
        lock(&self.map).clone()
    }

    /// Sends the caller's ACK for the 2xx (no transaction, RFC 3261 §17.1.1.3),
    /// given as the caller sent it (or as [`in_dialog_request`] built it):
    /// mapped with [`DialogMap::to_trunk`] (CSeq, From, the INVITE's
    /// credentials), with our Via on top (a fresh branch; the transport stamps
    /// the sent-by) and Max-Forwards decremented, as [`Trunk::call`] does for
    /// the INVITE.
    pub async fn send_ack(&self, ack: Message) -> Result<()> {
        if ack.method() != Some(&Method::Ack) {
            return Err(Error::Config("send_ack needs an ACK"));
        }
        let ack = forward(self.map().to_trunk(ack)?, &self.dest)?;
        self.endpoint
            .transport()
            .send(self.dest.clone(), ack)
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(())
    }

    /// Sends a request of the caller inside the dialog (BYE, re-INVITE,
    /// UPDATE, INFO...; not ACK) in a client transaction, given as the caller
    /// sent it: mapped with [`DialogMap::to_trunk`], our Via on top,
    /// Max-Forwards decremented. A `401`/`407` is answered once with the
    /// trunk's credentials ([`DialogMap::answer_challenge`]); a second
    /// challenge is given to the caller as it is. Responses come back ready
    /// for the caller: our Via removed, mapped with
    /// [`DialogMap::response_to_caller`] (as [`CallEvent`]s are).
    ///
    /// Errors: [`Error::TooManyHops`] when the request's Max-Forwards is 0
    /// (answer it 483), a malformed request, or the transaction layer's refusal.
    pub async fn send_request(&self, request: Message) -> Result<InDialogRequest> {
        let request = forward(self.map().to_trunk(request)?, &self.dest)?;
        let tx = self
            .endpoint
            .send_request(request, self.dest.clone())
            .await
            .map_err(|e| Error::Transaction(e.to_string()))?;
        let (events, rx) = mpsc::channel(CALL_EVENTS);
        let this = self.clone();
        tokio::spawn(async move { this.pump(tx, events).await });
        Ok(InDialogRequest { events: rx })
    }

    async fn pump(self, mut tx: ClientTransactionHandle, events: mpsc::Sender<ClientEvent>) {
        while let Some(ev) = tx.next().await {
            let ev = match ev {
                ClientEvent::Final(m) if matches!(m.status(), Some(401 | 407)) => {
                    let answer = lock(&self.map).answer_challenge(tx.request(), &m);
                    match answer {
                        Ok(req) => match self.endpoint.send_request(req, self.dest.clone()).await {
                            Ok(next) => {
                                tx = next;
                                continue;
                            }
                            Err(e) => {
                                debug!(error = %e, "trunk dialog: resend failed");
                                ClientEvent::TransportError
                            }
                        },
                        Err(_) => ClientEvent::Final(m),
                    }
                }
                other => other,
            };
            let map = self.map();
            let back = |mut m: Message| {
                m.remove_first_value(HeaderName::Via);
                map.response_to_caller(m)
            };
            let ev = match ev {
                ClientEvent::Provisional(m) => back(m).map(ClientEvent::Provisional),
                ClientEvent::Final(m) => back(m).map(ClientEvent::Final),
                ClientEvent::Additional2xx(m) => back(m).map(ClientEvent::Additional2xx),
                other => Ok(other),
            };
            match ev {
                Ok(ev) => {
                    if events.send(ev).await.is_err() {
                        return;
                    }
                }
                Err(e) => debug!(error = %e, "trunk dialog: response dropped"),
            }
        }
    }

    /// A request from the PBX inside this dialog, made ready for the caller
    /// ([`DialogMap::from_trunk`]).
    pub fn from_trunk(&self, request: Message) -> Message {
        lock(&self.map).from_trunk(request)
    }

    /// The caller's response to such a request, made ready for the PBX
    /// ([`DialogMap::response_to_trunk`]).
    pub fn response_to_trunk(&self, response: Message) -> Message {
        lock(&self.map).response_to_trunk(response)
    }
}

/// A request sent with [`TrunkDialog::send_request`]: its responses.
#[derive(Debug)]
pub struct InDialogRequest {
    events: mpsc::Receiver<ClientEvent>,
}

impl InDialogRequest {
    /// The next event (provisional, final, further 2xx, timeout, transport
    /// error), `None` once the transaction has ended.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Waits for the final outcome: `Ok(final response)`, or an error for a
    /// timeout, a transport error or a transaction that ended without one.
    pub async fn final_response(&mut self) -> Result<Message> {
        while let Some(ev) = self.next().await {
            match ev {
                ClientEvent::Final(m) => return Ok(m),
                ClientEvent::Timeout => return Err(Error::Transaction("timeout".into())),
                ClientEvent::TransportError => {
                    return Err(Error::Transport("the request could not be sent".into()));
                }
                _ => {}
            }
        }
        Err(Error::Transaction("ended without a final response".into()))
    }
}

/// A request of the caller made ready to leave for the trunk: our Via on
/// top (a fresh branch; the endpoint or transport stamps the sent-by) and
/// Max-Forwards decremented (70 if absent; 0 refused), as RFC 3261 §16.6 does
/// for a forwarded request.
fn forward(mut m: Message, dest: &NetTarget) -> Result<Message> {
    let max_forwards = m.max_forwards()?;
    if max_forwards == Some(0) {
        return Err(Error::TooManyHops);
    }
    m.set_header(
        HeaderName::MaxForwards,
        max_forwards.map_or(70, |n| n - 1).to_string(),
    );
    m.prepend_header(
        HeaderName::Via,
        format!(
            "SIP/2.0/{} 0.0.0.0;branch={};rport",
            dest.protocol.via_token(),
            new_branch()
        ),
    );
    Ok(m.reparse()?)
}

/// A request inside the dialog of `invite` (as the caller sent it to
/// [`Trunk::call`]) answered by `answer` (the 2xx from [`CallEvent::Final`]),
/// in the caller's view, for a UA that uses the trunk directly: Request-URI
/// from the 2xx's Contact (else the INVITE's), To of the 2xx, From and
/// Call-ID of the INVITE, CSeq `cseq` (the INVITE's for an ACK), no Via
/// (ours is added when it is sent). Give it to [`TrunkDialog::send_ack`] or
/// [`TrunkDialog::send_request`].
pub fn in_dialog_request(
    method: Method,
    invite: &Message,
    answer: &Message,
    cseq: u32,
) -> Result<Message> {
    let contact = answer
        .contact()
        .ok()
        .and_then(|c| c.as_slice().first().map(|c| c.uri.as_str().to_owned()));
    let uri = match contact {
        Some(u) => u,
        None => String::from_utf8_lossy(invite.request_uri_bytes().ok_or(Error::NotAnInvite)?)
            .into_owned(),
    };
    let header = |m: &Message, n: HeaderName, what: &'static str| {
        m.header(n)
            .map(Bytes::copy_from_slice)
            .ok_or(siplink_message::Error::MissingHeader(what))
    };
    Ok(MessageBuilder::request(method.clone(), uri)
        .header(HeaderName::MaxForwards, 70)
        .header_bytes(HeaderName::To, header(answer, HeaderName::To, "To")?)
        .header_bytes(HeaderName::From, header(invite, HeaderName::From, "From")?)
        .header_bytes(
            HeaderName::CallId,
            header(invite, HeaderName::CallId, "Call-ID")?,
        )
        .header(HeaderName::CSeq, format_args!("{cseq} {method}"))
        .build()?)
}

/// The health task: probes due at the monitor's wake time, each in its own
/// task; woken again when a probe ends.
async fn health_loop(shared: Arc<Shared>) {
    loop {
        let (outputs, wake) = {
            let mut m = lock(&shared.monitor);
            m.handle_timeout(shared.clock.now());
            let outputs: Vec<HealthOutput> = std::iter::from_fn(|| m.poll_output()).collect();
            (outputs, m.poll_timeout())
        };
        for o in outputs {
            match o {
                HealthOutput::Probe(p) => {
                    tokio::spawn(probe(shared.clone(), p.request, p.next_hop));
                }
                HealthOutput::Changed(ev) => health_changed(&shared, ev),
            }
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = sleep_until_opt(wake.map(tokio::time::Instant::from_std)) => {}
        }
    }
}

/// The final outcome of one OPTIONS request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ProbeResult {
    Response(Message),
    Timeout,
    TransportError,
}

/// Sends one OPTIONS probe and waits for its final outcome.
pub(crate) async fn run_options(
    endpoint: &Endpoint,
    request: Message,
    next_hop: &TargetAddr,
) -> ProbeResult {
    let Ok(dest) = resolve(endpoint.transport(), next_hop).await else {
        return ProbeResult::TransportError;
    };
    let Ok(mut tx) = endpoint.send_request(request, dest).await else {
        return ProbeResult::TransportError;
    };
    while let Some(ev) = tx.next().await {
        match ev {
            ClientEvent::Final(m) => return ProbeResult::Response(m),
            ClientEvent::Timeout => return ProbeResult::Timeout,
            ClientEvent::TransportError => return ProbeResult::TransportError,
            _ => {}
        }
    }
    ProbeResult::Timeout
}

async fn probe(shared: Arc<Shared>, request: Message, next_hop: TargetAddr) {
    let branch = branch_of(&request);
    let result = run_options(&shared.endpoint, request, &next_hop).await;
    let outputs: Vec<HealthOutput> = {
        let mut m = lock(&shared.monitor);
        let now = shared.clock.now();
        match &result {
            ProbeResult::Response(r) => m.handle_response(r, now),
            ProbeResult::Timeout => m.handle_probe_timeout(&branch, now),
            ProbeResult::TransportError => m.handle_transport_error(&branch, now),
        }
        std::iter::from_fn(|| m.poll_output()).collect()
    };
    for o in outputs {
        match o {
            HealthOutput::Changed(ev) => health_changed(&shared, ev),
            // Probes are only queued by `handle_timeout`, in the health task
            // (woken just below).
            HealthOutput::Probe(_) => {}
        }
    }
    shared.wake.notify_one();
}

/// Publishes a target's state change: the states watch and the event stream.
fn health_changed(shared: &Shared, ev: HealthEvent) {
    {
        let m = lock(&shared.monitor);
        shared
            .states
            .send_replace(m.targets().iter().map(|t| t.state).collect());
    }
    debug!(target = ev.target, from = ?ev.from, to = ?ev.to, "trunk target health changed");
    let _ = shared.events.send(ev);
}
