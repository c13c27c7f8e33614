//! Nothing to enumerate: over a real UDP socket, every method (REGISTER,
//! INVITE, OPTIONS, SUBSCRIBE, MESSAGE) addressed to a user and to a
//! non-user, without credentials and with wrong ones, gets the same status,
//! reason, header set and challenge form. (What `svwar` and `svcrack` look
//! for.)

mod support;

use std::time::Duration;

use siplink_auth::{ClientCredentials, DigestClient, RequestInfo};
use siplink_message::Message;
use tokio::net::UdpSocket;

/// What an enumerator can compare between two answers.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    status: u16,
    reason: String,
    headers: Vec<String>,
    /// Per challenge: its parameters other than the nonce, and the nonce length.
    challenges: Vec<(String, usize)>,
}

fn shape(m: &Message) -> Shape {
    let mut headers: Vec<String> = m
        .headers()
        .map(|h| String::from_utf8_lossy(h.raw_name()).to_ascii_lowercase())
        .collect();
    headers.sort();
    let challenges = m
        .proxy_authenticate()
        .unwrap_or_default()
        .iter()
        .chain(m.www_authenticate().unwrap_or_default())
        .map(|c| {
            (
                format!(
                    "realm={:?} algorithm={:?} qop={:?} stale={}",
                    c.realm(),
                    c.algorithm(),
                    c.param("qop"),
                    c.stale()
                ),
                c.nonce().map_or(0, str::len),
            )
        })
        .collect();
    Shape {
        status: m.status().unwrap_or(0),
        reason: String::from_utf8_lossy(m.reason().unwrap_or_default()).into_owned(),
        headers,
        challenges,
    }
}

struct Phone {
    sock: UdpSocket,
    proxy: String,
    n: u32,
}

impl Phone {
    async fn new(proxy_port: u16) -> Phone {
        Phone {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            proxy: format!("127.0.0.1:{proxy_port}"),
            n: 0,
        }
    }

    /// Sends `method` for `user` (Request-URI, From and To), with `auth`
    /// (a header line) if given; returns the final answer.
    async fn send(&mut self, method: &str, user: &str, auth: Option<&str>) -> Message {
        self.n += 1;
        let n = self.n;
        let local = self.sock.local_addr().unwrap();
        let ruri = if method == "REGISTER" {
            "sip:siplink.test".to_owned()
        } else {
            format!("sip:{user}@siplink.test")
        };
        let extra = match method {
            "SUBSCRIBE" => "Event: presence\r\nExpires: 60\r\n",
            "REGISTER" => "Expires: 60\r\n",
            _ => "",
        };
        let auth = auth.map(|a| format!("{a}\r\n")).unwrap_or_default();
        let text = format!(
            "{method} {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-enum-{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@siplink.test>;tag=t{n}\r\n\
             To: <sip:{user}@siplink.test>\r\n\
             Call-ID: enum-{n}@test\r\n\
             CSeq: {n} {method}\r\n\
             Contact: <sip:{user}@{local}>\r\n\
             {extra}{auth}\
             Content-Length: 0\r\n\r\n"
        );
        self.sock
            .send_to(text.as_bytes(), &self.proxy)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        loop {
            let (len, _) =
                tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("no answer to {method} for {user}"))
                    .unwrap();
            let m = Message::parse(buf[..len].to_vec()).unwrap();
            if m.status().is_some_and(|s| s >= 200) {
                return m;
            }
        }
    }

    /// Challenge, then a wrong password: both answers.
    async fn probe(&mut self, method: &str, user: &str) -> (Message, Message) {
        let first = self.send(method, user, None).await;
        let www = first.www_authenticate().unwrap_or_default().to_vec();
        let proxy = first.proxy_authenticate().unwrap_or_default().to_vec();
        assert!(
            !www.is_empty() || !proxy.is_empty(),
            "{method} for {user}: not challenged ({:?})",
            first.status()
        );
        let ruri = if method == "REGISTER" {
            "sip:siplink.test".to_owned()
        } else {
            format!("sip:{user}@siplink.test")
        };
        let mut client = DigestClient::new(
            "siplink.test",
            ClientCredentials::password(user, "wrong-guess"),
        );
        let info = RequestInfo::new(method, &ruri);
        let answers = client.answer("siplink.test", &www, &proxy, &info).unwrap();
        let line = format!("{}: {}", answers[0].header_name(), answers[0].credentials);
        let second = self.send(method, user, Some(&line)).await;
        (first, second)
    }
}

