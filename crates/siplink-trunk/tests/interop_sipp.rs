//! The trunk driver against SIPp (Debian `sip-tester`) playing the PBX, over
//! loopback UDP and TCP (this SIPp is built without TLS: the TLS call runs
//! against Kamailio in `interop_kamailio.rs`).
//!
//! Calls: answered and hung up (our ACK and BYE), 486 relayed with no
//! failover, 503 on the first target → the second answers, no answer on the
//! first → the second answers, a 407 challenge answered (the form of the
//! Proxy-Authorization checked by SIPp) and a 401 challenge answered with the
//! right credentials (verified by SIPp's `verifyauth`, which reads only
//! `Authorization`; Kamailio verifies a 407 answer). Test connection: OPTIONS
//! answered 200, 407 without credentials (auth required, realm), 401
//! answered right and wrong, nothing listening (refused / timeout), a name that does not resolve.
//!
//! Each SIPp run is one call; its exit code 0 proves every message it
//! expected came (ACK, BYE, a valid digest answer). Without `sipp` the tests
//! print `SKIPPED` and pass unless `SIPLINK_INTEROP=1` is set.

mod support;

use std::time::Duration;

use siplink_auth::ClientCredentials;
use siplink_testkit::{free_port, require};
use siplink_transport::TransportConfig;
use siplink_trunk::report::{Failure, Step, StepResult};
use siplink_trunk::{
    AttemptFailure, CallEvent, Target, TestOptions, Transport as Proto, TrunkConfig,
    test_connection,
};
use support::{Pbx, TestTrunk, place_call, trunk};

const HOLD: Duration = Duration::from_millis(300);

fn config(targets: Vec<Target>) -> TrunkConfig {
    let mut c = TrunkConfig::new("pbx", targets);
    c.health.enabled = false;
    c
}

fn creds(user: &str, password: &str) -> ClientCredentials {
    ClientCredentials::password(user, password)
}

async fn answered_and_hung_up(p: Proto) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut pbx = Pbx::uas("uas_answer.xml", p, &[]);
    let TestTrunk { trunk, .. } =
        trunk(config(vec![pbx.target()]), TransportConfig::default()).await;
    let log = place_call(&trunk, HOLD).await;
    assert_eq!(log.provisional, vec![180]);
    assert_eq!(log.final_status, Some(200));
    assert_eq!(log.bye_status, Some(200));
    assert!(log.target_failed.is_empty());
    pbx.assert_success().await;
}

#[tokio::test]
async fn answered_and_hung_up_udp() {
    answered_and_hung_up(Proto::Udp).await;
}

#[tokio::test]
async fn answered_and_hung_up_tcp() {
    answered_and_hung_up(Proto::Tcp).await;
}

/// A sink in place of a second target: it must see no traffic at all.
fn sink(p: Proto) -> (Target, Box<dyn Fn() -> bool>) {
    match p {
        Proto::Udp => {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            let port = s.local_addr().unwrap().port();
            (
                Target::new("127.0.0.1", port, p).with_priority(20),
                Box::new(move || s.recv(&mut [0u8; 2048]).is_ok()),
            )
        }
        _ => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let port = l.local_addr().unwrap().port();
            (
                Target::new("127.0.0.1", port, p).with_priority(20),
                Box::new(move || l.accept().is_ok()),
            )
        }
    }
}

async fn busy_no_failover(p: Proto) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut pbx = Pbx::uas("uas_486.xml", p, &[]);
    let (second, touched) = sink(p);
    let TestTrunk { trunk, .. } = trunk(
        config(vec![pbx.target().with_priority(10), second]),
        TransportConfig::default(),
    )
    .await;
    let log = place_call(&trunk, HOLD).await;
    assert_eq!(log.final_status, Some(486));
    assert!(log.target_failed.is_empty(), "{log:?}");
    assert!(log.failed.is_none());
    pbx.assert_success().await;
    assert!(!touched(), "the second target was tried after a 486");
}

#[tokio::test]
async fn busy_no_failover_udp() {
    busy_no_failover(Proto::Udp).await;
}

#[tokio::test]
async fn busy_no_failover_tcp() {
    busy_no_failover(Proto::Tcp).await;
}

