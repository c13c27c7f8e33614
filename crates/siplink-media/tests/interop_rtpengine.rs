//! Interop against a real rtpengine (Debian's `rtpengine-daemon`, userspace): the ng
//! client and the bridging flags of the control run, with one and two instances,
//! a killed instance, and a restart. Skipped when rtpengine is missing and
//! `SIPLINK_INTEROP` is unset.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use siplink_media::{
    ClientConfig, DeleteRequest, Error, InstanceHealth, MediaProtocol, MediaRelay, QueryRequest,
    RtpEngine, Sdp, SdpRequest, TypedAttribute,
};
use siplink_testkit::Rtpengine;

fn fast_config(instances: &[SocketAddr]) -> ClientConfig {
    let mut c = ClientConfig::new(instances.iter().copied());
    // A loaded CI machine must not look like a dead rtpengine: 800 ms before a timeout,
    // yet a killed instance is seen down within about a second.
    c.retransmit_interval = Duration::from_millis(200);
    c.retries = 3;
    c.ping_interval = Duration::from_millis(300);
    c
}

async fn driver(instances: &[SocketAddr]) -> RtpEngine {
    RtpEngine::start(fast_config(instances), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn in_range(port: u16, r: &Rtpengine) -> bool {
    let (lo, hi) = r.ports();
    (lo..=hi).contains(&port)
}

/// The answer a Chrome (as JsSIP) sends to an offer from rtpengine: the Chrome vector
/// turned into an answer (`setup:active`, PCMU and telephone-event only).
fn chrome_answer(port: u16) -> String {
    let offer = chrome_offer(port);
    let mut sdp = Sdp::parse(offer.as_bytes()).unwrap();
    let m = &mut sdp.media[0];
    m.desc.formats = vec!["0".into(), "126".into()];
    m.lines.retain(|l| match l {
        siplink_media::Line::Attribute(a) => match a.typed() {
            Some(TypedAttribute::Rtpmap(r)) => [0, 126].contains(&r.payload_type),
            Some(TypedAttribute::Fmtp { .. }) => false,
            Some(TypedAttribute::Setup(_)) => false,
            _ => a.name != "rtcp-fb",
        },
        _ => true,
    });
    m.push_attribute(TypedAttribute::Setup(siplink_media::Setup::Active));
    sdp.to_string()
}

fn assert_plain_rtp(sdp: &Sdp, r: &Rtpengine) {
    let m = &sdp.media[0];
    assert_eq!(m.protocol(), MediaProtocol::RtpAvp, "{sdp}");
    assert!(!sdp.is_webrtc(), "ICE or DTLS left in:\n{sdp}");
    for gone in [
        "candidate",
        "ice-ufrag",
        "ice-pwd",
        "fingerprint",
        "setup",
        "rtcp-mux",
        "crypto",
    ] {
        assert!(
            !sdp.has_attribute_anywhere(gone),
            "a={gone} left in:\n{sdp}"
        );
    }
    assert!(
        in_range(m.desc.port, r),
        "port {} not rtpengine's",
        m.desc.port
    );
    assert_eq!(
        sdp.media_connection(0).and_then(|c| c.ip()),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(sdp.origin().unwrap().address, "127.0.0.1");
    // Demuxed: RTCP on its own port, the next one.
    let rtcp = m.typed_attributes().find_map(|t| match t {
        TypedAttribute::Rtcp { port, .. } => Some(port),
        _ => None,
    });
    assert_eq!(rtcp, Some(m.desc.port + 1), "{sdp}");
}

fn assert_webrtc(sdp: &Sdp, r: &Rtpengine) {
    let m = &sdp.media[0];
    assert_eq!(m.protocol(), MediaProtocol::UdpTlsRtpSavpf, "{sdp}");
    assert!(sdp.is_webrtc());
    for needed in ["fingerprint", "ice-ufrag", "ice-pwd", "setup"] {
        assert!(
            sdp.has_attribute_anywhere(needed),
            "no a={needed} in:\n{sdp}"
        );
    }
    assert!(m.has_attribute("rtcp-mux"), "{sdp}");
    let cands: Vec<_> = m
        .typed_attributes()
        .filter_map(|t| match t {
            TypedAttribute::Candidate(c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(!cands.is_empty(), "no candidates:\n{sdp}");
    for c in cands {
        assert_eq!(c.address, "127.0.0.1");
        assert!(
            in_range(c.port, r),
            "candidate port {} not rtpengine's",
            c.port
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_pong() {
    let Some(r) = Rtpengine::start("ping") else {
        return;
    };
    let relay = driver(&[r.ng_addr()]).await;
    relay.ping(r.ng_addr()).await.unwrap();
    assert_eq!(
        relay.health(),
        [InstanceHealth {
            addr: r.ng_addr(),
            up: true
        }]
    );
    assert!(relay.stats().replies >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calls_a_plain_rtp_pbx_then_query_delete_list() {
    let Some(r) = Rtpengine::start("browser-to-pbx") else {
        return;
    };
    let relay = driver(&[r.ng_addr()]).await;
    let call = "b2p-1@siplink.test";
    // The browser's offer, towards the PBX.
    let offer = SdpRequest::offer(call, "phone-tag", chrome_offer(40000))
        .via_branch("z9hG4bK-b2p-1")
        .to_plain_rtp();
    let to_pbx = relay.offer(offer).await.unwrap();
    let to_pbx = Sdp::parse(to_pbx.sdp.as_bytes()).unwrap();
    assert_plain_rtp(&to_pbx, &r);
    let codecs: Vec<_> = to_pbx.media[0]
        .codecs()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(codecs.iter().any(|c| c == "PCMU"), "{codecs:?}");
    // The PBX (SIPp -rtp_echo style, PCMU only) answers; back to the browser as WebRTC.
    let pbx = sipp_pcmu_offer(6000);
    assert!(to_pbx.has_common_codec(&Sdp::parse(pbx.as_bytes()).unwrap()));
    let answer = SdpRequest::answer(call, "phone-tag", "pbx-tag", pbx)
        .via_branch("z9hG4bK-b2p-1")
        .ice(siplink_media::Ice::Force)
        .rtcp_mux(siplink_media::RtcpMux::Require);
    let to_browser = relay.answer(answer).await.unwrap();
    let to_browser = Sdp::parse(to_browser.sdp.as_bytes()).unwrap();
    assert_webrtc(&to_browser, &r);
    assert_eq!(to_browser.media[0].codecs()[0].name, "PCMU");
    // rtpengine knows the call, with both legs.
    let stats = relay.query(QueryRequest::call(call)).await.unwrap();
    assert!(stats.created.is_some());
    for tag in ["phone-tag", "pbx-tag"] {
        assert!(stats.tags.iter().any(|t| t == tag), "{:?}", stats.tags);
    }
    assert_eq!(relay.list(r.ng_addr(), None).await.unwrap(), [call]);
    // Deleted at once (its only leg, so the whole call): the final state comes back,
    // the call is gone from `list`, and a query is refused.
    let done = relay
        .delete(
            DeleteRequest::call(call)
                .from_tag("phone-tag")
                .delete_delay(0),
        )
        .await
        .unwrap();
    assert!(done.created.is_some());
    assert!(done.tags.iter().any(|t| t == "pbx-tag"), "{:?}", done.tags);
    assert!(relay.list(r.ng_addr(), None).await.unwrap().is_empty());
    match relay.query(QueryRequest::call(call)).await {
        Err(Error::Rejected { command, reason }) => {
            assert_eq!(command, "query");
            assert!(reason.to_lowercase().contains("unknown call"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbx_calls_a_browser() {
    let Some(r) = Rtpengine::start("pbx-to-browser") else {
        return;
    };
    let relay = driver(&[r.ng_addr()]).await;
    let call = "p2b-1@siplink.test";
    let offer = SdpRequest::offer(
        call,
        "pbx-tag",
        asterisk_pjsip_offer().replace("10.17.0.10", "127.0.0.1"),
    )
    .to_webrtc();
    let to_browser = relay.offer(offer).await.unwrap();
    let to_browser = Sdp::parse(to_browser.sdp.as_bytes()).unwrap();
    assert_webrtc(&to_browser, &r);
    assert!(
        to_browser.media[0].mid().is_some(),
        "generate-mid:\n{to_browser}"
    );
    // The browser answers; the PBX gets plain RTP.
    let answer = SdpRequest::answer(call, "pbx-tag", "phone-tag", chrome_answer(40010))
        .transport_protocol("RTP/AVP")
        .ice(siplink_media::Ice::Remove)
        .rtcp_mux(siplink_media::RtcpMux::Demux);
    let to_pbx = relay.answer(answer).await.unwrap();
    let to_pbx = Sdp::parse(to_pbx.sdp.as_bytes()).unwrap();
    assert_plain_rtp(&to_pbx, &r);
    assert_eq!(to_pbx.media[0].codecs()[0].name, "PCMU");
    relay
        .delete(DeleteRequest::call(call).delete_delay(0))
        .await
        .unwrap();
    assert!(relay.list(r.ng_addr(), None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_each_call_on_its_instance() {
    let Some(a) = Rtpengine::start("affinity-a") else {
        return;
    };
    let Some(b) = Rtpengine::start("affinity-b") else {
        return;
    };
    let relay = driver(&[a.ng_addr(), b.ng_addr()]).await;
    let calls: Vec<String> = (0..16).map(|n| format!("aff-{n}@siplink.test")).collect();
    for (n, call) in calls.iter().enumerate() {
        let offer = SdpRequest::offer(call, "pbx-tag", sipp_pcmu_offer(6000 + 2 * n as u16));
        relay.offer(offer).await.unwrap();
        // The answer and the query only work on the instance that holds the call.
        let answer = SdpRequest::answer(call, "pbx-tag", "uas-tag", sipp_pcmu_offer(7000));
        relay.answer(answer).await.unwrap();
        relay.query(QueryRequest::call(call)).await.unwrap();
    }
    let on_a = relay.list(a.ng_addr(), None).await.unwrap();
    let on_b = relay.list(b.ng_addr(), None).await.unwrap();
    assert_eq!(on_a.len() + on_b.len(), calls.len());
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "a: {on_a:?}, b: {on_b:?}"
    );
    for call in &calls {
        assert!(
            on_a.contains(call) != on_b.contains(call),
            "{call} on both or neither"
        );
    }
    for call in &calls {
        relay
            .delete(DeleteRequest::call(call).delete_delay(0))
            .await
            .unwrap();
    }
    assert!(relay.list(a.ng_addr(), None).await.unwrap().is_empty());
    assert!(relay.list(b.ng_addr(), None).await.unwrap().is_empty());
}

async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<InstanceHealth>,
    want: InstanceHealth,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(h)) if h == want => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("health events: {e}"),
            Err(_) => panic!("no {want:?} within 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_marked_down_new_calls_go_to_the_other() {
    let Some(mut a) = Rtpengine::start("failover-a") else {
        return;
    };
    let Some(b) = Rtpengine::start("failover-b") else {
        return;
    };
    let relay = driver(&[a.ng_addr(), b.ng_addr()]).await;
    let mut events = relay.subscribe();
    // Calls until one lands on each instance.
    let (mut on_a, mut n) = (None, 0);
    while on_a.is_none() {
        let call = format!("fo-{n}@siplink.test");
        n += 1;
        relay
            .offer(SdpRequest::offer(&call, "pbx-tag", sipp_pcmu_offer(6000)))
            .await
            .unwrap();
        if relay.list(a.ng_addr(), None).await.unwrap().contains(&call) {
            on_a = Some(call);
        }
        assert!(n < 64, "no call hashed to instance a");
    }
    let on_a = on_a.unwrap();
    tokio::task::block_in_place(|| a.kill());
    wait_for(
        &mut events,
        InstanceHealth {
            addr: a.ng_addr(),
            up: false,
        },
    )
    .await;
    assert!(
        !relay
            .health()
            .iter()
            .find(|h| h.addr == a.ng_addr())
            .unwrap()
            .up
    );
    // New calls all go to b.
    for k in 0..8 {
        let call = format!("after-{k}@siplink.test");
        relay
            .offer(SdpRequest::offer(&call, "pbx-tag", sipp_pcmu_offer(6100)))
            .await
            .unwrap();
        assert!(relay.list(b.ng_addr(), None).await.unwrap().contains(&call));
    }
    // The call on a fails at once, saying why, so the proxy can end it.
    let answer = SdpRequest::answer(&on_a, "pbx-tag", "uas-tag", sipp_pcmu_offer(7000));
    let err = relay.answer(answer).await.unwrap_err();
    match &err {
        Error::InstanceDown { call_id, instance } => {
            assert_eq!((call_id.as_str(), *instance), (on_a.as_str(), a.ng_addr()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("call {on_a}: its rtpengine {} is down", a.ng_addr())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_goes_down_on_kill_and_up_after_restart() {
    let Some(mut r) = Rtpengine::start("health") else {
        return;
    };
    let relay = driver(&[r.ng_addr()]).await;
    let mut events = relay.subscribe();
    relay
        .offer(SdpRequest::offer("h-1", "t", sipp_pcmu_offer(6000)))
        .await
        .unwrap();
    tokio::task::block_in_place(|| r.kill());
    let down = InstanceHealth {
        addr: r.ng_addr(),
        up: false,
    };
    wait_for(&mut events, down).await;
    // No instance up: a new call fails at once.
    assert!(matches!(
        relay
            .offer(SdpRequest::offer("h-2", "t", sipp_pcmu_offer(6000)))
            .await,
        Err(Error::NoInstance)
    ));
    tokio::task::block_in_place(|| r.restart());
    wait_for(
        &mut events,
        InstanceHealth {
            addr: r.ng_addr(),
            up: true,
        },
    )
    .await;
    let back = relay
        .offer(SdpRequest::offer("h-3", "t", sipp_pcmu_offer(6000)))
        .await
        .unwrap();
    assert!(Sdp::parse(back.sdp.as_bytes()).is_ok());
    assert_eq!(relay.list(r.ng_addr(), None).await.unwrap(), ["h-3"]);
}

/// A 20 ms PCMU RTP packet (RFC 3550 header, payload type 0, 160 bytes of silence).
fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xffu8, 160));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_is_anchored_through_rtpengine_and_counted() {
    let Some(r) = Rtpengine::start("anchor") else {
        return;
    };
    let relay = driver(&[r.ng_addr()]).await;
    // Two plain-RTP endpoints on loopback: a caller and a callee.
    let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (cp, ep) = (
        caller.local_addr().unwrap().port(),
        callee.local_addr().unwrap().port(),
    );
    let call = "anchor-1@siplink.test";
    let to_callee = relay
        .offer(SdpRequest::offer(call, "a", sipp_pcmu_offer(cp)).flag("trust-address"))
        .await
        .unwrap();
    let callee_sends_to = Sdp::parse(to_callee.sdp.as_bytes()).unwrap().media[0]
        .desc
        .port;
    let to_caller = relay
        .answer(SdpRequest::answer(call, "a", "b", sipp_pcmu_offer(ep)).flag("trust-address"))
        .await
        .unwrap();
    let caller_sends_to = Sdp::parse(to_caller.sdp.as_bytes()).unwrap().media[0]
        .desc
        .port;
    assert!(in_range(callee_sends_to, &r) && in_range(caller_sends_to, &r));
    assert_ne!(callee_sends_to, caller_sends_to);
    // Caller → rtpengine → callee, arriving from rtpengine's port for the callee.
    let mut buf = [0u8; 1500];
    for seq in 0..10u16 {
        caller
            .send_to(&rtp_packet(seq), ("127.0.0.1", caller_sends_to))
            .await
            .unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), callee.recv_from(&mut buf))
            .await
            .expect("RTP relayed to the callee")
            .unwrap();
        assert_eq!(&buf[..n], &rtp_packet(seq)[..]);
        assert_eq!(
            from.port(),
            callee_sends_to,
            "relayed from the anchored port"
        );
    }
    // And back.
    callee
        .send_to(&rtp_packet(100), ("127.0.0.1", callee_sends_to))
        .await
        .unwrap();
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), caller.recv_from(&mut buf))
        .await
        .expect("RTP relayed to the caller")
        .unwrap();
    assert_eq!((n, from.port()), (172, caller_sends_to));
    let stats = relay.query(QueryRequest::call(call)).await.unwrap();
    assert!(stats.rtp.packets >= 11, "{stats:?}");
    assert!(stats.rtp.bytes >= 11 * 172, "{stats:?}");
    relay
        .delete(DeleteRequest::call(call).delete_delay(0))
        .await
        .unwrap();
}
