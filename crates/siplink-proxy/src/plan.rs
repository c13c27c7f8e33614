//! The configuration validated once into a typed plan.
//!
//! A [`Config`] is what the user wrote: strings, options and defaults left
//! implicit. A [`Plan`] is what the proxy runs: built once by
//! [`Plan::from_config`], which reports **every** problem at once (the
//! checks of [`Config::validate`] first, then the plan's own), each with its
//! location (`connections[1] "carrier": addresses[0]`). In a plan
//!
//! * each connection is a [`ConnectionPlan`]: the part every kind has
//!   ([`Common`]: name, position, enabled, compiled dial patterns,
//!   `deliver_to` as a user index) and a [`Kind`] variant holding only that
//!   kind's fields;
//! * addresses are parsed once into [`Target`]s (a [`Host`] that is an IP
//!   address or a DNS name, a port that is never 0, a protocol; `sips:` means
//!   TLS), listeners are socket addresses with their protocol and the host and
//!   port advertised for them;
//! * credentials are resolved: the digest server's HA1 for each hash function
//!   it offers ([`DigestSecret`]), the client's [`ClientCredentials`] for
//!   outbound authentication;
//! * users carry the set of connections they may use as indexes;
//! * every default is applied (realm, PBX domain, transport, probe,
//!   registration expiry, limits), so no `Option` is left where a default
//!   exists.
//!
//! [`Plan::diff`] compares two plans for a reload, and [`PlanView`] answers
//! the sans-IO [`engine`](crate::engine)'s [`View`] from a plan.
//!
//! **Not yet read by the running proxy**: [`Proxy`](crate::Proxy) still works
//! from the [`Config`]; wiring the plan in is the next step.
//!
//! ```
//! use siplink_proxy::plan::{Kind, Plan};
//!
//! let plan = Plan::demo();
//! let office = plan.connection("office-pbx").expect("in the demo");
//! let Kind::OutboundRegistration(or) = &office.kind else { panic!() };
//! assert_eq!(or.targets[0].to_string(), "udp:127.0.0.1:5070");
//! assert_eq!(plan.proxy.realm, "siplink.test");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::time::Duration;

use siplink_auth::{Algorithm, ClientCredentials, HashFunction, StoredSecret};
use siplink_dialplan::DialPlan;
use siplink_message::uri::Uri;
use siplink_message::{TargetAddr, Transport};
use siplink_transport::{FlowId, Origin};

use crate::config::{
    AccountConfig, Config, ConfigError, ConfigIssue, ConnectionConfig, ConnectionKind,
    DialPatternConfig, RegistrationMode, RegistrationOptions,
};
use crate::core::Local;
use crate::engine::{EngineConfig, PbxSource, View};
use crate::media::{ConnectionMedia, MediaPlan};

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a configuration does not make a plan: the same value as a
/// configuration that does not validate (every problem, each with its
/// location, and the file's name when it came from one), with the problems of
/// [`Config::validate`] first and the plan's own after them.
pub type PlanErrors = ConfigError;

impl ConfigError {
    /// Whether some issue's location is exactly `location`.
    pub fn has(&self, location: &str) -> bool {
        self.issues.iter().any(|i| i.location == location)
    }
}

/// Collects the plan's own issues next to those of [`Config::validate`]: an
/// issue at a location the validator already reported is left out (the
/// validator's message is kept), so no problem is reported twice.
struct Issues {
    list: Vec<ConfigIssue>,
    from_validator: usize,
}

impl Issues {
    fn push(&mut self, location: impl Into<String>, message: impl Into<String>) {
        let location = location.into();
        if self.list[..self.from_validator]
            .iter()
            .any(|i| i.location == location)
        {
            return;
        }
        self.list.push(ConfigIssue {
            location,
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------
// Hosts and targets
// ---------------------------------------------------------------------------

/// A host: an IP address or a DNS name (lowercase, without a trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name: labels of letters, digits, `-` and `_`, 1 to 63
    /// characters each, 253 at most in all.
    Name(String),
}

impl Host {
    /// Parses an IP address (IPv6 with or without brackets) or a DNS name.
    pub fn parse(text: &str) -> Result<Host, String> {
        // What the configuration's own check refuses, the plan refuses too.
        crate::config::check_host(text)?;
        let bare = match text.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .ok_or_else(|| format!("unclosed '[' in {text:?}"))?,
            None => text,
        };
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if bare.len() != text.len() {
            return Err(format!("{text:?} is not an IPv6 address"));
        }
        let labels_ok = !text.is_empty()
            && text.len() <= 253
            && text.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        // All-digit dotted names are mistyped IPv4 addresses, not names.
        let numeric = text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !labels_ok || numeric {
            return Err(format!("{text:?} is not an IP address or host name"));
        }
        Ok(Host::Name(text.to_ascii_lowercase()))
    }

    /// The IP address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }

    /// The host as written in a SIP URI (IPv6 in brackets).
    pub fn uri_host(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.to_string(),
        }
    }
}

/// The host as text, without brackets (an IPv6 address is written bare).
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Where to send: host, port (never 0) and protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host.
    pub host: Host,
    /// The port: given, or the protocol's default (5060, 5061 for TLS).
    pub port: NonZeroU16,
    /// `udp`, `tcp` or `tls` for a connection's PBX.
    pub protocol: Transport,
}

