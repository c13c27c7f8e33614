//! The tokio driver (`RegistrarService`): over a real loopback transport and
//! endpoint (REGISTER in, lookup, sending over the registered flow, flow death),
//! and with tokio's paused clock for expiry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_registrar::{
    Aor, BindingEvent, EventKind, InMemoryStore, LocationStore, Reach, Registrar, RegistrarConfig,
    RegistrarService, RemoveReason, ServiceConfig,
};
use siplink_transaction::{ClientEvent, Endpoint, EndpointConfig, ServerRequests};
use siplink_transport::{Origin, Protocol, Target, Transport, TransportConfig};
use tokio::sync::broadcast;
use tokio::time::timeout;

fn open_registrar() -> Registrar {
    let mut c = RegistrarConfig::new(["example.com"]);
    c.auth = false;
    Registrar::new(c, None).unwrap()
}

struct Server {
    service: RegistrarService,
    endpoint: Endpoint,
    transport: Transport,
    udp: SocketAddr,
    tcp: SocketAddr,
}

async fn server() -> Server {
    server_with(open_registrar()).await
}

async fn server_with(registrar: Registrar) -> Server {
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let udp = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tcp = transport
        .listen(Protocol::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let store: Arc<dyn LocationStore> = Arc::new(InMemoryStore::new());
    let service = RegistrarService::start(
        registrar,
        store,
        transport.clone(),
        ServiceConfig::default(),
    );
    let s = service.clone();
    tokio::spawn(async move { s.run(requests).await });
    Server {
        service,
        endpoint,
        transport,
        udp,
        tcp,
    }
}

struct Client {
    endpoint: Endpoint,
    requests: ServerRequests,
    transport: Transport,
}

async fn client() -> Client {
    let (transport, incoming) = Transport::new(TransportConfig::default());
    transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    Client {
        endpoint,
        requests,
        transport,
    }
}

fn request(method: Method, ruri: &str, user: &str, cseq: u32) -> MessageBuilder {
    MessageBuilder::request(method.clone(), ruri)
        .header(HeaderName::Via, "SIP/2.0/UDP placeholder")
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, format!("<sip:{user}@example.com>"))
        .header(
            HeaderName::From,
            format!("<sip:{user}@example.com>;tag=t{cseq}"),
        )
        .header(HeaderName::CallId, format!("svc-{user}"))
        .header(HeaderName::CSeq, format!("{cseq} {method}"))
}

async fn final_response(c: &Client, req: Message, dest: Target) -> Message {
    let mut tx = c.endpoint.send_request(req, dest).await.unwrap();
    loop {
        match timeout(Duration::from_secs(10), tx.next()).await.unwrap() {
            Some(ClientEvent::Final(m)) => return m,
            Some(ClientEvent::Provisional(_)) => continue,
            other => panic!("no final response: {other:?}"),
        }
    }
}

/// A registrar for example.com with digest authentication; alice's password
/// is `alice-pw`.
fn digest_registrar() -> Registrar {
    use siplink_auth::{DigestServer, ServerConfig, StoredSecret};
    use siplink_registrar::Authenticator;
    let digest = DigestServer::with_secret(ServerConfig::new("example.com"), b"test secret 0123");
    let users = |user: &str, _realm: &str, _alg| match user {
        "alice" => Some(StoredSecret::Password("alice-pw".into())),
        _ => None,
    };
    Registrar::new(
        RegistrarConfig::new(["example.com"]),
        Some(Authenticator::new(digest, users)),
    )
    .unwrap()
}

/// alice's second REGISTER (CSeq 2), answering the challenge in `r401` with
/// `password`.
fn answered_register(r401: &Message, password: &str) -> Message {
    let mut digest = siplink_auth::DigestClient::new(
        "example.com",
        siplink_auth::ClientCredentials::password("alice", password),
    );
    let answers = digest
        .answer(
            "example.com",
            r401.www_authenticate().unwrap(),
            &[],
            &siplink_auth::RequestInfo::new("REGISTER", "sip:example.com"),
        )
        .unwrap();
    let mut reg = request(Method::Register, "sip:example.com", "alice", 2)
        .header(HeaderName::Contact, "<sip:alice@192.0.2.7:5062>");
    for a in answers {
        reg = reg.header(HeaderName::Authorization, a.credentials.to_string());
    }
    reg.build().unwrap()
}

