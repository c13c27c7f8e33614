//! Loopback tests for every transport, IPv4 and IPv6: requests and responses
//! both ways, rport routing, replies over the flow.

mod support;

use std::net::SocketAddr;

use siplink_message::Message;
use siplink_transport::{Destination, Error, FlowEventKind, Origin, Protocol, Target};
use support::*;

/// For every protocol and loopback family: the client sends a request to the
/// server's listener; the server sees the origin and the stamped Via, answers
/// with `send_response`, and the answer arrives over the same flow. Then the
/// server sends a request the other way (over the flow for connection-oriented
/// transports) and gets the client's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_every_transport_both_directions() {
    let pki = Pki::new();
    for ip in loopbacks() {
        for protocol in Protocol::ALL {
            let (server, mut srx) = transport(&pki, |_| {});
            let (client, mut crx) = transport(&pki, |_| {});
            let saddr = server.listen(protocol, any_port(ip)).await.unwrap();
            // The client listens on UDP so that the server can reach it there.
            let caddr = client.listen(Protocol::Udp, any_port(ip)).await.unwrap();
            let label = format!("{protocol} over {ip}");

            let mut target = Target::new(protocol, saddr);
            // TLS checks the name on IPv4 and the IP address SAN on IPv6.
            if protocol.is_secure() && ip.is_ipv4() {
                target = target.with_server_name("localhost");
            }
            let sent = client.send(target, request("OPTIONS", "c1")).await.unwrap();
            assert_eq!(sent.protocol, protocol, "{label}");
            assert_eq!(sent.flow.is_some(), protocol.is_stream(), "{label}");

            let inc = recv(&mut srx).await;
            assert_eq!(inc.origin.protocol, protocol, "{label}");
            assert_eq!(inc.origin.local, saddr, "{label}");
            assert_eq!(inc.origin.peer, sent.local, "{label}");
            assert_eq!(inc.origin.flow.is_some(), protocol.is_stream(), "{label}");
            let via = inc.message.top_via().unwrap();
            assert!(via.is_transport(protocol.via_token()), "{label}: {via}");
            assert_eq!(via.rport(), Some(Some(sent.local.port())), "{label}: {via}");
            assert_eq!(
                via.received(),
                Some(ip.to_string().as_str()),
                "{label}: {via}"
            );
            if protocol == Protocol::Udp {
                // sent-by of the UDP listener the request left from.
                assert_eq!(via.port, Some(caddr.port()), "{label}: {via}");
            }

            let resp = inc.message.response(200).build().unwrap();
            let back = server.send_response(resp, Some(&inc.origin)).await.unwrap();
            assert_eq!(
                back.flow, inc.origin.flow,
                "{label}: reply over the same flow"
            );
            let got = recv(&mut crx).await;
            assert_eq!(got.message.status(), Some(200), "{label}");
            assert_eq!(
                got.origin.flow, sent.flow,
                "{label}: response on the request's flow"
            );
            assert_eq!(got.message.top_via().unwrap().branch(), Some("z9hG4bKc1"));

            // The other direction.
            let dest: Destination = match inc.origin.flow {
                Some(f) => f.into(),
                None => Target::new(Protocol::Udp, caddr).into(),
            };
            server.send(dest, request("MESSAGE", "s1")).await.unwrap();
            let inc2 = recv(&mut crx).await;
            assert_eq!(
                inc2.message.method().map(|m| m.as_str()),
                Some("MESSAGE"),
                "{label}"
            );
            assert_eq!(
                inc2.origin.flow, sent.flow,
                "{label}: server request on the client's flow"
            );
            let resp2 = inc2.message.response(202).build().unwrap();
            client
                .send_response(resp2, Some(&inc2.origin))
                .await
                .unwrap();
            let got2 = recv(&mut srx).await;
            assert_eq!(got2.message.status(), Some(202), "{label}");
            assert_eq!(got2.origin.flow, inc.origin.flow, "{label}");

            client.shutdown().await;
            server.shutdown().await;
            assert_eq!(server.task_count(), 0, "{label}");
            assert_eq!(client.task_count(), 0, "{label}");
        }
    }
}