impl Target {
    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port`, a bare IPv6 address, or
    /// a `sip:`/`sips:` URI (`transport` parameter honoured; `sips:` is TLS).
    /// `default` is the protocol of forms that name none.
    pub fn parse(text: &str, default: Transport) -> Result<Target, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty address".into());
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("sip:") || lower.starts_with("sips:") {
            return Self::parse_uri(text);
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("unclosed '[' in {text:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("unexpected {after:?} after ']' in {text:?}")),
            };
            (format!("[{h}]"), port)
        } else if text.matches(':').count() > 1 {
            (text.to_owned(), None)
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (text.to_owned(), None),
            }
        };
        let host = Host::parse(&host).map_err(|e| format!("bad host in {text:?}: {e}"))?;
        let port = match port {
            Some(p) => parse_port(p).map_err(|e| format!("{e} in {text:?}"))?,
            None => default_port(default),
        };
        Self::usable(Target {
            host,
            port,
            protocol: default,
        })
    }

    fn parse_uri(text: &str) -> Result<Target, String> {
        let uri = Uri::parse(bytes::Bytes::copy_from_slice(text.as_bytes()))
            .map_err(|e| format!("bad SIP URI {text:?}: {e}"))?;
        let Uri::Sip(sip) = uri else {
            return Err(format!("{text:?} is not a sip: or sips: URI"));
        };
        let secure = sip.is_secure();
        let protocol = match sip.param("transport") {
            Some(Some(t)) => {
                let t = t
                    .parse::<Transport>()
                    .map_err(|_| format!("unknown transport {t:?} in {text:?}"))?;
                match t {
                    // RFC 3261 §26.2.2: sips with transport=tcp is TLS.
                    Transport::Tcp | Transport::Tls if secure => Transport::Tls,
                    Transport::Ws | Transport::Wss if secure => Transport::Wss,
                    Transport::Udp if secure => {
                        return Err(format!(
                            "{text:?}: a sips: URI needs TLS, not transport=udp"
                        ));
                    }
                    t => t,
                }
            }
            Some(None) => return Err(format!("transport without a value in {text:?}")),
            None if secure => Transport::Tls,
            None => Transport::Udp,
        };
        let host_text = sip.host().to_string();
        if host_text.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        let host = Host::parse(&host_text).map_err(|e| format!("bad host in {text:?}: {e}"))?;
        let port = match sip.port() {
            Some(p) => NonZeroU16::new(p).ok_or_else(|| format!("port 0 in {text:?}"))?,
            None => default_port(protocol),
        };
        Self::usable(Target {
            host,
            port,
            protocol,
        })
    }

    /// A target must name one host: not 0.0.0.0, ::, or a multicast or
    /// broadcast address.
    fn usable(t: Target) -> Result<Target, String> {
        let bad = match t.host.ip() {
            Some(IpAddr::V4(ip)) => ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast(),
            Some(IpAddr::V6(ip)) => ip.is_unspecified() || ip.is_multicast(),
            None => false,
        };
        if bad {
            return Err(format!(
                "{} does not name one host: give the PBX's address",
                t.host
            ));
        }
        Ok(t)
    }

    /// The port as a number.
    pub fn port(&self) -> u16 {
        self.port.get()
    }

    /// The transport layer's form.
    pub fn addr(&self) -> TargetAddr {
        TargetAddr::new(self.host.to_string(), self.port(), self.protocol)
    }
}

/// `udp:192.0.2.1:5060`, `tls:[2001:db8::1]:5061`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.protocol.via_token().to_ascii_lowercase(),
            self.host.uri_host(),
            self.port
        )
    }
}

fn default_port(t: Transport) -> NonZeroU16 {
    NonZeroU16::new(t.default_port()).unwrap_or(NonZeroU16::MIN)
}

fn parse_port(p: &str) -> Result<NonZeroU16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port {p:?}"));
    }
    match p.parse::<u16>() {
        Ok(0) => Err("port 0".to_owned()),
        Ok(n) => NonZeroU16::new(n).ok_or_else(|| "port 0".to_owned()),
        Err(_) => Err(format!("bad port {p:?} (1-65535)")),
    }
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

/// What the digest server keeps for one account (a user, or an
/// inbound-registration PBX): its HA1 in the proxy's realm for each hash
/// function of the offered algorithms it can answer. A password gives every
/// one of them; a configured `ha1` (MD5) only MD5's.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestSecret {
    /// (hash function, HA1 as lowercase hex), one entry per hash function.
    ha1: Vec<(HashFunction, String)>,
}

impl DigestSecret {
    /// The HA1 for `hash`, when this account can answer with it.
    pub fn ha1(&self, hash: HashFunction) -> Option<&str> {
        self.ha1
            .iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, s)| s.as_str())
    }

    /// The digest server's stored secret for a challenge with `algorithm`.
    pub fn stored(&self, algorithm: Algorithm) -> Option<StoredSecret> {
        self.ha1(algorithm.hash())
            .map(|h| StoredSecret::Ha1(h.to_owned()))
    }

    /// The hash functions this account can answer.
    pub fn hashes(&self) -> impl Iterator<Item = HashFunction> + '_ {
        self.ha1.iter().map(|(h, _)| *h)
    }
}

impl fmt::Debug for DigestSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestSecret")
            .field("hashes", &self.hashes().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn is_md5_hex(h: &str) -> bool {
    h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------

/// `[proxy]` with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPlan {
    /// The registrar's SIP domains (at least one).
    pub domains: Vec<Host>,
    /// The digest realm users authenticate in (default: the first domain).
    pub realm: String,
    /// The host written into Record-Route and Contact instead of the
    /// listeners' addresses, when set (each [`Listener::advertised`] has the
    /// result).
    pub advertise: Option<Host>,
    /// Status sent when no connection matches (300-699).
    pub no_match_status: u16,
    /// Whether phones must authenticate their calls.
    pub authenticate_calls: bool,
    /// The HTTP status endpoint, if any (port never 0).
    pub status_listen: Option<SocketAddr>,
    /// The digest algorithms offered, in order (at least one).
    pub digest_algorithms: Vec<Algorithm>,
    /// CA certificates for TLS to PBXs (`None`: the Mozilla roots).
    pub tls_ca: Option<PathBuf>,
    /// A plain binding over TCP/TLS/WS/WSS is kept with its Contact when
    /// its connection closes (`false`: removed at once).
    pub contact_fallback: bool,
    /// Which request path carries calls (classic or engine).
    pub core: crate::config::CoreKind,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub protocol: Transport,
    /// The socket address (port never 0).
    pub addr: SocketAddr,
    /// Certificate chain and private key (tls and wss only).
    pub tls: Option<TlsFiles>,
    /// The host and port peers are told to use for this socket: the
    /// `advertise` host, else its IP (127.0.0.1 for an unspecified address).
    pub advertised: (String, u16),
}

/// A TLS listener's PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub certificate: PathBuf,
    /// The private key.
    pub private_key: PathBuf,
}

/// `[limits]`, with timers as durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Calls being set up at once (at least 1).
    pub max_calls: usize,
    /// Bindings per user (at least 1).
    pub max_contacts_per_user: usize,
    /// Shortest registration expiry accepted from phones.
    pub min_expires: Duration,
    /// Longest registration expiry granted (not below `min_expires`).
    pub max_expires: Duration,
    /// UDP requests above this size go over TCP instead.
    pub udp_mtu_limit: usize,
    /// REGISTERs per source per 10 s before 503 (`None`: no limit).
    pub register_flood: Option<u32>,
}

/// A phone account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPlan {
    /// The user name (AOR user part in every domain).
    pub name: String,
    /// What the digest server checks its answers against.
    pub secret: DigestSecret,
    /// The connections it may call through.
    pub allowed: Allowed,
}

/// The connections a user may call through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Every connection (no allow list).
    All,
    /// These connections' indexes in [`Plan::connections`], ascending, no
    /// duplicates.
    Only(Vec<usize>),
}

impl Allowed {
    /// Whether connection `index` is allowed.
    pub fn allows(&self, index: usize) -> bool {
        match self {
            Allowed::All => true,
            Allowed::Only(list) => list.binary_search(&index).is_ok(),
        }
    }
}

/// One connection to a PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// What every kind has.
    pub common: Common,
    /// The kind, with its own fields only.
    pub kind: Kind,
}

impl ConnectionPlan {
    /// The PBX's addresses (none for an inbound registration: its PBX's
    /// bindings are live state).
    pub fn targets(&self) -> &[Target] {
        match &self.kind {
            Kind::OutboundRegistration(or) => &or.targets,
            Kind::Trunk(t) => &t.targets,
            Kind::InboundRegistration(_) => &[],
        }
    }

    /// OPTIONS probing (`None` for an inbound registration).
    pub fn probe(&self) -> Option<&Probe> {
        match &self.kind {
            Kind::OutboundRegistration(or) => Some(&or.probe),
            Kind::Trunk(t) => Some(&t.probe),
            Kind::InboundRegistration(_) => None,
        }
    }
}

/// The fields every connection kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// The unique name.
    pub name: String,
    /// Its position in [`Plan::connections`] (routing order).
    pub index: usize,
    /// A disabled connection carries no calls and is no PBX source.
    pub enabled: bool,
    /// Its dial patterns, each a valid, non-empty regex (with its valid
    /// rewrite); compiled together in [`Plan::dial_plan`].
    pub dial_patterns: Vec<siplink_dialplan::Pattern>,
    /// The user that requests from this PBX ring when the dialled user is
    /// not one of ours: an index into [`Plan::users`].
    pub deliver_to: Option<usize>,
    /// Media mode and transcoding (see [`crate::media`]).
    pub media: ConnectionMedia,
}

/// A connection's kind, with only the fields that kind uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The proxy registers to the PBX.
    OutboundRegistration(OutboundRegistration),
    /// INVITEs go straight to the PBX's addresses.
    Trunk(TrunkPlan),
    /// The PBX registers to the proxy.
    InboundRegistration(InboundRegistration),
}

impl Kind {
    /// The configuration's kind.
    pub fn kind(&self) -> ConnectionKind {
        match self {
            Kind::OutboundRegistration(_) => ConnectionKind::OutboundRegistration,
            Kind::Trunk(_) => ConnectionKind::Trunk,
            Kind::InboundRegistration(_) => ConnectionKind::InboundRegistration,
        }
    }
}

/// OPTIONS probing, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Whether probes run (default: on for trunks, off otherwise).
    pub enabled: bool,
    /// Time between probes (at least 1 s).
    pub interval: Duration,
    /// Failures before the PBX counts as down (at least 1).
    pub down_after: u32,
}

/// An outbound-registration connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRegistration {
    /// The PBX's addresses, in failover order (at least one).
    pub targets: Vec<Target>,
    /// Next hop for everything sent to the PBX.
    pub outbound_proxy: Option<Target>,
    /// The PBX's domain (AOR and registrar URI host; default: the first
    /// target's host).
    pub domain: Host,
    /// What is registered, and as whom calls go.
    pub accounts: Accounts,
    /// Requested registration expiry (10 s to 24 h).
    pub expires: Duration,
    /// OPTIONS probing (default off).
    pub probe: Probe,
}

/// The identities an outbound-registration connection registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    /// One registration; every allowed user calls as this identity.
    Shared(Account),
    /// One registration per user (at least one), each with its
    /// [`Account::user`].
    PerUser(Vec<Account>),
}

impl Accounts {
    /// Every account, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        match self {
            Accounts::Shared(a) => std::slice::from_ref(a).iter(),
            Accounts::PerUser(list) => list.iter(),
        }
    }
}

/// One registered identity on a PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The proxy user it belongs to (per-user mode): an index into
    /// [`Plan::users`].
    pub user: Option<usize>,
    /// The user part of the AOR registered (and of calls' From).
    pub username: String,
    /// The user part of our Contact, unique across connections.
    pub contact_user: String,
    /// The digest credentials (authentication ID, secret, realm).
    pub credentials: ClientCredentials,
}

/// A trunk connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkPlan {
    /// The PBX's addresses, in failover order (at least one).
    pub targets: Vec<Target>,
    /// Next hop for everything sent to the PBX.
    pub outbound_proxy: Option<Target>,
    /// The PBX's domain (default: the first target's host).
    pub domain: Host,
    /// Credentials answering the PBX's challenges, if any.
    pub credentials: Option<ClientCredentials>,
    /// OPTIONS probing (default on).
    pub probe: Probe,
    /// The IP addresses whose requests come from this PBX (the targets that
    /// are IP addresses; a host name identifies no source).
    pub sources: Vec<IpAddr>,
}

/// An inbound-registration connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRegistration {
    /// The AOR user part the PBX registers with (not a user's name).
    pub username: String,
    /// The AOR's domain, one of the registrar's; `None`: any of them.
    pub domain: Option<Host>,
    /// What the digest server checks the PBX's answers against.
    pub secret: DigestSecret,
}

/// The whole configuration, validated and typed. See the [module](self).
#[derive(Debug)]
pub struct Plan {
    /// `[proxy]`.
    pub proxy: ProxyPlan,
    /// The listeners (at least one).
    pub listeners: Vec<Listener>,
    /// The users, in configuration order.
    pub users: Vec<UserPlan>,
    /// The connections, in routing order.
    pub connections: Vec<ConnectionPlan>,
    /// `[limits]`.
    pub limits: Limits,
    /// `[media]`: the rtpengine instances and the ng client's timing.
    pub media: MediaPlan,
    dial_plan: DialPlan<usize>,
    connection_index: HashMap<String, usize>,
    user_index: HashMap<String, usize>,
    local: Local,
    registrar_domains: Vec<String>,
}

impl Plan {
    /// Validates `config` and builds its plan, or returns every problem.
    ///
    /// ```
    /// use siplink_proxy::{Config, Plan};
    ///
    /// let mut config = Config::demo();
    /// config.connections[1].addresses = vec!["sip:127.0.0.1:0".into()];
    /// config.users[2].connections = Some(vec!["nowhere".into()]);
    /// let errors = Plan::from_config(&config).unwrap_err();
    /// assert!(errors.has(r#"connections[1] "carrier": addresses[0]"#));
    /// assert!(errors.has(r#"users[2] "1003": connections[0]"#));
    /// ```
    pub fn from_config(config: &Config) -> Result<Plan, PlanErrors> {
        let list = config
            .validate()
            .err()
            .map(|e| e.issues)
            .unwrap_or_default();
        let mut issues = Issues {
            from_validator: list.len(),
            list,
        };
        let plan = Builder {
            config,
            issues: &mut issues,
        }
        .build();
        if plan.is_none() && issues.list.is_empty() {
            // Every path that builds no plan reports why; this is a guard.
            issues.push("config", "the plan could not be built");
        }
        match plan {
            Some(plan) if issues.list.is_empty() => Ok(plan),
            _ => Err(PlanErrors {
                file: None,
                issues: issues.list,
            }),
        }
    }

