//! Each request's fate, and the §16 checks around it: Max-Forwards, loops
//! and spirals, the strict-router repair.

mod engine_support;

use engine_support::*;
use siplink_message::HeaderName;
use siplink_proxy::engine::{Caller, Fate, View, dispatch};

fn fate(text: &str, from: &str) -> Fate {
    dispatch(&msg(text), &udp_from(from), &view()).fate
}

fn request(method: &str, ruri: &str, extra: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-d8754z-1;rport\n\
         Max-Forwards: 70\n\
         To: <{ruri}>\n\
         From: <sip:1001@proxy.example.com>;tag=5a1b\n\
         Call-ID: d-{method}\n\
         CSeq: 1 {method}\n\
         {extra}Content-Length: 0\n\n"
    )
}

#[test]
fn register_goes_to_the_registrar_of_our_domains_only() {
    assert_eq!(
        fate(
            &request("REGISTER", "sip:proxy.example.com", ""),
            "192.0.2.10:5060"
        ),
        Fate::Registrar
    );
    assert_eq!(
        fate(
            &request("REGISTER", "sip:other.example.net", ""),
            "192.0.2.10:5060"
        ),
        Fate::Answer(403, "Not A Domain Of This Registrar")
    );
}

#[test]
fn options_to_the_proxy_is_answered_here() {
    // SIPp's and Kamailio's keepalive shapes: to the domain and to the address.
    assert_eq!(
        fate(
            &request("OPTIONS", "sip:proxy.example.com", ""),
            "192.0.2.10:5060"
        ),
        Fate::Options
    );
    assert_eq!(
        fate(
            &request("OPTIONS", "sip:192.0.2.1:5060", ""),
            "198.51.100.10:5060"
        ),
        Fate::Options
    );
    // Even with Max-Forwards 0 (RFC 3261 §16.3 step 3 lets a proxy answer).
    assert_eq!(
        fate(
            &request("OPTIONS", "sip:proxy.example.com", "")
                .replace("Max-Forwards: 70", "Max-Forwards: 0"),
            "192.0.2.10:5060"
        ),
        Fate::Options
    );
    // A PBX's qualify ping to the Contact we registered with it.
    assert_eq!(
        fate(
            &request("OPTIONS", "sip:sl-4f2a@192.0.2.1:5060", ""),
            "198.51.100.10:5060"
        ),
        Fate::Options
    );
    // An OPTIONS to one of our users goes to the user.
    assert!(matches!(
        fate(
            &request("OPTIONS", "sip:1002@proxy.example.com", ""),
            "192.0.2.10:5060"
        ),
        Fate::ToUser { .. }
    ));
}

#[test]
fn a_phone_reaches_users_and_numbers_with_every_method() {
    assert_eq!(
        fate(
            &request("INVITE", "sip:1002@proxy.example.com", ""),
            "192.0.2.10:5060"
        ),
        Fate::ToUser {
            user: "1002".into(),
            caller: Caller::Phone {
                authenticate: false
            }
        }
    );
    for method in ["INVITE", "MESSAGE", "SUBSCRIBE", "OPTIONS", "REFER", "INFO"] {
        assert_eq!(
            fate(
                &request(method, "sip:4001@proxy.example.com", ""),
                "192.0.2.10:5060"
            ),
            Fate::ToNumber {
                number: "4001".into(),
                caller: Caller::Phone {
                    authenticate: false
                }
            },
            "{method}"
        );
    }
    assert!(matches!(
        fate(&request("INVITE", "tel:+49-30-1234567", ""), "192.0.2.10:5060"),
        Fate::ToNumber { number, .. } if number.ends_with("301234567")
    ));
    assert_eq!(
        fate(
            &request("MESSAGE", "im:alice@example.com", ""),
            "192.0.2.10:5060"
        ),
        Fate::Answer(416, "Unsupported URI Scheme")
    );
}

#[test]
fn a_pbx_reaches_the_user_it_targets_or_the_connections_default() {
    let from_pbx = "198.51.100.10:5060";
    assert_eq!(
        fate(&request("INVITE", "sip:1002@192.0.2.1", ""), from_pbx),
        Fate::ToUser {
            user: "1002".into(),
            caller: Caller::Pbx("office-pbx".into())
        }
    );
    // A DID the PBX sends unchanged: the connection's deliver_to.
    assert_eq!(
        fate(
            &request("INVITE", "sip:+4930555123@192.0.2.1", ""),
            from_pbx
        ),
        Fate::ToUser {
            user: "1001".into(),
            caller: Caller::Pbx("office-pbx".into())
        }
    );
    // Asterisk's NOTIFY for a subscription: same path.
    assert!(matches!(
        fate(&request("NOTIFY", "sip:1002@192.0.2.1:5060", "Event: message-summary\n"), from_pbx),
        Fate::ToUser { ref user, .. } if user == "1002"
    ));
}

#[test]
fn method_specific_fates() {
    assert_eq!(
        fate(
            &request("CANCEL", "sip:4001@proxy.example.com", ""),
            "192.0.2.10:5060"
        ),
        Fate::Cancel
    );
    assert_eq!(
        fate(
            &request("ACK", "sip:4001@proxy.example.com", ""),
            "192.0.2.10:5060"
        ),
        Fate::Drop
    );
    let bye = request("BYE", "sip:4001@198.51.100.10", "").replace(
        "To: <sip:4001@198.51.100.10>",
        "To: <sip:4001@198.51.100.10>;tag=as12",
    );
    assert_eq!(fate(&bye, "192.0.2.10:5060"), Fate::InDialog);
}

