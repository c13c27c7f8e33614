//! Random call histories against the engine: whatever the order of
//! responses, failures, CANCELs, closed flows and time, a caller never gets
//! two different final answers or a provisional after a final one, and once
//! every transaction has ended and time has run on, the engine holds nothing.

mod engine_support;

use std::collections::HashMap;
use std::time::Duration;

use engine_support::*;
use proptest::prelude::*;
use siplink_message::{HeaderName, Message, Transport};
use siplink_proxy::engine::{BranchId, LookupResult, Output, RouteGroup, ServerTx};
use siplink_transport::{FlowId, Origin};

#[derive(Debug, Clone)]
enum Op {
    Call { groups: Vec<u8>, ws: bool },
    Respond { pick: usize, status: u16 },
    Fail { pick: usize, timeout: bool },
    Cancel { pick: usize },
    CloseFlow { pick: usize },
    Bye { pick: usize, from_caller: bool },
    Advance { secs: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (prop::collection::vec(1u8..4, 1..4), any::<bool>())
            .prop_map(|(groups, ws)| Op::Call { groups, ws }),
        6 => (any::<usize>(), prop::sample::select(vec![
            100u16, 180, 183, 200, 302, 404, 407, 408, 480, 486, 487, 500, 503, 603,
        ])).prop_map(|(pick, status)| Op::Respond { pick, status }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, timeout)| Op::Fail { pick, timeout }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::CloseFlow { pick }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, from_caller)| Op::Bye { pick, from_caller }),
        1 => (0u16..400).prop_map(|secs| Op::Advance { secs }),
    ]
}

struct Call {
    tx: ServerTx,
    invite: Message,
    origin: Origin,
    answered: Vec<Message>,
}

#[derive(Default)]
struct World {
    /// Requests the engine sent whose transaction has not ended.
    open: Vec<(BranchId, Message)>,
    calls: Vec<Call>,
    /// Every status each caller transaction got, in order.
    got: HashMap<ServerTx, Vec<u16>>,
}

impl World {
    fn collect(&mut self, h: &mut Harness) {
        for o in h.outputs() {
            match o {
                Output::Send {
                    branch, request, ..
                } => self.open.push((branch, request)),
                Output::Respond { tx, response } => {
                    self.got
                        .entry(tx)
                        .or_default()
                        .push(response.status().unwrap());
                    if response.status() == Some(200)
                        && let Some(c) = self.calls.iter_mut().find(|c| c.tx == tx)
                    {
                        c.answered.push(response);
                    }
                }
                _ => {}
            }
        }
    }

    fn respond(&mut self, h: &mut Harness, i: usize, status: u16) {
        let (branch, request) = self.open[i].clone();
        let method = request.method().unwrap().as_str().to_owned();
        let status = if method == "INVITE" { status } else { 200 };
        let tag = format!("t{}", branch.get());
        h.respond(branch, pbx_reply(&request, status, &tag, ""));
        if status >= 200 {
            self.open.remove(i);
        }
        self.collect(h);
    }
}

