//! Registrar policy.

use std::time::Duration;

/// What to do when a REGISTER would put more than
/// [`RegistrarConfig::max_contacts_per_aor`] bindings on an AOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TooManyContacts {
    /// Remove the least recently refreshed bindings that the REGISTER does not
    /// touch (Kamailio's `max_contacts` with overwrite).
    #[default]
    ReplaceOldest,
    /// Answer 403.
    Reject,
}

/// REGISTER flood limiting per source IP address: at most `max_requests`
/// REGISTERs per `window`; more get 503 with Retry-After.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodConfig {
    /// REGISTERs allowed per window and source (default 100).
    pub max_requests: u32,
    /// The window (default 10 s).
    pub window: Duration,
    /// Sources tracked at most (default 65 536); when full, new sources are
    /// not limited until windows run out.
    pub capacity: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            max_requests: 100,
            window: Duration::from_secs(10),
            capacity: 65_536,
        }
    }
}

/// Registrar policy; [`RegistrarConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// The domains we are registrar for (compared case-insensitively with the
    /// Request-URI host and the AOR host).
    pub domains: Vec<String>,
    /// Smallest accepted expiry in seconds; shorter non-zero ones get 423
    /// (default 60, RFC 3261 §10.3 step 6 and Kamailio's default).
    pub min_expires: u32,
    /// Largest expiry in seconds; longer ones are shortened (default 3600).
    pub max_expires: u32,
    /// Expiry when neither the contact nor the request gives one (default 3600).
    pub default_expires: u32,
    /// Most bindings per AOR (default 10).
    pub max_contacts_per_aor: usize,
    /// What happens beyond it.
    pub on_too_many: TooManyContacts,
    /// Most AORs in the store (default 1 000 000); beyond it new AORs get 503.
    pub max_aors: usize,
    /// Most bindings in the store (default 4 000 000); beyond it new bindings
    /// get 503.
    pub max_bindings: usize,
    /// Option tags we support (`Require` check, `Supported` in 200 OK).
    /// Default `path`, `outbound`. Without `path`, a REGISTER with Path gets
    /// 420; without `outbound`, `reg-id` is ignored (RFC 3261 behaviour).
    pub supported: Vec<String>,
    /// Require digest authentication (default on).
    pub auth: bool,
    /// REGISTER flood limiting (default on, see [`FloodConfig`]).
    pub flood: Option<FloodConfig>,
    /// What happens to a plain (not RFC 5626) binding registered over TCP,
    /// TLS, WS or WSS when that connection closes. Off (the default): it is
    /// removed at once ([`RemoveReason::FlowClosed`](crate::RemoveReason::FlowClosed)),
    /// as Kamailio's `handle_lost_tcp` does, so routing stops trying a
    /// Contact that only the dead connection reached. On: it is kept until it
    /// expires and reached through its Contact URI
    /// ([`EventKind::FlowLost`](crate::EventKind::FlowLost)), for clients
    /// that listen on their Contact address. Outbound bindings are removed
    /// either way; UDP bindings are never touched.
    pub contact_fallback: bool,
}

impl RegistrarConfig {
    /// The defaults for `domains`.
    pub fn new<I, S>(domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RegistrarConfig {
            domains: domains.into_iter().map(Into::into).collect(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts_per_aor: 10,
            on_too_many: TooManyContacts::ReplaceOldest,
            max_aors: 1_000_000,
            max_bindings: 4_000_000,
            supported: vec!["path".into(), "outbound".into()],
            auth: true,
            flood: Some(FloodConfig::default()),
            contact_fallback: false,
        }
    }

    /// Whether `tag` is among [`supported`](Self::supported).
    pub fn supports(&self, tag: &str) -> bool {
        self.supported.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// Whether `host` is one of our domains.
    pub fn is_our_domain(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.domains.iter().any(|d| {
            let d = d.strip_suffix('.').unwrap_or(d);
            d.eq_ignore_ascii_case(host)
        })
    }

    /// [`is_our_domain`](Self::is_our_domain) for a parsed host, without
    /// writing it out: an IPv4 address matches the domains that read as it
    /// (Rust's parser takes only the canonical dotted quad, which is what
    /// the address writes as).
    pub(crate) fn is_our_host(&self, host: &siplink_message::uri::Host) -> bool {
        use siplink_message::uri::Host;
        match host {
            Host::Domain(d) => self.is_our_domain(d),
            Host::Ipv6 { text, .. } => self.is_our_domain(text),
            Host::Ipv4(a) => self.domains.iter().any(|d| {
                let d = d.strip_suffix('.').unwrap_or(d);
                d.parse::<std::net::Ipv4Addr>().is_ok_and(|d| d == *a)
            }),
        }
    }

    pub(crate) fn check(&self) -> Result<(), crate::Error> {
        if self.domains.is_empty() {
            return Err(crate::Error::Config("no domains"));
        }
        if self.min_expires > self.max_expires {
            return Err(crate::Error::Config("min_expires above max_expires"));
        }
        if self.default_expires == 0 {
            return Err(crate::Error::Config("default_expires is 0"));
        }
        if self.max_contacts_per_aor == 0 {
            return Err(crate::Error::Config("max_contacts_per_aor is 0"));
        }
        Ok(())
    }
}
