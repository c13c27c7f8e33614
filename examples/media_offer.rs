//! Sends an SDP offer through rtpengine and prints the SDP to forward: bridged to plain
//! RTP (`rtp`, for a PBX) or to WebRTC (`webrtc`, for a browser). The call is deleted
//! afterwards.
//!
//! ```text
//! rtpengine --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 --foreground \
//!     --table=-1 --config-file=none --port-min=30000 --port-max=30099 &
//! cargo run --example media_offer -- 127.0.0.1:2223 offer.sdp rtp
//! ```

use siplink::media::{ClientConfig, DeleteRequest, MediaRelay, RtpEngine, Sdp, SdpRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ng, file, mode] = args.as_slice() else {
        eprintln!("usage: media_offer <rtpengine ng address> <offer.sdp> <rtp|webrtc>");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(file)?;
    let offer = Sdp::parse(text.as_bytes())?;
    eprintln!(
        "offer: {} section(s), WebRTC: {}",
        offer.media.len(),
        offer.is_webrtc()
    );
    let relay = RtpEngine::start(ClientConfig::new([ng.parse()?]), "0.0.0.0:0".parse()?).await?;
    let call_id = format!("media-offer-{}", std::process::id());
    let request = SdpRequest::offer(&call_id, "example-tag", text);
    let request = match mode.as_str() {
        "rtp" => request.to_plain_rtp(),
        "webrtc" => request.to_webrtc(),
        other => return Err(format!("mode `{other}`: rtp or webrtc").into()),
    };
    let reply = relay.offer(request).await?;
    print!("{}", reply.sdp);
    if let Some(w) = reply.warning {
        eprintln!("rtpengine warning: {w}");
    }
    relay
        .delete(DeleteRequest::call(&call_id).delete_delay(0))
        .await?;
    Ok(())
}