/// RFC 3581: a request from a socket whose port differs from the Via sent-by
/// port gets its response at the source port.
#[tokio::test]
async fn response_routed_by_rport_to_the_source_port() {
    let pki = Pki::new();
    for ip in loopbacks() {
        let (server, mut srx) = transport(&pki, |_| {});
        let saddr = server.listen(Protocol::Udp, any_port(ip)).await.unwrap();
        let raw = tokio::net::UdpSocket::bind(any_port(ip)).await.unwrap();
        let src = raw.local_addr().unwrap();
        let host = siplink_message::uri::Host::from(ip);
        // sent-by names port 9 (discard); only rport gets the answer back.
        let text = request_with_via(&format!("SIP/2.0/UDP {host}:9;rport"), "r1");
        raw.send_to(text.as_bytes(), saddr).await.unwrap();
        let inc = recv(&mut srx).await;
        assert_eq!(
            inc.message.top_via().unwrap().rport(),
            Some(Some(src.port()))
        );
        let resp = inc.message.response(200).build().unwrap();
        let sent = server.send_response(resp, Some(&inc.origin)).await.unwrap();
        assert_eq!(sent.peer, src);
        assert_eq!(
            sent.local, saddr,
            "response leaves from the socket the request came to"
        );
        let mut buf = vec![0u8; 4096];
        let (n, from) = tokio::time::timeout(WAIT, raw.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, saddr);
        let resp = Message::parse(buf[..n].to_vec()).unwrap();
        assert_eq!(resp.status(), Some(200));
        assert_eq!(resp.top_via().unwrap().rport(), Some(Some(src.port())));

        // Without rport the response goes to the sent-by port instead.
        let other = tokio::net::UdpSocket::bind(any_port(ip)).await.unwrap();
        let text = request_with_via(
            &format!("SIP/2.0/UDP {host}:{}", other.local_addr().unwrap().port()),
            "r2",
        );
        raw.send_to(text.as_bytes(), saddr).await.unwrap();
        let inc = recv(&mut srx).await;
        assert_eq!(inc.message.top_via().unwrap().rport(), None);
        let resp = inc.message.response(200).build().unwrap();
        server.send_response(resp, Some(&inc.origin)).await.unwrap();
        let (n, _) = tokio::time::timeout(WAIT, other.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 200"));
        server.shutdown().await;
    }
}

/// A response to a request whose flow has closed: TCP opens a new connection
/// to received:sent-by-port; WS cannot, and says so.
#[tokio::test]
async fn response_when_the_flow_is_gone() {
    let pki = Pki::new();
    let ip = "127.0.0.1".parse().unwrap();
    let (server, mut srx) = transport(&pki, |_| {});
    let (client, mut crx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Tcp, any_port(ip)).await.unwrap();
    let caddr = client.listen(Protocol::Tcp, any_port(ip)).await.unwrap();
    client
        .send(Target::new(Protocol::Tcp, saddr), request("OPTIONS", "g1"))
        .await
        .unwrap();
    let inc = recv(&mut srx).await;
    assert_eq!(inc.message.top_via().unwrap().port, Some(caddr.port()));
    let flow = inc.origin.flow.unwrap();
    assert!(server.close_flow(flow, "test"));
    eventually("the flow is gone", || !server.is_flow_alive(flow)).await;
    let err = server
        .send(flow, request("OPTIONS", "g2"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FlowGone(f) if f == flow), "{err}");
    let resp = inc.message.response(200).build().unwrap();
    let sent = server.send_response(resp, Some(&inc.origin)).await.unwrap();
    assert_ne!(sent.flow, Some(flow));
    assert_eq!(sent.peer, caddr);
    let got = recv(&mut crx).await;
    assert_eq!(got.message.status(), Some(200));

    let ws_origin = Origin {
        protocol: Protocol::Ws,
        peer: caddr,
        local: saddr,
        flow: Some(flow),
    };
    let ws_resp = Message::parse(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKw;received=127.0.0.1;rport=5\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: w\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".to_vec(),
    )
    .unwrap();
    let err = server
        .send_response(ws_resp, Some(&ws_origin))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("WebSocket"), "{err}");
    client.shutdown().await;
    server.shutdown().await;
}

