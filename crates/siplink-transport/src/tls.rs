//! TLS configuration (rustls with the *ring* provider).

use std::path::Path;
use std::sync::Arc;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cfg_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::TlsConfig(format!("{what}: {e}"))
}

fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| cfg_err(what, e))?;
    if certs.is_empty() {
        return Err(Error::TlsConfig(format!(
            "{what}: no certificate in the PEM data"
        )));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| cfg_err("private key", e))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))
}

fn roots_from_pem(pem: &[u8], what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(pem, what)? {
        roots.add(c).map_err(|e| cfg_err(what, e))?;
    }
    Ok(roots)
}

/// Whether and how a TLS server asks for client certificates (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth<'a> {
    /// No client certificate is asked for.
    None,
    /// A client certificate is asked for and checked against these CA
    /// certificates (PEM) if sent; clients without one are accepted.
    Optional(&'a [u8]),
    /// A client certificate signed by one of these CAs (PEM) is required.
    Required(&'a [u8]),
}

/// Server side of TLS: our certificate chain and key, and optional client
/// verification.
#[derive(Debug, Clone)]
pub struct TlsServerConfig {
    pub(crate) inner: Arc<ServerConfig>,
}

impl TlsServerConfig {
    /// From PEM data: the certificate chain (leaf first) and the private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8], client_auth: ClientAuth<'_>) -> Result<Self> {
        let certs = certs_from_pem(cert_chain, "server certificate")?;
        let key = key_from_pem(key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err("protocol versions", e))?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(ca) | ClientAuth::Required(ca) => {
                let roots = Arc::new(roots_from_pem(ca, "client CA")?);
                let v =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
                let v = if matches!(client_auth, ClientAuth::Optional(_)) {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().map_err(|e| cfg_err("client CA", e))?)
            }
        };
        let cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| cfg_err("server certificate and key", e))?;
        Ok(TlsServerConfig {
            inner: Arc::new(cfg),
        })
    }

    /// From PEM files (certificate chain, private key).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_auth: ClientAuth<'_>,
    ) -> Result<Self> {
        Self::from_pem(
            &read(cert_chain.as_ref())?,
            &read(key.as_ref())?,
            client_auth,
        )
    }

    /// From a ready rustls configuration.
    pub fn from_rustls(cfg: Arc<ServerConfig>) -> Self {
        TlsServerConfig { inner: cfg }
    }
}

/// Which certificate authorities a TLS client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots<'a> {
    /// The Mozilla roots compiled in (the `webpki-roots` crate).
    WebPki,
    /// The system's CA bundle: the PEM file named by `SSL_CERT_FILE`, else the
    /// first of the usual Debian / Red Hat / Alpine / macOS bundle paths.
    System,
    /// These CA certificates (PEM) only.
    Pem(&'a [u8]),
}

/// Client side of TLS: trusted roots, optional pins and an optional client
/// certificate.
///
/// A server certificate is checked against the roots and against the target's
/// host name (its [`server_name`](crate::Target::server_name), else its IP
/// address), which is also sent as SNI — unless a [`Pin`] is configured for
/// that host (see [`TlsClientConfig::pinned`]). In every case the server must
/// prove it holds the certificate's private key: its handshake signature is
/// verified with the certificate's public key.
#[derive(Debug, Clone)]
pub struct TlsClientConfig {
    pub(crate) inner: Arc<ClientConfig>,
}

const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

fn root_store(roots: Roots<'_>) -> Result<RootCertStore> {
    Ok(match roots {
        Roots::WebPki => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Roots::Pem(pem) => roots_from_pem(pem, "CA certificates")?,
        Roots::System => {
            let path = std::env::var_os("SSL_CERT_FILE")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    SYSTEM_BUNDLES
                        .iter()
                        .map(std::path::PathBuf::from)
                        .find(|p| p.exists())
                })
                .ok_or_else(|| Error::TlsConfig("no system CA bundle found".into()))?;
            let pem = read(&path)?;
            let mut store = RootCertStore::empty();
            // A system bundle may hold certificates webpki cannot use; skip those.
            let (_added, _ignored) = store.add_parsable_certificates(
                CertificateDer::pem_slice_iter(&pem).filter_map(|c| c.ok()),
            );
            if store.is_empty() {
                return Err(Error::TlsConfig(format!(
                    "no usable CA certificate in {}",
                    path.display()
                )));
            }
            store
        }
    })
}

