//! Bindings follow their flows, over real loopback sockets (no external
//! tools): an inbound-registration PBX that registered over TCP without RFC
//! 5626 (as Kamailio's `uac` and most PBXs do) is down, with the reason,
//! within a second of its connection closing, its binding is no longer
//! looked up, and its calls go to the next matching connection; with
//! `[proxy] contact_fallback = true` the binding is kept and reached at its
//! Contact instead.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use siplink_auth::{ClientCredentials, DigestClient, RequestInfo};
use siplink_message::Message;
use siplink_proxy::{ConnectionState, ConnectionStatus, Proxy};
use siplink_registrar::{Aor, Reach};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The proxy's head plus the inbound PBX "branch" and, behind it for the
/// same numbers, the trunk "standby" at 127.0.0.1:`standby`.
fn config(port: u16, standby: u16, contact_fallback: bool) -> String {
    let head = support::head(port).replace(
        "[proxy]\n",
        &format!("[proxy]\ncontact_fallback = {contact_fallback}\n"),
    );
    format!(
        r#"{head}
[[connections]]
name = "branch"
kind = "inbound-registration"
username = "branch"
password = "branch-secret"
dial_patterns = ["5[0-9]{{3}}"]

[[connections]]
name = "standby"
kind = "trunk"
addresses = ["127.0.0.1:{standby}"]
dial_patterns = ["5[0-9]{{3}}"]
probe = {{ enabled = false }}
"#
    )
}

