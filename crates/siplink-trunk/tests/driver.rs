//! The tokio driver against a PBX made of our own `siplink-transaction`
//! endpoint on loopback (these run everywhere; the SIPp and Kamailio runs are
//! in `interop_*.rs`): a call answered, ACKed (the ACK reaches the PBX as a
//! stray) and hung up; failover from a refused TCP target; a challenged BYE
//! answered inside the dialog; the health task taking a dead target down,
//! and bringing a target up once its PBX starts; `identify`.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use siplink_auth::ClientCredentials;
use siplink_message::{HeaderName, Method};
use siplink_testkit::free_port;
use siplink_transaction::{Endpoint, EndpointConfig};
use siplink_transport::{Transport, TransportConfig};
use siplink_trunk::{AttemptFailure, HealthState, Target, Transport as Proto, TrunkConfig};
use support::{TestTrunk, place_call, trunk};
use tokio::sync::mpsc;

/// A PBX: INVITE → 180, 200 (To tag, Contact); BYE → 200 (or, with
/// `challenge_bye`, 407 first unless it carries Proxy-Authorization);
/// OPTIONS → 200. ACKs (strays) and every request's method arrive on the
/// returned channel.
type Pbx = (
    SocketAddr,
    mpsc::UnboundedReceiver<(Method, bool)>,
    Endpoint,
);

async fn pbx(challenge_bye: bool) -> Pbx {
    pbx_on(Proto::Udp, "127.0.0.1:0".parse().unwrap(), challenge_bye).await
}

async fn pbx_on(protocol: Proto, at: SocketAddr, challenge_bye: bool) -> Pbx {
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let addr = transport.listen(protocol, at).await.unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let strays = seen_tx.clone();
    let config = EndpointConfig::default().with_stray_handler(move |inc| {
        if let Some(m) = inc.message.method() {
            let creds = inc.message.count(HeaderName::ProxyAuthorization) > 0;
            let _ = strays.send((m.clone(), creds));
        }
    });
    let (endpoint, mut requests) = Endpoint::start(transport, incoming, config);
    tokio::spawn(async move {
        while let Some(mut tx) = requests.recv().await {
            let req = tx.request.clone();
            let method = req.method().unwrap().clone();
            let creds = req.count(HeaderName::ProxyAuthorization) > 0;
            let _ = seen_tx.send((method.clone(), creds));
            let resp = match method {
                Method::Invite => {
                    let ring = req.response_with_tag(180, Some("pbx1")).build().unwrap();
                    let _ = tx.respond(ring).await;
                    req.response_with_tag(200, Some("pbx1"))
                        .header(HeaderName::Contact, format_args!("<sip:pbx@{addr}>"))
                        .build()
                        .unwrap()
                }
                Method::Bye if challenge_bye && !creds => req
                    .response(407)
                    .header(
                        HeaderName::ProxyAuthenticate,
                        "Digest realm=\"pbx.test\", nonce=\"n1\", algorithm=MD5",
                    )
                    .build()
                    .unwrap(),
                _ => req.response(200).build().unwrap(),
            };
            let _ = tx.respond(resp).await;
        }
    });
    (addr, seen, endpoint)
}

fn config(targets: Vec<Target>) -> TrunkConfig {
    let mut c = TrunkConfig::new("pbx", targets);
    c.health.enabled = false;
    c
}

async fn expect(seen: &mut mpsc::UnboundedReceiver<(Method, bool)>) -> (Method, bool) {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the PBX sees a request in time")
        .unwrap()
}

#[tokio::test]
async fn call_answered_acked_and_hung_up() {
    let (addr, mut seen, _pbx) = pbx(false).await;
    let TestTrunk { trunk, .. } = trunk(
        config(vec![Target::new("127.0.0.1", addr.port(), Proto::Udp)]),
        TransportConfig::default(),
    )
    .await;
    let log = place_call(&trunk, Duration::from_millis(50)).await;
    assert_eq!(log.provisional, vec![180]);
    assert_eq!(log.final_status, Some(200));
    assert_eq!(log.bye_status, Some(200));
    assert_eq!(expect(&mut seen).await.0, Method::Invite);
    assert_eq!(expect(&mut seen).await.0, Method::Ack);
    assert_eq!(expect(&mut seen).await.0, Method::Bye);
}

#[tokio::test]
async fn failover_from_refused_tcp_target() {
    let (addr, mut seen, _pbx) = pbx(false).await;
    let dead = Target::new("127.0.0.1", free_port(), Proto::Tcp).with_priority(1);
    let live = Target::new("127.0.0.1", addr.port(), Proto::Udp).with_priority(2);
    let TestTrunk { trunk, .. } = trunk(config(vec![dead, live]), TransportConfig::default()).await;
    let log = place_call(&trunk, Duration::ZERO).await;
    assert_eq!(log.target_failed, vec![(0, AttemptFailure::TransportError)]);
    assert_eq!(log.final_status, Some(200));
    assert_eq!(log.bye_status, Some(200));
    assert_eq!(expect(&mut seen).await.0, Method::Invite);
}

