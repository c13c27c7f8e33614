//! Load run (by hand, about 4 minutes):
//!
//! ```text
//! cargo test -p siplink-register --release --test load_kamailio -- --ignored --nocapture
//! ```
//!
//! 10,000 registrations with digest authentication (user 2NNNN, password
//! pw-2NNNN) from one `RegistrationService` over UDP to a local Kamailio
//! registrar that grants 120 s. Checks that all reach Registered, then counts
//! the REGISTERs Kamailio receives per second over one full refresh cycle
//! (130 s): no second may exceed 3x the mean. Prints the RSS growth per
//! registration and the CPU time of this process (client side).
//! `SIPLINK_LOAD_N` overrides the count.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use siplink_auth::ClientCredentials;
use siplink_register::{ManagerConfig, RegistrationService, ServiceConfig};
use siplink_testkit::work_dir;
use siplink_transport::Protocol;
use support::{KamOptions, KamRegistrar, client, is_registered, kamailio_available};

const GRANT: u32 = 120;
const START_RATE: f64 = 100.0;
const WINDOW: Duration = Duration::from_secs(130);

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// utime + stime of this process, in seconds.
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ
}

/// Per-second counter of the REGISTERs in Kamailio's log.
struct Counter {
    seen: usize,
}

impl Counter {
    fn take(&mut self, kam: &KamRegistrar) -> usize {
        let n = kam.register_lines().len();
        let d = n - self.seen;
        self.seen = n;
        d
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load run by hand (about 4 minutes)"]
async fn ten_thousand_registrations_against_kamailio() {
    if !kamailio_available() {
        return;
    }
    let n: usize = std::env::var("SIPLINK_LOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = work_dir("register-load");
    let kam = KamRegistrar::start(
        &dir,
        KamOptions {
            auth: true,
            min_expires: GRANT,
            max_expires: GRANT,
        },
    );
    let c = client(Duration::from_millis(500)).await;
    let (svc, _events) = RegistrationService::start(
        c.endpoint.clone(),
        ServiceConfig {
            manager: ManagerConfig {
                start_rate: START_RATE,
                ..ManagerConfig::default()
            },
            ..ServiceConfig::default()
        },
    );
    let rss0 = rss_kib();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mut watches = Vec::with_capacity(n);
    for i in 0..n {
        let user = format!("{}", 20_000 + i);
        let mut cfg = c
            .config(&user, kam.port, Protocol::Udp)
            .with_credentials(ClientCredentials::password(&user, format!("pw-{user}")));
        cfg.expires = GRANT;
        let (_id, w) = svc.add(cfg).await.unwrap();
        watches.push(w);
    }
    let mut counter = Counter { seen: 0 };
    let mut start_rates = Vec::new();
    let limit = Duration::from_secs_f64(n as f64 / START_RATE + 60.0);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        start_rates.push(counter.take(&kam));
        let registered = watches
            .iter()
            .filter(|w| is_registered(&w.borrow()))
            .count();
        if registered == n {
            break;
        }
        assert!(
            t0.elapsed() < limit,
            "only {registered}/{n} registered after {:?}",
            t0.elapsed()
        );
    }
    let all_registered = t0.elapsed();
    // Kamailio's own count, not only our view.
    assert_eq!(kam.location_contacts(), n as u64, "bindings at Kamailio");
    let rss1 = rss_kib();
    let cpu1 = cpu_secs();
    println!(
        "{n} registered after {all_registered:.1?}; start-up REGISTERs/s max {}",
        start_rates.iter().max().unwrap()
    );

    // One refresh cycle.
    let w0 = Instant::now();
    let mut rates = Vec::new();
    while w0.elapsed() < WINDOW {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rates.push(counter.take(&kam));
    }
    let cpu2 = cpu_secs();
    let still = watches
        .iter()
        .filter(|w| is_registered(&w.borrow()))
        .count();
    let total: usize = rates.iter().sum();
    let mean = total as f64 / rates.len() as f64;
    let max = *rates.iter().max().unwrap();
    let mut histogram = BTreeMap::new();
    for r in &rates {
        *histogram.entry(r / 10 * 10).or_insert(0) += 1;
    }
    let stats = svc.stats().await.unwrap();
    println!(
        "refresh window {WINDOW:?}: {total} REGISTERs, mean {mean:.1}/s, max {max}/s ({:.2}x mean)",
        max as f64 / mean
    );
    println!("per-second histogram (bucket of 10 -> seconds): {histogram:?}");
    println!(
        "RSS {rss0} KiB -> {rss1} KiB: {:.2} KiB per registration",
        (rss1 - rss0) as f64 / n as f64
    );
    println!(
        "client CPU: {:.1} s during start-up ({:.1?}), {:.1} s during the {WINDOW:?} refresh window ({:.1} % of one core)",
        cpu1 - cpu0,
        all_registered,
        cpu2 - cpu1,
        (cpu2 - cpu1) / WINDOW.as_secs_f64() * 100.0
    );
    println!("REGISTERs sent in all: {}", stats.registers_sent);
    assert_eq!(still, n, "registrations lost during the refresh window");
    assert!(
        total >= n * 9 / 10,
        "a refresh cycle saw only {total} REGISTERs"
    );
    assert!(
        max as f64 <= 3.0 * mean,
        "burst: {max}/s vs mean {mean:.1}/s"
    );

    assert_eq!(kam.location_contacts(), n as u64, "bindings at Kamailio");
    let t = Instant::now();
    svc.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "shutdown (unregister all) took {:.1?}; bindings left at Kamailio: {}",
        t.elapsed(),
        kam.location_contacts()
    );
    c.stop().await;
}
