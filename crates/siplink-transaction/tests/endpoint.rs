//! The async endpoint end to end over real loopback UDP and TCP sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::{
    ClientEvent, Endpoint, EndpointConfig, Error, ServerRequests, TableConfig, Timers,
    build_cancel, new_branch,
};
use siplink_transport::{Incoming, Protocol, Target, Transport, TransportConfig};
use tokio::sync::mpsc;

/// Short timers: T1 50 ms (64*T1 = 3.2 s), T4 100 ms.
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

struct Side {
    endpoint: Endpoint,
    requests: ServerRequests,
    transport: Transport,
    udp: SocketAddr,
    tcp: SocketAddr,
    strays: mpsc::UnboundedReceiver<Incoming>,
}

impl Side {
    fn target(&self, protocol: Protocol) -> Target {
        match protocol {
            Protocol::Udp => Target::new(Protocol::Udp, self.udp),
            _ => Target::new(Protocol::Tcp, self.tcp),
        }
    }

    async fn stop(self) {
        self.endpoint.shutdown().await;
        self.transport.shutdown().await;
    }
}

async fn side(table: TableConfig) -> Side {
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let udp = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tcp = transport
        .listen(Protocol::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (stray_tx, strays) = mpsc::unbounded_channel();
    let config = EndpointConfig {
        table,
        shutdown_grace: Duration::from_millis(200),
        ..EndpointConfig::default()
    }
    .with_stray_handler(move |m| {
        let _ = stray_tx.send(m);
    });
    let (endpoint, requests) = Endpoint::start(transport.clone(), incoming, config);
    Side {
        endpoint,
        requests,
        transport,
        udp,
        tcp,
        strays,
    }
}

fn request(method: Method, to: SocketAddr, call_id: &str) -> Message {
    let mut b = MessageBuilder::request(method.clone(), format!("sip:bob@{to}"))
        .header(HeaderName::Via, "SIP/2.0/UDP placeholder.invalid;rport")
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, format_args!("<sip:bob@{to}>"))
        .header(HeaderName::From, "<sip:alice@127.0.0.1>;tag=a1")
        .header(HeaderName::CallId, call_id)
        .header(HeaderName::CSeq, format_args!("1 {method}"));
    if method == Method::Invite {
        b = b.header(HeaderName::Contact, "<sip:alice@127.0.0.1>");
    }
    b.build().unwrap()
}

/// The ACK for a 2xx (RFC 3261 §13.2.2.4): a new branch, the 2xx's To.
fn ack_for_2xx(invite: &Message, ok: &Message) -> Message {
    let uri = String::from_utf8_lossy(invite.request_uri_bytes().unwrap()).into_owned();
    MessageBuilder::request(Method::Ack, &uri)
        .header(
            HeaderName::Via,
            format_args!("SIP/2.0/UDP placeholder.invalid;branch={}", new_branch()),
        )
        .header(HeaderName::MaxForwards, 70)
        .header_bytes(
            HeaderName::To,
            bytes::Bytes::copy_from_slice(ok.header(HeaderName::To).unwrap()),
        )
        .header_bytes(
            HeaderName::From,
            bytes::Bytes::copy_from_slice(invite.header(HeaderName::From).unwrap()),
        )
        .header(HeaderName::CallId, invite.call_id().unwrap())
        .header(
            HeaderName::CSeq,
            format_args!("{} ACK", invite.cseq().unwrap().seq),
        )
        .build()
        .unwrap()
}

async fn next(tx: &mut siplink_transaction::ClientTransactionHandle) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), tx.next())
        .await
        .expect("event in time")
        .expect("an event")
}

/// Reads events until the final one; returns the provisional statuses and it.
async fn until_final(
    tx: &mut siplink_transaction::ClientTransactionHandle,
) -> (Vec<u16>, ClientEvent) {
    let mut provisional = Vec::new();
    loop {
        match next(tx).await {
            ClientEvent::Provisional(m) => provisional.push(m.status().unwrap()),
            ClientEvent::Additional2xx(_) => {}
            e => return (provisional, e),
        }
    }
}

fn status(e: &ClientEvent) -> Option<u16> {
    match e {
        ClientEvent::Final(m) => m.status(),
        _ => None,
    }
}

