//! Requests inside dialogs we record-routed (BYE, re-INVITE, UPDATE...), and
//! ACKs for 2xx and stray responses, forwarded without a transaction.

use std::sync::Arc;

use siplink_message::headers::HeaderName;
use siplink_message::uri::Uri;
use siplink_message::{Message, Method};
use siplink_transaction::{ClientEvent, ServerTransactionHandle};
use siplink_transport::{Destination, Incoming};
use siplink_trunk::TrunkDialog;
use tokio::sync::mpsc;
use tracing::debug;

use crate::core::{self, Check};

use super::auth::remove_own_credentials;
use super::fork::resolve_uri;
use super::{ALLOW, Inner, lock, respond};

/// The next hop of an in-dialog request after our Route entries were taken
/// off: a flow named by a token in the last of them, else the top Route,
/// else the Request-URI.
pub(super) async fn in_dialog_destination(
    inner: &Inner,
    req: &Message,
    consumed: &core::Consumed,
) -> Option<Destination> {
    if let Some(Uri::Sip(last)) = consumed.routes.last()
        && let Some(flow) = last.user().and_then(|u| inner.flow_from_token(u))
    {
        return Some(Destination::Flow(flow));
    }
    let hop = match req.route().ok().and_then(|r| r.first()) {
        Some(r) => r.uri.clone(),
        None => req.request_uri().ok()?.clone(),
    };
    resolve_uri(inner, &hop).await.map(Destination::Target)
}

/// A request inside a dialog we record-routed (BYE, re-INVITE, UPDATE...).
pub(super) async fn in_dialog(inner: &Arc<Inner>, mut tx: ServerTransactionHandle) {
    let local = inner
        .local
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let consumed = core::consume_own_routes(&mut tx.request, &local);
    remove_own_credentials(inner, &mut tx.request);
    if consumed.routes.is_empty() && !consumed.strict_fixed {
        // Not through us: we never record-routed this dialog.
        let to_us = tx
            .request
            .request_uri()
            .is_ok_and(|u| local.is_local_uri(u));
        if tx.request.method() == Some(&Method::Options) && to_us {
            if let Ok(r) = tx
                .request
                .response(200)
                .header(HeaderName::Allow, ALLOW)
                .build()
            {
                let _ = tx.respond(r).await;
            }
            return;
        }
        return respond(&mut tx, 481, "Call/Transaction Does Not Exist").await;
    }
    let call_id = tx.request.call_id().unwrap_or_default().to_owned();
    if !core::routed_by_us(&consumed, &inner.dialog_mac(&call_id)) {
        // Names us in a Route, but not with an entry we recorded for this
        // dialog: we are not an open relay for in-dialog requests either.
        debug!(source = %tx.origin.peer, "in-dialog request without our Record-Route: refused");
        return respond(&mut tx, 403, "Not Routed By This Proxy").await;
    }
    let from_tag = tx
        .request
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    let dialog = lock(&inner.dialogs)
        .get(&call_id)
        .map(|e| (e.dialog.clone(), e.caller_tag.clone()));
    let is_bye = tx.request.method() == Some(&Method::Bye);
    if let Some((dialog, caller_tag)) = &dialog
        && *caller_tag == from_tag
    {
        // Caller -> trunk: CSeq/From mapped, our Via and Max-Forwards,
        // challenges answered inside the trunk dialog.
        let req = tx.request.clone();
        match dialog.send_request(req).await {
            Ok(mut r) => match r.final_response().await {
                Ok(resp) => {
                    let _ = tx.respond(resp).await;
                }
                Err(e) => {
                    debug!("in-dialog request to the trunk failed: {e}");
                    respond(&mut tx, 408, "Request Timeout").await;
                }
            },
            Err(siplink_trunk::Error::TooManyHops) => {
                respond(&mut tx, 483, "Too Many Hops").await;
            }
            Err(e) => {
                debug!("in-dialog request to the trunk failed: {e}");
                respond(&mut tx, 500, "Server Internal Error").await;
            }
        }
        if is_bye {
            lock(&inner.dialogs).remove(&call_id);
        }
        return;
    }
    let mut req = tx.request.clone();
    if let Some((dialog, _)) = &dialog {
        req = dialog.from_trunk(req);
    }
    if let Check::Reject(s, r) = core::decrement_max_forwards(&mut req) {
        return respond(&mut tx, s, r).await;
    }
    let Some(dest) = in_dialog_destination(inner, &req, &consumed).await else {
        return respond(&mut tx, 404, "Cannot Reach Next Hop").await;
    };
    let cookie = core::loop_cookie(&req);
    core::push_via(&mut req, &core::branch(&cookie, 0));
    let req = match req.reparse() {
        Ok(r) => r,
        Err(_) => return respond(&mut tx, 500, "Server Internal Error").await,
    };
    match inner.endpoint.send_request(req, dest).await {
        Ok(mut h) => {
            while let Some(ev) = h.next().await {
                match ev {
                    ClientEvent::Provisional(mut r) if r.status() != Some(100) => {
                        core::pop_via(&mut r);
                        let _ = tx.respond(fix_response(&dialog, r)).await;
                    }
                    ClientEvent::Final(mut r) | ClientEvent::Additional2xx(mut r) => {
                        core::pop_via(&mut r);
                        let _ = tx.respond(fix_response(&dialog, r)).await;
                    }
                    ClientEvent::Timeout => {
                        respond(&mut tx, 408, "Request Timeout").await;
                        break;
                    }
                    ClientEvent::TransportError => {
                        respond(&mut tx, 503, "Next Hop Unreachable").await;
                        break;
                    }
                    _ => {}
                }
            }
        }
        Err(e) => {
            debug!("in-dialog forward failed: {e}");
            respond(&mut tx, 503, "Next Hop Unreachable").await;
        }
    }
    if is_bye {
        lock(&inner.dialogs).remove(&call_id);
    }
}