async fn next_event(rx: &mut broadcast::Receiver<BindingEvent>) -> BindingEvent {
    next_event_within(rx, Duration::from_secs(10)).await
}

async fn next_event_within(
    rx: &mut broadcast::Receiver<BindingEvent>,
    limit: Duration,
) -> BindingEvent {
    timeout(limit, rx.recv())
        .await
        .expect("an event in time")
        .expect("event stream open")
}

#[tokio::test]
async fn register_over_tcp_then_reach_the_client_over_its_flow_until_it_closes() {
    let s = server().await;
    let mut c = client().await;
    let mut events = s.service.subscribe();
    let reg = request(Method::Register, "sip:example.com", "pbx", 1)
        .header(
            HeaderName::Contact,
            "<sip:pbx@10.0.0.9:5060;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\";reg-id=1",
        )
        .header(HeaderName::Supported, "outbound, path")
        .header(HeaderName::Expires, 600)
        .build()
        .unwrap();
    let ok = final_response(&c, reg, Target::new(Protocol::Tcp, s.tcp)).await;
    assert_eq!(ok.status(), Some(200));
    let added = next_event(&mut events).await;
    assert_eq!(added.kind, EventKind::Added);

    let aor = Aor::parse("sip:pbx@example.com").unwrap();
    let targets = s.service.lookup(&aor).await.unwrap();
    assert_eq!(targets.len(), 1);
    let Reach::Flow(flow) = targets[0].reach.clone() else {
        panic!("expected a flow, got {:?}", targets[0].reach)
    };
    // The flow id is the transport's: it names the open connection.
    assert_eq!(s.transport.flow_info(flow).unwrap().0, Protocol::Tcp);

    // Our side sends an OPTIONS over that flow; the client answers it.
    let options = request(
        Method::Options,
        "sip:pbx@10.0.0.9:5060;transport=tcp",
        "pbx",
        7,
    )
    .build()
    .unwrap();
    let mut tx = s.endpoint.send_request(options, flow).await.unwrap();
    let mut incoming = timeout(Duration::from_secs(10), c.requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incoming.request.method(), Some(&Method::Options));
    assert!(
        incoming.origin.flow.is_some(),
        "arrived over the client's connection"
    );
    let answer = incoming.request.response(200).build().unwrap();
    incoming.respond(answer).await.unwrap();
    match timeout(Duration::from_secs(10), tx.next()).await.unwrap() {
        Some(ClientEvent::Final(m)) => assert_eq!(m.status(), Some(200)),
        other => panic!("{other:?}"),
    }

    // The client goes away: its connection closes, the outbound binding goes.
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    let removed = next_event(&mut events).await;
    assert_eq!(removed.kind, EventKind::Removed(RemoveReason::FlowClosed));
    assert!(s.service.lookup(&aor).await.unwrap().is_empty());
    s.endpoint.shutdown().await;
    s.transport.shutdown().await;
}

