//! The engine and the media relay in virtual time: every SDP of a call on a
//! `bridge` (or `relay`) connection is held until the relay answers
//! (`Output::Media` / `handle_media`), with the ng flags of issue #17's
//! control run; the relay's call is deleted whichever way the call ends.
//! The test plays the relay (its SDP names the request it answers).

mod engine_support;
#[path = "../../siplink-media/tests/support/mod.rs"]
mod sdp_vectors;

use std::collections::BTreeSet;
use std::time::Duration;

use engine_support::*;
use siplink_media::Request;
use siplink_message::{HeaderName, Message, Method, Transport};
use siplink_proxy::engine::{
    DialogKey, EndReason, Engine, EngineConfig, Event, LookupResult, MediaFailure, MediaResult,
    MediaToken, NextHop, Output, ServerTx, Target,
};
use siplink_proxy::media::{ConnectionMedia, MediaMode};
use siplink_transport::FlowId;

const PHONE_TAG: &str = "q2mcbqs8ae";
const PBX_TAG: &str = "as5f1c";

fn harness(mode: MediaMode) -> Harness {
    let mut v = view();
    v.media.push((
        "office-pbx".to_owned(),
        ConnectionMedia {
            mode,
            transcode: false,
        },
    ));
    let mut h = Harness::new();
    h.engine = Engine::new(v, EngineConfig::default());
    h
}

fn with_sdp(mut m: Message, sdp: &str) -> Message {
    m.set_body(Some("application/sdp"), sdp.to_owned());
    m
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(m.body()).into_owned()
}

/// The relay's SDP for one request: plain or WebRTC, named by `s=`.
fn relay_sdp(name: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns={name}\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

fn asks(out: &[Output]) -> Vec<(MediaToken, Request)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media { token, request } => Some((*token, request.clone())),
            _ => None,
        })
        .collect()
}

