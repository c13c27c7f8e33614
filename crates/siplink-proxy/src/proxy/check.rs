//! Test Connection: is the PBX reachable, and do the credentials work? (The
//! public face is `siplink_proxy::connection_test`, which re-exports it.)

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use siplink_register::{FailureReason, State};

use super::Proxy;
use super::connections::{test_registration, tls_client, trunk_config_for_test};
use crate::config::{ConnectionConfig, ConnectionKind};
use crate::error::Error;

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum StepResult {
    /// Passed: what was seen.
    Ok {
        /// Details (addresses, status, expiry...).
        detail: String,
    },
    /// Failed.
    Failed {
        /// What went wrong.
        reason: String,
        /// What the user can do about it.
        fix: String,
    },
    /// Not run (an earlier step failed, or it does not apply).
    Skipped {
        /// Why.
        why: String,
    },
}

/// One step of a test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What was checked (`127.0.0.1:5080 resolve`, `register`...).
    pub name: String,
    /// How it went.
    #[serde(flatten)]
    pub result: StepResult,
}

/// The outcome of Test Connection for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The connection's name.
    pub connection: String,
    /// Its kind.
    pub kind: ConnectionKind,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// Whether every step that ran passed.
    pub fn is_ok(&self) -> bool {
        !self
            .steps
            .iter()
            .any(|s| matches!(s.result, StepResult::Failed { .. }))
    }

    /// The first failed step.
    pub fn first_failure(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| matches!(s.result, StepResult::Failed { .. }))
    }

    fn ok(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            result: StepResult::Ok {
                detail: detail.into(),
            },
        });
    }

    fn fail(&mut self, name: impl Into<String>, reason: impl Into<String>, fix: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            result: StepResult::Failed {
                reason: reason.into(),
                fix: fix.into(),
            },
        });
    }

    fn skip(&mut self, name: impl Into<String>, why: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            result: StepResult::Skipped { why: why.into() },
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Test connection {:?} ({}):", self.connection, self.kind)?;
        for s in &self.steps {
            match &s.result {
                StepResult::Ok { detail } => writeln!(f, "  [ OK ] {}: {detail}", s.name)?,
                StepResult::Failed { reason, fix } => {
                    writeln!(f, "  [FAIL] {}: {reason}", s.name)?;
                    writeln!(f, "         fix: {fix}")?;
                }
                StepResult::Skipped { why } => writeln!(f, "  [ -- ] {}: skipped ({why})", s.name)?,
            }
        }
        write!(
            f,
            "Result: {}",
            match self.first_failure() {
                None => "OK".to_owned(),
                Some(s) => format!("FAILED at {}", s.name),
            }
        )
    }
}

impl Proxy {
    /// Test Connection for the connection called `name` on this running proxy
    /// (for inbound registration it reports the PBX's binding).
    pub async fn test_connection(&self, name: &str) -> Result<Report, Error> {
        let rt = self.inner.runtime();
        let Some(c) = rt
            .connections
            .iter()
            .find(|c| c.config.name == name)
            .cloned()
        else {
            return Err(Error::UnknownConnection(name.to_owned()));
        };
        Ok(run_on(self, &c.config).await)
    }
}

/// Runs the test for `c` with the proxy's endpoint and registration service.
pub(crate) async fn run_on(proxy: &Proxy, c: &ConnectionConfig) -> Report {
    let mut report = Report {
        connection: c.name.clone(),
        kind: c.kind,
        steps: Vec::new(),
    };
    if !c.enabled {
        report.skip("connection", "disabled in the configuration");
        return report;
    }
    match c.kind {
        ConnectionKind::InboundRegistration => inbound(proxy, c, &mut report).await,
        ConnectionKind::Trunk => {
            reachability(proxy, c, &mut report).await;
        }
        ConnectionKind::OutboundRegistration => {
            let reachable = reachability(proxy, c, &mut report).await;
            if reachable {
                register(proxy, c, &mut report).await;
            } else {
                report.skip("register", "the PBX is not reachable");
            }
        }
    }
    report
}

/// Resolution, transport, OPTIONS (and its challenge) for each address.
/// Returns whether at least one address passed.
pub(super) async fn reachability(proxy: &Proxy, c: &ConnectionConfig, report: &mut Report) -> bool {
    let config = proxy.config();
    let trunk_config = trunk_config_for_test(c, &config);
    let mut any_ok = false;
    for (i, target) in trunk_config.targets.iter().enumerate() {
        let mut options = siplink_trunk::TestOptions::default();
        if let Ok(Some(tls)) = tls_client(&config) {
            options.transport.tls_client = Some(tls);
        }
        let r = match siplink_trunk::test_connection(&trunk_config, i, options).await {
            Ok(r) => r,
            Err(e) => {
                report.fail(
                    format!("{}", target.addr),
                    e.to_string(),
                    "check the connection's settings",
                );
                continue;
            }
        };
        if r.is_ok() {
            any_ok = true;
        }
        for (step, result) in &r.steps {
            let name = format!("{} {step}", target.addr);
            match result {
                siplink_trunk::report::StepResult::Ok(d) => report.ok(name, d.clone()),
                siplink_trunk::report::StepResult::Failed(f) => {
                    report.fail(name, f.to_string(), f.hint(*step))
                }
                siplink_trunk::report::StepResult::Skipped(w) => report.skip(name, *w),
            }
        }
    }
    any_ok
}

