//! The tokio driver over a real loopback UDP socket, against a scripted ng peer that
//! loses the first copy of every request: retransmission, many concurrent callers on
//! one socket and one task, timeouts and health events.

use std::collections::HashSet;
use std::time::Duration;

use siplink_media::bencode::{Value, dict};
use siplink_media::ng::{decode_datagram, encode_datagram};
use siplink_media::{
    ClientConfig, Error, InstanceHealth, MediaRelay, QueryRequest, RtpEngine, SdpRequest,
};
use tokio::net::UdpSocket;

/// An ng peer that drops the first datagram of each cookie and answers the second.
async fn lossy_peer() -> std::net::SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let (cookie, body) = decode_datagram(&buf[..n]).unwrap();
            if seen.insert(cookie.to_owned()) {
                continue; // lost
            }
            let reply = match body.get("command").and_then(Value::as_str) {
                Some("ping") => dict([("result", Value::str("pong"))]),
                Some("offer") => dict([
                    ("result", Value::str("ok")),
                    ("sdp", body.get("call-id").unwrap().clone()),
                ]),
                _ => dict([
                    ("result", Value::str("error")),
                    ("error-reason", Value::str("Unknown call-id")),
                ]),
            };
            let _ = sock.send_to(&encode_datagram(cookie, &reply), from).await;
        }
    });
    addr
}

fn config(addr: std::net::SocketAddr) -> ClientConfig {
    let mut c = ClientConfig::new([addr]);
    c.retransmit_interval = Duration::from_millis(40);
    c.retries = 3;
    c.ping_interval = Duration::from_millis(200);
    c
}

#[tokio::test]
async fn concurrent_requests_survive_loss_on_one_socket() {
    let peer = lossy_peer().await;
    let relay = RtpEngine::start(config(peer), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..64 {
        let relay = relay.clone();
        tasks.push(tokio::spawn(async move {
            let call = format!("c{n}");
            let got = relay
                .offer(SdpRequest::offer(&call, "t", "v=0"))
                .await
                .unwrap();
            assert_eq!(got.sdp, call, "each caller gets its own reply");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // An error result reaches its caller as Rejected.
    match relay.query(QueryRequest::call("nope")).await {
        Err(Error::Rejected { reason, .. }) => assert_eq!(reason, "Unknown call-id"),
        other => panic!("{other:?}"),
    }
    let stats = relay.stats();
    assert!(stats.retransmits >= 65, "{stats:?}");
    assert_eq!(stats.timeouts, 0);
    assert!(relay.health()[0].up);
}

#[tokio::test]
async fn a_silent_instance_times_out_and_is_reported_down() {
    // Bound but never answering.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let relay = RtpEngine::start(config(addr), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut events = relay.subscribe();
    let t0 = tokio::time::Instant::now();
    match relay.offer(SdpRequest::offer("x", "t", "v=0")).await {
        Err(Error::Timeout {
            instance, command, ..
        }) => assert_eq!((instance, command), (addr, "offer")),
        other => panic!("{other:?}"),
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, InstanceHealth { addr, up: false });
    assert!(matches!(
        relay.offer(SdpRequest::offer("y", "t", "v=0")).await,
        Err(Error::NoInstance)
    ));
    drop(silent);
}