/// A challenge (401) and a refusal (403 for a wrong password) are sent
/// statelessly: the server endpoint keeps no transaction after either, and
/// the 401's To tag is the endpoint's stateless tag for the REGISTER.
#[tokio::test]
async fn challenges_and_refusals_are_stateless() {
    let registrar = digest_registrar();
    let s = server_with(registrar).await;
    let c = client().await;
    let udp = Target::new(Protocol::Udp, s.udp);
    let reg = request(Method::Register, "sip:example.com", "alice", 1)
        .header(HeaderName::Contact, "<sip:alice@192.0.2.7:5062>")
        .build()
        .unwrap();
    let mut tx = c.endpoint.send_request(reg, udp.clone()).await.unwrap();
    let sent = tx.request().clone();
    let r401 = match timeout(Duration::from_secs(10), tx.next()).await.unwrap() {
        Some(ClientEvent::Final(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(r401.status(), Some(401));
    assert_eq!(
        r401.to().unwrap().tag(),
        Some(s.endpoint.stateless().to_tag(&sent).as_str())
    );
    assert_eq!(s.endpoint.transaction_count().await.unwrap(), 0);
    // Answer the challenge with a wrong password: 403, statelessly too.
    let reg2 = answered_register(&r401, "wrong");
    let r = final_response(&c, reg2, udp).await;
    assert_eq!(r.status(), Some(403));
    assert_eq!(s.endpoint.transaction_count().await.unwrap(), 0);
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    s.endpoint.shutdown().await;
    s.transport.shutdown().await;
}

#[tokio::test]
async fn standalone_answers_options_405_and_404() {
    let s = server().await;
    let c = client().await;
    let udp = Target::new(Protocol::Udp, s.udp);
    let options = request(Method::Options, "sip:example.com", "a", 1)
        .build()
        .unwrap();
    let r = final_response(&c, options, udp.clone()).await;
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.header(HeaderName::Allow), Some(&b"REGISTER, OPTIONS"[..]));
    let message = request(Method::Message, "sip:a@example.com", "a", 2)
        .build()
        .unwrap();
    let r = final_response(&c, message, udp.clone()).await;
    assert_eq!(r.status(), Some(405));
    let other = request(Method::Options, "sip:other.org", "a", 3)
        .build()
        .unwrap();
    let r = final_response(&c, other, udp.clone()).await;
    assert_eq!(r.status(), Some(404));
    // A UDP registration: no flow, reached through its Contact.
    let reg = request(Method::Register, "sip:example.com", "bob", 4)
        .header(HeaderName::Contact, "<sip:bob@192.0.2.7:5062>")
        .header(HeaderName::Expires, 120)
        .build()
        .unwrap();
    assert_eq!(final_response(&c, reg, udp).await.status(), Some(200));
    let t = s
        .service
        .lookup(&Aor::parse("sip:bob@example.com").unwrap())
        .await
        .unwrap();
    assert!(
        matches!(&t[0].reach, Reach::Contact { uri, path } if uri.as_str() == "sip:bob@192.0.2.7:5062" && path.is_empty())
    );
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    s.endpoint.shutdown().await;
    s.transport.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bindings_expire_at_their_time() {
    let (transport, _incoming) = Transport::new(TransportConfig::default());
    let store = Arc::new(InMemoryStore::new());
    let service = RegistrarService::start(
        open_registrar(),
        store.clone(),
        transport,
        ServiceConfig::default(),
    );
    let mut events = service.subscribe();
    let origin = Origin {
        protocol: Protocol::Udp,
        peer: "192.0.2.10:5060".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
        flow: None,
    };
    let register = |user: &str, expires: u32| {
        MessageBuilder::request(Method::Register, "sip:example.com")
            .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-1")
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::To, format!("<sip:{user}@example.com>"))
            .header(HeaderName::From, format!("<sip:{user}@example.com>;tag=1"))
            .header(HeaderName::CallId, format!("exp-{user}"))
            .header(HeaderName::CSeq, "1 REGISTER")
            .header(HeaderName::Contact, format!("<sip:{user}@192.0.2.10>"))
            .header(HeaderName::Expires, expires)
            .build()
            .unwrap()
    };
    let start = tokio::time::Instant::now();
    let d = service
        .process(&register("long", 300), &origin)
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    // A shorter binding registered later wakes the timer earlier.
    let d = service
        .process(&register("short", 60), &origin)
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);

    // Virtual time: the clock jumps to each expiry.
    let hour = Duration::from_secs(3600);
    let e = next_event_within(&mut events, hour).await;
    assert_eq!(e.kind, EventKind::Removed(RemoveReason::Expired));
    assert_eq!(e.binding.aor.as_str(), "sip:short@example.com");
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    let e = next_event_within(&mut events, hour).await;
    assert_eq!(e.binding.aor.as_str(), "sip:long@example.com");
    assert_eq!(start.elapsed(), Duration::from_secs(300));
    assert_eq!(store.poll_timeout(), None);
    service.shutdown();
}

#[tokio::test]
async fn process_refuses_other_methods() {
    let (transport, _incoming) = Transport::new(TransportConfig::default());
    let service = RegistrarService::start(
        open_registrar(),
        Arc::new(InMemoryStore::new()),
        transport,
        ServiceConfig::default(),
    );
    let origin = Origin {
        protocol: Protocol::Udp,
        peer: "192.0.2.10:5060".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
        flow: None,
    };
    let m = request(Method::Options, "sip:example.com", "a", 1)
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-2")
        .build()
        .unwrap();
    assert!(matches!(
        service.process(&m, &origin).await,
        Err(siplink_registrar::Error::NotRegister)
    ));
}

#[tokio::test]
async fn the_core_flood_limit_applies_through_the_driver() {
    let (transport, _incoming) = Transport::new(TransportConfig::default());
    let mut config = RegistrarConfig::new(["example.com"]);
    config.auth = false;
    config.flood = Some(siplink_registrar::FloodConfig {
        max_requests: 3,
        window: Duration::from_secs(10),
        ..siplink_registrar::FloodConfig::default()
    });
    let service = RegistrarService::start(
        Registrar::new(config, None).unwrap(),
        Arc::new(InMemoryStore::new()),
        transport,
        ServiceConfig::default(),
    );
    let origin = Origin {
        protocol: Protocol::Udp,
        peer: "192.0.2.10:5060".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
        flow: None,
    };
    let mut statuses = Vec::new();
    for n in 1..=4u32 {
        let reg = request(Method::Register, "sip:example.com", "flood", n)
            .header(
                HeaderName::Via,
                format!("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-f{n}"),
            )
            .header(HeaderName::Contact, "<sip:flood@192.0.2.10>")
            .build()
            .unwrap();
        statuses.push(service.process(&reg, &origin).await.unwrap().status());
    }
    assert_eq!(statuses, [200, 200, 200, 503]);
}

#[tokio::test]
async fn the_failed_attempt_limiter_applies_through_the_driver() {
    use siplink_auth::{
        ClientCredentials, DigestClient, DigestServer, FailureLimiter, LimiterConfig, RequestInfo,
        ServerConfig, StoredSecret,
    };
    let (transport, _incoming) = Transport::new(TransportConfig::default());
    let users = |user: &str, _realm: &str, _alg| {
        (user == "alice").then(|| StoredSecret::Password("alice-pw".into()))
    };
    let limiter = FailureLimiter::new(LimiterConfig {
        max_failures: 2,
        ..LimiterConfig::default()
    });
    let auth = siplink_registrar::Authenticator::new(
        DigestServer::new(ServerConfig::new("example.com")),
        users,
    )
    .with_limiter(limiter);
    let registrar = Registrar::new(RegistrarConfig::new(["example.com"]), Some(auth)).unwrap();
    let service = RegistrarService::start(
        registrar,
        Arc::new(InMemoryStore::new()),
        transport,
        ServiceConfig::default(),
    );
    let origin = Origin {
        protocol: Protocol::Udp,
        peer: "192.0.2.10:5060".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
        flow: None,
    };
    // Challenge, then answer with `password`; returns the final status.
    let attempt = |n: u32, password: &'static str| {
        let service = service.clone();
        async move {
            let build = |cseq: u32, auth: Option<String>| {
                let mut b = request(Method::Register, "sip:example.com", "alice", cseq)
                    .header(
                        HeaderName::Via,
                        format!("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-a{cseq}"),
                    )
                    .header(HeaderName::Contact, "<sip:alice@192.0.2.10>");
                if let Some(a) = auth {
                    b = b.header(HeaderName::Authorization, a);
                }
                b.build().unwrap()
            };
            let first = service.process(&build(n * 2, None), &origin).await.unwrap();
            if first.status() != 401 {
                return first.status();
            }
            let www = first.response.www_authenticate().unwrap().to_vec();
            let mut client = DigestClient::new(
                "example.com",
                ClientCredentials::password("alice", password),
            );
            let info = RequestInfo::new("REGISTER", "sip:example.com");
            let answers = client.answer("example.com", &www, &[], &info).unwrap();
            let creds = answers[0].credentials.to_string();
            service
                .process(&build(n * 2 + 1, Some(creds)), &origin)
                .await
                .unwrap()
                .status()
        }
    };
    // The right password works...
    assert_eq!(attempt(1, "alice-pw").await, 200);
    // ...until two failures from this source start a cool-down: then this
    // source is refused for alice, even with the right password.
    assert_eq!(attempt(2, "wrong").await, 403);
    assert_eq!(attempt(3, "wrong").await, 403);
    assert_eq!(attempt(4, "alice-pw").await, 403);
}

