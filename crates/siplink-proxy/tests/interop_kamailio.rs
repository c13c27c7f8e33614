//! Outbound registration to a real Kamailio acting as the customer's PBX:
//! the proxy registers (digest), the binding shows in Kamailio, a user's call
//! to an extension goes through Kamailio (which challenges the INVITE) to a
//! SIPp extension, a call from a Kamailio extension reaches the proxy's user
//! through the registered contact, Test Connection reports healthy and
//! wrong-password cases, and shutdown unregisters. And Kamailio's `uac`
//! module as an inbound-registration PBX over TCP: killed, its connection
//! shows down within a second and its calls go to the next connection.
//!
//! Skipped when kamailio or sipp is missing, unless `SIPLINK_INTEROP=1`.

mod support;

use std::path::Path;
use std::time::Duration;

use siplink_proxy::{Config, ConnectionState};
use siplink_testkit::Kamailio;
use support::*;

const LIMIT: Duration = Duration::from_secs(45);
const PASSWORD: &str = "office-secret";

fn kamailio(dir: &Path, port: u16, ext_port: u16) -> Kamailio {
    Kamailio::builder(dir)
        .config_file(scenario("kamailio-pbx.cfg"))
        .set("PORT", port)
        .set("EXT_PORT", ext_port)
        .set("USER", "proxy")
        .set("PASSWORD", PASSWORD)
        .memory(64, 8)
        .wait_udp(port)
        .wait_ctl()
        .start()
}

fn ul_dump(kam: &Kamailio) -> String {
    kam.kamcmd(&["ul.dump"]).unwrap_or_else(|e| e)
}

