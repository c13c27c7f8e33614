//! Answered calls: the dialog record, in-dialog routing through both
//! entries of a double Record-Route, 2xx retransmissions, and the ends of a
//! call the proxy makes itself (flow closed, RFC 4028 session expiry,
//! maximum duration).

mod engine_support;

use std::time::Duration;

use engine_support::*;
use siplink_message::{HeaderName, Message, Transport};
use siplink_proxy::engine::{DialogKey, EndReason, EngineConfig, Event, NextHop, Output, ServerTx};
use siplink_transport::FlowId;

fn ws_hop() -> NextHop {
    NextHop::Flow {
        flow: FlowId::from_raw(WS_FLOW),
        protocol: Transport::Wss,
    }
}

/// The JsSIP phone calls 4001 at the PBX; answered. Returns the INVITE's
/// server transaction, the INVITE as the PBX got it and the 200 it sent.
fn browser_call(h: &mut Harness, call_id: &str) -> (ServerTx, Sent, Message) {
    let (tx, sent) = h.call(
        jssip_invite("sip:4001@proxy.example.com", call_id),
        wss_phone(),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    let b = sent[0].clone();
    let ok = pbx_reply(&b.request, 200, "as5f1c", "");
    h.respond(b.branch, ok.clone());
    let out = h.outputs();
    assert_eq!(statuses(&out), vec![200]);
    (tx, b, ok)
}

/// baresip over UDP calls 4001 with `extra` headers; the PBX answers with
/// `answer` headers.
fn udp_call(
    h: &mut Harness,
    call_id: &str,
    extra: &str,
    answer: &str,
) -> (Sent, Message, Vec<Output>) {
    let (_, sent) = h.call(
        baresip_invite("sip:4001@proxy.example.com", call_id, extra),
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    let b = sent[0].clone();
    let ok = pbx_reply(&b.request, 200, "as77", answer);
    h.respond(b.branch, ok.clone());
    let out = h.outputs();
    (b, ok, out)
}

fn key(call_id: &str, caller: &str, callee: &str) -> DialogKey {
    DialogKey {
        call_id: call_id.into(),
        caller_tag: caller.into(),
        callee_tag: callee.into(),
    }
}

/// A request inside the browser call, from the phone (`from_phone`) or the
/// PBX, with the Route set its side computed from the 2xx's Record-Route.
fn in_dialog(method: &str, ok: &Message, from_phone: bool, cseq: u32) -> Message {
    let mut rr = header(ok, HeaderName::RecordRoute);
    let call_id = ok.call_id().unwrap();
    let (ruri, via, from, to, routes) = if from_phone {
        rr.reverse();
        (
            format!("sip:{PBX}:5060"),
            "SIP/2.0/WSS k3nsd8s1p2vd.invalid;branch=z9hG4bKin1".to_owned(),
            "\"1002\" <sip:1002@proxy.example.com>;tag=q2mcbqs8ae".to_owned(),
            "<sip:4001@proxy.example.com>;tag=as5f1c".to_owned(),
            rr,
        )
    } else {
        (
            "sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob".to_owned(),
            format!("SIP/2.0/UDP {PBX}:5060;rport;branch=z9hG4bKPjin2"),
            "<sip:4001@proxy.example.com>;tag=as5f1c".to_owned(),
            "\"1002\" <sip:1002@proxy.example.com>;tag=q2mcbqs8ae".to_owned(),
            rr,
        )
    };
    let routes: String = routes.iter().map(|r| format!("Route: {r}\n")).collect();
    msg(&format!(
        "{method} {ruri} SIP/2.0\nVia: {via}\nMax-Forwards: 70\n{routes}From: {from}\nTo: {to}\n\
         Call-ID: {call_id}\nCSeq: {cseq} {method}\nContent-Length: 0\n\n"
    ))
}

#[test]
fn the_dialog_record_holds_both_legs() {
    let mut h = Harness::new();
    let start = h.now;
    let (_, _, ok) = browser_call(&mut h, "d-record");
    assert_eq!(
        header(&ok, HeaderName::RecordRoute).len(),
        2,
        "double Record-Route"
    );
    let d = h
        .engine
        .dialog(&key("d-record", "q2mcbqs8ae", "as5f1c"))
        .expect("recorded");
    assert_eq!(d.caller.hop, ws_hop());
    assert_eq!(
        d.caller.target,
        "sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob"
    );
    assert_eq!(d.callee.hop, addr(PBX, 5060));
    assert_eq!(d.callee.target, format!("sip:{PBX}:5060"));
    assert!(d.caller.route.is_empty() && d.callee.route.is_empty());
    assert_eq!(d.connection.as_deref(), Some("office-pbx"));
    assert_eq!(d.answered_at, start);
    assert_eq!(d.max_end, start + EngineConfig::default().max_call_duration);
    assert!(d.media.is_none());
    // Between answer and end only the record remains.
    let (calls, branches, dialogs, _) = h.engine.sizes();
    assert_eq!((calls, branches, dialogs), (0, 0, 1));
}

#[test]
fn in_dialog_requests_pass_both_entries_of_a_double_record_route() {
    let mut h = Harness::new();
    let (_, _, ok) = browser_call(&mut h, "d-double");
    // Phone → PBX: both of our Route entries consumed, to the PBX.
    let tx = h.request(in_dialog("INFO", &ok, true, 6136), wss_phone());
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 1);
    assert!(
        header(&s[0].request, HeaderName::Route).is_empty(),
        "both entries consumed"
    );
    assert_eq!(ruri(&s[0].request), format!("sip:{PBX}:5060"));
    assert_eq!(s[0].hop, addr(PBX, 5060));
    assert!(
        header(&s[0].request, HeaderName::RecordRoute).is_empty(),
        "no Record-Route in a dialog"
    );
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "as5f1c", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    // PBX → phone: over the phone's WebSocket flow.
    h.request(
        in_dialog("INVITE", &ok, false, 102),
        udp_from("198.51.100.10:5060"),
    );
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].hop, ws_hop());
    assert!(header(&s[0].request, HeaderName::Route).is_empty());
    assert_eq!(
        ruri(&s[0].request),
        "sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob"
    );
}

