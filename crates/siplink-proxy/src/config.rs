//! The proxy's configuration: TOML through serde, or built in code.
//!
//! A [`Config`] is plain data. [`Config::validate`] checks everything the
//! proxy relies on and reports **every** problem at once, each naming the file
//! (when loaded from one), the connection or user, and the field:
//!
//! ```text
//! proxy.toml: connections[1] "carrier": dial_patterns[0]: bad pattern "4[0-9": ... at offset 1
//! ```
//!
//! See `docs/connections.md` for the user guide and `examples/*.toml` for
//! complete files.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use siplink_message::uri::Uri;
use siplink_message::{TargetAddr, Transport};

use crate::media::{MediaConfig, MediaMode};

/// The whole configuration of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The proxy itself: domains, realm, routing defaults.
    #[serde(default)]
    pub proxy: ProxySection,
    /// Where the proxy listens (TOML: `[[listen]]`).
    #[serde(default, rename = "listen")]
    pub listeners: Vec<ListenerConfig>,
    /// The phones that register to the proxy (TOML: `[[users]]`).
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// The connections to PBXs, in routing order (TOML: `[[connections]]`).
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    /// Size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The failed-attempt policy (TOML: `[security]`).
    #[serde(default)]
    pub security: SecurityConfig,
    /// Media relays (rtpengine) and their timing (TOML: `[media]`); see
    /// [`crate::media`]. Not acted on by the running proxy yet.
    #[serde(default, skip_serializing_if = "MediaConfig::is_default")]
    pub media: MediaConfig,
}

/// `[proxy]`: who the proxy is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// The SIP domains the proxy is registrar for. Requests whose Request-URI
    /// host is one of these (or one of the proxy's own addresses) are ours.
    pub domains: Vec<String>,
    /// Digest realm for users (default: the first domain).
    #[serde(default)]
    pub realm: Option<String>,
    /// Host (name or IP) written into Record-Route and Contact headers, when
    /// the listeners' addresses are not what peers should use (NAT, 0.0.0.0).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Status sent when no connection has a matching dial pattern (default 404).
    #[serde(default = "default_no_match")]
    pub no_match_status: u16,
    /// Whether users must authenticate their calls (default true). Turning it
    /// off makes the proxy an open relay for anyone who can reach it.
    #[serde(default = "yes")]
    pub authenticate_calls: bool,
    /// Address of the HTTP status endpoint (`GET /status` → JSON), if any.
    /// Keep it on loopback (`127.0.0.1:8081`): any other address needs
    /// `status_token_file` or `status_token_env`.
    #[serde(default)]
    pub status_listen: Option<SocketAddr>,
    /// File holding the bearer token the status endpoint asks for (anything
    /// but `/healthz`). Without this or `status_token_env`, a random token is
    /// made at start ([`Proxy::status_token`](crate::Proxy::status_token)).
    #[serde(default)]
    pub status_token_file: Option<PathBuf>,
    /// Name of the environment variable holding that token.
    #[serde(default)]
    pub status_token_env: Option<String>,
    /// Digest algorithms offered to phones and PBXs, one challenge each, in
    /// this order (default `["MD5"]`). Clients differ in which of several
    /// challenges they answer: JsSIP takes the last one, SIPp the first, and
    /// both know only MD5; so SHA-256 (RFC 8760) is opt-in, e.g.
    /// `["SHA-256", "MD5"]` for phones that choose well.
    #[serde(default = "default_algorithms")]
    pub digest_algorithms: Vec<String>,
    /// PEM file of CA certificates trusted for TLS connections to PBXs
    /// (default: the Mozilla roots).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// What happens to a phone's or an inbound PBX's binding registered over
    /// TCP, TLS, WS or WSS without RFC 5626 Outbound when that connection
    /// closes. `false` (the default): it is removed at once, as Kamailio's
    /// `handle_lost_tcp` does (an inbound-registration connection goes down
    /// and its calls fail over). `true`: it is kept until it expires and
    /// reached at its Contact URI, for PBXs and phones that listen on their
    /// Contact address (a public IP, no NAT). RFC 5626 bindings are removed
    /// and UDP bindings kept either way.
    #[serde(default)]
    pub contact_fallback: bool,
    /// Which request path carries calls: `"classic"` (the default: a task
    /// per call on the endpoint) or `"engine"` (the sans-IO core of
    /// `siplink_proxy::engine` driven on the run-to-completion runtime; see
    /// docs/proxy.md for what still takes the classic path).
    #[serde(default)]
    pub core: CoreKind,
}

/// `[proxy] core`: which request path carries calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoreKind {
    /// The task-per-call proxy on the endpoint (`src/proxy/`).
    #[default]
    Classic,
    /// The sans-IO engine on the run-to-completion runtime.
    Engine,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            domains: vec!["siplink.test".to_owned()],
            realm: None,
            advertise: None,
            no_match_status: default_no_match(),
            authenticate_calls: true,
            status_listen: None,
            status_token_file: None,
            status_token_env: None,
            tls_ca: None,
            digest_algorithms: default_algorithms(),
            contact_fallback: false,
            core: CoreKind::Classic,
        }
    }
}

impl ProxySection {
    /// The digest realm users authenticate in.
    pub fn realm(&self) -> &str {
        self.realm
            .as_deref()
            .or(self.domains.first().map(String::as_str))
            .unwrap_or("siplink")
    }
}

fn default_algorithms() -> Vec<String> {
    vec!["MD5".to_owned()]
}

fn default_no_match() -> u16 {
    404
}

fn yes() -> bool {
    true
}

/// `[[listen]]`: one listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `udp`, `tcp`, `tls`, `ws` or `wss`.
    #[serde(with = "transport_name")]
    pub transport: Transport,
    /// Address and port, e.g. `0.0.0.0:5060` or `[::1]:5061`.
    pub address: SocketAddr,
    /// PEM certificate chain (tls, wss).
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// PEM private key (tls, wss).
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    /// UDP only: how many run-to-completion workers read this address
    /// (1-256; default: the number of CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// UDP only: how the workers share the address: `shared` (one socket
    /// read by every worker task, the default), `reuseport` (a socket per
    /// worker, `SO_REUSEPORT`; one peer then always lands on one worker) or
    /// `threads` (one socket read by an OS thread per worker blocked in
    /// `recvfrom`, Kamailio's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<String>,
}