/// A request's ng dictionary field.
fn field(r: &Request, key: &str) -> Option<String> {
    r.to_value()
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// A request's flags as Kamailio's rtpengine module writes them
/// (`ICE=remove`, `rtcp-mux-demux`, `replace-origin`, `SDES-off`...).
fn flags(r: &Request) -> BTreeSet<String> {
    let v = r.to_value();
    let mut out = BTreeSet::new();
    for key in ["transport-protocol", "ICE", "DTLS"] {
        if let Some(s) = v.get(key).and_then(|x| x.as_str()) {
            out.insert(format!("{key}={s}"));
        }
    }
    for key in ["SDES", "rtcp-mux", "replace"] {
        for s in v
            .get(key)
            .and_then(|x| x.as_list())
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x.as_str())
        {
            out.insert(format!("{key}-{s}"));
        }
    }
    for s in v
        .get("flags")
        .and_then(|x| x.as_list())
        .unwrap_or_default()
        .iter()
        .filter_map(|x| x.as_str())
    {
        out.insert(s.to_owned());
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn command(r: &Request) -> &'static str {
    r.command().as_str()
}

/// The JsSIP browser's INVITE to 4001 with Chromium's SAVPF offer, over WSS,
/// routed to the PBX; the outputs after the route lookup.
fn browser_dials(h: &mut Harness, call_id: &str, sdp: bool) -> (ServerTx, Vec<Output>) {
    let mut invite = jssip_invite("sip:4001@proxy.example.com", call_id);
    if sdp {
        invite = with_sdp(invite, &sdp_vectors::chrome_offer(40000));
    }
    let tx = h.request(invite, wss_phone());
    let token = lookups(&h.outputs()).remove(0).0;
    h.lookup(
        token,
        LookupResult::Routes(vec![group("office-pbx", vec![target(PBX, 5060)])]),
    );
    (tx, h.outputs())
}

/// The PBX (Asterisk on the trunk, UDP) calls 1001 with a PCMU offer.
fn pbx_invite(call_id: &str, sdp: &str) -> Message {
    with_sdp(
        msg(&format!(
            "INVITE sip:1001@192.0.2.1:5060 SIP/2.0\n\
             Via: SIP/2.0/UDP {PBX}:5060;rport;branch=z9hG4bKPj{call_id}\n\
             From: <sip:4001@{PBX}>;tag=pbx-tag-1\n\
             To: <sip:1001@192.0.2.1>\n\
             Contact: <sip:asterisk@{PBX}:5060>\n\
             Call-ID: {call_id}\n\
             CSeq: 1 INVITE\n\
             Max-Forwards: 70\n\
             Content-Length: 0\n\n"
        )),
        sdp,
    )
}

fn ws_target() -> Target {
    Target {
        request_uri: Some("sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws".to_owned()),
        route: Vec::new(),
        hop: NextHop::Flow {
            flow: FlowId::from_raw(WS_FLOW),
            protocol: Transport::Wss,
        },
    }
}

/// The PBX's call to 1001 routed to `targets` (1001's contacts); outputs.
fn pbx_dials(h: &mut Harness, call_id: &str, sdp: &str, targets: Vec<Target>) -> Vec<Output> {
    h.request(pbx_invite(call_id, sdp), udp_from(&format!("{PBX}:5060")));
    let token = lookups(&h.outputs()).remove(0).0;
    h.lookup(
        token,
        LookupResult::Routes(vec![siplink_proxy::engine::RouteGroup {
            connection: None,
            targets,
        }]),
    );
    h.outputs()
}

/// A request inside the browser's call (`ok`: the 2xx the browser got), from
/// the browser (`from_phone`) or the PBX.
fn in_dialog(method: &str, ok: &Message, from_phone: bool, cseq: u32) -> Message {
    let mut rr = header(ok, HeaderName::RecordRoute);
    let call_id = ok.call_id().unwrap();
    let (ruri, via, from, to) = if from_phone {
        rr.reverse();
        (
            format!("sip:{PBX}:5060"),
            "SIP/2.0/WSS k3nsd8s1p2vd.invalid;branch=z9hG4bKm1".to_owned(),
            format!("\"1002\" <sip:1002@proxy.example.com>;tag={PHONE_TAG}"),
            format!("<sip:4001@proxy.example.com>;tag={PBX_TAG}"),
        )
    } else {
        (
            "sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob".to_owned(),
            format!("SIP/2.0/UDP {PBX}:5060;rport;branch=z9hG4bKPjm2"),
            format!("<sip:4001@proxy.example.com>;tag={PBX_TAG}"),
            format!("\"1002\" <sip:1002@proxy.example.com>;tag={PHONE_TAG}"),
        )
    };
    let routes: String = rr.iter().map(|r| format!("Route: {r}\n")).collect();
    msg(&format!(
        "{method} {ruri} SIP/2.0\nVia: {via}\nMax-Forwards: 70\n{routes}From: {from}\nTo: {to}\n\
         Call-ID: {call_id}\nCSeq: {cseq} {method}\nContact: <sip:{PBX}:5060>\nContent-Length: 0\n\n"
    ))
}

/// The browser's bridged call to the PBX, answered; returns the INVITE's
/// server transaction and the 200 as the browser got it.
fn answered_browser_call(h: &mut Harness, call_id: &str) -> (ServerTx, Message) {
    let (tx, out) = browser_dials(h, call_id, true);
    let (token, _) = asks(&out).remove(0);
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let sent = sends(&h.outputs()).remove(0);
    let ok = with_sdp(
        pbx_reply(&sent.request, 200, PBX_TAG, ""),
        &sdp_vectors::sipp_pcmu_offer(6000),
    );
    h.respond(sent.branch, ok);
    let (token, _) = asks(&h.outputs()).remove(0);
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-browser")), h.now);
    let (_, ok) = responses(&h.outputs()).remove(0);
    (tx, ok)
}

fn browser_key(call_id: &str) -> DialogKey {
    DialogKey {
        call_id: call_id.to_owned(),
        caller_tag: PHONE_TAG.to_owned(),
        callee_tag: PBX_TAG.to_owned(),
    }
}

/// The one `delete` in `out`, with its Call-ID and from-tag.
fn one_delete(out: &[Output], call_id: &str, from_tag: &str) -> MediaToken {
    let deletes: Vec<_> = asks(out)
        .into_iter()
        .filter(|(_, r)| command(r) == "delete")
        .collect();
    assert_eq!(deletes.len(), 1, "{out:?}");
    let (token, d) = &deletes[0];
    assert_eq!(field(d, "call-id").as_deref(), Some(call_id));
    assert_eq!(field(d, "from-tag").as_deref(), Some(from_tag));
    assert_eq!(
        d.to_value().get("delete-delay").and_then(|v| v.as_int()),
        Some(0)
    );
    *token
}

fn no_media(out: &[Output]) {
    assert!(asks(out).is_empty(), "{out:?}");
}

#[test]
fn bridge_browser_to_pbx_offer_and_answer_carry_the_control_run_flags() {
    let mut h = harness(MediaMode::Bridge);
    let (tx, out) = browser_dials(&mut h, "m-b2p", true);
    // The INVITE is held: no branch goes out before the relay answers.
    assert!(sends(&out).is_empty(), "{out:?}");
    let asked = asks(&out);
    assert_eq!(asked.len(), 1);
    let (token, offer) = &asked[0];
    assert_eq!(command(offer), "offer");
    assert_eq!(
        flags(offer),
        set(&[
            "transport-protocol=RTP/AVP",
            "ICE=remove",
            "DTLS=off",
            "SDES-off",
            "rtcp-mux-demux",
            "replace-origin",
            "replace-session-connection",
        ])
    );
    assert_eq!(field(offer, "call-id").as_deref(), Some("m-b2p"));
    assert_eq!(field(offer, "from-tag").as_deref(), Some(PHONE_TAG));
    assert_eq!(field(offer, "to-tag"), None);
    assert!(field(offer, "sdp").unwrap().contains("UDP/TLS/RTP/SAVPF"));
    let via_branch = field(offer, "via-branch").expect("via-branch");
    assert_eq!(h.engine.media_waiting(), 1);

    h.engine
        .handle_media(*token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let sent = sends(&h.outputs());
    assert_eq!(sent.len(), 1);
    let invite = &sent[0].request;
    assert_eq!(body(invite), relay_sdp("to-pbx"));
    assert_eq!(
        invite.header(HeaderName::ContentLength),
        Some(relay_sdp("to-pbx").len().to_string().as_bytes())
    );
    assert_eq!(
        invite.top_via().unwrap().branch(),
        Some(via_branch.as_str()),
        "the via-branch is the branch's"
    );

    // The PBX answers PCMU: held until the relay's WebRTC answer.
    let ok = with_sdp(
        pbx_reply(invite, 200, PBX_TAG, ""),
        &sdp_vectors::sipp_pcmu_offer(6000),
    );
    h.respond(sent[0].branch, ok);
    let out = h.outputs();
    assert!(responses(&out).is_empty(), "{out:?}");
    let (token, answer) = asks(&out).remove(0);
    assert_eq!(command(&answer), "answer");
    assert_eq!(flags(&answer), set(&["ICE=force", "rtcp-mux-require"]));
    assert_eq!(field(&answer, "from-tag").as_deref(), Some(PHONE_TAG));
    assert_eq!(field(&answer, "to-tag").as_deref(), Some(PBX_TAG));
    assert_eq!(field(&answer, "via-branch"), Some(via_branch.clone()));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-browser")), h.now);
    let out = h.outputs();
    let got = responses(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, tx);
    assert_eq!(got[0].1.status(), Some(200));
    assert_eq!(body(&got[0].1), relay_sdp("to-browser"));

    // The dialog keeps the media leg.
    let d = h.engine.dialog(&browser_key("m-b2p")).expect("recorded");
    let leg = d.media.as_ref().expect("media leg");
    assert_eq!(leg.media.mode, MediaMode::Bridge);
    assert!(leg.phone_webrtc && leg.phone_websocket && !leg.pbx_is_caller);
    assert_eq!(leg.via_branch.as_deref(), Some(via_branch.as_str()));
    assert_eq!(h.engine.media_waiting(), 0);
}

#[test]
fn bridge_pbx_to_browser_offer_and_answer_carry_the_control_run_flags() {
    let mut h = harness(MediaMode::Bridge);
    let out = pbx_dials(
        &mut h,
        "m-p2b",
        &sdp_vectors::sipp_pcmu_offer(6000),
        vec![ws_target()],
    );
    assert!(sends(&out).is_empty());
    let (token, offer) = asks(&out).remove(0);
    assert_eq!(command(&offer), "offer");
    assert_eq!(
        flags(&offer),
        set(&[
            "transport-protocol=UDP/TLS/RTP/SAVPF",
            "ICE=force",
            "rtcp-mux-require",
            "generate-mid",
        ])
    );
    assert_eq!(field(&offer, "from-tag").as_deref(), Some("pbx-tag-1"));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-browser")), h.now);
    let sent = sends(&h.outputs()).remove(0);
    assert_eq!(body(&sent.request), relay_sdp("to-browser"));
    // The browser answers with its SAVPF SDP.
    let ok = with_sdp(
        pbx_reply(&sent.request, 200, "browser-tag", ""),
        &sdp_vectors::chrome_offer(40010),
    );
    h.respond(sent.branch, ok);
    let out = h.outputs();
    assert!(responses(&out).is_empty());
    let (token, answer) = asks(&out).remove(0);
    assert_eq!(command(&answer), "answer");
    assert_eq!(
        flags(&answer),
        set(&["transport-protocol=RTP/AVP", "ICE=remove", "rtcp-mux-demux"])
    );
    assert_eq!(field(&answer, "from-tag").as_deref(), Some("pbx-tag-1"));
    assert_eq!(field(&answer, "to-tag").as_deref(), Some("browser-tag"));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let got = responses(&h.outputs());
    assert_eq!(got[0].1.status(), Some(200));
    assert_eq!(body(&got[0].1), relay_sdp("to-pbx"));
    let leg = h
        .engine
        .dialog(&DialogKey {
            call_id: "m-p2b".into(),
            caller_tag: "pbx-tag-1".into(),
            callee_tag: "browser-tag".into(),
        })
        .and_then(|d| d.media.clone())
        .expect("media leg");
    assert!(leg.pbx_is_caller && leg.phone_webrtc);
}

#[test]
fn relay_mode_and_media_off() {
    // Relay: a UDP desk phone's offer only gets its addresses replaced.
    let mut h = harness(MediaMode::Relay);
    let invite = baresip_invite("sip:4001@proxy.example.com", "m-relay", "");
    h.request(invite, udp_from("192.0.2.10:5060"));
    let token = lookups(&h.outputs()).remove(0).0;
    h.lookup(
        token,
        LookupResult::Routes(vec![group("office-pbx", vec![target(PBX, 5060)])]),
    );
    let (_, offer) = asks(&h.outputs()).remove(0);
    assert_eq!(
        flags(&offer),
        set(&["replace-origin", "replace-session-connection"])
    );
    // Off: the INVITE goes at once, its SDP untouched, nothing asked.
    let mut h = harness(MediaMode::Off);
    let (_, out) = browser_dials(&mut h, "m-off", true);
    no_media(&out);
    let sent = sends(&out);
    assert_eq!(body(&sent[0].request), sdp_vectors::chrome_offer(40000));
}

#[test]
fn late_offer_in_the_200_and_its_answer_in_the_ack() {
    let mut h = harness(MediaMode::Bridge);
    // No SDP in the INVITE: nothing to ask, the INVITE goes at once.
    let (tx, out) = browser_dials(&mut h, "m-late", false);
    no_media(&out);
    let sent = sends(&out).remove(0);
    // The PBX offers in its 200: an offer towards the (WebSocket) browser.
    let ok = with_sdp(
        pbx_reply(&sent.request, 200, PBX_TAG, ""),
        &sdp_vectors::sipp_pcmu_offer(6000),
    );
    h.respond(sent.branch, ok);
    let out = h.outputs();
    assert!(responses(&out).is_empty());
    let (token, offer) = asks(&out).remove(0);
    assert_eq!(command(&offer), "offer");
    assert_eq!(
        flags(&offer),
        set(&[
            "transport-protocol=UDP/TLS/RTP/SAVPF",
            "ICE=force",
            "rtcp-mux-require",
            "generate-mid",
        ])
    );
    // The offerer is the callee: its tag is the from-tag.
    assert_eq!(field(&offer, "from-tag").as_deref(), Some(PBX_TAG));
    assert_eq!(field(&offer, "to-tag").as_deref(), Some(PHONE_TAG));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("late-to-browser")), h.now);
    let (rtx, ok) = responses(&h.outputs()).remove(0);
    assert_eq!((rtx, ok.status()), (tx, Some(200)));
    assert_eq!(body(&ok), relay_sdp("late-to-browser"));

    // The browser's answer comes in the ACK: held, then plain RTP to the PBX.
    let ack = with_sdp(
        in_dialog("ACK", &ok, true, 6135),
        &sdp_vectors::chrome_offer(40020),
    );
    h.request(ack, wss_phone());
    let out = h.outputs();
    assert!(forwards(&out).is_empty(), "{out:?}");
    let (token, answer) = asks(&out).remove(0);
    assert_eq!(command(&answer), "answer");
    assert_eq!(
        flags(&answer),
        set(&["transport-protocol=RTP/AVP", "ICE=remove", "rtcp-mux-demux"])
    );
    assert_eq!(field(&answer, "from-tag").as_deref(), Some(PBX_TAG));
    assert_eq!(field(&answer, "to-tag").as_deref(), Some(PHONE_TAG));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("ack-to-pbx")), h.now);
    let fwd = forwards(&h.outputs());
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].0.method(), Some(&Method::Ack));
    assert_eq!(body(&fwd[0].0), relay_sdp("ack-to-pbx"));
    assert_eq!(fwd[0].1, addr(PBX, 5060));
}

