//! The running proxy: transport, endpoint, registrar, registrations, trunks
//! and the stateful forwarding of RFC 3261 §16, wired from a [`Config`].
//!
//! One responsibility per file:
//!
//! * `mod.rs`: [`Proxy`] and its shared state `Inner`, start, accessors,
//!   shutdown, and the small helpers every path uses (`respond`, `lock`);
//! * `state.rs`: the routing state swapped whole on reload (`Runtime`: config,
//!   router, connection runtimes) and what is asked of it (is a connection up,
//!   a user's bindings, the faces we advertise);
//! * `connections.rs`: a connection's runtime built from its configuration
//!   (accounts, registrations, trunks, TLS client roots and pins);
//! * `reload.rs`: `Proxy::reload`, applying a new configuration;
//! * `front.rs`: the run-to-completion UDP front (gate, REGISTERs);
//! * `dispatch.rs`: the request loop and what happens to each request;
//! * `auth.rs`: phones' digest authentication and the failed-attempt limiter;
//! * `tokens.rs`: flow tokens and the `sld` MAC of our Record-Route entries;
//! * `calls.rs`: calls routed by the dial plan to connections (trunks,
//!   outbound registrations, inbound PBXs), with failover;
//! * `fork.rs`: parallel forking to registered contacts (RFC 3261 §16.5-16.7);
//! * `dialog.rs`: remembered trunk dialogs and hang-up on a caller's flow loss;
//! * `indialog.rs`: in-dialog requests, ACKs for 2xx and stray responses;
//! * `status.rs`: connection status, change events and `/status` JSON;
//! * `http.rs`: the status HTTP endpoint (`/healthz`, `/status`, `/test/NAME`);
//! * `check.rs`: Test Connection (the public face is `siplink_proxy::connection_test`, which re-exports it).

mod auth;
mod calls;
pub(crate) mod check;
mod connections;
mod dialog;
mod dispatch;
mod driver;
mod fork;
mod front;
mod http;
mod indialog;
mod reload;
mod state;
mod status;
mod tokens;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use siplink_auth::{Algorithm, DigestServer, ServerConfig, StoredSecret};
use siplink_message::Transport as Protocol;
use siplink_register::RegistrationService;
use siplink_registrar::{Authenticator, Registrar, RegistrarConfig, RegistrarService};
use siplink_transaction::runtime::{Runtime as UdpRuntime, RuntimeConfig};
use siplink_transaction::{Endpoint, EndpointConfig, ServerTransactionHandle};
use siplink_transport::{Clock, Incoming, TlsServerConfig, Transport, TransportConfig};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tracing::debug;

use crate::config::Config;
use crate::core::{self, Local};
use crate::error::Error;
use crate::routing::Router;
use crate::status::StatusEvent;

use self::auth::user_secrets;
use self::connections::tls_client;
use self::dialog::{DialogEntry, hang_up_on_flow_loss};
use self::dispatch::serve;
use self::indialog::strays;
use self::state::{Runtime, local_identity, registrar_domains};

/// Supported option tags we announce.
const SUPPORTED: &str = "path, outbound";
/// Methods we answer or forward.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, REFER, NOTIFY, SUBSCRIBE";

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Inner {
    pub transport: Transport,
    pub endpoint: Endpoint,
    pub registrar: RegistrarService,
    pub registrations: RegistrationService,
    pub secrets: Arc<RwLock<HashMap<String, StoredSecret>>>,
    pub digest: DigestServer,
    /// The domains we are registrar for (configured, listener addresses,
    /// advertised name).
    pub domains: Vec<String>,
    /// Failed authentications per source and per (source, user), shared
    /// with the registrar (password guessing through any method counts once).
    limiter: Arc<siplink_auth::FailureLimiter>,
    /// Request-rate limits and the scanner filter (in front of the endpoint).
    pub(crate) gate: Arc<crate::gate::Gate>,
    pub local: RwLock<Local>,
    pub runtime: RwLock<Arc<Runtime>>,
    dialogs: Mutex<HashMap<String, DialogEntry>>,
    calls: Arc<Semaphore>,
    pub events: broadcast::Sender<StatusEvent>,
    /// When each connection last changed state (registration, probe,
    /// inbound PBX binding), by name.
    pub changes: Mutex<HashMap<String, SystemTime>>,
    /// Why each inbound-registration connection's PBX binding last went
    /// away ("connection closed (TCP from …)", "registration expired", …) and
    /// when, by connection name; cleared when the PBX registers again.
    pub went_down: Mutex<HashMap<String, (SystemTime, String)>>,
    flow_key: RandomState,
    pub started: SystemTime,
    /// The status endpoint's token when none is configured (made once).
    pub status_token: std::sync::OnceLock<String>,
    /// The run-to-completion workers of the UDP listeners (REGISTERs are
    /// answered there; everything else goes on to the endpoint).
    pub(crate) udp_workers: Mutex<Vec<UdpRuntime>>,
    /// Every reading of time (the proxy's own and its drivers').
    pub clock: Clock,
    /// The engine's driver, with `[proxy] core = "engine"`.
    pub(crate) engine: std::sync::OnceLock<Arc<driver::Driver>>,
}

