//! The running proxy: transport, endpoint, registrar, registrations, trunks
//! and the stateful forwarding of RFC 3261 §16, wired from a [`Config`].

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use siplink_auth::{
    Algorithm, ClientCredentials, DigestServer, Outcome, RequestInfo, ServerConfig, StoredSecret,
};
use siplink_message::headers::HeaderName;
use siplink_message::uri::{SipUri, Uri};
use siplink_message::{Message, Method, Transport as Protocol};
use siplink_register::{RegistrationConfig, RegistrationId, RegistrationService, State, Status};
use siplink_registrar::{Aor, Authenticator, Reach, Registrar, RegistrarConfig, RegistrarService};
use siplink_transaction::runtime::{Runtime as UdpRuntime, RuntimeConfig};
use siplink_transaction::{
    ClientEvent, Endpoint, EndpointConfig, ServerRequests, ServerTransactionHandle,
};
use siplink_transport::{
    Clock, Destination, FlowId, Incoming, Origin, Roots, Target, TlsClientConfig, TlsServerConfig,
    Transport, TransportConfig,
};
use siplink_trunk::{CallEvent, CallFailure, Trunk, TrunkConfig, TrunkDialog};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::{Config, ConnectionConfig, ConnectionKind, RegistrationMode};
use crate::core::{self, BestResponse, Check, Local};
use crate::error::Error;
use crate::routing::{Candidate, Decision, Router, dialled_number};
use crate::status::{ConnectionState, ConnectionStatus, StatusEvent};

/// Supported option tags we announce.
const SUPPORTED: &str = "path, outbound";
/// Methods we answer or forward.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, REFER, NOTIFY, SUBSCRIBE";
/// Most trunk dialogs remembered (their CSeq/From mapping).
const MAX_DIALOGS: usize = 100_000;
/// How long an unterminated dialog entry is kept.
const DIALOG_TTL: Duration = Duration::from_secs(12 * 3600);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One registration the proxy keeps to a PBX.
#[derive(Debug, Clone)]
pub(crate) struct RegEntry {
    /// The proxy user it belongs to (per-user mode).
    pub user: Option<String>,
    pub id: RegistrationId,
    pub contact_user: String,
    pub status: watch::Receiver<Status>,
}

/// One account to register.
struct Account {
    /// The proxy user it belongs to (per-user mode).
    user: Option<String>,
    /// The user name registered (AOR user part, From of calls).
    username: String,
    /// Digest credentials (with the authentication ID).
    creds: Option<ClientCredentials>,
    /// User part of our Contact.
    contact_user: String,
}

/// The accounts an outbound-registration connection registers.
fn accounts_of(c: &ConnectionConfig) -> Vec<Account> {
    match c.registration.mode {
        RegistrationMode::Shared => c
            .username
            .iter()
            .map(|u| Account {
                user: None,
                username: u.clone(),
                creds: client_credentials(
                    c.auth_username.as_deref().unwrap_or(u),
                    c.password.as_deref(),
                    c.ha1.as_deref(),
                    c.realm.as_deref(),
                ),
                contact_user: c
                    .registration
                    .contact_user
                    .clone()
                    .unwrap_or_else(|| u.clone()),
            })
            .collect(),
        RegistrationMode::PerUser => c
            .accounts
            .iter()
            .map(|a| Account {
                user: Some(a.user.clone()),
                username: a.username.clone(),
                creds: client_credentials(
                    a.auth_username.as_deref().unwrap_or(&a.username),
                    a.password.as_deref(),
                    a.ha1.as_deref(),
                    c.realm.as_deref(),
                ),
                contact_user: format!("{}-{}", c.name, a.user),
            })
            .collect(),
    }
}

/// The runtime side of one connection.
#[derive(Debug)]
pub(crate) struct ConnRuntime {
    pub config: ConnectionConfig,
    /// Trunks that carry calls (outbound registration: one per account, keyed
    /// by user; `None` = shared).
    pub trunks: Vec<(Option<String>, Trunk)>,
    pub registrations: Vec<RegEntry>,
    /// Literal IPs of the PBX's addresses, for recognising its requests.
    pub ips: Vec<IpAddr>,
    pub last_error: Mutex<Option<(SystemTime, String)>>,
}

impl ConnRuntime {
    fn trunk_for(&self, user: Option<&str>) -> Option<&Trunk> {
        match self.config.registration.mode {
            RegistrationMode::PerUser
                if self.config.kind == ConnectionKind::OutboundRegistration =>
            {
                self.trunks
                    .iter()
                    .find(|(u, _)| u.as_deref() == user)
                    .map(|(_, t)| t)
            }
            _ => self.trunks.first().map(|(_, t)| t),
        }
    }

    /// Whether a request from `peer` comes from this connection's PBX: its
    /// IP address is one of the PBX's. On loopback (tests, demos, everything
    /// on one machine) the port must match too, or every local phone would
    /// look like the PBX.
    fn is_pbx_address(&self, peer: SocketAddr) -> bool {
        if peer.ip().is_loopback() {
            let targets = self.config.targets().unwrap_or_default();
            targets
                .iter()
                .any(|t| t.host.parse::<IpAddr>().ok() == Some(peer.ip()) && t.port == peer.port())
        } else {
            self.ips.contains(&peer.ip())
        }
    }

    fn set_error(&self, at: SystemTime, text: String) {
        *lock(&self.last_error) = Some((at, text));
    }
}

/// The proxy's routing state, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    pub connections: Vec<Arc<ConnRuntime>>,
}