#[test]
fn early_media_in_a_183_then_the_200() {
    let mut h = harness(MediaMode::Bridge);
    let (tx, out) = browser_dials(&mut h, "m-early", true);
    let (token, _) = asks(&out).remove(0);
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let sent = sends(&h.outputs()).remove(0);
    let pcmu = sdp_vectors::sipp_pcmu_offer(6000);
    let ringing = with_sdp(pbx_reply(&sent.request, 183, PBX_TAG, ""), &pcmu);
    h.respond(sent.branch, ringing);
    let out = h.outputs();
    assert!(responses(&out).is_empty(), "the 183 waits for the relay");
    let (token, answer) = asks(&out).remove(0);
    assert_eq!(command(&answer), "answer");
    assert_eq!(flags(&answer), set(&["ICE=force", "rtcp-mux-require"]));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("early")), h.now);
    let got = responses(&h.outputs());
    assert_eq!((got[0].0, got[0].1.status()), (tx, Some(183)));
    assert_eq!(body(&got[0].1), relay_sdp("early"));
    // The 200 with the same SDP is asked again (rtpengine answers the same).
    h.respond(
        sent.branch,
        with_sdp(pbx_reply(&sent.request, 200, PBX_TAG, ""), &pcmu),
    );
    let (token, again) = asks(&h.outputs()).remove(0);
    assert_eq!(command(&again), "answer");
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("final")), h.now);
    let got = responses(&h.outputs());
    assert_eq!(got[0].1.status(), Some(200));
    assert_eq!(body(&got[0].1), relay_sdp("final"));
    // A retransmission of that 200 after the fork is gone carries the same
    // SDP, without asking the relay again.
    let retrans = with_sdp(pbx_reply(&sent.request, 200, PBX_TAG, ""), &pcmu);
    h.engine.handle_stray_response(retrans, h.now);
    let out = h.outputs();
    no_media(&out);
    let fwd = forwards(&out);
    assert_eq!(body(&fwd[0].0), relay_sdp("final"));
}

#[test]
fn a_reinvite_for_hold_goes_through_the_relay_both_ways() {
    let mut h = harness(MediaMode::Bridge);
    let (_, ok) = answered_browser_call(&mut h, "m-hold");
    // The PBX puts the browser on hold.
    let hold = pbx_invite(
        "x",
        &sdp_vectors::sipp_pcmu_offer(6000).replace(
            "a=rtpmap:0 PCMU/8000\r\n",
            "a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n",
        ),
    );
    let hold = with_sdp(in_dialog("INVITE", &ok, false, 2), &body(&hold));
    let reinvite_tx = h.request(hold, udp_from(&format!("{PBX}:5060")));
    let out = h.outputs();
    assert!(sends(&out).is_empty(), "held for the relay: {out:?}");
    let (token, offer) = asks(&out).remove(0);
    assert_eq!(command(&offer), "offer");
    assert_eq!(
        flags(&offer),
        set(&[
            "transport-protocol=UDP/TLS/RTP/SAVPF",
            "ICE=force",
            "rtcp-mux-require",
            "generate-mid",
        ])
    );
    assert_eq!(field(&offer, "from-tag").as_deref(), Some(PBX_TAG));
    assert_eq!(field(&offer, "to-tag").as_deref(), Some(PHONE_TAG));
    assert!(field(&offer, "sdp").unwrap().contains("a=sendonly"));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("hold-to-browser")), h.now);
    let sent = sends(&h.outputs()).remove(0);
    assert_eq!(body(&sent.request), relay_sdp("hold-to-browser"));
    // The browser's 200 (recvonly): an answer towards the PBX.
    let answer_sdp = sdp_vectors::chrome_offer(40030).replace("a=sendrecv", "a=recvonly");
    let ok2 = with_sdp(pbx_reply(&sent.request, 200, PHONE_TAG, ""), &answer_sdp);
    h.respond(sent.branch, ok2);
    let out = h.outputs();
    assert!(responses(&out).is_empty());
    let (token, answer) = asks(&out).remove(0);
    assert_eq!(command(&answer), "answer");
    assert_eq!(
        flags(&answer),
        set(&["transport-protocol=RTP/AVP", "ICE=remove", "rtcp-mux-demux"])
    );
    assert_eq!(field(&answer, "from-tag").as_deref(), Some(PBX_TAG));
    assert_eq!(field(&answer, "to-tag").as_deref(), Some(PHONE_TAG));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("held")), h.now);
    let got = responses(&h.outputs());
    assert_eq!((got[0].0, got[0].1.status()), (reinvite_tx, Some(200)));
    assert_eq!(body(&got[0].1), relay_sdp("held"));
}

#[test]
fn a_fork_to_a_browser_and_a_desk_phone_asks_one_offer_per_branch() {
    let mut h = harness(MediaMode::Bridge);
    let desk = Target {
        request_uri: Some("sip:1001@192.0.2.50:5060".to_owned()),
        route: Vec::new(),
        hop: addr("192.0.2.50", 5060),
    };
    let out = pbx_dials(
        &mut h,
        "m-fork",
        &sdp_vectors::sipp_pcmu_offer(6000),
        vec![ws_target(), desk],
    );
    assert!(sends(&out).is_empty());
    let asked = asks(&out);
    assert_eq!(asked.len(), 2, "one offer per branch");
    let branches: BTreeSet<_> = asked
        .iter()
        .map(|(_, r)| field(r, "via-branch").unwrap())
        .collect();
    assert_eq!(branches.len(), 2, "each branch its own via-branch");
    // The browser's branch is bridged to WebRTC, the desk phone's relayed.
    assert!(flags(&asked[0].1).contains("ICE=force"));
    assert_eq!(
        flags(&asked[1].1),
        set(&["replace-origin", "replace-session-connection"])
    );
    for (n, (token, _)) in asked.iter().enumerate() {
        h.engine.handle_media(
            *token,
            MediaResult::Sdp(relay_sdp(&format!("branch-{n}"))),
            h.now,
        );
    }
    let sent = sends(&h.outputs());
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].hop, ws_target().hop);
    assert_eq!(body(&sent[0].request), relay_sdp("branch-0"));
    assert_eq!(body(&sent[1].request), relay_sdp("branch-1"));
    // The desk phone rings, the browser answers: its answer carries its
    // branch's via-branch; the desk phone is cancelled.
    h.respond(sent[1].branch, pbx_reply(&sent[1].request, 180, "desk", ""));
    h.outputs();
    let ok = with_sdp(
        pbx_reply(&sent[0].request, 200, "browser-tag", ""),
        &sdp_vectors::chrome_offer(40040),
    );
    h.respond(sent[0].branch, ok);
    let (token, answer) = asks(&h.outputs()).remove(0);
    assert_eq!(
        field(&answer, "via-branch"),
        field(&asked[0].1, "via-branch")
    );
    assert_eq!(field(&answer, "to-tag").as_deref(), Some("browser-tag"));
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("answer")), h.now);
    let out = h.outputs();
    assert_eq!(statuses(&out), vec![200]);
    assert_eq!(methods(&sends(&out)), vec!["CANCEL"]);
    // The desk phone's 487 ends the fork; the answered call keeps the
    // relay's call (no delete until the dialog ends).
    let cancelled = sent[1].request.clone();
    h.respond(sent[1].branch, pbx_reply(&cancelled, 487, "desk", ""));
    no_media(&h.outputs());
    let key = DialogKey {
        call_id: "m-fork".into(),
        caller_tag: "pbx-tag-1".into(),
        callee_tag: "browser-tag".into(),
    };
    assert!(h.engine.dialog(&key).unwrap().media.is_some());
}

#[test]
fn a_bye_deletes_the_call_on_the_relay() {
    let mut h = harness(MediaMode::Bridge);
    let (_, ok) = answered_browser_call(&mut h, "m-bye");
    h.request(in_dialog("BYE", &ok, true, 6136), wss_phone());
    let out = h.outputs();
    let token = one_delete(&out, "m-bye", PHONE_TAG);
    assert_eq!(methods(&sends(&out)), vec!["BYE"]);
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
    let bye = sends(&out).remove(0);
    h.respond(bye.branch, pbx_reply(&bye.request, 200, PHONE_TAG, ""));
    h.outputs();
    assert!(h.engine.is_idle());
}

