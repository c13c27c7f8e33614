//! Real-PBX messages (`tests/fixtures/pbx/`) through the sans-IO proxy core:
//! `dispatch` gives each request fixture the fate a proxy owes it, and the
//! Asterisk 14 trace (INVITE, 180, 200, ACK, BYE of one call) drives an
//! `Engine` through a whole call in virtual time, with a hold re-INVITE.
//!
//! What the test changes in a fixture, and only there: a PBX answering
//! through the proxy copies the Vias and Record-Routes of the request the
//! proxy sent (`as_answer_to`), and an in-dialog request carries the Route
//! set its sender learnt from our Record-Route (`routed`). Everything else is
//! the PBX's bytes. The hold re-INVITE and its 200 are derived from the
//! trace's INVITE and 200 (no hold in that trace): To tag, CSeq and the
//! direction attribute (`sendrecv` → `sendonly`/`recvonly`, same length).

mod engine_support;

use std::time::Duration;

use bytes::Bytes;
use engine_support::*;
use siplink_message::{HeaderName, Message, Method, TargetAddr, Transport};
use siplink_proxy::engine::{
    Caller, DialogKey, EndReason, Engine, EngineConfig, Event, Fate, LookupResult, NextHop,
    PbxSource, Query, RouteGroup, StaticView, Target, View, dispatch,
};
use siplink_transport::Origin;

