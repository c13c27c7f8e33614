//! The engine's fork in virtual time: parallel branches, §16.7 best
//! response, CANCEL, failover, timer C.

mod engine_support;

use std::time::Duration;

use engine_support::*;
use siplink_message::{HeaderName, Method};
use siplink_proxy::engine::{EndReason, EngineConfig, Event, LookupResult, Query, RouteGroup};

/// 4001 dialled from baresip, routed to `groups`.
fn dial(
    h: &mut Harness,
    call_id: &str,
    groups: Vec<RouteGroup>,
) -> (siplink_proxy::engine::ServerTx, Vec<Sent>) {
    let invite = baresip_invite("sip:4001@proxy.example.com", call_id, "");
    h.call(invite, udp_from("192.0.2.10:5060"), groups)
}

#[test]
fn a_call_to_a_number_asks_the_route_and_sends_one_branch() {
    let mut h = Harness::new();
    let tx = h.request(
        baresip_invite("sip:4001@proxy.example.com", "c-route", ""),
        udp_from("192.0.2.10:5060"),
    );
    let out = h.outputs();
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallStarted { call_id, .. }] if call_id == "c-route"
    ));
    let (token, query) = lookups(&out).remove(0);
    match query {
        Query::Route {
            number,
            user,
            method,
        } => {
            assert_eq!(number, "4001");
            assert_eq!(user, None);
            assert_eq!(method, Method::Invite);
        }
        other => panic!("{other:?}"),
    }
    h.lookup(
        token,
        LookupResult::Routes(vec![group("office-pbx", vec![target(PBX, 5060)])]),
    );
    let sent = sends(&h.outputs());
    assert_eq!(sent.len(), 1);
    let req = &sent[0].request;
    assert_eq!(req.max_forwards().unwrap(), Some(69));
    assert_eq!(req.via().unwrap().len(), 2);
    assert!(
        req.top_via()
            .unwrap()
            .branch()
            .unwrap()
            .starts_with("z9hG4bKsl")
    );
    // One Record-Route: UDP in, UDP out, same face.
    let rr = header(req, HeaderName::RecordRoute);
    assert_eq!(rr.len(), 1, "{rr:?}");
    assert!(rr[0].starts_with("<sip:192.0.2.1:5060;lr;sld="), "{rr:?}");
    // The caller gets the 180, never a 100 of ours from the engine.
    h.respond(sent[0].branch, pbx_reply(req, 100, "", ""));
    assert!(h.outputs().is_empty());
    h.respond(sent[0].branch, pbx_reply(req, 180, "as5f1c", ""));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, tx);
    assert_eq!(r[0].1.status(), Some(180));
    assert_eq!(r[0].1.via().unwrap().len(), 1, "our Via removed");
}

#[test]
fn three_branches_and_a_6xx_cancel_the_others() {
    let mut h = Harness::new();
    let targets = vec![
        target("192.0.2.21", 5060),
        target("192.0.2.22", 5060),
        target("192.0.2.23", 5060),
    ];
    let (tx, sent) = dial(
        &mut h,
        "c-6xx",
        vec![
            group("office-pbx", targets),
            group("backup", vec![target("192.0.2.99", 5060)]),
        ],
    );
    assert_eq!(sent.len(), 3);
    let branches: Vec<_> = sent
        .iter()
        .map(|s| s.request.top_via().unwrap().branch().unwrap().to_owned())
        .collect();
    assert_eq!(
        branches
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "distinct branches"
    );
    // Two ring, the third has not answered yet when the 603 comes.
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 180, "t1", ""));
    h.respond(sent[1].branch, pbx_reply(&sent[1].request, 603, "t2", ""));
    let out = h.outputs();
    assert_eq!(statuses(&out), vec![180]);
    let cancels = sends(&out);
    // Branch 0 rang: CANCEL now. Branch 2 never answered: CANCEL waits for
    // its first provisional response (RFC 3261 §9.1).
    assert_eq!(methods(&cancels), vec!["CANCEL"]);
    assert_eq!(
        cancels[0].request.top_via().unwrap().branch(),
        sent[0].request.top_via().unwrap().branch()
    );
    assert_eq!(ruri(&cancels[0].request), ruri(&sent[0].request));
    assert_eq!(cancels[0].request.cseq().unwrap().seq, 23456);
    assert_eq!(cancels[0].hop, sent[0].hop);
    h.respond(sent[2].branch, pbx_reply(&sent[2].request, 183, "t3", ""));
    let out = h.outputs();
    assert_eq!(
        methods(&sends(&out)),
        vec!["CANCEL"],
        "CANCEL at the first provisional"
    );
    assert!(statuses(&out).is_empty(), "nothing forwarded after a 6xx");
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 487, "t1", ""));
    assert!(h.outputs().is_empty(), "a branch is still live");
    h.respond(sent[2].branch, pbx_reply(&sent[2].request, 487, "t3", ""));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, tx);
    assert_eq!(r[0].1.status(), Some(603));
    assert!(sends(&out).is_empty(), "a 6xx does not fail over");
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallEnded {
            reason: EndReason::Failed(603),
            ..
        }]
    ));
    assert_eq!(h.engine.sizes().0, 0, "the call is gone");
}

