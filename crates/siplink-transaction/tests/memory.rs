//! Heap bytes per live transaction of each kind and state, measured with a
//! counting global allocator (`stats_alloc`, which wraps the system allocator
//! and needs no `unsafe` here): N transactions are put in a table and driven
//! to the state, and the net heap growth (bytes allocated − freed, including
//! the table's indexes and the received request buffers they keep) is divided
//! by N. Run with `--nocapture` to see the figures (docs/benchmarks.md).
//!
//! One test function only: the counter is process-wide, and other tests
//! running in parallel threads would count too.

use std::alloc::System;
use std::time::Instant;

use bytes::Bytes;
use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::{Received, TableConfig, TransactionId, TransactionTable};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 20_000;

/// The bytes of a request as a peer would send it (RFC 3261 §24.2-like).
fn request_bytes(method: &Method, i: usize) -> Vec<u8> {
    let mut b = MessageBuilder::request(method.clone(), "sip:bob@biloxi.example.com")
        .header(
            HeaderName::Via,
            format_args!("SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK{i:08}x;rport"),
        )
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "Bob <sip:bob@biloxi.example.com>")
        .header(
            HeaderName::From,
            "Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        )
        .header(
            HeaderName::CallId,
            format_args!("a84b4c76e66710-{i}@pc33.atlanta.example.com"),
        )
        .header(HeaderName::CSeq, format_args!("314159 {method}"))
        .header(HeaderName::Contact, "<sip:alice@pc33.atlanta.example.com>")
        .header(HeaderName::UserAgent, "siplink-memory-test/1.0");
    if *method == Method::Invite {
        b = b.body(
            "application/sdp",
            Bytes::from_static(
                b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            ),
        );
    }
    b.to_bytes().expect("request").to_vec()
}

/// Net heap growth per transaction of `fill`, which adds N transactions to a
/// fresh table (kept alive while measuring).
fn per_tx(fill: impl FnOnce(&mut TransactionTable)) -> f64 {
    per_request(N, fill)
}

/// Net heap growth per request of `fill` (`live` transactions are left).
fn per_request(live: usize, fill: impl FnOnce(&mut TransactionTable)) -> f64 {
    let mut table = TransactionTable::new(TableConfig {
        max_transactions: N * 2,
        ..TableConfig::default()
    });
    let region = Region::new(GLOBAL);
    fill(&mut table);
    while table.poll_output().is_some() {}
    let s = region.change();
    assert_eq!(table.len(), live, "the transactions left live");
    // stats_alloc already counts a realloc's growth in `bytes_allocated` (and
    // its shrinking in `bytes_deallocated`).
    let net = s.bytes_allocated as isize - s.bytes_deallocated as isize;
    net as f64 / N as f64
}

/// Server transactions: each request parsed from its own buffer (as the
/// transport hands it over), then the TU's `status` (0: no answer).
fn server(method: Method, status: u16) -> f64 {
    let texts: Vec<Vec<u8>> = (0..N).map(|i| request_bytes(&method, i)).collect();
    let t0 = Instant::now();
    per_tx(|table| {
        for text in &texts {
            let msg = Message::parse(Bytes::copy_from_slice(text)).expect("parse");
            let id = match table.handle_message(msg, false, t0) {
                Received::New { id, .. } => id,
                other => panic!("unexpected {other:?}"),
            };
            if status != 0 {
                answer(table, id, status, t0);
            }
            while table.poll_output().is_some() {}
        }
    })
}

fn answer(table: &mut TransactionTable, id: TransactionId, status: u16, t0: Instant) {
    let resp = {
        let req = table.server_request(id).expect("live");
        req.response_with_tag(status, Some("a6c85cf"))
            .header(HeaderName::ContentLength, 0)
            .build()
            .expect("response")
    };
    table.handle_response(id, &resp, t0).expect("accepted");
}

