//! TLS client failures named in words, and certificate pins, against real
//! rustls servers on loopback: one server per case, certificates made with
//! rcgen.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use siplink_transport::{
    ClientAuth, Error, Fingerprints, Pin, Protocol, Roots, Target, TlsClientConfig, TlsFailure,
    TlsProblem, TlsServerConfig, Transport, TransportConfig,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its key, as DER and PEM.
struct Cert {
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

impl Cert {
    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }
}

/// A CA and an issuer for leaf certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

fn leaf(ca: &Ca, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Cert {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    tweak(&mut p);
    let c = p.signed_by(&key, &ca.issuer).unwrap();
    Cert {
        der: c.der().clone(),
        pem: c.pem(),
        key,
    }
}

/// What `openssl req -x509 -newkey ec ... -subj /CN=pbx -addext subjectAltName=IP:127.0.0.1`
/// makes: a self-signed certificate marked CA:TRUE.
fn openssl_style_self_signed() -> Cert {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "pbx");
    let c = p.self_signed(&key).unwrap();
    Cert {
        der: c.der().clone(),
        pem: c.pem(),
        key,
    }
}

static TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn server_config(cert: &Cert, versions: &[&'static SupportedProtocolVersion]) -> ServerConfig {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key_der())
        .unwrap()
}

/// Serves TLS on loopback with `cfg`: completes handshakes and holds each
/// connection until the client goes.
async fn serve(cfg: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn client(tls: TlsClientConfig) -> Transport {
    Transport::new(TransportConfig {
        tls_client: Some(tls),
        ..TransportConfig::default()
    })
    .0
}

async fn probe(tls: TlsClientConfig, target: Target) -> Result<siplink_transport::TlsPeer, Error> {
    let t = client(tls);
    let r = t.probe_tls(&target).await;
    t.shutdown().await;
    r
}

fn failure(r: Result<siplink_transport::TlsPeer, Error>) -> TlsFailure {
    match r {
        Err(Error::Tls { failure, .. }) => *failure,
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

fn at(addr: SocketAddr) -> Target {
    Target::new(Protocol::Tls, addr)
}

fn roots(ca: &str) -> TlsClientConfig {
    TlsClientConfig::new(Roots::Pem(ca.as_bytes()), None).unwrap()
}

fn pinned(pin: Pin) -> TlsClientConfig {
    TlsClientConfig::pinned(Roots::WebPki, None, [("127.0.0.1", pin)]).unwrap()
}

/// The failure says the sentence, shows the fingerprint of the certificate
/// served, and the fix carries the exact pin line.
fn assert_named(f: &TlsFailure, problem: TlsProblem, served: &Cert) {
    assert_eq!(f.problem, problem, "{f}");
    let fp = Fingerprints::of(&served.der);
    assert_eq!(f.certificate, Some(fp), "{f}");
    let text = f.to_string();
    assert!(text.starts_with(problem.sentence()), "{text}");
    assert!(
        text.contains(&fp.certificate_pin().to_string()),
        "{text} lacks the fingerprint"
    );
}

#[tokio::test]
async fn unknown_issuer_is_named_with_the_fingerprint_and_the_pin_line() {
    let pbx_ca = ca("PBX CA");
    let cert = leaf(&pbx_ca, &["127.0.0.1"], |_| {});
    let addr = serve(server_config(&cert, BOTH)).await;
    // Another CA, and another CA that has the same name as the PBX's.
    let f = failure(probe(roots(&ca("PBX CA").pem), at(addr)).await);
    assert_named(&f, TlsProblem::UnknownIssuer, &cert);
    let f = failure(probe(roots(&ca("another CA").pem), at(addr)).await);
    assert_named(&f, TlsProblem::UnknownIssuer, &cert);
    let line = format!(
        "tls_pin = \"{}\"",
        Fingerprints::of(&cert.der).certificate_pin()
    );
    assert!(f.fix().contains(&line), "{}", f.fix());
    // The line is what it says: pinning it passes.
    let pin: Pin = line
        .trim_start_matches("tls_pin = \"")
        .trim_end_matches('"')
        .parse()
        .unwrap();
    probe(pinned(pin), at(addr)).await.unwrap();
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_named() {
    let pbx_ca = ca("PBX CA");
    let old = leaf(&pbx_ca, &["127.0.0.1"], |p| {
        p.not_before = date_time_ymd(2001, 1, 1);
        p.not_after = date_time_ymd(2002, 1, 1);
    });
    let addr = serve(server_config(&old, BOTH)).await;
    let f = failure(probe(roots(&pbx_ca.pem), at(addr)).await);
    assert_named(&f, TlsProblem::Expired, &old);
    assert!(f.fix().contains("renew"), "{}", f.fix());

    let future = leaf(&pbx_ca, &["127.0.0.1"], |p| {
        p.not_before = date_time_ymd(2200, 1, 1);
        p.not_after = date_time_ymd(2201, 1, 1);
    });
    let addr = serve(server_config(&future, BOTH)).await;
    let f = failure(probe(roots(&pbx_ca.pem), at(addr)).await);
    assert_named(&f, TlsProblem::NotYetValid, &future);
    assert!(f.fix().contains("clock"), "{}", f.fix());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named_with_the_name_checked() {
    let pbx_ca = ca("PBX CA");
    let cert = leaf(&pbx_ca, &["pbx.example.com"], |_| {});
    let addr = serve(server_config(&cert, BOTH)).await;
    let f = failure(probe(roots(&pbx_ca.pem), at(addr)).await);
    assert_named(&f, TlsProblem::WrongName, &cert);
    assert!(f.to_string().contains("\"127.0.0.1\""), "{f}");
    assert!(f.fix().contains("subject alternative names"), "{}", f.fix());
    // With the right name it passes.
    probe(
        roots(&pbx_ca.pem),
        at(addr).with_server_name("pbx.example.com"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_openssl_req_x509_certificate_is_ca_used_as_end_entity_and_pinning_it_works() {
    let cert = openssl_style_self_signed();
    let addr = serve(server_config(&cert, BOTH)).await;
    // Trusting the certificate itself as a CA (tls_ca = the PBX's certificate)
    // is what people try first: rustls refuses a CA certificate as a server's.
    let f = failure(probe(roots(&cert.pem), at(addr)).await);
    assert_named(&f, TlsProblem::CaUsedAsEndEntity, &cert);
    assert!(f.fix().starts_with("pin it: add this line"), "{}", f.fix());
    // Pinned by certificate, or by public key, over TLS 1.3 and 1.2: trusted.
    let fp = Fingerprints::of(&cert.der);
    for pin in [fp.certificate_pin(), fp.public_key_pin().unwrap()] {
        for versions in [TLS13, TLS12] {
            let addr = serve(server_config(&cert, versions)).await;
            let peer = probe(pinned(pin), at(addr))
                .await
                .unwrap_or_else(|e| panic!("{pin} over {versions:?}: {e}"));
            assert_eq!(peer.certificate, Some(fp));
        }
    }
}

/// Serves one certificate chain but signs the handshake with another key.
#[derive(Debug)]
struct Impostor(Arc<CertifiedKey>);

impl ResolvesServerCert for Impostor {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn the_pinned_certificate_with_another_private_key_is_refused() {
    let cert = openssl_style_self_signed();
    let other = KeyPair::generate().unwrap();
    let signing = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(other.serialize_der().into()))
        .unwrap();
    // CertifiedKey::new does not check that the key belongs to the
    // certificate (from_der would); rustls's server happily serves it.
    let impostor = Arc::new(CertifiedKey::new(vec![cert.der.clone()], signing));
    assert!(impostor.keys_match().is_err(), "the keys must differ");
    let fp = Fingerprints::of(&cert.der);
    for versions in [TLS13, TLS12] {
        let cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Impostor(impostor.clone())));
        let addr = serve(cfg).await;
        for pin in [fp.certificate_pin(), fp.public_key_pin().unwrap()] {
            let f = failure(probe(pinned(pin), at(addr)).await);
            assert_eq!(f.problem, TlsProblem::BadSignature, "{versions:?}: {f}");
            assert!(f.to_string().contains("private key"), "{f}");
            assert!(f.fix().contains("impersonating"), "{}", f.fix());
        }
    }
}

#[tokio::test]
async fn another_certificate_than_the_pinned_one_is_refused_with_the_new_fingerprint() {
    let pinned_cert = openssl_style_self_signed();
    let served = openssl_style_self_signed();
    let addr = serve(server_config(&served, BOTH)).await;
    let f = failure(
        probe(
            pinned(Fingerprints::of(&pinned_cert.der).certificate_pin()),
            at(addr),
        )
        .await,
    );
    assert_named(&f, TlsProblem::PinMismatch, &served);
    assert!(f.fix().contains("update the pin"), "{}", f.fix());
    // A pin is exclusive: a certificate the roots trust does not pass either.
    let pbx_ca = ca("PBX CA");
    let good = leaf(&pbx_ca, &["127.0.0.1"], |_| {});
    let addr = serve(server_config(&good, BOTH)).await;
    let tls = TlsClientConfig::pinned(
        Roots::Pem(pbx_ca.pem.as_bytes()),
        None,
        [(
            "127.0.0.1",
            Fingerprints::of(&pinned_cert.der).certificate_pin(),
        )],
    )
    .unwrap();
    assert_eq!(
        failure(probe(tls, at(addr)).await).problem,
        TlsProblem::PinMismatch
    );
}

#[tokio::test]
async fn a_pin_applies_to_its_host_only() {
    let cert = openssl_style_self_signed();
    let addr = serve(server_config(&cert, BOTH)).await;
    let pin = Fingerprints::of(&cert.der).certificate_pin();
    let tls = TlsClientConfig::pinned(Roots::WebPki, None, [("PBX.example.com.", pin)]).unwrap();
    // Reached as 127.0.0.1: no pin, the roots decide (and refuse).
    let f = failure(probe(tls.clone(), at(addr)).await);
    assert_ne!(f.problem, TlsProblem::PinMismatch);
    // Reached as pbx.example.com (SNI and check name): pinned, passes,
    // though the certificate names 127.0.0.1 only.
    probe(tls, at(addr).with_server_name("pbx.example.com"))
        .await
        .unwrap();
}

#[tokio::test]
async fn messages_flow_over_a_pinned_connection() {
    let cert = openssl_style_self_signed();
    let key_pem = cert.key.serialize_pem();
    let (server, mut incoming) = Transport::new(TransportConfig {
        tls_server: Some(
            TlsServerConfig::from_pem(cert.pem.as_bytes(), key_pem.as_bytes(), ClientAuth::None)
                .unwrap(),
        ),
        ..TransportConfig::default()
    });
    let addr = server
        .listen(Protocol::Tls, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = client(pinned(Fingerprints::of(&cert.der).certificate_pin()));
    let text = "OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS x.invalid;branch=z9hG4bKpin\r\nMax-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:pbx@127.0.0.1>\r\nCall-ID: pin@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    c.send(
        at(addr),
        siplink_message::Message::parse(text.as_bytes().to_vec()).unwrap(),
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), incoming.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message.call_id().unwrap(), "pin@x");
    c.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn no_common_version_or_cipher_is_named() {
    // A TLS 1.2-only server and a TLS 1.3-only client: the server answers
    // the ClientHello with a protocol_version alert.
    let pbx_ca = ca("PBX CA");
    let cert = leaf(&pbx_ca, &["127.0.0.1"], |_| {});
    let addr = serve(server_config(&cert, TLS12)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        rustls::pki_types::CertificateDer::pem_slice_iter(pbx_ca.pem.as_bytes())
            .map(|c| c.unwrap()),
    );
    let only13 = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let f = failure(probe(TlsClientConfig::from_rustls(Arc::new(only13)), at(addr)).await);
    assert_eq!(f.problem, TlsProblem::NoCommonProtocol, "{f}");
    assert_eq!(f.certificate, None);
    assert!(
        f.to_string()
            .contains("no TLS version or cipher suite in common"),
        "{f}"
    );
    assert!(f.fix().contains("TLS 1.2 or 1.3"), "{}", f.fix());

    // TLS 1.2 on both sides, but no cipher suite in common: the server
    // answers with a handshake_failure alert.
    use rustls::crypto::ring::cipher_suite as cs;
    let only = |suite: rustls::SupportedCipherSuite| {
        Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: vec![suite],
            ..rustls::crypto::ring::default_provider()
        })
    };
    let server = ServerConfig::builder_with_provider(only(
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ))
    .with_protocol_versions(TLS12)
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der.clone()], cert.key_der())
    .unwrap();
    let addr = serve(server).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        CertificateDer::pem_slice_iter(pbx_ca.pem.as_bytes()).map(|c| c.unwrap()),
    );
    let client = rustls::ClientConfig::builder_with_provider(only(
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ))
    .with_protocol_versions(TLS12)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let f = failure(probe(TlsClientConfig::from_rustls(Arc::new(client)), at(addr)).await);
    assert_eq!(f.problem, TlsProblem::NoCommonProtocol, "{f}");
    assert!(f.detail.contains("HandshakeFailure"), "{}", f.detail);
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_is_named() {
    let pbx_ca = ca("PBX CA");
    let cert = leaf(&pbx_ca, &["127.0.0.1"], |_| {});
    let clients_ca = ca("clients");
    for versions in [TLS13, TLS12] {
        // What TlsServerConfig::from_pem(.., ClientAuth::Required(..)) builds,
        // limited to one protocol version.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new({
                let mut r = rustls::RootCertStore::empty();
                r.add_parsable_certificates(
                    rustls::pki_types::CertificateDer::pem_slice_iter(clients_ca.pem.as_bytes())
                        .map(|c| c.unwrap()),
                );
                r
            }),
            provider(),
        )
        .build()
        .unwrap();
        let cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.der.clone()], cert.key_der())
            .unwrap();
        let addr = serve(cfg).await;
        let f = failure(probe(roots(&pbx_ca.pem), at(addr)).await);
        assert_eq!(
            f.problem,
            TlsProblem::CertificateRequired,
            "{versions:?}: {f}"
        );
        assert!(f.fix().contains("client certificate"), "{}", f.fix());
    }
}

#[tokio::test]
async fn anything_else_prints_the_raw_error_after_a_generic_sentence() {
    // Not TLS at all: a server that answers the ClientHello with SIP text.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        if let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = tcp.read(&mut buf).await;
        }
    });
    let f = failure(probe(roots(&ca("x").pem), at(addr)).await);
    assert_eq!(f.problem, TlsProblem::Other, "{f}");
    let text = f.to_string();
    assert!(text.starts_with("the TLS handshake failed: "), "{text}");
    assert!(
        text.len() > "the TLS handshake failed: ".len() + 3,
        "{text}"
    );
    assert!(f.fix().contains("5061"), "{}", f.fix());
}