#[test]
fn timer_c_cancels_a_ringing_branch_and_answers_408() {
    let mut h = Harness::new();
    let (tx, sent) = dial(
        &mut h,
        "c-timerc",
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    let b = &sent[0];
    h.respond(b.branch, pbx_reply(&b.request, 180, "r1", ""));
    h.outputs();
    // Each provisional response restarts timer C (§16.7 step 2).
    h.advance(Duration::from_secs(170));
    h.respond(b.branch, pbx_reply(&b.request, 180, "r1", ""));
    h.outputs();
    h.advance(Duration::from_secs(170));
    assert!(
        h.outputs().is_empty(),
        "340 s ringing, timer C restarted at 170 s"
    );
    h.advance(Duration::from_secs(10));
    let out = h.outputs();
    assert_eq!(methods(&sends(&out)), vec!["CANCEL"]);
    assert!(responses(&out).is_empty(), "waits for the 487");
    h.respond(b.branch, pbx_reply(&b.request, 487, "r1", ""));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, tx);
    assert_eq!(
        r[0].1.status(),
        Some(408),
        "the caller did not cancel: 408, not 487"
    );
}

#[test]
fn timer_c_is_configurable_and_gives_up_a_silent_branch() {
    let mut h = Harness::with(EngineConfig {
        timer_c: Duration::from_secs(5),
        ..EngineConfig::default()
    });
    let (_, sent) = dial(
        &mut h,
        "c-timerc2",
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    assert_eq!(
        h.engine.poll_timeout(),
        Some(h.now + Duration::from_secs(5))
    );
    h.advance(Duration::from_secs(5));
    let out = h.outputs();
    assert!(
        sends(&out).is_empty(),
        "no CANCEL before a provisional response"
    );
    assert_eq!(statuses(&out), vec![408]);
    // A late 180 on the given-up branch goes nowhere.
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 180, "x", ""));
    assert!(statuses(&h.outputs()).is_empty());
}

#[test]
fn cancel_racing_a_200_forwards_the_200() {
    let mut h = Harness::new();
    let invite = baresip_invite("sip:4001@proxy.example.com", "c-race", "");
    let caller_invite = invite.clone();
    let (tx, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    let b = &sent[0];
    h.respond(b.branch, pbx_reply(&b.request, 180, "as01", ""));
    h.outputs();
    // baresip hangs up: CANCEL with the INVITE's top Via branch.
    let cancel = msg(&format!(
        "CANCEL sip:4001@proxy.example.com SIP/2.0\n\
         Via: {}\n\
         Max-Forwards: 70\n\
         To: <sip:4001@proxy.example.com>\n\
         From: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Call-ID: c-race\n\
         CSeq: 23456 CANCEL\n\
         Content-Length: 0\n\n",
        header(&caller_invite, HeaderName::Via)[0]
    ));
    let ctx = h.request(cancel, udp_from("192.0.2.10:5060"));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (ctx, Some(200)));
    assert_eq!(methods(&sends(&out)), vec!["CANCEL"]);
    // The PBX answered before it saw the CANCEL.
    h.respond(b.branch, pbx_reply(&b.request, 200, "as01", ""));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallAnswered { .. }]
    ));
    assert_eq!(h.engine.dialogs().count(), 1);
    // The CANCEL's own 200 is dropped; no 487 ever reaches the caller.
    assert_eq!(h.engine.sizes().0, 0);
}

