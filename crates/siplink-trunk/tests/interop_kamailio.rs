//! The trunk driver against Kamailio (Debian `kamailio`, with its `tls`
//! module) as a second, independent PBX that requires digest authentication
//! for INVITE and BYE: `tests/interop/kamailio-pbx.cfg` challenges with 407
//! (`proxy_challenge`), verifies the answer (`pv_proxy_authenticate`),
//! answers 200, absorbs the ACK and answers the authenticated BYE.
//!
//! * Calls over UDP, TCP and TLS (certificate made with rcgen, trusted
//!   through our CA): challenged, answered, ACKed, hung up with a BYE that
//!   is challenged in turn and answered inside the dialog.
//! * A wrong password: the second challenge is not answered (403 upstream,
//!   `AuthFailed`); no credentials: 403, `AuthRequired` with the realm.
//! * Test connection over TLS: the untrusted certificate is reported as a TLS
//!   error with its reason; trusted, every step passes.
//! * A certificate made with `openssl req -x509` (CA:TRUE): named as such,
//!   with the fingerprints openssl computes (certificate and public key) and
//!   the `tls_pin` line; pinned, every step passes.
//! * The health task: OPTIONS probes keep Kamailio up and take a target with
//!   nothing listening down, with an event.
//!
//! Each Kamailio runs on the testkit's launcher: in the foreground in its own
//! process group, with its own ports, pid file and runtime directory in a
//! fresh work directory (no ctl socket), stopped when the test ends. Without `kamailio` the tests
//! print `SKIPPED` and pass unless `SIPLINK_INTEROP=1` is set.

mod support;

use std::process::Command;
use std::time::Duration;

use siplink_auth::ClientCredentials;
use siplink_testkit::{Kamailio, free_port, require, work_dir};
use siplink_transport::{Roots, TlsClientConfig, TransportConfig};
use siplink_trunk::report::{Failure, Step};
use siplink_trunk::{
    CallFailure, HealthState, Target, TestOptions, Transport as Proto, TrunkConfig, test_connection,
};
use support::{TestTrunk, place_call, trunk};

const USER: &str = "trunkuser";
const PASSWORD: &str = "s3cret";
const HOLD: Duration = Duration::from_millis(200);

/// Kamailio as the PBX (on the testkit's launcher) and its three listeners.
struct KamPbx {
    kam: Kamailio,
    dir: std::path::PathBuf,
    udp: u16,
    tcp: u16,
    tls: u16,
    ca: String,
}

impl KamPbx {
    fn start() -> KamPbx {
        KamPbx::start_with(|_| test_pki())
    }

    /// Starts with the certificate `pki` makes in the work directory (PEM:
    /// CA, certificate, key).
    fn start_with(pki: impl FnOnce(&std::path::Path) -> (String, String, String)) -> KamPbx {
        let dir = work_dir("trunk-kamailio");
        let (udp, tcp, tls) = (free_port(), free_port(), free_port());
        let (ca, cert, key) = pki(&dir);
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        let kam = Kamailio::builder(&dir)
            .config_file(support::scenario("kamailio-pbx.cfg"))
            .extra_file("tls.cfg", support::scenario("kamailio-tls.cfg"))
            .set("UDP_PORT", udp)
            .set("TCP_PORT", tcp)
            .set("TLS_PORT", tls)
            .set("USER", USER)
            .set("PASSWORD", PASSWORD)
            .memory(32, 8)
            .wait_udp(udp)
            .wait_tcp(tcp)
            // Set up last.
            .wait_tcp(tls)
            .start();
        KamPbx {
            kam,
            dir,
            udp,
            tcp,
            tls,
            ca,
        }
    }

    fn log(&self) -> String {
        self.kam.log()
    }

    fn target(&self, p: Proto) -> Target {
        let port = match p {
            Proto::Udp => self.udp,
            Proto::Tcp => self.tcp,
            _ => self.tls,
        };
        Target::new("127.0.0.1", port, p)
    }

    fn client_tls(&self) -> TransportConfig {
        TransportConfig {
            tls_client: Some(TlsClientConfig::new(Roots::Pem(self.ca.as_bytes()), None).unwrap()),
            ..TransportConfig::default()
        }
    }
}

