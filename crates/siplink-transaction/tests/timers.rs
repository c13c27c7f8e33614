//! Exact timer schedules of the four transaction state machines, virtual time.

mod support;

use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Method};
use siplink_transaction::{
    Action, ClientState, ClientTransaction, Error, Output, Received, ServerState,
    ServerTransaction, TableConfig, TimerKind, Timers, TransactionState, TransactionTable, TuEvent,
    new_branch,
};
use support::*;

const UDP: bool = false;
const TCP: bool = true;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn table() -> TransactionTable {
    TransactionTable::new(TableConfig::default())
}

fn timeout_at(seen: &[Seen]) -> Vec<f64> {
    seen.iter()
        .filter(|s| {
            matches!(
                s.out,
                Output::Deliver {
                    event: TuEvent::Timeout,
                    ..
                }
            )
        })
        .map(|s| s.at)
        .collect()
}

fn terminated_at(seen: &[Seen]) -> Vec<f64> {
    seen.iter()
        .filter(|s| matches!(s.out, Output::Terminated { .. }))
        .map(|s| s.at)
        .collect()
}

// ----- client INVITE -----

#[test]
fn client_invite_udp_retransmits_until_timer_b() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "c1", 1);
    let (_, outs) = step(&mut t, |t| t.start_client(&req, UDP, t0).unwrap());
    assert_eq!(sends(&outs).len(), 1);
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert_eq!(send_times(&seen), [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert_eq!(timeout_at(&seen), [32.0]);
    assert_eq!(terminated_at(&seen), [32.0]);
    assert!(t.is_empty());
    assert_eq!(t.timer_count(), 0);
}

#[test]
fn client_invite_tcp_no_retransmission_timer_b_at_64_t1() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "c1", 1);
    t.start_client(&req, TCP, t0).unwrap();
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(send_times(&seen).is_empty());
    assert_eq!(timeout_at(&seen), [32.0]);
    assert!(t.is_empty());
}

#[test]
fn client_invite_custom_timers() {
    let t0 = Instant::now();
    let mut t = TransactionTable::new(TableConfig {
        timers: Timers {
            t1: ms(100),
            t2: ms(400),
            t4: ms(1000),
        },
        ..TableConfig::default()
    });
    t.start_client(&request(Method::Invite, &new_branch(), "c", 1), UDP, t0)
        .unwrap();
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    let got: Vec<u64> = send_times(&seen)
        .iter()
        .map(|s| (s * 1000.0).round() as u64)
        .collect();
    assert_eq!(got, [100, 300, 700, 1500, 3100, 6300]);
    assert_eq!(timeout_at(&seen), [6.4]);
}

#[test]
fn client_invite_non_2xx_builds_ack_and_waits_timer_d() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "c-ack", 7);
    let id = t.start_client(&req, UDP, t0).unwrap();
    // 180 at 0.3 s: Proceeding, no more retransmissions, no timer B.
    let ringing = response(&req, 180);
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(ringing, UDP, t0 + ms(300)))
    else {
        panic!("180 not matched")
    };
    assert!(delivered(&outputs, |e| matches!(
        e,
        TuEvent::Provisional(_)
    )));
    assert_eq!(
        t.state(id),
        Some(TransactionState::Client(ClientState::Proceeding))
    );
    let busy = response(&req, 486);
    let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
        t.handle_message(busy.clone(), UDP, t0 + ms(1000))
    }) else {
        panic!("486 not matched")
    };
    assert!(delivered(
        &outputs,
        |e| matches!(e, TuEvent::Final(m) if m.status() == Some(486))
    ));
    let acks = sends(&outputs);
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    // RFC 3261 §17.1.1.3.
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.request_uri_bytes(), req.request_uri_bytes());
    assert_eq!(ack.call_id().unwrap(), "c-ack");
    assert_eq!(ack.from().unwrap(), req.from().unwrap());
    assert_eq!(ack.to().unwrap(), busy.to().unwrap());
    assert_eq!(ack.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(ack.cseq().unwrap().seq, 7);
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    assert_eq!(ack.via().unwrap(), &[req.top_via().unwrap().clone()]);
    assert_eq!(ack.route().unwrap(), req.route().unwrap());
    assert_eq!(ack.route().unwrap().len(), 2);
    assert_eq!(ack.max_forwards().unwrap(), Some(70));
    assert_eq!(ack.body().len(), 0);
    // A retransmitted 486: the same ACK again, nothing for the TU.
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(busy, UDP, t0 + ms(2000)))
    else {
        panic!()
    };
    assert_eq!(sends(&outputs).len(), 1);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Deliver { .. })));
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(send_times(&seen).is_empty());
    assert!(timeout_at(&seen).is_empty());
    assert_eq!(terminated_at(&seen), [33.0]); // D = 32 s after the final
    assert!(t.is_empty());
}

