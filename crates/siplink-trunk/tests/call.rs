//! OutboundCall in virtual time: failover order, challenges, timers, CANCEL,
//! caller-ID policy and the dialog mapping.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use siplink_auth::{
    ClientCredentials, DigestServer, Outcome, RequestInfo, ServerConfig, StoredSecret,
};
use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_trunk::{
    AttemptFailure, CallFailure, CallState, HealthMonitor, HealthOutput, Input, OutboundCall,
    Output, PaiPolicy, Result, RuriHost, Target, TargetAddr, Transport, TrunkConfig, target_order,
};

const SENT_BY: &str = "198.51.100.1:5060";

fn invite() -> Message {
    MessageBuilder::request(Method::Invite, "sip:+4930123@trunk.example.com")
        .header(
            HeaderName::Via,
            "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKcaller1;rport",
        )
        .header(HeaderName::MaxForwards, 69)
        .header(HeaderName::To, "<sip:+4930123@trunk.example.com>")
        .header(HeaderName::From, "\"Alice\" <sip:1001@example.com>;tag=c1")
        .header(HeaderName::CallId, "call-1@203.0.113.5")
        .header(HeaderName::CSeq, "7 INVITE")
        .header(HeaderName::Contact, "<sip:1001@203.0.113.5:5060>")
        .header(
            HeaderName::ProxyAuthorization,
            "Digest username=\"1001\", realm=\"example.com\", nonce=\"n\", uri=\"sip:x\", response=\"00\"",
        )
        .body("application/sdp", "v=0\r\n")
        .build()
        .unwrap()
}

fn config(n: usize) -> TrunkConfig {
    let targets = (0..n)
        .map(|i| {
            Target::new(format!("192.0.2.{}", 10 + i), 5060, Transport::Udp)
                .with_priority(10 * (i as u16 + 1))
        })
        .collect();
    TrunkConfig::new("pbx", targets)
}

fn call(cfg: TrunkConfig) -> OutboundCall {
    let n = cfg.targets.len();
    OutboundCall::new(Arc::new(cfg), SENT_BY, (0..n).collect())
}

/// The INVITE/CANCEL requests and their targets in `out`.
fn sends(out: &[Output]) -> Vec<(Message, usize)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                request, target, ..
            } => Some((request.clone(), *target)),
            _ => None,
        })
        .collect()
}

fn only_send(out: &[Output]) -> (Message, usize) {
    let s = sends(out);
    assert_eq!(s.len(), 1, "{out:#?}");
    s.into_iter().next().unwrap()
}

fn finals(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Final(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Takes everything `c` queued.
fn drain(c: &mut OutboundCall) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

/// Starts `c` and takes what it queued.
fn start(c: &mut OutboundCall, invite: Message, now: Instant) -> Result<Vec<Output>> {
    c.start(invite, now).map(|()| drain(c))
}

/// Feeds `input` to `c` and takes what it queued.
fn feed(c: &mut OutboundCall, input: Input, now: Instant) -> Result<Vec<Output>> {
    c.handle_input(input, now).map(|()| drain(c))
}

/// Fires `c`'s timer at `now` and takes what it queued.
fn timeout(c: &mut OutboundCall, now: Instant) -> Result<Vec<Output>> {
    c.handle_timeout(now).map(|()| drain(c))
}

/// The caller cancels; takes what `c` queued.
fn caller_cancel(c: &mut OutboundCall, now: Instant) -> Result<Vec<Output>> {
    c.handle_cancel(now).map(|()| drain(c))
}

fn branch(m: &Message) -> String {
    m.top_via().unwrap().branch().unwrap().to_owned()
}

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

#[test]
fn first_invite_is_rewritten() {
    let t0 = Instant::now();
    let mut c = call(config(1));
    let (req, target) = only_send(&start(&mut c, invite(), t0).unwrap());
    assert_eq!(target, 0);
    assert_eq!(
        req.request_uri_bytes().unwrap(),
        "sip:+4930123@192.0.2.10:5060"
    );
    let vias = req.via().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].sent_by(), SENT_BY);
    assert!(vias[0].has_magic_cookie());
    assert_eq!(vias[0].rport(), Some(None));
    assert_eq!(vias[1].branch(), Some("z9hG4bKcaller1"));
    assert_eq!(req.max_forwards().unwrap(), Some(68));
    assert_eq!(req.cseq().unwrap().seq, 7);
    assert_eq!(req.call_id().unwrap(), "call-1@203.0.113.5");
    // The caller's credentials are for us, never for the PBX.
    assert_eq!(req.count(HeaderName::ProxyAuthorization), 0);
    assert_eq!(req.body().as_ref(), b"v=0\r\n");
    assert_eq!(c.state(), CallState::Trying);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(4)));
}