#[test]
fn without_a_record_the_flow_token_finds_the_phone() {
    let mut h = Harness::with(EngineConfig {
        max_dialogs: 0,
        ..EngineConfig::default()
    });
    let (_, _, ok) = browser_call(&mut h, "d-token");
    assert_eq!(h.engine.dialogs().count(), 0);
    h.request(
        in_dialog("BYE", &ok, false, 103),
        udp_from("198.51.100.10:5060"),
    );
    let s = sends(&h.outputs());
    assert_eq!(
        s[0].hop,
        ws_hop(),
        "from the token in the last consumed Route"
    );
    h.request(in_dialog("BYE", &ok, true, 6137), wss_phone());
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, addr(PBX, 5060), "by the Request-URI");
}

#[test]
fn the_ack_of_a_2xx_goes_statelessly_with_a_stable_branch() {
    let mut h = Harness::new();
    let (_, _, ok) = browser_call(&mut h, "d-ack");
    h.request(in_dialog("ACK", &ok, true, 6135), wss_phone());
    let f1 = forwards(&h.outputs());
    h.request(in_dialog("ACK", &ok, true, 6135), wss_phone());
    let f2 = forwards(&h.outputs());
    assert_eq!(f1.len(), 1);
    assert_eq!(f1[0].1, addr(PBX, 5060));
    assert_eq!(f1[0].0.via().unwrap().len(), 2);
    assert_eq!(
        f1[0].0.top_via().unwrap().branch(),
        f2[0].0.top_via().unwrap().branch(),
        "a retransmitted ACK is the same ACK"
    );
}

