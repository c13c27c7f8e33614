//! Interop: `RegistrationService` against SIPp registrars that misbehave
//! (scenarios in `tests/interop/sipp-register-*.xml`):
//!
//! * 423 with Min-Expires: the second REGISTER asks for the Min-Expires value
//!   (checked by SIPp) and the registration is granted it;
//! * 403: `Failed(AuthRejected)` and no further REGISTER (SIPp fails the call
//!   if one comes within 6 s);
//! * 503 with Retry-After: 4: the retry comes 4 s later, not sooner;
//! * never answered: Timer F, then failover to a second registrar at once; on
//!   a single registrar, a retry after the RFC 5626 backoff.
//!
//! Skipped with a notice when `sipp` is missing, unless `SIPLINK_INTEROP=1`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use siplink_register::{FailureReason, ServiceEvent, State, TargetAddr, Transport};
use siplink_testkit::{Sipp, require, work_dir};
use siplink_transport::Protocol;
use support::{Client, client, interop_dir, is_registered, wait_for};
use tokio::sync::broadcast;

/// A SIPp UAS running `tests/interop/sipp-register-{scenario}.xml` once, bound
/// before it returns.
fn registrar(dir: &Path, scenario: &str) -> Sipp {
    Sipp::builder(dir, scenario)
        .scenario(interop_dir().join(format!("sipp-register-{scenario}.xml")))
        .spawn_listening()
}