/// A running SIP proxy. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), siplink_proxy::Error> {
/// use siplink_proxy::{Config, Proxy};
/// let proxy = Proxy::start(Config::demo()).await?;
/// for (protocol, addr) in proxy.listeners() {
///     println!("listening on {protocol} {addr}");
/// }
/// proxy.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listeners", &self.listeners())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Validates `config`, binds its listeners and starts everything:
    /// registrar, outbound registrations, trunks (with their probes) and the
    /// request loop. Must be called within a tokio runtime. Time is read from
    /// a [`Clock::new`] (see [`start_with_clock`](Self::start_with_clock)).
    pub async fn start(config: Config) -> Result<Proxy, Error> {
        Proxy::start_with_clock(config, Clock::new()).await
    }

    /// [`start`](Self::start) with the clock that the proxy and every driver
    /// under it (endpoint, registrar, registrations, trunks) read time from:
    /// tests on a paused tokio runtime drive all of them with
    /// `tokio::time::advance`.
    pub async fn start_with_clock(config: Config, clock: Clock) -> Result<Proxy, Error> {
        config.validate()?;
        let mut tconfig = TransportConfig::default();
        if let Some(l) = config.listeners.iter().find(|l| l.transport.is_secure()) {
            let (Some(cert), Some(key)) = (&l.certificate, &l.private_key) else {
                return Err(Error::Config("tls listener without certificate".into()));
            };
            tconfig.tls_server = Some(
                TlsServerConfig::from_pem_files(cert, key, siplink_transport::ClientAuth::None)
                    .map_err(|e| Error::Listen(format!("{}: {e}", cert.display())))?,
            );
        }
        tconfig.tls_client = tls_client(&config)?;
        tconfig.udp_mtu_limit = config.limits.udp_mtu_limit;
        let queue = tconfig.inbound_queue;
        let (transport, incoming) = Transport::new(tconfig);
        // UDP is read by run-to-completion workers (bound now, started once
        // the registrar exists); streams by the transport's tasks.
        let mut udp = Vec::new();
        for l in &config.listeners {
            let listen_error = |e: siplink_transport::Error| {
                Error::Listen(format!("{} {}: {e}", l.transport, l.address))
            };
            if l.transport == Protocol::Udp {
                let workers = l
                    .workers
                    .unwrap_or_else(|| RuntimeConfig::default().workers);
                let sharing = l.udp_sharing().unwrap_or_default();
                udp.push(
                    transport
                        .bind_udp_workers(l.address, workers, sharing)
                        .map_err(listen_error)?,
                );
            } else {
                transport
                    .listen(l.transport, l.address)
                    .await
                    .map_err(listen_error)?;
            }
        }
        let (stray_tx, stray_rx) = mpsc::channel::<Incoming>(4096);
        let econfig = EndpointConfig {
            clock,
            ..EndpointConfig::default()
        }
        .with_stray_handler(move |m| {
            if stray_tx.try_send(m).is_err() {
                debug!("stray queue full: message dropped");
            }
        });
        // Rate limits and the scanner filter, before any transaction exists.
        let gate = Arc::new(crate::gate::Gate::new(&config.security));
        let (incoming, screened) =
            crate::gate::spawn(gate.clone(), transport.clone(), incoming, clock, queue);
        let (endpoint, requests) = Endpoint::start(transport.clone(), incoming, econfig);

        let secrets = Arc::new(RwLock::new(user_secrets(&config)));
        let realm = config.proxy.realm().to_owned();
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let mut server_config = ServerConfig::new(realm.clone());
        server_config.algorithms = config
            .proxy
            .digest_algorithms
            .iter()
            .filter_map(|a| a.parse::<Algorithm>().ok())
            .collect();
        let digest = DigestServer::with_secret(server_config.clone(), &secret);
        let store_secrets = secrets.clone();
        let lookup = move |user: &str, _realm: &str, _alg: Algorithm| -> Option<StoredSecret> {
            store_secrets.read().ok()?.get(user).cloned()
        };
        let limiter = Arc::new(siplink_auth::FailureLimiter::new(config.security.limiter()));
        let authenticator =
            Authenticator::new(DigestServer::with_secret(server_config, &secret), lookup)
                .with_shared_limiter(limiter.clone());
        let local = local_identity(&config, &transport);
        let domains = registrar_domains(&config, &transport);
        let mut rconfig = RegistrarConfig::new(domains.clone());
        rconfig.min_expires = config.limits.min_expires;
        rconfig.max_expires = config.limits.max_expires;
        rconfig.max_contacts_per_aor = config.limits.max_contacts_per_user;
        // A binding whose connection closed is not routed to (removed, its
        // inbound connection down and its calls failing over) unless the
        // configuration asks for its Contact instead.
        rconfig.contact_fallback = config.proxy.contact_fallback;
        rconfig.flood =
            (config.limits.register_flood > 0).then(|| siplink_registrar::FloodConfig {
                max_requests: config.limits.register_flood,
                ..siplink_registrar::FloodConfig::default()
            });
        let registrar = Registrar::new(rconfig, Some(authenticator))
            .map_err(|e| Error::Config(format!("registrar: {e}")))?;
        let registrar = RegistrarService::start(
            registrar,
            Arc::new(siplink_registrar::InMemoryStore::new()),
            transport.clone(),
            siplink_registrar::ServiceConfig {
                clock,
                ..siplink_registrar::ServiceConfig::default()
            },
        );
        let (registrations, reg_events) = RegistrationService::start(
            endpoint.clone(),
            siplink_register::ServiceConfig {
                clock,
                ..siplink_register::ServiceConfig::default()
            },
        );
        let (events, _) = broadcast::channel(1024);
        let runtime = Runtime {
            config: Arc::new(config.clone()),
            router: Router::new(&config)?,
            connections: Vec::new(),
        };
        let inner = Arc::new(Inner {
            transport,
            endpoint,
            registrar,
            registrations,
            secrets,
            digest,
            domains,
            limiter,
            gate,
            local: RwLock::new(local),
            runtime: RwLock::new(Arc::new(runtime)),
            dialogs: Mutex::new(HashMap::new()),
            calls: Arc::new(Semaphore::new(config.limits.max_calls)),
            events,
            changes: Mutex::new(HashMap::new()),
            went_down: Mutex::new(HashMap::new()),
            flow_key: RandomState::new(),
            started: clock.wall_now(),
            status_token: std::sync::OnceLock::new(),
            udp_workers: Mutex::new(Vec::new()),
            clock,
            engine: std::sync::OnceLock::new(),
        });
        let proxy = Proxy { inner };
        let connections = proxy.build_connections(&config, &[]).await?;
        let plan = (config.proxy.core == crate::config::CoreKind::Engine)
            .then(|| crate::plan::Plan::from_config(&config))
            .transpose()
            .map_err(|e| Error::Config(format!("core = \"engine\": {e}")))?;
        proxy.install(config, connections)?;
        if let Some(plan) = plan {
            let relay = plan.media.client_config();
            let d = driver::Driver::new(&proxy.inner, Arc::new(plan));
            if let Some(c) = relay {
                // The engine's media requests (connections with media on).
                let v4 = c.instances.iter().all(|i| i.addr.is_ipv4());
                let bind = if v4 {
                    SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
                } else {
                    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
                };
                let relay = siplink_media::RtpEngine::start(c, bind)
                    .await
                    .map_err(|e| Error::Config(format!("[media]: {e}")))?;
                d.set_relay(relay);
            }
            let _ = proxy.inner.engine.set(d);
        }
        let front = Arc::new(front::Front::new(proxy.inner.clone(), screened));
        let workers = udp
            .into_iter()
            .map(|sockets| {
                let config = RuntimeConfig {
                    clock,
                    ..RuntimeConfig::default()
                };
                UdpRuntime::start_on(sockets, config, front.clone())
            })
            .collect::<Vec<UdpRuntime>>();
        if let Some(d) = proxy.inner.engine.get() {
            // The engine sends on the first UDP runtime.
            let Some(first) = workers.first() else {
                return Err(Error::Config(
                    "core = \"engine\" needs a UDP listener".into(),
                ));
            };
            d.start(first.handle());
        }
        // Messages over TCP/TLS/WS/WSS run to completion in their
        // connection's task too (the first UDP runtime's buckets and
        // service); without a UDP listener they stay on the endpoint's queue.
        if let Some(first) = workers.first() {
            first.take_streams(&proxy.inner.transport);
        }
        *lock(&proxy.inner.udp_workers) = workers;
        tokio::spawn(serve(proxy.inner.clone(), requests));
        tokio::spawn(strays(proxy.inner.clone(), stray_rx));
        tokio::spawn(hang_up_on_flow_loss(proxy.inner.clone()));
        tokio::spawn(status::watch_registrations(proxy.inner.clone(), reg_events));
        tokio::spawn(status::watch_bindings(proxy.inner.clone()));
        Ok(proxy)
    }

    /// The bound listeners (ports chosen by the OS when 0 was asked).
    pub fn listeners(&self) -> Vec<(Protocol, SocketAddr)> {
        self.inner.transport.listeners()
    }

    /// The endpoint (to send requests of your own through the proxy's
    /// transport).
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The registrar service (bindings of users and inbound PBXs).
    pub fn registrar(&self) -> &RegistrarService {
        &self.inner.registrar
    }

    /// The configuration in use.
    pub fn config(&self) -> Arc<Config> {
        self.inner.runtime().config.clone()
    }

    /// With `[proxy] core = "engine"`, what the engine holds, summed over
    /// its shards: (calls being set up, branches, dialog records, timers);
    /// `None` on the classic path.
    pub fn engine_sizes(&self) -> Option<(usize, usize, usize, usize)> {
        self.inner.engine.get().map(|d| d.sizes())
    }

    /// A stream of status changes (connections up/down, bindings).
    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.inner.events.subscribe()
    }

    /// Unregisters, stops accepting requests and closes the listeners
    /// (bounded: a few seconds).
    pub async fn shutdown(&self) {
        lock(&self.inner.udp_workers).clear();
        self.inner.registrations.shutdown().await;
        self.inner.registrar.shutdown();
        self.inner.endpoint.shutdown().await;
        self.inner.transport.shutdown().await;
    }
}

async fn respond(tx: &mut ServerTransactionHandle, status: u16, reason: &str) {
    if let Some(r) = core::local_response(&tx.request, status, reason) {
        let _ = tx.respond(r).await;
    }
}

/// Like [`respond`], statelessly: the transaction ends at once (a refusal
/// keeps nothing for 64*T1; a retransmission is refused again).
async fn respond_stateless(tx: &mut ServerTransactionHandle, status: u16, reason: &str) {
    if let Some(r) = core::local_response(&tx.request, status, reason) {
        let _ = tx.respond_stateless(r).await;
    }
}

/// A call's slot of `limits.max_calls` (held from arrival to the final
/// response).
type Slot = Option<tokio::sync::OwnedSemaphorePermit>;

/// Outcome of trying one connection.
enum Attempt {
    /// The call is over on this connection (answered, refused or cancelled).
    Done,
    /// Nothing reached the caller; try the next connection.
    Failover(String),
}