impl ListenerConfig {
    /// The UDP workers' sharing (`None` for a value other than `shared`,
    /// `reuseport` or `threads`).
    pub fn udp_sharing(&self) -> Option<siplink_transport::UdpSharing> {
        match self.sharing.as_deref() {
            None | Some("shared") => Some(siplink_transport::UdpSharing::Shared),
            Some("reuseport") => Some(siplink_transport::UdpSharing::ReusePort),
            Some("threads") => Some(siplink_transport::UdpSharing::Threads),
            Some(_) => None,
        }
    }
}

/// `[[users]]`: a phone account on the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name (the user part of its AOR in every proxy domain).
    pub name: String,
    /// Password (or give `ha1`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// `MD5(name:realm:password)` in hex, instead of a password.
    #[serde(default)]
    pub ha1: Option<Secret>,
    /// The connections this user may call through; absent = all.
    #[serde(default)]
    pub connections: Option<Vec<String>>,
}

/// The three kinds of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionKind {
    /// The proxy registers to the PBX, as a phone would (the default).
    #[default]
    OutboundRegistration,
    /// No registration: INVITEs go straight to the PBX's address.
    Trunk,
    /// The PBX registers to the proxy; calls go back over its connection.
    InboundRegistration,
}

impl ConnectionKind {
    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::OutboundRegistration => "outbound-registration",
            ConnectionKind::Trunk => "trunk",
            ConnectionKind::InboundRegistration => "inbound-registration",
        }
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dial pattern: a regex, with an optional rewrite of the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DialPatternConfig {
    /// Just the regex (`"4[0-9]{3}"`).
    Plain(String),
    /// `{ pattern = "9(0[0-9]+)", rewrite = "$1" }`.
    Rewrite {
        /// The regex.
        pattern: String,
        /// The number sent on, with `$1` / `${name}` for capture groups.
        rewrite: String,
    },
}

impl DialPatternConfig {
    /// The regex.
    pub fn pattern(&self) -> &str {
        match self {
            DialPatternConfig::Plain(p) | DialPatternConfig::Rewrite { pattern: p, .. } => p,
        }
    }

    fn to_dialplan(&self) -> siplink_dialplan::Pattern {
        match self {
            DialPatternConfig::Plain(p) => siplink_dialplan::Pattern::new(p.clone()),
            DialPatternConfig::Rewrite { pattern, rewrite } => {
                siplink_dialplan::Pattern::new(pattern.clone()).with_rewrite(rewrite.clone())
            }
        }
    }
}

/// How an outbound-registration connection registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistrationMode {
    /// One registration with the connection's credentials; every allowed user
    /// calls as that identity (the default).
    #[default]
    Shared,
    /// One registration per entry of `accounts`; each user calls as its own
    /// extension on the PBX.
    PerUser,
}

/// Registration options of an outbound-registration connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationOptions {
    /// `shared` (default) or `per-user`.
    #[serde(default)]
    pub mode: RegistrationMode,
    /// Requested expiry in seconds (default 600).
    #[serde(default = "default_expires")]
    pub expires: u32,
    /// User part of our Contact (default: the user name registered).
    #[serde(default)]
    pub contact_user: Option<String>,
}

impl Default for RegistrationOptions {
    fn default() -> Self {
        RegistrationOptions {
            mode: RegistrationMode::Shared,
            expires: default_expires(),
            contact_user: None,
        }
    }
}

fn default_expires() -> u32 {
    600
}

/// A per-user account on the PBX (outbound registration, `per-user` mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The proxy user this account belongs to.
    pub user: String,
    /// The extension / user name on the PBX.
    pub username: String,
    /// Digest user name when it differs from `username`.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Password (or `ha1`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// HA1 instead of a password.
    #[serde(default)]
    pub ha1: Option<Secret>,
}

/// OPTIONS probing of a connection's PBX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeOptions {
    /// Probe at all (default: on for trunks, off otherwise).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Seconds between probes (default 30).
    #[serde(default = "default_probe_interval")]
    pub interval: u64,
    /// Failures before the PBX counts as down (default 3).
    #[serde(default = "default_down_after")]
    pub down_after: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            enabled: None,
            interval: default_probe_interval(),
            down_after: default_down_after(),
        }
    }
}

fn default_probe_interval() -> u64 {
    30
}

fn default_down_after() -> u32 {
    3
}

/// `[[connections]]`: how the proxy reaches one PBX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Unique name (logs, status, `test-connection NAME`, users' allow lists).
    pub name: String,
    /// `outbound-registration` (default), `trunk` or `inbound-registration`.
    #[serde(default)]
    pub kind: ConnectionKind,
    /// A disabled connection is kept in the file but carries no calls.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Ordered dial patterns (full match by default).
    #[serde(default)]
    pub dial_patterns: Vec<DialPatternConfig>,
    /// The PBX's addresses, tried in order for failover: `host`, `host:port`,
    /// `[v6]:port`, or a SIP URI (`sip:pbx.example.com;transport=tcp`).
    /// Not used by inbound registration.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Transport for addresses that don't name one (default `udp`).
    #[serde(default, with = "opt_transport_name")]
    pub transport: Option<Transport>,
    /// The PBX's SIP domain (default: the first address's host). For inbound
    /// registration: the domain of the AOR the PBX registers (default: ours).
    #[serde(default)]
    pub domain: Option<String>,
    /// User name: the account we register/authenticate as (outbound), or the
    /// one the PBX registers with (inbound).
    #[serde(default)]
    pub username: Option<String>,
    /// Digest user name, when the PBX's authentication ID differs from the
    /// extension registered (3CX, some carriers). Default: `username`.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Password for `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// HA1 for `username`, instead of a password.
    #[serde(default)]
    pub ha1: Option<Secret>,
    /// Realm to answer (default: any the PBX names).
    #[serde(default)]
    pub realm: Option<String>,
    /// Next hop for everything sent to this PBX (a SIP URI or host:port).
    #[serde(default)]
    pub outbound_proxy: Option<String>,
    /// Outbound registration options.
    #[serde(default)]
    pub registration: RegistrationOptions,
    /// Per-user accounts (outbound registration, `per-user` mode).
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// The proxy user that calls from this PBX ring when the dialled user is
    /// not one of ours (default: the Request-URI / To user).
    #[serde(default)]
    pub deliver_to: Option<String>,
    /// OPTIONS probing.
    #[serde(default)]
    pub probe: ProbeOptions,
    /// Trust exactly this TLS certificate for the PBX, whatever its issuer,
    /// CA flags (an `openssl req -x509` certificate is `CA:TRUE`), dates and
    /// names: `sha256:<digest>` (SHA-256 of the certificate, as `openssl x509
    /// -noout -fingerprint -sha256` prints it) or `spki-sha256:<digest>`
    /// (SHA-256 of its public key, which survives a renewal with the same
    /// key); the digest in hex (colons allowed) or base64. The PBX must still
    /// prove it holds the certificate's key. Applies to the hosts this
    /// connection connects to over TLS (the outbound proxy's if set, else the
    /// addresses'). Test Connection prints the line to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_pin: Option<String>,
    /// Media handling for this connection's calls: `off` (default), `relay`
    /// or `bridge` (see [`MediaMode`]); needs `[[media.rtpengine]]`. Not acted
    /// on by the running proxy yet.
    #[serde(default, skip_serializing_if = "MediaMode::is_off")]
    pub media: MediaMode,
    /// Opus ↔ G.711 transcoding in rtpengine (only with `media = "bridge"`;
    /// default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transcode: bool,
}