#[test]
fn a_2xx_retransmission_after_the_call_setup_is_forwarded_statelessly() {
    let mut h = Harness::new();
    let (_, b, ok) = browser_call(&mut h, "d-retx");
    // The INVITE client transaction (RFC 6026 Accepted) passes it up; the
    // fork is gone, the record tells where the caller is.
    h.respond(b.branch, ok.clone());
    let f = forwards(&h.outputs());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].1, ws_hop());
    assert_eq!(f[0].0.status(), Some(200));
    assert_eq!(f[0].0.via().unwrap().len(), 1, "our Via removed");
    // One for no dialog: dropped.
    let mut other = ok.clone();
    other.set_header(HeaderName::CallId, "unknown-call");
    h.engine.handle_stray_response(other, h.now);
    assert!(h.outputs().is_empty());
}

#[test]
fn a_bye_through_the_proxy_ends_the_record() {
    let mut h = Harness::new();
    let (_, _, ok) = browser_call(&mut h, "d-bye");
    let tx = h.request(in_dialog("BYE", &ok, true, 6136), wss_phone());
    let out = h.outputs();
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallEnded {
            reason: EndReason::ByeFromCaller,
            ..
        }]
    ));
    assert_eq!(h.engine.dialogs().count(), 0);
    let s = sends(&out);
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "as5f1c", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    assert_eq!(h.engine.poll_timeout(), None, "no timer left");
}

#[test]
fn a_phones_credentials_for_our_realm_stay_here_inside_a_dialog_too() {
    // JsSIP repeats its last Proxy-Authorization on in-dialog requests.
    let mut h = Harness::new();
    let (_, _, ok) = browser_call(&mut h, "d-creds");
    let mut bye = in_dialog("BYE", &ok, true, 6136);
    bye.append_header(
        HeaderName::ProxyAuthorization,
        "Digest username=\"1002\", realm=\"proxy.example.com\", nonce=\"n1\", uri=\"sip:4001@proxy.example.com\", response=\"0123456789abcdef0123456789abcdef\"",
    );
    bye.append_header(
        HeaderName::ProxyAuthorization,
        "Digest username=\"alice\", realm=\"upstream.example\", nonce=\"u1\", uri=\"sip:4001@proxy.example.com\", response=\"fedcba9876543210fedcba9876543210\"",
    );
    let bye = bye.reparse().unwrap();
    h.request(bye, wss_phone());
    let s = sends(&h.outputs());
    let realms: Vec<_> = s[0]
        .request
        .proxy_authorization()
        .unwrap()
        .iter()
        .map(|c| c.realm().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(realms, ["upstream.example"], "{}", s[0].request);
}

#[test]
fn the_phone_flow_closing_mid_call_byes_the_pbx() {
    let mut h = Harness::new();
    let (_, _, _) = browser_call(&mut h, "d-flow");
    h.engine
        .handle_flow_closed(FlowId::from_raw(WS_FLOW), h.now);
    let out = h.outputs();
    let s = sends(&out);
    assert_eq!(
        methods(&s),
        vec!["BYE"],
        "one BYE: the phone's flow is gone"
    );
    let bye = &s[0].request;
    assert_eq!(s[0].hop, addr(PBX, 5060));
    assert_eq!(ruri(bye), format!("sip:{PBX}:5060"));
    assert_eq!(bye.from_tag().unwrap(), Some("q2mcbqs8ae"));
    assert_eq!(bye.to_tag().unwrap(), Some("as5f1c"));
    assert_eq!(bye.call_id().unwrap(), "d-flow");
    assert_eq!(bye.cseq().unwrap().seq, 6136, "above the phone's INVITE");
    assert_eq!(header(bye, HeaderName::Route), Vec::<String>::new());
    assert_eq!(
        bye.header_values_named("Reason").next(),
        Some(&b"SIP;text=\"Connection Closed\""[..])
    );
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallEnded { reason: EndReason::FlowClosed(f), .. }] if f.get() == WS_FLOW
    ));
    assert_eq!(h.engine.dialogs().count(), 0);
    // The PBX's 200 to our BYE is absorbed.
    h.respond(s[0].branch, pbx_reply(bye, 200, "as5f1c", ""));
    assert!(h.outputs().is_empty());
    assert_eq!(h.engine.sizes(), (0, 0, 0, 0));
}

