//! siplink-transaction figures: transactions per second through two
//! [`Endpoint`]s over loopback UDP (non-INVITE request and its 200), and bytes
//! of memory per live transaction in a [`TransactionTable`].
//!
//! `cargo bench --bench transaction` (plain `main`, no criterion: throughput
//! and memory figures, printed as a table; the throughput twice, the server
//! on an endpoint and on the run-to-completion runtime). Sizes: `SIPLINK_BENCH_TX`
//! (transactions, default 20,000), `SIPLINK_BENCH_WINDOW` (in flight, default
//! 64), `SIPLINK_BENCH_LIVE` (live transactions for the memory figure, default
//! 50,000).
//!
//! `SIPLINK_BENCH_MODE=table` runs only an in-memory figure instead (no
//! sockets, no runtime, one thread): `SIPLINK_BENCH_TX` non-INVITE
//! transactions, one after another, between two [`TransactionTable`]s — the
//! client table's request bytes are copied into a fresh buffer and parsed into
//! the server table, the TU's 200 (built from the delivered request) is sent,
//! its bytes parsed into the client table — then time jumps past timers J and K
//! so every transaction also finishes and is freed. So one transaction's whole
//! CPU cost (request and response building and parsing included) is counted,
//! and the figure suits `valgrind --tool=callgrind`: run it with two sizes and
//! divide the difference in instructions by the difference in transactions,
//! so start-up cancels (docs/benchmarks.md has the commands).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::runtime::{Request, Runtime, RuntimeConfig, Service};
use siplink_transaction::{
    ClientEvent, Endpoint, EndpointConfig, Output, Received, TableConfig, TransactionTable,
    TuEvent, new_branch,
};
use siplink_transport::{Protocol, Target, Transport, TransportConfig};
use tokio::sync::Semaphore;

/// Resident memory of this process, in bytes (`/proc/self/statm`, 4 KiB pages).
///
/// The memory figure is the growth of the resident set, not an exact heap
/// count: a counting `#[global_allocator]` needs `unsafe impl GlobalAlloc`, and
/// the workspace's `forbid(unsafe_code)` applies to every target, benches
/// included (`allow` cannot lift a `forbid`). With tens of thousands of
/// transactions the page granularity is negligible.
fn resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A typical out-of-dialog request (~400 bytes on the wire).
fn request(method: Method, to: SocketAddr, n: usize) -> Message {
    MessageBuilder::request(method.clone(), format!("sip:bob@{to}"))
        .header(
            HeaderName::Via,
            format_args!("SIP/2.0/UDP 192.0.2.10:5060;rport;branch={}", new_branch()),
        )
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, format_args!("Bob <sip:bob@{to}>"))
        .header(
            HeaderName::From,
            format_args!("Alice <sip:alice@example.com>;tag=f{n}"),
        )
        .header(
            HeaderName::CallId,
            format_args!("{n}-{}@bench", &new_branch()[7..19]),
        )
        .header(HeaderName::CSeq, format_args!("1 {method}"))
        .header(HeaderName::Contact, "<sip:alice@192.0.2.10:5060>")
        .header(HeaderName::UserAgent, "siplink-bench")
        .build()
        .expect("bench request")
}

