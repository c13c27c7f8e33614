//! Helpers of the interop tests: tool detection, free ports, child process
//! guards (SIPp, Kamailio) that kill what they started even on failure, a
//! trunk on loopback, and one call placed as a UA.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siplink_message::{HeaderName, Message, MessageBuilder, Method};
use siplink_transaction::{Endpoint, EndpointConfig, ServerRequests, new_branch};
use siplink_transport::{Transport, TransportConfig};
use siplink_trunk::{
    AttemptFailure, CallEvent, CallFailure, Target, Transport as Proto, Trunk, TrunkConfig,
    in_dialog_request,
};

/// Whether `tool` runs; with `SIPLINK_INTEROP` set a missing tool fails the test.
pub fn available(tool: &str, version_arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("SIPLINK_INTEROP").is_none(),
            "SIPLINK_INTEROP is set but {tool} is not installed"
        );
        println!("SKIPPED: {tool} not installed");
    }
    found
}

/// A port free on 127.0.0.1 for `protocol` (bound by the OS, then released).
pub fn free_port(protocol: Proto) -> u16 {
    match protocol {
        Proto::Udp => std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
        _ => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "siplink-trunk-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SIPLINK_KEEP_TMP").is_some() {
            println!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The scenario file `name` under tests/interop/.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// A child process in its own process group; the whole group is killed on drop.
pub struct Guard {
    pub child: Child,
    pub name: String,
}

impl Guard {
    /// Spawns `cmd` in a new process group.
    pub fn spawn(name: &str, mut cmd: Command) -> Guard {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Guard {
            child,
            name: name.to_owned(),
        }
    }

    /// Waits (polling, without blocking the runtime) for the exit code, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if t0.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The group: Kamailio forks its workers into it. The `--` is
            // vital: without it procps `kill` reads "-1234" as options and
            // ends up signalling pid -1, i.e. every process we may kill.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A SIPp UAS: one call of `scenario` on 127.0.0.1:`port`, with `-key`s.
pub struct Sipp {
    pub guard: Guard,
    pub dir: TempDir,
    pub port: u16,
    pub protocol: Proto,
}

impl Sipp {
    pub fn uas(scenario_name: &str, protocol: Proto, keys: &[(&str, &str)]) -> Sipp {
        let dir = TempDir::new("sipp");
        let port = free_port(protocol);
        let mut cmd = Command::new("sipp");
        cmd.current_dir(dir.path())
            .arg("-sf")
            .arg(scenario(scenario_name))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", if protocol == Proto::Udp { "u1" } else { "t1" }])
            .args(["-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin"])
            .args([
                "-trace_err",
                "-error_file",
                "errors.log",
                "-trace_msg",
                "-message_file",
                "messages.log",
            ])
            .args(["-trace_screen", "-screen_file", "screen.log"]);
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let guard = Guard::spawn("sipp", cmd);
        // Give SIPp time to bind its socket.
        std::thread::sleep(Duration::from_millis(300));
        Sipp {
            guard,
            dir,
            port,
            protocol,
        }
    }

    pub fn target(&self) -> Target {
        Target::new("127.0.0.1", self.port, self.protocol)
    }

    /// Waits for SIPp to end its one call; panics with its logs unless it
    /// exits 0 (the scenario ran to its end: every expected message came).
    pub async fn assert_success(&mut self) {
        let code = self.guard.wait(Duration::from_secs(40)).await;
        if code != Some(0) {
            let read =
                |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            panic!(
                "sipp exit code {code:?}\n--- errors ---\n{}\n--- screen ---\n{}",
                read("errors.log"),
                read("screen.log")
            );
        }
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