#[test]
fn failover_follows_priority_on_503_408_timeout_and_transport_error() {
    let t0 = Instant::now();
    let mut c = call(config(5));
    let (r0, t) = only_send(&start(&mut c, invite(), t0).unwrap());
    assert_eq!(t, 0);

    // 503 → target 1.
    let out = feed(
        &mut c,
        Input::Response(r0.response(503).build().unwrap()),
        ms(t0, 10),
    )
    .unwrap();
    assert!(matches!(
        out[0],
        Output::TargetFailed {
            target: 0,
            reason: AttemptFailure::Status(503)
        }
    ));
    let (r1, t) = only_send(&out);
    assert_eq!(t, 1);
    assert_ne!(branch(&r1), branch(&r0));
    assert_eq!(
        r1.cseq().unwrap().seq,
        7,
        "same CSeq on a new branch (§16.6)"
    );
    assert_eq!(
        r1.request_uri_bytes().unwrap(),
        "sip:+4930123@192.0.2.11:5060"
    );

    // 408 → target 2.
    let out = feed(
        &mut c,
        Input::Response(r1.response(408).build().unwrap()),
        ms(t0, 20),
    )
    .unwrap();
    let (r2, t) = only_send(&out);
    assert_eq!(t, 2);

    // Timer B → target 3.
    let out = feed(
        &mut c,
        Input::Timeout {
            branch: branch(&r2),
        },
        ms(t0, 30),
    )
    .unwrap();
    assert!(matches!(
        out[0],
        Output::TargetFailed {
            target: 2,
            reason: AttemptFailure::Timeout
        }
    ));
    let (r3, t) = only_send(&out);
    assert_eq!(t, 3);

    // Transport error → target 4.
    let out = feed(
        &mut c,
        Input::TransportError {
            branch: branch(&r3),
        },
        ms(t0, 40),
    )
    .unwrap();
    let (r4, t) = only_send(&out);
    assert_eq!(t, 4);

    // The last one is busy: 486 is final and relayed, mapped back.
    let out = feed(
        &mut c,
        Input::Response(r4.response(486).build().unwrap()),
        ms(t0, 50),
    )
    .unwrap();
    let f = finals(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status(), Some(486));
    assert_eq!(f[0].via().unwrap().len(), 1);
    assert_eq!(f[0].top_via().unwrap().branch(), Some("z9hG4bKcaller1"));
    assert_eq!(c.state(), CallState::Ended);
}

#[test]
fn final_4xx_6xx_do_not_fail_over() {
    for status in [404, 486, 403, 603, 302] {
        let t0 = Instant::now();
        let mut c = call(config(2));
        let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
        let out = feed(
            &mut c,
            Input::Response(r0.response(status).build().unwrap()),
            ms(t0, 10),
        )
        .unwrap();
        assert!(sends(&out).is_empty(), "{status}");
        assert_eq!(finals(&out)[0].status(), Some(status));
    }
}

#[test]
fn status_500_fails_over_only_when_configured() {
    let t0 = Instant::now();
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let out = feed(
        &mut c,
        Input::Response(r0.response(500).build().unwrap()),
        t0,
    )
    .unwrap();
    assert_eq!(finals(&out)[0].status(), Some(500));

    let mut cfg = config(2);
    cfg.failover.statuses.push(500);
    let mut c = call(cfg);
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let out = feed(
        &mut c,
        Input::Response(r0.response(500).build().unwrap()),
        t0,
    )
    .unwrap();
    assert_eq!(only_send(&out).1, 1);
}

#[test]
fn no_failover_after_a_provisional() {
    let t0 = Instant::now();
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    // 100 Trying is hop by hop: not relayed, failover still possible.
    let out = feed(
        &mut c,
        Input::Response(r0.response(100).build().unwrap()),
        ms(t0, 5),
    )
    .unwrap();
    assert!(out.is_empty());
    assert_eq!(
        c.poll_timeout(),
        None,
        "any response stops the no-response timer"
    );
    let ringing = r0.response_with_tag(180, Some("pbx1")).build().unwrap();
    let out = feed(&mut c, Input::Response(ringing), ms(t0, 10)).unwrap();
    let Output::Relay(r) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(r.status(), Some(180));
    assert_eq!(r.cseq().unwrap().seq, 7);
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKcaller1"));
    assert_eq!(c.state(), CallState::Proceeding);
    let out = feed(
        &mut c,
        Input::Response(r0.response_with_tag(503, Some("pbx1")).build().unwrap()),
        ms(t0, 900),
    )
    .unwrap();
    assert!(sends(&out).is_empty());
    assert_eq!(finals(&out)[0].status(), Some(503));
}

