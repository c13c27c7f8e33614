//! The proxy's sans-IO core: every request's fate decided by pure code,
//! every call a small state machine, every answered call a small record.
//!
//! **Not wired into the running [`Proxy`](crate::Proxy) yet**: this is the
//! first milestone of its rewrite (issue #16). The driver that feeds it from
//! the transport and transaction layers comes with the new runtime.
//!
//! The [`Engine`] speaks the workspace's core vocabulary:
//!
//! * inputs are `handle_*(…, now)` methods: [`Engine::handle_request`] (a new
//!   server transaction's request with its [`Origin`]),
//!   [`Engine::handle_response`] (a response on one of our branches),
//!   [`Engine::handle_branch_failure`] (a branch's transaction timed out or
//!   its transport failed), [`Engine::handle_stray_response`] (a response no
//!   client transaction wanted: 2xx retransmissions, RFC 6026),
//!   [`Engine::handle_flow_closed`], [`Engine::handle_lookup`] (the
//!   answer to a [`Query`] it asked) and [`Engine::handle_media`] (the media
//!   relay's answer to an [`Output::Media`]: on connections with media
//!   `relay` or `bridge` every SDP waits for rtpengine's, see
//!   `docs/media.md`);
//! * what to do comes out of [`Engine::poll_output`], one [`Output`] at a
//!   time;
//! * time is [`Engine::poll_timeout`] / [`Engine::handle_timeout`] (timer C,
//!   RFC 4028 session expiry, maximum call duration).
//!
//! Inside: [`dispatch`](mod@dispatch) (each request's [`Fate`] as a value),
//! the fork (per-call state: parallel branches, RFC 3261 §16.7 best response
//! with challenge aggregation, CANCEL fan-out, failover, timer C) and the
//! [`DialogRecord`] (what an answered call keeps). See `docs/proxy-core.md`.
//!
//! ```
//! use std::time::Instant;
//! use siplink_message::Message;
//! use siplink_proxy::core::Local;
//! use siplink_proxy::engine::{Engine, EngineConfig, Output, ServerTx, StaticView};
//! use siplink_transport::{FlowId, Origin, Protocol};
//!
//! let view = StaticView {
//!     local: Local::new(["proxy.example.com".to_owned()], [5060]),
//!     ..StaticView::default()
//! };
//! let mut engine = Engine::new(view, EngineConfig::default());
//! let options = Message::parse(&b"OPTIONS sip:proxy.example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1\r\n\
//! Max-Forwards: 70\r\nFrom: <sip:1001@proxy.example.com>;tag=a1\r\n\
//! To: <sip:proxy.example.com>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\n\
//! Content-Length: 0\r\n\r\n"[..])?;
//! let origin = Origin {
//!     protocol: Protocol::Udp,
//!     peer: "192.0.2.10:5060".parse().unwrap(),
//!     local: "192.0.2.1:5060".parse().unwrap(),
//!     flow: None,
//! };
//! engine.handle_request(ServerTx(1), options, origin, Instant::now());
//! match engine.poll_output() {
//!     Some(Output::Respond { tx, response }) => {
//!         assert_eq!(tx, ServerTx(1));
//!         assert_eq!(response.status(), Some(200));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), siplink_message::Error>(())
//! ```

pub mod dialog;
pub mod dispatch;
mod fork;
mod indialog;
mod media;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use siplink_message::headers::HeaderName;
use siplink_message::uri::Uri;
use siplink_message::{Message, Method, TargetAddr, Transport};
use siplink_transport::{FlowId, Origin};

use crate::core;
pub use dialog::{DialogKey, DialogRecord, EndReason, Leg, MediaLeg, SessionTimer};
pub use dispatch::{
    Caller, Decision, Fate, PbxSource, Refresher, StaticView, View, dispatch, effective_request_uri,
};
use fork::{BranchSlot, Fork};
pub use media::{MediaFailure, MediaResult, MediaToken};
use timers::{Timer, Timers};

