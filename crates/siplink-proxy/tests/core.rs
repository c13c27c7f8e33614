//! The RFC 3261 §16 rules, sans-IO.

use siplink_message::{HeaderName, Message};
use siplink_proxy::core::{
    BestResponse, Check, Local, branch, consume_own_routes, decrement_max_forwards, is_loop,
    loop_cookie, pop_via, push_via, record_route_value, remove_own_credentials, routed_by_us,
    stateless_branch,
};

fn msg(text: &str) -> Message {
    Message::parse(text.replace('\n', "\r\n")).expect("parses")
}

fn invite(extra: &str) -> Message {
    msg(&format!(
        "INVITE sip:4001@a.test SIP/2.0\n\
         Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKabc\n\
         From: <sip:1001@a.test>;tag=f1\n\
         To: <sip:4001@a.test>\n\
         Call-ID: c1\n\
         CSeq: 1 INVITE\n\
         {extra}Content-Length: 0\n\n"
    ))
}

fn local() -> Local {
    Local::new(["a.test".to_owned(), "192.0.2.1".to_owned()], [5060])
}

#[test]
fn max_forwards_decrements_inserts_and_stops_at_zero() {
    let mut m = invite("Max-Forwards: 70\n");
    assert_eq!(decrement_max_forwards(&mut m), Check::Forward);
    assert_eq!(m.max_forwards().unwrap(), Some(69));
    let mut m = invite("");
    assert_eq!(decrement_max_forwards(&mut m), Check::Forward);
    assert_eq!(m.reparse().unwrap().max_forwards().unwrap(), Some(70));
    let mut m = invite("Max-Forwards: 0\n");
    assert_eq!(
        decrement_max_forwards(&mut m),
        Check::Reject(483, "Too Many Hops")
    );
}

#[test]
fn own_routes_are_removed_and_others_kept() {
    let mut m = invite(
        "Route: <sip:192.0.2.1:5060;lr>, <sip:a.test;transport=tcp;lr>\n\
         Route: <sip:pbx.example.com;lr>\n",
    );
    let c = consume_own_routes(&mut m, &local());
    assert_eq!(c.routes.len(), 2);
    assert!(!c.strict_fixed);
    let m = m.reparse().unwrap();
    let routes = m.route().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].uri.as_str(), "sip:pbx.example.com;lr");
}

#[test]
fn a_route_on_another_port_is_not_ours() {
    let mut m = invite("Route: <sip:192.0.2.1:5070;lr>\n");
    let c = consume_own_routes(&mut m, &local());
    assert!(c.routes.is_empty());
    assert_eq!(m.route().unwrap().len(), 1);
}

#[test]
fn strict_router_before_us_is_repaired() {
    // RFC 3261 §16.4: the Request-URI is our Record-Route value; the last
    // Route holds the real target.
    let mut m = msg("BYE sip:192.0.2.1:5060;lr SIP/2.0\n\
         Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx\n\
         From: <sip:1001@a.test>;tag=f1\n\
         To: <sip:4001@a.test>;tag=t1\n\
         Call-ID: c1\n\
         CSeq: 2 BYE\n\
         Route: <sip:10.0.0.7;lr>, <sip:4001@10.0.0.8:5062>\n\
         Content-Length: 0\n\n");
    let c = consume_own_routes(&mut m, &local());
    assert!(c.strict_fixed);
    let m = m.reparse().unwrap();
    assert_eq!(m.request_uri().unwrap().as_str(), "sip:4001@10.0.0.8:5062");
    assert_eq!(m.route().unwrap().len(), 1);
}

