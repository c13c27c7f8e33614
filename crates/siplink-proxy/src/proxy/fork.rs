//! Forking to registered contacts (a user's phones, an inbound PBX), in
//! parallel, with the best-response choice of RFC 3261 §16.5-16.7.

use std::sync::Arc;

use bytes::Bytes;
use siplink_message::headers::HeaderName;
use siplink_message::uri::Uri;
use siplink_message::{Message, Transport as Protocol};
use siplink_registrar::Reach;
use siplink_transaction::{ClientEvent, ServerTransactionHandle};
use siplink_transport::{Destination, Target};
use tokio::sync::mpsc;
use tracing::debug;

use crate::core::{self, BestResponse, Check};

use super::tokens::record_route;
use super::{Attempt, Inner, Slot, respond};

/// Rings every registered contact of `user` (parallel fork).
pub(super) async fn deliver_to_user(
    inner: &Arc<Inner>,
    mut tx: ServerTransactionHandle,
    user: &str,
    cookie: &str,
    slot: &mut Slot,
) {
    let targets = inner.bindings_of(user, None).await;
    if targets.is_empty() {
        return respond(&mut tx, 480, "Temporarily Unavailable").await;
    }
    let req = tx.request.clone();
    if let Attempt::Failover(why) = fork(inner, &mut tx, req, targets, cookie, None, slot).await {
        debug!(%user, "no contact answered: {why}");
        respond(&mut tx, 480, "Temporarily Unavailable").await;
    }
}

pub(super) enum BranchEvent {
    Event(Box<ClientEvent>),
    Failed(String),
    Ended,
}

/// Forks `request` to `targets` (RFC 3261 §16.5-16.7): relays provisional
/// responses, the first 2xx (and later ones) and the best final response.
/// `Failover` when no branch got further than a timeout, a transport error
/// or 503 before any provisional response.
pub(super) async fn fork(
    inner: &Arc<Inner>,
    tx: &mut ServerTransactionHandle,
    request: Message,
    targets: Vec<siplink_registrar::Target>,
    cookie: &str,
    number: Option<&str>,
    slot: &mut Slot,
) -> Attempt {
    let mut base = request;
    if let Check::Reject(s, r) = core::decrement_max_forwards(&mut base) {
        respond(tx, s, r).await;
        return Attempt::Done;
    }
    let (events_tx, mut events) = mpsc::channel::<BranchEvent>(64);
    let mut handles = Vec::new();
    for (i, t) in targets.into_iter().enumerate().take(16) {
        let mut req = base.clone();
        let uri = t.binding.uri().as_bytes().to_vec();
        req.set_request_uri(Bytes::from(uri));
        if let Some(n) = number {
            set_number(&mut req, n);
        }
        let (dest, protocol, flow) = match &t.reach {
            Reach::Flow(f) => (Destination::Flow(*f), t.binding.transport, Some(*f)),
            Reach::Contact { uri, path } => {
                for p in path.iter().rev() {
                    req.prepend_header(HeaderName::Route, p.clone());
                }
                let hop = path
                    .first()
                    .and_then(|p| path_uri(p))
                    .unwrap_or_else(|| uri.clone());
                match resolve_uri(inner, &hop).await {
                    Some(target) => {
                        let protocol = target.protocol;
                        (Destination::Target(target), protocol, None)
                    }
                    None => {
                        let _ = events_tx
                            .send(BranchEvent::Failed(format!("cannot resolve {hop}")))
                            .await;
                        continue;
                    }
                }
            }
        };
        let origin = tx.origin;
        record_route(inner, &mut req, &origin, protocol, flow);
        core::push_via(&mut req, &core::branch(cookie, i));
        let req = match req.reparse() {
            Ok(r) => r,
            Err(e) => {
                let _ = events_tx.send(BranchEvent::Failed(e.to_string())).await;
                continue;
            }
        };
        match inner.endpoint.send_request(req, dest).await {
            Ok(mut h) => {
                let ev = events_tx.clone();
                let (cancel_tx, mut cancel_rx) = mpsc::channel::<()>(1);
                handles.push(cancel_tx);
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            Some(()) = cancel_rx.recv() => { let _ = h.cancel().await; }
                            e = h.next() => match e {
                                Some(e) => { if ev.send(BranchEvent::Event(Box::new(e))).await.is_err() { break; } }
                                None => { let _ = ev.send(BranchEvent::Ended).await; break; }
                            }
                        }
                    }
                });
            }
            Err(e) => {
                let _ = events_tx.send(BranchEvent::Failed(e.to_string())).await;
            }
        }
    }
    drop(events_tx);
    let mut best = BestResponse::new();
    let mut provisional = false;
    let mut answered = false;
    let mut failover_only = true;
    let mut last = String::from("no branch");
    let mut cancelled = false;
    loop {
        let ev = tokio::select! {
            c = tx.cancelled(), if !answered && !cancelled => {
                if c {
                    cancelled = true;
                    for h in &handles { let _ = h.try_send(()); }
                }
                continue;
            }
            ev = events.recv() => ev,
        };
        let Some(ev) = ev else { break };
        let ev = match ev {
            BranchEvent::Event(e) => *e,
            BranchEvent::Failed(why) => {
                last = why;
                continue;
            }
            BranchEvent::Ended => continue,
        };
        match ev {
            ClientEvent::Provisional(mut r) => {
                if r.status() == Some(100) {
                    continue;
                }
                provisional = true;
                core::pop_via(&mut r);
                if !answered && !cancelled {
                    let _ = tx.respond(r).await;
                }
            }
            ClientEvent::Final(mut r) => {
                let status = r.status().unwrap_or(500);
                core::pop_via(&mut r);
                if (200..300).contains(&status) {
                    if !answered {
                        answered = true;
                        slot.take();
                        for h in &handles {
                            let _ = h.try_send(());
                        }
                    }
                    let _ = tx.respond(r).await;
                } else {
                    if !matches!(status, 408 | 503) {
                        failover_only = false;
                    }
                    last = format!("answered {status}");
                    best.offer(r);
                }
            }
            ClientEvent::Additional2xx(mut r) => {
                core::pop_via(&mut r);
                let _ = tx.respond(r).await;
            }
            ClientEvent::Timeout => last = "timeout".into(),
            ClientEvent::TransportError => last = "transport error".into(),
        }
    }
    if answered || cancelled {
        return Attempt::Done;
    }
    if !provisional && failover_only {
        return Attempt::Failover(last);
    }
    match best.take(&tx.request) {
        Some(r) => {
            let _ = tx.respond(r).await;
        }
        None => respond(tx, 480, "Temporarily Unavailable").await,
    }
    Attempt::Done
}