    /// Reads, parses and plans a file; errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Plan, PlanErrors> {
        let path = path.as_ref();
        let named = |mut e: PlanErrors| {
            e.file = Some(path.to_path_buf());
            e
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            named(PlanErrors {
                file: None,
                issues: vec![ConfigIssue {
                    location: "file".into(),
                    message: e.to_string(),
                }],
            })
        })?;
        let config = Config::from_toml(&text).map_err(named)?;
        Plan::from_config(&config).map_err(named)
    }

    /// The plan of the built-in demo configuration.
    pub fn demo() -> Plan {
        Plan::from_config(&Config::demo()).expect("the built-in demo configuration plans")
    }

    /// The connection called `name`.
    pub fn connection(&self, name: &str) -> Option<&ConnectionPlan> {
        self.connection_index(name).map(|i| &self.connections[i])
    }

    /// The position of the connection called `name`.
    pub fn connection_index(&self, name: &str) -> Option<usize> {
        self.connection_index.get(name).copied()
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&UserPlan> {
        self.user_index(name).map(|i| &self.users[i])
    }

    /// The position of the user called `name`.
    pub fn user_index(&self, name: &str) -> Option<usize> {
        self.user_index.get(name).copied()
    }

    /// The digest secret of an account that authenticates to the proxy: a
    /// user, or an inbound-registration PBX (by the user name it registers).
    pub fn digest_secret(&self, name: &str) -> Option<&DigestSecret> {
        if let Some(u) = self.user(name) {
            return Some(&u.secret);
        }
        self.connections.iter().find_map(|c| match &c.kind {
            Kind::InboundRegistration(ir) if ir.username == name => Some(&ir.secret),
            _ => None,
        })
    }

    /// The enabled connections' dial patterns, compiled (the value of each
    /// route is the connection's index).
    pub fn dial_plan(&self) -> &DialPlan<usize> {
        &self.dial_plan
    }

    /// Our hosts (domains, advertised host, listeners' IPs; 127.0.0.1 and ::1
    /// for an unspecified listener) and our listening ports.
    pub fn local(&self) -> &Local {
        &self.local
    }

    /// The hosts REGISTER requests may name: the domains, the listeners'
    /// specified IPs and the advertised host (lowercase, sorted).
    pub fn registrar_domains(&self) -> &[String] {
        &self.registrar_domains
    }

    /// The host and port we advertise for `protocol`: the listener that
    /// received (`local`), else the first of that protocol, else the first.
    pub fn face(&self, protocol: Transport, local: Option<SocketAddr>) -> (String, u16) {
        self.listeners
            .iter()
            .find(|l| Some(l.addr) == local && l.protocol == protocol)
            .or_else(|| self.listeners.iter().find(|l| l.protocol == protocol))
            .or(self.listeners.first())
            .map(|l| l.advertised.clone())
            .unwrap_or_else(|| ("127.0.0.1".to_owned(), 5060))
    }

    /// The sans-IO engine's settings from this plan (the limits the plan has;
    /// the engine's defaults for the rest).
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            max_calls: self.limits.max_calls,
            no_response_timeout: Some(Duration::from_secs(4)),
            ..EngineConfig::default()
        }
    }

    /// What a reload from `old` to `new` changes.
    ///
    /// ```
    /// use siplink_proxy::{Config, Plan};
    ///
    /// let mut config = Config::demo();
    /// config.connections[1].addresses = vec!["127.0.0.1:5090".into()];
    /// config.limits.max_calls = 100;
    /// let diff = Plan::diff(&Plan::demo(), &Plan::from_config(&config).unwrap());
    /// assert_eq!(diff.changed, ["carrier"]);
    /// assert_eq!(diff.unchanged, ["office-pbx", "branch-pbx"]);
    /// assert_eq!(diff.restart_needed(), ["limits"]);
    /// ```
    pub fn diff(old: &Plan, new: &Plan) -> PlanDiff {
        let mut d = PlanDiff::default();
        for c in &new.connections {
            match old.connection(&c.common.name) {
                None => d.added.push(c.common.name.clone()),
                Some(o) if same_connection(old, o, new, c) => {
                    d.unchanged.push(c.common.name.clone())
                }
                Some(_) => d.changed.push(c.common.name.clone()),
            }
        }
        for c in &old.connections {
            if new.connection(&c.common.name).is_none() {
                d.removed.push(c.common.name.clone());
            }
        }
        d.reordered = common_order(old, new, old) != common_order(old, new, new);
        d.listeners = old.listeners != new.listeners;
        d.domains = old.proxy.domains != new.proxy.domains;
        d.realm = old.proxy.realm != new.proxy.realm;
        d.algorithms_or_tls_ca = old.proxy.digest_algorithms != new.proxy.digest_algorithms
            || old.proxy.tls_ca != new.proxy.tls_ca;
        d.advertise_or_status = old.proxy.advertise != new.proxy.advertise
            || old.proxy.status_listen != new.proxy.status_listen;
        d.limits = old.limits != new.limits;
        d.contact_fallback = old.proxy.contact_fallback != new.proxy.contact_fallback;
        d.core = old.proxy.core != new.proxy.core;
        d.users = users_of(old) != users_of(new);
        d.media = old.media != new.media;
        d
    }
}

