//! A PBX challenging a trunk call, in virtual time: the engine resends the
//! INVITE with the connection's digest credentials (CSeq one up, a new
//! branch), gives the caller its own CSeq back on every response, and keeps
//! the offset for the rest of the dialog (ACK, BYE, re-INVITE, the BYE it
//! sends itself, 2xx retransmissions).

mod engine_support;

use engine_support::*;
use siplink_auth::ClientCredentials;
use siplink_message::{HeaderName, Message};
use siplink_proxy::engine::{EndReason, Engine, EngineConfig, Output};

/// The harness with credentials for "office-pbx".
fn harness() -> Harness {
    let mut h = Harness::new();
    let mut v = view();
    v.credentials.push((
        "office-pbx".to_owned(),
        ClientCredentials::password("trunkuser", "trunk-secret"),
    ));
    h.engine = Engine::new(v, EngineConfig::default());
    h
}

const CHALLENGE: &str = "Proxy-Authenticate: Digest realm=\"asterisk\", nonce=\"1733650000/abcd\", opaque=\"5c1a\", algorithm=MD5, qop=\"auth\"\n";

fn cseq(m: &Message) -> (u32, String) {
    let c = m.cseq().unwrap();
    (c.seq, c.method.to_string())
}

/// baresip calls 4001 through the trunk; the PBX answers 407, then 180 and
/// 200 to the resent INVITE. Returns the resent INVITE, the PBX's 200 and
/// what the caller got.
fn challenged_call(h: &mut Harness, call_id: &str) -> (Sent, Message, Vec<Output>) {
    let invite = baresip_invite("sip:4001@proxy.example.com", call_id, "");
    let (tx, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    assert_eq!(sent.len(), 1);
    let first = sent[0].clone();
    assert_eq!(cseq(&first.request), (23456, "INVITE".into()));
    h.respond(
        first.branch,
        pbx_reply(&first.request, 407, "as-ch", CHALLENGE),
    );
    let out = h.outputs();
    assert!(responses(&out).is_empty(), "the 407 is answered here");
    let again = sends(&out);
    assert_eq!(methods(&again), vec!["INVITE"]);
    let again = again[0].clone();
    assert_ne!(again.branch, first.branch);
    assert_eq!(cseq(&again.request), (23457, "INVITE".into()));
    assert_ne!(
        again.request.top_via().unwrap().branch(),
        first.request.top_via().unwrap().branch(),
        "a new transaction"
    );
    let auth = header(&again.request, HeaderName::ProxyAuthorization);
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert!(auth[0].contains("username=\"trunkuser\""), "{auth:?}");
    assert!(auth[0].contains("realm=\"asterisk\""), "{auth:?}");
    assert_eq!(again.hop, first.hop);
    h.respond(again.branch, pbx_reply(&again.request, 180, "as77", ""));
    let ok = pbx_reply(&again.request, 200, "as77", "");
    h.respond(again.branch, ok.clone());
    let out = h.outputs();
    let r = responses(&out);
    assert_eq!(
        r.iter()
            .map(|(t, m)| (*t, m.status().unwrap(), cseq(m).0))
            .collect::<Vec<_>>(),
        vec![(tx, 180, 23456), (tx, 200, 23456)],
        "the caller's CSeq on every response"
    );
    (again, ok, out)
}

#[test]
fn a_pbx_challenge_is_answered_with_the_connections_credentials() {
    let mut h = harness();
    challenged_call(&mut h, "auth-1");
    assert_eq!(h.engine.dialogs().count(), 1);
    assert_eq!(h.engine.dialogs().next().unwrap().cseq_delta, 1);
}

#[test]
fn without_credentials_the_pbx_challenge_goes_up_to_the_caller() {
    let mut h = Harness::new();
    let invite = baresip_invite("sip:4001@proxy.example.com", "auth-none", "");
    let (tx, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    h.respond(
        sent[0].branch,
        pbx_reply(&sent[0].request, 407, "as-ch", CHALLENGE),
    );
    let out = h.outputs();
    assert!(sends(&out).is_empty(), "nothing resent");
    let r = responses(&out);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(407)));
    assert_eq!(header(&r[0].1, HeaderName::ProxyAuthenticate).len(), 1);
}

