//! Trunk configuration: plain structs with defaults, no serde.

use std::time::Duration;

use siplink_auth::ClientCredentials;

use crate::identify::Cidr;

pub use siplink_message::{TargetAddr, Transport};

/// One address of the PBX, with its place in the failover order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to send.
    pub addr: TargetAddr,
    /// Lower is tried first (as in DNS SRV, RFC 2782).
    pub priority: u16,
    /// Relative share among targets of the same priority; 0 = only picked
    /// when no weighted target of that priority is left (RFC 2782).
    pub weight: u16,
}

impl Target {
    /// A target with priority 10 and weight 100.
    pub fn new(host: impl Into<String>, port: u16, transport: Transport) -> Target {
        Target {
            addr: TargetAddr::new(host, port, transport),
            priority: 10,
            weight: 100,
        }
    }

    /// The same target with this priority.
    pub fn with_priority(mut self, priority: u16) -> Target {
        self.priority = priority;
        self
    }

    /// The same target with this weight.
    pub fn with_weight(mut self, weight: u16) -> Target {
        self.weight = weight;
        self
    }
}

/// What to put in the P-Asserted-Identity header (RFC 3325) of calls to the trunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PaiPolicy {
    /// Leave the caller's P-Asserted-Identity as it is (default).
    #[default]
    Keep,
    /// Remove any P-Asserted-Identity.
    Remove,
    /// Assert the caller's original From (name-addr, tag removed): useful when
    /// From is replaced by the trunk account and the carrier takes the real
    /// caller from PAI.
    CallerFrom,
    /// Assert this value (a name-addr such as `"Sales" <sip:+4930123@example.com>`).
    Set(String),
}

/// How the caller's identity is presented to the trunk.
///
/// The From *tag* is never changed, so the dialog stays the caller's; the
/// trunk restores the caller's From in every response it relays and in
/// requests of the dialog (see [`DialogMap`](crate::DialogMap)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallerIdPolicy {
    /// Replace the From URI's user part (`None` = keep).
    pub from_user: Option<String>,
    /// Replace the From display name (`None` = keep; `Some("")` removes it).
    pub from_display: Option<String>,
    /// Replace the From URI's host (`None` = keep).
    pub from_host: Option<String>,
    /// P-Asserted-Identity.
    pub pai: PaiPolicy,
}

impl CallerIdPolicy {
    /// Whether the From header is rewritten at all.
    pub fn rewrites_from(&self) -> bool {
        self.from_user.is_some() || self.from_display.is_some() || self.from_host.is_some()
    }
}

/// The host part of the Request-URI sent to the trunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RuriHost {
    /// The chosen target's `host:port` (and `transport=` for TCP/TLS); changes
    /// with each failover (default: what a PBX with a static IP expects).
    #[default]
    Target,
    /// A fixed domain (for PBXs that only accept their own domain).
    Domain(String),
    /// Leave the Request-URI as the caller sent it.
    Keep,
}

/// When a failed attempt moves on to the next target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Final statuses that fail over (default 503 and 408). Add 500 when the
    /// PBX answers 500 for "cannot take calls".
    pub statuses: Vec<u16>,
    /// Fail over when the transaction times out (timer B; default `true`).
    pub on_timeout: bool,
    /// Fail over on a transport error (default `true`).
    pub on_transport_error: bool,
    /// Give up on a target that has sent no response at all (not even
    /// `100 Trying`) within this time, well before timer B's 32 s (default 4 s;
    /// `None` = rely on timer B alone).
    pub no_response_timeout: Option<Duration>,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            statuses: vec![503, 408],
            on_timeout: true,
            on_transport_error: true,
            no_response_timeout: Some(Duration::from_secs(4)),
        }
    }
}

