//! The run-to-completion runtime over real loopback UDP sockets, both ways of
//! sharing the address, a deferred answer, stateless answers, and its timers
//! in paused time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::runtime::{Reply, Request, Runtime, RuntimeConfig, Service};
use siplink_transaction::{TableConfig, Timers};
use siplink_transport::{Incoming, Transport, TransportConfig, UdpSharing};
use tokio::net::UdpSocket;

/// Answers by method: OPTIONS 200, REGISTER 401 statelessly, INVITE 486,
/// MESSAGE 202 from another task (deferred); counts the calls.
#[derive(Default)]
struct Answers {
    calls: AtomicUsize,
}

impl Service for Answers {
    /// A scanner's User-Agent is dropped; PUBLISH is refused 503 here,
    /// before any transaction exists.
    fn screen(&self, incoming: Incoming, reply: &Reply<'_>) -> Option<Incoming> {
        let m = &incoming.message;
        if m.header(HeaderName::UserAgent)
            .is_some_and(|ua| ua.starts_with(b"friendly-scanner"))
        {
            return None;
        }
        if m.method() == Some(&Method::Publish) {
            assert!(reply.send_response(&m.response(503).build().unwrap()));
            return None;
        }
        Some(incoming)
    }

    fn handle_request(&self, request: Request<'_>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let m = request.message().clone();
        match m.method() {
            Some(Method::Options) => {
                let r = m
                    .response(200)
                    .header(HeaderName::Allow, "OPTIONS")
                    .build()
                    .unwrap();
                request.respond(r).unwrap();
            }
            Some(Method::Register) => {
                let r = m
                    .response(401)
                    .header(
                        HeaderName::WwwAuthenticate,
                        "Digest realm=\"t\", nonce=\"n\"",
                    )
                    .build()
                    .unwrap();
                request.respond_stateless(r).unwrap();
            }
            Some(Method::Invite) => request.respond(m.response(486).build().unwrap()).unwrap(),
            Some(Method::Message) => {
                let later = request.defer();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let r = later.message().response(202).build().unwrap();
                    later.respond(r).unwrap();
                });
            }
            // Anything else is dropped unanswered: the runtime answers 500.
            _ => {}
        }
    }
}

fn fast() -> TableConfig {
    TableConfig {
        timers: Timers {
            t1: Duration::from_millis(50),
            t2: Duration::from_millis(400),
            t4: Duration::from_millis(100),
        },
        ..TableConfig::default()
    }
}

async fn start(sharing: UdpSharing, workers: usize) -> (Runtime, Arc<Answers>, Transport) {
    let (transport, _streams) = Transport::new(TransportConfig::default());
    let service = Arc::new(Answers::default());
    let rt = runtime_on(&transport, sharing, workers, service.clone());
    (rt, service, transport)
}

/// A runtime on loopback for `transport` with the tests' short timers and 8
/// buckets.
fn runtime_on(
    transport: &Transport,
    sharing: UdpSharing,
    workers: usize,
    service: Arc<dyn Service>,
) -> Runtime {
    let config = RuntimeConfig {
        workers,
        sharing,
        buckets: 8,
        table: fast(),
        ..RuntimeConfig::default()
    };
    Runtime::start(transport, "127.0.0.1:0".parse().unwrap(), config, service).unwrap()
}

fn request(method: Method, from: SocketAddr, branch: &str) -> Message {
    MessageBuilder::request(method.clone(), "sip:bob@example.test")
        .header(
            HeaderName::Via,
            format!("SIP/2.0/UDP {from};rport;branch=z9hG4bK{branch}"),
        )
        .header(HeaderName::From, "<sip:alice@example.test>;tag=a1")
        .header(HeaderName::To, "<sip:bob@example.test>")
        .header(HeaderName::CallId, format!("{branch}@test"))
        .header(HeaderName::CSeq, format!("1 {method}"))
        .header(HeaderName::MaxForwards, 70)
        .build()
        .unwrap()
}

async fn recv(sock: &UdpSocket, within: Duration) -> Option<Message> {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(within, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).ok()
}

async fn phone() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

