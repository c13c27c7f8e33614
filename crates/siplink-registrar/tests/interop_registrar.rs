//! Interoperability of the registrar (`RegistrarService` over a real loopback
//! transport and endpoint) with real SIP peers:
//!
//! * **SIPp** (`sip-tester`), over UDP and over TCP: 50 users from a CSV
//!   (`tests/interop/users.csv`) each register with digest authentication,
//!   refresh and unregister (`tests/interop/register_auth.xml`, every 200
//!   checked for the binding's Contact and expiry); SIPp must report every
//!   call successful, and our event stream must show 50 additions, 50
//!   refreshes and 50 unregistrations, with nothing left in the store.
//! * **SIPp** with wrong passwords (`register_wrong_password.xml`): 401, then
//!   403 after the credentials; no binding.
//! * **baresip** registers non-interactively from a config directory written
//!   by the test (`baresip -f DIR`); its binding must show up in our lookup.
//! * **Inbound registration over TCP**: SIPp acting as a PBX registers over
//!   TCP with an unreachable Contact (`pbx_tcp.xml`); our lookup gives its
//!   flow, and a MESSAGE sent to that flow reaches SIPp on the same socket and
//!   is answered 200.
//!
//! Missing tools print `SKIPPED: ...` and pass unless `SIPLINK_INTEROP=1` is
//! set (CI), which makes a missing tool a failure. The tools run under the
//! testkit's launchers: each is stopped with its process group when dropped,
//! even on failure; files go to a fresh work directory; ports come from the
//! testkit's allocator.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use siplink_auth::{Algorithm, DigestServer, ServerConfig, StoredSecret};
use siplink_message::{HeaderName, MessageBuilder, Method};
use siplink_registrar::{
    Aor, Authenticator, BindingEvent, EventKind, FloodConfig, InMemoryStore, LocationStore, Reach,
    Registrar, RegistrarConfig, RegistrarService, RemoveReason, ServiceConfig,
};
use siplink_testkit::{Baresip, Sipp, SippBuilder, require, work_dir};
use siplink_transaction::{ClientEvent, Endpoint, EndpointConfig};
use siplink_transport::{Protocol, Transport, TransportConfig};
use tokio::sync::broadcast;
use tokio::time::timeout;

const DOMAIN: &str = "example.test";
/// Users in `tests/interop/users.csv` (`userN` / `userN-pw`).
const USERS: usize = 50;
/// Hard limit for one tool run.
const TOOL_LIMIT: Duration = Duration::from_secs(45);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// SIPp as a client of `server` over `protocol`, with the users of `csv`.
fn sipp_client(
    dir: &Path,
    name: &str,
    server: SocketAddr,
    protocol: Protocol,
    scenario: &str,
    csv: &str,
) -> SippBuilder {
    let interop = interop_dir();
    Sipp::builder(dir, name)
        .remote(server)
        .scenario(interop.join(scenario))
        .args([OsString::from("-inf"), interop.join(csv).into_os_string()])
        .key("domain", DOMAIN)
        .tcp(protocol != Protocol::Udp)
        .timeout(Duration::from_secs(40))
}

/// The registrar under test, listening on UDP and TCP on loopback.
struct Server {
    service: RegistrarService,
    endpoint: Endpoint,
    transport: Transport,
    events: broadcast::Receiver<BindingEvent>,
    udp: SocketAddr,
    tcp: SocketAddr,
}