/// REGISTERs that the TU challenges statelessly (a 401 through
/// `handle_stateless_response`): nothing is left per request.
fn server_stateless() -> f64 {
    let texts: Vec<Vec<u8>> = (0..N)
        .map(|i| request_bytes(&Method::Register, i))
        .collect();
    let t0 = Instant::now();
    per_request(0, |table| {
        for text in &texts {
            let msg = Message::parse(Bytes::copy_from_slice(text)).expect("parse");
            let Received::New { id, .. } = table.handle_message(msg, false, t0) else {
                panic!("new");
            };
            let resp = table
                .stateless_response(table.server_request(id).expect("live"), 401)
                .header(
                    HeaderName::WwwAuthenticate,
                    "Digest realm=\"example.com\", nonce=\"abc\"",
                )
                .build()
                .expect("401");
            table
                .handle_stateless_response(id, resp, t0)
                .expect("stateless");
            while table.poll_output().is_some() {}
        }
    })
}

/// Client transactions over UDP, then the response `status` (0: none).
fn client(method: Method, status: u16) -> f64 {
    let requests: Vec<Message> = (0..N)
        .map(|i| Message::parse(Bytes::from(request_bytes(&method, i))).expect("parse"))
        .collect();
    let responses: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| {
            r.response_with_tag(status.max(100), Some("a6c85cf"))
                .to_bytes()
                .expect("response")
                .to_vec()
        })
        .collect();
    let t0 = Instant::now();
    per_tx(|table| {
        for (req, resp) in requests.iter().zip(&responses) {
            table.start_client(req, false, t0).expect("started");
            if status != 0 {
                let msg = Message::parse(Bytes::copy_from_slice(resp)).expect("parse");
                assert!(matches!(
                    table.handle_message(msg, false, t0),
                    Received::Matched { .. }
                ));
            }
            while table.poll_output().is_some() {}
        }
    })
}

#[test]
fn heap_bytes_per_live_transaction() {
    let rows = [
        (
            "server non-INVITE Trying (TU not answered)",
            server(Method::Register, 0),
        ),
        (
            "server non-INVITE Completed (UDP, 200 sent; timer J)",
            server(Method::Register, 200),
        ),
        (
            "server non-INVITE answered statelessly (401)",
            server_stateless(),
        ),
        (
            "server INVITE Proceeding (TU not answered)",
            server(Method::Invite, 0),
        ),
        (
            "server INVITE Completed (UDP, 486 sent; timers G, H)",
            server(Method::Invite, 486),
        ),
        (
            "server INVITE Accepted (200 sent; timer L)",
            server(Method::Invite, 200),
        ),
        (
            "client non-INVITE Trying (UDP; timers E, F)",
            client(Method::Register, 0),
        ),
        (
            "client non-INVITE Completed (UDP, 200 received; timer K)",
            client(Method::Register, 200),
        ),
        (
            "client INVITE Calling (UDP; timers A, B)",
            client(Method::Invite, 0),
        ),
        (
            "client INVITE Completed (UDP, 486 received; timer D)",
            client(Method::Invite, 486),
        ),
        (
            "client INVITE Accepted (200 received; timer M)",
            client(Method::Invite, 200),
        ),
    ];
    println!("| transaction, state | heap bytes per live transaction |");
    println!("|---|---:|");
    for (name, bytes) in &rows {
        println!("| {name} | {bytes:.0} |");
    }
    let get = |prefix: &str| {
        rows.iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|r| r.1)
            .expect("row")
    };
    // A completed server transaction keeps its key and response bytes, not
    // the request: clearly less than one that still holds the request.
    assert!(get("server non-INVITE Completed") < get("server non-INVITE Trying"));
    assert!(get("server INVITE Accepted") < get("server INVITE Proceeding"));
    // Completed clients keep no request bytes and no ACK template.
    assert!(get("client non-INVITE Completed") < get("client non-INVITE Trying"));
    assert!(get("client INVITE Accepted") < get("client INVITE Calling"));
    // A stateless answer keeps nothing: what is left over N requests is
    // the table's few bytes of capacity, far below one byte per request.
    let stateless = get("server non-INVITE answered statelessly");
    assert!(stateless.abs() < 1.0, "stateless: {stateless}");
    for (name, bytes) in &rows {
        if !name.contains("statelessly") {
            assert!(*bytes > 0.0 && *bytes < 8192.0, "{name}: {bytes}");
        }
    }
}
