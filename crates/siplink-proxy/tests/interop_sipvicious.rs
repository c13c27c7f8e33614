//! sipvicious against the proxy (as an attacker would): `svwar` with
//! REGISTER, INVITE and OPTIONS over a range holding three real users finds
//! none of them; `svcrack` with 60 passwords, the last one right, finds
//! nothing; the real user then registers at once from another address.
//! Needs `svwar`/`svcrack` (Debian `sipvicious`; skipped without them unless
//! `SIPLINK_INTEROP` is set).

mod support;

use std::process::Command;
use std::time::Duration;

use siplink_auth::{ClientCredentials, DigestClient, RequestInfo};
use siplink_message::Message;
use siplink_testkit::{ProcessGroup, free_port, require, work_dir};
use tokio::net::UdpSocket;

/// Runs a sipvicious tool to its end (at most 90 s); its whole output.
async fn run(dir: &std::path::Path, name: &str, tool: &str, args: &[String]) -> String {
    let out_path = dir.join(format!("{name}.out"));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(tool);
    cmd.current_dir(dir)
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut p = ProcessGroup::spawn(name, cmd).unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let s = p.wait_timeout(Duration::from_secs(90));
        (s, p)
    })
    .await
    .unwrap()
    .0;
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(status.is_some(), "{name} did not finish\n{text}");
    text
}

/// REGISTER as `user` with `password` from `bind`; the final status.
async fn register(bind: &str, proxy: &str, user: &str, password: &str) -> u16 {
    let sock = UdpSocket::bind(bind).await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut auth = String::new();
    for cseq in 1..=2 {
        let text = format!(
            "REGISTER sip:siplink.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-sv-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@siplink.test>;tag=sv\r\n\
             To: <sip:{user}@siplink.test>\r\nCall-ID: sv-reg@test\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local}>\r\nExpires: 60\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        sock.send_to(text.as_bytes(), proxy).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let m = Message::parse(buf[..len].to_vec()).unwrap();
        let status = m.status().unwrap();
        if status != 401 || cseq == 2 {
            return status;
        }
        let www = m.www_authenticate().unwrap().to_vec();
        let mut client =
            DigestClient::new("siplink.test", ClientCredentials::password(user, password));
        let info = RequestInfo::new("REGISTER", "sip:siplink.test");
        let a = client.answer("siplink.test", &www, &[], &info).unwrap();
        auth = format!("{}: {}\r\n", a[0].header_name(), a[0].credentials);
    }
    unreachable!()
}

#[tokio::test]
async fn sipvicious_finds_no_user_and_no_password() {
    if !require("svwar", "--version", "sipvicious")
        || !require("svcrack", "--version", "sipvicious")
    {
        return;
    }
    let dir = work_dir("sipvicious");
    let port = free_port();
    let config = format!(
        "{}\n[[users]]\nname = \"1003\"\npassword = \"pw1003\"\n",
        support::head(port)
    );
    let _proxy = support::proxy(&config).await;
    let p = port.to_string();

    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        for force in [false, true] {
            let mut args = vec![
                "-m".to_owned(),
                method.to_owned(),
                "-e1000-1010".to_owned(),
                "-p".to_owned(),
                p.clone(),
                "-P".to_owned(),
                free_port().to_string(),
                "-b".to_owned(),
                "127.0.0.1".to_owned(),
            ];
            if force {
                args.push("--force".to_owned());
            }
            args.push("127.0.0.1".to_owned());
            let name = format!("svwar-{method}-{force}");
            let out = run(&dir, &name, "svwar", &args).await;
            for user in ["1001", "1002", "1003"] {
                assert!(
                    !out.lines().any(|l| l.starts_with(&format!("| {user} "))),
                    "{name} found {user}:\n{out}"
                );
            }
            if !force {
                // It gives up: the unknown extension is challenged like the rest.
                assert!(out.contains("found nothing"), "{name}:\n{out}");
            }
        }
    }

    // 60 passwords, the right one last.
    let mut words: Vec<String> = (1..60).map(|k| format!("guess{k}")).collect();
    words.push("pw1001".to_owned());
    let dict = dir.join("passwords.txt");
    std::fs::write(&dict, words.join("\n") + "\n").unwrap();
    let args: Vec<String> = [
        "-u1001",
        "-d",
        dict.to_str().unwrap(),
        "-p",
        &p,
        "-P",
        &free_port().to_string(),
        "-b",
        "127.0.0.1",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(&dir, "svcrack", "svcrack", &args).await;
    assert!(
        !out.contains("pw1001"),
        "svcrack found the password:\n{out}"
    );
    assert!(out.contains("found nothing"), "svcrack:\n{out}");

    // The attacker's address is refused for 1001, even with the password...
    let proxy = format!("127.0.0.1:{port}");
    assert_eq!(register("127.0.0.1:0", &proxy, "1001", "pw1001").await, 403);
    // ...while 1001 registers at once from another address.
    assert_eq!(register("127.0.0.2:0", &proxy, "1001", "pw1001").await, 200);
}