impl ConnectionConfig {
    /// A connection of `kind` with defaults.
    pub fn new(name: impl Into<String>, kind: ConnectionKind) -> Self {
        ConnectionConfig {
            name: name.into(),
            kind,
            enabled: true,
            dial_patterns: Vec::new(),
            addresses: Vec::new(),
            transport: None,
            domain: None,
            username: None,
            auth_username: None,
            password: None,
            ha1: None,
            realm: None,
            outbound_proxy: None,
            registration: RegistrationOptions::default(),
            accounts: Vec::new(),
            deliver_to: None,
            probe: ProbeOptions::default(),
            tls_pin: None,
            media: MediaMode::Off,
            transcode: false,
        }
    }

    /// The hosts the proxy connects to for this connection (the outbound
    /// proxy's, else every address's), the ones [`tls_pin`](Self::tls_pin)
    /// applies to.
    pub fn next_hop_hosts(&self) -> Vec<String> {
        let default = self.transport.unwrap_or(Transport::Udp);
        match &self.outbound_proxy {
            Some(p) => parse_address(p, default)
                .map(|t| vec![t.host])
                .unwrap_or_default(),
            None => self
                .targets()
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.host)
                .collect(),
        }
    }

    /// Whether the proxy reaches this connection's PBX over TLS (its outbound
    /// proxy's transport if set, else any address's).
    pub fn uses_tls(&self) -> bool {
        let default = self.transport.unwrap_or(Transport::Udp);
        match &self.outbound_proxy {
            Some(p) => parse_address(p, default).is_ok_and(|t| t.transport == Transport::Tls),
            None => self
                .targets()
                .unwrap_or_default()
                .iter()
                .any(|t| t.transport == Transport::Tls),
        }
    }

    /// The parsed [`tls_pin`](Self::tls_pin) (validated configs never fail
    /// here).
    pub fn pin(&self) -> Option<Result<siplink_transport::Pin, String>> {
        self.tls_pin.as_deref().map(|p| {
            p.parse()
                .map_err(|e: siplink_transport::Error| e.to_string())
        })
    }

    /// The addresses parsed (validated configs never fail here).
    pub fn targets(&self) -> Result<Vec<TargetAddr>, String> {
        let default = self.transport.unwrap_or(Transport::Udp);
        self.addresses
            .iter()
            .map(|a| parse_address(a, default))
            .collect()
    }

    /// The PBX's domain.
    pub fn pbx_domain(&self) -> Option<String> {
        self.domain.clone().or_else(|| {
            self.addresses
                .first()
                .and_then(|a| parse_address(a, Transport::Udp).ok())
                .map(|t| t.host)
        })
    }

    /// Whether OPTIONS probes run for this connection.
    pub fn probing(&self) -> bool {
        self.probe
            .enabled
            .unwrap_or(self.kind == ConnectionKind::Trunk)
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests being routed at once (calls being set up: from arrival to
    /// their final response), default 10 000; past it, 503 with Retry-After.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Bindings per user (default 10).
    #[serde(default = "default_contacts")]
    pub max_contacts_per_user: usize,
    /// Shortest registration expiry accepted from phones (default 60 s).
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// Longest registration expiry granted (default 3600 s).
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// Requests over UDP larger than this many bytes go over TCP to the same
    /// address instead (RFC 3261 §18.1.1 says 1300 when the path MTU is
    /// unknown). Default 65 000: like Kamailio, the proxy sends over the UDP
    /// the connection asks for, because a WebRTC INVITE (3-4 KB of SDP) to a
    /// UDP-only PBX would otherwise fail. Set 1300 for PBXs that take TCP too.
    #[serde(default = "default_udp_mtu")]
    pub udp_mtu_limit: usize,
    /// REGISTERs the registrar takes from one source IP address per 10 s
    /// before it answers 503 with Retry-After (default 100; 0 turns this
    /// limit off, e.g. for a load test from one address). The per-source
    /// request-rate limit of `[security]` applies before it.
    #[serde(default = "default_register_flood")]
    pub register_flood: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_calls: default_max_calls(),
            max_contacts_per_user: default_contacts(),
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            udp_mtu_limit: default_udp_mtu(),
            register_flood: default_register_flood(),
        }
    }
}

fn default_register_flood() -> u32 {
    100
}

fn default_max_calls() -> usize {
    10_000
}
fn default_contacts() -> usize {
    10
}
fn default_min_expires() -> u32 {
    60
}
fn default_udp_mtu() -> usize {
    65_000
}
fn default_max_expires() -> u32 {
    3600
}

