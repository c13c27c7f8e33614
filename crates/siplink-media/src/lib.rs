//! # siplink-media
//!
//! Media for a SIP proxy: the SDP model, and control of the
//! [rtpengine](https://github.com/sipwise/rtpengine) media relay over its ng protocol,
//! which is what lets a WebRTC browser phone (ICE, DTLS-SRTP, `UDP/TLS/RTP/SAVPF`, Opus)
//! talk to a plain-RTP PBX (`RTP/AVP`, G.711) and anchors RTP for phones behind NAT.
//!
//! * [`sdp`]: RFC 8866 parse and serialise. Lines in order, the ones a relay needs typed,
//!   unknown lines kept byte for byte; bounded ([`SdpLimits`]); errors name the line.
//!   Helpers: [`Media::protocol`], [`Sdp::is_webrtc`], [`Media::codecs`],
//!   [`Sdp::common_codecs`].
//! * [`bencode`]: the ng encoding, bounded and panic-free.
//! * [`ng`]: typed requests ([`SdpRequest`] with a flags builder, [`DeleteRequest`],
//!   [`QueryRequest`]) and replies ([`Reply`], [`CallStats`]).
//! * [`Client`]: the sans-IO client core in the shared vocabulary (`handle_command`,
//!   `handle_datagram`, `poll_output`, `poll_timeout`, `handle_timeout`): cookies,
//!   retransmission, timeouts, Call-ID affinity over several instances, failover and
//!   `ping` health. It builds without tokio (`--no-default-features`).
//! * [`MediaRelay`]: the async trait the proxy uses; [`RtpEngine`] (feature `tokio`,
//!   on by default) implements it with one task owning one UDP socket and the core.
//!
//! # SDP
//!
//! ```
//! use siplink_media::{MediaProtocol, Sdp};
//!
//! let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
//!              m=audio 49170 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
//!              a=x-vendor:kept as is\r\n";
//! let sdp: Sdp = offer.parse()?;
//! assert_eq!(sdp.media[0].protocol(), MediaProtocol::RtpAvp);
//! assert!(!sdp.is_webrtc());
//! let codecs = sdp.media[0].codecs();
//! assert_eq!((codecs[0].name.as_str(), codecs[0].clock_rate), ("PCMU", 8000));
//! assert_eq!(sdp.to_string(), offer); // unmodified: the same bytes
//! # Ok::<(), siplink_media::Error>(())
//! ```
//!
//! # The client core, in virtual time
//!
//! ```
//! use std::time::{Duration, Instant};
//! use siplink_media::{Client, ClientConfig, Output, Request, SdpRequest};
//!
//! let rtpengine = "127.0.0.1:2223".parse().unwrap();
//! let t0 = Instant::now();
//! let mut client = Client::new(ClientConfig::new([rtpengine]), t0);
//! client.handle_timeout(t0); // the first health ping
//! let offer = SdpRequest::offer("call-1", "tag-a", "v=0\r\n…").to_plain_rtp();
//! let id = client.handle_command(Request::Offer(offer), t0)?;
//! let mut cookie = String::new();
//! while let Some(out) = client.poll_output() {
//!     if let Output::Transmit { payload, .. } = out {
//!         let text = String::from_utf8(payload).unwrap();
//!         if text.contains("offer") {
//!             cookie = text.split(' ').next().unwrap().to_owned();
//!         }
//!     }
//! }
//! // rtpengine's reply carries the same cookie.
//! let reply = format!("{cookie} d6:result2:ok3:sdp3:v=0e");
//! client.handle_datagram(rtpengine, reply.as_bytes(), t0 + Duration::from_millis(3));
//! let Some(Output::Completed { id: done, reply }) = client.poll_output() else { panic!() };
//! assert_eq!((done, reply.sdp()), (id, Some("v=0")));
//! # Ok::<(), siplink_media::Error>(())
//! ```
//!
//! # Over the network
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> Result<(), siplink_media::Error> {
//! use siplink_media::{ClientConfig, MediaRelay, RtpEngine, SdpRequest};
//!
//! let config = ClientConfig::new(["127.0.0.1:2223".parse().unwrap()]);
//! let relay = RtpEngine::start(config, "127.0.0.1:0".parse().unwrap()).await?;
//! let browser_offer = "v=0\r\n…"; // from the phone's INVITE
//! let to_pbx = relay
//!     .offer(SdpRequest::offer("call-1", "tag-a", browser_offer).to_plain_rtp())
//!     .await?;
//! println!("send the PBX: {}", to_pbx.sdp);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bencode;
mod client;
#[cfg(feature = "tokio")]
mod driver;
mod error;
pub mod ng;
mod relay;
pub mod sdp;

pub use client::{Client, ClientConfig, ClientStats, InstanceConfig, Output, RequestId};
#[cfg(feature = "tokio")]
pub use driver::RtpEngine;
pub use error::Error;
pub use ng::{
    CallStats, CodecOptions, Command, Counters, DeleteRequest, Dtls, Ice, Outcome, QueryRequest,
    Replace, Reply, Request, RtcpMux, SdpRequest,
};
pub use relay::{InstanceHealth, MediaRelay, SdpReply};
pub use sdp::{
    Attribute, Codec, Connection, Direction, Line, Media, MediaDesc, MediaProtocol, Origin, Sdp,
    SdpLimits, Setup, TypedAttribute,
};