fn run(ops: Vec<Op>) {
    let mut h = Harness::new();
    let mut w = World::default();
    let mut next = 0u64;
    for op in ops {
        match op {
            Op::Call { groups, ws } => {
                next += 1;
                let call_id = format!("m{next}");
                let origin = if ws {
                    Origin {
                        flow: Some(FlowId::from_raw(1000 + next)),
                        ..wss_phone()
                    }
                } else {
                    udp_from("192.0.2.10:5060")
                };
                let invite = baresip_invite("sip:4001@proxy.example.com", &call_id, "");
                let tx = h.request(invite.clone(), origin);
                let out = h.outputs();
                let token = lookups(&out)[0].0;
                let groups: Vec<RouteGroup> = groups
                    .iter()
                    .enumerate()
                    .map(|(g, n)| {
                        group(
                            &format!("c{g}"),
                            (0..*n)
                                .map(|k| {
                                    target(
                                        &format!("192.0.2.{}", 100 + g * 10 + usize::from(k)),
                                        5060,
                                    )
                                })
                                .collect(),
                        )
                    })
                    .collect();
                h.lookup(token, LookupResult::Routes(groups));
                w.calls.push(Call {
                    tx,
                    invite,
                    origin,
                    answered: Vec::new(),
                });
                w.collect(&mut h);
            }
            Op::Respond { pick, status } if !w.open.is_empty() => {
                let i = pick % w.open.len();
                w.respond(&mut h, i, status);
            }
            Op::Fail { pick, timeout } if !w.open.is_empty() => {
                let (branch, _) = w.open.remove(pick % w.open.len());
                h.engine.handle_branch_failure(branch, timeout, h.now);
                w.collect(&mut h);
            }
            Op::Cancel { pick } if !w.calls.is_empty() => {
                let c = &w.calls[pick % w.calls.len()];
                let via = header(&c.invite, HeaderName::Via)[0].clone();
                let cancel = msg(&format!(
                    "CANCEL sip:4001@proxy.example.com SIP/2.0\nVia: {via}\nMax-Forwards: 70\n\
                     To: <sip:4001@proxy.example.com>\nFrom: \"Alice\" <sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1\n\
                     Call-ID: {}\nCSeq: 23456 CANCEL\nContent-Length: 0\n\n",
                    c.invite.call_id().unwrap()
                ));
                let origin = c.origin;
                h.request(cancel, origin);
                w.collect(&mut h);
            }
            Op::CloseFlow { pick } if !w.calls.is_empty() => {
                if let Some(flow) = w.calls[pick % w.calls.len()].origin.flow {
                    h.engine.handle_flow_closed(flow, h.now);
                    w.collect(&mut h);
                }
            }
            Op::Bye { pick, from_caller } if !w.calls.is_empty() => {
                let c = &w.calls[pick % w.calls.len()];
                let Some(ok) = c.answered.first() else {
                    continue;
                };
                let rr = header(ok, HeaderName::RecordRoute);
                let to_tag = ok.to_tag().unwrap().unwrap().to_owned();
                let call_id = ok.call_id().unwrap().to_owned();
                let (ruri, from, to, origin) = if from_caller {
                    (
                        format!("sip:{PBX}:5060"),
                        "<sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1".to_owned(),
                        format!("<sip:4001@proxy.example.com>;tag={to_tag}"),
                        c.origin,
                    )
                } else {
                    (
                        "sip:1001-0x55d0c3a8@192.0.2.10:5060".to_owned(),
                        format!("<sip:4001@proxy.example.com>;tag={to_tag}"),
                        "<sip:1001@proxy.example.com>;tag=8d7e4ca2c7f2e1b1".to_owned(),
                        udp_from("198.51.100.10:5060"),
                    )
                };
                let routes: String = rr.iter().map(|r| format!("Route: {r}\n")).collect();
                let bye = msg(&format!(
                    "BYE {ruri} SIP/2.0\nVia: SIP/2.0/{} 192.0.2.99:5060;branch=z9hG4bKbye{next}\nMax-Forwards: 70\n{routes}\
                     From: {from}\nTo: {to}\nCall-ID: {call_id}\nCSeq: 99999 BYE\nContent-Length: 0\n\n",
                    if origin.protocol == Transport::Udp {
                        "UDP"
                    } else {
                        "WSS"
                    }
                ));
                next += 1;
                h.request(bye, origin);
                w.collect(&mut h);
            }
            Op::Advance { secs } => {
                h.advance(Duration::from_secs(u64::from(secs)));
                w.collect(&mut h);
            }
            _ => {}
        }
    }
    // Every transaction ends (the peers answer whatever is still open), then
    // time runs past every call's maximum duration.
    for _ in 0..4 {
        for _ in 0..64 {
            if w.open.is_empty() {
                break;
            }
            w.respond(&mut h, 0, 487);
        }
        h.advance(Duration::from_secs(5 * 3600));
        w.collect(&mut h);
    }
    assert!(w.open.is_empty(), "requests still open: {}", w.open.len());
    assert_eq!(h.engine.sizes(), (0, 0, 0, 0), "the engine holds nothing");
    assert!(h.engine.is_idle(), "no index entry left either");
    for c in &w.calls {
        let got = w.got.get(&c.tx).cloned().unwrap_or_default();
        let first_final = got.iter().position(|s| *s >= 200);
        let Some(f) = first_final else {
            // Only a caller whose flow closed may get no final response.
            assert!(c.origin.flow.is_some(), "no final response: {got:?}");
            continue;
        };
        let after = &got[f..];
        assert!(
            after.iter().all(|s| *s >= 200),
            "provisional after a final: {got:?}"
        );
        let non_2xx: Vec<_> = after.iter().filter(|s| **s >= 300).collect();
        assert!(non_2xx.len() <= 1, "two failure answers: {got:?}");
        if got[f] < 300 {
            assert!(non_2xx.is_empty(), "a failure after a 2xx: {got:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_call_histories_keep_the_rules_and_drain(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,40}",
        Just("<sip:192.0.2.1:5060;lr;sld=00000000>".to_owned()),
        Just("<sip:fl7x00000000@proxy.example.com:8443;transport=wss;lr>".to_owned()),
        Just("<sip:192.0.2.1;lr>, <sip:198.51.100.10;lr>".to_owned()),
        Just("0".to_owned()),
        Just("4294967295".to_owned()),
        Just("1;refresher=uas".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    /// Hostile requests (odd Request-URIs, Routes, Max-Forwards, tags,
    /// Session-Expires, methods): the engine answers at most once, never
    /// panics, and whatever it forwards stays answerable.
    #[test]
    fn hostile_requests_get_at_most_one_answer(
        method in prop::sample::select(vec!["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "SUBSCRIBE", "PRACK", "UPDATE", "REGISTER", "FOO"]),
        ruri in prop_oneof![
            Just("sip:4001@proxy.example.com".to_owned()),
            Just("sip:192.0.2.1:5060;lr;sld=00000000".to_owned()),
            Just("tel:+1".to_owned()),
            Just("sip:proxy.example.com".to_owned()),
            "sip:[a-z0-9@.:;=]{1,30}",
        ],
        route in header_value(),
        max_forwards in header_value(),
        session_expires in header_value(),
        to_tag in prop::option::of("[a-z0-9]{1,8}"),
        from_pbx in any::<bool>(),
    ) {
        let mut extra = String::new();
        if !route.is_empty() { extra.push_str(&format!("Route: {route}\n")); }
        if !max_forwards.is_empty() { extra.push_str(&format!("Max-Forwards: {max_forwards}\n")); }
        if !session_expires.is_empty() { extra.push_str(&format!("Session-Expires: {session_expires}\n")); }
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let text = format!(
            "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKh1;rport\n\
             To: <sip:4001@proxy.example.com>{to_tag}\nFrom: <sip:1001@proxy.example.com>;tag=f\n\
             Call-ID: hostile\nCSeq: 1 {method}\n{extra}Content-Length: 0\n\n"
        );
        let Ok(request) = Message::parse(text.replace('\n', "\r\n")) else { return Ok(()) };
        let mut h = Harness::new();
        let origin = if from_pbx { udp_from("198.51.100.10:5060") } else { udp_from("192.0.2.10:5060") };
        let tx = h.request(request, origin);
        let mut answers = 0;
        for _ in 0..4 {
            let out = h.outputs();
            answers += responses(&out).iter().filter(|(t, r)| *t == tx && r.status().unwrap_or(0) >= 200).count();
            for (token, _) in lookups(&out) {
                h.lookup(token, LookupResult::Routes(vec![group("a", vec![target(PBX, 5060)])]));
            }
            for s in sends(&out) {
                h.respond(s.branch, pbx_reply(&s.request, 503, "z", ""));
            }
        }
        prop_assert!(answers <= 1, "{answers} final answers");
        h.advance(Duration::from_secs(24 * 3600));
        h.outputs();
        prop_assert_eq!(h.engine.sizes(), (0, 0, 0, 0));
        prop_assert!(h.engine.is_idle());
    }
}
