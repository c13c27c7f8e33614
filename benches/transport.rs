//! siplink-transport figures: messages per second one way over UDP and over a
//! TCP connection on loopback, and memory per idle TCP and WebSocket connection.
//!
//! `cargo bench --bench transport` (plain `main`, no criterion: these are
//! throughput and memory figures, printed as a table). Sizes can be changed
//! with `SIPLINK_BENCH_MESSAGES` and `SIPLINK_BENCH_IDLE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use siplink_message::Message;
use siplink_transport::{Protocol, Target, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(n: usize) -> Message {
    let text = format!(
        "MESSAGE sip:bob@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP placeholder.invalid;rport;branch=z9hG4bK{n}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=a1\r\n\
To: <sip:bob@localhost>\r\n\
Call-ID: {n}@bench\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: 5\r\n\r\nhello"
    );
    Message::parse(text.into_bytes()).expect("bench request parses")
}

/// Sends `n` requests from one transport to another over `protocol` and
/// returns (messages per second, messages lost). At most `window` messages are
/// in flight, so UDP measures what the receiver sustains rather than what the
/// socket buffer drops (it holds only ~100-200 small datagrams, as the kernel
/// counts each one's full buffer size).
async fn one_way(protocol: Protocol, n: usize, window: usize) -> (f64, usize) {
    let (server, mut srx) = Transport::new(TransportConfig::default());
    let saddr = server
        .listen(protocol, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("listen");
    let (client, _crx) = Transport::new(TransportConfig::default());
    let received = Arc::new(AtomicUsize::new(0));
    let counter = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), srx.recv()).await {
                if received.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    break;
                }
            }
        })
    };
    let messages: Vec<Message> = (0..n).map(request).collect();
    let target = Target::new(protocol, saddr);
    let start = Instant::now();
    for (sent, m) in messages.into_iter().enumerate() {
        while sent - received.load(Ordering::Relaxed) > window {
            tokio::task::yield_now().await;
            if start.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        client.send(target.clone(), m).await.expect("send");
    }
    let _ = counter.await;
    let elapsed = start.elapsed();
    let got = received.load(Ordering::Relaxed);
    client.shutdown().await;
    server.shutdown().await;
    (got as f64 / elapsed.as_secs_f64(), n - got)
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Opens `count` idle connections to a transport listening on `protocol`
/// (raw sockets on the client side, a hand-written upgrade for WebSocket, so
/// that the client side costs only a socket) and returns the growth of the
/// process's resident memory per connection.
async fn idle_memory(protocol: Protocol, count: usize) -> f64 {
    let (server, _srx) = Transport::new(TransportConfig {
        max_connections: 2 * count + 64,
        max_connections_per_peer: 2 * count + 64,
        ..TransportConfig::default()
    });
    let saddr = server
        .listen(protocol, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("listen");
    // Warm up allocator and runtime with a few connections first.
    let mut clients = Vec::with_capacity(count + 16);
    for _ in 0..16 {
        clients.push(open(protocol, saddr).await);
    }
    wait_for(&server, 16).await;
    let before = rss_bytes();
    while clients.len() < count + 16 {
        clients.push(open(protocol, saddr).await);
        if clients.len() % 100 == 0 {
            wait_for(&server, clients.len()).await;
        }
    }
    wait_for(&server, clients.len()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_bytes();
    drop(clients);
    server.shutdown().await;
    after.saturating_sub(before) as f64 / count as f64
}

/// Waits until the server holds `n` connections (panics after 30 s).
async fn wait_for(server: &Transport, n: usize) {
    let start = Instant::now();
    while server.connection_count() < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {} of {n} connections accepted",
            server.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn open(protocol: Protocol, addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    if protocol == Protocol::Ws {
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: sip\r\n\r\n",
        )
        .await
        .expect("upgrade request");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("upgrade response");
            assert!(n > 0, "server closed during the upgrade");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    }
    s
}

/// Runs one idle-memory measurement in a fresh copy of this process, so that
/// memory freed by an earlier measurement is not reused by the next one.
fn child(kind: &str) -> f64 {
    let exe = std::env::current_exe().expect("bench executable");
    let out = std::process::Command::new(exe)
        .args(std::env::args().skip(1))
        .env("SIPLINK_BENCH_CHILD", kind)
        .output()
        .expect("run the measurement");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs a smoke size.
    let smoke = !std::env::args().any(|a| a == "--bench");
    if let Ok(kind) = std::env::var("SIPLINK_BENCH_CHILD") {
        let idle = env("SIPLINK_BENCH_IDLE", if smoke { 100 } else { 2_000 });
        let protocol = if kind == "ws" {
            Protocol::Ws
        } else {
            Protocol::Tcp
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        println!("{}", rt.block_on(idle_memory(protocol, idle)));
        return;
    }
    let messages = env(
        "SIPLINK_BENCH_MESSAGES",
        if smoke { 1_000 } else { 100_000 },
    );
    let idle = env("SIPLINK_BENCH_IDLE", if smoke { 100 } else { 2_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("siplink-transport, loopback, {messages} messages of ~300 bytes");
        let (rate, lost) = one_way(Protocol::Udp, messages, 100).await;
        println!("UDP one way          {rate:>12.0} msg/s   ({lost} lost)");
        let (rate, lost) = one_way(Protocol::Tcp, messages, 4096).await;
        println!("TCP one way          {rate:>12.0} msg/s   ({lost} lost)");
        println!(
            "idle TCP connection  {:>12.1} KiB each ({idle} connections)",
            child("tcp") / 1024.0
        );
        println!(
            "idle WS connection   {:>12.1} KiB each ({idle} connections)",
            child("ws") / 1024.0
        );
    });
}
