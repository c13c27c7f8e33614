//! Bindings follow their flows, in virtual time: a plain (not RFC 5626)
//! binding registered over TCP, TLS, WS or WSS stops being used for routing
//! the moment its connection closes (Kamailio's `handle_lost_tcp`), UDP
//! bindings do not care, and a client that comes back on a new connection
//! registers again normally.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use siplink_registrar::{
    Aor, BindingTable, EventKind, FlowId, InMemoryStore, LocationStore, Reach, Registrar,
    RemoveReason, RequestContext, Transport,
};
use support::{Clock, Reg, block_on, contacts, open_config};

/// A REGISTER context over `transport` from `source`, on `flow`, at `secs`.
fn ctx(
    c: &Clock,
    transport: Transport,
    source: &str,
    flow: Option<u64>,
    secs: u64,
) -> RequestContext {
    RequestContext {
        source: source.parse().unwrap(),
        transport,
        flow: flow.map(FlowId::from_raw),
        now: c.t0 + Duration::from_secs(secs),
        now_system: c.s0 + Duration::from_secs(secs),
    }
}

/// The PBX's REGISTER as Kamailio's `uac` module sends it: a plain Contact,
/// no `;ob`, no instance.
fn pbx_register(cseq: u32) -> Reg {
    Reg::new("pbx")
        .contacts(&["<sip:pbx@10.9.9.9:5060;transport=tcp>"])
        .expires(3600)
        .cseq(cseq)
}

fn pbx() -> Aor {
    Aor::parse("sip:pbx@example.com").unwrap()
}

#[test]
fn every_connection_oriented_transport_loses_its_plain_bindings_with_the_flow() {
    let r = Registrar::new(open_config(), None).unwrap();
    let c = Clock::new();
    for (k, transport) in [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = BindingTable::new();
        let flow = 100 + k as u64;
        let d = r
            .handle_register(
                &pbx_register(1).build(),
                &ctx(&c, transport, "198.51.100.7:41000", Some(flow), 0),
                &mut t,
            )
            .unwrap();
        assert_eq!(d.status(), 200, "{transport:?}");
        assert_eq!(
            t.lookup(&pbx(), c.at(10).now)[0].reach,
            Reach::Flow(FlowId::from_raw(flow))
        );
        // Ten seconds in, the PBX dies: its binding had an hour left.
        let ev = r.handle_flow_closed(FlowId::from_raw(flow), c.at(10).now, &mut t);
        assert_eq!(ev.len(), 1, "{transport:?}");
        assert_eq!(ev[0].kind, EventKind::Removed(RemoveReason::FlowClosed));
        assert_eq!(ev[0].binding.aor, pbx());
        assert_eq!(ev[0].binding.transport, transport);
        assert!(t.lookup(&pbx(), c.at(10).now).is_empty(), "{transport:?}");
        assert!(t.bindings(&pbx()).is_empty());
        // Nothing left to expire later, and no expiry event for it.
        assert_eq!(t.poll_timeout(), None);
        t.handle_timeout(c.at(3600).now);
        assert_eq!(t.poll_output(), None);
    }
}

