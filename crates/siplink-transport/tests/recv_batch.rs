//! `UdpWorkerSocket::recv_batch` over loopback, IPv4 and IPv6: datagrams
//! queued together come back several per call, whole, in order, with their
//! senders.

use std::net::SocketAddr;
use std::time::Duration;

use siplink_transport::{RecvBatch, Transport, TransportConfig, UdpSharing};

async fn batches_in_order(ip: &str) {
    let (transport, _rx) = Transport::new(TransportConfig::default());
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    let Ok(sockets) = transport.bind_udp_workers(addr, 1, UdpSharing::Shared) else {
        eprintln!("no {ip} here, skipped");
        return;
    };
    let server = sockets[0].clone();
    let peer = std::net::UdpSocket::bind(addr).unwrap();
    let me = peer.local_addr().unwrap();
    // Seven datagrams of different sizes, one of 30,000 bytes.
    let sent: Vec<Vec<u8>> = (0..7u8)
        .map(|i| {
            let len = if i == 3 {
                30_000
            } else {
                1 + usize::from(i) * 100
            };
            vec![b'a' + i; len]
        })
        .collect();
    for d in &sent {
        peer.send_to(d, server.local_addr()).unwrap();
    }
    let mut batch = RecvBatch::new(4);
    assert_eq!(batch.capacity(), 4);
    let mut got = Vec::new();
    let mut calls = Vec::new();
    while got.len() < sent.len() {
        let n = tokio::time::timeout(Duration::from_secs(2), server.recv_batch(&mut batch))
            .await
            .expect("datagrams")
            .unwrap();
        assert_eq!(n, batch.len());
        calls.push(n);
        for i in 0..n {
            let (data, from) = batch.get(i).unwrap();
            assert_eq!(from, me);
            got.push(data.to_vec());
        }
        assert!(batch.get(n).is_none());
    }
    assert_eq!(got, sent, "{ip}: every datagram, whole and in order");
    // Loopback queues each datagram before `send_to` returns: a full batch,
    // then the rest.
    assert_eq!(calls, [4, 3], "{ip}");
    // Nothing more: the next call waits.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), server.recv_batch(&mut batch))
            .await
            .is_err()
    );
    // And wakes for the next datagram.
    peer.send_to(b"again", server.local_addr()).unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), server.recv_batch(&mut batch))
        .await
        .expect("a datagram")
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(batch.get(0).unwrap(), (&b"again"[..], me));
}

#[tokio::test]
async fn recv_batch_takes_queued_datagrams_in_order_ipv4() {
    batches_in_order("127.0.0.1").await;
}

#[tokio::test]
async fn recv_batch_takes_queued_datagrams_in_order_ipv6() {
    batches_in_order("[::1]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_batch_is_not_for_reader_threads() {
    let (transport, _rx) = Transport::new(TransportConfig::default());
    let sockets = transport
        .bind_udp_workers("127.0.0.1:0".parse().unwrap(), 1, UdpSharing::Threads)
        .unwrap();
    let mut batch = RecvBatch::new(0);
    assert_eq!(batch.capacity(), 1);
    let e = sockets[0].recv_batch(&mut batch).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
}

/// One thread reading an IPv4 socket, then an IPv6 one, then IPv4 again:
/// the `recvmmsg` headers the thread keeps are not shared between families.
#[tokio::test]
async fn recv_batch_on_one_thread_for_both_families() {
    batches_in_order("127.0.0.1").await;
    batches_in_order("[::1]").await;
    batches_in_order("127.0.0.1").await;
}
