//! The request loop: each new server transaction is checked (RFC 3261 §16.3),
//! classified (registrar, in-dialog, OPTIONS to us, loop, from a PBX or a
//! phone) and sent down its path.

use std::sync::Arc;

use siplink_message::headers::HeaderName;
use siplink_message::{Message, Method};
use siplink_transaction::{ServerRequests, ServerTransactionHandle};
use tracing::debug;

use crate::config::ConnectionKind;
use crate::core;
use crate::routing::dialled_number;

use super::auth::{Authenticated, authenticate, remove_own_credentials};
use super::calls::route_call;
use super::fork::deliver_to_user;
use super::indialog::in_dialog;
use super::{ALLOW, Inner, SUPPORTED, Slot, respond};

/// The request loop.
pub(super) async fn serve(inner: Arc<Inner>, mut requests: ServerRequests) {
    while let Some(tx) = requests.recv().await {
        let inner = inner.clone();
        tokio::spawn(async move { handle(inner, tx).await });
    }
}

/// Where an out-of-dialog request comes from.
pub(super) enum Caller {
    /// A PBX of this connection; ring this user.
    Pbx(usize, Option<String>),
    /// A phone (or anyone else): must authenticate.
    Phone,
}

/// RFC 3261 §16.3 request validation as a proxy: `Err` with the answer to
/// send (400-class, with `Unsupported` for a Proxy-Require we lack; `None`
/// when it cannot be built) for a request that fails it.
pub(crate) fn check_request(request: &Message) -> Result<(), Option<Box<Message>>> {
    let Err(rejection) = request.validate_with(&siplink_message::ValidationOptions {
        role: siplink_message::Role::Proxy,
        supported: Vec::new(),
    }) else {
        return Ok(());
    };
    let mut b = request.response(rejection.status).reason(&rejection.reason);
    if !rejection.unsupported.is_empty() {
        b = b.header(HeaderName::Unsupported, rejection.unsupported.join(", "));
    }
    Err(b.build().ok().map(Box::new))
}

