//! Helpers for the interop tests: tool detection, free ports, a Kamailio
//! registrar as a child process, a client endpoint.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siplink_message::uri::SipUri;
use siplink_register::{
    RegistrationConfig, RegistrationService, ServiceConfig, ServiceEvent, State, Status, Timing,
    Transport,
};
use siplink_transaction::{Endpoint, EndpointConfig, ServerRequests, TableConfig, Timers};
use siplink_transport::{Protocol, TransportConfig};
use tokio::sync::{broadcast, watch};

/// Whether `tool` runs; a missing tool is a failure when `SIPLINK_INTEROP` is set.
pub fn tool_available(tool: &str, version_arg: &str, package: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("SIPLINK_INTEROP").is_none(),
            "SIPLINK_INTEROP is set but {tool} is not installed (apt-get install {package})"
        );
        println!("SKIPPED: {tool} not installed");
    }
    found
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// The crate's interop config directory.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A Kamailio registrar on loopback, killed on drop.
pub struct Kamailio {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    cfg: PathBuf,
    starts: u32,
}

/// Registrar options.
#[derive(Debug, Clone, Copy)]
pub struct KamOptions {
    pub auth: bool,
    pub min_expires: u32,
    pub max_expires: u32,
}

impl Kamailio {
    /// Renders the config into `dir` and starts Kamailio on a free port.
    pub fn start(dir: &Path, opts: KamOptions) -> Kamailio {
        let port = free_port();
        let ctl = dir.join("ctl.sock");
        let cfg = std::fs::read_to_string(interop_dir().join("kamailio-registrar.cfg"))
            .unwrap()
            .replace("@LISTEN_UDP@", &format!("udp:127.0.0.1:{port}"))
            .replace("@LISTEN_TCP@", &format!("tcp:127.0.0.1:{port}"))
            .replace("@CTL@", &format!("unix:{}", ctl.display()))
            .replace("@AUTH@", if opts.auth { "1" } else { "0" })
            .replace("@MIN_EXPIRES@", &opts.min_expires.to_string())
            .replace("@MAX_EXPIRES@", &opts.max_expires.to_string());
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut k = Kamailio {
            child: None,
            port,
            dir: dir.to_owned(),
            cfg: cfg_path,
            starts: 0,
        };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new("kamailio")
            // Its own process group, so that the workers it forks are killed with it.
            .process_group(0)
            .arg("-f")
            .arg(&self.cfg)
            .args(["-DD", "-E", "-m", "128", "-M", "16"])
            .arg("-P")
            .arg(self.dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&self.dir)
            .arg("-w")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio starts");
        self.child = Some(child);
        // Ready when its ctl socket answers.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if self.try_ul_dump().is_some() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("kamailio exited: {status}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("kamailio not ready; log:\n{}", self.log());
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The group is the one this guard created for Kamailio and its workers.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("ctl.sock"));
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        let t0 = Instant::now();
        // Wait for the children of the killed instance to release the port.
        while std::net::UdpSocket::bind(("127.0.0.1", self.port)).is_err()
            || std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err()
        {
            assert!(t0.elapsed() < Duration::from_secs(10), "port still busy");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kamailio.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// REGISTERs Kamailio received with this Call-ID.
    pub fn registers(&self, call_id: &str) -> usize {
        let needle = format!("SIPLINK-REGISTER ci={call_id} ");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Every REGISTER Kamailio logged.
    pub fn register_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("SIPLINK-REGISTER "))
            .map(str::to_owned)
            .collect()
    }