async fn failover_on_503(p: Proto) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut first = Pbx::uas("uas_503.xml", p, &[]);
    let mut second = Pbx::uas("uas_answer.xml", p, &[]);
    let TestTrunk { trunk, .. } = trunk(
        config(vec![
            first.target().with_priority(10),
            second.target().with_priority(20),
        ]),
        TransportConfig::default(),
    )
    .await;
    let log = place_call(&trunk, HOLD).await;
    assert_eq!(log.target_failed, vec![(0, AttemptFailure::Status(503))]);
    assert_eq!(log.final_status, Some(200));
    assert_eq!(log.bye_status, Some(200));
    first.assert_success().await;
    second.assert_success().await;
}

#[tokio::test]
async fn failover_on_503_udp() {
    failover_on_503(Proto::Udp).await;
}

#[tokio::test]
async fn failover_on_503_tcp() {
    failover_on_503(Proto::Tcp).await;
}

async fn failover_on_no_answer(p: Proto) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut first = Pbx::uas("uas_silent.xml", p, &[]);
    let mut second = Pbx::uas("uas_answer.xml", p, &[]);
    let mut cfg = config(vec![
        first.target().with_priority(10),
        second.target().with_priority(20),
    ]);
    cfg.failover.no_response_timeout = Some(Duration::from_secs(1));
    let TestTrunk { trunk, .. } = trunk(cfg, TransportConfig::default()).await;
    let t0 = std::time::Instant::now();
    let log = place_call(&trunk, HOLD).await;
    assert_eq!(log.target_failed, vec![(0, AttemptFailure::NoResponse)]);
    assert_eq!(log.final_status, Some(200));
    assert_eq!(log.bye_status, Some(200));
    assert!(t0.elapsed() >= Duration::from_secs(1));
    // The silent PBX did receive the INVITE (its scenario starts with it).
    first.assert_success().await;
    second.assert_success().await;
}

#[tokio::test]
async fn failover_on_no_answer_udp() {
    failover_on_no_answer(Proto::Udp).await;
}

#[tokio::test]
async fn failover_on_no_answer_tcp() {
    failover_on_no_answer(Proto::Tcp).await;
}

async fn challenge_answered(p: Proto, scenario: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut pbx = Pbx::uas(
        scenario,
        p,
        &[("user", "trunkuser"), ("password", "s3cret")],
    );
    let mut cfg = config(vec![pbx.target()]);
    cfg.credentials = Some(creds("trunkuser", "s3cret"));
    let TestTrunk { trunk, .. } = trunk(cfg, TransportConfig::default()).await;
    let log = place_call(&trunk, HOLD).await;
    assert_eq!(log.final_status, Some(200), "{log:?}");
    assert_eq!(log.bye_status, Some(200));
    // SIPp accepted our answer (verifyauth for 401, its form for 407), and
    // the ACK carried it.
    pbx.assert_success().await;
}

#[tokio::test]
async fn challenge_407_answered_udp() {
    challenge_answered(Proto::Udp, "uas_auth_407.xml").await;
}

#[tokio::test]
async fn challenge_407_answered_tcp() {
    challenge_answered(Proto::Tcp, "uas_auth_407.xml").await;
}

/// SIPp verifies the digest itself (verifyauth reads Authorization: a 401).
#[tokio::test]
async fn challenge_401_verified_udp() {
    challenge_answered(Proto::Udp, "uas_auth_401.xml").await;
}

#[tokio::test]
async fn challenge_401_verified_tcp() {
    challenge_answered(Proto::Tcp, "uas_auth_401.xml").await;
}

// ---- test connection ----

fn quick() -> TestOptions {
    TestOptions {
        options_timeout: Duration::from_secs(2),
        ..TestOptions::default()
    }
}

fn step(report: &siplink_trunk::TestReport, s: Step) -> &StepResult {
    &report.steps.iter().find(|(x, _)| *x == s).unwrap().1
}

async fn options_ok(p: Proto) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut pbx = Pbx::uas("uas_options.xml", p, &[]);
    let report = test_connection(&config(vec![pbx.target()]), 0, quick())
        .await
        .unwrap();
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(matches!(step(&report, Step::Options), StepResult::Ok(s) if s.contains("200")));
    if p == Proto::Tcp {
        assert!(matches!(step(&report, Step::Connect), StepResult::Ok(_)));
    }
    pbx.assert_success().await;
}

#[tokio::test]
async fn test_connection_options_200_udp() {
    options_ok(Proto::Udp).await;
}

#[tokio::test]
async fn test_connection_options_200_tcp() {
    options_ok(Proto::Tcp).await;
}

