//! What a registration is configured with.

use std::time::Duration;

use siplink_auth::ClientCredentials;
use siplink_message::uri::SipUri;

use crate::error::Error;

pub use siplink_message::{TargetAddr, Transport};

/// Retry and refresh timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// A refresh is sent at least this long before the granted expiry ends
    /// (default 5 s, as PJSIP's `delay_before_refresh`).
    pub refresh_margin: Duration,
    /// On top of the margin, a random share of the granted expiry in
    /// `0..=refresh_jitter` is taken off, so that refreshes spread out
    /// (default 0.1). The refresh is never later than `expiry - margin`, and
    /// never earlier than half the expiry.
    pub refresh_jitter: f64,
    /// RFC 5626 §4.5 `base-time` (default 30 s, the value for "all flows failed").
    pub backoff_base: Duration,
    /// RFC 5626 §4.5 `max-time` (default 1800 s).
    pub backoff_max: Duration,
    /// After a permanent failure (credentials rejected, 404, other 4xx/6xx),
    /// retry after this long (±jitter: 50 % to 100 %), or never with `None`
    /// (default 10 min).
    pub failed_retry: Option<Duration>,
    /// The longest `Retry-After` that is honoured; longer values are cut to it
    /// (default 1 h).
    pub max_retry_after: Duration,
    /// After a connection-oriented flow drops, a re-register is sent within a
    /// random delay of up to this long (default 2 s)...
    pub flow_reregister_jitter: Duration,
    /// ...but no sooner than this after the previous flow-triggered
    /// re-register (default 30 s): a flapping connection never causes a storm.
    pub flow_reregister_min_interval: Duration,
    /// How long an unregister (on shutdown or removal) may take before the
    /// registration is considered gone anyway (default 4 s).
    pub unregister_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            refresh_margin: Duration::from_secs(5),
            refresh_jitter: 0.1,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
            failed_retry: Some(Duration::from_secs(600)),
            max_retry_after: Duration::from_secs(3600),
            flow_reregister_jitter: Duration::from_secs(2),
            flow_reregister_min_interval: Duration::from_secs(30),
            unregister_timeout: Duration::from_secs(4),
        }
    }
}

/// Everything one registration needs.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The registrar: the Request-URI of every REGISTER (`sip:example.com`).
    pub registrar: SipUri,
    /// The address of record (From and To).
    pub aor: SipUri,
    /// The user part of our Contact.
    pub contact_user: String,
    /// Our local address as advertised in Via and Contact (host name or IP,
    /// IPv6 without brackets).
    pub local_host: String,
    /// Our local port.
    pub local_port: u16,
    /// Transport.
    pub transport: Transport,
    /// Digest credentials; `None` registers without authentication.
    pub credentials: Option<ClientCredentials>,
    /// Requested expiry in seconds (default 3600).
    pub expires: u32,
    /// An outbound proxy: a `Route: <uri;lr>` is added and requests are sent
    /// to it (unless `targets` is set).
    pub outbound_proxy: Option<SipUri>,
    /// Where to send, in order of preference: on timeout, transport error or
    /// 503 the next one is tried. Empty: the outbound proxy's or the
    /// registrar's host and port. The driver may replace the list with
    /// resolved addresses ([`Registration::set_targets`](crate::Registration::set_targets)).
    pub targets: Vec<TargetAddr>,
    /// RFC 5626 instance id (`urn:uuid:...`), sent as `+sip.instance`.
    pub instance_id: Option<String>,
    /// RFC 5626 `reg-id`, sent (with `Supported: outbound`) when an instance id
    /// is set; `None` disables Outbound.
    pub reg_id: Option<u32>,
    /// Add `Supported: path` (RFC 3327; default `true`).
    pub path: bool,
    /// Rewrite our Contact with the address the registrar saw (Via
    /// `received`/`rport`) and re-register, as PJSIP does (default `true`).
    pub rewrite_contact: bool,
    /// User-Agent header value, if any.
    pub user_agent: Option<String>,
    /// Timing policy.
    pub timing: Timing,
}

