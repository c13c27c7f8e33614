//! The proxy's routing state, swapped whole on reload (`Runtime`: the
//! configuration, its router and each connection's runtime), and what the
//! rest of the proxy asks of it: whether a connection is up, a user's or an
//! inbound PBX's bindings, the host and port we advertise.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use siplink_message::Transport as Protocol;
use siplink_register::{RegistrationId, State, Status};
use siplink_registrar::Aor;
use siplink_transport::Transport;
use siplink_trunk::Trunk;
use tokio::sync::watch;

use crate::config::{Config, ConnectionConfig, ConnectionKind, RegistrationMode};
use crate::core::Local;
use crate::routing::Router;

use super::{Inner, lock};

/// One registration the proxy keeps to a PBX.
#[derive(Debug, Clone)]
pub(crate) struct RegEntry {
    /// The proxy user it belongs to (per-user mode).
    pub user: Option<String>,
    pub id: RegistrationId,
    pub contact_user: String,
    pub status: watch::Receiver<Status>,
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
    pub(super) fn trunk_for(&self, user: Option<&str>) -> Option<&Trunk> {
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
    pub(super) fn is_pbx_address(&self, peer: SocketAddr) -> bool {
        if peer.ip().is_loopback() {
            let targets = self.config.targets().unwrap_or_default();
            targets
                .iter()
                .any(|t| t.host.parse::<IpAddr>().ok() == Some(peer.ip()) && t.port == peer.port())
        } else {
            self.ips.contains(&peer.ip())
        }
    }

    pub(super) fn set_error(&self, at: SystemTime, text: String) {
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

    pub(super) fn is_user(&self, name: &str) -> bool {
        self.runtime().config.user(name).is_some()
    }
}

/// The host and port peers should use for our socket `addr`: the
/// configured `advertise` name, else its IP (127.0.0.1 for an unspecified
/// address).
pub(super) fn advertised(addr: SocketAddr, config: &Config) -> (String, u16) {
    let host = match &config.proxy.advertise {
        Some(h) => h.clone(),
        None if addr.ip().is_unspecified() => "127.0.0.1".into(),
        None => addr.ip().to_string(),
    };
    (host, addr.port())
}

pub(super) fn sip_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

pub(super) fn local_identity(config: &Config, transport: &Transport) -> Local {
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

pub(super) fn registrar_domains(config: &Config, transport: &Transport) -> Vec<String> {
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