/// Methods the proxy answers or forwards (OPTIONS to the proxy).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, REFER, NOTIFY, SUBSCRIBE";
/// Extensions the proxy supports (OPTIONS to the proxy).
pub const SUPPORTED: &str = "path, outbound, timer";

/// The engine's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Timer C (RFC 3261 §16.6 step 11): how long an INVITE branch may go
    /// without a final response (restarted by each provisional response).
    /// Default 3 minutes.
    pub timer_c: Duration,
    /// The longest call: at this age the call is ended (BYE to both legs).
    /// Default 4 hours.
    pub max_call_duration: Duration,
    /// Our Min-SE (RFC 4028): an INVITE asking a shorter Session-Expires is
    /// answered 422. Default 90 s (the RFC's minimum).
    pub min_se: u32,
    /// Calls being set up (lookups pending and forks) at most; past it, 503
    /// with Retry-After.
    pub max_calls: usize,
    /// Dialog records kept at most; past it, an answered call is forwarded
    /// but not recorded (it is then routed by its Record-Route only).
    pub max_dialogs: usize,
    /// Branches per connection (targets of one lookup group) at most.
    pub max_branches: usize,
    /// Connections (failover groups) per call at most.
    pub max_groups: usize,
    /// How long an INVITE branch to a connection may go without any
    /// response, not even 100 Trying, before it is given up as 408 and the
    /// call fails over (a PBX that is down answers nothing; RFC 3261 timer B
    /// would wait 32 s). `None` (the default here): timer C only. The
    /// running proxy uses 4 s, as `siplink_trunk` does.
    pub no_response_timeout: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            timer_c: Duration::from_secs(180),
            max_call_duration: Duration::from_secs(4 * 3600),
            min_se: 90,
            max_calls: 10_000,
            max_dialogs: 100_000,
            max_branches: 16,
            max_groups: 16,
            no_response_timeout: None,
        }
    }
}

/// The driver's name for a server transaction (the request's way back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTx(pub u64);

/// A client transaction the engine started (a branch of a call, or a request
/// of its own: CANCEL, BYE). Its responses come back with this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchId(u64);

impl BranchId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The token a [`Query`] is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupToken(u64);

/// Where a message goes next.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// Over this connection (a phone's WebSocket, a PBX's TCP flow), or fail.
    Flow {
        /// The flow.
        flow: FlowId,
        /// Its protocol.
        protocol: Transport,
    },
    /// To this host (a name the driver resolves, or an address), port and
    /// transport.
    Addr(TargetAddr),
}

impl NextHop {
    /// The protocol used.
    pub fn protocol(&self) -> Transport {
        match self {
            NextHop::Flow { protocol, .. } => *protocol,
            NextHop::Addr(a) => a.transport,
        }
    }

    /// Where a message from `origin` is answered: its flow, or its source.
    pub fn back_to(origin: &Origin) -> NextHop {
        match origin.flow {
            Some(flow) => NextHop::Flow {
                flow,
                protocol: origin.protocol,
            },
            None => NextHop::Addr(TargetAddr::new(
                origin.peer.ip().to_string(),
                origin.peer.port(),
                origin.protocol,
            )),
        }
    }

    /// The host, port and transport a SIP URI names (RFC 3263 left to the
    /// driver: a name is resolved there).
    pub fn from_uri(uri: &Uri) -> Option<NextHop> {
        let sip = uri.as_sip()?;
        let transport = sip
            .transport()
            .and_then(|t| Transport::from_token(&t))
            .unwrap_or(if sip.is_secure() {
                Transport::Tls
            } else {
                Transport::Udp
            });
        let host = sip.maddr().map(|m| m.into_owned()).unwrap_or_else(|| {
            let h = sip.host().to_string();
            h.trim_start_matches('[').trim_end_matches(']').to_owned()
        });
        let port = sip.port().unwrap_or(transport.default_port());
        Some(NextHop::Addr(TargetAddr::new(host, port, transport)))
    }
}

