//! Matching (RFC 3261 §17.1.3, §17.2.3), CANCEL, merged requests, limits, branches.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message, Method, headers::MAGIC_COOKIE};
use siplink_transaction::{
    Error, Output, Received, ServerState, TableConfig, TransactionId, TransactionState,
    TransactionTable, TuEvent, new_branch,
};
use support::*;

const UDP: bool = false;

fn table() -> TransactionTable {
    TransactionTable::new(TableConfig::default())
}

fn new_server(t: &mut TransactionTable, req: &Message, now: Instant) -> TransactionId {
    match t.handle_message(req.clone(), UDP, now) {
        Received::New { id, .. } => id,
        other => panic!("not new: {other:?}"),
    }
}

fn with_to_tag(mut m: Message, tag: &str) -> Message {
    m.set_header(
        HeaderName::To,
        format!("Bob <sip:bob@biloxi.example.com>;tag={tag}"),
    );
    m
}

#[test]
fn responses_match_by_branch_and_cseq_method() {
    let t0 = Instant::now();
    let mut t = table();
    let branch = new_branch();
    let invite = request(Method::Invite, &branch, "m", 1);
    let cancel = request(Method::Cancel, &branch, "m", 1);
    let inv_id = t.start_client(&invite, UDP, t0).unwrap();
    let can_id = t.start_client(&cancel, UDP, t0).unwrap();
    assert_ne!(inv_id, can_id);
    // 200 to the CANCEL goes to the CANCEL transaction, 487 to the INVITE one.
    assert!(
        matches!(t.handle_message(response(&cancel, 200), UDP, t0), Received::Matched { id, .. } if id == can_id)
    );
    assert!(
        matches!(t.handle_message(response(&invite, 487), UDP, t0), Received::Matched { id, .. } if id == inv_id)
    );
    // Another branch, or another method: stray.
    let other = request(Method::Invite, &new_branch(), "m", 1);
    assert!(matches!(
        t.handle_message(response(&other, 200), UDP, t0),
        Received::Stray(_)
    ));
    let bye = request(Method::Bye, &branch, "m", 2);
    assert!(matches!(
        t.handle_message(response(&bye, 200), UDP, t0),
        Received::Stray(_)
    ));
    // Same branch and method twice: refused.
    assert_eq!(
        t.start_client(&invite, UDP, t0).unwrap_err(),
        Error::DuplicateKey
    );
    // ACK is not a transaction.
    let ack = request(Method::Ack, &new_branch(), "m", 1);
    assert_eq!(
        t.start_client(&ack, UDP, t0).unwrap_err(),
        Error::AckIsNotATransaction
    );
    // A request is never matched to a client transaction.
    assert!(matches!(
        t.handle_message(invite, UDP, t0),
        Received::New { .. }
    ));
}

