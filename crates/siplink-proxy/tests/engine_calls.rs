//! Calls through the proxy with `[proxy] core = "engine"` over real loopback
//! UDP sockets (no external tools): the test plays the phones and the
//! PBX. A phone's call to a number through a trunk whose PBX challenges it
//! (407, answered with the trunk's credentials), the ACK, a 2xx
//! retransmission and a BYE through the Record-Route; a CANCEL; a call
//! from phone to phone.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use siplink_auth::{ClientCredentials, DigestClient, RequestInfo};
use siplink_message::{HeaderName, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A phone or a PBX: one UDP socket.
struct Peer {
    sock: UdpSocket,
    proxy: SocketAddr,
}

impl Peer {
    async fn new(proxy: u16) -> Peer {
        Peer::on(0, proxy).await
    }

    async fn on(port: u16, proxy: u16) -> Peer {
        Peer {
            sock: UdpSocket::bind(("127.0.0.1", port)).await.unwrap(),
            proxy: SocketAddr::from(([127, 0, 0, 1], proxy)),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
        self.sock
            .send_to(text.as_bytes(), self.proxy)
            .await
            .unwrap();
    }

    async fn send_message(&self, m: &Message) {
        self.sock.send_to(&m.to_bytes(), self.proxy).await.unwrap();
    }

    /// The next message, skipping 100 Trying.
    async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                    .await
                    .expect("a message within 5 s")
                    .unwrap();
            let m = Message::parse(buf[..n].to_vec()).expect("parses");
            if m.status() != Some(100) {
                return m;
            }
        }
    }

    /// Nothing arrives within `d` (100 Trying aside).
    async fn silent(&self, d: Duration) -> bool {
        tokio::time::timeout(d, self.recv()).await.is_err()
    }
}

fn config(port: u16, pbx: u16, authenticate: bool) -> String {
    let head = support::head(port).replace(
        "[proxy]\n",
        &format!("[proxy]\ncore = \"engine\"\nauthenticate_calls = {authenticate}\n"),
    );
    format!(
        r#"{head}
[[connections]]
name = "office"
kind = "trunk"
addresses = ["127.0.0.1:{pbx}"]
dial_patterns = ["4[0-9]{{3}}"]
username = "trunkuser"
password = "trunk-secret"
probe = {{ enabled = false }}
"#
    )
}