#[test]
fn a_cancel_deletes_the_call_on_the_relay() {
    let mut h = harness(MediaMode::Bridge);
    let (tx, out) = browser_dials(&mut h, "m-cancel", true);
    let (token, _) = asks(&out).remove(0);
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let sent = sends(&h.outputs()).remove(0);
    h.respond(sent.branch, pbx_reply(&sent.request, 180, PBX_TAG, ""));
    h.outputs();
    let cancel = msg(&format!(
        "CANCEL sip:4001@proxy.example.com SIP/2.0\n\
         Via: SIP/2.0/WSS k3nsd8s1p2vd.invalid;branch=z9hG4bKm-cancelw\n\
         Max-Forwards: 69\nTo: <sip:4001@proxy.example.com>\n\
         From: \"1002\" <sip:1002@proxy.example.com>;tag={PHONE_TAG}\n\
         Call-ID: m-cancel\nCSeq: 6135 CANCEL\nContent-Length: 0\n\n"
    ));
    h.request(cancel, wss_phone());
    let out = h.outputs();
    let cancels = sends(&out);
    assert_eq!(methods(&cancels), vec!["CANCEL"]);
    no_media(&out);
    h.respond(
        cancels[0].branch,
        pbx_reply(&cancels[0].request, 200, PBX_TAG, ""),
    );
    h.respond(sent.branch, pbx_reply(&sent.request, 487, PBX_TAG, ""));
    let out = h.outputs();
    assert!(
        responses(&out)
            .iter()
            .any(|(t, r)| *t == tx && r.status() == Some(487))
    );
    let token = one_delete(&out, "m-cancel", PHONE_TAG);
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
    assert!(h.engine.is_idle());
}

#[test]
fn a_cancel_while_the_relay_is_asked_never_sends_the_invite() {
    let mut h = harness(MediaMode::Bridge);
    let (tx, out) = browser_dials(&mut h, "m-cancel-early", true);
    let (token, _) = asks(&out).remove(0);
    let cancel = msg(&format!(
        "CANCEL sip:4001@proxy.example.com SIP/2.0\n\
         Via: SIP/2.0/WSS k3nsd8s1p2vd.invalid;branch=z9hG4bKm-cancel-earlyw\n\
         Max-Forwards: 69\nTo: <sip:4001@proxy.example.com>\n\
         From: \"1002\" <sip:1002@proxy.example.com>;tag={PHONE_TAG}\n\
         Call-ID: m-cancel-early\nCSeq: 6135 CANCEL\nContent-Length: 0\n\n"
    ));
    h.request(cancel, wss_phone());
    let out = h.outputs();
    assert!(sends(&out).is_empty(), "{out:?}");
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let out = h.outputs();
    assert!(sends(&out).is_empty(), "never sent: {out:?}");
    assert!(
        responses(&out)
            .iter()
            .any(|(t, r)| *t == tx && r.status() == Some(487))
    );
    let token = one_delete(&out, "m-cancel-early", PHONE_TAG);
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
    assert!(h.engine.is_idle());
}

#[test]
fn a_failed_call_deletes_the_call_on_the_relay() {
    let mut h = harness(MediaMode::Bridge);
    let (tx, out) = browser_dials(&mut h, "m-busy", true);
    let (token, _) = asks(&out).remove(0);
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let sent = sends(&h.outputs()).remove(0);
    h.respond(sent.branch, pbx_reply(&sent.request, 486, PBX_TAG, ""));
    let out = h.outputs();
    assert_eq!(responses(&out)[0].0, tx);
    assert_eq!(statuses(&out), vec![486]);
    let token = one_delete(&out, "m-busy", PHONE_TAG);
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
    assert!(h.engine.is_idle());
}

#[test]
fn a_closed_flow_ends_the_call_and_deletes_it_on_the_relay() {
    let mut h = harness(MediaMode::Bridge);
    answered_browser_call(&mut h, "m-flow");
    h.engine
        .handle_flow_closed(FlowId::from_raw(WS_FLOW), h.now);
    let out = h.outputs();
    assert_eq!(methods(&sends(&out)), vec!["BYE"], "BYE to the PBX only");
    let token = one_delete(&out, "m-flow", PHONE_TAG);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::CallEnded {
            reason: EndReason::FlowClosed(_),
            ..
        }
    )));
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
}

#[test]
fn max_call_duration_deletes_the_call_on_the_relay() {
    let mut h = harness(MediaMode::Bridge);
    answered_browser_call(&mut h, "m-max");
    h.advance(EngineConfig::default().max_call_duration + Duration::from_secs(1));
    let out = h.outputs();
    assert_eq!(methods(&sends(&out)), vec!["BYE", "BYE"]);
    one_delete(&out, "m-max", PHONE_TAG);
}

#[test]
fn a_relay_failure_on_the_offer_fails_the_call_with_its_status() {
    let mut h = harness(MediaMode::Bridge);
    let (tx, out) = browser_dials(&mut h, "m-down", true);
    let (token, _) = asks(&out).remove(0);
    h.engine.handle_media(
        token,
        MediaResult::Failed(MediaFailure {
            status: 503,
            reason: "Media Relay Unavailable (no rtpengine instance is up)".into(),
        }),
        h.now,
    );
    let out = h.outputs();
    assert!(sends(&out).is_empty());
    let got = responses(&out);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1.status()), (tx, Some(503)));
    assert_eq!(
        got[0].1.reason(),
        Some(&b"Media Relay Unavailable (no rtpengine instance is up)"[..])
    );
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::CallEnded {
            reason: EndReason::Failed(503),
            ..
        }
    )));
    let token = one_delete(&out, "m-down", PHONE_TAG);
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
    assert!(h.engine.is_idle());
}

#[test]
fn a_pbx_offer_without_a_browser_codec_is_488_no_common_codec() {
    let mut h = harness(MediaMode::Bridge);
    let g729 = "v=0\r\no=- 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\n\
                m=audio 7000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let out = pbx_dials(&mut h, "m-g729", g729, vec![ws_target()]);
    no_media(&out);
    assert!(sends(&out).is_empty());
    let got = responses(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.status(), Some(488));
    let reason = String::from_utf8_lossy(got[0].1.reason().unwrap()).into_owned();
    assert!(reason.starts_with("no common codec"), "{reason}");
    assert!(h.engine.is_idle());
}

#[test]
fn a_relay_failure_on_the_answer_hangs_up_the_callee_and_fails_the_call() {
    let mut h = harness(MediaMode::Bridge);
    let (tx, out) = browser_dials(&mut h, "m-answer-fails", true);
    let (token, _) = asks(&out).remove(0);
    h.engine
        .handle_media(token, MediaResult::Sdp(relay_sdp("to-pbx")), h.now);
    let sent = sends(&h.outputs()).remove(0);
    let ok = with_sdp(
        pbx_reply(&sent.request, 200, PBX_TAG, ""),
        &sdp_vectors::sipp_pcmu_offer(6000),
    );
    h.respond(sent.branch, ok);
    let (token, _) = asks(&h.outputs()).remove(0);
    h.engine.handle_media(
        token,
        MediaResult::Failed(MediaFailure {
            status: 503,
            reason: "Media Relay Timeout".into(),
        }),
        h.now,
    );
    let out = h.outputs();
    // The PBX's 200 is ACKed and the PBX hung up; the browser gets 503.
    let fwd = forwards(&out);
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].0.method(), Some(&Method::Ack));
    assert_eq!(fwd[0].1, addr(PBX, 5060));
    let s = sends(&out);
    assert_eq!(methods(&s), vec!["BYE"]);
    assert_eq!(s[0].hop, addr(PBX, 5060));
    assert_eq!(
        header(&s[0].request, HeaderName::To)[0],
        format!("<sip:4001@proxy.example.com>;tag={PBX_TAG}")
    );
    let got = responses(&out);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1.status()), (tx, Some(503)));
    assert!(h.engine.dialog(&browser_key("m-answer-fails")).is_none());
    let token = one_delete(&out, "m-answer-fails", PHONE_TAG);
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
}

#[test]
fn a_relay_failure_on_a_reinvite_answers_it_and_keeps_the_call() {
    let mut h = harness(MediaMode::Bridge);
    let (_, ok) = answered_browser_call(&mut h, "m-re-fail");
    let re = with_sdp(
        in_dialog("INVITE", &ok, true, 6136),
        &sdp_vectors::chrome_offer(40050),
    );
    let tx = h.request(re, wss_phone());
    let (token, _) = asks(&h.outputs()).remove(0);
    h.engine.handle_media(
        token,
        MediaResult::Failed(MediaFailure {
            status: 488,
            reason: "rtpengine refused the offer".into(),
        }),
        h.now,
    );
    let got = responses(&h.outputs());
    assert_eq!((got[0].0, got[0].1.status()), (tx, Some(488)));
    assert!(h.engine.dialog(&browser_key("m-re-fail")).is_some());
}

