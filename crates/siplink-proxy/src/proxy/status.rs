//! What the running proxy reports: each connection's status, the watchers
//! that turn registration, trunk health and binding changes into
//! [`StatusEvent`]s (and log lines), and the `/status` JSON.

use std::sync::Arc;

use siplink_register::State;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::ConnectionKind;
use serde::Serialize;
use siplink_register::ServiceEvent;
use siplink_registrar::{BindingEvent, EventKind, RemoveReason};

use super::state::ConnRuntime;
use super::{Inner, Proxy, lock};
use crate::status::{
    ConnectionState, ConnectionStatus, StatusEvent, ago, describe_state, kept_after_flow_loss,
};

impl Proxy {
    /// The status of every connection.
    pub async fn status(&self) -> Vec<ConnectionStatus> {
        let rt = self.inner.runtime();
        let mut out = Vec::new();
        for c in &rt.connections {
            out.push(self.inner.connection_status(c).await);
        }
        out
    }

    /// The whole status as JSON: listeners, connections, users' bindings.
    pub async fn status_json(&self) -> String {
        let inner = &self.inner;
        let config = self.config();
        let mut users = Vec::new();
        for u in &config.users {
            let mut bindings = Vec::new();
            for t in inner.bindings_of(&u.name, None).await {
                bindings.push(format!(
                    "{} via {} {} since {}{}",
                    t.binding.contact.uri,
                    t.binding.transport,
                    t.binding.source,
                    ago(t.binding.registered_at, inner.clock.wall_now()),
                    if kept_after_flow_loss(&t.binding) {
                        " (its connection closed; reached at its Contact)"
                    } else {
                        ""
                    }
                ));
            }
            users.push(UserDoc {
                name: u.name.clone(),
                bindings,
            });
        }
        let doc = StatusDoc {
            uptime_s: inner
                .clock
                .wall_now()
                .duration_since(inner.started)
                .unwrap_or_default()
                .as_secs(),
            listeners: self
                .listeners()
                .iter()
                .map(|(p, a)| format!("{p} {a}"))
                .collect(),
            connections: self.status().await,
            users,
        };
        serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
    }
}

impl Inner {
    pub(crate) async fn connection_status(&self, c: &ConnRuntime) -> ConnectionStatus {
        let up = self.connection_up(c, None).await;
        let mut detail = Vec::new();
        let state = if !c.config.enabled {
            ConnectionState::Disabled
        } else {
            match c.config.kind {
                ConnectionKind::OutboundRegistration => {
                    for r in &c.registrations {
                        let s = r.status.borrow().clone();
                        detail.push(format!(
                            "{}: {}",
                            r.user.as_deref().unwrap_or(&r.contact_user),
                            crate::status::describe_state(&s.state, self.clock.now())
                        ));
                    }
                    if up {
                        ConnectionState::Registered
                    } else {
                        ConnectionState::Down
                    }
                }
                ConnectionKind::Trunk => {
                    for (_, t) in &c.trunks {
                        for (target, h) in t.config().targets.iter().zip(t.health()) {
                            detail.push(format!("{}: {}", target.addr, h.state));
                        }
                    }
                    if up {
                        ConnectionState::Up
                    } else {
                        ConnectionState::Down
                    }
                }
                ConnectionKind::InboundRegistration => {
                    for t in self.pbx_targets(c).await.unwrap_or_default() {
                        let b = &t.binding;
                        let mut line = format!(
                            "registered from {} over {} since {}",
                            b.source,
                            b.transport,
                            crate::status::ago(b.registered_at, self.clock.wall_now())
                        );
                        if crate::status::kept_after_flow_loss(b) {
                            line.push_str(&format!(
                                "; its connection closed, reached at its Contact {}",
                                b.contact.uri
                            ));
                        }
                        detail.push(line);
                    }
                    if !up {
                        detail.push(match self.down_reason(&c.config.name) {
                            Some(why) => format!("down: {why}"),
                            None => "down: the PBX has not registered".to_owned(),
                        });
                    }
                    if up {
                        ConnectionState::Registered
                    } else {
                        ConnectionState::Down
                    }
                }
            }
        };
        let last_change = lock(&self.changes)
            .get(&c.config.name)
            .map(|t| crate::status::ago(*t, self.clock.wall_now()));
        ConnectionStatus {
            last_change,
            name: c.config.name.clone(),
            kind: c.config.kind,
            state,
            detail,
            last_error: lock(&c.last_error)
                .as_ref()
                .map(|(t, e)| format!("{e} ({})", crate::status::ago(*t, self.clock.wall_now()))),
        }
    }
}

