//! What the proxy reports about itself: per-connection state, change events
//! (also logged, one line per change) and an HTTP endpoint: `GET /healthz`
//! (open), `GET /status` (JSON) and `GET /test/NAME` (Test Connection), the
//! last two behind a bearer token (`Authorization: Bearer TOKEN`; without it
//! or with a wrong one, 401 with `WWW-Authenticate: Bearer`).
//!
//! The token comes from `proxy.status_token_file` or the environment
//! variable named by `proxy.status_token_env`; with neither, a random one is
//! made at start ([`Proxy::status_token`]). The configuration refuses a
//! status listener off loopback without a configured token.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use siplink_register::{ServiceEvent, State};
use siplink_registrar::{BindingEvent, EventKind, RemoveReason};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::ConnectionKind;
use crate::error::Error;
use crate::proxy::{Inner, Proxy};

/// The state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    /// Registered (outbound: we are registered to the PBX; inbound: the PBX
    /// is registered to us).
    Registered,
    /// A trunk whose targets answer (or are not probed).
    Up,
    /// Not usable now: registration failed, probes failing, PBX not
    /// registered.
    Down,
    /// `enabled = false`.
    Disabled,
}

/// One connection's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionStatus {
    /// The connection's name.
    pub name: String,
    /// Its kind.
    pub kind: ConnectionKind,
    /// Its state.
    pub state: ConnectionState,
    /// Per registration / target / binding lines.
    pub detail: Vec<String>,
    /// The last error seen while carrying calls, with how long ago.
    pub last_error: Option<String>,
    /// How long ago the state last changed (registration, probe, binding),
    /// if it changed since start.
    pub last_change: Option<String>,
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ConnectionState::Registered => "registered",
            ConnectionState::Up => "up",
            ConnectionState::Down => "DOWN",
            ConnectionState::Disabled => "disabled",
        };
        write!(f, "{} ({}): {state}", self.name, self.kind)?;
        for d in &self.detail {
            write!(f, "\n    {d}")?;
        }
        if let Some(t) = &self.last_change {
            write!(f, "\n    last change: {t}")?;
        }
        if let Some(e) = &self.last_error {
            write!(f, "\n    last error: {e}")?;
        }
        Ok(())
    }
}

/// A change the proxy reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum StatusEvent {
    /// An outbound registration of a connection changed state.
    Registration {
        /// The connection.
        connection: String,
        /// The account (per-user mode) or contact user.
        account: String,
        /// The new state, in words.
        state: String,
    },
    /// A trunk target went up or down (OPTIONS probes).
    Target {
        /// The connection.
        connection: String,
        /// The target's address.
        target: String,
        /// `up` or `down`.
        state: String,
    },
    /// A binding of a user or an inbound PBX was added, refreshed or removed.
    Binding {
        /// The address of record.
        aor: String,
        /// The contact.
        contact: String,
        /// What happened.
        change: String,
    },
}

/// A registration state in words.
pub fn describe_state(state: &State, now: std::time::Instant) -> String {
    match state {
        State::Unregistered => "unregistered".into(),
        State::Registering => "registering".into(),
        State::Registered { expires_at } => {
            let left = expires_at.saturating_duration_since(now);
            format!("registered (expires in {} s)", left.as_secs())
        }
        State::Retrying { reason, at } => {
            let left = at.saturating_duration_since(now);
            format!("retrying in {} s after {reason}", left.as_secs())
        }
        State::Failed { reason } => format!("failed: {reason}"),
    }
}