#[test]
fn the_phone_flow_closing_while_ringing_cancels_and_hangs_up_a_late_200() {
    let mut h = Harness::new();
    let (_, sent) = h.call(
        jssip_invite("sip:4001@proxy.example.com", "d-gone"),
        wss_phone(),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    let b = &sent[0];
    h.respond(b.branch, pbx_reply(&b.request, 180, "as9", ""));
    h.outputs();
    h.engine
        .handle_flow_closed(FlowId::from_raw(WS_FLOW), h.now);
    assert_eq!(methods(&sends(&h.outputs())), vec!["CANCEL"]);
    h.respond(b.branch, pbx_reply(&b.request, 200, "as9", ""));
    let out = h.outputs();
    assert!(responses(&out).is_empty());
    let f = forwards(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0.method().unwrap().as_str(), "ACK");
    assert_eq!(f[0].0.cseq().unwrap().seq, 6135);
    assert_eq!(methods(&sends(&out)), vec!["BYE"]);
    assert_eq!(h.engine.dialogs().count(), 0);
}

#[test]
fn session_timer_expiry_byes_both_legs() {
    let mut h = Harness::new();
    let (b, ok, out) = udp_call(
        &mut h,
        "d-se",
        "Session-Expires: 1800\nMin-SE: 90\n",
        "Session-Expires: 1800;refresher=uac\nRequire: timer\n",
    );
    assert_eq!(statuses(&out), vec![200]);
    let k = key("d-se", "8d7e4ca2c7f2e1b1", "as77");
    let d = h.engine.dialog(&k).unwrap();
    assert_eq!(
        d.session.as_ref().unwrap().interval,
        Duration::from_secs(1800)
    );
    // baresip refreshes at half the interval with a re-INVITE.
    h.advance(Duration::from_secs(900));
    let rr = header(&ok, HeaderName::RecordRoute);
    let reinvite = msg(&format!(
        "INVITE sip:{PBX}:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKrefresh1;rport\n\
         Contact: <sip:1001-0x55d0c3a8@192.0.2.10:5060>\n\
         Max-Forwards: 70\nRoute: {}\n\
         To: <sip:4001@proxy.example.com>;tag=as77\n\
         From: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Call-ID: d-se\nCSeq: 23457 INVITE\nSession-Expires: 1800;refresher=uac\n\
         Supported: timer\nContent-Length: 0\n\n",
        rr[0]
    ));
    h.request(reinvite, udp_from("192.0.2.10:5060"));
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, addr(PBX, 5060));
    h.respond(
        s[0].branch,
        pbx_reply(
            &s[0].request,
            200,
            "as77",
            "Session-Expires: 1800;refresher=uac\n",
        ),
    );
    assert_eq!(statuses(&h.outputs()), vec![200]);
    // 1,700 s after the answer: the refresh moved the expiry.
    h.advance(Duration::from_secs(800));
    assert!(h.outputs().is_empty());
    assert!(h.engine.dialog(&k).is_some());
    // No refresh since: 1,800 s after it, both legs get a BYE.
    h.advance(Duration::from_secs(1000));
    let out = h.outputs();
    let s = sends(&out);
    assert_eq!(methods(&s), vec!["BYE", "BYE"]);
    let to_pbx = s
        .iter()
        .find(|x| x.hop == addr(PBX, 5060))
        .expect("BYE to the PBX");
    let to_phone = s
        .iter()
        .find(|x| x.hop == addr("192.0.2.10", 5060))
        .expect("BYE to the phone");
    assert_eq!(ruri(&to_pbx.request), format!("sip:{PBX}:5060"));
    assert_eq!(
        to_pbx.request.cseq().unwrap().seq,
        23458,
        "after the caller's re-INVITE"
    );
    assert_eq!(
        ruri(&to_phone.request),
        "sip:1001-0x55d0c3a8@192.0.2.10:5060"
    );
    assert_eq!(to_phone.request.from_tag().unwrap(), Some("as77"));
    assert_eq!(to_phone.request.to_tag().unwrap(), Some("8d7e4ca2c7f2e1b1"));
    assert_eq!(
        to_phone.request.header_values_named("Reason").next(),
        Some(&b"SIP;text=\"Session Timer Expired\""[..])
    );
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallEnded {
            reason: EndReason::SessionExpired,
            ..
        }]
    ));
    assert_eq!(h.engine.dialogs().count(), 0);
    let _ = b;
}

