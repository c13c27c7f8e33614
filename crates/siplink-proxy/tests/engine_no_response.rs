//! A connection's branch that gets no response at all is given up after
//! `EngineConfig::no_response_timeout` (a PBX that is down), and the call
//! fails over; any response, 100 Trying included, gives it timer C instead.

mod engine_support;

use std::time::Duration;

use engine_support::*;
use siplink_proxy::engine::{EngineConfig, Event};

fn harness() -> Harness {
    Harness::with(EngineConfig {
        no_response_timeout: Some(Duration::from_secs(4)),
        ..EngineConfig::default()
    })
}

fn two_trunks() -> Vec<siplink_proxy::engine::RouteGroup> {
    vec![
        group("primary", vec![target("192.0.2.51", 5060)]),
        group("backup", vec![target("192.0.2.52", 5060)]),
    ]
}

#[test]
fn a_silent_pbx_is_given_up_after_the_no_response_timeout() {
    let mut h = harness();
    let invite = baresip_invite("sip:4001@proxy.example.com", "nr-1", "");
    let (_, sent) = h.call(invite, udp_from("192.0.2.10:5060"), two_trunks());
    assert_eq!(sent[0].hop, addr("192.0.2.51", 5060));
    h.advance(Duration::from_millis(3900));
    assert!(h.outputs().is_empty(), "not before 4 s");
    h.advance(Duration::from_millis(200));
    let out = h.outputs();
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::ConnectionFailed { connection, .. } if connection == "primary"
        )),
        "{:?}",
        events(&out)
    );
    let next = sends(&out);
    assert_eq!(methods(&next), vec!["INVITE"], "failover, no CANCEL");
    assert_eq!(next[0].hop, addr("192.0.2.52", 5060));
}

#[test]
fn a_100_trying_gives_the_branch_timer_c() {
    let mut h = harness();
    let invite = baresip_invite("sip:4001@proxy.example.com", "nr-2", "");
    let (_, sent) = h.call(invite, udp_from("192.0.2.10:5060"), two_trunks());
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 100, "", ""));
    h.advance(Duration::from_secs(60));
    assert!(h.outputs().is_empty(), "still waiting after 60 s");
    h.advance(EngineConfig::default().timer_c);
    let out = h.outputs();
    assert_eq!(methods(&sends(&out)), vec!["CANCEL"], "timer C");
    h.respond(sent[0].branch, pbx_reply(&sent[0].request, 487, "x", ""));
    let next = sends(&h.outputs());
    assert_eq!(
        methods(&next),
        vec!["INVITE"],
        "its 487 counts as 408: failover"
    );
    assert_eq!(next[0].hop, addr("192.0.2.52", 5060));
}

#[test]
fn a_users_contacts_keep_timer_c() {
    let mut h = harness();
    let invite = baresip_invite("sip:1002@proxy.example.com", "nr-3", "");
    let tx = h.request(invite, udp_from("192.0.2.10:5060"));
    let token = lookups(&h.outputs())[0].0;
    h.lookup(
        token,
        siplink_proxy::engine::LookupResult::Routes(vec![siplink_proxy::engine::RouteGroup {
            connection: None,
            targets: vec![target("192.0.2.60", 5060)],
        }]),
    );
    assert_eq!(sends(&h.outputs()).len(), 1);
    h.advance(Duration::from_secs(10));
    assert!(
        h.outputs().is_empty(),
        "{tx:?}: no early give-up for a phone"
    );
}