struct DialogEntry {
    dialog: TrunkDialog,
    caller_tag: String,
    created: std::time::Instant,
    /// The connection the caller's INVITE came over (TCP, TLS, WebSocket):
    /// when it closes, the call is hung up towards the trunk with `bye`.
    caller_flow: Option<FlowId>,
    /// A BYE in the caller's view (built at the answer), for that hang-up.
    bye: Option<Message>,
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

fn secret_of(password: Option<&str>, ha1: Option<&str>) -> Option<StoredSecret> {
    password
        .map(|p| StoredSecret::Password(p.to_owned()))
        .or_else(|| ha1.map(|h| StoredSecret::Ha1(h.to_ascii_lowercase())))
}

fn client_credentials(
    username: &str,
    password: Option<&str>,
    ha1: Option<&str>,
    realm: Option<&str>,
) -> Option<ClientCredentials> {
    let c = match (password, ha1) {
        (Some(p), _) => ClientCredentials::password(username, p),
        (None, Some(h)) => ClientCredentials::ha1(username, realm.unwrap_or(""), h, Algorithm::Md5),
        (None, None) => return None,
    };
    Some(match realm {
        Some(r) => c.for_realm(r),
        None => c,
    })
}

fn user_secrets(config: &Config) -> HashMap<String, StoredSecret> {
    let mut map = HashMap::new();
    for u in &config.users {
        if let Some(s) = secret_of(u.password.as_deref(), u.ha1.as_deref()) {
            map.insert(u.name.clone(), s);
        }
    }
    for c in &config.connections {
        if c.kind == ConnectionKind::InboundRegistration
            && let (Some(u), Some(s)) = (
                &c.username,
                secret_of(c.password.as_deref(), c.ha1.as_deref()),
            )
        {
            map.insert(u.clone(), s);
        }
    }
    map
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
        });
        let proxy = Proxy { inner };
        let connections = proxy.build_connections(&config, &[]).await?;
        proxy.install(config, connections)?;
        let front = Arc::new(crate::front::Front::new(proxy.inner.clone(), screened));
        let workers = udp
            .into_iter()
            .map(|sockets| {
                let config = RuntimeConfig {
                    clock,
                    ..RuntimeConfig::default()
                };
                UdpRuntime::start_on(sockets, config, front.clone())
            })
            .collect();
        *lock(&proxy.inner.udp_workers) = workers;
        tokio::spawn(serve(proxy.inner.clone(), requests));
        tokio::spawn(strays(proxy.inner.clone(), stray_rx));
        tokio::spawn(hang_up_on_flow_loss(proxy.inner.clone()));
        tokio::spawn(crate::status::watch_registrations(
            proxy.inner.clone(),
            reg_events,
        ));
        tokio::spawn(crate::status::watch_bindings(proxy.inner.clone()));
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

    /// A stream of status changes (connections up/down, bindings).
    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.inner.events.subscribe()
    }

    /// Replaces the configuration without dropping calls or the registrations
    /// and trunks of connections that did not change. Listeners are not
    /// changed by a reload.
    pub async fn reload(&self, config: Config) -> Result<(), Error> {
        config.validate()?;
        let old = self.inner.runtime();
        let (a, b) = (&old.config, &config);
        let mut restart = Vec::new();
        if a.listeners != b.listeners {
            restart.push("listen");
        }
        if a.proxy.domains != b.proxy.domains || a.proxy.realm != b.proxy.realm {
            restart.push("proxy.domains/realm");
        }
        if a.proxy.digest_algorithms != b.proxy.digest_algorithms
            || a.proxy.tls_ca != b.proxy.tls_ca
        {
            restart.push("proxy.digest_algorithms/tls_ca");
        }
        let pins = |c: &Config| {
            c.connections
                .iter()
                .map(|c| (c.name.clone(), c.tls_pin.clone(), c.next_hop_hosts()))
                .filter(|(_, p, _)| p.is_some())
                .collect::<Vec<_>>()
        };
        if pins(a) != pins(b) {
            restart.push("connections' tls_pin");
        }
        if a.proxy.advertise != b.proxy.advertise || a.proxy.status_listen != b.proxy.status_listen
        {
            restart.push("proxy.advertise/status_listen");
        }
        if a.proxy.contact_fallback != b.proxy.contact_fallback {
            restart.push("proxy.contact_fallback");
        }
        if a.limits != b.limits {
            restart.push("limits");
        }
        // `exempt`, `rate_limit` and the scanner filter apply at once.
        let failures = |c: &Config| {
            let mut s = c.security.clone();
            s.exempt.clear();
            s.rate_limit = Default::default();
            s.drop_scanners = false;
            s.scanner_user_agents = None;
            s
        };
        if failures(a) != failures(b) {
            restart.push("security (failed-attempt policy)");
        }
        if !restart.is_empty() {
            warn!(
                "reload: changes to {} take effect only after a restart",
                restart.join(", ")
            );
        }
        let connections = self.build_connections(&config, &old.connections).await?;
        *self
            .inner
            .secrets
            .write()
            .unwrap_or_else(|e| e.into_inner()) = user_secrets(&config);
        // Registrations of connections that went away or changed.
        for c in &old.connections {
            let kept = connections.iter().any(|n| Arc::ptr_eq(n, c));
            if !kept {
                for r in &c.registrations {
                    let _ = self.inner.registrations.remove(r.id).await;
                }
            }
        }
        self.install(config, connections)?;
        info!("configuration reloaded");
        Ok(())
    }

    fn install(&self, config: Config, connections: Vec<Arc<ConnRuntime>>) -> Result<(), Error> {
        // Exempt from the failed-attempt limiter: the configured sources and
        // the connections' PBXs by literal address (not loopback, where
        // every local phone would share the PBX's address).
        let mut exempt = config.security.limiter().exempt;
        for c in &connections {
            exempt.extend(
                c.ips
                    .iter()
                    .filter(|ip| !ip.is_loopback())
                    .map(|ip| siplink_auth::IpPrefix::host(*ip)),
            );
        }
        self.inner.gate.configure(&config.security, exempt.clone());
        self.inner.limiter.set_exempt(exempt);
        let runtime = Runtime {
            router: Router::new(&config)?,
            config: Arc::new(config),
            connections,
        };
        *self
            .inner
            .runtime
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(runtime);
        Ok(())
    }

    /// Builds the runtime of every connection, reusing `old` ones whose
    /// configuration did not change.
    async fn build_connections(
        &self,
        config: &Config,
        old: &[Arc<ConnRuntime>],
    ) -> Result<Vec<Arc<ConnRuntime>>, Error> {
        let mut out = Vec::new();
        for c in &config.connections {
            if let Some(same) = old.iter().find(|o| o.config == *c) {
                out.push(same.clone());
                continue;
            }
            out.push(Arc::new(self.build_connection(config, c).await?));
        }
        Ok(out)
    }

    async fn build_connection(
        &self,
        config: &Config,
        c: &ConnectionConfig,
    ) -> Result<ConnRuntime, Error> {
        let inner = &self.inner;
        let targets = c.targets().map_err(Error::Config)?;
        let ips = targets
            .iter()
            .filter_map(|t| t.host.parse::<IpAddr>().ok())
            .collect();
        let mut rt = ConnRuntime {
            config: c.clone(),
            trunks: Vec::new(),
            registrations: Vec::new(),
            ips,
            last_error: Mutex::new(None),
        };
        if !c.enabled {
            return Ok(rt);
        }
        let domain = c.pbx_domain().unwrap_or_default();
        match c.kind {
            ConnectionKind::Trunk => {
                let creds = first_account(c).and_then(|(_, creds)| creds);
                let trunk = Trunk::with_clock(
                    trunk_config(c, creds, None, &domain, config),
                    inner.endpoint.clone(),
                    inner.clock,
                )
                .map_err(|e| Error::Config(format!("connection {:?}: {e}", c.name)))?;
                tokio::spawn(crate::status::watch_trunk(
                    Arc::downgrade(inner),
                    inner.events.clone(),
                    c.name.clone(),
                    trunk.clone(),
                ));
                rt.trunks.push((None, trunk));
            }
            ConnectionKind::OutboundRegistration => {
                for Account {
                    user,
                    username,
                    creds,
                    contact_user,
                } in accounts_of(c)
                {
                    let rc = registration_config(
                        inner,
                        c,
                        config,
                        &username,
                        creds.clone(),
                        &contact_user,
                    )?;
                    let (id, status) = inner
                        .registrations
                        .add(rc)
                        .await
                        .map_err(|e| Error::Config(format!("connection {:?}: {e}", c.name)))?;
                    let trunk = Trunk::with_clock(
                        trunk_config(c, creds, Some(&username), &domain, config),
                        inner.endpoint.clone(),
                        inner.clock,
                    )
                    .map_err(|e| Error::Config(format!("connection {:?}: {e}", c.name)))?;
                    rt.trunks.push((user.clone(), trunk));
                    rt.registrations.push(RegEntry {
                        user,
                        id,
                        contact_user,
                        status,
                    });
                }
            }
            ConnectionKind::InboundRegistration => {}
        }
        Ok(rt)
    }

    /// The status of every connection.
    pub async fn status(&self) -> Vec<ConnectionStatus> {
        let rt = self.inner.runtime();
        let mut out = Vec::new();
        for c in &rt.connections {
            out.push(self.inner.connection_status(c).await);
        }
        out
    }

    /// Test Connection for the connection called `name` on this running proxy
    /// (for inbound registration it reports the PBX's binding).
    pub async fn test_connection(&self, name: &str) -> Result<crate::test::Report, Error> {
        let rt = self.inner.runtime();
        let Some(c) = rt
            .connections
            .iter()
            .find(|c| c.config.name == name)
            .cloned()
        else {
            return Err(Error::UnknownConnection(name.to_owned()));
        };
        Ok(crate::test::run_on(self, &c.config).await)
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

/// The REGISTER configuration of one account of an outbound-registration
/// connection.
fn registration_config(
    inner: &Inner,
    c: &ConnectionConfig,
    config: &Config,
    username: &str,
    creds: Option<ClientCredentials>,
    contact_user: &str,
) -> Result<RegistrationConfig, Error> {
    let targets = c.targets().map_err(Error::Config)?;
    let first = targets
        .first()
        .cloned()
        .ok_or_else(|| Error::Config(format!("connection {:?} has no address", c.name)))?;
    let domain = c.pbx_domain().unwrap_or_default();
    let (local_host, local_port) = inner.local_addr(first.transport, config);
    let registrar_uri = SipUri::parse(Bytes::from(format!("sip:{}", sip_host(&domain))))
        .map_err(|e| Error::Config(format!("connection {:?}: domain: {e}", c.name)))?;
    let aor = SipUri::parse(Bytes::from(format!("sip:{username}@{}", sip_host(&domain))))
        .map_err(|e| Error::Config(format!("connection {:?}: username: {e}", c.name)))?;
    let mut rc = RegistrationConfig::new(
        registrar_uri,
        aor,
        contact_user.to_owned(),
        local_host,
        local_port,
        first.transport,
    );
    rc.expires = c.registration.expires;
    rc.targets = targets;
    rc.user_agent = Some(concat!("siplink/", env!("CARGO_PKG_VERSION")).to_owned());
    if let Some(p) = &c.outbound_proxy {
        rc.outbound_proxy = crate::config::parse_address(p, first.transport)
            .ok()
            .and_then(|t| SipUri::parse(Bytes::from(format!("sip:{};lr", t.host_port()))).ok());
    }
    if let Some(creds) = creds {
        rc = rc.with_credentials(creds);
    }
    Ok(rc)
}

/// The first account of a connection: (username, credentials).
fn first_account(c: &ConnectionConfig) -> Option<(String, Option<ClientCredentials>)> {
    if c.kind == ConnectionKind::OutboundRegistration {
        return accounts_of(c)
            .into_iter()
            .next()
            .map(|a| (a.username, a.creds));
    }
    c.username.as_ref().map(|u| {
        (
            u.clone(),
            client_credentials(
                c.auth_username.as_deref().unwrap_or(u),
                c.password.as_deref(),
                c.ha1.as_deref(),
                c.realm.as_deref(),
            ),
        )
    })
}

/// The trunk view of a connection, for its reachability test.
pub(crate) fn trunk_config_for_test(c: &ConnectionConfig, config: &Config) -> TrunkConfig {
    let domain = c.pbx_domain().unwrap_or_default();
    let account = first_account(c);
    let creds = account.as_ref().and_then(|(_, c)| c.clone());
    let from = match c.kind {
        ConnectionKind::OutboundRegistration => account.as_ref().map(|(u, _)| u.as_str()),
        _ => None,
    };
    trunk_config(c, creds, from, &domain, config)
}

/// A one-off registration of the connection's first account under a
/// throw-away contact, for Test Connection.
pub(crate) fn test_registration(
    proxy: &Proxy,
    c: &ConnectionConfig,
    config: &Config,
) -> Option<RegistrationConfig> {
    let (username, creds) = first_account(c)?;
    let contact = format!("siplink-test-{:08x}", rand::random::<u32>());
    let mut rc = registration_config(&proxy.inner, c, config, &username, creds, &contact).ok()?;
    rc.expires = 60;
    Some(rc)
}

/// The TLS client configuration: the roots of `config.proxy.tls_ca` (else
/// the Mozilla roots) and every connection's `tls_pin` for the hosts it
/// connects to. `None` when neither is set (the transport's default: the
/// Mozilla roots).
pub(crate) fn tls_client(config: &Config) -> Result<Option<TlsClientConfig>, Error> {
    let mut pins = Vec::new();
    for c in &config.connections {
        match c.pin() {
            None => {}
            Some(Ok(pin)) => pins.extend(c.next_hop_hosts().into_iter().map(|h| (h, pin))),
            Some(Err(e)) => {
                return Err(Error::Config(format!(
                    "connection {:?}: tls_pin: {e}",
                    c.name
                )));
            }
        }
    }
    let pem = match &config.proxy.tls_ca {
        Some(ca) => {
            Some(std::fs::read(ca).map_err(|e| Error::Config(format!("{}: {e}", ca.display())))?)
        }
        None if pins.is_empty() => return Ok(None),
        None => None,
    };
    let roots = match &pem {
        Some(p) => Roots::Pem(p),
        None => Roots::WebPki,
    };
    TlsClientConfig::pinned(roots, None, pins)
        .map(Some)
        .map_err(|e| match &config.proxy.tls_ca {
            Some(ca) => Error::Config(format!("{}: {e}", ca.display())),
            None => Error::Config(e.to_string()),
        })
}

/// The host and port peers should use for our socket `addr`: the
/// configured `advertise` name, else its IP (127.0.0.1 for an unspecified
/// address).
fn advertised(addr: SocketAddr, config: &Config) -> (String, u16) {
    let host = match &config.proxy.advertise {
        Some(h) => h.clone(),
        None if addr.ip().is_unspecified() => "127.0.0.1".into(),
        None => addr.ip().to_string(),
    };
    (host, addr.port())
}

fn sip_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn trunk_config(
    c: &ConnectionConfig,
    credentials: Option<ClientCredentials>,
    from_user: Option<&str>,
    domain: &str,
    _config: &Config,
) -> TrunkConfig {
    let targets = c
        .targets()
        .unwrap_or_default()
        .into_iter()
        .map(|t| siplink_trunk::Target::new(t.host, t.port, t.transport))
        .collect();
    let mut t = TrunkConfig::new(c.name.clone(), targets);
    t.credentials = credentials;
    if let Some(p) = &c.outbound_proxy {
        t.outbound_proxy =
            crate::config::parse_address(p, c.transport.unwrap_or(Protocol::Udp)).ok();
    }
    t.health.enabled = c.probing();
    t.health.interval = Config::probe_interval(c);
    t.health.down_after = c.probe.down_after;
    if let Some(u) = from_user {
        // Outbound registration: calls go as the registered identity.
        t.caller_id.from_user = Some(u.to_owned());
        t.caller_id.from_host = Some(domain.to_owned());
        t.request_uri_host = siplink_trunk::RuriHost::Domain(domain.to_owned());
    }
    t
}

fn local_identity(config: &Config, transport: &Transport) -> Local {
    let mut hosts: Vec<String> = config.proxy.domains.clone();
    hosts.extend(config.proxy.advertise.clone());
    let mut ports = Vec::new();
    for (_, a) in transport.listeners() {
        ports.push(a.port());
        if a.ip().is_unspecified() {
            hosts.push("127.0.0.1".into());
            hosts.push("::1".into());
        } else {
            hosts.push(a.ip().to_string());
        }
    }
    Local::new(hosts, ports)
}

fn registrar_domains(config: &Config, transport: &Transport) -> Vec<String> {
    let mut d = config.proxy.domains.clone();
    for (_, a) in transport.listeners() {
        if !a.ip().is_unspecified() {
            d.push(a.ip().to_string());
        }
    }
    d.extend(config.proxy.advertise.clone());
    d.sort();
    d.dedup();
    d
}

impl Inner {
    /// Why inbound-registration connection `name` is down, with how long ago
    /// it went down ("connection closed (TCP from 127.0.0.1:40112) 3 s ago").
    pub(crate) fn down_reason(&self, name: &str) -> Option<String> {
        lock(&self.went_down)
            .get(name)
            .map(|(t, why)| format!("{why} {}", crate::status::ago(*t, self.clock.wall_now())))
    }

    /// Notes that connection `name` changed state now.
    pub(crate) fn changed(&self, name: &str) {
        lock(&self.changes).insert(name.to_owned(), self.clock.wall_now());
    }

    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The host and port we advertise for `protocol`.
    pub(crate) fn local_addr(&self, protocol: Protocol, config: &Config) -> (String, u16) {
        let listeners = self.transport.listeners();
        let l = listeners
            .iter()
            .find(|(p, _)| *p == protocol)
            .or_else(|| listeners.first())
            .map(|(_, a)| *a);
        let addr = l.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        advertised(addr, config)
    }

    /// The `sld` parameter of our Record-Route entries for a dialog: a keyed
    /// hash of its Call-ID.
    fn dialog_mac(&self, call_id: &str) -> String {
        format!("{:08x}", self.flow_key.hash_one(("sld", call_id)) as u32)
    }

    fn flow_token(&self, flow: FlowId) -> String {
        let mac = self.flow_key.hash_one(flow.get()) as u32;
        format!("fl{:x}x{mac:08x}", flow.get())
    }

    fn flow_from_token(&self, token: &str) -> Option<FlowId> {
        let rest = token.strip_prefix("fl")?;
        let (id, mac) = rest.split_once('x')?;
        let id = u64::from_str_radix(id, 16).ok()?;
        let mac = u32::from_str_radix(mac, 16).ok()?;
        (self.flow_key.hash_one(id) as u32 == mac).then(|| FlowId::from_raw(id))
    }

    pub(crate) async fn connection_up(&self, c: &ConnRuntime, user: Option<&str>) -> bool {
        if !c.config.enabled {
            return false;
        }
        match c.config.kind {
            ConnectionKind::Trunk => c.trunks.iter().any(|(_, t)| {
                let h = t.health();
                h.is_empty() || h.iter().any(|s| s.state == siplink_trunk::HealthState::Up)
            }),
            ConnectionKind::OutboundRegistration => c.registrations.iter().any(|r| {
                (user.is_none()
                    || c.config.registration.mode == RegistrationMode::Shared
                    || r.user.as_deref() == user)
                    && matches!(r.status.borrow().state, State::Registered { .. })
            }),
            ConnectionKind::InboundRegistration => {
                self.pbx_targets(c).await.is_some_and(|t| !t.is_empty())
            }
        }
    }

    pub(crate) async fn pbx_targets(
        &self,
        c: &ConnRuntime,
    ) -> Option<Vec<siplink_registrar::Target>> {
        let user = c.config.username.as_deref()?;
        Some(self.bindings_of(user, c.config.domain.as_deref()).await)
    }

    /// The bindings of `user` under `domain`, or under every domain we are
    /// registrar for (a phone may register `1001@siplink.test` or
    /// `1001@192.0.2.1`; both are the same user).
    pub(crate) async fn bindings_of(
        &self,
        user: &str,
        domain: Option<&str>,
    ) -> Vec<siplink_registrar::Target> {
        let domains: Vec<String> = match domain {
            Some(d) => vec![d.to_owned()],
            None => self.domains.clone(),
        };
        let mut out = Vec::new();
        for d in domains {
            if let Ok(aor) = Aor::parse(&format!("sip:{user}@{}", sip_host(&d))) {
                out.extend(self.registrar.lookup(&aor).await.unwrap_or_default());
            }
        }
        out
    }

    fn is_user(&self, name: &str) -> bool {
        self.runtime().config.user(name).is_some()
    }
}

/// The request loop.
async fn serve(inner: Arc<Inner>, mut requests: ServerRequests) {
    while let Some(tx) = requests.recv().await {
        let inner = inner.clone();
        tokio::spawn(async move { handle(inner, tx).await });
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

/// Where an out-of-dialog request comes from.
enum Caller {
    /// A PBX of this connection; ring this user.
    Pbx(usize, Option<String>),
    /// A phone (or anyone else): must authenticate.
    Phone,
}

/// RFC 3261 §16.3 request validation as a proxy: `Err` with the answer to
/// send (400-class, with `Unsupported` for a Proxy-Require we lack; `None`
/// when it cannot be built) for a request that fails it.
pub(crate) fn check_request(request: &Message) -> Result<(), Option<Box<Message>>> {
    let Err(rejection) = request.validate_with(&siplink_message::ValidationOptions {
        role: siplink_message::Role::Proxy,
        supported: Vec::new(),
    }) else {
        return Ok(());
    };
    let mut b = request.response(rejection.status).reason(&rejection.reason);
    if !rejection.unsupported.is_empty() {
        b = b.header(HeaderName::Unsupported, rejection.unsupported.join(", "));
    }
    Err(b.build().ok().map(Box::new))
}

async fn handle(inner: Arc<Inner>, mut tx: ServerTransactionHandle) {
    tracing::trace!(
        from = %tx.origin.peer,
        "request:\n{}",
        crate::redact::sip_message(&tx.request.to_bytes())
    );
    let method = tx.request.method().cloned();
    let Some(method) = method else { return };
    if let Err(answer) = check_request(&tx.request) {
        if let Some(r) = answer {
            let _ = tx.respond(*r).await;
        }
        return;
    }
    if method == Method::Register {
        if inner.registrar.registrar().is_ours(&tx.request) {
            if let Err(e) = inner.registrar.handle(tx).await {
                debug!("REGISTER: {e}");
            }
        } else {
            respond(&mut tx, 403, "Not A Domain Of This Registrar").await;
        }
        return;
    }
    if method == Method::Cancel {
        // A CANCEL that matched no transaction.
        respond(&mut tx, 481, "Call/Transaction Does Not Exist").await;
        return;
    }
    if tx.request.to_tag().ok().flatten().is_some() {
        in_dialog(&inner, tx).await;
        return;
    }
    let consumed = {
        let local = inner
            .local
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        core::consume_own_routes(&mut tx.request, &local)
    };
    let _ = consumed;
    let ruri = match tx.request.request_uri() {
        Ok(u) => u.clone(),
        Err(_) => return respond(&mut tx, 400, "Bad Request-URI").await,
    };
    let local = inner
        .local
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let to_us = local.is_local_uri(&ruri);
    let ruri_user = ruri.as_sip().and_then(|u| u.user()).map(str::to_owned);
    // OPTIONS to the proxy itself is answered here. OPTIONS to a user part
    // (user or not) goes the way of every other method, authentication
    // first, so that the answer does not tell users from non-users.
    if method == Method::Options && to_us && ruri_user.is_none() {
        if let Ok(r) = tx
            .request
            .response(200)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::Supported, SUPPORTED)
            .header(HeaderName::Accept, "application/sdp")
            .build()
        {
            let _ = tx.respond(r).await;
        }
        return;
    }
    let cookie = core::loop_cookie(&tx.request);
    if core::is_loop(&tx.request, &cookie) {
        return respond(&mut tx, 482, "Loop Detected").await;
    }
    let Ok(permit) = inner.calls.clone().try_acquire_owned() else {
        if let Ok(r) = tx
            .request
            .response(503)
            .header(HeaderName::RetryAfter, "5")
            .build()
        {
            let _ = tx.respond(r).await;
        }
        return;
    };
    // The call's slot of `limits.max_calls`, released at its final response.
    let mut slot: Slot = Some(permit);
    let mut caller = classify(&inner, &tx).await;
    let mut user = None;
    if matches!(caller, Caller::Phone) && inner.runtime().config.proxy.authenticate_calls {
        match authenticate(&inner, &mut tx).await {
            Some(Authenticated::User(u)) => user = Some(u),
            // An inbound-registration PBX calling over a new connection
            // proves who it is with its own account.
            Some(Authenticated::Pbx(i)) => {
                let deliver = inner.runtime().connections[i].config.deliver_to.clone();
                caller = Caller::Pbx(i, deliver);
            }
            None => return,
        }
    }
    match caller {
        Caller::Pbx(conn, deliver) => {
            let target = ruri_user
                .as_deref()
                .filter(|u| inner.is_user(u))
                .map(str::to_owned)
                .or_else(|| {
                    tx.request
                        .to()
                        .ok()
                        .and_then(|t| t.uri.as_sip().and_then(|s| s.user()).map(str::to_owned))
                        .filter(|u| inner.is_user(u))
                })
                .or(deliver);
            debug!(connection = conn, ?target, "request from a PBX");
            match target {
                Some(user) => deliver_to_user(&inner, tx, &user, &cookie, &mut slot).await,
                None => respond(&mut tx, 404, "Not Found").await,
            }
        }
        Caller::Phone => {
            // A call to one of our users?
            let ours = to_us
                || local.is_local_host(
                    &ruri
                        .as_sip()
                        .map(|s| s.host().to_string())
                        .unwrap_or_default(),
                );
            if ours && let Some(u) = ruri_user.as_deref().filter(|u| inner.is_user(u)) {
                let u = u.to_owned();
                deliver_to_user(&inner, tx, &u, &cookie, &mut slot).await;
                return;
            }
            let Some(number) = dialled_number(&ruri).map(|n| n.into_owned()) else {
                return respond(&mut tx, 416, "Unsupported URI Scheme").await;
            };
            route_call(&inner, tx, user, &number, &cookie, &mut slot).await;
        }
    }
    drop(slot);
}

async fn classify(inner: &Inner, tx: &ServerTransactionHandle) -> Caller {
    let rt = inner.runtime();
    let ruri_user = tx
        .request
        .request_uri()
        .ok()
        .and_then(|u| u.as_sip())
        .and_then(|u| u.user())
        .map(str::to_owned);
    for (i, c) in rt.connections.iter().enumerate() {
        // A request for our registered Contact, from the registrar we
        // registered with (not from anyone who guesses the contact user).
        if let Some(u) = &ruri_user
            && let Some(r) = c.registrations.iter().find(|r| {
                &r.contact_user == u
                    && r.status
                        .borrow()
                        .binding
                        .as_ref()
                        .is_some_and(|b| b.target.addr.ip() == tx.origin.peer.ip())
            })
        {
            return Caller::Pbx(i, r.user.clone().or(c.config.deliver_to.clone()));
        }
    }
    for (i, c) in rt.connections.iter().enumerate() {
        if c.config.enabled && c.is_pbx_address(tx.origin.peer) {
            return Caller::Pbx(i, c.config.deliver_to.clone());
        }
    }
    for (i, c) in rt.connections.iter().enumerate() {
        if c.config.kind != ConnectionKind::InboundRegistration || !c.config.enabled {
            continue;
        }
        if let Some(targets) = inner.pbx_targets(c).await {
            let hit = targets.iter().any(|t| {
                (t.binding.flow.is_some() && t.binding.flow == tx.origin.flow)
                    || t.binding.source == tx.origin.peer
            });
            if hit {
                return Caller::Pbx(i, c.config.deliver_to.clone());
            }
        }
    }
    Caller::Phone
}

/// Who a request authenticated as.
enum Authenticated {
    /// One of our users.
    User(String),
    /// The PBX of this inbound-registration connection (its own account).
    Pbx(usize),
}

/// Digest authentication of a request (407 challenge). `None`: the request
/// was answered (challenge or refusal).
async fn authenticate(inner: &Inner, tx: &mut ServerTransactionHandle) -> Option<Authenticated> {
    let creds = match tx.request.proxy_authorization() {
        Ok(c) => c.to_vec(),
        Err(_) => {
            respond(tx, 400, "Bad Proxy-Authorization").await;
            return None;
        }
    };
    let method = tx
        .request
        .method()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let uri = tx
        .request
        .request_uri_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let ip = tx.origin.peer.ip();
    let source = Some(ip);
    let selected = inner.digest.select(creds.iter());
    let claimed = selected.and_then(|c| c.username()).map(str::to_owned);
    let now = inner.clock.wall_now();
    if let Err(blocked) = inner.limiter.check(ip, claimed.as_deref(), now) {
        debug!(source = %tx.origin.peer, "call authentication blocked: {blocked:?}");
        respond_stateless(tx, 403, "Forbidden").await;
        return None;
    }
    let bound = inner.digest.failure_counts(selected, ip, now);
    let outcome = {
        let secrets = inner.secrets.read().unwrap_or_else(|e| e.into_inner());
        let store = |user: &str, _realm: &str, _a: Algorithm| secrets.get(user).cloned();
        let info = RequestInfo::new(&method, &uri).with_body(tx.request.body());
        inner
            .digest
            .authenticate(creds.iter(), &info, source, now, &store)
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
    match outcome {
        Outcome::Accept(a) => {
            if inner.is_user(&a.username) {
                return Some(Authenticated::User(a.username));
            }
            let rt = inner.runtime();
            let pbx = rt.connections.iter().position(|c| {
                c.config.enabled
                    && c.config.kind == ConnectionKind::InboundRegistration
                    && c.config.username.as_deref() == Some(a.username.as_str())
            });
            match pbx {
                Some(i) => Some(Authenticated::Pbx(i)),
                None => {
                    respond(tx, 403, "Forbidden").await;
                    None
                }
            }
        }
        Outcome::Challenge(ch) => {
            challenge(tx, ch).await;
            None
        }
        Outcome::Stale { challenges, .. } => {
            challenge(tx, challenges).await;
            None
        }
        Outcome::Forbidden(r) => {
            debug!(source = %tx.origin.peer, "authentication refused: {r:?}");
            respond_stateless(tx, 403, "Forbidden").await;
            None
        }
        Outcome::BadRequest(f) => {
            debug!("bad credentials: {f:?}");
            respond(tx, 400, "Bad Proxy-Authorization").await;
            None
        }
    }
}

async fn challenge(
    tx: &mut ServerTransactionHandle,
    challenges: Vec<siplink_message::headers::Challenge>,
) {
    let mut b = tx.request.response(407);
    for c in challenges {
        b = b.header(HeaderName::ProxyAuthenticate, c);
    }
    // Stateless (issue 15): nothing is kept per challenged request; the ACK
    // of the 407 is absorbed by the endpoint by its To tag.
    if let Ok(r) = b.build() {
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

async fn route_call(
    inner: &Arc<Inner>,
    mut tx: ServerTransactionHandle,
    user: Option<String>,
    number: &str,
    cookie: &str,
    slot: &mut Slot,
) {
    let rt = inner.runtime();
    let mut up = Vec::with_capacity(rt.connections.len());
    for c in &rt.connections {
        up.push(inner.connection_up(c, user.as_deref()).await);
    }
    let decision = rt.router.route(user.as_deref(), number, |i| {
        up.get(i).copied().unwrap_or(false)
    });
    let candidates = match decision {
        Decision::Route(c) | Decision::AllDown(c) => c,
        Decision::NoMatch => {
            let status = rt.config.proxy.no_match_status;
            info!(%number, "no connection matches");
            return respond(&mut tx, status, "No Route For Number").await;
        }
        Decision::NotAllowed => {
            info!(%number, ?user, "no connection allowed for this user");
            return respond(&mut tx, 403, "Connection Not Allowed").await;
        }
    };
    if tx.request.method() != Some(&Method::Invite) {
        return respond(&mut tx, 405, "Only INVITE Goes To Connections").await;
    }
    let mut last = String::new();
    for cand in candidates {
        let conn = rt.connections[cand.connection].clone();
        info!(%number, connection = %cand.name, kind = %cand.kind, "routing call");
        let attempt = match cand.kind {
            ConnectionKind::Trunk | ConnectionKind::OutboundRegistration => {
                let Some(trunk) = conn.trunk_for(user.as_deref()).cloned() else {
                    last = format!("{}: no account for this user", cand.name);
                    continue;
                };
                via_trunk(inner, &mut tx, &trunk, &cand, slot).await
            }
            ConnectionKind::InboundRegistration => {
                let targets = inner.pbx_targets(&conn).await.unwrap_or_default();
                if targets.is_empty() {
                    let why = inner
                        .down_reason(&cand.name)
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    Attempt::Failover(format!("{}: the PBX is not registered{why}", cand.name))
                } else {
                    // The PBX learns the dialled number from the Request-URI:
                    // its Contact with the number as user part.
                    let req = tx.request.clone();
                    fork(
                        inner,
                        &mut tx,
                        req,
                        targets,
                        cookie,
                        Some(&cand.number),
                        slot,
                    )
                    .await
                }
            }
        };
        match attempt {
            Attempt::Done => return,
            Attempt::Failover(why) => {
                warn!(connection = %cand.name, "failing over: {why}");
                conn.set_error(inner.clock.wall_now(), why.clone());
                last = why;
            }
        }
    }
    info!(%number, "every connection failed: {last}");
    respond(&mut tx, 503, "All Connections Failed").await;
}

/// Replaces the user part of the Request-URI by `number` (after a rewrite).
fn set_number(req: &mut Message, number: &str) {
    let Ok(Uri::Sip(sip)) = req.request_uri().cloned() else {
        return;
    };
    if sip.user() == Some(number) {
        return;
    }
    let uri = sip.to_builder().user(number.as_bytes()).build();
    if let Ok(uri) = uri {
        req.set_request_uri(Bytes::copy_from_slice(uri.as_str().as_bytes()));
    }
}

fn record_route(
    inner: &Inner,
    req: &mut Message,
    in_origin: &Origin,
    out_protocol: Protocol,
    out_flow: Option<FlowId>,
) {
    let Some(method) = req.method() else { return };
    if !core::needs_record_route(method) {
        return;
    }
    let config = inner.runtime().config.clone();
    let (in_host, in_port) = advertised(in_origin.local, &config);
    let mac = inner.dialog_mac(req.call_id().unwrap_or_default());
    let in_token = in_origin.flow.map(|f| inner.flow_token(f));
    let (out_host, out_port) = inner.local_addr(out_protocol, &config);
    let out_token = out_flow.map(|f| inner.flow_token(f));
    let single = in_origin.protocol == out_protocol
        && in_token.is_none()
        && out_token.is_none()
        && in_host == out_host
        && in_port == out_port;
    if single {
        req.prepend_header(
            HeaderName::RecordRoute,
            core::record_route_value(
                &in_host,
                in_port,
                in_origin.protocol.via_token(),
                None,
                Some(&mac),
            ),
        );
    } else {
        // RFC 5658: the caller's face first (it ends up second), then ours
        // towards the callee on top.
        req.prepend_header(
            HeaderName::RecordRoute,
            core::record_route_value(
                &in_host,
                in_port,
                in_origin.protocol.via_token(),
                in_token.as_deref(),
                Some(&mac),
            ),
        );
        req.prepend_header(
            HeaderName::RecordRoute,
            core::record_route_value(
                &out_host,
                out_port,
                out_protocol.via_token(),
                out_token.as_deref(),
                Some(&mac),
            ),
        );
    }
}

/// Sends the caller's INVITE through a trunk and relays what comes back.
async fn via_trunk(
    inner: &Arc<Inner>,
    tx: &mut ServerTransactionHandle,
    trunk: &Trunk,
    cand: &Candidate,
    slot: &mut Slot,
) -> Attempt {
    let mut req = tx.request.clone();
    set_number(&mut req, &cand.number);
    let out_protocol = trunk
        .config()
        .targets
        .first()
        .map(|t| t.addr.transport)
        .unwrap_or(Protocol::Udp);
    let origin = tx.origin;
    record_route(inner, &mut req, &origin, out_protocol, None);
    let mut call = match trunk.call(req).await {
        Ok(c) => c,
        Err(e) => return Attempt::Failover(format!("{}: {e}", cand.name)),
    };
    let caller_tag = tx
        .request
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    let call_id = tx.request.call_id().unwrap_or_default().to_owned();
    let mut relayed = false;
    let mut failure: Option<CallFailure> = None;
    loop {
        tokio::select! {
            cancelled = tx.cancelled(), if !relayed_final(tx) => {
                if cancelled {
                    call.cancel().await;
                    // Drain until the trunk reports the end of the call.
                    while let Some(ev) = call.next().await {
                        if matches!(ev, CallEvent::Final { .. }) { break; }
                    }
                    return Attempt::Done;
                }
            }
            ev = call.next() => {
                let Some(ev) = ev else { return Attempt::Done };
                match ev {
                    CallEvent::Provisional(r) => {
                        relayed = true;
                        let _ = tx.respond(r).await;
                    }
                    CallEvent::Final { response, dialog } => {
                        let status = response.status().unwrap_or(500);
                        if let Some(f) = &failure && !relayed
                            && matches!(f, CallFailure::AllTargetsFailed { .. } | CallFailure::NoTargetAvailable)
                        {
                            return Attempt::Failover(format!("{}: {f}", cand.name));
                        }
                        if let Some(d) = dialog {
                            // A caller on a connection: the BYE that ends the
                            // PBX leg if that connection dies mid-call.
                            let bye = origin
                                .flow
                                .filter(|_| (200..300).contains(&status))
                                .and_then(|_| {
                                    let cseq = tx.request.cseq().ok()?.seq;
                                    siplink_trunk::in_dialog_request(
                                        Method::Bye,
                                        &tx.request,
                                        &response,
                                        cseq.saturating_add(1),
                                    )
                                    .ok()
                                });
                            inner.remember_dialog(&call_id, d, &caller_tag, origin.flow, bye);
                        }
                        let _ = tx.respond(response).await;
                        slot.take();
                        if (200..300).contains(&status) {
                            // Further 2xx (other forks) go upstream too.
                            while let Some(ev) = call.next().await {
                                if let CallEvent::Additional2xx { response, .. } = ev {
                                    let _ = tx.respond(response).await;
                                }
                            }
                        }
                        return Attempt::Done;
                    }
                    CallEvent::Additional2xx { response, .. } => {
                        let _ = tx.respond(response).await;
                    }
                    CallEvent::TargetFailed { target, reason } => {
                        warn!(connection = %cand.name, ?target, "trunk target failed: {reason}");
                    }
                    CallEvent::Failed(f) => {
                        failure = Some(f);
                    }
                }
            }
        }
    }
}

fn relayed_final(_tx: &ServerTransactionHandle) -> bool {
    false
}

impl Inner {
    fn remember_dialog(
        &self,
        call_id: &str,
        dialog: TrunkDialog,
        caller_tag: &str,
        caller_flow: Option<FlowId>,
        bye: Option<Message>,
    ) {
        let mut d = lock(&self.dialogs);
        if d.len() >= MAX_DIALOGS {
            let now = self.clock.now();
            d.retain(|_, e| now.duration_since(e.created) < DIALOG_TTL);
            if d.len() >= MAX_DIALOGS {
                warn!("dialog table full: in-dialog CSeq mapping lost for {call_id}");
                return;
            }
        }
        d.insert(
            call_id.to_owned(),
            DialogEntry {
                dialog,
                caller_tag: caller_tag.to_owned(),
                created: self.clock.now(),
                caller_flow,
                bye,
            },
        );
    }
}

/// Rings every registered contact of `user` (parallel fork).
async fn deliver_to_user(
    inner: &Arc<Inner>,
    mut tx: ServerTransactionHandle,
    user: &str,
    cookie: &str,
    slot: &mut Slot,
) {
    let targets = inner.bindings_of(user, None).await;
    if targets.is_empty() {
        return respond(&mut tx, 480, "Temporarily Unavailable").await;
    }
    let req = tx.request.clone();
    if let Attempt::Failover(why) = fork(inner, &mut tx, req, targets, cookie, None, slot).await {
        debug!(%user, "no contact answered: {why}");
        respond(&mut tx, 480, "Temporarily Unavailable").await;
    }
}

enum BranchEvent {
    Event(Box<ClientEvent>),
    Failed(String),
    Ended,
}

/// Forks `request` to `targets` (RFC 3261 §16.5-16.7): relays provisional
/// responses, the first 2xx (and later ones) and the best final response.
/// `Failover` when no branch got further than a timeout, a transport error
/// or 503 before any provisional response.
async fn fork(
    inner: &Arc<Inner>,
    tx: &mut ServerTransactionHandle,
    request: Message,
    targets: Vec<siplink_registrar::Target>,
    cookie: &str,
    number: Option<&str>,
    slot: &mut Slot,
) -> Attempt {
    let mut base = request;
    if let Check::Reject(s, r) = core::decrement_max_forwards(&mut base) {
        respond(tx, s, r).await;
        return Attempt::Done;
    }
    let (events_tx, mut events) = mpsc::channel::<BranchEvent>(64);
    let mut handles = Vec::new();
    for (i, t) in targets.into_iter().enumerate().take(16) {
        let mut req = base.clone();
        let uri = t.binding.uri().as_bytes().to_vec();
        req.set_request_uri(Bytes::from(uri));
        if let Some(n) = number {
            set_number(&mut req, n);
        }
        let (dest, protocol, flow) = match &t.reach {
            Reach::Flow(f) => (Destination::Flow(*f), t.binding.transport, Some(*f)),
            Reach::Contact { uri, path } => {
                for p in path.iter().rev() {
                    req.prepend_header(HeaderName::Route, p.clone());
                }
                let hop = path
                    .first()
                    .and_then(|p| path_uri(p))
                    .unwrap_or_else(|| uri.clone());
                match resolve_uri(inner, &hop).await {
                    Some(target) => {
                        let protocol = target.protocol;
                        (Destination::Target(target), protocol, None)
                    }
                    None => {
                        let _ = events_tx
                            .send(BranchEvent::Failed(format!("cannot resolve {hop}")))
                            .await;
                        continue;
                    }
                }
            }
        };
        let origin = tx.origin;
        record_route(inner, &mut req, &origin, protocol, flow);
        core::push_via(&mut req, &core::branch(cookie, i));
        let req = match req.reparse() {
            Ok(r) => r,
            Err(e) => {
                let _ = events_tx.send(BranchEvent::Failed(e.to_string())).await;
                continue;
            }
        };
        match inner.endpoint.send_request(req, dest).await {
            Ok(mut h) => {
                let ev = events_tx.clone();
                let (cancel_tx, mut cancel_rx) = mpsc::channel::<()>(1);
                handles.push(cancel_tx);
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            Some(()) = cancel_rx.recv() => { let _ = h.cancel().await; }
                            e = h.next() => match e {
                                Some(e) => { if ev.send(BranchEvent::Event(Box::new(e))).await.is_err() { break; } }
                                None => { let _ = ev.send(BranchEvent::Ended).await; break; }
                            }
                        }
                    }
                });
            }
            Err(e) => {
                let _ = events_tx.send(BranchEvent::Failed(e.to_string())).await;
            }
        }
    }
    drop(events_tx);
    let mut best = BestResponse::new();
    let mut provisional = false;
    let mut answered = false;
    let mut failover_only = true;
    let mut last = String::from("no branch");
    let mut cancelled = false;
    loop {
        let ev = tokio::select! {
            c = tx.cancelled(), if !answered && !cancelled => {
                if c {
                    cancelled = true;
                    for h in &handles { let _ = h.try_send(()); }
                }
                continue;
            }
            ev = events.recv() => ev,
        };
        let Some(ev) = ev else { break };
        let ev = match ev {
            BranchEvent::Event(e) => *e,
            BranchEvent::Failed(why) => {
                last = why;
                continue;
            }
            BranchEvent::Ended => continue,
        };
        match ev {
            ClientEvent::Provisional(mut r) => {
                if r.status() == Some(100) {
                    continue;
                }
                provisional = true;
                core::pop_via(&mut r);
                if !answered && !cancelled {
                    let _ = tx.respond(r).await;
                }
            }
            ClientEvent::Final(mut r) => {
                let status = r.status().unwrap_or(500);
                core::pop_via(&mut r);
                if (200..300).contains(&status) {
                    if !answered {
                        answered = true;
                        slot.take();
                        for h in &handles {
                            let _ = h.try_send(());
                        }
                    }
                    let _ = tx.respond(r).await;
                } else {
                    if !matches!(status, 408 | 503) {
                        failover_only = false;
                    }
                    last = format!("answered {status}");
                    best.offer(r);
                }
            }
            ClientEvent::Additional2xx(mut r) => {
                core::pop_via(&mut r);
                let _ = tx.respond(r).await;
            }
            ClientEvent::Timeout => last = "timeout".into(),
            ClientEvent::TransportError => last = "transport error".into(),
        }
    }
    if answered || cancelled {
        return Attempt::Done;
    }
    if !provisional && failover_only {
        return Attempt::Failover(last);
    }
    match best.take(&tx.request) {
        Some(r) => {
            let _ = tx.respond(r).await;
        }
        None => respond(tx, 480, "Temporarily Unavailable").await,
    }
    Attempt::Done
}

/// The URI of a stored Path value (`<sip:...;lr>`).
fn path_uri(p: &str) -> Option<Uri> {
    let inner = p.trim();
    let inner = match (inner.find('<'), inner.rfind('>')) {
        (Some(a), Some(b)) if a < b => &inner[a + 1..b],
        _ => inner,
    };
    Uri::parse(Bytes::copy_from_slice(inner.as_bytes())).ok()
}

/// Resolves a next-hop URI to a transport target (RFC 3263 through the
/// transport's resolver).
async fn resolve_uri(inner: &Inner, uri: &Uri) -> Option<Target> {
    let sip = uri.as_sip()?;
    let protocol = match sip
        .transport()
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("tcp") => Protocol::Tcp,
        Some("tls") => Protocol::Tls,
        Some("ws") => Protocol::Ws,
        Some("wss") => Protocol::Wss,
        _ if sip.is_secure() => Protocol::Tls,
        _ => Protocol::Udp,
    };
    let host = sip.host().to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = sip.port().unwrap_or(protocol.default_port());
    inner
        .transport
        .resolve(host, port, protocol)
        .await
        .ok()?
        .into_iter()
        .next()
}