#[test]
fn a_second_challenge_is_not_answered_again() {
    let mut h = harness();
    let invite = baresip_invite("sip:4001@proxy.example.com", "auth-twice", "");
    let (tx, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    h.respond(
        sent[0].branch,
        pbx_reply(&sent[0].request, 407, "as-ch", CHALLENGE),
    );
    let again = sends(&h.outputs())[0].clone();
    h.respond(
        again.branch,
        pbx_reply(&again.request, 407, "as-ch2", CHALLENGE),
    );
    let out = h.outputs();
    assert!(sends(&out).is_empty(), "no third INVITE");
    let r = responses(&out);
    assert_eq!((r[0].0, r[0].1.status()), (tx, Some(403)));
    assert_eq!(cseq(&r[0].1).0, 23456);
    assert!(h.engine.is_idle() || h.engine.dialogs().count() == 0);
}

#[test]
fn a_cancel_after_the_resend_cancels_the_resent_invite() {
    let mut h = harness();
    let invite = baresip_invite("sip:4001@proxy.example.com", "auth-cancel", "");
    let (_, sent) = h.call(
        invite.clone(),
        udp_from("192.0.2.10:5060"),
        vec![group("office-pbx", vec![target(PBX, 5060)])],
    );
    h.respond(
        sent[0].branch,
        pbx_reply(&sent[0].request, 407, "as-ch", CHALLENGE),
    );
    let again = sends(&h.outputs())[0].clone();
    h.respond(again.branch, pbx_reply(&again.request, 180, "as9", ""));
    h.outputs();
    let cancel = msg("CANCEL sip:4001@proxy.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKauth-cancelb;rport\n\
         Max-Forwards: 70\nTo: <sip:4001@proxy.example.com>\n\
         From: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         Call-ID: auth-cancel\nCSeq: 23456 CANCEL\nContent-Length: 0\n\n");
    h.request(cancel, udp_from("192.0.2.10:5060"));
    let out = h.outputs();
    let c = sends(&out);
    assert_eq!(methods(&c), vec!["CANCEL"]);
    assert_eq!(cseq(&c[0].request), (23457, "CANCEL".into()));
    assert_eq!(
        c[0].request.top_via().unwrap().branch(),
        again.request.top_via().unwrap().branch(),
        "the resent INVITE's branch"
    );
}

/// An in-dialog request from the phone through our Record-Route.
fn from_phone(method: &str, ok: &Message, cseq: u32) -> Message {
    let routes: String = header(ok, HeaderName::RecordRoute)
        .iter()
        .rev()
        .map(|r| format!("Route: {r}\n"))
        .collect();
    let call_id = ok.call_id().unwrap();
    msg(&format!(
        "{method} sip:{PBX}:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{method}{cseq};rport\n\
         Max-Forwards: 70\n{routes}\
         From: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
         To: <sip:4001@proxy.example.com>;tag=as77\n\
         Call-ID: {call_id}\nCSeq: {cseq} {method}\nContent-Length: 0\n\n"
    ))
}

#[test]
fn the_dialog_keeps_the_cseq_offset_towards_the_pbx() {
    let mut h = harness();
    let (_, ok, _) = challenged_call(&mut h, "auth-dialog");
    // The caller's ACK carries its INVITE's CSeq; the PBX's carries ours.
    h.request(from_phone("ACK", &ok, 23456), udp_from("192.0.2.10:5060"));
    let f = forwards(&h.outputs());
    assert_eq!(f.len(), 1);
    assert_eq!(cseq(&f[0].0), (23457, "ACK".into()));
    // A re-INVITE: up on the way out, back down on the way back.
    let tx = h.request(
        from_phone("INVITE", &ok, 23457),
        udp_from("192.0.2.10:5060"),
    );
    let s = sends(&h.outputs());
    assert_eq!(cseq(&s[0].request), (23458, "INVITE".into()));
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "as77", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, cseq(&r[0].1).0), (tx, 23457));
    // A retransmitted 2xx of the first INVITE after the fork is gone.
    h.engine.handle_stray_response(ok.clone(), h.now);
    let f = forwards(&h.outputs());
    assert_eq!(f.len(), 1);
    assert_eq!(cseq(&f[0].0).0, 23456);
    // The BYE the proxy sends itself (maximum duration) is above both.
    h.advance(EngineConfig::default().max_call_duration);
    let out = h.outputs();
    let byes = sends(&out);
    assert_eq!(methods(&byes), vec!["BYE", "BYE"]);
    let to_pbx = byes
        .iter()
        .find(|b| b.hop == addr(PBX, 5060))
        .expect("a BYE to the PBX");
    assert_eq!(cseq(&to_pbx.request).0, 23459);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        siplink_proxy::engine::Event::CallEnded {
            reason: EndReason::MaxDuration,
            ..
        }
    )));
}

#[test]
fn a_bye_from_the_phone_goes_up_and_its_200_comes_back_down() {
    let mut h = harness();
    let (_, ok, _) = challenged_call(&mut h, "auth-bye");
    let tx = h.request(from_phone("BYE", &ok, 23457), udp_from("192.0.2.10:5060"));
    let s = sends(&h.outputs());
    assert_eq!(cseq(&s[0].request), (23458, "BYE".into()));
    h.respond(s[0].branch, pbx_reply(&s[0].request, 200, "as77", ""));
    let r = responses(&h.outputs());
    assert_eq!((r[0].0, cseq(&r[0].1)), (tx, (23457, "BYE".into())));
    assert!(h.engine.is_idle(), "{:?}", h.engine.sizes());
}