#[test]
fn a_cancel_for_no_call_is_481() {
    let mut h = Harness::new();
    let cancel = msg("CANCEL sip:4001@proxy.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnothing;rport\n\
         Max-Forwards: 70\n\
         To: <sip:4001@proxy.example.com>\n\
         From: <sip:1001@proxy.example.com>;tag=a\n\
         Call-ID: nothing\n\
         CSeq: 1 CANCEL\n\
         Content-Length: 0\n\n");
    h.request(cancel, udp_from("192.0.2.10:5060"));
    assert_eq!(statuses(&h.outputs()), vec![481]);
}

#[test]
fn a_cancel_while_the_route_is_looked_up_answers_487() {
    let mut h = Harness::new();
    let invite = baresip_invite("sip:4001@proxy.example.com", "c-early", "");
    let via = header(&invite, HeaderName::Via)[0].clone();
    let tx = h.request(invite, udp_from("192.0.2.10:5060"));
    let token = lookups(&h.outputs())[0].0;
    let cancel = msg(&format!(
        "CANCEL sip:4001@proxy.example.com SIP/2.0\nVia: {via}\nMax-Forwards: 70\n\
         To: <sip:4001@proxy.example.com>\nFrom: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Call-ID: c-early\nCSeq: 23456 CANCEL\nContent-Length: 0\n\n"
    ));
    h.request(cancel, udp_from("192.0.2.10:5060"));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(
        r.iter()
            .map(|(_, m)| m.status().unwrap())
            .collect::<Vec<_>>(),
        vec![200, 487]
    );
    assert_eq!(r[1].0, tx);
    // The late lookup answer is ignored.
    h.lookup(
        token,
        LookupResult::Routes(vec![group("office-pbx", vec![target(PBX, 5060)])]),
    );
    assert!(h.outputs().is_empty());
}

#[test]
fn failover_on_503_408_timeout_and_transport_error() {
    let mut h = Harness::new();
    let groups = vec![
        group("a", vec![target("192.0.2.31", 5060)]),
        group("b", vec![target("192.0.2.32", 5060)]),
        group("c", vec![target("192.0.2.33", 5060)]),
        group("d", vec![target("192.0.2.34", 5060)]),
        group("e", vec![target("192.0.2.35", 5060)]),
    ];
    let (tx, sent) = dial(&mut h, "c-failover", groups);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].hop, addr("192.0.2.31", 5060));
    h.respond(
        sent[0].branch,
        pbx_reply(&sent[0].request, 503, "a", "Retry-After: 30\n"),
    );
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, addr("192.0.2.32", 5060));
    assert_ne!(
        s[0].request.top_via().unwrap().branch(),
        sent[0].request.top_via().unwrap().branch(),
        "a new branch per attempt"
    );
    h.respond(s[0].branch, pbx_reply(&s[0].request, 408, "b", ""));
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, addr("192.0.2.33", 5060));
    h.engine.handle_branch_failure(s[0].branch, true, h.now);
    let s = sends(&h.outputs());
    assert_eq!(s[0].hop, addr("192.0.2.34", 5060));
    h.engine.handle_branch_failure(s[0].branch, false, h.now);
    let out = h.outputs();
    assert!(
        responses(&out).is_empty(),
        "nothing to the caller while failing over"
    );
    let s = sends(&out);
    assert_eq!(s[0].hop, addr("192.0.2.35", 5060));
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "e", ""));
    let out = h.outputs();
    assert_eq!(responses(&out)[0].0, tx);
    assert_eq!(statuses(&out), vec![200]);
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallAnswered { connection: Some(c), .. }] if c == "e"
    ));
}

#[test]
fn every_connection_failing_gives_one_final_response() {
    let mut h = Harness::new();
    let groups = vec![
        group("a", vec![target("192.0.2.31", 5060)]),
        group("b", vec![target("192.0.2.32", 5060)]),
    ];
    let (_, sent) = dial(&mut h, "c-allfail", groups);
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 503, "a", ""));
    let s = sends(&h.outputs());
    h.engine.handle_branch_failure(s[0].branch, true, h.now);
    let out = h.outputs();
    // 503 is not passed upstream (§16.7 step 6); the 408 ranks above it.
    assert_eq!(statuses(&out), vec![408]);
}

#[test]
fn no_failover_on_486() {
    let mut h = Harness::new();
    let groups = vec![
        group("a", vec![target("192.0.2.31", 5060)]),
        group("b", vec![target("192.0.2.32", 5060)]),
    ];
    let (_, sent) = dial(&mut h, "c-busy", groups);
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 486, "a", ""));
    let out = h.outputs();
    assert!(
        sends(&out).is_empty(),
        "the callee is busy: no other connection"
    );
    assert_eq!(statuses(&out), vec![486]);
}