impl TlsClientConfig {
    /// A client trusting `roots`, with an optional client certificate chain and
    /// key (PEM) for mutual TLS.
    pub fn new(roots: Roots<'_>, identity: Option<(&[u8], &[u8])>) -> Result<Self> {
        Self::pinned(roots, identity, std::iter::empty::<(&str, Pin)>())
    }

    /// Like [`new`](Self::new), with certificate pins per host: a server
    /// reached under a host that has pins must present, as its own
    /// certificate, one that matches one of them, and is then trusted
    /// **whatever its issuer, CA flags (an `openssl req -x509` certificate is
    /// `CA:TRUE`), validity dates and names**; the roots are not consulted for
    /// it. A server that does not match is refused ([`TlsProblem::PinMismatch`]).
    /// The handshake signature is verified as always, so a server that shows the
    /// pinned certificate without its private key is refused too.
    ///
    /// The host is matched against the name the connection checks: the
    /// target's [`server_name`](crate::Target::server_name) (a DNS name,
    /// compared without case and without a trailing dot), else its IP address
    /// (`192.0.2.10`, `2001:db8::1`; brackets are allowed). Hosts without pins
    /// are checked against the roots as usual.
    ///
    /// ```
    /// use siplink_transport::{Pin, Roots, TlsClientConfig};
    /// let pin: Pin = "sha256:3f:0b:11:aa:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01"
    ///     .parse()
    ///     .unwrap();
    /// let tls = TlsClientConfig::pinned(Roots::WebPki, None, [("pbx.example.com", pin)]).unwrap();
    /// # let _ = tls;
    /// ```
    pub fn pinned<H: AsRef<str>>(
        roots: Roots<'_>,
        identity: Option<(&[u8], &[u8])>,
        pins: impl IntoIterator<Item = (H, Pin)>,
    ) -> Result<Self> {
        let provider = provider();
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(root_store(roots)?),
            provider.clone(),
        )
        .build()
        .map_err(|e| cfg_err("CA certificates", e))?;
        let mut by_host: HashMap<String, Vec<Pin>> = HashMap::new();
        for (host, pin) in pins {
            let key = host_key(host.as_ref());
            if key.is_empty() {
                return Err(Error::TlsConfig("a pin needs a host".into()));
            }
            let v = by_host.entry(key).or_default();
            if !v.contains(&pin) {
                v.push(pin);
            }
        }
        let verifier = Arc::new(Verifier {
            webpki,
            pins: by_host,
            algs: provider.signature_verification_algorithms,
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err("protocol versions", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let cfg = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(
                    certs_from_pem(chain, "client certificate")?,
                    key_from_pem(key)?,
                )
                .map_err(|e| cfg_err("client certificate and key", e))?,
        };
        Ok(TlsClientConfig {
            inner: Arc::new(cfg),
        })
    }

    /// From a ready rustls configuration.
    pub fn from_rustls(cfg: Arc<ClientConfig>) -> Self {
        TlsClientConfig { inner: cfg }
    }
}

/// The key a pin is filed under: a DNS name without case or trailing dot, an
/// IP address in its canonical form.
fn host_key(host: &str) -> String {
    let h = host.trim();
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.trim_end_matches('.').to_ascii_lowercase(),
    }
}

fn server_name_key(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => host_key(d.as_ref()),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

/// The certificate verifier of every [`TlsClientConfig`] built here: pinned
/// hosts by pin, others by the roots (webpki); signatures always.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    pins: HashMap<String, Vec<Pin>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(pins) = self.pins.get(&server_name_key(server_name)) {
            let seen = Fingerprints::of(end_entity);
            return if pins.iter().any(|p| p.matches(&seen)) {
                // Trusted as pinned: no chain, CA-flag, date or name check.
                // The handshake signature is still checked against this
                // certificate's key (verify_tls1x_signature below).
                Ok(ServerCertVerified::assertion())
            } else {
                Err(Rejected::error(None, seen))
            };
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| Rejected::error(Some(e), Fingerprints::of(end_entity)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A refused server certificate, with what it was: carried inside rustls's
/// error so the handshake error can show the fingerprint.
#[derive(Debug)]
struct Rejected {
    /// The roots' verdict; `None` for a pin mismatch.
    cause: Option<rustls::Error>,
    seen: Fingerprints,
}

impl Rejected {
    fn error(cause: Option<rustls::Error>, seen: Fingerprints) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(Rejected { cause, seen }),
        )))
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(e) => write!(f, "{e}"),
            None => f.write_str("certificate does not match the pin"),
        }
    }
}

