//! TCP framing, limits and keepalives; WebSocket handshakes with a real
//! WebSocket client; TLS certificate checks. Raw sockets play the peer.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use siplink_message::Message;
use siplink_transport::{
    ClientAuth, Error, FlowEventKind, KeepaliveConfig, Protocol, Target, TransportConfig,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn v4() -> std::net::IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// Reads until the peer closes or `WAIT` passes; returns what was read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("peer did not close");
    out
}

#[tokio::test]
async fn tcp_message_in_one_byte_writes() {
    let pki = Pki::new();
    for ip in loopbacks() {
        let (server, mut srx) = transport(&pki, |_| {});
        let saddr = server.listen(Protocol::Tcp, any_port(ip)).await.unwrap();
        let mut s = TcpStream::connect(saddr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let text = request_text("OPTIONS", "b1");
        for b in text.as_bytes() {
            s.write_all(&[*b]).await.unwrap();
        }
        let inc = recv(&mut srx).await;
        assert_eq!(inc.message.call_id().unwrap(), "b1@test");
        assert_eq!(inc.origin.peer, s.local_addr().unwrap());
        // The answer comes back on the same connection.
        let resp = inc.message.response(200).build().unwrap();
        server.send_response(resp, Some(&inc.origin)).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
        server.shutdown().await;
    }
}

#[tokio::test]
async fn tcp_hundred_messages_in_one_write() {
    let pki = Pki::new();
    let (server, mut srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Tcp, any_port(v4())).await.unwrap();
    let mut s = TcpStream::connect(saddr).await.unwrap();
    let all: String = (0..100)
        .map(|k| request_text("MESSAGE", &format!("h{k}")))
        .collect();
    s.write_all(all.as_bytes()).await.unwrap();
    for k in 0..100 {
        let inc = recv(&mut srx).await;
        assert_eq!(inc.message.call_id().unwrap(), format!("h{k}@test"));
    }
    nothing(&mut srx).await;
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_garbage_closes_the_connection_and_a_new_one_works() {
    let pki = Pki::new();
    let (server, mut srx) = transport(&pki, |_| {});
    let mut events = server.subscribe();
    let saddr = server.listen(Protocol::Tcp, any_port(v4())).await.unwrap();
    let mut bad = TcpStream::connect(saddr).await.unwrap();
    // No Content-Length: the framer cannot frame it.
    bad.write_all(b"this is not SIP\r\nat all\r\n\r\n")
        .await
        .unwrap();
    bad.write_all(request_text("OPTIONS", "after-garbage").as_bytes())
        .await
        .unwrap();
    let _ = read_to_close(&mut bad).await;
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if let FlowEventKind::Closed(reason) = ev.kind {
            assert!(reason.contains("framing error"), "{reason}");
            break;
        }
    }
    // A framed but unparseable message closes it too.
    let mut bad2 = TcpStream::connect(saddr).await.unwrap();
    bad2.write_all(b"NOT A START LINE\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let _ = read_to_close(&mut bad2).await;
    nothing(&mut srx).await;

    let mut good = TcpStream::connect(saddr).await.unwrap();
    good.write_all(request_text("OPTIONS", "g1").as_bytes())
        .await
        .unwrap();
    assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "g1@test");
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_oversize_message_closes_only_that_connection() {
    let pki = Pki::new();
    let (server, mut srx) = transport(&pki, |c| c.max_message_size = 2048);
    let saddr = server.listen(Protocol::Tcp, any_port(v4())).await.unwrap();
    let mut other = TcpStream::connect(saddr).await.unwrap();
    other
        .write_all(request_text("OPTIONS", "o0").as_bytes())
        .await
        .unwrap();
    assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "o0@test");

    let mut big = TcpStream::connect(saddr).await.unwrap();
    let mut m = request("MESSAGE", "big");
    m.set_body(Some("text/plain"), vec![b'x'; 4000]);
    let _ = big.write_all(&m.to_bytes()).await;
    let _ = read_to_close(&mut big).await;

    // Content-Length announcing too much is refused before the body arrives.
    let mut liar = TcpStream::connect(saddr).await.unwrap();
    let text =
        request_text("MESSAGE", "liar").replace("Content-Length: 0", "Content-Length: 1000000");
    liar.write_all(text.as_bytes()).await.unwrap();
    let _ = read_to_close(&mut liar).await;

    // Too many header lines.
    let mut many = TcpStream::connect(saddr).await.unwrap();
    let mut text = request_text("OPTIONS", "many");
    let extra: String = (0..200).map(|k| format!("X-H{k}: 1\r\n")).collect();
    text.insert_str(text.find("Content-Length").unwrap(), &extra);
    let _ = many.write_all(text.as_bytes()).await;
    let _ = read_to_close(&mut many).await;
    nothing(&mut srx).await;

    // The server still serves the old connection and new ones.
    other
        .write_all(request_text("OPTIONS", "o1").as_bytes())
        .await
        .unwrap();
    assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "o1@test");
    let mut fresh = TcpStream::connect(saddr).await.unwrap();
    fresh
        .write_all(request_text("OPTIONS", "o2").as_bytes())
        .await
        .unwrap();
    assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "o2@test");
    // And refuses to send an oversize message.
    let mut m = request("MESSAGE", "out");
    m.set_body(Some("text/plain"), vec![b'x'; 4000]);
    let err = server
        .send(
            Target::new(Protocol::Tcp, fresh.local_addr().unwrap()),
            m.reparse().unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 2048, .. }), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_keepalive_ping_is_answered() {
    let pki = Pki::new();
    let (server, mut srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Tcp, any_port(v4())).await.unwrap();
    let mut s = TcpStream::connect(saddr).await.unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..3 {
        s.write_all(b"\r\n\r\n").await.unwrap();
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"\r\n");
    }
    // A ping followed by a message in the same write.
    let text = format!("\r\n\r\n{}", request_text("OPTIONS", "k1"));
    s.write_all(text.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"\r\n");
    assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "k1@test");
    server.shutdown().await;
}

