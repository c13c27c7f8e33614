//! Interop: `RegistrationService` against a real Kamailio registrar on
//! loopback (digest auth with static passwords, see
//! `tests/interop/kamailio-registrar.cfg`).
//!
//! * stays registered across refreshes, the binding visible in `kamcmd
//!   ul.dump`, and gone after the unregister;
//! * Kamailio killed and restarted: the registration recovers by itself (UDP
//!   and TCP; over TCP through the flow-drop path);
//! * wrong password: `Failed(AuthRejected)` after exactly one challenge, and
//!   no further REGISTER.
//!
//! Skipped with a notice when `kamailio`/`kamcmd` are missing, unless
//! `SIPLINK_INTEROP=1` is set (CI), which makes that a failure.

mod support;

use std::time::{Duration, Instant};

use siplink_auth::ClientCredentials;
use siplink_register::{FailureReason, ServiceEvent, State};
use siplink_testkit::work_dir;
use siplink_transport::Protocol;
use support::{KamOptions, KamRegistrar, client, is_registered, kamailio_available, wait_for};

/// Registered, refreshed at least twice (Kamailio caps the expiry at 10 s),
/// visible in ul.dump, then unregistered and gone from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_register_refresh_unregister() {
    if !kamailio_available() {
        return;
    }
    let dir = work_dir("kam-refresh");
    let kam = KamRegistrar::start(
        &dir,
        KamOptions {
            auth: true,
            min_expires: 4,
            max_expires: 10,
        },
    );
    let c = client(Duration::from_millis(100)).await;
    let (svc, mut events) = c.service();
    let cfg = c
        .config("1001", kam.port, Protocol::Udp)
        .with_credentials(ClientCredentials::password("1001", "s3cret"));
    let (id, mut status) = svc.add(cfg).await.unwrap();
    let first = wait_for(
        &mut status,
        Duration::from_secs(5),
        "registered",
        is_registered,
    )
    .await;
    let binding = first.binding.clone().expect("binding once registered");
    let contact = binding.contact.to_string();
    println!(
        "registered: contact {contact}, registrar {:?}",
        binding.target
    );
    let contacts = kam.contacts_of("1001");
    assert!(
        contacts.iter().any(|c| c == &contact),
        "{contact} not in ul.dump: {contacts:?}"
    );

    // Two refreshes: the granted 10 s means a refresh every ~5 s. The state
    // must stay Registered throughout (a refresh keeps it). The stream starts
    // with the Registering and Registered of the first REGISTER.
    let t0 = Instant::now();
    let mut registered_events = 0;
    let mut last_expiry = None;
    while registered_events < 3 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no two refreshes");
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Ok(ServiceEvent::StateChanged { id: eid, state })) if eid == id => match state {
                State::Registered { expires_at } => {
                    if last_expiry.is_some_and(|e| expires_at > e) || last_expiry.is_none() {
                        registered_events += 1;
                    }
                    last_expiry = Some(expires_at);
                }
                State::Registering if last_expiry.is_none() => {}
                other => panic!("left Registered during refreshes: {other:?}"),
            },
            Ok(Ok(_)) => {}
            other => panic!("event stream: {other:?}"),
        }
    }
    // Initial REGISTER + its digest answer, then each refresh is answered
    // with the pre-emptive credentials or one more challenge: at least 4 in all.
    let call_id = binding.call_id.clone();
    let n = kam.registers(&call_id);
    println!("REGISTERs seen by Kamailio after two refreshes: {n}");
    assert!(n >= 4, "Kamailio saw {n} REGISTERs");
    let contacts = kam.contacts_of("1001");
    assert!(contacts.iter().any(|c| c == &contact), "{contacts:?}");

    svc.remove(id).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(6), events.recv()).await {
            Ok(Ok(ServiceEvent::Removed { id: eid })) if eid == id => break,
            Ok(Ok(_)) => {}
            other => panic!("no Removed event: {other:?}"),
        }
    }
    let contacts = kam.contacts_of("1001");
    assert!(contacts.is_empty(), "binding still there: {contacts:?}");
    let last = kam.register_lines().pop().unwrap();
    assert!(
        last.contains("expires=0"),
        "last REGISTER not an unregister: {last}"
    );
    svc.shutdown().await;
    c.stop().await;
}