/// A CA and a server certificate for localhost / 127.0.0.1 (PEM: CA, cert, key).
fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "siplink trunk test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn config(target: Target, password: Option<&str>) -> TrunkConfig {
    let mut c = TrunkConfig::new("kamailio-pbx", vec![target]);
    c.health.enabled = false;
    c.credentials = password.map(|p| ClientCredentials::password(USER, p));
    c
}

async fn authenticated_call(p: Proto) {
    if !require("kamailio", "-v", "kamailio") {
        return;
    }
    let pbx = KamPbx::start();
    let tc = if p == Proto::Tls {
        pbx.client_tls()
    } else {
        TransportConfig::default()
    };
    let TestTrunk { trunk, .. } = trunk(config(pbx.target(p), Some(PASSWORD)), tc).await;
    let log = place_call(&trunk, HOLD).await;
    assert_eq!(log.final_status, Some(200), "{log:?}\n{}", pbx.log());
    assert_eq!(log.bye_status, Some(200));
    assert!(log.failed.is_none());
    // Kamailio verified our Proxy-Authorization.
    assert!(
        pbx.log()
            .contains(&format!("authenticated INVITE from {USER}")),
        "{}",
        pbx.log()
    );
}

#[tokio::test]
async fn authenticated_call_udp() {
    authenticated_call(Proto::Udp).await;
}

#[tokio::test]
async fn authenticated_call_tcp() {
    authenticated_call(Proto::Tcp).await;
}

#[tokio::test]
async fn authenticated_call_tls() {
    authenticated_call(Proto::Tls).await;
}

#[tokio::test]
async fn wrong_password_and_no_credentials() {
    if !require("kamailio", "-v", "kamailio") {
        return;
    }
    let pbx = KamPbx::start();
    let TestTrunk { trunk, .. } = trunk(
        config(pbx.target(Proto::Udp), Some("wrong")),
        TransportConfig::default(),
    )
    .await;
    let log = place_call(&trunk, HOLD).await;
    assert_eq!(log.final_status, Some(403));
    assert!(
        matches!(log.failed, Some(CallFailure::AuthFailed(_))),
        "{log:?}"
    );

    let t = support::trunk(
        config(pbx.target(Proto::Tcp), None),
        TransportConfig::default(),
    )
    .await;
    let log = place_call(&t.trunk, HOLD).await;
    assert_eq!(log.final_status, Some(403));
    assert_eq!(
        log.failed,
        Some(CallFailure::AuthRequired {
            realm: Some("pbx.test".into())
        })
    );
}

#[tokio::test]
async fn test_connection_tls_certificate() {
    if !require("kamailio", "-v", "kamailio") {
        return;
    }
    let pbx = KamPbx::start();
    let cfg = config(pbx.target(Proto::Tls), Some(PASSWORD));
    // The default roots do not know our CA.
    let report = test_connection(&cfg, 0, TestOptions::default())
        .await
        .unwrap();
    println!("{report}");
    match report.first_failure() {
        Some((Step::Tls, Failure::Tls(t))) => {
            assert_eq!(
                t.problem,
                siplink_transport::TlsProblem::UnknownIssuer,
                "{t}"
            )
        }
        other => panic!("expected a TLS error, got {other:?}\n{report}"),
    }
    // Trusted: connect, TLS and OPTIONS (Kamailio answers 200) pass.
    let options = TestOptions {
        transport: pbx.client_tls(),
        ..TestOptions::default()
    };
    let report = test_connection(&cfg, 0, options).await.unwrap();
    println!("{report}");
    assert!(report.is_ok(), "{report}");
}