/// A binding expiry on tokio's paused clock through the service's
/// [`Clock`](siplink_transport::Clock) with a fixed wall base: the expiry event
/// fires when `tokio::time::advance` reaches it, and the wall-clock times stored
/// in the binding move with the paused clock too.
#[tokio::test(start_paused = true)]
async fn paused_clock_expiry_event_by_advance_with_wall_time() {
    let base = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let clock = siplink_transport::Clock::with_wall_base(base);
    let (transport, _incoming) = Transport::new(TransportConfig::default());
    let store = Arc::new(InMemoryStore::new());
    let service = RegistrarService::start(
        open_registrar(),
        store.clone(),
        transport,
        ServiceConfig {
            clock,
            ..ServiceConfig::default()
        },
    );
    let mut events = service.subscribe();
    let origin = Origin {
        protocol: Protocol::Udp,
        peer: "192.0.2.10:5060".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
        flow: None,
    };
    // Ten seconds of wall time pass before the REGISTER.
    tokio::time::advance(Duration::from_secs(10)).await;
    let register = MessageBuilder::request(Method::Register, "sip:example.com")
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-w")
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "<sip:wall@example.com>")
        .header(HeaderName::From, "<sip:wall@example.com>;tag=1")
        .header(HeaderName::CallId, "wall-1")
        .header(HeaderName::CSeq, "1 REGISTER")
        .header(HeaderName::Contact, "<sip:wall@192.0.2.10>")
        .header(HeaderName::Expires, 120)
        .build()
        .unwrap();
    let t0 = clock.now();
    let d = service.process(&register, &origin).await.unwrap();
    assert_eq!(d.status(), 200);
    let added = next_event(&mut events).await;
    assert_eq!(added.kind, EventKind::Added);
    assert_eq!(added.binding.registered_at, base + Duration::from_secs(10));
    assert_eq!(added.binding.expires_at, t0 + Duration::from_secs(120));
    assert_eq!(
        added.binding.expires_at_wall,
        base + Duration::from_secs(130)
    );
    // One second short of the expiry: still there.
    tokio::time::advance(Duration::from_secs(119)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(events.try_recv().is_err(), "nothing before the expiry");
    assert_eq!(service.lookup(&added.binding.aor).await.unwrap().len(), 1);
    // The last second: the expiry event, at exactly 120 s.
    tokio::time::advance(Duration::from_secs(1)).await;
    let e = next_event_within(&mut events, Duration::from_millis(1)).await;
    assert_eq!(e.kind, EventKind::Removed(RemoveReason::Expired));
    assert_eq!(clock.now() - t0, Duration::from_secs(120));
    assert_eq!(clock.wall_now(), base + Duration::from_secs(130));
    assert!(service.lookup(&added.binding.aor).await.unwrap().is_empty());
    service.shutdown();
}