/// RFC 3261 §18.1.1: a request over UDP larger than 1300 bytes goes over TCP
/// when the target allows it, else fails with a clear error.
#[tokio::test]
async fn large_udp_request_switches_to_tcp() {
    let pki = Pki::new();
    let ip = "127.0.0.1".parse().unwrap();
    let (server, mut srx) = transport(&pki, |_| {});
    // UDP and TCP on the same port: find a port free for both.
    let port = (0..50)
        .find_map(|_| {
            let t = std::net::TcpListener::bind(SocketAddr::new(ip, 0)).ok()?;
            let port = t.local_addr().ok()?.port();
            std::net::UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
            Some(port)
        })
        .expect("a port free for UDP and TCP");
    let udp = server
        .listen(Protocol::Udp, SocketAddr::new(ip, port))
        .await
        .unwrap();
    let tcp = server
        .listen(Protocol::Tcp, SocketAddr::new(ip, port))
        .await
        .unwrap();
    let (client, _crx) = transport(&pki, |_| {});
    let mut big = request("MESSAGE", "big");
    big.set_body(Some("text/plain"), vec![b'x'; 1400]);
    let big = big.reparse().unwrap();
    let sent = client
        .send(Target::new(Protocol::Udp, udp), big.clone())
        .await
        .unwrap();
    assert_eq!(sent.protocol, Protocol::Tcp);
    let inc = recv(&mut srx).await;
    assert_eq!(inc.origin.protocol, Protocol::Tcp);
    assert_eq!(inc.origin.local, tcp);
    assert!(inc.message.top_via().unwrap().is_transport("TCP"));
    assert_eq!(inc.message.body().len(), 1400);

    let err = client
        .send(Target::new(Protocol::Udp, udp).with_allow_tcp(false), big)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLargeForUdp { limit: 1300, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("larger than the UDP limit"),
        "{err}"
    );

    // A small one stays on UDP.
    let sent = client
        .send(Target::new(Protocol::Udp, udp), request("OPTIONS", "small"))
        .await
        .unwrap();
    assert_eq!(sent.protocol, Protocol::Udp);
    assert_eq!(recv(&mut srx).await.origin.protocol, Protocol::Udp);
    client.shutdown().await;
    server.shutdown().await;
}

/// Malformed UDP: a request with a Via gets a 400 naming the fault; without a
/// usable Via, or unparseable, it is dropped; the socket keeps serving.
#[tokio::test]
async fn malformed_udp_requests() {
    let pki = Pki::new();
    let ip = "127.0.0.1".parse().unwrap();
    let (server, mut srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Udp, any_port(ip)).await.unwrap();
    let raw = tokio::net::UdpSocket::bind(any_port(ip)).await.unwrap();
    let src = raw.local_addr().unwrap();
    let mut buf = vec![0u8; 4096];

    let no_cseq =
        request_with_via("SIP/2.0/UDP 127.0.0.1:9;rport", "m1").replace("CSeq: 1 OPTIONS\r\n", "");
    raw.send_to(no_cseq.as_bytes(), saddr).await.unwrap();
    let (n, _) = tokio::time::timeout(WAIT, raw.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let resp = Message::parse(buf[..n].to_vec()).unwrap();
    assert_eq!(resp.status(), Some(400));
    let reason = String::from_utf8_lossy(resp.reason().unwrap()).to_string();
    assert!(reason.contains("CSeq"), "{reason}");
    assert_eq!(resp.top_via().unwrap().rport(), Some(Some(src.port())));

    let no_via = request_with_via("SIP/2.0/UDP 127.0.0.1:9;rport", "m2").replace(
        "Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKm2\r\n",
        "",
    );
    raw.send_to(no_via.as_bytes(), saddr).await.unwrap();
    raw.send_to(b"garbage\r\n\r\n", saddr).await.unwrap();
    raw.send_to(b"\r\n\r\n", saddr).await.unwrap();
    // A malformed response is dropped too.
    raw.send_to(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", saddr)
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(
            std::time::Duration::from_millis(300),
            raw.recv_from(&mut buf)
        )
        .await
        .is_err(),
        "no answer to unanswerable datagrams"
    );
    nothing(&mut srx).await;

    raw.send_to(
        request_with_via("SIP/2.0/UDP 127.0.0.1:9;rport", "m3").as_bytes(),
        saddr,
    )
    .await
    .unwrap();
    let inc = recv(&mut srx).await;
    assert_eq!(inc.message.top_via().unwrap().branch(), Some("z9hG4bKm3"));
    server.shutdown().await;
}

/// Flow events: opened and closed, for both ends; idle connections close.
#[tokio::test]
async fn flow_events_and_idle_timeout() {
    let pki = Pki::new();
    let ip = "127.0.0.1".parse().unwrap();
    let (server, mut srx) = transport(&pki, |c| {
        c.idle_timeout = std::time::Duration::from_millis(300)
    });
    let mut events = server.subscribe();
    let saddr = server.listen(Protocol::Tcp, any_port(ip)).await.unwrap();
    let (client, _crx) = transport(&pki, |_| {});
    let mut cevents = client.subscribe();
    let sent = client
        .send(Target::new(Protocol::Tcp, saddr), request("OPTIONS", "e1"))
        .await
        .unwrap();
    let inc = recv(&mut srx).await;
    let flow = inc.origin.flow.unwrap();
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.flow, ev.kind.clone()), (flow, FlowEventKind::Opened));
    assert_eq!(ev.peer, sent.local);
    let cev = tokio::time::timeout(WAIT, cevents.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (Some(cev.flow), cev.kind),
        (sent.flow, FlowEventKind::Opened)
    );
    // Nothing more is sent: the server closes the idle connection.
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.flow, flow);
    assert_eq!(ev.kind, FlowEventKind::Closed("idle timeout".into()));
    let cev = tokio::time::timeout(WAIT, cevents.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cev.kind, FlowEventKind::Closed("peer closed".into()));
    assert_eq!(server.connection_count(), 0);
    eventually("the client dropped the flow", || {
        client.connection_count() == 0
    })
    .await;
    client.shutdown().await;
    server.shutdown().await;
}

