//! Stateless replies (no transaction created or kept) and the small records
//! finished transactions shrink to, in virtual time (no sockets).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::{
    Error, Output, Received, ServerState, TableConfig, TransactionState, TransactionTable, TuEvent,
};
use support::{drain, request, response, sends, step, terminated};

fn table() -> TransactionTable {
    TransactionTable::new(TableConfig::default())
}

fn to_tag(m: &Message) -> String {
    m.to().expect("To").tag().expect("To tag").to_owned()
}

/// The ACK a UAC sends for a non-2xx final (RFC 3261 §17.1.1.3): the INVITE's
/// top Via (same branch) and the response's To.
fn ack_for(invite: &Message, final_response: &Message) -> Message {
    MessageBuilder::request(Method::Ack, "sip:bob@biloxi.example.com")
        .header_bytes(
            HeaderName::Via,
            Bytes::copy_from_slice(invite.header(HeaderName::Via).expect("Via")),
        )
        .header(HeaderName::MaxForwards, 70)
        .header_bytes(
            HeaderName::To,
            Bytes::copy_from_slice(final_response.header(HeaderName::To).expect("To")),
        )
        .header_bytes(
            HeaderName::From,
            Bytes::copy_from_slice(invite.header(HeaderName::From).expect("From")),
        )
        .header_bytes(
            HeaderName::CallId,
            Bytes::copy_from_slice(invite.header(HeaderName::CallId).expect("Call-ID")),
        )
        .header(
            HeaderName::CSeq,
            format_args!("{} ACK", invite.cseq().expect("CSeq").seq),
        )
        .build()
        .expect("ACK")
}

#[test]
fn stateless_reply_creates_no_transaction_and_repeats_itself() {
    let t0 = Instant::now();
    let mut t = table();
    // One live transaction, to see that the count does not move.
    let other = request(Method::Options, "z9hG4bKother", "other@x", 1);
    assert!(matches!(
        t.handle_message(other, false, t0),
        Received::New { .. }
    ));
    drain(&mut t);
    let register = request(Method::Register, "z9hG4bKreg1", "reg-1@x", 1);
    let challenge = |t: &TransactionTable, r: &Message| {
        t.stateless_response(r, 401)
            .header(
                HeaderName::WwwAuthenticate,
                "Digest realm=\"x\", nonce=\"n\"",
            )
            .build()
            .expect("401")
    };
    let first = challenge(&t, &register);
    assert_eq!(first.status(), Some(401));
    assert_eq!(t.len(), 1, "no transaction created");
    assert!(t.poll_output().is_none(), "nothing queued");
    // The retransmission (the same bytes again) gets the same status, tag and bytes.
    let again = Message::parse(register.to_bytes()).expect("parse");
    let second = challenge(&t, &again);
    assert_eq!(second.status(), Some(401));
    assert_eq!(to_tag(&first), to_tag(&second));
    assert_eq!(first.to_bytes(), second.to_bytes());
    assert_eq!(t.len(), 1);
    // Another request (other Call-ID, or other branch) gets another tag.
    let other_call = request(Method::Register, "z9hG4bKreg1", "reg-2@x", 1);
    assert_ne!(to_tag(&challenge(&t, &other_call)), to_tag(&first));
    let other_branch = request(Method::Register, "z9hG4bKreg2", "reg-1@x", 2);
    assert_ne!(to_tag(&challenge(&t, &other_branch)), to_tag(&first));
    // Another table (another key) gives another tag: the tag is keyed.
    assert_ne!(to_tag(&challenge(&table(), &register)), to_tag(&first));
    // A request inside a dialog keeps its To tag.
    let in_dialog = MessageBuilder::request(Method::Bye, "sip:bob@biloxi.example.com")
        .header(HeaderName::Via, "SIP/2.0/UDP h:5060;branch=z9hG4bKbye")
        .header(HeaderName::To, "<sip:bob@biloxi.example.com>;tag=dialog1")
        .header(HeaderName::From, "<sip:alice@atlanta.example.com>;tag=a")
        .header(HeaderName::CallId, "bye@x")
        .header(HeaderName::CSeq, "2 BYE")
        .build()
        .expect("BYE");
    let r = t.stateless_response(&in_dialog, 403).build().expect("403");
    assert_eq!(to_tag(&r), "dialog1");
}