/// One place a request may go: its Request-URI, Route entries to put on top
/// and next hop (a registered contact, a PBX address, a PBX's flow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Request-URI for this branch (`None`: keep the caller's).
    pub request_uri: Option<String>,
    /// Route values put on top (a binding's Path, an outbound proxy).
    pub route: Vec<String>,
    /// Where it is sent.
    pub hop: NextHop,
}

/// Targets tried together (in parallel), e.g. a user's contacts or a
/// connection's addresses. Groups are tried one after the other (failover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGroup {
    /// The connection (`None`: a user's contacts).
    pub connection: Option<String>,
    /// The targets.
    pub targets: Vec<Target>,
}

/// What the engine asks the driver to look up.
#[derive(Debug, Clone)]
pub enum Query {
    /// Check the request's credentials (digest); answer with
    /// [`LookupResult::Authenticated`], [`LookupResult::Challenge`] or
    /// [`LookupResult::Refused`].
    Authenticate {
        /// The request.
        request: Box<Message>,
        /// Where it came from.
        origin: Origin,
    },
    /// The registered contacts of `user`; answer with
    /// [`LookupResult::Routes`] (one group) or [`LookupResult::Refused`].
    Bindings {
        /// The user.
        user: String,
    },
    /// The connections that carry `number` for `user`, in order, with their
    /// state taken into account (down connections last or left out); answer
    /// with [`LookupResult::Routes`] or [`LookupResult::Refused`] (no
    /// match: 404; not allowed: 403).
    Route {
        /// The dialled number.
        number: String,
        /// The authenticated user, if any.
        user: Option<String>,
        /// The request's method.
        method: Method,
    },
}

/// The answer to a [`Query`].
#[derive(Debug, Clone)]
pub enum LookupResult {
    /// The credentials are good (`user`: who it is; `None` when no
    /// authentication was needed after all).
    Authenticated {
        /// The user.
        user: Option<String>,
    },
    /// No (valid) credentials: send this challenge (401/407).
    Challenge(Message),
    /// Refuse the request with this status and reason.
    Refused(u16, String),
    /// Where the request goes: groups in failover order.
    Routes(Vec<RouteGroup>),
}

/// Something for the driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this response through the server transaction `tx`.
    Respond {
        /// The server transaction.
        tx: ServerTx,
        /// The response.
        response: Message,
    },
    /// Send this request in a new client transaction whose responses come
    /// back as `branch`. The top Via is ours with a placeholder sent-by
    /// (`0.0.0.0:0`) that the endpoint replaces; a CANCEL carries its
    /// INVITE's branch (RFC 3261 §9.1).
    Send {
        /// The branch id for [`Engine::handle_response`].
        branch: BranchId,
        /// The request.
        request: Message,
        /// Where to.
        hop: NextHop,
    },
    /// Send this message without a transaction (an ACK for a 2xx, a 2xx
    /// retransmission: RFC 3261 §16.11, RFC 6026).
    Forward {
        /// The message.
        message: Message,
        /// Where to.
        hop: NextHop,
    },
    /// A REGISTER for the registrar.
    ToRegistrar {
        /// The server transaction.
        tx: ServerTx,
        /// The REGISTER.
        request: Message,
        /// Where it came from.
        origin: Origin,
    },
    /// Look something up and answer with [`Engine::handle_lookup`].
    Lookup {
        /// The token to answer with.
        token: LookupToken,
        /// What.
        query: Query,
    },
    /// Ask the media relay (rtpengine) and answer with
    /// [`Engine::handle_media`]: an `offer` or `answer` (the message that
    /// carried the SDP is held until then and goes on with the relay's SDP)
    /// or a `delete` (nothing waits for it). Built by
    /// [`media_policy`](crate::media_policy) with its ng flags.
    Media {
        /// The token to answer with.
        token: MediaToken,
        /// The ng request.
        request: siplink_media::Request,
    },
    /// Something happened (call records, metrics).
    Event(Event),
}

