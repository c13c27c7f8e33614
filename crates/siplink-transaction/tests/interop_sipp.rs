//! Interoperability with SIPp (Debian package `sip-tester`, binary `sipp`) over
//! loopback UDP and TCP:
//!
//! * our client transactions against `sipp -sn uas`: INVITE, 180/200, our ACK
//!   for the 2xx (sent by this test's UA), BYE and its 200;
//! * our server transactions answering `sipp -sn uac`: INVITE answered 180 and
//!   200, the ACK (a stray: it has a branch of its own), BYE answered 200.
//!
//! Each run is `CALLS` calls; SIPp's exit code (0: every call successful) and
//! its `-trace_stat` CSV (`SuccessfulCall(C)`, `FailedCall(C)`) are checked.
//! Without `sipp` on PATH the tests print `SKIPPED: sipp not installed` and
//! pass, unless `SIPLINK_INTEROP=1` is set (CI), which makes that a failure.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_testkit::{Sipp, SippBuilder, require, work_dir};
use siplink_transaction::{ClientEvent, Endpoint, EndpointConfig, new_branch};
use siplink_transport::{Protocol, Target, Transport, TransportConfig};
use tokio::sync::Semaphore;

/// Calls per run.
const CALLS: usize = 200;
/// Calls in progress at once on our client side.
const CONCURRENCY: usize = 20;
/// SIPp's own global timeout, and our hard limit for it to exit.
const SIPP_TIMEOUT: Duration = Duration::from_secs(60);
const KILL_AFTER: Duration = Duration::from_secs(90);

/// SIPp's built-in scenario `name` with the common options (loopback, bounded in time, stats).
fn spawn_sipp(dir: &Path, name: &str, protocol: Protocol, args: &[&str]) -> SippBuilder {
    Sipp::builder(dir, name)
        .builtin(name)
        .tcp(protocol != Protocol::Udp)
        .calls(CALLS)
        .timeout(SIPP_TIMEOUT)
        .message_trace(false)
        .args(args)
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
}

/// SuccessfulCall(C) and FailedCall(C) from the last row of sipp's stat CSV.
fn stats(dir: &Path) -> (u64, u64) {
    let csv = std::fs::read_to_string(dir.join("stat.csv")).expect("sipp stat file");
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("header").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("a stats row").split(';').collect();
    let field = |name: &str| -> u64 {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column"));
        last[i].trim().parse().unwrap()
    };
    (field("SuccessfulCall(C)"), field("FailedCall(C)"))
}

fn report(what: &str, protocol: Protocol, sipp: &Sipp, code: Option<i32>) {
    let (ok, failed) = stats(sipp.dir());
    println!(
        "SIPp {what} over {protocol}: {CALLS} calls, {ok} successful, {failed} failed, exit code {code:?}"
    );
    if code != Some(0) || failed != 0 || ok != CALLS as u64 {
        panic!("SIPp {what} over {protocol} failed:\n{}", sipp.logs());
    }
    let _ = std::fs::remove_dir_all(sipp.dir());
}

async fn endpoint() -> (
    Endpoint,
    siplink_transaction::ServerRequests,
    Transport,
    SocketAddr,
    SocketAddr,
) {
    let (transport, incoming) = Transport::new(TransportConfig::default());
    let udp = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tcp = transport
        .listen(Protocol::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (ep, requests) = Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    (ep, requests, transport, udp, tcp)
}

fn invite(to: SocketAddr, protocol: Protocol, call: usize) -> Message {
    MessageBuilder::request(Method::Invite, format!("sip:service@{to}"))
        .header(
            HeaderName::Via,
            format_args!("SIP/2.0/{} placeholder.invalid", protocol.via_token()),
        )
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, format_args!("<sip:service@{to}>"))
        .header(
            HeaderName::From,
            format_args!("<sip:siplink@127.0.0.1>;tag=c{call}"),
        )
        .header(
            HeaderName::CallId,
            format_args!("{call}-{}", &new_branch()[7..23]),
        )
        .header(HeaderName::CSeq, "1 INVITE")
        .header(HeaderName::Contact, "<sip:siplink@127.0.0.1>")
        .build()
        .unwrap()
}

/// An in-dialog request after the 2xx (ACK or BYE): the 2xx's To, a new branch.
fn in_dialog(method: Method, invite: &Message, ok: &Message, cseq: u32) -> Message {
    let uri = String::from_utf8_lossy(invite.request_uri_bytes().unwrap()).into_owned();
    MessageBuilder::request(method.clone(), &uri)
        .header(
            HeaderName::Via,
            format_args!("SIP/2.0/UDP placeholder.invalid;branch={}", new_branch()),
        )
        .header(HeaderName::MaxForwards, 70)
        .header_bytes(
            HeaderName::To,
            bytes::Bytes::copy_from_slice(ok.header(HeaderName::To).unwrap()),
        )
        .header_bytes(
            HeaderName::From,
            bytes::Bytes::copy_from_slice(invite.header(HeaderName::From).unwrap()),
        )
        .header(HeaderName::CallId, invite.call_id().unwrap())
        .header(HeaderName::CSeq, format_args!("{cseq} {method}"))
        .build()
        .unwrap()
}

