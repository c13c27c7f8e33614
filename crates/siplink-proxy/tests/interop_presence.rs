//! SUBSCRIBE/NOTIFY and MESSAGE end to end with Kamailio's presence modules
//! as the customer's PBX (issue 16): Kamailio (`presence`,
//! `presence_dialoginfo`, `pua`, `pua_dialoginfo`, `dialog`; subscriptions,
//! presentities and dialogs in memory, pua's required database a db_text
//! directory) publishes the dialog state of its extension 4001 and serves
//! `Event: dialog` subscriptions. The proxy runs `[proxy] core = "engine"`
//! with a connection `office` to it for 4xxx (account `proxy`). 1001's phone
//! (a UDP socket in this test) registers at the proxy and subscribes to 4001
//! through the proxy: Kamailio challenges the SUBSCRIBE (407), the proxy
//! answers with the connection's account; 202 and the initial NOTIFY reach
//! the phone. A call from 1002's phone (SIPp) through the proxy to 4001
//! (SIPp; Kamailio challenges the INVITE too) makes NOTIFYs with the states
//! trying, early, confirmed and terminated reach 1001's phone through the
//! proxy's Record-Route, in that order (of their dialog-info versions). The
//! phone unsubscribes through its route set (200 and a NOTIFY with
//! `Subscription-State: terminated`). A MESSAGE from the phone to extension
//! 4002 goes over the same connection (challenged by Kamailio too) to a SIPp
//! extension with its body intact, and the 200 comes back. The phone
//! subscribes to 4001's voicemail `message-summary` (presence_mwi; the
//! test's voicemail PUBLISHes two new messages) and is told of them. And
//! a MESSAGE from extension 4100 to 1001 comes from Kamailio over the
//! connection to the phone, and its 200 goes back.
//!
//! All of it over a trunk and over an outbound registration (whose
//! registered identity the PBX sees in From).
//! `kamailio_serves_dialog_subscriptions_without_the_proxy` checks the PBX
//! side of this harness alone (the phone subscribes at Kamailio directly).
//!
//! Skipped when kamailio, its presence modules or sipp are missing, unless
//! `SIPLINK_INTEROP=1`.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use siplink_auth::{ClientCredentials, DigestClient, RequestInfo};
use siplink_message::{HeaderName, Message};
use siplink_proxy::ConnectionState;
use siplink_testkit::{Kamailio, kamailio_modules};
use support::*;
use tokio::net::UdpSocket;

const LIMIT: Duration = Duration::from_secs(45);
const PASSWORD: &str = "office-secret";

/// Whether Kamailio and its presence modules are here (a failure when
/// `SIPLINK_INTEROP` is set and they are not).
fn have_presence() -> bool {
    if !require("kamailio", "-v", "kamailio") || !require("sipp", "-v", "sip-tester") {
        return false;
    }
    let found = kamailio_modules().is_some_and(|d| {
        [
            "presence.so",
            "presence_dialoginfo.so",
            "presence_mwi.so",
            "pua.so",
            "pua_dialoginfo.so",
        ]
        .iter()
        .all(|m| d.join(m).exists())
    });
    if !found {
        assert!(
            std::env::var_os("SIPLINK_INTEROP").is_none(),
            "SIPLINK_INTEROP is set but Kamailio's presence modules are missing \
             (Debian: kamailio-presence-modules)"
        );
        eprintln!("skipped: Kamailio's presence modules are missing (kamailio-presence-modules)");
    }
    found
}

/// Kamailio as the presence PBX on `port`; extension 4001 is 127.0.0.1:`ext`,
/// extension 4002 (MESSAGE) 127.0.0.1:`msg`, the proxy (users 1NNN) 127.0.0.1:`proxy`.
fn kamailio(dir: &Path, port: u16, ext: u16, msg: u16, proxy: u16) -> Kamailio {
    Kamailio::builder(dir)
        .config_file(scenario("kamailio-presence.cfg"))
        .extra_file("pua", scenario("kamailio-dbtext/pua"))
        .extra_file("version", scenario("kamailio-dbtext/version"))
        .set("PORT", port)
        .set("EXT_PORT", ext)
        .set("MSG_PORT", msg)
        .set("PROXY_PORT", proxy)
        .set("USER", "proxy")
        .set("PASSWORD", PASSWORD)
        .memory(64, 8)
        .wait_udp(port)
        .wait_ctl()
        .start()
}