#[test]
fn all_targets_failing_ends_with_a_local_final() {
    let t0 = Instant::now();
    // 503 everywhere → 500 (RFC 3261 §16.7 step 6), with the reason.
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let out = feed(
        &mut c,
        Input::Response(r0.response(503).build().unwrap()),
        t0,
    )
    .unwrap();
    let (r1, _) = only_send(&out);
    let out = feed(
        &mut c,
        Input::Response(r1.response(503).build().unwrap()),
        t0,
    )
    .unwrap();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Failed(CallFailure::AllTargetsFailed {
            last: AttemptFailure::Status(503)
        })
    )));
    let f = finals(&out);
    assert_eq!(f[0].status(), Some(500));
    assert_eq!(f[0].top_via().unwrap().branch(), Some("z9hG4bKcaller1"));
    assert_eq!(f[0].cseq().unwrap().seq, 7);

    // Timeouts everywhere → 408.
    let mut c = call(config(1));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let out = feed(
        &mut c,
        Input::Timeout {
            branch: branch(&r0),
        },
        t0,
    )
    .unwrap();
    assert_eq!(finals(&out)[0].status(), Some(408));

    // A relayable failover status on the last target is the PBX's own answer.
    let mut c = call(config(1));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let resp = r0
        .response(408)
        .reason("Gateway Timeout Upstream")
        .build()
        .unwrap();
    let out = feed(&mut c, Input::Response(resp), t0).unwrap();
    assert_eq!(
        finals(&out)[0].reason(),
        Some(&b"Gateway Timeout Upstream"[..])
    );
}

#[test]
fn no_response_timer_fails_over_and_cancels_a_late_answer() {
    let t0 = Instant::now();
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    assert!(timeout(&mut c, ms(t0, 3999)).unwrap().is_empty());
    let out = timeout(&mut c, ms(t0, 4000)).unwrap();
    assert!(matches!(
        out[0],
        Output::TargetFailed {
            target: 0,
            reason: AttemptFailure::NoResponse
        }
    ));
    let (r1, t) = only_send(&out);
    assert_eq!(t, 1);
    assert_eq!(c.poll_timeout(), Some(ms(t0, 8000)));

    // The first PBX wakes up and rings: it gets a CANCEL, the caller sees nothing.
    let out = feed(
        &mut c,
        Input::Response(r0.response_with_tag(180, Some("late")).build().unwrap()),
        ms(t0, 4100),
    )
    .unwrap();
    let (cancel, t) = only_send(&out);
    assert_eq!(t, 0);
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(branch(&cancel), branch(&r0));
    assert_eq!(cancel.cseq().unwrap().to_string(), "7 CANCEL");
    assert!(!out.iter().any(|o| matches!(o, Output::Relay(_))));

    // The second answers.
    let ok = r1.response_with_tag(200, Some("pbx2")).build().unwrap();
    let out = feed(&mut c, Input::Response(ok), ms(t0, 4200)).unwrap();
    assert_eq!(finals(&out)[0].status(), Some(200));
    assert_eq!(c.state(), CallState::Answered);
}

#[test]
fn late_2xx_from_an_abandoned_target_answers_the_call() {
    let t0 = Instant::now();
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let (r1, _) = only_send(&timeout(&mut c, ms(t0, 4000)).unwrap());
    // Target 1 rings, then the abandoned target 0 answers: that is the answer,
    // and target 1 is cancelled.
    feed(
        &mut c,
        Input::Response(r1.response_with_tag(180, Some("b")).build().unwrap()),
        ms(t0, 4100),
    )
    .unwrap();
    let ok = r0.response_with_tag(200, Some("a")).build().unwrap();
    let out = feed(&mut c, Input::Response(ok), ms(t0, 4200)).unwrap();
    let (cancel, t) = only_send(&out);
    assert_eq!((cancel.method(), t), (Some(&Method::Cancel), 1));
    assert_eq!(finals(&out)[0].to_tag().unwrap(), Some("a"));
    // Target 1 answers as well: a further 2xx, forwarded upstream.
    let ok = r1.response_with_tag(200, Some("b")).build().unwrap();
    let out = feed(&mut c, Input::Response(ok), ms(t0, 4300)).unwrap();
    assert!(matches!(&out[..], [Output::Additional2xx(m)] if m.to_tag().unwrap() == Some("b")));
}

fn www(realm: &str, nonce: &str) -> String {
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5")
}

