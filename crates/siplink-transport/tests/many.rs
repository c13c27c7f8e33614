//! 2,000 concurrent TCP connections, each sending messages and reading the
//! answers; afterwards no task or file descriptor is left behind. In its own
//! test binary so that the descriptor count is this test's alone.

mod support;

use std::time::Duration;

use siplink_transport::{Protocol, Transport, TransportConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 2_000;
const PER_CONNECTION: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_tcp_connections_no_leak() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("test took too long");
}

async fn run() {
    let fds_before = fd_count();
    let (server, mut srx) = Transport::new(TransportConfig {
        max_connections: 2 * CONNECTIONS,
        max_connections_per_peer: 2 * CONNECTIONS,
        ..TransportConfig::default()
    });
    let saddr = server
        .listen(Protocol::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tasks_idle = server.task_count(); // listener + idle sweeper
    let responder = {
        let server = server.clone();
        tokio::spawn(async move {
            while let Some(inc) = srx.recv().await {
                let resp = inc.message.response(200).build().unwrap();
                server.send_response(resp, Some(&inc.origin)).await.unwrap();
            }
        })
    };

    // Connect everything, in batches that the accept loop drains before the
    // next one (so that the listen backlog never overflows on a loaded machine).
    let t0 = std::time::Instant::now();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    while clients.len() < CONNECTIONS {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..100.min(CONNECTIONS - clients.len()) {
            batch.spawn(async move { TcpStream::connect(saddr).await.unwrap() });
        }
        while let Some(c) = batch.join_next().await {
            clients.push(c.unwrap());
        }
        let want = clients.len();
        eventually("the batch is accepted", || {
            server.connection_count() == want
        })
        .await;
    }
    println!("{CONNECTIONS} connections open after {:?}", t0.elapsed());
    let fds_open = fd_count();
    assert!(
        fds_open >= fds_before + 2 * CONNECTIONS,
        "{fds_open} descriptors open, {fds_before} before"
    );
    assert_eq!(server.task_count(), tasks_idle + CONNECTIONS);

    // Every connection sends its messages in one go and reads every answer.
    let mut talking = tokio::task::JoinSet::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        talking.spawn(async move {
            let all: String = (0..PER_CONNECTION)
                .map(|k| request_text("MESSAGE", &format!("c{i}m{k}")))
                .collect();
            c.write_all(all.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.windows(11).filter(|w| w == b"SIP/2.0 200").count() < PER_CONNECTION {
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0, "server closed connection {i}");
                got.extend_from_slice(&buf[..n]);
            }
            c
        });
    }
    let mut clients = Vec::with_capacity(CONNECTIONS);
    while let Some(c) = talking.join_next().await {
        clients.push(c.unwrap());
    }
    assert_eq!(clients.len(), CONNECTIONS);

    // Clients hang up; the server notices every close.
    drop(clients);
    eventually("all connections closed", || server.connection_count() == 0).await;
    eventually("connection tasks ended", || {
        server.task_count() == tasks_idle
    })
    .await;
    server.shutdown().await;
    assert_eq!(server.task_count(), 0);
    // The responder holds a clone of the transport, so its inbound queue never
    // ends by itself: stop it.
    responder.abort();
    let _ = responder.await;
    drop(server);
    eventually("descriptors released", || fd_count() <= fds_before).await;
    println!(
        "fds before {fds_before}, with {CONNECTIONS} connections {fds_open}, after {}",
        fd_count()
    );
}