impl RegistrationConfig {
    /// A configuration with the defaults: 3600 s, no credentials, no proxy,
    /// Path on, contact rewrite on, no Outbound.
    pub fn new(
        registrar: SipUri,
        aor: SipUri,
        contact_user: impl Into<String>,
        local_host: impl Into<String>,
        local_port: u16,
        transport: Transport,
    ) -> Self {
        RegistrationConfig {
            registrar,
            aor,
            contact_user: contact_user.into(),
            local_host: local_host.into(),
            local_port,
            transport,
            credentials: None,
            expires: 3600,
            outbound_proxy: None,
            targets: Vec::new(),
            instance_id: None,
            reg_id: None,
            path: true,
            rewrite_contact: true,
            user_agent: None,
            timing: Timing::default(),
        }
    }

    /// The same configuration with credentials.
    pub fn with_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The same configuration with RFC 5626 Outbound (`+sip.instance`, `reg-id`).
    pub fn with_outbound(mut self, instance_id: impl Into<String>, reg_id: u32) -> Self {
        self.instance_id = Some(instance_id.into());
        self.reg_id = Some(reg_id);
        self
    }

    /// Checks the values that cannot be checked by types.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let t = &self.timing;
        if self.expires == 0 {
            return Err(Error::InvalidConfig("expires must be above 0"));
        }
        if !(0.0..=0.5).contains(&t.refresh_jitter) {
            return Err(Error::InvalidConfig(
                "refresh_jitter must be within 0..=0.5",
            ));
        }
        if t.backoff_base.is_zero() || t.backoff_max < t.backoff_base {
            return Err(Error::InvalidConfig(
                "backoff_base must be above 0 and at most backoff_max",
            ));
        }
        if self.contact_user.is_empty()
            || self.local_host.is_empty()
            || self
                .contact_user
                .chars()
                .chain(self.local_host.chars())
                .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>')
        {
            return Err(Error::InvalidConfig(
                "contact_user and local_host must be non-empty, without spaces, controls or <>",
            ));
        }
        if self
            .targets
            .iter()
            .any(|a| a.host.is_empty() || a.port == 0)
        {
            return Err(Error::InvalidConfig("targets need a host and a port"));
        }
        if self.local_port == 0 {
            return Err(Error::InvalidConfig("local_port is 0"));
        }
        if self.registrar.port() == Some(0) {
            return Err(Error::InvalidConfig("the registrar URI's port is 0"));
        }
        if self.outbound_proxy.as_ref().and_then(|u| u.port()) == Some(0) {
            return Err(Error::InvalidConfig("the outbound proxy URI's port is 0"));
        }
        if let Some(i) = &self.instance_id
            && (i.is_empty() || i.chars().any(|c| c.is_control() || c == '"'))
        {
            return Err(Error::InvalidConfig(
                "instance_id must be non-empty, without quotes",
            ));
        }
        Ok(())
    }

    /// The targets to use: the configured ones, or the proxy's / registrar's
    /// host and port.
    pub(crate) fn default_targets(&self) -> Vec<TargetAddr> {
        if !self.targets.is_empty() {
            return self.targets.clone();
        }
        let uri = self.outbound_proxy.as_ref().unwrap_or(&self.registrar);
        let transport = match uri.transport().as_deref() {
            Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            Some(t) if t.eq_ignore_ascii_case("tls") => Transport::Tls,
            Some(t) if t.eq_ignore_ascii_case("ws") => Transport::Ws,
            Some(t) if t.eq_ignore_ascii_case("wss") => Transport::Wss,
            Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
            _ if uri.is_secure() && self.transport == Transport::Udp => Transport::Tls,
            _ => self.transport,
        };
        let host = match uri.host().ip() {
            Some(ip) => ip.to_string(),
            None => uri.host().to_string(),
        };
        let port = uri.port().unwrap_or(transport.default_port());
        vec![TargetAddr::new(host, port, transport)]
    }
}