/// The next hop of an in-dialog request after our Route entries were taken
/// off: a flow named by a token in the last of them, else the top Route,
/// else the Request-URI.
async fn in_dialog_destination(
    inner: &Inner,
    req: &Message,
    consumed: &core::Consumed,
) -> Option<Destination> {
    if let Some(Uri::Sip(last)) = consumed.routes.last()
        && let Some(flow) = last.user().and_then(|u| inner.flow_from_token(u))
    {
        return Some(Destination::Flow(flow));
    }
    let hop = match req.route().ok().and_then(|r| r.first()) {
        Some(r) => r.uri.clone(),
        None => req.request_uri().ok()?.clone(),
    };
    resolve_uri(inner, &hop).await.map(Destination::Target)
}

/// A request inside a dialog we record-routed (BYE, re-INVITE, UPDATE...).
async fn in_dialog(inner: &Arc<Inner>, mut tx: ServerTransactionHandle) {
    let local = inner
        .local
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let consumed = core::consume_own_routes(&mut tx.request, &local);
    if consumed.routes.is_empty() && !consumed.strict_fixed {
        // Not through us: we never record-routed this dialog.
        let to_us = tx
            .request
            .request_uri()
            .is_ok_and(|u| local.is_local_uri(u));
        if tx.request.method() == Some(&Method::Options) && to_us {
            if let Ok(r) = tx
                .request
                .response(200)
                .header(HeaderName::Allow, ALLOW)
                .build()
            {
                let _ = tx.respond(r).await;
            }
            return;
        }
        return respond(&mut tx, 481, "Call/Transaction Does Not Exist").await;
    }
    let call_id = tx.request.call_id().unwrap_or_default().to_owned();
    if !core::routed_by_us(&consumed, &inner.dialog_mac(&call_id)) {
        // Names us in a Route, but not with an entry we recorded for this
        // dialog: we are not an open relay for in-dialog requests either.
        debug!(source = %tx.origin.peer, "in-dialog request without our Record-Route: refused");
        return respond(&mut tx, 403, "Not Routed By This Proxy").await;
    }
    let from_tag = tx
        .request
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    let dialog = lock(&inner.dialogs)
        .get(&call_id)
        .map(|e| (e.dialog.clone(), e.caller_tag.clone()));
    let is_bye = tx.request.method() == Some(&Method::Bye);
    if let Some((dialog, caller_tag)) = &dialog
        && *caller_tag == from_tag
    {
        // Caller -> trunk: CSeq/From mapped, our Via and Max-Forwards,
        // challenges answered inside the trunk dialog.
        let req = tx.request.clone();
        match dialog.send_request(req).await {
            Ok(mut r) => match r.final_response().await {
                Ok(resp) => {
                    let _ = tx.respond(resp).await;
                }
                Err(e) => {
                    debug!("in-dialog request to the trunk failed: {e}");
                    respond(&mut tx, 408, "Request Timeout").await;
                }
            },
            Err(siplink_trunk::Error::TooManyHops) => {
                respond(&mut tx, 483, "Too Many Hops").await;
            }
            Err(e) => {
                debug!("in-dialog request to the trunk failed: {e}");
                respond(&mut tx, 500, "Server Internal Error").await;
            }
        }
        if is_bye {
            lock(&inner.dialogs).remove(&call_id);
        }
        return;
    }
    let mut req = tx.request.clone();
    if let Some((dialog, _)) = &dialog {
        req = dialog.from_trunk(req);
    }
    if let Check::Reject(s, r) = core::decrement_max_forwards(&mut req) {
        return respond(&mut tx, s, r).await;
    }
    let Some(dest) = in_dialog_destination(inner, &req, &consumed).await else {
        return respond(&mut tx, 404, "Cannot Reach Next Hop").await;
    };
    let cookie = core::loop_cookie(&req);
    core::push_via(&mut req, &core::branch(&cookie, 0));
    let req = match req.reparse() {
        Ok(r) => r,
        Err(_) => return respond(&mut tx, 500, "Server Internal Error").await,
    };
    match inner.endpoint.send_request(req, dest).await {
        Ok(mut h) => {
            while let Some(ev) = h.next().await {
                match ev {
                    ClientEvent::Provisional(mut r) if r.status() != Some(100) => {
                        core::pop_via(&mut r);
                        let _ = tx.respond(fix_response(&dialog, r)).await;
                    }
                    ClientEvent::Final(mut r) | ClientEvent::Additional2xx(mut r) => {
                        core::pop_via(&mut r);
                        let _ = tx.respond(fix_response(&dialog, r)).await;
                    }
                    ClientEvent::Timeout => {
                        respond(&mut tx, 408, "Request Timeout").await;
                        break;
                    }
                    ClientEvent::TransportError => {
                        respond(&mut tx, 503, "Next Hop Unreachable").await;
                        break;
                    }
                    _ => {}
                }
            }
        }
        Err(e) => {
            debug!("in-dialog forward failed: {e}");
            respond(&mut tx, 503, "Next Hop Unreachable").await;
        }
    }
    if is_bye {
        lock(&inner.dialogs).remove(&call_id);
    }
}