pub(super) fn fix_response(dialog: &Option<(TrunkDialog, String)>, r: Message) -> Message {
    match dialog {
        Some((d, _)) => d.response_to_trunk(r),
        None => r,
    }
}

/// ACKs for 2xx and stray responses (RFC 3261 §16.7, §16.11): forwarded
/// without a transaction.
pub(super) async fn strays(inner: Arc<Inner>, mut rx: mpsc::Receiver<Incoming>) {
    while let Some(m) = rx.recv().await {
        let inner = inner.clone();
        tokio::spawn(async move { stray(&inner, m).await });
    }
}

pub(super) async fn stray(inner: &Arc<Inner>, incoming: Incoming) {
    let mut msg = incoming.message;
    if msg.is_response() {
        // A 2xx retransmission: our Via off, on to the next one.
        let ours = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .is_some_and(|b| b.starts_with("z9hG4bKsl"));
        if !ours {
            return;
        }
        core::pop_via(&mut msg);
        if let Ok(m) = msg.reparse() {
            let _ = inner.transport.send_response(m, None).await;
        }
        return;
    }
    if msg.method() != Some(&Method::Ack) {
        return;
    }
    let local = inner
        .local
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let consumed = core::consume_own_routes(&mut msg, &local);
    remove_own_credentials(inner, &mut msg);
    if consumed.routes.is_empty() && !consumed.strict_fixed {
        return;
    }
    let call_id = msg.call_id().unwrap_or_default().to_owned();
    if !core::routed_by_us(&consumed, &inner.dialog_mac(&call_id)) {
        debug!(source = %incoming.origin.peer, "ACK without our Record-Route: dropped");
        return;
    }
    let from_tag = msg
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    let dialog = lock(&inner.dialogs)
        .get(&call_id)
        .filter(|e| e.caller_tag == from_tag)
        .map(|e| e.dialog.clone());
    if let Some(d) = dialog {
        let Ok(msg) = msg.reparse() else { return };
        if let Err(e) = d.send_ack(msg).await {
            debug!("ACK to the trunk: {e}");
        }
        return;
    }
    if let Check::Reject(..) = core::decrement_max_forwards(&mut msg) {
        return;
    }
    let Some(dest) = in_dialog_destination(inner, &msg, &consumed).await else {
        return;
    };
    let cookie = core::loop_cookie(&msg);
    let branch = core::stateless_branch(&msg, &cookie);
    core::push_via(&mut msg, &branch);
    let Ok(msg) = msg.reparse() else { return };
    // The transport stamps the Via's sent-by for the listener used.
    if let Err(e) = inner.transport.send(dest, msg).await {
        debug!("ACK forward: {e}");
    }
}
