//! Each launcher against the real program (skipped without it unless
//! `SIPLINK_INTEROP` is set).

use std::time::Duration;

use siplink_testkit::{
    Baresip, Chromium, Kamailio, Redis, Scan, Sipp, free_port, require, udp_bound, work_dir,
};

#[test]
fn sipp_uac_against_sipp_uas() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("testkit-sipp");
    let mut uas = Sipp::builder(&dir, "uas")
        .builtin("uas")
        .calls(3)
        .spawn_listening();
    assert!(udp_bound(uas.port()));
    let mut uac = Sipp::builder(&dir, "uac")
        .builtin("uac")
        .remote(format!("127.0.0.1:{}", uas.port()))
        .calls(3)
        .args(["-r", "10"])
        .spawn();
    uac.expect_success_blocking(Duration::from_secs(30));
    uas.expect_success_blocking(Duration::from_secs(10));
    assert!(uac.messages().contains("INVITE sip:"), "{}", uac.logs());
}

#[test]
fn sipp_failure_carries_its_logs() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("testkit-sipp-fail");
    // Nothing answers: SIPp's own 2 s timeout ends the call as a failure.
    let mut uac = Sipp::builder(&dir, "lonely")
        .builtin("uac")
        .remote(format!("127.0.0.1:{}", free_port()))
        .timeout(Duration::from_secs(2))
        .spawn();
    let code = uac.wait_blocking(Duration::from_secs(20));
    assert_ne!(code, Some(0));
    let logs = uac.logs();
    assert!(logs.contains("lonely_screen.log"), "{logs}");
}

const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:@PORT@
mpath="@MODULES@"
loadmodule "sl.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "pv.so"
loadmodule "xlog.so"
modparam("ctl", "binrpc", "@CTL@")
request_route {
    xlog("L_INFO", "TESTKIT $rm\n");
    sl_send_reply("200", "OK");
}
"#;

#[test]
fn kamailio_from_a_template_with_kamcmd_and_restart() {
    if !require("kamailio", "-v", "kamailio") || !require("kamcmd", "-V", "kamailio") {
        return;
    }
    let port = free_port();
    let mut kam = Kamailio::builder(&work_dir("testkit-kamailio"))
        .config(KAMAILIO_CFG)
        .set("PORT", port)
        .memory(32, 4)
        .wait_udp(port)
        .wait_ctl()
        .start();
    let version = kam.kamcmd(&["core.version"]).unwrap();
    assert!(version.contains("kamailio"), "{version}");
    assert!(kam.kamcmd(&["no.such.command"]).is_err());
    // The rendered file has every placeholder filled.
    let cfg = std::fs::read_to_string(kam.dir().join("kamailio.cfg")).unwrap();
    assert!(cfg.contains(&format!("listen=udp:127.0.0.1:{port}")));
    kam.kill();
    assert!(!kam.running());
    kam.restart();
    assert!(kam.running());
    // OPTIONS answered by the restarted instance.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sock.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKtk1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: tk1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(options.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
    assert!(kam.log().contains("TESTKIT OPTIONS"), "{}", kam.log());
    kam.stop();
    assert!(!udp_bound(port), "a worker outlived the stop");
}

#[test]
fn redis_answers_and_forgets() {
    if !require("redis-server", "--version", "redis-server") {
        return;
    }
    let mut redis = Redis::start(&work_dir("testkit-redis"));
    assert_eq!(redis.command(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(redis.command(&["GET", "k"]), "$1\r\nv\r\n");
    redis.restart();
    assert_eq!(redis.command(&["GET", "k"]), "$-1\r\n", "nothing persisted");
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
}

#[test]
fn baresip_starts_listening_and_stops() {
    if !require("baresip", "-h", "baresip") {
        return;
    }
    let mut ua = Baresip::builder(&work_dir("testkit-baresip"))
        .account(&format!(
            "<sip:u@example.test>;auth_pass=p;outbound=\"sip:127.0.0.1:{}\";regint=0",
            free_port()
        ))
        .quit_after(30)
        .start();
    assert!(udp_bound(ua.port()));
    ua.stop();
    assert!(!ua.running());
}

#[test]
fn chromium_runs_a_page_and_a_devtools_endpoint() {
    if !require("chromium", "--version", "chromium") {
        return;
    }
    let dir = work_dir("testkit-chromium");
    let page = dir.join("page.html");
    std::fs::write(
        &page,
        "<html><body><script>document.body.setAttribute('data-rtc', \
         typeof RTCPeerConnection)</script></body></html>",
    )
    .unwrap();
    let dom = Chromium::builder(&dir).dump_dom(
        &format!("file://{}", page.display()),
        Duration::from_secs(60),
    );
    assert!(dom.contains("data-rtc=\"function\""), "{dom}");
    let mut browser = Chromium::builder(&dir).start("about:blank");
    let version = browser.devtools_get("/json/version").unwrap();
    assert!(version.contains("webSocketDebuggerUrl"), "{version}");
    browser.stop();
    assert!(!browser.running());
}

#[test]
fn svwar_is_bounded_in_time() {
    if !require("svwar", "--version", "sipvicious") {
        return;
    }
    let dir = work_dir("testkit-svwar");
    // Nothing listens: svwar gives up within its --maximumtime, well inside the limit.
    let t0 = std::time::Instant::now();
    let out = Scan::svwar(free_port(), "100-110")
        .max_time(2)
        .run(&dir, Duration::from_secs(20));
    assert!(t0.elapsed() < Duration::from_secs(21));
    assert!(!out.timed_out, "{out:?}");
    println!("{out:?}");
}
