//! Name resolution: a [`Resolver`] trait (A/AAAA, NAPTR, SRV), the system
//! resolver (A/AAAA only), a static table for tests, and the RFC 3263 §4
//! procedure on top ([`resolve_uri`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use siplink_message::uri::Host;

use crate::error::{Error, Result};
use crate::types::{Protocol, Target};

/// A boxed future, so that [`Resolver`] can be used as `dyn Resolver`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A NAPTR record (RFC 3403) as RFC 3263 uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Order (lower first).
    pub order: u16,
    /// Preference among records of the same order (lower first).
    pub preference: u16,
    /// Flags; RFC 3263 uses `s` (the replacement is an SRV name).
    pub flags: String,
    /// Service: `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, `SIP+D2W`, `SIPS+D2W`.
    pub service: String,
    /// The SRV name to look up next.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight among records of the same priority (higher first here).
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Host name.
    pub target: String,
}

/// DNS lookups used by the transport. NAPTR and SRV default to "no record".
pub trait Resolver: Send + Sync + Debug + 'static {
    /// A and AAAA records of `host`.
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>>>;

    /// NAPTR records of `domain`.
    fn lookup_naptr<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Naptr>>> {
        let _ = domain;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// SRV records of `name` (`_sip._udp.example.com`...).
    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Srv>>> {
        let _ = name;
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A/AAAA through the operating system (`getaddrinfo`, run by tokio); no
/// NAPTR or SRV.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| Error::Resolve {
                    name: host.to_string(),
                    reason: e.to_string(),
                })?;
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !ips.contains(&a.ip()) {
                    ips.push(a.ip());
                }
            }
            if ips.is_empty() {
                return Err(Error::Resolve {
                    name: host.to_string(),
                    reason: "no address".into(),
                });
            }
            Ok(ips)
        })
    }
}

/// A fixed table of records (for tests and static deployments). Names are
/// matched case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    ips: HashMap<String, Vec<IpAddr>>,
    naptr: HashMap<String, Vec<Naptr>>,
    srv: HashMap<String, Vec<Srv>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds A/AAAA records.
    pub fn with_ip(mut self, host: &str, ips: &[IpAddr]) -> Self {
        self.ips
            .entry(host.to_ascii_lowercase())
            .or_default()
            .extend_from_slice(ips);
        self
    }
    /// Adds a NAPTR record.
    pub fn with_naptr(mut self, domain: &str, record: Naptr) -> Self {
        self.naptr
            .entry(domain.to_ascii_lowercase())
            .or_default()
            .push(record);
        self
    }
    /// Adds an SRV record.
    pub fn with_srv(mut self, name: &str, record: Srv) -> Self {
        self.srv
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(record);
        self
    }
}

impl Resolver for StaticResolver {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>>> {
        let r = self
            .ips
            .get(&host.to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| Error::Resolve {
                name: host.to_string(),
                reason: "no address in the static table".into(),
            });
        Box::pin(async move { r })
    }
    fn lookup_naptr<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Naptr>>> {
        let r = self
            .naptr
            .get(&domain.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(r) })
    }
    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Srv>>> {
        let r = self
            .srv
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(r) })
    }
}

/// The NAPTR service and SRV prefix of a protocol (RFC 3263 §4.1, RFC 7118 §9).
fn service(protocol: Protocol) -> (&'static str, &'static str) {
    match protocol {
        Protocol::Udp => ("SIP+D2U", "_sip._udp"),
        Protocol::Tcp => ("SIP+D2T", "_sip._tcp"),
        Protocol::Tls => ("SIPS+D2T", "_sips._tcp"),
        Protocol::Ws => ("SIP+D2W", "_sip._ws"),
        Protocol::Wss => ("SIPS+D2W", "_sips._ws"),
    }
}

fn protocol_of_service(s: &str) -> Option<Protocol> {
    Protocol::ALL
        .into_iter()
        .find(|p| service(*p).0.eq_ignore_ascii_case(s))
}

