//! Trunk dialogs remembered by Call-ID (their CSeq/From mapping, bounded),
//! and the BYE towards the trunk when a caller's connection closes mid-call.

use std::sync::Arc;
use std::time::Duration;

use siplink_message::Message;
use siplink_transport::FlowId;
use siplink_trunk::TrunkDialog;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use super::{Inner, lock};

/// Most trunk dialogs remembered (their CSeq/From mapping).
pub(super) const MAX_DIALOGS: usize = 100_000;
/// How long an unterminated dialog entry is kept.
pub(super) const DIALOG_TTL: Duration = Duration::from_secs(12 * 3600);

pub(super) struct DialogEntry {
    pub(super) dialog: TrunkDialog,
    pub(super) caller_tag: String,
    pub(super) created: std::time::Instant,
    /// The connection the caller's INVITE came over (TCP, TLS, WebSocket):
    /// when it closes, the call is hung up towards the trunk with `bye`.
    pub(super) caller_flow: Option<FlowId>,
    /// A BYE in the caller's view (built at the answer), for that hang-up.
    pub(super) bye: Option<Message>,
}

impl Inner {
    pub(super) fn remember_dialog(
        &self,
        call_id: &str,
        dialog: TrunkDialog,
        caller_tag: &str,
        caller_flow: Option<FlowId>,
        bye: Option<Message>,
    ) {
        let mut d = lock(&self.dialogs);
        if d.len() >= MAX_DIALOGS {
            let now = self.clock.now();
            d.retain(|_, e| now.duration_since(e.created) < DIALOG_TTL);
            if d.len() >= MAX_DIALOGS {
                warn!("dialog table full: in-dialog CSeq mapping lost for {call_id}");
                return;
            }
        }
        d.insert(
            call_id.to_owned(),
            DialogEntry {
                dialog,
                caller_tag: caller_tag.to_owned(),
                created: self.clock.now(),
                caller_flow,
                bye,
            },
        );
    }
}

/// Ends the trunk leg of every answered call whose caller's connection
/// closed (a browser tab closed, a phone's TCP/TLS connection lost): the PBX
/// gets a BYE instead of a call up until its own timers end it.
pub(super) async fn hang_up_on_flow_loss(inner: Arc<Inner>) {
    let mut events = inner.transport.subscribe();
    loop {
        let flow = match events.recv().await {
            Ok(e) => match e.kind {
                siplink_transport::FlowEventKind::Closed(_) => e.flow,
                _ => continue,
            },
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "hang-up on flow loss fell behind the flow events"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let ended: Vec<(String, DialogEntry)> = {
            let mut d = lock(&inner.dialogs);
            let ids: Vec<String> = d
                .iter()
                .filter(|(_, e)| e.caller_flow == Some(flow))
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter().filter_map(|k| d.remove_entry(&k)).collect()
        };
        for (call_id, entry) in ended {
            let Some(bye) = entry.bye else { continue };
            info!(%flow, call_id = %call_id, "caller's connection closed mid-call: BYE to the trunk");
            tokio::spawn(async move {
                match entry.dialog.send_request(bye).await {
                    Ok(mut r) => {
                        if let Err(e) = r.final_response().await {
                            debug!("BYE after flow loss: {e}");
                        }
                    }
                    Err(e) => debug!("BYE after flow loss not sent: {e}"),
                }
            });
        }
    }
}