async fn non_invite(protocol: Protocol) {
    let client = side(fast()).await;
    let mut server = side(fast()).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let mut requests = std::mem::replace(&mut server.requests, mpsc::channel(1).1);
    tokio::spawn(async move {
        while let Some(mut tx) = requests.recv().await {
            count.fetch_add(1, Ordering::SeqCst);
            // Answer late so that UDP retransmits (E at 50, 150, 350 ms).
            tokio::time::sleep(Duration::from_millis(400)).await;
            let ok = tx.request.response(200).build().unwrap();
            tx.respond(ok).await.unwrap();
        }
    });
    let req = request(Method::Options, server.udp, "nonInvite");
    let mut tx = client
        .endpoint
        .send_request(req, server.target(protocol))
        .await
        .unwrap();
    let via = tx.request().top_via().unwrap().clone();
    assert!(via.has_magic_cookie());
    assert!(via.is_transport(protocol.via_token()));
    let (_, fin) = until_final(&mut tx).await;
    assert_eq!(status(&fin), Some(200));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "one request despite retransmissions"
    );
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn non_invite_udp() {
    non_invite(Protocol::Udp).await;
}

#[tokio::test]
async fn non_invite_tcp() {
    non_invite(Protocol::Tcp).await;
}

async fn invite(protocol: Protocol) {
    let client = side(fast()).await;
    let mut server = side(fast()).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let mut requests = std::mem::replace(&mut server.requests, mpsc::channel(1).1);
    tokio::spawn(async move {
        while let Some(mut tx) = requests.recv().await {
            count.fetch_add(1, Ordering::SeqCst);
            // The transaction sends 100 Trying itself at 200 ms.
            tokio::time::sleep(Duration::from_millis(400)).await;
            let ringing = tx
                .request
                .response_with_tag(180, Some("srv"))
                .build()
                .unwrap();
            tx.respond(ringing).await.unwrap();
            let call_id = tx.request.call_id().unwrap().to_owned();
            let code = if call_id.ends_with("busy") { 486 } else { 200 };
            let fin = tx
                .request
                .response_with_tag(code, Some("srv"))
                .header(HeaderName::Contact, "<sip:bob@127.0.0.1>")
                .build()
                .unwrap();
            tx.respond(fin).await.unwrap();
        }
    });
    // 2xx: 100, 180, 200; the ACK is ours and reaches the server as stray.
    let req = request(Method::Invite, server.udp, "invite-ok");
    let mut tx = client
        .endpoint
        .send_request(req, server.target(protocol))
        .await
        .unwrap();
    let (provisional, fin) = until_final(&mut tx).await;
    // 100 Trying from the server transaction at 200 ms, then the TU's 180.
    assert_eq!(provisional.first(), Some(&100));
    assert_eq!(provisional.last(), Some(&180));
    assert_eq!(status(&fin), Some(200));
    let ClientEvent::Final(ok) = fin else {
        unreachable!()
    };
    let ack = ack_for_2xx(tx.request(), &ok);
    client
        .endpoint
        .transport()
        .send(server.target(protocol), ack)
        .await
        .unwrap();
    let mut strays = std::mem::replace(&mut server.strays, mpsc::unbounded_channel().1);
    let stray = tokio::time::timeout(Duration::from_secs(2), strays.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stray.message.method(), Some(&Method::Ack));
    assert_eq!(stray.origin.protocol, protocol);

    // Non-2xx: the transaction's own ACK is absorbed by the server transaction
    // (no stray), which then ends after T4 (UDP) or at once (TCP), not at 64*T1.
    let req = request(Method::Invite, server.udp, "invite-busy");
    let mut tx = client
        .endpoint
        .send_request(req, server.target(protocol))
        .await
        .unwrap();
    let (_, fin) = until_final(&mut tx).await;
    assert_eq!(status(&fin), Some(486));
    let t0 = Instant::now();
    loop {
        // The first INVITE's server transaction stays in Accepted for 64*T1.
        if server.endpoint.transaction_count().await.unwrap() <= 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "the ACK was absorbed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(strays.try_recv().is_err(), "no stray ACK for a non-2xx");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn invite_udp() {
    invite(Protocol::Udp).await;
}

#[tokio::test]
async fn invite_tcp() {
    invite(Protocol::Tcp).await;
}

/// A server TU that rings and waits for CANCEL; reports whether it came.
fn ringing_until_cancelled(mut requests: ServerRequests) -> mpsc::UnboundedReceiver<bool> {
    let (tx_seen, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(mut tx) = requests.recv().await {
            let tx_seen = tx_seen.clone();
            tokio::spawn(async move {
                if tx.request.method() != Some(&Method::Invite) {
                    let ok = tx.request.response(200).build().unwrap();
                    tx.respond(ok).await.unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let ringing = tx
                    .request
                    .response_with_tag(180, Some("srv"))
                    .build()
                    .unwrap();
                tx.respond(ringing).await.unwrap();
                let cancelled = tokio::time::timeout(Duration::from_secs(5), tx.cancelled())
                    .await
                    .unwrap_or(false);
                // After CANCEL the INVITE is answered 487 already.
                let late = tx.request.response(200).build().unwrap();
                assert!(tx.respond(late).await.is_err());
                let _ = tx_seen.send(cancelled);
            });
        }
    });
    seen
}

async fn cancel(protocol: Protocol) {
    let client = side(fast()).await;
    let mut server = side(fast()).await;
    let requests = std::mem::replace(&mut server.requests, mpsc::channel(1).1);
    let mut seen = ringing_until_cancelled(requests);

    // cancel() after the 180.
    let req = request(Method::Invite, server.udp, "cancel-after");
    let mut tx = client
        .endpoint
        .send_request(req, server.target(protocol))
        .await
        .unwrap();
    match next(&mut tx).await {
        ClientEvent::Provisional(m) => assert_eq!(m.status(), Some(180)),
        e => panic!("unexpected {e:?}"),
    }
    tx.cancel().await.unwrap();
    let (_, fin) = until_final(&mut tx).await;
    assert_eq!(status(&fin), Some(487));
    assert!(seen.recv().await.unwrap(), "the server TU saw the CANCEL");

    // cancel() before any response: queued until the 180 arrives.
    let req = request(Method::Invite, server.udp, "cancel-before");
    let mut tx = client
        .endpoint
        .send_request(req, server.target(protocol))
        .await
        .unwrap();
    tx.cancel().await.unwrap();
    let (provisional, fin) = until_final(&mut tx).await;
    // Over UDP a retransmitted INVITE may get the 180 again.
    assert!(!provisional.is_empty() && provisional.iter().all(|&s| s == 180));
    assert_eq!(status(&fin), Some(487));
    assert!(seen.recv().await.unwrap());

    // The CANCEL as a request of its own gets its 200.
    let req = request(Method::Invite, server.udp, "cancel-own");
    let mut tx = client
        .endpoint
        .send_request(req, server.target(protocol))
        .await
        .unwrap();
    assert!(matches!(next(&mut tx).await, ClientEvent::Provisional(_)));
    let cancel = build_cancel(tx.request()).unwrap();
    let mut ctx = client
        .endpoint
        .send_request(cancel, server.target(protocol))
        .await
        .unwrap();
    let (_, fin) = until_final(&mut ctx).await;
    assert_eq!(status(&fin), Some(200));
    let (_, fin) = until_final(&mut tx).await;
    assert_eq!(status(&fin), Some(487));
    assert!(seen.recv().await.unwrap());

    // A CANCEL matching nothing: 481.
    let lone = request(Method::Invite, server.udp, "cancel-lone");
    let mut via = lone.top_via().unwrap().clone();
    via.params.set("branch", Some(&new_branch()));
    let mut lone = lone;
    lone.replace_first_value(HeaderName::Via, via.to_string());
    let mut ctx = client
        .endpoint
        .send_request(build_cancel(&lone).unwrap(), server.target(protocol))
        .await
        .unwrap();
    let (_, fin) = until_final(&mut ctx).await;
    assert_eq!(status(&fin), Some(481));

    // cancel() of a non-INVITE is refused.
    let mut otx = client
        .endpoint
        .send_request(
            request(Method::Options, server.udp, "cancel-options"),
            server.target(protocol),
        )
        .await
        .unwrap();
    assert_eq!(otx.cancel().await, Err(Error::NotAnInvite));
    let (_, fin) = until_final(&mut otx).await;
    assert_eq!(status(&fin), Some(200));
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn cancel_udp() {
    cancel(Protocol::Udp).await;
}

#[tokio::test]
async fn cancel_tcp() {
    cancel(Protocol::Tcp).await;
}

#[tokio::test]
async fn timeout_against_a_silent_udp_socket() {
    let client = side(fast()).await;
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let req = request(Method::Options, addr, "timeout");
    let t0 = Instant::now();
    let mut tx = client
        .endpoint
        .send_request(req, Target::new(Protocol::Udp, addr))
        .await
        .unwrap();
    let counter = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut n = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(600), silent.recv_from(&mut buf)).await
        {
            n += 1;
        }
        n
    });
    let e = next(&mut tx).await;
    assert!(matches!(e, ClientEvent::Timeout), "{e:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(3200) && took < Duration::from_millis(4200),
        "timer F = 64*T1 = 3.2 s, took {took:?}"
    );
    assert!(tx.next().await.is_none(), "the transaction ended");
    // Sent at 0, 0.05, 0.15, 0.35, 0.75, then every T2 = 0.4 s until 3.2 s.
    let sent = counter.await.unwrap();
    assert!((10..=14).contains(&sent), "{sent} transmissions");
    assert_eq!(client.endpoint.transaction_count().await.unwrap(), 0);
    client.stop().await;
}