impl Server {
    async fn start(algorithms: Vec<Algorithm>) -> Server {
        let mut users = HashMap::new();
        for i in 1..=USERS {
            users.insert(format!("user{i}"), format!("user{i}-pw"));
        }
        users.insert("pbx1".to_owned(), "pbx1-pw".to_owned());
        let mut server_config = ServerConfig::new(DOMAIN);
        server_config.algorithms = algorithms;
        let digest = DigestServer::new(server_config);
        let credentials = move |user: &str, _realm: &str, _alg: Algorithm| {
            users.get(user).map(|p| StoredSecret::Password(p.clone()))
        };
        // SIPp digests over the registrar's address rather than the
        // Request-URI, so the address is served as a domain too.
        let mut config = RegistrarConfig::new([DOMAIN, "127.0.0.1"]);
        // Every run comes from 127.0.0.1: allow it the whole run.
        config.flood = Some(FloodConfig {
            max_requests: 10_000,
            ..FloodConfig::default()
        });
        let registrar =
            Registrar::new(config, Some(Authenticator::new(digest, credentials))).unwrap();

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
        let events = service.subscribe();
        let s = service.clone();
        tokio::spawn(async move { s.run(requests).await });
        Server {
            service,
            endpoint,
            transport,
            events,
            udp,
            tcp,
        }
    }

    /// The events received so far, counted by kind.
    fn drain(&mut self) -> HashMap<EventKind, usize> {
        let mut counts = HashMap::new();
        while let Ok(e) = self.events.try_recv() {
            *counts.entry(e.kind).or_insert(0) += 1;
        }
        counts
    }

    async fn bindings(&self) -> usize {
        self.service.store().usage().await.unwrap().bindings
    }

    async fn stop(self) {
        self.service.shutdown();
        self.endpoint.shutdown().await;
        self.transport.shutdown().await;
    }
}

/// Runs a SIPp client scenario against `server`; returns its exit code and
/// its error log.
async fn sipp(
    dir: &Path,
    server: SocketAddr,
    protocol: Protocol,
    scenario: &str,
    csv: &str,
    calls: usize,
) -> (Option<i32>, String) {
    let mut sipp = sipp_client(dir, "sipp", server, protocol, scenario, csv)
        .calls(calls)
        .message_trace(false)
        .args(["-r", "25", "-l", "25"])
        .spawn();
    let code = sipp.wait(TOOL_LIMIT).await;
    (code, sipp.errors())
}

