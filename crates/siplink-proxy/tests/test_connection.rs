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
    let report = siplink_proxy::test::test_connection(&config, "carrier")
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
    let report = siplink_proxy::test::test_connection(&config, "carrier")
        .await
        .unwrap();
    assert!(!report.is_ok(), "{report}");
    let failed = report.first_failure().unwrap();
    assert!(failed.name.ends_with("TLS"), "{report}");
    let text = report.to_string();
    assert!(text.contains("TLS error"), "{text}");
    assert!(
        text.to_lowercase().contains("issuer") || text.to_lowercase().contains("unknown"),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");

    // With the PBX's CA trusted: connect, TLS and OPTIONS pass.
    let config = trunk_config(free_port(), &address, "tls", Some(&pki.ca));
    let report = siplink_proxy::test::test_connection(&config, "carrier")
        .await
        .unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(
        report.to_string().contains("OPTIONS: answered 200"),
        "{report}"
    );
    pbx.shutdown().await;
}
