//! A call through an outbound registration presents the registered
//! identity (`View::caller_identity`) in From, in virtual time: the PBX sees
//! it on the INVITE, the CANCEL, the caller's ACK and in-dialog requests and
//! the proxy's own BYE; the caller gets its own From back on every response,
//! and the PBX's requests reach the caller with the caller's From as To.

mod engine_support;

use engine_support::*;
use siplink_message::{HeaderName, Message};
use siplink_proxy::engine::{Engine, EngineConfig};

const IDENTITY: &str = "sip:proxy-account@pbx.test";
const CALLER_FROM: &str = "\"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1";
const PRESENTED: &str = "\"Alice\" <sip:proxy-account@pbx.test>;tag=8d7e4ca2c7f2e1b1";

fn harness() -> Harness {
    let mut h = Harness::new();
    let mut v = view();
    v.identities
        .push(("office-pbx".to_owned(), IDENTITY.to_owned()));
    h.engine = Engine::new(v, EngineConfig::default());
    h
}

fn from(m: &Message) -> String {
    header(m, HeaderName::From).remove(0)
}

fn to(m: &Message) -> String {
    header(m, HeaderName::To).remove(0)
}

/// baresip calls 4001 through "office-pbx"; answered.
fn answered_call(h: &mut Harness, call_id: &str) -> (Sent, Message) {
    let invite = baresip_invite("sip:4001@proxy.example.com", call_id, "");
    let (tx, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    let b = sent[0].clone();
    assert_eq!(from(&b.request), PRESENTED);
    h.respond(b.branch, pbx_reply(&b.request, 180, "as77", ""));
    let ok = pbx_reply(&b.request, 200, "as77", "");
    h.respond(b.branch, ok.clone());
    let r = responses(&h.outputs());
    assert_eq!(r.len(), 2);
    for (t, m) in &r {
        assert_eq!(*t, tx);
        assert_eq!(from(m), CALLER_FROM, "the caller's From on {m}");
    }
    let d = h.engine.dialogs().next().expect("a dialog record");
    assert_eq!(
        d.caller_as
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        Some(PRESENTED.to_owned())
    );
    (b, ok)
}

/// A request of the dialog from the phone (`from_phone`) or the PBX.
fn in_dialog(method: &str, ok: &Message, from_phone: bool, cseq: u32) -> Message {
    let mut rr = header(ok, HeaderName::RecordRoute);
    let call_id = ok.call_id().unwrap();
    let (ruri, via, f, t) = if from_phone {
        rr.reverse();
        (
            format!("sip:{PBX}:5060"),
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKid1;rport".to_owned(),
            CALLER_FROM.to_owned(),
            "<sip:4001@proxy.example.com>;tag=as77".to_owned(),
        )
    } else {
        (
            "sip:1001-0x55d0c3a8@192.0.2.10:5060".to_owned(),
            format!("SIP/2.0/UDP {PBX}:5060;rport;branch=z9hG4bKPjid2"),
            "<sip:4001@proxy.example.com>;tag=as77".to_owned(),
            PRESENTED.to_owned(),
        )
    };
    let routes: String = rr.iter().map(|r| format!("Route: {r}\n")).collect();
    msg(&format!(
        "{method} {ruri} SIP/2.0\nVia: {via}\nMax-Forwards: 70\n{routes}From: {f}\nTo: {t}\n\
         Call-ID: {call_id}\nCSeq: {cseq} {method}\nContent-Length: 0\n\n"
    ))
}

#[test]
fn the_pbx_sees_the_registered_identity_and_the_caller_its_own_from() {
    let mut h = harness();
    answered_call(&mut h, "id-1");
}

#[test]
fn a_cancel_carries_the_identity_of_its_invite() {
    let mut h = harness();
    let invite = baresip_invite("sip:4001@proxy.example.com", "id-cancel", "");
    let (_, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 180, "as9", ""));
    h.outputs();
    let cancel = msg("CANCEL sip:4001@proxy.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKid-cancelb;rport\n\
         Max-Forwards: 70\nTo: <sip:4001@proxy.example.com>\n\
         From: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Call-ID: id-cancel\nCSeq: 23456 CANCEL\nContent-Length: 0\n\n");
    h.request(cancel, udp_from("192.0.2.10:5060"));
    let c = sends(&h.outputs());
    assert_eq!(methods(&c), vec!["CANCEL"]);
    assert_eq!(from(&c[0].request), PRESENTED);
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 487, "as9", ""));
    let r = responses(&h.outputs());
    assert_eq!(from(&r[0].1), CALLER_FROM);
}

#[test]
fn in_dialog_requests_are_mapped_both_ways() {
    let mut h = harness();
    let (_, ok) = answered_call(&mut h, "id-dialog");
    // The caller's ACK and re-INVITE go out with the identity.
    h.request(
        in_dialog("ACK", &ok, true, 23456),
        udp_from("192.0.2.10:5060"),
    );
    let f = forwards(&h.outputs());
    assert_eq!(from(&f[0].0), PRESENTED);
    let tx = h.request(
        in_dialog("INVITE", &ok, true, 23457),
        udp_from("192.0.2.10:5060"),
    );
    let s = sends(&h.outputs());
    assert_eq!(from(&s[0].request), PRESENTED);
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "as77", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, from(&r[0].1)), (tx, CALLER_FROM.to_owned()));
    // The PBX's INFO reaches the phone with the phone's From as To, and
    // the phone's 200 goes back with the identity.
    let tx = h.request(
        in_dialog("INFO", &ok, false, 102),
        udp_from("198.51.100.10:5060"),
    );
    let s = sends(&h.outputs());
    assert_eq!(to(&s[0].request), CALLER_FROM);
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "x", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, to(&r[0].1)), (tx, PRESENTED.to_owned()));
    // A 2xx retransmission to the caller has the caller's From.
    h.engine.handle_stray_response(ok.clone(), h.now);
    let f = forwards(&h.outputs());
    assert_eq!(from(&f[0].0), CALLER_FROM);
}

#[test]
fn the_proxys_own_bye_to_the_pbx_carries_the_identity() {
    let mut h = harness();
    answered_call(&mut h, "id-bye");
    h.advance(EngineConfig::default().max_call_duration);
    let byes = sends(&h.outputs());
    assert_eq!(methods(&byes), vec!["BYE", "BYE"]);
    let to_pbx = byes.iter().find(|b| b.hop == addr(PBX, 5060)).unwrap();
    assert_eq!(from(&to_pbx.request), PRESENTED);
    let to_phone = byes.iter().find(|b| b.hop != addr(PBX, 5060)).unwrap();
    assert_eq!(to(&to_phone.request), CALLER_FROM);
}

#[test]
fn a_users_contacts_keep_the_callers_from() {
    let mut h = harness();
    let invite = baresip_invite("sip:1002@proxy.example.com", "id-user", "");
    h.request(invite, udp_from("192.0.2.10:5060"));
    let token = lookups(&h.outputs())[0].0;
    h.lookup(
        token,
        siplink_proxy::engine::LookupResult::Routes(vec![siplink_proxy::engine::RouteGroup {
            connection: None,
            targets: vec![target("192.0.2.60", 5060)],
        }]),
    );
    let s = sends(&h.outputs());
    assert_eq!(from(&s[0].request), CALLER_FROM);
}
