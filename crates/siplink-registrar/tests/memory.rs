//! Memory per binding in the in-memory store, measured (not a unit test: run
//! by hand, ideally in release):
//!
//! ```text
//! cargo test --release -p siplink-registrar --test memory -- --ignored --nocapture
//! ```
//!
//! 100,000 users each register one contact through the registrar into an
//! `InMemoryStore`, twice: plain REGISTERs like the SIPp load run's (Contact
//! with `transport`, no User-Agent) into one store, then typical phone
//! REGISTERs (Contact with `transport` and `+sip.instance`, a User-Agent, a
//! 32-character Call-ID) into another. Two figures per binding, each the growth
//! around the fill divided by the bindings:
//!
//! * heap: bytes allocated and not freed, counted by a global allocator
//!   (`stats_alloc` around the system allocator; no `unsafe` here): what the
//!   store asked for, the figure to hold against Kamailio's shm `used`;
//! * RSS: the process's resident set (Linux `/proc/self/statm`), allocator
//!   overhead and fragmentation included.

use std::alloc::System;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use siplink_message::{HeaderName, MessageBuilder, Method};
use siplink_registrar::{
    Aor, Binding, InMemoryStore, LocationStore, Registrar, RegistrarConfig, RequestContext,
    Transport,
};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BINDINGS: usize = 100_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The in-memory store's futures are ready at once.
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn fill(registrar: &Registrar, store: &InMemoryStore, now: Instant, rich: bool) {
    block_on(async {
        for i in 0..BINDINGS {
            let a = (i >> 8) & 0xff;
            let b = i & 0xff;
            let source: SocketAddr = format!("10.1.{a}.{b}:5060").parse().unwrap();
            let mut contact = format!("<sip:user{i}@10.1.{a}.{b}:5060;transport=udp>");
            if rich {
                contact.push_str(&format!(
                    ";+sip.instance=\"<urn:uuid:{i:08x}-0000-4000-8000-000000000000>\""
                ));
            }
            let mut req = MessageBuilder::request(Method::Register, "sip:example.test")
                .header(
                    HeaderName::Via,
                    format!("SIP/2.0/UDP 10.1.{a}.{b}:5060;branch=z9hG4bK{i:016x}"),
                )
                .header(HeaderName::MaxForwards, 70)
                .header(HeaderName::To, format!("<sip:user{i}@example.test>"))
                .header(
                    HeaderName::From,
                    format!("<sip:user{i}@example.test>;tag={i:x}"),
                )
                .header(HeaderName::CallId, format!("{i:032x}"))
                .header(HeaderName::CSeq, "1 REGISTER")
                .header(HeaderName::Contact, contact)
                .header(HeaderName::Expires, 3600);
            if rich {
                req = req.header(HeaderName::UserAgent, "Phone/1.2.3");
            }
            let req = req.build().unwrap();
            let ctx = RequestContext {
                source,
                transport: Transport::Udp,
                flow: None,
                now,
                now_system: SystemTime::now(),
            };
            let d = registrar
                .handle_register_with(&req, &ctx, store)
                .await
                .unwrap();
            assert_eq!(d.status(), 200);
        }
    });
    assert_eq!(block_on(store.usage()).unwrap().bindings, BINDINGS);
}

#[test]
#[ignore = "measurement: run by hand with --ignored --nocapture"]
fn memory_per_binding_100k() {
    let mut config = RegistrarConfig::new(["example.test"]);
    config.auth = false;
    config.flood = None;
    let registrar = Registrar::new(config, None).unwrap();
    let now = Instant::now();
    let mut figures = Vec::new();
    let mut heaps = Vec::new();
    let mut stores = Vec::new();
    for (name, rich) in [
        ("plain (as the SIPp load)", false),
        ("phone (+sip.instance, User-Agent)", true),
    ] {
        let store = InMemoryStore::new();
        // The requests are built and dropped one at a time: only the store grows.
        let before = rss_bytes();
        let region = Region::new(GLOBAL);
        fill(&registrar, &store, now, rich);
        let s = region.change();
        let after = rss_bytes();
        // stats_alloc counts a realloc's growth as allocated, its shrinking as freed.
        let heap = s.bytes_allocated as f64 - s.bytes_deallocated as f64;
        let per = after.saturating_sub(before) as f64 / BINDINGS as f64;
        println!(
            "{BINDINGS} {name} bindings: heap +{:.1} MiB = {:.0} bytes per binding; \
             RSS +{:.1} MiB = {per:.0} bytes per binding",
            heap / (1 << 20) as f64,
            heap / BINDINGS as f64,
            after.saturating_sub(before) as f64 / (1 << 20) as f64,
        );
        let t = block_on(store.lookup(&Aor::parse("sip:user99999@example.test").unwrap(), now));
        assert_eq!(t.unwrap().len(), 1);
        figures.push(per);
        heaps.push(heap / BINDINGS as f64);
        stores.push(store); // kept: the next measurement must not reuse its memory
    }
    println!("size_of::<Binding>() = {}", std::mem::size_of::<Binding>());
    // A regression guard well above the measured figures.
    assert!(
        figures.iter().all(|&p| p < 4096.0),
        "{figures:?} RSS bytes per binding"
    );
    assert!(
        heaps.iter().all(|&p| p < 4096.0),
        "{heaps:?} heap bytes per binding"
    );
}