/// With keepalives on, the server pings a silent flow; a peer that answers
/// keeps it, one that does not is reported (RFC 5626) and closed.
#[tokio::test]
async fn tcp_keepalive_sent_and_timed_out() {
    let pki = Pki::new();
    let (server, _srx) = transport(&pki, |c| {
        c.keepalive = Some(KeepaliveConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
        })
    });
    let mut events = server.subscribe();
    let saddr = server.listen(Protocol::Tcp, any_port(v4())).await.unwrap();

    let mut good = TcpStream::connect(saddr).await.unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..3 {
        let n = tokio::time::timeout(WAIT, good.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"\r\n\r\n");
        good.write_all(b"\r\n").await.unwrap();
    }
    // Keep answering in the background.
    let answering = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        while let Ok(Ok(n)) = tokio::time::timeout(WAIT, good.read(&mut buf)).await {
            if n == 0 || good.write_all(b"\r\n").await.is_err() {
                break;
            }
        }
    });
    let good_flow = loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if ev.kind == FlowEventKind::Opened {
            break ev.flow;
        }
    };
    assert!(server.is_flow_alive(good_flow));

    let silent = TcpStream::connect(saddr).await.unwrap();
    let silent_port = silent.local_addr().unwrap();
    let mut saw_timeout = false;
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if ev.peer != silent_port {
            continue;
        }
        match ev.kind {
            FlowEventKind::KeepaliveTimeout => saw_timeout = true,
            FlowEventKind::Closed(reason) => {
                assert_eq!(reason, "keepalive timeout");
                break;
            }
            FlowEventKind::Opened => {}
        }
    }
    assert!(saw_timeout);
    assert!(server.is_flow_alive(good_flow), "the answering flow stays");
    answering.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limits_per_peer_and_total() {
    let pki = Pki::new();
    let (server, mut srx) = transport(&pki, |c| {
        c.max_connections_per_peer = 2;
        c.max_connections = 3;
    });
    let saddr = server.listen(Protocol::Tcp, any_port(v4())).await.unwrap();
    let mut a = TcpStream::connect(saddr).await.unwrap();
    let _b = TcpStream::connect(saddr).await.unwrap();
    eventually("two connections", || server.connection_count() == 2).await;
    let mut c = TcpStream::connect(saddr).await.unwrap();
    assert!(
        read_to_close(&mut c).await.is_empty(),
        "third from the same address refused"
    );
    a.write_all(request_text("OPTIONS", "l1").as_bytes())
        .await
        .unwrap();
    assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "l1@test");
    server.shutdown().await;
}

async fn ws_client(
    addr: std::net::SocketAddr,
    subprotocol: Option<&str>,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("sip")
    );
    Ok(ws)
}