/// Reads one SIP message from a stream (`buf` keeps what follows it).
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    matches!(name.trim(), "content-length" | "l")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + body {
                let rest = buf.split_off(end + 4 + body);
                let msg = std::mem::replace(buf, rest);
                return Message::parse(msg).expect("the proxy sends valid SIP");
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("a message within 5 s")
            .unwrap();
        assert!(n > 0, "the proxy closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A PBX registering to the proxy over TCP the way Kamailio's `uac` does:
/// a plain Contact, no `;ob`, no `+sip.instance`.
struct TcpPbx {
    stream: TcpStream,
    buf: Vec<u8>,
    local: SocketAddr,
    user: String,
}

impl TcpPbx {
    async fn register(port: u16, contact_port: u16) -> TcpPbx {
        TcpPbx::register_as(port, contact_port, "branch", "branch-secret").await
    }

    /// Registers `user` (a PBX or a phone) with `password` over TCP.
    async fn register_as(port: u16, contact_port: u16, user: &str, password: &str) -> TcpPbx {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let local = stream.local_addr().unwrap();
        let mut pbx = TcpPbx {
            stream,
            buf: Vec::new(),
            local,
            user: user.to_owned(),
        };
        let first = pbx.send_register(1, contact_port, None).await;
        assert_eq!(first.status(), Some(401), "{first}");
        let mut digest =
            DigestClient::new("siplink.test", ClientCredentials::password(user, password));
        let answers = digest
            .answer(
                "siplink.test",
                first.www_authenticate().unwrap(),
                &[],
                &RequestInfo::new("REGISTER", "sip:siplink.test"),
            )
            .unwrap();
        let line = format!("{}: {}", answers[0].header_name(), answers[0].credentials);
        let ok = pbx.send_register(2, contact_port, Some(&line)).await;
        assert_eq!(ok.status(), Some(200), "{ok}");
        pbx
    }

    async fn send_register(&mut self, cseq: u32, contact_port: u16, auth: Option<&str>) -> Message {
        let auth = auth.map(|a| format!("{a}\r\n")).unwrap_or_default();
        let text = format!(
            "REGISTER sip:siplink.test SIP/2.0\r\n\
             Via: SIP/2.0/TCP {local};branch=z9hG4bK-pbx-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@siplink.test>;tag=pbx\r\n\
             To: <sip:{user}@siplink.test>\r\n\
             Call-ID: {user}-register@loopback\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@127.0.0.1:{contact_port};transport=tcp>\r\n\
             Expires: 300\r\n\
             {auth}\
             Content-Length: 0\r\n\r\n",
            local = self.local,
            user = self.user
        );
        self.stream.write_all(text.as_bytes()).await.unwrap();
        loop {
            let m = read_message(&mut self.stream, &mut self.buf).await;
            if m.status().is_some_and(|s| s >= 200) {
                return m;
            }
        }
    }
}

async fn branch(proxy: &Proxy) -> ConnectionStatus {
    proxy
        .status()
        .await
        .into_iter()
        .find(|s| s.name == "branch")
        .unwrap()
}

/// Polls the status (every 10 ms) until `check` holds, at most `limit`.
async fn status_within(
    proxy: &Proxy,
    limit: Duration,
    check: impl Fn(&ConnectionStatus) -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if check(&branch(proxy).await) {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn branch_aor() -> Aor {
    Aor::parse("sip:branch@siplink.test").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_tcp_connection_takes_the_pbx_down_with_the_reason_within_a_second() {
    let port = support::free_port();
    let proxy = support::proxy(&config(port, support::free_port(), false)).await;
    let before = branch(&proxy).await;
    assert_eq!(before.state, ConnectionState::Down);
    assert!(
        before
            .detail
            .contains(&"down: the PBX has not registered".to_owned()),
        "{before}"
    );

    let pbx = TcpPbx::register(port, support::free_port()).await;
    let from = pbx.local;
    let up = branch(&proxy).await;
    assert_eq!(up.state, ConnectionState::Registered, "{up}");
    assert!(
        up.detail
            .iter()
            .any(|d| d.starts_with(&format!("registered from {from} over TCP since"))),
        "{up}"
    );
    let targets = proxy.registrar().lookup(&branch_aor()).await.unwrap();
    assert_eq!(targets.len(), 1);
    assert!(matches!(targets[0].reach, Reach::Flow(_)), "{targets:?}");

    // The PBX dies with 300 s of expiry left: its connection closes.
    drop(pbx);
    let reason = format!("down: connection closed (TCP from {from}) ");
    let took = status_within(&proxy, Duration::from_secs(1), |s| {
        s.state == ConnectionState::Down && s.detail.iter().any(|d| d.starts_with(&reason))
    })
    .await;
    let status = branch(&proxy).await;
    assert!(
        took.is_some(),
        "not down with {reason:?} within 1 s: {status}"
    );
    assert!(
        status.detail.iter().any(|d| d.ends_with(" s ago")),
        "{status}"
    );
    assert!(
        proxy
            .registrar()
            .lookup(&branch_aor())
            .await
            .unwrap()
            .is_empty(),
        "a binding whose flow closed is still looked up"
    );
    let json = proxy.status_json().await;
    assert!(
        json.contains(&format!("down: connection closed (TCP from {from})")),
        "{json}"
    );

    // A phone's binding over TCP goes with its connection as well.
    let phone = TcpPbx::register_as(port, support::free_port(), "1001", "pw1001").await;
    let user = Aor::parse("sip:1001@siplink.test").unwrap();
    assert_eq!(proxy.registrar().lookup(&user).await.unwrap().len(), 1);
    drop(phone);
    // Removed from the store (not only left out of lookups) within 1 s.
    let store = proxy.registrar().store().clone();
    let t0 = Instant::now();
    while !store
        .lookup(&user, Instant::now())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "the phone's binding outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(proxy.registrar().lookup(&user).await.unwrap().is_empty());

    // Back on a new connection: up again, the reason gone.
    let _pbx = TcpPbx::register(port, support::free_port()).await;
    let again = branch(&proxy).await;
    assert_eq!(again.state, ConnectionState::Registered, "{again}");
    assert!(
        !again.detail.iter().any(|d| d.starts_with("down:")),
        "{again}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_contact_fallback_the_pbx_stays_registered_at_its_contact() {
    let port = support::free_port();
    let proxy = support::proxy(&config(port, support::free_port(), true)).await;
    let contact_port = support::free_port();
    let pbx = TcpPbx::register(port, contact_port).await;
    let phone_contact_port = support::free_port();
    let phone = TcpPbx::register_as(port, phone_contact_port, "1001", "pw1001").await;
    let mut events = proxy.subscribe();
    drop(pbx);
    // The registrar reports the lost connection; the binding stays.
    let change = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            // (The registrations' own "added" events may be published a
            // moment after the subscription: not what is waited for.)
            if let Ok(siplink_proxy::StatusEvent::Binding { change, .. }) = events.recv().await
                && change != "added"
            {
                return change;
            }
        }
    })
    .await
    .expect("the lost connection is published within 1 s");
    assert_eq!(change, "connection closed, kept with its Contact");
    let targets = proxy.registrar().lookup(&branch_aor()).await.unwrap();
    assert_eq!(targets.len(), 1, "{targets:?}");
    let contact = format!("sip:branch@127.0.0.1:{contact_port};transport=tcp");
    assert!(
        matches!(&targets[0].reach, Reach::Contact { uri, .. } if uri.to_string() == contact),
        "{targets:?}"
    );
    let status = branch(&proxy).await;
    assert_eq!(status.state, ConnectionState::Registered, "{status}");
    assert!(
        status.detail.iter().any(|d| d.ends_with(&format!(
            "; its connection closed, reached at its Contact {contact}"
        ))),
        "{status}"
    );
    // A phone's binding follows the same rule, and says so in the status.
    drop(phone);
    let phone_line =
        format!("sip:1001@127.0.0.1:{phone_contact_port};transport=tcp via TCP 127.0.0.1:");
    let mut json = String::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        json = proxy.status_json().await;
        if json.contains("(its connection closed; reached at its Contact)") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(json.contains(&phone_line), "{json}");
    assert!(
        json.contains("(its connection closed; reached at its Contact)"),
        "{json}"
    );
    proxy.shutdown().await;
}

/// Credentials a phone sends for a proxy beyond ours (another realm).
const FOREIGN_CREDENTIALS: &str = "Proxy-Authorization: Digest username=\"1001\", realm=\"upstream.example\", nonce=\"abc\", uri=\"sip:upstream.example\", response=\"00112233445566778899aabbccddeeff\"";

/// The realms of a forwarded request's `Proxy-Authorization` values.
fn credential_realms(forwarded: &Message) -> Vec<String> {
    forwarded
        .proxy_authorization()
        .unwrap()
        .iter()
        .map(|c| c.realm().unwrap_or_default().to_owned())
        .collect()
}

/// A phone on UDP placing authenticated calls.
struct Phone {
    sock: UdpSocket,
    proxy: SocketAddr,
    cseq: u32,
}

impl Phone {
    async fn new(port: u16) -> Phone {
        Phone {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            proxy: SocketAddr::from(([127, 0, 0, 1], port)),
            cseq: 0,
        }
    }

    /// Sends an INVITE for `number` (answering the proxy's challenge) and
    /// returns once the proxy took it (a provisional response to the
    /// authenticated one).
    async fn call(&mut self, number: &str, call_id: &str) {
        let first = self.invite(number, call_id, None, true).await;
        assert_eq!(first.status(), Some(407), "{first}");
        let mut digest = DigestClient::new(
            "siplink.test",
            ClientCredentials::password("1001", "pw1001"),
        );
        let uri = format!("sip:{number}@siplink.test");
        let answers = digest
            .answer(
                "siplink.test",
                &[],
                first.proxy_authenticate().unwrap(),
                &RequestInfo::new("INVITE", &uri),
            )
            .unwrap();
        // Our realm's answer, and credentials for another proxy further on
        // (which must pass through untouched).
        let line = format!(
            "{}: {}\r\n{FOREIGN_CREDENTIALS}",
            answers[0].header_name(),
            answers[0].credentials
        );
        let taken = self.invite(number, call_id, Some(&line), false).await;
        assert!(taken.status().is_some_and(|s| s < 200), "{taken}");
    }

    /// One INVITE; its first response (its final one when `final_only`).
    async fn invite(
        &mut self,
        number: &str,
        call_id: &str,
        auth: Option<&str>,
        final_only: bool,
    ) -> Message {
        self.cseq += 1;
        let cseq = self.cseq;
        let local = self.sock.local_addr().unwrap();
        let auth = auth.map(|a| format!("{a}\r\n")).unwrap_or_default();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
            local.port() + 2
        );
        let text = format!(
            "INVITE sip:{number}@siplink.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-phone-{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@siplink.test>;tag=phone\r\n\
             To: <sip:{number}@siplink.test>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} INVITE\r\n\
             Contact: <sip:1001@{local}>\r\n\
             {auth}\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.sock
            .send_to(text.as_bytes(), self.proxy)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                    .await
                    .expect("an answer within 5 s")
                    .unwrap();
            let m = Message::parse(buf[..n].to_vec()).unwrap();
            if m.cseq().is_ok_and(|c| c.seq == cseq)
                && (!final_only || m.status().is_some_and(|s| s >= 200))
            {
                return m;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_to_the_next_connection_once_the_pbx_connection_closed() {
    let (port, standby_port) = (support::free_port(), support::free_port());
    let proxy = support::proxy(&config(port, standby_port, false)).await;
    let standby = UdpSocket::bind(("127.0.0.1", standby_port)).await.unwrap();
    let mut phone = Phone::new(port).await;

    // Registered: the call goes to the PBX, over its own connection, to its
    // Contact with the dialled number as user.
    let contact_port = support::free_port();
    let mut pbx = TcpPbx::register(port, contact_port).await;
    phone.call("5001", "first-call").await;
    let invite = read_message(&mut pbx.stream, &mut pbx.buf).await;
    assert!(
        invite
            .request_uri()
            .unwrap()
            .to_string()
            .starts_with(&format!("sip:5001@127.0.0.1:{contact_port}")),
        "{invite}"
    );
    // RFC 3261 §22.3: the phone's answer for our realm is consumed here, not
    // forwarded to the PBX; another realm's credentials go on.
    assert_eq!(credential_realms(&invite), ["upstream.example"], "{invite}");
    let busy = invite.response(486).to_bytes().unwrap();
    pbx.stream.write_all(&busy).await.unwrap();

    // The PBX's connection closes: the next call goes to the standby trunk
    // at once, without trying the dead PBX first.
    drop(pbx);
    let down = status_within(&proxy, Duration::from_secs(1), |s| {
        s.state == ConnectionState::Down
    })
    .await;
    assert!(down.is_some(), "{}", branch(&proxy).await);
    phone.call("5002", "second-call").await;
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), standby.recv_from(&mut buf))
        .await
        .expect("the standby trunk gets the call")
        .unwrap();
    let at_standby = Message::parse(buf[..n].to_vec()).unwrap();
    assert!(
        at_standby
            .request_uri()
            .unwrap()
            .to_string()
            .starts_with(&format!("sip:5002@127.0.0.1:{standby_port}")),
        "{at_standby}"
    );
    // A trunk sends none of the caller's credentials (it answers the PBX's
    // challenges with its own).
    assert!(credential_realms(&at_standby).is_empty(), "{at_standby}");
    let status = branch(&proxy).await;
    assert!(
        status
            .detail
            .iter()
            .any(|d| d.starts_with("down: connection closed (TCP from 127.0.0.1:")),
        "{status}"
    );
    proxy.shutdown().await;
}