/// Transactions per second: `n` OPTIONS from one endpoint to another over
/// loopback UDP, each answered 200 at once by the server's TU, at most
/// `window` in flight.
/// With `on_runtime`, the server side is the run-to-completion
/// [`Runtime`](siplink_transaction::runtime::Runtime) (two workers, one
/// shared socket) instead of an endpoint.
async fn throughput(n: usize, window: usize, on_runtime: bool) -> (f64, usize) {
    let table = TableConfig {
        max_transactions: 10_000_000,
        ..TableConfig::default()
    };
    let config = EndpointConfig {
        table,
        ..EndpointConfig::default()
    };
    let (st, st_in) = Transport::new(TransportConfig::default());
    let mut server = None;
    let mut udp_runtime = None;
    let saddr = if on_runtime {
        let rc = RuntimeConfig {
            workers: 2,
            table,
            ..RuntimeConfig::default()
        };
        let rt = Runtime::start(
            &st,
            "127.0.0.1:0".parse().expect("address"),
            rc,
            Arc::new(Answer200),
        )
        .expect("runtime");
        let a = rt.local_addr();
        udp_runtime = Some(rt);
        a
    } else {
        let saddr = st
            .listen(Protocol::Udp, "127.0.0.1:0".parse().expect("address"))
            .await
            .expect("listen");
        let (endpoint, mut requests) = Endpoint::start(st.clone(), st_in, config.clone());
        tokio::spawn(async move {
            while let Some(mut tx) = requests.recv().await {
                let ok = tx.request.response(200).build().expect("200");
                let _ = tx.respond(ok).await;
            }
        });
        server = Some(endpoint);
        saddr
    };
    let (ct, ct_in) = Transport::new(TransportConfig::default());
    ct.listen(Protocol::Udp, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("listen");
    let (client, _requests) = Endpoint::start(ct.clone(), ct_in, config);
    let target = Target::new(Protocol::Udp, saddr);
    let requests: Vec<Message> = (0..n).map(|i| request(Method::Options, saddr, i)).collect();
    let limit = Arc::new(Semaphore::new(window));
    let mut set = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    for req in requests {
        let permit = limit.clone().acquire_owned().await.expect("semaphore");
        let (client, target) = (client.clone(), target.clone());
        set.spawn(async move {
            let mut tx = client.send_request(req, target).await.ok()?;
            let r = loop {
                match tx.next().await {
                    Some(ClientEvent::Provisional(_)) => {}
                    Some(ClientEvent::Final(m)) => break m.status() == Some(200),
                    _ => break false,
                }
            };
            drop(permit);
            r.then_some(())
        });
    }
    let mut failed = 0;
    while let Some(r) = set.join_next().await {
        if r.ok().flatten().is_none() {
            failed += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    client.shutdown().await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    drop(udp_runtime);
    ct.shutdown().await;
    st.shutdown().await;
    (n as f64 / secs, failed)
}

/// The runtime's TU: 200 to everything, at once.
struct Answer200;

impl Service for Answer200 {
    fn handle_request(&self, request: Request<'_>) {
        if let Ok(ok) = request.message().response(200).build() {
            let _ = request.respond(ok);
        }
    }
}

/// Bytes per live server INVITE transaction (Proceeding, its request kept)
/// and per live client INVITE transaction (Calling, over UDP: timers A and B),
/// in a table alone, from the resident set growth.
fn memory(live: usize) -> Option<(f64, f64)> {
    let to: SocketAddr = "192.0.2.20:5060".parse().expect("address");
    let now = Instant::now();
    let wire: Vec<Vec<u8>> = (0..live)
        .map(|i| request(Method::Invite, to, i).to_bytes().to_vec())
        .collect();
    let requests: Vec<Message> = (0..live).map(|i| request(Method::Invite, to, i)).collect();
    let config = TableConfig {
        max_transactions: live * 2 + 1,
        ..TableConfig::default()
    };

    let mut table = TransactionTable::new(config);
    let before = resident()?;
    for b in &wire {
        // Each its own buffer, as the transport delivers them.
        let msg = Message::parse(bytes::Bytes::copy_from_slice(b)).expect("parse");
        match table.handle_message(msg, false, now) {
            Received::New { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        while table.poll_output().is_some() {}
    }
    let server = resident()?.saturating_sub(before) as f64 / live as f64;

    let mut clients = TransactionTable::new(config);
    let before = resident()?;
    for r in &requests {
        clients.start_client(r, false, now).expect("client");
        while clients.poll_output().is_some() {}
    }
    let client = resident()?.saturating_sub(before) as f64 / live as f64;
    assert_eq!(table.len() + clients.len(), 2 * live);
    Some((server, client))
}

/// Transactions per second (one thread) through two tables in memory: see
/// the header (`SIPLINK_BENCH_MODE=table`).
fn in_memory(n: usize) -> f64 {
    let to: SocketAddr = "192.0.2.20:5060".parse().expect("address");
    let config = TableConfig {
        max_transactions: n + 1,
        ..TableConfig::default()
    };
    let mut client = TransactionTable::new(config);
    let mut server = TransactionTable::new(config);
    let now = Instant::now();
    let t0 = Instant::now();
    for i in 0..n {
        let req = request(Method::Options, to, i);
        client.start_client(&req, false, now).expect("client");
        let mut wire = None;
        while let Some(out) = client.poll_output() {
            if let Output::Send { bytes, .. } = out {
                wire = Some(bytes);
            }
        }
        let wire = wire.expect("request sent");
        // A fresh buffer, as a socket read hands it over.
        let msg = Message::parse(bytes::Bytes::copy_from_slice(&wire)).expect("parse request");
        let Received::New { id, .. } = server.handle_message(msg, false, now) else {
            panic!("not a new server transaction");
        };
        let mut ok = None;
        while let Some(out) = server.poll_output() {
            if let Output::Deliver {
                event: TuEvent::Request(r),
                ..
            } = out
            {
                ok = Some(r.response(200).build().expect("200"));
            }
        }
        let ok = ok.expect("request delivered");
        server.handle_response(id, &ok, now).expect("respond");
        let mut wire = None;
        while let Some(out) = server.poll_output() {
            if let Output::Send { bytes, .. } = out {
                wire = Some(bytes);
            }
        }
        let wire = wire.expect("response sent");
        let msg = Message::parse(bytes::Bytes::copy_from_slice(&wire)).expect("parse response");
        assert!(matches!(
            client.handle_message(msg, false, now),
            Received::Matched { .. }
        ));
        let mut fin = false;
        while let Some(out) = client.poll_output() {
            if let Output::Deliver {
                event: TuEvent::Final(m),
                ..
            } = out
            {
                fin = m.status() == Some(200);
            }
        }
        assert!(fin, "client got no 200");
    }
    // Past timers J (64·T1) and K (T4): every transaction finishes.
    let later = now + Duration::from_secs(64);
    client.handle_timeout(later);
    server.handle_timeout(later);
    while client.poll_output().is_some() {}
    while server.poll_output().is_some() {}
    assert!(client.is_empty() && server.is_empty(), "transactions left");
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let n = env("SIPLINK_BENCH_TX", 20_000);
    if std::env::var("SIPLINK_BENCH_MODE").as_deref() == Ok("table") {
        let tps = in_memory(n);
        println!("siplink-transaction");
        println!("| figure | value |");
        println!("| --- | --- |");
        println!(
            "| non-INVITE transactions between two tables in memory, one thread ({n}, parse included, run to the end) | {tps:.0} tx/s |"
        );
        return;
    }
    let window = env("SIPLINK_BENCH_WINDOW", 64);
    let live = env("SIPLINK_BENCH_LIVE", 50_000);

    let (server_bytes, client_bytes) = memory(live).unwrap_or((f64::NAN, f64::NAN));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (tps, failed) = rt.block_on(throughput(n, window, false));
    let (rtps, rfailed) = rt.block_on(throughput(n, window, true));
    rt.shutdown_timeout(Duration::from_secs(1));

    println!("siplink-transaction");
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| non-INVITE transactions over loopback UDP, two endpoints ({n}, <= {window} in flight) | {tps:.0} tx/s ({failed} failed) |"
    );
    println!(
        "| the same, the server on the run-to-completion runtime (2 workers, shared socket) | {rtps:.0} tx/s ({rfailed} failed) |"
    );
    println!(
        "| memory per live server INVITE transaction ({live} live, request kept) | {server_bytes:.0} B |"
    );
    println!(
        "| memory per live client INVITE transaction over UDP ({live} live) | {client_bytes:.0} B |"
    );
}
