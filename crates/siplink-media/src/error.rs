use std::net::SocketAddr;
use std::time::Duration;

/// Every failure of this crate: SDP and bencode parsing (with where and what), ng
/// protocol replies, and the media-relay client (timeouts, instances down, limits).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SDP is malformed or past a limit. `line` is 1-based (0: the whole body).
    #[error("SDP line {line}: {what}")]
    Sdp {
        /// 1-based line number; 0 when the fault is about the whole description.
        line: usize,
        /// What was wrong.
        what: String,
    },
    /// The bencode input is malformed or past a limit, at byte `offset`.
    #[error("bencode at byte {offset}: {what}")]
    Bencode {
        /// Byte offset of the fault.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// An ng datagram or reply that is well-formed bencode but not a valid ng message.
    #[error("ng protocol: {0}")]
    Protocol(String),
    /// rtpengine answered `result: error`.
    #[error("rtpengine refused the {command}: {reason}")]
    Rejected {
        /// The command that was refused (`offer`, `answer`, …).
        command: &'static str,
        /// rtpengine's `error-reason`.
        reason: String,
    },
    /// No reply after the first send and every retransmission.
    #[error("rtpengine {instance} did not answer the {command} within {waited:?}")]
    Timeout {
        /// The instance asked.
        instance: SocketAddr,
        /// The command sent.
        command: &'static str,
        /// Time from the first send to giving up.
        waited: Duration,
    },
    /// The call's media lives on an instance that is down: the call cannot continue and
    /// should be ended.
    #[error("call {call_id}: its rtpengine {instance} is down")]
    InstanceDown {
        /// The call.
        call_id: String,
        /// The instance that held its media.
        instance: SocketAddr,
    },
    /// No configured instance is up to take a new call.
    #[error("no rtpengine instance is up")]
    NoInstance,
    /// A configured bound was reached (pending requests, calls tracked).
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The driver has stopped (its task ended).
    #[error("the media relay driver has stopped")]
    Closed,
    /// A socket error in the driver.
    #[error("media relay socket")]
    Io(#[source] std::io::Error),
}

impl Error {
    pub(crate) fn sdp(line: usize, what: impl Into<String>) -> Error {
        Error::Sdp {
            line,
            what: what.into(),
        }
    }
}