#[test]
fn udp_bindings_are_unaffected_by_a_closing_flow() {
    let r = Registrar::new(open_config(), None).unwrap();
    let c = Clock::new();
    let mut t = BindingTable::new();
    // A UDP registration the transport tagged with a flow, another without,
    // and a TCP one on a different flow.
    r.handle_register(
        &Reg::new("alice").build(),
        &ctx(&c, Transport::Udp, "192.0.2.10:5060", Some(7), 0),
        &mut t,
    )
    .unwrap();
    r.handle_register(
        &Reg::new("bob").build(),
        &ctx(&c, Transport::Udp, "192.0.2.11:5060", None, 0),
        &mut t,
    )
    .unwrap();
    r.handle_register(
        &pbx_register(1).build(),
        &ctx(&c, Transport::Tcp, "198.51.100.7:41000", Some(8), 0),
        &mut t,
    )
    .unwrap();
    let alice = Aor::parse("sip:alice@example.com").unwrap();
    let bob = Aor::parse("sip:bob@example.com").unwrap();
    // alice's UDP "flow" closes: no event, her binding stays, reached
    // through her Contact.
    assert!(
        r.handle_flow_closed(FlowId::from_raw(7), c.at(5).now, &mut t)
            .is_empty()
    );
    let a = t.lookup(&alice, c.at(5).now);
    assert_eq!(a.len(), 1);
    assert!(
        matches!(&a[0].reach, Reach::Contact { uri, .. } if uri.to_string() == "sip:alice@192.0.2.10:5060")
    );
    // The TCP flow closing touches neither UDP binding.
    let ev = r.handle_flow_closed(FlowId::from_raw(8), c.at(5).now, &mut t);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].binding.aor, pbx());
    assert_eq!(t.lookup(&alice, c.at(5).now).len(), 1);
    assert_eq!(t.lookup(&bob, c.at(5).now).len(), 1);
    assert_eq!(t.usage().bindings, 2);
}

#[test]
fn a_pbx_that_comes_back_on_a_new_connection_registers_again() {
    let r = Registrar::new(open_config(), None).unwrap();
    let c = Clock::new();
    let mut t = BindingTable::new();
    let d = r
        .handle_register(
            &pbx_register(1).build(),
            &ctx(&c, Transport::Tcp, "198.51.100.7:41000", Some(1), 0),
            &mut t,
        )
        .unwrap();
    assert_eq!(d.events[0].kind, EventKind::Added);
    assert_eq!(
        r.handle_flow_closed(FlowId::from_raw(1), c.at(30).now, &mut t)
            .len(),
        1
    );
    assert!(t.lookup(&pbx(), c.at(30).now).is_empty());
    // It reconnects from a new port and registers again (same Call-ID, next
    // CSeq, as a UAC does): a new binding on the new flow.
    let d = r
        .handle_register(
            &pbx_register(2).build(),
            &ctx(&c, Transport::Tcp, "198.51.100.7:41002", Some(2), 31),
            &mut t,
        )
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].kind, EventKind::Added);
    let found = t.lookup(&pbx(), c.at(31).now);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].reach, Reach::Flow(FlowId::from_raw(2)));
    assert_eq!(found[0].binding.source.port(), 41002);
    // The old connection's late close event changes nothing.
    assert!(
        r.handle_flow_closed(FlowId::from_raw(1), c.at(32).now, &mut t)
            .is_empty()
    );
    assert_eq!(t.lookup(&pbx(), c.at(32).now).len(), 1);
}

#[test]
fn a_refresh_moves_the_binding_to_the_new_flow_before_the_old_one_closes() {
    let r = Registrar::new(open_config(), None).unwrap();
    let c = Clock::new();
    let mut t = BindingTable::new();
    r.handle_register(
        &pbx_register(1).build(),
        &ctx(&c, Transport::Tcp, "198.51.100.7:41000", Some(1), 0),
        &mut t,
    )
    .unwrap();
    // The refresh arrives over a second connection while the first is open.
    let d = r
        .handle_register(
            &pbx_register(2).build(),
            &ctx(&c, Transport::Tcp, "198.51.100.7:41002", Some(2), 60),
            &mut t,
        )
        .unwrap();
    assert_eq!(d.events[0].kind, EventKind::Refreshed);
    // The first connection closing no longer owns the binding.
    assert!(
        r.handle_flow_closed(FlowId::from_raw(1), c.at(61).now, &mut t)
            .is_empty()
    );
    assert_eq!(
        t.lookup(&pbx(), c.at(61).now)[0].reach,
        Reach::Flow(FlowId::from_raw(2))
    );
    let ev = r.handle_flow_closed(FlowId::from_raw(2), c.at(62).now, &mut t);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Removed(RemoveReason::FlowClosed));
    assert!(t.lookup(&pbx(), c.at(62).now).is_empty());
}

