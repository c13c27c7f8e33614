//! Property tests: arbitrary event sequences never break the invariants.

mod support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use siplink_message::{HeaderName, Method};
use siplink_transaction::{Output, Received, TableConfig, TransactionTable, TuEvent, new_branch};
use support::*;

#[derive(Debug, Clone)]
enum Step {
    /// Advance virtual time and fire due timers.
    Wait(u64),
    /// The peer's message: a response with this status (client side) or a
    /// request retransmission (server side).
    Peer(u16),
    /// An ACK with the INVITE's branch (server side).
    Ack,
    /// The TU responds with this status (server side).
    Respond(u16),
    /// A transport error.
    TransportError,
}

fn step() -> impl Strategy<Value = Step> {
    let status = prop_oneof![
        Just(100u16),
        Just(180),
        Just(200),
        Just(202),
        Just(302),
        Just(486),
        Just(503)
    ];
    prop_oneof![
        (0u64..40_000).prop_map(Step::Wait),
        status.clone().prop_map(Step::Peer),
        Just(Step::Ack),
        status.prop_map(Step::Respond),
        Just(Step::TransportError),
    ]
}

fn count(outs: &[Output], f: impl Fn(&TuEvent) -> bool) -> usize {
    outs.iter()
        .filter(|o| matches!(o, Output::Deliver { event, .. } if f(event)))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn client_invariants(invite: bool, reliable: bool, steps in prop::collection::vec(step(), 0..24)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut t = TransactionTable::new(TableConfig::default());
        let method = if invite { Method::Invite } else { Method::Options };
        let req = request(method, &new_branch(), "p", 1);
        let id = t.start_client(&req, reliable, now).unwrap();
        let mut all = drain(&mut t);
        for s in steps {
            match s {
                Step::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    t.handle_timeout(now);
                }
                Step::Peer(status) => {
                    t.handle_message(response(&req, status), reliable, now);
                }
                Step::TransportError => t.handle_transport_error(id, now),
                _ => {}
            }
            all.extend(drain(&mut t));
        }
        // An INVITE in Proceeding waits for its final without a timer (RFC 3261
        // §17.1.1.2; Timer C belongs to the proxy core): the peer sends one.
        t.handle_message(response(&req, 487), reliable, now);
        all.extend(drain(&mut t));
        all.extend(run_timers(&mut t, t0, Duration::from_secs(3600)).into_iter().map(|s| s.out));
        prop_assert!(t.is_empty());
        prop_assert_eq!(t.timer_count(), 0);
        let finals = count(&all, |e| matches!(e, TuEvent::Final(_)));
        let ends = count(&all, |e| matches!(e, TuEvent::Timeout | TuEvent::TransportError));
        prop_assert!(finals <= 1);
        prop_assert!(finals + ends >= 1, "every transaction ends with an outcome");
        prop_assert_eq!(all.iter().filter(|o| matches!(o, Output::Terminated { .. })).count(), 1);
        if reliable {
            // Only the request and ACKs are sent; never a retransmitted request.
            let requests = sends(&all).iter().filter(|m| m.method() != Some(&Method::Ack)).count();
            prop_assert_eq!(requests, 1);
        }
    }

    #[test]
    fn server_invariants(invite: bool, reliable: bool, steps in prop::collection::vec(step(), 0..24)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut t = TransactionTable::new(TableConfig::default());
        let method = if invite { Method::Invite } else { Method::Options };
        let branch = new_branch();
        let req = request(method, &branch, "p", 1);
        let Received::New { id, .. } = t.handle_message(req.clone(), reliable, now) else {
            panic!("not new")
        };
        let mut all = drain(&mut t);
        let mut ack = request(Method::Ack, &branch, "p", 1);
        ack.set_header(HeaderName::To, "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf");
        for s in steps {
            if t.state(id).is_none() {
                // Over: a retransmission now would start a new transaction.
                break;
            }
            match s {
                Step::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    t.handle_timeout(now);
                }
                Step::Peer(_) => match t.handle_message(req.clone(), reliable, now) {
                    Received::Matched { .. } => {}
                    other => panic!("{other:?}"),
                },
                Step::Ack => {
                    t.handle_message(ack.clone(), reliable, now);
                }
                Step::Respond(status) => {
                    // A response the state refuses queues nothing.
                    let _ = t.handle_response(id, &response(&req, status), now);
                }
                Step::TransportError => t.handle_transport_error(id, now),
            }
            all.extend(drain(&mut t));
        }
        // Until the TU answers, a server transaction has no timer (RFC 3261 §17.2):
        // the TU answers now if it has not.
        let _ = t.handle_response(id, &response(&req, 500), now);
        all.extend(drain(&mut t));
        all.extend(run_timers(&mut t, t0, Duration::from_secs(3600)).into_iter().map(|s| s.out));
        prop_assert!(t.is_empty());
        prop_assert_eq!(t.timer_count(), 0);
        prop_assert_eq!(count(&all, |e| matches!(e, TuEvent::Request(_))), 1);
        prop_assert_eq!(all.iter().filter(|o| matches!(o, Output::Terminated { .. })).count(), 1);
        // One final response, retransmitted; after a 2xx only 2xx pass (the TU's
        // retransmissions, or 2xx of other forks in a proxy).
        let finals: Vec<u16> = sends(&all).iter().filter_map(|m| m.status()).filter(|s| *s >= 200).collect();
        if let Some(&first) = finals.first() {
            if first < 300 {
                prop_assert!(invite || finals.iter().all(|s| *s == first));
                prop_assert!(finals.iter().all(|s| *s < 300));
            } else {
                prop_assert!(finals.iter().all(|s| *s == first));
            }
        }
    }
}
