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

/// A REGISTER as a test registrar saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    origin: siplink_transport::Origin,
    authorized: bool,
}

type Log = Arc<std::sync::Mutex<Vec<Seen>>>;

/// A registrar on `addr` over `protocol`: challenges REGISTERs without
/// Authorization (401) and accepts the others for `grant` s. `on_request`
/// runs before each answer.
async fn digest_registrar(
    addr: std::net::SocketAddr,
    protocol: Protocol,
    grant: u32,
    on_request: impl Fn(&Seen) + Send + Sync + 'static,
) -> (
    siplink_transport::Transport,
    Endpoint,
    Log,
    std::net::SocketAddr,
) {
    let (transport, incoming) = siplink_transport::Transport::new(TransportConfig::default());
    let bound = transport.listen(protocol, addr).await.unwrap();
    let (endpoint, mut requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(mut tx) = requests.recv().await {
            let seen = Seen {
                at: Instant::now(),
                origin: tx.origin,
                authorized: tx.request.header(HeaderName::Authorization).is_some(),
            };
            on_request(&seen);
            l.lock().unwrap().push(seen.clone());
            let resp = if seen.authorized {
                let contact = tx
                    .request
                    .header(HeaderName::Contact)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                tx.request
                    .response(200)
                    .header(HeaderName::Contact, format!("{contact};expires={grant}"))
                    .build()
            } else {
                tx.request
                    .response(401)
                    .header(
                        HeaderName::WwwAuthenticate,
                        r#"Digest realm="test", nonce="n1", qop="auth""#,
                    )
                    .build()
            };
            let _ = tx.respond(resp.unwrap()).await;
        }
    });
    (transport, endpoint, log, bound)
}

/// A resolver whose answer the test changes.
#[derive(Debug, Default)]
struct SwitchResolver {
    ip: std::sync::Mutex<Option<std::net::IpAddr>>,
}

impl siplink_transport::Resolver for SwitchResolver {
    fn lookup_ip<'a>(
        &'a self,
        host: &'a str,
    ) -> siplink_transport::resolve::BoxFuture<'a, siplink_transport::Result<Vec<std::net::IpAddr>>>
    {
        let r = match (*self.ip.lock().unwrap(), host) {
            (Some(ip), "pbx.test") => Ok(vec![ip]),
            _ => Err(siplink_transport::Error::Resolve {
                name: host.into(),
                reason: "unknown".into(),
            }),
        };
        Box::pin(async move { r })
    }
}

/// The registrar name resolves to A; A challenges, and while it does the name
/// moves to B. The digest answer still goes to A (the server that
/// challenged); the next attempt (the refresh) resolves again and goes to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_attempts_re_resolve_and_digest_answers_go_to_the_challenger() {
    let resolver = Arc::new(SwitchResolver::default());
    // B first on any port, then A on the same port of 127.0.0.1.
    let (tb, eb, log_b, addr_b) =
        digest_registrar("127.0.0.2:0".parse().unwrap(), Protocol::Udp, 12, |_| {}).await;
    let port = addr_b.port();
    let r = resolver.clone();
    let (ta, ea, log_a, _) = digest_registrar(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Protocol::Udp,
        12,
        move |seen| {
            if !seen.authorized {
                *r.ip.lock().unwrap() = Some([127, 0, 0, 2].into());
            }
        },
    )
    .await;
    *resolver.ip.lock().unwrap() = Some([127, 0, 0, 1].into());

    let (transport, incoming) =
        siplink_transport::Transport::with_resolver(TransportConfig::default(), resolver.clone());
    let udp = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, _requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let (svc, _events) = siplink_register::RegistrationService::start(
        endpoint.clone(),
        siplink_register::ServiceConfig::default(),
    );
    let cfg = siplink_register::RegistrationConfig::new(
        siplink_message::uri::SipUri::parse(format!("sip:pbx.test:{port}")).unwrap(),
        siplink_message::uri::SipUri::parse("sip:1001@pbx.test").unwrap(),
        "1001",
        "127.0.0.1",
        udp.port(),
        siplink_register::Transport::Udp,
    )
    .with_credentials(siplink_auth::ClientCredentials::password("1001", "pw"));
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    let s = wait_for(
        &mut status,
        Duration::from_secs(3),
        "registered",
        is_registered,
    )
    .await;
    assert_eq!(
        s.binding.unwrap().target.addr.ip(),
        std::net::IpAddr::from([127, 0, 0, 1])
    );
    {
        let a = log_a.lock().unwrap();
        assert_eq!(a.len(), 2, "challenge and answer both at A: {a:?}");
        assert!(!a[0].authorized && a[1].authorized);
        assert!(log_b.lock().unwrap().is_empty());
    }
    // The refresh (granted 12 s: due 6-7 s later) is a new attempt.
    let t0 = Instant::now();
    while log_b.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(9), "no refresh at B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = wait_for(&mut status, Duration::from_secs(3), "refreshed at B", |s| {
        is_registered(s) && s.binding.as_ref().is_some_and(|b| b.target.addr == addr_b)
    })
    .await;
    assert_eq!(s.binding.unwrap().target.addr, addr_b);
    assert_eq!(log_a.lock().unwrap().len(), 2);
    svc.shutdown().await;
    for (e, t) in [(endpoint, transport), (ea, ta), (eb, tb)] {
        e.shutdown().await;
        t.shutdown().await;
    }
}