#[test]
fn a_loop_is_seen_and_a_spiral_is_not() {
    let m = invite("");
    let cookie = loop_cookie(&m);
    let mut sent = m.clone();
    push_via(&mut sent, &branch(&cookie, 0));
    let back = sent.reparse().unwrap();
    // Unchanged: the same cookie is in our Via: a loop.
    assert!(is_loop(&back, &loop_cookie(&back)));
    // Changed Request-URI (retargeted): a spiral.
    let mut spiral = back.clone();
    spiral.set_request_uri("sip:4002@a.test");
    let spiral = spiral.reparse().unwrap();
    assert!(!is_loop(&spiral, &loop_cookie(&spiral)));
    // Branches of forks differ but share the cookie.
    assert_ne!(branch(&cookie, 0), branch(&cookie, 1));
    assert!(branch(&cookie, 1).starts_with("z9hG4bK"));
}

#[test]
fn via_push_and_pop() {
    let mut m = invite("");
    push_via(&mut m, "z9hG4bKsl1.0.x");
    let m2 = m.reparse().unwrap();
    assert_eq!(m2.via().unwrap().len(), 2);
    assert_eq!(m2.top_via().unwrap().branch(), Some("z9hG4bKsl1.0.x"));
    let mut r = m2.response(180).build().unwrap();
    pop_via(&mut r);
    let r = r.reparse().unwrap();
    assert_eq!(r.via().unwrap().len(), 1);
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKabc"));
}

#[test]
fn record_route_values() {
    assert_eq!(
        record_route_value("192.0.2.1", 5060, "UDP", None, None),
        "<sip:192.0.2.1:5060;lr>"
    );
    assert_eq!(
        record_route_value("192.0.2.1", 8080, "WS", Some("fl1x2"), Some("abcd")),
        "<sip:fl1x2@192.0.2.1:8080;transport=ws;lr;sld=abcd>"
    );
    assert_eq!(
        record_route_value("::1", 5060, "TCP", None, None),
        "<sip:[::1]:5060;transport=tcp;lr>"
    );
}

#[test]
fn only_our_own_record_route_lets_an_in_dialog_request_through() {
    let ours = format!(
        "Route: {}\n",
        record_route_value("192.0.2.1", 5060, "UDP", None, Some("1234abcd"))
    );
    let mut m = invite(&ours);
    let c = consume_own_routes(&mut m, &local());
    assert!(routed_by_us(&c, "1234abcd"));
    assert!(!routed_by_us(&c, "00000000"));
    // A Route that just names us (what an attacker would write).
    let mut m = invite("Route: <sip:192.0.2.1:5060;lr>\n");
    let c = consume_own_routes(&mut m, &local());
    assert_eq!(c.routes.len(), 1);
    assert!(!routed_by_us(&c, "1234abcd"));
    // Through a strict router: our entry is the Request-URI.
    let mut m = msg("BYE sip:192.0.2.1:5060;lr;sld=1234abcd SIP/2.0\n\
         Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx\n\
         From: <sip:1001@a.test>;tag=f1\n\
         To: <sip:4001@a.test>;tag=t1\n\
         Call-ID: c1\n\
         CSeq: 2 BYE\n\
         Route: <sip:4001@10.0.0.8:5062>\n\
         Content-Length: 0\n\n");
    let c = consume_own_routes(&mut m, &local());
    assert!(c.strict_fixed);
    assert!(routed_by_us(&c, "1234abcd"));
}

fn final_response(req: &Message, status: u16, extra: Option<(HeaderName, &str)>) -> Message {
    let mut b = req.response(status);
    if let Some((n, v)) = extra {
        b = b.header(n, v);
    }
    b.build().unwrap()
}