/// Asterisk 14 of the call trace (`asterisk-pjsip-*`, `asterisk-call-*`).
const ASTERISK: &str = "198.51.100.110";
/// Phone 1102 of that trace, the caller.
const PHONE: &str = "198.51.100.112:60773";

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/tests/fixtures/pbx/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn parse(name: &str) -> Message {
    Message::parse(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn pbx(connection: &str) -> PbxSource {
    PbxSource {
        connection: connection.to_owned(),
        deliver_to: Some("1001".to_owned()),
    }
}

/// The harness's view, plus the users, domains and PBX addresses of the
/// fixtures.
fn fixture_view() -> StaticView {
    let mut v = view();
    v.users
        .extend(["1101", "1090", "yAS43lAg8L"].map(str::to_owned));
    v.domains.push("192.0.2.1".to_owned());
    for (ip, name) in [
        (ASTERISK, "asterisk"),
        ("198.51.100.18", "asterisk-chansip"),
        ("198.51.100.59", "asterisk-ws"),
        ("203.0.113.96", "freeswitch-ws"),
        ("203.0.113.40", "freeswitch"),
        ("198.51.100.152", "kamailio"),
        ("198.51.100.35", "freepbx"),
    ] {
        v.pbx_addresses.push((ip.parse().unwrap(), pbx(name)));
    }
    v
}

fn harness() -> Harness {
    let mut h = Harness::new();
    h.engine = Engine::new(fixture_view(), EngineConfig::default());
    h
}

fn from(peer: &str, protocol: Transport) -> Origin {
    let mut o = udp_from(peer);
    o.protocol = protocol;
    o
}

fn to_user(user: &str, connection: &str) -> Fate {
    Fate::ToUser {
        user: user.to_owned(),
        caller: Caller::Pbx(connection.to_owned()),
    }
}

#[test]
fn dispatch_gives_each_pbx_request_its_fate() {
    let v = fixture_view();
    let phone = Caller::Phone {
        authenticate: false,
    };
    let cases: Vec<(&str, Origin, Fate)> = vec![
        // A PBX qualifying the Contact a user registered through us.
        (
            "asterisk-chansip-options-qualify.sip",
            udp_from("198.51.100.18:5060"),
            Fate::Options,
        ),
        // A keepalive ping to the proxy itself (no user part).
        (
            "kamailio-options-keepalive.sip",
            udp_from("198.51.100.126:5060"),
            Fate::Options,
        ),
        // A PBX calling a registered user.
        (
            "asterisk-pjsip-invite-to-user.sip",
            udp_from("198.51.100.110:5060"),
            to_user("1101", "asterisk"),
        ),
        // A PBX calling someone who is not a user: the connection's
        // deliver_to.
        (
            "freeswitch-invite-sdp.sip",
            udp_from("203.0.113.40:5060"),
            to_user("1001", "freeswitch"),
        ),
        (
            "asterisk-pjsip-invite-freepbx.sip",
            udp_from("198.51.100.35:5060"),
            to_user("1001", "freepbx"),
        ),
        // An unsolicited MWI NOTIFY to a user (To names the user).
        (
            "freeswitch-notify-mwi-ws.sip",
            from("203.0.113.96:5066", Transport::Ws),
            to_user("1090", "freeswitch-ws"),
        ),
        // A NOTIFY inside a subscription dialog (To tag).
        (
            "asterisk-pjsip-notify-mwi-ws.sip",
            from("198.51.100.59:8080", Transport::Ws),
            Fate::InDialog,
        ),
        // In-dialog requests: the BYE of a call, a 2xx's ACK, a relayed BYE.
        (
            "asterisk-pjsip-bye.sip",
            udp_from("198.51.100.110:5060"),
            Fate::InDialog,
        ),
        (
            "asterisk-call-phone-ack.sip",
            udp_from(PHONE),
            Fate::InDialog,
        ),
        (
            "kamailio-relayed-bye.sip",
            udp_from("198.51.100.152:5060"),
            Fate::InDialog,
        ),
        // A phone dialling 1101 at the PBX's address: a number, not a user.
        (
            "asterisk-call-phone-invite.sip",
            udp_from(PHONE),
            Fate::ToNumber {
                number: "1101".to_owned(),
                caller: phone,
            },
        ),
        // REGISTERs: for our domain the registrar's, else 403.
        (
            "asterisk-pjsip-register-outbound.sip",
            udp_from("198.51.100.91:5060"),
            Fate::Registrar,
        ),
        (
            "3cx-register-trunk.sip",
            udp_from("198.51.100.98:5060"),
            Fate::Answer(403, "Not A Domain Of This Registrar"),
        ),
        (
            "3cx-received-phone-register-outbound.sip",
            from("198.51.100.226:18437", Transport::Tcp),
            Fate::Answer(403, "Not A Domain Of This Registrar"),
        ),
        (
            "kamailio-uac-register.sip",
            udp_from("198.51.100.12:5068"),
            Fate::Answer(403, "Not A Domain Of This Registrar"),
        ),
    ];
    for (name, origin, fate) in cases {
        let d = dispatch(&parse(name), &origin, &v);
        assert_eq!(d.fate, fate, "{name}");
        assert!(!d.cookie.is_empty(), "{name}: a loop cookie");
    }
}

#[test]
fn the_proxy_answers_a_pbx_qualify_itself() {
    for (name, peer) in [
        ("asterisk-chansip-options-qualify.sip", "198.51.100.18:5060"),
        ("kamailio-options-keepalive.sip", "198.51.100.126:5060"),
    ] {
        let mut h = harness();
        let request = parse(name);
        let tx = h.request(request.clone(), udp_from(peer));
        let out = h.outputs();
        assert!(sends(&out).is_empty(), "{name}: answered here");
        let r = responses(&out);
        assert_eq!(r.len(), 1, "{name}");
        assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)), "{name}");
        let ok = &r[0].1;
        assert_eq!(ok.call_id().unwrap(), request.call_id().unwrap());
        assert_eq!(ok.from_tag().unwrap(), request.from_tag().unwrap());
        assert_eq!(
            ok.top_via().unwrap().branch(),
            request.top_via().unwrap().branch()
        );
        assert!(!header(ok, HeaderName::Allow).is_empty(), "{name}: Allow");
        assert!(h.engine.is_idle(), "{name}");
    }
}

/// The contact user `user` registered (answer to `Query::Bindings`).
fn binding(uri: &str, host: &str, port: u16) -> Vec<RouteGroup> {
    vec![RouteGroup {
        connection: None,
        targets: vec![Target {
            request_uri: Some(uri.to_owned()),
            route: Vec::new(),
            hop: addr(host, port),
        }],
    }]
}