fn fix_response(dialog: &Option<(TrunkDialog, String)>, r: Message) -> Message {
    match dialog {
        Some((d, _)) => d.response_to_trunk(r),
        None => r,
    }
}

/// ACKs for 2xx and stray responses (RFC 3261 §16.7, §16.11): forwarded
/// without a transaction.
/// Ends the trunk leg of every answered call whose caller's connection
/// closed (a browser tab closed, a phone's TCP/TLS connection lost): the PBX
/// gets a BYE instead of a call up until its own timers end it.
async fn hang_up_on_flow_loss(inner: Arc<Inner>) {
    let mut events = inner.transport.subscribe();
    loop {
        let flow = match events.recv().await {
            Ok(e) => match e.kind {
                siplink_transport::FlowEventKind::Closed(_) => e.flow,
                _ => continue,
            },
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "hang-up on flow loss fell behind the flow events"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let ended: Vec<(String, DialogEntry)> = {
            let mut d = lock(&inner.dialogs);
            let ids: Vec<String> = d
                .iter()
                .filter(|(_, e)| e.caller_flow == Some(flow))
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter().filter_map(|k| d.remove_entry(&k)).collect()
        };
        for (call_id, entry) in ended {
            let Some(bye) = entry.bye else { continue };
            info!(%flow, call_id = %call_id, "caller's connection closed mid-call: BYE to the trunk");
            tokio::spawn(async move {
                match entry.dialog.send_request(bye).await {
                    Ok(mut r) => {
                        if let Err(e) = r.final_response().await {
                            debug!("BYE after flow loss: {e}");
                        }
                    }
                    Err(e) => debug!("BYE after flow loss not sent: {e}"),
                }
            });
        }
    }
}

async fn strays(inner: Arc<Inner>, mut rx: mpsc::Receiver<Incoming>) {
    while let Some(m) = rx.recv().await {
        let inner = inner.clone();
        tokio::spawn(async move { stray(&inner, m).await });
    }
}

async fn stray(inner: &Arc<Inner>, incoming: Incoming) {
    let mut msg = incoming.message;
    if msg.is_response() {
        // A 2xx retransmission: our Via off, on to the next one.
        let ours = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .is_some_and(|b| b.starts_with("z9hG4bKsl"));
        if !ours {
            return;
        }
        core::pop_via(&mut msg);
        if let Ok(m) = msg.reparse() {
            let _ = inner.transport.send_response(m, None).await;
        }
        return;
    }
    if msg.method() != Some(&Method::Ack) {
        return;
    }
    let local = inner
        .local
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let consumed = core::consume_own_routes(&mut msg, &local);
    if consumed.routes.is_empty() && !consumed.strict_fixed {
        return;
    }
    let call_id = msg.call_id().unwrap_or_default().to_owned();
    if !core::routed_by_us(&consumed, &inner.dialog_mac(&call_id)) {
        debug!(source = %incoming.origin.peer, "ACK without our Record-Route: dropped");
        return;
    }
    let from_tag = msg
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    let dialog = lock(&inner.dialogs)
        .get(&call_id)
        .filter(|e| e.caller_tag == from_tag)
        .map(|e| e.dialog.clone());
    if let Some(d) = dialog {
        let Ok(msg) = msg.reparse() else { return };
        if let Err(e) = d.send_ack(msg).await {
            debug!("ACK to the trunk: {e}");
        }
        return;
    }
    if let Check::Reject(..) = core::decrement_max_forwards(&mut msg) {
        return;
    }
    let Some(dest) = in_dialog_destination(inner, &msg, &consumed).await else {
        return;
    };
    let cookie = core::loop_cookie(&msg);
    let branch = core::stateless_branch(&msg, &cookie);
    core::push_via(&mut msg, &branch);
    let Ok(msg) = msg.reparse() else { return };
    // The transport stamps the Via's sent-by for the listener used.
    if let Err(e) = inner.transport.send(dest, msg).await {
        debug!("ACK forward: {e}");
    }
}

impl Inner {
    pub(crate) async fn connection_status(&self, c: &ConnRuntime) -> ConnectionStatus {
        let up = self.connection_up(c, None).await;
        let mut detail = Vec::new();
        let state = if !c.config.enabled {
            ConnectionState::Disabled
        } else {
            match c.config.kind {
                ConnectionKind::OutboundRegistration => {
                    for r in &c.registrations {
                        let s = r.status.borrow().clone();
                        detail.push(format!(
                            "{}: {}",
                            r.user.as_deref().unwrap_or(&r.contact_user),
                            crate::status::describe_state(&s.state, self.clock.now())
                        ));
                    }
                    if up {
                        ConnectionState::Registered
                    } else {
                        ConnectionState::Down
                    }
                }
                ConnectionKind::Trunk => {
                    for (_, t) in &c.trunks {
                        for (target, h) in t.config().targets.iter().zip(t.health()) {
                            detail.push(format!("{}: {}", target.addr, h.state));
                        }
                    }
                    if up {
                        ConnectionState::Up
                    } else {
                        ConnectionState::Down
                    }
                }
                ConnectionKind::InboundRegistration => {
                    for t in self.pbx_targets(c).await.unwrap_or_default() {
                        let b = &t.binding;
                        let mut line = format!(
                            "registered from {} over {} since {}",
                            b.source,
                            b.transport,
                            crate::status::ago(b.registered_at, self.clock.wall_now())
                        );
                        if crate::status::kept_after_flow_loss(b) {
                            line.push_str(&format!(
                                "; its connection closed, reached at its Contact {}",
                                b.contact.uri
                            ));
                        }
                        detail.push(line);
                    }
                    if !up {
                        detail.push(match self.down_reason(&c.config.name) {
                            Some(why) => format!("down: {why}"),
                            None => "down: the PBX has not registered".to_owned(),
                        });
                    }
                    if up {
                        ConnectionState::Registered
                    } else {
                        ConnectionState::Down
                    }
                }
            }
        };
        let last_change = lock(&self.changes)
            .get(&c.config.name)
            .map(|t| crate::status::ago(*t, self.clock.wall_now()));
        ConnectionStatus {
            last_change,
            name: c.config.name.clone(),
            kind: c.config.kind,
            state,
            detail,
            last_error: lock(&c.last_error)
                .as_ref()
                .map(|(t, e)| format!("{e} ({})", crate::status::ago(*t, self.clock.wall_now()))),
        }
    }
}
