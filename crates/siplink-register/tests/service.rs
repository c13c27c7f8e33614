//! `RegistrationService` API semantics over loopback, with a small registrar
//! built on our own transaction endpoint (Kamailio and SIPp runs are in the
//! `interop_*` tests): watches, update, remove, bounded shutdown, stale
//! outcomes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use siplink_message::HeaderName;
use siplink_register::{ServiceEvent, State, Timing};
use siplink_transaction::{Endpoint, EndpointConfig};
use siplink_transport::{Protocol, TransportConfig};
use support::{client, is_registered, wait_for};

/// A registrar that answers 200 (echoing the Contact with `expires=`) until
/// `silent` is set, counting REGISTERs and unregisters.
struct Registrar {
    port: u16,
    silent: Arc<AtomicBool>,
    registers: Arc<AtomicUsize>,
    unregisters: Arc<AtomicUsize>,
    endpoint: Endpoint,
    transport: siplink_transport::Transport,
}

async fn registrar(grant: u32) -> Registrar {
    let (transport, incoming) = siplink_transport::Transport::new(TransportConfig::default());
    let addr = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, mut requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let silent = Arc::new(AtomicBool::new(false));
    let registers = Arc::new(AtomicUsize::new(0));
    let unregisters = Arc::new(AtomicUsize::new(0));
    let (s, r, u) = (silent.clone(), registers.clone(), unregisters.clone());
    tokio::spawn(async move {
        while let Some(mut tx) = requests.recv().await {
            r.fetch_add(1, Ordering::SeqCst);
            let expires = tx.request.expires().ok().flatten().unwrap_or(grant);
            if expires == 0 {
                u.fetch_add(1, Ordering::SeqCst);
            }
            if s.load(Ordering::SeqCst) {
                std::mem::forget(tx); // never answered (no 500 from the drop)
                continue;
            }
            let contact = tx
                .request
                .header(HeaderName::Contact)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .unwrap_or_default();
            let ok = tx
                .request
                .response(200)
                .header(
                    HeaderName::Contact,
                    format!("{contact};expires={}", expires.min(grant)),
                )
                .build()
                .unwrap();
            let _ = tx.respond(ok).await;
        }
    });
    Registrar {
        port: addr.port(),
        silent,
        registers,
        unregisters,
        endpoint,
        transport,
    }
}

impl Registrar {
    async fn stop(self) {
        self.endpoint.shutdown().await;
        self.transport.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_update_remove_and_watch() {
    let reg = registrar(60).await;
    let c = client(Duration::from_millis(100)).await;
    let (svc, mut events) = c.service();
    let cfg = c.config("1001", reg.port, Protocol::Udp);
    let (id, mut status) = svc.add(cfg.clone()).await.unwrap();
    let s = wait_for(
        &mut status,
        Duration::from_secs(3),
        "registered",
        is_registered,
    )
    .await;
    let b = s.binding.expect("binding");
    assert_eq!(b.target.addr.port(), reg.port);
    assert_eq!(
        b.contact.to_string(),
        format!("sip:1001@127.0.0.1:{}", c.udp.port())
    );
    let call_id = b.call_id.clone();

    // In-place update (new expiry): same Call-ID, a new REGISTER, same watch.
    let before = reg.registers.load(Ordering::SeqCst);
    let mut cfg2 = cfg.clone();
    cfg2.expires = 30;
    svc.update(id, cfg2).await.unwrap();
    let t0 = Instant::now();
    while reg.registers.load(Ordering::SeqCst) == before {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "no REGISTER after update"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = wait_for(
        &mut status,
        Duration::from_secs(3),
        "registered",
        is_registered,
    )
    .await;
    assert_eq!(s.binding.unwrap().call_id, call_id);
    assert!(svc.watch(id).await.is_some());

    svc.remove(id).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
            Ok(Ok(ServiceEvent::Removed { id: r })) if r == id => break,
            Ok(Ok(_)) => {}
            other => panic!("no Removed: {other:?}"),
        }
    }
    assert_eq!(reg.unregisters.load(Ordering::SeqCst), 1);
    assert!(status.changed().await.is_err() || status.borrow().state == State::Unregistered);
    assert!(svc.watch(id).await.is_none());
    assert!(svc.remove(id).await.is_err());
    svc.shutdown().await;
    assert!(svc.add(cfg).await.is_err(), "stopped service refuses adds");
    c.stop().await;
    reg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_registrar_goes_silent() {
    let reg = registrar(60).await;
    let c = client(Duration::from_millis(500)).await;
    let (svc, _events) = c.service();
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut cfg = c.config(&format!("30{i:02}"), reg.port, Protocol::Udp);
        cfg.timing = Timing {
            unregister_timeout: Duration::from_secs(1),
            ..support::fast_timing()
        };
        ids.push(svc.add(cfg).await.unwrap().1);
    }
    for w in &mut ids {
        wait_for(w, Duration::from_secs(5), "registered", is_registered).await;
    }
    reg.silent.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    svc.shutdown().await;
    let took = t0.elapsed();
    println!("shutdown with a silent registrar took {took:?}");
    // Every registration sent its unregister, and the wait ended at the
    // 1 s unregister timeout (well before the service's 5 s bound).
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let t1 = Instant::now();
    while reg.unregisters.load(Ordering::SeqCst) < 20 {
        assert!(t1.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in &ids {
        assert_eq!(w.borrow().state, State::Unregistered);
    }
    c.stop().await;
    reg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_unregisters() {
    let reg = registrar(60).await;
    let c = client(Duration::from_millis(100)).await;
    let (svc, mut events) = c.service();
    let (_id, mut status) = svc
        .add(c.config("1001", reg.port, Protocol::Udp))
        .await
        .unwrap();
    wait_for(
        &mut status,
        Duration::from_secs(3),
        "registered",
        is_registered,
    )
    .await;
    drop(svc);
    loop {
        match tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
            Ok(Ok(ServiceEvent::Removed { .. })) => break,
            Ok(Ok(_)) => {}
            other => panic!("no Removed after the handles were dropped: {other:?}"),
        }
    }
    assert_eq!(reg.unregisters.load(Ordering::SeqCst), 1);
    c.stop().await;
    reg.stop().await;
}
