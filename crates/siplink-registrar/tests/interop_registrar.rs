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
//! set (CI), which makes a missing tool a failure. Every child process is
//! killed when its guard drops, even on failure; files go to a temporary
//! directory; ports are chosen by the OS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siplink_auth::{Algorithm, DigestServer, ServerConfig, StoredSecret};
use siplink_message::{HeaderName, MessageBuilder, Method};
use siplink_registrar::{
    Aor, Authenticator, BindingEvent, EventKind, FloodConfig, InMemoryStore, LocationStore, Reach,
    Registrar, RegistrarConfig, RegistrarService, RemoveReason, ServiceConfig,
};
use siplink_transaction::{ClientEvent, Endpoint, EndpointConfig};
use siplink_transport::{Protocol, Transport, TransportConfig};
use tokio::sync::broadcast;
use tokio::time::timeout;

const DOMAIN: &str = "example.test";
/// Users in `tests/interop/users.csv` (`userN` / `userN-pw`).
const USERS: usize = 50;
/// Hard limit for one tool run.
const TOOL_LIMIT: Duration = Duration::from_secs(45);

/// Kills (and reaps) the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    /// Waits for the exit code, killing the child after `TOOL_LIMIT`.
    async fn wait(&mut self) -> Option<i32> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                t0.elapsed() < TOOL_LIMIT,
                "the tool did not exit within {TOOL_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether `tool` can run; a failure when `SIPLINK_INTEROP` is set.
fn available(tool: &str, arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("SIPLINK_INTEROP").is_none(),
            "SIPLINK_INTEROP is set but {tool} is not installed"
        );
        println!("SKIPPED: {tool} not installed");
    }
    found
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let interop = interop_dir();
    let child = Command::new("sipp")
        .current_dir(dir)
        .arg(server.to_string())
        .arg("-sf")
        .arg(interop.join(scenario))
        .arg("-inf")
        .arg(interop.join(csv))
        .args(["-key", "domain", DOMAIN])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args([
            "-t",
            if protocol == Protocol::Udp {
                "u1"
            } else {
                "t1"
            },
        ])
        .args(["-m", &calls.to_string(), "-r", "25", "-l", "25"])
        .args(["-timeout", "40s", "-timeout_error", "-nostdin"])
        .args(["-trace_err", "-error_file", "errors.log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts");
    let mut guard = Guard(child);
    let code = guard.wait().await;
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    (code, errors)
}

async fn register_refresh_unregister(protocol: Protocol) {
    if !available("sipp", "-v") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let target = if protocol == Protocol::Udp {
        server.udp
    } else {
        server.tcp
    };
    let (code, errors) = sipp(
        dir.path(),
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
    if !available("sipp", "-v") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let (code, errors) = sipp(
        dir.path(),
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
    if !available("sipp", "-v") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let interop = interop_dir();
    let child = Command::new("sipp")
        .current_dir(dir.path())
        .arg(server.tcp.to_string())
        .arg("-sf")
        .arg(interop.join("pbx_tcp.xml"))
        .arg("-inf")
        .arg(interop.join("pbx.csv"))
        .args(["-key", "domain", DOMAIN])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args([
            "-t",
            "t1",
            "-m",
            "1",
            "-trace_msg",
            "-message_file",
            "messages.log",
        ])
        .args(["-timeout", "40s", "-timeout_error", "-nostdin"])
        .args(["-trace_err", "-error_file", "errors.log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts");
    let mut pbx = Guard(child);

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
            let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap_or_default();
            panic!("no answer from the PBX; SIPp saw:\n{log}");
        }
        match next.unwrap() {
            Some(ClientEvent::Final(m)) => break m,
            Some(ClientEvent::Provisional(_)) => continue,
            other => panic!("no answer from the PBX: {other:?}"),
        }
    };
    assert_eq!(answer.status(), Some(200));
    let code = pbx.wait().await;
    let errors = std::fs::read_to_string(dir.path().join("errors.log")).unwrap_or_default();
    assert_eq!(code, Some(0), "the PBX scenario failed:\n{errors}");
    // The PBX hung up its connection: the plain RFC 3261 binding stays, now
    // reached through its Contact.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = server.service.lookup(&aor).await.unwrap();
    assert!(matches!(after[0].reach, Reach::Contact { .. }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_from_a_config_dir() {
    if !available("baresip", "-h") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // baresip 1.0 gives up on a SHA-256 challenge ("Function not
    // implemented") instead of answering the MD5 one next to it: MD5 only.
    let mut server = Server::start(vec![Algorithm::Md5]).await;
    let sip_port = free_udp_port();
    std::fs::write(
        dir.path().join("config"),
        format!(
            "sip_listen\t\t127.0.0.1:{sip_port}\n\
             sip_transports\t\tudp\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\taccount.so\n\
             audio_player\t\tnone\n\
             audio_source\t\tnone\n\
             audio_alert\t\tnone\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!(
            "<sip:user7@{DOMAIN}>;auth_pass=user7-pw;outbound=\"sip:{};transport=udp\";regint=600\n",
            server.udp
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("contacts"), "").unwrap();
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .args(["-t", "40"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baresip starts");
    let guard = Guard(child);

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
    drop(guard);
    server.stop().await;
}