/// The names of the connections in both plans, in `p`'s order.
fn common_order<'a>(old: &Plan, new: &Plan, p: &'a Plan) -> Vec<&'a str> {
    p.connections
        .iter()
        .map(|c| c.common.name.as_str())
        .filter(|n| old.connection(n).is_some() && new.connection(n).is_some())
        .collect()
}

/// The users with their allow lists by connection name.
type UserKey<'a> = (&'a str, &'a DigestSecret, Option<Vec<&'a str>>);

fn users_of(p: &Plan) -> Vec<UserKey<'_>> {
    p.users
        .iter()
        .map(|u| {
            let allowed = match &u.allowed {
                Allowed::All => None,
                Allowed::Only(l) => Some(
                    l.iter()
                        .map(|&i| p.connections[i].common.name.as_str())
                        .collect(),
                ),
            };
            (u.name.as_str(), &u.secret, allowed)
        })
        .collect()
}

/// Two connections are the same when every field is, with user and
/// connection indexes compared by the names they stand for (a user added
/// before another shifts indexes but changes no connection).
fn same_connection(op: &Plan, a: &ConnectionPlan, np: &Plan, b: &ConnectionPlan) -> bool {
    let user_name = |p: &Plan, i: Option<usize>| i.map(|i| p.users[i].name.clone());
    let strip = |p: &Plan, c: &ConnectionPlan| {
        let mut c = c.clone();
        c.common.index = 0;
        let deliver = user_name(p, c.common.deliver_to.take());
        let mut users = Vec::new();
        if let Kind::OutboundRegistration(or) = &mut c.kind
            && let Accounts::PerUser(list) = &mut or.accounts
        {
            for a in list {
                users.push(user_name(p, a.user.take()));
            }
        }
        (c, deliver, users)
    };
    strip(op, a) == strip(np, b)
}

/// What a reload changes ([`Plan::diff`]). Connections are matched by name:
/// a renamed connection is one removed and one added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanDiff {
    /// Connections only in the new plan (names, in the new order).
    pub added: Vec<String>,
    /// Connections only in the old plan (in the old order).
    pub removed: Vec<String>,
    /// Connections in both whose plan differs: rebuilt on reload.
    pub changed: Vec<String>,
    /// Connections in both with the same plan: kept as they run.
    pub unchanged: Vec<String>,
    /// The connections in both are in another order (routing order changes).
    pub reordered: bool,
    /// The listeners changed (restart needed).
    pub listeners: bool,
    /// The registrar's domains changed (restart needed).
    pub domains: bool,
    /// The realm changed (restart needed).
    pub realm: bool,
    /// The digest algorithms or the TLS CA changed (restart needed).
    pub algorithms_or_tls_ca: bool,
    /// The advertised host or the status endpoint changed (restart needed).
    pub advertise_or_status: bool,
    /// The limits changed (restart needed).
    pub limits: bool,
    /// `proxy.contact_fallback` changed (restart needed: the registrar
    /// keeps the rule it started with).
    pub contact_fallback: bool,
    /// `proxy.core` changed (restart needed: the request path is chosen at
    /// start).
    pub core: bool,
    /// Users or their secrets or allow lists changed (applied on reload).
    pub users: bool,
    /// `[media]` changed: rtpengine instances or timing (restart needed; a
    /// connection's own media mode shows as that connection [`changed`](Self::changed)).
    pub media: bool,
}

impl PlanDiff {
    /// The parts that take effect only after a restart, named as the
    /// running proxy's reload warning names them: `listen`,
    /// `proxy.domains/realm`, `proxy.digest_algorithms/tls_ca`,
    /// `proxy.advertise/status_listen`, `proxy.contact_fallback`, `limits`,
    /// `media`.
    pub fn restart_needed(&self) -> Vec<&'static str> {
        let mut r = Vec::new();
        if self.listeners {
            r.push("listen");
        }
        if self.domains || self.realm {
            r.push("proxy.domains/realm");
        }
        if self.algorithms_or_tls_ca {
            r.push("proxy.digest_algorithms/tls_ca");
        }
        if self.advertise_or_status {
            r.push("proxy.advertise/status_listen");
        }
        if self.contact_fallback {
            r.push("proxy.contact_fallback");
        }
        if self.core {
            r.push("proxy.core");
        }
        if self.limits {
            r.push("limits");
        }
        if self.media {
            r.push("media");
        }
        r
    }

    /// Whether the reload changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.reordered
            && !self.users
            && self.restart_needed().is_empty()
    }
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

struct Builder<'a> {
    config: &'a Config,
    issues: &'a mut Issues,
}