#[test]
fn client_invite_2xx_after_non_2xx_is_not_dropped() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "race", 1);
    t.start_client(&req, UDP, t0).unwrap();
    t.handle_message(response(&req, 486), UDP, t0 + ms(100));
    let ok = req
        .response_with_tag(200, Some("other-fork"))
        .build()
        .unwrap();
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(ok, UDP, t0 + ms(200)))
    else {
        panic!()
    };
    assert!(delivered(
        &outputs,
        |e| matches!(e, TuEvent::Additional2xx(m) if m.to().unwrap().tag() == Some("other-fork"))
    ));
    assert!(sends(&outputs).is_empty()); // the TU ACKs (or forwards) a 2xx
}

#[test]
fn client_invite_tcp_non_2xx_terminates_at_once() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "c", 1);
    t.start_client(&req, TCP, t0).unwrap();
    let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
        t.handle_message(response(&req, 503), TCP, t0 + ms(10))
    }) else {
        panic!()
    };
    assert_eq!(sends(&outputs)[0].method(), Some(&Method::Ack));
    assert!(terminated(&outputs)); // D = 0
    assert!(t.is_empty());
    assert_eq!(t.timer_count(), 0);
}

#[test]
fn client_invite_accepted_passes_2xx_until_timer_m() {
    for reliable in [UDP, TCP] {
        let t0 = Instant::now();
        let mut t = table();
        let req = request(Method::Invite, &new_branch(), "c", 1);
        let id = t.start_client(&req, reliable, t0).unwrap();
        let ok = response(&req, 200);
        let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
            t.handle_message(ok.clone(), reliable, t0 + ms(1000))
        }) else {
            panic!()
        };
        assert!(delivered(
            &outputs,
            |e| matches!(e, TuEvent::Final(m) if m.status() == Some(200))
        ));
        assert!(sends(&outputs).is_empty()); // the TU ACKs a 2xx, not the transaction
        assert_eq!(
            t.state(id),
            Some(TransactionState::Client(ClientState::Accepted))
        );
        // A retransmitted 2xx: passed to the TU as such, not as a second final.
        let (Received::Matched { .. }, outputs) =
            step(&mut t, |t| t.handle_message(ok, reliable, t0 + ms(1500)))
        else {
            panic!()
        };
        assert!(delivered(&outputs, |e| matches!(
            e,
            TuEvent::Additional2xx(_)
        )));
        assert!(!delivered(&outputs, |e| matches!(e, TuEvent::Final(_))));
        // A late non-2xx is discarded.
        let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
            t.handle_message(response(&req, 486), reliable, t0 + ms(1600))
        }) else {
            panic!()
        };
        assert!(outputs.is_empty());
        let seen = run_timers(&mut t, t0, Duration::from_secs(100));
        assert!(send_times(&seen).is_empty());
        assert_eq!(terminated_at(&seen), [33.0]); // M = 64*T1 after the 2xx, any transport
        // After M, the 2xx is stray (a proxy forwards it statelessly).
        assert!(matches!(
            t.handle_message(response(&req, 200), reliable, t0 + ms(40_000)),
            Received::Stray(_)
        ));
    }
}