/// A password or HA1 from the configuration: the text itself (it derefs to
/// `&str` and serialises as is), but `Debug` prints `"<redacted>"`, so that a
/// configuration printed with `{:?}` (a log line, a panic message) shows no
/// secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// `[security]`: the failed-attempt policy for REGISTER and call
/// authentication (see `siplink_auth::limiter` and `docs/security.md`).
/// Failures count only when they answered a nonce issued to the same source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Failures for one user from one source (an IPv4 address or an IPv6 /64)
    /// that block that source for that user (default 5).
    #[serde(default = "default_pair_failures")]
    pub max_failures: u32,
    /// Failures from one source, any users, that block the source (default 10).
    #[serde(default = "default_source_failures")]
    pub source_max_failures: u32,
    /// Failures for one user from all sources past which each source gets a
    /// single wrong guess for that user (default 200; never below 20 ×
    /// `source_max_failures`). The user is never blocked as such.
    #[serde(default = "default_user_failures")]
    pub user_max_failures: u32,
    /// Seconds in which failures are counted (default 60).
    #[serde(default = "default_window")]
    pub window: u64,
    /// First block, in seconds (default 60); doubles with each repeat.
    #[serde(default = "default_window")]
    pub cooldown: u64,
    /// Longest block, in seconds (default 3600).
    #[serde(default = "default_hour")]
    pub max_cooldown: u64,
    /// Sources, addresses or prefixes (`"192.0.2.0/24"`), never counted nor
    /// blocked. The literal addresses of the connections' PBXs are added
    /// automatically.
    #[serde(default)]
    pub exempt: Vec<String>,
    /// Most sources, (source, user) pairs and users tracked, each (default
    /// 16 384; the oldest goes first).
    #[serde(default = "default_tracked")]
    pub max_tracked: usize,
    /// Per-source request-rate limiting, before anything else looks at a
    /// request (on by default, generous; see [`RateLimitConfig`]).
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Drop requests whose User-Agent names a known scanner
    /// (`friendly-scanner`, `sipvicious`, `sipcli`...) without a word
    /// (default `false`).
    #[serde(default)]
    pub drop_scanners: bool,
    /// The User-Agent substrings `drop_scanners` looks for, case-insensitive
    /// (default: `siplink_auth::rate::DEFAULT_SCANNERS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner_user_agents: Option<Vec<String>>,
}

/// `[security] rate_limit`: requests per source (an IPv4 address or an IPv6
/// /64), counted with a token bucket (see `siplink_auth::rate`). A source
/// over its limit is refused with `503` and `Retry-After` for a cool-down,
/// at most once a second; the rest of its requests are dropped. Exempt
/// sources (`[security] exempt`, the connections' PBXs) are never limited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether requests are limited at all (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Average requests per second from one source (default 50).
    #[serde(default = "default_rps")]
    pub requests_per_second: u32,
    /// Requests one source may send at once (default 200).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// The first cool-down in seconds (default 60); doubles on each repeat.
    #[serde(default = "default_window")]
    pub cooldown: u64,
    /// The longest cool-down in seconds (default 3600).
    #[serde(default = "default_hour")]
    pub max_cooldown: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            requests_per_second: default_rps(),
            burst: default_burst(),
            cooldown: default_window(),
            max_cooldown: default_hour(),
        }
    }
}

fn default_rps() -> u32 {
    50
}
fn default_burst() -> u32 {
    200
}

/// Most entries in `scanner_user_agents`.
pub const MAX_SCANNER_AGENTS: usize = 100;

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            max_failures: default_pair_failures(),
            source_max_failures: default_source_failures(),
            user_max_failures: default_user_failures(),
            window: default_window(),
            cooldown: default_window(),
            max_cooldown: default_hour(),
            exempt: Vec::new(),
            max_tracked: default_tracked(),
            rate_limit: RateLimitConfig::default(),
            drop_scanners: false,
            scanner_user_agents: None,
        }
    }
}

impl SecurityConfig {
    /// The limiter configuration (exempt entries that do not parse are
    /// skipped; [`Config::validate`] reports them).
    pub fn limiter(&self) -> siplink_auth::LimiterConfig {
        siplink_auth::LimiterConfig {
            max_failures: self.max_failures.max(1),
            source_max_failures: self.source_max_failures.max(1),
            user_max_failures: self.user_max_failures,
            window: Duration::from_secs(self.window),
            cooldown: Duration::from_secs(self.cooldown),
            max_cooldown: Duration::from_secs(self.max_cooldown.max(self.cooldown)),
            capacity: self.max_tracked.max(1),
            exempt: self.exempt.iter().filter_map(|e| e.parse().ok()).collect(),
            ..siplink_auth::LimiterConfig::default()
        }
    }

    /// The request-rate policy (`None` when `rate_limit.enabled` is off).
    /// Exempt entries as for [`limiter`](Self::limiter); the tracked sources
    /// are bounded by `max_tracked`.
    pub fn rate(&self) -> Option<siplink_auth::RateConfig> {
        let r = &self.rate_limit;
        r.enabled.then(|| siplink_auth::RateConfig {
            requests_per_second: r.requests_per_second.max(1),
            burst: r.burst.max(1),
            cooldown: Duration::from_secs(r.cooldown.max(1)),
            max_cooldown: Duration::from_secs(r.max_cooldown.max(r.cooldown).max(1)),
            capacity: self.max_tracked.max(1),
            exempt: self.exempt.iter().filter_map(|e| e.parse().ok()).collect(),
            ..siplink_auth::RateConfig::default()
        })
    }

    /// The scanner filter (`None` when `drop_scanners` is off).
    pub fn scanners(&self) -> Option<siplink_auth::ScannerFilter> {
        self.drop_scanners.then(|| match &self.scanner_user_agents {
            Some(list) => siplink_auth::ScannerFilter::new(list.iter().map(String::as_str)),
            None => siplink_auth::ScannerFilter::default(),
        })
    }
}

fn default_pair_failures() -> u32 {
    5
}
fn default_source_failures() -> u32 {
    10
}
fn default_user_failures() -> u32 {
    200
}
fn default_window() -> u64 {
    60
}
fn default_hour() -> u64 {
    3600
}
fn default_tracked() -> usize {
    16_384
}