#[test]
fn max_forwards_zero_is_483_and_the_rest_is_decremented() {
    let zero = request("INVITE", "sip:4001@proxy.example.com", "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(
        fate(&zero, "192.0.2.10:5060"),
        Fate::Answer(483, "Too Many Hops")
    );
    let mut h = Harness::new();
    h.request(msg(&zero), udp_from("192.0.2.10:5060"));
    assert_eq!(statuses(&h.outputs()), vec![483]);
    for (given, sent) in [("Max-Forwards: 1\n", 0u8), ("", 70)] {
        let text = request("INVITE", "sip:4001@proxy.example.com", given)
            .replace("Max-Forwards: 70\n", "");
        let (_, s) = h.call(
            msg(&text),
            udp_from("192.0.2.10:5060"),
            vec![group("a", vec![target(PBX, 5060)])],
        );
        assert_eq!(
            s[0].request.max_forwards().unwrap(),
            Some(sent),
            "{given:?}"
        );
    }
}

#[test]
fn a_loop_is_482_and_a_spiral_goes_on() {
    let mut h = Harness::new();
    let invite = baresip_invite("sip:4001@proxy.example.com", "c-loop", "");
    let (_, sent) = h.call(
        invite,
        udp_from("192.0.2.10:5060"),
        vec![group("a", vec![target("192.0.2.88", 5060)])],
    );
    // The next hop (a misconfigured SBC) sends it straight back, unchanged.
    let mut back = sent[0].request.clone();
    back.prepend_header(
        HeaderName::Via,
        "SIP/2.0/UDP 192.0.2.88:5060;branch=z9hG4bKsbc1",
    );
    h.request(back.clone(), udp_from("192.0.2.88:5060"));
    let out = h.outputs();
    assert_eq!(statuses(&out), vec![482]);
    assert!(lookups(&out).is_empty());
    // Sent back with a new Request-URI (it rewrote the number): a spiral,
    // routed again.
    let mut spiral = back;
    spiral.set_request_uri("sip:4002@proxy.example.com");
    h.request(spiral, udp_from("192.0.2.88:5060"));
    let out = h.outputs();
    assert!(statuses(&out).is_empty(), "{:?}", statuses(&out));
    assert_eq!(lookups(&out).len(), 1);
}

#[test]
fn a_strict_router_before_us_is_repaired() {
    let mut h = Harness::new();
    let mac = view().dialog_mac("c-strict");
    // A strict router put our Record-Route URI in the Request-URI and the
    // remote target in the last Route (RFC 3261 §16.4).
    let bye = msg(&format!(
        "BYE sip:192.0.2.1:5060;lr;sld={mac} SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.200:5060;branch=z9hG4bKstrict1\n\
         Max-Forwards: 69\n\
         Route: <sip:4001@198.51.100.10:5060>\n\
         From: <sip:1001@proxy.example.com>;tag=8d7e4ca2\n\
         To: <sip:4001@proxy.example.com>;tag=as5f1c\n\
         Call-ID: c-strict\n\
         CSeq: 23457 BYE\n\
         Content-Length: 0\n\n"
    ));
    h.request(bye, udp_from("192.0.2.200:5060"));
    let s = sends(&h.outputs());
    assert_eq!(s.len(), 1);
    assert_eq!(ruri(&s[0].request), "sip:4001@198.51.100.10:5060");
    assert!(header(&s[0].request, HeaderName::Route).is_empty());
    assert_eq!(s[0].hop, addr(PBX, 5060));
    assert_eq!(s[0].request.max_forwards().unwrap(), Some(68));
}

#[test]
fn an_in_dialog_request_without_our_record_route_is_refused() {
    let mut h = Harness::new();
    let bye = msg("BYE sip:4001@198.51.100.10:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnorr;rport\n\
         Max-Forwards: 70\n\
         Route: <sip:192.0.2.1:5060;lr;sld=00000000>\n\
         From: <sip:1001@proxy.example.com>;tag=8d7e\n\
         To: <sip:4001@proxy.example.com>;tag=as5f\n\
         Call-ID: c-forged\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n");
    h.request(bye, udp_from("192.0.2.10:5060"));
    assert_eq!(statuses(&h.outputs()), vec![403]);
}

#[test]
fn a_session_interval_below_our_minimum_is_raised_for_a_caller_without_timers() {
    let mut h = Harness::new();
    let (_, s) = h.call(
        baresip_invite(
            "sip:4001@proxy.example.com",
            "c-raise",
            "Session-Expires: 60;refresher=uac\n",
        ),
        udp_from("192.0.2.10:5060"),
        vec![group("a", vec![target(PBX, 5060)])],
    );
    assert_eq!(
        header(&s[0].request, HeaderName::SessionExpires),
        vec!["90;refresher=uac"]
    );
    let min_se: Vec<_> = s[0].request.header_values_named("Min-SE").collect();
    assert_eq!(min_se, vec![&b"90"[..]]);
}

#[test]
fn a_session_interval_below_our_minimum_is_422() {
    let mut h = Harness::new();
    h.request(
        baresip_invite(
            "sip:4001@proxy.example.com",
            "c-422",
            "Session-Expires: 60\nMin-SE: 60\nSupported: timer\n",
        ),
        udp_from("192.0.2.10:5060"),
    );
    let r = responses(&h.outputs());
    assert_eq!(r[0].1.status(), Some(422));
    let min_se: Vec<_> = r[0].1.header_values_named("Min-SE").collect();
    assert_eq!(min_se, vec![&b"90"[..]]);
}