pub(crate) async fn watch_registrations(
    inner: Arc<Inner>,
    mut events: broadcast::Receiver<ServiceEvent>,
) {
    loop {
        match events.recv().await {
            Ok(ServiceEvent::StateChanged { id, state }) => {
                let rt = inner.runtime();
                let found = rt.connections.iter().find_map(|c| {
                    c.registrations.iter().find(|r| r.id == id).map(|r| {
                        (
                            c.config.name.clone(),
                            r.user.clone().unwrap_or(r.contact_user.clone()),
                        )
                    })
                });
                let Some((connection, account)) = found else {
                    continue;
                };
                let text = describe_state(&state, inner.clock.now());
                match &state {
                    State::Failed { .. } | State::Retrying { .. } => {
                        warn!(%connection, %account, "registration {text}")
                    }
                    _ => info!(%connection, %account, "registration {text}"),
                }
                let _ = inner.events.send(StatusEvent::Registration {
                    connection,
                    account,
                    state: text,
                });
            }
            Ok(ServiceEvent::Removed { .. }) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!("status: {n} registration events lost")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

pub(crate) async fn watch_trunk(
    inner: std::sync::Weak<Inner>,
    events: broadcast::Sender<StatusEvent>,
    connection: String,
    trunk: siplink_trunk::Trunk,
) {
    let mut rx = trunk.health_events();
    let targets: Vec<String> = trunk
        .config()
        .targets
        .iter()
        .map(|t| t.addr.to_string())
        .collect();
    drop(trunk);
    loop {
        match rx.recv().await {
            Ok(e) => {
                let target = targets.get(e.target).cloned().unwrap_or_default();
                if let Some(inner) = inner.upgrade() {
                    inner.changed(&connection);
                }
                let state = e.to.to_string();
                if e.to == siplink_trunk::HealthState::Down {
                    warn!(%connection, %target, "trunk target {state} ({:?})", e.reason);
                } else {
                    info!(%connection, %target, "trunk target {state}");
                }
                let _ = events.send(StatusEvent::Target {
                    connection: connection.clone(),
                    target,
                    state,
                });
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

pub(crate) async fn watch_bindings(inner: Arc<Inner>) {
    let mut events = inner.registrar.subscribe();
    loop {
        match events.recv().await {
            Ok(e) => {
                let change = match &e.kind {
                    EventKind::Added => "added".to_owned(),
                    EventKind::Refreshed => "refreshed".to_owned(),
                    EventKind::Removed(RemoveReason::FlowClosed) => {
                        "removed (connection closed)".to_owned()
                    }
                    EventKind::Removed(why) => format!("removed ({why:?})"),
                    EventKind::FlowLost => "connection closed, kept with its Contact".to_owned(),
                };
                let aor = e.binding.aor.to_string();
                if let Some(user) = aor.strip_prefix("sip:").and_then(|a| a.split('@').next()) {
                    let rt = inner.runtime();
                    for c in &rt.connections {
                        if c.config.kind == ConnectionKind::InboundRegistration
                            && c.config.username.as_deref() == Some(user)
                        {
                            inner.changed(&c.config.name);
                            pbx_binding_changed(&inner, c, &e).await;
                        }
                    }
                }
                let contact = e.binding.contact.uri.to_string();
                if !matches!(e.kind, EventKind::Refreshed) {
                    info!(%aor, %contact, source = %e.binding.source, transport = %e.binding.transport, "binding {change}");
                }
                let _ = inner.events.send(StatusEvent::Binding {
                    aor,
                    contact,
                    change,
                });
            }
            Err(broadcast::error::RecvError::Lagged(n)) => warn!("status: {n} binding events lost"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// An inbound-registration PBX's binding changed: remember why it went
/// away (shown in the status while the connection is down) and say so in the
/// log when the connection is down now, the PBX's calls failing over.
pub(super) async fn pbx_binding_changed(inner: &Inner, c: &ConnRuntime, e: &BindingEvent) {
    let name = &c.config.name;
    let b = &e.binding;
    let why = match e.kind {
        EventKind::Added | EventKind::Refreshed => {
            lock(&inner.went_down).remove(name);
            return;
        }
        EventKind::FlowLost => {
            info!(connection = %name, "inbound PBX's {} connection from {} closed; kept, reached at its Contact {}", b.transport, b.source, b.contact.uri);
            return;
        }
        EventKind::Removed(RemoveReason::FlowClosed) => {
            format!("connection closed ({} from {})", b.transport, b.source)
        }
        EventKind::Removed(RemoveReason::Expired) => "registration expired".to_owned(),
        EventKind::Removed(RemoveReason::Unregistered) => "unregistered".to_owned(),
        EventKind::Removed(RemoveReason::Replaced) => "binding replaced".to_owned(),
    };
    lock(&inner.went_down).insert(name.clone(), (inner.clock.wall_now(), why.clone()));
    if inner.connection_up(c, None).await {
        info!(connection = %name, "an inbound PBX binding went away ({why}); still registered");
    } else {
        warn!(connection = %name, "inbound PBX down: {why}; its calls go to the next matching connection");
    }
}

#[derive(Serialize)]
struct StatusDoc {
    uptime_s: u64,
    listeners: Vec<String>,
    connections: Vec<ConnectionStatus>,
    users: Vec<UserDoc>,
}

#[derive(Serialize)]
struct UserDoc {
    name: String,
    bindings: Vec<String>,
}