#[test]
fn a_refresh_by_the_callee_counts_too() {
    let mut h = Harness::new();
    let (_, ok, _) = udp_call(
        &mut h,
        "d-uas",
        "Session-Expires: 600\nSupported: timer\n",
        "Session-Expires: 600;refresher=uas\nRequire: timer\n",
    );
    let k = key("d-uas", "8d7e4ca2c7f2e1b1", "as77");
    h.advance(Duration::from_secs(300));
    // Asterisk refreshes with an UPDATE towards the phone.
    let rr = header(&ok, HeaderName::RecordRoute);
    let update = msg(&format!(
        "UPDATE sip:1001-0x55d0c3a8@192.0.2.10:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP {PBX}:5060;rport;branch=z9hG4bKPjupd1\n\
         From: <sip:4001@proxy.example.com>;tag=as77\n\
         To: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Contact: <sip:{PBX}:5060>\nCall-ID: d-uas\nCSeq: 31 UPDATE\n\
         Route: {}\nSession-Expires: 600;refresher=uas\nMax-Forwards: 70\n\
         User-Agent: Asterisk PBX 20.5.0\nContent-Length: 0\n\n",
        rr[0]
    ));
    h.request(update, udp_from("198.51.100.10:5060"));
    let s = sends(&h.outputs());
    assert_eq!(
        s[0].hop,
        addr("192.0.2.10", 5060),
        "the phone's source address"
    );
    let ok2 = s[0]
        .request
        .response(200)
        .header(HeaderName::SessionExpires, "600;refresher=uas")
        .build()
        .unwrap();
    h.respond(s[0].branch, ok2);
    h.outputs();
    assert_eq!(
        h.engine
            .dialog(&k)
            .unwrap()
            .session
            .as_ref()
            .unwrap()
            .expires_at,
        h.now + Duration::from_secs(600)
    );
    h.advance(Duration::from_secs(599));
    assert!(h.outputs().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(methods(&sends(&h.outputs())), vec!["BYE", "BYE"]);
}

#[test]
fn the_proxy_asks_the_caller_to_refresh_when_the_callee_has_no_timers() {
    let mut h = Harness::new();
    let (_, _, out) = udp_call(
        &mut h,
        "d-insert",
        "Session-Expires: 1200\nSupported: timer\n",
        "",
    );
    let r = responses(&out);
    assert_eq!(
        header(&r[0].1, HeaderName::SessionExpires),
        vec!["1200;refresher=uac"]
    );
    assert_eq!(header(&r[0].1, HeaderName::Require), vec!["timer"]);
    h.advance(Duration::from_secs(1200));
    assert_eq!(methods(&sends(&h.outputs())), vec!["BYE", "BYE"]);
}

#[test]
fn the_maximum_call_duration_byes_both_legs() {
    let mut h = Harness::with(EngineConfig {
        max_call_duration: Duration::from_secs(3600),
        ..EngineConfig::default()
    });
    udp_call(&mut h, "d-max", "", "");
    assert_eq!(
        h.engine.poll_timeout(),
        Some(h.now + Duration::from_secs(3600))
    );
    h.advance(Duration::from_secs(3599));
    assert!(h.outputs().is_empty());
    h.advance(Duration::from_secs(1));
    let out = h.outputs();
    assert_eq!(methods(&sends(&out)), vec!["BYE", "BYE"]);
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallEnded {
            reason: EndReason::MaxDuration,
            ..
        }]
    ));
    assert_eq!(h.engine.poll_timeout(), None);
}