/// "12 s ago", "3 min ago"... for `t` seen from `now` (the proxy's
/// [`Clock::wall_now`](siplink_transport::Clock::wall_now)).
pub fn ago(t: SystemTime, now: SystemTime) -> String {
    let s = now.duration_since(t).unwrap_or_default().as_secs();
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
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

/// Whether `b` is a plain binding over TCP/TLS/WS/WSS whose connection
/// closed and that `[proxy] contact_fallback` kept, reached at its Contact.
pub(crate) fn kept_after_flow_loss(b: &siplink_registrar::Binding) -> bool {
    b.transport.is_reliable() && !b.outbound && b.flow.is_none()
}

/// An inbound-registration PBX's binding changed: remember why it went
/// away (shown in the status while the connection is down) and say so in the
/// log when the connection is down now, the PBX's calls failing over.
async fn pbx_binding_changed(inner: &Inner, c: &crate::proxy::ConnRuntime, e: &BindingEvent) {
    let name = &c.config.name;
    let b = &e.binding;
    let why = match e.kind {
        EventKind::Added | EventKind::Refreshed => {
            crate::proxy::lock(&inner.went_down).remove(name);
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
    crate::proxy::lock(&inner.went_down)
        .insert(name.clone(), (inner.clock.wall_now(), why.clone()));
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

impl Proxy {
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

    /// The bearer token the status endpoint asks for: read from
    /// `proxy.status_token_file` or the variable named by
    /// `proxy.status_token_env` (surrounding whitespace removed), else made
    /// at random once per process. Errors when the file or variable is
    /// missing or empty.
    pub fn status_token(&self) -> Result<String, Error> {
        let config = self.config();
        let token = if let Some(path) = &config.proxy.status_token_file {
            std::fs::read_to_string(path)
                .map_err(|e| Error::Status(format!("status_token_file {}: {e}", path.display())))?
                .trim()
                .to_owned()
        } else if let Some(var) = &config.proxy.status_token_env {
            std::env::var(var)
                .map_err(|e| Error::Status(format!("status_token_env {var}: {e}")))?
                .trim()
                .to_owned()
        } else {
            self.inner
                .status_token
                .get_or_init(|| {
                    let mut raw = [0u8; 24];
                    rand::fill(&mut raw);
                    raw.iter().map(|b| format!("{b:02x}")).collect()
                })
                .clone()
        };
        if token.is_empty() {
            return Err(Error::Status("the status token is empty".into()));
        }
        Ok(token)
    }

    /// Serves `GET /healthz` (open), `GET /status` (JSON) and
    /// `GET /test/NAME` (Test Connection, text; these two need the
    /// [`status_token`](Self::status_token)) on `addr` until the proxy is
    /// dropped. Returns the bound address.
    pub async fn serve_status(&self, addr: SocketAddr) -> Result<SocketAddr, Error> {
        let token: Arc<str> = self.status_token()?.into();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Status(format!("{addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Status(e.to_string()))?;
        let proxy = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let proxy = proxy.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let proxy = proxy.clone();
                        let token = token.clone();
                        async move { Ok::<_, Infallible>(answer(&proxy, &token, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(bound)
    }
}

/// Whether `req` carries `Authorization: Bearer TOKEN` (compared in
/// constant time).
pub fn bearer_matches(value: Option<&[u8]>, token: &str) -> bool {
    let Some(v) = value else { return false };
    let Some(scheme) = v.get(..7) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let given = v[7..].trim_ascii();
    // Lengths are not secret; contents are compared in constant time.
    given.len() == token.len() && bool::from(subtle::ConstantTimeEq::ct_eq(given, token.as_bytes()))
}

async fn answer(proxy: &Proxy, token: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let authorized = || {
        bearer_matches(
            req.headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            token,
        )
    };
    let (status, ctype, body) = if req.method() != hyper::Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        )
    } else if path == "/healthz" {
        (StatusCode::OK, "text/plain", "ok\n".to_owned())
    } else if !authorized() {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"a bearer token is needed: Authorization: Bearer TOKEN\n",
        )));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"siplink\""),
        );
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain"),
        );
        return r;
    } else if path == "/status" {
        (
            StatusCode::OK,
            "application/json",
            proxy.status_json().await,
        )
    } else if let Some(name) = path.strip_prefix("/test/") {
        let name = percent_decode(name);
        match proxy.test_connection(&name).await {
            Ok(r) => (StatusCode::OK, "text/plain", format!("{r}\n")),
            Err(e) => (StatusCode::NOT_FOUND, "text/plain", format!("{e}\n")),
        }
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /healthz, /status or /test/NAME\n".to_owned(),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