/// One call as a UA: INVITE, final 200, our ACK, BYE, its 200.
async fn call(ep: &Endpoint, target: Target, n: usize) -> Result<(), String> {
    let req = invite(target.addr, target.protocol, n);
    let mut tx = ep
        .send_request(req, target.clone())
        .await
        .map_err(|e| e.to_string())?;
    let ok = loop {
        match tokio::time::timeout(Duration::from_secs(40), tx.next()).await {
            Ok(Some(ClientEvent::Provisional(_))) => {}
            Ok(Some(ClientEvent::Final(m))) if m.status() == Some(200) => break m,
            other => return Err(format!("call {n}: INVITE got {other:?}")),
        }
    };
    let ack = in_dialog(Method::Ack, tx.request(), &ok, 1);
    ep.transport()
        .send(target.clone(), ack)
        .await
        .map_err(|e| e.to_string())?;
    let bye = in_dialog(Method::Bye, tx.request(), &ok, 2);
    let mut btx = ep
        .send_request(bye, target)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(Duration::from_secs(40), btx.next()).await {
            Ok(Some(ClientEvent::Provisional(_))) => {}
            Ok(Some(ClientEvent::Final(m))) if m.status() == Some(200) => return Ok(()),
            other => return Err(format!("call {n}: BYE got {other:?}")),
        }
    }
}

async fn client_against_uas(protocol: Protocol) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let dir = work_dir(&format!("sipp-uas-{protocol}"));
    let mut sipp = spawn_sipp(&dir, "uas", protocol, &[]).spawn_listening();
    let (ep, _requests, transport, _, _) = endpoint().await;
    let target = Target::new(protocol, SocketAddr::from(([127, 0, 0, 1], sipp.port())));
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..CALLS {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let (ep, target) = (ep.clone(), target.clone());
        calls.spawn(async move {
            let r = call(&ep, target, n).await;
            drop(permit);
            r
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = calls.join_next().await {
        if let Err(e) = r.unwrap() {
            failures.push(e);
        }
    }
    let code = sipp.wait(KILL_AFTER).await;
    ep.shutdown().await;
    transport.shutdown().await;
    println!(
        "siplink client over {protocol}: {CALLS} calls, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    report("uas (our client)", protocol, &sipp, code);
}

async fn server_answering_uac(protocol: Protocol) {
    if !require("sipp", "-v", "sip-tester") {
        return;
    }
    let (ep, mut requests, transport, udp, tcp) = endpoint().await;
    // The test's UA: 180 and 200 to INVITE, 200 to BYE (and anything else).
    let ua = tokio::spawn(async move {
        let mut answered = 0usize;
        while let Some(mut tx) = requests.recv().await {
            answered += 1;
            tokio::spawn(async move {
                let tag = &new_branch()[7..17];
                if tx.request.method() == Some(&Method::Invite) {
                    let ringing = tx
                        .request
                        .response_with_tag(180, Some(tag))
                        .build()
                        .unwrap();
                    let _ = tx.respond(ringing).await;
                }
                let ok = tx
                    .request
                    .response_with_tag(200, Some(tag))
                    .header(HeaderName::Contact, "<sip:siplink@127.0.0.1>")
                    .build()
                    .unwrap();
                let _ = tx.respond(ok).await;
            });
        }
        answered
    });
    let dir = work_dir(&format!("sipp-uac-{protocol}"));
    let remote = match protocol {
        Protocol::Udp => udp,
        _ => tcp,
    };
    let remote = remote.to_string();
    let mut sipp = spawn_sipp(&dir, "uac", protocol, &["-r", "50"])
        .remote(remote)
        .spawn();
    let code = sipp.wait(KILL_AFTER).await;
    ep.shutdown().await;
    transport.shutdown().await;
    drop(ep);
    let answered = tokio::time::timeout(Duration::from_secs(5), ua).await;
    println!("siplink server over {protocol}: {answered:?} requests answered (INVITE + BYE)");
    report("uac (our server)", protocol, &sipp, code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_sipp_uas_udp() {
    client_against_uas(Protocol::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_sipp_uas_tcp() {
    client_against_uas(Protocol::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_answering_sipp_uac_udp() {
    server_answering_uac(Protocol::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_answering_sipp_uac_tcp() {
    server_answering_uac(Protocol::Tcp).await;
}
