//! The browser phone end to end, driven from Rust: JsSIP (the page in
//! `interop/browser/`) in headless Chromium registers to the in-process proxy
//! over WebSocket and calls 1000; the proxy routes it over a trunk to a SIPp
//! UAS (`interop/browser/uas_webrtc.xml`) that answers with a WebRTC SDP
//! answer and hangs up with a BYE after 2 s. Passes only for registered →
//! confirmed (the browser applied the answer) → ended by the remote BYE, and
//! SIPp's call completed, with Chromium on the testkit's launcher driven over
//! the DevTools protocol. A second test closes the page's WebSocket mid-call
//! and passes only when the UAS (`uas_webrtc_flow_lost.xml`) gets the BYE the
//! proxy sends for the lost caller.
//!
//! Needs `node` (the page's server, `serve.mjs`, bundles JsSIP from
//! `interop/browser/node_modules`: `npm ci` there), `chromium` and `sipp`.
//! Skipped without them unless `SIPLINK_INTEROP=1`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use siplink_testkit::{Chromium, ProcessGroup, log_file, tail, tcp_listening, wait_until};
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// How long the call lasts before the UAS's BYE.
const PAUSE_MS: u64 = 2000;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/browser")
}

/// One DevTools session on a page: `Runtime.evaluate` and nothing else.
struct Page {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Page {
    /// Attaches to the first page of `browser`.
    async fn attach(browser: &Chromium) -> Page {
        let list: Value =
            serde_json::from_str(&browser.devtools_get("/json/list").unwrap()).unwrap();
        let url = list
            .as_array()
            .and_then(|pages| pages.iter().find(|p| p["type"] == "page"))
            .and_then(|p| p["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page in {list}"))
            .to_owned();
        let stream = TcpStream::connect(("127.0.0.1", browser.devtools_port()))
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        Page { ws, next_id: 0 }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its
    /// value; a thrown exception is an `Err` with its description.
    async fn eval(&mut self, expression: &str) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": true, "awaitPromise": true},
        });
        self.ws
            .send(WsMessage::text(request.to_string()))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a DevTools answer within 10 s")
                .expect("the DevTools connection open")
                .unwrap();
            let WsMessage::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] != id {
                continue; // an event
            }
            if let Some(e) = v["result"].get("exceptionDetails") {
                return Err(e.to_string());
            }
            return Ok(v["result"]["result"]["value"].clone());
        }
    }

    /// Polls `expression` until it is `true`; panics with `failure` after 10 s.
    async fn wait_true(&mut self, expression: &str, failure: &str) {
        let t0 = Instant::now();
        while self.eval(expression).await != Ok(Value::Bool(true)) {
            assert!(t0.elapsed() < Duration::from_secs(10), "{failure}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's state (`window.siplinkState`).
    async fn state(&mut self) -> Value {
        self.eval(
            "({registration: window.siplinkState.registration, call: window.siplinkState.call, \
             end: window.siplinkState.end, media: window.siplinkState.media, \
             error: window.siplinkState.error})",
        )
        .await
        .unwrap()
    }

    /// Polls the state until `pred` holds; panics naming `what` after `limit`
    /// or as soon as `fatal` gives a reason.
    async fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
        fatal: impl Fn(&Value) -> Option<String>,
    ) -> Value {
        let t0 = Instant::now();
        loop {
            let s = self.state().await;
            if pred(&s) {
                return s;
            }
            if let Some(reason) = fatal(&s) {
                panic!("{what}: {reason} (state {s})");
            }
            assert!(
                t0.elapsed() < limit,
                "{what}: not reached within {limit:?} (state {s})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a browser call test runs on, up to a confirmed call.
struct Call {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    proxy: siplink_proxy::Proxy,
    pbx: siplink_testkit::Sipp,
    _server: ProcessGroup,
    browser: Chromium,
    page: Page,
}

/// The proxy (a WebSocket listener, user alice, 1000 over a trunk to the
/// UAS), the SIPp UAS running `scenario` with `uas_args`, the page's server,
/// Chromium; alice registers and calls 1000, and the call is confirmed with a
/// WebRTC answer applied. `None` when a program is missing (a skip).
async fn confirmed_call(name: &str, scenario: &str, uas_args: &[&str]) -> Option<Call> {
    // One browser call at a time (each starts Chromium, SIPp and a server).
    let turn = SERIAL.lock().await;
    if !require("node", "--version", "nodejs")
        || !require("chromium", "--version", "chromium")
        || !require("sipp", "-v", "sip-tester")
    {
        return None;
    }
    let page_dir = browser_dir();
    if !page_dir.join("node_modules/jssip").exists() {
        assert!(
            !siplink_testkit::interop_required(),
            "SIPLINK_INTEROP is set but interop/browser/node_modules is missing (npm ci there)"
        );
        println!("SKIPPED: no interop/browser/node_modules (npm ci there)");
        return None;
    }
    let dir = work_dir(name);
    let (sip, ws, uas, media, http) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );

    // The proxy: a WebSocket listener, user alice, 1000 over a trunk to the UAS.
    let proxy = proxy(&format!(
        r#"
[proxy]
domains = ["siplink.test"]

[[listen]]
transport = "udp"
address = "127.0.0.1:{sip}"

[[listen]]
transport = "ws"
address = "127.0.0.1:{ws}"

[[users]]
name = "alice"
password = "secret"

[[connections]]
name = "webrtc-pbx"
kind = "trunk"
addresses = ["127.0.0.1:{uas}"]
dial_patterns = ["1000"]
probe = {{ enabled = false }}
"#
    ))
    .await;

    let pbx = Sipp::builder(&dir, "uas")
        .scenario(page_dir.join(scenario))
        .port(uas)
        .timeout(Duration::from_secs(50))
        .args([
            "-mp",
            &media.to_string(),
            "-set",
            "rtp_port",
            &media.to_string(),
        ])
        .args(uas_args.iter().copied())
        .spawn_listening();

    // The page's server (it bundles JsSIP from node_modules at start-up).
    let log = log_file(&dir.join("serve.log"));
    let mut serve = Command::new("node");
    serve
        .current_dir(&page_dir)
        .arg("serve.mjs")
        .arg(http.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut server = ProcessGroup::spawn("node serve.mjs", serve).expect("node starts");
    wait_until(Duration::from_secs(20), "the page served", || {
        tcp_listening(http) || !server.running()
    });
    assert!(server.running(), "{}", tail(&dir.join("serve.log"), 4000));

    let browser = Chromium::builder(&dir).start(&format!("http://127.0.0.1:{http}/"));
    let mut page = Page::attach(&browser).await;
    page.wait_true(
        "typeof window.siplinkStart === 'function' && !!window.JsSIP",
        "the page did not load",
    )
    .await;

    let cfg = json!({
        "wsUrl": format!("ws://127.0.0.1:{ws}"),
        "uri": "sip:alice@siplink.test",
        "password": "secret",
        "debug": true,
    });
    page.eval(&format!("window.siplinkStart({cfg})"))
        .await
        .unwrap();
    page.wait_for(
        "registration",
        Duration::from_secs(10),
        |s| s["registration"] == "registered",
        |s| (s["registration"] == "failed").then(|| s["error"].to_string()),
    )
    .await;
    println!("STEP 1/3 OK: registered");

    page.eval("window.siplinkCall('sip:1000@siplink.test')")
        .await
        .unwrap();
    let confirmed = page
        .wait_for(
            "call confirmed",
            Duration::from_secs(10),
            |s| s["call"] == "confirmed" || s["call"] == "ended",
            |s| {
                (s["call"] == "failed").then(|| format!("call failed: {} {}", s["end"], s["error"]))
            },
        )
        .await;
    let events = page
        .eval("window.siplinkState.events.map((e) => e.kind)")
        .await
        .unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "call:confirmed"),
        "the call ended without being confirmed: {confirmed}"
    );
    let media = page.state().await["media"].clone();
    assert!(
        media["remoteType"] == "answer"
            && media["remoteHasIce"] == true
            && media["remoteHasFingerprint"] == true,
        "confirmed, but the remote answer is not a WebRTC answer: {media}"
    );
    Some(Call {
        _turn: turn,
        proxy,
        pbx,
        _server: server,
        browser,
        page,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_phone_registers_calls_and_is_hung_up_on() {
    let pause = PAUSE_MS.to_string();
    let Some(Call {
        _turn,
        proxy,
        mut pbx,
        _server,
        browser,
        mut page,
    }) = confirmed_call("browser", "uas_webrtc.xml", &["-d", &pause]).await
    else {
        return;
    };
    println!("STEP 2/3 OK: call confirmed, the browser applied the SDP answer");

    let ended = page
        .wait_for(
            "call ended by BYE",
            Duration::from_millis(PAUSE_MS + 6000),
            |s| s["call"] == "ended" || s["call"] == "failed",
            |_| None,
        )
        .await;
    let end = &ended["end"];
    assert!(
        end["how"] == "ended" && end["originator"] == "remote" && end["method"] == "BYE",
        "the call did not end by a BYE from the remote side: {end}"
    );
    println!("STEP 3/3 OK: call ended by the remote BYE");
    pbx.expect_success(Duration::from_secs(10)).await;

    // Unregister politely; not part of the verdict.
    let _ = page.eval("window.siplinkStop()").await;
    drop(browser);
    proxy.shutdown().await;
}

/// A browser phone's WebSocket closes mid-call (a closed tab, a lost
/// network): the proxy sends the PBX a BYE (the SIPp UAS waits for it and
/// fails without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_websocket_mid_call_hangs_up_the_pbx_leg() {
    let Some(Call {
        _turn,
        proxy,
        mut pbx,
        _server,
        browser,
        mut page,
    }) = confirmed_call("browser-flow-lost", "uas_webrtc_flow_lost.xml", &[]).await
    else {
        return;
    };
    println!("STEP 2/3 OK: call confirmed");
    page.eval("window.siplinkDropConnection()").await.unwrap();
    // JsSIP keeps a confirmed call when its transport goes (no transaction
    // was open): the page's call stays "confirmed"; only the UA says so.
    page.wait_true(
        "window.siplinkState.events.some((e) => e.kind === 'ws:disconnected')",
        "the page's WebSocket did not close",
    )
    .await;
    println!("STEP 3/3: the page's connection is closed; the PBX must get a BYE");
    pbx.expect_success(Duration::from_secs(15)).await;
    drop(browser);
    proxy.shutdown().await;
}