impl std::error::Error for Rejected {}

/// What a pin is the SHA-256 digest of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// The whole certificate (DER): `sha256:`. Changes when the certificate is
    /// renewed. The same digest as `openssl x509 -noout -fingerprint -sha256`.
    Certificate,
    /// The certificate's public key (its DER SubjectPublicKeyInfo):
    /// `spki-sha256:`. Survives a renewal that keeps the key.
    PublicKey,
}

/// A certificate pin: `sha256:<digest>` (the SHA-256 of the certificate) or
/// `spki-sha256:<digest>` (the SHA-256 of its public key, SubjectPublicKeyInfo).
///
/// The digest is 32 bytes written either as hex (64 digits, upper or lower
/// case, with or without `:` between bytes, as `openssl x509 -fingerprint
/// -sha256` prints it) or as base64 (standard or URL-safe alphabet, padding
/// optional, as `openssl dgst -sha256 -binary | base64` prints it). The
/// prefix is not case-sensitive. [`Display`](fmt::Display) writes the
/// certificate form as colon hex and the key form as base64.
///
/// ```
/// use siplink_transport::{Pin, PinKind};
/// let hex: Pin = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
///     .parse()
///     .unwrap();
/// assert_eq!(hex.kind(), PinKind::Certificate);
/// let b64: Pin = "spki-sha256:ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=".parse().unwrap();
/// assert_eq!(b64.kind(), PinKind::PublicKey);
/// assert_eq!(hex.digest(), b64.digest());
/// assert!("sha256:abcd".parse::<Pin>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin {
    kind: PinKind,
    digest: [u8; 32],
}

impl Pin {
    /// A pin of `kind` with this SHA-256 digest.
    pub fn new(kind: PinKind, digest: [u8; 32]) -> Pin {
        Pin { kind, digest }
    }

    /// What the digest is of.
    pub fn kind(&self) -> PinKind {
        self.kind
    }

    /// The SHA-256 digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Whether a certificate with these fingerprints matches.
    pub fn matches(&self, seen: &Fingerprints) -> bool {
        match self.kind {
            PinKind::Certificate => seen.certificate == self.digest,
            PinKind::PublicKey => seen.public_key == Some(self.digest),
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PinKind::Certificate => write!(f, "sha256:{}", colon_hex(&self.digest)),
            PinKind::PublicKey => write!(f, "spki-sha256:{}", base64(&self.digest)),
        }
    }
}

impl FromStr for Pin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Pin> {
        let bad = |reason: &'static str| Error::Pin {
            pin: s.chars().take(120).collect(),
            reason,
        };
        let t = s.trim();
        let lower = t.chars().take(12).collect::<String>().to_ascii_lowercase();
        let (kind, rest) = if lower.starts_with("spki-sha256:") {
            (PinKind::PublicKey, &t[12..])
        } else if lower.starts_with("sha256:") {
            (PinKind::Certificate, &t[7..])
        } else {
            return Err(bad(
                "a pin starts with sha256: (the certificate's SHA-256) or spki-sha256: (its public key's)",
            ));
        };
        let digest = parse_digest(rest.trim()).ok_or_else(|| {
            bad("the digest must be 32 bytes in hex (64 digits, colons allowed) or base64 (43 or 44 characters)")
        })?;
        Ok(Pin { kind, digest })
    }
}

fn parse_digest(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        // Colons, if any, must sit between every two bytes.
        if s.contains(':') && (s.len() != 95 || s.bytes().skip(2).step_by(3).any(|b| b != b':')) {
            return None;
        }
        return Some(out);
    }
    let b = unbase64(s)?;
    b.try_into().ok()
}