#[test]
fn challenge_answered_once_then_rejected() {
    let t0 = Instant::now();
    let mut cfg = config(2);
    cfg.credentials = Some(ClientCredentials::password("trunkuser", "s3cret"));
    let mut c = call(cfg);
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let challenge = r0
        .response(401)
        .header(HeaderName::WwwAuthenticate, www("pbx", "n1"))
        .build()
        .unwrap();
    let out = feed(&mut c, Input::Response(challenge), ms(t0, 10)).unwrap();
    let (r1, t) = only_send(&out);
    assert_eq!(t, 0, "the answer goes to the target that challenged");
    assert_eq!(r1.cseq().unwrap().seq, 8, "a new request: CSeq + 1");
    assert_eq!(r1.call_id().unwrap(), "call-1@203.0.113.5");
    assert_ne!(branch(&r1), branch(&r0));
    let creds = r1.authorization().unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].username(), Some("trunkuser"));
    assert_eq!(creds[0].nonce(), Some("n1"));
    assert_eq!(r1.via().unwrap().len(), 2, "only one Via of ours");

    // Challenged again with a fresh nonce: wrong password, no loop, no failover.
    let again = r1
        .response(401)
        .header(HeaderName::WwwAuthenticate, www("pbx", "n2"))
        .build()
        .unwrap();
    let out = feed(&mut c, Input::Response(again), ms(t0, 20)).unwrap();
    assert!(sends(&out).is_empty());
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Failed(CallFailure::AuthFailed(
            siplink_auth::AuthError::CredentialsRejected { .. }
        ))
    )));
    let f = finals(&out);
    assert_eq!(f[0].status(), Some(403));
    assert_eq!(f[0].cseq().unwrap().seq, 7, "the caller's CSeq");
    assert_eq!(c.state(), CallState::Ended);
}

#[test]
fn proxy_challenge_then_success_and_the_dialog_map() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let server = DigestServer::new(ServerConfig::new("carrier"));
    let t0 = Instant::now();
    let mut cfg = config(1);
    cfg.credentials = Some(ClientCredentials::password("gw01", "pw"));
    let mut c = call(cfg);
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let mut b = r0.response(407);
    for ch in server.challenge(None, now, false) {
        b = b.header(HeaderName::ProxyAuthenticate, ch);
    }
    let out = feed(&mut c, Input::Response(b.build().unwrap()), ms(t0, 10)).unwrap();
    let (r1, _) = only_send(&out);
    let pa = r1.proxy_authorization().unwrap();
    assert_eq!(pa.len(), 1);
    let uri = String::from_utf8_lossy(r1.request_uri_bytes().unwrap()).into_owned();
    let store =
        |user: &str, _: &str, _| (user == "gw01").then(|| StoredSecret::Password("pw".into()));
    match server.verify(&pa[0], &RequestInfo::new("INVITE", &uri), None, now, &store) {
        Outcome::Accept(who) => assert_eq!(who.username, "gw01"),
        other => panic!("{other:?}"),
    }
    let ok = r1.response_with_tag(200, Some("pbx")).build().unwrap();
    let out = feed(&mut c, Input::Response(ok), ms(t0, 50)).unwrap();
    let f = finals(&out);
    assert_eq!(f[0].cseq().unwrap().to_string(), "7 INVITE");

    // The caller's ACK and BYE get the trunk's CSeq numbering.
    let map = c.dialog().unwrap().clone();
    assert_eq!(map.cseq_offset, 1);
    let ack = MessageBuilder::request(Method::Ack, "sip:pbx@192.0.2.10")
        .header(HeaderName::Via, "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKack")
        .header(HeaderName::From, "\"Alice\" <sip:1001@example.com>;tag=c1")
        .header(HeaderName::To, "<sip:+4930123@trunk.example.com>;tag=pbx")
        .header(HeaderName::CallId, "call-1@203.0.113.5")
        .header(HeaderName::CSeq, "7 ACK")
        .build()
        .unwrap();
    let ack = map.to_trunk(ack).unwrap().reparse().unwrap();
    assert_eq!(ack.cseq().unwrap().to_string(), "8 ACK");
    assert_eq!(ack.proxy_authorization().unwrap().len(), 1, "§22.1");
    let bye = MessageBuilder::request(Method::Bye, "sip:pbx@192.0.2.10")
        .header(HeaderName::Via, "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKbye")
        .header(HeaderName::From, "\"Alice\" <sip:1001@example.com>;tag=c1")
        .header(HeaderName::To, "<sip:+4930123@trunk.example.com>;tag=pbx")
        .header(HeaderName::CallId, "call-1@203.0.113.5")
        .header(HeaderName::CSeq, "8 BYE")
        .build()
        .unwrap();
    let bye = map.to_trunk(bye).unwrap().reparse().unwrap();
    assert_eq!(bye.cseq().unwrap().seq, 9);
    assert_eq!(bye.proxy_authorization().unwrap().len(), 0);
    let ok = map
        .response_to_caller(bye.response(200).build().unwrap())
        .unwrap()
        .reparse()
        .unwrap();
    assert_eq!(ok.cseq().unwrap().to_string(), "8 BYE");
}