/// A call event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An INVITE outside a dialog was accepted for routing (after its
    /// authentication: a challenged attempt is no call).
    CallStarted {
        /// Its Call-ID.
        call_id: String,
        /// Who sent it.
        caller: Caller,
        /// The authenticated user, if any.
        user: Option<String>,
        /// When.
        at: Instant,
    },
    /// A 2xx went to the caller: a dialog record exists.
    CallAnswered {
        /// The dialog.
        key: DialogKey,
        /// The connection that carried it.
        connection: Option<String>,
        /// When.
        at: Instant,
    },
    /// Every branch to a connection failed with 408, 503, a timeout or a
    /// transport error (its PBX looks down): the call goes on to the next
    /// connection, if any.
    ConnectionFailed {
        /// The call's Call-ID.
        call_id: String,
        /// The connection.
        connection: String,
        /// When.
        at: Instant,
    },
    /// The call is over.
    CallEnded {
        /// Its Call-ID.
        call_id: String,
        /// Why.
        reason: EndReason,
        /// When.
        at: Instant,
    },
}

/// A call whose lookups are under way.
#[derive(Debug)]
struct Pending {
    tx: ServerTx,
    request: Message,
    origin: Origin,
    cookie: String,
    caller: Caller,
    to: PendingTo,
    user: Option<String>,
    cancel_key: Option<(String, String)>,
    /// Whether `CallStarted` went out.
    started: bool,
}

#[derive(Debug, Clone)]
enum PendingTo {
    User(String),
    Number(String),
}

/// What a CANCEL may match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallRef {
    Pending(LookupToken),
    Fork(u64),
}

/// The sans-IO proxy core. See the [module docs](self).
#[derive(Debug)]
pub struct Engine<V: View> {
    view: V,
    config: EngineConfig,
    out: VecDeque<Output>,
    timers: Timers,
    next_id: u64,
    pending: HashMap<LookupToken, Pending>,
    forks: HashMap<u64, Fork>,
    calls: HashMap<(String, String), CallRef>,
    /// INVITEs being set up, by Call-ID: requests of the callee's early
    /// dialog (PRACK, UPDATE) leave their CSeq there.
    early: HashMap<String, u64>,
    branches: HashMap<BranchId, BranchSlot>,
    dialogs: HashMap<DialogKey, DialogRecord>,
    media: media::MediaState,
}

impl<V: View> Engine<V> {
    /// An engine over `view` with `config`.
    pub fn new(view: V, config: EngineConfig) -> Engine<V> {
        Engine {
            view,
            config,
            out: VecDeque::new(),
            timers: Timers::default(),
            next_id: 0,
            pending: HashMap::new(),
            forks: HashMap::new(),
            calls: HashMap::new(),
            early: HashMap::new(),
            branches: HashMap::new(),
            dialogs: HashMap::new(),
            media: media::MediaState::default(),
        }
    }