fn colon_hex(d: &[u8]) -> String {
    let mut s = String::with_capacity(d.len() * 3);
    for (i, b) in d.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(d: &[u8]) -> String {
    let mut s = String::with_capacity(d.len().div_ceil(3) * 4);
    for c in d.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Standard or URL-safe base64, padding optional; `None` on anything else.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 || body.len() > 128 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in body.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The SHA-256 fingerprints of a certificate: of the whole certificate and of
/// its public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprints {
    /// SHA-256 of the certificate (DER).
    pub certificate: [u8; 32],
    /// SHA-256 of its SubjectPublicKeyInfo (DER); `None` when the certificate
    /// cannot be parsed.
    pub public_key: Option<[u8; 32]>,
}

impl Fingerprints {
    /// The fingerprints of `cert`.
    pub fn of(cert: &CertificateDer<'_>) -> Fingerprints {
        let public_key = rustls::server::ParsedCertificate::try_from(cert)
            .ok()
            .map(|p| Sha256::digest(p.subject_public_key_info().as_ref()).into());
        Fingerprints {
            certificate: Sha256::digest(cert.as_ref()).into(),
            public_key,
        }
    }

    /// The fingerprints of the first certificate in PEM data.
    pub fn from_pem(pem: &[u8]) -> Result<Fingerprints> {
        let certs = certs_from_pem(pem, "certificate")?;
        Ok(Fingerprints::of(&certs[0]))
    }

    /// The pin of the whole certificate (`sha256:AB:CD:…`).
    pub fn certificate_pin(&self) -> Pin {
        Pin::new(PinKind::Certificate, self.certificate)
    }

    /// The pin of the public key (`spki-sha256:…`), if known.
    pub fn public_key_pin(&self) -> Option<Pin> {
        self.public_key.map(|d| Pin::new(PinKind::PublicKey, d))
    }
}

impl fmt::Display for Fingerprints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.certificate_pin())?;
        if let Some(k) = self.public_key_pin() {
            write!(f, " (public key {k})")?;
        }
        Ok(())
    }
}

/// Why a TLS handshake failed, in the terms a user can act on. Each kind has a
/// [`sentence`](Self::sentence) and a [`fix`](TlsFailure::fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The certificate is not signed by a trusted authority (none of that
    /// name, or one of that name whose key did not sign it).
    UnknownIssuer,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate is for other names than the one we connected to.
    WrongName,
    /// The server presents a CA certificate (`CA:TRUE`) as its own, as
    /// `openssl req -x509` makes them.
    CaUsedAsEndEntity,
    /// No TLS version or cipher suite in common (a `handshake_failure` or
    /// `protocol_version` alert, or a server choice we do not support).
    NoCommonProtocol,
    /// The server requires a client certificate (mutual TLS) and refused the
    /// connection without an acceptable one.
    CertificateRequired,
    /// The host is pinned and the certificate is another.
    PinMismatch,
    /// The handshake signature does not verify with the certificate's public
    /// key: the server does not hold the private key of the certificate it
    /// shows. (A certificate whose own signature fails against a trusted CA
    /// of the same name is [`UnknownIssuer`](Self::UnknownIssuer).)
    BadSignature,
    /// Anything else; the library's error is in [`TlsFailure::detail`].
    Other,
}

impl TlsProblem {
    /// The problem in one sentence.
    pub fn sentence(self) -> &'static str {
        match self {
            TlsProblem::UnknownIssuer => {
                "the server's certificate is not signed by a certificate authority the proxy trusts (a self-signed or private-CA certificate)"
            }
            TlsProblem::Expired => "the server's certificate has expired",
            TlsProblem::NotYetValid => {
                "the server's certificate is not valid yet (its start date is in the future)"
            }
            TlsProblem::WrongName => {
                "the server's certificate was issued for another name than the one the proxy connects to"
            }
            TlsProblem::CaUsedAsEndEntity => {
                "the server presents a CA certificate (CA:TRUE, as `openssl req -x509` makes them) as its own, which TLS refuses for a server"
            }
            TlsProblem::NoCommonProtocol => {
                "the server and the proxy have no TLS version or cipher suite in common"
            }
            TlsProblem::CertificateRequired => {
                "the server requires a client certificate (mutual TLS) and refused the proxy without one"
            }
            TlsProblem::PinMismatch => {
                "the server presents a different certificate from the one pinned for this connection"
            }
            TlsProblem::BadSignature => {
                "a signature in the handshake does not verify: the server does not hold the private key of the certificate it presents"
            }
            TlsProblem::Other => "the TLS handshake failed",
        }
    }
}

/// A failed TLS handshake: the [`TlsProblem`], what the library said, the
/// name checked and the certificate the server presented (when it got that
/// far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFailure {
    /// The kind of problem.
    pub problem: TlsProblem,
    /// The TLS library's own error.
    pub detail: String,
    /// The name the certificate was checked against (host name or IP address).
    pub name: String,
    /// The server's certificate, if it presented one.
    pub certificate: Option<Fingerprints>,
}