#[test]
fn challenge_without_credentials_is_a_403() {
    let t0 = Instant::now();
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let ch = r0
        .response(407)
        .header(HeaderName::ProxyAuthenticate, www("carrier", "n"))
        .build()
        .unwrap();
    let out = feed(&mut c, Input::Response(ch), t0).unwrap();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Failed(CallFailure::AuthRequired { realm: Some(r) }) if r == "carrier"
    )));
    assert_eq!(finals(&out)[0].status(), Some(403));
}

#[test]
fn cancel_before_and_after_a_provisional() {
    let t0 = Instant::now();
    // Before any response: the CANCEL waits for the first 1xx (§9.1).
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    assert!(caller_cancel(&mut c, ms(t0, 5)).unwrap().is_empty());
    let out = feed(
        &mut c,
        Input::Response(r0.response(100).build().unwrap()),
        ms(t0, 10),
    )
    .unwrap();
    let (cancel, _) = only_send(&out);
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    let out = feed(
        &mut c,
        Input::Response(r0.response_with_tag(487, Some("x")).build().unwrap()),
        ms(t0, 20),
    )
    .unwrap();
    assert_eq!(finals(&out)[0].status(), Some(487));

    // Cancelled, then the target fails: no failover, 487 for the caller.
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    caller_cancel(&mut c, ms(t0, 5)).unwrap();
    let out = feed(
        &mut c,
        Input::Timeout {
            branch: branch(&r0),
        },
        ms(t0, 32_000),
    )
    .unwrap();
    assert!(sends(&out).is_empty());
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Failed(CallFailure::Cancelled)))
    );
    assert_eq!(finals(&out)[0].status(), Some(487));

    // After 180: the CANCEL goes at once.
    let mut c = call(config(1));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    feed(
        &mut c,
        Input::Response(r0.response_with_tag(180, Some("t")).build().unwrap()),
        ms(t0, 5),
    )
    .unwrap();
    let (cancel, t) = only_send(&caller_cancel(&mut c, ms(t0, 6)).unwrap());
    assert_eq!((cancel.method(), t), (Some(&Method::Cancel), 0));
    assert_eq!(branch(&cancel), branch(&r0));
    assert!(caller_cancel(&mut c, ms(t0, 7)).unwrap().is_empty(), "once");
}

#[test]
fn caller_id_policy_and_ruri_domain() {
    let t0 = Instant::now();
    let mut cfg = config(1);
    cfg.caller_id.from_user = Some("+4930999".into());
    cfg.caller_id.from_host = Some("carrier.example".into());
    cfg.caller_id.from_display = Some("ACME \"Sales\"".into());
    cfg.caller_id.pai = PaiPolicy::CallerFrom;
    cfg.request_uri_host = RuriHost::Domain("pbx.example".into());
    let mut c = call(cfg);
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    assert_eq!(r0.request_uri_bytes().unwrap(), "sip:+4930123@pbx.example");
    let from = r0.from().unwrap();
    assert_eq!(from.uri.as_str(), "sip:+4930999@carrier.example");
    assert_eq!(from.display_name.as_deref(), Some("ACME \"Sales\""));
    assert_eq!(from.tag(), Some("c1"), "the dialog stays the caller's");
    let pai =
        String::from_utf8_lossy(r0.header(HeaderName::PAssertedIdentity).unwrap()).into_owned();
    assert_eq!(pai, "\"Alice\" <sip:1001@example.com>");

    // Responses carry the caller's From again.
    let ok = r0.response_with_tag(200, Some("p")).build().unwrap();
    let out = feed(&mut c, Input::Response(ok), ms(t0, 10)).unwrap();
    let f = &finals(&out)[0];
    assert_eq!(f.from().unwrap().uri.as_str(), "sip:1001@example.com");
    // And the PBX's in-dialog BYE reaches the caller addressed to its own From.
    let map = c.dialog().unwrap();
    let bye = MessageBuilder::request(Method::Bye, "sip:1001@203.0.113.5:5060")
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKpbx")
        .header(HeaderName::From, "<sip:+4930123@pbx.example>;tag=p")
        .header(
            HeaderName::To,
            "\"ACME\" <sip:+4930999@carrier.example>;tag=c1",
        )
        .header(HeaderName::CallId, "call-1@203.0.113.5")
        .header(HeaderName::CSeq, "1 BYE")
        .build()
        .unwrap();
    let bye = map.from_trunk(bye).reparse().unwrap();
    assert_eq!(bye.to().unwrap().uri.as_str(), "sip:1001@example.com");
    assert_eq!(bye.to().unwrap().tag(), Some("c1"));
    assert_eq!(bye.cseq().unwrap().seq, 1);
}