// ----- client non-INVITE -----

#[test]
fn client_non_invite_udp_retransmits_capped_at_t2_until_timer_f() {
    let t0 = Instant::now();
    let mut t = table();
    t.start_client(&request(Method::Options, &new_branch(), "c", 1), UDP, t0)
        .unwrap();
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert_eq!(
        send_times(&seen),
        [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(timeout_at(&seen), [32.0]);
    assert_eq!(terminated_at(&seen), [32.0]);
    assert!(t.is_empty());
}

#[test]
fn client_non_invite_tcp_timer_f_only() {
    let t0 = Instant::now();
    let mut t = table();
    t.start_client(&request(Method::Register, &new_branch(), "c", 1), TCP, t0)
        .unwrap();
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(send_times(&seen).is_empty());
    assert_eq!(timeout_at(&seen), [32.0]);
}

#[test]
fn client_non_invite_proceeding_retransmits_every_t2() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Bye, &new_branch(), "c", 2);
    t.start_client(&req, UDP, t0).unwrap();
    let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
        t.handle_message(response(&req, 100), UDP, t0 + ms(200))
    }) else {
        panic!()
    };
    assert!(delivered(&outputs, |e| matches!(
        e,
        TuEvent::Provisional(_)
    )));
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert_eq!(
        send_times(&seen),
        [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    );
    assert_eq!(timeout_at(&seen), [32.0]);
}

#[test]
fn client_non_invite_final_then_timer_k() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Options, &new_branch(), "c", 1);
    t.start_client(&req, UDP, t0).unwrap();
    let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
        t.handle_message(response(&req, 200), UDP, t0 + ms(700))
    }) else {
        panic!()
    };
    assert!(delivered(&outputs, |e| matches!(e, TuEvent::Final(_))));
    // A retransmitted final is absorbed.
    let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
        t.handle_message(response(&req, 200), UDP, t0 + ms(900))
    }) else {
        panic!()
    };
    assert!(outputs.is_empty());
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(send_times(&seen).is_empty());
    assert_eq!(terminated_at(&seen), [5.7]); // K = T4
    // Over TCP, K = 0.
    let req = request(Method::Options, &new_branch(), "c", 2);
    t.start_client(&req, TCP, t0).unwrap();
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(response(&req, 404), TCP, t0))
    else {
        panic!()
    };
    assert!(terminated(&outputs));
    assert!(t.is_empty());
}

#[test]
fn client_transport_error_terminates() {
    let t0 = Instant::now();
    let mut t = table();
    let id = t
        .start_client(&request(Method::Invite, &new_branch(), "c", 1), UDP, t0)
        .unwrap();
    let outs = step(&mut t, |t| t.handle_transport_error(id, t0 + ms(1))).1;
    assert!(delivered(&outs, |e| matches!(e, TuEvent::TransportError)));
    assert!(terminated(&outs));
    assert!(t.is_empty());
    assert_eq!(t.timer_count(), 0);
}

#[test]
fn client_state_machine_standalone() {
    let t0 = Instant::now();
    let req = request(Method::Invite, &new_branch(), "c", 1);
    let mut tx = ClientTransaction::new(&req, UDP, Timers::default(), t0).unwrap();
    assert_eq!(tx.state(), ClientState::Calling);
    let actions: Vec<Action> = std::iter::from_fn(|| tx.poll_output()).collect();
    assert!(matches!(actions[..], [Action::Send(_)]));
    assert_eq!(tx.timer(TimerKind::A), Some(t0 + ms(500)));
    assert_eq!(tx.timer(TimerKind::B), Some(t0 + ms(32_000)));
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
    // Leaving Calling disarms A and B: nothing fires at 0.5 s.
    tx.handle_response(response(&req, 100), t0 + ms(100));
    assert!(matches!(
        tx.poll_output(),
        Some(Action::Deliver(TuEvent::Provisional(_)))
    ));
    assert_eq!(tx.timer(TimerKind::A), None);
    assert_eq!(tx.poll_timeout(), None);
    tx.handle_timeout(t0 + ms(500));
    assert!(tx.poll_output().is_none());
    assert!(
        ClientTransaction::new(
            &request(Method::Ack, &new_branch(), "c", 1),
            UDP,
            Timers::default(),
            t0
        )
        .is_err()
    );
}