/// Parses `host`, `host:port`, `[v6]:port` or a SIP URI into a target.
///
/// Refuses what cannot be sent to: an empty or malformed host (a name must be
/// a valid host name, an IPv6 address needs brackets when a port follows),
/// port 0, a port above 65535, a port that is not a number, in every form
/// (`host:0`, `[::1]:0`, `sip:host:0`, `sips:host:0;transport=tls`).
pub fn parse_address(text: &str, default: Transport) -> Result<TargetAddr, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty address".into());
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        let uri = Uri::parse(bytes::Bytes::copy_from_slice(text.as_bytes()))
            .map_err(|e| format!("bad SIP URI {text:?}: {e}"))?;
        let Uri::Sip(sip) = uri else {
            return Err(format!("{text:?} is not a sip: or sips: URI"));
        };
        let transport = match sip.param("transport") {
            Some(Some(t)) => t
                .parse::<Transport>()
                .map_err(|_| format!("unknown transport {t:?} in {text:?}"))?,
            _ if sip.is_secure() => Transport::Tls,
            _ => default,
        };
        let host = sip.host().to_string();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        check_host(&host).map_err(|e| format!("{e} in {text:?}"))?;
        let port = match sip.port() {
            Some(0) => return Err(port_zero(text)),
            Some(p) => p,
            None => transport.default_port(),
        };
        return Ok(TargetAddr::new(host, port, transport));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {text:?}"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{h:?} in brackets is not an IPv6 address in {text:?}"
            ));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after ']' in {text:?}")),
        };
        (h.to_owned(), port)
    } else if text.matches(':').count() > 1 {
        // Only an IPv6 address has several colons; with a port it needs
        // brackets.
        if text.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{text:?} is not an IPv6 address (write [address]:port for one with a port)"
            ));
        }
        (text.to_owned(), None)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (text.to_owned(), None),
        }
    };
    check_host(&host).map_err(|e| format!("{e} in {text:?}"))?;
    let port = match port {
        Some(p) => parse_port(p, text)?,
        None => default.default_port(),
    };
    Ok(TargetAddr::new(host, port, default))
}

fn port_zero(text: &str) -> String {
    format!("port 0 in {text:?}: give the real port, or leave it out for the transport's default")
}

/// A port as written after `host:` in `text`: 1 to 65535, digits only.
fn parse_port(p: &str, text: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err(format!("empty port in {text:?}"));
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port {p:?} in {text:?} (digits only)"));
    }
    match p.parse::<u32>() {
        Ok(0) => Err(port_zero(text)),
        Ok(n) if n <= 65_535 => Ok(n as u16),
        _ => Err(format!("port {p} in {text:?} is above 65535")),
    }
}

/// A host on its own: a host name (RFC 3261 `hostname`), an IPv4 address,
/// or an IPv6 address with or without brackets. No port, no scheme.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.trim() != host || host.chars().any(|c| c.is_control()) {
        return Err(format!("bad host {host:?} (spaces or control characters)"));
    }
    if host.len() > 253 {
        return Err(format!("host of {} characters (at most 253)", host.len()));
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.contains(':') {
        return match bare.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("bad host {host:?} (a port does not belong here)")),
        };
    }
    siplink_message::uri::Host::parse(bare)
        .map(|_| ())
        .map_err(|_| format!("bad host {host:?}"))
}

/// One problem found by [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: `connections[1] "carrier": dial_patterns[0]`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why a configuration can't be used: every problem, with the file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    /// The problems (at least one).
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if let Some(file) = &self.file {
                write!(f, "{}: ", file.display())?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn one(file: Option<&Path>, location: &str, message: String) -> Self {
        ConfigError {
            file: file.map(Path::to_path_buf),
            issues: vec![ConfigIssue {
                location: location.to_owned(),
                message,
            }],
        }
    }
}

/// The built-in demo configuration (`cargo run --example proxy` with no
/// arguments): loopback listeners, three users, one connection of each kind.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