#[test]
fn the_relays_media_timeout_ends_the_call_with_bye_to_both_legs() {
    let mut h = harness(MediaMode::Bridge);
    answered_browser_call(&mut h, "m-timeout");
    h.engine.handle_media_timeout("m-timeout", h.now);
    let out = h.outputs();
    let s = sends(&out);
    assert_eq!(methods(&s), vec!["BYE", "BYE"]);
    let hops: Vec<_> = s.iter().map(|x| x.hop.clone()).collect();
    assert!(hops.contains(&addr(PBX, 5060)));
    assert!(hops.contains(&ws_target().hop));
    for bye in &s {
        assert_eq!(
            bye.request.header_values_named("Reason").next(),
            Some(&b"SIP;text=\"Media Timeout\""[..])
        );
    }
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::CallEnded {
            reason: EndReason::MediaTimeout,
            ..
        }
    )));
    let token = one_delete(&out, "m-timeout", PHONE_TAG);
    h.engine.handle_media(token, MediaResult::Deleted, h.now);
    for bye in s {
        h.respond(bye.branch, pbx_reply(&bye.request, 200, "x", ""));
    }
    h.outputs();
    assert!(h.engine.is_idle());
    // An unknown call's timeout does nothing.
    h.engine.handle_media_timeout("m-unknown", h.now);
    assert!(h.outputs().is_empty());
}

#[test]
fn a_lost_relay_instance_ends_its_calls_with_bye_to_both_legs() {
    let mut h = harness(MediaMode::Bridge);
    answered_browser_call(&mut h, "m-lost");
    answered_browser_call(&mut h, "m-kept");
    h.engine.handle_media_lost("m-lost", h.now);
    let out = h.outputs();
    let s = sends(&out);
    assert_eq!(methods(&s), vec!["BYE", "BYE"]);
    assert!(s.iter().all(|b| b.request.call_id().unwrap() == "m-lost"));
    for bye in &s {
        assert_eq!(
            bye.request.header_values_named("Reason").next(),
            Some(&b"SIP;text=\"Media Relay Failed\""[..])
        );
    }
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::CallEnded {
            reason: EndReason::MediaFailed,
            ..
        }
    )));
    one_delete(&out, "m-lost", PHONE_TAG);
    assert!(h.engine.dialog(&browser_key("m-kept")).is_some());
}

#[test]
fn transcode_lets_a_g729_pbx_call_a_browser_with_opus_transcoded() {
    let mut v = view();
    v.media.push((
        "office-pbx".to_owned(),
        ConnectionMedia {
            mode: MediaMode::Bridge,
            transcode: true,
        },
    ));
    let mut h = Harness::new();
    h.engine = Engine::new(v, EngineConfig::default());
    let g729 = "v=0\r\no=- 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\n\
                m=audio 7000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let out = pbx_dials(&mut h, "m-transcode", g729, vec![ws_target()]);
    assert!(responses(&out).is_empty(), "not refused: {out:?}");
    let (_, offer) = asks(&out).remove(0);
    let transcode: Vec<String> = offer
        .to_value()
        .get("codec")
        .and_then(|c| c.get("transcode"))
        .and_then(|t| t.as_list())
        .unwrap_or_default()
        .iter()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    assert_eq!(transcode, ["opus"]);
    assert!(flags(&offer).contains("transport-protocol=UDP/TLS/RTP/SAVPF"));
}

#[test]
fn reinvites_waiting_for_the_relay_are_bounded() {
    let mut v = view();
    v.media.push((
        "office-pbx".to_owned(),
        ConnectionMedia {
            mode: MediaMode::Bridge,
            transcode: false,
        },
    ));
    let mut h = Harness::new();
    h.engine = Engine::new(
        v,
        EngineConfig {
            max_calls: 2,
            ..EngineConfig::default()
        },
    );
    let (_, ok) = answered_browser_call(&mut h, "m-bound");
    // Four may wait (twice max_calls); the fifth is refused at once.
    let mut statuses_seen = Vec::new();
    for n in 0..5u32 {
        let re = with_sdp(
            in_dialog("INVITE", &ok, true, 6136 + n),
            &sdp_vectors::chrome_offer(40090),
        );
        h.request(re, wss_phone());
        let out = h.outputs();
        statuses_seen.extend(statuses(&out));
        assert_eq!(asks(&out).len(), usize::from(n < 4), "re-INVITE {n}");
    }
    assert_eq!(statuses_seen, vec![503]);
    assert_eq!(h.engine.media_waiting(), 4);
}

#[test]
fn media_io_maps_relay_errors_to_statuses_and_lost_calls() {
    use siplink_media::Error;
    use siplink_proxy::media_io::{failure, lost_call};
    let refused = Error::Rejected {
        command: "offer",
        reason: "Incomplete SDP specification".into(),
    };
    let f = failure(&refused);
    assert_eq!(f.status, 488);
    assert_eq!(
        f.reason,
        "Media Relay Refused: rtpengine refused the offer: Incomplete SDP specification"
    );
    assert_eq!(failure(&Error::NoInstance).status, 503);
    let io = Error::Io(std::io::Error::other("network is unreachable"));
    let f = failure(&io);
    assert_eq!(f.status, 503);
    assert_eq!(
        f.reason, "Media Relay Unavailable: media relay socket: network is unreachable",
        "the source is chained"
    );
    let long = Error::Protocol("x".repeat(10_000));
    assert!(failure(&long).reason.len() <= 200);
    let down = Error::InstanceDown {
        call_id: "c-9".into(),
        instance: "127.0.0.1:2223".parse().unwrap(),
    };
    assert_eq!(lost_call(&down), Some("c-9"));
    assert_eq!(failure(&down).status, 503);
    assert_eq!(lost_call(&Error::NoInstance), None);
}

// ---------------------------------------------------------------------------
// Against a real rtpengine (Debian's rtpengine-daemon): the engine's requests
// run by `media_io::run`. Skipped when rtpengine is missing and
// SIPLINK_INTEROP is unset.
// ---------------------------------------------------------------------------

mod real {
    use super::*;
    use siplink_media::{
        ClientConfig, Error, MediaProtocol, MediaRelay, QueryRequest, RtpEngine, Sdp,
        TypedAttribute,
    };
    use siplink_proxy::media_io;
    use siplink_testkit::Rtpengine;