#[test]
fn ruri_target_transport_and_outbound_proxy() {
    let t0 = Instant::now();
    let mut cfg = TrunkConfig::new(
        "pbx",
        vec![Target::new("2001:db8::10", 5080, Transport::Tcp)],
    );
    cfg.outbound_proxy = Some(TargetAddr::new("sbc.example", 5061, Transport::Tls));
    let mut c = call(cfg);
    let out = start(&mut c, invite(), t0).unwrap();
    let Output::Send {
        request, next_hop, ..
    } = &out[0]
    else {
        panic!()
    };
    assert_eq!(next_hop.host, "sbc.example");
    assert_eq!(
        request.request_uri_bytes().unwrap(),
        "sip:+4930123@[2001:db8::10]:5080;transport=tcp"
    );
    assert!(request.top_via().unwrap().is_transport("TLS"));
    let route = request.route().unwrap();
    assert_eq!(
        route[0].uri.as_str(),
        "sip:sbc.example:5061;lr;transport=tls"
    );
}

#[test]
fn health_feeds_the_order_and_all_down_policy() {
    let t0 = Instant::now();
    let mut cfg = config(3);
    cfg.health.down_after = 1;
    let cfg = Arc::new(cfg);
    let mut mon = HealthMonitor::new(cfg.clone(), SENT_BY, StdRng::seed_from_u64(1), t0);
    mon.handle_timeout(t0);
    let Some(HealthOutput::Probe(probe)) = mon.poll_output() else {
        panic!("a probe for target 0")
    };
    // Target 0 down.
    let b = branch(&probe.request);
    mon.handle_probe_timeout(&b, ms(t0, 32_000));
    let mut rng = StdRng::seed_from_u64(5);
    assert_eq!(mon.call_order(&mut rng), [1, 2]);
    let mut c = OutboundCall::new(cfg.clone(), SENT_BY, mon.call_order(&mut rng));
    assert_eq!(only_send(&start(&mut c, invite(), t0).unwrap()).1, 1);

    // Every target down, try_when_all_down = false: 503 at once.
    let mut cfg2 = (*cfg).clone();
    cfg2.health.try_when_all_down = false;
    let order = target_order(&cfg2.targets, |_| false, false, &mut rng);
    let mut c = OutboundCall::new(Arc::new(cfg2), SENT_BY, order);
    let out = start(&mut c, invite(), t0).unwrap();
    assert!(matches!(
        out[0],
        Output::Failed(CallFailure::NoTargetAvailable)
    ));
    assert_eq!(finals(&out)[0].status(), Some(503));
}

#[test]
fn rejects_non_invite_and_max_forwards_zero() {
    let t0 = Instant::now();
    let mut c = call(config(1));
    let bye = MessageBuilder::request(Method::Bye, "sip:x@example.com")
        .header(HeaderName::Via, "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKb")
        .header(HeaderName::From, "<sip:a@example.com>;tag=1")
        .header(HeaderName::To, "<sip:x@example.com>")
        .header(HeaderName::CallId, "c")
        .header(HeaderName::CSeq, "1 BYE")
        .build()
        .unwrap();
    assert!(matches!(
        start(&mut c, bye, t0),
        Err(siplink_trunk::Error::NotAnInvite)
    ));

    let mut inv = invite();
    inv.set_header(HeaderName::MaxForwards, "0");
    let inv = inv.reparse().unwrap();
    let out = start(&mut c, inv, t0).unwrap();
    assert_eq!(finals(&out)[0].status(), Some(483));
}