    fn try_ul_dump(&self) -> Option<String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.dir.join("ctl.sock").display()))
            .arg("ul.dump")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kamailio's `usrloc:location_contacts` statistic (bindings in memory).
    pub fn location_contacts(&self) -> u64 {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.dir.join("ctl.sock").display()))
            .args(["stats.get_statistics", "location_contacts"])
            .stdin(Stdio::null())
            .output()
            .expect("kamcmd");
        String::from_utf8_lossy(&out.stdout)
            .split('=')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .expect("usrloc:location_contacts")
    }

    /// `kamcmd ul.dump` over its own ctl socket.
    pub fn ul_dump(&self) -> String {
        self.try_ul_dump().expect("kamcmd ul.dump")
    }

    /// The contact addresses bound to `aor_user` in the location table.
    pub fn contacts_of(&self, aor_user: &str) -> Vec<String> {
        let dump = self.ul_dump();
        let mut out = Vec::new();
        let mut in_aor = false;
        for line in dump.lines() {
            let l = line.trim();
            if let Some(a) = l.strip_prefix("AoR: ") {
                in_aor = a == aor_user || a.starts_with(&format!("{aor_user}@"));
            } else if in_aor && let Some(c) = l.strip_prefix("Address: ") {
                out.push(c.to_owned());
            }
        }
        out
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client endpoint on loopback (UDP and TCP listeners) with a short T1 so
/// that transaction timeouts (64*T1) fit in a test.
pub struct Client {
    pub transport: siplink_transport::Transport,
    pub endpoint: Endpoint,
    pub requests: ServerRequests,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

pub async fn client(t1: Duration) -> Client {
    let (transport, incoming) = siplink_transport::Transport::new(TransportConfig::default());
    let udp = transport
        .listen(Protocol::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tcp = transport
        .listen(Protocol::Tcp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = EndpointConfig {
        table: TableConfig {
            timers: Timers {
                t1,
                ..Timers::default()
            },
            ..TableConfig::default()
        },
        ..EndpointConfig::default()
    };
    let (endpoint, requests) = Endpoint::start(transport.clone(), incoming, config);
    Client {
        transport,
        endpoint,
        requests,
        udp,
        tcp,
    }
}

impl Client {
    pub fn service(&self) -> (RegistrationService, broadcast::Receiver<ServiceEvent>) {
        RegistrationService::start(self.endpoint.clone(), ServiceConfig::default())
    }

    pub async fn stop(self) {
        self.endpoint.shutdown().await;
        self.transport.shutdown().await;
    }

    /// A registration of `user` to `registrar_port` over `protocol`.
    pub fn config(
        &self,
        user: &str,
        registrar_port: u16,
        protocol: Protocol,
    ) -> RegistrationConfig {
        let local = if protocol == Protocol::Udp {
            self.udp
        } else {
            self.tcp
        };
        let transport_param = if protocol == Protocol::Udp {
            ""
        } else {
            ";transport=tcp"
        };
        let mut cfg = RegistrationConfig::new(
            SipUri::parse(format!("sip:127.0.0.1:{registrar_port}{transport_param}")).unwrap(),
            SipUri::parse(format!("sip:{user}@127.0.0.1")).unwrap(),
            user,
            "127.0.0.1",
            local.port(),
            protocol,
        );
        cfg.timing = fast_timing();
        cfg
    }
}

/// Timing for tests: 1-2 s backoff, otherwise the defaults.
pub fn fast_timing() -> Timing {
    Timing {
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(2),
        ..Timing::default()
    }
}

/// Waits until `pred` holds for the status, at most `limit`.
pub async fn wait_for(
    status: &mut watch::Receiver<Status>,
    limit: Duration,
    what: &str,
    pred: impl FnMut(&Status) -> bool,
) -> Status {
    let r = match tokio::time::timeout(limit, status.wait_for(pred)).await {
        Ok(Ok(s)) => Ok(s.clone()),
        Ok(Err(_)) => Err("watch closed"),
        Err(_) => Err("timed out"),
    };
    r.unwrap_or_else(|e| panic!("{what}: {e} ({limit:?}); last {:?}", status.borrow()))
}

pub fn is_registered(s: &Status) -> bool {
    matches!(s.state, State::Registered { .. })
}

/// A fresh temp dir for one test.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("siplink-register-{name}-"))
        .tempdir()
        .unwrap()
}

/// The transport's name in a SIP URI parameter.
pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        _ => "other",
    }
}