/// OPTIONS health probing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Whether probes are sent (default `true`).
    pub enabled: bool,
    /// Time between the end of one probe and the next (default 30 s).
    pub interval: Duration,
    /// Consecutive failed probes that take an up target down (default 3).
    pub down_after: u32,
    /// Consecutive successful probes that bring a down target up (default 2).
    pub up_after: u32,
    /// When every target is down, try them all anyway (default `true`); with
    /// `false`, calls fail at once with 503.
    pub try_when_all_down: bool,
    /// The user part of the probes' From URI (default `ping`).
    pub from_user: String,
    /// The host of the probes' From URI (default `localhost`; set the proxy's domain).
    pub from_domain: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            interval: Duration::from_secs(30),
            down_after: 3,
            up_after: 2,
            try_when_all_down: true,
            from_user: "ping".into(),
            from_domain: "localhost".into(),
        }
    }
}

/// One outbound trunk to a PBX or carrier with static addresses.
#[derive(Debug, Clone, Default)]
pub struct TrunkConfig {
    /// The trunk's name (used in logs, events and by [`Identify`](crate::Identify)).
    pub name: String,
    /// The PBX's addresses, in failover order by priority and weight.
    pub targets: Vec<Target>,
    /// Digest credentials for 401/407 challenges from the trunk.
    pub credentials: Option<ClientCredentials>,
    /// Send everything through this proxy (with a loose Route to it) instead
    /// of straight to the target.
    pub outbound_proxy: Option<TargetAddr>,
    /// Caller identity presented to the trunk.
    pub caller_id: CallerIdPolicy,
    /// Request-URI host.
    pub request_uri_host: RuriHost,
    /// Failover rules.
    pub failover: FailoverPolicy,
    /// Health probing.
    pub health: HealthConfig,
    /// Extra source ranges that identify requests as coming from this trunk
    /// (the targets' IP literals are always included).
    pub identify: Vec<Cidr>,
}

impl TrunkConfig {
    /// A trunk named `name` with these targets and every other setting at its default.
    pub fn new(name: impl Into<String>, targets: Vec<Target>) -> TrunkConfig {
        TrunkConfig {
            name: name.into(),
            targets,
            ..TrunkConfig::default()
        }
    }

    /// Checks what the sans-IO parts rely on: at least one target, non-zero
    /// ports, valid SIP hosts everywhere a host is configured, health
    /// thresholds of at least 1 and a non-zero probe interval. With a
    /// validated configuration, building requests cannot fail on the
    /// configuration.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error::Config;
        if self.targets.is_empty() {
            return Err(Config("a trunk needs at least one target"));
        }
        let addrs = self
            .targets
            .iter()
            .map(|t| (&t.addr, false))
            .chain(self.outbound_proxy.as_ref().map(|a| (a, true)));
        for (a, proxy) in addrs {
            if a.host.is_empty() || a.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Config(if proxy {
                    "the outbound proxy's host is empty or holds whitespace"
                } else {
                    "a target host is empty or holds whitespace"
                }));
            }
            if a.port == 0 {
                return Err(Config(if proxy {
                    "the outbound proxy's port is 0"
                } else {
                    "a target port is 0"
                }));
            }
            if a.transport.is_websocket() {
                return Err(Config(
                    "a trunk target uses UDP, TCP or TLS (WebSocket is for phones)",
                ));
            }
        }
        let hosts = addrs_hosts(self);
        if hosts
            .iter()
            .any(|h| siplink_message::uri::Host::parse(h).is_err())
        {
            return Err(Config(
                "a host (target, outbound proxy, Request-URI or From domain, probe domain) is not a valid SIP host",
            ));
        }
        if self.health.down_after == 0 || self.health.up_after == 0 {
            return Err(Config("health thresholds must be at least 1"));
        }
        if self.health.interval.is_zero() {
            return Err(Config("the health probe interval must not be zero"));
        }
        Ok(())
    }
}

/// Every configured host name or address.
fn addrs_hosts(c: &TrunkConfig) -> Vec<&str> {
    let mut v: Vec<&str> = c.targets.iter().map(|t| t.addr.host.as_str()).collect();
    v.extend(c.outbound_proxy.as_ref().map(|p| p.host.as_str()));
    if let RuriHost::Domain(d) = &c.request_uri_host {
        v.push(d);
    }
    v.extend(c.caller_id.from_host.as_deref());
    v.push(&c.health.from_domain);
    v
}