#[tokio::test]
async fn limit_answers_503_with_retry_after() {
    let client = side(fast()).await;
    let mut server = side(TableConfig {
        max_transactions: 1,
        retry_after: 7,
        ..fast()
    })
    .await;
    let mut requests = std::mem::replace(&mut server.requests, mpsc::channel(1).1);
    // First request: held unanswered by the TU, so it stays live.
    let mut held = client
        .endpoint
        .send_request(
            request(Method::Options, server.udp, "held"),
            server.target(Protocol::Udp),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), requests.recv())
        .await
        .unwrap()
        .unwrap();
    let mut tx = client
        .endpoint
        .send_request(
            request(Method::Options, server.udp, "over"),
            server.target(Protocol::Udp),
        )
        .await
        .unwrap();
    let (_, fin) = until_final(&mut tx).await;
    assert_eq!(status(&fin), Some(503));
    let ClientEvent::Final(m) = fin else {
        unreachable!()
    };
    assert_eq!(m.header(HeaderName::RetryAfter), Some(&b"7"[..]));
    // Dropping the handle unanswered answers 500.
    drop(first);
    let (_, fin) = until_final(&mut held).await;
    assert_eq!(status(&fin), Some(500));
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn limit_refuses_new_client_transactions_and_shutdown_refuses_all() {
    let client = side(TableConfig {
        max_transactions: 1,
        ..fast()
    })
    .await;
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _a = client
        .endpoint
        .send_request(
            request(Method::Options, addr, "a"),
            Target::new(Protocol::Udp, addr),
        )
        .await
        .unwrap();
    let b = client
        .endpoint
        .send_request(
            request(Method::Options, addr, "b"),
            Target::new(Protocol::Udp, addr),
        )
        .await;
    assert!(matches!(b, Err(Error::Overloaded { limit: 1 })), "{b:?}");
    client.endpoint.shutdown().await;
    let c = client
        .endpoint
        .send_request(
            request(Method::Options, addr, "c"),
            Target::new(Protocol::Udp, addr),
        )
        .await;
    assert_eq!(c.err(), Some(Error::EndpointClosed));
    client.transport.shutdown().await;
}