fn office_config(p: u16, k: u16, password: &str) -> String {
    format!(
        r#"{}
[[connections]]
name = "office"
kind = "outbound-registration"
addresses = ["127.0.0.1:{k}"]
domain = "pbx.test"
username = "proxy"
password = "{password}"
dial_patterns = ["4[0-9]{{3}}"]
deliver_to = "1001"
registration = {{ expires = 60 }}
"#,
        head(p)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_registration_to_kamailio_carries_calls_both_ways() {
    outbound_registration_to_kamailio_carries_calls_both_ways_on("classic").await;
}

/// On the engine core: the phone's call to the number presents the
/// registered identity (the engine's `View::caller_identity`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_registration_to_kamailio_carries_calls_both_ways_on_the_engine() {
    outbound_registration_to_kamailio_carries_calls_both_ways_on("engine").await;
}

async fn outbound_registration_to_kamailio_carries_calls_both_ways_on(core: &str) {
    if !require("kamailio", "-v", "kamailio") || !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("kamailio");
    let (p, k, ext, phone_port) = (free_port(), free_port(), free_port(), free_port());
    let mut kam = kamailio(&dir, k, ext);
    assert!(kam.running(), "kamailio exited\n{}", kam.log());

    let config = office_config(p, k, PASSWORD)
        .replace("[proxy]\n", &format!("[proxy]\ncore = \"{core}\"\n"));
    let proxy = proxy(&config).await;
    let registered = eventually(Duration::from_secs(10), || {
        let proxy = proxy.clone();
        async move {
            proxy
                .status()
                .await
                .iter()
                .any(|s| s.name == "office" && s.state == ConnectionState::Registered)
        }
    })
    .await;
    let kam_log = || kam.log();
    assert!(
        registered,
        "not registered to Kamailio: {:?}\n{}",
        proxy.status().await,
        kam_log()
    );
    let dump = ul_dump(&kam);
    assert!(
        dump.contains(&format!("sip:proxy@127.0.0.1:{p}")),
        "binding not in Kamailio:\n{dump}"
    );

    // Test Connection, healthy: reachable, OPTIONS 200, REGISTER accepted.
    let report = proxy.test_connection("office").await.unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(
        report.to_string().contains("credentials accepted"),
        "{report}"
    );

    // 1001's phone (a SIPp UAS) registers to the proxy.
    let mut phone = sipp(&dir, "phone", phone_port, &["-sf", &scenario("uas.xml")]);
    let mut reg = sipp(
        &dir,
        "register",
        free_port(),
        &[
            "-sf",
            &scenario("register.xml"),
            "-key",
            "user",
            "1001",
            "-key",
            "contact",
            &format!("sip:1001@127.0.0.1:{phone_port}"),
            "-au",
            "1001",
            "-ap",
            "pw1001",
            "-auth_uri",
            "siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    reg.expect_success(LIMIT).await;

    // 1002 calls extension 4001 behind the PBX: the proxy answers Kamailio's
    // 407 with the connection's credentials.
    let mut extension = sipp(&dir, "extension", ext, &["-sf", &scenario("uas.xml")]);
    let mut call = sipp(
        &dir,
        "call",
        free_port(),
        &[
            "-sf",
            &scenario("phone_call.xml"),
            "-s",
            "4001",
            "-key",
            "user",
            "1002",
            "-au",
            "1002",
            "-ap",
            "pw1002",
            "-auth_uri",
            "4001@siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    call.expect_success(LIMIT).await;
    extension.expect_success(LIMIT).await;
    let seen = std::fs::read_to_string(dir.join("extension_messages.log")).unwrap();
    assert!(
        seen.contains("From: <sip:proxy@pbx.test>"),
        "the call did not go as the registered identity:\n{seen}"
    );

    // An extension of the PBX calls the proxy's account: Kamailio finds our
    // Contact in its location table; the proxy rings 1001 (deliver_to).
    let mut from_pbx = sipp(
        &dir,
        "from_pbx",
        free_port(),
        &[
            "-sf",
            &scenario("pbx_call.xml"),
            "-key",
            "ruri",
            "sip:proxy@pbx.test",
            &format!("127.0.0.1:{k}"),
        ],
    );
    from_pbx.expect_success(LIMIT).await;
    phone.expect_success(LIMIT).await;

    // Shutdown unregisters: the binding leaves Kamailio.
    proxy.shutdown().await;
    let gone = eventually(Duration::from_secs(5), || {
        let kam = &kam;
        async move { !ul_dump(kam).contains(&format!("sip:proxy@127.0.0.1:{p}")) }
    })
    .await;
    assert!(gone, "still registered after shutdown:\n{}", ul_dump(&kam));
    drop(kam);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_reports_wrong_credentials_and_a_stopped_pbx() {
    if !require("kamailio", "-v", "kamailio") {
        return;
    }
    let dir = work_dir("kamailio-tc");
    let (p, k) = (free_port(), free_port());
    let mut kam = kamailio(&dir, k, free_port());

    // Wrong password: reachable, but the REGISTER is rejected.
    let config = Config::from_toml(&office_config(p, k, "not-the-password")).unwrap();
    let report = siplink_proxy::connection_test::test_connection(&config, "office")
        .await
        .unwrap();
    assert!(!report.is_ok(), "{report}");
    let failed = report.first_failure().unwrap();
    assert!(failed.name.starts_with("register as proxy"), "{report}");
    let text = report.to_string();
    assert!(text.contains("credentials rejected"), "{text}");
    assert!(text.contains("check them (and the realm)"), "{text}");

    // Healthy, standalone (no running proxy): OK.
    let config = Config::from_toml(&office_config(p, k, PASSWORD)).unwrap();
    let report = siplink_proxy::connection_test::test_connection(&config, "office")
        .await
        .unwrap();
    assert!(report.is_ok(), "{report}");

    // The PBX stopped: OPTIONS times out; the fix names an offline PBX.
    kam.stop();
    let report = siplink_proxy::connection_test::test_connection(&config, "office")
        .await
        .unwrap();
    assert!(!report.is_ok(), "{report}");
    let text = report.to_string();
    assert!(text.contains("OPTIONS: timed out"), "{text}");
    assert!(text.contains("offline"), "{text}");
    assert!(text.contains("register: skipped"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_registrations_and_unregisters_removed_ones() {
    if !require("kamailio", "-v", "kamailio") {
        return;
    }
    let dir = work_dir("kamailio-reload");
    let (p, k) = (free_port(), free_port());
    let kam = kamailio(&dir, k, free_port());
    let registers = || kam.log().matches("SIPLINK-REGISTER").count();
    let base = office_config(p, k, PASSWORD);
    let proxy = proxy(&base).await;
    let up = || {
        let proxy = proxy.clone();
        async move {
            proxy
                .status()
                .await
                .iter()
                .any(|s| s.name == "office" && s.state == ConnectionState::Registered)
        }
    };
    assert!(
        eventually(Duration::from_secs(10), up).await,
        "not registered"
    );
    let before = registers();

    // A new connection; "office" unchanged: no new REGISTER, still registered.
    let more = format!(
        "{base}\n[[connections]]\nname = \"carrier\"\nkind = \"trunk\"\naddresses = [\"127.0.0.1:{}\"]\ndial_patterns = [\"0[0-9]+\"]\nprobe = {{ enabled = false }}\n",
        free_port()
    );
    proxy
        .reload(Config::from_toml(&more).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        registers(),
        before,
        "an unchanged registration registered again"
    );
    let names: Vec<String> = proxy.status().await.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["office", "carrier"]);
    assert!(up().await);

    // A bad configuration is refused and changes nothing.
    let bad = more.replace("0[0-9]+", "0[0-9");
    let err = proxy
        .reload(Config::from_toml(&bad).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dial_patterns[0]"), "{err}");
    assert!(up().await);

    // "office" removed: it unregisters from Kamailio.
    let without = more.replace("name = \"office\"", "name = \"office\"\nenabled = false");
    proxy
        .reload(Config::from_toml(&without).unwrap())
        .await
        .unwrap();
    let gone = eventually(Duration::from_secs(5), || {
        let kam = &kam;
        async move { !ul_dump(kam).contains(&format!("sip:proxy@127.0.0.1:{p}")) }
    })
    .await;
    assert!(
        gone,
        "still registered after the connection was disabled:\n{}",
        ul_dump(&kam)
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_registration_registers_each_account_and_calls_as_it() {
    if !require("kamailio", "-v", "kamailio") || !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("kamailio-per-user");
    let (p, k, ext) = (free_port(), free_port(), free_port());
    let kam = kamailio(&dir, k, ext);
    let config = format!(
        r#"{}
[[connections]]
name = "office"
kind = "outbound-registration"
addresses = ["127.0.0.1:{k}"]
domain = "pbx.test"
dial_patterns = ["4[0-9]{{3}}"]
registration = {{ mode = "per-user", expires = 60 }}
accounts = [
    {{ user = "1001", username = "2001", password = "pw-2001" }},
    {{ user = "1002", username = "2002", password = "pw-2002" }},
]
"#,
        head(p)
    );
    let proxy = proxy(&config).await;
    let both = eventually(Duration::from_secs(10), || {
        let kam = &kam;
        async move {
            let dump = ul_dump(kam);
            dump.contains(&format!("sip:office-1001@127.0.0.1:{p}"))
                && dump.contains(&format!("sip:office-1002@127.0.0.1:{p}"))
        }
    })
    .await;
    assert!(both, "both accounts not registered:\n{}", ul_dump(&kam));
    // 1002 calls 4001: it goes out as extension 2002, with 2002's credentials.
    let mut extension = sipp(&dir, "extension", ext, &["-sf", &scenario("uas.xml")]);
    let mut call = sipp(
        &dir,
        "call",
        free_port(),
        &[
            "-sf",
            &scenario("phone_call.xml"),
            "-s",
            "4001",
            "-key",
            "user",
            "1002",
            "-au",
            "1002",
            "-ap",
            "pw1002",
            "-auth_uri",
            "4001@siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    call.expect_success(LIMIT).await;
    extension.expect_success(LIMIT).await;
    let seen = std::fs::read_to_string(dir.join("extension_messages.log")).unwrap();
    assert!(seen.contains("From: <sip:2002@pbx.test>"), "{seen}");
    proxy.shutdown().await;
}

/// Kamailio registering to the proxy with the `uac` module (remote
/// registrations from a db_text table), over TCP, as inbound-registration
/// connection `user`'s PBX.
fn uac_pbx(dir: &Path, port: u16, proxy_port: u16, user: &str, password: &str) -> Kamailio {
    std::fs::create_dir_all(dir.join("db")).unwrap();
    Kamailio::builder(dir)
        .config_file(scenario("kamailio-uac-pbx.cfg"))
        .extra_file("db/uacreg", scenario("kamailio-uac/uacreg"))
        .extra_file("db/version", scenario("kamailio-uac/version"))
        .set("PORT", port)
        .set("PROXY_PORT", proxy_port)
        .set("USER", user)
        .set("PASSWORD", password)
        .memory(64, 8)
        .wait_udp(port)
        .wait_tcp(port)
        .wait_ctl()
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_uac_pbx_is_down_within_a_second_and_its_calls_fail_over() {
    a_killed_uac_pbx_is_down_within_a_second_and_its_calls_fail_over_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_uac_pbx_is_down_within_a_second_and_its_calls_fail_over_on_the_engine() {
    a_killed_uac_pbx_is_down_within_a_second_and_its_calls_fail_over_on("engine").await;
}

async fn a_killed_uac_pbx_is_down_within_a_second_and_its_calls_fail_over_on(core: &str) {
    if !require("kamailio", "-v", "kamailio") || !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("kamailio-uac");
    let (p, k, standby_port) = (free_port(), free_port(), free_port());
    // "branch" is the PBX registering to us; "standby" (a SIPp UAS behind a
    // trunk) carries the same numbers when the branch is down.
    let config = format!(
        r#"{}
[[connections]]
name = "branch"
kind = "inbound-registration"
username = "branch"
password = "branch-secret"
dial_patterns = ["5[0-9]{{3}}"]

[[connections]]
name = "standby"
kind = "trunk"
addresses = ["127.0.0.1:{standby_port}"]
dial_patterns = ["5[0-9]{{3}}"]
probe = {{ enabled = false }}
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    let mut kam = uac_pbx(&dir, k, p, "branch", "branch-secret");
    let branch = |proxy: siplink_proxy::Proxy| async move {
        proxy
            .status()
            .await
            .into_iter()
            .find(|s| s.name == "branch")
            .unwrap()
    };
    let registered = eventually(Duration::from_secs(15), || {
        let proxy = proxy.clone();
        async move { branch(proxy).await.state == ConnectionState::Registered }
    })
    .await;
    assert!(
        registered,
        "Kamailio's uac did not register: {}\n{}\n{:?}",
        branch(proxy.clone()).await,
        kam.log(),
        kam.kamcmd(&["uac.reg_dump"])
    );
    let up = branch(proxy.clone()).await;
    assert!(
        up.detail.iter().any(|d| d.contains("over TCP")),
        "registered over TCP: {up}"
    );
    // A plain RFC 3261 binding, as uac sends it: no ;ob, no instance.
    let targets = proxy
        .registrar()
        .lookup(&siplink_registrar::Aor::parse("sip:branch@siplink.test").unwrap())
        .await
        .unwrap();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert!(!targets[0].binding.outbound);
    assert_eq!(
        targets[0].binding.contact.uri.to_string(),
        format!("sip:branch@127.0.0.1:{k}")
    );

    // The PBX crashes (`kill -KILL -- -PGID`): its TCP connection drops
    // with 300 s of expiry left. The second counts from the signal.
    let mut changes = proxy.subscribe();
    let t0 = std::time::Instant::now();
    kam.kill();
    let killed = t0.elapsed();
    // Down, with the reason (the status task hears of the removal a moment
    // after routing stops using the dead flow).
    let down = eventually(Duration::from_secs(1).saturating_sub(killed), || {
        let proxy = proxy.clone();
        async move {
            let s = branch(proxy).await;
            s.state == ConnectionState::Down
                && s.detail.iter().any(|d| d.contains("connection closed"))
        }
    })
    .await;
    let status = branch(proxy.clone()).await;
    assert!(
        down,
        "not down with the reason a second after the PBX died: {status}"
    );
    println!(
        "down {:?} after the KILL (the kill itself took {killed:?}): {status}",
        t0.elapsed()
    );
    assert!(
        status.detail.iter().any(
            |d| d.starts_with("down: connection closed (TCP from 127.0.0.1:")
                && d.ends_with(" s ago")
        ),
        "{status}"
    );
    let json = proxy.status_json().await;
    assert!(json.contains("down: connection closed (TCP from"), "{json}");
    // The change is published (and logged) as such.
    let removed = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let Ok(siplink_proxy::StatusEvent::Binding { aor, change, .. }) =
                changes.recv().await
            {
                return (aor, change);
            }
        }
    })
    .await
    .expect("the binding's removal is published");
    assert_eq!(
        removed,
        (
            "sip:branch@siplink.test".to_owned(),
            "removed (connection closed)".to_owned()
        )
    );

    // A call to the branch's numbers goes to the next matching connection.
    let mut standby = sipp(
        &dir,
        "standby",
        standby_port,
        &["-sf", &scenario("uas.xml")],
    );
    let mut call = sipp(
        &dir,
        "call",
        free_port(),
        &[
            "-sf",
            &scenario("phone_call.xml"),
            "-s",
            "5001",
            "-key",
            "user",
            "1001",
            "-au",
            "1001",
            "-ap",
            "pw1001",
            "-auth_uri",
            "5001@siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    call.expect_success(LIMIT).await;
    standby.expect_success(LIMIT).await;
    let seen = std::fs::read_to_string(dir.join("standby_messages.log")).unwrap();
    assert!(seen.contains("INVITE sip:5001@127.0.0.1"), "{seen}");

    // The PBX comes back: it registers again over a new connection.
    let mut kam = uac_pbx(&dir, k, p, "branch", "branch-secret");
    let back = eventually(Duration::from_secs(15), || {
        let proxy = proxy.clone();
        async move { branch(proxy).await.state == ConnectionState::Registered }
    })
    .await;
    assert!(back, "{}", branch(proxy.clone()).await);
    assert!(
        !branch(proxy.clone())
            .await
            .detail
            .iter()
            .any(|d| d.starts_with("down:")),
        "the old reason is gone once registered again"
    );

    // Now it is stopped cleanly (`kill -TERM -- -PGID`, the testkit's
    // ProcessGroup; uac does not unregister on the way out): down again, with
    // the new connection's reason, within a second of the signal.
    let t0 = std::time::Instant::now();
    let stopping = tokio::task::spawn_blocking(move || {
        kam.stop();
        kam
    });
    let down = eventually(Duration::from_secs(1), || {
        let proxy = proxy.clone();
        async move {
            let s = branch(proxy).await;
            s.state == ConnectionState::Down
                && s.detail
                    .iter()
                    .any(|d| d.starts_with("down: connection closed (TCP from 127.0.0.1:"))
        }
    })
    .await;
    let status = branch(proxy.clone()).await;
    assert!(down, "not down a second after TERM: {status}");
    println!("down {:?} after the TERM: {status}", t0.elapsed());
    let _kam = stopping.await.unwrap();
    proxy.shutdown().await;
}
