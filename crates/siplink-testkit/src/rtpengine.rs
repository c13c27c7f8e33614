//! rtpengine (Debian's `rtpengine-daemon`, userspace only) for interop tests.
//!
//! Each instance gets its own ng control port and its own media port range (two
//! instances sharing a range would swap each other's packets), runs with
//! `--config-file=none` (so it never reads `/etc/rtpengine` or opens more ports) and
//! `--table=-1` (no kernel forwarding), logs to a file in its work directory, and is
//! ready once `ping` answers `pong`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ProcessGroup, free_port, free_port_range, require, work_dir};

/// Media ports per instance.
const PORTS: u16 = 100;

/// A running rtpengine.
#[derive(Debug)]
pub struct Rtpengine {
    group: Option<ProcessGroup>,
    name: String,
    ng: SocketAddr,
    port_min: u16,
    log: PathBuf,
}

/// The raw `ping` datagram (a fixed cookie and `d7:command4:pinge`).
const PING: &[u8] = b"testkit d7:command4:pinge";
const PONG: &[u8] = b"testkit d6:result4:ponge";

/// Whether the ng socket at `addr` answers `ping` with `pong` within `limit`.
pub(crate) fn ping(addr: SocketAddr, limit: Duration) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    while t0.elapsed() < limit {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let _ = sock.send_to(PING, addr);
        if let Ok((n, from)) = sock.recv_from(&mut buf)
            && from == addr
            && &buf[..n] == PONG
        {
            return true;
        }
    }
    false
}

impl Rtpengine {
    /// Starts an instance labelled `name` on 127.0.0.1 and waits (up to 10 s) for it to
    /// answer `ping`. `None` when rtpengine is not installed and `SIPLINK_INTEROP` is
    /// unset (the test should return); panics when it is set, or when rtpengine starts
    /// but never answers (with its log).
    pub fn start(name: &str) -> Option<Rtpengine> {
        if !require("rtpengine", "--version", "rtpengine-daemon") {
            return None;
        }
        let mut r = Rtpengine {
            group: None,
            name: name.to_owned(),
            ng: SocketAddr::from(([127, 0, 0, 1], free_port())),
            port_min: free_port_range(PORTS),
            log: work_dir(&format!("rtpengine-{name}")).join("rtpengine.log"),
        };
        r.launch();
        Some(r)
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the rtpengine log");
        let mut cmd = Command::new("rtpengine");
        cmd.arg("--interface=127.0.0.1")
            .arg(format!("--listen-ng={}", self.ng))
            .arg("--foreground")
            .arg("--table=-1")
            .arg("--config-file=none")
            .arg(format!("--port-min={}", self.port_min))
            .arg(format!("--port-max={}", self.port_min + PORTS - 1))
            .arg("--log-stderr")
            .arg("--log-level=6")
            .stdout(Stdio::from(log.try_clone().expect("clone the log handle")))
            .stderr(Stdio::from(log));
        let group =
            ProcessGroup::spawn(&format!("rtpengine-{}", self.name), cmd).expect("spawn rtpengine");
        self.group = Some(group);
        if !ping(self.ng, Duration::from_secs(10)) {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!(
                "rtpengine {} did not answer ping on {}; its log:\n{log}",
                self.name, self.ng
            );
        }
    }

    /// The ng control address.
    pub fn ng_addr(&self) -> SocketAddr {
        self.ng
    }

    /// The media port range (inclusive).
    pub fn ports(&self) -> (u16, u16) {
        (self.port_min, self.port_min + PORTS - 1)
    }

    /// The log file (stderr and stdout).
    pub fn log(&self) -> &std::path::Path {
        &self.log
    }

    /// Kills the instance at once (SIGKILL to its group), as a crash.
    pub fn kill(&mut self) {
        if let Some(mut g) = self.group.take() {
            g.kill();
        }
    }

    /// Starts it again on the same ng address and port range (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.group.as_mut().is_some_and(ProcessGroup::running)
    }
}
