//! A phone's SUBSCRIBE to a number over a trunk whose PBX challenges it, in
//! virtual time: the engine resends it with the connection's credentials
//! (CSeq one up) and Record-Routes it; no dialog record is kept for a
//! subscription, so our Record-Route entry carries the CSeq offset (`cs`,
//! bound by a MAC to the Call-ID and the subscriber's From tag). The
//! subscriber's refresh/unsubscribe through that route goes out one up and
//! its response comes back down (Kamailio's presence refuses a CSeq that does
//! not grow); the PBX's NOTIFYs and unchallenged subscriptions are left alone.
//! And a challenged MESSAGE goes again with its body, its 200 back down.

mod engine_support;

use engine_support::*;
use siplink_auth::ClientCredentials;
use siplink_message::{HeaderName, Message};
use siplink_proxy::engine::{Engine, EngineConfig};

const CHALLENGE: &str = "Proxy-Authenticate: Digest realm=\"pbx.test\", nonce=\"6751a1b2c3\", algorithm=MD5, qop=\"auth\"\n";
const PHONE: &str = "192.0.2.10:5060";
const PHONE_TAG: &str = "8d7e4ca2c7f2e1b1";

fn harness() -> Harness {
    let mut h = Harness::new();
    let mut v = view();
    v.credentials.push((
        "office-pbx".to_owned(),
        ClientCredentials::password("proxy", "office-secret"),
    ));
    h.engine = Engine::new(v, EngineConfig::default());
    h
}

fn cseq(m: &Message) -> (u32, String) {
    let c = m.cseq().unwrap();
    (c.seq, c.method.to_string())
}

/// The phone's SUBSCRIBE (CSeq `seq`, Expires `expires`), out of dialog or
/// (with `in_dialog` = the 2xx it got) through our Record-Route.
fn subscribe(call_id: &str, seq: u32, expires: u32, in_dialog: Option<&Message>) -> Message {
    let (ruri, routes, to) = match in_dialog {
        None => (
            "sip:4001@proxy.example.com".to_owned(),
            String::new(),
            "<sip:4001@proxy.example.com>".to_owned(),
        ),
        Some(ok) => (
            format!("sip:{PBX}:5060"),
            header(ok, HeaderName::RecordRoute)
                .iter()
                .rev()
                .map(|r| format!("Route: {r}\n"))
                .collect(),
            header(ok, HeaderName::To)[0].clone(),
        ),
    };
    msg(&format!(
        "SUBSCRIBE {ruri} SIP/2.0\n\
         Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK{call_id}-{seq};rport\n\
         Max-Forwards: 70\n{routes}\
         From: <sip:1001@proxy.example.com>;tag={PHONE_TAG}\n\
         To: {to}\n\
         Call-ID: {call_id}\nCSeq: {seq} SUBSCRIBE\n\
         Contact: <sip:1001@{PHONE}>\n\
         Event: dialog\nAccept: application/dialog-info+xml\nExpires: {expires}\n\
         Content-Length: 0\n\n"
    ))
}

/// The PBX's NOTIFY (CSeq `seq`) in the subscription `ok` set up, through the
/// Record-Route it got.
fn notify(ok: &Message, seq: u32) -> Message {
    let routes: String = header(ok, HeaderName::RecordRoute)
        .iter()
        .map(|r| format!("Route: {r}\n"))
        .collect();
    let to_tag = ok.to_tag().unwrap().unwrap();
    let call_id = ok.call_id().unwrap();
    msg(&format!(
        "NOTIFY sip:1001@{PHONE} SIP/2.0\n\
         Via: SIP/2.0/UDP {PBX}:5060;branch=z9hG4bKnotify{seq}\n\
         Max-Forwards: 70\n{routes}\
         From: <sip:4001@pbx.test>;tag={to_tag}\n\
         To: <sip:1001@proxy.example.com>;tag={PHONE_TAG}\n\
         Call-ID: {call_id}\nCSeq: {seq} NOTIFY\n\
         Contact: <sip:{PBX}:5060>\n\
         Event: dialog\nSubscription-State: active;expires=120\n\
         Content-Length: 0\n\n"
    ))
}

