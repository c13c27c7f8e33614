//! The media-relay trait the proxy talks to.

use std::future::Future;
use std::net::SocketAddr;

use crate::Error;
use crate::ng::{CallStats, DeleteRequest, QueryRequest, SdpRequest};

/// The rewritten SDP from an `offer` or `answer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpReply {
    /// The SDP to send on.
    pub sdp: String,
    /// rtpengine's `warning`, if any.
    pub warning: Option<String>,
}

/// One relay instance's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceHealth {
    /// The instance's control address.
    pub addr: SocketAddr,
    /// Whether it answers.
    pub up: bool,
}

/// A media relay: anchors and bridges a call's media at the points of the SDP
/// offer/answer exchange. [`RtpEngine`](crate::RtpEngine) implements it over rtpengine.
pub trait MediaRelay: Send + Sync {
    /// An SDP offer: returns the SDP to forward instead.
    fn offer(&self, request: SdpRequest) -> impl Future<Output = Result<SdpReply, Error>> + Send;
    /// An SDP answer: returns the SDP to forward instead.
    fn answer(&self, request: SdpRequest) -> impl Future<Output = Result<SdpReply, Error>> + Send;
    /// Ends a call (or a branch of it); returns its final counters.
    fn delete(
        &self,
        request: DeleteRequest,
    ) -> impl Future<Output = Result<CallStats, Error>> + Send;
    /// A call's state and counters.
    fn query(&self, request: QueryRequest)
    -> impl Future<Output = Result<CallStats, Error>> + Send;
    /// Every instance's health.
    fn health(&self) -> Vec<InstanceHealth>;
}
