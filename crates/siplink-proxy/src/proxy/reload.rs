//! `Proxy::reload`: a new configuration applied without dropping calls;
//! unchanged connections keep their registrations and trunks.

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::Config;
use crate::error::Error;
use crate::routing::Router;

use super::Proxy;
use super::auth::user_secrets;
use super::state::{ConnRuntime, Runtime};

impl Proxy {
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
        if a.proxy.core != b.proxy.core {
            restart.push("proxy.core");
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
        if let Some(d) = self.inner.engine.get() {
            match crate::plan::Plan::from_config(&config) {
                Ok(plan) => d.set_plan(Arc::new(plan)),
                Err(e) => warn!("reload: the engine keeps its plan: {e}"),
            }
        }
        self.install(config, connections)?;
        info!("configuration reloaded");
        Ok(())
    }

    pub(super) fn install(
        &self,
        config: Config,
        connections: Vec<Arc<ConnRuntime>>,
    ) -> Result<(), Error> {
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
}