impl TlsFailure {
    /// Classifies an error from a TLS client handshake with `name`.
    pub fn from_io(e: &std::io::Error, name: &str) -> TlsFailure {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => TlsFailure::from_rustls(tls, name),
            None => TlsFailure {
                problem: TlsProblem::Other,
                detail: e.to_string(),
                name: name.to_owned(),
                certificate: None,
            },
        }
    }

    /// Classifies a rustls error from a handshake with `name`.
    pub fn from_rustls(e: &rustls::Error, name: &str) -> TlsFailure {
        use rustls::AlertDescription as A;
        use rustls::CertificateError as C;
        let mut certificate = None;
        let mut pin_mismatch = false;
        let mut chain = false;
        let mut inner = e;
        if let rustls::Error::InvalidCertificate(C::Other(o)) = e
            && let Some(r) = o.0.downcast_ref::<Rejected>()
        {
            certificate = Some(r.seen);
            match &r.cause {
                Some(c) => {
                    inner = c;
                    chain = true;
                }
                None => pin_mismatch = true,
            }
        }
        let problem = if pin_mismatch {
            TlsProblem::PinMismatch
        } else {
            match inner {
                rustls::Error::InvalidCertificate(c) => match c {
                    C::UnknownIssuer => TlsProblem::UnknownIssuer,
                    C::Expired | C::ExpiredContext { .. } => TlsProblem::Expired,
                    C::NotValidYet | C::NotValidYetContext { .. } => TlsProblem::NotYetValid,
                    C::NotValidForName | C::NotValidForNameContext { .. } => TlsProblem::WrongName,
                    // In the chain: signed by another CA than the trusted
                    // one of the same name — an unknown issuer.
                    #[allow(deprecated)]
                    C::BadSignature if chain => TlsProblem::UnknownIssuer,
                    // In the handshake: the server lacks the certificate's key.
                    #[allow(deprecated)]
                    C::BadSignature => TlsProblem::BadSignature,
                    C::Other(o)
                        if matches!(
                            o.0.downcast_ref::<webpki::Error>(),
                            Some(webpki::Error::CaUsedAsEndEntity)
                        ) =>
                    {
                        TlsProblem::CaUsedAsEndEntity
                    }
                    _ => TlsProblem::Other,
                },
                rustls::Error::AlertReceived(
                    A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity,
                )
                | rustls::Error::PeerIncompatible(_) => TlsProblem::NoCommonProtocol,
                rustls::Error::AlertReceived(A::CertificateRequired) => {
                    TlsProblem::CertificateRequired
                }
                _ => TlsProblem::Other,
            }
        };
        TlsFailure {
            problem,
            detail: inner.to_string(),
            name: name.to_owned(),
            certificate,
        }
    }

    /// What to do about it, naming the connection setting to change; for a
    /// certificate that can be pinned, ends with the exact line
    /// (`tls_pin = "sha256:…"`).
    pub fn fix(&self) -> String {
        let pin_line = self
            .certificate
            .map(|c| format!("tls_pin = \"{}\"", c.certificate_pin()));
        let pin_it = |why: &str| match &pin_line {
            Some(l) => format!("{why}pin it: add this line to the connection: {l}"),
            None => format!("{why}pin it with tls_pin (see docs/connections.md)"),
        };
        match self.problem {
            TlsProblem::UnknownIssuer => format!(
                "if this is the server's own certificate, {}; or give the proxy its CA with proxy.tls_ca",
                pin_it("")
            ),
            TlsProblem::Expired => format!(
                "renew the certificate on the server; or, if you trust this one anyway, {}",
                pin_it("")
            ),
            TlsProblem::NotYetValid => {
                "check the clocks of the proxy and of the server (NTP), or reissue the certificate with a start date in the past".into()
            }
            TlsProblem::WrongName => format!(
                "address the server by a name in its certificate, or reissue the certificate with {:?} in its subject alternative names; or {}",
                self.name,
                pin_it("")
            ),
            TlsProblem::CaUsedAsEndEntity => pin_it(""),
            TlsProblem::NoCommonProtocol => {
                "enable TLS 1.2 or 1.3 on the server with an ECDHE cipher suite (AES-GCM or ChaCha20-Poly1305); with TLS 1.2 this alert can also mean the server requires a client certificate".into()
            }
            TlsProblem::CertificateRequired => {
                "on the server, stop requiring a client certificate from the proxy (the proxy does not present one); trust the proxy by its IP address or credentials instead".into()
            }
            TlsProblem::PinMismatch => match &pin_line {
                Some(l) => format!(
                    "if the server's certificate was replaced on purpose, update the pin: {l}; if not, something between the proxy and the server is intercepting the connection"
                ),
                None => "check the pin against the server's certificate".into(),
            },
            TlsProblem::BadSignature => {
                "do not trust this server: something may be impersonating the server; check the address, and that the server's certificate and private key files belong together".into()
            }
            TlsProblem::Other => {
                "check that the port speaks TLS (usually 5061) and the server's TLS settings and logs".into()
            }
        }
    }
}