#[test]
fn ack_of_a_stateless_non_2xx_is_absorbed() {
    let t0 = Instant::now();
    let mut t = table();
    let invite = request(Method::Invite, "z9hG4bKinv1", "inv-1@x", 1);
    let r407 = t
        .stateless_response(&invite, 407)
        .header(
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"x\", nonce=\"n\"",
        )
        .build()
        .expect("407");
    let ack = ack_for(&invite, &r407);
    let (r, outs) = step(&mut t, |t| t.handle_message(ack.clone(), false, t0));
    assert!(matches!(r, Received::Absorbed), "{r:?}");
    assert!(outs.is_empty());
    assert_eq!(t.len(), 0);
    // Its retransmission too.
    assert!(matches!(
        t.handle_message(ack, false, t0),
        Received::Absorbed
    ));
    // An ACK with a To tag that is not ours (an ACK for a 2xx, end to end) is stray.
    let ok = response(&invite, 200);
    assert!(matches!(
        t.handle_message(ack_for(&invite, &ok), false, t0),
        Received::Stray(_)
    ));
    // So is an ACK whose tag looks like ours but was computed for another request.
    let other = request(Method::Invite, "z9hG4bKinv2", "inv-2@x", 1);
    let mut forged = ack_for(&other, &r407);
    forged.replace_first_value(
        HeaderName::Via,
        "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKinv2",
    );
    assert!(matches!(
        t.handle_message(forged, false, t0),
        Received::Stray(_)
    ));
    assert_eq!(t.len(), 0);
}

/// A UAC (client table) and a server table whose TU challenges the INVITE
/// statelessly: the server forgets the transaction at once, the client's ACK is
/// absorbed by the server, and the INVITE sent again gets the same tag.
#[test]
fn tu_answers_a_transaction_statelessly_and_forgets_it() {
    let t0 = Instant::now();
    let mut client = table();
    let mut server = table();
    let invite = request(Method::Invite, "z9hG4bKuac1", "uac-1@x", 1);
    let cid = client.start_client(&invite, false, t0).expect("start");
    let sent = sends(&drain(&mut client));
    assert_eq!(sent.len(), 1);

    let mut tags = Vec::new();
    for round in 0..2 {
        let at = t0 + Duration::from_millis(10 + round * 500);
        let id = match server.handle_message(sent[0].clone(), false, at) {
            Received::New { id, .. } => id,
            other => panic!("round {round}: {other:?}"),
        };
        drain(&mut server);
        // The TU's own 407 (with its own random tag): the table puts the stateless tag in.
        let tu = invite.response(407).build().expect("407");
        let (r, outs) = step(&mut server, |s| s.handle_stateless_response(id, tu, at));
        r.expect("stateless 407 accepted");
        let out = sends(&outs);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status(), Some(407));
        assert!(terminated(&outs), "terminated at once");
        assert_eq!(server.len(), 0, "nothing kept");
        assert!(server.poll_timeout().is_none(), "no timer");
        assert_eq!(to_tag(&out[0]), server.stateless().to_tag(&invite));
        tags.push(to_tag(&out[0]));

        if round == 0 {
            // The client transaction gets the 407 and ACKs it.
            let (_, couts) = step(&mut client, |c| c.handle_message(out[0].clone(), false, at));
            let acks = sends(&couts);
            assert_eq!(acks.len(), 1);
            assert_eq!(acks[0].method(), Some(&Method::Ack));
            assert!(matches!(
                server.handle_message(acks[0].clone(), false, at),
                Received::Absorbed
            ));
            assert_eq!(server.len(), 0);
            assert_eq!(
                client.state(cid),
                Some(TransactionState::Client(
                    siplink_transaction::ClientState::Completed
                ))
            );
        }
    }
    assert_eq!(
        tags[0], tags[1],
        "the retransmitted INVITE gets the same tag"
    );
}

#[test]
fn stateless_answer_refused_where_it_would_break_the_rfc() {
    let t0 = Instant::now();
    let mut t = table();
    let invite = request(Method::Invite, "z9hG4bKref1", "ref-1@x", 1);
    let Received::New { id, .. } = t.handle_message(invite.clone(), false, t0) else {
        panic!("new");
    };
    drain(&mut t);
    for status in [180, 200] {
        let r = t.handle_stateless_response(id, response(&invite, status), t0);
        assert!(
            matches!(r, Err(Error::InvalidState { .. })),
            "{status}: {r:?}"
        );
        assert_eq!(t.len(), 1);
    }
    // After a final through the transaction, no stateless answer either.
    t.handle_response(id, &response(&invite, 486), t0)
        .expect("486");
    let r = t.handle_stateless_response(id, response(&invite, 403), t0);
    assert!(matches!(r, Err(Error::InvalidState { .. })), "{r:?}");
    // A non-INVITE accepts a stateless 2xx (e.g. a 200 to OPTIONS).
    let options = request(Method::Options, "z9hG4bKref2", "ref-2@x", 1);
    let Received::New { id, .. } = t.handle_message(options.clone(), false, t0) else {
        panic!("new");
    };
    t.handle_stateless_response(id, response(&options, 200), t0)
        .expect("200");
    assert_eq!(t.len(), 1, "only the INVITE is left");
}