/// A REGISTER as a PBX without RFC 5626 sends it (Kamailio's `uac`): a plain
/// Contact naming an address only its connection reaches.
fn plain_pbx_register(cseq: u32) -> Message {
    request(Method::Register, "sip:example.com", "pbx", cseq)
        .header(HeaderName::Contact, "<sip:pbx@10.0.0.9:5060;transport=tcp>")
        .header(HeaderName::Expires, 3600)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_plain_tcp_binding_goes_within_a_second_of_its_connection() {
    let s = server().await;
    let mut events = s.service.subscribe();
    let aor = Aor::parse("sip:pbx@example.com").unwrap();
    let c = client().await;
    let ok = final_response(&c, plain_pbx_register(1), Target::new(Protocol::Tcp, s.tcp)).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    let targets = s.service.lookup(&aor).await.unwrap();
    assert_eq!(targets.len(), 1);
    let Reach::Flow(flow) = targets[0].reach.clone() else {
        panic!("expected a flow, got {:?}", targets[0].reach)
    };
    assert!(s.transport.is_flow_alive(flow));

    // The PBX dies: its connection drops with an hour of expiry left.
    let dropped = tokio::time::Instant::now();
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    let removed = next_event_within(&mut events, Duration::from_secs(1)).await;
    assert_eq!(removed.kind, EventKind::Removed(RemoveReason::FlowClosed));
    assert_eq!(removed.binding.aor, aor);
    assert_eq!(removed.binding.flow, Some(flow));
    assert!(s.service.lookup(&aor).await.unwrap().is_empty());
    assert!(dropped.elapsed() < Duration::from_secs(1));
    assert_eq!(s.service.store().usage().await.unwrap().bindings, 0);

    // It comes back on a new connection and registers again.
    let c2 = client().await;
    let ok = final_response(
        &c2,
        plain_pbx_register(2),
        Target::new(Protocol::Tcp, s.tcp),
    )
    .await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    let targets = s.service.lookup(&aor).await.unwrap();
    assert_eq!(targets.len(), 1);
    assert!(
        matches!(targets[0].reach, Reach::Flow(f) if f != flow && s.transport.is_flow_alive(f))
    );
    c2.endpoint.shutdown().await;
    c2.transport.shutdown().await;
    s.endpoint.shutdown().await;
    s.transport.shutdown().await;
}

#[tokio::test]
async fn a_udp_binding_is_not_touched_when_a_tcp_connection_closes() {
    let s = server().await;
    let mut events = s.service.subscribe();
    let c = client().await;
    let udp_reg = request(Method::Register, "sip:example.com", "alice", 1)
        .header(HeaderName::Contact, "<sip:alice@127.0.0.1:5999>")
        .header(HeaderName::Expires, 600)
        .build()
        .unwrap();
    let ok = final_response(&c, udp_reg, Target::new(Protocol::Udp, s.udp)).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    let ok = final_response(&c, plain_pbx_register(1), Target::new(Protocol::Tcp, s.tcp)).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    let removed = next_event_within(&mut events, Duration::from_secs(1)).await;
    assert_eq!(removed.binding.aor.as_str(), "sip:pbx@example.com");
    let alice = Aor::parse("sip:alice@example.com").unwrap();
    assert_eq!(s.service.lookup(&alice).await.unwrap().len(), 1);
    s.endpoint.shutdown().await;
    s.transport.shutdown().await;
}

#[tokio::test]
async fn with_contact_fallback_the_binding_stays_reached_through_its_contact() {
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let tcp = transport
        .listen(Protocol::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let mut config = RegistrarConfig::new(["example.com"]);
    config.auth = false;
    config.contact_fallback = true;
    let service = RegistrarService::start(
        Registrar::new(config, None).unwrap(),
        Arc::new(InMemoryStore::new()),
        transport.clone(),
        ServiceConfig::default(),
    );
    let sv = service.clone();
    tokio::spawn(async move { sv.run(requests).await });
    let mut events = service.subscribe();
    let c = client().await;
    let ok = final_response(&c, plain_pbx_register(1), Target::new(Protocol::Tcp, tcp)).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    let lost = next_event_within(&mut events, Duration::from_secs(1)).await;
    assert_eq!(lost.kind, EventKind::FlowLost);
    let aor = Aor::parse("sip:pbx@example.com").unwrap();
    let targets = service.lookup(&aor).await.unwrap();
    assert_eq!(targets.len(), 1);
    assert!(matches!(&targets[0].reach, Reach::Contact { uri, .. }
        if uri.to_string() == "sip:pbx@10.0.0.9:5060;transport=tcp"));
    endpoint.shutdown().await;
    transport.shutdown().await;
}

#[tokio::test]
async fn lookup_leaves_out_a_dead_plain_tcp_flow_before_its_removal_is_processed() {
    let s = server().await;
    let mut events = s.service.subscribe();
    let aor = Aor::parse("sip:pbx@example.com").unwrap();
    let c = client().await;
    let ok = final_response(&c, plain_pbx_register(1), Target::new(Protocol::Tcp, s.tcp)).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    let Reach::Flow(flow) = s.service.lookup(&aor).await.unwrap()[0].reach.clone() else {
        panic!("expected a flow")
    };
    // The flow task stops (as if it lagged behind): the close is not handled.
    s.service.shutdown();
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    let t0 = tokio::time::Instant::now();
    while s.transport.is_flow_alive(flow) {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "the flow never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Still stored, but never handed out for routing.
    assert_eq!(s.service.store().usage().await.unwrap().bindings, 1);
    assert!(s.service.lookup(&aor).await.unwrap().is_empty());
    s.endpoint.shutdown().await;
    s.transport.shutdown().await;
}

/// The digest registrar (`digest_registrar`) with an in-memory store, served
/// on UDP by a two-worker run-to-completion runtime on loopback.
fn digest_registrar_on_runtime() -> (
    Transport,
    RegistrarService,
    siplink_transaction::runtime::Runtime,
) {
    use siplink_transaction::runtime::{Runtime, RuntimeConfig};
    let (transport, _queue) = Transport::new(TransportConfig::default());
    let service = RegistrarService::start(
        digest_registrar(),
        Arc::new(InMemoryStore::new()),
        transport.clone(),
        ServiceConfig::default(),
    );
    let rt = Runtime::start(
        &transport,
        "127.0.0.1:0".parse().unwrap(),
        RuntimeConfig {
            workers: 2,
            ..RuntimeConfig::default()
        },
        Arc::new(service.clone()),
    )
    .unwrap();
    (transport, service, rt)
}

/// The registrar as a service of the run-to-completion runtime: a challenge
/// (stateless: no transaction kept), then the digest answer registers, the
/// binding is looked up, OPTIONS and other methods are answered as the
/// standalone registrar answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_through_the_run_to_completion_runtime() {
    let (transport, service, rt) = digest_registrar_on_runtime();
    let mut events = service.subscribe();
    let c = client().await;
    let udp = Target::new(Protocol::Udp, rt.local_addr());
    let reg = request(Method::Register, "sip:example.com", "alice", 1)
        .header(HeaderName::Contact, "<sip:alice@192.0.2.7:5062>")
        .build()
        .unwrap();
    let r401 = final_response(&c, reg, udp.clone()).await;
    assert_eq!(r401.status(), Some(401));
    assert_eq!(rt.transaction_count(), 0, "the challenge kept nothing");
    let reg2 = answered_register(&r401, "alice-pw");
    let r = final_response(&c, reg2, udp.clone()).await;
    assert_eq!(r.status(), Some(200));
    assert_eq!(
        rt.transaction_count(),
        1,
        "the 200's transaction waits out timer J"
    );
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, EventKind::Added);
    let aor = Aor::from_uri(&"sip:alice@example.com".parse().unwrap()).unwrap();
    let found = service.lookup(&aor).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].binding.source.port(),
        c.transport.listeners()[0].1.port()
    );
    let options = request(Method::Options, "sip:example.com", "alice", 3)
        .build()
        .unwrap();
    assert_eq!(
        final_response(&c, options, udp.clone()).await.status(),
        Some(200)
    );
    let info = request(Method::Info, "sip:example.com", "alice", 4)
        .build()
        .unwrap();
    assert_eq!(
        final_response(&c, info, udp.clone()).await.status(),
        Some(405)
    );
    let other = request(Method::Options, "sip:other.example", "alice", 5)
        .build()
        .unwrap();
    assert_eq!(final_response(&c, other, udp).await.status(), Some(404));
    c.endpoint.shutdown().await;
    c.transport.shutdown().await;
    rt.shutdown();
    transport.shutdown().await;
}