#[test]
fn a_binding_already_out_of_time_is_reported_expired() {
    let r = Registrar::new(open_config(), None).unwrap();
    let c = Clock::new();
    let mut t = BindingTable::new();
    r.handle_register(
        &pbx_register(1).expires(60).build(),
        &ctx(&c, Transport::Tcp, "198.51.100.7:41000", Some(1), 0),
        &mut t,
    )
    .unwrap();
    // The close is handled after the expiry time but before the expiry timer.
    let ev = r.handle_flow_closed(FlowId::from_raw(1), c.at(60).now, &mut t);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Removed(RemoveReason::Expired));
    t.handle_timeout(c.at(61).now);
    assert_eq!(t.poll_output(), None);
}

#[test]
fn contact_fallback_keeps_the_binding_reachable_through_its_contact() {
    let mut cfg = open_config();
    cfg.contact_fallback = true;
    let r = Registrar::new(cfg, None).unwrap();
    let c = Clock::new();
    let mut t = BindingTable::new();
    r.handle_register(
        &pbx_register(1).build(),
        &ctx(&c, Transport::Tls, "198.51.100.7:41000", Some(1), 0),
        &mut t,
    )
    .unwrap();
    let ev = r.handle_flow_closed(FlowId::from_raw(1), c.at(10).now, &mut t);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::FlowLost);
    let found = t.lookup(&pbx(), c.at(10).now);
    assert_eq!(found.len(), 1);
    assert!(matches!(&found[0].reach, Reach::Contact { uri, .. }
        if uri.to_string() == "sip:pbx@10.9.9.9:5060;transport=tcp"));
    // It still expires on time.
    t.handle_timeout(c.at(3600).now);
    assert_eq!(
        t.poll_output().map(|e| e.kind),
        Some(EventKind::Removed(RemoveReason::Expired))
    );
}

#[test]
fn the_in_memory_store_follows_flows_and_streams_the_event() {
    let r = Registrar::new(open_config(), None).unwrap();
    let c = Clock::new();
    let store = InMemoryStore::new();
    let events = store.subscribe();
    let d = block_on(r.handle_register_with(
        &pbx_register(1).build(),
        &ctx(&c, Transport::Tcp, "198.51.100.7:41000", Some(3), 0),
        &store,
    ))
    .unwrap();
    assert_eq!(d.status(), 200);
    let ev = block_on(r.handle_flow_closed_with(FlowId::from_raw(3), c.at(1).now, &store)).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Removed(RemoveReason::FlowClosed));
    assert!(
        block_on(store.lookup(&pbx(), c.at(1).now))
            .unwrap()
            .is_empty()
    );
    let streamed: Vec<EventKind> = events.try_iter().map(|e| e.kind).collect();
    assert_eq!(
        streamed,
        [
            EventKind::Added,
            EventKind::Removed(RemoveReason::FlowClosed)
        ]
    );
    assert_eq!(store.poll_timeout(), None);
}

#[derive(Debug, Clone)]
enum Op {
    /// `contact` of `aor` registers over connection `conn` (0, 1: TCP flows;
    /// 2: a UDP flow; 3: TCP without a flow id).
    Register {
        aor: u8,
        contact: u8,
        conn: u8,
        expires: u32,
    },
    /// Connection `conn` closes.
    Close(u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 0u8..3, 0u8..4, prop_oneof![Just(0u32), 60u32..2000]).prop_map(
            |(aor, contact, conn, expires)| Op::Register { aor, contact, conn, expires }
        ),
        2 => (0u8..4).prop_map(Op::Close),
        1 => (1u64..1000).prop_map(Op::Advance),
    ]
}

/// What the model keeps per (AOR, contact): expiry and the flow it is
/// reached over (`None`: its Contact).
#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: Instant,
    flow: Option<u8>,
}