fn header(m: &Message, name: HeaderName) -> Vec<String> {
    m.header_values(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn cseq(m: &Message) -> u32 {
    m.cseq().unwrap().seq
}

/// An INVITE from `phone` to `ruri`.
fn invite(phone: &Peer, ruri: &str, call_id: &str, cseq: u32, extra: &str) -> String {
    let a = phone.addr();
    format!(
        "INVITE {ruri} SIP/2.0\n\
         Via: SIP/2.0/UDP {a};branch=z9hG4bK-{call_id}-{cseq};rport\n\
         Max-Forwards: 70\n\
         From: <sip:1001@siplink.test>;tag=ph1\n\
         To: <{ruri}>\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} INVITE\n\
         Contact: <sip:1001@{a}>\n\
         {extra}Content-Length: 0\n\n"
    )
}

/// A response from a PBX or phone to `request` (its Record-Route and a
/// Contact for 18x/2xx).
fn reply(request: &Message, status: u16, tag: &str, contact: SocketAddr, extra: &str) -> Message {
    let mut b = request.response_with_tag(status, Some(tag));
    if (101..300).contains(&status) {
        for rr in request.header_values(HeaderName::RecordRoute) {
            b = b.header_bytes(HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
        }
        b = b.header(HeaderName::Contact, format!("<sip:{contact}>"));
    }
    let m = b.build().unwrap();
    if extra.is_empty() {
        return m;
    }
    let text = String::from_utf8(m.to_bytes().to_vec()).unwrap();
    Message::parse(text.replacen("\r\n", &format!("\r\n{extra}"), 1)).unwrap()
}

/// An in-dialog request from the phone through the Record-Route of `ok`
/// (the 2xx the phone got).
fn in_dialog(phone: &Peer, method: &str, ok: &Message, cseq: u32) -> String {
    let a = phone.addr();
    let routes: String = header(ok, HeaderName::RecordRoute)
        .iter()
        .rev()
        .map(|r| format!("Route: {r}\n"))
        .collect();
    let target = ok.contact().unwrap().as_slice()[0].uri.as_str().to_owned();
    let to = String::from_utf8_lossy(ok.header(HeaderName::To).unwrap()).into_owned();
    let call_id = ok.call_id().unwrap();
    format!(
        "{method} {target} SIP/2.0\n\
         Via: SIP/2.0/UDP {a};branch=z9hG4bK-{method}-{cseq};rport\n\
         Max-Forwards: 70\n{routes}\
         From: <sip:1001@siplink.test>;tag=ph1\n\
         To: {to}\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} {method}\n\
         Content-Length: 0\n\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_call_answers_the_pbx_challenge_and_hangs_up_through_the_record_route() {
    let (p, b) = (support::free_port(), support::free_port());
    let proxy = support::proxy(&config(p, b, true)).await;
    let phone = Peer::new(p).await;
    let pbx = Peer::on(b, p).await;

    // The phone authenticates with the proxy first (407 from the engine's
    // digest lookup).
    phone
        .send(&invite(&phone, "sip:4001@siplink.test", "e-trunk", 1, ""))
        .await;
    let challenge = phone.recv().await;
    assert_eq!(challenge.status(), Some(407), "{challenge}");
    let mut digest = DigestClient::new(
        "siplink.test",
        ClientCredentials::password("1001", "pw1001"),
    );
    let answer = digest
        .answer(
            "siplink.test",
            &[],
            challenge.proxy_authenticate().unwrap(),
            &RequestInfo::new("INVITE", "sip:4001@siplink.test"),
        )
        .unwrap();
    let line = format!("{}: {}\n", answer[0].header_name(), answer[0].credentials);
    phone
        .send(&invite(
            &phone,
            "sip:4001@siplink.test",
            "e-trunk",
            2,
            &line,
        ))
        .await;

    // The PBX challenges the proxy.
    let first = pbx.recv().await;
    assert_eq!(first.method().map(|m| m.as_str()), Some("INVITE"));
    assert_eq!(cseq(&first), 2);
    assert!(
        header(&first, HeaderName::ProxyAuthorization).is_empty(),
        "the phone's credentials for our realm stay here"
    );
    pbx.send_message(&reply(
        &first,
        407,
        "pbx-ch",
        pbx.addr(),
        "Proxy-Authenticate: Digest realm=\"asterisk\", nonce=\"n-1\", algorithm=MD5, qop=\"auth\"\r\n",
    ))
    .await;
    let ack = pbx.recv().await;
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"), "{ack}");
    let again = pbx.recv().await;
    assert_eq!(
        again.method().map(|m| m.as_str()),
        Some("INVITE"),
        "{again}"
    );
    assert_eq!(cseq(&again), 3, "CSeq one up");
    let auth = header(&again, HeaderName::ProxyAuthorization);
    assert_eq!(auth.len(), 1, "{again}");
    assert!(auth[0].contains("username=\"trunkuser\""), "{auth:?}");
    assert!(auth[0].contains("realm=\"asterisk\""), "{auth:?}");
    assert!(
        phone.silent(Duration::from_millis(200)).await,
        "the 407 stays here"
    );

    // Ringing, then the answer: the phone sees its own CSeq.
    pbx.send_message(&reply(&again, 180, "pbx1", pbx.addr(), ""))
        .await;
    let ringing = phone.recv().await;
    assert_eq!((ringing.status(), cseq(&ringing)), (Some(180), 2));
    let ok = reply(&again, 200, "pbx1", pbx.addr(), "");
    pbx.send_message(&ok).await;
    let answered = phone.recv().await;
    assert_eq!((answered.status(), cseq(&answered)), (Some(200), 2));
    assert!(!header(&answered, HeaderName::RecordRoute).is_empty());
    let (_, _, dialogs, _) = proxy.engine_sizes().expect("the engine carries calls");
    assert_eq!(dialogs, 1, "the answered call is one dialog record");

    // The ACK through the Record-Route, with the CSeq the PBX knows.
    phone.send(&in_dialog(&phone, "ACK", &answered, 2)).await;
    let ack = pbx.recv().await;
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"), "{ack}");
    assert_eq!(cseq(&ack), 3);

    // A 2xx retransmission goes to the phone (RFC 6026), statelessly.
    pbx.send_message(&ok).await;
    let again_ok = phone.recv().await;
    assert_eq!((again_ok.status(), cseq(&again_ok)), (Some(200), 2));

    // The phone hangs up through the Record-Route.
    phone.send(&in_dialog(&phone, "BYE", &answered, 3)).await;
    let bye = pbx.recv().await;
    assert_eq!(bye.method().map(|m| m.as_str()), Some("BYE"), "{bye}");
    assert_eq!(cseq(&bye), 4);
    pbx.send_message(&reply(&bye, 200, "pbx1", pbx.addr(), ""))
        .await;
    let bye_ok = phone.recv().await;
    assert_eq!((bye_ok.status(), cseq(&bye_ok)), (Some(200), 3), "{bye_ok}");
    assert_eq!(proxy.engine_sizes(), Some((0, 0, 0, 0)), "nothing left");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_trunk_and_the_caller_gets_487() {
    let (p, b) = (support::free_port(), support::free_port());
    let proxy = support::proxy(&config(p, b, false)).await;
    let phone = Peer::new(p).await;
    let pbx = Peer::on(b, p).await;
    let inv = invite(&phone, "sip:4002@siplink.test", "e-cancel", 1, "");
    phone.send(&inv).await;
    let at_pbx = pbx.recv().await;
    pbx.send_message(&reply(&at_pbx, 180, "pbx2", pbx.addr(), ""))
        .await;
    assert_eq!(phone.recv().await.status(), Some(180));
    phone
        .send(
            &inv.replace("INVITE sip", "CANCEL sip")
                .replace("1 INVITE", "1 CANCEL")
                .replace(&format!("Contact: <sip:1001@{}>\n", phone.addr()), ""),
        )
        .await;
    let cancel_ok = phone.recv().await;
    assert_eq!(cancel_ok.status(), Some(200));
    assert_eq!(cancel_ok.cseq().unwrap().method.as_str(), "CANCEL");
    let cancel = pbx.recv().await;
    assert_eq!(
        cancel.method().map(|m| m.as_str()),
        Some("CANCEL"),
        "{cancel}"
    );
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        at_pbx.top_via().unwrap().branch(),
        "the INVITE's branch"
    );
    pbx.send_message(&reply(&cancel, 200, "pbx2", pbx.addr(), ""))
        .await;
    pbx.send_message(&reply(&at_pbx, 487, "pbx2", pbx.addr(), ""))
        .await;
    let terminated = phone.recv().await;
    assert_eq!(terminated.status(), Some(487), "{terminated}");
    // (The CANCEL's 200 may be read by another worker a moment later.)
    let gone = support::eventually(Duration::from_secs(2), || {
        let sizes = proxy.engine_sizes();
        async move { sizes == Some((0, 0, 0, 0)) }
    })
    .await;
    assert!(gone, "the call is gone: {:?}", proxy.engine_sizes());
    // The proxy ACKs the 487 itself (hop by hop).
    let ack = pbx.recv().await;
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_calls_a_registered_phone() {
    let (p, b) = (support::free_port(), support::free_port());
    let proxy = support::proxy(&config(p, b, false)).await;
    let caller = Peer::new(p).await;
    let callee = Peer::new(p).await;

    // 1002 registers (digest with the registrar).
    let register = |cseq: u32, auth: &str| {
        let a = callee.addr();
        format!(
            "REGISTER sip:siplink.test SIP/2.0\n\
             Via: SIP/2.0/UDP {a};branch=z9hG4bK-reg-{cseq};rport\n\
             Max-Forwards: 70\n\
             From: <sip:1002@siplink.test>;tag=reg\n\
             To: <sip:1002@siplink.test>\n\
             Call-ID: e-reg-1002\n\
             CSeq: {cseq} REGISTER\n\
             Contact: <sip:1002@{a}>\n\
             Expires: 300\n\
             {auth}Content-Length: 0\n\n"
        )
    };
    callee.send(&register(1, "")).await;
    let challenge = callee.recv().await;
    assert_eq!(challenge.status(), Some(401));
    let mut digest = DigestClient::new(
        "siplink.test",
        ClientCredentials::password("1002", "pw1002"),
    );
    let answer = digest
        .answer(
            "siplink.test",
            challenge.www_authenticate().unwrap(),
            &[],
            &RequestInfo::new("REGISTER", "sip:siplink.test"),
        )
        .unwrap();
    let line = format!("{}: {}\n", answer[0].header_name(), answer[0].credentials);
    callee.send(&register(2, &line)).await;
    assert_eq!(callee.recv().await.status(), Some(200));

    caller
        .send(&invite(&caller, "sip:1002@siplink.test", "e-p2p", 1, ""))
        .await;
    let at_callee = callee.recv().await;
    assert_eq!(at_callee.method().map(|m| m.as_str()), Some("INVITE"));
    assert_eq!(
        at_callee.request_uri().unwrap().as_str(),
        format!("sip:1002@{}", callee.addr())
    );
    let ok = reply(&at_callee, 200, "callee", callee.addr(), "");
    callee.send_message(&ok).await;
    let answered = caller.recv().await;
    assert_eq!(answered.status(), Some(200), "{answered}");
    assert_eq!(
        proxy.engine_sizes().map(|s| s.2),
        Some(1),
        "one dialog record"
    );
    caller.send(&in_dialog(&caller, "ACK", &answered, 1)).await;
    let ack = callee.recv().await;
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"), "{ack}");
    caller.send(&in_dialog(&caller, "BYE", &answered, 2)).await;
    let bye = callee.recv().await;
    assert_eq!(bye.method().map(|m| m.as_str()), Some("BYE"), "{bye}");
    callee
        .send_message(&reply(&bye, 200, "callee", callee.addr(), ""))
        .await;
    assert_eq!(caller.recv().await.status(), Some(200));
    assert_eq!(proxy.engine_sizes(), Some((0, 0, 0, 0)));
    proxy.shutdown().await;
}

/// Reads one SIP message from a stream (CRLF keep-alives skipped; `buf`
/// keeps what follows it).
async fn read_stream(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
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
                let m: Vec<u8> = buf.drain(..end + 4 + body).collect();
                return Message::parse(m).expect("parses");
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("a message within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk_gets_its_call_over_a_connection_the_engine_opens() {
    let (p, b) = (support::free_port(), support::free_port());
    let config = config(p, b, false).replace(
        &format!("addresses = [\"127.0.0.1:{b}\"]"),
        &format!("addresses = [\"sip:127.0.0.1:{b};transport=tcp\"]"),
    );
    let listener = TcpListener::bind(("127.0.0.1", b)).await.unwrap();
    let proxy = support::proxy(&config).await;
    let phone = Peer::new(p).await;
    phone
        .send(&invite(&phone, "sip:4003@siplink.test", "e-tcp", 1, ""))
        .await;
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the proxy connects")
        .unwrap();
    let mut buf = Vec::new();
    let at_pbx = read_stream(&mut conn, &mut buf).await;
    assert_eq!(at_pbx.method().map(|m| m.as_str()), Some("INVITE"));
    assert!(
        at_pbx.top_via().unwrap().to_string().contains("TCP"),
        "{at_pbx}"
    );
    let ok = reply(
        &at_pbx,
        200,
        "tcp1",
        SocketAddr::from(([127, 0, 0, 1], b)),
        "",
    );
    conn.write_all(&ok.to_bytes()).await.unwrap();
    let answered = phone.recv().await;
    assert_eq!(answered.status(), Some(200), "{answered}");
    // Phone (UDP) to PBX (TCP): two Record-Route entries (RFC 5658).
    assert_eq!(header(&answered, HeaderName::RecordRoute).len(), 2);
    phone.send(&in_dialog(&phone, "ACK", &answered, 1)).await;
    let ack = read_stream(&mut conn, &mut buf).await;
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"), "{ack}");
    phone.send(&in_dialog(&phone, "BYE", &answered, 2)).await;
    let bye = read_stream(&mut conn, &mut buf).await;
    assert_eq!(bye.method().map(|m| m.as_str()), Some("BYE"), "{bye}");
    let bye_ok = reply(&bye, 200, "tcp1", SocketAddr::from(([127, 0, 0, 1], b)), "");
    conn.write_all(&bye_ok.to_bytes()).await.unwrap();
    assert_eq!(phone.recv().await.status(), Some(200));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phones_connection_closing_mid_call_hangs_up_the_pbx() {
    let (p, b) = (support::free_port(), support::free_port());
    let proxy = support::proxy(&config(p, b, false)).await;
    let pbx = Peer::on(b, p).await;
    let mut phone = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    let a = phone.local_addr().unwrap();
    let text = format!(
        "INVITE sip:4004@siplink.test SIP/2.0\r\n\
         Via: SIP/2.0/TCP {a};branch=z9hG4bK-e-flow-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@siplink.test>;tag=ph9\r\n\
         To: <sip:4004@siplink.test>\r\n\
         Call-ID: e-flow\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:1001@{a};transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    phone.write_all(text.as_bytes()).await.unwrap();
    let at_pbx = pbx.recv().await;
    assert_eq!(at_pbx.method().map(|m| m.as_str()), Some("INVITE"));
    pbx.send_message(&reply(&at_pbx, 200, "pbx5", pbx.addr(), ""))
        .await;
    let mut buf = Vec::new();
    let answered = read_stream(&mut phone, &mut buf).await;
    assert_eq!(answered.status(), Some(200), "{answered}");
    // The phone vanishes (a browser tab closed): the PBX gets a BYE.
    drop(phone);
    let bye = pbx.recv().await;
    assert_eq!(bye.method().map(|m| m.as_str()), Some("BYE"), "{bye}");
    assert_eq!(bye.call_id().unwrap(), "e-flow");
    pbx.send_message(&reply(&bye, 200, "pbx5", pbx.addr(), ""))
        .await;
    let gone = support::eventually(Duration::from_secs(2), || {
        let sizes = proxy.engine_sizes();
        async move { sizes == Some((0, 0, 0, 0)) }
    })
    .await;
    assert!(gone, "nothing left: {:?}", proxy.engine_sizes());
    proxy.shutdown().await;
}

/// The `c=` address and the first `m=` line of a message's SDP.
fn sdp_of(m: &Message) -> (String, String) {
    let body = String::from_utf8_lossy(m.body()).into_owned();
    let c = body
        .lines()
        .find(|l| l.starts_with("c="))
        .unwrap_or_default()
        .to_owned();
    let media = body
        .lines()
        .find(|l| l.starts_with("m="))
        .unwrap_or_default()
        .to_owned();
    (c, media)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_media_relay_the_sdp_goes_through_rtpengine_both_ways() {
    let Some(rtpengine) = siplink_testkit::Rtpengine::start("engine-calls") else {
        return;
    };
    let (p, b) = (support::free_port(), support::free_port());
    // The trunk relays media through rtpengine.
    let config = format!(
        "{}\n[media]\n\n[[media.rtpengine]]\nng = \"{}\"\n",
        config(p, b, false).replace(
            "probe = { enabled = false }\n",
            "probe = { enabled = false }\nmedia = \"relay\"\n",
        ),
        rtpengine.ng_addr()
    );
    let proxy = support::proxy(&config).await;
    let phone = Peer::new(p).await;
    let pbx = Peer::on(b, p).await;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let extra = format!(
        "Content-Type: application/sdp\nContent-Length: {}\n\n{offer}",
        offer.len()
    );
    let inv = invite(&phone, "sip:4005@siplink.test", "e-media", 1, "")
        .replace("Content-Length: 0\n\n", &extra);
    phone.send(&inv).await;
    let at_pbx = pbx.recv().await;
    assert_eq!(at_pbx.method().map(|m| m.as_str()), Some("INVITE"));
    let (_, m) = sdp_of(&at_pbx);
    assert!(m.starts_with("m=audio "), "{at_pbx}");
    assert_ne!(m, "m=audio 40000 RTP/AVP 0", "rtpengine's port: {at_pbx}");
    let answer = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let ok = reply(
        &at_pbx,
        200,
        "pbx6",
        pbx.addr(),
        "Content-Type: application/sdp\r\n",
    );
    let text = String::from_utf8(ok.to_bytes().to_vec()).unwrap().replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{answer}", answer.len()),
    );
    let ok = Message::parse(text).unwrap();
    pbx.send_message(&ok).await;
    let answered = phone.recv().await;
    assert_eq!(answered.status(), Some(200), "{answered}");
    let (_, m) = sdp_of(&answered);
    assert!(m.starts_with("m=audio "), "{answered}");
    assert_ne!(m, "m=audio 50000 RTP/AVP 0", "rtpengine's port: {answered}");
    phone.send(&in_dialog(&phone, "BYE", &answered, 2)).await;
    let bye = pbx.recv().await;
    let bye = if bye.method().map(|m| m.as_str()) == Some("ACK") {
        pbx.recv().await
    } else {
        bye
    };
    assert_eq!(bye.method().map(|m| m.as_str()), Some("BYE"), "{bye}");
    pbx.send_message(&reply(&bye, 200, "pbx6", pbx.addr(), ""))
        .await;
    assert_eq!(phone.recv().await.status(), Some(200));
    drop(rtpengine);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_added_by_a_reload_carries_calls() {
    let (p, b, c) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let first = config(p, b, false);
    let proxy = support::proxy(&first).await;
    let phone = Peer::new(p).await;
    let carrier = Peer::on(c, p).await;
    // Nothing matches 0… yet: 404.
    phone
        .send(&invite(
            &phone,
            "sip:0201234567@siplink.test",
            "e-reload-1",
            1,
            "",
        ))
        .await;
    assert_eq!(phone.recv().await.status(), Some(404));
    let second = format!(
        "{first}\n[[connections]]\nname = \"carrier\"\nkind = \"trunk\"\n\
         addresses = [\"127.0.0.1:{c}\"]\ndial_patterns = [\"0[0-9]+\"]\n\
         probe = {{ enabled = false }}\n"
    );
    proxy
        .reload(siplink_proxy::Config::from_toml(&second).unwrap())
        .await
        .unwrap();
    phone
        .send(&invite(
            &phone,
            "sip:0201234567@siplink.test",
            "e-reload-2",
            1,
            "",
        ))
        .await;
    let at_carrier = carrier.recv().await;
    assert_eq!(at_carrier.method().map(|m| m.as_str()), Some("INVITE"));
    assert_eq!(
        at_carrier.request_uri().unwrap().as_str(),
        "sip:0201234567@127.0.0.1"
    );
    carrier
        .send_message(&reply(&at_carrier, 486, "busy", carrier.addr(), ""))
        .await;
    assert_eq!(phone.recv().await.status(), Some(486));
    proxy.shutdown().await;
}