/// A phone's REGISTERs over TCP handled in the connection's own task by the
/// runtime ([`Runtime::take_streams`]): challenged, registered, reached over
/// its connection, and unbound when the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_over_tcp_through_the_run_to_completion_runtime() {
    let (transport, service, rt) = digest_registrar_on_runtime();
    let mut events = service.subscribe();
    assert!(rt.take_streams(&transport));
    let tcp_addr = transport
        .listen(Protocol::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = client().await;
    let tcp = Target::new(Protocol::Tcp, tcp_addr);
    let reg = request(Method::Register, "sip:example.com", "alice", 1)
        .header(
            HeaderName::Contact,
            "<sip:alice@192.0.2.8:5062;transport=tcp>",
        )
        .build()
        .unwrap();
    let r401 = final_response(&c, reg, tcp.clone()).await;
    assert_eq!(r401.status(), Some(401));
    let r = final_response(&c, answered_register(&r401, "alice-pw"), tcp.clone()).await;
    assert_eq!(r.status(), Some(200));
    assert_eq!(next_event(&mut events).await.kind, EventKind::Added);
    let aor = Aor::from_uri(&"sip:alice@example.com".parse().unwrap()).unwrap();
    let found = service.lookup(&aor).await.unwrap();
    assert_eq!(found.len(), 1);
    let flow = found[0].binding.flow.expect("registered over a connection");
    assert!(matches!(found[0].reach, Reach::Flow(f) if f == flow));
    // The phone's connection closes: the binding goes with it.
    c.transport.shutdown().await;
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, EventKind::Removed(RemoveReason::FlowClosed));
    assert!(service.lookup(&aor).await.unwrap().is_empty());
    c.endpoint.shutdown().await;
    rt.shutdown();
    transport.shutdown().await;
}