#[test]
fn two_realms_and_stale_nonces_are_answered_but_bounded() {
    let t0 = Instant::now();
    let mut cfg = config(1);
    cfg.credentials = Some(ClientCredentials::password("gw", "pw"));
    let mut c = call(cfg);
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    // The outbound SBC asks first (407), then the PBX (401): both answered.
    let ch = r0
        .response(407)
        .header(HeaderName::ProxyAuthenticate, www("sbc", "a1"))
        .build()
        .unwrap();
    let (r1, _) = only_send(&feed(&mut c, Input::Response(ch), ms(t0, 10)).unwrap());
    let ch = r1
        .response(401)
        .header(HeaderName::WwwAuthenticate, www("pbx", "b1"))
        .build()
        .unwrap();
    let (r2, _) = only_send(&feed(&mut c, Input::Response(ch), ms(t0, 20)).unwrap());
    assert_eq!(r2.cseq().unwrap().seq, 9);
    assert_eq!(r2.proxy_authorization().unwrap().len(), 1);
    assert_eq!(r2.authorization().unwrap().len(), 1);
    // stale=true: a new nonce, not a rejection.
    let ch = r2
        .response(401)
        .header(
            HeaderName::WwwAuthenticate,
            format!("{}, stale=true", www("pbx", "b2")),
        )
        .build()
        .unwrap();
    let (r3, _) = only_send(&feed(&mut c, Input::Response(ch), ms(t0, 30)).unwrap());
    assert_eq!(r3.authorization().unwrap()[0].nonce(), Some("b2"));
    // Stale again and again: the bound ends it.
    let mut last = r3;
    let mut ended = None;
    for k in 0..5 {
        let ch = last
            .response(401)
            .header(
                HeaderName::WwwAuthenticate,
                format!("{}, stale=true", www("pbx", &format!("s{k}"))),
            )
            .build()
            .unwrap();
        let out = feed(&mut c, Input::Response(ch), ms(t0, 40 + k)).unwrap();
        match sends(&out).pop() {
            Some((r, _)) => last = r,
            None => {
                ended = Some(out);
                break;
            }
        }
    }
    let out = ended.expect("bounded");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Failed(CallFailure::AuthFailed(_))))
    );
    assert_eq!(finals(&out)[0].status(), Some(403));
}

#[test]
fn a_challenge_after_cancel_ends_with_487() {
    let t0 = Instant::now();
    let mut cfg = config(1);
    cfg.credentials = Some(ClientCredentials::password("gw", "pw"));
    let mut c = call(cfg);
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    caller_cancel(&mut c, ms(t0, 1)).unwrap();
    let ch = r0
        .response(401)
        .header(HeaderName::WwwAuthenticate, www("pbx", "n"))
        .build()
        .unwrap();
    let out = feed(&mut c, Input::Response(ch), ms(t0, 2)).unwrap();
    assert!(sends(&out).is_empty());
    assert_eq!(finals(&out)[0].status(), Some(487));
}

#[test]
fn a_silent_loser_is_cancelled_when_it_wakes_up() {
    let t0 = Instant::now();
    let mut c = call(config(2));
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let (r1, _) = only_send(&timeout(&mut c, ms(t0, 4000)).unwrap());
    // Target 0 (abandoned) answers while target 1 has said nothing yet.
    let ok = r0.response_with_tag(200, Some("a")).build().unwrap();
    let out = feed(&mut c, Input::Response(ok), ms(t0, 4100)).unwrap();
    assert!(
        sends(&out).is_empty(),
        "no CANCEL before a provisional (§9.1)"
    );
    assert_eq!(finals(&out)[0].status(), Some(200));
    assert_eq!(c.poll_timeout(), None);
    // Target 1's first response brings the CANCEL; its 487 is absorbed.
    let out = feed(
        &mut c,
        Input::Response(r1.response(100).build().unwrap()),
        ms(t0, 4200),
    )
    .unwrap();
    let (cancel, t) = only_send(&out);
    assert_eq!((cancel.method(), t), (Some(&Method::Cancel), 1));
    let out = feed(
        &mut c,
        Input::Response(r1.response_with_tag(487, Some("b")).build().unwrap()),
        ms(t0, 4300),
    )
    .unwrap();
    assert!(out.is_empty());
    assert_eq!(c.state(), CallState::Answered);
}

#[test]
fn config_validation() {
    assert!(config(1).validate().is_ok());
    assert!(TrunkConfig::new("x", vec![]).validate().is_err());
    let mut c = config(1);
    c.targets[0].addr.port = 0;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("a target port is 0")
    );
    let mut c = config(1);
    c.targets[0].addr.host = String::new();
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("target host is empty")
    );
    let mut c = config(1);
    c.outbound_proxy = Some(TargetAddr::new("proxy.example.com", 0, Transport::Udp));
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("outbound proxy's port is 0")
    );
    let mut c = config(1);
    c.outbound_proxy = Some(TargetAddr::new("", 5060, Transport::Udp));
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("outbound proxy's host is empty")
    );
    let mut c = config(1);
    c.health.down_after = 0;
    assert!(c.validate().is_err());
    let mut c = config(1);
    c.outbound_proxy = Some(TargetAddr::new("bad host", 5060, Transport::Udp));
    assert!(c.validate().is_err());
    let mut c = config(1);
    c.targets[0].addr.transport = Transport::Wss;
    assert!(c.validate().is_err());
}