#[test]
fn a_2xx_retransmission_to_a_re_invite_from_the_callee_goes_back_to_the_callee() {
    let mut h = Harness::new();
    let (_, _, ok) = browser_call(&mut h, "d-reinv");
    h.request(
        in_dialog("INVITE", &ok, false, 104),
        udp_from("198.51.100.10:5060"),
    );
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, ws_hop());
    let ok2 = s[0]
        .request
        .response(200)
        .header(
            HeaderName::Contact,
            "<sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob>",
        )
        .build()
        .unwrap();
    h.respond(s[0].branch, ok2.clone());
    assert_eq!(statuses(&h.outputs()), vec![200]);
    // The relay is over; the phone retransmits its 200.
    h.engine.handle_stray_response(ok2, h.now);
    let f = forwards(&h.outputs());
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].1,
        addr(PBX, 5060),
        "to the PBX that sent the re-INVITE"
    );
}

#[test]
fn the_pbx_flow_closing_mid_call_byes_the_phone() {
    let mut h = Harness::new();
    // An inbound-registration PBX on a TCP flow calls user 1001.
    let pbx_flow = FlowId::from_raw(42);
    let origin = siplink_transport::Origin {
        protocol: Transport::Tcp,
        peer: "198.51.100.10:41234".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
        flow: Some(pbx_flow),
    };
    let invite = msg("INVITE sip:1001@192.0.2.1:5060;transport=tcp SIP/2.0\n\
         Via: SIP/2.0/TCP 198.51.100.10:5060;rport;branch=z9hG4bKPj0c8e7a55\n\
         From: \"Reception\" <sip:200@pbx.example.org>;tag=1b7c2e4f-7a8d\n\
         To: <sip:1001@proxy.example.com>\n\
         Contact: <sip:asterisk@198.51.100.10:5060;transport=TCP>\n\
         Call-ID: 9e1d4c2a-8b3f-4f6e-a1d2-3c4b5a6f7e8d\n\
         CSeq: 17744 INVITE\n\
         Max-Forwards: 70\n\
         User-Agent: Asterisk PBX 20.5.0\n\
         Content-Length: 0\n\n");
    let tx = h.request(invite, origin);
    let token = lookups(&h.outputs())[0].0;
    h.lookup(
        token,
        siplink_proxy::engine::LookupResult::Routes(vec![siplink_proxy::engine::RouteGroup {
            connection: None,
            targets: vec![siplink_proxy::engine::Target {
                request_uri: Some("sip:1001-0x55d0c3a8@192.0.2.10:5060".into()),
                route: Vec::new(),
                hop: addr("192.0.2.10", 5060),
            }],
        }]),
    );
    let s = sends(&h.outputs());
    let rr = header(&s[0].request, HeaderName::RecordRoute);
    assert_eq!(rr.len(), 2, "TCP flow in, UDP out: {rr:?}");
    assert!(rr[1].contains(";transport=tcp;lr;"), "{rr:?}");
    let ok = s[0]
        .request
        .response_with_tag(200, Some("bs1"))
        .header(HeaderName::Contact, "<sip:1001-0x55d0c3a8@192.0.2.10:5060>")
        .build()
        .unwrap();
    h.respond(s[0].branch, ok);
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    h.engine.handle_flow_closed(pbx_flow, h.now);
    let out = h.outputs();
    let s = sends(&out);
    assert_eq!(methods(&s), vec!["BYE"]);
    assert_eq!(s[0].hop, addr("192.0.2.10", 5060));
    assert_eq!(ruri(&s[0].request), "sip:1001-0x55d0c3a8@192.0.2.10:5060");
    assert_eq!(s[0].request.from_tag().unwrap(), Some("1b7c2e4f-7a8d"));
    assert_eq!(s[0].request.to_tag().unwrap(), Some("bs1"));
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallEnded { reason: EndReason::FlowClosed(f), .. }] if *f == pbx_flow
    ));
}

