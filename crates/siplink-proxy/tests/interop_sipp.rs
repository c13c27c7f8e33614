//! End to end through the proxy with SIPp as the phones and the PBXs, on
//! loopback: dial patterns choosing the PBX, authentication (no open relay),
//! failover to the next connection, an inbound-registration PBX reached over
//! its own TCP connection, and a PBX calling a registered user.
//!
//! Each call scenario runs on both request paths (`[proxy] core =
//! "classic"` and `"engine"`).
//!
//! Skipped when `sipp` is missing, unless `SIPLINK_INTEROP=1` (then it
//! fails).

mod support;

use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(45);

fn phone_call(
    dir: &std::path::Path,
    name: &str,
    proxy_port: u16,
    user: &str,
    password: &str,
    number: &str,
) -> Sipp {
    sipp(
        dir,
        name,
        free_port(),
        &[
            "-sf",
            &scenario("phone_call.xml"),
            "-s",
            number,
            "-key",
            "user",
            user,
            "-au",
            user,
            "-ap",
            password,
            "-auth_uri",
            &format!("{number}@siplink.test"),
            &format!("127.0.0.1:{proxy_port}"),
        ],
    )
}

fn pbx(dir: &std::path::Path, name: &str, port: u16) -> Sipp {
    sipp(dir, name, port, &["-sf", &scenario("uas.xml")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_calls_follow_dial_patterns() {
    trunk_calls_follow_dial_patterns_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_calls_follow_dial_patterns_on_the_engine() {
    trunk_calls_follow_dial_patterns_on("engine").await;
}

async fn trunk_calls_follow_dial_patterns_on(core: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("patterns");
    let (p, a, b) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"{}
[[connections]]
name = "office"
kind = "trunk"
addresses = ["127.0.0.1:{a}"]
dial_patterns = ["4[0-9]{{3}}"]
probe = {{ enabled = false }}

[[connections]]
name = "carrier"
kind = "trunk"
addresses = ["127.0.0.1:{b}"]
dial_patterns = ["0[0-9]{{9,10}}", {{ pattern = "9(0[0-9]+)", rewrite = "$1" }}]
probe = {{ enabled = false }}

# One call being set up at a time: the second call below must find the
# first one's slot free again once it was answered.
[limits]
max_calls = 1
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    let mut office = pbx(&dir, "office", a);
    let mut carrier = pbx(&dir, "carrier", b);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut call = phone_call(&dir, "call_office", p, "1001", "pw1001", "4001");
    call.expect_success(LIMIT).await;
    office.expect_success(LIMIT).await;
    // The carrier got nothing yet: it is still waiting for its one call.
    assert!(carrier.running(), "the carrier got the office's call");

    let mut call = phone_call(&dir, "call_carrier", p, "1002", "pw1002", "902081230958");
    call.expect_success(LIMIT).await;
    carrier.expect_success(LIMIT).await;
    // The rewrite took the 9 off: the carrier saw the national number.
    let seen = std::fs::read_to_string(dir.join("carrier_messages.log")).unwrap();
    assert!(seen.contains("INVITE sip:02081230958@127.0.0.1"), "{seen}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_wrong_password_are_refused() {
    unauthenticated_and_wrong_password_are_refused_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_wrong_password_are_refused_on_the_engine() {
    unauthenticated_and_wrong_password_are_refused_on("engine").await;
}

async fn unauthenticated_and_wrong_password_are_refused_on(core: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("refused");
    let (p, a) = (free_port(), free_port());
    let config = format!(
        r#"{}
[[connections]]
name = "carrier"
kind = "trunk"
addresses = ["127.0.0.1:{a}"]
dial_patterns = [".*"]
probe = {{ enabled = false }}
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    // A "PBX" that fails the test if any INVITE reaches it.
    let mut carrier = pbx(&dir, "carrier", a);
    // Wrong password: 407, then 403 for the answer.
    let mut wrong = sipp(
        &dir,
        "wrong",
        free_port(),
        &[
            "-sf",
            &scenario("phone_refused.xml"),
            "-s",
            "02081230958",
            "-key",
            "user",
            "1001",
            "-au",
            "1001",
            "-ap",
            "not-the-password",
            "-auth_uri",
            "02081230958@siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    wrong.expect_success(LIMIT).await;
    // Unknown user: the same.
    let mut unknown = sipp(
        &dir,
        "unknown",
        free_port(),
        &[
            "-sf",
            &scenario("phone_refused.xml"),
            "-s",
            "02081230958",
            "-key",
            "user",
            "mallory",
            "-au",
            "mallory",
            "-ap",
            "x",
            "-auth_uri",
            "02081230958@siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    unknown.expect_success(LIMIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(carrier.running(), "an unauthenticated call reached the PBX");
    let seen = std::fs::read_to_string(dir.join("carrier_messages.log")).unwrap_or_default();
    assert!(!seen.contains("INVITE"), "{seen}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_next_connection_when_the_first_pbx_is_stopped() {
    failover_to_the_next_connection_when_the_first_pbx_is_stopped_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_next_connection_when_the_first_pbx_is_stopped_on_the_engine() {
    failover_to_the_next_connection_when_the_first_pbx_is_stopped_on("engine").await;
}

async fn failover_to_the_next_connection_when_the_first_pbx_is_stopped_on(core: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("failover");
    let (p, dead, live) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"{}
[[connections]]
name = "primary"
kind = "trunk"
addresses = ["127.0.0.1:{dead}"]
dial_patterns = ["7[0-9]{{3}}"]
probe = {{ enabled = false }}

[[connections]]
name = "backup"
kind = "trunk"
addresses = ["127.0.0.1:{live}"]
dial_patterns = ["7[0-9]{{3}}"]
probe = {{ enabled = false }}
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    // The primary PBX runs, then stops.
    let mut primary = pbx(&dir, "primary", dead);
    tokio::time::sleep(Duration::from_millis(300)).await;
    primary.stop();
    let mut backup = pbx(&dir, "backup", live);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut call = phone_call(&dir, "call", p, "1001", "pw1001", "7001");
    call.expect_success(LIMIT).await;
    backup.expect_success(LIMIT).await;
    let status = proxy.status().await;
    let primary = status.iter().find(|s| s.name == "primary").unwrap();
    assert!(primary.last_error.is_some(), "{primary}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_registration_pbx_takes_its_call_over_its_own_tcp_connection() {
    inbound_registration_pbx_takes_its_call_over_its_own_tcp_connection_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_registration_pbx_takes_its_call_over_its_own_tcp_connection_on_the_engine() {
    inbound_registration_pbx_takes_its_call_over_its_own_tcp_connection_on("engine").await;
}

async fn inbound_registration_pbx_takes_its_call_over_its_own_tcp_connection_on(core: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("inbound");
    let p = free_port();
    let config = format!(
        r#"{}
[[connections]]
name = "branch"
kind = "inbound-registration"
username = "branch"
password = "branch-secret"
dial_patterns = ["5[0-9]{{3}}"]
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    let callid = format!("inbound-{}@siplink.test", std::process::id());
    let mut branch = sipp(
        &dir,
        "branch",
        free_port(),
        &[
            "-sf",
            &scenario("pbx_tcp_register.xml"),
            "-t",
            "t1",
            "-key",
            "user",
            "branch",
            "-cid_str",
            &callid,
            "-au",
            "branch",
            "-ap",
            "branch-secret",
            "-auth_uri",
            "siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    let registered = eventually(Duration::from_secs(10), || {
        let proxy = proxy.clone();
        async move {
            proxy.status().await.iter().any(|s| {
                s.name == "branch" && s.state == siplink_proxy::ConnectionState::Registered
            })
        }
    })
    .await;
    assert!(registered, "the PBX did not register\n{}", branch.logs());
    let report = proxy.test_connection("branch").await.unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(report.to_string().contains("over TCP"), "{report}");
    // The phone's call for 5001 goes to the PBX over the PBX's connection
    // (its Contact, 10.0.0.1, is unreachable).
    let callid_arg = callid.clone();
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
            "-cid_str",
            &callid_arg,
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
    branch.expect_success(LIMIT).await;
    let seen = std::fs::read_to_string(dir.join("branch_messages.log")).unwrap();
    assert!(
        seen.contains("INVITE sip:5001@10.0.0.1:5060;transport=tcp"),
        "{seen}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_the_pbx_rings_the_registered_user() {
    a_call_from_the_pbx_rings_the_registered_user_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_the_pbx_rings_the_registered_user_on_the_engine() {
    a_call_from_the_pbx_rings_the_registered_user_on("engine").await;
}

async fn a_call_from_the_pbx_rings_the_registered_user_on(core: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("to_user");
    let (p, pbx_port, phone_port) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"{}
[[connections]]
name = "carrier"
kind = "trunk"
addresses = ["127.0.0.1:{pbx_port}"]
dial_patterns = ["0[0-9]+"]
probe = {{ enabled = false }}
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    // 1002's phone: a SIPp UAS, registered by a second SIPp.
    let mut phone = pbx(&dir, "phone", phone_port);
    let mut reg = sipp(
        &dir,
        "register",
        free_port(),
        &[
            "-sf",
            &scenario("register.xml"),
            "-key",
            "user",
            "1002",
            "-key",
            "contact",
            &format!("sip:1002@127.0.0.1:{phone_port}"),
            "-au",
            "1002",
            "-ap",
            "pw1002",
            "-auth_uri",
            "siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    reg.expect_success(LIMIT).await;
    // The carrier (known by its address and port) calls 1002: no challenge.
    let mut call = sipp(
        &dir,
        "carrier",
        pbx_port,
        &[
            "-sf",
            &scenario("pbx_call.xml"),
            "-key",
            "ruri",
            &format!("sip:1002@127.0.0.1:{p}"),
            &format!("127.0.0.1:{p}"),
        ],
    );
    call.expect_success(LIMIT).await;
    phone.expect_success(LIMIT).await;
    // A user nobody registered: 480 (the PBX scenario fails: it wants a 200).
    let mut nobody = sipp(
        &dir,
        "carrier2",
        pbx_port,
        &[
            "-sf",
            &scenario("pbx_call.xml"),
            "-key",
            "ruri",
            &format!("sip:1001@127.0.0.1:{p}"),
            &format!("127.0.0.1:{p}"),
        ],
    );
    let code = nobody.wait(LIMIT).await;
    assert_ne!(code, Some(0));
    let seen = std::fs::read_to_string(dir.join("carrier2_messages.log")).unwrap();
    assert!(seen.contains("SIP/2.0 480"), "{seen}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_to_the_proxy_is_answered_with_allow_and_supported() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("options");
    let p = free_port();
    let proxy = proxy(&head(p)).await;
    let mut probe = sipp(
        &dir,
        "probe",
        free_port(),
        &["-sf", &scenario("options.xml"), &format!("127.0.0.1:{p}")],
    );
    probe.expect_success(LIMIT).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_user_rings_every_contact_and_cancels_the_others() {
    a_call_to_a_user_rings_every_contact_and_cancels_the_others_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_user_rings_every_contact_and_cancels_the_others_on_the_engine() {
    a_call_to_a_user_rings_every_contact_and_cancels_the_others_on("engine").await;
}

async fn a_call_to_a_user_rings_every_contact_and_cancels_the_others_on(core: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("fork");
    let (p, pbx_port, desk, mobile) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        r#"{}
[[connections]]
name = "carrier"
kind = "trunk"
addresses = ["127.0.0.1:{pbx_port}"]
dial_patterns = ["0[0-9]+"]
probe = {{ enabled = false }}
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    // 1001 has two phones: the desk phone answers, the mobile only rings.
    let mut desk_phone = sipp(&dir, "desk", desk, &["-sf", &scenario("uas.xml")]);
    let mut mobile_phone = sipp(&dir, "mobile", mobile, &["-sf", &scenario("uas_ring.xml")]);
    for (name, port) in [("register_desk", desk), ("register_mobile", mobile)] {
        let mut reg = sipp(
            &dir,
            name,
            free_port(),
            &[
                "-sf",
                &scenario("register.xml"),
                "-key",
                "user",
                "1001",
                "-key",
                "contact",
                &format!("sip:1001@127.0.0.1:{port}"),
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
    }
    let mut call = sipp(
        &dir,
        "carrier",
        pbx_port,
        &[
            "-sf",
            &scenario("pbx_call.xml"),
            "-key",
            "ruri",
            &format!("sip:1001@127.0.0.1:{p}"),
            &format!("127.0.0.1:{p}"),
        ],
    );
    call.expect_success(LIMIT).await;
    desk_phone.expect_success(LIMIT).await;
    // The mobile got the INVITE, rang, and was cancelled.
    mobile_phone.expect_success(LIMIT).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_cancel_reaches_the_trunk() {
    a_caller_cancel_reaches_the_trunk_on("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_cancel_reaches_the_trunk_on_the_engine() {
    a_caller_cancel_reaches_the_trunk_on("engine").await;
}

async fn a_caller_cancel_reaches_the_trunk_on(core: &str) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("cancel");
    let (p, a) = (free_port(), free_port());
    let config = format!(
        r#"{}
[[connections]]
name = "carrier"
kind = "trunk"
addresses = ["127.0.0.1:{a}"]
dial_patterns = [".*"]
probe = {{ enabled = false }}
"#,
        head_on(p, core)
    );
    let proxy = proxy(&config).await;
    let mut pbx = sipp(&dir, "pbx", a, &["-sf", &scenario("uas_ring.xml")]);
    let mut call = sipp(
        &dir,
        "call",
        free_port(),
        &[
            "-sf",
            &scenario("phone_cancel.xml"),
            "-s",
            "02081230958",
            "-key",
            "user",
            "1001",
            "-au",
            "1001",
            "-ap",
            "pw1001",
            "-auth_uri",
            "02081230958@siplink.test",
            &format!("127.0.0.1:{p}"),
        ],
    );
    call.expect_success(LIMIT).await;
    pbx.expect_success(LIMIT).await;
    proxy.shutdown().await;
}