// ----- server INVITE -----

fn new_server(
    t: &mut TransactionTable,
    req: &siplink_message::Message,
    reliable: bool,
    now: Instant,
) -> siplink_transaction::TransactionId {
    match step(t, |t| t.handle_message(req.clone(), reliable, now)) {
        (Received::New { id, .. }, outputs) => {
            assert!(delivered(&outputs, |e| matches!(e, TuEvent::Request(_))));
            id
        }
        other => panic!("not new: {other:?}"),
    }
}

#[test]
fn server_invite_sends_100_trying_at_200_ms() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, UDP, t0);
    let seen = run_timers(&mut t, t0, ms(300));
    assert_eq!(send_times(&seen), [0.2]);
    let Output::Send { bytes, .. } = &seen[0].out else {
        panic!()
    };
    let trying = parse(bytes);
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.to().unwrap().tag(), None);
    assert_eq!(trying.cseq().unwrap(), req.cseq().unwrap());
    // A retransmitted INVITE is answered with the 100 again, not delivered.
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(req.clone(), UDP, t0 + ms(500)))
    else {
        panic!()
    };
    assert_eq!(sends(&outputs)[0].status(), Some(100));
    assert!(!outputs.iter().any(|o| matches!(o, Output::Deliver { .. })));
    assert_eq!(
        t.state(id),
        Some(TransactionState::Server(ServerState::Proceeding))
    );
}

#[test]
fn server_invite_no_100_when_tu_answers_in_time() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, UDP, t0);
    let outs = step(&mut t, |t| {
        t.handle_response(id, &response(&req, 180), t0 + ms(150))
            .unwrap()
    })
    .1;
    assert_eq!(sends(&outs)[0].status(), Some(180));
    let seen = run_timers(&mut t, t0, ms(1000));
    assert!(send_times(&seen).is_empty());
    // The retransmitted INVITE gets the 180.
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(req, UDP, t0 + ms(500)))
    else {
        panic!()
    };
    assert_eq!(sends(&outputs)[0].status(), Some(180));
}

#[test]
fn server_invite_non_2xx_udp_timer_g_then_h() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, UDP, t0);
    let outs = step(&mut t, |t| {
        t.handle_response(id, &response(&req, 486), t0).unwrap()
    })
    .1;
    assert_eq!(sends(&outs)[0].status(), Some(486));
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert_eq!(
        send_times(&seen),
        [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(timeout_at(&seen), [32.0]); // H: no ACK
    assert_eq!(terminated_at(&seen), [32.0]);
    assert!(t.is_empty());
}

#[test]
fn server_invite_ack_confirms_then_timer_i() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, UDP, t0);
    t.handle_response(id, &response(&req, 486), t0).unwrap();
    let seen = run_timers(&mut t, t0, ms(1000));
    assert_eq!(send_times(&seen), [0.5]);
    // The ACK uses the INVITE's branch (RFC 3261 §17.1.1.3).
    let mut ack = request(
        Method::Ack,
        req.top_via().unwrap().branch().unwrap(),
        "s",
        1,
    );
    ack.set_header(
        HeaderName::To,
        "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
    );
    let (Received::Matched { id: got }, outputs) = step(&mut t, |t| {
        t.handle_message(ack.clone(), UDP, t0 + ms(1000))
    }) else {
        panic!()
    };
    assert_eq!(got, id);
    assert!(outputs.is_empty()); // absorbed, not delivered
    assert_eq!(
        t.state(id),
        Some(TransactionState::Server(ServerState::Confirmed))
    );
    // ACK retransmissions are absorbed in Confirmed.
    assert!(
        matches!(step(&mut t, |t| t.handle_message(ack, UDP, t0 + ms(2000))), (Received::Matched { .. }, ref outputs) if outputs.is_empty())
    );
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(send_times(&seen).is_empty());
    assert_eq!(terminated_at(&seen), [6.0]); // I = T4
}

