//! The SIPp scenarios shipped for the example proxy (`examples/sipp/`), run
//! with the arguments the example prints: a phone's call with the 407 answered
//! and the Record-Route followed, through a trunk to a SIPp PBX. Needs `sipp`
//! (skipped without it unless `SIPLINK_INTEROP` is set).

mod support;

use std::process::Command;
use std::time::Duration;

use siplink_testkit::{ProcessGroup, free_port, require, udp_bound, wait_until, work_dir};

fn shipped(name: &str) -> String {
    format!("{}/../../examples/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sipp(dir: &std::path::Path, name: &str, args: &[&str]) -> ProcessGroup {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir)
        .args(args)
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .args([
            "-trace_msg",
            "-message_file",
            &format!("{name}_messages.log"),
        ])
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    ProcessGroup::spawn(name, cmd).unwrap()
}

fn logs(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}_messages.log"))).unwrap_or_default()
}

#[tokio::test]
async fn the_printed_sipp_commands_complete_a_call() {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir("example-sipp");
    let port = free_port();
    let pbx_port = free_port();
    let config = format!(
        r#"{}
[[connections]]
name = "carrier"
kind = "trunk"
addresses = ["127.0.0.1:{pbx_port}"]
dial_patterns = ["0[0-9]{{9,10}}"]
probe = {{ enabled = true, interval = 30 }}
"#,
        support::head(port)
    );
    let pbx_port_s = pbx_port.to_string();
    let mut pbx = sipp(
        &dir,
        "pbx",
        &[
            "-sf",
            &shipped("pbx_answer.xml"),
            "-aa",
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
            "-p",
            &pbx_port_s,
        ],
    );
    // The PBX listens before the proxy starts, so the trunk's first OPTIONS
    // probe finds it up (a fixed wait failed on a busy machine).
    wait_until(Duration::from_secs(10), "the SIPp PBX listening", || {
        udp_bound(pbx_port)
    });
    let _proxy = support::proxy(&config).await;
    let proxy_addr = format!("127.0.0.1:{port}");
    let mut phone = sipp(
        &dir,
        "phone",
        &[
            "-sf",
            &shipped("call_auth.xml"),
            "-s",
            "0999999999",
            "-key",
            "user",
            "1001",
            "-key",
            "domain",
            "siplink.test",
            "-au",
            "1001",
            "-ap",
            "pw1001",
            "-auth_uri",
            "0999999999@siplink.test",
            "-i",
            "127.0.0.1",
            "-m",
            "1",
            &proxy_addr,
        ],
    );
    let phone_status = tokio::task::spawn_blocking(move || {
        let s = phone.wait_timeout(Duration::from_secs(45));
        (s, phone)
    })
    .await
    .unwrap();
    let phone_log = logs(&dir, "phone");
    assert!(
        phone_status.0.is_some_and(|s| s.success()),
        "phone: {:?}\n{phone_log}",
        phone_status.0
    );
    // It answered the 407 and sent ACK and BYE along the Record-Route.
    assert!(
        phone_log.contains("407 Proxy Authentication Required"),
        "{phone_log}"
    );
    assert!(phone_log.contains("Route: <sip:127.0.0.1:"), "{phone_log}");
    // The PBX runs without `-m` as printed (the proxy's OPTIONS probes count as
    // SIPp calls too): it must have taken the call, the BYE included, and still run.
    let pbx_log = logs(&dir, "pbx");
    assert!(pbx.running(), "the SIPp PBX exited\n{pbx_log}");
    assert!(pbx_log.contains("INVITE sip:0999999999@"), "{pbx_log}");
    assert!(pbx_log.contains("BYE sip:"), "{pbx_log}");
    pbx.stop();
}