impl Config {
    /// Parses TOML text (not validated yet).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_named(text, None)
    }

    fn from_toml_named(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    // The field, when the line is `key = value` (a value of
                    // the wrong type: "line 3 (contact_fallback)").
                    let key = text
                        .lines()
                        .nth(line - 1)
                        .and_then(|l| l.split_once('='))
                        .map(|(k, _)| k.trim())
                        .filter(|k| {
                            !k.is_empty()
                                && k.len() <= 64
                                && k.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                        });
                    match key {
                        Some(k) => format!("line {line} ({k})"),
                        None => format!("line {line}"),
                    }
                }
                None => "toml".to_owned(),
            };
            ConfigError::one(file, &location, e.message().to_owned())
        })
    }

    /// Reads, parses and validates a file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(Some(path), "file", e.to_string()))?;
        let config = Self::from_toml_named(&text, Some(path))?;
        config.validate().map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })?;
        Ok(config)
    }

    /// The built-in demo configuration, parsed.
    pub fn demo() -> Config {
        Config::from_toml(DEMO_CONFIG).expect("the built-in demo configuration parses")
    }

    /// The connection called `name`.
    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Serialises back to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Advice about a valid configuration that will likely not work as
    /// meant outside a test bench (printed by the example binary at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.proxy.advertise.is_none()
            && self
                .listeners
                .iter()
                .any(|l| l.address.ip().is_unspecified())
        {
            w.push("a listener is on an unspecified address (0.0.0.0 / ::) and proxy.advertise is not set: Contact and Record-Route will name 127.0.0.1; set advertise to the address phones and PBXs reach".to_owned());
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.address.port() == 0 {
                w.push(format!("listen[{i}] ({}): port 0 takes a port the system picks at each start, which phones and PBXs cannot be configured for (tests only)", l.address));
            }
        }
        if self.proxy.core == CoreKind::Classic
            && (!self.media.rtpengine.is_empty()
                || self.connections.iter().any(|c| !c.media.is_off()))
        {
            w.push("[media] and connections' media are checked but not acted on with proxy.core = \"classic\": SDP passes unchanged and media flows end to end (core = \"engine\" acts on them)".to_owned());
        }
        if self.proxy.contact_fallback && !self.listeners.iter().any(|l| l.transport.is_reliable())
        {
            w.push("proxy.contact_fallback = true has no effect: no listener is TCP, TLS, WS or WSS (bindings over UDP keep their Contact anyway)".to_owned());
        }
        if !self.proxy.authenticate_calls {
            w.push("proxy.authenticate_calls = false: anyone who reaches the proxy can call through its connections".to_owned());
        }
        for c in &self.connections {
            if c.enabled && c.kind != ConnectionKind::InboundRegistration {
                for a in &c.addresses {
                    if let Ok(t) = parse_address(a, Transport::Udp)
                        && t.host.parse::<std::net::IpAddr>().is_err()
                    {
                        w.push(format!(
                            "connection {:?}: calls from {} are recognised only when it registers or by a registration's contact; requests from a host name's addresses are not matched (give IP addresses to recognise the PBX by source)",
                            c.name, t.host
                        ));
                    }
                }
            }
        }
        w
    }

    /// Checks everything; returns every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut v = Validator::default();
        self.check_proxy(&mut v);
        self.check_listeners(&mut v);
        self.check_users(&mut v);
        self.check_connections(&mut v);
        crate::media::check(
            &self.media,
            self.connections
                .iter()
                .map(|c| (c.name.as_str(), c.media, c.transcode)),
            &mut |location, message| v.push(location, message),
        );
        if v.issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: None,
                issues: v.issues,
            })
        }
    }

    fn check_proxy(&self, v: &mut Validator) {
        if self.proxy.domains.is_empty() {
            v.push("proxy.domains", "at least one domain is needed".into());
        }
        for (i, d) in self.proxy.domains.iter().enumerate() {
            if let Err(e) = check_host(d) {
                v.push(
                    &format!("proxy.domains[{i}]"),
                    format!("{d:?} is not a host name: {e}"),
                );
            }
        }
        if let Some(a) = &self.proxy.advertise
            && let Err(e) = check_host(a)
        {
            v.push(
                "proxy.advertise",
                format!("{a:?} is not a host name or IP address (no port, no scheme): {e}"),
            );
        }
        if let Some(s) = &self.proxy.status_listen
            && s.port() == 0
        {
            v.push(
                "proxy.status_listen",
                format!("port 0 in {s}: give the port to serve the status on"),
            );
        }
        if self.proxy.digest_algorithms.is_empty() {
            v.push(
                "proxy.digest_algorithms",
                "at least one algorithm is needed".into(),
            );
        }
        for (i, a) in self.proxy.digest_algorithms.iter().enumerate() {
            if a.parse::<siplink_auth::Algorithm>().is_err() {
                v.push(
                    &format!("proxy.digest_algorithms[{i}]"),
                    format!("unknown algorithm {a:?} (MD5, MD5-sess, SHA-256, SHA-256-sess, SHA-512-256, SHA-512-256-sess)"),
                );
            }
        }
        if !(300..=699).contains(&self.proxy.no_match_status) {
            v.push(
                "proxy.no_match_status",
                format!(
                    "{} is not a final error status (300-699)",
                    self.proxy.no_match_status
                ),
            );
        }
        if self.limits.min_expires > self.limits.max_expires {
            v.push(
                "limits.min_expires",
                format!(
                    "{} is above limits.max_expires ({})",
                    self.limits.min_expires, self.limits.max_expires
                ),
            );
        }
        if self.limits.max_calls == 0 {
            v.push("limits.max_calls", "must be at least 1".into());
        }
        if let Some(addr) = self.proxy.status_listen
            && !addr.ip().is_loopback()
            && self.proxy.status_token_file.is_none()
            && self.proxy.status_token_env.is_none()
        {
            v.push(
                "proxy.status_listen",
                format!("{addr} is not a loopback address: set proxy.status_token_file or proxy.status_token_env, or listen on 127.0.0.1"),
            );
        }
        if self.proxy.status_token_file.is_some() && self.proxy.status_token_env.is_some() {
            v.push(
                "proxy.status_token_env",
                "give status_token_file or status_token_env, not both".into(),
            );
        }
        let sec = &self.security;
        for (field, value) in [
            ("max_failures", sec.max_failures),
            ("source_max_failures", sec.source_max_failures),
        ] {
            if value == 0 {
                v.push(&format!("security.{field}"), "must be at least 1".into());
            }
        }
        if sec.window == 0 || sec.cooldown == 0 {
            v.push(
                "security.window",
                "window and cooldown must be at least 1 s".into(),
            );
        }
        if sec.max_tracked == 0 {
            v.push("security.max_tracked", "must be at least 1".into());
        }
        for (i, e) in sec.exempt.iter().enumerate() {
            if let Err(err) = e.parse::<siplink_auth::IpPrefix>() {
                v.push(&format!("security.exempt[{i}]"), err.to_string());
            }
        }
        let r = &sec.rate_limit;
        for (field, value) in [
            ("requests_per_second", r.requests_per_second),
            ("burst", r.burst),
        ] {
            if !(1..=1_000_000).contains(&value) {
                v.push(
                    &format!("security.rate_limit.{field}"),
                    "must be between 1 and 1000000".into(),
                );
            }
        }
        if r.cooldown == 0 || r.max_cooldown < r.cooldown || r.max_cooldown > 86_400 {
            v.push(
                "security.rate_limit.cooldown",
                "cooldown must be at least 1 s and at most max_cooldown (at most 86400 s)".into(),
            );
        }
        if let Some(list) = &sec.scanner_user_agents {
            if list.len() > MAX_SCANNER_AGENTS {
                v.push(
                    "security.scanner_user_agents",
                    format!("at most {MAX_SCANNER_AGENTS} entries"),
                );
            }
            for (i, a) in list.iter().enumerate() {
                if a.trim().is_empty() || a.len() > siplink_auth::rate::MAX_USER_AGENT {
                    v.push(
                        &format!("security.scanner_user_agents[{i}]"),
                        format!(
                            "must be 1 to {} bytes of text",
                            siplink_auth::rate::MAX_USER_AGENT
                        ),
                    );
                }
            }
        }
    }

    fn check_listeners(&self, v: &mut Validator) {
        if self.listeners.is_empty() {
            v.push("listen", "at least one listener is needed".into());
        }
        let mut seen: Vec<(bool, SocketAddr, usize)> = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let at = format!("listen[{i}] ({} {})", l.transport.via_token(), l.address);
            let datagram = l.transport == Transport::Udp;
            if let Some((_, _, j)) = seen.iter().find(|(d, a, _)| {
                *d == datagram
                    && a.port() == l.address.port()
                    && (a.ip() == l.address.ip()
                        || a.ip().is_unspecified()
                        || l.address.ip().is_unspecified())
            }) {
                v.push(
                    &at,
                    format!(
                        "conflicts with listen[{j}]: same {} port",
                        if datagram { "UDP" } else { "TCP" }
                    ),
                );
            }
            seen.push((datagram, l.address, i));
            if l.transport.is_secure() {
                if l.certificate.is_none() || l.private_key.is_none() {
                    v.push(
                        &at,
                        "tls and wss listeners need certificate and private_key".into(),
                    );
                }
            } else if l.certificate.is_some() || l.private_key.is_some() {
                v.push(
                    &at,
                    "certificate and private_key only apply to tls and wss".into(),
                );
            }
            if !datagram && (l.workers.is_some() || l.sharing.is_some()) {
                v.push(&at, "workers and sharing only apply to udp".into());
            }
            if l.workers.is_some_and(|w| !(1..=256).contains(&w)) {
                v.push(&at, "workers must be 1 to 256".into());
            }
            if l.udp_sharing().is_none() {
                v.push(
                    &at,
                    "sharing must be \"shared\", \"reuseport\" or \"threads\"".into(),
                );
            }
        }
    }

    fn check_users(&self, v: &mut Validator) {
        let mut names = HashSet::new();
        let conns: HashSet<&str> = self.connections.iter().map(|c| c.name.as_str()).collect();
        for (i, u) in self.users.iter().enumerate() {
            let at = format!("users[{i}] {:?}", u.name);
            if !valid_user(&u.name) {
                v.push(
                    &at,
                    "name must be a non-empty SIP user part (letters, digits, -_.!~*'()+)".into(),
                );
            }
            if !names.insert(u.name.as_str()) {
                v.push(&at, "duplicate user name".into());
            }
            check_secret(v, &at, u.password.as_deref(), u.ha1.as_deref(), true);
            for (j, c) in u.connections.iter().flatten().enumerate() {
                if !conns.contains(c.as_str()) {
                    v.push(
                        &format!("{at}: connections[{j}]"),
                        format!("no connection named {c:?}"),
                    );
                }
            }
        }
    }

    fn check_connections(&self, v: &mut Validator) {
        let mut names = HashSet::new();
        let users: HashSet<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        let mut contact_users: Vec<(String, String)> = Vec::new();
        let mut pins: Vec<(String, Option<siplink_transport::Pin>, String)> = Vec::new();
        for (i, c) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}] {:?}", c.name);
            if c.name.is_empty() || c.name.chars().any(|ch| ch.is_control() || ch == '"') {
                v.push(&at, "name must be non-empty printable text".into());
            }
            if !names.insert(c.name.as_str()) {
                v.push(&at, "duplicate connection name".into());
            }
            for (j, p) in c.dial_patterns.iter().enumerate() {
                let one = siplink_dialplan::DialPlan::new([(0usize, vec![p.to_dialplan()])]);
                if let Err(e) = one {
                    v.push(&format!("{at}: dial_patterns[{j}]"), pattern_error(p, &e));
                }
            }
            let needs_address = c.kind != ConnectionKind::InboundRegistration;
            if needs_address && c.addresses.is_empty() {
                v.push(
                    &format!("{at}: addresses"),
                    format!("a {} connection needs the PBX's address", c.kind),
                );
            }
            if !needs_address && !c.addresses.is_empty() {
                v.push(
                    &format!("{at}: addresses"),
                    "an inbound-registration connection has no address: the PBX registers to us"
                        .into(),
                );
            }
            let default = c.transport.unwrap_or(Transport::Udp);
            if matches!(default, Transport::Ws | Transport::Wss) {
                v.push(
                    &format!("{at}: transport"),
                    "connections use udp, tcp or tls".into(),
                );
            }
            for (j, a) in c.addresses.iter().enumerate() {
                match parse_address(a, default) {
                    Ok(t) if matches!(t.transport, Transport::Ws | Transport::Wss) => v.push(
                        &format!("{at}: addresses[{j}]"),
                        "connections use udp, tcp or tls".into(),
                    ),
                    Ok(_) => {}
                    Err(e) => v.push(&format!("{at}: addresses[{j}]"), e),
                }
            }
            if let Some(p) = &c.outbound_proxy
                && let Err(e) = parse_address(p, default)
            {
                v.push(&format!("{at}: outbound_proxy"), e);
            }
            if let Some(d) = &c.domain
                && let Err(e) = check_host(d)
            {
                v.push(
                    &format!("{at}: domain"),
                    format!("{d:?} is not a host name: {e}"),
                );
            }
            match c.pin() {
                None => {}
                Some(Err(e)) => v.push(&format!("{at}: tls_pin"), e),
                Some(Ok(_)) if !c.uses_tls() => v.push(
                    &format!("{at}: tls_pin"),
                    "the connection does not use TLS: set transport = \"tls\" or give sips: addresses, or remove tls_pin".into(),
                ),
                Some(Ok(pin)) => {
                    for host in c.next_hop_hosts() {
                        pins.push((host.to_ascii_lowercase(), Some(pin), at.clone()));
                    }
                }
            }
            if c.pin().is_none() && c.uses_tls() {
                for host in c.next_hop_hosts() {
                    pins.push((host.to_ascii_lowercase(), None, at.clone()));
                }
            }
            match c.kind {
                ConnectionKind::OutboundRegistration => {
                    if c.registration.mode == RegistrationMode::Shared {
                        if c.username.is_none() {
                            v.push(
                                &format!("{at}: username"),
                                "outbound registration needs the user name to register as".into(),
                            );
                        }
                        check_secret(v, &at, c.password.as_deref(), c.ha1.as_deref(), true);
                        let cu = c
                            .registration
                            .contact_user
                            .clone()
                            .or_else(|| c.username.clone())
                            .unwrap_or_default();
                        contact_users.push((cu, at.clone()));
                    } else {
                        if c.accounts.is_empty() {
                            v.push(
                                &format!("{at}: accounts"),
                                "per-user registration needs accounts".into(),
                            );
                        }
                        for (j, a) in c.accounts.iter().enumerate() {
                            let aat = format!("{at}: accounts[{j}]");
                            if !users.contains(a.user.as_str()) {
                                v.push(&aat, format!("no user named {:?}", a.user));
                            }
                            check_secret(v, &aat, a.password.as_deref(), a.ha1.as_deref(), true);
                            contact_users.push((format!("{}-{}", c.name, a.user), aat));
                        }
                    }
                    if !(10..=86_400).contains(&c.registration.expires) {
                        v.push(
                            &format!("{at}: registration.expires"),
                            format!("{} s is outside 10..=86400", c.registration.expires),
                        );
                    }
                }
                ConnectionKind::Trunk => {
                    if c.password.is_some() || c.ha1.is_some() {
                        if c.username.is_none() {
                            v.push(
                                &format!("{at}: username"),
                                "a password needs a username".into(),
                            );
                        }
                        check_secret(v, &at, c.password.as_deref(), c.ha1.as_deref(), false);
                    }
                }
                ConnectionKind::InboundRegistration => {
                    match &c.username {
                        None => v.push(
                            &format!("{at}: username"),
                            "inbound registration needs the user name the PBX registers with"
                                .into(),
                        ),
                        Some(u) if !valid_user(u) => v.push(
                            &format!("{at}: username"),
                            format!("{u:?} is not a SIP user part"),
                        ),
                        Some(u) if users.contains(u.as_str()) => v.push(
                            &format!("{at}: username"),
                            format!("{u:?} is also a user's name: the PBX's AOR must be its own"),
                        ),
                        Some(_) => {}
                    }
                    check_secret(v, &at, c.password.as_deref(), c.ha1.as_deref(), true);
                }
            }
            if let Some(d) = &c.deliver_to
                && !users.contains(d.as_str())
            {
                v.push(&format!("{at}: deliver_to"), format!("no user named {d:?}"));
            }
            if c.probe.interval == 0 || c.probe.down_after == 0 {
                v.push(
                    &format!("{at}: probe"),
                    "interval and down_after must be at least 1".into(),
                );
            }
        }
        // A pin is per host: every TLS connection to a pinned host must
        // carry the same pin.
        for (k, (host, pin, at)) in pins.iter().enumerate() {
            if let Some((_, other, first)) =
                pins[..k].iter().find(|(h, p, _)| h == host && p != pin)
            {
                let says = |p: &Option<siplink_transport::Pin>| match p {
                    Some(p) => format!("tls_pin {:?}", p.to_string()),
                    None => "no tls_pin".to_owned(),
                };
                v.push(
                    &format!("{at}: tls_pin"),
                    format!(
                        "{first} reaches the same host {host:?} over TLS with {}, this one with {}: a pin applies to every connection to its host, so give them the same tls_pin",
                        says(other),
                        says(pin)
                    ),
                );
            }
        }
        contact_users.sort();
        for w in contact_users.windows(2) {
            if w[0].0 == w[1].0 {
                v.push(
                    &w[1].1,
                    format!("contact user {:?} is also used by {}: calls from the PBXs could not be told apart", w[0].0, w[0].1),
                );
            }
        }
    }

    /// Probe interval of a connection.
    pub fn probe_interval(c: &ConnectionConfig) -> Duration {
        Duration::from_secs(c.probe.interval.max(1))
    }
}

