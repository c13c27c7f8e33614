//! Parser benchmarks: siplink-message against rsip, in one run.
//!
//! `cargo bench --bench message`. For each message: plain parse, parse plus the
//! headers a proxy reads (top Via, To tag, Call-ID, CSeq, Max-Forwards, Route),
//! and serialise; the same through rsip.
//!
//! Instruction counts: with `SIPLINK_BENCH_PROBE=<message>/<case>/<iterations>`
//! (case `siplink-parse`, `rsip-parse`, `siplink-proxy` or `rsip-proxy`) the binary
//! runs only that loop and exits, for `valgrind --tool=callgrind`; run it twice with
//! different iteration counts and divide the difference (see docs/benchmarks.md).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use rsip::prelude::*;
use siplink::message::{HeaderName, Message};

const REGISTER: &str = "REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1\r\n\
Supported: path, outbound, gruu\r\n\
User-Agent: siplink-bench/0.1\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\r\n";

const INVITE_HEAD: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.atlanta.example.com;lr>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 2 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
User-Agent: siplink-bench/0.1\r\n\
Content-Type: application/sdp\r\n";

const INVITE_SDP: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n";

const OK200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.3\r\n\
Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Record-Route: <sip:server10.biloxi.example.com;lr>, <sip:bigbox3.site3.atlanta.example.com;lr>\r\n\
Content-Length: 0\r\n\r\n";

fn invite() -> String {
    format!(
        "{INVITE_HEAD}Content-Length: {}\r\n\r\n{INVITE_SDP}",
        INVITE_SDP.len()
    )
}

