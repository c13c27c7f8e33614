//! Helpers of the loopback and interop tests: scenario paths, a SIPp PBX on
//! the testkit's launcher, a trunk on loopback, and one call placed as a UA.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_testkit::{Sipp, work_dir};
use siplink_transaction::{Endpoint, EndpointConfig, ServerRequests, new_branch};
use siplink_transport::{Transport, TransportConfig};
use siplink_trunk::{
    AttemptFailure, CallEvent, CallFailure, Target, Transport as Proto, Trunk, TrunkConfig,
    in_dialog_request,
};

/// The scenario file `name` under tests/interop/.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// A SIPp UAS playing the PBX: one call of a scenario, on the testkit's
/// launcher, with the transport the trunk must use to reach it.
pub struct Pbx {
    pub sipp: Sipp,
    pub protocol: Proto,
}

impl Pbx {
    /// SIPp running `scenario_name` once on 127.0.0.1 and a free port, with
    /// `-key`s, bound before it returns.
    pub fn uas(scenario_name: &str, protocol: Proto, keys: &[(&str, &str)]) -> Pbx {
        let mut b = Sipp::builder(&work_dir("trunk-sipp"), "pbx")
            .scenario(scenario(scenario_name))
            .tcp(protocol != Proto::Udp);
        for (k, v) in keys {
            b = b.key(k, v);
        }
        Pbx {
            sipp: b.spawn_listening(),
            protocol,
        }
    }

    pub fn target(&self) -> Target {
        Target::new("127.0.0.1", self.sipp.port(), self.protocol)
    }

    /// Waits for SIPp to end its one call; panics with its logs unless it
    /// exits 0 (the scenario ran to its end: every expected message came).
    pub async fn assert_success(&mut self) {
        self.sipp.expect_success(Duration::from_secs(40)).await;
    }
}

/// A trunk on a fresh loopback transport (UDP and TCP listeners), health
/// probes off (the PBX scenarios expect calls only).
pub struct TestTrunk {
    pub trunk: Trunk,
    pub transport: Transport,
    pub requests: ServerRequests,
}

pub async fn trunk(mut config: TrunkConfig, transport_config: TransportConfig) -> TestTrunk {
    config.health.enabled = false;
    let (transport, incoming) = Transport::new(transport_config);
    transport
        .listen(Proto::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    transport
        .listen(Proto::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, requests) =
        Endpoint::start(transport.clone(), incoming, EndpointConfig::default());
    let trunk = Trunk::new(config, endpoint).unwrap();
    TestTrunk {
        trunk,
        transport,
        requests,
    }
}

/// The caller's INVITE: no Via (the trunk adds its own), a minimal SDP offer.
pub fn invite(to_user: &str) -> Message {
    let sdp = "v=0\r\no=siplink 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    MessageBuilder::request(Method::Invite, format!("sip:{to_user}@trunk.invalid"))
        .header(HeaderName::MaxForwards, 70)
        .header(
            HeaderName::To,
            format_args!("<sip:{to_user}@trunk.invalid>"),
        )
        .header(
            HeaderName::From,
            format_args!("<sip:1001@127.0.0.1>;tag={}", &new_branch()[7..17]),
        )
        .header(
            HeaderName::CallId,
            format_args!("{}@siplink.test", &new_branch()[7..27]),
        )
        .header(HeaderName::CSeq, "1 INVITE")
        .header(HeaderName::Contact, "<sip:1001@127.0.0.1>")
        .body("application/sdp", sdp.as_bytes().to_vec())
        .build()
        .unwrap()
}

/// What a call looked like from the caller's side.
#[derive(Debug, Default)]
pub struct CallLog {
    pub provisional: Vec<u16>,
    pub target_failed: Vec<(usize, AttemptFailure)>,
    pub failed: Option<CallFailure>,
    pub final_status: Option<u16>,
    pub bye_status: Option<u16>,
}

/// Places one call through `trunk` as a UA: prints each event, ACKs a 2xx,
/// hangs up with BYE after `hold`.
pub async fn place_call(trunk: &Trunk, hold: Duration) -> CallLog {
    let log = call_quietly(trunk, hold).await;
    println!("call: {log:?}");
    log
}

/// [`place_call`] without the printout.
pub async fn call_quietly(trunk: &Trunk, hold: Duration) -> CallLog {
    let invite = invite("4001");
    let mut handle = trunk.call(invite.clone()).await.unwrap();
    let mut log = CallLog::default();
    let deadline = Duration::from_secs(45);
    loop {
        let ev = tokio::time::timeout(deadline, handle.next())
            .await
            .expect("a call event in time")
            .expect("the final response before the end");
        match ev {
            CallEvent::Provisional(m) => log.provisional.push(m.status().unwrap()),
            CallEvent::TargetFailed { target, reason } => log.target_failed.push((target, reason)),
            CallEvent::Failed(f) => log.failed = Some(f),
            CallEvent::Additional2xx { .. } => {}
            CallEvent::Final { response, dialog } => {
                log.final_status = response.status();
                if let Some(dialog) = dialog {
                    let ack = in_dialog_request(Method::Ack, &invite, &response, 1).unwrap();
                    dialog.send_ack(ack.clone()).await.unwrap();
                    // A retransmitted 2xx (our ACK was lost) is ACKed again.
                    let again = dialog.clone();
                    tokio::spawn(async move {
                        while let Some(ev) = handle.next().await {
                            if let CallEvent::Additional2xx { .. } = ev {
                                let _ = again.send_ack(ack.clone()).await;
                            }
                        }
                    });
                    tokio::time::sleep(hold).await;
                    let bye = in_dialog_request(Method::Bye, &invite, &response, 2).unwrap();
                    let mut tx = dialog.send_request(bye).await.unwrap();
                    log.bye_status = tx.final_response().await.ok().and_then(|m| m.status());
                }
                return log;
            }
        }
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