impl Builder<'_> {
    fn build(mut self) -> Option<Plan> {
        let proxy = self.proxy();
        let listeners = self.listeners(proxy.advertise.as_ref());
        let limits = self.limits();
        let user_index: HashMap<String, usize> = self
            .config
            .users
            .iter()
            .enumerate()
            .rev()
            .map(|(i, u)| (u.name.clone(), i))
            .collect();
        let connection_index: HashMap<String, usize> = self
            .config
            .connections
            .iter()
            .enumerate()
            .rev()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let users = self.users(&proxy, &connection_index);
        let connections: Vec<Option<ConnectionPlan>> = self
            .config
            .connections
            .iter()
            .enumerate()
            .map(|(i, c)| self.connection(i, c, &proxy, &user_index, &listeners))
            .collect();
        self.unique_inbound_aors(&connections);
        let dial_plan = self.dial_plan(&connections);
        let (local, registrar_domains) = identity(&proxy, &listeners);
        Some(Plan {
            proxy,
            listeners,
            users: users.into_iter().collect::<Option<Vec<_>>>()?,
            connections: connections.into_iter().collect::<Option<Vec<_>>>()?,
            limits,
            media: MediaPlan::from_config(&self.config.media),
            dial_plan: dial_plan?,
            connection_index,
            user_index,
            local,
            registrar_domains,
        })
    }

    fn push(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.issues.push(location, message);
    }

    fn proxy(&mut self) -> ProxyPlan {
        let p = &self.config.proxy;
        let mut domains = Vec::new();
        for (i, d) in p.domains.iter().enumerate() {
            match Host::parse(d) {
                Ok(h) => domains.push(h),
                Err(e) => self.push(format!("proxy.domains[{i}]"), e),
            }
        }
        if p.domains.is_empty() {
            self.push("proxy.domains", "at least one domain is needed");
        }
        let realm = p.realm().to_owned();
        if realm.is_empty()
            || realm
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            self.push(
                "proxy.realm",
                format!("{realm:?} is not a usable realm (printable, no '\"' or '\\')"),
            );
        }
        let advertise = match &p.advertise {
            Some(a) => match Host::parse(a) {
                Ok(h) => Some(h),
                Err(e) => {
                    self.push("proxy.advertise", e);
                    None
                }
            },
            None => None,
        };
        if let Some(s) = p.status_listen
            && s.port() == 0
        {
            self.push("proxy.status_listen", format!("port 0 in {s}"));
        }
        let mut digest_algorithms = Vec::new();
        for (i, a) in p.digest_algorithms.iter().enumerate() {
            match a.parse::<Algorithm>() {
                Ok(a) if !digest_algorithms.contains(&a) => digest_algorithms.push(a),
                Ok(_) => self.push(
                    format!("proxy.digest_algorithms[{i}]"),
                    format!("{a} is listed twice"),
                ),
                Err(_) => self.push(
                    format!("proxy.digest_algorithms[{i}]"),
                    format!("unknown algorithm {a:?}"),
                ),
            }
        }
        if p.digest_algorithms.is_empty() {
            self.push(
                "proxy.digest_algorithms",
                "at least one algorithm is needed",
            );
        }
        ProxyPlan {
            domains,
            realm,
            advertise,
            no_match_status: p.no_match_status,
            authenticate_calls: p.authenticate_calls,
            status_listen: p.status_listen,
            digest_algorithms,
            tls_ca: p.tls_ca.clone(),
            contact_fallback: p.contact_fallback,
            core: p.core,
        }
    }

    fn listeners(&mut self, advertise: Option<&Host>) -> Vec<Listener> {
        let mut out = Vec::new();
        for (i, l) in self.config.listeners.iter().enumerate() {
            let at = format!("listen[{i}] ({} {})", l.transport.via_token(), l.address);
            if l.address.port() == 0 {
                self.push(at.clone(), "port 0: give the port phones and PBXs send to");
            }
            let tls = match (&l.certificate, &l.private_key) {
                (Some(c), Some(k)) if l.transport.is_secure() => Some(TlsFiles {
                    certificate: c.clone(),
                    private_key: k.clone(),
                }),
                _ => None,
            };
            let host = match advertise {
                Some(h) => h.to_string(),
                None if l.address.ip().is_unspecified() => "127.0.0.1".to_owned(),
                None => l.address.ip().to_string(),
            };
            out.push(Listener {
                protocol: l.transport,
                addr: l.address,
                tls,
                advertised: (host, l.address.port()),
            });
        }
        if out.is_empty() {
            self.push("listen", "at least one listener is needed");
        }
        out
    }

    fn limits(&mut self) -> Limits {
        let l = &self.config.limits;
        if l.max_contacts_per_user == 0 {
            self.push(
                "limits.max_contacts_per_user",
                "must be at least 1: with 0 no phone could register",
            );
        }
        if l.max_calls == 0 {
            self.push("limits.max_calls", "must be at least 1");
        }
        Limits {
            max_calls: l.max_calls,
            max_contacts_per_user: l.max_contacts_per_user,
            min_expires: Duration::from_secs(l.min_expires.into()),
            max_expires: Duration::from_secs(l.max_expires.into()),
            udp_mtu_limit: l.udp_mtu_limit,
            register_flood: (l.register_flood > 0).then_some(l.register_flood),
        }
    }

    /// The digest server's secret for `name`, from a password or an MD5 HA1.
    fn server_secret(
        &mut self,
        at: &str,
        name: &str,
        password: Option<&str>,
        ha1: Option<&str>,
        proxy: &SecretContext,
    ) -> Option<DigestSecret> {
        let mut hashes: Vec<HashFunction> = Vec::new();
        for a in &proxy.digest_algorithms {
            if !hashes.contains(&a.hash()) {
                hashes.push(a.hash());
            }
        }
        match (password, ha1) {
            (Some(_), Some(_)) => {
                self.push(at, "give password or ha1, not both");
                None
            }
            (Some(p), None) => Some(DigestSecret {
                ha1: hashes
                    .iter()
                    .map(|&h| {
                        (
                            h,
                            siplink_auth::digest::ha1(h, name, &proxy.realm, p).to_string(),
                        )
                    })
                    .collect(),
            }),
            (None, Some(h)) if !is_md5_hex(h) => {
                self.push(format!("{at}: ha1"), "ha1 must be 32 hex digits (MD5)");
                None
            }
            (None, Some(h)) => {
                if !hashes.contains(&HashFunction::Md5) && !hashes.is_empty() {
                    self.push(
                        format!("{at}: ha1"),
                        "an MD5 ha1 cannot answer the digest algorithms offered (proxy.digest_algorithms has no MD5): give the password",
                    );
                    return None;
                }
                Some(DigestSecret {
                    ha1: vec![(HashFunction::Md5, h.to_ascii_lowercase())],
                })
            }
            (None, None) => {
                self.push(
                    format!("{at}: password"),
                    "missing credentials: give password or ha1",
                );
                None
            }
        }
    }

    fn users(
        &mut self,
        proxy: &ProxyPlan,
        connections: &HashMap<String, usize>,
    ) -> Vec<Option<UserPlan>> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for (i, u) in self.config.users.iter().enumerate() {
            let at = format!("users[{i}] {:?}", u.name);
            if !valid_user(&u.name) {
                self.push(
                    at.clone(),
                    "name must be a non-empty SIP user part (letters, digits, -_.!~*'()+)",
                );
            }
            if seen.insert(u.name.as_str(), i).is_some() {
                self.push(at.clone(), "duplicate user name");
            }
            let secret = self.server_secret(
                &at,
                &u.name,
                u.password.as_deref(),
                u.ha1.as_deref(),
                &SecretContext::of(proxy),
            );
            let allowed = match &u.connections {
                None => Some(Allowed::All),
                Some(names) => {
                    let mut list = Vec::new();
                    let mut ok = true;
                    for (j, c) in names.iter().enumerate() {
                        match connections.get(c) {
                            Some(&k) => list.push(k),
                            None => {
                                ok = false;
                                self.push(
                                    format!("{at}: connections[{j}]"),
                                    format!("no connection named {c:?}"),
                                );
                            }
                        }
                    }
                    list.sort_unstable();
                    list.dedup();
                    ok.then_some(Allowed::Only(list))
                }
            };
            out.push(match (secret, allowed) {
                (Some(secret), Some(allowed)) => Some(UserPlan {
                    name: u.name.clone(),
                    secret,
                    allowed,
                }),
                _ => None,
            });
        }
        out
    }

    fn connection(
        &mut self,
        index: usize,
        c: &ConnectionConfig,
        proxy: &ProxyPlan,
        users: &HashMap<String, usize>,
        listeners: &[Listener],
    ) -> Option<ConnectionPlan> {
        let at = format!("connections[{index}] {:?}", c.name);
        let mut ok = true;
        if c.name.is_empty() || c.name.chars().any(|ch| ch.is_control() || ch == '"') {
            self.push(at.clone(), "name must be non-empty printable text");
            ok = false;
        }
        if self.config.connections[..index]
            .iter()
            .any(|o| o.name == c.name)
        {
            self.push(at.clone(), "duplicate connection name");
            ok = false;
        }
        let mut dial_patterns = Vec::new();
        for (j, p) in c.dial_patterns.iter().enumerate() {
            let pattern = match p {
                DialPatternConfig::Plain(p) => siplink_dialplan::Pattern::new(p.clone()),
                DialPatternConfig::Rewrite { pattern, rewrite } => {
                    siplink_dialplan::Pattern::new(pattern.clone()).with_rewrite(rewrite.clone())
                }
            };
            let loc = format!("{at}: dial_patterns[{j}]");
            if p.pattern().trim().is_empty() {
                self.push(
                    loc,
                    "empty dial pattern: it matches no number (remove it, or give a regex)",
                );
                ok = false;
                continue;
            }
            if let Err(e) = DialPlan::new([(0usize, vec![pattern.clone()])]) {
                self.push(loc, format!("bad pattern {:?}: {e}", p.pattern()));
                ok = false;
                continue;
            }
            dial_patterns.push(pattern);
        }
        let deliver_to = match &c.deliver_to {
            Some(d) => match users.get(d) {
                Some(&u) => Some(u),
                None => {
                    self.push(format!("{at}: deliver_to"), format!("no user named {d:?}"));
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let kind = match c.kind {
            ConnectionKind::OutboundRegistration => self
                .outbound_registration(&at, c, users)
                .map(Kind::OutboundRegistration),
            ConnectionKind::Trunk => self.trunk(&at, c).map(Kind::Trunk),
            ConnectionKind::InboundRegistration => self
                .inbound_registration(&at, c, proxy, users, listeners)
                .map(Kind::InboundRegistration),
        };
        let kind = kind?;
        ok.then_some(ConnectionPlan {
            common: Common {
                name: c.name.clone(),
                index,
                enabled: c.enabled,
                dial_patterns,
                deliver_to,
                media: ConnectionMedia {
                    mode: c.media,
                    transcode: c.transcode,
                },
            },
            kind,
        })
    }

    /// The fields a kind does not use must not be set: a value there is a
    /// mistake that would otherwise be ignored without a word.
    fn not_for(&mut self, at: &str, c: &ConnectionConfig, fields: &[&str]) -> bool {
        let mut ok = true;
        for &f in fields {
            let set = match f {
                "addresses" => !c.addresses.is_empty(),
                "transport" => c.transport.is_some(),
                "auth_username" => c.auth_username.is_some(),
                "realm" => c.realm.is_some(),
                "outbound_proxy" => c.outbound_proxy.is_some(),
                "registration" => c.registration != RegistrationOptions::default(),
                "accounts" => !c.accounts.is_empty(),
                "probe" => c.probe.enabled == Some(true),
                _ => false,
            };
            if set {
                self.push(
                    format!("{at}: {f}"),
                    format!("does not apply to a {} connection", c.kind),
                );
                ok = false;
            }
        }
        ok
    }

    fn targets(&mut self, at: &str, c: &ConnectionConfig) -> Option<(Vec<Target>, Option<Target>)> {
        let default = c.transport.unwrap_or(Transport::Udp);
        let mut ok = true;
        if matches!(default, Transport::Ws | Transport::Wss) {
            self.push(
                format!("{at}: transport"),
                "connections use udp, tcp or tls",
            );
            ok = false;
        }
        if c.addresses.is_empty() {
            self.push(
                format!("{at}: addresses"),
                format!("a {} connection needs the PBX's address", c.kind),
            );
            ok = false;
        }
        let mut targets = Vec::new();
        for (j, a) in c.addresses.iter().enumerate() {
            match Target::parse(a, default) {
                Ok(t) if matches!(t.protocol, Transport::Ws | Transport::Wss) => {
                    self.push(
                        format!("{at}: addresses[{j}]"),
                        "connections use udp, tcp or tls",
                    );
                    ok = false;
                }
                Ok(t) => targets.push(t),
                Err(e) => {
                    self.push(format!("{at}: addresses[{j}]"), e);
                    ok = false;
                }
            }
        }
        let outbound_proxy = match &c.outbound_proxy {
            Some(p) => match Target::parse(p, default) {
                Ok(t) if !matches!(t.protocol, Transport::Ws | Transport::Wss) => Some(t),
                Ok(_) => {
                    self.push(
                        format!("{at}: outbound_proxy"),
                        "connections use udp, tcp or tls",
                    );
                    ok = false;
                    None
                }
                Err(e) => {
                    self.push(format!("{at}: outbound_proxy"), e);
                    ok = false;
                    None
                }
            },
            None => None,
        };
        ok.then_some((targets, outbound_proxy))
    }

    /// The PBX's domain: `domain`, else the first target's host.
    fn pbx_domain(&mut self, at: &str, c: &ConnectionConfig, targets: &[Target]) -> Option<Host> {
        match &c.domain {
            Some(d) => match Host::parse(d) {
                Ok(h) => Some(h),
                Err(e) => {
                    self.push(format!("{at}: domain"), e);
                    None
                }
            },
            None => targets.first().map(|t| t.host.clone()),
        }
    }

    fn probe(&mut self, at: &str, c: &ConnectionConfig) -> Option<Probe> {
        if c.probe.interval == 0 || c.probe.down_after == 0 {
            self.push(
                format!("{at}: probe"),
                "interval and down_after must be at least 1",
            );
            return None;
        }
        Some(Probe {
            enabled: c.probe.enabled.unwrap_or(c.kind == ConnectionKind::Trunk),
            interval: Duration::from_secs(c.probe.interval),
            down_after: c.probe.down_after,
        })
    }

    /// Client credentials: the pair for a password (limited to `realm` when
    /// given), or an MD5 HA1, which needs the realm it was made in.
    fn client_credentials(
        &mut self,
        at: &str,
        auth_username: &str,
        password: Option<&str>,
        ha1: Option<&str>,
        realm: Option<&str>,
    ) -> Option<ClientCredentials> {
        if auth_username.is_empty() || auth_username.chars().any(|c| c.is_control() || c == '"') {
            self.push(
                format!("{at}: auth_username"),
                format!("{auth_username:?} is not a usable digest user name"),
            );
            return None;
        }
        match (password, ha1) {
            (Some(_), Some(_)) => {
                self.push(at, "give password or ha1, not both");
                None
            }
            (Some(p), None) => {
                let c = ClientCredentials::password(auth_username, p);
                Some(match realm {
                    Some(r) => c.for_realm(r),
                    None => c,
                })
            }
            (None, Some(h)) if !is_md5_hex(h) => {
                self.push(format!("{at}: ha1"), "ha1 must be 32 hex digits (MD5)");
                None
            }
            (None, Some(h)) => match realm {
                Some(r) => Some(ClientCredentials::ha1(
                    auth_username,
                    r,
                    h.to_ascii_lowercase(),
                    Algorithm::Md5,
                )),
                None => {
                    self.push(
                        format!("{at}: realm"),
                        "an ha1 is valid only in the realm it was made in: set realm (the PBX's)",
                    );
                    None
                }
            },
            (None, None) => {
                self.push(
                    format!("{at}: password"),
                    "missing credentials: give password or ha1",
                );
                None
            }
        }
    }

    fn outbound_registration(
        &mut self,
        at: &str,
        c: &ConnectionConfig,
        users: &HashMap<String, usize>,
    ) -> Option<OutboundRegistration> {
        let targets = self.targets(at, c);
        let domain = targets
            .as_ref()
            .and_then(|(t, _)| self.pbx_domain(at, c, t));
        let probe = self.probe(at, c);
        let expires = c.registration.expires;
        let mut ok = true;
        if !(10..=86_400).contains(&expires) {
            self.push(
                format!("{at}: registration.expires"),
                format!("{expires} s is outside 10..=86400"),
            );
            ok = false;
        }
        if let Some(cu) = &c.registration.contact_user
            && !valid_uri_user(cu)
        {
            self.push(
                format!("{at}: registration.contact_user"),
                format!("{cu:?} is not a SIP user part"),
            );
            ok = false;
        }
        let accounts = match c.registration.mode {
            RegistrationMode::Shared => {
                ok &= self.not_for(at, c, &["accounts"]);
                match &c.username {
                    None => {
                        self.push(
                            format!("{at}: username"),
                            "outbound registration needs the user name to register as",
                        );
                        None
                    }
                    Some(u) if !valid_uri_user(u) => {
                        self.push(
                            format!("{at}: username"),
                            format!("{u:?} is not a SIP user part"),
                        );
                        None
                    }
                    Some(u) => self
                        .client_credentials(
                            at,
                            c.auth_username.as_deref().unwrap_or(u),
                            c.password.as_deref(),
                            c.ha1.as_deref(),
                            c.realm.as_deref(),
                        )
                        .map(|credentials| {
                            Accounts::Shared(Account {
                                user: None,
                                username: u.clone(),
                                contact_user: c
                                    .registration
                                    .contact_user
                                    .clone()
                                    .unwrap_or_else(|| u.clone()),
                                credentials,
                            })
                        }),
                }
            }
            RegistrationMode::PerUser => {
                for (f, set) in [
                    ("username", c.username.is_some()),
                    ("auth_username", c.auth_username.is_some()),
                    ("password", c.password.is_some()),
                    ("ha1", c.ha1.is_some()),
                    (
                        "registration.contact_user",
                        c.registration.contact_user.is_some(),
                    ),
                ] {
                    if set {
                        self.push(
                            format!("{at}: {f}"),
                            "per-user registration takes each account's own (accounts[..])",
                        );
                        ok = false;
                    }
                }
                if c.accounts.is_empty() {
                    self.push(
                        format!("{at}: accounts"),
                        "per-user registration needs accounts",
                    );
                    ok = false;
                }
                let mut list = Vec::new();
                for (j, a) in c.accounts.iter().enumerate() {
                    match self.account(&format!("{at}: accounts[{j}]"), c, a, users) {
                        Some(a) => list.push(a),
                        None => ok = false,
                    }
                }
                Some(Accounts::PerUser(list))
            }
        };
        let (targets, outbound_proxy) = targets?;
        let or = OutboundRegistration {
            targets,
            outbound_proxy,
            domain: domain?,
            accounts: accounts?,
            expires: Duration::from_secs(expires.into()),
            probe: probe?,
        };
        ok.then_some(or)
    }

    fn account(
        &mut self,
        at: &str,
        c: &ConnectionConfig,
        a: &AccountConfig,
        users: &HashMap<String, usize>,
    ) -> Option<Account> {
        let user = users.get(&a.user).copied();
        if user.is_none() {
            self.push(at, format!("no user named {:?}", a.user));
        }
        if c.accounts
            .iter()
            .take_while(|o| !std::ptr::eq(*o, a))
            .any(|o| o.user == a.user)
        {
            self.push(
                format!("{at}: user"),
                format!("{:?} has another account on this connection", a.user),
            );
            return None;
        }
        if !valid_uri_user(&a.username) {
            self.push(
                format!("{at}: username"),
                format!("{:?} is not a SIP user part", a.username),
            );
            return None;
        }
        let credentials = self.client_credentials(
            at,
            a.auth_username.as_deref().unwrap_or(&a.username),
            a.password.as_deref(),
            a.ha1.as_deref(),
            c.realm.as_deref(),
        )?;
        Some(Account {
            user: Some(user?),
            username: a.username.clone(),
            contact_user: format!("{}-{}", c.name, a.user),
            credentials,
        })
    }

    fn trunk(&mut self, at: &str, c: &ConnectionConfig) -> Option<TrunkPlan> {
        let mut ok = self.not_for(at, c, &["registration", "accounts"]);
        let targets = self.targets(at, c);
        let domain = targets
            .as_ref()
            .and_then(|(t, _)| self.pbx_domain(at, c, t));
        let probe = self.probe(at, c);
        let credentials = match (&c.username, c.password.is_some() || c.ha1.is_some()) {
            (Some(u), true) => {
                let auth = c.auth_username.as_deref().unwrap_or(u);
                let creds = self.client_credentials(
                    at,
                    auth,
                    c.password.as_deref(),
                    c.ha1.as_deref(),
                    c.realm.as_deref(),
                );
                ok &= creds.is_some();
                creds
            }
            (None, true) => {
                self.push(format!("{at}: username"), "a password needs a username");
                ok = false;
                None
            }
            (_, false) => {
                ok &= self.not_for(at, c, &["auth_username", "realm"]);
                None
            }
        };
        let (targets, outbound_proxy) = targets?;
        let sources = targets.iter().filter_map(|t| t.host.ip()).collect();
        let t = TrunkPlan {
            targets,
            outbound_proxy,
            domain: domain?,
            credentials,
            probe: probe?,
            sources,
        };
        ok.then_some(t)
    }

    fn inbound_registration(
        &mut self,
        at: &str,
        c: &ConnectionConfig,
        proxy: &ProxyPlan,
        users: &HashMap<String, usize>,
        listeners: &[Listener],
    ) -> Option<InboundRegistration> {
        let mut ok = self.not_for(
            at,
            c,
            &[
                "addresses",
                "transport",
                "auth_username",
                "realm",
                "outbound_proxy",
                "registration",
                "accounts",
                "probe",
            ],
        );
        let username = match &c.username {
            None => {
                self.push(
                    format!("{at}: username"),
                    "inbound registration needs the user name the PBX registers with",
                );
                None
            }
            Some(u) if !valid_user(u) => {
                self.push(
                    format!("{at}: username"),
                    format!("{u:?} is not a SIP user part"),
                );
                None
            }
            Some(u) if users.contains_key(u) => {
                self.push(
                    format!("{at}: username"),
                    format!("{u:?} is also a user's name: the PBX's AOR must be its own"),
                );
                None
            }
            Some(u) => Some(u.clone()),
        };
        let domain = match &c.domain {
            None => None,
            Some(d) => match Host::parse(d) {
                Ok(h) => {
                    let (_, ours) = identity(proxy, listeners);
                    if !ours.iter().any(|o| *o == h.to_string()) {
                        self.push(
                            format!("{at}: domain"),
                            format!("{h} is not one of the registrar's domains (proxy.domains, advertise, a listener's address): the PBX could not register under it"),
                        );
                        ok = false;
                    }
                    Some(h)
                }
                Err(e) => {
                    self.push(format!("{at}: domain"), e);
                    ok = false;
                    None
                }
            },
        };
        let secret = self.server_secret(
            at,
            username.as_deref().unwrap_or_default(),
            c.password.as_deref(),
            c.ha1.as_deref(),
            &SecretContext::of(proxy),
        );
        let ir = InboundRegistration {
            username: username?,
            domain,
            secret: secret?,
        };
        ok.then_some(ir)
    }

    /// Two inbound-registration connections with the same AOR could not be
    /// told apart.
    fn unique_inbound_aors(&mut self, connections: &[Option<ConnectionPlan>]) {
        let mut seen: Vec<(&str, Option<&Host>, usize)> = Vec::new();
        for c in connections.iter().flatten() {
            if let Kind::InboundRegistration(ir) = &c.kind {
                if let Some((_, _, j)) = seen.iter().find(|(u, d, _)| {
                    *u == ir.username
                        && (d.is_none() || ir.domain.is_none() || *d == ir.domain.as_ref())
                }) {
                    let other = &self.config.connections[*j].name;
                    self.push(
                        format!("connections[{}] {:?}: username", c.common.index, c.common.name),
                        format!(
                            "{:?} is also the AOR of connection {other:?}: their registrations could not be told apart",
                            ir.username
                        ),
                    );
                }
                seen.push((&ir.username, ir.domain.as_ref(), c.common.index));
            }
        }
    }

    fn dial_plan(&mut self, connections: &[Option<ConnectionPlan>]) -> Option<DialPlan<usize>> {
        let mut builder = DialPlan::builder();
        for c in connections.iter().flatten() {
            if c.common.enabled {
                builder = builder.connection(c.common.index, c.common.dial_patterns.clone());
            }
        }
        match builder.build() {
            Ok(p) => Some(p),
            Err(e) => {
                self.push("connections", format!("dial patterns: {e}"));
                None
            }
        }
    }
}

/// What [`Builder::server_secret`] needs of `[proxy]`.
struct SecretContext {
    realm: String,
    digest_algorithms: Vec<Algorithm>,
}

impl SecretContext {
    fn of(p: &ProxyPlan) -> SecretContext {
        SecretContext {
            realm: p.realm.clone(),
            digest_algorithms: if p.digest_algorithms.is_empty() {
                vec![Algorithm::Md5]
            } else {
                p.digest_algorithms.clone()
            },
        }
    }
}

/// `Local` and the registrar's domains, as the running proxy builds them
/// from its bound listeners.
fn identity(proxy: &ProxyPlan, listeners: &[Listener]) -> (Local, Vec<String>) {
    let mut hosts: Vec<String> = proxy.domains.iter().map(Host::to_string).collect();
    hosts.extend(proxy.advertise.as_ref().map(Host::to_string));
    let mut domains = hosts.clone();
    let mut ports = Vec::new();
    for l in listeners {
        ports.push(l.addr.port());
        if l.addr.ip().is_unspecified() {
            hosts.push("127.0.0.1".into());
            hosts.push("::1".into());
        } else {
            hosts.push(l.addr.ip().to_string());
            domains.push(l.addr.ip().to_string());
        }
    }
    domains.sort();
    domains.dedup();
    (Local::new(hosts, ports), domains)
}

/// A proxy user name (the validator's rule).
fn valid_user(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b))
}