/// How the proxy reaches the presence PBX.
#[derive(Clone, Copy, PartialEq)]
enum Office {
    /// A trunk with the PBX account's credentials (no registration).
    Trunk,
    /// An outbound registration with that account.
    OutboundRegistration,
}

/// The proxy on `p` with the engine core and a connection `office` to
/// Kamailio on `k` for the numbers 4xxx, account `proxy`.
fn office_config(p: u16, k: u16, office: Office) -> String {
    let head = head(p).replace("[proxy]\n", "[proxy]\ncore = \"engine\"\n");
    let kind = match office {
        Office::Trunk => "kind = \"trunk\"\nprobe = { enabled = false }",
        Office::OutboundRegistration => {
            "kind = \"outbound-registration\"\ndomain = \"pbx.test\"\n\
             deliver_to = \"1001\"\nregistration = { expires = 60 }"
        }
    };
    format!(
        r#"{head}
[[connections]]
name = "office"
{kind}
addresses = ["127.0.0.1:{k}"]
username = "proxy"
password = "{PASSWORD}"
dial_patterns = ["4[0-9]{{3}}"]
"#
    )
}

/// The value of the first header named `name` (any case), unfolded.
fn hdr(m: &Message, name: &str) -> Option<String> {
    m.headers()
        .find(|h| h.raw_name().eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
}

fn method(m: &Message) -> &str {
    m.method().map_or("", |m| m.as_str())
}

/// The `<state>` values of a dialog-info+xml body (RFC 4235), lower case.
fn dialog_states(body: &[u8]) -> Vec<String> {
    let re = regex::Regex::new(r"<state[^>]*>\s*([A-Za-z]+)\s*</state>").unwrap();
    re.captures_iter(&String::from_utf8_lossy(body))
        .map(|c| c[1].to_ascii_lowercase())
        .collect()
}

/// 1001's phone (or another party): one UDP socket talking to `server` (the
/// proxy, or Kamailio). NOTIFYs are answered 200 and kept.
struct Phone {
    /// Its From URI.
    from: &'static str,
    sock: UdpSocket,
    server: SocketAddr,
    digest: DigestClient,
    realm_of_server: &'static str,
    notifies: Vec<Message>,
    branch: u32,
}

/// A request the phone sends: everything but Via, CSeq and credentials.
struct Req<'a> {
    method: &'a str,
    ruri: &'a str,
    call_id: &'a str,
    to: &'a str,
    routes: &'a [String],
    extra: &'a str,
    body: &'a str,
}

impl Phone {
    async fn new(server: u16, realm_of_server: &'static str) -> Phone {
        Phone::named("sip:1001@siplink.test", server, realm_of_server).await
    }