async fn restart_recovers(protocol: Protocol, name: &str) {
    if !kamailio_available() {
        return;
    }
    let dir = work_dir(name);
    let mut kam = KamRegistrar::start(
        &dir,
        KamOptions {
            auth: true,
            min_expires: 4,
            max_expires: 10,
        },
    );
    let c = client(Duration::from_millis(100)).await;
    let (svc, _events) = c.service();
    let cfg = c
        .config("1001", kam.port, protocol)
        .with_credentials(ClientCredentials::password("1001", "s3cret"));
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    wait_for(
        &mut status,
        Duration::from_secs(5),
        "registered",
        is_registered,
    )
    .await;

    kam.kill();
    // Over TCP the dropped connection is noticed at once; over UDP the next
    // refresh (within 5 s) times out (64*T1 = 6.4 s).
    let limit = if protocol == Protocol::Udp { 15 } else { 5 };
    let down = wait_for(
        &mut status,
        Duration::from_secs(limit),
        "not registered while Kamailio is down",
        |s| !is_registered(s),
    )
    .await;
    println!("{protocol} while down: {:?}", down.state);
    if protocol != Protocol::Udp {
        assert!(
            matches!(
                down.state,
                State::Retrying {
                    reason: FailureReason::FlowClosed | FailureReason::TransportError,
                    ..
                }
            ),
            "{down:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    kam.restart();
    let back = wait_for(
        &mut status,
        Duration::from_secs(15),
        "registered again after restart",
        is_registered,
    )
    .await;
    println!(
        "{protocol}: registered again {:?} after the restart",
        restarted.elapsed()
    );
    let contact = back.binding.unwrap().contact.to_string();
    let contacts = kam.contacts_of("1001");
    assert!(contacts.contains(&contact), "{contact} not in {contacts:?}");
    svc.shutdown().await;
    assert!(kam.contacts_of("1001").is_empty(), "shutdown unregisters");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_restart_recovers_udp() {
    restart_recovers(Protocol::Udp, "kam-restart-udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_restart_recovers_tcp() {
    restart_recovers(Protocol::Tcp, "kam-restart-tcp").await;
}

/// A wrong password: one challenge answered, rejected again, then
/// `Failed(AuthRejected)` and silence (the slow retry is 5-10 minutes away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_rejected_without_retry_storm() {
    if !kamailio_available() {
        return;
    }
    let dir = work_dir("kam-badpw");
    let kam = KamRegistrar::start(
        &dir,
        KamOptions {
            auth: true,
            min_expires: 4,
            max_expires: 10,
        },
    );
    let c = client(Duration::from_millis(100)).await;
    let (svc, _events) = c.service();
    let cfg = c
        .config("1001", kam.port, Protocol::Udp)
        .with_credentials(ClientCredentials::password("1001", "wrong"));
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    let failed = wait_for(&mut status, Duration::from_secs(5), "failed", |s| {
        matches!(s.state, State::Failed { .. })
    })
    .await;
    assert_eq!(
        failed.state,
        State::Failed {
            reason: FailureReason::AuthRejected
        }
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let call_id = failed.binding.unwrap().call_id;
    let n = kam.registers(&call_id);
    println!("wrong password: {n} REGISTERs in 6 s after the rejection");
    assert_eq!(n, 2, "REGISTER, digest answer, then nothing");
    assert!(matches!(status.borrow().state, State::Failed { .. }));
    assert!(kam.contacts_of("1001").is_empty());
    assert_eq!(svc.stats().await.unwrap().registers_sent, 2);
    svc.shutdown().await;
    c.stop().await;
}