/// A SIP URI user part (RFC 3261 `user`: unreserved, `&=+$,;?/`, and escapes).
fn valid_uri_user(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b))
}

// ---------------------------------------------------------------------------
// The engine's view
// ---------------------------------------------------------------------------

/// The driver's live state the plan cannot know: registrations and their
/// bindings. `()` is "nothing registered yet" (only static sources count).
pub trait LiveState {
    /// The IP address of the registrar holding the registration of
    /// connection `connection` whose Contact user is `contact_user`, while
    /// it is registered.
    fn registrar_of(&self, connection: usize, contact_user: &str) -> Option<IpAddr>;
    /// Whether `origin` is the flow or source address of a binding of
    /// inbound-registration connection `connection`'s PBX.
    fn is_registered_pbx(&self, connection: usize, origin: &Origin) -> bool;
}

impl LiveState for () {
    fn registrar_of(&self, _: usize, _: &str) -> Option<IpAddr> {
        None
    }
    fn is_registered_pbx(&self, _: usize, _: &Origin) -> bool {
        false
    }
}

/// The engine's [`View`] over a plan and the driver's [`LiveState`], with
/// the secret key of flow tokens and dialog MACs (keyed SHA-256).
#[derive(Debug)]
pub struct PlanView<L = ()> {
    plan: std::sync::Arc<Plan>,
    live: L,
    key: [u8; 32],
}