#[test]
fn an_unsolicited_mwi_notify_reaches_the_users_contact_unchanged() {
    let mut h = harness();
    let notify = parse("freeswitch-notify-mwi-ws.sip");
    let tx = h.request(notify.clone(), from("203.0.113.96:5066", Transport::Ws));
    let out = h.outputs();
    let l = lookups(&out);
    assert!(
        matches!(&l[..], [(_, Query::Bindings { user })] if user == "1090"),
        "{l:?}"
    );
    h.lookup(
        l[0].0,
        LookupResult::Routes(binding("sip:1090@203.0.113.50:5062", "203.0.113.50", 5062)),
    );
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 1);
    let sent = &s[0].request;
    assert_eq!(s[0].hop, addr("203.0.113.50", 5062));
    assert_eq!(ruri(sent), "sip:1090@203.0.113.50:5062");
    assert_eq!(sent.method(), Some(&Method::Notify));
    assert_eq!(sent.body(), notify.body(), "the MWI body untouched");
    for name in [
        HeaderName::Event,
        HeaderName::ContentType,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::UserAgent,
    ] {
        assert_eq!(header(sent, name), header(&notify, name), "{name}");
    }
    assert_eq!(
        sent.header_values_named("Subscription-State")
            .collect::<Vec<_>>(),
        notify
            .header_values_named("Subscription-State")
            .collect::<Vec<_>>()
    );
    assert_eq!(sent.max_forwards().unwrap(), Some(69));
    let vias = sent.via().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].branch(), Some("z9hG4bKagUFp5yHFKQem"));
    // The phone's 200 goes back to FreeSWITCH.
    h.respond(
        s[0].branch,
        Message::parse(
            sent.response_with_tag(200, Some("ph1090"))
                .build()
                .unwrap()
                .to_bytes(),
        )
        .unwrap(),
    );
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    assert_eq!(r[0].1.via().unwrap().len(), 1, "our Via removed");
    assert!(h.engine.is_idle());
}

/// `fixture` (a response the PBX sent) as the PBX sends it when the request
/// came through the proxy: the Vias and Record-Routes of `request` instead
/// of the fixture's Vias; every other byte the PBX's.
fn as_answer_to(fixture: &Bytes, request: &Message) -> Message {
    let text = std::str::from_utf8(fixture).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let mut out = vec![lines.next().unwrap().to_owned()];
    for v in request.header_values(HeaderName::Via) {
        out.push(format!("Via: {}", String::from_utf8_lossy(v)));
    }
    for rr in request.header_values(HeaderName::RecordRoute) {
        out.push(format!("Record-Route: {}", String::from_utf8_lossy(rr)));
    }
    out.extend(lines.filter(|l| !l.starts_with("Via:")).map(str::to_owned));
    Message::parse(format!("{}\r\n\r\n{body}", out.join("\r\n"))).unwrap()
}

/// `fixture` (an in-dialog request) with the Route set its sender learnt
/// from our Record-Route, inserted after the request line.
fn routed(fixture: &Bytes, routes: &[String]) -> Message {
    let text = std::str::from_utf8(fixture).unwrap();
    let (first, rest) = text.split_once("\r\n").unwrap();
    let routes: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    Message::parse(format!("{first}\r\n{routes}{rest}")).unwrap()
}

fn body_of(m: &Message) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