    async fn relay(r: &Rtpengine) -> RtpEngine {
        let mut c = ClientConfig::new([r.ng_addr()]);
        c.retransmit_interval = Duration::from_millis(200);
        c.retries = 4;
        RtpEngine::start(c, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    /// Runs every media request in `out` on the relay and gives the results
    /// to the engine; returns the engine's outputs after that.
    async fn run_media(h: &mut Harness, relay: &RtpEngine, out: Vec<Output>) -> Vec<Output> {
        let mut rest = Vec::new();
        for o in out {
            match o {
                Output::Media { token, request } => {
                    let result = media_io::run(relay, request).await;
                    assert!(
                        !matches!(result, MediaResult::Failed(_)),
                        "the relay failed: {result:?}"
                    );
                    h.engine.handle_media(token, result, h.now);
                    rest.extend(h.outputs());
                }
                other => rest.push(other),
            }
        }
        rest
    }

    fn sdp_of(m: &Message) -> Sdp {
        Sdp::parse(m.body()).unwrap_or_else(|e| panic!("{e}: {}", body(m)))
    }

    fn in_range(port: u16, r: &Rtpengine) -> bool {
        let (lo, hi) = r.ports();
        (lo..=hi).contains(&port)
    }

    /// What the PBX must get: RTP/AVP on rtpengine's port, no ICE, no DTLS.
    fn assert_plain(sdp: &Sdp, r: &Rtpengine) {
        assert_eq!(sdp.media[0].protocol(), MediaProtocol::RtpAvp, "{sdp}");
        assert!(!sdp.is_webrtc(), "{sdp}");
        for gone in [
            "candidate",
            "ice-ufrag",
            "ice-pwd",
            "fingerprint",
            "setup",
            "crypto",
        ] {
            assert!(!sdp.has_attribute_anywhere(gone), "a={gone} in\n{sdp}");
        }
        assert!(in_range(sdp.media[0].desc.port, r), "{sdp}");
        assert!(
            sdp.media[0].codecs().iter().any(|c| c.name == "PCMU"),
            "{sdp}"
        );
    }

    /// What the browser must get: SAVPF with ICE candidates on rtpengine's
    /// ports and a DTLS fingerprint.
    fn assert_browser(sdp: &Sdp, r: &Rtpengine) {
        assert_eq!(
            sdp.media[0].protocol(),
            MediaProtocol::UdpTlsRtpSavpf,
            "{sdp}"
        );
        for needed in ["fingerprint", "ice-ufrag", "ice-pwd", "setup"] {
            assert!(
                sdp.has_attribute_anywhere(needed),
                "no a={needed} in\n{sdp}"
            );
        }
        assert!(sdp.media[0].has_attribute("rtcp-mux"), "{sdp}");
        let ports: Vec<u16> = sdp.media[0]
            .typed_attributes()
            .filter_map(|t| match t {
                TypedAttribute::Candidate(c) => Some(c.port),
                _ => None,
            })
            .collect();
        assert!(!ports.is_empty(), "no candidate in\n{sdp}");
        assert!(ports.iter().all(|p| in_range(*p, r)), "{sdp}");
    }

    async fn assert_gone(relay: &RtpEngine, r: &Rtpengine, call_id: &str) {
        assert!(relay.list(r.ng_addr(), None).await.unwrap().is_empty());
        match relay.query(QueryRequest::call(call_id)).await {
            Err(Error::Rejected { .. }) => {}
            other => panic!("the call is still there: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_browser_calls_a_plain_rtp_pbx_through_a_real_rtpengine() {
        let Some(r) = Rtpengine::start("engine-b2p") else {
            return;
        };
        let relay = relay(&r).await;
        let mut h = harness(MediaMode::Bridge);
        let call = "real-b2p-siplink";
        let (tx, out) = browser_dials(&mut h, call, true);
        let out = run_media(&mut h, &relay, out).await;
        let sent = sends(&out).remove(0);
        assert_plain(&sdp_of(&sent.request), &r);
        // The SIPp-style PBX answers PCMU.
        let ok = with_sdp(
            pbx_reply(&sent.request, 200, PBX_TAG, ""),
            &sdp_vectors::sipp_pcmu_offer(6000),
        );
        h.respond(sent.branch, ok);
        let out = h.outputs();
        let out = run_media(&mut h, &relay, out).await;
        let (rtx, ok) = responses(&out).remove(0);
        assert_eq!((rtx, ok.status()), (tx, Some(200)));
        assert_browser(&sdp_of(&ok), &r);
        // rtpengine holds the call with both legs.
        let stats = relay.query(QueryRequest::call(call)).await.unwrap();
        for t in [PHONE_TAG, PBX_TAG] {
            assert!(stats.tags.iter().any(|x| x == t), "{:?}", stats.tags);
        }
        assert_eq!(relay.list(r.ng_addr(), None).await.unwrap(), [call]);
        // The browser hangs up: the engine's delete leaves nothing behind.
        h.request(in_dialog("BYE", &ok, true, 6136), wss_phone());
        let out = h.outputs();
        run_media(&mut h, &relay, out).await;
        assert_gone(&relay, &r, call).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plain_rtp_pbx_calls_a_browser_through_a_real_rtpengine() {
        let Some(r) = Rtpengine::start("engine-p2b") else {
            return;
        };
        let relay = relay(&r).await;
        let mut h = harness(MediaMode::Bridge);
        let call = "real-p2b-siplink";
        let out = pbx_dials(
            &mut h,
            call,
            &sdp_vectors::sipp_pcmu_offer(6002),
            vec![ws_target()],
        );
        let out = run_media(&mut h, &relay, out).await;
        let sent = sends(&out).remove(0);
        let to_browser = sdp_of(&sent.request);
        assert_browser(&to_browser, &r);
        // The browser answers with its SAVPF SDP (from rtpengine's offer).
        let ok = with_sdp(
            pbx_reply(&sent.request, 200, "browser-tag", ""),
            &sdp_vectors::chrome_offer(40010),
        );
        h.respond(sent.branch, ok);
        let out = h.outputs();
        let out = run_media(&mut h, &relay, out).await;
        let (_, ok) = responses(&out).remove(0);
        assert_eq!(ok.status(), Some(200));
        assert_plain(&sdp_of(&ok), &r);
        // The PBX's flow... the browser's WebSocket closes: BYE to the PBX,
        // and the relay's call is deleted.
        h.engine
            .handle_flow_closed(FlowId::from_raw(WS_FLOW), h.now);
        let out = h.outputs();
        assert_eq!(methods(&sends(&out)), vec!["BYE"]);
        run_media(&mut h, &relay, out).await;
        assert_gone(&relay, &r, call).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pbx_call_forked_to_a_browser_and_a_desk_phone_through_a_real_rtpengine() {
        let Some(r) = Rtpengine::start("engine-fork") else {
            return;
        };
        let relay = relay(&r).await;
        let mut h = harness(MediaMode::Bridge);
        let call = "real-fork-siplink";
        let desk = Target {
            request_uri: Some("sip:1001@192.0.2.50:5060".to_owned()),
            route: Vec::new(),
            hop: addr("192.0.2.50", 5060),
        };
        let out = pbx_dials(
            &mut h,
            call,
            &sdp_vectors::sipp_pcmu_offer(6008),
            vec![ws_target(), desk],
        );
        let out = run_media(&mut h, &relay, out).await;
        let sent = sends(&out);
        assert_eq!(sent.len(), 2);
        // Each branch gets its own leg: WebRTC for the browser, plain RTP
        // (addresses anchored) for the desk phone.
        let to_browser = sdp_of(&sent[0].request);
        let to_desk = sdp_of(&sent[1].request);
        assert_browser(&to_browser, &r);
        assert_plain(&to_desk, &r);
        assert_ne!(to_browser.media[0].desc.port, to_desk.media[0].desc.port);
        // The desk phone rings, the browser answers.
        h.respond(sent[1].branch, pbx_reply(&sent[1].request, 180, "desk", ""));
        h.outputs();
        let ok = with_sdp(
            pbx_reply(&sent[0].request, 200, "browser-tag", ""),
            &sdp_vectors::chrome_offer(40060),
        );
        h.respond(sent[0].branch, ok);
        let out = h.outputs();
        let out = run_media(&mut h, &relay, out).await;
        let (_, ok) = responses(&out)
            .into_iter()
            .find(|(_, r)| r.status() == Some(200))
            .expect("the 200 to the PBX");
        assert_plain(&sdp_of(&ok), &r);
        let cancel = sends(&out)
            .into_iter()
            .find(|s| s.request.method() == Some(&Method::Cancel));
        let cancel = cancel.expect("the desk phone is cancelled");
        h.respond(cancel.branch, pbx_reply(&cancel.request, 200, "desk", ""));
        h.respond(sent[1].branch, pbx_reply(&sent[1].request, 487, "desk", ""));
        let out = h.outputs();
        assert!(asks(&out).is_empty(), "the answered call keeps its media");
        let stats = relay.query(QueryRequest::call(call)).await.unwrap();
        for t in ["pbx-tag-1", "browser-tag"] {
            assert!(stats.tags.iter().any(|x| x == t), "{:?}", stats.tags);
        }
        // The browser's WebSocket closes: BYE to the PBX, nothing left.
        h.engine
            .handle_flow_closed(FlowId::from_raw(WS_FLOW), h.now);
        let out = h.outputs();
        run_media(&mut h, &relay, out).await;
        assert_gone(&relay, &r, call).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hold_and_resume_through_a_real_rtpengine() {
        let Some(r) = Rtpengine::start("engine-hold") else {
            return;
        };
        let relay = relay(&r).await;
        let mut h = harness(MediaMode::Bridge);
        let call = "real-hold-siplink";
        let (_, out) = browser_dials(&mut h, call, true);
        let out = run_media(&mut h, &relay, out).await;
        let sent = sends(&out).remove(0);
        let ok = with_sdp(
            pbx_reply(&sent.request, 200, PBX_TAG, ""),
            &sdp_vectors::sipp_pcmu_offer(6010),
        );
        h.respond(sent.branch, ok);
        let out = h.outputs();
        let out = run_media(&mut h, &relay, out).await;
        let (_, ok) = responses(&out).remove(0);
        // The PBX holds (sendonly), then resumes (sendrecv).
        for (cseq, direction, back) in [(2, "sendonly", "recvonly"), (3, "sendrecv", "sendrecv")] {
            let sdp = sdp_vectors::sipp_pcmu_offer(6010).replace(
                "a=rtpmap:0 PCMU/8000\r\n",
                &format!("a=rtpmap:0 PCMU/8000\r\na={direction}\r\n"),
            );
            let re = with_sdp(in_dialog("INVITE", &ok, false, cseq), &sdp);
            h.request(re, udp_from(&format!("{PBX}:5060")));
            let out = h.outputs();
            let out = run_media(&mut h, &relay, out).await;
            let s = sends(&out).remove(0);
            let to_browser = sdp_of(&s.request);
            assert_browser(&to_browser, &r);
            assert!(to_browser.media[0].has_attribute(direction), "{to_browser}");
            let answer =
                sdp_vectors::chrome_offer(40070).replace("a=sendrecv", &format!("a={back}"));
            h.respond(
                s.branch,
                with_sdp(pbx_reply(&s.request, 200, PHONE_TAG, ""), &answer),
            );
            let out = h.outputs();
            let out = run_media(&mut h, &relay, out).await;
            let (_, ok2) = responses(&out).remove(0);
            let to_pbx = sdp_of(&ok2);
            assert_plain(&to_pbx, &r);
            assert!(to_pbx.media[0].has_attribute(back), "{to_pbx}");
        }
        h.request(in_dialog("BYE", &ok, true, 6140), wss_phone());
        let out = h.outputs();
        run_media(&mut h, &relay, out).await;
        assert_gone(&relay, &r, call).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_offer_and_its_ack_answer_through_a_real_rtpengine() {
        let Some(r) = Rtpengine::start("engine-late") else {
            return;
        };
        let relay = relay(&r).await;
        let mut h = harness(MediaMode::Bridge);
        let call = "real-late-siplink";
        let (_, out) = browser_dials(&mut h, call, false);
        let sent = sends(&out).remove(0);
        assert!(sent.request.body().is_empty());
        // The PBX offers PCMU in its 200; the browser gets WebRTC.
        let ok = with_sdp(
            pbx_reply(&sent.request, 200, PBX_TAG, ""),
            &sdp_vectors::sipp_pcmu_offer(6012),
        );
        h.respond(sent.branch, ok);
        let out = h.outputs();
        let out = run_media(&mut h, &relay, out).await;
        let (_, ok) = responses(&out).remove(0);
        assert_browser(&sdp_of(&ok), &r);
        // The browser answers in the ACK; the PBX gets plain RTP.
        let ack = with_sdp(
            in_dialog("ACK", &ok, true, 6135),
            &sdp_vectors::chrome_offer(40080).replace("a=setup:actpass", "a=setup:active"),
        );
        h.request(ack, wss_phone());
        let out = h.outputs();
        let out = run_media(&mut h, &relay, out).await;
        let fwd = forwards(&out);
        assert_eq!(fwd.len(), 1);
        assert_plain(&sdp_of(&fwd[0].0), &r);
        let stats = relay.query(QueryRequest::call(call)).await.unwrap();
        for t in [PHONE_TAG, PBX_TAG] {
            assert!(stats.tags.iter().any(|x| x == t), "{:?}", stats.tags);
        }
        h.request(in_dialog("BYE", &ok, true, 6136), wss_phone());
        let out = h.outputs();
        run_media(&mut h, &relay, out).await;
        assert_gone(&relay, &r, call).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_errors_become_the_status_the_call_fails_with() {
        let Some(r) = Rtpengine::start("engine-errors") else {
            return;
        };
        let relay = relay(&r).await;
        // An answer for a call rtpengine does not know: refused, 488.
        let answer = siplink_media::SdpRequest::answer(
            "no-such-call",
            "a",
            "b",
            sdp_vectors::sipp_pcmu_offer(6004),
        );
        match media_io::run(&relay, Request::Answer(answer)).await {
            MediaResult::Failed(f) => {
                assert_eq!(f.status, 488);
                assert!(
                    f.reason.starts_with("Media Relay Refused: "),
                    "{}",
                    f.reason
                );
            }
            other => panic!("{other:?}"),
        }
        // A delete of a call it does not know: nothing left, so done.
        let delete = siplink_media::DeleteRequest::call("no-such-call");
        assert_eq!(
            media_io::run(&relay, Request::Delete(delete)).await,
            MediaResult::Deleted
        );
        // Nobody listening: 503 once the retransmissions are spent.
        let mut c = ClientConfig::new(["127.0.0.1:9".parse().unwrap()]);
        c.retransmit_interval = Duration::from_millis(50);
        c.retries = 1;
        let dead = RtpEngine::start(c, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let offer =
            siplink_media::SdpRequest::offer("c-dead", "a", sdp_vectors::sipp_pcmu_offer(6006));
        match media_io::run(&dead, Request::Offer(offer)).await {
            MediaResult::Failed(f) => {
                assert_eq!(f.status, 503);
                assert!(
                    f.reason.starts_with("Media Relay Unavailable: "),
                    "{}",
                    f.reason
                );
            }
            other => panic!("{other:?}"),
        }
        drop(r);
    }
}

// ---------------------------------------------------------------------------
// Random call histories with media on: whatever the order of responses,
// relay answers and failures, CANCELs, closed flows, BYEs, media timeouts and
// time, the relay holds no call at the end and the engine holds nothing.
// ---------------------------------------------------------------------------

mod model {
    use super::*;
    use proptest::prelude::*;
    use siplink_message::Transport;
    use siplink_proxy::engine::{BranchId, RouteGroup};
    use siplink_transport::Origin;
    use std::collections::{HashMap, HashSet};

    #[derive(Debug, Clone)]
    enum Step {
        Call {
            groups: Vec<u8>,
            ws: bool,
            sdp: bool,
            from_pbx: bool,
        },
        Respond {
            pick: usize,
            status: u16,
            sdp: bool,
        },
        Fail {
            pick: usize,
            timeout: bool,
        },
        Relay {
            pick: usize,
            ok: bool,
        },
        Cancel {
            pick: usize,
        },
        CloseFlow {
            pick: usize,
        },
        Bye {
            pick: usize,
        },
        ReInvite {
            pick: usize,
        },
        AckWithSdp {
            pick: usize,
        },
        MediaTimeout {
            pick: usize,
        },
        Advance {
            secs: u16,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => (prop::collection::vec(1u8..3, 1..3), any::<bool>(), any::<bool>(), any::<bool>())
                .prop_map(|(groups, ws, sdp, from_pbx)| Step::Call { groups, ws, sdp, from_pbx }),
            5 => (any::<usize>(), prop::sample::select(vec![180u16, 183, 200, 486, 487, 503]), any::<bool>())
                .prop_map(|(pick, status, sdp)| Step::Respond { pick, status, sdp }),
            5 => (any::<usize>(), prop::bool::weighted(0.8))
                .prop_map(|(pick, ok)| Step::Relay { pick, ok }),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, timeout)| Step::Fail { pick, timeout }),
            1 => any::<usize>().prop_map(|pick| Step::Cancel { pick }),
            1 => any::<usize>().prop_map(|pick| Step::CloseFlow { pick }),
            1 => any::<usize>().prop_map(|pick| Step::Bye { pick }),
            1 => any::<usize>().prop_map(|pick| Step::ReInvite { pick }),
            1 => any::<usize>().prop_map(|pick| Step::AckWithSdp { pick }),
            1 => any::<usize>().prop_map(|pick| Step::MediaTimeout { pick }),
            1 => (0u16..400).prop_map(|secs| Step::Advance { secs }),
        ]
    }

    struct Call {
        tx: ServerTx,
        invite: Message,
        origin: Origin,
        /// The caller's From (with its tag).
        from: String,
        /// Flows of the call (the caller's, a callee's).
        flows: Vec<FlowId>,
        answered: Option<Message>,
    }

    #[derive(Default)]
    struct World {
        open: Vec<(BranchId, Message)>,
        asked: Vec<(MediaToken, Request)>,
        /// The calls the relay holds.
        relay: HashSet<String>,
        calls: Vec<Call>,
        got: HashMap<ServerTx, Vec<u16>>,
    }

    impl World {
        fn collect(&mut self, h: &mut Harness) {
            for o in h.outputs() {
                match o {
                    Output::Send {
                        branch, request, ..
                    } => self.open.push((branch, request)),
                    Output::Media { token, request } => self.asked.push((token, request)),
                    Output::Respond { tx, response } => {
                        let status = response.status().unwrap();
                        self.got.entry(tx).or_default().push(status);
                        if (200..300).contains(&status)
                            && let Some(c) = self.calls.iter_mut().find(|c| c.tx == tx)
                            && c.answered.is_none()
                        {
                            c.answered = Some(response);
                        }
                    }
                    _ => {}
                }
            }
        }

        fn respond(&mut self, h: &mut Harness, i: usize, status: u16, sdp: bool) {
            let (branch, request) = self.open[i].clone();
            let invite = request.method() == Some(&Method::Invite);
            let status = if invite { status } else { 200 };
            let mut r = pbx_reply(&request, status, &format!("t{}", branch.get()), "");
            if invite && sdp && status < 300 {
                r = with_sdp(r, &sdp_vectors::sipp_pcmu_offer(6000));
            }
            h.respond(branch, r);
            if status >= 200 {
                self.open.remove(i);
            }
            self.collect(h);
        }

        fn relay(&mut self, h: &mut Harness, i: usize, ok: bool) {
            let (token, request) = self.asked.remove(i);
            let call_id = request.call_id().unwrap_or_default().to_owned();
            let result = match command(&request) {
                "delete" => {
                    self.relay.remove(&call_id);
                    MediaResult::Deleted
                }
                _ if ok => {
                    self.relay.insert(call_id);
                    MediaResult::Sdp(relay_sdp("relay"))
                }
                _ => MediaResult::Failed(MediaFailure {
                    status: 503,
                    reason: "Media Relay Timeout".into(),
                }),
            };
            h.engine.handle_media(token, result, h.now);
            self.collect(h);
        }
    }

    fn c_cseq(c: &Call) -> u64 {
        u64::from(c.invite.cseq().map(|c| c.seq).unwrap_or(1))
    }

    fn run(steps: Vec<Step>) {
        let mut v = view();
        for (name, mode) in [
            ("c0", MediaMode::Bridge),
            ("c1", MediaMode::Relay),
            ("office-pbx", MediaMode::Bridge),
        ] {
            v.media.push((
                name.to_owned(),
                ConnectionMedia {
                    mode,
                    transcode: false,
                },
            ));
        }
        let mut h = Harness::new();
        h.engine = Engine::new(v, EngineConfig::default());
        let mut w = World::default();
        let mut next = 0u64;
        for s in steps {
            match s {
                Step::Call {
                    groups,
                    ws,
                    sdp,
                    from_pbx,
                } => {
                    next += 1;
                    let call_id = format!("mm{next}");
                    let mut flows = Vec::new();
                    let (mut invite, origin, from) = if from_pbx {
                        (
                            pbx_invite(&call_id, &sdp_vectors::sipp_pcmu_offer(6000)),
                            udp_from(&format!("{PBX}:5060")),
                            format!("<sip:4001@{PBX}>;tag=pbx-tag-1"),
                        )
                    } else {
                        let origin = if ws {
                            flows.push(FlowId::from_raw(1000 + next));
                            Origin {
                                flow: Some(FlowId::from_raw(1000 + next)),
                                ..wss_phone()
                            }
                        } else {
                            udp_from("192.0.2.10:5060")
                        };
                        (
                            baresip_invite("sip:4001@proxy.example.com", &call_id, ""),
                            origin,
                            "\"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1"
                                .to_owned(),
                        )
                    };
                    if !sdp {
                        invite.set_body(None, bytes::Bytes::new());
                        invite.remove_header(HeaderName::ContentType);
                    }
                    let tx = h.request(invite.clone(), origin);
                    let token = lookups(&h.outputs())[0].0;
                    let groups: Vec<RouteGroup> = if from_pbx {
                        // 1001's contacts: a browser (its own flow) when
                        // `ws`, desk phones.
                        let targets = (0..groups[0])
                            .map(|k| {
                                if ws && k == 0 {
                                    let flow = FlowId::from_raw(2000 + next);
                                    flows.push(flow);
                                    Target {
                                        request_uri: Some(
                                            "sip:1001@b.invalid;transport=ws".to_owned(),
                                        ),
                                        route: Vec::new(),
                                        hop: NextHop::Flow {
                                            flow,
                                            protocol: Transport::Wss,
                                        },
                                    }
                                } else {
                                    target(&format!("192.0.2.{}", 150 + k as usize), 5060)
                                }
                            })
                            .collect();
                        vec![RouteGroup {
                            connection: None,
                            targets,
                        }]
                    } else {
                        groups
                            .iter()
                            .enumerate()
                            .map(|(g, n)| {
                                group(
                                    &format!("c{g}"),
                                    (0..*n)
                                        .map(|k| {
                                            target(
                                                &format!("192.0.2.{}", 100 + g * 10 + k as usize),
                                                5060,
                                            )
                                        })
                                        .collect(),
                                )
                            })
                            .collect()
                    };
                    h.lookup(token, LookupResult::Routes(groups));
                    w.calls.push(Call {
                        tx,
                        invite,
                        origin,
                        from,
                        flows,
                        answered: None,
                    });
                    w.collect(&mut h);
                }
                Step::Respond { pick, status, sdp } if !w.open.is_empty() => {
                    let i = pick % w.open.len();
                    w.respond(&mut h, i, status, sdp);
                }
                Step::Relay { pick, ok } if !w.asked.is_empty() => {
                    let i = pick % w.asked.len();
                    w.relay(&mut h, i, ok);
                }
                Step::Fail { pick, timeout } if !w.open.is_empty() => {
                    let (branch, _) = w.open.remove(pick % w.open.len());
                    h.engine.handle_branch_failure(branch, timeout, h.now);
                    w.collect(&mut h);
                }
                Step::Cancel { pick } if !w.calls.is_empty() => {
                    let c = &w.calls[pick % w.calls.len()];
                    let via = header(&c.invite, HeaderName::Via)[0].clone();
                    let cancel = msg(&format!(
                        "CANCEL sip:4001@proxy.example.com SIP/2.0\nVia: {via}\nMax-Forwards: 70\n\
                         To: <sip:4001@proxy.example.com>\nFrom: {}\n\
                         Call-ID: {}\nCSeq: {} CANCEL\nContent-Length: 0\n\n",
                        c.from,
                        c.invite.call_id().unwrap(),
                        c.invite.cseq().unwrap().seq,
                    ));
                    let origin = c.origin;
                    h.request(cancel, origin);
                    w.collect(&mut h);
                }
                Step::CloseFlow { pick } if !w.calls.is_empty() => {
                    let c = &w.calls[pick % w.calls.len()];
                    if let Some(flow) = c.flows.get(pick / 7 % 2).or(c.flows.first()) {
                        h.engine.handle_flow_closed(*flow, h.now);
                        w.collect(&mut h);
                    }
                }
                Step::Bye { pick } | Step::ReInvite { pick } | Step::AckWithSdp { pick }
                    if !w.calls.is_empty() =>
                {
                    let (method, cseq) = match s {
                        Step::Bye { .. } => ("BYE", 50_000 + next),
                        Step::ReInvite { .. } => ("INVITE", 50_000 + next),
                        _ => ("ACK", c_cseq(&w.calls[pick % w.calls.len()])),
                    };
                    let c = &w.calls[pick % w.calls.len()];
                    let Some(ok) = &c.answered else {
                        continue;
                    };
                    let rr = header(ok, HeaderName::RecordRoute);
                    let to_tag = ok.to_tag().unwrap().unwrap().to_owned();
                    let routes: String = rr.iter().rev().map(|r| format!("Route: {r}\n")).collect();
                    let proto = if c.origin.protocol == Transport::Udp {
                        "UDP"
                    } else {
                        "WSS"
                    };
                    let mut request = msg(&format!(
                        "{method} sip:{PBX}:5060 SIP/2.0\nVia: SIP/2.0/{proto} 192.0.2.99:5060;branch=z9hG4bKin{next}\n\
                         Max-Forwards: 70\n{routes}From: {}\n\
                         To: <sip:4001@proxy.example.com>;tag={to_tag}\nCall-ID: {}\nCSeq: {cseq} {method}\n\
                         Contact: <sip:1001-0x55d0c3a8@192.0.2.10:5060>\nContent-Length: 0\n\n",
                        c.from,
                        ok.call_id().unwrap()
                    ));
                    if method != "BYE" {
                        request = with_sdp(request, &sdp_vectors::sipp_pcmu_offer(6100));
                    }
                    next += 1;
                    let origin = c.origin;
                    h.request(request, origin);
                    w.collect(&mut h);
                }
                Step::MediaTimeout { pick } if !w.calls.is_empty() => {
                    let call_id = w.calls[pick % w.calls.len()]
                        .invite
                        .call_id()
                        .unwrap()
                        .to_owned();
                    h.engine.handle_media_timeout(&call_id, h.now);
                    w.collect(&mut h);
                }
                Step::Advance { secs } => {
                    h.advance(Duration::from_secs(u64::from(secs)));
                    w.collect(&mut h);
                }
                _ => {}
            }
        }
        // The relay answers everything, every transaction ends, time runs on.
        for _ in 0..6 {
            for _ in 0..256 {
                if w.asked.is_empty() && w.open.is_empty() {
                    break;
                }
                if !w.asked.is_empty() {
                    w.relay(&mut h, 0, true);
                } else {
                    w.respond(&mut h, 0, 487, false);
                }
            }
            h.advance(Duration::from_secs(5 * 3600));
            w.collect(&mut h);
        }
        assert!(w.open.is_empty() && w.asked.is_empty());
        assert!(w.relay.is_empty(), "calls left on the relay: {:?}", w.relay);
        assert_eq!(h.engine.media_waiting(), 0);
        assert!(
            h.engine.is_idle(),
            "the engine holds {:?}",
            h.engine.sizes()
        );
        for c in &w.calls {
            let got = w.got.get(&c.tx).cloned().unwrap_or_default();
            let Some(f) = got.iter().position(|s| *s >= 200) else {
                assert!(c.origin.flow.is_some(), "no final response: {got:?}");
                continue;
            };
            let after = &got[f..];
            assert!(
                after.iter().all(|s| *s >= 200),
                "provisional after a final: {got:?}"
            );
            let failures = after.iter().filter(|s| **s >= 300).count();
            assert!(failures <= 1, "two failure answers: {got:?}");
            if got[f] < 300 {
                assert_eq!(failures, 0, "a failure after a 2xx: {got:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn random_histories_leave_no_call_on_the_relay(steps in prop::collection::vec(step(), 1..60)) {
            run(steps);
        }
    }
}
