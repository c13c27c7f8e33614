//! What we write in our Record-Route entries and read back from Route:
//! flow tokens (`fl<id>x<mac>`, naming a connection) and the `sld` MAC of a
//! dialog's Call-ID (RFC 3261 §16.6 step 4, RFC 5658 double Record-Route).

use std::hash::BuildHasher;

use siplink_message::headers::HeaderName;
use siplink_message::{Message, Transport as Protocol};
use siplink_transport::{FlowId, Origin};

use crate::core;

use super::Inner;
use super::state::advertised;

impl Inner {
    /// The `sld` parameter of our Record-Route entries for a dialog: a keyed
    /// hash of its Call-ID.
    pub(super) fn dialog_mac(&self, call_id: &str) -> String {
        format!("{:08x}", self.flow_key.hash_one(("sld", call_id)) as u32)
    }

    pub(super) fn flow_token(&self, flow: FlowId) -> String {
        let mac = self.flow_key.hash_one(flow.get()) as u32;
        format!("fl{:x}x{mac:08x}", flow.get())
    }

    pub(super) fn flow_from_token(&self, token: &str) -> Option<FlowId> {
        let rest = token.strip_prefix("fl")?;
        let (id, mac) = rest.split_once('x')?;
        let id = u64::from_str_radix(id, 16).ok()?;
        let mac = u32::from_str_radix(mac, 16).ok()?;
        (self.flow_key.hash_one(id) as u32 == mac).then(|| FlowId::from_raw(id))
    }
}

pub(super) fn record_route(
    inner: &Inner,
    req: &mut Message,
    in_origin: &Origin,
    out_protocol: Protocol,
    out_flow: Option<FlowId>,
) {
    let Some(method) = req.method() else { return };
    if !core::needs_record_route(method) {
        return;
    }
    let config = inner.runtime().config.clone();
    let (in_host, in_port) = advertised(in_origin.local, &config);
    let mac = inner.dialog_mac(req.call_id().unwrap_or_default());
    let in_token = in_origin.flow.map(|f| inner.flow_token(f));
    let (out_host, out_port) = inner.local_addr(out_protocol, &config);
    let out_token = out_flow.map(|f| inner.flow_token(f));
    let single = in_origin.protocol == out_protocol
        && in_token.is_none()
        && out_token.is_none()
        && in_host == out_host
        && in_port == out_port;
    // The caller's face (a single entry has no token); with RFC 5658 double
    // Record-Route it ends up second, under ours towards the callee.
    req.prepend_header(
        HeaderName::RecordRoute,
        core::record_route_value(
            &in_host,
            in_port,
            in_origin.protocol.via_token(),
            in_token.as_deref(),
            Some(&mac),
        ),
    );
    if !single {
        req.prepend_header(
            HeaderName::RecordRoute,
            core::record_route_value(
                &out_host,
                out_port,
                out_protocol.via_token(),
                out_token.as_deref(),
                Some(&mac),
            ),
        );
    }
}