#[test]
fn duplicate_requests_are_absorbed_not_redelivered() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Options, &new_branch(), "d", 1);
    let id = new_server(&mut t, &req, t0);
    for k in 1..5 {
        match step(&mut t, |t| {
            t.handle_message(req.clone(), UDP, t0 + Duration::from_millis(k * 100))
        }) {
            (Received::Matched { id: got }, outputs) => {
                assert_eq!(got, id);
                assert!(!delivered(&outputs, |_| true));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(t.len(), 1);
}

#[test]
fn server_key_includes_sent_by_and_method() {
    let t0 = Instant::now();
    let mut t = table();
    let branch = new_branch();
    let a = new_server(&mut t, &request(Method::Options, &branch, "k", 1), t0);
    // Same branch from another sent-by: another transaction.
    let b = new_server(
        &mut t,
        &request_from(Method::Options, &branch, "10.0.0.9:5060", "k", 1),
        t0,
    );
    // sent-by host compares case-insensitively.
    let same = request_from(
        Method::Options,
        &branch,
        "PC33.Atlanta.Example.COM:5060",
        "k",
        1,
    );
    assert!(matches!(t.handle_message(same, UDP, t0), Received::Matched { id, .. } if id == a));
    // Same branch, other method: another transaction.
    let c = new_server(&mut t, &request(Method::Info, &branch, "k", 1), t0);
    assert_eq!(HashSet::from([a, b, c]).len(), 3);
}

#[test]
fn ack_for_non_2xx_matches_its_invite_transaction() {
    let t0 = Instant::now();
    let mut t = table();
    let branch = new_branch();
    let invite = request(Method::Invite, &branch, "a", 1);
    let id = new_server(&mut t, &invite, t0);
    t.handle_response(id, &response(&invite, 404), t0).unwrap();
    // The ACK of an RFC 3261 client: same branch, method ACK.
    let ack = with_to_tag(request(Method::Ack, &branch, "a", 1), "a6c85cf");
    assert!(
        matches!(t.handle_message(ack, UDP, t0), Received::Matched { id: got, .. } if got == id)
    );
    assert_eq!(
        t.state(id),
        Some(TransactionState::Server(ServerState::Confirmed))
    );
    // The ACK for a 2xx has its own branch: stray (to the TU / forwarded).
    let ack2 = with_to_tag(request(Method::Ack, &new_branch(), "a", 1), "a6c85cf");
    assert!(matches!(
        t.handle_message(ack2, UDP, t0),
        Received::Stray(_)
    ));
}

#[test]
fn cancel_matches_the_invite_it_cancels() {
    let t0 = Instant::now();
    let mut t = table();
    let branch = new_branch();
    let invite = request(Method::Invite, &branch, "x", 1);
    let inv = new_server(&mut t, &invite, t0);
    let cancel = request(Method::Cancel, &branch, "x", 1);
    assert_eq!(t.find_cancelled(&cancel), Some(inv));
    match step(&mut t, |t| t.handle_message(cancel.clone(), UDP, t0)) {
        (Received::New { id, cancels }, outputs) => {
            assert_ne!(id, inv);
            assert_eq!(cancels, Some(inv));
            assert!(delivered(
                &outputs,
                |e| matches!(e, TuEvent::Request(m) if m.method() == Some(&Method::Cancel))
            ));
        }
        other => panic!("{other:?}"),
    }
    // A CANCEL retransmission matches the CANCEL transaction.
    assert!(matches!(
        t.handle_message(cancel, UDP, t0),
        Received::Matched { .. }
    ));
    // A CANCEL for nothing live: new transaction, cancels None (TU answers 481).
    let lone = request(Method::Cancel, &new_branch(), "y", 1);
    assert!(matches!(
        t.handle_message(lone, UDP, t0),
        Received::New { cancels: None, .. }
    ));
}

#[test]
fn rfc2543_fallback_matching() {
    let t0 = Instant::now();
    let mut t = table();
    // Branch without the magic cookie.
    let invite = request(Method::Invite, "old2543branch", "r", 5);
    let id = new_server(&mut t, &invite, t0);
    // Retransmission: same Request-URI, tags, Call-ID, CSeq, top Via.
    assert!(
        matches!(t.handle_message(invite.clone(), UDP, t0), Received::Matched { id: got, .. } if got == id)
    );
    // Each field taking part in the match: change it, no match.
    let mut other_uri = invite.clone();
    assert!(other_uri.set_request_uri("sip:carol@biloxi.example.com"));
    assert!(matches!(
        t.handle_message(other_uri, UDP, t0),
        Received::New { .. }
    ));
    let mut other_from = invite.clone();
    other_from.set_header(
        HeaderName::From,
        "Alice <sip:alice@atlanta.example.com>;tag=other",
    );
    assert!(matches!(
        t.handle_message(other_from, UDP, t0),
        Received::New { .. }
    ));
    let other_call = request(Method::Invite, "old2543branch", "r-other", 5);
    assert!(matches!(
        t.handle_message(other_call, UDP, t0),
        Received::New { .. }
    ));
    let other_cseq = request(Method::Invite, "old2543branch", "r", 6);
    assert!(matches!(
        t.handle_message(other_cseq, UDP, t0),
        Received::New { .. }
    ));
    let other_via = request_from(Method::Invite, "old2543branch", "10.1.1.1", "r", 5);
    assert!(matches!(
        t.handle_message(other_via, UDP, t0),
        Received::New { .. }
    ));
    let other_to = with_to_tag(invite.clone(), "zzz");
    assert!(matches!(
        t.handle_message(other_to, UDP, t0),
        Received::New { .. }
    ));

    // The ACK matches when its To tag is the tag of the response sent.
    t.handle_response(id, &response(&invite, 486), t0).unwrap();
    let wrong_tag = with_to_tag(request(Method::Ack, "old2543branch", "r", 5), "nope");
    assert!(matches!(
        t.handle_message(wrong_tag, UDP, t0),
        Received::Stray(_)
    ));
    // CANCEL (same Request-URI, tags, Call-ID, CSeq number, top Via).
    let cancel = request(Method::Cancel, "old2543branch", "r", 5);
    assert_eq!(t.find_cancelled(&cancel), Some(id));
    let ack = with_to_tag(request(Method::Ack, "old2543branch", "r", 5), "a6c85cf");
    assert!(
        matches!(t.handle_message(ack, UDP, t0), Received::Matched { id: got, .. } if got == id)
    );
    assert_eq!(
        t.state(id),
        Some(TransactionState::Server(ServerState::Confirmed))
    );
}

#[test]
fn rfc2543_without_branch_at_all() {
    let t0 = Instant::now();
    let mut t = table();
    let mut req = request(Method::Options, "x", "nb", 1);
    req.set_header(HeaderName::Via, "SIP/2.0/UDP old.example.com");
    let id = new_server(&mut t, &req, t0);
    assert!(
        matches!(t.handle_message(req, UDP, t0), Received::Matched { id: got, .. } if got == id)
    );
}

#[test]
fn merged_requests_detected_when_enabled() {
    let t0 = Instant::now();
    // A proxy (default): forked copies arriving on two branches are two transactions.
    let mut t = table();
    new_server(&mut t, &request(Method::Invite, &new_branch(), "mg", 1), t0);
    new_server(&mut t, &request(Method::Invite, &new_branch(), "mg", 1), t0);
    // A UAS: the second is a merged request, answered 482 without a transaction.
    let mut t = TransactionTable::new(TableConfig {
        detect_merged: true,
        ..TableConfig::default()
    });
    let first = request(Method::Invite, &new_branch(), "mg", 1);
    let id = new_server(&mut t, &first, t0);
    // The retransmission is not "merged".
    assert!(matches!(
        t.handle_message(first.clone(), UDP, t0),
        Received::Matched { .. }
    ));
    match t.handle_message(request(Method::Invite, &new_branch(), "mg", 1), UDP, t0) {
        Received::Merged(r) => assert_eq!(r.status(), Some(482)),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.len(), 1);
    // Once the first transaction is gone, the key is free again.
    t.handle_response(id, &response(&first, 486), t0).unwrap();
    let mut ack = with_to_tag(request(Method::Ack, "z", "mg", 1), "a6c85cf");
    ack.set_header(
        HeaderName::Via,
        first.header(HeaderName::Via).unwrap().to_vec(),
    );
    t.handle_message(ack, UDP, t0);
    run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(t.is_empty());
    assert!(matches!(
        t.handle_message(request(Method::Invite, &new_branch(), "mg", 1), UDP, t0),
        Received::New { .. }
    ));
}

#[test]
fn live_transaction_limit_answers_503_and_frees_on_termination() {
    let t0 = Instant::now();
    let mut t = TransactionTable::new(TableConfig {
        max_transactions: 2,
        retry_after: 7,
        ..TableConfig::default()
    });
    let a = request(Method::Options, &new_branch(), "l1", 1);
    let a_id = new_server(&mut t, &a, t0);
    t.start_client(&request(Method::Options, &new_branch(), "l2", 1), true, t0)
        .unwrap();
    match t.handle_message(request(Method::Invite, &new_branch(), "l3", 1), UDP, t0) {
        Received::Rejected(r) => {
            assert_eq!(r.status(), Some(503));
            assert_eq!(r.retry_after().unwrap().map(|r| r.seconds), Some(7));
            assert_eq!(r.call_id().unwrap(), "l3");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.start_client(&request(Method::Options, &new_branch(), "l4", 1), true, t0)
            .unwrap_err(),
        Error::Overloaded { limit: 2 }
    );
    // Retransmissions of live transactions still match.
    assert!(matches!(
        t.handle_message(a.clone(), UDP, t0),
        Received::Matched { .. }
    ));
    // Over TCP a final response frees the server transaction at once (J = 0)...
    let mut t2 = TransactionTable::new(TableConfig {
        max_transactions: 1,
        ..TableConfig::default()
    });
    let b = request(Method::Options, &new_branch(), "l5", 1);
    let Received::New { id, .. } = t2.handle_message(b.clone(), true, t0) else {
        panic!()
    };
    let outs = step(&mut t2, |t| {
        t.handle_response(id, &response(&b, 200), t0).unwrap()
    })
    .1;
    assert!(outs.iter().any(|o| matches!(o, Output::Terminated { .. })));
    assert!(matches!(
        t2.handle_message(request(Method::Options, &new_branch(), "l6", 1), true, t0),
        Received::New { .. }
    ));
    // ... over UDP after J.
    t.handle_response(a_id, &response(&a, 200), t0).unwrap();
    run_timers(&mut t, t0, Duration::from_secs(100));
    assert!(t.is_empty());
}

#[test]
fn stray_and_invalid_messages() {
    let t0 = Instant::now();
    let mut t = table();
    let req = request(Method::Options, &new_branch(), "s", 1);
    assert!(matches!(
        t.handle_message(response(&req, 200), UDP, t0),
        Received::Stray(_)
    ));
    let mut no_via = req.clone();
    no_via.remove_header(HeaderName::Via);
    assert!(matches!(
        t.handle_message(no_via, UDP, t0),
        Received::Invalid(_)
    ));
    let sid = new_server(&mut t, &req, t0);
    assert!(matches!(
        t.handle_response(sid, &req, t0),
        Err(Error::NotAResponse)
    ));
    let cid = t
        .start_client(&request(Method::Options, &new_branch(), "c", 1), UDP, t0)
        .unwrap();
    assert_eq!(
        t.handle_response(cid, &response(&req, 200), t0)
            .unwrap_err(),
        Error::WrongRole
    );
}

#[test]
fn branches_have_the_cookie_and_are_unique() {
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let b = new_branch();
        assert!(b.starts_with(MAGIC_COOKIE));
        assert!(b.len() >= MAGIC_COOKIE.len() + 16); // 64+ random bits
        assert!(seen.insert(b));
    }
    let via = request(Method::Options, &new_branch(), "b", 1);
    assert!(via.top_via().unwrap().has_magic_cookie());
}

#[test]
fn rfc2543_ack_for_2xx_in_accepted_goes_to_the_tu() {
    // RFC 6026 §8.7: an ACK matching an INVITE server transaction in Accepted is
    // passed to the TU (only RFC 2543 peers make the ACK for a 2xx match).
    let t0 = Instant::now();
    let mut t = table();
    let invite = request(Method::Invite, "legacy77", "acc", 3);
    let id = new_server(&mut t, &invite, t0);
    t.handle_response(id, &response(&invite, 200), t0).unwrap();
    let ack = with_to_tag(request(Method::Ack, "legacy77", "acc", 3), "a6c85cf");
    match step(&mut t, |t| t.handle_message(ack, UDP, t0)) {
        (Received::Matched { id: got }, outputs) => {
            assert_eq!(got, id);
            assert!(delivered(&outputs, |e| matches!(e, TuEvent::Ack(_))));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.state(id),
        Some(TransactionState::Server(ServerState::Accepted))
    );
}

#[test]
fn build_cancel_follows_rfc3261_9_1_and_matches_the_invite() {
    let t0 = Instant::now();
    let invite = request(Method::Invite, &new_branch(), "cx", 42);
    let cancel = siplink_transaction::build_cancel(&invite).unwrap();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(cancel.request_uri_bytes(), invite.request_uri_bytes());
    assert_eq!(cancel.call_id().unwrap(), "cx");
    assert_eq!(cancel.from().unwrap(), invite.from().unwrap());
    assert_eq!(cancel.to().unwrap(), invite.to().unwrap());
    assert_eq!(cancel.cseq().unwrap().seq, 42);
    assert_eq!(cancel.cseq().unwrap().method, Method::Cancel);
    assert_eq!(cancel.via().unwrap(), &[invite.top_via().unwrap().clone()]);
    assert_eq!(cancel.route().unwrap(), invite.route().unwrap());
    // The server side finds the INVITE from it.
    let mut t = table();
    let id = new_server(&mut t, &invite, t0);
    assert_eq!(t.find_cancelled(&cancel), Some(id));
    // Client side: its own transaction, next to the INVITE's.
    let mut c = table();
    c.start_client(&invite, UDP, t0).unwrap();
    c.start_client(&cancel, UDP, t0).unwrap();
    assert_eq!(c.len(), 2);
    let bye = request(Method::Bye, &new_branch(), "cx", 43);
    assert!(siplink_transaction::build_cancel(&bye).is_err());
}