/// The subscription set up through the proxy, the PBX challenging it if
/// `challenge`: returns what the PBX got last and the 202 the phone got.
fn subscribed(h: &mut Harness, call_id: &str, challenge: bool) -> (Sent, Message) {
    let (tx, sent) = h.call(
        subscribe(call_id, 7, 120, None),
        udp_from(PHONE),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    assert_eq!(methods(&sent), vec!["SUBSCRIBE"]);
    let mut at_pbx = sent[0].clone();
    assert_eq!(cseq(&at_pbx.request), (7, "SUBSCRIBE".into()));
    let rr = header(&at_pbx.request, HeaderName::RecordRoute);
    assert!(rr.iter().any(|r| r.contains(";sld=")), "{rr:?}");
    if challenge {
        h.respond(
            at_pbx.branch,
            pbx_reply(&at_pbx.request, 407, "ch", CHALLENGE),
        );
        let out = h.outputs();
        assert!(responses(&out).is_empty(), "the 407 is answered here");
        let again = sends(&out);
        assert_eq!(methods(&again), vec!["SUBSCRIBE"]);
        at_pbx = again[0].clone();
        assert_eq!(cseq(&at_pbx.request), (8, "SUBSCRIBE".into()));
        let auth = header(&at_pbx.request, HeaderName::ProxyAuthorization);
        assert!(
            auth.len() == 1 && auth[0].contains("username=\"proxy\""),
            "{auth:?}"
        );
    }
    h.respond(
        at_pbx.branch,
        pbx_reply(&at_pbx.request, 202, "pres1", "Expires: 120\n"),
    );
    let r = responses(&h.outputs());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, tx);
    assert_eq!(r[0].1.status(), Some(202));
    assert_eq!(cseq(&r[0].1), (7, "SUBSCRIBE".into()), "the phone's CSeq");
    (at_pbx, r[0].1.clone())
}

/// The phone unsubscribes through the route set of `ok` with CSeq `seq`:
/// returns the CSeq the PBX sees and the one the phone gets back.
fn unsubscribe(h: &mut Harness, ok: &Message, call_id: &str, seq: u32) -> (u32, u32) {
    let tx = h.request(subscribe(call_id, seq, 0, Some(ok)), udp_from(PHONE));
    let out = h.outputs();
    let s = sends(&out);
    assert_eq!(methods(&s), vec!["SUBSCRIBE"], "{out:?}");
    assert_eq!(s[0].hop, addr(PBX, 5060));
    assert!(header(&s[0].request, HeaderName::Route).is_empty());
    let up = cseq(&s[0].request).0;
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "pres1", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    (up, cseq(&r[0].1).0)
}

#[test]
fn a_challenged_subscription_keeps_the_cseq_offset_towards_the_pbx() {
    let mut h = harness();
    let (at_pbx, ok) = subscribed(&mut h, "sub-auth", true);
    let rr = header(&at_pbx.request, HeaderName::RecordRoute);
    assert!(
        rr.iter()
            .all(|r| r.contains(";sld=") && r.contains(";cs=1.")),
        "our Record-Route carries the offset: {rr:?}"
    );
    assert_eq!(header(&ok, HeaderName::RecordRoute), rr);

    // The PBX's NOTIFYs reach the phone with the PBX's own numbers.
    for seq in [1, 2] {
        let tx = h.request(notify(&ok, seq), udp_from(&format!("{PBX}:5060")));
        let s = sends(&h.outputs());
        assert_eq!(methods(&s), vec!["NOTIFY"]);
        assert_eq!(s[0].hop, addr("192.0.2.10", 5060));
        assert_eq!(cseq(&s[0].request), (seq, "NOTIFY".into()));
        h.respond(s[0].branch, pbx_reply(&s[0].request, 200, PHONE_TAG, ""));
        let r = responses(&h.outputs());
        assert_eq!((r[0].0, cseq(&r[0].1)), (tx, (seq, "NOTIFY".into())));
    }

    // The phone's unsubscribe (its next number, 8) goes out as 9: above the
    // 8 the PBX took for the SUBSCRIBE with credentials.
    assert_eq!(unsubscribe(&mut h, &ok, "sub-auth", 8), (9, 8));
    assert!(h.engine.is_idle(), "{:?}", h.engine.sizes());
}