#[test]
fn an_asterisk_trace_drives_a_whole_call_in_virtual_time() {
    let mut h = harness();
    let start = h.now;
    let asterisk = udp_from(&format!("{ASTERISK}:5060"));

    // The phone's INVITE (Zoiper, as in the trace) to 1101 at the PBX.
    let invite = parse("asterisk-call-phone-invite.sip");
    let (tx, sent) = h.call(
        invite.clone(),
        udp_from(PHONE),
        vec![group("asterisk", vec![target(ASTERISK, 5060)])],
    );
    assert_eq!(sent.len(), 1);
    let b = sent[0].clone();
    assert_eq!(b.hop, addr(ASTERISK, 5060));
    assert_eq!(ruri(&b.request), "sip:1101@198.51.100.110;transport=UDP");
    assert_eq!(b.request.body(), invite.body(), "the offer untouched");
    assert_eq!(b.request.max_forwards().unwrap(), Some(69));
    let rr = header(&b.request, HeaderName::RecordRoute);
    assert_eq!(rr.len(), 1, "our Record-Route");
    assert_eq!(
        header(&b.request, HeaderName::Authorization),
        header(&invite, HeaderName::Authorization),
        "the PBX's credentials pass"
    );

    // 180 and 200 as Asterisk sent them.
    h.advance(Duration::from_millis(40));
    h.respond(
        b.branch,
        as_answer_to(&fixture("asterisk-pjsip-180-ringing.sip"), &b.request),
    );
    let r = responses(&h.outputs());
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(180)));
    assert_eq!(
        header(&r[0].1, HeaderName::Via),
        header(&b.request, HeaderName::Via)[1..].to_vec(),
        "our Via removed, the phone's kept"
    );
    h.advance(Duration::from_secs(4));
    let ok = as_answer_to(&fixture("asterisk-pjsip-200-ok-sdp.sip"), &b.request);
    h.respond(b.branch, ok.clone());
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    let answer = &r[0].1;
    assert_eq!(answer.body(), ok.body(), "Asterisk's SDP answer untouched");
    assert_eq!(header(answer, HeaderName::RecordRoute), rr);
    assert_eq!(
        header(answer, HeaderName::Contact),
        vec!["<sip:198.51.100.110:5060>".to_owned()]
    );
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::CallAnswered { connection, .. } if connection.as_deref() == Some("asterisk"))),
        "{:?}",
        events(&out)
    );
    let key = DialogKey {
        call_id: "vAS_mOFDoAoDYkDQC2-3nw..".into(),
        caller_tag: "9480006f".into(),
        callee_tag: "dab28d84-1b8e-49f0-8a97-9cc960ae3ede".into(),
    };
    let d = h.engine.dialog(&key).expect("a dialog record");
    assert_eq!(d.caller.hop, addr("198.51.100.112", 60773));
    assert_eq!(d.callee.hop, addr(ASTERISK, 5060));
    assert_eq!(d.callee.target, "sip:198.51.100.110:5060");
    assert_eq!(
        d.caller.target,
        "sip:1102@198.51.100.112:60773;transport=UDP"
    );
    assert_eq!(d.answered_at, start + Duration::from_millis(4040));
    assert!(d.session.is_none(), "nobody asked for session timers");
    let (calls, branches, dialogs, _) = h.engine.sizes();
    assert_eq!(
        (calls, branches, dialogs),
        (0, 0, 1),
        "only the record remains"
    );

    // The phone's ACK (from the trace), with the Route it learnt.
    let mut phone_route = rr.clone();
    phone_route.reverse();
    h.request(
        routed(&fixture("asterisk-call-phone-ack.sip"), &phone_route),
        udp_from(PHONE),
    );
    let f = forwards(&h.outputs());
    assert_eq!(f.len(), 1, "the ACK of a 2xx goes statelessly");
    assert_eq!(f[0].1, addr(ASTERISK, 5060));
    assert_eq!(f[0].0.method(), Some(&Method::Ack));
    assert!(
        header(&f[0].0, HeaderName::Route).is_empty(),
        "our Route consumed"
    );

    // A minute later the phone holds: re-INVITE with a=sendonly.
    h.advance(Duration::from_secs(60));
    assert!(h.outputs().is_empty(), "nothing fires in a held-up call");
    let hold = {
        let text = String::from_utf8(invite.to_bytes().to_vec()).unwrap();
        let text = text
            .replace(
                "To: <sip:1101@198.51.100.110;transport=UDP>",
                "To: <sip:1101@198.51.100.110;transport=UDP>;tag=dab28d84-1b8e-49f0-8a97-9cc960ae3ede",
            )
            .replace("CSeq: 2 INVITE", "CSeq: 3 INVITE")
            .replace("2e91df7b4228e515", "5c7d0a1e99b2f0aa")
            .replace("INVITE sip:1101@198.51.100.110;transport=UDP", "INVITE sip:198.51.100.110:5060")
            .replace("a=sendrecv", "a=sendonly");
        routed(&Bytes::from(text), &phone_route)
    };
    let hold_tx = h.request(hold.clone(), udp_from(PHONE));
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 1, "relayed in the dialog");
    assert_eq!(s[0].hop, addr(ASTERISK, 5060));
    assert_eq!(s[0].request.cseq().unwrap().seq, 3);
    assert!(body_of(&s[0].request).contains("a=sendonly"));
    assert!(header(&s[0].request, HeaderName::RecordRoute).is_empty());
    let held = {
        let text = String::from_utf8(fixture("asterisk-pjsip-200-ok-sdp.sip").to_vec())
            .unwrap()
            .replace("CSeq: 2 INVITE", "CSeq: 3 INVITE")
            .replace("a=sendrecv", "a=recvonly");
        as_answer_to(&Bytes::from(text), &s[0].request)
    };
    h.respond(s[0].branch, held);
    let r = responses(&h.outputs());
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (hold_tx, Some(200)));
    assert!(body_of(&r[0].1).contains("a=recvonly"));
    assert_eq!(h.engine.dialogs().count(), 1, "still one call");

    // Asterisk hangs up (its BYE from the trace, with its Route set).
    h.advance(Duration::from_secs(30));
    let bye_tx = h.request(routed(&fixture("asterisk-pjsip-bye.sip"), &rr), asterisk);
    let out = h.outputs();
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::CallEnded {
                reason: EndReason::ByeFromCallee,
                ..
            }
        )),
        "{:?}",
        events(&out)
    );
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].hop, addr("198.51.100.112", 60773));
    assert_eq!(ruri(&s[0].request), "sip:1102@198.51.100.112:60773");
    assert!(header(&s[0].request, HeaderName::Route).is_empty());
    assert_eq!(
        s[0].request
            .header_values_named("Reason")
            .collect::<Vec<_>>(),
        vec![&b"Q.850;cause=16"[..]],
        "Asterisk's Reason reaches the phone"
    );
    assert_eq!(h.engine.dialogs().count(), 0);
    h.respond(
        s[0].branch,
        Message::parse(
            s[0].request
                .response_with_tag(200, None)
                .build()
                .unwrap()
                .to_bytes(),
        )
        .unwrap(),
    );
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (bye_tx, Some(200)));
    assert!(h.engine.is_idle(), "nothing held after the call");
    assert_eq!(h.engine.poll_timeout(), None);
}