#[test]
fn limit_503_and_malformed_400_are_stateless_with_a_stable_tag() {
    let t0 = Instant::now();
    let mut t = TransactionTable::new(TableConfig {
        max_transactions: 1,
        retry_after: 7,
        ..TableConfig::default()
    });
    let first = request(Method::Options, "z9hG4bKlim0", "lim-0@x", 1);
    assert!(matches!(
        t.handle_message(first, false, t0),
        Received::New { .. }
    ));
    let over = request(Method::Register, "z9hG4bKlim1", "lim-1@x", 1);
    let mut seen = Vec::new();
    for _ in 0..2 {
        match t.handle_message(Message::parse(over.to_bytes()).expect("parse"), false, t0) {
            Received::Rejected(r) => {
                assert_eq!(r.status(), Some(503));
                assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"7"[..]));
                seen.push(to_tag(&r));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], t.stateless().to_tag(&over));
    assert_eq!(t.len(), 1);

    // Malformed: no CSeq, a CSeq of another method, no From.
    let mut t = table();
    let base = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bKbad1\r\n\
                Max-Forwards: 70\r\nTo: <sip:a@example.com>\r\nCall-ID: bad-1@x\r\n";
    let cases = [
        format!("{base}From: <sip:a@example.com>;tag=1\r\nContent-Length: 0\r\n\r\n"),
        format!(
            "{base}From: <sip:a@example.com>;tag=1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ),
        format!("{base}CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"),
    ];
    for text in cases {
        let msg = Message::parse(Bytes::from(text.clone())).expect("parses");
        let tag = t.stateless().to_tag(&msg);
        for _ in 0..2 {
            match t.handle_message(msg.clone(), false, t0) {
                Received::Malformed(r) => {
                    assert_eq!(r.status(), Some(400), "{text}");
                    assert_eq!(to_tag(&r), tag);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(t.len(), 0);
        assert!(t.poll_output().is_none());
    }
}

/// A completed non-INVITE server transaction over UDP answers every
/// retransmission with the bytes of its final response until timer J
/// (64*T1), then is gone; after that the request is new again.
#[test]
fn completed_server_answers_retransmissions_until_timer_j() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Register, "z9hG4bKj1", "j-1@x", 1);
    let Received::New { id, .. } = t.handle_message(req.clone(), false, t0) else {
        panic!("new");
    };
    drain(&mut t);
    let (r, outs) = step(&mut t, |t| t.handle_response(id, &response(&req, 200), t0));
    r.expect("200");
    let Output::Send {
        bytes: final_bytes, ..
    } = outs[0].clone()
    else {
        panic!("{outs:?}");
    };
    assert!(t.server_request(id).is_none(), "the request is not kept");
    for secs in [1u64, 10, 31] {
        let at = t0 + Duration::from_secs(secs);
        t.handle_timeout(at);
        assert!(drain(&mut t).is_empty());
        let (r, outs) = step(&mut t, |t| {
            t.handle_message(Message::parse(req.to_bytes()).expect("parse"), false, at)
        });
        assert!(matches!(r, Received::Matched { .. }));
        match outs.as_slice() {
            [Output::Send { bytes, .. }] => assert_eq!(bytes, &final_bytes, "at {secs} s"),
            other => panic!("at {secs} s: {other:?}"),
        }
        assert_eq!(
            t.state(id),
            Some(TransactionState::Server(ServerState::Completed))
        );
        // The TU cannot answer it again.
        assert!(t.handle_response(id, &response(&req, 500), at).is_err());
    }
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    t.handle_timeout(t0 + Duration::from_secs(32));
    assert!(terminated(&drain(&mut t)));
    assert_eq!(t.len(), 0);
    assert!(matches!(
        t.handle_message(req, false, t0 + Duration::from_secs(33)),
        Received::New { .. }
    ));
}

/// A completed INVITE server transaction over UDP retransmits the same bytes
/// (timer G and on each INVITE retransmission) until timer H; after the ACK it
/// absorbs ACKs until timer I.
#[test]
fn completed_invite_server_same_bytes_until_timer_h_then_confirmed_until_i() {
    let t0 = Instant::now();
    let mut t = table();
    let invite = request(Method::Invite, "z9hG4bKh1", "h-1@x", 1);
    let Received::New { id, .. } = t.handle_message(invite.clone(), false, t0) else {
        panic!("new");
    };
    drain(&mut t);
    let r486 = response(&invite, 486);
    let (_, outs) = step(&mut t, |t| t.handle_response(id, &r486, t0));
    let first = sends(&outs)[0].to_bytes();
    // The INVITE retransmitted: the same bytes again, nothing else.
    let (r, outs) = step(&mut t, |t| {
        t.handle_message(invite.clone(), false, t0 + Duration::from_millis(100))
    });
    assert!(matches!(r, Received::Matched { .. }));
    assert_eq!(outs.len(), 1);
    assert_eq!(sends(&outs)[0].to_bytes(), first);
    assert!(t.server_request(id).is_none(), "the request is not kept");
    let mut count = 0;
    while let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        for o in drain(&mut t) {
            match o {
                Output::Send { bytes, .. } => {
                    assert_eq!(bytes, first);
                    count += 1;
                }
                Output::Deliver { event, .. } => {
                    assert!(matches!(event, TuEvent::Timeout));
                    assert_eq!(at, t0 + Duration::from_secs(32), "timer H");
                }
                Output::Terminated { .. } => assert_eq!(at, t0 + Duration::from_secs(32)),
            }
        }
    }
    assert!(count >= 9, "G retransmissions: {count}");
    assert_eq!(t.len(), 0);

    // With the ACK: Confirmed, ACK retransmissions absorbed, gone after T4.
    let invite = request(Method::Invite, "z9hG4bKi1", "i-1@x", 1);
    let Received::New { id, .. } = t.handle_message(invite.clone(), false, t0) else {
        panic!("new");
    };
    let r486 = response(&invite, 486);
    t.handle_response(id, &r486, t0).expect("486");
    let ack = ack_for(&invite, &r486);
    let at = t0 + Duration::from_millis(100);
    for _ in 0..3 {
        let (r, outs) = step(&mut t, |t| t.handle_message(ack.clone(), false, at));
        assert!(matches!(r, Received::Matched { .. }));
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!(
            t.state(id),
            Some(TransactionState::Server(ServerState::Confirmed))
        );
    }
    assert_eq!(t.poll_timeout(), Some(at + Duration::from_secs(5)));
    assert_eq!(t.timer_count(), 1);
    t.handle_timeout(at + Duration::from_secs(5));
    assert!(terminated(&drain(&mut t)));
    assert_eq!(t.len(), 0);
}