async fn answers_and_absorbs_retransmissions(sharing: UdpSharing) {
    let (rt, service, _t) = start(sharing, 2).await;
    let (sock, me) = phone().await;
    let options = request(Method::Options, me, "opt1");
    sock.send_to(&options.to_bytes(), rt.local_addr())
        .await
        .unwrap();
    let r = recv(&sock, Duration::from_secs(2))
        .await
        .expect("an answer");
    assert_eq!(r.status(), Some(200));
    // The rport was filled with our port and received with our address.
    let via = r.top_via().unwrap().to_string();
    assert!(via.contains(&format!("rport={}", me.port())), "{via}");
    // A retransmission is answered from the completed transaction: the
    // service is not asked again, the bytes are the same.
    sock.send_to(&options.to_bytes(), rt.local_addr())
        .await
        .unwrap();
    let again = recv(&sock, Duration::from_secs(2))
        .await
        .expect("the same answer");
    assert_eq!(again.to_bytes(), r.to_bytes());
    assert_eq!(service.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        rt.transaction_count(),
        1,
        "a completed transaction waits out timer J"
    );

    // Many phones, many transactions, spread over buckets and workers.
    let mut phones = Vec::new();
    for i in 0..20 {
        let (s, a) = phone().await;
        s.send_to(
            &request(Method::Options, a, &format!("many{i}")).to_bytes(),
            rt.local_addr(),
        )
        .await
        .unwrap();
        phones.push(s);
    }
    for s in &phones {
        assert_eq!(
            recv(s, Duration::from_secs(2)).await.unwrap().status(),
            Some(200)
        );
    }
    assert_eq!(service.calls.load(Ordering::SeqCst), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_socket_answers_and_absorbs_retransmissions() {
    answers_and_absorbs_retransmissions(UdpSharing::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_sockets_answer_and_absorb_retransmissions() {
    answers_and_absorbs_retransmissions(UdpSharing::ReusePort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_answer_keeps_nothing_and_answers_again() {
    let (rt, service, _t) = start(UdpSharing::Shared, 2).await;
    let (sock, me) = phone().await;
    let reg = request(Method::Register, me, "reg1");
    sock.send_to(&reg.to_bytes(), rt.local_addr())
        .await
        .unwrap();
    let a = recv(&sock, Duration::from_secs(2)).await.unwrap();
    assert_eq!(a.status(), Some(401));
    assert_eq!(rt.transaction_count(), 0);
    sock.send_to(&reg.to_bytes(), rt.local_addr())
        .await
        .unwrap();
    let b = recv(&sock, Duration::from_secs(2)).await.unwrap();
    assert_eq!(b.status(), Some(401));
    // The stateless To tag is the same for a retransmission.
    assert_eq!(a.to().unwrap().tag(), b.to().unwrap().tag());
    assert!(a.to().unwrap().tag().unwrap().starts_with("sl"));
    assert_eq!(service.calls.load(Ordering::SeqCst), 2);
    assert_eq!(rt.transaction_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_and_unanswered_requests() {
    let (rt, _service, _t) = start(UdpSharing::ReusePort, 2).await;
    let (sock, me) = phone().await;
    sock.send_to(
        &request(Method::Message, me, "msg1").to_bytes(),
        rt.local_addr(),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&sock, Duration::from_secs(2)).await.unwrap().status(),
        Some(202)
    );
    sock.send_to(
        &request(Method::Info, me, "info1").to_bytes(),
        rt.local_addr(),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&sock, Duration::from_secs(2)).await.unwrap().status(),
        Some(500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_garbage_datagrams() {
    let (rt, service, _t) = start(UdpSharing::Shared, 2).await;
    let (sock, me) = phone().await;
    // Garbage and keepalives: nothing comes back, the runtime keeps serving.
    sock.send_to(b"\r\n\r\n", rt.local_addr()).await.unwrap();
    sock.send_to(b"NOT SIP AT ALL", rt.local_addr())
        .await
        .unwrap();
    // No CSeq: 400 without a transaction.
    let bad = format!(
        "OPTIONS sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbad1\r\n\
         From: <sip:a@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: bad1\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(bad.as_bytes(), rt.local_addr()).await.unwrap();
    let r = recv(&sock, Duration::from_secs(2)).await.unwrap();
    assert_eq!(r.status(), Some(400));
    assert_eq!(service.calls.load(Ordering::SeqCst), 0);
    sock.send_to(
        &request(Method::Options, me, "after").to_bytes(),
        rt.local_addr(),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&sock, Duration::from_secs(2)).await.unwrap().status(),
        Some(200)
    );
}

/// Timer G retransmits a non-2xx final to an INVITE until the ACK comes
/// (RFC 3261 §17.2.1); the ACK ends the retransmissions; timer I frees the
/// transaction. Paused time: the clock jumps to each timer while all wait.
#[tokio::test(start_paused = true)]
async fn invite_final_retransmitted_until_ack_in_paused_time() {
    let (rt, _service, _t) = start(UdpSharing::Shared, 1).await;
    let (sock, me) = phone().await;
    let invite = request(Method::Invite, me, "inv1");
    sock.send_to(&invite.to_bytes(), rt.local_addr())
        .await
        .unwrap();
    let first = recv(&sock, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.status(), Some(486));
    let t0 = tokio::time::Instant::now();
    let again = recv(&sock, Duration::from_secs(1)).await.expect("timer G");
    assert_eq!(again.to_bytes(), first.to_bytes());
    // T1 = 50 ms: the first retransmission comes 50 ms after the answer.
    let waited = t0.elapsed();
    assert!(waited <= Duration::from_millis(60), "{waited:?}");
    // ACK the final response (same branch, the To tag of the 486).
    let ack = MessageBuilder::request(Method::Ack, "sip:bob@example.test")
        .header(
            HeaderName::Via,
            format!("SIP/2.0/UDP {me};rport;branch=z9hG4bKinv1"),
        )
        .header(HeaderName::From, "<sip:alice@example.test>;tag=a1")
        .header(
            HeaderName::To,
            format!(
                "<sip:bob@example.test>;tag={}",
                first.to().unwrap().tag().unwrap()
            ),
        )
        .header(HeaderName::CallId, "inv1@test")
        .header(HeaderName::CSeq, "1 ACK")
        .header(HeaderName::MaxForwards, 70)
        .build()
        .unwrap();
    // Drain what timer G already queued, then ACK.
    while recv(&sock, Duration::from_millis(1)).await.is_some() {}
    sock.send_to(&ack.to_bytes(), rt.local_addr())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    while recv(&sock, Duration::from_millis(1)).await.is_some() {}
    assert!(
        recv(&sock, Duration::from_secs(2)).await.is_none(),
        "no retransmission after the ACK"
    );
    assert_eq!(
        rt.transaction_count(),
        0,
        "timer I (T4) freed the transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screened_messages_never_reach_a_transaction() {
    let (rt, service, _t) = start(UdpSharing::Shared, 2).await;
    let (sock, me) = phone().await;
    let mut scan = request(Method::Options, me, "scan1").to_bytes().to_vec();
    let at = scan.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    scan.splice(at..at, b"User-Agent: friendly-scanner\r\n".iter().copied());
    sock.send_to(&scan, rt.local_addr()).await.unwrap();
    assert!(
        recv(&sock, Duration::from_millis(300)).await.is_none(),
        "dropped"
    );
    sock.send_to(
        &request(Method::Publish, me, "pub1").to_bytes(),
        rt.local_addr(),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&sock, Duration::from_secs(2)).await.unwrap().status(),
        Some(503)
    );
    assert_eq!(service.calls.load(Ordering::SeqCst), 0);
    assert_eq!(rt.transaction_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_threads_answer_and_absorb_retransmissions() {
    answers_and_absorbs_retransmissions(UdpSharing::Threads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_threads_stop_with_the_runtime_and_the_transport_still_sends() {
    let (rt, service, transport) = start(UdpSharing::Threads, 2).await;
    let addr = rt.local_addr();
    // The transport sends from the blocking socket too (the runtime's
    // address is the source), e.g. a proxy's client transactions.
    let (sock, me) = phone().await;
    let sent = transport
        .send(
            siplink_transport::Target::new(siplink_transport::Protocol::Udp, me),
            request(Method::Options, addr, "out1"),
        )
        .await
        .unwrap();
    assert_eq!(sent.local, addr);
    let mut buf = vec![0u8; 65_536];
    let (_, from) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, addr);
    // Once the runtime and the transport are gone, the reader threads see
    // the stop flag within their receive timeout and let the socket go:
    // the address can be bound again.
    drop(rt);
    transport.shutdown().await;
    drop(transport);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut rebound = None;
    while rebound.is_none() && std::time::Instant::now() < deadline {
        rebound = std::net::UdpSocket::bind(addr).ok();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rebound.is_some(), "the reader threads kept {addr} open");
    assert_eq!(service.calls.load(Ordering::SeqCst), 0);
}

/// Reads one message from a TCP connection (the answers here have no body).
async fn read_tcp(conn: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> Option<Message> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = pending.split_off(end + 4);
            let one = std::mem::replace(pending, rest);
            return Message::parse(bytes::Bytes::from(one)).ok();
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_messages_run_to_completion_in_their_task() {
    use tokio::io::AsyncWriteExt;
    let (transport, mut inbound) = Transport::new(TransportConfig::default());
    let service = Arc::new(Answers::default());
    let rt = runtime_on(&transport, UdpSharing::Shared, 2, service.clone());
    assert!(rt.take_streams(&transport));
    assert!(!rt.take_streams(&transport), "once");
    let tcp = transport
        .listen(
            siplink_transport::Protocol::Tcp,
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let me = conn.local_addr().unwrap();
    let over_tcp = |method: Method, branch: &str| {
        let text = request(method, me, branch).to_bytes().to_vec();
        String::from_utf8(text)
            .unwrap()
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
    };
    let mut pending = Vec::new();
    for (method, branch, status) in [
        (Method::Options, "t-opt", 200),
        (Method::Invite, "t-inv", 486),
        (Method::Register, "t-reg", 401),
        (Method::Publish, "t-pub", 503),
        (Method::Message, "t-msg", 202),
        (Method::Info, "t-info", 500),
    ] {
        conn.write_all(over_tcp(method.clone(), branch).as_bytes())
            .await
            .unwrap();
        let r = read_tcp(&mut conn, &mut pending)
            .await
            .unwrap_or_else(|| panic!("an answer to {method} over the connection"));
        assert_eq!(r.status(), Some(status), "{method}");
        assert!(
            r.top_via().unwrap().to_string().contains(branch),
            "{method}"
        );
    }
    // PUBLISH was screened: the service saw the other five.
    assert_eq!(service.calls.load(Ordering::SeqCst), 5);
    // Over a reliable transport a completed non-INVITE transaction ends at
    // once (timer J/K are zero); the rejected INVITE waits for its ACK.
    assert!(rt.transaction_count() <= 1, "{}", rt.transaction_count());
    assert!(
        inbound.try_recv().is_err(),
        "nothing went through the transport's inbound queue"
    );
    // Without the runtime, the connection's messages go to the queue again.
    drop(rt);
    conn.write_all(over_tcp(Method::Options, "t-after").as_bytes())
        .await
        .unwrap();
    let queued = tokio::time::timeout(Duration::from_secs(2), inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.message.method(), Some(&Method::Options));
    assert!(queued.origin.flow.is_some());
}

/// Records what happens to the client transactions it starts.
#[derive(Default)]
struct Client {
    events: std::sync::Mutex<Vec<(siplink_transaction::TransactionId, String)>>,
    notify: tokio::sync::Notify,
}

impl Service for Client {
    fn handle_request(&self, _request: Request<'_>) {}

    fn handle_client_event(
        &self,
        id: siplink_transaction::TransactionId,
        event: siplink_transaction::TuEvent,
    ) {
        use siplink_transaction::TuEvent;
        let what = match &event {
            TuEvent::Provisional(m) => format!("provisional {}", m.status().unwrap()),
            TuEvent::Final(m) => format!("final {}", m.status().unwrap()),
            TuEvent::Additional2xx(_) => "additional 2xx".into(),
            TuEvent::Timeout => "timeout".into(),
            TuEvent::TransportError => "transport error".into(),
            other => format!("{other:?}"),
        };
        self.events.lock().unwrap().push((id, what));
        self.notify.notify_one();
    }
}

impl Client {
    async fn wait_for(&self, id: siplink_transaction::TransactionId, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.notify.notified();
            if let Some((_, e)) = self.events.lock().unwrap().iter().find(|(i, _)| *i == id) {
                return e.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return "nothing".into();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_transactions_run_to_completion_over_udp_and_a_connection() {
    use siplink_transaction::runtime::ClientDest;
    // B answers (Answers: OPTIONS 200, INVITE 486, ...), over UDP and TCP.
    let (server_rt, _answers, server_transport) = start(UdpSharing::Threads, 2).await;
    assert!(server_rt.take_streams(&server_transport));
    let server_tcp = server_transport
        .listen(
            siplink_transport::Protocol::Tcp,
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
    // A sends through its own runtime.
    let (transport, _queue) = Transport::new(TransportConfig::default());
    let client = Arc::new(Client::default());
    let rt = runtime_on(&transport, UdpSharing::Shared, 2, client.clone());
    assert!(rt.take_streams(&transport));
    let h = rt.handle();
    let to = ClientDest::Udp(server_rt.local_addr());

    let id = h
        .send_request(request(Method::Options, rt.local_addr(), "c-opt"), to)
        .unwrap();
    assert_eq!(
        client.wait_for(id, Duration::from_secs(2)).await,
        "final 200"
    );
    // An INVITE's 486: the client transaction ACKs it (the server's
    // transaction ends at the ACK, not at timer H).
    let id = h
        .send_request(request(Method::Invite, rt.local_addr(), "c-inv"), to)
        .unwrap();
    assert_eq!(
        client.wait_for(id, Duration::from_secs(2)).await,
        "final 486"
    );
    // A request without an RFC 3261 branch gets one.
    let mut old = request(Method::Options, rt.local_addr(), "x");
    old.replace_first_value(HeaderName::Via, format!("SIP/2.0/UDP {}", rt.local_addr()));
    let id = h.send_request(old, to).unwrap();
    assert_eq!(
        client.wait_for(id, Duration::from_secs(2)).await,
        "final 200"
    );
    assert!(
        h.send_request(request(Method::Ack, rt.local_addr(), "c-ack"), to)
            .is_err(),
        "an ACK is no transaction"
    );

    // Nobody answers: timer F after 64·T1 (T1 = 50 ms here) of retransmissions.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let id = h
        .send_request(
            request(Method::Options, rt.local_addr(), "c-silent"),
            ClientDest::Udp(silent.local_addr().unwrap()),
        )
        .unwrap();
    assert_eq!(client.wait_for(id, Duration::from_secs(6)).await, "timeout");
    silent.set_nonblocking(true).unwrap();
    let mut copies = 0;
    let mut buf = [0u8; 4096];
    while silent.recv_from(&mut buf).is_ok() {
        copies += 1;
    }
    assert!(copies >= 7, "retransmitted by the timers: {copies} copies");

    // Over a connection: the response comes back in the connection's task.
    let sent = transport
        .send_bytes(
            siplink_transport::Target::new(siplink_transport::Protocol::Tcp, server_tcp),
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    let flow = sent.flow.unwrap();
    let id = h
        .send_request(
            request(Method::Options, rt.local_addr(), "c-tcp"),
            ClientDest::Flow(flow),
        )
        .unwrap();
    assert_eq!(
        client.wait_for(id, Duration::from_secs(2)).await,
        "final 200"
    );
    assert!(
        h.send_request(
            request(Method::Options, rt.local_addr(), "c-gone"),
            ClientDest::Flow(siplink_transport::FlowId::from_raw(999_999)),
        )
        .is_err(),
        "a closed flow is refused at once"
    );
}

/// Relays like a proxy: an INVITE is ringing (two 180s through the open
/// transaction), then answered; a 200 is no provisional response.
struct Ringing;

impl Service for Ringing {
    fn handle_request(&self, request: Request<'_>) {
        let mut later = request.defer();
        tokio::spawn(async move {
            let m = later.message().clone();
            for _ in 0..2 {
                let ringing = m.response_with_tag(180, Some("r1")).build().unwrap();
                later.respond_provisional(ringing).unwrap();
            }
            let ok = m.response_with_tag(200, Some("r1")).build().unwrap();
            assert!(later.respond_provisional(ok.clone()).is_err());
            later.respond(ok).unwrap();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_invite_gets_provisional_responses_then_its_final() {
    let (transport, _in) = Transport::new(TransportConfig::default());
    let rt = runtime_on(&transport, UdpSharing::ReusePort, 2, Arc::new(Ringing));
    let (sock, me) = phone().await;
    sock.send_to(
        &request(Method::Invite, me, "ring1").to_bytes(),
        rt.local_addr(),
    )
    .await
    .unwrap();
    let mut statuses = Vec::new();
    while let Some(m) = recv(&sock, Duration::from_secs(2)).await {
        statuses.push(m.status().unwrap());
        if statuses.last() == Some(&200) {
            break;
        }
    }
    assert_eq!(statuses, vec![180, 180, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_stateless_stamps_a_requests_via_and_sends_a_response_unchanged() {
    let (transport, _in) = Transport::new(TransportConfig::default());
    let rt = runtime_on(&transport, UdpSharing::ReusePort, 2, Arc::new(Ringing));
    let (sock, me) = phone().await;
    let h = rt.handle();
    let mut ack = request(Method::Ack, me, "ack1");
    ack.prepend_header(
        HeaderName::Via,
        "SIP/2.0/UDP 0.0.0.0:0;branch=z9hG4bKproxyack1;rport",
    );
    h.send_stateless(ack, siplink_transaction::runtime::ClientDest::Udp(me))
        .unwrap();
    let got = recv(&sock, Duration::from_secs(2)).await.expect("the ACK");
    assert_eq!(got.method(), Some(&Method::Ack));
    let via = got.top_via().unwrap();
    assert_eq!(via.branch(), Some("z9hG4bKproxyack1"));
    assert!(
        via.to_string().contains(&rt.local_addr().to_string()),
        "{via}"
    );
    let ok = request(Method::Invite, me, "inv9")
        .response_with_tag(200, Some("t9"))
        .build()
        .unwrap();
    h.send_stateless(
        ok.clone(),
        siplink_transaction::runtime::ClientDest::Udp(me),
    )
    .unwrap();
    let got = recv(&sock, Duration::from_secs(2)).await.expect("the 200");
    assert_eq!(got.to_bytes(), ok.to_bytes());
}