#[test]
fn a_3xx_goes_back_to_the_caller_without_recursion() {
    let mut h = Harness::new();
    let (_, sent) = dial(&mut h, "c-302", vec![group("a", vec![target(PBX, 5060)])]);
    h.respond(
        sent[0].branch,
        pbx_reply(
            &sent[0].request,
            302,
            "m",
            "Contact: <sip:4002@198.51.100.11>\n",
        ),
    );
    let out = h.outputs();
    assert!(sends(&out).is_empty());
    let r = responses(&out);
    assert_eq!(r[0].1.status(), Some(302));
    assert_eq!(
        r[0].1.contact().unwrap().as_slice()[0].uri.as_str(),
        "sip:4002@198.51.100.11"
    );
}

#[test]
fn challenges_of_every_branch_are_aggregated() {
    let mut h = Harness::new();
    let (_, sent) = dial(
        &mut h,
        "c-auth",
        vec![group(
            "a",
            vec![target("192.0.2.41", 5060), target("192.0.2.42", 5060)],
        )],
    );
    h.respond(
        sent[0].branch,
        pbx_reply(
            &sent[0].request,
            407,
            "x1",
            "Proxy-Authenticate: Digest realm=\"asterisk\",nonce=\"1701234567/abc\",opaque=\"0a1b\",algorithm=md5,qop=\"auth\"\n",
        ),
    );
    assert!(h.outputs().is_empty(), "waits for the other branch");
    h.respond(
        sent[1].branch,
        pbx_reply(
            &sent[1].request,
            401,
            "x2",
            "WWW-Authenticate: Digest realm=\"sip.example.net\", nonce=\"5f3b\", algorithm=SHA-256, qop=\"auth\"\n",
        ),
    );
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    let m = &r[0].1;
    assert!(matches!(m.status(), Some(401) | Some(407)));
    assert_eq!(m.proxy_authenticate().unwrap()[0].realm(), Some("asterisk"));
    assert_eq!(
        m.www_authenticate().unwrap()[0].realm(),
        Some("sip.example.net")
    );
}

#[test]
fn every_2xx_of_a_forked_invite_is_forwarded() {
    let mut h = Harness::new();
    let (tx, sent) = dial(
        &mut h,
        "c-two200",
        vec![group(
            "a",
            vec![target("192.0.2.51", 5060), target("192.0.2.52", 5060)],
        )],
    );
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 180, "u1", ""));
    h.respond(sent[1].branch, pbx_reply(&sent[1].request, 180, "u2", ""));
    h.outputs();
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 200, "u1", ""));
    let out = h.outputs();
    assert_eq!(statuses(&out), vec![200]);
    let cancels = sends(&out);
    assert_eq!(methods(&cancels), vec!["CANCEL"]);
    assert_eq!(
        cancels[0].request.header_values_named("Reason").next(),
        Some(&b"SIP;cause=200;text=\"Call completed elsewhere\""[..])
    );
    // The other branch answered too before the CANCEL reached it.
    h.respond(sent[1].branch, pbx_reply(&sent[1].request, 200, "u2", ""));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    assert_eq!(r[0].1.to_tag().unwrap(), Some("u2"));
    assert_eq!(h.engine.dialogs().count(), 2, "one record per dialog");
}

