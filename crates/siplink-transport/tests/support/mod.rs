//! Helpers shared by the integration tests: certificates, messages, timeouts.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use siplink_message::Message;
use siplink_transport::{
    ClientAuth, Incoming, Roots, TlsClientConfig, TlsServerConfig, Transport, TransportConfig,
};
use tokio::sync::mpsc;

/// Upper bound for any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(5);

/// The loopback addresses to test: 127.0.0.1 always, ::1 when the machine has it.
pub fn loopbacks() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
    if std::net::UdpSocket::bind("[::1]:0").is_ok() {
        v.push("::1".parse().unwrap());
    } else {
        eprintln!("no ::1 on this machine: IPv6 cases skipped");
    }
    v
}

pub fn any_port(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, 0)
}

/// A test PKI made with rcgen: a CA, a server certificate for `localhost`,
/// 127.0.0.1 and ::1, and a client certificate, as PEM.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    pub dir: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "siplink test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ckey = KeyPair::generate().unwrap();
        let cparams = CertificateParams::new(vec!["client.localhost".to_string()]).unwrap();
        let ccert = cparams.signed_by(&ckey, &issuer).unwrap();
        let dir = siplink_testkit::work_dir("transport-pki");
        let pki = Pki {
            ca: ca_cert.pem(),
            server_cert: cert.pem(),
            server_key: key.serialize_pem(),
            client_cert: ccert.pem(),
            client_key: ckey.serialize_pem(),
            dir,
        };
        std::fs::write(pki.dir.join("server.pem"), &pki.server_cert).unwrap();
        std::fs::write(pki.dir.join("server.key"), &pki.server_key).unwrap();
        pki
    }

    /// Server config read from the PEM files.
    pub fn server(&self, auth: ClientAuth<'_>) -> TlsServerConfig {
        TlsServerConfig::from_pem_files(
            self.dir.join("server.pem"),
            self.dir.join("server.key"),
            auth,
        )
        .unwrap()
    }

    pub fn client(&self) -> TlsClientConfig {
        TlsClientConfig::new(Roots::Pem(self.ca.as_bytes()), None).unwrap()
    }

    pub fn client_with_cert(&self) -> TlsClientConfig {
        TlsClientConfig::new(
            Roots::Pem(self.ca.as_bytes()),
            Some((self.client_cert.as_bytes(), self.client_key.as_bytes())),
        )
        .unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A transport with TLS on both sides from `pki`.
pub fn transport(
    pki: &Pki,
    tweak: impl FnOnce(&mut TransportConfig),
) -> (Transport, mpsc::Receiver<Incoming>) {
    let mut cfg = TransportConfig {
        tls_server: Some(pki.server(ClientAuth::None)),
        tls_client: Some(pki.client()),
        ..TransportConfig::default()
    };
    tweak(&mut cfg);
    Transport::new(cfg)
}

/// A request text with a placeholder top Via (the transport rewrites it).
pub fn request_text(method: &str, branch: &str) -> String {
    format!(
        "{method} sip:bob@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP placeholder.invalid;rport;branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=a1\r\n\
To: <sip:bob@localhost>\r\n\
Call-ID: {branch}@test\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
}

pub fn request(method: &str, branch: &str) -> Message {
    Message::parse(request_text(method, branch).into_bytes()).unwrap()
}

/// A request with a literal top Via.
pub fn request_with_via(via: &str, branch: &str) -> String {
    request_text("OPTIONS", branch).replace(
        &format!("Via: SIP/2.0/UDP placeholder.invalid;rport;branch=z9hG4bK{branch}"),
        &format!("Via: {via};branch=z9hG4bK{branch}"),
    )
}

pub async fn recv(rx: &mut mpsc::Receiver<Incoming>) -> Incoming {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("inbound channel closed")
}

/// Asserts nothing arrives for a short while.
pub async fn nothing(rx: &mut mpsc::Receiver<Incoming>) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("unexpected message: {}", m.message);
    }
}

/// Polls `f` until it is true (or fails after [`WAIT`]).
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Number of open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}