#[tokio::test]
async fn ws_real_client_with_sip_subprotocol() {
    let pki = Pki::new();
    for ip in loopbacks() {
        let (server, mut srx) = transport(&pki, |_| {});
        let saddr = server.listen(Protocol::Ws, any_port(ip)).await.unwrap();
        let mut ws = ws_client(saddr, Some("sip")).await.unwrap();
        let text = request_with_via("SIP/2.0/WS df7jal23ls0d.invalid;rport", "w1");
        ws.send(WsMessage::text(text)).await.unwrap();
        let inc = recv(&mut srx).await;
        assert_eq!(inc.origin.protocol, Protocol::Ws);
        let via = inc.message.top_via().unwrap();
        assert_eq!(via.received(), Some(ip.to_string().as_str()));
        // Binary frames carry SIP too (RFC 7118 §5.2).
        ws.send(WsMessage::binary(
            request_with_via("SIP/2.0/WS df7jal23ls0d.invalid", "w2").into_bytes(),
        ))
        .await
        .unwrap();
        assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "w2@test");
        let resp = inc.message.response(200).build().unwrap();
        server.send_response(resp, Some(&inc.origin)).await.unwrap();
        let got = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let WsMessage::Text(t) = got else {
            panic!("expected a text message, got {got:?}")
        };
        assert!(t.as_str().starts_with("SIP/2.0 200 OK\r\n"));
        // WebSocket ping is answered.
        ws.send(WsMessage::Ping(b"p".to_vec().into()))
            .await
            .unwrap();
        let got = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, WsMessage::Pong(b"p".to_vec().into()));
        // Garbage closes the connection.
        ws.send(WsMessage::text("hello")).await.unwrap();
        let end = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => break,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "server closed the WebSocket");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn ws_client_without_sip_subprotocol_is_refused() {
    let pki = Pki::new();
    let (server, _srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Ws, any_port(v4())).await.unwrap();
    for offer in [None, Some("chat")] {
        let err = ws_client(saddr, offer)
            .await
            .expect_err("handshake must fail");
        assert!(err.to_string().contains("400"), "{err}");
    }
    eventually("nothing left open", || server.connection_count() == 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn wss_real_client_over_tls() {
    let pki = Pki::new();
    let (server, mut srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Wss, any_port(v4())).await.unwrap();
    let tcp = TcpStream::connect(saddr).await.unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates({
        let mut r = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        r.add(rustls::pki_types::CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
            .unwrap();
        r
    })
    .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("wss://localhost:{}/", saddr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(WsMessage::text(request_with_via(
        "SIP/2.0/WSS x.invalid;rport",
        "s1",
    )))
    .await
    .unwrap();
    let inc = recv(&mut srx).await;
    assert_eq!(inc.origin.protocol, Protocol::Wss);
    server
        .send_response(
            inc.message.response(200).build().unwrap(),
            Some(&inc.origin),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(got.into_text().unwrap().as_str().starts_with("SIP/2.0 200"));
    server.shutdown().await;
}

#[tokio::test]
async fn tls_untrusted_or_wrong_host_certificate_fails() {
    let pki = Pki::new();
    let other = Pki::new();
    let (server, _srx) = transport(&pki, |_| {});
    let saddr = server.listen(Protocol::Tls, any_port(v4())).await.unwrap();

    // Trusting another CA only.
    let (client, _crx) = transport(&other, |_| {});
    let err = client
        .send(
            Target::new(Protocol::Tls, saddr).with_server_name("localhost"),
            request("OPTIONS", "t1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("not signed by a certificate authority the proxy trusts"),
        "{err}"
    );

    // Trusted CA, but the certificate is not for that name.
    let (client2, _crx2) = transport(&pki, |_| {});
    let err = client2
        .send(
            Target::new(Protocol::Tls, saddr).with_server_name("pbx.example.com"),
            request("OPTIONS", "t2"),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "issued for another name than the one the proxy connects to (\"pbx.example.com\")"
        ),
        "{err}"
    );
    // The same for WSS.
    let wss = server.listen(Protocol::Wss, any_port(v4())).await.unwrap();
    let err = client
        .send(Target::new(Protocol::Wss, wss), request("OPTIONS", "t3"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not signed by a certificate authority the proxy trusts"),
        "{err}"
    );
    assert_eq!(client.connection_count(), 0);
    assert_eq!(client2.connection_count(), 0);
    for t in [client, client2, server] {
        t.shutdown().await;
    }
}

#[tokio::test]
async fn mutual_tls() {
    let pki = Pki::new();
    let ip = v4();
    let (server, mut srx) = siplink_transport::Transport::new(TransportConfig {
        tls_server: Some(pki.server(ClientAuth::Required(pki.ca.as_bytes()))),
        ..TransportConfig::default()
    });
    let saddr = server.listen(Protocol::Tls, any_port(ip)).await.unwrap();
    // Without a client certificate: refused (the error may surface on the
    // handshake or on the first read, as TLS 1.3 finishes the client side first).
    let (anon, _arx) = transport(&pki, |_| {});
    let _ = anon
        .send(Target::new(Protocol::Tls, saddr), request("OPTIONS", "m0"))
        .await;
    nothing(&mut srx).await;
    eventually("the anonymous flow is closed", || {
        anon.connection_count() == 0
    })
    .await;
    // With one: accepted.
    let (client, _crx) = transport(&pki, |c| c.tls_client = Some(pki.client_with_cert()));
    client
        .send(Target::new(Protocol::Tls, saddr), request("OPTIONS", "m1"))
        .await
        .unwrap();
    assert_eq!(recv(&mut srx).await.message.call_id().unwrap(), "m1@test");
    for t in [anon, client, server] {
        t.shutdown().await;
    }
}

#[test]
fn tls_config_errors_are_clear() {
    let err = siplink_transport::TlsServerConfig::from_pem(b"nope", b"nope", ClientAuth::None)
        .unwrap_err();
    assert!(err.to_string().contains("server certificate"), "{err}");
    let err = siplink_transport::TlsServerConfig::from_pem_files(
        "/nonexistent.pem",
        "/nonexistent.key",
        ClientAuth::None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
    let _ = Message::parse(&b"x"[..]);
    let err = siplink_transport::TlsClientConfig::new(siplink_transport::Roots::Pem(b"junk"), None)
        .unwrap_err();
    assert!(err.to_string().contains("CA certificates"), "{err}");
}

#[test]
fn client_roots() {
    use siplink_transport::{Roots, TlsClientConfig};
    TlsClientConfig::new(Roots::WebPki, None).unwrap();
    let pki = Pki::new();
    TlsClientConfig::new(
        Roots::WebPki,
        Some((pki.client_cert.as_bytes(), pki.client_key.as_bytes())),
    )
    .unwrap();
    if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        TlsClientConfig::new(Roots::System, None).unwrap();
    } else {
        eprintln!("no system CA bundle: Roots::System not checked");
    }
}

/// WebSocket keepalive: the server sends Ping frames; a client that answers
/// (tungstenite answers by itself while reading) keeps its flow, a silent one
/// is reported and closed.
#[tokio::test]
async fn ws_keepalive_ping_and_timeout() {
    let pki = Pki::new();
    let (server, _srx) = transport(&pki, |c| {
        c.keepalive = Some(KeepaliveConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
        })
    });
    let mut events = server.subscribe();
    let saddr = server.listen(Protocol::Ws, any_port(v4())).await.unwrap();
    let mut ws = ws_client(saddr, Some("sip")).await.unwrap();
    let live = tokio::spawn(async move {
        let mut pings = 0;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, ws.next()).await {
            if matches!(m, WsMessage::Ping(_)) {
                pings += 1;
                if pings == 5 {
                    break;
                }
            }
        }
        (pings, ws)
    });
    // A client that completes the handshake and then never reads again.
    let silent = ws_client(saddr, Some("sip")).await.unwrap();
    let silent_addr = silent.get_ref().local_addr().unwrap();
    let mut saw_timeout = false;
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if ev.peer != silent_addr {
            assert!(!matches!(ev.kind, FlowEventKind::Closed(_)), "{ev:?}");
            continue;
        }
        match ev.kind {
            FlowEventKind::KeepaliveTimeout => saw_timeout = true,
            FlowEventKind::Closed(reason) => {
                assert_eq!(reason, "keepalive timeout");
                break;
            }
            FlowEventKind::Opened => {}
        }
    }
    assert!(saw_timeout);
    let (pings, _ws) = live.await.unwrap();
    assert_eq!(pings, 5);
    assert_eq!(
        server.connection_count(),
        1,
        "the answering client keeps its flow"
    );
    drop(silent);
    server.shutdown().await;
}

/// An application that sends on a flow before reading on does not deadlock
/// with that flow's reader, even with tiny queues: while the inbound queue is
/// full, the connection keeps writing what is queued for it.
#[tokio::test]
async fn full_queues_do_not_deadlock() {
    let pki = Pki::new();
    let (server, mut srx) = transport(&pki, |c| {
        c.inbound_queue = 2;
        c.outbound_queue = 2;
    });
    let saddr = server.listen(Protocol::Tcp, any_port(v4())).await.unwrap();
    let mut s = TcpStream::connect(saddr).await.unwrap();
    let all: String = (0..50)
        .map(|k| request_text("MESSAGE", &format!("d{k}")))
        .collect();
    s.write_all(all.as_bytes()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.windows(7).filter(|w| w == b"NOTIFY ").count() < 20 {
            let n = tokio::time::timeout(WAIT, s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    });
    let first = recv(&mut srx).await;
    let flow = first.origin.flow.unwrap();
    tokio::time::timeout(WAIT, async {
        for k in 0..20 {
            server
                .send(flow, request("NOTIFY", &format!("n{k}")))
                .await
                .unwrap();
        }
    })
    .await
    .expect("sending on the flow must not wait for the application to read");
    reader.await.unwrap();
    for k in 1..50 {
        assert_eq!(
            recv(&mut srx).await.message.call_id().unwrap(),
            format!("d{k}@test")
        );
    }
    server.shutdown().await;
}