    /// A party with From `from` (and 1001's credentials, if challenged).
    async fn named(from: &'static str, server: u16, realm_of_server: &'static str) -> Phone {
        Phone {
            from,
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server: SocketAddr::from(([127, 0, 0, 1], server)),
            digest: DigestClient::new(
                realm_of_server,
                ClientCredentials::password("1001", "pw1001"),
            ),
            realm_of_server,
            notifies: Vec::new(),
            branch: 0,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn text(&mut self, r: &Req<'_>, cseq: u32, auth: &str) -> String {
        self.branch += 1;
        let a = self.addr();
        let routes: String = r.routes.iter().map(|x| format!("Route: {x}\r\n")).collect();
        format!(
            "{m} {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {a};branch=z9hG4bK-phone-{b};rport\r\n\
             Max-Forwards: 70\r\n{routes}\
             From: <{from}>;tag=phone1001\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {m}\r\n\
             Contact: <sip:1001@{a}>\r\n\
             {extra}{auth}Content-Length: {len}\r\n\r\n{body}",
            m = r.method,
            from = self.from,
            ruri = r.ruri,
            b = self.branch,
            to = r.to,
            call_id = r.call_id,
            extra = r.extra,
            len = r.body.len(),
            body = r.body,
        )
    }

    /// The next message within `limit` that is not a NOTIFY (those, all
    /// from `server`, are answered and kept) nor a 100 Trying.
    async fn next(&mut self, limit: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .unwrap();
            let m = Message::parse(buf[..n].to_vec()).expect("a SIP message");
            if method(&m) == "NOTIFY" {
                // Through the proxy (the route set), never around it.
                assert_eq!(from, self.server, "a NOTIFY from elsewhere: {m}");
                let ok = m.response_with_tag(200, None).build().unwrap();
                self.sock.send_to(&ok.to_bytes(), from).await.unwrap();
                if !self.notifies.iter().any(|k| same_request(k, &m)) {
                    self.notifies.push(m);
                }
                continue;
            }
            if m.status() != Some(100) {
                return Some(m);
            }
        }
    }

    /// Sends `r` with CSeq `cseq` and returns its final response; a 401/407
    /// (from the proxy) is answered with 1001's credentials once, CSeq one
    /// up. Returns the CSeq used last too.
    async fn request(&mut self, r: &Req<'_>, cseq: u32) -> (Message, u32) {
        let mut cseq = cseq;
        let mut auth = String::new();
        // A challenge to a new request is no rejection of the last answer.
        self.digest.reset();
        for _round in 0..2 {
            let text = self.text(r, cseq, &auth);
            self.sock
                .send_to(text.as_bytes(), self.server)
                .await
                .unwrap();
            let response = loop {
                let m = self
                    .next(Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|| panic!("no final response to the {}", r.method));
                match m.status() {
                    Some(s) if s >= 200 && m.cseq().map(|c| c.seq) == Ok(cseq) => break m,
                    _ => continue,
                }
            };
            if matches!(response.status(), Some(401 | 407)) && auth.is_empty() {
                let answer = self
                    .digest
                    .answer(
                        self.realm_of_server,
                        response.www_authenticate().unwrap(),
                        response.proxy_authenticate().unwrap(),
                        &RequestInfo::new(r.method, r.ruri).with_body(r.body.as_bytes()),
                    )
                    .expect("the proxy's challenge is answerable");
                auth = answer
                    .iter()
                    .map(|a| format!("{}: {}\r\n", a.header_name(), a.credentials))
                    .collect();
                cseq += 1;
                continue;
            }
            return (response, cseq);
        }
        unreachable!()
    }

    /// Waits until a NOTIFY's body says `terminated` (or `limit` passes).
    async fn notifies_until_terminated(&mut self, limit: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            let done = self
                .notifies
                .iter()
                .any(|n| dialog_states(n.body()).iter().any(|s| s == "terminated"));
            if done {
                return;
            }
            if let Some(m) = self.next(Duration::from_millis(200)).await {
                panic!("unexpected while waiting for NOTIFYs: {m}");
            }
        }
    }