#[tokio::test]
async fn test_connection_auth_required_realm() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut pbx = Pbx::uas("uas_options_challenge.xml", Proto::Udp, &[]);
    let report = test_connection(&config(vec![pbx.target()]), 0, quick())
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(
        report.first_failure(),
        Some((
            Step::Auth,
            &Failure::AuthRequired {
                realm: Some("pbx.test".into())
            }
        ))
    );
    pbx.assert_success().await;
}

async fn options_auth(p: Proto, password: &str) -> siplink_trunk::TestReport {
    let mut pbx = Pbx::uas(
        "uas_options_auth.xml",
        p,
        &[("user", "trunkuser"), ("password", "s3cret")],
    );
    let mut cfg = config(vec![pbx.target()]);
    cfg.credentials = Some(creds("trunkuser", password));
    let report = test_connection(&cfg, 0, quick()).await.unwrap();
    println!("{report}");
    if password == "s3cret" {
        // Its scenario ran to the 200. (After a wrong answer it sends 401
        // again; over TCP it may count our closing connection as a failure.)
        pbx.assert_success().await;
    }
    report
}

#[tokio::test]
async fn test_connection_auth_accepted_and_rejected() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    for p in [Proto::Udp, Proto::Tcp] {
        let good = options_auth(p, "s3cret").await;
        assert!(good.is_ok(), "{good}");
        assert!(matches!(step(&good, Step::Auth), StepResult::Ok(s) if s.contains("200")));
        let bad = options_auth(p, "wrong").await;
        assert_eq!(
            bad.first_failure(),
            Some((
                Step::Auth,
                &Failure::CredentialsRejected {
                    realm: Some("pbx.test".into())
                }
            ))
        );
    }
}

#[tokio::test]
async fn test_connection_nothing_listening() {
    // TCP: the connection is refused.
    let port = free_port();
    let cfg = config(vec![Target::new("127.0.0.1", port, Proto::Tcp)]);
    let report = test_connection(&cfg, 0, quick()).await.unwrap();
    println!("{report}");
    assert_eq!(
        report.first_failure(),
        Some((Step::Connect, &Failure::Refused))
    );
    // UDP: no answer to the OPTIONS (an ICMP port unreachable is not
    // reported by every system): a timeout or a refusal.
    let port = free_port();
    let cfg = config(vec![Target::new("127.0.0.1", port, Proto::Udp)]);
    let report = test_connection(&cfg, 0, quick()).await.unwrap();
    println!("{report}");
    assert!(
        matches!(
            report.first_failure(),
            Some((
                Step::Options,
                Failure::Timeout | Failure::Refused | Failure::Unreachable { .. }
            ))
        ),
        "{report}"
    );
}

#[tokio::test]
async fn test_connection_name_not_resolved() {
    let cfg = config(vec![Target::new("no-such-pbx.invalid", 5060, Proto::Udp)]);
    let report = tokio::time::timeout(Duration::from_secs(30), test_connection(&cfg, 0, quick()))
        .await
        .expect("resolution ends in time")
        .unwrap();
    println!("{report}");
    assert_eq!(
        report.first_failure(),
        Some((Step::Resolve, &Failure::NameNotResolved))
    );
}

// ---- cancel ----

async fn next_event(h: &mut siplink_trunk::CallHandle) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(10), h.next())
        .await
        .expect("an event in time")
        .expect("an event")
}

async fn cancelled_while_ringing(p: Proto) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let mut pbx = Pbx::uas("uas_ring_cancel.xml", p, &[]);
    let TestTrunk { trunk, .. } =
        trunk(config(vec![pbx.target()]), TransportConfig::default()).await;
    let mut handle = trunk.call(support::invite("4001")).await.unwrap();
    match next_event(&mut handle).await {
        CallEvent::Provisional(m) => assert_eq!(m.status(), Some(180)),
        other => panic!("expected 180, got {other:?}"),
    }
    handle.cancel().await;
    match next_event(&mut handle).await {
        CallEvent::Final { response, dialog } => {
            assert_eq!(response.status(), Some(487));
            assert!(dialog.is_none());
        }
        other => panic!("expected 487, got {other:?}"),
    }
    // SIPp got the CANCEL and the ACK of its 487.
    pbx.assert_success().await;
}

#[tokio::test]
async fn cancelled_while_ringing_udp() {
    cancelled_while_ringing(Proto::Udp).await;
}

#[tokio::test]
async fn cancelled_while_ringing_tcp() {
    cancelled_while_ringing(Proto::Tcp).await;
}
