//! Test Connection over real sockets: a wrong port (refused), a PBX whose TLS
//! certificate the proxy does not trust, and the same PBX once its CA is
//! trusted. The TLS "PBX" is a second siplink proxy with a TLS listener (it
//! answers OPTIONS for itself).

mod support;

use std::path::Path;

use siplink_proxy::Config;
use support::*;

struct Pki {
    ca: String,
    dir: std::path::PathBuf,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "siplink test PBX CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("pbx.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("pbx.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    Pki {
        ca: dir.join("ca.pem").display().to_string(),
        dir: dir.to_path_buf(),
    }
}

fn trunk_config(p: u16, address: &str, transport: &str, tls_ca: Option<&str>) -> Config {
    let ca = tls_ca
        .map(|c| format!("tls_ca = {c:?}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[proxy]
domains = ["siplink.test"]
{ca}
[[listen]]
transport = "udp"
address = "127.0.0.1:{p}"

[[connections]]
name = "carrier"
kind = "trunk"
transport = "{transport}"
addresses = ["{address}"]
dial_patterns = [".*"]
"#
    );
    Config::from_toml(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_port_is_refused_and_says_so() {
    let port = free_port(); // nothing listens there
    let config = trunk_config(free_port(), &format!("127.0.0.1:{port}"), "tcp", None);
    let report = siplink_proxy::connection_test::test_connection(&config, "carrier")
        .await
        .unwrap();
    assert!(!report.is_ok(), "{report}");
    let text = report.to_string();
    assert!(text.contains("connect: connection refused"), "{text}");
    assert!(text.contains("check the port and transport"), "{text}");
    assert!(text.contains("OPTIONS: skipped"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_tls_step_and_a_trusted_one_passes() {
    let dir = work_dir("tls");
    let pki = pki(&dir);
    // The PBX: a siplink proxy listening on TLS with a certificate from our CA.
    let tls_port = free_port();
    let pbx = Config::from_toml(&format!(
        r#"
[proxy]
domains = ["pbx.test"]
[[listen]]
transport = "tls"
address = "127.0.0.1:{tls_port}"
certificate = "{}"
private_key = "{}"
"#,
        pki.dir.join("pbx.pem").display(),
        pki.dir.join("pbx.key").display()
    ))
    .unwrap();
    let pbx = siplink_proxy::Proxy::start(pbx)
        .await
        .expect("TLS PBX starts");

    let address = format!("127.0.0.1:{tls_port}");
    // The proxy trusts only the public roots: the handshake fails.
    let config = trunk_config(free_port(), &address, "tls", None);
    let report = siplink_proxy::connection_test::test_connection(&config, "carrier")
        .await
        .unwrap();
    assert!(!report.is_ok(), "{report}");
    let failed = report.first_failure().unwrap();
    assert!(failed.name.ends_with("TLS"), "{report}");
    let text = report.to_string();
    assert!(text.contains("TLS error"), "{text}");
    assert!(
        text.contains("not signed by a certificate authority the proxy trusts"),
        "{text}"
    );
    // The fix names the line that would trust it.
    assert!(text.contains("tls_pin = \"sha256:"), "{text}");
    assert!(text.contains("certificate"), "{text}");

    // With the PBX's CA trusted: connect, TLS and OPTIONS pass.
    let config = trunk_config(free_port(), &address, "tls", Some(&pki.ca));
    let report = siplink_proxy::connection_test::test_connection(&config, "carrier")
        .await
        .unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(
        report.to_string().contains("OPTIONS: answered 200"),
        "{report}"
    );
    pbx.shutdown().await;
}

/// A self-signed certificate marked CA:TRUE, what `openssl req -x509 -newkey
/// ec ... -subj /CN=pbx.test -addext subjectAltName=IP:127.0.0.1` makes.
fn openssl_style(dir: &Path) -> (rcgen::KeyPair, rustls::pki_types::CertificateDer<'static>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "pbx.test");
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.join("self.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("self.key"), key.serialize_pem()).unwrap();
    (key, cert.der().clone())
}

/// A TLS trunk connection with `extra` lines (tls_pin...) added to it.
fn trunk_config_with(p: u16, address: &str, tls_ca: Option<&str>, extra: &str) -> Config {
    let ca = tls_ca
        .map(|c| format!("tls_ca = {c:?}\n"))
        .unwrap_or_default();
    let c = Config::from_toml(&format!(
        r#"
[proxy]
domains = ["siplink.test"]
{ca}
[[listen]]
transport = "udp"
address = "127.0.0.1:{p}"

[[connections]]
name = "carrier"
kind = "trunk"
transport = "tls"
addresses = ["{address}"]
dial_patterns = [".*"]
{extra}
"#
    ))
    .unwrap();
    c.validate().unwrap();
    c
}

/// The `tls_pin = "…"` line a report prints.
fn pin_line(text: &str) -> String {
    let re = regex::Regex::new(r#"tls_pin = "(sha256:[0-9A-F:]{95})""#).unwrap();
    let m = re
        .captures(text)
        .unwrap_or_else(|| panic!("no tls_pin line in:\n{text}"));
    m[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_true_pbx_is_explained_and_the_printed_pin_line_makes_it_pass() {
    let dir = work_dir("tls-pin");
    let (_, der) = openssl_style(&dir);
    let tls_port = free_port();
    let pbx = Config::from_toml(&format!(
        r#"
[proxy]
domains = ["pbx.test"]
[[listen]]
transport = "tls"
address = "127.0.0.1:{tls_port}"
certificate = "{}"
private_key = "{}"
"#,
        dir.join("self.pem").display(),
        dir.join("self.key").display()
    ))
    .unwrap();
    let pbx = siplink_proxy::Proxy::start(pbx)
        .await
        .expect("TLS PBX starts");
    let address = format!("127.0.0.1:{tls_port}");
    let fingerprint = siplink_transport::Fingerprints::of(&der)
        .certificate_pin()
        .to_string();

    // Unpinned, public roots: refused as a CA certificate (webpki checks
    // that before looking for an issuer), with the fingerprint and the line.
    let report = siplink_proxy::connection_test::test_connection(
        &trunk_config_with(free_port(), &address, None, ""),
        "carrier",
    )
    .await
    .unwrap();
    println!("{report}");
    assert!(
        report.first_failure().unwrap().name.ends_with("TLS"),
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("presents a CA certificate (CA:TRUE"),
        "{text}"
    );
    assert!(text.contains(&fingerprint), "{text}");
    let line = pin_line(&text);
    assert_eq!(line, format!("tls_pin = \"{fingerprint}\""));

    // The certificate as tls_ca (what people try): CA used as end entity.
    let ca = dir.join("self.pem").display().to_string();
    let report = siplink_proxy::connection_test::test_connection(
        &trunk_config_with(free_port(), &address, Some(&ca), ""),
        "carrier",
    )
    .await
    .unwrap();
    println!("{report}");
    let text = report.to_string();
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("openssl req -x509"), "{text}");
    assert_eq!(pin_line(&text), line);

    // The printed line added to the connection: every step passes.
    let pinned = trunk_config_with(free_port(), &address, None, &line);
    assert_eq!(
        pinned.connections[0].tls_pin.as_deref(),
        Some(fingerprint.as_str())
    );
    let report = siplink_proxy::connection_test::test_connection(&pinned, "carrier")
        .await
        .unwrap();
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(
        report.to_string().contains("OPTIONS: answered 200"),
        "{report}"
    );
    // The public-key pin works as well, and with tls_ca set too.
    let spki = siplink_transport::Fingerprints::of(&der)
        .public_key_pin()
        .unwrap();
    let report = siplink_proxy::connection_test::test_connection(
        &trunk_config_with(
            free_port(),
            &address,
            Some(&ca),
            &format!("tls_pin = \"{spki}\""),
        ),
        "carrier",
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{report}");
    pbx.shutdown().await;
}

/// Serves a certificate chain whose handshake is signed with another key.
#[derive(Debug)]
struct Impostor(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_pinned_certificate_but_another_key_is_refused() {
    use std::sync::Arc;
    let dir = work_dir("tls-impostor");
    let (_, der) = openssl_style(&dir);
    let other = rcgen::KeyPair::generate().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
            other.serialize_der().into(),
        ))
        .unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![der.clone()], key));
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Impostor(certified)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let pin = siplink_transport::Fingerprints::of(&der).certificate_pin();
    let config = trunk_config_with(
        free_port(),
        &addr.to_string(),
        None,
        &format!("tls_pin = \"{pin}\""),
    );
    let report = siplink_proxy::connection_test::test_connection(&config, "carrier")
        .await
        .unwrap();
    println!("{report}");
    assert!(!report.is_ok(), "{report}");
    let failed = report.first_failure().unwrap();
    assert!(failed.name.ends_with("TLS"), "{report}");
    let text = report.to_string();
    assert!(text.contains("does not hold the private key"), "{text}");
    assert!(text.contains("impersonating"), "{text}");
    assert!(text.contains("OPTIONS: skipped"), "{text}");
    assert!(handshakes.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}