    /// The states of the NOTIFYs with a document so far, in the order of
    /// their dialog-info `version` (RFC 4235 §4.1: Kamailio's workers may
    /// send two NOTIFYs out of order, a watcher orders them by version),
    /// repeats of the same state next to each other collapsed.
    fn states(&self) -> Vec<String> {
        let mut docs: Vec<(u64, Vec<String>)> = self
            .notifies
            .iter()
            .filter(|n| !n.body().is_empty())
            .map(|n| {
                let version = dialog_info_version(n.body())
                    .unwrap_or_else(|| panic!("a dialog-info document without a version: {n}"));
                (version, dialog_states(n.body()))
            })
            .collect();
        docs.sort_by_key(|(v, _)| *v);
        let mut out: Vec<String> = Vec::new();
        for (_, states) in docs {
            for s in states {
                if out.last() != Some(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// The versions and states of the NOTIFYs as they arrived, for messages.
    fn arrivals(&self) -> Vec<(Option<u64>, Vec<String>)> {
        self.notifies
            .iter()
            .map(|n| (dialog_info_version(n.body()), dialog_states(n.body())))
            .collect()
    }
}

/// The `version` of a dialog-info document's root element.
fn dialog_info_version(body: &[u8]) -> Option<u64> {
    let re = regex::Regex::new(r#"<dialog-info\b[^>]*\bversion="(\d+)""#).unwrap();
    re.captures(&String::from_utf8_lossy(body))?[1].parse().ok()
}

/// The same request again (a retransmission): Call-ID and CSeq.
fn same_request(a: &Message, b: &Message) -> bool {
    a.call_id().ok() == b.call_id().ok()
        && a.cseq().ok().map(|c| c.seq) == b.cseq().ok().map(|c| c.seq)
}

/// Checks the NOTIFY states seen by the phone for a call to 4001 that rang
/// and was answered and hung up: (trying,) early, confirmed, terminated, in
/// that order, and nothing else.
fn assert_call_states(phone: &Phone, context: &str) {
    let states = phone.states();
    let expected: &[&[&str]] = &[
        &["trying", "early", "confirmed", "terminated"],
        &["early", "confirmed", "terminated"],
    ];
    assert!(
        expected.iter().any(|e| states == *e),
        "dialog states at the phone: {states:?} (as they arrived: {:?})\n{context}",
        phone.arrivals()
    );
    for n in &phone.notifies {
        assert_eq!(hdr(n, "Event").as_deref(), Some("dialog"), "{n}");
        if n.body().is_empty() {
            continue;
        }
        let ctype = hdr(n, "Content-Type").unwrap_or_default();
        assert!(ctype.contains("application/dialog-info+xml"), "{n}");
        let body = String::from_utf8_lossy(n.body());
        assert!(
            body.contains("entity=\"sip:4001@pbx.test\""),
            "NOTIFY not about 4001:\n{n}"
        );
    }
}

/// The SIPp extension 4001 and another extension calling it at Kamailio
/// (`k`) directly: the call rings, is answered, and hangs up.
async fn call_4001(dir: &Path, k: u16, ext: u16) {
    let mut extension = sipp(dir, "ext4001", ext, &["-sf", &scenario("presence_uas.xml")]);
    let mut caller = sipp(
        dir,
        "ext4100",
        free_port(),
        &[
            "-sf",
            &scenario("presence_uac.xml"),
            &format!("127.0.0.1:{k}"),
        ],
    );
    caller.expect_success(LIMIT).await;
    extension.expect_success(LIMIT).await;
}

/// The SIPp extension 4001 and 1002's phone (SIPp) calling it through the
/// proxy on `p` (the proxy challenges the phone; Kamailio challenges the
/// proxy, which answers with the connection's account).
async fn call_4001_through_the_proxy(dir: &Path, p: u16, ext: u16) {
    let mut extension = sipp(dir, "ext4001", ext, &["-sf", &scenario("presence_uas.xml")]);
    let mut caller = sipp(
        dir,
        "phone1002",
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
    caller.expect_success(LIMIT).await;
    extension.expect_success(LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_serves_dialog_subscriptions_without_the_proxy() {
    if !have_presence() {
        return;
    }
    let dir = work_dir("presence-direct");
    let (k, ext) = (free_port(), free_port());
    let mut kam = kamailio(&dir, k, ext, free_port(), free_port());
    assert!(kam.running(), "kamailio exited\n{}", kam.log());

    let mut phone = Phone::new(k, "pbx.test").await;
    let sub = Req {
        method: "SUBSCRIBE",
        ruri: "sip:4001@pbx.test",
        call_id: "presence-direct",
        to: "<sip:4001@pbx.test>",
        routes: &[],
        extra: "Event: dialog\r\nAccept: application/dialog-info+xml\r\n\
                Expires: 120\r\nX-Direct: yes\r\n",
        body: "",
    };
    let (ok, _) = phone.request(&sub, 1).await;
    assert!(
        matches!(ok.status(), Some(200 | 202)),
        "SUBSCRIBE: {ok}\n{}",
        kam.log()
    );
    phone.notifies_until_initial(Duration::from_secs(5)).await;
    assert_eq!(phone.notifies.len(), 1, "the initial NOTIFY");

    call_4001(&dir, k, ext).await;
    phone
        .notifies_until_terminated(Duration::from_secs(10))
        .await;
    assert_call_states(&phone, &kam.log());
    drop(kam);
}

impl Phone {
    /// Waits for the first NOTIFY (at most `limit`).
    async fn notifies_until_initial(&mut self, limit: Duration) {
        let t0 = Instant::now();
        while self.notifies.is_empty() && t0.elapsed() < limit {
            if let Some(m) = self.next(Duration::from_millis(200)).await {
                panic!("unexpected while waiting for the NOTIFY: {m}");
            }
        }
        let Some(first) = self.notifies.first() else {
            panic!("no initial NOTIFY within {limit:?}");
        };
        let state = hdr(first, "Subscription-State").unwrap_or_default();
        assert!(state.starts_with("active"), "initial NOTIFY: {first}");
        // No call yet: no body (Kamailio's presence has no presentity for
        // 4001), or a dialog-info document without dialogs.
        let ctype = hdr(first, "Content-Type").unwrap_or_default();
        assert!(
            first.body().is_empty() || ctype.contains("application/dialog-info+xml"),
            "initial NOTIFY: {first}"
        );
        assert!(
            dialog_states(first.body()).is_empty(),
            "no call yet: {first}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_follows_an_extensions_dialog_state_and_sends_a_message_over_a_trunk() {
    if !have_presence() {
        return;
    }
    subscribe_call_and_message("presence-trunk", Office::Trunk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_follows_an_extensions_dialog_state_and_sends_a_message_over_an_outbound_registration()
 {
    if !have_presence() {
        return;
    }
    subscribe_call_and_message("presence-reg", Office::OutboundRegistration).await;
}

/// The phone (1001, registered at the proxy) subscribes to 4001's dialog
/// state through the proxy's connection `office`, follows a call to 4001,
/// unsubscribes, and sends a MESSAGE to 4002 over the same connection.
async fn subscribe_call_and_message(name: &str, office: Office) {
    let dir = work_dir(name);
    let (p, k, ext, msg) = (free_port(), free_port(), free_port(), free_port());
    let mut kam = kamailio(&dir, k, ext, msg, p);
    assert!(kam.running(), "kamailio exited\n{}", kam.log());

    let proxy = proxy(&office_config(p, k, office)).await;
    if office == Office::OutboundRegistration {
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
        assert!(
            registered,
            "not registered to Kamailio: {:?}\n{}",
            proxy.status().await,
            kam.log()
        );
    }

    // 1001's phone registers at the proxy (digest with the registrar).
    let mut phone = Phone::new(p, "siplink.test").await;
    let (ok, _) = phone
        .request(
            &Req {
                method: "REGISTER",
                ruri: "sip:siplink.test",
                call_id: "presence-register",
                to: "<sip:1001@siplink.test>",
                routes: &[],
                extra: "Expires: 300\r\n",
                body: "",
            },
            1,
        )
        .await;
    assert_eq!(ok.status(), Some(200), "REGISTER: {ok}");

    // It subscribes to 4001's dialog state through the proxy: the proxy may
    // challenge the phone; Kamailio challenges the proxy, which answers with
    // the connection's account.
    let sub = Req {
        method: "SUBSCRIBE",
        ruri: "sip:4001@siplink.test",
        call_id: "presence-subscribe",
        to: "<sip:4001@siplink.test>",
        routes: &[],
        extra: "Event: dialog\r\nAccept: application/dialog-info+xml\r\nExpires: 120\r\n",
        body: "",
    };
    let (accepted, cseq) = phone.request(&sub, 1).await;
    assert!(
        matches!(accepted.status(), Some(200 | 202)),
        "SUBSCRIBE through the proxy: {accepted}\n{}",
        kam.log()
    );
    let log = kam.log();
    assert!(
        log.contains("SIPLINK-CHALLENGE SUBSCRIBE")
            && log.contains("SIPLINK-SUBSCRIBE to sip:4001@"),
        "the SUBSCRIBE was not challenged, or did not reach Kamailio's presence:\n{log}"
    );
    let record_route: Vec<String> = accepted
        .header_values(HeaderName::RecordRoute)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        !record_route.is_empty(),
        "the proxy did not Record-Route the SUBSCRIBE: {accepted}"
    );
    phone.notifies_until_initial(Duration::from_secs(5)).await;
    let initial = phone.notifies[0].clone();
    assert!(
        hdr(&initial, "Route").is_none(),
        "the proxy left its Route on the NOTIFY: {initial}"
    );

    // 1002 calls 4001 through the proxy: the call's states reach 1001's
    // phone through the proxy.
    call_4001_through_the_proxy(&dir, p, ext).await;
    phone
        .notifies_until_terminated(Duration::from_secs(10))
        .await;
    let log = kam.log();
    assert!(
        log.contains("SIPLINK-CHALLENGE INVITE")
            && log.contains("SIPLINK-INVITE to extension 4001"),
        "the call did not go through Kamailio's challenge to 4001:\n{log}"
    );
    assert_call_states(&phone, &log);

    // The phone unsubscribes in the dialog (its route set: the 2xx's
    // Record-Route): 200/202 and a last NOTIFY with Subscription-State
    // terminated.
    let target = accepted.contact().unwrap().as_slice()[0]
        .uri
        .as_str()
        .to_owned();
    let to = hdr(&accepted, "To").unwrap();
    let routes: Vec<String> = record_route.iter().rev().cloned().collect();
    let before = phone.notifies.len();
    let unsub = Req {
        method: "SUBSCRIBE",
        ruri: &target,
        call_id: "presence-subscribe",
        to: &to,
        routes: &routes,
        extra: "Event: dialog\r\nAccept: application/dialog-info+xml\r\nExpires: 0\r\n",
        body: "",
    };
    let (gone, _) = phone.request(&unsub, cseq + 1).await;
    assert!(
        matches!(gone.status(), Some(200 | 202)),
        "unSUBSCRIBE through the proxy: {gone}\n{}",
        kam.log()
    );
    let t0 = Instant::now();
    while phone.notifies.len() == before && t0.elapsed() < Duration::from_secs(5) {
        if let Some(m) = phone.next(Duration::from_millis(200)).await {
            panic!("unexpected: {m}");
        }
    }
    let last = phone.notifies.last().unwrap();
    assert!(
        phone.notifies.len() > before
            && hdr(last, "Subscription-State")
                .unwrap_or_default()
                .starts_with("terminated"),
        "no NOTIFY ending the subscription: {last}"
    );

    // A MESSAGE to extension 4002 over the connection: Kamailio challenges
    // it, the proxy answers, the extension gets the body as sent and its 200
    // comes back to the phone.
    let text = "Lunch at 12:30? \u{2014} 1001 \u{263a}";
    let mut extension = sipp(&dir, "ext4002", msg, &["-sf", &scenario("message_uas.xml")]);
    let (ok, _) = phone
        .request(
            &Req {
                method: "MESSAGE",
                ruri: "sip:4002@siplink.test",
                call_id: "presence-message",
                to: "<sip:4002@siplink.test>",
                routes: &[],
                extra: "Content-Type: text/plain;charset=UTF-8\r\n",
                body: text,
            },
            1,
        )
        .await;
    assert_eq!(ok.status(), Some(200), "MESSAGE: {ok}\n{}", kam.log());
    extension.expect_success(LIMIT).await;
    let seen = std::fs::read_to_string(dir.join("ext4002_messages.log")).unwrap();
    assert!(
        seen.contains(&format!("Content-Length: {}", text.len())) && seen.contains(text),
        "the MESSAGE body did not arrive intact:\n{seen}"
    );
    let log = kam.log();
    assert!(
        log.contains("SIPLINK-CHALLENGE MESSAGE") && log.contains("SIPLINK-MESSAGE to 4002"),
        "the MESSAGE was not challenged, or did not reach 4002:\n{log}"
    );
    // Over an outbound registration the PBX sees the registered identity;
    // over the trunk, the phone's.
    let from = match office {
        Office::Trunk => "sip:1001@siplink.test",
        Office::OutboundRegistration => "sip:proxy@pbx.test",
    };
    for (what, and) in [
        ("SIPLINK-SUBSCRIBE to sip:4001@", "event dialog from"),
        ("SIPLINK-MESSAGE to 4002", "from"),
    ] {
        let seen = log
            .lines()
            .any(|l| l.contains(what) && l.trim_end().ends_with(&format!("{and} {from}")));
        assert!(seen, "{what} not from {from}:\n{log}");
    }

    // Voicemail (RFC 3842): the PBX's voicemail PUBLISHes that 4001's mailbox
    // holds two new messages; the phone subscribes to its message-summary
    // through the proxy (challenged by Kamailio, presence_mwi) and the first
    // NOTIFY says so.
    let mut voicemail = Phone::named("sip:voicemail@pbx.test", k, "pbx.test").await;
    let summary = "Messages-Waiting: yes\r\nMessage-Account: sip:4001@pbx.test\r\n\
                   Voice-Message: 2/0 (0/0)\r\n";
    let (ok, _) = voicemail
        .request(
            &Req {
                method: "PUBLISH",
                ruri: "sip:4001@pbx.test",
                call_id: "presence-mwi-publish",
                to: "<sip:4001@pbx.test>",
                routes: &[],
                extra: "Event: message-summary\r\nExpires: 120\r\n\
                        Content-Type: application/simple-message-summary\r\n",
                body: summary,
            },
            1,
        )
        .await;
    assert_eq!(ok.status(), Some(200), "PUBLISH: {ok}\n{}", kam.log());
    let (ok, _) = phone
        .request(
            &Req {
                method: "SUBSCRIBE",
                ruri: "sip:4001@siplink.test",
                call_id: "presence-mwi",
                to: "<sip:4001@siplink.test>",
                routes: &[],
                extra: "Event: message-summary\r\n\
                        Accept: application/simple-message-summary\r\nExpires: 120\r\n",
                body: "",
            },
            1,
        )
        .await;
    assert!(
        matches!(ok.status(), Some(200 | 202)),
        "message-summary SUBSCRIBE through the proxy: {ok}\n{}",
        kam.log()
    );
    let mwi = |phone: &Phone| {
        phone
            .notifies
            .iter()
            .find(|n| n.call_id().ok() == Some("presence-mwi"))
            .cloned()
    };
    let t0 = Instant::now();
    while mwi(&phone).is_none() && t0.elapsed() < Duration::from_secs(5) {
        if let Some(m) = phone.next(Duration::from_millis(200)).await {
            panic!("unexpected while waiting for the message-summary NOTIFY: {m}");
        }
    }
    let n = mwi(&phone).expect("a message-summary NOTIFY within 5 s");
    assert_eq!(hdr(&n, "Event").as_deref(), Some("message-summary"), "{n}");
    let body = String::from_utf8_lossy(n.body());
    assert!(
        body.contains("Messages-Waiting: yes") && body.contains("Voice-Message: 2/0"),
        "{n}"
    );

    // The other way: extension 4100 sends 1001 a MESSAGE at the PBX, which
    // relays it over the connection to the proxy (a PBX's request to a user:
    // the user's contacts); the phone answers 200 and it goes back.
    let mut ext4100 = Phone::named("sip:4100@pbx.test", k, "pbx.test").await;
    let text = "Call me back \u{260e}";
    let send = tokio::spawn(async move {
        let r = Req {
            method: "MESSAGE",
            ruri: "sip:1001@pbx.test",
            call_id: "presence-message-in",
            to: "<sip:1001@pbx.test>",
            routes: &[],
            extra: "X-Direct: yes\r\nContent-Type: text/plain;charset=UTF-8\r\n",
            body: text,
        };
        ext4100.request(&r, 1).await.0
    });
    let m = phone
        .next(Duration::from_secs(10))
        .await
        .expect("the PBX's MESSAGE at the phone");
    assert_eq!(method(&m), "MESSAGE", "{m}");
    assert_eq!(m.body().as_ref(), text.as_bytes(), "{m}");
    let via = m.top_via().unwrap().branch().unwrap_or_default().to_owned();
    assert!(
        via.starts_with("z9hG4bKsl"),
        "not relayed by the engine: {m}"
    );
    let ok = m.response_with_tag(200, Some("ph-msg")).build().unwrap();
    phone
        .sock
        .send_to(&ok.to_bytes(), phone.server)
        .await
        .unwrap();
    let ok = send.await.unwrap();
    assert_eq!(ok.status(), Some(200), "{ok}\n{}", kam.log());
    assert!(
        kam.log().contains("SIPLINK-MESSAGE to 1001"),
        "{}",
        kam.log()
    );

    proxy.shutdown().await;
    drop(kam);
}