#[test]
fn an_unchallenged_subscription_keeps_its_numbers() {
    let mut h = harness();
    let (at_pbx, ok) = subscribed(&mut h, "sub-plain", false);
    let rr = header(&at_pbx.request, HeaderName::RecordRoute);
    assert!(rr.iter().all(|r| !r.contains(";cs=")), "{rr:?}");
    assert_eq!(unsubscribe(&mut h, &ok, "sub-plain", 8), (8, 8));
}

#[test]
fn an_offset_that_does_not_match_its_mac_is_ignored() {
    let mut h = harness();
    let (_, ok) = subscribed(&mut h, "sub-forged", true);
    // The phone raises the offset in its route set: the MAC no longer
    // matches, nothing is added. Another subscriber's From tag does not
    // match either (the same route set, another dialog).
    let text = ok.to_bytes().to_vec();
    let forged = String::from_utf8(text).unwrap().replace(";cs=1.", ";cs=5.");
    let forged = Message::parse(forged.into_bytes()).unwrap();
    assert_eq!(unsubscribe(&mut h, &forged, "sub-forged", 8), (8, 8));
}

#[test]
fn a_challenged_message_goes_again_with_its_body_and_its_200_comes_back() {
    let mut h = harness();
    let text = "Lunch at 12:30? \u{2014} 1001";
    let message = msg(&format!(
        "MESSAGE sip:4002@proxy.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP {PHONE};branch=z9hG4bKmsg1;rport\n\
         Max-Forwards: 70\n\
         From: <sip:1001@proxy.example.com>;tag={PHONE_TAG}\n\
         To: <sip:4002@proxy.example.com>\n\
         Call-ID: msg-auth\nCSeq: 3 MESSAGE\n\
         Content-Type: text/plain;charset=UTF-8\n\
         Content-Length: {}\n\n{text}",
        text.len()
    ));
    let (tx, sent) = h.call(
        message,
        udp_from(PHONE),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    assert_eq!(methods(&sent), vec!["MESSAGE"]);
    assert!(
        header(&sent[0].request, HeaderName::RecordRoute).is_empty(),
        "a MESSAGE makes no dialog"
    );
    h.respond(
        sent[0].branch,
        pbx_reply(&sent[0].request, 407, "ch", CHALLENGE),
    );
    let out = h.outputs();
    assert!(responses(&out).is_empty(), "the 407 is answered here");
    let again = sends(&out);
    assert_eq!(methods(&again), vec!["MESSAGE"]);
    let again = &again[0];
    assert_eq!(cseq(&again.request), (4, "MESSAGE".into()));
    assert_eq!(again.request.body().as_ref(), text.as_bytes());
    assert_eq!(
        header(&again.request, HeaderName::ContentType),
        vec!["text/plain;charset=UTF-8".to_owned()]
    );
    assert_eq!(
        header(&again.request, HeaderName::ProxyAuthorization).len(),
        1
    );
    h.respond(again.branch, pbx_reply(&again.request, 200, "m1", ""));
    let r = responses(&h.outputs());
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(200)));
    assert_eq!(cseq(&r[0].1), (3, "MESSAGE".into()));
    assert!(h.engine.is_idle(), "{:?}", h.engine.sizes());
}
