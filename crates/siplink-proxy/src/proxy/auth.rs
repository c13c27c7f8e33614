//! Phones' digest authentication (407 challenges) with the failed-attempt
//! limiter shared with the registrar, and the secrets it checks against.

use std::collections::HashMap;

use siplink_auth::{Algorithm, Outcome, RequestInfo, StoredSecret};
use siplink_message::Message;
use siplink_message::headers::HeaderName;
use siplink_transaction::ServerTransactionHandle;
use tracing::{debug, warn};

use crate::config::{Config, ConnectionKind};

use super::{Inner, respond, respond_stateless};

/// Removes the credentials for our realm (the digest answer checked here)
/// from a request about to be forwarded, on every path (RFC 3261 §22.3);
/// other realms' `Proxy-Authorization` values go on.
pub(super) fn remove_own_credentials(inner: &Inner, request: &mut Message) {
    crate::core::remove_own_credentials(request, &inner.digest.config().realm);
}

pub(super) fn secret_of(password: Option<&str>, ha1: Option<&str>) -> Option<StoredSecret> {
    password
        .map(|p| StoredSecret::Password(p.to_owned()))
        .or_else(|| ha1.map(|h| StoredSecret::Ha1(h.to_ascii_lowercase())))
}

pub(super) fn user_secrets(config: &Config) -> HashMap<String, StoredSecret> {
    let mut map = HashMap::new();
    for u in &config.users {
        if let Some(s) = secret_of(u.password.as_deref(), u.ha1.as_deref()) {
            map.insert(u.name.clone(), s);
        }
    }
    for c in &config.connections {
        if c.kind == ConnectionKind::InboundRegistration
            && let (Some(u), Some(s)) = (
                &c.username,
                secret_of(c.password.as_deref(), c.ha1.as_deref()),
            )
        {
            map.insert(u.clone(), s);
        }
    }
    map
}

/// Who a request authenticated as.
pub(super) enum Authenticated {
    /// One of our users.
    User(String),
    /// The PBX of this inbound-registration connection (its own account).
    Pbx(usize),
}

/// Digest authentication of a request (407 challenge). `None`: the request
/// was answered (challenge or refusal).
pub(super) async fn authenticate(
    inner: &Inner,
    tx: &mut ServerTransactionHandle,
) -> Option<Authenticated> {
    let creds = match tx.request.proxy_authorization() {
        Ok(c) => c.to_vec(),
        Err(_) => {
            respond(tx, 400, "Bad Proxy-Authorization").await;
            return None;
        }
    };
    let method = tx
        .request
        .method()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let uri = tx
        .request
        .request_uri_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let ip = tx.origin.peer.ip();
    let source = Some(ip);
    let selected = inner.digest.select(creds.iter());
    let claimed = selected.and_then(|c| c.username()).map(str::to_owned);
    let now = inner.clock.wall_now();
    if let Err(blocked) = inner.limiter.check(ip, claimed.as_deref(), now) {
        debug!(source = %tx.origin.peer, "call authentication blocked: {blocked:?}");
        respond_stateless(tx, 403, "Forbidden").await;
        return None;
    }
    let bound = inner.digest.failure_counts(selected, ip, now);
    let outcome = {
        let secrets = inner.secrets.read().unwrap_or_else(|e| e.into_inner());
        let store = |user: &str, _realm: &str, _a: Algorithm| secrets.get(user).cloned();
        let info = RequestInfo::new(&method, &uri).with_body(tx.request.body());
        inner
            .digest
            .authenticate(creds.iter(), &info, source, now, &store)
    };
    let counted = inner
        .limiter
        .record(&outcome, ip, claimed.as_deref(), bound, now);
    if counted != siplink_auth::Counted::Ignored {
        // The one line fail2ban matches (docs/security.md).
        warn!(
            "{}",
            siplink_auth::FailureLine {
                source: ip,
                user: claimed.as_deref(),
                method: &method,
            }
        );
    }
    match outcome {
        Outcome::Accept(a) => {
            if inner.is_user(&a.username) {
                return Some(Authenticated::User(a.username));
            }
            let rt = inner.runtime();
            let pbx = rt.connections.iter().position(|c| {
                c.config.enabled
                    && c.config.kind == ConnectionKind::InboundRegistration
                    && c.config.username.as_deref() == Some(a.username.as_str())
            });
            match pbx {
                Some(i) => Some(Authenticated::Pbx(i)),
                None => {
                    respond(tx, 403, "Forbidden").await;
                    None
                }
            }
        }
        Outcome::Challenge(ch) => {
            challenge(tx, ch).await;
            None
        }
        Outcome::Stale { challenges, .. } => {
            challenge(tx, challenges).await;
            None
        }
        Outcome::Forbidden(r) => {
            debug!(source = %tx.origin.peer, "authentication refused: {r:?}");
            respond_stateless(tx, 403, "Forbidden").await;
            None
        }
        Outcome::BadRequest(f) => {
            debug!("bad credentials: {f:?}");
            respond(tx, 400, "Bad Proxy-Authorization").await;
            None
        }
    }
}

pub(super) async fn challenge(
    tx: &mut ServerTransactionHandle,
    challenges: Vec<siplink_message::headers::Challenge>,
) {
    let mut b = tx.request.response(407);
    for c in challenges {
        b = b.header(HeaderName::ProxyAuthenticate, c);
    }
    // Stateless (issue 15): nothing is kept per challenged request; the ACK
    // of the 407 is absorbed by the endpoint by its To tag.
    if let Ok(r) = b.build() {
        let _ = tx.respond_stateless(r).await;
    }
}