/// Replaces the user part of the Request-URI by `number` (after a rewrite).
pub(super) fn set_number(req: &mut Message, number: &str) {
    let Ok(Uri::Sip(sip)) = req.request_uri().cloned() else {
        return;
    };
    if sip.user() == Some(number) {
        return;
    }
    let uri = sip.to_builder().user(number.as_bytes()).build();
    if let Ok(uri) = uri {
        req.set_request_uri(Bytes::copy_from_slice(uri.as_str().as_bytes()));
    }
}

/// The URI of a stored Path value (`<sip:...;lr>`).
pub(super) fn path_uri(p: &str) -> Option<Uri> {
    let inner = p.trim();
    let inner = match (inner.find('<'), inner.rfind('>')) {
        (Some(a), Some(b)) if a < b => &inner[a + 1..b],
        _ => inner,
    };
    Uri::parse(Bytes::copy_from_slice(inner.as_bytes())).ok()
}

/// Resolves a next-hop URI to a transport target (RFC 3263 through the
/// transport's resolver).
pub(super) async fn resolve_uri(inner: &Inner, uri: &Uri) -> Option<Target> {
    let sip = uri.as_sip()?;
    let protocol = match sip
        .transport()
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("tcp") => Protocol::Tcp,
        Some("tls") => Protocol::Tls,
        Some("ws") => Protocol::Ws,
        Some("wss") => Protocol::Wss,
        _ if sip.is_secure() => Protocol::Tls,
        _ => Protocol::Udp,
    };
    let host = sip.host().to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = sip.port().unwrap_or(protocol.default_port());
    inner
        .transport
        .resolve(host, port, protocol)
        .await
        .ok()?
        .into_iter()
        .next()
}