#[test]
fn asterisks_session_expires_ends_a_call_to_a_user_that_is_never_refreshed() {
    let mut h = harness();
    let invite = parse("asterisk-pjsip-invite-to-user.sip");
    let tx = h.request(invite.clone(), udp_from(&format!("{ASTERISK}:5060")));
    let out = h.outputs();
    let l = lookups(&out);
    assert!(
        matches!(&l[..], [(_, Query::Bindings { user })] if user == "1101"),
        "{l:?}"
    );
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::CallStarted { .. }))
    );
    h.lookup(
        l[0].0,
        LookupResult::Routes(binding("sip:1101@203.0.113.11:5070", "203.0.113.11", 5070)),
    );
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 1);
    let sent = s[0].request.clone();
    assert_eq!(ruri(&sent), "sip:1101@203.0.113.11:5070");
    assert_eq!(sent.body(), invite.body());
    assert_eq!(
        header(&sent, HeaderName::SessionExpires),
        vec!["1800".to_owned()]
    );
    assert_eq!(
        sent.header_values_named("Min-SE").collect::<Vec<_>>(),
        vec![&b"90"[..]]
    );
    assert_eq!(header(&sent, HeaderName::RecordRoute).len(), 1);
    // The phone answers as Zoiper did in the same trace: the session timer
    // with Asterisk's interval, the caller (Asterisk) refreshing.
    let ok = {
        let b = sent
            .response_with_tag(200, Some("aa1f1707"))
            .header(HeaderName::Contact, "<sip:1101@203.0.113.11:5070>")
            .header(HeaderName::Require, "timer")
            .header(HeaderName::SessionExpires, "1800;refresher=uac");
        let mut b = b;
        for rr in sent.header_values(HeaderName::RecordRoute) {
            b = b.header_bytes(HeaderName::RecordRoute, Bytes::copy_from_slice(rr));
        }
        Message::parse(b.build().unwrap().to_bytes()).unwrap()
    };
    h.respond(s[0].branch, ok);
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    assert_eq!(
        header(&r[0].1, HeaderName::SessionExpires),
        vec!["1800;refresher=uac".to_owned()]
    );
    let answered = h.now;
    let d = h.engine.dialogs().next().expect("a record").clone();
    let session = d.session.clone().expect("a session timer");
    assert_eq!(session.interval, Duration::from_secs(1800));
    assert!(session.expires_at > answered + Duration::from_secs(1700));
    assert!(session.expires_at <= answered + Duration::from_secs(1800));
    // Nothing before it; at it, a BYE to both legs.
    let before = session.expires_at - answered - Duration::from_secs(1);
    h.advance(before);
    assert!(sends(&h.outputs()).is_empty(), "not yet");
    h.advance(Duration::from_secs(2));
    let out = h.outputs();
    let s = sends(&out);
    assert_eq!(methods(&s), vec!["BYE", "BYE"]);
    let hops: Vec<NextHop> = s.iter().map(|s| s.hop.clone()).collect();
    assert!(hops.contains(&addr(ASTERISK, 5060)), "{hops:?}");
    assert!(hops.contains(&addr("203.0.113.11", 5070)), "{hops:?}");
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::CallEnded {
            reason: EndReason::SessionExpired,
            ..
        }
    )));
}