#[test]
fn server_invite_tcp_no_g_h_at_64_t1_i_zero() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, TCP, t0);
    t.handle_response(id, &response(&req, 603), t0).unwrap();
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(send_times(&seen).is_empty());
    assert_eq!(timeout_at(&seen), [32.0]);
    // With the ACK: terminated at once (I = 0).
    let req = request(Method::Invite, &new_branch(), "s2", 1);
    let id = new_server(&mut t, &req, TCP, t0);
    t.handle_response(id, &response(&req, 603), t0).unwrap();
    let mut ack = request(
        Method::Ack,
        req.top_via().unwrap().branch().unwrap(),
        "s2",
        1,
    );
    ack.set_header(
        HeaderName::To,
        "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
    );
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(ack, TCP, t0 + ms(100)))
    else {
        panic!()
    };
    assert!(terminated(&outputs));
    assert!(t.is_empty());
}

#[test]
fn server_invite_accepted_passes_tu_2xx_until_timer_l() {
    for reliable in [UDP, TCP] {
        let t0 = Instant::now();
        let mut t = table();
        let req = request(Method::Invite, &new_branch(), "s", 1);
        let id = new_server(&mut t, &req, reliable, t0);
        let ok = response(&req, 200);
        let outs = step(&mut t, |t| {
            t.handle_response(id, &ok, t0 + ms(100)).unwrap()
        })
        .1;
        assert_eq!(sends(&outs)[0].status(), Some(200));
        assert_eq!(
            t.state(id),
            Some(TransactionState::Server(ServerState::Accepted))
        );
        // The TU retransmits its 2xx (RFC 3261 §13.3.1.4): it passes through.
        let outs = step(&mut t, |t| {
            t.handle_response(id, &ok, t0 + ms(600)).unwrap()
        })
        .1;
        assert_eq!(sends(&outs)[0].status(), Some(200));
        // A non-2xx now is refused.
        assert!(matches!(
            t.handle_response(id, &response(&req, 500), t0 + ms(700)),
            Err(Error::InvalidState { .. })
        ));
        // INVITE retransmissions are absorbed (no 2xx from the transaction itself).
        let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
            t.handle_message(req.clone(), reliable, t0 + ms(800))
        }) else {
            panic!()
        };
        assert!(outputs.is_empty());
        let seen = run_timers(&mut t, t0, Duration::from_secs(100));
        assert!(send_times(&seen).is_empty()); // and no 100 Trying after the 2xx
        assert_eq!(terminated_at(&seen), [32.1]); // L = 64*T1, any transport
        assert!(t.is_empty());
    }
}

#[test]
fn server_invite_transport_error() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Invite, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, UDP, t0);
    t.handle_response(id, &response(&req, 486), t0).unwrap();
    let outs = step(&mut t, |t| t.handle_transport_error(id, t0 + ms(1))).1;
    assert!(delivered(&outs, |e| matches!(e, TuEvent::TransportError)));
    assert!(terminated(&outs));
    assert!(t.is_empty());
    assert_eq!(t.timer_count(), 0);
}

// ----- server non-INVITE -----