/// Registers with the connection's credentials, waits for the outcome,
/// unregisters.
pub(super) async fn register(proxy: &Proxy, c: &ConnectionConfig, report: &mut Report) {
    let config = proxy.config();
    let Some(rc) = test_registration(proxy, c, &config) else {
        report.fail(
            "register",
            "the connection has no account to register",
            "set username and password (or accounts in per-user mode)",
        );
        return;
    };
    let username = rc.aor.user().unwrap_or_default().to_owned();
    let registrations = &proxy.inner.registrations;
    let (id, mut status) = match registrations.add(rc).await {
        Ok(x) => x,
        Err(e) => {
            report.fail("register", e.to_string(), "check the connection's settings");
            return;
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = status.borrow_and_update().state.clone();
            match s {
                State::Registered { .. } | State::Failed { .. } | State::Retrying { .. } => {
                    return s;
                }
                _ => {}
            }
            if status.changed().await.is_err() {
                return State::Unregistered;
            }
        }
    })
    .await;
    let _ = registrations.remove(id).await;
    let name = format!("register as {username}");
    match outcome {
        Ok(State::Registered { expires_at }) => {
            let left = expires_at.saturating_duration_since(proxy.inner.clock.now());
            report.ok(
                name,
                format!(
                    "credentials accepted, {} s granted; unregistered again",
                    left.as_secs() + 1
                ),
            );
        }
        Ok(State::Failed { reason }) | Ok(State::Retrying { reason, .. }) => {
            let fix = match reason {
                FailureReason::AuthRejected => {
                    "the PBX rejects the user name or password: check them (and the realm) against the extension on the PBX"
                }
                FailureReason::NotFound => {
                    "the PBX does not know this user: check the user name and the PBX's domain"
                }
                FailureReason::Timeout => {
                    "the PBX did not answer REGISTER: it is offline, the address or port is wrong, or a firewall drops SIP"
                }
                FailureReason::TransportError | FailureReason::FlowClosed => {
                    "the connection to the PBX failed: check the address, port and transport"
                }
                FailureReason::IntervalTooBrief => {
                    "the PBX wants a longer expiry: raise registration.expires"
                }
                FailureReason::Rejected(403) => {
                    "the PBX forbids this registration: check the account and its allowed IPs"
                }
                _ => "check the PBX's logs for why it refused the registration",
            };
            report.fail(name, reason.to_string(), fix);
        }
        Ok(_) => report.fail(name, "the registration was stopped", "try again"),
        Err(_) => report.fail(
            name,
            "no answer to REGISTER within 10 s",
            "the PBX is offline or a firewall drops SIP from the proxy",
        ),
    }
}

pub(super) async fn inbound(proxy: &Proxy, c: &ConnectionConfig, report: &mut Report) {
    let inner = &proxy.inner;
    let Some(user) = c.username.as_deref() else {
        report.fail("binding", "the connection has no username", "set username");
        return;
    };
    let aor = format!(
        "{user}@{}",
        c.domain.as_deref().unwrap_or("any of our domains")
    );
    let targets = inner.bindings_of(user, c.domain.as_deref()).await;
    if targets.is_empty() {
        let (host, port) = inner.local_addr(siplink_message::Transport::Udp, &proxy.config());
        report.fail(
            format!("binding of {aor}"),
            "the PBX is not registered to the proxy",
            format!(
                "configure the PBX to register to {host}:{port} as {:?} with the connection's password; check that it can reach the proxy (firewall) and look for 401/403 answers in its log",
                c.username.as_deref().unwrap_or_default()
            ),
        );
        return;
    }
    for t in targets {
        let reach = match t.reach {
            siplink_registrar::Reach::Flow(_) => "over its own connection",
            siplink_registrar::Reach::Contact { .. } => "at its Contact",
        };
        report.ok(
            format!("binding of {aor}"),
            format!(
                "registered {} from {} over {}, reachable {reach}; contact {}",
                crate::status::ago(t.binding.registered_at, inner.clock.wall_now()),
                t.binding.source,
                t.binding.transport,
                t.binding.contact.uri
            ),
        );
    }
}

/// Test Connection without a running proxy: starts a private one on
/// ephemeral loopback/any ports with only the connection `name` and tests
/// it. Inbound registration can only be checked on the running proxy (its
/// status endpoint, `GET /test/NAME`).
pub async fn test_connection(config: &crate::Config, name: &str) -> Result<Report, crate::Error> {
    let Some(c) = config.connection(name).cloned() else {
        return Err(crate::Error::UnknownConnection(name.to_owned()));
    };
    let mut private = config.clone();
    private.connections = vec![ConnectionConfig {
        // No background registration: the test registers by itself.
        enabled: c.kind != ConnectionKind::OutboundRegistration,
        probe: crate::config::ProbeOptions {
            enabled: Some(false),
            ..c.probe.clone()
        },
        ..c.clone()
    }];
    for u in &mut private.users {
        u.connections = None;
    }
    private.proxy.status_listen = None;
    for l in &mut private.listeners {
        l.address.set_port(0);
    }
    private.listeners.retain(|l| !l.transport.is_websocket());
    let proxy = Proxy::start(private).await?;
    let mut report = Report {
        connection: c.name.clone(),
        kind: c.kind,
        steps: Vec::new(),
    };
    match c.kind {
        ConnectionKind::InboundRegistration => report.skip(
            "binding",
            "only the running proxy knows its bindings: ask it with GET /test/NAME on its status endpoint",
        ),
        ConnectionKind::Trunk => {
            reachability(&proxy, &c, &mut report).await;
        }
        ConnectionKind::OutboundRegistration => {
            if reachability(&proxy, &c, &mut report).await {
                register(&proxy, &c, &mut report).await;
            } else {
                report.skip("register", "the PBX is not reachable");
            }
        }
    }
    proxy.shutdown().await;
    Ok(report)
}