#[tokio::test]
async fn challenged_bye_answered_in_the_dialog() {
    let (addr, mut seen, _pbx) = pbx(true).await;
    let mut cfg = config(vec![Target::new("127.0.0.1", addr.port(), Proto::Udp)]);
    cfg.credentials = Some(ClientCredentials::password("trunkuser", "s3cret"));
    let TestTrunk { trunk, .. } = trunk(cfg, TransportConfig::default()).await;
    let log = place_call(&trunk, Duration::ZERO).await;
    assert_eq!(log.bye_status, Some(200));
    let methods: Vec<(Method, bool)> = [
        expect(&mut seen).await,
        expect(&mut seen).await,
        expect(&mut seen).await,
        expect(&mut seen).await,
    ]
    .into();
    assert_eq!(
        methods,
        vec![
            (Method::Invite, false),
            (Method::Ack, false),
            (Method::Bye, false),
            (Method::Bye, true)
        ]
    );
}

#[tokio::test]
async fn health_task_and_identify() {
    let (addr, _seen, _pbx) = pbx(false).await;
    let dead = Target::new("127.0.0.1", free_port(), Proto::Tcp);
    let mut cfg = TrunkConfig::new(
        "pbx",
        vec![Target::new("127.0.0.1", addr.port(), Proto::Udp), dead],
    );
    cfg.health.interval = Duration::from_millis(100);
    cfg.health.down_after = 2;
    cfg.identify = vec!["198.51.100.0/24".parse().unwrap()];
    let (transport, incoming) = Transport::new(TransportConfig::default());
    transport
        .listen(Proto::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, _requests) = Endpoint::start(transport, incoming, EndpointConfig::default());
    let trunk = siplink_trunk::Trunk::new(cfg, endpoint).unwrap();
    let mut watch = trunk.health_watch();
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|s| s == &[HealthState::Up, HealthState::Down]),
    )
    .await
    .expect("the dead target goes down in time")
    .unwrap();
    assert!(trunk.identify("127.0.0.1".parse::<IpAddr>().unwrap()));
    assert!(trunk.identify("198.51.100.7".parse::<IpAddr>().unwrap()));
    assert!(!trunk.identify("203.0.113.1".parse::<IpAddr>().unwrap()));
}

#[tokio::test]
async fn health_down_then_up_when_the_pbx_starts() {
    let port = free_port();
    let mut cfg = TrunkConfig::new("pbx", vec![Target::new("127.0.0.1", port, Proto::Tcp)]);
    cfg.health.interval = Duration::from_millis(100);
    cfg.health.down_after = 2;
    cfg.health.up_after = 2;
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let (endpoint, _requests) = Endpoint::start(transport, incoming, EndpointConfig::default());
    let trunk = siplink_trunk::Trunk::new(cfg, endpoint).unwrap();
    let mut events = trunk.health_events();
    let down = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("down in time")
        .unwrap();
    assert_eq!((down.target, down.to), (0, HealthState::Down));
    // The PBX starts listening on that port: two answered probes bring it up.
    let (_addr, mut seen, _pbx) = pbx_on(Proto::Tcp, support::addr(port), false).await;
    let up = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("up in time")
        .unwrap();
    assert_eq!(
        (up.target, up.from, up.to),
        (0, HealthState::Down, HealthState::Up)
    );
    assert_eq!(up.reason, siplink_trunk::ProbeOutcome::Status(200));
    assert_eq!(expect(&mut seen).await.0, Method::Options);
}

/// The OPTIONS probe interval on tokio's paused clock, through the trunk's
/// [`Clock`](siplink_transport::Clock) ([`Trunk::with_clock`]): the next probe
/// goes out one interval (30 s) after the previous one ended, when
/// `tokio::time::advance` (and the runtime's auto-advance while the test waits)
/// reaches it, never by waiting.
#[tokio::test(start_paused = true)]
async fn paused_clock_probe_interval_by_advance() {
    let real = std::time::Instant::now();
    let (addr, mut seen, _pbx) = pbx(false).await;
    let mut cfg = config(vec![Target::new("127.0.0.1", addr.port(), Proto::Udp)]);
    cfg.health.enabled = true;
    cfg.health.interval = Duration::from_secs(30);
    let (transport, incoming) = Transport::new(TransportConfig::default());
    transport
        .listen(Proto::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, _requests) = Endpoint::start(transport, incoming, EndpointConfig::default());
    let clock = siplink_transport::Clock::new();
    let t0 = clock.now();
    let trunk = siplink_trunk::Trunk::with_clock(cfg, endpoint, clock).unwrap();
    assert_eq!(seen.recv().await.unwrap().0, Method::Options);
    let first = clock.now();
    assert_eq!(first - t0, Duration::ZERO, "the first probe at once");
    // Its 200 comes back over loopback without time passing.
    for _ in 0..10_000 {
        if trunk.health()[0].last.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        trunk.health()[0].last,
        Some(siplink_trunk::ProbeOutcome::Status(200))
    );
    assert_eq!(clock.now(), first);
    // One second short of the interval: no second probe.
    tokio::time::advance(Duration::from_secs(29)).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(seen.try_recv().is_err(), "no probe before the interval");
    assert_eq!(seen.recv().await.unwrap().0, Method::Options);
    assert_eq!(clock.now() - first, Duration::from_secs(30));
    assert_eq!(seen.recv().await.unwrap().0, Method::Options);
    assert_eq!(clock.now() - first, Duration::from_secs(60));
    assert!(trunk.health().iter().all(|t| t.state == HealthState::Up));
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "virtual time, not waiting"
    );
}