async fn srv_targets(
    resolver: &dyn Resolver,
    name: &str,
    protocol: Protocol,
    server_name: &str,
) -> Result<Vec<Target>> {
    let mut records = resolver.lookup_srv(name).await?;
    records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
    let mut out = Vec::new();
    for r in records {
        if r.target == "." {
            continue; // "service decidedly not available"
        }
        let ips = match Host::parse(&r.target).ok().and_then(|h| h.ip()) {
            Some(ip) => vec![ip],
            None => match resolver.lookup_ip(&r.target).await {
                Ok(ips) => ips,
                Err(_) => continue,
            },
        };
        out.extend(ips.into_iter().map(|ip| {
            Target::new(protocol, SocketAddr::new(ip, r.port)).with_server_name(server_name)
        }));
    }
    Ok(out)
}

async fn a_targets(
    resolver: &dyn Resolver,
    host: &str,
    port: u16,
    protocol: Protocol,
) -> Result<Vec<Target>> {
    Ok(resolver
        .lookup_ip(host)
        .await?
        .into_iter()
        .map(|ip| Target::new(protocol, SocketAddr::new(ip, port)).with_server_name(host))
        .collect())
}

/// RFC 3263 §4: the targets for a SIP(S) URI's `host`, `port` and
/// `transport` parameter, in the order to try them.
///
/// * An IP address: that address, with the given transport (else UDP, or TLS
///   for `sips`) and port (else the transport's default).
/// * A name with a port: A/AAAA, with the given transport (else UDP / TLS).
/// * A name with a transport but no port: SRV for that transport, else A/AAAA
///   with the default port.
/// * A name alone: NAPTR (records with the `s` flag and a service this crate
///   speaks, only secure ones for `sips`, by order then preference), each
///   followed by SRV; without NAPTR records, SRV for TLS, TCP then UDP (only
///   TLS for `sips`); without SRV records, A/AAAA with UDP (TLS for `sips`)
///   and the default port.
///
/// SRV records are tried by priority, then by weight, highest first (no
/// random weighting). TLS targets carry the URI's host as `server_name`.
pub async fn resolve_uri(
    resolver: &dyn Resolver,
    host: &str,
    port: Option<u16>,
    transport: Option<Protocol>,
    sips: bool,
) -> Result<Vec<Target>> {
    let default = if sips { Protocol::Tls } else { Protocol::Udp };
    if let Some(ip) = Host::parse(host).ok().and_then(|h| h.ip()) {
        let p = transport.unwrap_or(default);
        return Ok(vec![Target::new(
            p,
            SocketAddr::new(ip, port.unwrap_or(p.default_port())),
        )]);
    }
    if let Some(port) = port {
        return a_targets(resolver, host, port, transport.unwrap_or(default)).await;
    }
    if let Some(p) = transport {
        let srv = srv_targets(resolver, &format!("{}.{host}", service(p).1), p, host).await?;
        if !srv.is_empty() {
            return Ok(srv);
        }
        return a_targets(resolver, host, p.default_port(), p).await;
    }
    let mut naptr = resolver.lookup_naptr(host).await?;
    naptr.retain(|n| n.flags.eq_ignore_ascii_case("s"));
    naptr.sort_by(|a, b| a.order.cmp(&b.order).then(a.preference.cmp(&b.preference)));
    let mut out = Vec::new();
    for n in &naptr {
        let Some(p) = protocol_of_service(&n.service) else {
            continue;
        };
        if sips && !p.is_secure() {
            continue;
        }
        out.extend(srv_targets(resolver, &n.replacement, p, host).await?);
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let order: &[Protocol] = if sips {
        &[Protocol::Tls]
    } else {
        &[Protocol::Tls, Protocol::Tcp, Protocol::Udp]
    };
    for p in order {
        out.extend(srv_targets(resolver, &format!("{}.{host}", service(*p).1), *p, host).await?);
    }
    if !out.is_empty() {
        return Ok(out);
    }
    a_targets(resolver, host, default.default_port(), default).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> StaticResolver {
        StaticResolver::new()
            .with_ip("a.example.com", &[ip("192.0.2.1"), ip("2001:db8::1")])
            .with_ip("b.example.com", &[ip("192.0.2.2")])
            .with_naptr(
                "naptr.example.com",
                Naptr {
                    order: 50,
                    preference: 50,
                    flags: "s".into(),
                    service: "SIP+D2U".into(),
                    replacement: "_sip._udp.naptr.example.com".into(),
                },
            )
            .with_naptr(
                "naptr.example.com",
                Naptr {
                    order: 10,
                    preference: 50,
                    flags: "s".into(),
                    service: "SIPS+D2T".into(),
                    replacement: "_sips._tcp.naptr.example.com".into(),
                },
            )
            .with_srv(
                "_sips._tcp.naptr.example.com",
                Srv {
                    priority: 0,
                    weight: 0,
                    port: 5061,
                    target: "b.example.com".into(),
                },
            )
            .with_srv(
                "_sip._udp.naptr.example.com",
                Srv {
                    priority: 0,
                    weight: 0,
                    port: 5080,
                    target: "a.example.com".into(),
                },
            )
            .with_srv(
                "_sip._tcp.srv.example.com",
                Srv {
                    priority: 20,
                    weight: 0,
                    port: 5070,
                    target: "a.example.com".into(),
                },
            )
            .with_srv(
                "_sip._tcp.srv.example.com",
                Srv {
                    priority: 10,
                    weight: 0,
                    port: 5071,
                    target: "b.example.com".into(),
                },
            )
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn addrs(t: &[Target]) -> Vec<(Protocol, String)> {
        t.iter().map(|t| (t.protocol, t.addr.to_string())).collect()
    }

    #[test]
    fn ip_literals_and_explicit_ports() {
        let r = table();
        let t = run(resolve_uri(&r, "192.0.2.9", None, None, false)).unwrap();
        assert_eq!(addrs(&t), vec![(Protocol::Udp, "192.0.2.9:5060".into())]);
        let t = run(resolve_uri(&r, "[2001:db8::9]", None, None, true)).unwrap();
        assert_eq!(
            addrs(&t),
            vec![(Protocol::Tls, "[2001:db8::9]:5061".into())]
        );
        let t = run(resolve_uri(
            &r,
            "a.example.com",
            Some(5099),
            Some(Protocol::Tcp),
            false,
        ))
        .unwrap();
        assert_eq!(
            addrs(&t),
            vec![
                (Protocol::Tcp, "192.0.2.1:5099".into()),
                (Protocol::Tcp, "[2001:db8::1]:5099".into())
            ]
        );
        assert_eq!(t[0].server_name.as_deref(), Some("a.example.com"));
    }

    #[test]
    fn naptr_then_srv_in_order() {
        let r = table();
        let t = run(resolve_uri(&r, "naptr.example.com", None, None, false)).unwrap();
        assert_eq!(
            addrs(&t),
            vec![
                (Protocol::Tls, "192.0.2.2:5061".into()),
                (Protocol::Udp, "192.0.2.1:5080".into()),
                (Protocol::Udp, "[2001:db8::1]:5080".into()),
            ]
        );
        let t = run(resolve_uri(&r, "naptr.example.com", None, None, true)).unwrap();
        assert_eq!(addrs(&t), vec![(Protocol::Tls, "192.0.2.2:5061".into())]);
    }

    #[test]
    fn srv_without_naptr_and_a_fallback() {
        let r = table();
        let t = run(resolve_uri(&r, "srv.example.com", None, None, false)).unwrap();
        assert_eq!(
            addrs(&t),
            vec![
                (Protocol::Tcp, "192.0.2.2:5071".into()),
                (Protocol::Tcp, "192.0.2.1:5070".into()),
                (Protocol::Tcp, "[2001:db8::1]:5070".into()),
            ]
        );
        let t = run(resolve_uri(&r, "b.example.com", None, None, false)).unwrap();
        assert_eq!(addrs(&t), vec![(Protocol::Udp, "192.0.2.2:5060".into())]);
        let t = run(resolve_uri(
            &r,
            "b.example.com",
            None,
            Some(Protocol::Tls),
            false,
        ))
        .unwrap();
        assert_eq!(addrs(&t), vec![(Protocol::Tls, "192.0.2.2:5061".into())]);
        assert!(matches!(
            run(resolve_uri(&r, "nowhere.example.com", None, None, false)),
            Err(Error::Resolve { .. })
        ));
    }
}