#[test]
fn a_re_invite_can_be_cancelled() {
    let mut h = Harness::new();
    let (_, _, ok) = browser_call(&mut h, "d-recancel");
    let reinvite = in_dialog("INVITE", &ok, true, 6136);
    let via = header(&reinvite, HeaderName::Via)[0].clone();
    let tx = h.request(reinvite, wss_phone());
    let s = sends(&h.outputs());
    // Asterisk's 100 Trying is enough for a CANCEL (RFC 3261 §9.1).
    h.respond(s[0].branch, pbx_reply(&s[0].request, 100, "", ""));
    assert!(h.outputs().is_empty());
    let rr: String = header(&ok, HeaderName::RecordRoute)
        .iter()
        .rev()
        .map(|r| format!("Route: {r}\n"))
        .collect();
    let cancel = msg(&format!(
        "CANCEL sip:{PBX}:5060 SIP/2.0\nVia: {via}\nMax-Forwards: 70\n{rr}\
         From: \"1002\" <sip:1002@proxy.example.com>;tag=q2mcbqs8ae\n\
         To: <sip:4001@proxy.example.com>;tag=as5f1c\nCall-ID: d-recancel\n\
         CSeq: 6136 CANCEL\nContent-Length: 0\n\n"
    ));
    h.request(cancel, wss_phone());
    let out = h.outputs();
    assert_eq!(statuses(&out), vec![200]);
    let c = sends(&out);
    assert_eq!(methods(&c), vec!["CANCEL"]);
    assert_eq!(c[0].hop, addr(PBX, 5060));
    h.respond(s[0].branch, pbx_reply(&s[0].request, 487, "as5f1c", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(487)));
    assert!(
        h.engine
            .dialog(&key("d-recancel", "q2mcbqs8ae", "as5f1c"))
            .is_some(),
        "the call goes on"
    );
}

#[test]
fn early_dialog_requests_follow_the_record_route_of_the_183() {
    let mut h = Harness::new();
    let (_, sent) = h.call(
        jssip_invite("sip:4001@proxy.example.com", "d-early"),
        wss_phone(),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    let b = &sent[0];
    let ringing = pbx_reply(&b.request, 183, "as3e", "Require: 100rel\nRSeq: 1\n");
    h.respond(b.branch, ringing.clone());
    let r = responses(&h.outputs());
    assert_eq!(r[0].1.status(), Some(183));
    assert_eq!(h.engine.dialogs().count(), 0, "no record before the answer");
    // The phone's PRACK, with the route set of the early dialog.
    let mut ok_like = ringing.clone();
    ok_like.set_header(HeaderName::To, "<sip:4001@proxy.example.com>;tag=as5f1c");
    let prack = in_dialog("PRACK", &ok_like, true, 6136);
    h.request(prack, wss_phone());
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, addr(PBX, 5060));
    assert!(header(&s[0].request, HeaderName::Route).is_empty());
    // The PBX's UPDATE towards the phone: by the flow token.
    h.request(
        in_dialog("UPDATE", &ok_like, false, 55),
        udp_from("198.51.100.10:5060"),
    );
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, ws_hop());
    // Answered; at the maximum duration the BYE to the phone comes after
    // the PBX's early UPDATE (RFC 3261 §12.2.2: never below its CSeq).
    h.respond(b.branch, pbx_reply(&b.request, 200, "as5f1c", ""));
    h.outputs();
    h.advance(EngineConfig::default().max_call_duration);
    let byes = sends(&h.outputs());
    let to_phone = byes
        .iter()
        .find(|x| x.hop == ws_hop())
        .expect("BYE to the phone");
    assert_eq!(to_phone.request.cseq().unwrap().seq, 56);
}

#[test]
fn a_huge_configured_duration_does_not_panic() {
    let mut h = Harness::with(EngineConfig {
        max_call_duration: Duration::MAX,
        timer_c: Duration::MAX,
        ..EngineConfig::default()
    });
    let (_, _, out) = udp_call(&mut h, "d-huge", "", "");
    assert_eq!(statuses(&out), vec![200]);
    assert!(h.engine.poll_timeout().unwrap() > h.now + Duration::from_secs(50 * 365 * 86_400));
}

#[test]
fn a_dialog_record_stays_small() {
    // The memory target of #16 is per active call; the record is what an
    // answered call keeps. Its inline size (heap strings aside) is a guard
    // against growing it by accident.
    let size = std::mem::size_of::<siplink_proxy::engine::DialogRecord>();
    // 512 bytes on x86_64 Linux today; the media leg will add some.
    assert!(size <= 640, "DialogRecord is {size} bytes");
}