pub(super) async fn handle(inner: Arc<Inner>, mut tx: ServerTransactionHandle) {
    tracing::trace!(
        from = %tx.origin.peer,
        "request:\n{}",
        crate::redact::sip_message(&tx.request.to_bytes())
    );
    let method = tx.request.method().cloned();
    let Some(method) = method else { return };
    if let Err(answer) = check_request(&tx.request) {
        if let Some(r) = answer {
            let _ = tx.respond(*r).await;
        }
        return;
    }
    if method == Method::Register {
        if inner.registrar.registrar().is_ours(&tx.request) {
            if let Err(e) = inner.registrar.handle(tx).await {
                debug!("REGISTER: {e}");
            }
        } else {
            respond(&mut tx, 403, "Not A Domain Of This Registrar").await;
        }
        return;
    }
    if method == Method::Cancel {
        // A CANCEL that matched no transaction.
        respond(&mut tx, 481, "Call/Transaction Does Not Exist").await;
        return;
    }
    if tx.request.to_tag().ok().flatten().is_some() {
        in_dialog(&inner, tx).await;
        return;
    }
    let consumed = {
        let local = inner
            .local
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        core::consume_own_routes(&mut tx.request, &local)
    };
    let _ = consumed;
    let ruri = match tx.request.request_uri() {
        Ok(u) => u.clone(),
        Err(_) => return respond(&mut tx, 400, "Bad Request-URI").await,
    };
    let local = inner
        .local
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let to_us = local.is_local_uri(&ruri);
    let ruri_user = ruri.as_sip().and_then(|u| u.user()).map(str::to_owned);
    // OPTIONS to the proxy itself is answered here. OPTIONS to a user part
    // (user or not) goes the way of every other method, authentication
    // first, so that the answer does not tell users from non-users.
    if method == Method::Options && to_us && ruri_user.is_none() {
        if let Ok(r) = tx
            .request
            .response(200)
            .header(HeaderName::Allow, ALLOW)
            .header(HeaderName::Supported, SUPPORTED)
            .header(HeaderName::Accept, "application/sdp")
            .build()
        {
            let _ = tx.respond(r).await;
        }
        return;
    }
    let cookie = core::loop_cookie(&tx.request);
    if core::is_loop(&tx.request, &cookie) {
        return respond(&mut tx, 482, "Loop Detected").await;
    }
    let Ok(permit) = inner.calls.clone().try_acquire_owned() else {
        if let Ok(r) = tx
            .request
            .response(503)
            .header(HeaderName::RetryAfter, "5")
            .build()
        {
            let _ = tx.respond(r).await;
        }
        return;
    };
    // The call's slot of `limits.max_calls`, released at its final response.
    let mut slot: Slot = Some(permit);
    let mut caller = classify(&inner, &tx).await;
    let mut user = None;
    if matches!(caller, Caller::Phone) && inner.runtime().config.proxy.authenticate_calls {
        match authenticate(&inner, &mut tx).await {
            Some(Authenticated::User(u)) => user = Some(u),
            // An inbound-registration PBX calling over a new connection
            // proves who it is with its own account.
            Some(Authenticated::Pbx(i)) => {
                let deliver = inner.runtime().connections[i].config.deliver_to.clone();
                caller = Caller::Pbx(i, deliver);
            }
            None => return,
        }
    }
    // Checked (or not needed): our realm's credentials stop here.
    remove_own_credentials(&inner, &mut tx.request);
    match caller {
        Caller::Pbx(conn, deliver) => {
            let target = ruri_user
                .as_deref()
                .filter(|u| inner.is_user(u))
                .map(str::to_owned)
                .or_else(|| {
                    tx.request
                        .to()
                        .ok()
                        .and_then(|t| t.uri.as_sip().and_then(|s| s.user()).map(str::to_owned))
                        .filter(|u| inner.is_user(u))
                })
                .or(deliver);
            debug!(connection = conn, ?target, "request from a PBX");
            match target {
                Some(user) => deliver_to_user(&inner, tx, &user, &cookie, &mut slot).await,
                None => respond(&mut tx, 404, "Not Found").await,
            }
        }
        Caller::Phone => {
            // A call to one of our users?
            let ours = to_us
                || local.is_local_host(
                    &ruri
                        .as_sip()
                        .map(|s| s.host().to_string())
                        .unwrap_or_default(),
                );
            if ours && let Some(u) = ruri_user.as_deref().filter(|u| inner.is_user(u)) {
                let u = u.to_owned();
                deliver_to_user(&inner, tx, &u, &cookie, &mut slot).await;
                return;
            }
            let Some(number) = dialled_number(&ruri).map(|n| n.into_owned()) else {
                return respond(&mut tx, 416, "Unsupported URI Scheme").await;
            };
            route_call(&inner, tx, user, &number, &cookie, &mut slot).await;
        }
    }
    drop(slot);
}

pub(super) async fn classify(inner: &Inner, tx: &ServerTransactionHandle) -> Caller {
    let rt = inner.runtime();
    let ruri_user = tx
        .request
        .request_uri()
        .ok()
        .and_then(|u| u.as_sip())
        .and_then(|u| u.user())
        .map(str::to_owned);
    for (i, c) in rt.connections.iter().enumerate() {
        // A request for our registered Contact, from the registrar we
        // registered with (not from anyone who guesses the contact user).
        if let Some(u) = &ruri_user
            && let Some(r) = c.registrations.iter().find(|r| {
                &r.contact_user == u
                    && r.status
                        .borrow()
                        .binding
                        .as_ref()
                        .is_some_and(|b| b.target.addr.ip() == tx.origin.peer.ip())
            })
        {
            return Caller::Pbx(i, r.user.clone().or(c.config.deliver_to.clone()));
        }
    }
    for (i, c) in rt.connections.iter().enumerate() {
        if c.config.enabled && c.is_pbx_address(tx.origin.peer) {
            return Caller::Pbx(i, c.config.deliver_to.clone());
        }
    }
    for (i, c) in rt.connections.iter().enumerate() {
        if c.config.kind != ConnectionKind::InboundRegistration || !c.config.enabled {
            continue;
        }
        if let Some(targets) = inner.pbx_targets(c).await {
            let hit = targets.iter().any(|t| {
                (t.binding.flow.is_some() && t.binding.flow == tx.origin.flow)
                    || t.binding.source == tx.origin.peer
            });
            if hit {
                return Caller::Pbx(i, c.config.deliver_to.clone());
            }
        }
    }
    Caller::Phone
}