#[test]
fn a_call_to_a_user_forks_to_every_contact() {
    let mut h = Harness::new();
    let invite = msg("INVITE sip:1002@proxy.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 198.51.100.10:5060;rport;branch=z9hG4bKPj5b1e2c3d-aa\n\
         From: <sip:0612345678@198.51.100.10>;tag=6f2a1e3b-44c1\n\
         To: <sip:1002@proxy.example.com>\n\
         Contact: <sip:asterisk@198.51.100.10:5060>\n\
         Call-ID: 5a8c7b36-1f0b-4e7e-9a51-5b2d6c7e8f90\n\
         CSeq: 8312 INVITE\n\
         Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, MESSAGE, REFER\n\
         Supported: 100rel, timer, replaces, norefersub\n\
         Session-Expires: 1800\n\
         Min-SE: 90\n\
         Max-Forwards: 70\n\
         User-Agent: Asterisk PBX 20.5.0\n\
         Content-Length: 0\n\n");
    let tx = h.request(invite, udp_from("198.51.100.10:5060"));
    let out = h.outputs();
    let (token, query) = lookups(&out).remove(0);
    assert!(matches!(query, Query::Bindings { ref user } if user == "1002"));
    let ws = siplink_proxy::engine::Target {
        request_uri: Some("sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob".to_owned()),
        route: Vec::new(),
        hop: siplink_proxy::engine::NextHop::Flow {
            flow: siplink_transport::FlowId::from_raw(WS_FLOW),
            protocol: siplink_message::Transport::Wss,
        },
    };
    let desk = siplink_proxy::engine::Target {
        request_uri: Some("sip:1002@192.0.2.60:5062".to_owned()),
        route: vec!["<sip:edge.example.com;lr>".to_owned()],
        hop: addr("edge.example.com", 5060),
    };
    h.lookup(
        token,
        LookupResult::Routes(vec![RouteGroup {
            connection: None,
            targets: vec![ws, desk],
        }]),
    );
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 2);
    assert_eq!(
        ruri(&s[0].request),
        "sip:i4t2rk9p@k3nsd8s1p2vd.invalid;transport=ws;ob"
    );
    // Towards the WebSocket flow: two Record-Route entries (RFC 5658), the
    // top one with the flow token.
    let rr = header(&s[0].request, HeaderName::RecordRoute);
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(rr[0].starts_with("<sip:fl7x"), "{rr:?}");
    assert!(
        rr[0].contains("proxy.example.com:8443;transport=wss;lr;sld="),
        "{rr:?}"
    );
    assert!(rr[1].starts_with("<sip:192.0.2.1:5060;lr;sld="), "{rr:?}");
    assert_eq!(ruri(&s[1].request), "sip:1002@192.0.2.60:5062");
    assert_eq!(
        header(&s[1].request, HeaderName::Route),
        vec!["<sip:edge.example.com;lr>"]
    );
    // Nobody there: both fail, the PBX hears 480-class from the best.
    h.respond(s[0].branch, pbx_reply(&s[0].request, 480, "w", ""));
    h.respond(s[1].branch, pbx_reply(&s[1].request, 486, "d", ""));
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r[0].0, tx);
    assert_eq!(r[0].1.status(), Some(480), "first of the 4xx class");
}

#[test]
fn no_contact_is_480_and_no_connection_is_503() {
    let mut h = Harness::new();
    let tx = h.request(
        baresip_invite("sip:1002@proxy.example.com", "c-nobody", ""),
        udp_from("192.0.2.10:5060"),
    );
    let token = lookups(&h.outputs())[0].0;
    h.lookup(token, LookupResult::Routes(vec![]));
    let out = h.outputs();
    assert_eq!(responses(&out)[0].0, tx);
    assert_eq!(statuses(&out), vec![480]);
    assert!(matches!(
        events(&out).last(),
        Some(Event::CallEnded {
            reason: EndReason::Failed(480),
            ..
        })
    ));
    h.request(
        baresip_invite("sip:4001@proxy.example.com", "c-noconn", ""),
        udp_from("192.0.2.10:5060"),
    );
    let token = lookups(&h.outputs())[0].0;
    h.lookup(
        token,
        LookupResult::Refused(404, "No Route For Number".to_owned()),
    );
    let r = responses(&h.outputs());
    assert_eq!(r[0].1.status(), Some(404));
    assert_eq!(r[0].1.reason(), Some(&b"No Route For Number"[..]));
}