impl<L: LiveState> PlanView<L> {
    /// A view of `plan` with `live` state, keyed with `key` (random per
    /// process: tokens do not outlive it).
    pub fn new(plan: std::sync::Arc<Plan>, live: L, key: [u8; 32]) -> PlanView<L> {
        PlanView { plan, live, key }
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Replaces the plan (a reload), keeping the key: tokens and MACs
    /// already handed out stay valid.
    pub fn set_plan(&mut self, plan: std::sync::Arc<Plan>) {
        self.plan = plan;
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> String {
        let digest = siplink_auth::digest::hash_joined(
            HashFunction::Sha256,
            &[&self.key, label, data, &self.key],
        );
        digest.to_string()[..16].to_owned()
    }
}

impl<L: LiveState> View for PlanView<L> {
    fn local(&self) -> &Local {
        &self.plan.local
    }

    fn is_registrar_domain(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.plan
            .registrar_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
    }

    fn is_user(&self, name: &str) -> bool {
        self.plan.user_index.contains_key(name)
    }

    /// In the running proxy's order: our registered Contact called by the
    /// registrar holding it; a static source (a trunk's or outbound
    /// registration's IP address; on loopback the port must match too); an
    /// inbound-registration PBX's binding.
    fn connection_of(&self, origin: &Origin, request_user: Option<&str>) -> Option<PbxSource> {
        let plan = &self.plan;
        let source = |c: &ConnectionPlan, user: Option<usize>| PbxSource {
            connection: c.common.name.clone(),
            deliver_to: user
                .or(c.common.deliver_to)
                .map(|u| plan.users[u].name.clone()),
        };
        let enabled = || plan.connections.iter().filter(|c| c.common.enabled);
        if let Some(ru) = request_user {
            for c in enabled() {
                if let Kind::OutboundRegistration(or) = &c.kind
                    && let Some(a) = or.accounts.iter().find(|a| a.contact_user == ru)
                    && self.live.registrar_of(c.common.index, &a.contact_user)
                        == Some(origin.peer.ip())
                {
                    return Some(source(c, a.user));
                }
            }
        }
        let peer = origin.peer;
        for c in enabled() {
            let hit = c.targets().iter().any(|t| {
                t.host.ip() == Some(peer.ip())
                    && (!peer.ip().is_loopback() || t.port() == peer.port())
            });
            if hit {
                return Some(source(c, None));
            }
        }
        enabled()
            .filter(|c| matches!(c.kind, Kind::InboundRegistration(_)))
            .find(|c| self.live.is_registered_pbx(c.common.index, origin))
            .map(|c| source(c, None))
    }

    fn authenticate_calls(&self) -> bool {
        self.plan.proxy.authenticate_calls
    }

    fn realm(&self) -> &str {
        &self.plan.proxy.realm
    }

    fn face(&self, protocol: Transport, local: Option<SocketAddr>) -> (String, u16) {
        self.plan.face(protocol, local)
    }

    fn flow_token(&self, flow: FlowId) -> String {
        let id = flow.get();
        format!("fl{id:x}x{}", self.mac(b"flow", &id.to_be_bytes()))
    }

    fn flow_from_token(&self, token: &str) -> Option<FlowId> {
        let (id, mac) = token.strip_prefix("fl")?.split_once('x')?;
        if id.is_empty() || id.len() > 16 || mac.len() != 16 {
            return None;
        }
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let id = u64::from_str_radix(id, 16).ok()?;
        (self.mac(b"flow", &id.to_be_bytes()) == mac).then(|| FlowId::from_raw(id))
    }

    fn dialog_mac(&self, call_id: &str) -> String {
        self.mac(b"sld", call_id.as_bytes())
    }

    /// A trunk's credentials; an outbound registration's shared account,
    /// or the account of `user` in per-user mode.
    fn credentials(&self, connection: &str, user: Option<&str>) -> Option<ClientCredentials> {
        let c = self.plan.connection(connection)?;
        match &c.kind {
            Kind::Trunk(t) => t.credentials.clone(),
            Kind::OutboundRegistration(or) => match &or.accounts {
                Accounts::Shared(a) => Some(a.credentials.clone()),
                Accounts::PerUser(list) => {
                    let u = self.plan.user_index(user?)?;
                    list.iter()
                        .find(|a| a.user == Some(u))
                        .map(|a| a.credentials.clone())
                }
            },
            Kind::InboundRegistration(_) => None,
        }
    }

    /// An outbound registration's registered identity (its shared account,
    /// or the account of `user` in per-user mode) at its domain.
    fn caller_identity(&self, connection: &str, user: Option<&str>) -> Option<String> {
        let c = self.plan.connection(connection)?;
        let Kind::OutboundRegistration(or) = &c.kind else {
            return None;
        };
        let account = match &or.accounts {
            Accounts::Shared(a) => a,
            Accounts::PerUser(list) => {
                let u = self.plan.user_index(user?)?;
                list.iter().find(|a| a.user == Some(u))?
            }
        };
        Some(format!("sip:{}@{}", account.username, or.domain.uri_host()))
    }

    /// The connection's `media`/`transcode`; off for an unknown connection
    /// or when `[media]` lists no rtpengine (nothing could answer).
    fn connection_media(&self, connection: &str) -> ConnectionMedia {
        if self.plan.media.instances.is_empty() {
            return ConnectionMedia::default();
        }
        self.plan
            .connection(connection)
            .map(|c| c.common.media)
            .unwrap_or_default()
    }
}