fn large() -> String {
    let mut s = String::from(
        "INVITE sip:+15551234567@gw.carrier.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP edge1.example.com:5060;branch=z9hG4bK-524287-1---77ba7a5c;rport\r\n\
Via: SIP/2.0/TLS core.example.com;branch=z9hG4bK9f8e7d6c.1;received=198.51.100.7\r\n\
Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;received=203.0.113.9;rport=51234\r\n\
Max-Forwards: 68\r\n\
Route: <sip:edge1.example.com;lr;transport=udp>, <sip:sbc.carrier.example.net;lr>\r\n\
Record-Route: <sip:core.example.com;lr;r2=on;transport=tls>\r\n\
Record-Route: <sip:core.example.com;lr;r2=on;transport=ws>\r\n\
From: \"Alice Liddell\" <sip:alice@example.com>;tag=0a1b2c3d4e\r\n\
To: <sip:+15551234567@gw.carrier.example.net;user=phone>\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@df7jal23ls0d.invalid\r\n\
CSeq: 101 INVITE\r\n\
Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws;ob>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"\r\n\
Allow: INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS, REFER, NOTIFY\r\n\
Supported: path, outbound, gruu, timer, replaces, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
P-Asserted-Identity: \"Alice Liddell\" <sip:alice@example.com>\r\n\
P-Preferred-Identity: <tel:+15550001111>\r\n\
Privacy: none\r\n\
Accept: application/sdp, application/dtmf-relay\r\n\
Accept-Language: en, de;q=0.5\r\n\
Organization: Example Org\r\n\
Subject: benchmark call\r\n\
User-Agent: siplink-bench/0.1 (browser phone)\r\n\
X-Account-Id: 8f14e45fceea167a5a36dedd4bea2543\r\n\
X-Tenant: tenant-42\r\n\
X-Trace: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"5f8a3b2c1d0e9f8a7b6c5d4e3f2a1b0c\", uri=\"sip:+15551234567@gw.carrier.example.net\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n\
Timestamp: 54\r\n\
Content-Type: application/sdp\r\n",
    );
    let sdp = "v=0\r\no=- 4858400366386516234 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2\r\na=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\na=setup:actpass\r\n";
    s.push_str(&format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
    s
}

/// The headers a proxy reads for every request it forwards.
fn siplink_proxy_headers(m: &Message) -> usize {
    let via = m.top_via().expect("via");
    let tag = m.to_tag().expect("to").map_or(0, str::len);
    let call_id = m.call_id().expect("call-id").len();
    let cseq = m.cseq().expect("cseq").seq as usize;
    let mf = m.max_forwards().expect("max-forwards").unwrap_or(70) as usize;
    let routes = m.route().expect("route").len();
    via.branch().map_or(0, str::len) + tag + call_id + cseq + mf + routes
}

fn rsip_proxy_headers(m: &rsip::SipMessage) -> usize {
    let via = m.via_header().expect("via").typed().expect("via typed");
    let tag = m
        .to_header()
        .expect("to")
        .tag()
        .expect("to tag")
        .map_or(0, |t| t.value().len());
    let call_id = m.call_id_header().expect("call-id").value().len();
    let cseq = m
        .cseq_header()
        .expect("cseq")
        .typed()
        .expect("cseq typed")
        .seq as usize;
    let mf = m
        .max_forwards_header()
        .map(|h| u32::try_from(h.clone()).map_or(70, |n| n as usize))
        .unwrap_or(70);
    let mut routes = 0;
    for h in m.headers().iter() {
        if let rsip::Header::Route(r) = h {
            routes += r.typed().expect("route typed").uris().len();
        }
    }
    via.branch().map_or(0, |b| b.to_string().len()) + tag + call_id + cseq + mf + routes
}

fn cases() -> [(&'static str, String); 4] {
    [
        ("register", REGISTER.to_owned()),
        ("invite_sdp", invite()),
        ("ok200", OK200.to_owned()),
        ("large_30_headers", large()),
    ]
}

/// Runs one loop `n` times without criterion (for instruction counting).
fn probe(spec: &str) {
    let mut it = spec.split('/');
    let (Some(name), Some(case), Some(n)) = (it.next(), it.next(), it.next()) else {
        panic!("SIPLINK_BENCH_PROBE=<message>/<case>/<iterations>");
    };
    let n: usize = n.parse().expect("iterations");
    let cases = cases();
    let text = &cases
        .iter()
        .find(|(m, _)| *m == name)
        .expect("message name")
        .1;
    let bytes = Bytes::copy_from_slice(text.as_bytes());
    let mut acc = 0usize;
    for _ in 0..n {
        acc += match case {
            "siplink-parse" => Message::parse(black_box(bytes.clone()))
                .expect("parse")
                .header_count(),
            "rsip-parse" => rsip::SipMessage::try_from(black_box(text.as_bytes()))
                .expect("parse")
                .headers()
                .iter()
                .count(),
            "siplink-proxy" => {
                siplink_proxy_headers(&Message::parse(black_box(bytes.clone())).expect("parse"))
            }
            "rsip-proxy" => rsip_proxy_headers(
                &rsip::SipMessage::try_from(black_box(text.as_bytes())).expect("parse"),
            ),
            other => panic!("unknown case {other}"),
        };
    }
    black_box(acc);
}

fn bench(c: &mut Criterion) {
    for (name, text) in cases() {
        let text = text.as_str();
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        // Both parsers must accept the message and agree on what a proxy reads.
        let ours = Message::parse(bytes.clone()).expect("siplink parses");
        assert!(ours.header_count() >= 8);
        let theirs = rsip::SipMessage::try_from(text.as_bytes()).expect("rsip parses");
        assert_eq!(
            siplink_proxy_headers(&ours),
            rsip_proxy_headers(&theirs),
            "{name}: proxy headers disagree"
        );
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("siplink/parse", |b| {
            b.iter(|| Message::parse(black_box(bytes.clone())).expect("parse"))
        });
        g.bench_function("rsip/parse", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(text.as_bytes())).expect("parse"))
        });
        g.bench_function("siplink/parse+proxy_headers", |b| {
            b.iter(|| {
                let m = Message::parse(black_box(bytes.clone())).expect("parse");
                siplink_proxy_headers(&m)
            })
        });
        g.bench_function("rsip/parse+proxy_headers", |b| {
            b.iter(|| {
                let m = rsip::SipMessage::try_from(black_box(text.as_bytes())).expect("parse");
                rsip_proxy_headers(&m)
            })
        });
        g.bench_function("siplink/serialise_edited", |b| {
            b.iter(|| {
                let mut m = Message::parse(black_box(bytes.clone())).expect("parse");
                m.set_header(HeaderName::MaxForwards, "69");
                m.to_bytes()
            })
        });
        g.bench_function("rsip/serialise", |b| {
            b.iter(|| black_box(&theirs).to_string())
        });
        g.bench_function("siplink/serialise", |b| {
            b.iter(|| black_box(&ours).to_bytes())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("SIPLINK_BENCH_PROBE") {
        probe(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