#[tokio::test]
async fn users_and_non_users_get_the_same_answers_to_every_method() {
    let port = support::free_port();
    // High limits: this test is about the answers' shape, not the limiter.
    let toml = format!(
        "{}\n[security]\nmax_failures = 100\nsource_max_failures = 100\n",
        support::head(port)
    );
    let _proxy = support::proxy(&toml).await;
    let mut phone = Phone::new(port).await;
    for method in ["REGISTER", "INVITE", "OPTIONS", "SUBSCRIBE", "MESSAGE"] {
        let (user_first, user_wrong) = phone.probe(method, "1001").await;
        let (none_first, none_wrong) = phone.probe(method, "1999").await;
        let expected_challenge = if method == "REGISTER" { 401 } else { 407 };
        assert_eq!(user_first.status(), Some(expected_challenge), "{method}");
        assert_eq!(user_wrong.status(), Some(403), "{method}");
        assert_eq!(
            shape(&user_first),
            shape(&none_first),
            "{method}, no credentials"
        );
        assert_eq!(
            shape(&user_wrong),
            shape(&none_wrong),
            "{method}, wrong credentials"
        );
        let s = shape(&user_first);
        assert!(!s.challenges.is_empty() && s.challenges.iter().all(|(_, len)| *len == 80));
    }
    // OPTIONS to the proxy itself (no user part) is still answered at once.
    let mut phone = Phone::new(port).await;
    phone.n = 1000;
    let local = phone.sock.local_addr().unwrap();
    let text = format!(
        "OPTIONS sip:siplink.test SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ping\r\n\
         Max-Forwards: 70\r\nFrom: <sip:ping@siplink.test>;tag=p\r\nTo: <sip:siplink.test>\r\n\
         Call-ID: ping@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    phone
        .sock
        .send_to(text.as_bytes(), &phone.proxy)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), phone.sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Message::parse(buf[..len].to_vec()).unwrap().status(),
        Some(200)
    );
}

#[tokio::test]
async fn wrong_passwords_block_that_source_for_that_user_and_nobody_else() {
    let port = support::free_port();
    let _proxy = support::proxy(&support::head(port)).await;
    let mut attacker = Phone::new(port).await;
    // Five wrong passwords for 1001 from one source (INVITE and REGISTER
    // count alike: one policy for both)...
    for method in ["INVITE", "REGISTER", "INVITE", "REGISTER", "INVITE"] {
        let (_, wrong) = attacker.probe(method, "1001").await;
        assert_eq!(wrong.status(), Some(403));
    }
    // ...then that source gets 403 for 1001 even with the right password...
    let first = attacker.send("REGISTER", "1001", None).await;
    let www = first.www_authenticate().unwrap().to_vec();
    let mut right = DigestClient::new(
        "siplink.test",
        ClientCredentials::password("1001", "pw1001"),
    );
    let info = RequestInfo::new("REGISTER", "sip:siplink.test");
    let a = right.answer("siplink.test", &www, &[], &info).unwrap();
    let line = format!("{}: {}", a[0].header_name(), a[0].credentials);
    assert_eq!(
        attacker
            .send("REGISTER", "1001", Some(&line))
            .await
            .status(),
        Some(403)
    );
    // ...while 1001 registers at once from another address (another source:
    // 127.0.0.2 is loopback too on Linux).
    let sock = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let mut phone = Phone {
        sock,
        proxy: format!("127.0.0.1:{port}"),
        n: 500,
    };
    let first = phone.send("REGISTER", "1001", None).await;
    let www = first.www_authenticate().unwrap().to_vec();
    let mut right = DigestClient::new(
        "siplink.test",
        ClientCredentials::password("1001", "pw1001"),
    );
    let a = right.answer("siplink.test", &www, &[], &info).unwrap();
    let line = format!("{}: {}", a[0].header_name(), a[0].credentials);
    assert_eq!(
        phone.send("REGISTER", "1001", Some(&line)).await.status(),
        Some(200)
    );
}