/// Asterisk's MWI NOTIFY inside a subscription dialog the proxy
/// record-routed: with our Route entry (and its `sld`) it follows the
/// Request-URI to the phone; naming us without a valid `sld` it gets 403.
#[test]
fn an_in_dialog_mwi_notify_follows_our_route_entry() {
    let notify = fixture("asterisk-pjsip-notify-mwi-ws.sip");
    let call_id = "s4di2vaoq0bi20t167mj";
    let mac = fixture_view().dialog_mac(call_id);
    let origin = from("198.51.100.59:8080", Transport::Ws);

    let mut h = harness();
    let ours = format!("<sip:192.0.2.1:5060;lr;sld={mac}>");
    let tx = h.request(routed(&notify, &[ours]), origin);
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].hop,
        NextHop::Addr(TargetAddr::new("203.0.113.70", 55874, Transport::Ws))
    );
    let sent = &s[0].request;
    assert_eq!(ruri(sent), "sip:s3agu7up@203.0.113.70:55874;transport=WS");
    assert!(
        header(sent, HeaderName::Route).is_empty(),
        "our entry consumed"
    );
    // A NOTIFY may be the one that sets up the subscription's dialog (RFC
    // 6665 §4.1.2.4): without a record of it, the proxy record-routes it.
    let rr = header(sent, HeaderName::RecordRoute);
    assert!(
        !rr.is_empty() && rr.iter().all(|r| r.contains("192.0.2.1")),
        "{rr:?}"
    );
    assert_eq!(
        sent.body(),
        parse("asterisk-pjsip-notify-mwi-ws.sip").body()
    );
    h.respond(
        s[0].branch,
        Message::parse(
            sent.response_with_tag(200, None)
                .build()
                .unwrap()
                .to_bytes(),
        )
        .unwrap(),
    );
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    assert!(h.engine.is_idle());

    let mut h = harness();
    let forged = "<sip:192.0.2.1:5060;lr;sld=00000000>".to_owned();
    let tx = h.request(routed(&notify, &[forged]), origin);
    let out = h.outputs();
    assert!(sends(&out).is_empty());
    let r = responses(&out);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(403)));
}
