//! The driver's side of the engine's media requests: runs an
//! [`Output::Media`](crate::engine::Output::Media) request on a media relay
//! (the [`siplink_media::RtpEngine`] client, or any [`MediaRelay`]) and turns
//! the outcome into the [`MediaResult`] that
//! [`Engine::handle_media`](crate::engine::Engine::handle_media) takes.
//!
//! ```no_run
//! # async fn demo(
//! #     engine: &mut siplink_proxy::engine::Engine<siplink_proxy::engine::StaticView>,
//! #     relay: &siplink_media::RtpEngine,
//! # ) {
//! use siplink_proxy::engine::Output;
//!
//! while let Some(out) = engine.poll_output() {
//!     if let Output::Media { token, request } = out {
//!         let result = siplink_proxy::media_io::run(relay, request).await;
//!         engine.handle_media(token, result, std::time::Instant::now());
//!     }
//! }
//! # }
//! ```

use std::error::Error as _;

use siplink_media::{Error, MediaRelay, Request};

use crate::engine::{MediaFailure, MediaResult};

/// Longest reason text kept from a relay error (the engine bounds it again).
const MAX_REASON: usize = 200;

/// Runs one media request: `offer`/`answer` give the relay's SDP, `delete`
/// gives [`MediaResult::Deleted`] (also when the relay no longer knows the
/// call: there is nothing left to delete). Failures carry the status the
/// call fails with: 488 when rtpengine refused the SDP, 503 when it is down,
/// did not answer or answered nonsense.
pub async fn run<R: MediaRelay>(relay: &R, request: Request) -> MediaResult {
    let outcome = match request {
        Request::Offer(r) => relay.offer(r).await.map(|s| MediaResult::Sdp(s.sdp)),
        Request::Answer(r) => relay.answer(r).await.map(|s| MediaResult::Sdp(s.sdp)),
        Request::Delete(d) => match relay.delete(d).await {
            Ok(_) | Err(Error::Rejected { .. }) => Ok(MediaResult::Deleted),
            Err(e) => Err(e),
        },
        Request::Query(q) => relay.query(q).await.map(|_| MediaResult::Deleted),
        Request::Ping | Request::List { .. } => {
            return MediaResult::Failed(MediaFailure {
                status: 500,
                reason: "not a media request of a call".to_owned(),
            });
        }
    };
    outcome.unwrap_or_else(|e| MediaResult::Failed(failure(&e)))
}

/// The call a relay error says is lost (its rtpengine instance is down):
/// the driver ends it with
/// [`Engine::handle_media_lost`](crate::engine::Engine::handle_media_lost).
pub fn lost_call(error: &Error) -> Option<&str> {
    match error {
        Error::InstanceDown { call_id, .. } => Some(call_id),
        _ => None,
    }
}

/// The status and reason a relay error fails a call with.
pub fn failure(error: &Error) -> MediaFailure {
    let (status, what) = match error {
        Error::Rejected { .. } => (488, "Media Relay Refused"),
        _ => (503, "Media Relay Unavailable"),
    };
    let mut reason = format!("{what}: {error}");
    let mut source = error.source();
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    MediaFailure { status, reason }
}
