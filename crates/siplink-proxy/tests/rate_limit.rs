//! Per-source request-rate limiting and the scanner filter over real UDP
//! sockets on loopback (sources 127.0.0.2-5: Linux routes all of 127/8).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use support::{free_port, head, proxy};

#[derive(Debug, Default)]
struct Answers {
    ok: usize,
    refused: usize,
    retry_after: Vec<u32>,
    other: usize,
}

/// Sends `n` OPTIONS to the proxy itself from `source` (new transaction
/// each), with `user_agent`, and collects the answers until 700 ms of
/// silence.
async fn burst(proxy: SocketAddr, source: &str, n: usize, user_agent: &str) -> Answers {
    let sock = UdpSocket::bind((source, 0)).await.unwrap();
    let me = sock.local_addr().unwrap();
    for k in 0..n {
        let tag = format!("{}-{k}-{}", me.port(), rand_part());
        let msg = format!(
            "OPTIONS sip:siplink.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@siplink.test>;tag={tag}\r\n\
             To: <sip:siplink.test>\r\n\
             Call-ID: {tag}@rate.test\r\n\
             CSeq: 1 OPTIONS\r\n\
             User-Agent: {user_agent}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), proxy).await.unwrap();
    }
    let mut answers = Answers::default();
    let mut buf = vec![0u8; 65_536];
    while let Ok(Ok((len, _))) =
        tokio::time::timeout(Duration::from_millis(700), sock.recv_from(&mut buf)).await
    {
        let text = String::from_utf8_lossy(&buf[..len]);
        if text.starts_with("SIP/2.0 200") {
            answers.ok += 1;
        } else if text.starts_with("SIP/2.0 503") {
            answers.refused += 1;
            let ra = text
                .lines()
                .find_map(|l| l.strip_prefix("Retry-After:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a 503 carries Retry-After");
            answers.retry_after.push(ra);
        } else {
            answers.other += 1;
        }
    }
    answers
}

fn rand_part() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

fn config(port: u16, security: &str) -> String {
    format!("{}\n[security]\n{security}\n", head(port))
}

#[tokio::test]
async fn a_flooding_source_is_refused_then_dropped_while_others_are_answered() {
    let port = free_port();
    let _p = proxy(&config(
        port,
        "exempt = [\"127.0.0.4\"]\n\
         rate_limit = { requests_per_second = 5, burst = 10, cooldown = 30 }",
    ))
    .await;
    let to: SocketAddr = ([127, 0, 0, 1], port).into();

    // 100 at once: the burst is answered, one 503 with Retry-After, the rest
    // is silence (and no 500 from an abandoned transaction either).
    let flood = burst(to, "127.0.0.2", 100, "flood").await;
    assert!((10..=12).contains(&flood.ok), "{flood:?}");
    assert!((1..=2).contains(&flood.refused), "{flood:?}");
    assert_eq!(flood.other, 0, "{flood:?}");
    assert!(
        flood.retry_after.iter().all(|&s| (1..=30).contains(&s)),
        "{flood:?}"
    );
    assert_eq!(flood.retry_after[0], 30);

    // Another source is answered all along...
    let phone = burst(to, "127.0.0.3", 8, "Linphone/5.2").await;
    assert_eq!((phone.ok, phone.refused), (8, 0), "{phone:?}");
    // ...the flooder stays limited (at most one refusal a second)...
    let again = burst(to, "127.0.0.2", 20, "flood").await;
    assert_eq!(again.ok, 0, "{again:?}");
    assert!(again.refused <= 1, "{again:?}");
    // ...and an exempt source is never limited.
    let pbx = burst(to, "127.0.0.4", 150, "Asterisk PBX").await;
    assert_eq!((pbx.ok, pbx.refused), (150, 0), "{pbx:?}");
}

#[tokio::test]
async fn scanner_user_agents_are_dropped_only_when_asked() {
    let off_port = free_port();
    let _off = proxy(&config(off_port, "")).await;
    let off: SocketAddr = ([127, 0, 0, 1], off_port).into();
    let scan = burst(off, "127.0.0.5", 3, "friendly-scanner").await;
    assert_eq!(scan.ok, 3, "filter off: a scanner is answered like anyone");

    let on_port = free_port();
    let _on = proxy(&config(on_port, "drop_scanners = true")).await;
    let on: SocketAddr = ([127, 0, 0, 1], on_port).into();
    for ua in ["friendly-scanner", "SIPVicious 0.3.4", "sipcli/v1.8"] {
        let scan = burst(on, "127.0.0.5", 3, ua).await;
        assert_eq!((scan.ok, scan.refused, scan.other), (0, 0, 0), "{ua}");
    }
    // The same source with an honest User-Agent is answered.
    let phone = burst(on, "127.0.0.5", 3, "Yealink SIP-T46S").await;
    assert_eq!(phone.ok, 3);
}

#[tokio::test]
async fn a_reload_turns_the_limit_on_and_off() {
    let port = free_port();
    let off = config(port, "rate_limit = { enabled = false }");
    let p = proxy(&off).await;
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let all = burst(to, "127.0.0.6", 60, "flood").await;
    assert_eq!(all.ok, 60, "off: {all:?}");

    let on = config(port, "rate_limit = { requests_per_second = 1, burst = 5 }");
    p.reload(siplink_proxy::Config::from_toml(&on).unwrap())
        .await
        .unwrap();
    let limited = burst(to, "127.0.0.6", 60, "flood").await;
    assert!((5..=6).contains(&limited.ok), "on: {limited:?}");
    assert_eq!(limited.refused, 1, "on: {limited:?}");

    p.reload(siplink_proxy::Config::from_toml(&off).unwrap())
        .await
        .unwrap();
    let all = burst(to, "127.0.0.6", 60, "flood").await;
    assert_eq!(all.ok, 60, "off again: {all:?}");
}