/// A certificate made the usual way, `openssl req -x509` (self-signed,
/// `CA:TRUE`): with it as the trusted CA, Test Connection names the problem
/// and prints the fingerprint (the one `openssl x509 -fingerprint -sha256`
/// prints) with the line to add; pinned by it, every step passes.
#[tokio::test]
async fn test_connection_pins_an_openssl_req_x509_certificate() {
    if !require("kamailio", "-v", "kamailio") || !require("openssl", "version", "openssl") {
        return;
    }
    let pbx = KamPbx::start_with(|dir| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=pbx.test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
        (cert.clone(), cert, key)
    });
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pbx.dir.as_path().join("cert.pem"))
        .output()
        .unwrap();
    // "sha256 Fingerprint=AB:CD:..." (the label's case varies by version).
    let text = String::from_utf8(out.stdout).unwrap();
    let openssl_fp = text.trim().rsplit('=').next().unwrap().to_owned();
    assert_eq!(openssl_fp.len(), 95, "{text}");

    // The public-key pin as docs/connections.md tells to compute it.
    let out = Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64")
        .current_dir(pbx.dir.as_path())
        .output()
        .unwrap();
    let openssl_spki = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(openssl_spki.len(), 44, "{openssl_spki:?}");

    let cfg = config(pbx.target(Proto::Tls), Some(PASSWORD));
    // The certificate itself as the trusted CA, as people try first.
    let report = test_connection(
        &cfg,
        0,
        TestOptions {
            transport: pbx.client_tls(),
            ..TestOptions::default()
        },
    )
    .await
    .unwrap();
    println!("{report}");
    let line = format!("tls_pin = \"sha256:{openssl_fp}\"");
    match report.first_failure() {
        Some((Step::Tls, f @ Failure::Tls(t))) => {
            assert_eq!(
                t.problem,
                siplink_transport::TlsProblem::CaUsedAsEndEntity,
                "{t}"
            );
            assert!(f.to_string().contains("openssl req -x509"), "{f}");
            assert!(f.hint(Step::Tls).contains(&line), "{}", f.hint(Step::Tls));
            assert!(
                f.to_string()
                    .contains(&format!("spki-sha256:{openssl_spki}")),
                "{f}"
            );
        }
        other => panic!("expected a TLS error, got {other:?}\n{report}"),
    }
    // Pinned by the fingerprint openssl printed: every step passes.
    let pin: siplink_transport::Pin = format!("sha256:{openssl_fp}").parse().unwrap();
    let options = TestOptions {
        transport: TransportConfig {
            tls_client: Some(
                TlsClientConfig::pinned(Roots::WebPki, None, [("127.0.0.1", pin)]).unwrap(),
            ),
            ..TransportConfig::default()
        },
        ..TestOptions::default()
    };
    let report = test_connection(&cfg, 0, options).await.unwrap();
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(report.to_string().contains(&openssl_fp), "{report}");
}

#[tokio::test]
async fn health_probes_up_and_down() {
    if !require("kamailio", "-v", "kamailio") {
        return;
    }
    let pbx = KamPbx::start();
    let dead = Target::new("127.0.0.1", free_port(), Proto::Tcp);
    let mut cfg = TrunkConfig::new("kamailio-pbx", vec![pbx.target(Proto::Udp), dead]);
    cfg.health.interval = Duration::from_millis(200);
    cfg.health.down_after = 2;
    let (transport, incoming) = siplink_transport::Transport::new(TransportConfig::default());
    transport
        .listen(Proto::Udp, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (endpoint, _requests) = siplink_transaction::Endpoint::start(
        transport.clone(),
        incoming,
        siplink_transaction::EndpointConfig::default(),
    );
    let trunk = siplink_trunk::Trunk::new(cfg, endpoint).unwrap();
    let mut events = trunk.health_events();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a health event in time")
        .unwrap();
    assert_eq!((ev.target, ev.to), (1, HealthState::Down));
    let mut watch = trunk.health_watch();
    assert_eq!(
        *watch.borrow_and_update(),
        vec![HealthState::Up, HealthState::Down]
    );
    // Kamailio answers the probes 200: its target stays up.
    let t0 = std::time::Instant::now();
    let health = loop {
        let health = trunk.health();
        if health[0].last.is_some() || t0.elapsed() > Duration::from_secs(10) {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health[0].state, HealthState::Up);
    assert_eq!(
        health[0].last,
        Some(siplink_trunk::ProbeOutcome::Status(200)),
        "{health:?}"
    );
}