impl fmt::Display for TlsFailure {
    /// The sentence, the name for a wrong name, the library's error for
    /// anything unclassified, and the certificate seen.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.problem.sentence())?;
        match self.problem {
            TlsProblem::WrongName => write!(f, " ({:?})", self.name)?,
            TlsProblem::Other => write!(f, ": {}", self.detail)?,
            _ => {}
        }
        if let Some(c) = &self.certificate {
            write!(f, "; it presented {c}")?;
        }
        Ok(())
    }
}

/// What a successful TLS handshake showed (see
/// [`Transport::probe_tls`](crate::Transport::probe_tls)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPeer {
    /// The protocol version (`TLSv1_3`...).
    pub version: String,
    /// The cipher suite.
    pub cipher_suite: String,
    /// The server's certificate.
    pub certificate: Option<Fingerprints>,
}

impl fmt::Display for TlsPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.version, self.cipher_suite)?;
        if let Some(c) = &self.certificate {
            write!(f, ", certificate {}", c.certificate_pin())?;
        }
        Ok(())
    }
}

/// A server-side handshake error: the library's own words.
pub(crate) fn describe_server(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_rfc4648_vectors() {
        // RFC 4648 §10 test vectors.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
            assert_eq!(unbase64(enc).unwrap(), plain.as_bytes());
            assert_eq!(
                unbase64(enc.trim_end_matches('=')).unwrap(),
                plain.as_bytes()
            );
        }
        assert!(unbase64("Zm9v!").is_none());
        assert!(unbase64("Z").is_none());
        assert!(unbase64("Zg===").is_none());
    }

    #[test]
    fn pins_parse_in_every_documented_form() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 7 + 1) as u8);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        let colon = colon_hex(&d);
        let b64 = base64(&d);
        let url = b64.replace('+', "-").replace('/', "_");
        for (text, kind) in [
            (format!("sha256:{hex}"), PinKind::Certificate),
            (
                format!("SHA256:{}", hex.to_uppercase()),
                PinKind::Certificate,
            ),
            (format!("sha256:{colon}"), PinKind::Certificate),
            (format!("sha256:{b64}"), PinKind::Certificate),
            (format!("spki-sha256:{b64}"), PinKind::PublicKey),
            (
                format!("spki-sha256:{}", b64.trim_end_matches('=')),
                PinKind::PublicKey,
            ),
            (format!("spki-sha256:{url}"), PinKind::PublicKey),
            (format!("spki-sha256:{colon}"), PinKind::PublicKey),
        ] {
            let p: Pin = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.kind(), kind, "{text}");
            assert_eq!(p.digest(), &d, "{text}");
            // Display round-trips.
            assert_eq!(p.to_string().parse::<Pin>().unwrap(), p);
        }
        for bad in [
            "",
            "sha256:",
            "md5:00",
            &format!("sha1:{hex}"),
            &format!("sha256:{}", &hex[2..]),
            &format!("sha256:{hex}00"),
            &format!("sha256:{}", &b64[4..]),
            &format!("sha256:{}:", hex),
            &format!("sha256:{}", colon.replacen(':', "", 1).replacen("", ":", 1)),
            // "0:18:..." instead of "01:8...": the right length, a colon misplaced.
            &format!("sha256:{}:{}{}", &colon[..1], &colon[1..2], &colon[3..]),
            "sha256:zz",
            "spki-sha256:é",
        ] {
            assert!(bad.parse::<Pin>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn host_keys_ignore_case_brackets_and_trailing_dots() {
        assert_eq!(host_key("PBX.Example.com."), "pbx.example.com");
        assert_eq!(host_key("[2001:DB8::1]"), "2001:db8::1");
        assert_eq!(host_key("192.0.2.1"), "192.0.2.1");
        assert_eq!(
            server_name_key(&ServerName::try_from("pbx.example.com").unwrap()),
            "pbx.example.com"
        );
        assert_eq!(
            server_name_key(&ServerName::try_from("2001:db8::1").unwrap()),
            "2001:db8::1"
        );
    }
}