#[test]
fn in_dialog_challenge_is_answered_once() {
    let t0 = Instant::now();
    let mut cfg = config(1);
    cfg.credentials = Some(ClientCredentials::password("gw", "pw"));
    let mut c = call(cfg);
    let (r0, _) = only_send(&start(&mut c, invite(), t0).unwrap());
    let ok = r0.response_with_tag(200, Some("pbx")).build().unwrap();
    feed(&mut c, Input::Response(ok), ms(t0, 10)).unwrap();
    let mut map = c.dialog().unwrap().clone();
    assert_eq!(map.cseq_offset, 0);

    // The caller hangs up; its BYE carries credentials for us: stripped.
    let bye = MessageBuilder::request(Method::Bye, "sip:pbx@192.0.2.10")
        .header(HeaderName::Via, "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKbye")
        .header(HeaderName::From, "\"Alice\" <sip:1001@example.com>;tag=c1")
        .header(HeaderName::To, "<sip:+4930123@trunk.example.com>;tag=pbx")
        .header(HeaderName::CallId, "call-1@203.0.113.5")
        .header(HeaderName::CSeq, "8 BYE")
        .header(HeaderName::Authorization, "Digest username=\"1001\"")
        .build()
        .unwrap();
    let mut sent = map.to_trunk(bye).unwrap();
    assert_eq!(sent.count(HeaderName::Authorization), 0);
    sent.prepend_header(
        HeaderName::Via,
        "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxybye",
    );
    let sent = sent.reparse().unwrap();
    let ch = sent
        .response(401)
        .header(HeaderName::WwwAuthenticate, www("pbx", "d1"))
        .build()
        .unwrap();
    let retry = map.answer_challenge(&sent, &ch).unwrap();
    assert_eq!(retry.cseq().unwrap().to_string(), "9 BYE");
    assert_ne!(branch(&retry), "z9hG4bKproxybye");
    assert_eq!(retry.via().unwrap().len(), 2);
    assert_eq!(retry.authorization().unwrap()[0].nonce(), Some("d1"));
    assert_eq!(map.cseq_offset, 1);
    // The 200 to the retried BYE reaches the caller with its own CSeq.
    let ok = map
        .response_to_caller(retry.response(200).build().unwrap())
        .unwrap()
        .reparse()
        .unwrap();
    assert_eq!(ok.cseq().unwrap().to_string(), "8 BYE");
    // Challenged again: not answered.
    let ch = retry
        .response(401)
        .header(HeaderName::WwwAuthenticate, www("pbx", "d2"))
        .build()
        .unwrap();
    assert!(matches!(
        map.answer_challenge(&retry, &ch),
        Err(siplink_trunk::Error::Auth(
            siplink_auth::AuthError::CredentialsRejected { .. }
        ))
    ));
}

proptest::proptest! {
    /// Whatever the targets do, the call tries them in the given order, each
    /// at most once (no credentials: no retries), and gives exactly one final.
    #[test]
    fn one_final_and_targets_in_order(
        outcomes in proptest::collection::vec(0u8..9, 1..6),
        order_seed in proptest::prelude::any::<u64>(),
    ) {
        let n = outcomes.len();
        let mut rng = StdRng::seed_from_u64(order_seed);
        let cfg = config(n);
        let order = target_order(&cfg.targets, |_| true, true, &mut rng);
        let mut c = OutboundCall::new(Arc::new(cfg), SENT_BY, order.clone());
        let t0 = Instant::now();
        let mut out = start(&mut c, invite(), t0).unwrap();
        let mut tried = Vec::new();
        let mut all = Vec::new();
        let mut now = t0;
        while let Some((req, target)) = sends(&out).into_iter().find(|(r, _)| r.method() == Some(&Method::Invite)) {
            tried.push(target);
            all.append(&mut out);
            now += Duration::from_millis(100);
            let input = match outcomes[target] {
                0 => Input::Response(req.response(503).build().unwrap()),
                1 => Input::Response(req.response(408).build().unwrap()),
                2 => Input::Response(req.response(486).build().unwrap()),
                3 => Input::Response(req.response_with_tag(200, Some("t")).build().unwrap()),
                4 => Input::Timeout { branch: branch(&req) },
                5 => Input::TransportError { branch: branch(&req) },
                6 => Input::Response(req.response(401).build().unwrap()),
                7 => Input::Response(req.response(500).build().unwrap()),
                _ => {
                    now += Duration::from_secs(4);
                    out = timeout(&mut c, now).unwrap();
                    continue;
                }
            };
            out = feed(&mut c, input, now).unwrap();
        }
        all.append(&mut out);
        proptest::prop_assert_eq!(&tried[..], &order[..tried.len()]);
        proptest::prop_assert_eq!(finals(&all).len(), 1);
        proptest::prop_assert!(c.is_finished());
        proptest::prop_assert_eq!(c.poll_timeout(), None);
    }
}
