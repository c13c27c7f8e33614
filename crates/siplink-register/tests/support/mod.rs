//! Helpers for the loopback and interop tests: a Kamailio registrar (on the
//! testkit's launcher) and what the tests ask of it, a client endpoint.
#![allow(dead_code)]

/// Helpers of the sans-IO tests (`registration.rs`, `manager.rs`).
pub mod sans_io;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use siplink_message::uri::SipUri;
use siplink_register::{
    RegistrationConfig, RegistrationService, ServiceConfig, ServiceEvent, State, Status, Timing,
    Transport,
};
use siplink_testkit::{Kamailio, free_port, require};
use siplink_transaction::{Endpoint, EndpointConfig, ServerRequests, TableConfig, Timers};
use siplink_transport::{Protocol, TransportConfig};
use tokio::sync::{broadcast, watch};

/// The crate's interop config directory.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Whether Kamailio and kamcmd are installed (see [`siplink_testkit::require`]).
pub fn kamailio_available() -> bool {
    require("kamailio", "-v", "kamailio") && require("kamcmd", "-V", "kamailio")
}

/// A Kamailio registrar on loopback (`tests/interop/kamailio-registrar.cfg`) and
/// what the tests ask of it; the testkit's launcher stops it on drop.
pub struct KamRegistrar {
    pub kam: Kamailio,
    pub port: u16,
}

/// Registrar options.
#[derive(Debug, Clone, Copy)]
pub struct KamOptions {
    pub auth: bool,
    pub min_expires: u32,
    pub max_expires: u32,
}

impl KamRegistrar {
    /// Renders the config into `dir` and starts Kamailio on a free port.
    pub fn start(dir: &Path, opts: KamOptions) -> KamRegistrar {
        let port = free_port();
        let kam = Kamailio::builder(dir)
            .config_file(interop_dir().join("kamailio-registrar.cfg"))
            .set("LISTEN_UDP", format!("udp:127.0.0.1:{port}"))
            .set("LISTEN_TCP", format!("tcp:127.0.0.1:{port}"))
            .set("AUTH", if opts.auth { "1" } else { "0" })
            .set("MIN_EXPIRES", opts.min_expires)
            .set("MAX_EXPIRES", opts.max_expires)
            .memory(128, 16)
            .wait_udp(port)
            .wait_tcp(port)
            .wait_ctl()
            .start();
        KamRegistrar { kam, port }
    }

    /// Kills it (SIGKILL to its process group).
    pub fn kill(&mut self) {
        self.kam.kill();
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kam.restart();
    }

    pub fn log(&self) -> String {
        self.kam.log()
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

    /// Kamailio's `usrloc:location_contacts` statistic (bindings in memory).
    pub fn location_contacts(&self) -> u64 {
        let out = self
            .kam
            .kamcmd(&["stats.get_statistics", "location_contacts"])
            .expect("kamcmd");
        out.split('=')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .expect("usrloc:location_contacts")
    }

    /// `kamcmd ul.dump` over its own ctl socket.
    pub fn ul_dump(&self) -> String {
        self.kam.kamcmd(&["ul.dump"]).expect("kamcmd ul.dump")
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

/// The transport's name in a SIP URI parameter.
pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        _ => "other",
    }
}