    /// The view (to read it or change it on a configuration reload).
    pub fn view_mut(&mut self) -> &mut V {
        &mut self.view
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The dialog record of an answered call.
    pub fn dialog(&self, key: &DialogKey) -> Option<&DialogRecord> {
        self.dialogs.get(key)
    }

    /// Every dialog record (for status pages and call records).
    pub fn dialogs(&self) -> impl Iterator<Item = &DialogRecord> {
        self.dialogs.values()
    }

    /// Requests to the media relay waiting for their answer.
    pub fn media_waiting(&self) -> usize {
        self.media.waiting()
    }

    /// Calls being set up (lookups pending or branches live).
    pub fn calls_in_progress(&self) -> usize {
        self.pending.len() + self.forks.len()
    }

    /// State held: (calls being set up, branches, dialog records, timers).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.calls_in_progress(),
            self.branches.len(),
            self.dialogs.len(),
            self.timers.len(),
        )
    }

    /// Whether the engine holds nothing at all (no call, branch, record,
    /// index entry, timer or queued output).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.forks.is_empty()
            && self.calls.is_empty()
            && self.early.is_empty()
            && self.branches.is_empty()
            && self.dialogs.is_empty()
            && self.timers.len() == 0
            && self.out.is_empty()
            && self.media.is_empty()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest deadline of the engine's timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((key, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::C(branch) => self.timer_c(branch, key, now),
                Timer::SessionExpiry(dialog) => {
                    if let Some(d) = self.dialogs.get_mut(&dialog) {
                        d.session_timer = None;
                    }
                    self.end_dialog(&dialog, EndReason::SessionExpired, None, now);
                }
                Timer::MaxDuration(dialog) => {
                    if let Some(d) = self.dialogs.get_mut(&dialog) {
                        d.max_timer = None;
                    }
                    self.end_dialog(&dialog, EndReason::MaxDuration, None, now);
                }
            }
        }
    }

    /// A new request (not a retransmission: the server transaction layer
    /// absorbs those, and the ACK of a non-2xx final response) in server
    /// transaction `tx`, from `origin`.
    pub fn handle_request(&mut self, tx: ServerTx, request: Message, origin: Origin, now: Instant) {
        // RFC 3261 §16.3 (and §8.2 for what a proxy must check): a request
        // that is not well formed is answered with the fault's status.
        let checks = siplink_message::ValidationOptions {
            role: siplink_message::Role::Proxy,
            supported: Vec::new(),
        };
        if let Err(rejection) = request.validate_with(&checks) {
            if request.method() == Some(&Method::Ack) {
                return;
            }
            let mut b = request.response(rejection.status).reason(&rejection.reason);
            if !rejection.unsupported.is_empty() {
                b = b.header(HeaderName::Unsupported, rejection.unsupported.join(", "));
            }
            if let Ok(response) = b.build() {
                self.out.push_back(Output::Respond { tx, response });
            }
            return;
        }
        let decision = dispatch(&request, &origin, &self.view);
        match decision.fate {
            Fate::Registrar => self.out.push_back(Output::ToRegistrar {
                tx,
                request,
                origin,
            }),
            Fate::Options => {
                let response = request
                    .response(200)
                    .header(HeaderName::Allow, ALLOW)
                    .header(HeaderName::Supported, SUPPORTED)
                    .header(HeaderName::Accept, "application/sdp")
                    .build();
                if let Ok(response) = response {
                    self.out.push_back(Output::Respond { tx, response });
                }
            }
            Fate::Answer(status, reason) => self.respond(tx, &request, status, reason),
            Fate::Cancel => self.caller_cancel(tx, &request, now),
            Fate::Drop => {}
            Fate::InDialog => self.in_dialog(tx, request, origin, now),
            Fate::ToUser { user, caller } => self.initial(
                tx,
                request,
                origin,
                decision.cookie,
                caller,
                PendingTo::User(user),
                now,
            ),
            Fate::ToNumber { number, caller } => self.initial(
                tx,
                request,
                origin,
                decision.cookie,
                caller,
                PendingTo::Number(number),
                now,
            ),
        }
    }

    /// The answer to the query of `token` (unknown tokens are ignored: the
    /// call may have been cancelled meanwhile).
    pub fn handle_lookup(&mut self, token: LookupToken, result: LookupResult, now: Instant) {
        let Some(mut p) = self.pending.remove(&token) else {
            return;
        };
        match result {
            LookupResult::Authenticated { user } => {
                p.user = user;
                self.route_lookup(p, now);
            }
            LookupResult::Challenge(response) => {
                self.forget_call_key(&p.cancel_key);
                self.out.push_back(Output::Respond { tx: p.tx, response });
                self.initial_failed(&p, 407, now);
            }
            LookupResult::Refused(status, reason) => {
                self.forget_call_key(&p.cancel_key);
                let status = if (300..700).contains(&status) {
                    status
                } else {
                    500
                };
                self.respond(p.tx, &p.request, status, &reason);
                self.initial_failed(&p, status, now);
            }
            LookupResult::Routes(mut groups) => {
                groups.retain(|g| !g.targets.is_empty());
                groups.truncate(self.config.max_groups);
                if groups.is_empty() {
                    self.forget_call_key(&p.cancel_key);
                    let (status, reason) = match p.to {
                        PendingTo::User(_) => (480, "Temporarily Unavailable"),
                        PendingTo::Number(_) => (503, "All Connections Failed"),
                    };
                    self.respond(p.tx, &p.request, status, reason);
                    self.initial_failed(&p, status, now);
                } else {
                    self.start_fork(p, groups, now);
                }
            }
        }
    }

    /// A flow closed: calls with a leg on it end (BYE to the other leg),
    /// calls being set up from it are cancelled, branches over it fail.
    pub fn handle_flow_closed(&mut self, flow: FlowId, now: Instant) {
        let mut ended: Vec<DialogKey> = self
            .dialogs
            .values()
            .filter(|d| d.caller.flow() == Some(flow) || d.callee.flow() == Some(flow))
            .map(|d| d.key.clone())
            .collect();
        ended.sort();
        for key in ended {
            self.end_dialog(&key, EndReason::FlowClosed(flow), Some(flow), now);
        }
        let gone: Vec<LookupToken> = self
            .pending
            .iter()
            .filter(|(_, p)| p.origin.flow == Some(flow))
            .map(|(t, _)| *t)
            .collect();
        for token in gone {
            if let Some(p) = self.pending.remove(&token) {
                self.forget_call_key(&p.cancel_key);
                self.initial_failed(&p, 487, now);
            }
        }
        self.flow_closed_forks(flow, now);
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn respond(&mut self, tx: ServerTx, request: &Message, status: u16, reason: &str) {
        if let Some(response) = core::local_response(request, status, reason) {
            self.out.push_back(Output::Respond { tx, response });
        }
    }

    fn forget_call_key(&mut self, key: &Option<(String, String)>) {
        if let Some(k) = key {
            self.calls.remove(k);
        }
    }

    /// A call (INVITE) that never got going: its end event, when its start
    /// was told.
    fn initial_failed(&mut self, p: &Pending, status: u16, now: Instant) {
        let request = &p.request;
        if p.started {
            let reason = if status == 487 {
                EndReason::Cancelled
            } else {
                EndReason::Failed(status)
            };
            self.out.push_back(Output::Event(Event::CallEnded {
                call_id: request.call_id().unwrap_or_default().to_owned(),
                reason,
                at: now,
            }));
        }
    }

    /// An initial request that goes somewhere: checks, then lookups.
    #[allow(clippy::too_many_arguments)]
    fn initial(
        &mut self,
        tx: ServerTx,
        mut request: Message,
        origin: Origin,
        cookie: String,
        caller: Caller,
        to: PendingTo,
        now: Instant,
    ) {
        let invite = request.method() == Some(&Method::Invite);
        if self.calls_in_progress() >= self.config.max_calls {
            if let Ok(r) = request
                .response(503)
                .reason("Too Many Calls")
                .header(HeaderName::RetryAfter, "5")
                .build()
            {
                self.out.push_back(Output::Respond { tx, response: r });
            }
            return;
        }
        if invite {
            // RFC 4028 §8.1: a session interval below our minimum is refused
            // with 422 when the caller supports timers (it retries with a
            // larger one), else raised to our minimum on the way.
            if let Some((secs, refresher)) = dispatch::session_expires(&request)
                && secs < self.config.min_se
            {
                if supports_timer(&request) {
                    if let Ok(r) = request
                        .response(422)
                        .reason("Session Interval Too Small")
                        .extension_header("Min-SE", self.config.min_se)
                        .build()
                    {
                        self.out.push_back(Output::Respond { tx, response: r });
                    }
                    return;
                }
                let refresher = match refresher {
                    Some(Refresher::Uac) => ";refresher=uac",
                    Some(Refresher::Uas) => ";refresher=uas",
                    None => "",
                };
                request.set_header(
                    HeaderName::SessionExpires,
                    format!("{}{refresher}", self.config.min_se),
                );
                if request.header_values_named("Min-SE").next().is_none() {
                    request.append_extension_header("Min-SE", self.config.min_se.to_string());
                }
            }
        }
        if let core::Check::Reject(status, reason) = core::decrement_max_forwards(&mut request) {
            return self.respond(tx, &request, status, reason);
        }
        core::consume_own_routes(&mut request, self.view.local());
        let cancel_key = invite.then(|| cancel_key(&request)).flatten();
        let authenticate = matches!(caller, Caller::Phone { authenticate: true });
        let p = Pending {
            tx,
            request,
            origin,
            cookie,
            caller,
            to,
            user: None,
            cancel_key,
            started: false,
        };
        if authenticate {
            let token = LookupToken(self.id());
            if let Some(k) = &p.cancel_key {
                self.calls.insert(k.clone(), CallRef::Pending(token));
            }
            let query = Query::Authenticate {
                request: Box::new(p.request.clone()),
                origin: p.origin,
            };
            self.pending.insert(token, p);
            self.out.push_back(Output::Lookup { token, query });
        } else {
            self.route_lookup(p, now);
        }
    }

    fn route_lookup(&mut self, mut p: Pending, now: Instant) {
        // Authenticated (or no authentication needed): our realm's
        // credentials stop here (RFC 3261 §22.3).
        core::remove_own_credentials(&mut p.request, self.view.realm());
        if !p.started && p.request.method() == Some(&Method::Invite) {
            p.started = true;
            self.out.push_back(Output::Event(Event::CallStarted {
                call_id: p.request.call_id().unwrap_or_default().to_owned(),
                caller: p.caller.clone(),
                user: p.user.clone(),
                at: now,
            }));
        }
        let token = LookupToken(self.id());
        let query = match &p.to {
            PendingTo::User(user) => Query::Bindings { user: user.clone() },
            PendingTo::Number(number) => Query::Route {
                number: number.clone(),
                user: p.user.clone(),
                method: p.request.method().cloned().unwrap_or(Method::Invite),
            },
        };
        if let Some(k) = &p.cancel_key {
            self.calls.insert(k.clone(), CallRef::Pending(token));
        }
        self.pending.insert(token, p);
        self.out.push_back(Output::Lookup { token, query });
    }

    /// A CANCEL from a caller (RFC 3261 §16.10).
    fn caller_cancel(&mut self, tx: ServerTx, cancel: &Message, now: Instant) {
        let found = cancel_key(cancel).and_then(|k| self.calls.get(&k).copied());
        let Some(call) = found else {
            return self.respond(tx, cancel, 481, "Call/Transaction Does Not Exist");
        };
        self.respond(tx, cancel, 200, "OK");
        match call {
            CallRef::Pending(token) => {
                if let Some(p) = self.pending.remove(&token) {
                    self.forget_call_key(&p.cancel_key);
                    self.respond(p.tx, &p.request, 487, "Request Terminated");
                    self.initial_failed(&p, 487, now);
                }
            }
            CallRef::Fork(id) => self.cancel_fork(id, now),
        }
    }
}

/// Whether the request's sender supports session timers (`Supported: timer`).
fn supports_timer(request: &Message) -> bool {
    request
        .supported()
        .is_ok_and(|s| s.iter().any(|t| t.eq_ignore_ascii_case("timer")))
}

/// The key a CANCEL matches its INVITE by: Call-ID and the top Via branch
/// (RFC 3261 §9.2 with RFC 3261 branches).
fn cancel_key(request: &Message) -> Option<(String, String)> {
    let call_id = request.call_id().ok()?.to_owned();
    let branch = request.top_via().ok()?.branch()?.to_owned();
    Some((call_id, branch))
}
