//! The proxy's front on the run-to-completion runtime: each datagram is
//! screened by the gate (rate limits, scanner filter) in the worker that read
//! it, each message framed on a TCP/TLS/WS/WSS connection in that
//! connection's task; a REGISTER for one of our domains is answered there,
//! start to finish (the registrar's in-memory store is synchronous); every
//! other message goes on to the endpoint's queue (the rest of the proxy still
//! runs there), or, with `[proxy] core = "engine"`, to the engine's driver
//! (`driver.rs`).

use std::sync::{Arc, Weak};

use siplink_message::{Message, Method};
use siplink_transaction::runtime::{Reply, Request, Service};
use siplink_transaction::{TransactionId, TuEvent};
use siplink_transport::Incoming;
use siplink_transport::Origin;
use tokio::sync::mpsc;
use tracing::debug;

use crate::gate::{Verdict, refusal};

use super::Inner;
use super::dispatch::check_request;

pub(crate) struct Front {
    inner: Weak<Inner>,
    endpoint: mpsc::Sender<Incoming>,
}

impl Front {
    pub(crate) fn new(inner: Arc<Inner>, endpoint: mpsc::Sender<Incoming>) -> Front {
        Front {
            inner: Arc::downgrade(&inner),
            endpoint,
        }
    }
}

impl Service for Front {
    fn screen(&self, incoming: Incoming, reply: &Reply<'_>) -> Option<Incoming> {
        let inner = self.inner.upgrade()?;
        match inner.gate.check(&incoming, inner.clock.now()) {
            Verdict::Pass => {}
            Verdict::Drop => return None,
            Verdict::Refuse(secs) => {
                if let Some(r) = refusal(&incoming.message, secs) {
                    reply.send_response(&r);
                }
                return None;
            }
        }
        let m = &incoming.message;
        if m.method() == Some(&Method::Register) && inner.registrar.registrar().is_ours(m) {
            return Some(incoming);
        }
        if inner.engine.get().is_some() && super::driver::engine_takes(&incoming) {
            return Some(incoming);
        }
        if self.endpoint.try_send(incoming).is_err() {
            // As a full socket buffer would: UDP retransmits.
            debug!("endpoint queue full: datagram dropped");
        }
        None
    }

    fn handle_request(&self, request: Request<'_>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if let Some(d) = inner.engine.get()
            && request.message().method() != Some(&Method::Register)
        {
            return d.request(request);
        }
        if let Err(answer) = check_request(request.message()) {
            if let Some(r) = answer {
                let _ = request.respond(*r);
            }
            return;
        }
        Service::handle_request(&inner.registrar, request);
    }

    fn handle_stray(&self, message: Message, origin: &Origin) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let message = match inner.engine.get() {
            Some(d) => match d.stray(message, origin) {
                Some(m) => m,
                None => return,
            },
            None => message,
        };
        // Not the engine's: the classic path's (its transactions, its
        // dialogs' 2xx retransmissions).
        let incoming = Incoming {
            message,
            origin: *origin,
        };
        if self.endpoint.try_send(incoming).is_err() {
            debug!("endpoint queue full: stray dropped");
        }
    }

    fn handle_client_event(&self, id: TransactionId, event: TuEvent) {
        if let Some(d) = self.inner.upgrade().and_then(|i| i.engine.get().cloned()) {
            d.client_event(id, event);
        }
    }
}