/// Timers E and F of a client non-INVITE transaction on tokio's paused clock,
/// through the endpoint's [`Clock`](siplink_transaction::Clock): time only
/// moves by `tokio::time::advance` (and the runtime's auto-advance while the
/// test waits on the silent socket), never by waiting. Default timers: E at
/// 0.5, 1.5, 3.5, 7.5 s, then every T2 = 4 s; F (the timeout) at 64*T1 = 32 s.
#[tokio::test(start_paused = true)]
async fn paused_clock_fires_timer_e_and_f_by_advance() {
    let real = Instant::now();
    let client = side(TableConfig::default()).await;
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let clock = siplink_transaction::Clock::new();
    let t0 = clock.now();
    let mut tx = client
        .endpoint
        .send_request(
            request(Method::Options, addr, "paused"),
            Target::new(Protocol::Udp, addr),
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    silent.recv_from(&mut buf).await.unwrap();
    assert_eq!(clock.now() - t0, Duration::ZERO, "the first send at once");
    // Just before timer E: nothing was retransmitted.
    tokio::time::advance(Duration::from_millis(499)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        silent.try_recv_from(&mut buf).is_err(),
        "nothing before 0.5 s"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let mut at = Vec::new();
    for _ in 0..10 {
        silent.recv_from(&mut buf).await.unwrap();
        at.push((clock.now() - t0).as_millis());
    }
    assert_eq!(
        at,
        [
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    let e = next(&mut tx).await;
    assert!(matches!(e, ClientEvent::Timeout), "{e:?}");
    assert_eq!(clock.now() - t0, Duration::from_secs(32), "timer F");
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "virtual time, not waiting"
    );
    client.stop().await;
}

/// A raw UDP peer's request (no endpoint on that side: the bytes are ours).
fn raw_request(
    method: &str,
    cseq_method: &str,
    from: SocketAddr,
    branch: &str,
    call_id: &str,
) -> String {
    format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         From: <sip:alice@127.0.0.1>;tag=raw1\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {cseq_method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

async fn recv_response(sock: &tokio::net::UdpSocket, wait: Duration) -> Option<Message> {
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(wait, sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).expect("a SIP response"))
}

fn to_tag(m: &Message) -> String {
    m.to().unwrap().tag().unwrap().to_owned()
}

/// Past the live-transaction limit a new request gets 503 + Retry-After
/// statelessly (the same To tag for its retransmission, no transaction); a
/// malformed request gets 400 the same way; the ACK for a stateless 503 to an
/// INVITE is absorbed (not a stray).
#[tokio::test]
async fn stateless_503_past_the_limit_and_400_for_malformed_over_udp() {
    let mut server = side(TableConfig {
        max_transactions: 1,
        retry_after: 7,
        ..fast()
    })
    .await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.connect(server.udp).await.unwrap();
    let me = peer.local_addr().unwrap();
    // The one transaction allowed, held by the TU.
    let send = |text: String| {
        let peer = &peer;
        async move { peer.send(text.as_bytes()).await.unwrap() }
    };
    send(raw_request("OPTIONS", "OPTIONS", me, "z9hG4bKheld", "held")).await;
    let held = tokio::time::timeout(Duration::from_secs(2), server.requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.endpoint.transaction_count().await.unwrap(), 1);

    let mut tags = Vec::new();
    for _ in 0..2 {
        send(raw_request(
            "REGISTER",
            "REGISTER",
            me,
            "z9hG4bKover",
            "over",
        ))
        .await;
        let r = recv_response(&peer, Duration::from_secs(2))
            .await
            .expect("503");
        assert_eq!(r.status(), Some(503));
        assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"7"[..]));
        assert_eq!(r.call_id().unwrap(), "over");
        tags.push(to_tag(&r));
    }
    assert_eq!(tags[0], tags[1], "the retransmission gets the same answer");
    assert!(tags[0].starts_with("sl"));
    assert_eq!(server.endpoint.transaction_count().await.unwrap(), 1);

    // An INVITE past the limit: 503; its ACK (same branch, the 503's To) is absorbed.
    send(raw_request("INVITE", "INVITE", me, "z9hG4bKinv", "inv")).await;
    let r = recv_response(&peer, Duration::from_secs(2))
        .await
        .expect("503");
    assert_eq!(r.status(), Some(503));
    let ack = format!(
        "ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinv;rport\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@127.0.0.1>;tag={}\r\n\
         From: <sip:alice@127.0.0.1>;tag=raw1\r\nCall-ID: inv\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        to_tag(&r)
    );
    send(ack).await;

    // Malformed (CSeq of another method): 400, twice the same, no transaction.
    // (The transport's inbound check answers it before the endpoint sees it;
    // the table's `Received::Malformed` is the same check for other drivers.)
    let mut answers = Vec::new();
    for _ in 0..2 {
        send(raw_request("REGISTER", "INVITE", me, "z9hG4bKbad", "bad")).await;
        let r = recv_response(&peer, Duration::from_secs(2))
            .await
            .expect("400");
        assert_eq!(r.status(), Some(400));
        assert_eq!(r.call_id().unwrap(), "bad");
        answers.push(r.to_bytes());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(server.endpoint.transaction_count().await.unwrap(), 1);
    // The ACK did not come out as a stray, and nothing else answered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.strays.try_recv().is_err(), "the ACK was absorbed");
    assert!(
        recv_response(&peer, Duration::from_millis(50))
            .await
            .is_none()
    );
    drop(held);
    server.stop().await;
}

/// A full server queue: a new request gets 503 statelessly, before any
/// transaction exists; a retransmission of the queued request is still
/// matched to its transaction (absorbed, no 503).
#[tokio::test]
async fn stateless_503_when_the_server_queue_is_full() {
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let udp = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = EndpointConfig {
        table: TableConfig {
            retry_after: 3,
            ..fast()
        },
        server_queue: 1,
        ..EndpointConfig::default()
    };
    let (endpoint, mut requests) = Endpoint::start(transport.clone(), incoming, config);
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.connect(udp).await.unwrap();
    let me = peer.local_addr().unwrap();
    let queued = raw_request("OPTIONS", "OPTIONS", me, "z9hG4bKq1", "queued");
    peer.send(queued.as_bytes()).await.unwrap();
    // Wait until the queued request's transaction exists (the queue is now full).
    for _ in 0..100 {
        if endpoint.transaction_count().await.unwrap() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(endpoint.transaction_count().await.unwrap(), 1);
    for _ in 0..2 {
        peer.send(raw_request("OPTIONS", "OPTIONS", me, "z9hG4bKq2", "refused").as_bytes())
            .await
            .unwrap();
        let r = recv_response(&peer, Duration::from_secs(2))
            .await
            .expect("503");
        assert_eq!(r.status(), Some(503));
        assert_eq!(r.call_id().unwrap(), "refused");
        assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"3"[..]));
    }
    assert_eq!(
        endpoint.transaction_count().await.unwrap(),
        1,
        "no transaction for the 503s"
    );
    // The queued request retransmitted: its transaction absorbs it (Trying).
    peer.send(queued.as_bytes()).await.unwrap();
    assert!(
        recv_response(&peer, Duration::from_millis(200))
            .await
            .is_none()
    );
    // The TU takes it and answers: 200 on its transaction.
    let mut tx = requests.recv().await.unwrap();
    assert_eq!(tx.request.call_id().unwrap(), "queued");
    let ok = tx.request.response(200).build().unwrap();
    tx.respond(ok).await.unwrap();
    let r = recv_response(&peer, Duration::from_secs(2))
        .await
        .expect("200");
    assert_eq!(r.status(), Some(200));
    endpoint.shutdown().await;
    transport.shutdown().await;
}

/// `ServerTransactionHandle::respond_stateless`: the challenge goes out, the
/// transaction is gone at once, and the retransmitted request reaches the TU
/// again (to be challenged the same way: same To tag).
#[tokio::test]
async fn respond_stateless_forgets_the_transaction() {
    let mut server = side(fast()).await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.connect(server.udp).await.unwrap();
    let me = peer.local_addr().unwrap();
    let register = raw_request("REGISTER", "REGISTER", me, "z9hG4bKch", "challenge");
    let mut tags = Vec::new();
    for _ in 0..2 {
        peer.send(register.as_bytes()).await.unwrap();
        let mut tx = tokio::time::timeout(Duration::from_secs(2), server.requests.recv())
            .await
            .unwrap()
            .unwrap();
        let r401 = tx
            .request
            .response(401)
            .header(
                HeaderName::WwwAuthenticate,
                "Digest realm=\"x\", nonce=\"n\"",
            )
            .build()
            .unwrap();
        tx.respond_stateless(r401).await.unwrap();
        let r = recv_response(&peer, Duration::from_secs(2))
            .await
            .expect("401");
        assert_eq!(r.status(), Some(401));
        tags.push(to_tag(&r));
        assert_eq!(server.endpoint.transaction_count().await.unwrap(), 0);
        // Refused once the transaction is gone.
        let again = tx.request.response(401).build().unwrap();
        assert!(tx.respond(again).await.is_err());
    }
    assert_eq!(tags[0], tags[1]);
    let expected = server
        .endpoint
        .stateless()
        .to_tag(&Message::parse(bytes::Bytes::from(register)).unwrap());
    assert_eq!(tags[0], expected);
    server.stop().await;
}
