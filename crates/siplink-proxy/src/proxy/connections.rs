//! A connection's runtime built from its configuration: the accounts of an
//! outbound registration and their registrations, the trunks that carry its
//! calls, and the TLS client configuration (roots and pins).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use siplink_auth::{Algorithm, ClientCredentials};
use siplink_message::Transport as Protocol;
use siplink_message::uri::SipUri;
use siplink_register::RegistrationConfig;
use siplink_transport::{Roots, TlsClientConfig};
use siplink_trunk::{Trunk, TrunkConfig};

use crate::config::{Config, ConnectionConfig, ConnectionKind, RegistrationMode};
use crate::error::Error;

use super::state::{ConnRuntime, RegEntry, sip_host};
use super::{Inner, Proxy};

/// One account to register.
pub(super) struct Account {
    /// The proxy user it belongs to (per-user mode).
    pub(super) user: Option<String>,
    /// The user name registered (AOR user part, From of calls).
    pub(super) username: String,
    /// Digest credentials (with the authentication ID).
    pub(super) creds: Option<ClientCredentials>,
    /// User part of our Contact.
    pub(super) contact_user: String,
}

/// The accounts an outbound-registration connection registers.
pub(super) fn accounts_of(c: &ConnectionConfig) -> Vec<Account> {
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

pub(super) fn client_credentials(
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

impl Proxy {
    /// Builds the runtime of every connection, reusing `old` ones whose
    /// configuration did not change.
    pub(super) async fn build_connections(
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

    pub(super) async fn build_connection(
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
                tokio::spawn(super::status::watch_trunk(
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
}

/// The REGISTER configuration of one account of an outbound-registration
/// connection.
pub(super) fn registration_config(
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
pub(super) fn first_account(c: &ConnectionConfig) -> Option<(String, Option<ClientCredentials>)> {
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

pub(super) fn trunk_config(
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