/// The distinct REGISTER transactions (CSeq numbers) SIPp saw.
fn register_cseqs(sipp: &Sipp) -> BTreeSet<u32> {
    sipp.messages()
        .lines()
        .filter_map(|l| l.strip_prefix("CSeq:"))
        .filter_map(|v| v.trim().strip_suffix("REGISTER"))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

fn sipp_available() -> bool {
    require("sipp", "-v", "sip-tester")
}

fn target(port: u16) -> TargetAddr {
    TargetAddr::new("127.0.0.1", port, Transport::Udp)
}

async fn setup(t1_ms: u64) -> Client {
    client(Duration::from_millis(t1_ms)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_too_brief_retries_with_min_expires() {
    if !sipp_available() {
        return;
    }
    let dir = work_dir("register-sipp-423");
    let mut sipp = registrar(&dir, "423");
    let c = setup(500).await;
    let (svc, _events) = c.service();
    let mut cfg = c.config("1001", sipp.port(), Protocol::Udp);
    cfg.expires = 60;
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    let s = wait_for(
        &mut status,
        Duration::from_secs(5),
        "registered",
        is_registered,
    )
    .await;
    let State::Registered { expires_at } = s.state else {
        unreachable!()
    };
    let granted = expires_at.saturating_duration_since(tokio::time::Instant::now().into_std());
    println!("423: registered for {granted:?}");
    assert!(
        granted > Duration::from_secs(110) && granted <= Duration::from_secs(120),
        "granted {granted:?}"
    );
    // SIPp's scenario checks the second REGISTER's Expires is 120.
    assert_eq!(sipp.wait(Duration::from_secs(10)).await, Some(0));
    assert_eq!(register_cseqs(&sipp).len(), 2);
    drop(svc);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_fails_without_fast_retry() {
    if !sipp_available() {
        return;
    }
    let dir = work_dir("register-sipp-403");
    let mut sipp = registrar(&dir, "403");
    let c = setup(500).await;
    let (svc, _events) = c.service();
    let cfg = c.config("1001", sipp.port(), Protocol::Udp);
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    let s = wait_for(&mut status, Duration::from_secs(5), "failed", |s| {
        matches!(s.state, State::Failed { .. })
    })
    .await;
    assert_eq!(
        s.state,
        State::Failed {
            reason: FailureReason::AuthRejected
        }
    );
    // SIPp fails the call if another REGISTER arrives during its 6 s pause.
    assert_eq!(sipp.wait(Duration::from_secs(15)).await, Some(0));
    assert_eq!(register_cseqs(&sipp).len(), 1);
    assert_eq!(svc.stats().await.unwrap().registers_sent, 1);
    assert!(matches!(status.borrow().state, State::Failed { .. }));
    svc.shutdown().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_honours_retry_after() {
    if !sipp_available() {
        return;
    }
    let dir = work_dir("register-sipp-503");
    let mut sipp = registrar(&dir, "503");
    let c = setup(500).await;
    let (svc, _events) = c.service();
    let cfg = c.config("1001", sipp.port(), Protocol::Udp);
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    let s = wait_for(&mut status, Duration::from_secs(5), "retrying", |s| {
        matches!(s.state, State::Retrying { .. })
    })
    .await;
    let t_503 = Instant::now();
    let State::Retrying { reason, at } = s.state else {
        unreachable!()
    };
    assert_eq!(reason, FailureReason::ServerError(503));
    let wait = at.saturating_duration_since(tokio::time::Instant::now().into_std());
    // Backoff alone would be 1-2 s (test timing); Retry-After: 4 wins.
    assert!(
        wait > Duration::from_millis(3500) && wait <= Duration::from_secs(4),
        "retry in {wait:?}"
    );
    wait_for(
        &mut status,
        Duration::from_secs(8),
        "registered",
        is_registered,
    )
    .await;
    let took = t_503.elapsed();
    println!("503 Retry-After 4: registered {took:?} after the 503");
    assert!(
        took >= Duration::from_millis(3800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(sipp.wait(Duration::from_secs(10)).await, Some(0));
    svc.shutdown().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_times_out_then_fails_over() {
    if !sipp_available() {
        return;
    }
    let dir = work_dir("register-sipp-failover");
    let silent = registrar(&dir, "silent");
    let mut ok = registrar(&dir, "200");
    // T1 = 50 ms: Timer F = 3.2 s.
    let c = setup(50).await;
    let (svc, mut events) = c.service();
    let mut cfg = c.config("1001", silent.port(), Protocol::Udp);
    cfg.targets = vec![target(silent.port()), target(ok.port())];
    let t0 = Instant::now();
    let (id, mut status) = svc.add(cfg).await.unwrap();
    // The state watch keeps only the latest value, and the failover follows the
    // timeout at once: the Retrying state is read from the event stream, which
    // keeps every change in order.
    let mut timed_out = None;
    let registered = tokio::time::timeout(Duration::from_secs(7), async {
        loop {
            match events.recv().await {
                Ok(ServiceEvent::StateChanged { id: i, state }) if i == id => match state {
                    State::Retrying {
                        reason: FailureReason::Timeout,
                        ..
                    } => timed_out = Some(t0.elapsed()),
                    State::Registered { .. } => return t0.elapsed(),
                    State::Retrying { .. } | State::Failed { .. } => {
                        panic!("unexpected state {state:?}")
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("{n} events lost"),
                Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
            }
        }
    })
    .await
    .expect("registered at the second registrar within 7 s");
    let timed_out = timed_out.expect("a Retrying(Timeout) state before the registration");
    assert!(timed_out >= Duration::from_millis(3100), "{timed_out:?}");
    let failover = registered - timed_out;
    println!("no answer: timeout after {timed_out:?}, registered at the second {failover:?} later");
    assert!(failover < Duration::from_millis(500), "{failover:?}");
    let s = wait_for(
        &mut status,
        Duration::from_secs(2),
        "registered",
        is_registered,
    )
    .await;
    assert_eq!(s.binding.unwrap().target.addr.port(), ok.port());
    assert_eq!(ok.wait(Duration::from_secs(5)).await, Some(0));
    assert_eq!(register_cseqs(&silent).len(), 1);
    assert_eq!(register_cseqs(&ok).len(), 1);
    svc.shutdown().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_on_a_single_registrar_backs_off() {
    if !sipp_available() {
        return;
    }
    let dir = work_dir("register-sipp-backoff");
    let mut silent = registrar(&dir, "silent");
    let c = setup(50).await;
    let (svc, _events) = c.service();
    let cfg = c.config("1001", silent.port(), Protocol::Udp);
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    let s = wait_for(&mut status, Duration::from_secs(5), "timeout", |s| {
        matches!(s.state, State::Retrying { .. })
    })
    .await;
    let t_fail = Instant::now();
    let State::Retrying { reason, at } = s.state else {
        unreachable!()
    };
    assert_eq!(reason, FailureReason::Timeout);
    // First failure: U(50 %, 100 %) x min(max = 2 s, base 1 s x 2^1) = 1..2 s.
    let wait = at.saturating_duration_since(tokio::time::Instant::now().into_std());
    assert!(
        wait > Duration::from_millis(900) && wait <= Duration::from_secs(2),
        "backoff {wait:?}"
    );
    wait_for(&mut status, Duration::from_secs(3), "retry", |s| {
        s.state == State::Registering
    })
    .await;
    let retried = t_fail.elapsed();
    println!("no answer, single registrar: retry {retried:?} after the timeout");
    assert!(retried >= Duration::from_millis(900), "{retried:?}");
    // SIPp saw the retry as a second REGISTER transaction.
    assert_eq!(silent.wait(Duration::from_secs(5)).await, Some(0));
    assert_eq!(register_cseqs(&silent).len(), 2);
    svc.shutdown().await;
    c.stop().await;
}
