//! What the proxy reports about itself, as plain types: per-connection state
//! ([`ConnectionStatus`]), change events ([`StatusEvent`]) and the helpers
//! that put them in words. The running proxy fills them in
//! ([`Proxy::status`](crate::Proxy::status), [`Proxy::subscribe`](crate::Proxy::subscribe))
//! and serves them over HTTP ([`Proxy::serve_status`](crate::Proxy::serve_status)):
//! `GET /healthz` (open), `GET /status` (JSON) and `GET /test/NAME` (Test
//! Connection), the last two behind a bearer token (`Authorization: Bearer
//! TOKEN`; without it or with a wrong one, 401 with `WWW-Authenticate:
//! Bearer`).
//!
//! The token comes from `proxy.status_token_file` or the environment
//! variable named by `proxy.status_token_env`; with neither, a random one is
//! made at start ([`Proxy::status_token`](crate::Proxy::status_token)). The
//! configuration refuses a status listener off loopback without a configured
//! token.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;
use siplink_register::State;

use crate::config::ConnectionKind;

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

/// Whether `b` is a plain binding over TCP/TLS/WS/WSS whose connection
/// closed and that `[proxy] contact_fallback` kept, reached at its Contact.
pub(crate) fn kept_after_flow_loss(b: &siplink_registrar::Binding) -> bool {
    b.transport.is_reliable() && !b.outbound && b.flow.is_none()
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