/// A completed client INVITE keeps only the ACK: a retransmitted 486 gets the
/// same ACK bytes, a 2xx from another fork still reaches the TU, timer D ends it.
#[test]
fn completed_client_invite_resends_the_same_ack_until_timer_d() {
    let t0 = Instant::now();
    let mut t = table();
    let invite = request(Method::Invite, "z9hG4bKd1", "d-1@x", 1);
    let id = t.start_client(&invite, false, t0).expect("start");
    drain(&mut t);
    let r486 = response(&invite, 486);
    let (_, outs) = step(&mut t, |t| t.handle_message(r486.clone(), false, t0));
    let ack = sends(&outs)[0].to_bytes();
    for secs in [1u64, 20, 31] {
        let at = t0 + Duration::from_secs(secs);
        let (_, outs) = step(&mut t, |t| t.handle_message(r486.clone(), false, at));
        assert_eq!(sends(&outs)[0].to_bytes(), ack);
        assert!(
            !outs.iter().any(|o| matches!(o, Output::Deliver { .. })),
            "no second final"
        );
    }
    let ok = invite
        .response_with_tag(200, Some("fork2"))
        .build()
        .expect("200");
    let (_, outs) = step(&mut t, |t| t.handle_message(ok, false, t0));
    assert!(support::delivered(&outs, |e| matches!(
        e,
        TuEvent::Additional2xx(_)
    )));
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    t.handle_timeout(t0 + Duration::from_secs(32));
    assert!(terminated(&drain(&mut t)));
    assert!(t.state(id).is_none());
}
