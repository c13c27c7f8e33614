//! Calls from phones routed by the dial plan to connections, in order with
//! failover: trunks and outbound registrations through a `siplink_trunk::Trunk`,
//! inbound registrations by a fork to the PBX's bindings.

use std::sync::Arc;

use siplink_message::{Method, Transport as Protocol};
use siplink_transaction::ServerTransactionHandle;
use siplink_trunk::{CallEvent, CallFailure, Trunk};
use tracing::{info, warn};

use crate::config::ConnectionKind;
use crate::routing::{Candidate, Decision};

use super::fork::{fork, set_number};
use super::tokens::record_route;
use super::{Attempt, Inner, Slot, respond};

pub(super) async fn route_call(
    inner: &Arc<Inner>,
    mut tx: ServerTransactionHandle,
    user: Option<String>,
    number: &str,
    cookie: &str,
    slot: &mut Slot,
) {
    let rt = inner.runtime();
    let mut up = Vec::with_capacity(rt.connections.len());
    for c in &rt.connections {
        up.push(inner.connection_up(c, user.as_deref()).await);
    }
    let decision = rt.router.route(user.as_deref(), number, |i| {
        up.get(i).copied().unwrap_or(false)
    });
    let candidates = match decision {
        Decision::Route(c) | Decision::AllDown(c) => c,
        Decision::NoMatch => {
            let status = rt.config.proxy.no_match_status;
            info!(%number, "no connection matches");
            return respond(&mut tx, status, "No Route For Number").await;
        }
        Decision::NotAllowed => {
            info!(%number, ?user, "no connection allowed for this user");
            return respond(&mut tx, 403, "Connection Not Allowed").await;
        }
    };
    if tx.request.method() != Some(&Method::Invite) {
        return respond(&mut tx, 405, "Only INVITE Goes To Connections").await;
    }
    let mut last = String::new();
    for cand in candidates {
        let conn = rt.connections[cand.connection].clone();
        info!(%number, connection = %cand.name, kind = %cand.kind, "routing call");
        let attempt = match cand.kind {
            ConnectionKind::Trunk | ConnectionKind::OutboundRegistration => {
                let Some(trunk) = conn.trunk_for(user.as_deref()).cloned() else {
                    last = format!("{}: no account for this user", cand.name);
                    continue;
                };
                via_trunk(inner, &mut tx, &trunk, &cand, slot).await
            }
            ConnectionKind::InboundRegistration => {
                let targets = inner.pbx_targets(&conn).await.unwrap_or_default();
                if targets.is_empty() {
                    let why = inner
                        .down_reason(&cand.name)
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    Attempt::Failover(format!("{}: the PBX is not registered{why}", cand.name))
                } else {
                    // The PBX learns the dialled number from the Request-URI:
                    // its Contact with the number as user part.
                    let req = tx.request.clone();
                    fork(
                        inner,
                        &mut tx,
                        req,
                        targets,
                        cookie,
                        Some(&cand.number),
                        slot,
                    )
                    .await
                }
            }
        };
        match attempt {
            Attempt::Done => return,
            Attempt::Failover(why) => {
                warn!(connection = %cand.name, "failing over: {why}");
                conn.set_error(inner.clock.wall_now(), why.clone());
                last = why;
            }
        }
    }
    info!(%number, "every connection failed: {last}");
    respond(&mut tx, 503, "All Connections Failed").await;
}

/// Sends the caller's INVITE through a trunk and relays what comes back.
pub(super) async fn via_trunk(
    inner: &Arc<Inner>,
    tx: &mut ServerTransactionHandle,
    trunk: &Trunk,
    cand: &Candidate,
    slot: &mut Slot,
) -> Attempt {
    let mut req = tx.request.clone();
    set_number(&mut req, &cand.number);
    let out_protocol = trunk
        .config()
        .targets
        .first()
        .map(|t| t.addr.transport)
        .unwrap_or(Protocol::Udp);
    let origin = tx.origin;
    record_route(inner, &mut req, &origin, out_protocol, None);
    let mut call = match trunk.call(req).await {
        Ok(c) => c,
        Err(e) => return Attempt::Failover(format!("{}: {e}", cand.name)),
    };
    let caller_tag = tx
        .request
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    let call_id = tx.request.call_id().unwrap_or_default().to_owned();
    let mut relayed = false;
    let mut failure: Option<CallFailure> = None;
    loop {
        tokio::select! {
            cancelled = tx.cancelled(), if !relayed_final(tx) => {
                if cancelled {
                    call.cancel().await;
                    // Drain until the trunk reports the end of the call.
                    while let Some(ev) = call.next().await {
                        if matches!(ev, CallEvent::Final { .. }) { break; }
                    }
                    return Attempt::Done;
                }
            }
            ev = call.next() => {
                let Some(ev) = ev else { return Attempt::Done };
                match ev {
                    CallEvent::Provisional(r) => {
                        relayed = true;
                        let _ = tx.respond(r).await;
                    }
                    CallEvent::Final { response, dialog } => {
                        let status = response.status().unwrap_or(500);
                        if let Some(f) = &failure && !relayed
                            && matches!(f, CallFailure::AllTargetsFailed { .. } | CallFailure::NoTargetAvailable)
                        {
                            return Attempt::Failover(format!("{}: {f}", cand.name));
                        }
                        if let Some(d) = dialog {
                            // A caller on a connection: the BYE that ends the
                            // PBX leg if that connection dies mid-call.
                            let bye = origin
                                .flow
                                .filter(|_| (200..300).contains(&status))
                                .and_then(|_| {
                                    let cseq = tx.request.cseq().ok()?.seq;
                                    siplink_trunk::in_dialog_request(
                                        Method::Bye,
                                        &tx.request,
                                        &response,
                                        cseq.saturating_add(1),
                                    )
                                    .ok()
                                });
                            inner.remember_dialog(&call_id, d, &caller_tag, origin.flow, bye);
                        }
                        let _ = tx.respond(response).await;
                        slot.take();
                        if (200..300).contains(&status) {
                            // Further 2xx (other forks) go upstream too.
                            while let Some(ev) = call.next().await {
                                if let CallEvent::Additional2xx { response, .. } = ev {
                                    let _ = tx.respond(response).await;
                                }
                            }
                        }
                        return Attempt::Done;
                    }
                    CallEvent::Additional2xx { response, .. } => {
                        let _ = tx.respond(response).await;
                    }
                    CallEvent::TargetFailed { target, reason } => {
                        warn!(connection = %cand.name, ?target, "trunk target failed: {reason}");
                    }
                    CallEvent::Failed(f) => {
                        failure = Some(f);
                    }
                }
            }
        }
    }
}

pub(super) fn relayed_final(_tx: &ServerTransactionHandle) -> bool {
    false
}