/// A dial-plan build error for one pattern, without the plan's own
/// connection/pattern numbering (the location already names them).
fn pattern_error(p: &DialPatternConfig, e: &siplink_dialplan::Error) -> String {
    use siplink_dialplan::Error as E;
    match e {
        E::InvalidPattern {
            message, position, ..
        } => {
            format!(
                "bad pattern {:?}: {message} (at offset {position})",
                p.pattern()
            )
        }
        E::InvalidRewrite {
            template,
            message,
            position,
            ..
        } => format!(
            "bad rewrite {template:?} of pattern {:?}: {message} (at offset {position})",
            p.pattern()
        ),
        E::PatternTooLarge { limit, .. } => format!(
            "pattern {:?} compiles to more than {limit} bytes: simplify it",
            p.pattern()
        ),
        other => format!("bad pattern {:?}: {other}", p.pattern()),
    }
}

fn check_secret(
    v: &mut Validator,
    at: &str,
    password: Option<&str>,
    ha1: Option<&str>,
    required: bool,
) {
    match (password, ha1) {
        (Some(_), Some(_)) => v.push(at, "give password or ha1, not both".into()),
        (None, None) if required => v.push(
            &format!("{at}: password"),
            "missing credentials: give password or ha1".into(),
        ),
        (_, Some(h)) if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => v.push(
            &format!("{at}: ha1"),
            "ha1 must be 32 hex digits (MD5)".into(),
        ),
        _ => {}
    }
}

fn valid_user(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b))
}

#[derive(Default)]
struct Validator {
    issues: Vec<ConfigIssue>,
}

impl Validator {
    fn push(&mut self, location: &str, message: String) {
        self.issues.push(ConfigIssue {
            location: location.to_owned(),
            message,
        });
    }
}

mod transport_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use siplink_message::Transport;

    pub fn serialize<S: Serializer>(t: &Transport, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.via_token().to_ascii_lowercase())
    }

    /// Parsed by `Transport::from_str`, whose error names the valid values.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Transport, D::Error> {
        String::deserialize(d)?
            .parse::<Transport>()
            .map_err(serde::de::Error::custom)
    }
}

/// `Option<Transport>` through [`transport_name`].
mod opt_transport_name {
    use serde::{Deserializer, Serializer};
    use siplink_message::Transport;

    pub fn serialize<S: Serializer>(t: &Option<Transport>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::transport_name::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Transport>, D::Error> {
        super::transport_name::deserialize(d).map(Some)
    }
}