fn conn_ctx(c: &Clock, conn: u8, secs: u64) -> RequestContext {
    let transport = if conn == 2 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let flow = (conn < 3).then_some(u64::from(conn) + 1);
    ctx(
        c,
        transport,
        &format!("192.0.2.{}:5060", 100 + conn),
        flow,
        secs,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Against a map model: a closing TCP flow takes exactly its plain and
    /// outbound bindings out of routing, a UDP one only its flow, and a
    /// contact that re-registered elsewhere is not touched.
    #[test]
    fn closing_flows_match_a_map_model(ops in prop::collection::vec(op(), 1..60)) {
        let r = Registrar::new(open_config(), None).unwrap();
        let mut t = BindingTable::new();
        let c = Clock::new();
        let mut model: HashMap<(u8, u8), Entry> = HashMap::new();
        let mut now = 0u64;
        let mut cseq = [0u32; 2];
        for op in ops {
            let at = c.at(now).now;
            match op {
                Op::Register { aor, contact, conn, expires } => {
                    cseq[aor as usize] += 1;
                    let req = Reg::new(&format!("u{aor}"))
                        .contacts(&[&format!("<sip:u@192.0.2.{contact}>")])
                        .expires(expires)
                        .cseq(cseq[aor as usize])
                        .build();
                    let d = r.handle_register(&req, &conn_ctx(&c, conn, now), &mut t).unwrap();
                    prop_assert_eq!(d.status(), 200);
                    model.retain(|_, e| e.expires > at);
                    if expires == 0 {
                        model.remove(&(aor, contact));
                    } else {
                        model.insert((aor, contact), Entry {
                            expires: at + Duration::from_secs(u64::from(expires.min(3600))),
                            flow: (conn < 3).then_some(conn),
                        });
                    }
                    let expected = model.keys().filter(|(a, _)| *a == aor).count();
                    prop_assert_eq!(contacts(&d.response).len(), expected);
                }
                Op::Close(conn) => {
                    let ev = r.handle_flow_closed(FlowId::from_raw(u64::from(conn) + 1), at, &mut t);
                    let mut removed = 0;
                    model.retain(|_, e| {
                        if e.flow == Some(conn) && e.expires > at && conn != 2 {
                            removed += 1;
                            return false;
                        }
                        true
                    });
                    for e in model.values_mut() {
                        if e.flow == Some(conn) {
                            e.flow = None;
                        }
                    }
                    let closed = ev
                        .iter()
                        .filter(|e| e.kind == EventKind::Removed(RemoveReason::FlowClosed))
                        .count();
                    prop_assert_eq!(closed, removed);
                    prop_assert!(ev.iter().all(|e| matches!(e.kind, EventKind::Removed(_))));
                    prop_assert!(ev.iter().all(|e| e.binding.flow == Some(FlowId::from_raw(u64::from(conn) + 1))));
                }
                Op::Advance(s) => now += s,
            }
            let at = c.at(now).now;
            for a in 0u8..2 {
                let aor = Aor::parse(&format!("sip:u{a}@example.com")).unwrap();
                let found = t.lookup(&aor, at);
                let mut want: Vec<(String, Reach)> = model
                    .iter()
                    .filter(|((x, _), e)| *x == a && e.expires > at)
                    .map(|((_, k), e)| {
                        let uri = format!("sip:u@192.0.2.{k}");
                        let reach = match e.flow {
                            Some(f) => Reach::Flow(FlowId::from_raw(u64::from(f) + 1)),
                            None => Reach::Contact {
                                uri: siplink_message::Uri::parse(uri.clone()).unwrap(),
                                path: Vec::new(),
                            },
                        };
                        (uri, reach)
                    })
                    .collect();
                want.sort_by(|x, y| x.0.cmp(&y.0));
                let mut got: Vec<(String, Reach)> = found
                    .into_iter()
                    .map(|f| (f.binding.contact.uri.to_string(), f.reach))
                    .collect();
                got.sort_by(|x, y| x.0.cmp(&y.0));
                prop_assert_eq!(got, want);
            }
        }
    }
}