/// Over TCP, the registrar closing the connection brings a prompt
/// re-register on a new connection; a second drop right after is followed
/// by a re-register only after `flow_reregister_min_interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_drop_re_registers_promptly_but_rate_limited() {
    let (tr, er, log, addr) =
        digest_registrar("127.0.0.1:0".parse().unwrap(), Protocol::Tcp, 300, |_| {}).await;
    let c = client(Duration::from_millis(100)).await;
    let (svc, _events) = c.service();
    let mut cfg = c
        .config("1001", addr.port(), Protocol::Tcp)
        .with_credentials(siplink_auth::ClientCredentials::password("1001", "pw"));
    cfg.timing.flow_reregister_jitter = Duration::from_millis(200);
    cfg.timing.flow_reregister_min_interval = Duration::from_secs(3);
    let (_id, mut status) = svc.add(cfg).await.unwrap();
    let s = wait_for(
        &mut status,
        Duration::from_secs(3),
        "registered",
        is_registered,
    )
    .await;
    let flow1 = log.lock().unwrap()[1].origin.flow.unwrap();
    assert!(s.binding.unwrap().flow.is_some(), "flow known");
    let n0 = log.lock().unwrap().len();

    let closed1 = Instant::now();
    assert!(tr.close_flow(flow1, "test"));
    let t0 = Instant::now();
    while log.lock().unwrap().len() == n0 {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "no prompt re-register"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = log.lock().unwrap()[n0].clone();
    println!("re-register {:?} after the first drop", first.at - closed1);
    assert!(first.at - closed1 < Duration::from_millis(700));
    assert_ne!(first.origin.flow, Some(flow1), "a new connection");
    wait_for(
        &mut status,
        Duration::from_secs(3),
        "registered again",
        is_registered,
    )
    .await;

    // A second drop at once: held back until 3 s after the previous one.
    let n1 = log.lock().unwrap().len();
    let flow2 = log.lock().unwrap()[n1 - 1].origin.flow.unwrap();
    assert!(tr.close_flow(flow2, "test"));
    let t0 = Instant::now();
    while log.lock().unwrap().len() == n1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no re-register after the second drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = log.lock().unwrap()[n1].clone();
    let gap = second.at - first.at;
    println!("second flow re-register {gap:?} after the first");
    assert!(gap >= Duration::from_millis(2900), "{gap:?}");
    assert!(gap < Duration::from_secs(4), "{gap:?}");
    wait_for(
        &mut status,
        Duration::from_secs(3),
        "registered again",
        is_registered,
    )
    .await;
    svc.shutdown().await;
    c.stop().await;
    er.shutdown().await;
    tr.shutdown().await;
}

/// The refresh on tokio's paused clock, through the service's
/// [`Clock`](siplink_transport::Clock): the registrar grants 60 s and the
/// refresh comes between half-life and 5 s before expiry, in virtual time
/// (explicit `tokio::time::advance`, and the runtime's auto-advance while the
/// test waits), never by waiting 30 s.
#[tokio::test(start_paused = true)]
async fn paused_clock_refresh_by_advance() {
    let real = Instant::now();
    let clock = siplink_transport::Clock::new();
    // A registrar that reports the (virtual) time of every REGISTER.
    let (transport, incoming) = siplink_transport::Transport::new(TransportConfig::default());
    let addr = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, mut requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(mut tx) = requests.recv().await {
            let _ = seen_tx.send(clock.now());
            let contact = tx
                .request
                .header(HeaderName::Contact)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .unwrap_or_default();
            let ok = tx
                .request
                .response(200)
                .header(HeaderName::Contact, format!("{contact};expires=60"))
                .build()
                .unwrap();
            let _ = tx.respond(ok).await;
        }
    });
    let c = client(Duration::from_millis(500)).await;
    let (svc, _events) = siplink_register::RegistrationService::start(
        c.endpoint.clone(),
        siplink_register::ServiceConfig {
            clock,
            ..siplink_register::ServiceConfig::default()
        },
    );
    let (_, mut status) = svc
        .add(c.config("1001", addr.port(), Protocol::Udp))
        .await
        .unwrap();
    let first = seen.recv().await.unwrap();
    let s = wait_for(
        &mut status,
        Duration::from_secs(5),
        "registered",
        is_registered,
    )
    .await;
    assert_eq!(
        s.state,
        State::Registered {
            expires_at: first + Duration::from_secs(60)
        }
    );
    // Nothing before half-life.
    tokio::time::advance(Duration::from_secs(29)).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(seen.try_recv().is_err(), "no refresh before 30 s");
    let refresh = seen.recv().await.unwrap();
    let after = refresh - first;
    assert!(
        after >= Duration::from_secs(30) && after <= Duration::from_secs(55),
        "refresh {after:?} after the REGISTER"
    );
    wait_for(&mut status, Duration::from_secs(5), "re-registered", |s| {
        s.state
            == State::Registered {
                expires_at: refresh + Duration::from_secs(60),
            }
    })
    .await;
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "virtual time, not waiting"
    );
    svc.shutdown().await;
    c.stop().await;
    endpoint.shutdown().await;
    transport.shutdown().await;
}