#[test]
fn authentication_comes_first_when_configured() {
    let mut h = Harness::new();
    h.engine.view_mut().authenticate = true;
    let tx = h.request(
        baresip_invite("sip:4001@proxy.example.com", "c-auth-first", ""),
        udp_from("192.0.2.10:5060"),
    );
    let (token, query) = lookups(&h.outputs()).remove(0);
    let Query::Authenticate { request, .. } = query else {
        panic!("{query:?}")
    };
    let challenge = request
        .response(407)
        .header(
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"proxy.example.com\", nonce=\"n1\", qop=\"auth\"",
        )
        .build()
        .unwrap();
    h.lookup(token, LookupResult::Challenge(challenge));
    let out = h.outputs();
    assert!(events(&out).is_empty(), "a challenged attempt is no call");
    let r = responses(&out);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(407)));
    // With credentials (ours, and another proxy's further on): the driver
    // checks ours, the route lookup carries the user.
    let ours = "Proxy-Authorization: Digest username=\"1001\", realm=\"proxy.example.com\", nonce=\"n1\", uri=\"sip:4001@proxy.example.com\", response=\"0123456789abcdef0123456789abcdef\", qop=auth, nc=00000001, cnonce=\"c1\"\n";
    let theirs = "Proxy-Authorization: Digest username=\"alice\", realm=\"upstream.example\", nonce=\"u1\", uri=\"sip:4001@proxy.example.com\", response=\"fedcba9876543210fedcba9876543210\"\n";
    h.request(
        baresip_invite(
            "sip:4001@proxy.example.com",
            "c-auth-ok",
            &format!("{ours}{theirs}"),
        ),
        udp_from("192.0.2.10:5060"),
    );
    let (token, query) = lookups(&h.outputs()).remove(0);
    let Query::Authenticate { request, .. } = query else {
        panic!("{query:?}")
    };
    assert_eq!(request.proxy_authorization().unwrap().len(), 2);
    h.lookup(
        token,
        LookupResult::Authenticated {
            user: Some("1001".to_owned()),
        },
    );
    let out = h.outputs();
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallStarted { user: Some(u), .. }] if u == "1001"
    ));
    let (token, query) = lookups(&out).remove(0);
    assert!(matches!(query, Query::Route { user: Some(ref u), .. } if u == "1001"));
    // RFC 3261 §22.3: our realm's answer is not forwarded; the other realm's
    // is.
    h.lookup(
        token,
        LookupResult::Routes(vec![group("office-pbx", vec![target(PBX, 5060)])]),
    );
    let sent = sends(&h.outputs());
    let realms: Vec<_> = sent[0]
        .request
        .proxy_authorization()
        .unwrap()
        .iter()
        .map(|c| c.realm().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(realms, ["upstream.example"], "{}", sent[0].request);
}

#[test]
fn too_many_calls_is_503_with_retry_after() {
    let mut h = Harness::with(EngineConfig {
        max_calls: 1,
        ..EngineConfig::default()
    });
    h.request(
        baresip_invite("sip:4001@proxy.example.com", "c-one", ""),
        udp_from("192.0.2.10:5060"),
    );
    h.outputs();
    h.request(
        baresip_invite("sip:4001@proxy.example.com", "c-two", ""),
        udp_from("192.0.2.10:5060"),
    );
    let r = responses(&h.outputs());
    assert_eq!(r[0].1.status(), Some(503));
    assert_eq!(header(&r[0].1, HeaderName::RetryAfter), vec!["5"]);
}

#[test]
fn a_caller_cancel_fans_out_to_every_branch() {
    let mut h = Harness::new();
    let invite = baresip_invite("sip:4001@proxy.example.com", "c-fanout", "");
    let via = header(&invite, HeaderName::Via)[0].clone();
    let (tx, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![
            group(
                "a",
                vec![
                    target("192.0.2.61", 5060),
                    target("192.0.2.62", 5060),
                    target("192.0.2.63", 5060),
                ],
            ),
            group("b", vec![target("192.0.2.64", 5060)]),
        ],
    );
    for s in &sent {
        h.respond(
            s.branch,
            pbx_reply(&s.request, 180, &format!("f{}", s.branch.get()), ""),
        );
    }
    assert_eq!(statuses(&h.outputs()), vec![180, 180, 180]);
    let cancel = msg(&format!(
        "CANCEL sip:4001@proxy.example.com SIP/2.0\nVia: {via}\nMax-Forwards: 70\n\
         To: <sip:4001@proxy.example.com>\nFrom: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Call-ID: c-fanout\nCSeq: 23456 CANCEL\nContent-Length: 0\n\n"
    ));
    h.request(cancel, udp_from("192.0.2.10:5060"));
    let out = h.outputs();
    assert_eq!(statuses(&out), vec![200]);
    let cancels = sends(&out);
    assert_eq!(methods(&cancels), vec!["CANCEL", "CANCEL", "CANCEL"]);
    let mut hops: Vec<_> = cancels.iter().map(|c| c.hop.clone()).collect();
    hops.dedup();
    assert_eq!(hops.len(), 3);
    for s in &sent {
        h.respond(
            s.branch,
            pbx_reply(&s.request, 487, &format!("f{}", s.branch.get()), ""),
        );
    }
    let out = h.outputs();
    assert!(
        sends(&out).is_empty(),
        "a cancelled call does not fail over"
    );
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(487)));
    assert!(matches!(
        events(&out).as_slice(),
        [Event::CallEnded {
            reason: EndReason::Cancelled,
            ..
        }]
    ));
}