async fn register_refresh_unregister(protocol: Protocol) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("registrar-interop");
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let target = if protocol == Protocol::Udp {
        server.udp
    } else {
        server.tcp
    };
    let (code, errors) = sipp(
        &dir,
        target,
        protocol,
        "register_auth.xml",
        "users.csv",
        USERS,
    )
    .await;
    assert_eq!(code, Some(0), "SIPp reported failed calls:\n{errors}");
    // The last unregistration's event may trail SIPp's exit by a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counts = server.drain();
    println!("SIPp over {protocol}: {USERS} users, exit 0, events {counts:?}");
    assert_eq!(counts.get(&EventKind::Added), Some(&USERS));
    assert_eq!(counts.get(&EventKind::Refreshed), Some(&USERS));
    assert_eq!(
        counts.get(&EventKind::Removed(RemoveReason::Unregistered)),
        Some(&USERS)
    );
    assert_eq!(server.bindings().await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_many_users_register_refresh_unregister_udp() {
    register_refresh_unregister(Protocol::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_many_users_register_refresh_unregister_tcp() {
    register_refresh_unregister(Protocol::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_wrong_password_gets_403_after_the_challenge() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("registrar-interop");
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let (code, errors) = sipp(
        &dir,
        server.udp,
        Protocol::Udp,
        "register_wrong_password.xml",
        "wrong_password.csv",
        3,
    )
    .await;
    assert_eq!(code, Some(0), "SIPp did not see 401 then 403:\n{errors}");
    assert!(server.drain().is_empty(), "no binding may change");
    assert_eq!(server.bindings().await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_pbx_registered_over_tcp_is_reached_over_its_connection() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("registrar-interop");
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let mut pbx = sipp_client(
        &dir,
        "pbx",
        server.tcp,
        Protocol::Tcp,
        "pbx_tcp.xml",
        "pbx.csv",
    )
    .spawn();

    let added = timeout(Duration::from_secs(20), server.events.recv())
        .await
        .expect("the PBX registers")
        .unwrap();
    assert_eq!(added.kind, EventKind::Added);
    // The event comes when the binding is stored, just before the 200 is
    // sent; SIPp aborts on a MESSAGE that overtakes that 200.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let aor = Aor::parse("sip:pbx1@example.test").unwrap();
    let targets = server.service.lookup(&aor).await.unwrap();
    assert_eq!(targets.len(), 1);
    let Reach::Flow(flow) = targets[0].reach.clone() else {
        panic!(
            "the PBX must be reached over its flow: {:?}",
            targets[0].reach
        );
    };
    let (protocol, peer, _) = server.transport.flow_info(flow).unwrap();
    assert_eq!(protocol, Protocol::Tcp);
    assert_eq!(peer, targets[0].binding.source, "the REGISTER's connection");

    // SIPp matches messages to its calls by Call-ID: the MESSAGE reuses the
    // registration's. The Contact (10.0.0.1) is unreachable: only the flow
    // can deliver it.
    let binding = &targets[0].binding;
    let message = MessageBuilder::request(Method::Message, binding.contact.uri.as_str())
        .header(HeaderName::Via, "SIP/2.0/TCP placeholder.invalid")
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "<sip:pbx1@example.test>")
        .header(HeaderName::From, "<sip:registrar@example.test>;tag=reg1")
        .header(HeaderName::CallId, &binding.call_id)
        .header(HeaderName::CSeq, "1 MESSAGE")
        .body("text/plain", "a call for you")
        .build()
        .unwrap();
    let mut tx = server.endpoint.send_request(message, flow).await.unwrap();
    let answer = loop {
        let next = timeout(Duration::from_secs(20), tx.next()).await;
        if next.is_err() {
            panic!("no answer from the PBX; SIPp saw:\n{}", pbx.messages());
        }
        match next.unwrap() {
            Some(ClientEvent::Final(m)) => break m,
            Some(ClientEvent::Provisional(_)) => continue,
            other => panic!("no answer from the PBX: {other:?}"),
        }
    };
    assert_eq!(answer.status(), Some(200));
    let code = pbx.wait(TOOL_LIMIT).await;
    assert_eq!(code, Some(0), "the PBX scenario failed:\n{}", pbx.errors());
    // The PBX hung up its connection: its plain RFC 3261 binding goes with
    // it (its Contact, 10.0.0.1, was never reachable), announced as such.
    let removed = timeout(Duration::from_secs(1), async {
        loop {
            let e = server.events.recv().await.unwrap();
            if matches!(e.kind, EventKind::Removed(_)) {
                return e;
            }
        }
    })
    .await
    .expect("the binding is removed within a second of the hang-up");
    assert_eq!(removed.kind, EventKind::Removed(RemoveReason::FlowClosed));
    assert_eq!(removed.binding.aor, aor);
    assert!(server.service.lookup(&aor).await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_from_a_config_dir() {
    if !require("baresip", "-h", "baresip") {
        return;
    }
    let dir = work_dir("registrar-baresip");
    // baresip 1.0 gives up on a SHA-256 challenge ("Function not
    // implemented") instead of answering the MD5 one next to it: MD5 only.
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let ua = Baresip::builder(&dir)
        .account(&format!(
            "<sip:user7@{DOMAIN}>;auth_pass=user7-pw;outbound=\"sip:{};transport=udp\";regint=600",
            server.udp
        ))
        .quit_after(40)
        .start();

    let added = timeout(Duration::from_secs(20), server.events.recv())
        .await
        .expect("baresip registers within 20 s")
        .unwrap();
    assert_eq!(added.kind, EventKind::Added);
    let targets = server
        .service
        .lookup(&Aor::parse("sip:user7@example.test").unwrap())
        .await
        .unwrap();
    assert_eq!(targets.len(), 1, "baresip's binding is in our lookup");
    let b = &targets[0].binding;
    println!(
        "baresip binding: {} from {} ({:?}), expires in {} s",
        b.contact,
        b.source,
        b.user_agent,
        b.remaining(tokio::time::Instant::now().into_std())
    );
    assert!(b.user_agent.as_deref().unwrap_or("").contains("baresip"));
    assert_eq!(
        b.source.ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    drop(ua);
    server.stop().await;
}