/// Connection reuse: two requests to the same target share one connection.
#[tokio::test]
async fn connections_are_reused_per_peer() {
    let pki = Pki::new();
    let ip = "127.0.0.1".parse().unwrap();
    let (server, mut srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Tls, any_port(ip)).await.unwrap();
    let (client, _crx) = transport(&pki, |_| {});
    let t = Target::new(Protocol::Tls, saddr);
    let a = client
        .send(t.clone(), request("OPTIONS", "u1"))
        .await
        .unwrap();
    let b = client.send(t, request("OPTIONS", "u2")).await.unwrap();
    assert_eq!(a.flow, b.flow);
    let i1 = recv(&mut srx).await;
    let i2 = recv(&mut srx).await;
    assert_eq!(i1.origin.flow, i2.origin.flow);
    assert_eq!(client.connection_count(), 1);
    client.shutdown().await;
    server.shutdown().await;
}

/// Concurrent sends to a new target share one connection attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_open_one_connection() {
    let pki = Pki::new();
    let ip = "127.0.0.1".parse().unwrap();
    let (server, mut srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Tls, any_port(ip)).await.unwrap();
    let (client, _crx) = transport(&pki, |_| {});
    let mut sends = tokio::task::JoinSet::new();
    for k in 0..10 {
        let client = client.clone();
        sends.spawn(async move {
            client
                .send(
                    Target::new(Protocol::Tls, saddr),
                    request("OPTIONS", &format!("p{k}")),
                )
                .await
                .unwrap()
                .flow
        });
    }
    let mut flows = Vec::new();
    while let Some(f) = sends.join_next().await {
        flows.push(f.unwrap());
    }
    flows.dedup();
    assert_eq!(flows.len(), 1, "{flows:?}");
    for _ in 0..10 {
        recv(&mut srx).await;
    }
    assert_eq!(client.connection_count(), 1);
    assert_eq!(server.connection_count(), 1);
    client.shutdown().await;
    server.shutdown().await;
}

/// Graceful shutdown: queued messages are written, then everything closes,
/// and later sends fail.
#[tokio::test]
async fn graceful_shutdown_flushes_and_stops() {
    let pki = Pki::new();
    let ip = "127.0.0.1".parse().unwrap();
    let (server, mut srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Tcp, any_port(ip)).await.unwrap();
    let (client, _crx) = transport(&pki, |_| {});
    for k in 0..50 {
        client
            .send(
                Target::new(Protocol::Tcp, saddr),
                request("MESSAGE", &format!("q{k}")),
            )
            .await
            .unwrap();
    }
    client.shutdown().await;
    assert_eq!(client.task_count(), 0);
    for k in 0..50 {
        let inc = recv(&mut srx).await;
        assert_eq!(inc.message.call_id().unwrap(), format!("q{k}@test"));
    }
    let err = client
        .send(
            Target::new(Protocol::Tcp, saddr),
            request("MESSAGE", "late"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Shutdown));
    server.shutdown().await;
    assert_eq!(server.task_count(), 0);
    assert!(
        tokio::net::TcpStream::connect(saddr).await.is_err(),
        "listener closed"
    );
}