#[test]
fn best_response_rules() {
    let req = invite("");
    // 6xx beats everything.
    let mut b = BestResponse::new();
    b.offer(final_response(&req, 486, None));
    b.offer(final_response(&req, 603, None));
    b.offer(final_response(&req, 302, None));
    assert_eq!(b.take(&req).unwrap().status(), Some(603));
    // Lowest class otherwise: 3xx before 4xx before 5xx.
    let mut b = BestResponse::new();
    b.offer(final_response(&req, 500, None));
    b.offer(final_response(&req, 404, None));
    b.offer(final_response(&req, 302, None));
    assert_eq!(b.take(&req).unwrap().status(), Some(302));
    // 503 is never passed upstream.
    let mut b = BestResponse::new();
    b.offer(final_response(&req, 503, None));
    assert_eq!(b.take(&req).unwrap().status(), Some(500));
    // Challenges of every branch are gathered.
    let mut b = BestResponse::new();
    b.offer(final_response(
        &req,
        401,
        Some((
            HeaderName::WwwAuthenticate,
            "Digest realm=\"a\", nonce=\"1\"",
        )),
    ));
    b.offer(final_response(
        &req,
        407,
        Some((
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"b\", nonce=\"2\"",
        )),
    ));
    b.offer(final_response(&req, 486, None));
    let r = b.take(&req).unwrap().reparse().unwrap();
    assert!(matches!(r.status(), Some(401 | 407)));
    assert_eq!(r.www_authenticate().unwrap().len(), 1);
    assert_eq!(r.proxy_authenticate().unwrap().len(), 1);
    assert!(BestResponse::new().take(&req).is_none());
}

#[test]
fn a_retransmitted_ack_gets_the_same_branch() {
    let ack = |branch: &str| {
        msg(&format!(
            "ACK sip:4001@10.0.0.8 SIP/2.0\n\
             Via: SIP/2.0/UDP 10.0.0.9;branch={branch}\n\
             From: <sip:1001@a.test>;tag=f1\n\
             To: <sip:4001@a.test>;tag=t1\n\
             Call-ID: c1\n\
             CSeq: 1 ACK\n\
             Content-Length: 0\n\n"
        ))
    };
    let (a, b, c) = (ack("z9hG4bK1"), ack("z9hG4bK1"), ack("z9hG4bK2"));
    let cookie = loop_cookie(&a);
    assert_eq!(stateless_branch(&a, &cookie), stateless_branch(&b, &cookie));
    assert_ne!(stateless_branch(&a, &cookie), stateless_branch(&c, &cookie));
    assert!(stateless_branch(&a, &cookie).starts_with("z9hG4bK"));
}

#[test]
fn our_realms_credentials_are_removed_and_others_kept() {
    let ours = "Proxy-Authorization: Digest username=\"1001\", realm=\"a.test\", nonce=\"n1\", uri=\"sip:4001@a.test\", response=\"0123456789abcdef0123456789abcdef\"\n";
    let theirs = "Proxy-Authorization: Digest username=\"1001\", realm=\"upstream.test\", nonce=\"n2\", uri=\"sip:4001@a.test\", response=\"fedcba9876543210fedcba9876543210\"\n";
    let realms = |m: &Message| -> Vec<String> {
        m.proxy_authorization()
            .unwrap()
            .iter()
            .map(|c| c.realm().unwrap_or_default().to_owned())
            .collect()
    };
    // Ours between two of another realm: only ours goes, the order stays.
    let mut m = invite(&format!("{theirs}{ours}{}", theirs.replace("n2", "n3")));
    assert_eq!(remove_own_credentials(&mut m, "a.test"), 1);
    let m = m.reparse().unwrap();
    assert_eq!(realms(&m), ["upstream.test", "upstream.test"]);
    assert_eq!(m.proxy_authorization().unwrap()[1].nonce(), Some("n3"));
    // Only ours: no Proxy-Authorization left.
    let mut m = invite(ours);
    assert_eq!(remove_own_credentials(&mut m, "a.test"), 1);
    assert_eq!(
        m.reparse().unwrap().count(HeaderName::ProxyAuthorization),
        0
    );
    // None of ours (the realm is compared as written): nothing changes.
    let mut m = invite(theirs);
    assert_eq!(remove_own_credentials(&mut m, "A.TEST"), 0);
    assert_eq!(remove_own_credentials(&mut m, "a.test"), 0);
    assert_eq!(m.reparse().unwrap().to_bytes(), invite(theirs).to_bytes());
}