#[test]
fn server_non_invite_udp_timer_j() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Options, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, UDP, t0);
    // Trying: a retransmission is absorbed (TU has not answered); no 100 Trying.
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(req.clone(), UDP, t0 + ms(500)))
    else {
        panic!()
    };
    assert!(outputs.is_empty());
    assert!(run_timers(&mut t, t0, ms(1000)).is_empty());
    t.handle_response(id, &response(&req, 200), t0 + ms(1000))
        .unwrap();
    // Completed: a retransmission gets the final again.
    let (Received::Matched { .. }, outputs) = step(&mut t, |t| {
        t.handle_message(req.clone(), UDP, t0 + ms(1500))
    }) else {
        panic!()
    };
    assert_eq!(sends(&outputs)[0].status(), Some(200));
    assert!(matches!(
        t.handle_response(id, &response(&req, 200), t0 + ms(1600)),
        Err(Error::InvalidState { .. })
    ));
    let seen = run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(send_times(&seen).is_empty());
    assert_eq!(terminated_at(&seen), [33.0]); // J = 64*T1
    assert!(t.is_empty());
}

#[test]
fn server_non_invite_proceeding_and_tcp_j_zero() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Register, &new_branch(), "s", 1);
    let id = new_server(&mut t, &req, TCP, t0);
    t.handle_response(id, &response(&req, 100), t0).unwrap();
    assert_eq!(
        t.state(id),
        Some(TransactionState::Server(ServerState::Proceeding))
    );
    let (Received::Matched { .. }, outputs) =
        step(&mut t, |t| t.handle_message(req.clone(), TCP, t0 + ms(100)))
    else {
        panic!()
    };
    assert_eq!(sends(&outputs)[0].status(), Some(100));
    let outs = step(&mut t, |t| {
        t.handle_response(id, &response(&req, 200), t0 + ms(200))
            .unwrap()
    })
    .1;
    assert!(terminated(&outs));
    assert!(t.is_empty());
    assert_eq!(t.timer_count(), 0);
}

#[test]
fn server_state_machine_standalone() {
    let t0 = Instant::now();
    let req = request(Method::Invite, &new_branch(), "s", 1);
    let mut tx = ServerTransaction::new(req.clone(), UDP, Timers::default(), t0).unwrap();
    assert!(matches!(
        tx.poll_output(),
        Some(Action::Deliver(TuEvent::Request(_)))
    ));
    assert!(tx.poll_output().is_none());
    assert_eq!(tx.timer(TimerKind::Trying), Some(t0 + ms(200)));
    tx.handle_response(&response(&req, 404), t0 + ms(50))
        .unwrap();
    assert!(matches!(tx.poll_output(), Some(Action::Send(_))));
    assert!(tx.poll_output().is_none());
    assert_eq!(tx.timer(TimerKind::Trying), None);
    assert_eq!(tx.timer(TimerKind::G), Some(t0 + ms(550)));
    assert_eq!(tx.timer(TimerKind::H), Some(t0 + ms(32_050)));
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(550)));
    assert_eq!(tx.state(), ServerState::Completed);
    // The Trying timer is disarmed: nothing fires at 200 ms.
    tx.handle_timeout(t0 + ms(200));
    assert!(tx.poll_output().is_none());
    // G fires at 550 ms: the 404 again.
    tx.handle_timeout(t0 + ms(550));
    assert!(matches!(tx.poll_output(), Some(Action::Send(_))));
    assert_eq!(tx.timer(TimerKind::G), Some(t0 + ms(1550)));
    assert!(tx.handle_response(&req, t0).is_err()); // not a response
}

#[test]
fn defaults_and_timer_d_covers_64_t1() {
    let d = Timers::default();
    assert_eq!((d.t1, d.t2, d.t4), (ms(500), ms(4000), ms(5000)));
    assert_eq!(d.timeout(), ms(32_000));
    assert_eq!(d.timer_d(false), ms(32_000));
    assert_eq!(d.timer_d(true), Duration::ZERO);
    let slow = Timers {
        t1: ms(1000),
        ..Timers::default()
    };
    assert_eq!(slow.timer_d(false), ms(64_000));
    let fast = Timers {
        t1: ms(100),
        ..Timers::default()
    };
    assert_eq!(fast.timer_d(false), ms(32_000));
}
